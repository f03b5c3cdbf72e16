/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz target: the gateway API's JSON (src/downlink/gw-parse.c, src/uplink/gw-json.c).
 * The input is "topic\npayload":
 *   v1/gateway/attributes            shared-attribute push (gw_parse_attribute_push)
 *   v1/gateway/rpc                   server-side RPC (gw_parse_rpc), then the reply body
 *   v1/gateway/attributes/response   attribute response (gw_parse_attribute_response),
 *                                    read as the answer to one key and to several
 *   telemetry | attributes           one "device\tbatch" per line, grouped by gw_msg_add()
 *                                    into messages of at most 300 bytes, as the uplink will
 *
 * Promises checked (abort when broken): a parsed downlink names a device and carries what
 * the device-mode router expects (an object; a method); a refusal has a text; every reply
 * body is JSON that names the device it answers; every gateway message is within its limit,
 * is JSON, and gives back each device's batches complete and in order.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "downlink/gw-parse.h"
#include "downlink/rpc.h"
#include "tests/fuzz/fuzz.h"
#include "uplink/gw-json.h"
#include "tb/tb-json.h"
#include "util/macros.h"

#define MSG_LIMIT 300
#define MAX_DEVICES 32

static json_object *parse_strict(const char *text, size_t len)
{
    json_tokener *tok = json_tokener_new_ex(16);
    json_object *o;

    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    o = json_tokener_parse_ex(tok, text, (int)len);
    if (o && (json_tokener_get_error(tok) != json_tokener_success ||
              json_tokener_get_parse_end(tok) != len)) {
        json_object_put(o);
        o = NULL;
    }
    json_tokener_free(tok);
    return o;
}

static void check_reply(const char *device, char *body)
{
    json_object *o = parse_strict(body, strlen(body)), *d;

    if (!o || !json_object_object_get_ex(o, "device", &d) ||
        strcmp(json_object_get_string(d), device) != 0)
        BROKEN();
    json_object_put(o);
    free(body);
}

static void downlink(const char *topic, const char *payload, size_t len)
{
    struct gw_downlink g;
    char err[RPC_ERROR_MAX] = "";
    int r;

    if (strcmp(topic, GW_TOPIC_ATTRIBUTES) == 0) {
        r = gw_parse_attribute_push(payload, len, &g, err, sizeof(err));
        if (r == 0 && (!g.device || !*g.device || !json_object_is_type(g.data, json_type_object)))
            BROKEN();
    } else if (strcmp(topic, GW_TOPIC_RPC) == 0) {
        r = gw_parse_rpc(payload, len, &g, err, sizeof(err));
        if (r == 0 && (!g.device || !g.rpc.method || !*g.rpc.method))
            BROKEN();
        if (g.device && (r == 0 || g.id != -1)) {
            char *answer = r == 0 ? rpc_answer_ok() : rpc_answer_error(err);
            check_reply(g.device, gw_rpc_reply_body(g.device, g.id, answer));
            free(answer);
        }
    } else {
        for (int single = 0; single < 2; single++) {
            r = gw_parse_attribute_response(payload, len, single ? "k" : NULL, &g, err, sizeof(err));
            if (r == 0 && (!g.device || !json_object_is_type(g.data, json_type_object)))
                BROKEN();
            if (r < 0 && !err[0])
                BROKEN();
            gw_downlink_clear(&g);
        }
        return;
    }
    if (r < 0 && !err[0])
        BROKEN();
    gw_downlink_clear(&g);
}

struct dev {
    char *name;
    json_object *sent, *got; /* arrays of elements, or merged objects */
};

static struct dev *find(struct dev *devs, size_t *n, const char *name, bool add)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(devs[i].name, name) == 0)
            return &devs[i];
    if (!add || *n == MAX_DEVICES)
        return NULL;
    devs[*n].name = xstrdup(name);
    devs[*n].sent = NULL;
    devs[*n].got = NULL;
    return &devs[(*n)++];
}

/* Append the elements (arrays) or members (objects) of part to *acc. */
static void merge(json_object **acc, json_object *part)
{
    if (json_object_is_type(part, json_type_array)) {
        if (!*acc)
            *acc = json_object_new_array();
        for (size_t i = 0; i < json_object_array_length(part); i++)
            json_object_array_add(*acc, json_object_get(json_object_array_get_idx(part, i)));
    } else {
        if (!*acc)
            *acc = json_object_new_object();
        json_object_object_foreach(part, k, v)
            json_object_object_add(*acc, k, json_object_get(v));
    }
}

static void take_message(struct gw_msg *m, struct dev *devs, size_t *n)
{
    size_t len;
    char *text = gw_msg_finish(m, &len);
    json_object *o;

    if (!text)
        return;
    o = parse_strict(text, len);
    if (len > MSG_LIMIT || len != strlen(text) || !o || !json_object_is_type(o, json_type_object))
        BROKEN();
    json_object_object_foreach(o, name, part) {
        struct dev *d = find(devs, n, name, false);
        if (!d)
            BROKEN();
        merge(&d->got, part);
    }
    json_object_put(o);
    free(text);
}

static void uplink(enum gw_msg_kind kind, char *lines)
{
    struct dev devs[MAX_DEVICES];
    size_t n = 0;
    struct gw_msg m;
    char *save = NULL;

    gw_msg_init(&m, kind, MSG_LIMIT);
    for (char *line = strtok_r(lines, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *tab = strchr(line, '\t');
        json_object *part;
        struct dev *d;
        int r;

        if (!tab || tab == line)
            continue;
        *tab++ = '\0';
        part = parse_strict(tab, strlen(tab));
        /* Parts are what tb-json writes: strict JSON, a non-empty array or object. */
        if (!part || !json_object_is_type(part, kind == GW_MSG_ARRAYS ? json_type_array
                                                                      : json_type_object) ||
            (kind == GW_MSG_ARRAYS ? json_object_array_length(part)
                                   : (size_t)json_object_object_length(part)) == 0 ||
            !(d = find(devs, &n, line, true))) {
            json_object_put(part);
            continue;
        }
        r = gw_msg_add(&m, line, tab, strlen(tab));
        if (r == -ENOSPC) {
            take_message(&m, devs, &n);
            r = gw_msg_add(&m, line, tab, strlen(tab));
            if (r == -ENOSPC)
                BROKEN(); /* an empty message takes what can fit alone */
        }
        if (r == 0)
            merge(&d->sent, part);
        else if (r != -EMSGSIZE)
            BROKEN();
        json_object_put(part);
    }
    take_message(&m, devs, &n);
    for (size_t i = 0; i < n; i++) {
        if (!json_object_equal(devs[i].sent, devs[i].got))
            BROKEN();
        json_object_put(devs[i].sent);
        json_object_put(devs[i].got);
        free(devs[i].name);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    char *topic, *payload;
    size_t plen;

    fuzz_quiet();
    if (!nl)
        return 0;
    topic = fuzz_strndup(data, (size_t)(nl - data));
    plen = size - (size_t)(nl - data) - 1;
    payload = fuzz_strndup(nl + 1, plen);
    if (strcmp(topic, "telemetry") == 0)
        uplink(GW_MSG_ARRAYS, payload);
    else if (strcmp(topic, "attributes") == 0)
        uplink(GW_MSG_OBJECTS, payload);
    else if (strcmp(topic, GW_TOPIC_ATTRIBUTES) == 0 || strcmp(topic, GW_TOPIC_RPC) == 0 ||
             strcmp(topic, GW_TOPIC_ATTRIBUTES_RESPONSE) == 0)
        downlink(topic, payload, plen); /* the bytes, NULs included */
    free(topic);
    free(payload);
    return 0;
}
