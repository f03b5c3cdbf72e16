/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Modbus RTU-over-TCP and ASCII framing (drivers/modbus-frame.c): known frames from the
 * Modbus specifications, and the matching rule on the streams a device server really
 * delivers: late replies of other units, noise, split frames, exceptions; and the
 * device identification answer, whose length only its objects tell.
 */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "drivers/modbus-frame.h"

/* Modbus over serial line V1.02, 6.2.2: read holding registers 0x006B x3 of unit 0x11. */
static const uint8_t read_req_pdu[] = {0x03, 0x00, 0x6B, 0x00, 0x03};

static void test_crc_and_lrc(void **state)
{
    static const uint8_t f[] = {0x11, 0x03, 0x00, 0x6B, 0x00, 0x03};
    uint8_t out[16];

    (void)state;
    /* The request of the example, on the wire: ... 76 87. */
    assert_int_equal(mbf_crc16(f, sizeof(f)), 0x8776);
    assert_int_equal(mbf_rtu_encode(0x11, read_req_pdu, sizeof(read_req_pdu), out), 8);
    assert_memory_equal(out, ((uint8_t[]){0x11, 0x03, 0x00, 0x6B, 0x00, 0x03, 0x76, 0x87}), 8);
    /* LRC: the two's complement of the byte sum. */
    assert_int_equal(mbf_lrc(f, sizeof(f)), (uint8_t)-(0x11 + 0x03 + 0x6B + 0x03));
}

static void test_ascii_encode(void **state)
{
    char out[64];
    size_t n;

    (void)state;
    n = mbf_ascii_encode(0x11, read_req_pdu, sizeof(read_req_pdu), out);
    out[n] = 0;
    assert_string_equal(out, ":1103006B00037E\r\n");
}

/* A reply frame (unit, pdu) with its CRC appended. */
static size_t rtu(uint8_t *out, uint8_t unit, const uint8_t *pdu, size_t n)
{
    return mbf_rtu_encode(unit, pdu, n, out);
}

static const uint8_t reply_pdu[] = {0x03, 0x06, 0x02, 0x2B, 0x00, 0x00, 0x00, 0x64};

/* The reply frame buf[0..n), delivered byte by byte as TCP may: nothing taken before its
 * last byte, nothing dropped, then exactly want. */
static void assert_taken_at_its_end(const uint8_t *buf, size_t n, const struct mbf_expect *e,
                                    const uint8_t *want, size_t want_len)
{
    uint8_t pdu[MBF_PDU_MAX];
    size_t plen, used;

    for (size_t k = 0; k < n; k++) {
        assert_false(mbf_rtu_match(buf, k, e, pdu, &plen, &used));
        assert_int_equal(used, 0);
    }
    assert_true(mbf_rtu_match(buf, n, e, pdu, &plen, &used));
    assert_int_equal(used, n);
    assert_int_equal(plen, want_len);
    assert_memory_equal(pdu, want, plen);
}

static void test_rtu_match_plain_and_split(void **state)
{
    struct mbf_expect e = {.unit = 0x11};
    uint8_t req[5], buf[64];
    size_t n;

    (void)state;
    mbf_pdu_read(3, 0x6B, 3, req, &e);
    assert_int_equal(e.pdu_len, 8);
    n = rtu(buf, 0x11, reply_pdu, sizeof(reply_pdu));
    assert_taken_at_its_end(buf, n, &e, reply_pdu, sizeof(reply_pdu));
}

static void test_rtu_late_reply_of_another_unit_is_skipped(void **state)
{
    struct mbf_expect e = {.unit = 2};
    uint8_t req[5], buf[64], pdu[MBF_PDU_MAX];
    size_t n, plen, used;

    (void)state;
    mbf_pdu_read(3, 0x6B, 3, req, &e);
    /* Unit 1's late answer to the same request, then unit 2's. */
    n = rtu(buf, 1, reply_pdu, sizeof(reply_pdu));
    assert_false(mbf_rtu_match(buf, n, &e, pdu, &plen, &used));
    assert_int_equal(used, n); /* all of it can go */
    n += rtu(buf + n, 2, reply_pdu, sizeof(reply_pdu));
    assert_true(mbf_rtu_match(buf, n, &e, pdu, &plen, &used));
    assert_int_equal(used, n);
}

static void test_rtu_other_function_or_length_is_skipped(void **state)
{
    struct mbf_expect e = {.unit = 1};
    uint8_t req[5], buf[128], pdu[MBF_PDU_MAX];
    static const uint8_t wrong_fc[] = {0x04, 0x06, 0x02, 0x2B, 0x00, 0x00, 0x00, 0x64};
    static const uint8_t short_rsp[] = {0x03, 0x02, 0x00, 0x01};
    size_t n = 0, plen, used;

    (void)state;
    mbf_pdu_read(3, 0x6B, 3, req, &e);
    n += rtu(buf + n, 1, wrong_fc, sizeof(wrong_fc));
    n += rtu(buf + n, 1, short_rsp, sizeof(short_rsp)); /* an answer to a 1-register read */
    assert_false(mbf_rtu_match(buf, n, &e, pdu, &plen, &used));
    n += rtu(buf + n, 1, reply_pdu, sizeof(reply_pdu));
    assert_true(mbf_rtu_match(buf, n, &e, pdu, &plen, &used));
    assert_memory_equal(pdu, reply_pdu, sizeof(reply_pdu));
}

static void test_rtu_noise_and_bad_crc(void **state)
{
    struct mbf_expect e = {.unit = 1};
    uint8_t req[5], buf[128], pdu[MBF_PDU_MAX];
    size_t n = 0, plen, used, good;

    (void)state;
    mbf_pdu_read(3, 0x6B, 3, req, &e);
    /* Noise that starts like the reply (unit, function) but has a bad CRC. */
    n += rtu(buf + n, 1, reply_pdu, sizeof(reply_pdu));
    buf[n - 1] ^= 0x55;
    buf[n++] = 0x01;
    buf[n++] = 0xFF;
    good = n;
    n += rtu(buf + n, 1, reply_pdu, sizeof(reply_pdu));
    assert_true(mbf_rtu_match(buf, n, &e, pdu, &plen, &used));
    assert_int_equal(used, n);
    /* Without the good frame: keeps only what can still become the reply. */
    assert_false(mbf_rtu_match(buf, good, &e, pdu, &plen, &used));
    assert_true(used >= good - 2 && used <= good);
}

static void test_rtu_exception(void **state)
{
    struct mbf_expect e = {.unit = 1};
    uint8_t req[5], buf[16], pdu[MBF_PDU_MAX];
    static const uint8_t exc[] = {0x83, 0x02};
    size_t n, plen, used;

    (void)state;
    mbf_pdu_read(3, 0, 10, req, &e);
    n = rtu(buf, 1, exc, sizeof(exc));
    assert_true(mbf_rtu_match(buf, n, &e, pdu, &plen, &used));
    assert_int_equal(mbf_pdu_exception(pdu, plen), 2);
}

static void test_rtu_byte_count_replies(void **state)
{
    /* pdu_len 0: the length comes from the byte count. */
    struct mbf_expect e = {.unit = 9, .function = 17, .pdu_len = 0};
    static const uint8_t id[] = {17, 3, 'a', 'b', 'c'};
    uint8_t buf[16], pdu[MBF_PDU_MAX];
    size_t n, plen, used;

    (void)state;
    n = rtu(buf, 9, id, sizeof(id));
    assert_false(mbf_rtu_match(buf, 2, &e, pdu, &plen, &used));
    assert_int_equal(used, 0);
    assert_true(mbf_rtu_match(buf, n, &e, pdu, &plen, &used));
    assert_int_equal(plen, sizeof(id));
}

static void test_pdu_reply_checks(void **state)
{
    struct mbf_expect e;
    uint8_t req[260], bits[16];
    uint16_t regs[4], vals[2] = {0x1234, 0xABCD};
    static const uint8_t coils[] = {0x01, 0x01, 0x05}; /* coils 0 and 2 of 3 */
    static const uint8_t regs_rsp[] = {0x03, 0x04, 0x12, 0x34, 0xAB, 0xCD};
    static const uint8_t bad_count[] = {0x03, 0x06, 0x12, 0x34, 0xAB, 0xCD};

    (void)state;
    mbf_pdu_read(1, 0, 3, req, &e);
    assert_int_equal(e.pdu_len, 3);
    assert_int_equal(mbf_pdu_reply(req, coils, sizeof(coils), NULL, bits), 0);
    assert_memory_equal(bits, ((uint8_t[]){1, 0, 1}), 3);

    mbf_pdu_read(3, 7, 2, req, &e);
    assert_int_equal(mbf_pdu_reply(req, regs_rsp, sizeof(regs_rsp), regs, NULL), 0);
    assert_int_equal(regs[0], 0x1234);
    assert_int_equal(regs[1], 0xABCD);
    assert_int_equal(mbf_pdu_reply(req, bad_count, sizeof(bad_count), regs, NULL), -EPROTO);

    /* Writes: the echo must be the request's. */
    assert_int_equal(mbf_pdu_write_single(5, 9, 1, req, &e), 5);
    assert_memory_equal(req, ((uint8_t[]){5, 0, 9, 0xFF, 0x00}), 5);
    assert_int_equal(mbf_pdu_reply(req, req, 5, NULL, NULL), 0);
    assert_int_equal(mbf_pdu_reply(req, (uint8_t[]){5, 0, 9, 0, 0}, 5, NULL, NULL), -EPROTO);
    assert_int_equal(mbf_pdu_write_registers(100, 2, vals, req, &e), 10);
    assert_memory_equal(req, ((uint8_t[]){16, 0, 100, 0, 2, 4, 0x12, 0x34, 0xAB, 0xCD}), 10);
    assert_int_equal(mbf_pdu_reply(req, (uint8_t[]){16, 0, 100, 0, 2}, 5, NULL, NULL), 0);
}

static void test_pdu_write_coils_and_mask_write(void **state)
{
    struct mbf_expect e;
    uint8_t req[MBF_PDU_MAX];
    /* Modbus application protocol 1.1b3, 6.11: coils 20..29 (address 19) = 1011 0011 10. */
    static const uint8_t coils[] = {1, 0, 1, 1, 0, 0, 1, 1, 1, 0};

    (void)state;
    assert_int_equal(mbf_pdu_write_bits(19, 10, coils, req, &e), 8);
    assert_memory_equal(req, ((uint8_t[]){0x0F, 0x00, 0x13, 0x00, 0x0A, 0x02, 0xCD, 0x01}), 8);
    assert_int_equal(e.function, 15);
    assert_int_equal(e.pdu_len, 5);
    assert_null(e.pdu_length);
    assert_int_equal(mbf_pdu_reply(req, (uint8_t[]){0x0F, 0x00, 0x13, 0x00, 0x0A}, 5, NULL, NULL), 0);
    /* An echo of another address or count, or of the wrong length, answers another write. */
    assert_int_equal(mbf_pdu_reply(req, (uint8_t[]){0x0F, 0x00, 0x14, 0x00, 0x0A}, 5, NULL, NULL),
                     -EPROTO);
    assert_int_equal(mbf_pdu_reply(req, (uint8_t[]){0x0F, 0x00, 0x13, 0x00, 0x09}, 5, NULL, NULL),
                     -EPROTO);
    /* One coil: one data byte, unused bits zero. */
    assert_int_equal(mbf_pdu_write_bits(7, 1, (uint8_t[]){1}, req, &e), 7);
    assert_memory_equal(req, ((uint8_t[]){0x0F, 0x00, 0x07, 0x00, 0x01, 0x01, 0x01}), 7);

    /* 6.16: register 4, AND 0x00F2, OR 0x0025; the answer echoes the request. */
    assert_int_equal(mbf_pdu_mask_write(4, 0x00F2, 0x0025, req, &e), 7);
    assert_memory_equal(req, ((uint8_t[]){0x16, 0x00, 0x04, 0x00, 0xF2, 0x00, 0x25}), 7);
    assert_int_equal(e.function, 22);
    assert_int_equal(e.pdu_len, 7);
    assert_int_equal(mbf_pdu_reply(req, req, 7, NULL, NULL), 0);
    assert_int_equal(
        mbf_pdu_reply(req, (uint8_t[]){0x16, 0x00, 0x04, 0x00, 0xF2, 0x00, 0x24}, 7, NULL, NULL),
        -EPROTO);
    assert_int_equal(mbf_pdu_reply(req, req, 5, NULL, NULL), -EPROTO);
}

/* A 43/14 answer (regular, "more follows" from object 2) with objects 0 and 1. */
static const uint8_t ident_pdu[] = {0x2B, 0x0E, 0x02, 0x82, 0xFF, 0x02, 0x02,
                                    0x00, 0x04, 'A',  'C',  'M',  'E',
                                    0x01, 0x02, 'P',  'X'};

static void test_identify_request_and_reply(void **state)
{
    struct mbf_expect e = {.unit = 5};
    uint8_t req[4], pdu[MBF_PDU_MAX];
    size_t plen, used, n;
    uint8_t buf[64];

    (void)state;
    assert_int_equal(mbf_pdu_identify(2, 0, req, &e), 4);
    assert_memory_equal(req, ((uint8_t[]){0x2B, 0x0E, 0x02, 0x00}), 4);
    assert_int_equal(e.function, 0x2B);
    assert_non_null(e.pdu_length);

    /* No byte count: the length comes from the objects. */
    n = rtu(buf, 5, ident_pdu, sizeof(ident_pdu));
    assert_taken_at_its_end(buf, n, &e, ident_pdu, sizeof(ident_pdu));
    assert_true(mbf_rtu_match(buf, n, &e, pdu, &plen, &used));
    assert_int_equal(mbf_pdu_reply(req, pdu, plen, NULL, NULL), 0);

    /* The answer to another MEI type or read code answers another request. */
    pdu[1] = 0x0D;
    assert_int_equal(mbf_pdu_reply(req, pdu, plen, NULL, NULL), -EPROTO);
    pdu[1] = 0x0E;
    pdu[2] = 0x01;
    assert_int_equal(mbf_pdu_reply(req, pdu, plen, NULL, NULL), -EPROTO);
}

static void test_identify_near_misses(void **state)
{
    struct mbf_expect e = {.unit = 5};
    uint8_t req[4], pdu[MBF_PDU_MAX], wrong[sizeof(ident_pdu)], buf[160];
    size_t plen, used, n = 0;

    (void)state;
    mbf_pdu_identify(2, 0, req, &e);
    /* Another unit's answer; one whose CRC covers fewer objects than it announces (its
     * CRC is good only for a frame the object count makes longer); one with a bad CRC. */
    n += rtu(buf + n, 6, ident_pdu, sizeof(ident_pdu));
    memcpy(wrong, ident_pdu, sizeof(wrong));
    wrong[6] = 1;
    n += rtu(buf + n, 5, wrong, sizeof(wrong));
    n += rtu(buf + n, 5, ident_pdu, sizeof(ident_pdu));
    buf[n - 2] ^= 0x01;
    assert_false(mbf_rtu_match(buf, n, &e, pdu, &plen, &used));
    n += rtu(buf + n, 5, ident_pdu, sizeof(ident_pdu));
    assert_true(mbf_rtu_match(buf, n, &e, pdu, &plen, &used));
    assert_int_equal(used, n);
    assert_memory_equal(pdu, ident_pdu, sizeof(ident_pdu));
    assert_int_equal(mbf_pdu_reply(req, pdu, plen, NULL, NULL), 0);

    /* An exception answer is two bytes, as for every function. */
    n = rtu(buf, 5, (uint8_t[]){0xAB, 0x01}, 2);
    assert_true(mbf_rtu_match(buf, n, &e, pdu, &plen, &used));
    assert_int_equal(mbf_pdu_exception(pdu, plen), 1);

    /* An object longer than a PDU can hold never becomes the answer: not kept either. */
    memcpy(buf, (uint8_t[]){5, 0x2B, 0x0E, 0x02, 0x82, 0x00, 0x00, 0x01, 0x00, 0xFF}, 10);
    assert_false(mbf_rtu_match(buf, 10, &e, pdu, &plen, &used));
    assert_int_equal(used, 10);
}

static void test_identify_ascii(void **state)
{
    struct mbf_expect e = {.unit = 5};
    uint8_t req[4], pdu[MBF_PDU_MAX], wrong[sizeof(ident_pdu)];
    char buf[256];
    size_t plen, used, n = 0;

    (void)state;
    mbf_pdu_identify(2, 0, req, &e);
    /* A frame whose object list disagrees with its length, then the answer. */
    memcpy(wrong, ident_pdu, sizeof(wrong));
    wrong[6] = 3;
    n += mbf_ascii_encode(5, wrong, sizeof(wrong), buf + n);
    assert_false(mbf_ascii_match(buf, n, &e, pdu, &plen, &used));
    assert_int_equal(used, n);
    n += mbf_ascii_encode(5, ident_pdu, sizeof(ident_pdu), buf + n);
    assert_true(mbf_ascii_match(buf, n, &e, pdu, &plen, &used));
    assert_int_equal(used, n);
    assert_int_equal(plen, sizeof(ident_pdu));
    assert_memory_equal(pdu, ident_pdu, plen);
}

static void test_ascii_match(void **state)
{
    struct mbf_expect e = {.unit = 0x11};
    uint8_t req[5], pdu[MBF_PDU_MAX];
    char good[64], buf[256];
    size_t n, plen, used, len;

    (void)state;
    mbf_pdu_read(3, 0x6B, 3, req, &e);
    len = mbf_ascii_encode(0x11, reply_pdu, sizeof(reply_pdu), good);
    /* Split anywhere: nothing yet, and the ':' is kept. */
    for (size_t k = 0; k < len; k++) {
        assert_false(mbf_ascii_match(good, k, &e, pdu, &plen, &used));
        assert_int_equal(used, 0);
    }
    assert_true(mbf_ascii_match(good, len, &e, pdu, &plen, &used));
    assert_int_equal(used, len);
    assert_memory_equal(pdu, reply_pdu, sizeof(reply_pdu));

    /* Lower-case hex is accepted. */
    for (size_t k = 0; k < len; k++)
        buf[k] = (char)(good[k] >= 'A' && good[k] <= 'F' ? good[k] + 32 : good[k]);
    assert_true(mbf_ascii_match(buf, len, &e, pdu, &plen, &used));

    /* Noise, a cut-off frame, a bad LRC and another unit before the answer. */
    n = 0;
    memcpy(buf + n, "xx\r\n", 4), n += 4;
    memcpy(buf + n, good, 9), n += 9;                      /* cut off, then a new ':' */
    memcpy(buf + n, good, len), n += len;
    buf[n - 3] = buf[n - 3] == '0' ? '1' : '0';            /* LRC digit wrong */
    n += mbf_ascii_encode(0x12, reply_pdu, sizeof(reply_pdu), buf + n);
    assert_false(mbf_ascii_match(buf, n, &e, pdu, &plen, &used));
    assert_int_equal(used, n);
    memcpy(buf + n, good, len), n += len;
    assert_true(mbf_ascii_match(buf, n, &e, pdu, &plen, &used));
    assert_int_equal(used, n);
}

static void test_ascii_overlong_line_is_dropped(void **state)
{
    struct mbf_expect e = {.unit = 1, .function = 3, .pdu_len = 4};
    static char buf[MBF_ASCII_MAX + 10];
    uint8_t pdu[MBF_PDU_MAX];
    size_t plen, used;

    (void)state;
    buf[0] = ':';
    memset(buf + 1, '0', sizeof(buf) - 1);
    assert_false(mbf_ascii_match(buf, sizeof(buf), &e, pdu, &plen, &used));
    assert_int_equal(used, sizeof(buf));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc_and_lrc),
        cmocka_unit_test(test_ascii_encode),
        cmocka_unit_test(test_rtu_match_plain_and_split),
        cmocka_unit_test(test_rtu_late_reply_of_another_unit_is_skipped),
        cmocka_unit_test(test_rtu_other_function_or_length_is_skipped),
        cmocka_unit_test(test_rtu_noise_and_bad_crc),
        cmocka_unit_test(test_rtu_exception),
        cmocka_unit_test(test_rtu_byte_count_replies),
        cmocka_unit_test(test_pdu_reply_checks),
        cmocka_unit_test(test_pdu_write_coils_and_mask_write),
        cmocka_unit_test(test_identify_request_and_reply),
        cmocka_unit_test(test_identify_near_misses),
        cmocka_unit_test(test_identify_ascii),
        cmocka_unit_test(test_ascii_match),
        cmocka_unit_test(test_ascii_overlong_line_is_dropped),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
