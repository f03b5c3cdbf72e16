/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ThingsBoard device-API JSON, built and parsed with json-c.
 *
 * Telemetry goes out as [{"ts":…,"values":{…}}, …]: samples of one device, grouped by
 * timestamp, in batches that close at TB_BATCH_SOFT_MAX bytes, far below ThingsBoard's
 * 64 KiB limit (a larger message makes the server drop the connection, and a store-and-
 * forward gateway would then resend it forever). Numbers keep one JSON form per key (see
 * util/fmt-num.h); values ThingsBoard cannot store (NaN, integers beyond int64) never
 * reach a payload.
 *
 * Both directions speak it: the uplink builds telemetry and attribute messages, the
 * downlink answers RPCs, and the control socket reads values, so it lives apart from both.
 *
 * Pure: no I/O, no locks, no globals. Thread: any.
 */
#ifndef TBGW_TB_TB_JSON_H
#define TBGW_TB_TB_JSON_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/value.h"

#define TB_BATCH_SOFT_MAX 4096u /* close a batch once it is this big */
#define TB_PAYLOAD_MAX 65536u   /* ThingsBoard's transport.mqtt.netty.max_payload_size */

/* A JSON value for v, or NULL if ThingsBoard could not store it. The caller owns it. */
json_object *tb_json_value(const struct value *v);

/* JSON value -> struct value (numbers, booleans, strings; NULL for objects, arrays, null). */
int tb_value_from_json(json_object *o, struct value *ret);

/* Builds one telemetry batch, as text from the start: a poll of ten registers costs one
 * append per value instead of a json-c tree of objects that is printed and freed (that tree
 * was most of the uplink thread's time). The text is exactly what tb_batch_finish() returns
 * but for the closing "}}]". */
struct tb_batch {
    char *text;          /* "[{"ts":…,"values":{…" so far; NULL while empty */
    size_t len, cap;
    size_t bytes;        /* exact size of the finished text */
    int64_t ts;          /* ts of the open entry */
    size_t n_values;
    int64_t first_ts;
    /* Keys of the open entry, hashed: a key written twice at one ts starts a new entry
     * with the same ts instead of repeating a JSON member (see tb_batch_add()). */
    uint32_t *key_hash;
    size_t n_keys, cap_keys;
};

void tb_batch_init(struct tb_batch *b);
void tb_batch_clear(struct tb_batch *b);
static inline bool tb_batch_empty(const struct tb_batch *b)
{
    return b->n_values == 0;
}
/* Add key = v at ts. Returns false (adding nothing) if v cannot be represented. The same
 * key twice at one ts is sent twice, in order, in two entries: ThingsBoard stores the
 * later, as it would the later of two messages. */
bool tb_batch_add(struct tb_batch *b, int64_t ts, const char *key, const struct value *v);
/* The batch as text (malloc'd, NUL-terminated); the builder is reset. */
char *tb_batch_finish(struct tb_batch *b, size_t *ret_len);

/* {"k":v,…} of a json object (attributes), malloc'd. */
char *tb_json_text(json_object *o, size_t *ret_len);

/* The data points ThingsBoard counts for o posted as telemetry or attributes (JsonConverter:
 * non-null values, of {"ts","values"} entries or of a plain object, arrays summed). */
uint32_t tb_json_points(json_object *o);

/* s as a JSON string literal, quotes included, escaped exactly as keys and string values
 * are in every payload above (malloc'd). */
char *tb_json_quote(const char *s, size_t *ret_len);

/* ---- provisioning (thingsboard-device-api.md §9) ---- */

char *tb_provision_request(const char *device_name, const char *key, const char *secret);

struct tb_provisioned {
    enum { PROV_TOKEN, PROV_MQTT_BASIC, PROV_X509 } type;
    char *token;                            /* PROV_TOKEN */
    char *client_id, *username, *password;  /* PROV_MQTT_BASIC ("" fields become NULL) */
    char *cert;                             /* PROV_X509: PEM body */
};

/* Parse /provision/response. 0 on SUCCESS (ret filled); -EACCES for NOT_FOUND/FAILURE
 * (ret_msg: the server's errorMsg); -EBADMSG for anything malformed. */
int tb_provision_response(const char *payload, size_t len, struct tb_provisioned *ret,
                          char *ret_msg, size_t msg_size);
void tb_provisioned_clear(struct tb_provisioned *p);

#endif
