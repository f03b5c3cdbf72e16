/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Gateway-API downlink parsing: the envelope ({"device", "id", "data"}) is checked and
 * removed; what is inside is checked by the same code as in device mode (rpc.c).
 *
 * Invariant: on return, ret owns everything it points to, on success and on error alike.
 *
 * Pure: no I/O, no locks, no globals. Thread: any.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "downlink/gw-parse.h"
#include "util/macros.h"

void gw_downlink_clear(struct gw_downlink *g)
{
    free(g->device);
    json_object_put(g->data);
    rpc_request_clear(&g->rpc);
    memset(g, 0, sizeof(*g));
    g->id = -1;
}

/* Open the envelope: a JSON object with a non-empty string "device". */
static json_object *envelope(const char *payload, size_t len, struct gw_downlink *ret, char *err,
                             size_t err_size)
{
    json_object *o, *d;

    memset(ret, 0, sizeof(*ret));
    ret->id = -1;
    o = rpc_parse_object(payload, len);
    if (!o) {
        rpc_fail(err, err_size, "the message is not a JSON object");
        return NULL;
    }
    if (!json_object_object_get_ex(o, "device", &d) || !json_object_is_type(d, json_type_string) ||
        json_object_get_string_len(d) == 0) {
        json_object_put(o);
        rpc_fail(err, err_size, "the message names no device");
        return NULL;
    }
    ret->device = xstrdup(json_object_get_string(d));
    return o;
}

/* An id as ThingsBoard writes it: a JSON integer that fits a Java int. */
static int get_id(json_object *o, int *ret)
{
    json_object *m;
    int64_t v;

    if (!json_object_object_get_ex(o, "id", &m) || !json_object_is_type(m, json_type_int))
        return -ENOENT;
    v = json_object_get_int64(m);
    if (v < INT_MIN || v > INT_MAX)
        return -ERANGE;
    *ret = (int)v;
    return 0;
}

int gw_parse_attribute_push(const char *payload, size_t len, struct gw_downlink *ret, char *err,
                            size_t err_size)
{
    json_object *o = envelope(payload, len, ret, err, err_size), *data;

    if (!o)
        return -EBADMSG;
    if (!json_object_object_get_ex(o, "data", &data) || !json_object_is_type(data, json_type_object)) {
        json_object_put(o);
        return rpc_fail(err, err_size, "attributes for '%.60s' carry no data object", ret->device);
    }
    ret->data = json_object_get(data);
    json_object_put(o);
    return 0;
}

int gw_parse_rpc(const char *payload, size_t len, struct gw_downlink *ret, char *err,
                 size_t err_size)
{
    json_object *o = envelope(payload, len, ret, err, err_size), *data;
    int r = -EBADMSG;

    if (!o)
        return -EBADMSG;
    if (!json_object_object_get_ex(o, "data", &data) || !json_object_is_type(data, json_type_object)) {
        rpc_fail(err, err_size, "the request carries no data object");
        goto out;
    }
    if (get_id(data, &ret->id) < 0) {
        ret->id = -1;
        rpc_fail(err, err_size, "the request has no id");
        goto out;
    }
    r = rpc_request_from(data, &ret->rpc, err, err_size);
out:
    json_object_put(o);
    return r;
}

int gw_parse_attribute_response(const char *payload, size_t len, const char *single_key,
                                struct gw_downlink *ret, char *err, size_t err_size)
{
    json_object *o = envelope(payload, len, ret, err, err_size), *v;
    int r = -EBADMSG;

    if (!o)
        return -EBADMSG;
    if (get_id(o, &ret->id) < 0) {
        ret->id = -1;
        rpc_fail(err, err_size, "the response has no id");
        goto out;
    }
    if (json_object_object_get_ex(o, "values", &v)) {
        if (!json_object_is_type(v, json_type_object)) {
            rpc_fail(err, err_size, "'values' is not an object");
            goto out;
        }
        ret->data = json_object_get(v);
    } else if (json_object_object_get_ex(o, "value", &v)) {
        if (!single_key) {
            rpc_fail(err, err_size, "a single 'value' answers a request for several keys");
            goto out;
        }
        ret->data = json_object_new_object();
        json_object_object_add(ret->data, single_key, json_object_get(v));
    } else {
        ret->data = json_object_new_object(); /* none of the keys exists */
    }
    r = 0;
out:
    json_object_put(o);
    return r;
}
