/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The downlink router.
 *
 * What may touch hardware is decided here, from the configuration only: a shared
 * attribute whose key is one of the device's `writes`, an `rpc` method, or (only with
 * allow_raw_rpc) the generic "read"/"write" methods. Everything else is refused: an RPC
 * gets an {"error": …} answer, an attribute is ignored with a debug line. Values are
 * checked against the register type before a command exists (a value that does not fit
 * is refused, never wrapped).
 *
 * Commands go to the owning bus (bus_submit) and come back through the uplink thread
 * (downlink_port.command_done, then router_command_done). Each has a deadline well inside ThingsBoard's 10 s RPC
 * timeout: an RPC still unfinished then is answered {"error":"timeout…"} and its late
 * result is dropped.
 *
 * ThingsBoard re-sends every pending RPC when a device (re)subscribes, with the same id,
 * so a request can arrive twice: the router remembers recent (id, method, params) and
 * answers a repeat from memory instead of executing it again. Ids restart at 0 when the
 * server restarts, so the memory is short (two minutes) and the method and params must
 * match too.
 *
 * Bounded: at most MAX_OUTSTANDING commands per device wait at a time; more are answered
 * "busy". Nothing received grows memory without bound.
 *
 * Client-side RPC: router_client_rpc() sends a request and calls back with the answer or
 * a timeout. It serves the clock check (src/downlink/timesync.c).
 *
 * Thread: uplink; cmd_done_cb on bus threads (it only hands the command to the port).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/bus.h"
#include "core/command.h"
#include "core/device.h"
#include "downlink/downlink.h"
#include "downlink/ota.h"
#include "downlink/router.h"
#include "downlink/rpc.h"
#include "downlink/timesync.h"
#include "drivers/driver.h"
#include "util/log.h"
#include "util/macros.h"
#include "util/time-util.h"

#define MAX_OUTSTANDING 16
#define COMMAND_DEADLINE_MS 8000u
#define SEEN_RPCS 32
#define SEEN_TTL_MS 120000u
#define CLIENT_RPC_MAX 8

static const char TOPIC_ATTRIBUTES[] = "v1/devices/me/attributes";
static const char TOPIC_ATTR_RESPONSE[] = "v1/devices/me/attributes/response/";
static const char TOPIC_ATTR_REQUEST[] = "v1/devices/me/attributes/request/";
static const char TOPIC_RPC_REQUEST[] = "v1/devices/me/rpc/request/";
static const char TOPIC_RPC_RESPONSE[] = "v1/devices/me/rpc/response/";

enum pending_kind {
    P_RPC,       /* answer on rpc/response/{rpc_id} */
    P_ATTRIBUTE, /* a shared attribute write: log the outcome */
    P_INTERNAL,  /* the gateway's own: call back */
};

struct pending {
    uint64_t id;
    uint32_t device;
    enum pending_kind kind;
    int rpc_id;
    bool read;
    char *what;                /* for log lines */
    uint64_t deadline_ms;
    router_done_cb cb;         /* P_INTERNAL */
    void *cb_ctx;
    struct pending *next;
};

struct seen {
    int id;
    unsigned long hash;        /* of method and params */
    uint64_t at_ms;
    char *answer;              /* NULL while executing */
};

struct client_rpc {
    int id;
    uint64_t sent_ms, deadline_ms;
    router_client_cb cb;
    void *ctx;
};

/* The arrays are allocated at a device's first server RPC and first client RPC: most
 * devices never see either, and together they are 1.3 KB. */
struct rdev {
    struct seen *seen;         /* SEEN_RPCS; NULL: no RPC yet */
    unsigned next_seen;
    unsigned outstanding;
    int next_attr_request;
    int sync_request_id;       /* attribute request sent at connect, -1 if none */
    bool synced;               /* ... and answered (or there was nothing to ask) */
    int next_client_rpc;
    struct client_rpc *crpc;   /* CLIENT_RPC_MAX; NULL: none sent yet */
};

struct router {
    struct pending *pending;
    uint64_t next_id;
    struct rdev *devs;
};

/* ---- helpers ---------------------------------------------------------------------------- */

static struct rdev *rd(struct downlink *dl, struct dl_dev *d)
{
    return &dl->router->devs[d->dc->index];
}

static unsigned long hash_text(const char *a, const char *b)
{
    unsigned long h = 5381;

    for (const char *p = a; p && *p; p++)
        h = h * 33 ^ (unsigned char)*p;
    h = h * 33 ^ 0xff;
    for (const char *p = b; p && *p; p++)
        h = h * 33 ^ (unsigned char)*p;
    return h;
}

static void publish_text(struct downlink *dl, struct dl_dev *d, const char *topic, const char *text)
{
    if (dl_publish(dl, d, topic, text, strlen(text)) == 0)
        dl_count_message(dl, d);
}

static void answer_rpc(struct downlink *dl, struct dl_dev *d, int rpc_id, char *text)
{
    char topic[64];
    struct rdev *r = rd(dl, d);

    snprintf(topic, sizeof(topic), "%s%d", TOPIC_RPC_RESPONSE, rpc_id);
    publish_text(dl, d, topic, text);
    /* Remember the answer for a repeat of the same request. */
    for (unsigned i = 0; i < SEEN_RPCS && r->seen; i++) {
        if (r->seen[i].id == rpc_id && r->seen[i].at_ms && !r->seen[i].answer) {
            r->seen[i].answer = text;
            return;
        }
    }
    free(text);
}

static void answer_rpc_error(struct downlink *dl, struct dl_dev *d, int rpc_id, const char *msg)
{
    log_info("device '%s': RPC %d refused: %s", d->dc->name, rpc_id, msg);
    answer_rpc(dl, d, rpc_id, rpc_answer_error(msg));
}

/* ---- commands ------------------------------------------------------------------------------ */

static void cmd_done_cb(struct command *cmd)
{
    struct downlink *dl = cmd->ctx;

    dl->port.command_done(dl->port.ctx, cmd);
}

/* Queue a command for d's bus. On failure the command is freed and -errno returned. */
static int submit(struct downlink *dl, struct dl_dev *d, struct command *cmd, struct pending *p)
{
    struct rdev *r = rd(dl, d);
    int ret;

    if (r->outstanding >= MAX_OUTSTANDING) {
        command_free(cmd);
        return -EAGAIN;
    }
    p->id = cmd->ctx_id = ++dl->router->next_id;
    p->device = (uint32_t)d->dc->index;
    p->deadline_ms = now_ms() + COMMAND_DEADLINE_MS;
    cmd->device = (uint32_t)d->dc->index;
    cmd->done = cmd_done_cb;
    cmd->ctx = dl;
    ret = bus_submit(d->dev->bus, cmd);
    if (ret < 0) {
        command_free(cmd);
        return ret;
    }
    r->outstanding++;
    p->next = dl->router->pending;
    dl->router->pending = p;
    return 0;
}

static void pending_free(struct pending *p)
{
    free(p->what);
    free(p);
}

static struct pending *take_pending(struct downlink *dl, uint64_t id)
{
    for (struct pending **pp = &dl->router->pending; *pp; pp = &(*pp)->next) {
        if ((*pp)->id == id) {
            struct pending *p = *pp;
            *pp = p->next;
            return p;
        }
    }
    return NULL;
}

static const char *busy_text(int r)
{
    return r == -EAGAIN ? "busy: too many requests for this device are waiting"
                        : r == -ESHUTDOWN ? "the gateway is stopping" : "cannot queue the request";
}

/* ---- shared attributes ---------------------------------------------------------------- */

static void write_shared(struct downlink *dl, struct dl_dev *d, const char *key, json_object *v)
{
    const struct tag_config *t = device_find_tag(&d->dc->writes, key);
    struct command *cmd;
    struct pending *p;
    char err[RPC_ERROR_MAX];
    int r;

    if (!t) {
        log_debug("device '%s': shared attribute '%s' is not a declared write; ignored",
                  d->dc->name, key);
        return;
    }
    cmd = xcalloc(1, sizeof(*cmd));
    cmd->kind = CMD_WRITE;
    cmd->tag = *t;
    if (rpc_value_for_tag(t, v, &cmd->value, err, sizeof(err)) < 0) {
        log_warning("device '%s': shared attribute %s = %s refused: %s", d->dc->name, key,
                    json_object_to_json_string(v), err);
        command_free(cmd);
        return;
    }
    p = xcalloc(1, sizeof(*p));
    p->kind = P_ATTRIBUTE;
    p->what = xasprintf("shared attribute %s = %s", key, json_object_to_json_string(v));
    r = submit(dl, d, cmd, p);
    if (r < 0) {
        log_warning("device '%s': %s not written: %s", d->dc->name, p->what, busy_text(r));
        pending_free(p);
    }
}

/* push: an attribute update; otherwise the answer to the request at connect. */
static void apply_shared(struct downlink *dl, struct dl_dev *d, json_object *o, bool push)
{
    json_object *deleted;

    if (json_object_object_get_ex(o, "deleted", &deleted) &&
        json_object_is_type(deleted, json_type_array) && json_object_object_length(o) == 1) {
        ota_deleted(dl, d, deleted);
        return; /* a deletion never writes anything */
    }
    ota_attributes(dl, d, o, push);
    json_object_object_foreach(o, key, v) {
        if (!ota_key(key))
            write_shared(dl, d, key, v);
    }
}

/* Ask for the current values of the shared keys this device acts on: a setpoint changed
 * while the gateway was away reaches the hardware now (ThingsBoard sends nothing on
 * subscribe). */
static void request_shared(struct downlink *dl, struct dl_dev *d)
{
    struct rdev *r = rd(dl, d);
    size_t len = 0;
    char *keys;
    json_object *req;
    char topic[64];

    r->sync_request_id = -1;
    r->synced = false;
    for (size_t i = 0; i < d->dc->writes.n; i++)
        len += strlen(d->dc->writes.v[i].key) + 1;
    len += ota_request_keys(NULL, 0);
    if (!len) {
        r->synced = true;
        return;
    }
    keys = xmalloc(len + 1);
    keys[0] = '\0';
    for (size_t i = 0; i < d->dc->writes.n; i++) {
        if (*keys)
            strcat(keys, ",");
        strcat(keys, d->dc->writes.v[i].key);
    }
    ota_request_keys(keys, len + 1);
    req = json_object_new_object();
    json_object_object_add(req, "sharedKeys", json_object_new_string(keys));
    r->sync_request_id = r->next_attr_request++ & 0x7fffffff;
    snprintf(topic, sizeof(topic), "%s%d", TOPIC_ATTR_REQUEST, r->sync_request_id);
    dl_publish_json(dl, d, topic, req);
    json_object_put(req);
    free(keys);
}

/* ---- server-side RPC ---------------------------------------------------------------------- */

/* True if this request was seen recently: a repeat is answered from memory (or, while it
 * is still executing, left to the first execution). */
static bool repeat(struct downlink *dl, struct dl_dev *d, int id, unsigned long h)
{
    struct rdev *r = rd(dl, d);
    uint64_t now = now_ms();
    struct seen *slot;

    if (!r->seen)
        r->seen = xcalloc(SEEN_RPCS, sizeof(*r->seen));
    for (unsigned i = 0; i < SEEN_RPCS; i++) {
        struct seen *s = &r->seen[i];
        if (!s->at_ms || now - s->at_ms > SEEN_TTL_MS || s->id != id || s->hash != h)
            continue;
        log_debug("device '%s': RPC %d received again; %s", d->dc->name, id,
                  s->answer ? "repeating its answer" : "it is still executing");
        if (s->answer) {
            char topic[64];
            snprintf(topic, sizeof(topic), "%s%d", TOPIC_RPC_RESPONSE, id);
            publish_text(dl, d, topic, s->answer);
        }
        return true;
    }
    slot = &r->seen[r->next_seen++ % SEEN_RPCS];
    free(slot->answer);
    *slot = (struct seen){.id = id, .hash = h, .at_ms = now};
    return false;
}

static void handle_rpc(struct downlink *dl, struct dl_dev *d, int id, const char *payload,
                       size_t len)
{
    struct rpc_request req;
    char err[RPC_ERROR_MAX];
    const struct tag_config *t;
    struct tag_config raw;
    struct command *cmd;
    struct pending *p;
    bool write;
    int r;

    if (rpc_parse_request(payload, len, &req, err, sizeof(err)) < 0) {
        repeat(dl, d, id, hash_text(payload, NULL));
        answer_rpc_error(dl, d, id, err);
        return;
    }
    if (repeat(dl, d, id, hash_text(req.method, req.params ? json_object_to_json_string(req.params) : "")))
        goto out;

    t = device_find_tag(&d->dc->rpc, req.method);
    if (!t && d->dc->allow_raw_rpc &&
        (strcmp(req.method, "read") == 0 || strcmp(req.method, "write") == 0)) {
        if (rpc_raw_tag(req.params, strcmp(req.method, "write") == 0, d->dc, &raw, err,
                        sizeof(err)) < 0) {
            answer_rpc_error(dl, d, id, err);
            goto out;
        }
        t = &raw;
    }
    if (!t) {
        snprintf(err, sizeof(err), "unknown method '%.60s'", req.method);
        answer_rpc_error(dl, d, id, err);
        goto out;
    }
    if (d->dc->bus->driver == DRIVER_SERIAL_LINE) {
        answer_rpc_error(dl, d, id, "this device is a text sensor: nothing can be read or written");
        goto out;
    }
    write = t->access == ACCESS_WRITE;
    cmd = xcalloc(1, sizeof(*cmd));
    cmd->kind = write ? CMD_WRITE : CMD_READ;
    cmd->tag = *t;
    if (write && rpc_value_for_tag(t, rpc_write_value(req.params), &cmd->value, err,
                                   sizeof(err)) < 0) {
        command_free(cmd);
        answer_rpc_error(dl, d, id, err);
        goto out;
    }
    p = xcalloc(1, sizeof(*p));
    p->kind = P_RPC;
    p->rpc_id = id;
    p->read = !write;
    p->what = xasprintf("RPC %d '%s'", id, req.method);
    r = submit(dl, d, cmd, p);
    if (r < 0) {
        pending_free(p);
        answer_rpc_error(dl, d, id, busy_text(r));
    }
out:
    rpc_request_clear(&req);
}

/* ---- client-side RPC ---------------------------------------------------------------------- */

int router_client_rpc(struct downlink *dl, uint32_t dev, const char *method, json_object *params,
                      unsigned timeout_ms, router_client_cb cb, void *ctx)
{
    struct dl_dev *d = &dl->devs[dev];
    struct rdev *r = rd(dl, d);
    struct client_rpc *slot = NULL;
    json_object *o;
    char topic[64];
    int ret;

    if (dl_session(dl, d) != DL_UP)
        return -ENOTCONN;
    if (!r->crpc)
        r->crpc = xcalloc(CLIENT_RPC_MAX, sizeof(*r->crpc));
    for (unsigned i = 0; i < CLIENT_RPC_MAX && !slot; i++)
        if (!r->crpc[i].cb)
            slot = &r->crpc[i];
    if (!slot)
        return -EAGAIN;
    o = json_object_new_object();
    json_object_object_add(o, "method", json_object_new_string(method));
    json_object_object_add(o, "params", params ? json_object_get(params) : json_object_new_object());
    *slot = (struct client_rpc){.id = r->next_client_rpc++ & 0x7fffffff, .sent_ms = now_ms(),
                                .cb = cb, .ctx = ctx};
    slot->deadline_ms = slot->sent_ms + timeout_ms;
    snprintf(topic, sizeof(topic), "%s%d", TOPIC_RPC_REQUEST, slot->id);
    ret = dl_publish_json(dl, d, topic, o);
    json_object_put(o);
    if (ret < 0)
        slot->cb = NULL;
    return ret;
}

static void client_rpc_answer(struct downlink *dl, struct dl_dev *d, int id, const char *payload,
                              size_t len)
{
    struct rdev *r = rd(dl, d);

    for (unsigned i = 0; i < CLIENT_RPC_MAX && r->crpc; i++) {
        struct client_rpc c = r->crpc[i];
        if (!c.cb || c.id != id)
            continue;
        r->crpc[i].cb = NULL;
        c.cb(dl, dl_index(d), 0, payload, len, now_ms() - c.sent_ms, c.ctx);
        return;
    }
}

/* ---- entry points --------------------------------------------------------------------- */

struct downlink *downlink_new(const struct config *cfg, struct device **devices,
                              const struct downlink_port *port)
{
    struct downlink *dl = xcalloc(1, sizeof(*dl));

    dl->cfg = cfg;
    dl->port = *port;
    dl->n_devs = cfg->n_devices;
    dl->devs = xcalloc(dl->n_devs ? dl->n_devs : 1, sizeof(*dl->devs));
    for (size_t i = 0; i < dl->n_devs; i++) {
        dl->devs[i].dev = devices[i];
        dl->devs[i].dc = devices[i]->cfg;
    }
    dl->router = xcalloc(1, sizeof(*dl->router));
    dl->router->devs = xcalloc(dl->n_devs ? dl->n_devs : 1, sizeof(*dl->router->devs));
    for (size_t i = 0; i < dl->n_devs; i++) {
        dl->router->devs[i].sync_request_id = -1;
        dl->router->devs[i].next_attr_request = 1;
        dl->router->devs[i].next_client_rpc = 1;
    }
    ota_init(dl);
    timesync_init(dl);
    return dl;
}

static void seen_free(struct seen *seen)
{
    for (unsigned k = 0; seen && k < SEEN_RPCS; k++)
        free(seen[k].answer);
    free(seen);
}

struct downlink *downlink_free(struct downlink *dl)
{
    struct pending *p;

    if (!dl)
        return NULL;
    ota_free(dl);
    timesync_free(dl);
    while ((p = dl->router->pending)) {
        dl->router->pending = p->next;
        pending_free(p);
    }
    for (size_t i = 0; i < dl->n_devs; i++) {
        seen_free(dl->router->devs[i].seen);
        free(dl->router->devs[i].crpc);
    }
    free(dl->router->devs);
    free(dl->router);
    free(dl->devs);
    free(dl);
    return NULL;
}

void router_connected(struct downlink *dl, uint32_t dev)
{
    struct dl_dev *d = &dl->devs[dev];

    ota_connected(dl, d);
    request_shared(dl, d);
    timesync_connected(dl, d);
}

void router_resumed(struct downlink *dl, uint32_t dev)
{
    struct dl_dev *d = &dl->devs[dev];

    ota_connected(dl, d);
    /* The ask at connect may have been unanswered, or not even sent, when the session
     * changed hands: its answer would not be recognised here, so ask again. */
    if (!rd(dl, d)->synced)
        request_shared(dl, d);
}

/* What a router knows of one session, between two routers (a reload). */
struct router_session {
    struct rdev r;
};

struct router_session *router_export(struct downlink *dl, uint32_t dev)
{
    struct router_session *s = xcalloc(1, sizeof(*s));
    struct rdev *o = &dl->router->devs[dev];

    s->r.synced = o->synced;
    s->r.next_attr_request = o->next_attr_request;
    s->r.next_client_rpc = o->next_client_rpc;
    /* RPCs already answered: a repeat is answered from memory, as before the reload (one
     * still executing is the old router's, which answers it). */
    if (o->seen) {
        s->r.seen = xcalloc(SEEN_RPCS, sizeof(*s->r.seen));
        for (unsigned k = 0; k < SEEN_RPCS; k++) {
            if (!o->seen[k].answer)
                continue;
            s->r.seen[k] = o->seen[k];
            o->seen[k].answer = NULL;
        }
    }
    s->r.next_seen = o->next_seen;
    return s;
}

struct router_session *router_session_free(struct router_session *s)
{
    if (s)
        seen_free(s->r.seen);
    free(s);
    return NULL;
}

void router_import(struct downlink *dl, uint32_t dev, struct router_session *s)
{
    struct rdev *r = &dl->router->devs[dev];

    r->synced = s->r.synced;
    /* Ids go on, so an answer to an old request is never taken for a new one. */
    r->next_attr_request = s->r.next_attr_request;
    r->next_client_rpc = s->r.next_client_rpc;
    if (s->r.seen) {
        seen_free(r->seen);
        r->seen = s->r.seen;
        s->r.seen = NULL;
    }
    r->next_seen = s->r.next_seen;
    router_session_free(s);
}

void router_disconnected(struct downlink *dl, uint32_t dev)
{
    struct dl_dev *d = &dl->devs[dev];
    struct rdev *r = rd(dl, d);

    /* Client RPCs sent on the old session will not be answered on the new one. */
    for (unsigned i = 0; i < CLIENT_RPC_MAX && r->crpc; i++) {
        struct client_rpc c = r->crpc[i];
        if (!c.cb)
            continue;
        r->crpc[i].cb = NULL;
        c.cb(dl, dl_index(d), -ENOTCONN, NULL, 0, 0, c.ctx);
    }
    ota_disconnected(dl, d);
}

void router_message(struct downlink *dl, uint32_t dev, const char *topic, const char *payload,
                    size_t len)
{
    struct dl_dev *d = &dl->devs[dev];
    int id;

    if (strcmp(topic, TOPIC_ATTRIBUTES) == 0) {
        json_object *o = attributes_parse(payload, len);
        if (!o) {
            log_warning("device '%s': ignoring a shared-attribute message that is not a JSON "
                        "object", d->dc->name);
            return;
        }
        apply_shared(dl, d, o, true);
        json_object_put(o);
    } else if (rpc_topic_id(topic, TOPIC_ATTR_RESPONSE, &id) == 0) {
        json_object *o = attributes_parse(payload, len), *shared;
        if (o && id == rd(dl, d)->sync_request_id) {
            rd(dl, d)->synced = true;
            if ((shared = attributes_response_shared(o)))
                apply_shared(dl, d, shared, false);
        }
        json_object_put(o);
    } else if (rpc_topic_id(topic, TOPIC_RPC_REQUEST, &id) == 0) {
        handle_rpc(dl, d, id, payload, len);
    } else if (rpc_topic_id(topic, TOPIC_RPC_RESPONSE, &id) == 0) {
        client_rpc_answer(dl, d, id, payload, len);
    } else if (!ota_message(dl, d, topic, payload, len)) {
        log_debug("device '%s': ignoring a message on '%s'", d->dc->name, topic);
    }
}

void router_command_done(struct downlink *dl, struct command *cmd)
{
    struct pending *p = take_pending(dl, cmd->ctx_id);
    struct dl_dev *d;
    char err[RPC_ERROR_MAX];

    if (!p) {
        /* Its answer already went out as a timeout. */
        log_info("a command finished %ums after its answer timed out (%s)",
                 (unsigned)(cmd->latency_us / 1000), cmd->result ? driver_strerror(cmd->result) : "ok");
        command_free(cmd);
        return;
    }
    d = &dl->devs[p->device];
    if (rd(dl, d)->outstanding)
        rd(dl, d)->outstanding--;
    if (cmd->result < 0)
        snprintf(err, sizeof(err), "%s", cmd->hint                    ? cmd->hint
                                         : cmd->result == -ERANGE    ? "value out of range"
                                         : cmd->result == -ETIMEDOUT ? "the device did not answer"
                                         : driver_strerror(cmd->result));

    switch (p->kind) {
    case P_RPC:
        if (cmd->result < 0)
            answer_rpc_error(dl, d, p->rpc_id, err);
        else
            answer_rpc(dl, d, p->rpc_id, p->read ? rpc_answer_value(&cmd->out) : rpc_answer_ok());
        break;
    case P_ATTRIBUTE:
        if (cmd->result < 0)
            log_warning("device '%s': %s not written: %s", d->dc->name, p->what, err);
        else
            log_info("device '%s': %s written", d->dc->name, p->what);
        break;
    case P_INTERNAL:
        p->cb(dl, d, cmd, p->cb_ctx);
        break;
    }
    pending_free(p);
    command_free(cmd);
}

void router_tick(struct downlink *dl, uint64_t now)
{
    struct pending **pp = &dl->router->pending;

    while (*pp) {
        struct pending *p = *pp;
        struct dl_dev *d = &dl->devs[p->device];

        if (p->kind == P_INTERNAL || now < p->deadline_ms) {
            pp = &p->next;
            continue;
        }
        *pp = p->next;
        if (rd(dl, d)->outstanding)
            rd(dl, d)->outstanding--;
        if (p->kind == P_RPC)
            answer_rpc_error(dl, d, p->rpc_id, "timeout: the bus did not finish in time");
        else
            log_warning("device '%s': %s: no result in %us", d->dc->name, p->what,
                        COMMAND_DEADLINE_MS / 1000);
        pending_free(p);
    }
    for (size_t i = 0; i < dl->n_devs; i++) {
        struct rdev *r = &dl->router->devs[i];
        for (unsigned k = 0; k < CLIENT_RPC_MAX && r->crpc; k++) {
            struct client_rpc c = r->crpc[k];
            if (!c.cb || now < c.deadline_ms)
                continue;
            r->crpc[k].cb = NULL;
            c.cb(dl, (uint32_t)i, -ETIMEDOUT, NULL, 0, now - c.sent_ms, c.ctx);
        }
    }
    ota_tick(dl, now);
    timesync_tick(dl, now);
}

int router_submit_internal(struct downlink *dl, struct dl_dev *d, struct command *cmd,
                           router_done_cb cb, void *ctx)
{
    struct pending *p = xcalloc(1, sizeof(*p));
    int r;

    p->kind = P_INTERNAL;
    p->cb = cb;
    p->cb_ctx = ctx;
    p->what = xstrdup("internal command");
    /* The gateway's own commands are not limited by MAX_OUTSTANDING's "busy". */
    rd(dl, d)->outstanding = MIN(rd(dl, d)->outstanding, MAX_OUTSTANDING - 1u);
    r = submit(dl, d, cmd, p);
    if (r < 0)
        pending_free(p);
    return r;
}

void router_control(struct downlink *dl, uint32_t dev, const char *what, const char *payload,
                    size_t len, void (*reply)(void *ctx, int err), void *reply_ctx)
{
    struct dl_dev *d;
    int r = -ENODEV;

    if (dev < dl->n_devs && what && strcmp(what, "claim") == 0) {
        d = &dl->devs[dev];
        if (dl_session(dl, d) != DL_UP) {
            r = -ENOTCONN;
        } else {
            r = dl_publish(dl, d, "v1/devices/me/claim", payload, len);
            if (r == 0) {
                dl_count_message(dl, d);
                log_info("device '%s': claiming request sent", d->dc->name);
            }
        }
    }
    if (reply)
        reply(reply_ctx, r);
}
