/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Bounded single-producer / single-consumer ring of samples: the hand-off from one bus
 * thread to the uplink thread. Lock-free: the producer owns `head`, the consumer owns
 * `tail`; each publishes its index with a release store and reads the other's with an
 * acquire load, which orders the sample copies against the index updates. Each side keeps
 * a private copy of the other's index and re-reads the shared one only when the copy says
 * the ring is full (or empty), so the common case touches no shared cache line but its own.
 *
 * A full ring refuses the sample (the caller counts and reports it): nothing is lost
 * silently, and a slow uplink can never block a bus.
 *
 * Thread: ring_push* on the one producer, ring_pop on the one consumer, the rest on any.
 */
#ifndef TBGW_CORE_RING_H
#define TBGW_CORE_RING_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/sample.h"

#define CACHELINE 64

struct ring {
    alignas(CACHELINE) _Atomic size_t head; /* next slot the producer writes */
    size_t tail_cache;                      /* producer's view of tail */
    alignas(CACHELINE) _Atomic size_t tail; /* next slot the consumer reads */
    size_t head_cache;                      /* consumer's view of head */
    alignas(CACHELINE) size_t mask;
    struct sample *slots;
    _Atomic uint64_t dropped; /* samples refused because the ring was full */
};

/* A ring of at least min_capacity samples (rounded up to a power of two). */
struct ring *ring_new(size_t min_capacity);

/* Frees the ring and every string still queued in it. */
struct ring *ring_free(struct ring *r);

/* Copy s into the ring. Returns false (and counts a drop) when full; the caller still
 * owns s then. Thread: producer. */
bool ring_push(struct ring *r, const struct sample *s);

/* Move up to max samples out of the ring into out. Returns how many. Thread: consumer. */
size_t ring_pop(struct ring *r, struct sample *out, size_t max);

size_t ring_capacity(const struct ring *r);

/* Approximate fill level (exact when both sides are idle). Thread: any. */
size_t ring_size(const struct ring *r);

uint64_t ring_dropped(const struct ring *r);

#endif
