/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz target: requests on the control socket (src/control/control.c). The input is what
 * a local client sends; as on_readable() does, the request is the text before the first
 * newline. control_parse_request() reads it; a write's value then goes through the same
 * check as a write from ThingsBoard (rpc_value_for_tag) against a few declared writes, and
 * a claim's body is built as the uplink would send it.
 *
 * Promises checked (abort when broken): a read or write always names a device and a key;
 * a refusal always has a text; every reply is JSON.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "control/control.h"
#include "downlink/rpc.h"
#include "tests/fuzz/fuzz.h"
#include "tb/tb-json.h"
#include "util/macros.h"

static struct tag_config writes[] = {
    {.key = (char *)"sp", .role = ROLE_WRITE, .table = TABLE_HOLDING, .type = VT_INT32, .count = 2,
     .scale = 10, .offset = -5},
    {.key = (char *)"valve", .role = ROLE_WRITE, .table = TABLE_COIL, .type = VT_BOOL, .count = 1,
     .scale = 1},
    {.key = (char *)"name", .role = ROLE_WRITE, .table = TABLE_HOLDING, .type = VT_STRING,
     .count = 3, .scale = 1},
};
static const struct tag_list write_list = {writes, ARRAY_SIZE(writes)};

static void check_reply(json_object *o)
{
    size_t len;
    char *text = tb_json_text(o, &len);
    json_object *back = json_tokener_parse(text);

    if (!back || strlen(text) != len)
        BROKEN();
    json_object_put(back);
    free(text);
    json_object_put(o);
}

static void reply_error(const char *msg)
{
    json_object *o = json_object_new_object();

    if (!*msg)
        BROKEN();
    json_object_object_add(o, "error", json_object_new_string(msg));
    check_reply(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *line = fuzz_strndup(data, size), *nl = strchr(line, '\n');
    struct control_request req;
    char err[512];

    fuzz_quiet();
    if (nl)
        *nl = '\0';
    if (control_parse_request(line, &req, err, sizeof(err)) < 0) {
        reply_error(err);
        free(line);
        return 0;
    }
    if (!req.root || req.cmd > CONTROL_RELOAD)
        BROKEN();
    if ((req.cmd == CONTROL_READ || req.cmd == CONTROL_WRITE) && (!req.device || !req.key))
        BROKEN();
    if (req.cmd == CONTROL_WRITE) {
        const struct tag_config *t = device_find_tag(&write_list, req.key);
        struct value v;
        if (t && rpc_value_for_tag(t, req.value, &v, err, sizeof(err)) < 0)
            reply_error(err);
        else if (t)
            value_clear(&v);
    } else if (req.cmd == CONTROL_CLAIM) {
        json_object *body = json_object_new_object();
        if (req.secret)
            json_object_object_add(body, "secretKey", json_object_new_string(req.secret));
        if (req.has_duration)
            json_object_object_add(body, "durationMs", json_object_new_int64(req.duration_ms));
        check_reply(body);
    }
    control_request_clear(&req);
    free(line);
    return 0;
}
