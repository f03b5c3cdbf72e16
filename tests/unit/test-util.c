/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Unit tests: number formatting, "did you mean", UTF-8 sanitising. */
#include "config.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/fmt-num.h"
#include "util/suggest.h"
#include "util/utf8.h"

/* JsonConverter's rule (ThingsBoard common/proto .../adaptor/JsonConverter.java,
 * buildNumericKeyValueProto): a JSON number is stored as DOUBLE when its text has a '.',
 * no exponent and a BigDecimal scale (digits after the point) of at most 16. Also checks
 * the text is a JSON number: optional '-', no leading zeros, digits on both sides. */
static bool typed_double(const char *s)
{
    const char *p = s, *dot;

    if (*p == '-')
        p++;
    if (p[0] == '0' && p[1] != '.')
        return false;
    dot = strchr(p, '.');
    if (!dot || dot == p || strpbrk(s, "eE"))
        return false;
    for (const char *c = p; *c; c++)
        if (c != dot && (*c < '0' || *c > '9'))
            return false;
    return strlen(dot + 1) >= 1 && strlen(dot + 1) <= 16;
}

/* Digits from the first non-zero one to the last non-zero one. */
static int significant_digits(const char *s)
{
    const char *first = s + strcspn(s, "123456789"), *last = NULL;

    for (const char *c = first; *c; c++)
        if (*c >= '1' && *c <= '9')
            last = c;
    if (!last)
        return 0;
    return (int)(last - first + 1) - (strchr(first, '.') && strchr(first, '.') < last);
}

static void expect_double(double v, const char *want)
{
    char buf[FMT_NUM_MAX];
    int n = fmt_double(buf, v);

    assert_int_equal(n, (int)strlen(want));
    assert_string_equal(buf, want);
    assert_true(typed_double(buf));
}

static void expect_float(float v, const char *want)
{
    char buf[FMT_NUM_MAX];
    int n = fmt_float(buf, v);

    assert_int_equal(n, (int)strlen(want));
    assert_string_equal(buf, want);
    assert_true(typed_double(buf));
}

static void test_fmt_double_shortest(void **state)
{
    expect_double(21.5, "21.5");
    expect_double(0.1, "0.1");
    expect_double(215 * 0.1, "21.5");          /* 21.500000000000004 rounds back at 15 digits */
    expect_double(3.0, "3.0");                 /* always a '.', so ThingsBoard types DOUBLE */
    expect_double(-0.0, "0.0");
    expect_double(1e6, "1000000.0");           /* "1.0e+06" would be stored as LONG */
    expect_double(-2.5e6, "-2500000.0");
    expect_double(1e20, "100000000000000000000.0");
    expect_double(1.5e-5, "0.000015");
    expect_double(0.000123, "0.000123");
    expect_double(1e-16, "0.0000000000000001"); /* "1e-16" would be stored as STRING */
    expect_double((double)3.4028235e38f, "340282346638528860000000000000000000000.0");
    /* 17 digits after the point would make ThingsBoard store a STRING: rounded to 16. */
    expect_double(0.30000000000000004, "0.3");
    expect_double(1.0000000000000002, "1.0000000000000002");
    expect_double(123456789012.5, "123456789012.5");
    expect_double(1e-17, "0.0");
    expect_double(-4e-17, "0.0");
    expect_double(DBL_MIN, "0.0");
}

static void test_fmt_double_extremes(void **state)
{
    char buf[FMT_NUM_MAX];
    int n = fmt_double(buf, -DBL_MAX);

    assert_int_equal(n, 1 + 309 + 2);
    assert_int_equal((int)strlen(buf), n);
    assert_memory_equal(buf, "-17976931348623157000", 21);
    assert_string_equal(buf + n - 4, "00.0");
    assert_true(typed_double(buf));
    assert_true(strtod(buf, NULL) == -DBL_MAX);
}

/* Checks one double: typed DOUBLE, reads back as v unless v needs more than 16 places
 * (then within half a unit of the 16th place), and no more digits than needed. */
static void check_double(double v)
{
    char buf[FMT_NUM_MAX], sci[40];
    int n;

    if (!isfinite(v))
        return;
    n = fmt_double(buf, v);
    assert_true(n > 0 && n < FMT_NUM_MAX);
    assert_int_equal((int)strlen(buf), n);
    if (!typed_double(buf))
        fail_msg("%.17g printed as '%s', which ThingsBoard would not type DOUBLE", v, buf);
    if (strtod(buf, NULL) != v) {
        /* half a unit of the 16th place, plus the rounding of reading it back */
        double ulp = nextafter(fabs(v), INFINITY) - fabs(v);

        if (fabs(v) >= 1.0 || fabs(strtod(buf, NULL) - v) > 0.5e-16 + ulp)
            fail_msg("%.17g printed as '%s', which reads back as %.17g", v, buf,
                     strtod(buf, NULL));
        return;
    }
    for (int p = 1; p <= 17; p++) {
        snprintf(sci, sizeof(sci), "%.*e", p - 1, v);
        if (strtod(sci, NULL) == v) {
            if (v != 0 && significant_digits(buf) > p)
                fail_msg("%.17g printed as '%s', longer than %s", v, buf, sci);
            break;
        }
    }
}

static void check_float(float v)
{
    char buf[FMT_NUM_MAX];
    int n;

    if (!isfinite(v))
        return;
    n = fmt_float(buf, v);
    assert_true(n > 0 && n < FMT_NUM_MAX);
    if (!typed_double(buf))
        fail_msg("%.9g printed as '%s', which ThingsBoard would not type DOUBLE", v, buf);
    if (strtof(buf, NULL) != v &&
        (fabsf(v) >= 1.0f || fabs(strtod(buf, NULL) - (double)v) > 0.5e-16 * (1 + 1e-6)))
        fail_msg("%.9g printed as '%s', which reads back as %.9g", v, buf, strtof(buf, NULL));
    if (strtof(buf, NULL) == v && v != 0 && significant_digits(buf) > 9)
        fail_msg("%.9g printed as '%s': more digits than a float has", v, buf);
}

static uint64_t next_random(uint64_t *s)
{
    /* xorshift64*: reproducible, covers every bit pattern class */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}

static void test_fmt_double_whole_range(void **state)
{
    uint64_t seed = 0x9e3779b97f4a7c15ull;

    /* Random bit patterns: every exponent, subnormals, both signs. */
    for (int i = 0; i < 200000; i++) {
        uint64_t bits = next_random(&seed);
        double v;

        memcpy(&v, &bits, sizeof(v));
        check_double(v);
    }
    /* Powers of ten and their neighbours, the extremes, subnormals. */
    for (int e = -320; e <= 308; e++) {
        double p;
        char t[16];

        snprintf(t, sizeof(t), "1e%d", e);
        p = strtod(t, NULL);
        check_double(p);
        check_double(-p);
        check_double(nextafter(p, 0));
        check_double(nextafter(p, INFINITY));
    }
    check_double(DBL_MAX);
    check_double(-DBL_MAX);
    check_double(DBL_MIN);
    check_double(DBL_TRUE_MIN);
    check_double(nextafter(DBL_MIN, 0)); /* largest subnormal */
    check_double(DBL_EPSILON);
    check_double(9007199254740993.0);
    check_double(0.5e-16);
    check_double(1.5e-16);
}

static void test_fmt_float_whole_range(void **state)
{
    uint64_t seed = 0x2545f4914f6cdd1dull;

    for (int i = 0; i < 200000; i++) {
        uint32_t bits = (uint32_t)(next_random(&seed) >> 32);
        float v;

        memcpy(&v, &bits, sizeof(v));
        check_float(v);
    }
    for (int e = -45; e <= 38; e++) {
        char t[16];
        float p;

        snprintf(t, sizeof(t), "1e%d", e);
        p = strtof(t, NULL);
        check_float(p);
        check_float(-p);
        check_float(nextafterf(p, 0));
        check_float(nextafterf(p, INFINITY));
    }
    check_float(FLT_MAX);
    check_float(-FLT_MAX);
    check_float(FLT_MIN);
    check_float(FLT_TRUE_MIN);
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
    expect_float(1e6f, "1000000.0");
    expect_float(16777217.0f, "16777216.0");
    expect_float(3.4028235e38f, "340282350000000000000000000000000000000.0");
    expect_float(1e-7f, "0.0000001");
    expect_float(1.17549435e-38f, "0.0");
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
        cmocka_unit_test(test_fmt_double_extremes),
        cmocka_unit_test(test_fmt_double_whole_range),
        cmocka_unit_test(test_fmt_float_whole_range),
        cmocka_unit_test(test_fmt_nonfinite),
        cmocka_unit_test(test_fmt_float),
        cmocka_unit_test(test_fmt_int),
        cmocka_unit_test(test_suggest),
        cmocka_unit_test(test_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
