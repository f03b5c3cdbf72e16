/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The vocabulary shared by config, planner, decoder, reporter and uplink: Modbus tables,
 * register value types, byte/word order, report modes, and the typed value a sample
 * carries.
 *
 * Pure. Thread: any.
 */
#ifndef TBGW_CORE_VALUE_H
#define TBGW_CORE_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum mb_table {
    TABLE_COIL,
    TABLE_DISCRETE,
    TABLE_INPUT,
    TABLE_HOLDING,
    N_TABLES
};

enum value_type {
    VT_INT16,
    VT_UINT16,
    VT_INT32,
    VT_UINT32,
    VT_INT64,
    VT_UINT64,
    VT_FLOAT32,
    VT_FLOAT64,
    VT_BOOL,   /* a coil or discrete input */
    VT_BIT,    /* one bit of a holding/input register */
    VT_STRING, /* count registers of characters */
    N_VALUE_TYPES
};

enum byte_order {
    ORDER_BIG,
    ORDER_LITTLE
};

enum report_mode {
    REPORT_ALWAYS,
    REPORT_CHANGE
};

/* What a value is once decoded; this decides its JSON form. */
enum value_kind {
    VK_NONE,
    VK_INT,    /* i: integer, JSON without '.' */
    VK_UINT,   /* u: unsigned integer beyond INT64_MAX is not representable in ThingsBoard */
    VK_DOUBLE, /* d: JSON with '.' */
    VK_FLOAT,  /* d holds a float32 result: printed with float precision */
    VK_BOOL,   /* b */
    VK_STRING, /* s: owned, NUL-terminated, valid UTF-8 */
};

struct value {
    uint8_t kind; /* enum value_kind */
    union {
        int64_t i;
        uint64_t u;
        double d;
        bool b;
        char *s;
    };
};

const char *table_to_string(enum mb_table t);
int table_from_string(const char *s);
extern const char *const table_names[];

const char *value_type_to_string(enum value_type t);
int value_type_from_string(const char *s);
extern const char *const value_type_names[];

/* Registers (or bits, for coil/discrete) a value of type t occupies; strings use count. */
unsigned value_type_width(enum value_type t, unsigned count);

bool table_is_bits(enum mb_table t);
bool table_is_writable(enum mb_table t);
bool value_type_is_numeric(enum value_type t); /* int*, uint*, float* */
bool value_type_allowed(enum mb_table table, enum value_type t);

/* Release what a value owns (its string). */
void value_clear(struct value *v);

/* Exact equality (strings by content, numbers by value). */
bool value_equal(const struct value *a, const struct value *b);

/* Numeric value as double; false for strings. */
bool value_as_double(const struct value *v, double *ret);

#endif
