/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once
/*
 * Pacing under ThingsBoard's transport rate limits.
 *
 * A tenant profile may limit each device to so many messages, telemetry messages and
 * telemetry data points per period, written "capacity:seconds[,capacity:seconds...]"
 * ("200:1,6000:60"). ThingsBoard closes the session of a device that exceeds one: a
 * draining backlog would trip it at once, and then again after every reconnect.
 *
 * A pace_limit keeps the device below every window of such a spec. It counts in slots of
 * a tenth of each period and admits an event only while the slots covering the last
 * period plus one slot hold room for it, so no interval of one period ever sees more than
 * the capacity. That holds whether the server refills its buckets greedily or at fixed
 * intervals (ThingsBoard has done both), at the cost of at most a tenth of the rate.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PACE_WINDOWS 4
#define PACE_SLOTS 10

struct pace_window {
    uint32_t cap;                       /* events per period, with a safety margin applied */
    uint32_t slot_ms;                   /* period / PACE_SLOTS */
    uint64_t slot_id[PACE_SLOTS + 1];   /* absolute slot number each counter belongs to */
    uint64_t count[PACE_SLOTS + 1];
};

struct pace_limit {
    unsigned n; /* 0: no limit */
    struct pace_window w[PACE_WINDOWS];
};

/* Parse a ThingsBoard limit spec into *ret (reset, empty when spec is NULL or ""). Returns
 * 0, or -EINVAL with a message in err. */
int pace_parse(const char *spec, struct pace_limit *ret, char *err, size_t errlen);

/* Whether n more events fit now. An event larger than a window's whole capacity fits
 * only when that window is empty: it could never fit otherwise. */
bool pace_allows(const struct pace_limit *l, uint64_t n, uint64_t now_ms);

/* Count n events at now_ms (whether or not they were allowed: messages tbgw must send
 * anyway, such as RPC answers, still use up the device's allowance). */
void pace_take(struct pace_limit *l, uint64_t n, uint64_t now_ms);

/* The most events any one period admits (the smallest window's capacity); 0: no limit. */
uint32_t pace_capacity(const struct pace_limit *l);

/* When to look again after pace_allows() said no: the next slot boundary. */
uint64_t pace_retry_at(const struct pace_limit *l, uint64_t now_ms);

/* "200:1,6000:60"-style text of what is applied (after the margin), for the log. */
void pace_format(const struct pace_limit *l, char *buf, size_t size);
