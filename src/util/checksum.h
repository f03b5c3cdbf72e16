/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Image checksums as ThingsBoard prints them (thingsboard-device-api.md §10): MD5, SHA256,
 * SHA384, SHA512 (OpenSSL), CRC32 (zlib), MURMUR3_32 and MURMUR3_128 (Guava's, seed 0).
 * ThingsBoard prints Guava's hash bytes as lower-case hex, and for the 32-bit hashes those
 * bytes are little-endian: CRC32("123456789") is "2639f4cb", not "cbf43926".
 *
 * Thread: any.
 */
#ifndef TBGW_UTIL_CHECKSUM_H
#define TBGW_UTIL_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

enum checksum_alg {
    CK_MD5,
    CK_SHA256,
    CK_SHA384,
    CK_SHA512,
    CK_CRC32,
    CK_MURMUR3_32,
    CK_MURMUR3_128,
    N_CHECKSUM_ALGS
};

#define CHECKSUM_HEX_MAX 129

/* "SHA256" -> CK_SHA256 (case-insensitive); -EINVAL if unknown. */
int checksum_alg_from_string(const char *s);
const char *checksum_alg_to_string(enum checksum_alg a);

/* Checksum of data[0..len) as ThingsBoard's hex. */
void checksum_buffer(enum checksum_alg a, const void *data, size_t len, char hex[CHECKSUM_HEX_MAX]);

/* Checksum of a file, read in pieces (an image is never held in memory whole). 0 or -errno. */
int checksum_file(enum checksum_alg a, const char *path, char hex[CHECKSUM_HEX_MAX]);

/* Guava's murmur3 hashes, seed 0, as raw results. */
uint32_t murmur3_32(const void *data, size_t len);
void murmur3_128(const void *data, size_t len, uint64_t out[2]);

#endif
