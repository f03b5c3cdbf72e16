/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests: number formatting, "did you mean", UTF-8 sanitising. */
#include "config.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/fmt-num.h"
#include "util/suggest.h"
#include "util/utf8.h"

static void expect_double(double v, const char *want)
{
    char buf[FMT_NUM_MAX];
    int n = fmt_double(buf, v);

    assert_int_equal(n, (int)strlen(want));
    assert_string_equal(buf, want);
}

static void expect_float(float v, const char *want)
{
    char buf[FMT_NUM_MAX];
    int n = fmt_float(buf, v);

    assert_int_equal(n, (int)strlen(want));
    assert_string_equal(buf, want);
}

static void test_fmt_double_shortest(void **state)
{
    expect_double(21.5, "21.5");
    expect_double(0.1, "0.1");
    expect_double(215 * 0.1, "21.5");          /* 21.500000000000004 rounds back at 15 digits */
    expect_double(3.0, "3.0");                 /* always a '.', so ThingsBoard types DOUBLE */
    expect_double(-0.0, "0.0");
    expect_double(1e20, "1.0e+20");
    expect_double(1.5e-5, "1.5e-05");
    /* 17 digits after the point would make ThingsBoard store a STRING: rounded to 16. */
    expect_double(0.30000000000000004, "0.3");
    expect_double(1.0000000000000002, "1.0000000000000002");
    expect_double(123456789012.5, "123456789012.5");
    expect_double(DBL_MAX, "1.7976931348623157e+308");
}

static void test_fmt_double_roundtrips(void **state)
{
    /* Whatever is printed reads back as the same double. Values of magnitude >= 1 never
     * need more than 16 digits after the point, so no rounding applies to them. */
    unsigned seed = 12345;
    for (int i = 0; i < 20000; i++) {
        char buf[FMT_NUM_MAX];
        double v;
        seed = seed * 1103515245u + 12345u;
        v = (1.0 + (double)seed / 4294967296.0) * pow(10, (int)(seed % 16));
        if (seed & 1)
            v = -v;
        fmt_double(buf, v);
        assert_non_null(strchr(buf, '.'));
        assert_true(strtod(buf, NULL) == v);
    }
}

static void test_fmt_double_scale_limit(void **state)
{
    /* ThingsBoard keeps decimals with up to 16 digits after the point as DOUBLE. */
    char buf[FMT_NUM_MAX];
    fmt_double(buf, 1.2345678901234567e-10);
    assert_string_equal(buf, "1.234568e-10");
    fmt_double(buf, 0.0001234567890123456);
    assert_string_equal(buf, "0.0001234567890123");
}

static void test_fmt_nonfinite(void **state)
{
    char buf[FMT_NUM_MAX];
    assert_int_equal(fmt_double(buf, NAN), -EDOM);
    assert_int_equal(fmt_double(buf, INFINITY), -EDOM);
    assert_int_equal(fmt_float(buf, -INFINITY), -EDOM);
}

static void test_fmt_float(void **state)
{
    expect_float(0.1f, "0.1");
    expect_float(21.5f, "21.5");
    expect_float(230.4f, "230.4");
    expect_float(1.0f, "1.0");
    expect_float(16777217.0f, "16777216.0");
    expect_float(3.4028235e38f, "3.4028235e+38");
    expect_float(1e-7f, "1.0e-07");
}

static void test_fmt_int(void **state)
{
    char buf[FMT_NUM_MAX];
    fmt_int64(buf, INT64_MIN);
    assert_string_equal(buf, "-9223372036854775808");
    fmt_uint64(buf, UINT64_MAX);
    assert_string_equal(buf, "18446744073709551615");
}

static void test_suggest(void **state)
{
    static const char *const types[] = {"int16", "uint16", "float32", "float64", "bool", NULL};
    static const char *const keys[] = {"baud", "parity", "poll_ms", "port", NULL};

    assert_string_equal(suggest("flaot32", types), "float32");
    assert_string_equal(suggest("FLOAT32", types), "float32");
    assert_string_equal(suggest("unit16", types), "uint16");
    assert_null(suggest("string", types));
    assert_string_equal(suggest("baudrate", keys), "baud");
    assert_string_equal(suggest("pol_ms", keys), "poll_ms");
    assert_string_equal(suggest("prot", keys), "port");
    assert_null(suggest("x", keys));
    assert_int_equal(edit_distance("abc", "acb"), 1);
    assert_int_equal(edit_distance("", "abc"), 3);
}

static void test_utf8(void **state)
{
    char out[64];

    assert_int_equal(utf8_sanitize(out, sizeof(out), "abc", 3), 3);
    assert_string_equal(out, "abc");
    /* Invalid byte -> U+FFFD; control characters dropped. */
    utf8_sanitize(out, sizeof(out), "a\xff" "b\x01\x7f" "c", 6);
    assert_string_equal(out, "a\xef\xbf\xbd" "bc");
    /* Valid multi-byte passes. */
    utf8_sanitize(out, sizeof(out), "\xc3\xa9\xe2\x82\xac", 5);
    assert_string_equal(out, "\xc3\xa9\xe2\x82\xac");
    /* Overlong and surrogate forms are invalid. */
    assert_false(utf8_valid("\xc0\xaf", 2));
    assert_false(utf8_valid("\xed\xa0\x80", 3));
    assert_true(utf8_valid("\xf0\x9f\x98\x80", 4));
    /* Never cut a character in half at the end of the buffer. */
    assert_int_equal(utf8_sanitize(out, 3, "\xc3\xa9\xc3\xa9", 4), 2);
    assert_int_equal(utf8_sanitize(out, 2, "\xc3\xa9", 2), 0);
    /* Truncated sequence at the end of input. */
    utf8_sanitize(out, sizeof(out), "ab\xe2\x82", 4);
    assert_string_equal(out, "ab\xef\xbf\xbd\xef\xbf\xbd");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fmt_double_shortest),
        cmocka_unit_test(test_fmt_double_roundtrips),
        cmocka_unit_test(test_fmt_double_scale_limit),
        cmocka_unit_test(test_fmt_nonfinite),
        cmocka_unit_test(test_fmt_float),
        cmocka_unit_test(test_fmt_int),
        cmocka_unit_test(test_suggest),
        cmocka_unit_test(test_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
