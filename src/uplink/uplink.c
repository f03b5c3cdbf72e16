/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The uplink thread.
 *
 * One loop, asleep in poll() on one eventfd until there is work (bus threads write it once
 * per poll; the event queue once per wake-up) or until the earliest deadline. A pass:
 *   1. take every event: connection outcomes, PUBACKs, downlink messages, finished commands;
 *   2. drain every ring: telemetry samples go into the device's open batch, attribute
 *      samples into the device's attribute set;
 *   3. take the devices whose deadline has come from the timer heap (timers.h: one
 *      deadline per device: reconnect, batch age, pacing, provisioning, ack patience);
 *   4. serve each device that steps 1-3 touched, once: its due deadlines, closing its
 *      batch when it can send (so one poll is one message), is full or has aged, publishing
 *      the oldest unsent batches while fewer than WINDOW are in flight and pacing allows;
 *      its next deadline goes back into the heap;
 *   5. every TICK_MS: spool commits, downlink timers, health, the status snapshot.
 * A pass costs what changed: nothing walks every device on a timer. After a pass that took
 * samples the thread lingers LINGER_US, so that under load it wakes a bounded number of
 * times a second whatever the number of devices.
 * All session state lives here, so none of it needs a lock.
 *
 * Delivery: a batch leaves the spool only on its PUBACK (QoS 1). When a session drops,
 * its in-flight batches are sent again, oldest first, after the reconnect: the Edge may
 * see a batch twice, never a gap. With qos = 0 a batch counts as delivered when paho has
 * written it.
 *
 * Reconnects: exponential backoff from 1 s to 60 s with full jitter, so a hundred devices
 * do not reconnect in the same millisecond after the Edge restarts. Refused credentials
 * (CONNACK 5, or 2) are logged once per device and retried only every few minutes; "server
 * unavailable" (3) and network errors use the normal backoff. Each state change is logged
 * once.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "config/config.h"
#include "core/command.h"
#include "core/device.h"
#include "core/keytab.h"
#include "core/ring.h"
#include "core/sample.h"
#include "downlink/port.h"
#include "downlink/router.h"
#include "uplink/credstore.h"
#include "uplink/events.h"
#include "uplink/session.h"
#include "tb/tb-json.h"
#include "uplink/timers.h"
#include "uplink/tls-check.h"
#include "uplink/uplink.h"
#include "uplink/uplink-private.h"
#include "drivers/driver.h"
#include "util/clock.h"
#include "util/complain.h"
#include "util/fileio.h"
#include "util/log.h"
#include "util/macros.h"
#include "util/time-util.h"

#define WINDOW 4                  /* QoS 1 messages in flight per device */
#define DRAIN_CHUNK 512
#define BACKOFF_MIN_MS 1000u
#define BACKOFF_MAX_MS 60000u
#define AUTH_BACKOFF_MIN_MS 60000u   /* refused credentials: they rarely fix themselves */
#define AUTH_BACKOFF_MAX_MS 900000u
#define PROVISION_TIMEOUT_MS 30000u
/* The gateway-wide timers (spool commits, the downlink's deadlines, the status snapshot)
 * run this often; an idle uplink wakes for nothing else. */
#define TICK_MS 500u
/* CONNECTs in flight at once: a thousand devices come online in a few seconds without
 * the Edge seeing a thousand TLS handshakes in the same instant. */
#define MAX_CONNECTING 32u
#define NO_DEVICE UINT32_MAX
/* After a pass that took samples, the uplink lets the next ones gather this long before it
 * looks again: under load it then wakes at most this often, whatever the number of
 * devices, and each wake publishes every device whose poll completed meanwhile, one
 * message each, which paho's threads and the kernel also handle as one burst. It is the
 * most it adds to the latency from poll to Edge; an idle uplink sleeps until there is work. */
#define LINGER_US 20000u
/* How long telemetry waits, after a device's first connect, for the Edge to tell its rate
 * limits. ThingsBoard answers getSessionLimits in its transport (3.8 and later) within
 * milliseconds; an older one passes it to the rule chain, which does not answer. */
#define LIMITS_TIMEOUT_MS 3000u

static const char TOPIC_TELEMETRY[] = "v1/devices/me/telemetry";
static const char TOPIC_ATTRIBUTES[] = "v1/devices/me/attributes";
static const char TOPIC_RPC_REQUEST[] = "v1/devices/me/rpc/request/+";
static const char TOPIC_RPC_REQUEST_PREFIX[] = "v1/devices/me/rpc/request/";
static const char TOPIC_PROVISION_REQUEST[] = "/provision/request";
static const char TOPIC_PROVISION_RESPONSE[] = "/provision/response";

/* ---- helpers -------------------------------------------------------------------------- */

static uint64_t jitter(struct uplink *u, uint64_t max_ms)
{
    /* xorshift64*: jitter needs spread, not secrecy. */
    u->rng ^= u->rng >> 12;
    u->rng ^= u->rng << 25;
    u->rng ^= u->rng >> 27;
    return max_ms ? (u->rng * 2685821657736338717ull) % (max_ms + 1) : 0;
}

static void set_state(struct uplink *u, struct up_dev *d, enum conn_state st)
{
    bool was_up = d->state == CS_UP;

    if (d->state == CS_CONNECTING && st != CS_CONNECTING)
        u->n_connecting--;
    else if (d->state != CS_CONNECTING && st == CS_CONNECTING)
        u->n_connecting++;
    d->state = st;
    if (was_up != (st == CS_UP))
        atomic_fetch_add(&u->n_connected, st == CS_UP ? 1 : -1);
    atomic_store(&d->connected, st == CS_UP);
    atomic_store(&d->public_state, (int)st);
}

/* Something happened to d: serve it in this pass (see serve()). */
static void mark(struct uplink *u, struct up_dev *d)
{
    if (d->ready)
        return;
    d->ready = true;
    d->next_ready = u->ready_head;
    u->ready_head = (uint32_t)d->dc->index;
}

static void free_creds(struct up_creds *c)
{
    free(c->client_id);
    free(c->username);
    free(c->password);
    memset(c, 0, sizeof(*c));
}

static char *dup_or_null(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

/* The credentials a device connects with now: its configured ones, or what it obtained
 * by provisioning, or "provision" when it still has to. */
static void resolve_creds(struct uplink *u, struct up_dev *d)
{
    const struct credentials *c = &d->dc->cred;
    const struct tb_provisioned *p;

    free_creds(&d->creds);
    d->provisioning = false;
    switch (c->kind) {
    case CRED_TOKEN:
        d->creds.username = xstrdup(c->token);
        break;
    case CRED_MQTT:
        d->creds.client_id = dup_or_null(c->client_id);
        d->creds.username = dup_or_null(c->username);
        d->creds.password = dup_or_null(c->password);
        break;
    case CRED_X509:
        break;
    case CRED_PROVISION:
        p = credstore_get(u->creds, d->dc->name);
        if (p && p->type == PROV_TOKEN) {
            d->creds.username = xstrdup(p->token);
        } else if (p && p->type == PROV_MQTT_BASIC) {
            d->creds.client_id = dup_or_null(p->client_id);
            d->creds.username = dup_or_null(p->username);
            d->creds.password = dup_or_null(p->password);
        } else {
            d->creds.username = xstrdup("provision");
            d->provisioning = true;
        }
        break;
    }
}

/* What a device tried to connect with, for the refusal message: names in full, secrets
 * only by their length (a truncated token shows; the token itself never reaches a log). */
static const char *describe_creds(const struct up_dev *d, char *buf, size_t size)
{
    const struct credentials *c = &d->dc->cred;
    const struct up_creds *k = &d->creds;
    char m1[24], m2[24];

    if (d->provisioning)
        snprintf(buf, size, "the provisioning login");
    else if (c->kind == CRED_X509)
        snprintf(buf, size, "X.509 certificate '%s'", c->cert_file);
    else if (!k->client_id && !k->password)
        snprintf(buf, size, "%saccess token %s", c->kind == CRED_PROVISION ? "provisioned " : "",
                 log_mask(k->username, m1));
    else
        snprintf(buf, size, "%sclient id '%s', user '%s', password %s",
                 c->kind == CRED_PROVISION ? "provisioned " : "", k->client_id ? k->client_id : "",
                 k->username ? k->username : "", log_mask(k->password, m2));
    return buf;
}

/* (Re)create the paho client when the client id the credentials need has changed. */
static int ensure_session(struct uplink *u, struct up_dev *d)
{
    char *cid = d->creds.client_id ? xstrdup(d->creds.client_id)
                                   : xasprintf("tbgw-%s", d->dc->name);

    if (d->sess && strcmp(session_client_id(d->sess), cid) == 0) {
        free(cid);
        return 0;
    }
    d->sess = session_free(d->sess);
    d->sess = session_new((uint32_t)d->dc->index, d->dc->name, cid, &u->cfg->edge, &u->evq);
    free(cid);
    return d->sess ? 0 : -ENOMEM;
}

static void schedule_retry(struct uplink *u, struct up_dev *d, bool auth)
{
    uint64_t lo = auth ? AUTH_BACKOFF_MIN_MS : BACKOFF_MIN_MS;
    uint64_t hi = auth ? AUTH_BACKOFF_MAX_MS : BACKOFF_MAX_MS;

    d->backoff_ms = d->backoff_ms ? MIN(d->backoff_ms * 2, hi) : lo;
    if (d->backoff_ms < lo)
        d->backoff_ms = lo;
    /* Full jitter over the upper half keeps a minimum gap and spreads the herd. */
    d->retry_at_ms = now_ms() + d->backoff_ms / 2 + jitter(u, d->backoff_ms / 2);
    set_state(u, d, CS_WAIT);
}

static void start_connect(struct uplink *u, struct up_dev *d)
{
    struct session_creds sc = {0};
    int r;

    if (ensure_session(u, d) < 0) {
        schedule_retry(u, d, false);
        return;
    }
    sc.username = d->creds.username;
    sc.password = d->creds.password;
    if (d->dc->cred.kind == CRED_X509) {
        sc.cert_file = d->dc->cred.cert_file;
        sc.key_file = d->dc->cred.key_file;
    }
    r = session_connect(d->sess, &sc);
    if (r < 0) {
        schedule_retry(u, d, false);
        return;
    }
    set_state(u, d, CS_CONNECTING);
}

/* ---- publishing ------------------------------------------------------------------------- */

/* points: the data points ThingsBoard counts for it (0: a message without any). */
static int publish(struct uplink *u, struct up_dev *d, const char *topic, const char *payload,
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
    return strcmp(topic, TOPIC_TELEMETRY) == 0 || strcmp(topic, TOPIC_ATTRIBUTES) == 0;
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

/* Until the Edge has told its limits (or the wait for them is over), what counts waits. */
static bool limits_pending(const struct up_dev *d, uint64_t now)
{
    return !d->limits_known && now < d->limits_deadline_ms;
}

bool uplink_message_fits(struct uplink *u, struct up_dev *d, uint64_t *retry_at)
{
    uint64_t now = now_ms();

    if (limits_pending(d, now)) {
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
    } else if (outbox_peek(held) || limits_pending(d, now)) {
        outbox_push(held, topic, text, len, points);
        r = 0;
    } else if (!pace_fits(&d->pace, &u->tenant_pace, points, now, &at)) {
        outbox_push(held, topic, text, len, points);
        pace_later(d, now, at);
        r = 0;
    } else {
        r = publish(u, d, topic, text, len, u->cfg->edge.qos, NULL, points);
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
        if (publish(u, d, m->topic, m->text, m->len, u->cfg->edge.qos, NULL, m->points) < 0)
            return false;
        outbox_pop(held);
    }
    return true;
}

static void publish_attributes(struct uplink *u, struct up_dev *d, json_object *set)
{
    if (set && json_object_object_length(set) > 0)
        uplink_publish_json(u, d, TOPIC_ATTRIBUTES, set);
}

/* The gateway's own client attributes, so a dashboard can tell where a device hangs. */
static void publish_gateway_attributes(struct uplink *u, struct up_dev *d)
{
    json_object *o = json_object_new_object();

    json_object_object_add(o, "tbgw_version", json_object_new_string(PACKAGE_VERSION));
    json_object_object_add(o, "tbgw_bus", json_object_new_string(d->dc->bus->name));
    if (d->dc->bus->driver != DRIVER_SERIAL_LINE)
        json_object_object_add(o, "tbgw_unit_id", json_object_new_int(d->dc->unit_id));
    publish_attributes(u, d, o);
    json_object_put(o);
}

static void pump(struct uplink *u, struct up_dev *d)
{
    struct batch *b;
    int qos = u->cfg->edge.qos;
    uint64_t now, at;

    if (d->state != CS_UP || d->provisioning)
        return;
    now = now_ms();
    if (limits_pending(d, now))
        return;
    /* Changed attributes gather in attrs_dirty until a post fits: one post, the latest
     * values, rather than a queue of every change. */
    if (d->attrs_dirty && json_object_object_length(d->attrs_dirty) > 0 &&
        !outbox_peek(&d->held)) {
        if (pace_fits(&d->pace, &u->tenant_pace, tb_json_points(d->attrs_dirty), now, &at)) {
            publish_attributes(u, d, d->attrs_dirty);
            json_object_put(d->attrs_dirty);
            d->attrs_dirty = NULL;
        } else {
            pace_later(d, now, at);
        }
    }
    /* Other messages go by their own limit; held attributes and OTA state go first, in
     * order, and telemetry after them. */
    flush_held(u, d, &d->held_msgs, now);
    if (!flush_held(u, d, &d->held, now))
        return;
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
        if (publish(u, d, TOPIC_TELEMETRY, b->payload, b->len, qos, &token, b->n_values) < 0)
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

static void close_batch(struct uplink *u, struct up_dev *d)
{
    size_t len;
    uint32_t n = (uint32_t)d->batch.n_values;
    int64_t first = d->batch.first_ts;
    char *text;

    if (tb_batch_empty(&d->batch))
        return;
    u->batching_values -= n;
    text = tb_batch_finish(&d->batch, &len);
    spool_append(u->spool, (uint32_t)d->dc->index, first, n, text, len);
}

static uint64_t batch_max_age_ms(const struct uplink *u)
{
    return (uint64_t)u->cfg->storage.commit_interval_ms / 2;
}

/* A batch closes when the device can send it now, when it is full, or when it has waited
 * long enough that the spool must have it. A bus pushes a whole poll before it wakes the
 * uplink, so "can send now" makes one poll one message. */
static void close_if_ready(struct uplink *u, struct up_dev *d, uint64_t now)
{
    bool can_send;

    if (tb_batch_empty(&d->batch))
        return;
    can_send = d->state == CS_UP && !d->provisioning && d->inflight < d->window &&
               spool_next(u->spool, (uint32_t)d->dc->index) == NULL;
    if (can_send || d->batch.bytes >= TB_BATCH_SOFT_MAX ||
        now - d->batch_opened_ms >= batch_max_age_ms(u))
        close_batch(u, d);
}

/* ---- samples -------------------------------------------------------------------------- */

/* Whether the open batch holds as many data points as a period of the device's or the
 * tenant's limit admits: more would be refused however long it waited. */
static bool batch_full_of_points(struct uplink *u, struct up_dev *d)
{
    uint32_t dev = pace_capacity(&d->pace.points), ten = pace_capacity(&u->tenant_pace.points);
    uint32_t cap = !dev ? ten : !ten ? dev : MIN(dev, ten);

    return cap && d->batch.n_values >= cap;
}

static void take_sample(struct uplink *u, struct sample *s)
{
    struct up_dev *d;
    struct value v = sample_value(s);
    const char *key;

    if (s->device >= u->n_devs)
        goto out;
    d = &u->devs[s->device];
    mark(u, d);
    key = keytab_get(d->dev->keys, s->key);
    if (s->flags & SAMPLE_ATTRIBUTE) {
        json_object *jv = tb_json_value(&v);
        if (!jv) {
            atomic_fetch_add(&u->rejected_values, 1);
            goto out;
        }
        u->attribute_values++;
        json_object_object_add(d->attrs, key, json_object_get(jv));
        if (!d->attrs_dirty)
            d->attrs_dirty = json_object_new_object();
        json_object_object_add(d->attrs_dirty, key, jv);
        goto out;
    }
    /* A message with more data points than the Edge takes in a period would be refused
     * however long it waited. */
    if (d->batch.bytes >= TB_BATCH_SOFT_MAX || batch_full_of_points(u, d))
        close_batch(u, d);
    if (tb_batch_empty(&d->batch))
        d->batch_opened_ms = now_ms();
    if (tb_batch_add(&d->batch, s->ts_ms, key, &v)) {
        u->batching_values++;
    } else {
        atomic_fetch_add(&u->rejected_values, 1);
        if (!d->rejected_logged) {
            d->rejected_logged = true;
            log_warning("device '%s': key '%s' has a value ThingsBoard cannot store (beyond "
                        "a signed 64-bit integer); such values are not sent",
                        d->dc->name, key);
        }
    }
out:
    value_clear(&v);
}

static void drain_rings(struct uplink *u)
{
    struct sample buf[DRAIN_CHUNK];

    for (size_t r = 0; r < u->n_rings; r++) {
        size_t n;
        while ((n = ring_pop(u->rings[r], buf, DRAIN_CHUNK)) > 0) {
            u->taken += n;
            for (size_t i = 0; i < n; i++)
                take_sample(u, &buf[i]);
            if (n < DRAIN_CHUNK)
                break;
        }
    }
}

/* ---- connection events ------------------------------------------------------------------ */

/* ---- the Edge's rate limits ------------------------------------------------------------ */

/* What was sent counts against a limit that is confirmed, not only against a new one. */
static void update_limit(struct up_dev *d, struct pace_limit *l, enum pace_kind kind,
                         const char *spec)
{
    struct pace_limit n;
    char err[160];
    bool same;

    if (pace_parse(spec, &n, err, sizeof(err)) < 0)
        log_warning("device '%s': ignoring a rate limit the edge gave: %s", d->dc->name, err);
    same = n.n == l->n;
    for (unsigned i = 0; same && i < n.n; i++)
        same = n.w[i].cap == l->w[i].cap && n.w[i].slot_ms == l->w[i].slot_ms;
    if (!same) {
        *l = n;
        pace_replay(l, kind, &d->ledger); /* sent before it was known: counted all the same */
    }
}

/* The tenant's limits (validated by the configuration), shared by every session: no
 * ThingsBoard tells them to a device (getSessionLimits answers with the device's). */
static void set_tenant_limits(struct uplink *u)
{
    const struct edge_config *e = &u->cfg->edge;
    struct pace_level *t = &u->tenant_pace;
    char err[160], a[64], b[64], c[64];

    if (pace_parse(e->rl_tenant_messages, &t->msgs, err, sizeof(err)) < 0 ||
        pace_parse(e->rl_tenant_telemetry_messages, &t->tmsgs, err, sizeof(err)) < 0 ||
        pace_parse(e->rl_tenant_telemetry_datapoints, &t->points, err, sizeof(err)) < 0)
        memset(t, 0, sizeof(*t)); /* cannot happen: the configuration checked them */
    if (!pace_level_set(t))
        return;
    pace_format(&t->msgs, a, sizeof(a));
    pace_format(&t->tmsgs, b, sizeof(b));
    pace_format(&t->points, c, sizeof(c));
    log_info("pacing all %zu devices together below the tenant's rate limits: messages %s, "
             "telemetry messages %s, data points %s", u->n_devs, a, b, c);
}

/* Specs from the configuration (validated) or from the Edge's answer (checked here). */
static void set_limits(struct uplink *u, struct up_dev *d, const char *msgs, const char *tmsgs,
                       const char *points)
{
    update_limit(d, &d->pace.msgs, PACE_MSGS, msgs);
    update_limit(d, &d->pace.tmsgs, PACE_TMSGS, tmsgs);
    update_limit(d, &d->pace.points, PACE_POINTS, points);
    d->limits_known = true;
    if (!u->limits_logged && pace_level_set(&d->pace)) {
        char a[96], b[96], c[96];

        u->limits_logged = true;
        pace_format(&d->pace.msgs, a, sizeof(a));
        pace_format(&d->pace.tmsgs, b, sizeof(b));
        pace_format(&d->pace.points, c, sizeof(c));
        log_info("pacing each device below the edge's rate limits%s: messages %s, telemetry "
                 "messages %s, data points %s",
                 u->cfg->edge.rate_limits_set ? " (edge.rate_limits)" : "", a, b, c);
    }
}

static const char *limit_member(json_object *limits, const char *key)
{
    json_object *v;

    return json_object_object_get_ex(limits, key, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : NULL;
}

static void on_session_limits(struct downlink *dl, uint32_t dev, int err, const char *payload,
                              size_t len, uint64_t rtt_ms, void *ctx)
{
    struct uplink *u = ctx;
    struct up_dev *d = &u->devs[dev];
    json_tokener *tok;
    json_object *o = NULL, *limits = NULL, *v;

    if (err == -ENOTCONN)
        return; /* gone before the answer: the next connect asks again */
    if (!err) {
        tok = json_tokener_new();
        o = json_tokener_parse_ex(tok, payload, (int)MIN(len, (size_t)INT_MAX));
        json_tokener_free(tok);
    }
    if (!o || !json_object_is_type(o, json_type_object) ||
        json_object_object_get_ex(o, "error", NULL) ||
        !json_object_object_get_ex(o, "rateLimits", &limits)) {
        if (!d->limits_known && !u->limits_logged) {
            u->limits_logged = true;
            log_info("the edge does not tell its rate limits (getSessionLimits needs ThingsBoard "
                     "3.8 or later); sending unpaced. If its tenant profile limits devices, set "
                     "edge.rate_limits");
        }
        d->limits_known = true;
        json_object_put(o);
        return;
    }
    if (json_object_object_get_ex(o, "maxInflightMessages", &v) &&
        json_object_is_type(v, json_type_int)) {
        int64_t n = json_object_get_int64(v);
        d->window = n > 0 && n < WINDOW ? (unsigned)n : WINDOW;
    }
    set_limits(u, d, limit_member(limits, "messages"), limit_member(limits, "telemetryMessages"),
               limit_member(limits, "telemetryDataPoints"));
    log_debug("device '%s': rate limits answered in %" PRIu64 " ms", d->dc->name, rtt_ms);
    json_object_put(o);
}

/* Asked at every connect: the tenant profile may have changed. Telemetry waits for the
 * first answer only; after that the last known limits apply meanwhile. */
static void ask_limits(struct uplink *u, struct up_dev *d)
{
    if (u->cfg->edge.rate_limits_set)
        return;
    if (router_client_rpc(u->downlink, (uint32_t)d->dc->index, "getSessionLimits", NULL,
                          LIMITS_TIMEOUT_MS, on_session_limits, u) == 0) {
        if (!d->limits_known)
            d->limits_deadline_ms = now_ms() + LIMITS_TIMEOUT_MS;
    } else {
        d->limits_known = true; /* no slot or not connected: do not hold telemetry for it */
    }
}

static void on_connected(struct uplink *u, struct up_dev *d)
{
    atomic_store(&d->refused, false);
    if (!d->cw.flagged) /* or a profile that refuses every upload would loop */
        d->backoff_ms = 0;
    d->up_since_ms = now_ms();
    set_state(u, d, CS_UP);
    complain_release(&d->conn, "device '%s': connected to the edge", d->dc->name);
    complain_release(&u->edge_down, "edge %s:%d: reachable again", u->cfg->edge.host,
                     u->cfg->edge.port);
    d->auth_logged = false;

    if (d->provisioning) {
        char *req = tb_provision_request(d->dc->name, d->dc->cred.provision_key,
                                         d->dc->cred.provision_secret);
        log_info("device '%s': provisioning itself with key '%s'", d->dc->name,
                 d->dc->cred.provision_key);
        session_subscribe(d->sess, TOPIC_PROVISION_RESPONSE, 1);
        publish(u, d, TOPIC_PROVISION_REQUEST, req, strlen(req), 1, NULL, 0);
        free(req);
        d->provision_deadline_ms = now_ms() + PROVISION_TIMEOUT_MS;
        return;
    }
    /* ThingsBoard counts the session's open and each attribute and RPC subscribe as a
     * message (DefaultTransportService): they use up the device's allowance too. */
    close_watch_up(&d->cw);
    for (int i = 0; i < 3; i++)
        uplink_count_message(u, d);
    /* ThingsBoard keeps no session state: subscribe after every CONNACK. */
    session_subscribe(d->sess, TOPIC_ATTRIBUTES, 1);
    session_subscribe(d->sess, TOPIC_RPC_REQUEST, 1);
    /* The limits first: what counts waits for them (limits_pending). */
    ask_limits(u, d);
    publish_gateway_attributes(u, d);
    publish_attributes(u, d, d->attrs);
    json_object_put(d->attrs_dirty);
    d->attrs_dirty = NULL;
    router_connected(u->downlink, (uint32_t)d->dc->index);
    pump(u, d);
}

static const char *connack_text(int code)
{
    switch (code) {
    case 1:
        return "unacceptable protocol version";
    case 2:
        return "client id rejected (no credentials?)";
    case 3:
        return "server unavailable";
    case 4:
        return "bad user name or password";
    case 5:
        return "not authorized: the edge does not accept these credentials";
    default:
        return "connection failed";
    }
}

static void on_connect_failed(struct uplink *u, struct up_dev *d, int code, const char *text)
{
    const struct edge_config *e = &u->cfg->edge;

    atomic_store(&d->refused, code == 5 || code == 2 || code == 4);
    if (code == 5 || code == 2 || code == 4) {
        /* Wrong credentials: say so once, then knock rarely. */
        if (!d->auth_logged) {
            d->auth_logged = true;
            char what[256];

            log_error("device '%s': the edge refused the connection with %s (CONNACK %d: %s); "
                      "check the device's credentials in ThingsBoard; retrying every few minutes",
                      d->dc->name, describe_creds(d, what, sizeof(what)), code, connack_text(code));
        }
        schedule_retry(u, d, true);
        return;
    }
    if (code > 0) {
        complain(&d->conn, LOG_WARNING, 0, "device '%s': the edge refused the connection "
                 "(CONNACK %d: %s); retrying with backoff", d->dc->name, code, connack_text(code));
        schedule_retry(u, d, false);
        return;
    }
    /* No CONNACK at all: network or TLS. The cause is the edge's, not the device's: one
     * line for the whole gateway. */
    if (!u->edge_down.active) {
        char why[256] = "";
        if (e->tls)
            tls_check(e, d->dc->cred.kind == CRED_X509 ? d->dc->cred.cert_file : NULL,
                      d->dc->cred.kind == CRED_X509 ? d->dc->cred.key_file : NULL, why,
                      sizeof(why));
        else
            tcp_check(e, why, sizeof(why));
        complain(&u->edge_down, LOG_WARNING, 0, "edge %s:%d: cannot connect: %s; retrying with "
                 "backoff", e->host, e->port, why[0] ? why : (text ? text : "no answer"));
    } else {
        u->edge_down.count++;
    }
    schedule_retry(u, d, false);
}

/* ThingsBoard closes a session for an upload it cannot parse or one over a rate limit,
 * without saying which. A profile that refuses every JSON upload is told apart by the
 * close watch (closewatch.h): then no batch is to blame. A close right after an upload may
 * be a rate limit: what the server counted is spent, so the limits' windows pass before
 * the device sends again. Returns whether the device's profile refuses its uploads. */
static bool judge_loss(struct uplink *u, struct up_dev *d, uint64_t now)
{
    bool right_after = d->cw.published && now - d->cw.last_publish_ms <= CLOSE_WATCH_WINDOW_MS;

    if (close_watch_lost(&d->cw, now)) {
        atomic_store(&d->payload_refused, true);
        log_error("device '%s': " PAYLOAD_REFUSED_TEXT " (its MQTT transport payload type is "
                  "protobuf); reconnecting with backoff", d->dc->name);
    }
    if (right_after) {
        if (pace_level_set(&d->pace))
            pace_level_fill(&d->pace, now);
        if (pace_level_set(&u->tenant_pace))
            pace_level_fill(&u->tenant_pace, now);
    }
    return d->cw.flagged;
}

static void on_connection_lost(struct uplink *u, struct up_dev *d, const char *cause)
{
    uint32_t idx = (uint32_t)d->dc->index;
    bool refused;

    if (d->state != CS_UP)
        return;
    complain(&d->conn, LOG_WARNING, 0, "device '%s': connection to the edge lost%s%s; "
             "reconnecting", d->dc->name, cause ? ": " : "", cause ? cause : "");
    refused = judge_loss(u, d, now_ms());
    spool_requeue(u->spool, idx, d->up_since_ms, !refused);
    d->lone_inflight = false;
    d->inflight = 0;
    outbox_clear(&d->held_msgs); /* requests of that session: the router gives up on them */
    d->ack = (struct complain){0}; /* the lost connection ends that episode, and says so */
    router_disconnected(u->downlink, (uint32_t)d->dc->index);
    /* paho keeps the publishes it had queued but not yet written, and writes them on the
     * client's next connection, ahead of the batches requeued above: older data would
     * arrive after newer, and twice. The next connection gets a new client. */
    {
        struct session *old = d->sess;

        d->sess = NULL;
        ensure_session(u, d); /* or start_connect() tries again */
        session_free(old);
    }
    /* Reconnect soon, but not all devices in the same instant; a device whose every
     * session ThingsBoard closes backs off instead of looping. */
    if (refused) {
        schedule_retry(u, d, false);
        return;
    }
    d->backoff_ms = 0;
    d->retry_at_ms = now_ms() + 200 + jitter(u, BACKOFF_MIN_MS);
    set_state(u, d, CS_WAIT);
}

static void on_delivered(struct uplink *u, struct up_dev *d, int token)
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

static void on_delivery_failed(struct uplink *u, struct up_dev *d, int token)
{
    struct batch *b = spool_find_token(u->spool, (uint32_t)d->dc->index, token);

    if (!b)
        return;
    /* Not delivered: it goes again, in order, once the session is back. */
    b->inflight = false;
    if (d->inflight)
        d->inflight--;
}

/* ---- provisioning ------------------------------------------------------------------------ */

static void on_provision_response(struct uplink *u, struct up_dev *d, const char *payload,
                                  size_t len)
{
    struct tb_provisioned p;
    char msg[256];
    int r = tb_provision_response(payload, len, &p, msg, sizeof(msg));

    d->provision_deadline_ms = 0;
    session_disconnect(d->sess, 0);
    if (r == -EACCES || (r == 0 && p.type == PROV_X509)) {
        log_error("device '%s': ThingsBoard refused to provision it (%s). It stays "
                  "disconnected: fix the provisioning key/secret, or delete the device in "
                  "ThingsBoard, or give it a token, then reload",
                  d->dc->name, r == 0 ? "it answered with an X.509 certificate, which needs a "
                                        "key tbgw does not have" : msg);
        tb_provisioned_clear(&p);
        free(d->halted_reason);
        d->halted_reason = xstrdup(msg);
        set_state(u, d, CS_HALTED);
        return;
    }
    if (r < 0) {
        log_error("device '%s': unreadable provisioning answer; trying again later", d->dc->name);
        schedule_retry(u, d, true);
        return;
    }
    r = credstore_put(u->creds, d->dc->name, &p);
    tb_provisioned_clear(&p);
    if (r < 0) {
        log_error_errno(r, "device '%s': provisioned, but its credentials cannot be saved in "
                           "'%s': %m. It stays disconnected rather than lose them",
                        d->dc->name, u->cfg->storage.path);
        free(d->halted_reason);
        d->halted_reason = xstrdup("cannot save provisioned credentials");
        set_state(u, d, CS_HALTED);
        return;
    }
    log_info("device '%s': provisioned; credentials saved in '%s/credentials.json'", d->dc->name,
             u->cfg->storage.path);
    resolve_creds(u, d);
    set_state(u, d, CS_WAIT);
    d->retry_at_ms = now_ms();
}

/* ---- the downlink's port ------------------------------------------------------------------- */

static enum dl_session port_session(void *ctx, uint32_t dev)
{
    const struct up_dev *d = &((struct uplink *)ctx)->devs[dev];

    if (d->state != CS_UP)
        return DL_DOWN;
    return d->provisioning ? DL_PROVISIONING : DL_UP;
}

static int port_publish(void *ctx, uint32_t dev, const char *topic, const void *payload,
                        size_t len)
{
    struct up_dev *d = &((struct uplink *)ctx)->devs[dev];

    if (d->state != CS_UP || !d->sess)
        return -ENOTCONN;
    return session_publish(d->sess, topic, payload, len, 1, NULL);
}

static int port_publish_json(void *ctx, uint32_t dev, const char *topic, json_object *o)
{
    struct uplink *u = ctx;

    return uplink_publish_json(u, &u->devs[dev], topic, o);
}

static void port_count_message(void *ctx, uint32_t dev)
{
    struct uplink *u = ctx;

    uplink_count_message(u, &u->devs[dev]);
}

static bool port_message_fits(void *ctx, uint32_t dev, uint64_t *retry_at)
{
    struct uplink *u = ctx;

    return uplink_message_fits(u, &u->devs[dev], retry_at);
}

/* Thread: the bus's. */
static void port_command_done(void *ctx, struct command *cmd)
{
    struct event *e = xcalloc(1, sizeof(*e));

    e->type = EV_COMMAND_DONE;
    e->cmd = cmd;
    uplink_post(ctx, e);
}

static struct downlink *downlink_for(struct uplink *u)
{
    const struct downlink_port port = {
        .ctx = u,
        .session = port_session,
        .publish = port_publish,
        .publish_json = port_publish_json,
        .count_message = port_count_message,
        .message_fits = port_message_fits,
        .command_done = port_command_done,
    };
    struct device **devices = xcalloc(u->n_devs ? u->n_devs : 1, sizeof(*devices));
    struct downlink *dl;

    for (size_t i = 0; i < u->n_devs; i++)
        devices[i] = u->devs[i].dev;
    dl = downlink_new(u->cfg, devices, &port);
    free(devices);
    return dl;
}

/* ---- events ------------------------------------------------------------------------------- */

static void handle_event(struct uplink *u, struct event *e)
{
    struct up_dev *d;

    if (e->type == EV_COMMAND_DONE) {
        router_command_done(u->downlink, e->cmd);
        e->cmd = NULL;
        return;
    }
    if (e->type == EV_CONTROL) {
        router_control(u->downlink, e->device, e->topic, e->payload, e->len, e->reply,
                       e->reply_ctx);
        return;
    }
    if (e->device >= u->n_devs)
        return;
    d = &u->devs[e->device];
    mark(u, d);
    switch (e->type) {
    case EV_CONNECTED:
        if (d->state == CS_CONNECTING)
            on_connected(u, d);
        break;
    case EV_CONNECT_FAILED:
        if (d->state == CS_CONNECTING)
            on_connect_failed(u, d, e->code, e->text);
        break;
    case EV_CONNECTION_LOST:
        on_connection_lost(u, d, e->text);
        break;
    case EV_DELIVERED:
        on_delivered(u, d, e->token);
        break;
    case EV_DELIVERY_FAILED:
        on_delivery_failed(u, d, e->token);
        break;
    case EV_MESSAGE:
        if (d->provisioning) {
            if (strcmp(e->topic, TOPIC_PROVISION_RESPONSE) == 0)
                on_provision_response(u, d, e->payload, e->len);
        } else {
            router_message(u->downlink, e->device, e->topic, e->payload, e->len);
        }
        break;
    case EV_SUBSCRIBED:
        if (e->code == 0x80)
            log_warning("device '%s': the edge refused a subscription; server-side RPC or "
                        "shared attributes will not reach it", d->dc->name);
        break;
    case EV_TLS_ERROR:
        log_debug("device '%s': TLS: %s", d->dc->name, e->text);
        break;
    default:
        break;
    }
}

static void handle_events(struct uplink *u)
{
    struct event *e = evq_take(&u->evq);

    while (e) {
        struct event *next = e->next;
        handle_event(u, e);
        event_free(e);
        e = next;
    }
}

/* ---- health ---------------------------------------------------------------------------- */

/* Every health.interval_s, each device reports how its polling went, as telemetry under
 * tbgw_* keys, so a dashboard can alarm on a dead sensor without extra rule chains. The
 * values go through the spool like any telemetry. */
static void health_tick(struct uplink *u, uint64_t now)
{
    int64_t ts = clock_wall_ms();

    if (!u->cfg->health_interval_s)
        return;
    if (!u->next_health_ms) {
        u->next_health_ms = now + (uint64_t)u->cfg->health_interval_s * 1000u;
        return;
    }
    if (now < u->next_health_ms)
        return;
    u->next_health_ms = now + (uint64_t)u->cfg->health_interval_s * 1000u;
    for (size_t i = 0; i < u->n_devs; i++) {
        struct up_dev *d = &u->devs[i];
        struct device_stats *st = &d->dev->stats;
        uint64_t polls = atomic_load(&st->polls), failures = atomic_load(&st->failures);
        uint64_t invalid = atomic_load(&st->invalid);
        uint64_t dp = polls - d->health_polls, df = failures - d->health_failures;
        int err = atomic_load(&st->last_error);
        size_t before = d->batch.n_values;
        struct value v;

        d->health_polls = polls;
        d->health_failures = failures;
        if (tb_batch_empty(&d->batch))
            d->batch_opened_ms = now;
        v = (struct value){.kind = VK_DOUBLE, .d = dp ? (double)(dp - MIN(df, dp)) / (double)dp : 0.0};
        tb_batch_add(&d->batch, ts, "tbgw_poll_success_ratio", &v);
        v = (struct value){.kind = VK_INT, .i = (int64_t)dp};
        tb_batch_add(&d->batch, ts, "tbgw_polls", &v);
        v = (struct value){.kind = VK_INT, .i = (int64_t)df};
        tb_batch_add(&d->batch, ts, "tbgw_poll_failures", &v);
        v = (struct value){.kind = VK_INT,
                           .i = (int64_t)(atomic_load(&st->latency_us) + 500) / 1000};
        tb_batch_add(&d->batch, ts, "tbgw_latency_ms", &v);
        v = (struct value){.kind = VK_STRING, .s = (char *)(err ? driver_strerror(err) : "")};
        tb_batch_add(&d->batch, ts, "tbgw_last_error", &v);
        v = (struct value){.kind = VK_BOOL, .b = atomic_load(&st->active)};
        tb_batch_add(&d->batch, ts, "tbgw_active", &v);
        v = (struct value){.kind = VK_INT, .i = (int64_t)spool_pending(u->spool, (uint32_t)i)};
        tb_batch_add(&d->batch, ts, "tbgw_spool_backlog", &v);
        v = (struct value){.kind = VK_INT, .i = (int64_t)(invalid - d->health_invalid)};
        tb_batch_add(&d->batch, ts, "tbgw_invalid_values", &v);
        d->health_invalid = invalid;
        u->health_values += d->batch.n_values - before;
        u->batching_values += d->batch.n_values - before;
        mark(u, d);
    }
}

/* ---- timers ------------------------------------------------------------------------------ */

/* For uplink_status(): the spool's figures and the counters of the values that went
 * through, taken together so that the accounting in tbgwctl status adds up. */
static void snapshot(struct uplink *u)
{
    struct spool_stats st = spool_stats(u->spool);
    struct uplink_accounting a = {
        .taken = u->taken,
        .attribute_values = u->attribute_values,
        .health_values = u->health_values,
        .rejected_values = atomic_load(&u->rejected_values),
        .delivered_values = atomic_load(&u->delivered_values),
        .batching_values = u->batching_values,
    };

    pthread_mutex_lock(&u->status_lock);
    u->spool_snapshot = st;
    u->acct_snapshot = a;
    pthread_mutex_unlock(&u->status_lock);
}

/* How long the Edge may sit on every PUBACK before that is worth a line in the log: one
 * keepalive interval, the time the link itself gets to show it is alive. A connection
 * that answers PINGREQ but acknowledges nothing stays up (ThingsBoard's queue may be
 * full); the window of unacknowledged batches stops sending, and the spool holds the rest. */
static uint64_t ack_patience_ms(const struct uplink *u)
{
    return u->cfg->edge.keepalive_s > 0 ? (uint64_t)u->cfg->edge.keepalive_s * 1000u : 60000u;
}

/* The earliest instant d needs the uplink without anything happening to it. */
static uint64_t next_deadline(const struct uplink *u, const struct up_dev *d, uint64_t now)
{
    uint64_t next = TIMERS_NEVER;

    if (d->state == CS_WAIT && !d->connq)
        next = MIN(next, d->retry_at_ms);
    if (d->state == CS_UP && d->provisioning && d->provision_deadline_ms)
        next = MIN(next, d->provision_deadline_ms);
    if (d->state == CS_UP && d->inflight && !d->ack.active)
        next = MIN(next, d->ack_since_ms + ack_patience_ms(u));
    if (!tb_batch_empty(&d->batch))
        next = MIN(next, d->batch_opened_ms + batch_max_age_ms(u));
    if (d->paced_until_ms > now)
        next = MIN(next, d->paced_until_ms);
    if (!d->limits_known && d->limits_deadline_ms > now)
        next = MIN(next, d->limits_deadline_ms);
    return next;
}

static void connq_push(struct uplink *u, struct up_dev *d)
{
    if (d->connq)
        return;
    d->connq = true;
    u->connq[(u->connq_head + u->connq_len++) % u->n_devs] = (uint32_t)d->dc->index;
}

/* Hand the free CONNECT slots to the devices that have waited longest for one. */
static void connq_release(struct uplink *u)
{
    for (unsigned n = u->n_connecting; n < MAX_CONNECTING && u->connq_len; n++) {
        struct up_dev *d = &u->devs[u->connq[u->connq_head]];

        u->connq_head = (u->connq_head + 1) % u->n_devs;
        u->connq_len--;
        d->connq = false;
        mark(u, d);
    }
}

/* Everything d needs now: its deadlines that have passed, closing its batch, publishing
 * what its window and pacing allow; then its next deadline goes into the heap. Only the
 * devices something happened to are served, so a pass costs what changed. */
static void serve(struct uplink *u, struct up_dev *d, uint64_t now)
{
    uint32_t i = (uint32_t)d->dc->index;

    if (d->state == CS_WAIT && !d->connq && d->retry_at_ms <= now) {
        if (u->n_connecting < MAX_CONNECTING)
            start_connect(u, d);
        else
            connq_push(u, d);
    }
    if (d->state == CS_UP && d->provisioning && d->provision_deadline_ms &&
        d->provision_deadline_ms <= now) {
        log_warning("device '%s': no answer to the provisioning request within %us; "
                    "asking again later (if ThingsBoard did create the device, it will "
                    "answer FAILURE)",
                    d->dc->name, PROVISION_TIMEOUT_MS / 1000);
        d->provision_deadline_ms = 0;
        session_disconnect(d->sess, 0);
        schedule_retry(u, d, false);
    }
    if (d->state == CS_UP && d->inflight && !d->ack.active &&
        d->ack_since_ms + ack_patience_ms(u) <= now)
        complain(&d->ack, LOG_WARNING, 0, "device '%s': the edge has acknowledged "
                 "nothing for %llus; %u messages wait for it, and the data is kept",
                 d->dc->name, (unsigned long long)(now - d->ack_since_ms + 500) / 1000,
                 d->inflight);
    close_if_ready(u, d, now);
    pump(u, d);
    /* An acknowledgement matters now only to a device whose window is full; the others'
     * wait for the next wake-up and retire together. */
    if (d->sess)
        session_wake_on_ack(d->sess, d->inflight >= d->window);
    atomic_store_explicit(&d->backlog, spool_pending(u->spool, i), memory_order_relaxed);
    timers_set(&u->timers, i, next_deadline(u, d, now));
}

/* One pass: the devices whose deadline has come join those something happened to, and
 * each is served once. Returns when the uplink must look again at the latest. */
static uint64_t run_pass(struct uplink *u, uint64_t now)
{
    bool tick = now >= u->next_tick_ms;
    uint32_t i;

    while (timers_pop_due(&u->timers, now, &i))
        mark(u, &u->devs[i]);
    if (tick) {
        spool_tick(u->spool);
        router_tick(u->downlink, now);
        health_tick(u, now);
        u->next_tick_ms = now + TICK_MS;
    }
    connq_release(u);
    while ((i = u->ready_head) != NO_DEVICE) {
        struct up_dev *d = &u->devs[i];

        u->ready_head = d->next_ready;
        d->ready = false;
        serve(u, d, now);
    }
    if (tick)
        snapshot(u); /* after the pass, so that the accounting adds up */
    return MIN(timers_next(&u->timers), u->next_tick_ms);
}

/* ---- thread ---------------------------------------------------------------------------- */

static void *uplink_thread(void *arg)
{
    struct uplink *u = arg;

    pthread_setname_np(pthread_self(), "tbgw/uplink");
    for (size_t i = 0; i < u->n_devs; i++) {
        u->devs[i].retry_at_ms = now_ms();
        set_state(u, &u->devs[i], CS_WAIT);
        mark(u, &u->devs[i]);
    }

    while (!atomic_load(&u->stop)) {
        struct pollfd p = {.fd = u->wake_fd, .events = POLLIN};
        uint64_t now = now_ms(), next, start = now_us(), taken = u->taken;
        eventfd_t v;

        atomic_store_explicit(&u->alive_ms, now, memory_order_relaxed);
        handle_events(u);
        drain_rings(u);
        next = run_pass(u, now);
        if (u->taken != taken && !atomic_load(&u->stop))
            sleep_until_us(start + LINGER_US);
        /* Sleep until a bus, paho or a deadline has something; a stop request writes the
         * eventfd too. */
        now = now_ms();
        if (next > now && poll(&p, 1, (int)MIN(next - now, (uint64_t)1000)) > 0)
            eventfd_read(u->wake_fd, &v);
    }

    /* Stopping: the buses have stopped; take what they left, keep everything unsent. */
    handle_events(u);
    drain_rings(u);
    for (size_t i = 0; i < u->n_devs; i++)
        close_batch(u, &u->devs[i]);
    for (size_t i = 0; i < u->n_devs; i++)
        pump(u, &u->devs[i]);
    /* A moment for PUBACKs of what is in flight: saves resending it after a restart. */
    for (uint64_t deadline = now_ms() + 500; now_ms() < deadline;) {
        struct pollfd p = {.fd = u->wake_fd, .events = POLLIN};
        bool busy = false;
        eventfd_t v;
        handle_events(u);
        for (size_t i = 0; i < u->n_devs; i++)
            busy |= u->devs[i].inflight > 0;
        if (!busy)
            break;
        if (poll(&p, 1, 50) > 0)
            eventfd_read(u->wake_fd, &v);
    }
    /* Everything unacknowledged, in flight or not, is on disk from here. */
    spool_flush(u->spool);
    snapshot(u); /* final: what a failed flush left unsaved is reported as lost */
    for (size_t i = 0; i < u->n_devs; i++) {
        struct up_dev *d = &u->devs[i];
        if (d->sess)
            session_disconnect(d->sess, 100);
        set_state(u, d, CS_WAIT);
    }
    return NULL;
}

/* ---- public -------------------------------------------------------------------------------- */

struct uplink *uplink_new(const struct config *cfg, struct device **devices)
{
    struct uplink *u = xcalloc(1, sizeof(*u));

    u->cfg = cfg;
    u->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (u->wake_fd < 0) {
        log_error_errno(errno, "uplink: eventfd: %m");
        free(u);
        return NULL;
    }
    evq_init(&u->evq, u->wake_fd);
    pthread_mutex_init(&u->status_lock, NULL);
    u->rng = (uint64_t)now_us() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ull;
    u->n_devs = cfg->n_devices;
    u->devs = xcalloc(u->n_devs ? u->n_devs : 1, sizeof(*u->devs));
    u->connq = xcalloc(u->n_devs ? u->n_devs : 1, sizeof(*u->connq));
    u->ready_head = NO_DEVICE;
    timers_init(&u->timers, u->n_devs);
    for (size_t i = 0; i < u->n_devs; i++) {
        struct up_dev *d = &u->devs[i];
        d->dev = devices[i];
        d->dc = devices[i]->cfg;
        d->attrs = json_object_new_object();
        tb_batch_init(&d->batch);
        d->window = WINDOW;
        if (cfg->edge.rate_limits_set)
            set_limits(u, d, cfg->edge.rl_messages, cfg->edge.rl_telemetry_messages,
                       cfg->edge.rl_telemetry_datapoints);
    }
    set_tenant_limits(u);
    return u;
}

/* What lives under storage.path (the spool, provisioned credentials, OTA state) is read
 * at start, not in uplink_new(): on a reload the new gateway is built while the old one
 * still runs, and the old one writes all of it until it has stopped. A spool opened
 * before the old one's last commit would count rows that commit deletes (the device then
 * waits forever for them) and hand out sequence numbers that commit uses (overwriting
 * batches). */
static void open_storage(struct uplink *u)
{
    const struct config *cfg = u->cfg;
    int r;

    if (u->spool)
        return;
    r = mkdir_p(cfg->storage.path, 0750);
    if (r < 0)
        log_error_errno(r, "storage '%s': cannot create it: %m; provisioned credentials and "
                           "the spool cannot be kept",
                        cfg->storage.path);
    u->creds = credstore_load(cfg->storage.path);
    u->spool = spool_open(cfg);
    for (size_t i = 0; i < u->n_devs; i++)
        resolve_creds(u, &u->devs[i]);
    u->downlink = downlink_for(u);
}

int uplink_wake_fd(const struct uplink *u)
{
    return u->wake_fd;
}

void uplink_add_ring(struct uplink *u, struct ring *r)
{
    u->rings = xreallocarray(u->rings, u->n_rings + 1, sizeof(*u->rings));
    u->rings[u->n_rings++] = r;
}

int uplink_start(struct uplink *u)
{
    int r;

    open_storage(u);
    snapshot(u); /* a status asked before the first tick sees the spool as opened */
    atomic_store(&u->stop, false);
    atomic_store(&u->alive_ms, now_ms());
    r = pthread_create(&u->thread, NULL, uplink_thread, u);
    if (r != 0)
        return log_error_errno(r, "uplink: cannot start its thread: %m");
    u->started = true;
    return 0;
}

void uplink_stop(struct uplink *u)
{
    if (!u->started)
        return;
    atomic_store(&u->stop, true);
    eventfd_write(u->wake_fd, 1);
    pthread_join(u->thread, NULL);
    u->started = false;
}

struct uplink *uplink_free(struct uplink *u)
{
    if (!u)
        return NULL;
    uplink_stop(u);
    /* Sessions last: paho may still deliver callbacks until each client is destroyed. */
    for (size_t i = 0; i < u->n_devs; i++)
        u->devs[i].sess = session_free(u->devs[i].sess);
    u->downlink = downlink_free(u->downlink);
    for (size_t i = 0; i < u->n_devs; i++) {
        struct up_dev *d = &u->devs[i];
        tb_batch_clear(&d->batch);
        json_object_put(d->attrs);
        outbox_clear(&d->held);
        outbox_clear(&d->held_msgs);
        json_object_put(d->attrs_dirty);
        free_creds(&d->creds);
        free(d->halted_reason);
    }
    free(u->devs);
    free(u->connq);
    timers_free(&u->timers);
    free(u->rings);
    spool_close(u->spool);
    credstore_free(u->creds);
    evq_destroy(&u->evq);
    pthread_mutex_destroy(&u->status_lock);
    close(u->wake_fd);
    free(u);
    return NULL;
}

void uplink_post(struct uplink *u, struct event *e)
{
    evq_post(&u->evq, e);
}

void uplink_status(struct uplink *u, struct uplink_status *ret)
{
    memset(ret, 0, sizeof(*ret));
    ret->devices = u->n_devs;
    ret->connected = (size_t)atomic_load(&u->n_connected);
    for (size_t i = 0; i < u->n_devs; i++)
        ret->payload_refused += atomic_load(&u->devs[i].payload_refused);
    ret->delivered_values = atomic_load(&u->delivered_values);
    ret->delivered_batches = atomic_load(&u->delivered_batches);
    ret->rejected_values = atomic_load(&u->rejected_values);
    ret->alive_ms = atomic_load(&u->alive_ms);
    pthread_mutex_lock(&u->status_lock);
    ret->spool = u->spool_snapshot;
    ret->acct = u->acct_snapshot;
    pthread_mutex_unlock(&u->status_lock);
}

bool uplink_device_connected(struct uplink *u, size_t device)
{
    return device < u->n_devs && atomic_load(&u->devs[device].connected);
}

void uplink_device_status(struct uplink *u, size_t device, struct uplink_device_status *ret)
{
    struct up_dev *d = &u->devs[device];
    int st = atomic_load(&d->public_state);

    memset(ret, 0, sizeof(*ret));
    ret->connected = st == CS_UP;
    ret->delivered = atomic_load_explicit(&d->delivered, memory_order_relaxed);
    ret->backlog = atomic_load_explicit(&d->backlog, memory_order_relaxed);
    switch (st) {
    case CS_UP:
        ret->state = "connected";
        break;
    case CS_CONNECTING:
        ret->state = "connecting";
        break;
    case CS_HALTED:
        ret->state = "halted";
        ret->reason = d->halted_reason; /* set before the state was published */
        break;
    default:
        ret->state = atomic_load(&d->refused) ? "refused" : "reconnecting";
        if (atomic_load(&d->refused))
            ret->reason = "the edge refused the credentials";
        break;
    }
    if (atomic_load(&d->payload_refused))
        ret->reason = PAYLOAD_REFUSED_TEXT;
}
