/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Numbers as ThingsBoard should see them. ThingsBoard decides a key's type from the JSON
 * text of each value: a literal without '.' is LONG, with '.' DOUBLE (and STRING when the
 * decimal has more than 16 digits after the point). So a double is always written with a
 * '.', in the shortest form that reads back as the same value, and with at most 16 digits
 * after the point; an integer never gets one. That keeps one type per key forever.
 *
 * Pure: no I/O, no locks, no globals. Thread: any.
 */
#ifndef TBGW_UTIL_FMT_NUM_H
#define TBGW_UTIL_FMT_NUM_H

#include <stddef.h>
#include <stdint.h>

#define FMT_NUM_MAX 40

/* Shortest text that parses back to exactly v (within ThingsBoard's 16-digit scale limit),
 * always with a '.': 21.5, 3.0, 1.0e+20, 1.5e-05. Returns the length, or -EDOM for NaN and
 * infinities (which JSON cannot carry). buf must hold FMT_NUM_MAX bytes. */
int fmt_double(char *buf, double v);

/* Same for a value that came from a float32 register: shortest text that reads back as the
 * same float, so 0.1f prints as 0.1, not 0.100000001490116. */
int fmt_float(char *buf, float v);

/* Integers, for symmetry. Return the length. */
int fmt_int64(char *buf, int64_t v);
int fmt_uint64(char *buf, uint64_t v);

#endif
