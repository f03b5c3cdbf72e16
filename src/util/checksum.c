/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * MD5/SHA come from OpenSSL's EVP and CRC32 from zlib. Murmur3 has no packaged library on
 * Debian, so the two variants Guava implements are here: both process whole blocks as they
 * stream in and keep a partial block, so a file is hashed in pieces.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <zlib.h>

#include "util/checksum.h"
#include "util/macros.h"

static const char *const names[N_CHECKSUM_ALGS] = {
    "MD5", "SHA256", "SHA384", "SHA512", "CRC32", "MURMUR3_32", "MURMUR3_128",
};

int checksum_alg_from_string(const char *s)
{
    for (int i = 0; s && i < N_CHECKSUM_ALGS; i++)
        if (strcasecmp(names[i], s) == 0)
            return i;
    return -EINVAL;
}

const char *checksum_alg_to_string(enum checksum_alg a)
{
    return a < N_CHECKSUM_ALGS ? names[a] : "?";
}

/* ---- murmur3 (Austin Appleby's algorithm, as Guava applies it) ---- */

static inline uint32_t rotl32(uint32_t x, int r)
{
    return (x << r) | (x >> (32 - r));
}

static inline uint64_t rotl64(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

static inline uint64_t fmix64(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    k ^= k >> 33;
    return k;
}

static inline uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t le64(const uint8_t *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

struct m32 {
    uint32_t h;
    uint8_t tail[4];
    size_t ntail, total;
};

static void m32_block(struct m32 *m, uint32_t k)
{
    k *= 0xcc9e2d51u;
    k = rotl32(k, 15);
    k *= 0x1b873593u;
    m->h ^= k;
    m->h = rotl32(m->h, 13);
    m->h = m->h * 5 + 0xe6546b64u;
}

static void m32_update(struct m32 *m, const uint8_t *p, size_t len)
{
    m->total += len;
    while (len) {
        size_t take = MIN(len, 4 - m->ntail);
        memcpy(m->tail + m->ntail, p, take);
        m->ntail += take;
        p += take;
        len -= take;
        if (m->ntail == 4) {
            m32_block(m, le32(m->tail));
            m->ntail = 0;
        }
    }
}

static uint32_t m32_final(struct m32 *m)
{
    uint32_t k = 0, h;

    for (size_t i = m->ntail; i-- > 0;)
        k = k << 8 | m->tail[i];
    if (m->ntail) {
        k *= 0xcc9e2d51u;
        k = rotl32(k, 15);
        k *= 0x1b873593u;
        m->h ^= k;
    }
    h = m->h ^ (uint32_t)m->total;
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

struct m128 {
    uint64_t h1, h2;
    uint8_t tail[16];
    size_t ntail, total;
};

static const uint64_t C1 = 0x87c37b91114253d5ull, C2 = 0x4cf5ad432745937full;

static void m128_block(struct m128 *m, uint64_t k1, uint64_t k2)
{
    k1 *= C1;
    k1 = rotl64(k1, 31);
    k1 *= C2;
    m->h1 ^= k1;
    m->h1 = rotl64(m->h1, 27);
    m->h1 += m->h2;
    m->h1 = m->h1 * 5 + 0x52dce729;
    k2 *= C2;
    k2 = rotl64(k2, 33);
    k2 *= C1;
    m->h2 ^= k2;
    m->h2 = rotl64(m->h2, 31);
    m->h2 += m->h1;
    m->h2 = m->h2 * 5 + 0x38495ab5;
}

static void m128_update(struct m128 *m, const uint8_t *p, size_t len)
{
    m->total += len;
    while (len) {
        size_t take = MIN(len, 16 - m->ntail);
        memcpy(m->tail + m->ntail, p, take);
        m->ntail += take;
        p += take;
        len -= take;
        if (m->ntail == 16) {
            m128_block(m, le64(m->tail), le64(m->tail + 8));
            m->ntail = 0;
        }
    }
}

static void m128_final(struct m128 *m, uint64_t out[2])
{
    uint64_t k1 = 0, k2 = 0;

    for (size_t i = m->ntail; i-- > 8;)
        k2 = k2 << 8 | m->tail[i];
    for (size_t i = MIN(m->ntail, (size_t)8); i-- > 0;)
        k1 = k1 << 8 | m->tail[i];
    if (m->ntail > 8) {
        k2 *= C2;
        k2 = rotl64(k2, 33);
        k2 *= C1;
        m->h2 ^= k2;
    }
    if (m->ntail) {
        k1 *= C1;
        k1 = rotl64(k1, 31);
        k1 *= C2;
        m->h1 ^= k1;
    }
    m->h1 ^= m->total;
    m->h2 ^= m->total;
    m->h1 += m->h2;
    m->h2 += m->h1;
    m->h1 = fmix64(m->h1);
    m->h2 = fmix64(m->h2);
    m->h1 += m->h2;
    m->h2 += m->h1;
    out[0] = m->h1;
    out[1] = m->h2;
}

uint32_t murmur3_32(const void *data, size_t len)
{
    struct m32 m = {0};

    m32_update(&m, data, len);
    return m32_final(&m);
}

void murmur3_128(const void *data, size_t len, uint64_t out[2])
{
    struct m128 m = {0};

    m128_update(&m, data, len);
    m128_final(&m, out);
}

/* ---- streaming over all algorithms ---- */

struct hasher {
    enum checksum_alg alg;
    EVP_MD_CTX *md;
    uLong crc;
    struct m32 m32;
    struct m128 m128;
};

static void hasher_init(struct hasher *h, enum checksum_alg a)
{
    memset(h, 0, sizeof(*h));
    h->alg = a;
    switch (a) {
    case CK_MD5:
    case CK_SHA256:
    case CK_SHA384:
    case CK_SHA512:
        h->md = EVP_MD_CTX_new();
        EVP_DigestInit_ex(h->md,
                          a == CK_MD5      ? EVP_md5()
                          : a == CK_SHA256 ? EVP_sha256()
                          : a == CK_SHA384 ? EVP_sha384()
                                           : EVP_sha512(),
                          NULL);
        break;
    case CK_CRC32:
        h->crc = crc32(0L, Z_NULL, 0);
        break;
    default:
        break;
    }
}

static void hasher_update(struct hasher *h, const void *p, size_t len)
{
    switch (h->alg) {
    case CK_CRC32:
        /* zlib takes uInt lengths */
        for (const uint8_t *q = p; len;) {
            uInt n = (uInt)MIN(len, (size_t)1 << 30);
            h->crc = crc32(h->crc, q, n);
            q += n;
            len -= n;
        }
        break;
    case CK_MURMUR3_32:
        m32_update(&h->m32, p, len);
        break;
    case CK_MURMUR3_128:
        m128_update(&h->m128, p, len);
        break;
    default:
        EVP_DigestUpdate(h->md, p, len);
        break;
    }
}

static void put_le(uint8_t *b, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        b[i] = (uint8_t)(v >> (8 * i));
}

static void hasher_final(struct hasher *h, char hex[CHECKSUM_HEX_MAX])
{
    uint8_t b[EVP_MAX_MD_SIZE];
    unsigned n = 0;

    switch (h->alg) {
    case CK_CRC32:
        put_le(b, h->crc, 4);
        n = 4;
        break;
    case CK_MURMUR3_32:
        put_le(b, m32_final(&h->m32), 4);
        n = 4;
        break;
    case CK_MURMUR3_128: {
        uint64_t o[2];
        m128_final(&h->m128, o);
        put_le(b, o[0], 8);
        put_le(b + 8, o[1], 8);
        n = 16;
        break;
    }
    default:
        EVP_DigestFinal_ex(h->md, b, &n);
        EVP_MD_CTX_free(h->md);
        h->md = NULL;
        break;
    }
    for (unsigned i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", b[i]);
    hex[2 * n] = '\0';
}

void checksum_buffer(enum checksum_alg a, const void *data, size_t len, char hex[CHECKSUM_HEX_MAX])
{
    struct hasher h;

    hasher_init(&h, a);
    hasher_update(&h, data, len);
    hasher_final(&h, hex);
}

int checksum_file(enum checksum_alg a, const char *path, char hex[CHECKSUM_HEX_MAX])
{
    struct hasher h;
    char buf[65536];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        return -errno;
    hasher_init(&h, a);
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        hasher_update(&h, buf, (size_t)n);
    hasher_final(&h, hex);
    if (n < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    close(fd);
    return 0;
}
