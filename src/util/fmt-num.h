/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Numbers as ThingsBoard should see them. ThingsBoard decides a key's type from the JSON
 * text of each value (JsonConverter): a plain decimal with a '.' is DOUBLE when it has at
 * most 16 digits after the point (STRING beyond); a literal with an exponent is LONG when
 * it is whole ("1.0e+06") and STRING or DOUBLE otherwise; an integer is LONG, or STRING
 * beyond int64. So a double is always written as a plain decimal with a '.', in the
 * shortest form that reads back as the same value and at most 16 digits after the point;
 * an integer never gets one. That keeps one type per key forever.
 *
 * Pure: no I/O, no locks, no globals. Thread: any.
 */
#ifndef TBGW_UTIL_FMT_NUM_H
#define TBGW_UTIL_FMT_NUM_H

#include <stddef.h>
#include <stdint.h>

/* DBL_MAX written out: 309 digits, sign, ".0", NUL. */
#define FMT_NUM_MAX 320

/* Shortest plain decimal that parses back to exactly v, always with a '.' and never an
 * exponent: 21.5, 3.0, 1000000.0, 0.000015, 100000000000000000000.0. A value that would need
 * more than 16 places after the point is rounded to 16 (1e-17 -> 0.0); -0 is 0.0. Returns
 * the length, or -EDOM for NaN and infinities (which JSON cannot carry). buf must hold
 * FMT_NUM_MAX bytes. */
int fmt_double(char *buf, double v);

/* Same for a value that came from a float32 register: shortest text that reads back as the
 * same float, so 0.1f prints as 0.1, not 0.100000001490116. */
int fmt_float(char *buf, float v);

/* Integers, for symmetry. Return the length. */
int fmt_int64(char *buf, int64_t v);
int fmt_uint64(char *buf, uint64_t v);

#endif
