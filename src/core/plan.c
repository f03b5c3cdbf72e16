/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "core/plan.h"
#include "util/macros.h"

#define RTU_ROUND_TRIP_CHARS 24

struct plan_limits plan_limits_for(enum driver_kind driver)
{
    struct plan_limits l = {.max_regs = 125, .max_bits = 2000};

    if (driver == DRIVER_MODBUS_RTU || driver == DRIVER_MODBUS_ASCII ||
        driver == DRIVER_MODBUS_RTU_TCP) {
        l.max_gap_regs = RTU_ROUND_TRIP_CHARS / 2; /* 2 characters per register */
        l.max_gap_bits = RTU_ROUND_TRIP_CHARS * 8; /* 8 bits per character */
    } else {
        l.max_gap_regs = l.max_regs;
        l.max_gap_bits = l.max_bits;
    }
    return l;
}

static int tag_cmp(const void *a, const void *b)
{
    const struct tag_config *x = ((const struct plan_tag *)a)->tag;
    const struct tag_config *y = ((const struct plan_tag *)b)->tag;

    if (x->table != y->table)
        return x->table < y->table ? -1 : 1;
    if (x->address != y->address)
        return x->address < y->address ? -1 : 1;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1; /* wider first: the block grows less often */
    return ((const struct plan_tag *)a)->key < ((const struct plan_tag *)b)->key ? -1 : 1;
}

static void add_block(struct plan *p, size_t *cap, const struct read_block *b)
{
    if (p->n_blocks == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        p->blocks = xreallocarray(p->blocks, *cap, sizeof(*p->blocks));
    }
    p->blocks[p->n_blocks++] = *b;
}

void plan_build(struct plan *p, const struct plan_tag *tags, size_t n,
                const struct plan_limits *lim)
{
    size_t cap = 0;
    struct read_block cur = {0};
    unsigned cur_end = 0; /* one past the last register/bit of cur */

    memset(p, 0, sizeof(*p));
    if (!n)
        return;
    p->tags = xmemdup_array(tags, n);
    p->n_tags = n;
    qsort(p->tags, n, sizeof(*p->tags), tag_cmp);

    for (size_t i = 0; i < n; i++) {
        const struct tag_config *t = p->tags[i].tag;
        unsigned start = (unsigned)t->address, end = start + (unsigned)t->count;
        bool bits = table_is_bits(t->table);
        unsigned max = bits ? lim->max_bits : lim->max_regs;
        unsigned max_gap = bits ? lim->max_gap_bits : lim->max_gap_regs;

        if (i > 0 && t->table == cur.table && MAX(end, cur_end) - cur.address <= max &&
            (start <= cur_end || start - cur_end <= max_gap)) {
            cur_end = MAX(cur_end, end);
            cur.count = (uint16_t)(cur_end - cur.address);
            cur.n++;
            continue;
        }
        if (i > 0)
            add_block(p, &cap, &cur);
        cur = (struct read_block){
            .table = t->table, .address = (uint16_t)start, .count = (uint16_t)(end - start),
            .first = (uint32_t)i, .n = 1};
        cur_end = end;
    }
    add_block(p, &cap, &cur);
}

/* A tag's period: its own, or (0) the device's. */
static int period_of(const struct plan_tag *t, int default_ms)
{
    return t->tag->poll_ms > 0 ? t->tag->poll_ms : default_ms;
}

size_t plan_build_groups(struct poll_group **ret, const struct plan_tag *tags, size_t n,
                         int default_ms, const struct plan_limits *lim)
{
    struct plan_tag *sorted;
    struct poll_group *g = NULL;
    size_t n_groups = 0;

    *ret = NULL;
    if (!n)
        return 0;
    /* Insertion sort by period: a device has few tags, and qsort() has no context for
     * the default period. */
    sorted = xmemdup_array(tags, n);
    for (size_t i = 1; i < n; i++) {
        struct plan_tag t = sorted[i];
        size_t j = i;
        for (; j > 0 && period_of(&sorted[j - 1], default_ms) > period_of(&t, default_ms); j--)
            sorted[j] = sorted[j - 1];
        sorted[j] = t;
    }
    for (size_t i = 0, j; i < n; i = j) {
        int period = period_of(&sorted[i], default_ms);

        for (j = i + 1; j < n && period_of(&sorted[j], default_ms) == period; j++)
            ;
        g = xreallocarray(g, n_groups + 1, sizeof(*g));
        g[n_groups].period_ms = period;
        plan_build(&g[n_groups].plan, &sorted[i], j - i, lim);
        n_groups++;
    }
    free(sorted);
    *ret = g;
    return n_groups;
}

void plan_groups_free(struct poll_group *g, size_t n)
{
    for (size_t i = 0; i < n; i++)
        plan_free(&g[i].plan);
    free(g);
}

uint64_t plan_groups_samples(const struct poll_group *g, size_t n, unsigned hold_ms)
{
    uint64_t sum = 0;

    for (size_t i = 0; i < n; i++) {
        uint64_t period = (uint64_t)MAX(g[i].period_ms, 1);
        sum += g[i].plan.n_tags * ((hold_ms + period - 1) / period);
    }
    return sum;
}

size_t plan_split_block(struct plan *p, size_t i)
{
    struct read_block old = p->blocks[i];
    struct read_block *parts = xcalloc(old.n, sizeof(*parts));
    size_t n = 0;

    for (uint32_t k = old.first; k < old.first + old.n; k++) {
        const struct tag_config *t = p->tags[k].tag;
        unsigned start = (unsigned)t->address, end = start + (unsigned)t->count;

        if (n > 0 && start < (unsigned)parts[n - 1].address + parts[n - 1].count) {
            struct read_block *b = &parts[n - 1];
            unsigned b_end = MAX((unsigned)b->address + b->count, end);
            b->count = (uint16_t)(b_end - b->address);
            b->n++;
            continue;
        }
        parts[n++] = (struct read_block){.table = old.table, .address = (uint16_t)start,
                                         .count = (uint16_t)(end - start), .first = k, .n = 1,
                                         .split = true};
    }
    p->blocks = xreallocarray(p->blocks, p->n_blocks + n - 1, sizeof(*p->blocks));
    memmove(&p->blocks[i + n], &p->blocks[i + 1], (p->n_blocks - i - 1) * sizeof(*p->blocks));
    memcpy(&p->blocks[i], parts, n * sizeof(*parts));
    p->n_blocks += n - 1;
    free(parts);
    return n;
}

void plan_free(struct plan *p)
{
    free(p->tags);
    free(p->blocks);
    memset(p, 0, sizeof(*p));
}

unsigned plan_request_bytes(void)
{
    return 8; /* unit, function, address (2), count (2), CRC (2) */
}

unsigned plan_response_bytes(const struct read_block *b)
{
    unsigned data = table_is_bits(b->table) ? (b->count + 7u) / 8u : b->count * 2u;
    return 5 + data; /* unit, function, byte count, data, CRC (2) */
}
