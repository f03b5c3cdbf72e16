/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz target: what arrives from the Edge, as router_message() and the uplink dispatch it.
 * The input is "topic\npayload":
 *   v1/devices/me/attributes                shared attributes (attributes_parse)
 *   v1/devices/me/attributes/response/N     attribute response (attributes_response_shared)
 *   v1/devices/me/rpc/request/N             server-side RPC (rpc_parse_request, rpc_raw_tag)
 *   v1/devices/me/rpc/response/N            client-side RPC answer (timesync_parse_answer)
 *   /provision/response                     provisioning (tb_provision_response, credstore)
 * and every value that would become a register write goes through rpc_value_for_tag()
 * against a fixed device with one tag of every type.
 *
 * Promises checked (abort when broken): an accepted value encodes for the bus exactly as
 * the driver will encode it, and an integer taken exactly is the integer that was sent;
 * every answer the gateway would publish is valid UTF-8 JSON (ThingsBoard drops the
 * session on anything else); provisioned credentials read back from the credential store
 * as they were stored.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "core/decode.h"
#include "downlink/ota.h"
#include "downlink/rpc.h"
#include "downlink/timesync.h"
#include "tests/fuzz/fuzz.h"
#include "uplink/credstore.h"
#include "tb/tb-json.h"
#include "util/macros.h"
#include "util/utf8.h"

/* key, table, type, registers, scale, then anything else */
#define TAG(k, tb, ty, n, sc, ...)                                                                 \
    {.key = (char *)(k), .table = (tb), .type = (ty), .count = (n), .scale = (sc), __VA_ARGS__}

static struct tag_config writes[] = {
    TAG("i16", TABLE_HOLDING, VT_INT16, 1, 1, .role = ROLE_WRITE),
    TAG("u16", TABLE_HOLDING, VT_UINT16, 1, 1, .role = ROLE_WRITE, .address = 1),
    TAG("i32", TABLE_HOLDING, VT_INT32, 2, 10, .role = ROLE_WRITE, .address = 2,
        .offset = -5, .word_order = ORDER_LITTLE),
    TAG("u32", TABLE_HOLDING, VT_UINT32, 2, 1, .role = ROLE_WRITE, .address = 4),
    TAG("i64", TABLE_HOLDING, VT_INT64, 4, 1, .role = ROLE_WRITE, .address = 6),
    TAG("u64", TABLE_HOLDING, VT_UINT64, 4, 1, .role = ROLE_WRITE, .address = 10,
        .byte_order = ORDER_LITTLE),
    TAG("f32", TABLE_HOLDING, VT_FLOAT32, 2, 0.1, .role = ROLE_WRITE, .address = 14),
    TAG("f64", TABLE_HOLDING, VT_FLOAT64, 4, 1, .role = ROLE_WRITE, .address = 16),
    TAG("valve", TABLE_COIL, VT_BOOL, 1, 1, .role = ROLE_WRITE),
    TAG("flag", TABLE_HOLDING, VT_BIT, 1, 1, .role = ROLE_WRITE, .address = 20, .bit = 3),
    TAG("label", TABLE_HOLDING, VT_STRING, 4, 1, .role = ROLE_WRITE, .address = 21),
    TAG("u16s", TABLE_HOLDING, VT_UINT16, 1, 0.5, .role = ROLE_WRITE, .address = 25,
        .offset = 100),
};

static struct tag_config rpcs[] = {
    TAG("get", TABLE_INPUT, VT_INT16, 1, 1, .role = ROLE_RPC, .access = ACCESS_READ),
    TAG("set", TABLE_COIL, VT_BOOL, 1, 1, .role = ROLE_RPC, .access = ACCESS_WRITE, .address = 3),
    TAG("setTemp", TABLE_HOLDING, VT_FLOAT32, 2, 0.1, .role = ROLE_RPC, .access = ACCESS_WRITE),
    TAG("setCount", TABLE_HOLDING, VT_UINT64, 4, 1, .role = ROLE_RPC, .access = ACCESS_WRITE,
        .address = 30),
    TAG("setName", TABLE_HOLDING, VT_STRING, 2, 1, .role = ROLE_RPC, .access = ACCESS_WRITE,
        .address = 40),
};

static struct device_config dev = {
    .name = (char *)"dev",
    .byte_order = ORDER_BIG,
    .word_order = ORDER_LITTLE,
    .writes = {writes, ARRAY_SIZE(writes)},
    .rpc = {rpcs, ARRAY_SIZE(rpcs)},
    .allow_raw_rpc = true,
};

static struct credstore *creds;

/* An answer as the router would publish it. */
static void check_answer(char *text)
{
    json_object *o;

    if (!utf8_valid(text, strlen(text)))
        BROKEN();
    o = json_tokener_parse(text);
    if (!o)
        BROKEN();
    json_object_put(o);
    free(text);
}

/* A value accepted for t must encode exactly as the driver encodes it (modbus-common.c),
 * and an integer taken exactly must be the one that was sent. */
static void check_value(const struct tag_config *t, json_object *v)
{
    struct value val, back = {0};
    char err[RPC_ERROR_MAX];
    uint16_t regs[125];

    if (rpc_value_for_tag(t, v, &val, err, sizeof(err)) < 0) {
        check_answer(rpc_answer_error(err));
        return;
    }
    switch (t->type) {
    case VT_BOOL:
    case VT_BIT:
        if (val.kind != VK_BOOL)
            BROKEN();
        break;
    case VT_STRING:
        if (val.kind != VK_STRING || encode_string(t, val.s, regs) < 0)
            BROKEN();
        break;
    default:
        if (val.kind == VK_INT && t->scale == 1.0 && t->offset == 0.0) {
            char sent[32];
            if (encode_integer(t, val.i, regs) < 0 || decode_registers(t, regs, &back) < 0)
                BROKEN();
            if (!(back.kind == VK_INT && back.i == val.i) &&
                !(back.kind == VK_UINT && val.i >= 0 && back.u == (uint64_t)val.i))
                BROKEN();
            /* json-c keeps integers beyond int64 as uint64: the text shows what was sent. */
            snprintf(sent, sizeof(sent), "%" PRId64, val.i);
            if (json_object_is_type(v, json_type_int) &&
                strcmp(json_object_to_json_string(v), sent) != 0)
                BROKEN();
        } else if (val.kind != VK_DOUBLE || encode_number(t, val.d, regs) < 0) {
            BROKEN();
        }
        break;
    }
    value_clear(&back);
    /* Numbers as an answer would carry them (a string in an answer comes from the device,
     * made valid UTF-8 by the decoder, never from the request). */
    if (val.kind != VK_STRING)
        check_answer(rpc_answer_value(&val));
    value_clear(&val);
}

static void apply_shared(json_object *o)
{
    json_object_object_foreach(o, key, v) {
        const struct tag_config *t;
        if (ota_key(key))
            continue;
        t = device_find_tag(&dev.writes, key);
        if (t)
            check_value(t, v);
    }
}

static void rpc_request(const char *payload, size_t len)
{
    struct rpc_request req;
    const struct tag_config *t;
    struct tag_config raw;
    struct value v = {0};
    char err[RPC_ERROR_MAX];

    if (rpc_parse_request(payload, len, &req, err, sizeof(err)) < 0) {
        check_answer(rpc_answer_error(err));
        return;
    }
    t = device_find_tag(&dev.rpc, req.method);
    if (!t && (strcmp(req.method, "read") == 0 || strcmp(req.method, "write") == 0)) {
        if (rpc_raw_tag(req.params, strcmp(req.method, "write") == 0, &dev, &raw, err,
                        sizeof(err)) < 0) {
            check_answer(rpc_answer_error(err));
            goto out;
        }
        if (raw.address < 0 || raw.address + raw.count > 65536 || raw.count < 1 ||
            raw.count > 125 || !value_type_allowed(raw.table, raw.type))
            BROKEN();
        t = &raw;
    }
    if (!t) {
        snprintf(err, sizeof(err), "unknown method '%.60s'", req.method);
        check_answer(rpc_answer_error(err));
        goto out;
    }
    if (t->access == ACCESS_WRITE)
        check_value(t, rpc_write_value(req.params));
    else if (tb_value_from_json(req.params, &v) == 0 && v.kind != VK_STRING)
        check_answer(rpc_answer_value(&v)); /* stands in for a number the device answers */
    value_clear(&v);
    check_answer(rpc_answer_ok());
out:
    rpc_request_clear(&req);
}

static bool same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void provision(const char *payload, size_t len)
{
    struct tb_provisioned p;
    const struct tb_provisioned *back;
    char msg[256];

    if (tb_provision_response(payload, len, &p, msg, sizeof(msg)) < 0)
        return;
    if (!creds)
        creds = credstore_load(fuzz_scratch_dir());
    if (credstore_put(creds, "dev", &p) == 0) {
        credstore_free(creds);
        creds = credstore_load(fuzz_scratch_dir());
        back = credstore_get(creds, "dev");
        if (!back || back->type != p.type || !same(back->token, p.token) ||
            !same(back->client_id, p.client_id) || !same(back->username, p.username) ||
            !same(back->password, p.password) || !same(back->cert, p.cert))
            BROKEN();
    }
    tb_provisioned_clear(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    char *topic;
    const char *payload;
    size_t len;
    json_object *o;
    int id;
    int64_t ms;

    fuzz_quiet();
    if (!nl)
        return 0;
    topic = fuzz_strndup(data, (size_t)(nl - data));
    /* The payload is not NUL-terminated, as paho hands it over. */
    payload = (const char *)nl + 1;
    len = size - (size_t)(nl + 1 - data);

    if (strcmp(topic, "v1/devices/me/attributes") == 0) {
        o = attributes_parse(payload, len);
        if (o)
            apply_shared(o);
        json_object_put(o);
    } else if (rpc_topic_id(topic, "v1/devices/me/attributes/response/", &id) == 0) {
        json_object *shared;
        o = attributes_parse(payload, len);
        if (o && (shared = attributes_response_shared(o)))
            apply_shared(shared);
        json_object_put(o);
    } else if (rpc_topic_id(topic, "v1/devices/me/rpc/request/", &id) == 0) {
        rpc_request(payload, len);
    } else if (rpc_topic_id(topic, "v1/devices/me/rpc/response/", &id) == 0) {
        if (timesync_parse_answer(payload, len, &ms) == 0 && (ms <= 1000000000000 ||
                                                              ms >= 10000000000000))
            BROKEN();
    } else if (strcmp(topic, "/provision/response") == 0) {
        provision(payload, len);
    }
    free(topic);
    return 0;
}
