/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <stdlib.h>

#include "core/schedule.h"
#include "util/macros.h"

static bool before(const struct sched_entry *a, const struct sched_entry *b)
{
    return a->due_ms < b->due_ms || (a->due_ms == b->due_ms && a->id < b->id);
}

static void swap(struct sched_entry *a, struct sched_entry *b)
{
    struct sched_entry t = *a;
    *a = *b;
    *b = t;
}

static void sift_up(struct schedule *s, size_t i)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!before(&s->v[i], &s->v[parent]))
            break;
        swap(&s->v[i], &s->v[parent]);
        i = parent;
    }
}

static void sift_down(struct schedule *s, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < s->n && before(&s->v[l], &s->v[m]))
            m = l;
        if (r < s->n && before(&s->v[r], &s->v[m]))
            m = r;
        if (m == i)
            break;
        swap(&s->v[i], &s->v[m]);
        i = m;
    }
}

void schedule_init(struct schedule *s)
{
    *s = (struct schedule){0};
}

void schedule_free(struct schedule *s)
{
    free(s->v);
    *s = (struct schedule){0};
}

void schedule_push(struct schedule *s, uint64_t due_ms, uint32_t id)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 8;
        s->v = xreallocarray(s->v, s->cap, sizeof(*s->v));
    }
    s->v[s->n] = (struct sched_entry){.due_ms = due_ms, .id = id};
    sift_up(s, s->n++);
}

bool schedule_peek(const struct schedule *s, struct sched_entry *ret)
{
    if (!s->n)
        return false;
    *ret = s->v[0];
    return true;
}

bool schedule_pop(struct schedule *s, struct sched_entry *ret)
{
    if (!s->n)
        return false;
    *ret = s->v[0];
    s->v[0] = s->v[--s->n];
    sift_down(s, 0);
    return true;
}

void schedule_remove(struct schedule *s, uint32_t id)
{
    for (size_t i = 0; i < s->n; i++) {
        if (s->v[i].id != id)
            continue;
        s->v[i] = s->v[--s->n];
        if (i < s->n) {
            sift_down(s, i);
            sift_up(s, i);
        }
        return;
    }
}
