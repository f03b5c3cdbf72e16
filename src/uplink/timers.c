/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Indexed min-heap of per-device deadlines (see timers.h). Ties go to the lower device
 * number, so the order in which due devices are served is deterministic.
 *
 * Pure. Thread: the owner.
 */
#include "config.h"

#include <stdlib.h>

#include "uplink/timers.h"
#include "util/macros.h"

static bool before(const struct timers *t, size_t a, size_t b)
{
    return t->due[a] < t->due[b] || (t->due[a] == t->due[b] && t->heap[a] < t->heap[b]);
}

static void swap(struct timers *t, size_t a, size_t b)
{
    uint64_t d = t->due[a];
    uint32_t h = t->heap[a];

    t->due[a] = t->due[b];
    t->heap[a] = t->heap[b];
    t->due[b] = d;
    t->heap[b] = h;
    t->pos[t->heap[a]] = (uint32_t)a;
    t->pos[t->heap[b]] = (uint32_t)b;
}

static void up(struct timers *t, size_t i)
{
    while (i > 0 && before(t, i, (i - 1) / 2)) {
        swap(t, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void down(struct timers *t, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;

        if (l < t->n && before(t, l, m))
            m = l;
        if (r < t->n && before(t, r, m))
            m = r;
        if (m == i)
            return;
        swap(t, i, m);
        i = m;
    }
}

void timers_init(struct timers *t, size_t n_ids)
{
    size_t cap = n_ids ? n_ids : 1;

    *t = (struct timers){.cap = n_ids};
    t->due = xcalloc(cap, sizeof(*t->due));
    t->heap = xcalloc(cap, sizeof(*t->heap));
    t->pos = xcalloc(cap, sizeof(*t->pos));
    for (size_t i = 0; i < cap; i++)
        t->pos[i] = UINT32_MAX;
}

void timers_free(struct timers *t)
{
    free(t->due);
    free(t->heap);
    free(t->pos);
    *t = (struct timers){0};
}

static void remove_at(struct timers *t, size_t i)
{
    uint32_t moved;

    t->pos[t->heap[i]] = UINT32_MAX;
    if (--t->n == i)
        return;
    t->due[i] = t->due[t->n];
    t->heap[i] = t->heap[t->n];
    t->pos[t->heap[i]] = (uint32_t)i;
    moved = t->heap[i];
    up(t, i);
    down(t, t->pos[moved]);
}

void timers_set(struct timers *t, uint32_t id, uint64_t due_ms)
{
    size_t i;

    if (id >= t->cap)
        return;
    i = t->pos[id];
    if (due_ms == TIMERS_NEVER) {
        if (i != UINT32_MAX)
            remove_at(t, i);
        return;
    }
    if (i == UINT32_MAX) {
        i = t->n++;
        t->heap[i] = id;
        t->pos[id] = (uint32_t)i;
    }
    t->due[i] = due_ms;
    up(t, i);
    down(t, t->pos[id]);
}

uint64_t timers_next(const struct timers *t)
{
    return t->n ? t->due[0] : TIMERS_NEVER;
}

bool timers_pop_due(struct timers *t, uint64_t now_ms, uint32_t *ret_id)
{
    if (!t->n || t->due[0] > now_ms)
        return false;
    *ret_id = t->heap[0];
    remove_at(t, 0);
    return true;
}
