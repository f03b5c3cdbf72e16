/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Byte and word order: a value of n registers is assembled as 2n bytes, most significant
 * first. word_order "big" takes the registers in address order (the Modbus convention);
 * "little" reverses them (common in PLCs that store the low word first). byte_order
 * "little" swaps the two bytes inside each register. The four combinations are often
 * called ABCD (big/big), CDAB (big bytes, little words), BADC and DCBA.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/decode.h"
#include "util/macros.h"
#include "util/utf8.h"

/* regs -> bytes in significance order. */
static void gather(const struct tag_config *t, const uint16_t *regs, unsigned n, uint8_t *out)
{
    for (unsigned i = 0; i < n; i++) {
        uint16_t r = regs[t->word_order == ORDER_LITTLE ? n - 1 - i : i];
        uint8_t hi = (uint8_t)(r >> 8), lo = (uint8_t)r;
        out[2 * i] = t->byte_order == ORDER_LITTLE ? lo : hi;
        out[2 * i + 1] = t->byte_order == ORDER_LITTLE ? hi : lo;
    }
}

/* bytes in significance order -> regs (the inverse of gather). */
static void scatter(const struct tag_config *t, const uint8_t *in, unsigned n, uint16_t *regs)
{
    for (unsigned i = 0; i < n; i++) {
        uint8_t a = in[2 * i], b = in[2 * i + 1];
        uint16_t r = t->byte_order == ORDER_LITTLE ? (uint16_t)(b << 8 | a) : (uint16_t)(a << 8 | b);
        regs[t->word_order == ORDER_LITTLE ? n - 1 - i : i] = r;
    }
}

static uint64_t be(const uint8_t *b, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = v << 8 | b[i];
    return v;
}

static bool scaled(const struct tag_config *t)
{
    return t->scale != 1.0 || t->offset != 0.0;
}

/* raw * scale + offset, to 15 significant digits. Binary arithmetic leaves noise below
 * that (603 * 0.1 is 60.300000000000004, not the double nearest 60.3), and a reading has
 * no more precision than its raw integer anyway: without this, ThingsBoard would be sent
 * 60.300000000000004. 15 digits is what a double holds for certain. */
static double apply_scale(const struct tag_config *t, double raw)
{
    char buf[32];

    snprintf(buf, sizeof(buf), "%.15g", raw * t->scale + t->offset);
    return strtod(buf, NULL);
}

/* `invalid = [ … ]`: a raw value that means "no reading". */
static bool raw_invalid(const struct tag_config *t, double raw)
{
    for (size_t i = 0; i < t->n_invalid; i++)
        if (t->invalid[i] == raw)
            return true;
    return false;
}

static void set_int(const struct tag_config *t, int64_t raw, struct value *ret)
{
    if (scaled(t)) {
        ret->kind = VK_DOUBLE;
        ret->d = apply_scale(t, (double)raw);
    } else {
        ret->kind = VK_INT;
        ret->i = raw;
    }
}

static void set_uint(const struct tag_config *t, uint64_t raw, struct value *ret)
{
    if (scaled(t)) {
        ret->kind = VK_DOUBLE;
        ret->d = apply_scale(t, (double)raw);
    } else if (raw > INT64_MAX) {
        ret->kind = VK_UINT;
        ret->u = raw;
    } else {
        ret->kind = VK_INT;
        ret->i = (int64_t)raw;
    }
}

static int decode_string(const struct tag_config *t, const uint16_t *regs, struct value *ret)
{
    char raw[2 * 125];
    size_t len = 0, start = 0;

    for (int i = 0; i < t->count; i++) {
        uint8_t hi = (uint8_t)(regs[i] >> 8), lo = (uint8_t)regs[i];
        raw[len++] = (char)(t->byte_order == ORDER_LITTLE ? lo : hi);
        raw[len++] = (char)(t->byte_order == ORDER_LITTLE ? hi : lo);
    }
    /* A NUL ends the text; padding spaces on either side are not part of it. */
    len = strnlen(raw, len);
    while (len > 0 && raw[len - 1] == ' ')
        len--;
    while (start < len && raw[start] == ' ')
        start++;
    ret->kind = VK_STRING;
    ret->s = utf8_sanitize_dup(raw + start, len - start);
    return 0;
}

int decode_registers(const struct tag_config *t, const uint16_t *regs, struct value *ret)
{
    uint8_t b[8];

    switch (t->type) {
    case VT_INT16:
        gather(t, regs, 1, b);
        if (raw_invalid(t, (double)((int16_t)be(b, 2))))
            return -ENODATA;
        set_int(t, (int16_t)be(b, 2), ret);
        return 0;
    case VT_UINT16:
        gather(t, regs, 1, b);
        if (raw_invalid(t, (double)(be(b, 2))))
            return -ENODATA;
        set_uint(t, be(b, 2), ret);
        return 0;
    case VT_INT32:
        gather(t, regs, 2, b);
        if (raw_invalid(t, (double)((int32_t)(uint32_t)be(b, 4))))
            return -ENODATA;
        set_int(t, (int32_t)(uint32_t)be(b, 4), ret);
        return 0;
    case VT_UINT32:
        gather(t, regs, 2, b);
        if (raw_invalid(t, (double)(be(b, 4))))
            return -ENODATA;
        set_uint(t, be(b, 4), ret);
        return 0;
    case VT_INT64:
        gather(t, regs, 4, b);
        if (raw_invalid(t, (double)((int64_t)be(b, 8))))
            return -ENODATA;
        set_int(t, (int64_t)be(b, 8), ret);
        return 0;
    case VT_UINT64:
        gather(t, regs, 4, b);
        if (raw_invalid(t, (double)(be(b, 8))))
            return -ENODATA;
        set_uint(t, be(b, 8), ret);
        return 0;
    case VT_FLOAT32: {
        uint32_t u;
        float f;
        gather(t, regs, 2, b);
        u = (uint32_t)be(b, 4);
        memcpy(&f, &u, sizeof(f));
        if (!isfinite(f))
            return -EDOM;
        if (raw_invalid(t, (double)f))
            return -ENODATA;
        ret->kind = VK_FLOAT;
        ret->d = scaled(t) ? (double)f * t->scale + t->offset : (double)f;
        if (!isfinite((float)ret->d))
            return -EDOM;
        return 0;
    }
    case VT_FLOAT64: {
        uint64_t u;
        double d;
        gather(t, regs, 4, b);
        u = be(b, 8);
        memcpy(&d, &u, sizeof(d));
        if (!isfinite(d))
            return -EDOM;
        if (raw_invalid(t, d))
            return -ENODATA;
        ret->kind = VK_DOUBLE;
        ret->d = scaled(t) ? apply_scale(t, d) : d;
        return isfinite(ret->d) ? 0 : -EDOM;
    }
    case VT_BIT:
        ret->kind = VK_BOOL;
        ret->b = (regs[0] >> t->bit) & 1;
        return 0;
    case VT_STRING:
        return decode_string(t, regs, ret);
    case VT_BOOL:
    case N_VALUE_TYPES:
        break;
    }
    return -EINVAL;
}

int decode_bit(const struct tag_config *t, const uint8_t *bits, struct value *ret)
{
    ret->kind = VK_BOOL;
    ret->b = bits[0] != 0;
    return 0;
}

static void put_be(uint8_t *b, unsigned n, uint64_t v)
{
    for (unsigned i = n; i-- > 0;) {
        b[i] = (uint8_t)v;
        v >>= 8;
    }
}

int encode_number(const struct tag_config *t, double v, uint16_t *regs)
{
    double raw;
    uint8_t b[8];
    unsigned n = (unsigned)value_type_width(t->type, 0);

    if (!isfinite(v) || !value_type_is_numeric(t->type))
        return -EINVAL;
    raw = (v - t->offset) / t->scale;

    switch (t->type) {
    case VT_FLOAT32: {
        float f = (float)raw;
        uint32_t u;
        if (!isfinite(f))
            return -ERANGE;
        memcpy(&u, &f, sizeof(u));
        put_be(b, 4, u);
        break;
    }
    case VT_FLOAT64: {
        uint64_t u;
        memcpy(&u, &raw, sizeof(u));
        put_be(b, 8, u);
        break;
    }
    default: {
        /* Integers: round to nearest; refuse rather than wrap. 2^63 and 2^64 are exact
         * doubles, so the comparisons below are exact too. */
        static const double lo[] = {[VT_INT16] = -32768.0, [VT_UINT16] = 0, [VT_INT32] = -2147483648.0,
                                    [VT_UINT32] = 0, [VT_INT64] = -9223372036854775808.0,
                                    [VT_UINT64] = 0};
        static const double hi[] = {[VT_INT16] = 32768.0, [VT_UINT16] = 65536.0,
                                    [VT_INT32] = 2147483648.0, [VT_UINT32] = 4294967296.0,
                                    [VT_INT64] = 9223372036854775808.0,
                                    [VT_UINT64] = 18446744073709551616.0};
        double r = nearbyint(raw);
        uint64_t u;
        if (r < lo[t->type] || r >= hi[t->type])
            return -ERANGE;
        if (t->type == VT_UINT64)
            u = (uint64_t)r;
        else
            u = (uint64_t)(int64_t)r;
        put_be(b, n * 2, u);
        break;
    }
    }
    scatter(t, b, n, regs);
    return 0;
}

int encode_integer(const struct tag_config *t, int64_t v, uint16_t *regs)
{
    static const int64_t lo[] = {[VT_INT16] = INT16_MIN, [VT_UINT16] = 0, [VT_INT32] = INT32_MIN,
                                 [VT_UINT32] = 0, [VT_INT64] = INT64_MIN, [VT_UINT64] = 0};
    static const int64_t hi[] = {[VT_INT16] = INT16_MAX, [VT_UINT16] = UINT16_MAX,
                                 [VT_INT32] = INT32_MAX, [VT_UINT32] = UINT32_MAX,
                                 [VT_INT64] = INT64_MAX, [VT_UINT64] = INT64_MAX};
    unsigned n = value_type_width(t->type, 0);
    uint8_t b[8];

    if (t->type > VT_UINT64 || t->scale != 1.0 || t->offset != 0.0)
        return -EINVAL;
    if (v < lo[t->type] || v > hi[t->type])
        return -ERANGE;
    put_be(b, n * 2, (uint64_t)v);
    scatter(t, b, n, regs);
    return 0;
}

int encode_string(const struct tag_config *t, const char *s, uint16_t *regs)
{
    size_t len = strlen(s);
    uint8_t b[2 * 125] = {0};

    if (len > (size_t)t->count * 2)
        return -ERANGE;
    memcpy(b, s, len);
    for (int i = 0; i < t->count; i++) {
        uint8_t first = b[2 * i], second = b[2 * i + 1];
        regs[i] = t->byte_order == ORDER_LITTLE ? (uint16_t)(second << 8 | first)
                                                : (uint16_t)(first << 8 | second);
    }
    return 0;
}
