/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Downlink JSON: server-side RPC requests and their answers, shared-attribute values, and
 * the checks that decide whether a value from the network may become a register write.
 * Everything here is refusal-first: a message that is not exactly right produces an error
 * text for the answer and never a command.
 *
 * Pure: no I/O, no locks, no globals; fuzzed (tests/fuzz/fuzz-downlink). Thread: any.
 */
#ifndef TBGW_DOWNLINK_RPC_H
#define TBGW_DOWNLINK_RPC_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "core/value.h"
#include "util/macros.h"

#define RPC_ERROR_MAX 200

struct rpc_request {
    char *method;
    json_object *params; /* owned; may be NULL (JSON null or absent) */
};

/* The request id at the end of topic after prefix ("v1/devices/me/rpc/request/"), as
 * ThingsBoard parses it (a Java int). -EINVAL if it is not one. */
int rpc_topic_id(const char *topic, const char *prefix, int *ret_id);

/* Write the refusal text to err; returns -EBADMSG. */
int rpc_fail(char *err, size_t size, const char *fmt, ...) PRINTF_LIKE(3, 4);

/* payload as a JSON object (owned), or NULL for anything else: invalid JSON, another
 * type, trailing bytes other than whitespace, nesting deeper than 16. */
json_object *rpc_parse_object(const char *payload, size_t len);

/* Parse {"method": "...", "params": ...}. -EBADMSG with err filled on anything else. */
int rpc_parse_request(const char *payload, size_t len, struct rpc_request *ret, char *err,
                      size_t err_size);
/* The same from a parsed object (borrowed), e.g. the "data" of a gateway RPC. */
int rpc_request_from(json_object *o, struct rpc_request *ret, char *err, size_t err_size);
void rpc_request_clear(struct rpc_request *r);

/* The value a "write" RPC carries: params {"value": v}, or params itself. Borrowed. */
json_object *rpc_write_value(json_object *params);

/* Build the tag a raw "read"/"write" RPC names: params {"table", "address", "type",
 * "count", "bit", "byte_order", "word_order", "scale", "offset"}. Checked like the
 * configuration (type fits the table, range, writable table for writes). */
int rpc_raw_tag(json_object *params, bool write, const struct device_config *dev,
                struct tag_config *ret, char *err, size_t err_size);

/* A JSON value for tag t, checked: booleans for coils and bits (true/false, 0/1), numbers
 * (or numeric strings) that fit the register after scale and offset, strings that fit the
 * registers. On success ret owns any string. */
int rpc_value_for_tag(const struct tag_config *t, json_object *v, struct value *ret, char *err,
                      size_t err_size);

/* Answers, as text to publish (malloc'd). */
char *rpc_answer_ok(void);
char *rpc_answer_value(const struct value *v);
char *rpc_answer_error(const char *msg);

/* A shared-attribute message: a flat object of changed keys, or {"deleted": [...]}.
 * Returns the object (owned) or NULL if it is not one. */
json_object *attributes_parse(const char *payload, size_t len);

/* The "shared" member of an attribute response, borrowed from resp (NULL if absent). */
json_object *attributes_response_shared(json_object *resp);

#endif
