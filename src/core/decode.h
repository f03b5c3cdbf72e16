/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Registers <-> typed values, as the tag config says: type, byte order within a register,
 * word order across registers, scale and offset (value = raw * scale + offset).
 *
 * Integer types stay integers when scale is 1 and offset 0; otherwise the value is a
 * double. A float32 keeps float precision in its JSON (VK_FLOAT). Strings are trimmed of
 * NULs and spaces and made valid UTF-8.
 *
 * Pure: no I/O, no locks, no globals. Thread: any.
 */
#ifndef TBGW_CORE_DECODE_H
#define TBGW_CORE_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/value.h"

/* Decode regs[0 .. t->count) (registers as libmodbus returns them: host-order 16-bit
 * values of the big-endian wire words). Returns 0; -EDOM for a NaN or infinite float (which
 * JSON cannot carry, and which no sensor means as a reading), also after scale and offset;
 * -ENODATA for a raw value (before scale and offset) that t->invalid lists. A string value
 * is allocated; the caller owns it. */
int decode_registers(const struct tag_config *t, const uint16_t *regs, struct value *ret);

/* Decode a coil/discrete input (one byte per bit, as libmodbus returns them). */
int decode_bit(const struct tag_config *t, const uint8_t *bits, struct value *ret);

/* The raw (unscaled) number a value of a numeric tag stands for: (v - offset) / scale,
 * rounded to the nearest integer for integer types. -ERANGE if it does not fit the type,
 * -EINVAL if v is not a number. */
int encode_number(const struct tag_config *t, double v, uint16_t *regs);

/* An integer for an integer tag without scale or offset, exactly (no detour through a
 * double, which cannot hold every 64-bit value). -ERANGE if it does not fit. */
int encode_integer(const struct tag_config *t, int64_t v, uint16_t *regs);

/* Encode a string into t->count registers (NUL-padded). -ERANGE if it is too long. */
int encode_string(const struct tag_config *t, const char *s, uint16_t *regs);

#endif
