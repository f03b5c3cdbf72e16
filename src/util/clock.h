/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Sample timestamps. A Raspberry Pi has no real-time clock: until NTP has set the time,
 * CLOCK_REALTIME may be days off. When tbgw learns the real time from the Edge, it sets an
 * offset here and every timestamp taken afterwards is corrected, until the system clock
 * is synchronised and the offset goes back to 0.
 *
 * Thread: any (the offset is an atomic).
 */
#ifndef TBGW_UTIL_CLOCK_H
#define TBGW_UTIL_CLOCK_H

#include <stdint.h>

/* Wall-clock milliseconds for a sample: CLOCK_REALTIME plus the correction. */
int64_t clock_wall_ms(void);

void clock_set_offset_ms(int64_t offset);
int64_t clock_offset_ms(void);

#endif
