/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Decoding and encoding registers: every type, the four byte/word orders, scale and offset,
 * strings, and refusal of values that do not fit. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/decode.h"
#include "util/fmt-num.h"

static struct tag_config tag(enum value_type type, enum byte_order bo, enum byte_order wo)
{
    struct tag_config t = {.type = type, .table = TABLE_HOLDING, .byte_order = bo,
                           .word_order = wo, .scale = 1.0};
    t.count = (int)value_type_width(type, 0);
    return t;
}

static void test_int16_uint16(void **state)
{
    struct tag_config t = tag(VT_INT16, ORDER_BIG, ORDER_BIG);
    uint16_t r[] = {0xff85}; /* -123 */
    struct value v;

    assert_int_equal(decode_registers(&t, r, &v), 0);
    assert_int_equal(v.kind, VK_INT);
    assert_int_equal(v.i, -123);
    t.type = VT_UINT16;
    decode_registers(&t, r, &v);
    assert_int_equal(v.i, 0xff85);
    /* Little byte order swaps the bytes inside the register. */
    t.byte_order = ORDER_LITTLE;
    decode_registers(&t, r, &v);
    assert_int_equal(v.i, 0x85ff);
}

/* 0x01020304 in each of the four orders. */
static void test_int32_orders(void **state)
{
    static const struct {
        enum byte_order bo, wo;
        uint16_t r[2];
    } cases[] = {
        {ORDER_BIG, ORDER_BIG, {0x0102, 0x0304}},       /* ABCD */
        {ORDER_BIG, ORDER_LITTLE, {0x0304, 0x0102}},    /* CDAB */
        {ORDER_LITTLE, ORDER_BIG, {0x0201, 0x0403}},    /* BADC */
        {ORDER_LITTLE, ORDER_LITTLE, {0x0403, 0x0201}}, /* DCBA */
    };

    for (size_t i = 0; i < 4; i++) {
        struct tag_config t = tag(VT_UINT32, cases[i].bo, cases[i].wo);
        struct value v;
        uint16_t back[2];

        assert_int_equal(decode_registers(&t, cases[i].r, &v), 0);
        assert_int_equal(v.i, 0x01020304);
        assert_int_equal(encode_number(&t, 0x01020304, back), 0);
        assert_memory_equal(back, cases[i].r, sizeof(back));
    }
}

static void test_64bit(void **state)
{
    struct tag_config t = tag(VT_INT64, ORDER_BIG, ORDER_BIG);
    uint16_t r[] = {0xffff, 0xffff, 0xffff, 0xfffe};
    uint16_t big[] = {0x8000, 0, 0, 1};
    struct value v;

    decode_registers(&t, r, &v);
    assert_int_equal(v.i, -2);
    t.type = VT_UINT64;
    decode_registers(&t, r, &v);
    /* Beyond int64: kept as unsigned, which the uplink refuses to send (ThingsBoard
     * would store a STRING). */
    assert_int_equal(v.kind, VK_UINT);
    assert_true(v.u == UINT64_MAX - 1);
    decode_registers(&t, big, &v);
    assert_int_equal(v.kind, VK_UINT);
    t.word_order = ORDER_LITTLE;
    decode_registers(&t, big, &v);
    assert_int_equal(v.kind, VK_INT);
    assert_true(v.i == (int64_t)0x0001000000008000ll);
}

static void test_floats(void **state)
{
    struct tag_config t = tag(VT_FLOAT32, ORDER_BIG, ORDER_BIG);
    uint16_t r[] = {0x41ac, 0x0000}; /* 21.5f */
    uint16_t nan[] = {0x7fc0, 0x0000};
    uint16_t d[] = {0x4009, 0x21fb, 0x5444, 0x2d18}; /* pi */
    struct value v;

    assert_int_equal(decode_registers(&t, r, &v), 0);
    assert_int_equal(v.kind, VK_FLOAT);
    assert_true(v.d == 21.5);
    assert_int_equal(decode_registers(&t, nan, &v), -EDOM);
    t.type = VT_FLOAT64;
    t.count = 4;
    decode_registers(&t, d, &v);
    assert_int_equal(v.kind, VK_DOUBLE);
    assert_true(v.d == M_PI);
}

/* `invalid` compares the raw value, before scale and offset; NaN and infinities are never
 * a reading, whatever the list says, also when scale makes a float overflow. */
static void test_invalid_and_non_finite(void **state)
{
    struct tag_config t = tag(VT_INT16, ORDER_BIG, ORDER_BIG);
    double inv16[] = {-32768, 32767};
    double invf[] = {-1.0};
    uint16_t lo[] = {0x8000}, hi[] = {0x7fff}, ok[] = {0x00d7};
    uint16_t minus1[] = {0xbf80, 0x0000}, inf[] = {0x7f80, 0x0000}, ninf[] = {0xff80, 0x0000};
    uint16_t big[] = {0x7f7f, 0xffff}; /* FLT_MAX */
    uint16_t u32[] = {0xffff, 0xffff};
    struct value v;

    t.scale = 0.1;
    t.invalid = inv16;
    t.n_invalid = 2;
    assert_int_equal(decode_registers(&t, lo, &v), -ENODATA);
    assert_int_equal(decode_registers(&t, hi, &v), -ENODATA);
    assert_int_equal(decode_registers(&t, ok, &v), 0);
    assert_true(v.d == 21.5);
    t.scale = 1.0;
    assert_int_equal(decode_registers(&t, lo, &v), -ENODATA); /* unscaled: the same */

    t = tag(VT_UINT32, ORDER_BIG, ORDER_BIG);
    t.invalid = (double[]){4294967295.0};
    t.n_invalid = 1;
    assert_int_equal(decode_registers(&t, u32, &v), -ENODATA);

    t = tag(VT_FLOAT32, ORDER_BIG, ORDER_BIG);
    assert_int_equal(decode_registers(&t, inf, &v), -EDOM);
    assert_int_equal(decode_registers(&t, ninf, &v), -EDOM);
    assert_int_equal(decode_registers(&t, minus1, &v), 0);
    t.invalid = invf;
    t.n_invalid = 1;
    assert_int_equal(decode_registers(&t, minus1, &v), -ENODATA);
    t.scale = 10.0; /* FLT_MAX * 10 is no float */
    assert_int_equal(decode_registers(&t, big, &v), -EDOM);
}

static void test_scale_offset(void **state)
{
    struct tag_config t = tag(VT_INT16, ORDER_BIG, ORDER_BIG);
    uint16_t r[] = {215};
    uint16_t back[1];
    struct value v;

    t.scale = 0.1;
    decode_registers(&t, r, &v);
    assert_int_equal(v.kind, VK_DOUBLE); /* scaled integers become doubles */
    assert_true(fabs(v.d - 21.5) < 1e-12);
    t.scale = 0.01;
    t.offset = -1.0;
    decode_registers(&t, r, &v);
    assert_true(v.d == 1.15); /* exactly the double nearest 1.15, not 1.1500000000000001 */
    /* 603 * 0.1 is 60.300000000000004 in binary arithmetic: the reading is 60.3. */
    {
        uint16_t r603[] = {603};
        char buf[FMT_NUM_MAX];
        t.scale = 0.1;
        t.offset = 0;
        decode_registers(&t, r603, &v);
        assert_true(v.d == 60.3);
        fmt_double(buf, v.d);
        assert_string_equal(buf, "60.3");
        for (int raw = -32768; raw < 32768; raw += 7) {
            uint16_t x[] = {(uint16_t)raw};
            decode_registers(&t, x, &v);
            fmt_double(buf, v.d);
            assert_true(strlen(buf) <= 8); /* "-3276.8" at most: no binary noise */
        }
        t.scale = 0.01;
        t.offset = -1.0;
    }
    /* Inverse for writes: (v - offset) / scale, rounded. */
    assert_int_equal(encode_number(&t, 1.15, back), 0);
    assert_int_equal(back[0], 215);
}

static void test_bits(void **state)
{
    struct tag_config t = tag(VT_BIT, ORDER_BIG, ORDER_BIG);
    uint16_t r[] = {0x8004};
    uint8_t coil[] = {1};
    struct value v;

    t.bit = 2;
    decode_registers(&t, r, &v);
    assert_int_equal(v.kind, VK_BOOL);
    assert_true(v.b);
    t.bit = 3;
    decode_registers(&t, r, &v);
    assert_false(v.b);
    t.bit = 15;
    decode_registers(&t, r, &v);
    assert_true(v.b);
    t.type = VT_BOOL;
    t.table = TABLE_COIL;
    decode_bit(&t, coil, &v);
    assert_true(v.b);
}

static void test_strings(void **state)
{
    struct tag_config t = tag(VT_STRING, ORDER_BIG, ORDER_BIG);
    uint16_t r[] = {0x2041, 0x4243, 0x2000, 0x5858}; /* " ABC \0XX" */
    uint16_t bad[] = {0x41ff, 0x4200};
    uint16_t enc[4];
    struct value v;

    t.count = 4;
    decode_registers(&t, r, &v);
    assert_int_equal(v.kind, VK_STRING);
    assert_string_equal(v.s, "ABC"); /* trimmed, cut at NUL */
    value_clear(&v);
    t.byte_order = ORDER_LITTLE;
    decode_registers(&t, r, &v);
    assert_string_equal(v.s, "A CB"); /* first character = low byte */
    value_clear(&v);
    t.byte_order = ORDER_BIG;
    t.count = 2;
    decode_registers(&t, bad, &v);
    assert_string_equal(v.s, "A\xef\xbf\xbd" "B"); /* not UTF-8: replaced */
    value_clear(&v);

    t.count = 4;
    assert_int_equal(encode_string(&t, "ABCDE", enc), 0);
    assert_int_equal(enc[0], 0x4142);
    assert_int_equal(enc[2], 0x4500);
    assert_int_equal(enc[3], 0);
    assert_int_equal(encode_string(&t, "123456789", enc), -ERANGE);
}

static void test_encode_ranges(void **state)
{
    struct tag_config t = tag(VT_INT16, ORDER_BIG, ORDER_BIG);
    uint16_t r[4];

    assert_int_equal(encode_number(&t, 32767, r), 0);
    assert_int_equal(encode_number(&t, 32768, r), -ERANGE);
    assert_int_equal(encode_number(&t, -32768, r), 0);
    assert_int_equal(r[0], 0x8000);
    assert_int_equal(encode_number(&t, -32769, r), -ERANGE);
    assert_int_equal(encode_number(&t, NAN, r), -EINVAL);
    t.type = VT_UINT16;
    assert_int_equal(encode_number(&t, -1, r), -ERANGE);
    assert_int_equal(encode_number(&t, 65535.4, r), 0); /* rounds to 65535 */
    assert_int_equal(encode_number(&t, 65535.6, r), -ERANGE);
    t.type = VT_UINT32;
    t.count = 2;
    assert_int_equal(encode_number(&t, 4294967295.0, r), 0);
    assert_int_equal(encode_number(&t, 4294967296.0, r), -ERANGE);
    t.type = VT_FLOAT32;
    assert_int_equal(encode_number(&t, 1e39, r), -ERANGE);
    assert_int_equal(encode_number(&t, 21.5, r), 0);
    assert_int_equal(r[0], 0x41ac);
    t.type = VT_INT64;
    t.count = 4;
    assert_int_equal(encode_number(&t, 9223372036854775808.0, r), -ERANGE);
    t.type = VT_STRING;
    assert_int_equal(encode_number(&t, 1, r), -EINVAL);
}

static void test_roundtrip_all_types(void **state)
{
    static const enum value_type types[] = {VT_INT16, VT_UINT16, VT_INT32, VT_UINT32,
                                            VT_INT64, VT_UINT64, VT_FLOAT32, VT_FLOAT64};
    static const double values[] = {3, 5, 101, 12345, 32767};

    for (size_t ti = 0; ti < sizeof(types) / sizeof(types[0]); ti++)
        for (int o = 0; o < 4; o++)
            for (size_t vi = 0; vi < sizeof(values) / sizeof(values[0]); vi++) {
                struct tag_config t = tag(types[ti], o & 1 ? ORDER_LITTLE : ORDER_BIG,
                                          o & 2 ? ORDER_LITTLE : ORDER_BIG);
                uint16_t r[4];
                struct value v;
                double got;

                t.scale = 2;
                t.offset = 3;
                assert_int_equal(encode_number(&t, values[vi], r), 0);
                assert_int_equal(decode_registers(&t, r, &v), 0);
                assert_true(value_as_double(&v, &got));
                assert_true(fabs(got - values[vi]) < 1e-3);
            }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_int16_uint16),  cmocka_unit_test(test_int32_orders),
        cmocka_unit_test(test_64bit),         cmocka_unit_test(test_floats),
        cmocka_unit_test(test_invalid_and_non_finite),
        cmocka_unit_test(test_scale_offset),  cmocka_unit_test(test_bits),
        cmocka_unit_test(test_strings),       cmocka_unit_test(test_encode_ranges),
        cmocka_unit_test(test_roundtrip_all_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
