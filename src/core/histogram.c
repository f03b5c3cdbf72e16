/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Latency histogram (histogram.h). The bounds follow the shape of field-bus polls: a
 * Modbus TCP read on a LAN takes about a millisecond, an RTU read at 9600 baud tens of
 * milliseconds, a timeout the configured timeout_ms (500 ms by default) times the retries.
 */
#include "core/histogram.h"

const uint64_t histogram_bounds_us[HISTOGRAM_N_BOUNDS] = HISTOGRAM_BOUNDS_US;

void histogram_observe(struct histogram *h, uint64_t us)
{
    size_t i = 0;

    while (i < HISTOGRAM_N_BOUNDS && us > histogram_bounds_us[i])
        i++;
    atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->sum_us, us, memory_order_relaxed);
}

void histogram_read(const struct histogram *h, struct histogram_snapshot *ret)
{
    uint64_t total = 0;

    ret->sum_us = atomic_load_explicit(&h->sum_us, memory_order_relaxed);
    for (size_t i = 0; i <= HISTOGRAM_N_BOUNDS; i++) {
        total += atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
        ret->cumulative[i] = total;
    }
}
