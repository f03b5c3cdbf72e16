/* SPDX-License-Identifier: GPL-2.0-or-later */
/* OTA checksums as ThingsBoard prints them, against published vectors. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "util/checksum.h"

static void expect(enum checksum_alg a, const char *data, const char *want)
{
    char hex[CHECKSUM_HEX_MAX];

    checksum_buffer(a, data, strlen(data), hex);
    assert_string_equal(hex, want);
}

static void test_vectors(void **state)
{
    static const char fox[] = "The quick brown fox jumps over the lazy dog";

    expect(CK_MD5, "", "d41d8cd98f00b204e9800998ecf8427e");
    expect(CK_SHA256, "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    expect(CK_SHA384, "abc", "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed"
                             "8086072ba1e7cc2358baeca134c825a7");
    expect(CK_SHA512, "abc", "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
                             "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f");
    /* ThingsBoard's byte order for the 32-bit hashes: little-endian bytes. */
    expect(CK_CRC32, "123456789", "2639f4cb");
    /* MurmurHash3_x86_32("hello", seed 0) = 0x248bfa47 (reference implementation). */
    expect(CK_MURMUR3_32, "hello", "47fa8b24");
    expect(CK_MURMUR3_32, "", "00000000");
    /* MurmurHash3_x64_128(fox, 0): h1 = 0xe34bbc7bbc071b6c, h2 = 0x7a433ca9c49a9347; Guava
     * (and the reference code's output buffer) give h1 then h2, each little-endian. */
    expect(CK_MURMUR3_128, fox, "6c1b07bc7bbc4be347939ac4a93c437a");
    expect(CK_MURMUR3_128, "", "00000000000000000000000000000000");
}

static void test_streaming_equals_buffer(void **state)
{
    /* A file hashed in 64 KiB reads must give the buffer's result, for every algorithm and
     * for lengths around the block sizes. */
    static const size_t lens[] = {0, 1, 3, 4, 5, 15, 16, 17, 65535, 65536, 65537, 200003};
    char path[] = "/tmp/tbgw-ck-XXXXXX";
    int fd = mkstemp(path);
    char *data = malloc(200003);

    for (size_t i = 0; i < 200003; i++)
        data[i] = (char)(i * 2654435761u >> 24);
    for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
        assert_int_equal(ftruncate(fd, 0), 0);
        assert_int_equal(pwrite(fd, data, lens[li], 0), (ssize_t)lens[li]);
        for (int a = 0; a < N_CHECKSUM_ALGS; a++) {
            char h1[CHECKSUM_HEX_MAX], h2[CHECKSUM_HEX_MAX];
            checksum_buffer((enum checksum_alg)a, data, lens[li], h1);
            assert_int_equal(checksum_file((enum checksum_alg)a, path, h2), 0);
            assert_string_equal(h1, h2);
        }
    }
    close(fd);
    unlink(path);
    free(data);
    assert_int_equal(checksum_file(CK_MD5, "/nonexistent", (char[CHECKSUM_HEX_MAX]){0}), -ENOENT);
}

static void test_names(void **state)
{
    assert_int_equal(checksum_alg_from_string("SHA256"), CK_SHA256);
    assert_int_equal(checksum_alg_from_string("murmur3_128"), CK_MURMUR3_128);
    assert_int_equal(checksum_alg_from_string("SHA1"), -EINVAL);
    assert_int_equal(checksum_alg_from_string(NULL), -EINVAL);
    assert_string_equal(checksum_alg_to_string(CK_CRC32), "CRC32");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_streaming_equals_buffer),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
