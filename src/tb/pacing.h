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
 *
 * A pace_level is the three limits of one level of a tenant profile, counted the way
 * ThingsBoard's transport counts them (DefaultTransportRateLimitService.checkEntityRateLimit,
 * called from DefaultTransportService for each message kind):
 *   - a message with data points (telemetry, attribute posts) costs one telemetry message
 *     and its data points, and nothing against "messages";
 *   - every other message (session open and close, attribute and RPC subscribes, RPC
 *     replies, client RPCs, attribute requests, OTA chunk requests) costs one message;
 *   - the transport's own getSessionLimits answer costs nothing.
 * The tenant's level is checked before the device's and is shared by all the tenant's
 * devices, so the gateway keeps one for all its sessions besides one per device.
 *
 * Pure: no I/O, no locks, no globals. Thread: the caller's (the uplink's).
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PACE_WINDOWS 4
#define PACE_SLOTS 10

/* Every device has three limits of PACE_WINDOWS windows (and a gateway has them per
 * device too), so a window is kept small: slot numbers are compared modulo 2^32 (a slot
 * is at least 100 ms, so they wrap after 13 years, and only a slot untouched for exactly
 * that long could be mistaken), and a counter saturates at UINT32_MAX, which is beyond
 * any capacity. */
struct pace_window {
    uint32_t cap;                       /* events per period, with a safety margin applied */
    uint32_t slot_ms;                   /* period / PACE_SLOTS */
    uint32_t slot_id[PACE_SLOTS + 1];   /* slot number (mod 2^32) each counter belongs to */
    uint32_t count[PACE_SLOTS + 1];
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

/* The longest period of l in milliseconds; 0: no limit. */
uint64_t pace_period_ms(const struct pace_limit *l);

/* Count l as full at now_ms, as if the server's bucket were empty: nothing more is
 * admitted until a whole period has passed. */
void pace_fill(struct pace_limit *l, uint64_t now_ms);

struct pace_level {
    struct pace_limit msgs, tmsgs, points;
    /* A gateway session's level (gatewayRateLimits): every message costs one message, and
     * one with data points costs its telemetry message and its points besides. */
    bool every_msg;
};

/* Whether any limit of the level is set. */
bool pace_level_set(const struct pace_level *v);

/* Whether a message with points data points (0: a message without any) fits now. */
bool pace_level_allows(const struct pace_level *v, uint32_t points, uint64_t now_ms);

/* Count such a message. */
void pace_level_take(struct pace_level *v, uint32_t points, uint64_t now_ms);

/* When to look again after pace_level_allows() said no for such a message. */
uint64_t pace_level_retry_at(const struct pace_level *v, uint32_t points, uint64_t now_ms);

/* Count every limit of the level full at now_ms (pace_fill). */
void pace_level_fill(struct pace_level *v, uint64_t now_ms);

/* The longest period of the level, in milliseconds; 0: no limit. */
uint64_t pace_level_period_ms(const struct pace_level *v);

/* Whether a message of a device fits under both its own level and its tenant's; if not,
 * *retry_at is when to look again. Counts nothing. */
bool pace_fits(const struct pace_level *device, const struct pace_level *tenant, uint32_t points,
               uint64_t now_ms, uint64_t *retry_at);

/* A message of a device under both its own level and its tenant's: admitted (and counted
 * against both) only if both have room; otherwise *retry_at is when to look again. */
bool pace_admit(struct pace_level *device, struct pace_level *tenant, uint32_t points,
                uint64_t now_ms, uint64_t *retry_at);

/* The last messages of a device, whatever the limits: a limit learnt (or changed) after
 * they were sent still has them counted (pace_replay). */
#define PACE_LEDGER 64

struct pace_ledger {
    uint64_t ms[PACE_LEDGER];
    uint32_t points[PACE_LEDGER];
    unsigned next, n;
};

/* PACE_ALL_MSGS: the messages limit of an every_msg level (every message counts). */
enum pace_kind { PACE_MSGS, PACE_TMSGS, PACE_POINTS, PACE_ALL_MSGS };

void pace_ledger_add(struct pace_ledger *g, uint32_t points, uint64_t now_ms);

/* Count into l (the level's limit of that kind) what the ledger holds. */
void pace_replay(struct pace_limit *l, enum pace_kind kind, const struct pace_ledger *g);

/* A message sent whether or not it fits (RPC replies, subscribes, session opens): it still
 * uses up the allowance of both levels. */
void pace_count(struct pace_level *device, struct pace_level *tenant, uint32_t points,
                uint64_t now_ms);
