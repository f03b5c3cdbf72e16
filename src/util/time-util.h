/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Clocks. Schedules, timeouts and backoff use the monotonic clock (now_ms); sample
 * timestamps use wall-clock time (realtime_ms), which is what ThingsBoard stores.
 */
#ifndef TBGW_UTIL_TIME_H
#define TBGW_UTIL_TIME_H

#include <stdint.h>
#include <time.h>

/* Monotonic milliseconds. Thread: any. */
uint64_t now_ms(void);

/* Monotonic microseconds. Thread: any. */
uint64_t now_us(void);

/* Wall-clock milliseconds since the epoch. Thread: any. */
int64_t realtime_ms(void);

/* Sleep for ms milliseconds, resuming after signals. */
void sleep_ms(uint64_t ms);

/* Sleep until the monotonic time deadline_us (no-op if it has passed). */
void sleep_until_us(uint64_t deadline_us);

#endif
