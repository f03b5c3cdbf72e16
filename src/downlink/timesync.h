/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Clock sanity. A Raspberry Pi has no real-time clock: after a power cut without network
 * it may boot with a clock days off, and every sample timestamp would be wrong. While the
 * kernel says the clock is not synchronised (adjtimex: STA_UNSYNC), tbgw asks the Edge for
 * the time with the client-side RPC getTime and corrects sample timestamps by the measured
 * offset (util/clock.h), until the clock is synchronised.
 *
 * The Edge's rule chain must answer getTime (ThingsBoard has no built-in answer): with a
 * number of milliseconds since the epoch, or {"time": ms} (also "ts").
 *
 * TBGW_CLOCK=synced|unsynced in the environment overrides the kernel's verdict.
 *
 * Thread: uplink.
 */
#ifndef TBGW_DOWNLINK_TIMESYNC_H
#define TBGW_DOWNLINK_TIMESYNC_H

#include <stdbool.h>
#include <stdint.h>

struct downlink;
struct dl_dev;

void timesync_init(struct downlink *dl);
void timesync_free(struct downlink *dl);
void timesync_connected(struct downlink *dl, struct dl_dev *d);
void timesync_tick(struct downlink *dl, uint64_t now_ms);

/* Is the system clock synchronised (per the kernel, or TBGW_CLOCK)? */
bool timesync_clock_synchronised(void);

/* Parse a getTime answer: milliseconds since the epoch. -EBADMSG if it is not one. */
int timesync_parse_answer(const char *payload, size_t len, int64_t *ret_ms);

#endif
