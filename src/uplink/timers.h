/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * One deadline per device: an indexed binary min-heap of (due time, device). Each device
 * has at most one entry, its earliest deadline (reconnect, batch age, pacing, provisioning,
 * acknowledgement patience...); setting it again moves the entry, in O(log n), so the
 * uplink never walks every device to find what is due.
 *
 * Pure. Thread: the owner (the uplink thread).
 */
#ifndef TBGW_UPLINK_TIMERS_H
#define TBGW_UPLINK_TIMERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TIMERS_NEVER UINT64_MAX

struct timers {
    uint64_t *due;  /* heap order: due time of heap[i] */
    uint32_t *heap; /* heap order: device */
    uint32_t *pos;  /* by device: index in heap, or UINT32_MAX when absent */
    size_t n, cap;  /* entries; devices */
};

/* For devices 0..n_ids-1. */
void timers_init(struct timers *t, size_t n_ids);
void timers_free(struct timers *t);
/* Device id is next due at due_ms; TIMERS_NEVER removes its entry. */
void timers_set(struct timers *t, uint32_t id, uint64_t due_ms);
/* The earliest due time (TIMERS_NEVER when empty). */
uint64_t timers_next(const struct timers *t);
/* Remove and return a device due at or before now_ms. False when none is. */
bool timers_pop_due(struct timers *t, uint64_t now_ms, uint32_t *ret_id);

#endif
