/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Shortest round-trip formatting by trial: "%.15g" of a double is shortest whenever it
 * reads back exactly (every 15-digit decimal survives decimal -> double -> decimal), so at
 * most three trials (15, 16, 17 digits) are needed; floats likewise start at 6 digits.
 * This is a few hundred nanoseconds per value, cheaper than a hand-written Ryu and exact.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/fmt-num.h"

/* BigDecimal scale of a %g literal: digits after the point minus the decimal exponent. */
static int decimal_scale(const char *s)
{
    const char *dot = strchr(s, '.');
    const char *e = strpbrk(s, "eE");
    int frac = 0;

    if (dot) {
        const char *end = e ? e : s + strlen(s);
        while (end > dot + 1 && end[-1] == '0')
            end--;
        frac = (int)(end - dot - 1);
    }
    return frac - (e ? atoi(e + 1) : 0);
}

/* Make sure the literal contains a '.', so ThingsBoard types it DOUBLE: "3" -> "3.0",
 * "1e+20" -> "1.0e+20". */
static int add_point(char *buf, int n)
{
    char *e;

    if (strchr(buf, '.'))
        return n;
    e = strpbrk(buf, "eE");
    if (!e) {
        memcpy(buf + n, ".0", 3);
        return n + 2;
    }
    memmove(e + 2, e, (size_t)(buf + n - e) + 1);
    e[0] = '.';
    e[1] = '0';
    return n + 2;
}

static int shortest(char *buf, double v, int start, int stop, int as_float)
{
    int n = 0;
    int p;

    if (!isfinite(v))
        return -EDOM;

    for (p = start; p <= stop; p++) {
        n = snprintf(buf, FMT_NUM_MAX, "%.*g", p, v);
        if (as_float ? strtof(buf, NULL) == (float)v : strtod(buf, NULL) == v)
            break;
    }
    if (p > stop)
        p = stop;

    /* ThingsBoard stores a decimal with a scale above 16 as a STRING: round to fit. */
    for (int scale = decimal_scale(buf); scale > 16 && p > 1; scale = decimal_scale(buf)) {
        p -= scale - 16;
        if (p < 1)
            p = 1;
        n = snprintf(buf, FMT_NUM_MAX, "%.*g", p, v);
    }
    if (strcmp(buf, "-0") == 0)
        n = snprintf(buf, FMT_NUM_MAX, "0");
    return add_point(buf, n);
}

int fmt_double(char *buf, double v)
{
    return shortest(buf, v, 15, 17, 0);
}

int fmt_float(char *buf, float v)
{
    return shortest(buf, (double)v, 6, 9, 1);
}

int fmt_int64(char *buf, int64_t v)
{
    return snprintf(buf, FMT_NUM_MAX, "%lld", (long long)v);
}

int fmt_uint64(char *buf, uint64_t v)
{
    return snprintf(buf, FMT_NUM_MAX, "%llu", (unsigned long long)v);
}
