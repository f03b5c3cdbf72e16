/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A sample: one value of one key of one device at one time. The unit that crosses from a
 * bus thread to the uplink thread, by value, through that bus's ring. 24 bytes.
 *
 * Strings travel by pointer: the bus allocates the string, the sample owns it from the
 * moment it is pushed, and whoever consumes (or drops) the sample frees it. Strings come
 * from attribute tags and text sensors and are rare, so the allocation costs nothing that
 * matters, and no storage is shared between threads.
 */
#ifndef TBGW_CORE_SAMPLE_H
#define TBGW_CORE_SAMPLE_H

#include <stdint.h>

#include "core/value.h"

#define SAMPLE_ATTRIBUTE 0x01 /* a client-side attribute, not telemetry */

struct sample {
    int64_t ts_ms; /* wall-clock time of the read */
    union {
        int64_t i;
        uint64_t u;
        double d;
        bool b;
        char *s;
    } v;
    uint32_t device; /* struct device_config.index */
    uint16_t key;    /* index in the device's key table */
    uint8_t kind;    /* enum value_kind */
    uint8_t flags;
};

static inline struct value sample_value(const struct sample *s)
{
    struct value v = {.kind = s->kind};
    v.u = s->v.u;
    return v;
}

/* Move v into a sample (a string's ownership moves with it). */
static inline void sample_set_value(struct sample *s, struct value *v)
{
    s->kind = v->kind;
    s->v.u = v->u;
    v->kind = VK_NONE;
    v->u = 0;
}

#endif
