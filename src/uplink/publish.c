/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Sending: telemetry batches from the spool, client attributes, and every other message
 * the uplink or the downlink publishes, paced below the Edge's rate limits (pacing.h),
 * with what must wait held in the device's outboxes (outbox.h) in order.
 *
 * Delivery: a batch leaves the spool only on its PUBACK (QoS 1). When a session drops,
 * its in-flight batches are sent again, oldest first, after the reconnect: the Edge may
 * see a batch twice, never a gap. With qos = 0 a batch counts as delivered when paho has
 * written it.
 *
 * Invariants: at most up_dev.window batches are in flight per device; every message sent
 * is counted against the device's and the tenant's limits, as ThingsBoard counts it.
 *
 * Thread: uplink.
 */
#include "config.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "tb/tb-json.h"
#include "uplink/gw-json.h"
#include "uplink/session.h"
#include "uplink/uplink-private.h"
#include "util/log.h"
#include "util/macros.h"
#include "util/time-util.h"

static const char TOPIC_TELEMETRY[] = "v1/devices/me/telemetry";
static const char TOPIC_RPC_REQUEST_PREFIX[] = "v1/devices/me/rpc/request/";

/* points: the data points ThingsBoard counts for it (0: a message without any). */
int pub_send(struct uplink *u, struct up_dev *d, const char *topic, const char *payload,
             size_t len, int qos, int *ret_token, uint32_t points)
{
    int r = session_publish(d->sess, topic, payload, len, qos, ret_token);
    uint64_t now = now_ms();

    if (r < 0) {
        log_debug("device '%s': publish to %s failed: %s", d->dc->name, topic, strerror(-r));
        return r;
    }
    if (!d->provisioning) {
        /* Every message counts, paced or not (pacing.h). */
        pace_count(&d->pace, &u->tenant_pace, points, now);
        pace_ledger_add(&d->ledger, points, now);
        if (qos)
            close_watch_published(&d->cw, now);
    }
    return r;
}

void uplink_count_message(struct uplink *u, struct up_dev *d)
{
    uint64_t now = now_ms();

    pace_count(&d->pace, &u->tenant_pace, 0, now);
    pace_ledger_add(&d->ledger, 0, now);
}

static bool is_upload(const char *topic)
{
    return strcmp(topic, TOPIC_TELEMETRY) == 0 || strcmp(topic, TOPIC_ATTRIBUTES) == 0 ||
           strcmp(topic, GW_TOPIC_TELEMETRY) == 0 || strcmp(topic, GW_TOPIC_ATTRIBUTES) == 0;
}

/* getSessionLimits is answered by ThingsBoard's MQTT transport itself, before anything is
 * counted (MqttTransportHandler): it costs nothing and waits for nothing. */
static bool free_of_charge(const char *topic, json_object *o)
{
    json_object *m;

    return strncmp(topic, TOPIC_RPC_REQUEST_PREFIX, strlen(TOPIC_RPC_REQUEST_PREFIX)) == 0 &&
           json_object_object_get_ex(o, "method", &m) &&
           strcmp(json_object_get_string(m), "getSessionLimits") == 0;
}

bool pub_limits_pending(const struct up_dev *d, uint64_t now)
{
    return !d->limits_known && now < d->limits_deadline_ms;
}

bool uplink_message_fits(struct uplink *u, struct up_dev *d, uint64_t *retry_at)
{
    uint64_t now = now_ms();

    if (pub_limits_pending(d, now)) {
        *retry_at = d->limits_deadline_ms;
        return false;
    }
    return pace_fits(&d->pace, &u->tenant_pace, 0, now, retry_at);
}

/* Something of d waits for room under its rate limits until at: serve it again then (the
 * deadline goes into the timer heap when d has been served). */
static void pace_later(struct up_dev *d, uint64_t now, uint64_t at)
{
    d->paced_until_ms = d->paced_until_ms > now ? MIN(d->paced_until_ms, at) : at;
}

/* Everything published here is paced: uploads (telemetry and attribute posts, which cost
 * a telemetry message and their data points) in d->held, other messages in d->held_msgs,
 * each in order, until they fit. RPC answers do not come here: they cannot wait. */
int uplink_publish_json(struct uplink *u, struct up_dev *d, const char *topic, json_object *o)
{
    size_t len;
    char *text;
    uint32_t points = is_upload(topic) ? tb_json_points(o) : 0;
    struct outbox *held = points ? &d->held : &d->held_msgs;
    uint64_t now = now_ms(), at;
    int r = -ENOTCONN;

    if (d->state != CS_UP || d->provisioning)
        return r;
    text = tb_json_text(o, &len);
    if (free_of_charge(topic, o)) {
        r = session_publish(d->sess, topic, text, len, u->cfg->edge.qos, NULL);
        if (r == 0)
            close_watch_published(&d->cw, now);
    } else if (outbox_peek(held) || pub_limits_pending(d, now)) {
        outbox_push(held, topic, text, len, points);
        r = 0;
    } else if (!pace_fits(&d->pace, &u->tenant_pace, points, now, &at)) {
        outbox_push(held, topic, text, len, points);
        pace_later(d, now, at);
        r = 0;
    } else {
        r = pub_send(u, d, topic, text, len, u->cfg->edge.qos, NULL, points);
    }
    free(text);
    return r;
}

/* Send what d->held or d->held_msgs keep while it fits. Returns false if something had to
 * stay. */
static bool flush_held(struct uplink *u, struct up_dev *d, struct outbox *held, uint64_t now)
{
    for (struct outbox_msg *m; (m = outbox_peek(held));) {
        uint64_t at;

        if (!pace_fits(&d->pace, &u->tenant_pace, m->points, now, &at)) {
            pace_later(d, now, at);
            return false;
        }
        if (pub_send(u, d, m->topic, m->text, m->len, u->cfg->edge.qos, NULL, m->points) < 0)
            return false;
        outbox_pop(held);
    }
    return true;
}

void pub_attributes(struct uplink *u, struct up_dev *d, json_object *set)
{
    if (u->gw)
        gw_pub_attributes(u, d, set); /* grouped with other devices' */
    else if (set && json_object_object_length(set) > 0)
        uplink_publish_json(u, d, TOPIC_ATTRIBUTES, set);
}

/* The gateway's own client attributes, so a dashboard can tell where a device hangs. */
void pub_gateway_attributes(struct uplink *u, struct up_dev *d)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "tbgw_version", json_object_new_string(PACKAGE_VERSION));
    json_object_object_add(o, "tbgw_bus", json_object_new_string(d->dc->bus->name));
    if (d->dc->bus->driver != DRIVER_SERIAL_LINE)
        json_object_object_add(o, "tbgw_unit_id", json_object_new_int(d->dc->unit_id));
    pub_attributes(u, d, o);
    json_object_put(o);
}

void pub_pump(struct uplink *u, struct up_dev *d)
{
    struct batch *b;
    int qos = u->cfg->edge.qos;
    uint64_t now, at;

    if (d->state != CS_UP || d->provisioning)
        return;
    now = now_ms();
    if (pub_limits_pending(d, now))
        return;
    /* Changed attributes gather in attrs_dirty until a post fits: one post, the latest
     * values, rather than a queue of every change. */
    if (d->attrs_dirty && json_object_object_length(d->attrs_dirty) > 0 &&
        !outbox_peek(&d->held)) {
        if (pace_fits(&d->pace, &u->tenant_pace, tb_json_points(d->attrs_dirty), now, &at)) {
            pub_attributes(u, d, d->attrs_dirty);
            json_object_put(d->attrs_dirty);
            d->attrs_dirty = NULL;
        } else {
            pace_later(d, now, at);
        }
    }
    /* Other messages go by their own limit; held attributes and OTA state go first, in
     * order, and telemetry after them. */
    flush_held(u, d, &d->held_msgs, now);
    if (!flush_held(u, d, &d->held, now) || u->gw)
        return; /* in gateway mode, telemetry goes grouped (gw_pump) */
    while (!d->lone_inflight && d->inflight < d->window &&
           (b = spool_next(u->spool, (uint32_t)d->dc->index))) {
        int token = 0;
        bool alone = spool_batch_alone(b);

        /* A suspect goes alone, first after the CONNACK: only then does a close prove it
         * bad (spool.c, "Rejection"). */
        if (alone && d->inflight)
            break;
        if (!pace_fits(&d->pace, &u->tenant_pace, b->n_values, now, &at)) {
            pace_later(d, now, at);
            break;
        }
        if (pub_send(u, d, TOPIC_TELEMETRY, b->payload, b->len, qos, &token, b->n_values) < 0)
            break;
        spool_sent(u->spool, b, token);
        if (d->inflight++ == 0)
            d->ack_since_ms = now;
        if (alone) {
            d->lone_inflight = true;
            break;
        }
    }
}

void pub_on_delivered(struct uplink *u, struct up_dev *d, int token)
{
    struct batch *b = spool_find_token(u->spool, (uint32_t)d->dc->index, token);

    if (close_watch_acked(&d->cw)) {
        atomic_store(&d->payload_refused, false);
        log_info("device '%s': ThingsBoard takes its uploads again", d->dc->name);
    }
    if (!b)
        return; /* an attribute or RPC answer, or a batch from before a reconnect */
    if (spool_batch_alone(b))
        d->lone_inflight = false;
    atomic_fetch_add_explicit(&u->delivered_values, b->n_values, memory_order_relaxed);
    atomic_fetch_add_explicit(&u->delivered_batches, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&d->delivered, b->n_values, memory_order_relaxed);
    spool_ack(u->spool, b);
    if (d->inflight)
        d->inflight--;
    d->ack_since_ms = now_ms();
    complain_release(&d->ack, "device '%s': the edge acknowledges again", d->dc->name);
}

void pub_on_delivery_failed(struct uplink *u, struct up_dev *d, int token)
{
    struct batch *b = spool_find_token(u->spool, (uint32_t)d->dc->index, token);

    if (!b)
        return;
    /* Not delivered: it goes again, in order, once the session is back. */
    b->inflight = false;
    if (d->inflight)
        d->inflight--;
}
