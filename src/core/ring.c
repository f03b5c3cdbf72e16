/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * See ring.h. Indices run freely (size_t wraps after 2^64 samples, long after any
 * gateway is retired) and are masked on access, so "full" is head - tail == capacity and
 * no slot is wasted.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "core/ring.h"
#include "util/macros.h"

struct ring *ring_new(size_t min_capacity)
{
    struct ring *r;
    size_t cap = 2;

    while (cap < min_capacity)
        cap <<= 1;
    if (posix_memalign((void **)&r, CACHELINE, sizeof(*r)) != 0)
        abort();
    memset(r, 0, sizeof(*r));
    r->mask = cap - 1;
    r->slots = xcalloc(cap, sizeof(struct sample));
    atomic_init(&r->head, 0);
    atomic_init(&r->tail, 0);
    atomic_init(&r->dropped, 0);
    return r;
}

struct ring *ring_free(struct ring *r)
{
    struct sample s;

    if (!r)
        return NULL;
    while (ring_pop(r, &s, 1) == 1)
        if (s.kind == VK_STRING)
            free(s.v.s);
    free(r->slots);
    free(r);
    return NULL;
}

bool ring_push(struct ring *r, const struct sample *s)
{
    size_t head = atomic_load_explicit(&r->head, memory_order_relaxed);

    if (head - r->tail_cache > r->mask) {
        r->tail_cache = atomic_load_explicit(&r->tail, memory_order_acquire);
        if (head - r->tail_cache > r->mask) {
            atomic_fetch_add_explicit(&r->dropped, 1, memory_order_relaxed);
            return false;
        }
    }
    r->slots[head & r->mask] = *s;
    atomic_store_explicit(&r->head, head + 1, memory_order_release);
    return true;
}

size_t ring_pop(struct ring *r, struct sample *out, size_t max)
{
    size_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    size_t avail = r->head_cache - tail;
    size_t n;

    if (avail < max) {
        r->head_cache = atomic_load_explicit(&r->head, memory_order_acquire);
        avail = r->head_cache - tail;
    }
    n = MIN(avail, max);
    for (size_t i = 0; i < n; i++)
        out[i] = r->slots[(tail + i) & r->mask];
    if (n)
        atomic_store_explicit(&r->tail, tail + n, memory_order_release);
    return n;
}

size_t ring_capacity(const struct ring *r)
{
    return r->mask + 1;
}

size_t ring_size(const struct ring *r)
{
    size_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    size_t head = atomic_load_explicit(&r->head, memory_order_acquire);

    return head - tail;
}

uint64_t ring_dropped(const struct ring *r)
{
    return atomic_load_explicit(&r->dropped, memory_order_relaxed);
}
