/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Gateway mode's downlink: the router (downlink/router.h) is device-mode and stays so; this
 * file translates at its two edges.
 *
 * In: a gateway downlink names its device ("device") and wraps what device mode gets on the
 * device's own session. It is unwrapped (downlink/gw-parse.h) and handed to router_message()
 * as that device-mode message, so shared-attribute writes, the configured and raw RPC
 * methods, their errors and the duplicate protection are the router's, unchanged.
 *
 * Out: the router publishes on device-mode topics through its port; gw_route_port() gives it
 * callbacks that turn each into the gateway message for the same device (gw-xlate.h): RPC
 * answers -> v1/gateway/rpc, the attribute sync at connect -> one
 * v1/gateway/attributes/request per scope (their answers merged back into the one
 * device-mode response the router waits for), claims -> v1/gateway/claim, client
 * attributes -> the gateway's grouping (gw_pub_attributes), client RPC (the clock check's
 * getTime) -> the gateway's own session, as the gateway is a device too. What the gateway
 * API cannot carry (OTA: v2/fw, v2/sw) is refused, so it never reaches the session.
 *
 * A downlink for a device that is not in the configuration, or not announced in the
 * gateway's current session, writes nothing: an RPC whose device and id could be read is
 * answered with an error (ThingsBoard's caller learns why at once instead of timing out),
 * anything else is logged.
 *
 * Invariants: a device is DL_UP to the router exactly while gw_announced(); the route
 * state (names, requests) covers u->devs[0 .. n_devs) and lives as long as u.
 *
 * Thread: uplink.
 */
#include "config.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "downlink/gw-parse.h"
#include "downlink/port.h"
#include "downlink/router.h"
#include "downlink/rpc.h"
#include "uplink/gw-json.h"
#include "uplink/gw-route.h"
#include "uplink/gw-xlate.h"
#include "uplink/uplink-private.h"
#include "util/log.h"
#include "util/macros.h"
#include "util/utf8.h"

struct gw_route {
    const char **names;         /* u->devs[i].dc->name, for the index */
    struct gwx_names index;
    struct gwx_request *reqs;   /* each device's attribute request in flight */
    int next_request_id;
    struct gwx_idmap client_rpc;
};

static struct gw_route *route(struct uplink *u)
{
    if (!u->gw_route) {
        struct gw_route *r = xcalloc(1, sizeof(*r));

        r->names = xcalloc(u->n_devs ? u->n_devs : 1, sizeof(*r->names));
        for (size_t i = 0; i < u->n_devs; i++)
            r->names[i] = u->devs[i].dc->name;
        /* Names are unique: the configuration refuses a repeated one. */
        if (gwx_names_init(&r->index, r->names, u->n_devs) < 0)
            log_error("gateway: two devices have the same name; downlinks reach neither");
        r->reqs = xcalloc(u->n_devs ? u->n_devs : 1, sizeof(*r->reqs));
        for (size_t i = 0; i < u->n_devs; i++)
            gwx_request_init(&r->reqs[i]);
        r->next_request_id = 1;
        u->gw_route = r;
    }
    return u->gw_route;
}

void gw_route_free(struct uplink *u)
{
    struct gw_route *r = u->gw_route;

    if (!r)
        return;
    for (size_t i = 0; i < u->n_devs; i++)
        gwx_request_clear(&r->reqs[i]);
    free(r->reqs);
    gwx_names_clear(&r->index);
    free(r->names);
    free(r);
    u->gw_route = NULL;
}

void gw_route_carry(struct uplink *u, const struct uplink *old)
{
    const struct gw_route *o = old->gw_route;
    struct gw_route *r = route(u);

    if (!o)
        return;
    r->next_request_id = o->next_request_id;
    r->client_rpc.next_id = o->client_rpc.next_id;
}

/* The configured device called name, or NULL. */
static struct up_dev *find_device(struct uplink *u, const char *name)
{
    long i = gwx_names_find(&route(u)->index, name);

    return i < 0 ? NULL : &u->devs[i];
}

static int send_text(struct uplink *u, const char *topic, char *text)
{
    int r = gw_send(u, topic, text, strlen(text), 1, NULL);

    free(text);
    return r;
}

/* Paced on the gateway's own session, as a device-mode message would be on the device's. */
static int send_paced(struct uplink *u, const char *topic, json_object *o)
{
    struct up_dev *gw = gw_self(u);

    return gw ? uplink_publish_json(u, gw, topic, o) : -ENOTCONN;
}

/* ---- downlinks --------------------------------------------------------------------------- */

static void refuse_rpc(struct uplink *u, const char *device, int id, const char *why)
{
    char *answer;

    if (!utf8_valid(device, strlen(device))) {
        /* No ThingsBoard device has such a name, and echoing it would make ThingsBoard
         * drop the gateway's session (it closes on bad UTF-8). */
        log_warning("gateway: ignoring an RPC request for a device name that is not UTF-8");
        return;
    }
    log_info("gateway: RPC %d for '%s' refused: %s", id, device, why);
    answer = rpc_answer_error(why);
    send_text(u, GW_TOPIC_RPC, gw_rpc_reply_body(device, id, answer));
    free(answer);
}

/* The announced device a downlink names; NULL (with why) if there is none. */
static struct up_dev *target(struct uplink *u, const char *name, char *why, size_t size)
{
    struct up_dev *d = find_device(u, name);

    if (!d) {
        snprintf(why, size, "no device '%.60s' on this gateway", name);
        return NULL;
    }
    if (!gw_announced(u, d)) {
        snprintf(why, size, "device '%.60s' is not connected through this gateway yet", name);
        return NULL;
    }
    return d;
}

/* Hand o (borrowed) to the router as the device-mode message on topic for d. */
static void to_router(struct uplink *u, const struct up_dev *d, const char *topic, json_object *o)
{
    size_t n;
    const char *text = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &n);

    router_message(u->downlink, (uint32_t)d->dc->index, topic, text, n);
}

static void on_rpc(struct uplink *u, const char *payload, size_t len)
{
    struct gw_downlink g;
    char err[RPC_ERROR_MAX], topic[64];
    struct up_dev *d;
    json_object *req;

    if (gw_parse_rpc(payload, len, &g, err, sizeof(err)) < 0) {
        if (g.device && g.id >= 0)
            refuse_rpc(u, g.device, g.id, err);
        else
            log_warning("gateway: ignoring an RPC request that names no %s: %s",
                        g.device ? "id" : "device", err);
        goto out;
    }
    d = target(u, g.device, err, sizeof(err));
    if (!d) {
        refuse_rpc(u, g.device, g.id, err);
        goto out;
    }
    /* The device-mode request, for the router's checks, answers and memory of repeats. */
    req = json_object_new_object();
    json_object_object_add(req, "method", json_object_new_string(g.rpc.method));
    if (g.rpc.params)
        json_object_object_add(req, "params", json_object_get(g.rpc.params));
    snprintf(topic, sizeof(topic), "%s%d", GWX_TOPIC_RPC_REQUEST, g.id);
    to_router(u, d, topic, req);
    json_object_put(req);
out:
    gw_downlink_clear(&g);
}

static void on_attributes(struct uplink *u, const char *payload, size_t len)
{
    struct gw_downlink g;
    char err[RPC_ERROR_MAX];
    struct up_dev *d;

    if (gw_parse_attribute_push(payload, len, &g, err, sizeof(err)) < 0)
        log_warning("gateway: ignoring a shared-attribute message: %s", err);
    else if (!(d = target(u, g.device, err, sizeof(err))))
        log_warning("gateway: ignoring shared attributes: %s", err);
    else
        to_router(u, d, GWX_TOPIC_ATTRIBUTES, g.data);
    gw_downlink_clear(&g);
}

/* The request a response answers, found before the response is read: how a lone "value"
 * is read depends on it (one key asked). NULL if the response names no device of ours. */
static struct gwx_request *request_of(struct uplink *u, const char *payload, size_t len,
                                      struct up_dev **ret_d, const char **ret_single)
{
    json_object *o = rpc_parse_object(payload, len), *m;
    struct gwx_request *req = NULL;

    *ret_d = NULL;
    *ret_single = NULL;
    if (o && json_object_object_get_ex(o, "device", &m) &&
        json_object_is_type(m, json_type_string) &&
        (*ret_d = find_device(u, json_object_get_string(m)))) {
        req = &route(u)->reqs[(*ret_d)->dc->index];
        if (json_object_object_get_ex(o, "id", &m) && json_object_is_type(m, json_type_int))
            *ret_single = gwx_request_single_key(req, json_object_get_int(m));
    }
    json_object_put(o);
    return req;
}

static void on_attribute_response(struct uplink *u, const char *payload, size_t len)
{
    struct gw_downlink g;
    char err[RPC_ERROR_MAX], topic[64], *text = NULL;
    struct up_dev *d;
    const char *single;
    struct gwx_request *req = request_of(u, payload, len, &d, &single);
    int dev_id, r;

    if (gw_parse_attribute_response(payload, len, single, &g, err, sizeof(err)) < 0) {
        log_warning("gateway: ignoring an attribute response: %s", err);
        goto out;
    }
    if (!req || !gw_announced(u, d)) {
        log_debug("gateway: ignoring an attribute response for '%s': not a device of this "
                  "gateway's session", g.device);
        goto out;
    }
    r = gwx_request_answer(req, g.id, g.data, &text, &dev_id);
    if (r < 0) {
        log_debug("device '%s': ignoring the answer to attribute request %d: not asked now",
                  d->dc->name, g.id);
    } else if (r > 0) {
        snprintf(topic, sizeof(topic), "%s%d", GWX_TOPIC_ATTR_RESPONSE, dev_id);
        router_message(u->downlink, (uint32_t)d->dc->index, topic, text, strlen(text));
        free(text);
    }
out:
    gw_downlink_clear(&g);
}

/* The answer to a client RPC the gateway sent for one of its devices. */
static void on_client_rpc_answer(struct uplink *u, int gw_id, const char *payload, size_t len)
{
    char topic[64];
    uint32_t dev;
    int dev_id;

    if (gwx_idmap_take(&route(u)->client_rpc, gw_id, &dev, &dev_id) < 0 || dev >= u->n_devs) {
        log_debug("gateway: ignoring the answer to client RPC %d: not asked now", gw_id);
        return;
    }
    snprintf(topic, sizeof(topic), "%s%d", GWX_TOPIC_RPC_RESPONSE, dev_id);
    router_message(u->downlink, dev, topic, payload, len);
}

void gw_route_downlink(struct uplink *u, const char *topic, const char *payload, size_t len)
{
    int id;

    if (strcmp(topic, GW_TOPIC_RPC) == 0)
        on_rpc(u, payload, len);
    else if (strcmp(topic, GW_TOPIC_ATTRIBUTES) == 0)
        on_attributes(u, payload, len);
    else if (strcmp(topic, GW_TOPIC_ATTRIBUTES_RESPONSE) == 0)
        on_attribute_response(u, payload, len);
    else if (rpc_topic_id(topic, GWX_TOPIC_RPC_RESPONSE, &id) == 0)
        on_client_rpc_answer(u, id, payload, len);
    else
        log_debug("gateway: ignoring a message on '%s'", topic);
}

/* ---- the router's publishes ------------------------------------------------------------- */

static struct up_dev *announced(struct uplink *u, uint32_t dev)
{
    return dev < u->n_devs && gw_announced(u, &u->devs[dev]) ? &u->devs[dev] : NULL;
}

static enum dl_session gwp_session(void *ctx, uint32_t dev)
{
    return announced(ctx, dev) ? DL_UP : DL_DOWN;
}

static int refused(const struct up_dev *d, const char *topic)
{
    log_warning("device '%s': '%s' has no form in ThingsBoard's gateway API; not sent",
                d->dc->name, topic);
    return -EOPNOTSUPP;
}

/* RPC answers and claims: now, unpaced (gw_send counts them). */
static int gwp_publish(void *ctx, uint32_t dev, const char *topic, const void *payload, size_t len)
{
    struct uplink *u = ctx;
    struct up_dev *d = announced(u, dev);
    char *text;
    int id, r;

    if (!d)
        return -ENOTCONN;
    switch (gwx_classify(topic, &id)) {
    case GWX_RPC_REPLY:
        text = xstrndup(payload, len);
        r = send_text(u, GW_TOPIC_RPC, gw_rpc_reply_body(d->dc->name, id, text));
        free(text);
        return r;
    case GWX_CLAIM:
        return send_text(u, GW_TOPIC_CLAIM, gw_claim_body(d->dc->name, payload, len));
    default:
        return refused(d, topic);
    }
}

static int request_attributes(struct uplink *u, struct up_dev *d, int dev_id, json_object *o)
{
    struct gw_route *rt = route(u);
    char *body[GWX_SCOPES];
    int r = gwx_request_start(&rt->reqs[d->dc->index], d->dc->name, dev_id, o,
                              &rt->next_request_id, body);

    if (r < 0)
        return r;
    r = 0;
    for (int s = 0; s < GWX_SCOPES; s++) {
        json_object *req;
        if (!body[s])
            continue;
        req = json_tokener_parse(body[s]);
        if (r == 0)
            r = send_paced(u, GW_TOPIC_ATTRIBUTES_REQUEST, req);
        json_object_put(req);
        free(body[s]);
    }
    return r;
}

/* Everything else the router sends: paced, as in device mode. */
static int gwp_publish_json(void *ctx, uint32_t dev, const char *topic, json_object *o)
{
    struct uplink *u = ctx;
    struct up_dev *d = announced(u, dev);
    char gw_topic[64];
    json_object *w;
    int id, r;

    if (!d)
        return -ENOTCONN;
    switch (gwx_classify(topic, &id)) {
    case GWX_ATTR_REQUEST:
        return request_attributes(u, d, id, o);
    case GWX_CLIENT_RPC:
        snprintf(gw_topic, sizeof(gw_topic), "%s%d", GWX_TOPIC_RPC_REQUEST,
                 gwx_idmap_put(&route(u)->client_rpc, dev, id));
        return send_paced(u, gw_topic, o);
    case GWX_ATTRIBUTES:
        gw_pub_attributes(u, d, o);
        return 0;
    case GWX_TELEMETRY:
        if (!(w = gwx_wrap(GWX_TELEMETRY, d->dc->name, o)))
            return -EINVAL;
        r = send_paced(u, GW_TOPIC_TELEMETRY, w);
        json_object_put(w);
        return r;
    default:
        return refused(d, topic);
    }
}

/* gw_send() has counted it already. */
static void gwp_count_message(void *ctx, uint32_t dev)
{
    (void)ctx;
    (void)dev;
}

static bool gwp_message_fits(void *ctx, uint32_t dev, uint64_t *retry_at)
{
    struct uplink *u = ctx;
    struct up_dev *gw = gw_self(u);

    (void)dev;
    return gw ? uplink_message_fits(u, gw, retry_at) : true;
}

void gw_route_port(struct uplink *u, struct downlink_port *port)
{
    route(u);
    port->ctx = u;
    port->session = gwp_session;
    port->publish = gwp_publish;
    port->publish_json = gwp_publish_json;
    port->count_message = gwp_count_message;
    port->message_fits = gwp_message_fits;
}
