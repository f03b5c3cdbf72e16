/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A lock-free latency histogram: one writer thread observes durations, any thread reads a
 * snapshot. Buckets are counted apart (not cumulated) so that an observation is one
 * relaxed increment and a sum update; a reader that races a writer may see the sum one
 * observation ahead of the buckets, never a bucket count that goes down.
 * Thread: histogram_observe() from one thread; histogram_read() from any.
 */
#ifndef TBGW_CORE_HISTOGRAM_H
#define TBGW_CORE_HISTOGRAM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Upper bounds in microseconds; a last, unbounded bucket follows (+Inf). */
#define HISTOGRAM_BOUNDS_US \
    {1000, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000}
#define HISTOGRAM_N_BOUNDS 12

struct histogram {
    _Atomic uint64_t bucket[HISTOGRAM_N_BOUNDS + 1];
    _Atomic uint64_t sum_us;
};

struct histogram_snapshot {
    uint64_t cumulative[HISTOGRAM_N_BOUNDS + 1]; /* last one: every observation */
    uint64_t sum_us;
};

extern const uint64_t histogram_bounds_us[HISTOGRAM_N_BOUNDS];

void histogram_observe(struct histogram *h, uint64_t us);
void histogram_read(const struct histogram *h, struct histogram_snapshot *ret);

#endif
