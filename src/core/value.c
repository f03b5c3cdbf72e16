/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/value.h"
#include "util/macros.h"

const char *const table_names[] = {
    [TABLE_COIL] = "coil",
    [TABLE_DISCRETE] = "discrete",
    [TABLE_INPUT] = "input",
    [TABLE_HOLDING] = "holding",
    NULL,
};

const char *const value_type_names[] = {
    [VT_INT16] = "int16",     [VT_UINT16] = "uint16",   [VT_INT32] = "int32",
    [VT_UINT32] = "uint32",   [VT_INT64] = "int64",     [VT_UINT64] = "uint64",
    [VT_FLOAT32] = "float32", [VT_FLOAT64] = "float64", [VT_BOOL] = "bool",
    [VT_BIT] = "bit",         [VT_STRING] = "string",   NULL,
};

static int lookup(const char *const *names, size_t n, const char *s)
{
    if (!s)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (names[i] && strcmp(names[i], s) == 0)
            return (int)i;
    return -EINVAL;
}

const char *table_to_string(enum mb_table t)
{
    return t < N_TABLES ? table_names[t] : "?";
}

int table_from_string(const char *s)
{
    return lookup(table_names, N_TABLES, s);
}

const char *value_type_to_string(enum value_type t)
{
    return t < N_VALUE_TYPES ? value_type_names[t] : "?";
}

int value_type_from_string(const char *s)
{
    return lookup(value_type_names, N_VALUE_TYPES, s);
}

unsigned value_type_width(enum value_type t, unsigned count)
{
    switch (t) {
    case VT_INT16:
    case VT_UINT16:
    case VT_BOOL:
    case VT_BIT:
        return 1;
    case VT_INT32:
    case VT_UINT32:
    case VT_FLOAT32:
        return 2;
    case VT_INT64:
    case VT_UINT64:
    case VT_FLOAT64:
        return 4;
    case VT_STRING:
        return count;
    case N_VALUE_TYPES:
        break;
    }
    return 0;
}

bool table_is_bits(enum mb_table t)
{
    return t == TABLE_COIL || t == TABLE_DISCRETE;
}

bool table_is_writable(enum mb_table t)
{
    return t == TABLE_COIL || t == TABLE_HOLDING;
}

bool value_type_is_numeric(enum value_type t)
{
    return t <= VT_FLOAT64;
}

bool value_type_allowed(enum mb_table table, enum value_type t)
{
    if (table_is_bits(table))
        return t == VT_BOOL;
    return t != VT_BOOL;
}

void value_clear(struct value *v)
{
    if (v->kind == VK_STRING)
        free(v->s);
    v->kind = VK_NONE;
    v->i = 0;
}

bool value_equal(const struct value *a, const struct value *b)
{
    if (a->kind != b->kind)
        return false;
    switch (a->kind) {
    case VK_NONE:
        return true;
    case VK_INT:
        return a->i == b->i;
    case VK_UINT:
        return a->u == b->u;
    case VK_DOUBLE:
    case VK_FLOAT:
        return a->d == b->d;
    case VK_BOOL:
        return a->b == b->b;
    case VK_STRING:
        return strcmp(a->s, b->s) == 0;
    }
    return false;
}

bool value_as_double(const struct value *v, double *ret)
{
    switch (v->kind) {
    case VK_INT:
        *ret = (double)v->i;
        return true;
    case VK_UINT:
        *ret = (double)v->u;
        return true;
    case VK_DOUBLE:
    case VK_FLOAT:
        *ret = v->d;
        return true;
    case VK_BOOL:
        *ret = v->b;
        return true;
    default:
        return false;
    }
}
