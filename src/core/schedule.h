/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * When each device of a bus is next due: a binary min-heap of (due time, device) pairs.
 * Ties go to the lower device number, so the order of a bus's requests is deterministic.
 *
 * Pure. Thread: the owning bus.
 */
#ifndef TBGW_CORE_SCHEDULE_H
#define TBGW_CORE_SCHEDULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sched_entry {
    uint64_t due_ms;
    uint32_t id;
};

struct schedule {
    struct sched_entry *v;
    size_t n, cap;
};

void schedule_init(struct schedule *s);
void schedule_free(struct schedule *s);
void schedule_push(struct schedule *s, uint64_t due_ms, uint32_t id);
/* The earliest entry, without removing it. False when empty. */
bool schedule_peek(const struct schedule *s, struct sched_entry *ret);
/* Remove and return the earliest entry. False when empty. */
bool schedule_pop(struct schedule *s, struct sched_entry *ret);
/* Remove the entry for id, if any. */
void schedule_remove(struct schedule *s, uint32_t id);

#endif
