/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * ThingsBoard gateway-API downlinks (thingsboard-device-api.md §11), unwrapped into what the
 * device-mode router already consumes, plus the name of the device they are for:
 *   v1/gateway/attributes           {"device":"A","data":{…}}   -> attributes_parse()'s object
 *   v1/gateway/rpc                  {"device":"A","data":{"id":5,"method":"m","params":…}}
 *                                                              -> id + struct rpc_request
 *   v1/gateway/attributes/response  {"id":1,"device":"A","value":v | "values":{…}}
 *                                                              -> id + flat {key: value}
 * Refusal-first like rpc.h: anything not exactly right gives -EBADMSG and an error text, and
 * what could be read (device, id) so that the caller can still answer an RPC with an error.
 *
 * Pure: no I/O, no locks, no globals; fuzzed (tests/fuzz/fuzz-gateway). Thread: any.
 */
#ifndef TBGW_DOWNLINK_GW_PARSE_H
#define TBGW_DOWNLINK_GW_PARSE_H

#include <json-c/json.h>
#include <stddef.h>

#include "downlink/rpc.h"

/* What every gateway downlink carries. The caller clears it (gw_downlink_clear()) whatever
 * the parser returned. */
struct gw_downlink {
    char *device;      /* NULL when the message names none */
    int id;            /* RPC / request id; -1 when absent or not a Java int */
    json_object *data; /* attribute push: the flat object or {"deleted":[…]};
                        * attribute response: flat {key: value} (empty if nothing found) */
    struct rpc_request rpc; /* RPC: method and params */
};

void gw_downlink_clear(struct gw_downlink *g);

int gw_parse_attribute_push(const char *payload, size_t len, struct gw_downlink *ret, char *err,
                            size_t err_size);

/* On -EBADMSG, ret->device and ret->id are set when they were readable: answer with
 * gw_rpc_reply_body(device, id, rpc_answer_error(err)). */
int gw_parse_rpc(const char *payload, size_t len, struct gw_downlink *ret, char *err,
                 size_t err_size);

/* single_key: the key when the request named exactly one (a "value" answer does not repeat
 * it), else NULL. */
int gw_parse_attribute_response(const char *payload, size_t len, const char *single_key,
                                struct gw_downlink *ret, char *err, size_t err_size);

#endif
