/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Numbers in the form ThingsBoard types as DOUBLE (JsonConverter.buildNumericKeyValueProto,
 * BigDecimal based): a plain decimal with a '.', no exponent, at most 16 digits after the
 * point. Any exponent makes it LONG or STRING instead, so exponents are never written.
 *
 * The significant digits are the shortest that read back as the same value, found by trial:
 * "%.*e" with 15 digits reads back exactly whenever any 15-digit decimal does (every such
 * decimal survives decimal -> double -> decimal), so at most three trials are needed for a
 * double (15..17) and four for a float (6..9). They are then laid out without exponent.
 * A value whose shortest form needs more than 16 places after the point cannot be sent as a
 * DOUBLE exactly; it is rounded to 16 places ("%.16f", correctly rounded by the C library).
 *
 * Pure: no I/O, no locks, no globals. Thread: any.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/fmt-num.h"

#define MAX_PLACES 16

/* Shortest significant digits of v (no sign, no trailing zeros) into digits, and the
 * decimal exponent of the first one: v = d.ddd x 10^exp10. Returns the digit count. */
static int shortest_digits(double v, int start, int stop, bool as_float, char *digits,
                           int *exp10)
{
    char sci[40];
    const char *s, *e;
    int n = 0;

    for (int p = start; p <= stop; p++) {
        snprintf(sci, sizeof(sci), "%.*e", p - 1, v);
        if (as_float ? strtof(sci, NULL) == (float)v : strtod(sci, NULL) == v)
            break;
    }
    /* The last trial (17 or 9 digits) always reads back: no fallback is needed. */
    s = sci[0] == '-' ? sci + 1 : sci;
    e = strchr(s, 'e');
    for (const char *c = s; c < e; c++)
        if (*c != '.')
            digits[n++] = *c;
    while (n > 1 && digits[n - 1] == '0')
        n--;
    digits[n] = '\0';
    *exp10 = atoi(e + 1);
    return n;
}

/* Drop zeros at the end of a fraction, keeping one digit after the point. */
static int trim_fraction(char *buf, int n)
{
    const char *dot = strchr(buf, '.');

    while (n > (int)(dot - buf) + 2 && buf[n - 1] == '0')
        n--;
    buf[n] = '\0';
    return n;
}

static int plain(char *buf, double v, int start, int stop, bool as_float)
{
    char digits[24];
    int n, exp10, o = 0;

    if (!isfinite(v))
        return -EDOM;
    if (v == 0.0) /* -0 too: ThingsBoard has no negative zero to keep */
        return snprintf(buf, FMT_NUM_MAX, "0.0");

    n = shortest_digits(v, start, stop, as_float, digits, &exp10);
    if (exp10 < 0 && n - exp10 - 1 > MAX_PLACES) {
        o = snprintf(buf, FMT_NUM_MAX, "%.*f", MAX_PLACES, v);
        o = trim_fraction(buf, o);
        if (strcmp(buf, "0.0") == 0 || strcmp(buf, "-0.0") == 0)
            return snprintf(buf, FMT_NUM_MAX, "0.0");
        return o;
    }

    if (v < 0)
        buf[o++] = '-';
    if (exp10 < 0) {
        buf[o++] = '0';
        buf[o++] = '.';
        for (int z = -1; z > exp10; z--)
            buf[o++] = '0';
        memcpy(buf + o, digits, (size_t)n);
        o += n;
    } else {
        int whole = exp10 + 1; /* digits before the point */

        for (int i = 0; i < whole; i++)
            buf[o++] = i < n ? digits[i] : '0';
        buf[o++] = '.';
        if (n > whole) {
            memcpy(buf + o, digits + whole, (size_t)(n - whole));
            o += n - whole;
        } else {
            buf[o++] = '0';
        }
    }
    buf[o] = '\0';
    return o;
}

int fmt_double(char *buf, double v)
{
    return plain(buf, v, 15, 17, false);
}

int fmt_float(char *buf, float v)
{
    return plain(buf, (double)v, 6, 9, true);
}

int fmt_int64(char *buf, int64_t v)
{
    return snprintf(buf, FMT_NUM_MAX, "%lld", (long long)v);
}

int fmt_uint64(char *buf, uint64_t v)
{
    return snprintf(buf, FMT_NUM_MAX, "%llu", (unsigned long long)v);
}
