/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Gateway mode (edge.gateway), the uplink's half: one MQTT session, with the gateway
 * device's credentials, carries every device of the configuration over ThingsBoard's
 * gateway API (thingsboard-device-api.md §11).
 *
 * The gateway is an up_dev of its own, u->devs[u->n_devs], with a device_config built
 * from edge.gateway: connecting, backoff, provisioning, pacing and the close watch are a
 * device's (connection.c, publish.c). What differs is done here:
 *
 *   - after every CONNACK each device is announced (v1/gateway/connect with its type),
 *     at most ANNOUNCE_WINDOW unacknowledged at once and paced; a device is CS_UP from
 *     the PUBACK of its announcement, and only then does its data go out: ThingsBoard
 *     resolves the device before it acknowledges, so the first telemetry never creates it
 *     with the wrong profile;
 *   - telemetry: the devices that have something to send are queued (gw_want); a pump
 *     takes their spool batches oldest first and groups them into v1/gateway/telemetry
 *     messages (gw-json.h, never above 64 KiB), at most the gateway's window of them in
 *     flight. One PUBACK retires every batch of its message: the flight table maps the
 *     message's token to the devices it carried, whose batches carry that token;
 *   - client attributes gather per device (attrs_dirty) and go grouped in
 *     v1/gateway/attributes messages, the full set again at each announcement;
 *   - the gateway's own rate limits: getSessionLimits on the gateway's session, whose
 *     gatewayRateLimits govern the one session (or edge.rate_limits);
 *   - a lost session: every device leaves CS_UP, every batch in flight goes again in order
 *     after the next CONNACK (spool_requeue per device, with the quarantine rules);
 *   - a reload that removes devices: v1/gateway/disconnect for those. The session itself
 *     goes on in the new uplink (reconfigure.c, gw_resume()), which sends them, paced,
 *     and announces only the devices it adds or changes; when the session cannot go on
 *     (the edge settings changed), the old uplink sends them as it stops. Nobody else is ever
 *     disconnected: a restart of tbgw ends the session, and the next one announces
 *     everyone again.
 *
 * Invariants: a device's batches go out in spool order, and messages are published in
 * order on the one session, so each device's data reaches ThingsBoard in order; a batch
 * is in flight under the token of exactly one message in the flight table.
 *
 * Thread: uplink (uplink_gateway_leave on main, before the uplink stops).
 */
#include "config.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/device.h"
#include "downlink/router.h"
#include "tb/tb-json.h"
#include "uplink/gw-json.h"
#include "uplink/gw-route.h"
#include "uplink/session.h"
#include "uplink/uplink-private.h"
#include "util/log.h"
#include "util/macros.h"
#include "util/time-util.h"

/* Announcements awaiting their PUBACK at once: a thousand devices are announced in a few
 * round trips, and the Edge never sees a thousand device look-ups in one burst. */
#define ANNOUNCE_WINDOW 32u
#define NO_DEV UINT32_MAX
/* getSessionLimits ids of the gateway's own requests: far above the router's, which
 * count from 1 per device, so that an answer is told apart by its id alone. */
#define LIMITS_RPC_ID_BASE 0x40000000
/* Telemetry gathers this long after the first batch is queued before a message goes: a
 * poll of each device is one batch, and without a pause every poll would be a message of
 * its own. The gateway's message limit is the whole site's, so fewer, fuller messages
 * matter; this is the most it adds to the latency from poll to Edge. */
#define GATHER_MS 100u
/* A session whose announcements are not acknowledged for this long is that of a device
 * ThingsBoard does not take for a gateway (§11: its v1/gateway messages are never
 * acknowledged): say so, once. */
#define NOT_A_GATEWAY_MS 10000u

static const char TOPIC_RPC_REQUEST[] = "v1/devices/me/rpc/request/";
static const char TOPIC_RPC_RESPONSE[] = "v1/devices/me/rpc/response/";
static const char TOPIC_RPC_RESPONSE_ALL[] = "v1/devices/me/rpc/response/+";

enum flight_kind {
    FLIGHT_TELEMETRY, /* batches of devs[], all under token */
    FLIGHT_CONNECT,   /* the announcement of devs[0] */
    FLIGHT_OTHER,     /* a disconnect at stop: only waited for */
};

struct flight {
    int token;
    enum flight_kind kind;
    uint32_t *devs;
    size_t n_devs;
};

struct up_gw {
    struct device_config dc; /* the gateway: name, index = n_devs, credentials */
    struct up_dev *self;
    /* Devices still to announce in this session, in configuration order. */
    uint32_t *announce;
    size_t ann_head, ann_len;
    unsigned announcing;     /* announcements in flight */
    uint64_t announce_since_ms; /* the session's first announcement went out then */
    bool any_announced;      /* ... and one was acknowledged in this session */
    bool not_gateway_logged;
    /* Devices with something to send, a FIFO through up_dev.gw_next. */
    uint32_t q_head, q_tail;
    struct flight *fl;
    size_t n_fl, cap_fl;
    unsigned tele_inflight;  /* telemetry messages in flight */
    uint64_t gather_ms;      /* when queued telemetry began to gather, 0: none */
    bool lone;               /* a suspect batch is in flight alone */
    struct gw_msg msg;
    int limits_id;           /* the pending getSessionLimits request, or 0 */
    int next_limits_id;
    _Atomic size_t announced;
    char **leaving;          /* removed by a reload: disconnect them at stop (set on main) */
    size_t n_leaving;
    char **depart;           /* ... or, when the session was handed over, here (leave()): */
    size_t n_depart, depart_head; /* the next uplink's own list, from depart_head on */
};

struct up_dev *gw_self(const struct uplink *u)
{
    return u->gw ? u->gw->self : NULL;
}

bool gw_session_up(const struct uplink *u)
{
    const struct up_dev *g = gw_self(u);

    return g && g->state == CS_UP && !g->provisioning;
}

bool gw_announced(const struct uplink *u, const struct up_dev *d)
{
    return u->gw && d != u->gw->self && d->state == CS_UP;
}

size_t gw_announced_count(const struct uplink *u)
{
    return u->gw ? atomic_load(&u->gw->announced) : 0;
}

static uint32_t dev_index(const struct up_dev *d)
{
    return (uint32_t)d->dc->index;
}

/* ---- the flight table ---- */

static struct flight *flight_add(struct up_gw *g, enum flight_kind kind, int token)
{
    struct flight *f;

    if (g->n_fl == g->cap_fl) {
        g->cap_fl = g->cap_fl ? g->cap_fl * 2 : 16;
        g->fl = xreallocarray(g->fl, g->cap_fl, sizeof(*g->fl));
    }
    f = &g->fl[g->n_fl++];
    *f = (struct flight){.token = token, .kind = kind};
    return f;
}

static void flight_add_dev(struct flight *f, uint32_t dev)
{
    f->devs = xreallocarray(f->devs, f->n_devs + 1, sizeof(*f->devs));
    f->devs[f->n_devs++] = dev;
}

/* Take the flight with token out of the table (the caller frees its devs), or false. */
static bool flight_take(struct up_gw *g, int token, struct flight *ret)
{
    for (size_t i = 0; i < g->n_fl; i++) {
        if (g->fl[i].token != token)
            continue;
        *ret = g->fl[i];
        memmove(&g->fl[i], &g->fl[i + 1], (g->n_fl - i - 1) * sizeof(*g->fl));
        g->n_fl--;
        return true;
    }
    return false;
}

static void flights_clear(struct up_gw *g)
{
    for (size_t i = 0; i < g->n_fl; i++)
        free(g->fl[i].devs);
    g->n_fl = 0;
    g->announcing = 0;
    g->tele_inflight = 0;
    g->lone = false;
}

bool gw_inflight(const struct uplink *u)
{
    return u->gw && u->gw->n_fl > 0;
}

/* ---- sending ---- */

int gw_send(struct uplink *u, const char *topic, const char *payload, size_t len, int qos,
            int *ret_token)
{
    if (!gw_session_up(u))
        return -ENOTCONN;
    return pub_send(u, u->gw->self, topic, payload, len, qos, ret_token, 0);
}

void gw_want(struct uplink *u, struct up_dev *d)
{
    struct up_gw *g = u->gw;
    uint32_t i = dev_index(d);

    if (d->gw_queued)
        return;
    if (!(d->attrs_dirty && json_object_object_length(d->attrs_dirty) > 0) &&
        !spool_next(u->spool, i))
        return;
    d->gw_queued = true;
    d->gw_next = NO_DEV;
    if (g->q_head == NO_DEV)
        g->q_head = i;
    else
        u->devs[g->q_tail].gw_next = i;
    g->q_tail = i;
}

void gw_pub_attributes(struct uplink *u, struct up_dev *d, json_object *set)
{
    if (!set || json_object_object_length(set) == 0)
        return;
    if (!d->attrs_dirty)
        d->attrs_dirty = json_object_new_object();
    if (set != d->attrs_dirty) {
        json_object_object_foreach(set, k, v)
            json_object_object_add(d->attrs_dirty, k, json_object_get(v));
    }
    gw_want(u, d);
}

/* Something waits for room until at: the gateway is served again then. */
static void pace_later(struct up_dev *gd, uint64_t now, uint64_t at)
{
    gd->paced_until_ms = gd->paced_until_ms > now ? MIN(gd->paced_until_ms, at) : at;
}

/* body (taken) on topic, if the gateway's limits have room for one more message now; if
 * not, the gateway is served again when they have. 0 and *token, -EAGAIN, or -errno. */
static int send_small(struct uplink *u, uint64_t now, const char *topic, char *body, int *token)
{
    struct up_dev *gd = u->gw->self;
    uint64_t at;
    int r;

    if (!pace_fits(&gd->pace, &u->tenant_pace, 0, now, &at)) {
        pace_later(gd, now, at);
        free(body);
        return -EAGAIN;
    }
    r = pub_send(u, gd, topic, body, strlen(body), 1, token, 0);
    free(body);
    return r;
}

/* Announce the devices still to announce while the window and the limits allow. */
static void announce(struct uplink *u, uint64_t now)
{
    struct up_gw *g = u->gw;
    struct up_dev *gd = g->self;

    while (g->ann_len && g->announcing < ANNOUNCE_WINDOW) {
        struct up_dev *d = &u->devs[g->announce[g->ann_head]];
        int token = 0;

        if (!pace_level_allows(&d->pace, 0, now)) {
            pace_later(gd, now, pace_level_retry_at(&d->pace, 0, now));
            return;
        }
        if (send_small(u, now, GW_TOPIC_CONNECT, gw_connect_body(d->dc->name, d->dc->type),
                       &token) < 0)
            return;
        pace_level_take(&d->pace, 0, now);
        flight_add_dev(flight_add(g, FLIGHT_CONNECT, token), dev_index(d));
        if (!g->announce_since_ms)
            g->announce_since_ms = now;
        g->announcing++;
        g->ann_head = (g->ann_head + 1) % u->n_devs;
        g->ann_len--;
    }
}

/* The disconnects a reload handed over with the session (gw_resume()), paced like every
 * message of the session: a reload that removes many devices must not get the session it
 * keeps closed for exceeding the gateway's limits. */
static void leave(struct uplink *u, uint64_t now)
{
    struct up_gw *g = u->gw;

    while (g->depart_head < g->n_depart) {
        const char *name = g->depart[g->depart_head];
        int token = 0;

        if (send_small(u, now, GW_TOPIC_DISCONNECT, gw_disconnect_body(name), &token) < 0)
            return;
        flight_add(g, FLIGHT_OTHER, token);
        log_info("device '%s': removed from the configuration; disconnected from the gateway",
                 name);
        g->depart_head++;
    }
}

/* One v1/gateway/attributes message from the queued devices' changed attributes. Returns
 * false when nothing more can go now. */
static bool send_attributes(struct uplink *u, uint64_t now)
{
    struct up_gw *g = u->gw;
    struct up_dev *gd = g->self;
    uint32_t points = 0, sent[64], sent_points[64];
    size_t n_sent = 0, len;
    char *text;
    uint64_t at;
    bool more = false;

    gw_msg_init(&g->msg, GW_MSG_OBJECTS, gw_payload_limit(GW_TOPIC_ATTRIBUTES));
    for (uint32_t i = g->q_head; i != NO_DEV && n_sent < ARRAY_SIZE(sent); i = u->devs[i].gw_next) {
        struct up_dev *d = &u->devs[i];
        size_t alen;
        char *a;
        int r;

        uint32_t p;

        if (d->state != CS_UP || !d->attrs_dirty || json_object_object_length(d->attrs_dirty) == 0)
            continue;
        p = tb_json_points(d->attrs_dirty);
        if (!pace_level_allows(&d->pace, p, now)) { /* its share of the gateway's limits */
            pace_later(gd, now, pace_level_retry_at(&d->pace, p, now));
            continue;
        }
        a = tb_json_text(d->attrs_dirty, &alen);
        r = gw_msg_add(&g->msg, d->dc->name, a, alen);
        free(a);
        if (r == -ENOSPC) {
            more = true;
            break;
        }
        if (r < 0) {
            log_warning("device '%s': client attributes too large for one gateway message; "
                        "dropped", d->dc->name);
            json_object_put(d->attrs_dirty);
            d->attrs_dirty = NULL;
            continue;
        }
        points += p;
        sent_points[n_sent] = p;
        sent[n_sent++] = i;
    }
    if (n_sent == ARRAY_SIZE(sent))
        more = true;
    if (gw_msg_empty(&g->msg)) {
        gw_msg_clear(&g->msg);
        return false;
    }
    if (!pace_fits(&gd->pace, &u->tenant_pace, points, now, &at)) {
        pace_later(gd, now, at);
        gw_msg_clear(&g->msg);
        return false;
    }
    text = gw_msg_finish(&g->msg, &len);
    gw_msg_clear(&g->msg);
    if (pub_send(u, gd, GW_TOPIC_ATTRIBUTES, text, len, u->cfg->edge.qos, NULL, points) < 0) {
        free(text);
        return false;
    }
    free(text);
    for (size_t k = 0; k < n_sent; k++) {
        struct up_dev *d = &u->devs[sent[k]];
        pace_level_take(&d->pace, sent_points[k], now);
        json_object_put(d->attrs_dirty);
        d->attrs_dirty = NULL;
    }
    return more;
}

/* One v1/gateway/telemetry message from the queued devices' oldest unsent batches. Returns
 * false when nothing more can go now. */
static bool send_telemetry(struct uplink *u, uint64_t now)
{
    struct up_gw *g = u->gw;
    struct up_dev *gd = g->self;
    struct flight *f;
    struct batch **taken = NULL;
    uint32_t *devs = NULL, *dev_points = NULL, points = 0, cap = batch_points_cap(u, gd);
    size_t n_taken = 0, n_devs = 0, len;
    bool full = false, alone = false;
    int token = 0, r;
    char *text;
    uint64_t at = 0;

    if (g->lone || g->tele_inflight >= gd->window)
        return false;
    gw_msg_init(&g->msg, GW_MSG_ARRAYS, gw_payload_limit(GW_TOPIC_TELEMETRY));
    for (uint32_t i = g->q_head; i != NO_DEV && !full; i = u->devs[i].gw_next) {
        struct up_dev *d = &u->devs[i];
        bool added = false;
        uint32_t dpoints = 0;
        struct batch *b;

        if (d->state != CS_UP)
            continue;
        while ((b = spool_next(u->spool, i))) {
            /* The device's share of the gateway's limits (rateLimits): the rest of its
             * batches wait, the other devices' go. Its part of one message never holds
             * more points than a period of its share admits (the check alone would let
             * that through while its window is empty). */
            uint32_t dcap = pace_capacity(&d->pace.points);

            if (dpoints && dcap && dpoints + b->n_values > dcap)
                break;
            if (!pace_level_allows(&d->pace, dpoints + b->n_values, now)) {
                if (!dpoints)
                    pace_later(gd, now, pace_level_retry_at(&d->pace, b->n_values, now));
                break;
            }
            if (spool_batch_alone(b)) {
                /* A suspect goes alone, first after the CONNACK (spool.c, "Rejection"). */
                if (n_taken || g->tele_inflight) {
                    full = true;
                    break;
                }
                alone = true;
            }
            /* More points than a period admits would be refused however long it waited:
             * the message ends before them (a batch never holds more, batch.c). */
            if (n_taken && cap && points + b->n_values > cap) {
                full = true;
                break;
            }
            if (!pace_fits(&gd->pace, &u->tenant_pace, points + b->n_values, now, &at)) {
                full = true;
                break;
            }
            r = gw_msg_add(&g->msg, d->dc->name, b->payload, b->len);
            if (r == -ENOSPC) {
                full = true;
                break;
            }
            if (r < 0) {
                /* Cannot happen: batches close far below the limit. Leave it to the
                 * quarantine rather than loop. */
                log_error("device '%s': a batch of %zu bytes does not fit a gateway message",
                          d->dc->name, b->len);
                full = true;
                break;
            }
            spool_sent(u->spool, b, 0); /* spool_next() moves on; the token comes below */
            taken = xreallocarray(taken, n_taken + 1, sizeof(*taken));
            taken[n_taken++] = b;
            points += b->n_values;
            dpoints += b->n_values;
            if (!added) {
                devs = xreallocarray(devs, n_devs + 1, sizeof(*devs));
                dev_points = xreallocarray(dev_points, n_devs + 1, sizeof(*dev_points));
                devs[n_devs++] = i;
                added = true;
            }
            dev_points[n_devs - 1] = dpoints;
            if (alone) {
                full = true;
                break;
            }
        }
    }
    if (gw_msg_empty(&g->msg)) {
        gw_msg_clear(&g->msg);
        if (at > now)
            pace_later(gd, now, at);
        free(taken);
        free(devs);
        free(dev_points);
        return false;
    }
    text = gw_msg_finish(&g->msg, &len);
    gw_msg_clear(&g->msg);
    r = pub_send(u, gd, GW_TOPIC_TELEMETRY, text, len, u->cfg->edge.qos, &token, points);
    free(text);
    if (r < 0) {
        for (size_t k = 0; k < n_taken; k++)
            taken[k]->inflight = false;
        free(taken);
        free(devs);
        free(dev_points);
        return false;
    }
    for (size_t k = 0; k < n_taken; k++) {
        taken[k]->token = token;
        u->devs[taken[k]->device].inflight++;
    }
    for (size_t k = 0; k < n_devs; k++)
        pace_level_take(&u->devs[devs[k]].pace, dev_points[k], now);
    free(dev_points);
    f = flight_add(g, FLIGHT_TELEMETRY, token);
    f->devs = devs;
    f->n_devs = n_devs;
    if (g->tele_inflight++ == 0)
        gd->ack_since_ms = now;
    gd->inflight = g->tele_inflight;
    g->lone = alone;
    free(taken);
    /* With QoS 0 paho gives no acknowledgement: the batches are delivered as written. */
    if (u->cfg->edge.qos == 0)
        gw_on_delivered(u, token);
    return full && !alone && at <= now;
}

/* Drop the devices with nothing left to send from the queue. Returns whether telemetry
 * is left. */
static bool prune_queue(struct uplink *u)
{
    struct up_gw *g = u->gw;
    uint32_t i = g->q_head, prev = NO_DEV;
    bool telemetry = false;

    while (i != NO_DEV) {
        struct up_dev *d = &u->devs[i];
        uint32_t next = d->gw_next;
        bool has_batch = spool_next(u->spool, i) != NULL;
        bool keep = has_batch ||
                    (d->attrs_dirty && json_object_object_length(d->attrs_dirty) > 0);

        telemetry |= has_batch && d->state == CS_UP;
        if (keep) {
            prev = i;
        } else {
            d->gw_queued = false;
            if (prev == NO_DEV)
                g->q_head = next;
            else
                u->devs[prev].gw_next = next;
            if (g->q_tail == i)
                g->q_tail = prev;
        }
        i = next;
    }
    return telemetry;
}

/* No announcement acknowledged for long: the likeliest cause is the device's flag. */
static void check_gateway_flag(struct uplink *u, uint64_t now)
{
    struct up_gw *g = u->gw;

    if (g->any_announced || !g->announce_since_ms || g->not_gateway_logged)
        return;
    if (now < g->announce_since_ms + NOT_A_GATEWAY_MS) {
        pace_later(g->self, now, g->announce_since_ms + NOT_A_GATEWAY_MS);
        return;
    }
    g->not_gateway_logged = true;
    log_error("gateway '%s': ThingsBoard has acknowledged none of its %u device announcements "
              "in %us; is the device a gateway in ThingsBoard (\"Is gateway\", set before it "
              "connects)? The data is kept until it is",
              g->dc.name, g->announcing, NOT_A_GATEWAY_MS / 1000);
}

void gw_pump(struct uplink *u)
{
    struct up_gw *g = u->gw;
    struct up_dev *gd;
    uint64_t now;

    if (!gw_session_up(u))
        return;
    gd = g->self;
    now = now_ms();
    if (pub_limits_pending(gd, now))
        return;
    check_gateway_flag(u, now);
    pub_pump(u, gd); /* the gateway's own held messages */
    leave(u, now);
    announce(u, now);
    while (send_attributes(u, now))
        ;
    if (g->q_head != NO_DEV && !g->gather_ms)
        g->gather_ms = now;
    if (g->gather_ms && now < g->gather_ms + GATHER_MS && !atomic_load(&u->stop)) {
        pace_later(gd, now, g->gather_ms + GATHER_MS);
    } else {
        while (send_telemetry(u, now))
            ;
    }
    /* Telemetry left behind (window full, paced) goes as soon as it can, not after
     * another gathering pause. */
    if (!prune_queue(u))
        g->gather_ms = 0;
    if (gd->sess)
        session_wake_on_ack(gd->sess, g->tele_inflight >= gd->window || g->announcing > 0);
}

/* ---- acknowledgements ---- */

static void on_announced(struct uplink *u, uint32_t dev)
{
    struct up_dev *d = &u->devs[dev];

    if (d->state == CS_UP || !gw_session_up(u))
        return;
    conn_set_state(u, d, CS_UP);
    atomic_fetch_add(&u->gw->announced, 1);
    atomic_fetch_add_explicit(&d->sessions, 1, memory_order_relaxed);
    d->up_since_ms = u->gw->self->up_since_ms;
    /* Every client attribute known, as device mode sends them on each new session. */
    pub_gateway_attributes(u, d);
    gw_pub_attributes(u, d, d->attrs);
    /* The attribute sync the router starts now names the device too: its share of the
     * gateway's limits pays for it (what the downlink sends is counted on the gateway's
     * level only). */
    pace_level_take(&d->pace, 0, now_ms());
    router_connected(u->downlink, dev);
    gw_want(u, d);
}

void gw_on_delivered(struct uplink *u, int token)
{
    struct up_gw *g = u->gw;
    struct up_dev *gd = g->self;
    struct flight f;

    if (close_watch_acked(&gd->cw)) {
        atomic_store(&gd->payload_refused, false);
        log_info("gateway: ThingsBoard takes its uploads again");
    }
    if (!flight_take(g, token, &f))
        return; /* attributes, RPC answers: not tracked */
    switch (f.kind) {
    case FLIGHT_CONNECT:
        g->announcing--;
        g->any_announced = true;
        on_announced(u, f.devs[0]);
        break;
    case FLIGHT_TELEMETRY:
        for (size_t k = 0; k < f.n_devs; k++) {
            struct up_dev *d = &u->devs[f.devs[k]];
            struct batch *b;

            while ((b = spool_find_token(u->spool, f.devs[k], token))) {
                atomic_fetch_add_explicit(&u->delivered_values, b->n_values,
                                          memory_order_relaxed);
                atomic_fetch_add_explicit(&u->delivered_batches, 1, memory_order_relaxed);
                atomic_fetch_add_explicit(&d->delivered, b->n_values, memory_order_relaxed);
                spool_ack(u->spool, b);
                if (d->inflight)
                    d->inflight--;
            }
            uplink_mark(u, d); /* its window has room again */
        }
        g->tele_inflight--;
        gd->inflight = g->tele_inflight;
        g->lone = false;
        gd->ack_since_ms = now_ms();
        complain_release(&gd->ack, "gateway: the edge acknowledges again");
        break;
    case FLIGHT_OTHER:
        break;
    }
    free(f.devs);
}

void gw_on_delivery_failed(struct uplink *u, int token)
{
    struct up_gw *g = u->gw;
    struct flight f;

    if (!flight_take(g, token, &f))
        return;
    if (f.kind == FLIGHT_CONNECT) {
        /* Announce it again once the session is back (gw_on_connected does). */
        g->announcing--;
    } else if (f.kind == FLIGHT_TELEMETRY) {
        for (size_t k = 0; k < f.n_devs; k++) {
            struct batch *b;

            while ((b = spool_find_token(u->spool, f.devs[k], token))) {
                b->inflight = false;
                if (u->devs[f.devs[k]].inflight)
                    u->devs[f.devs[k]].inflight--;
            }
            gw_want(u, &u->devs[f.devs[k]]);
        }
        g->tele_inflight--;
        g->self->inflight = g->tele_inflight;
        g->lone = false;
    }
    free(f.devs);
}

/* ---- the session ---- */

static void ask_limits(struct uplink *u)
{
    struct up_gw *g = u->gw;
    struct up_dev *gd = g->self;
    char topic[64];
    static const char body[] = "{\"method\":\"getSessionLimits\",\"params\":{}}";

    if (u->cfg->edge.rate_limits_set)
        return;
    g->limits_id = LIMITS_RPC_ID_BASE + (g->next_limits_id++ & 0xffffff);
    snprintf(topic, sizeof(topic), "%s%d", TOPIC_RPC_REQUEST, g->limits_id);
    /* Answered by the transport itself, before anything is counted (publish.c). */
    if (session_publish(gd->sess, topic, body, sizeof(body) - 1, 1, NULL) < 0) {
        g->limits_id = 0;
        gd->limits_known = true;
        return;
    }
    /* Free for a device; a gateway's limits count every message of its session. */
    uplink_count_message(u, gd);
    if (!gd->limits_known)
        gd->limits_deadline_ms = now_ms() + LIMITS_TIMEOUT_MS;
}

void gw_on_connected(struct uplink *u)
{
    struct up_gw *g = u->gw;
    struct up_dev *gd = g->self;

    flights_clear(g);
    g->ann_head = 0;
    g->ann_len = 0;
    g->announce_since_ms = 0;
    g->any_announced = false;
    for (size_t i = 0; i < u->n_devs; i++)
        g->announce[g->ann_len++] = (uint32_t)i;
    /* ThingsBoard counts the session's open and each subscribe as a message. */
    for (int i = 0; i < 5; i++)
        uplink_count_message(u, gd);
    /* No session state on the server: subscribe after every CONNACK. QoS 1 on the gateway
     * topics (§11); the device-mode answers are for the gateway's own client RPCs. */
    session_subscribe(gd->sess, GW_TOPIC_ATTRIBUTES, 1);
    session_subscribe(gd->sess, GW_TOPIC_RPC, 1);
    session_subscribe(gd->sess, GW_TOPIC_ATTRIBUTES_RESPONSE, 1);
    session_subscribe(gd->sess, TOPIC_RPC_RESPONSE_ALL, 1);
    ask_limits(u);
    log_info("gateway: connected; announcing %zu device%s", u->n_devs,
             u->n_devs == 1 ? "" : "s");
    gw_pump(u);
}

void gw_on_lost(struct uplink *u, bool refused)
{
    struct up_gw *g = u->gw;
    struct up_dev *gd = g->self;
    uint64_t since = gd->up_since_ms;

    /* Every batch in flight goes again, in order, after the next CONNACK; each device
     * judges its own (the quarantine rules). Batches of a device that were not in flight
     * stay where they are. */
    for (size_t k = 0; k < g->n_fl; k++) {
        struct flight *f = &g->fl[k];

        if (f->kind != FLIGHT_TELEMETRY)
            continue;
        for (size_t j = 0; j < f->n_devs; j++) {
            struct up_dev *d = &u->devs[f->devs[j]];
            if (d->inflight) {
                spool_requeue(u->spool, f->devs[j], since, !refused);
                d->inflight = 0;
            }
        }
    }
    flights_clear(g);
    g->ann_len = 0;
    g->limits_id = 0;
    for (size_t i = 0; i < u->n_devs; i++) {
        struct up_dev *d = &u->devs[i];

        d->inflight = 0;
        if (d->state == CS_UP) {
            conn_set_state(u, d, CS_WAIT);
            atomic_fetch_sub(&g->announced, 1);
            router_disconnected(u->downlink, (uint32_t)i);
        }
        outbox_clear(&d->held_msgs);
    }
}

void gw_on_message(struct uplink *u, const char *topic, const char *payload, size_t len)
{
    struct up_gw *g = u->gw;
    size_t n = strlen(TOPIC_RPC_RESPONSE);

    if (strncmp(topic, TOPIC_RPC_RESPONSE, n) == 0 && g->limits_id &&
        atoi(topic + n) == g->limits_id) {
        g->limits_id = 0;
        limits_apply(u, g->self, 0, payload, len, "gatewayRateLimits");
        uplink_mark(u, g->self);
        return;
    }
    /* v1/gateway/..., and the device-mode answers the uplink did not ask for (the clock
     * check's getTime): the downlink's. */
    gw_route_downlink(u, topic, payload, len);
}

/* ---- reload ---- */

void uplink_gateway_leave(struct uplink *u, const char *const *names, size_t n)
{
    struct up_gw *g = u->gw;

    if (!g)
        return;
    for (size_t i = 0; i < n; i++) {
        g->leaving = xreallocarray(g->leaving, g->n_leaving + 1, sizeof(*g->leaving));
        g->leaving[g->n_leaving++] = xstrdup(names[i]);
    }
}

void gw_leave_publish(struct uplink *u)
{
    struct up_gw *g = u->gw;

    /* A session that goes on to the next uplink: that one sends them, paced (leave()). */
    if (uplink_hands_over(g->self))
        return;

    for (size_t i = 0; i < g->n_leaving; i++) {
        char *body = gw_disconnect_body(g->leaving[i]);
        int token = 0;

        int r = gw_send(u, GW_TOPIC_DISCONNECT, body, strlen(body), 1, &token);

        free(body);
        if (r == 0) {
            flight_add(g, FLIGHT_OTHER, token);
            log_info("device '%s': removed from the configuration; disconnected from the "
                     "gateway", g->leaving[i]);
        } else {
            log_warning("device '%s': removed from the configuration while the gateway is "
                        "offline; ThingsBoard keeps it until its inactivity timeout",
                        g->leaving[i]);
        }
    }
}

/* A reload handed the gateway's session to u (reconfigure.c), and with it the devices the
 * reload left unchanged, announced or not. Those that are announced stay so; the others
 * (added, changed, or not yet acknowledged) are announced now, on the same session, after
 * the disconnects of the devices the reload removed (leave()). The
 * old uplink's flights stay behind: their batches are in the spool as unacknowledged and go
 * again, and a late acknowledgement of one finds no flight here. */
void gw_resume(struct uplink *u, struct uplink *old)
{
    struct up_gw *g = u->gw;
    struct up_gw *og = old->gw;

    g->ann_head = 0;
    g->ann_len = 0;
    for (size_t i = 0; i < u->n_devs; i++) {
        if (u->devs[i].state == CS_UP)
            atomic_fetch_add(&g->announced, 1);
        else
            g->announce[g->ann_len++] = (uint32_t)i;
    }
    g->any_announced = og->any_announced;
    g->announce_since_ms = og->announce_since_ms;
    g->not_gateway_logged = og->not_gateway_logged;
    g->limits_id = og->limits_id;
    g->next_limits_id = og->next_limits_id;
    g->depart = og->leaving;
    g->n_depart = og->n_leaving;
    og->leaving = NULL;
    og->n_leaving = 0;
    if (g->ann_len)
        log_info("gateway: session kept; announcing %zu device%s", g->ann_len,
                 g->ann_len == 1 ? "" : "s");
}

/* ---- life ---- */

/* The name the gateway provisions itself with, and logs under: the host's. */
static char *gateway_name(void)
{
    char host[256];

    if (gethostname(host, sizeof(host)) < 0 || !host[0])
        return xstrdup("tbgw");
    host[sizeof(host) - 1] = '\0';
    return xstrdup(host);
}

int gw_new(struct uplink *u)
{
    struct up_gw *g = xcalloc(1, sizeof(*g));

    g->dc.name = gateway_name();
    g->dc.index = u->n_devs;
    g->dc.cred = u->cfg->edge.gw_cred; /* shallow: the configuration owns the strings */
    g->dc.origin = u->cfg->edge.gw_origin;
    g->self = &u->devs[u->n_devs];
    g->self->dc = &g->dc;
    /* ThingsBoard's gateway limits count every message of the session (telemetry too). */
    g->self->pace.every_msg = true;
    g->announce = xcalloc(u->n_devs ? u->n_devs : 1, sizeof(*g->announce));
    g->q_head = g->q_tail = NO_DEV;
    g->next_limits_id = 1;
    u->gw = g;
    return 0;
}

void gw_free(struct uplink *u)
{
    struct up_gw *g = u->gw;

    if (!g)
        return;
    flights_clear(g);
    free(g->fl);
    gw_msg_clear(&g->msg);
    free(g->announce);
    for (size_t i = 0; i < g->n_leaving; i++)
        free(g->leaving[i]);
    free(g->leaving);
    for (size_t i = 0; i < g->n_depart; i++)
        free(g->depart[i]);
    free(g->depart);
    free(g->dc.name);
    free(g);
    u->gw = NULL;
}
