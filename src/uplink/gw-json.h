/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ThingsBoard gateway-API uplink JSON (thingsboard-device-api.md §11): one gateway session
 * carries many devices, each message names them.
 *
 * v1/gateway/telemetry is {"A":[…],"B":[…]} where each device's array is exactly a device-
 * mode telemetry batch (tb_batch_finish()), and v1/gateway/attributes is {"A":{…},…} where
 * each object is a device-mode attribute object (tb_json_text()): the per-device writer is
 * tb-json's, the gateway message only groups its output. A gateway message is built from
 * those texts, never over its byte limit (ThingsBoard closes the connection above 64 KiB):
 * when the next batch does not fit the builder refuses it and everything after it, so a
 * caller that starts the next message with the refused batch keeps every device's batches
 * in order. Two batches of one device in one message are merged into its one member (a
 * repeated JSON key would keep only the last).
 *
 * Pure: no I/O, no locks, no globals. Thread: any.
 */
#ifndef TBGW_UPLINK_GW_JSON_H
#define TBGW_UPLINK_GW_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "tb/tb-json.h"

#define GW_TOPIC_CONNECT "v1/gateway/connect"
#define GW_TOPIC_DISCONNECT "v1/gateway/disconnect"
#define GW_TOPIC_TELEMETRY "v1/gateway/telemetry"
#define GW_TOPIC_ATTRIBUTES "v1/gateway/attributes"
#define GW_TOPIC_ATTRIBUTES_REQUEST "v1/gateway/attributes/request"
#define GW_TOPIC_ATTRIBUTES_RESPONSE "v1/gateway/attributes/response"
#define GW_TOPIC_RPC "v1/gateway/rpc"
#define GW_TOPIC_CLAIM "v1/gateway/claim"

/* The most payload a QoS 1 PUBLISH on topic may carry. ThingsBoard gives its
 * max_payload_size (TB_PAYLOAD_MAX) to Netty's MqttDecoder, which compares it with the
 * packet's remaining length: topic (2 + its length) and packet id (2) count too. */
static inline size_t gw_payload_limit(const char *topic)
{
    return TB_PAYLOAD_MAX - 2 - strlen(topic) - 2;
}

enum gw_msg_kind {
    GW_MSG_ARRAYS,  /* telemetry: each member a JSON array */
    GW_MSG_OBJECTS, /* attributes, claims: each member a JSON object */
};

struct gw_member;

/* A v1/gateway/telemetry or v1/gateway/attributes message being built. */
struct gw_msg {
    enum gw_msg_kind kind;
    size_t limit;              /* bytes the finished text may have */
    size_t bytes;              /* exact size of the text so far */
    size_t n_parts;            /* batches taken */
    bool full;                 /* a part was refused: take nothing more */
    struct gw_member *members; /* in order of first appearance */
    size_t n_members, cap_members;
    size_t *index, index_cap; /* device name -> member number + 1 (open addressing) */
};

void gw_msg_init(struct gw_msg *m, enum gw_msg_kind kind, size_t limit);
void gw_msg_clear(struct gw_msg *m);
static inline bool gw_msg_empty(const struct gw_msg *m)
{
    return m->n_parts == 0;
}

/* Add one device's batch (text of len bytes: "[…]" for GW_MSG_ARRAYS, "{…}" for
 * GW_MSG_OBJECTS, as tb-json writes them; whitespace around it is dropped). 0 when taken; -ENOSPC when it does not fit
 * (nothing taken, and nothing more will be until gw_msg_finish()); -EMSGSIZE when it could
 * not fit even alone in an empty message; -EINVAL for an empty name or a text that is not
 * a non-empty array / object. */
int gw_msg_add(struct gw_msg *m, const char *device, const char *text, size_t len);

/* The message text (malloc'd, NUL-terminated, *ret_len bytes, never above limit), or NULL
 * if it is empty; the builder is reset for the next message. */
char *gw_msg_finish(struct gw_msg *m, size_t *ret_len);

/* Small bodies, malloc'd JSON text. */
char *gw_connect_body(const char *device, const char *type);   /* type may be NULL */
char *gw_disconnect_body(const char *device);
/* {"device","id","data"}: data is the answer text of rpc_answer_*() (must be JSON). */
char *gw_rpc_reply_body(const char *device, int id, const char *data);
/* {"id","device","client":false|true,"key"|"keys"}: one key gives "key". */
char *gw_attribute_request_body(const char *device, int id, bool client,
                                const char *const *keys, size_t n_keys);
/* {"A":<claim>}: claim is the device-mode claiming body the control socket builds
 * ({"secretKey","durationMs"}, either optional); an empty one becomes {}. */
char *gw_claim_body(const char *device, const char *claim, size_t len);

#endif
