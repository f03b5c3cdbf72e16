/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Gateway mode's translation between the device-mode messages the router speaks and the
 * gateway API (thingsboard-device-api.md §11), the pure part of gw-route.c:
 *   - which device-mode topic a router publish is, and what it becomes on the gateway;
 *   - a device-mode attribute request ({"sharedKeys":"a,b","clientKeys":"c"}, one message
 *     for both scopes) split into the one v1/gateway/attributes/request per scope that the
 *     gateway API takes, and the answers merged back into the device-mode response the
 *     router waits for ({"client":{…},"shared":{…}});
 *   - a device name -> configuration index lookup (names are unique in the configuration);
 *   - client-RPC ids: each device numbers its own requests, the gateway's one session needs
 *     ids that are unique across them.
 *
 * Pure: no I/O, no locks, no globals. Thread: any.
 */
#ifndef TBGW_UPLINK_GW_XLATE_H
#define TBGW_UPLINK_GW_XLATE_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GWX_TOPIC_RPC_REQUEST "v1/devices/me/rpc/request/"
#define GWX_TOPIC_RPC_RESPONSE "v1/devices/me/rpc/response/"
#define GWX_TOPIC_ATTR_REQUEST "v1/devices/me/attributes/request/"
#define GWX_TOPIC_ATTR_RESPONSE "v1/devices/me/attributes/response/"
#define GWX_TOPIC_ATTRIBUTES "v1/devices/me/attributes"
#define GWX_TOPIC_TELEMETRY "v1/devices/me/telemetry"
#define GWX_TOPIC_CLAIM "v1/devices/me/claim"

/* A device-mode topic the router publishes on, by what the gateway makes of it. */
enum gwx_topic {
    GWX_REFUSED,      /* the gateway API has no such message (OTA on v2/fw, v2/sw, …) */
    GWX_RPC_REPLY,    /* rpc/response/{id}      -> v1/gateway/rpc {"device","id","data"} */
    GWX_CLAIM,        /* claim                  -> v1/gateway/claim {"A":{…}} */
    GWX_ATTR_REQUEST, /* attributes/request/{id} -> v1/gateway/attributes/request, per scope */
    GWX_CLIENT_RPC,   /* rpc/request/{id}       -> the gateway's own session, its own id */
    GWX_TELEMETRY,    /* telemetry              -> v1/gateway/telemetry {"A":[…]} */
    GWX_ATTRIBUTES,   /* attributes             -> v1/gateway/attributes {"A":{…}} */
};

/* What topic is; *ret_id is the id it ends with (rpc and attribute request topics). */
enum gwx_topic gwx_classify(const char *topic, int *ret_id);

/* The gateway message carrying device's device-mode telemetry (an object or an array of
 * them) or client-attribute object o (borrowed, not copied: the result holds a reference).
 * NULL if o is not of the right shape. */
json_object *gwx_wrap(enum gwx_topic kind, const char *device, json_object *o);

/* ---- attribute requests ---- */

enum gwx_scope { GWX_SHARED, GWX_CLIENT, GWX_SCOPES };

/* One device's attribute request in flight (the router has at most one: its sync at
 * connect). A zeroed one is idle after gwx_request_init(). */
struct gwx_request {
    int dev_id;                     /* the device-mode id the router waits on; -1: idle */
    int gw_id[GWX_SCOPES];          /* each scope's gateway request id; -1: none waiting */
    char *single_key[GWX_SCOPES];   /* the key when a scope asked for one ("value" answers) */
    json_object *answer;            /* {"client":{…},"shared":{…}} so far */
};

void gwx_request_init(struct gwx_request *r);
void gwx_request_clear(struct gwx_request *r);

/* Start r (dropping what it had) for the device-mode request body (borrowed) with id
 * dev_id: body[s] is the malloc'd v1/gateway/attributes/request text for each scope that
 * has keys, NULL for the others, and *next_id numbers them. Returns how many scopes (1 or
 * 2), or -EINVAL if body names no key (the gateway API has no "everything"). */
int gwx_request_start(struct gwx_request *r, const char *device, int dev_id, json_object *body,
                      int *next_id, char *body_out[GWX_SCOPES]);

/* The key a single-key scope of gateway request gw_id asked for, else NULL. */
const char *gwx_request_single_key(const struct gwx_request *r, int gw_id);

/* The answer to gateway request gw_id: values (borrowed, flat) merged in. 1 when it was the
 * last one awaited: *ret_text is the malloc'd device-mode response text and *ret_dev_id its
 * id, and r is idle again. 0 when another scope is still awaited; -ENOENT when r awaits no
 * such id. */
int gwx_request_answer(struct gwx_request *r, int gw_id, json_object *values, char **ret_text,
                       int *ret_dev_id);

/* ---- device names ---- */

/* name -> index over a borrowed array of names (open addressing). */
struct gwx_names {
    const char *const *names;
    size_t n;
    uint32_t *slot; /* index + 1; 0: empty */
    size_t cap;     /* a power of two, above 2 n */
};

/* -EEXIST if two names are equal (then ix is empty). */
int gwx_names_init(struct gwx_names *ix, const char *const *names, size_t n);
void gwx_names_clear(struct gwx_names *ix);
/* The index of name, or -ENOENT. */
long gwx_names_find(const struct gwx_names *ix, const char *name);

/* ---- client RPC ids ---- */

#define GWX_CLIENT_RPCS 64
/* The ids the devices' client RPCs take on the gateway's session run from 1 to this and
 * wrap; the ids above are left to the uplink's own requests there (getSessionLimits). */
#define GWX_CLIENT_RPC_ID_MAX 0x3fffffff

/* The gateway's client RPCs on its own session: gateway id -> (device, device's id). A
 * request the router gave up on (timeout) is overwritten after GWX_CLIENT_RPCS newer ones;
 * a late answer to it then finds nothing, as in device mode. */
struct gwx_idmap {
    struct {
        bool used;
        int gw_id, dev_id;
        uint32_t dev;
    } v[GWX_CLIENT_RPCS];
    unsigned next;
    int next_id;
};

/* The gateway id for device dev's request dev_id. */
int gwx_idmap_put(struct gwx_idmap *m, uint32_t dev, int dev_id);
/* Who asked gw_id (and forget it): 0, or -ENOENT. */
int gwx_idmap_take(struct gwx_idmap *m, int gw_id, uint32_t *ret_dev, int *ret_dev_id);

#endif
