/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * One device's connection to the Edge: credentials (configured, provisioned or asked for
 * by provisioning), its MQTTAsync session, the state machine WAIT -> CONNECTING -> UP
 * (or HALTED, until a reload), and what a CONNACK, a refusal or a lost session does.
 *
 * Reconnects: exponential backoff from 1 s to 60 s with full jitter, so a hundred devices
 * do not reconnect in the same millisecond after the Edge restarts. Refused credentials
 * (CONNACK 5, or 2) are logged once per device and retried only every few minutes; "server
 * unavailable" (3) and network errors use the normal backoff. Each state change is logged
 * once.
 *
 * Invariants: state changes only through conn_set_state(), which keeps n_connecting,
 * n_connected and the atomics other threads read in step; a lost session sends its
 * unacknowledged batches again after the next CONNACK, in order.
 *
 * Thread: uplink.
 */
#include "config.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "downlink/router.h"
#include "uplink/credstore.h"
#include "uplink/session.h"
#include "uplink/tls-check.h"
#include "uplink/uplink-private.h"
#include "util/log.h"
#include "util/macros.h"
#include "util/time-util.h"

#define BACKOFF_MIN_MS 1000u
#define BACKOFF_MAX_MS 60000u
#define AUTH_BACKOFF_MIN_MS 60000u   /* refused credentials: they rarely fix themselves */
#define AUTH_BACKOFF_MAX_MS 900000u
static const char TOPIC_RPC_REQUEST[] = "v1/devices/me/rpc/request/+";
static const char TOPIC_PROVISION_REQUEST[] = "/provision/request";

static uint64_t jitter(struct uplink *u, uint64_t max_ms)
{
    /* xorshift64*: jitter needs spread, not secrecy. */
    u->rng ^= u->rng >> 12;
    u->rng ^= u->rng << 25;
    u->rng ^= u->rng >> 27;
    return max_ms ? (u->rng * 2685821657736338717ull) % (max_ms + 1) : 0;
}

void conn_set_state(struct uplink *u, struct up_dev *d, enum conn_state st)
{
    bool was_up = d->state == CS_UP;

    if (d->state == CS_CONNECTING && st != CS_CONNECTING)
        u->n_connecting--;
    else if (d->state != CS_CONNECTING && st == CS_CONNECTING)
        u->n_connecting++;
    d->state = st;
    /* Devices only: in gateway mode, the gateway's own session is not one of them. */
    if (was_up != (st == CS_UP) && d != gw_self(u))
        atomic_fetch_add(&u->n_connected, st == CS_UP ? 1 : -1);
    atomic_store(&d->connected, st == CS_UP);
    atomic_store(&d->public_state, (int)st);
}

void conn_free_creds(struct up_creds *c)
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
void conn_resolve_creds(struct uplink *u, struct up_dev *d)
{
    const struct credentials *c = &d->dc->cred;
    const struct tb_provisioned *p;

    conn_free_creds(&d->creds);
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

void conn_schedule_retry(struct uplink *u, struct up_dev *d, bool auth)
{
    uint64_t lo = auth ? AUTH_BACKOFF_MIN_MS : BACKOFF_MIN_MS;
    uint64_t hi = auth ? AUTH_BACKOFF_MAX_MS : BACKOFF_MAX_MS;

    d->backoff_ms = d->backoff_ms ? MIN(d->backoff_ms * 2, hi) : lo;
    if (d->backoff_ms < lo)
        d->backoff_ms = lo;
    /* Full jitter over the upper half keeps a minimum gap and spreads the herd. */
    d->retry_at_ms = now_ms() + d->backoff_ms / 2 + jitter(u, d->backoff_ms / 2);
    conn_set_state(u, d, CS_WAIT);
}

void conn_start_connect(struct uplink *u, struct up_dev *d)
{
    struct session_creds sc = {0};
    int r;

    if (ensure_session(u, d) < 0) {
        conn_schedule_retry(u, d, false);
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
        conn_schedule_retry(u, d, false);
        return;
    }
    conn_set_state(u, d, CS_CONNECTING);
}

void conn_on_connected(struct uplink *u, struct up_dev *d)
{
    atomic_fetch_add_explicit(&d->sessions, 1, memory_order_relaxed);
    atomic_store(&d->refused, false);
    if (!d->cw.flagged) /* or a profile that refuses every upload would loop */
        d->backoff_ms = 0;
    d->up_since_ms = now_ms();
    conn_set_state(u, d, CS_UP);
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
        pub_send(u, d, TOPIC_PROVISION_REQUEST, req, strlen(req), 1, NULL, 0);
        free(req);
        d->provision_deadline_ms = now_ms() + PROVISION_TIMEOUT_MS;
        return;
    }
    /* ThingsBoard counts the session's open and each attribute and RPC subscribe as a
     * message (DefaultTransportService): they use up the device's allowance too. */
    close_watch_up(&d->cw);
    if (u->gw) {
        gw_on_connected(u);
        return;
    }
    for (int i = 0; i < 3; i++)
        uplink_count_message(u, d);
    /* ThingsBoard keeps no session state: subscribe after every CONNACK. */
    session_subscribe(d->sess, TOPIC_ATTRIBUTES, 1);
    session_subscribe(d->sess, TOPIC_RPC_REQUEST, 1);
    /* The limits first: what counts waits for them (limits_pending). */
    limits_ask(u, d);
    pub_gateway_attributes(u, d);
    pub_attributes(u, d, d->attrs);
    json_object_put(d->attrs_dirty);
    d->attrs_dirty = NULL;
    router_connected(u->downlink, (uint32_t)d->dc->index);
    pub_pump(u, d);
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

void conn_on_connect_failed(struct uplink *u, struct up_dev *d, int code, const char *text)
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
        conn_schedule_retry(u, d, true);
        return;
    }
    if (code > 0) {
        complain(&d->conn, LOG_WARNING, 0, "device '%s': the edge refused the connection "
                 "(CONNACK %d: %s); retrying with backoff", d->dc->name, code, connack_text(code));
        conn_schedule_retry(u, d, false);
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
    conn_schedule_retry(u, d, false);
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

void conn_on_connection_lost(struct uplink *u, struct up_dev *d, const char *cause)
{
    uint32_t idx = (uint32_t)d->dc->index;
    bool refused;

    if (d->state != CS_UP)
        return;
    complain(&d->conn, LOG_WARNING, 0, "device '%s': connection to the edge lost%s%s; "
             "reconnecting", d->dc->name, cause ? ": " : "", cause ? cause : "");
    refused = judge_loss(u, d, now_ms());
    if (u->gw)
        gw_on_lost(u, refused); /* every device's batches in flight, every announcement */
    else
        spool_requeue(u->spool, idx, d->up_since_ms, !refused);
    d->lone_inflight = false;
    d->inflight = 0;
    outbox_clear(&d->held_msgs); /* requests of that session: the router gives up on them */
    d->ack = (struct complain){0}; /* the lost connection ends that episode, and says so */
    if (!u->gw)
        router_disconnected(u->downlink, (uint32_t)d->dc->index);
    /* paho keeps the publishes it had queued but not yet written, and writes them on the
     * client's next connection, ahead of the batches requeued above: older data would
     * arrive after newer, and twice. The next connection gets a new client. */
    {
        struct session *old = d->sess;

        d->sess = NULL;
        ensure_session(u, d); /* or conn_start_connect() tries again */
        session_free(old);
    }
    /* Reconnect soon, but not all devices in the same instant; a device whose every
     * session ThingsBoard closes backs off instead of looping. */
    if (refused) {
        conn_schedule_retry(u, d, false);
        return;
    }
    d->backoff_ms = 0;
    d->retry_at_ms = now_ms() + 200 + jitter(u, BACKOFF_MIN_MS);
    conn_set_state(u, d, CS_WAIT);
}

void conn_on_provision_response(struct uplink *u, struct up_dev *d, const char *payload,
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
        conn_set_state(u, d, CS_HALTED);
        return;
    }
    if (r < 0) {
        log_error("device '%s': unreadable provisioning answer; trying again later", d->dc->name);
        conn_schedule_retry(u, d, true);
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
        conn_set_state(u, d, CS_HALTED);
        return;
    }
    log_info("device '%s': provisioned; credentials saved in '%s/credentials.json'", d->dc->name,
             u->cfg->storage.path);
    conn_resolve_creds(u, d);
    conn_set_state(u, d, CS_WAIT);
    d->retry_at_ms = now_ms();
}
