/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Gateway mode's translation tables and texts (see gw-xlate.h).
 *
 * Invariants: a gwx_request is idle (dev_id -1, no answer) or waits on at least one scope;
 * gateway ids are never negative (ThingsBoard echoes a Java int, the router's ids are
 * masked the same way).
 *
 * Pure: no I/O, no locks, no globals. Thread: any.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "downlink/rpc.h"
#include "tb/tb-json.h"
#include "uplink/gw-json.h"
#include "uplink/gw-xlate.h"
#include "util/macros.h"

/* The id after id, wrapping to 0 past a Java int's range (ThingsBoard echoes it as one). */
static int next_java_int(int id)
{
    return id >= 0x7fffffff || id < 0 ? 0 : id + 1;
}

enum gwx_topic gwx_classify(const char *topic, int *ret_id)
{
    int id = -1;
    enum gwx_topic t = GWX_REFUSED;

    if (rpc_topic_id(topic, GWX_TOPIC_RPC_RESPONSE, &id) == 0)
        t = GWX_RPC_REPLY;
    else if (rpc_topic_id(topic, GWX_TOPIC_RPC_REQUEST, &id) == 0)
        t = GWX_CLIENT_RPC;
    else if (rpc_topic_id(topic, GWX_TOPIC_ATTR_REQUEST, &id) == 0)
        t = GWX_ATTR_REQUEST;
    else if (strcmp(topic, GWX_TOPIC_CLAIM) == 0)
        t = GWX_CLAIM;
    else if (strcmp(topic, GWX_TOPIC_TELEMETRY) == 0)
        t = GWX_TELEMETRY;
    else if (strcmp(topic, GWX_TOPIC_ATTRIBUTES) == 0)
        t = GWX_ATTRIBUTES;
    if (ret_id)
        *ret_id = id;
    return t;
}

json_object *gwx_wrap(enum gwx_topic kind, const char *device, json_object *o)
{
    json_object *w, *member;

    if (kind == GWX_TELEMETRY && json_object_is_type(o, json_type_object)) {
        member = json_object_new_array_ext(1);
        json_object_array_add(member, json_object_get(o));
    } else if ((kind == GWX_TELEMETRY && json_object_is_type(o, json_type_array) &&
                json_object_array_length(o) > 0) ||
               (kind == GWX_ATTRIBUTES && json_object_is_type(o, json_type_object) &&
                json_object_object_length(o) > 0)) {
        member = json_object_get(o);
    } else {
        return NULL;
    }
    w = json_object_new_object();
    json_object_object_add(w, device, member);
    return w;
}

/* ---- attribute requests ---------------------------------------------------------------- */

static const char *const scope_member[GWX_SCOPES] = {[GWX_SHARED] = "shared",
                                                     [GWX_CLIENT] = "client"};
static const char *const scope_keys[GWX_SCOPES] = {[GWX_SHARED] = "sharedKeys",
                                                   [GWX_CLIENT] = "clientKeys"};

void gwx_request_init(struct gwx_request *r)
{
    memset(r, 0, sizeof(*r));
    r->dev_id = -1;
    for (int s = 0; s < GWX_SCOPES; s++)
        r->gw_id[s] = -1;
}

void gwx_request_clear(struct gwx_request *r)
{
    for (int s = 0; s < GWX_SCOPES; s++)
        free(r->single_key[s]);
    json_object_put(r->answer);
    gwx_request_init(r);
}

/* Split a device-mode key list ("a,b") as ThingsBoard does: on commas, untrimmed; empty
 * pieces name nothing, and a key named twice is one (ThingsBoard keeps a set, and answers a
 * set of one with a lone "value"). Returns the count; *ret (malloc'd, pointing into
 * *ret_buf) the keys. */
static bool contains(const char *const *keys, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(keys[i], key) == 0)
            return true;
    return false;
}

static size_t split_keys(const char *list, char **ret_buf, const char ***ret)
{
    char *buf = xstrdup(list), *p = buf;
    const char **keys = xcalloc(strlen(list) / 2 + 1, sizeof(*keys));
    size_t n = 0;

    for (;;) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        if (*p && !contains(keys, n, p))
            keys[n++] = p;
        if (!comma)
            break;
        p = comma + 1;
    }
    *ret_buf = buf;
    *ret = keys;
    return n;
}

int gwx_request_start(struct gwx_request *r, const char *device, int dev_id, json_object *body,
                      int *next_id, char *body_out[GWX_SCOPES])
{
    int n = 0;

    gwx_request_clear(r);
    for (int s = 0; s < GWX_SCOPES; s++) {
        json_object *v;
        const char **keys;
        char *buf;
        size_t n_keys;

        body_out[s] = NULL;
        if (!json_object_object_get_ex(body, scope_keys[s], &v) ||
            !json_object_is_type(v, json_type_string))
            continue;
        n_keys = split_keys(json_object_get_string(v), &buf, &keys);
        if (n_keys) {
            r->gw_id[s] = *next_id;
            *next_id = next_java_int(*next_id);
            if (n_keys == 1)
                r->single_key[s] = xstrdup(keys[0]);
            body_out[s] = gw_attribute_request_body(device, r->gw_id[s], s == GWX_CLIENT, keys,
                                                    n_keys);
            n++;
        }
        free(keys);
        free(buf);
    }
    if (!n)
        return -EINVAL;
    r->dev_id = dev_id;
    r->answer = json_object_new_object();
    return n;
}

static int scope_of(const struct gwx_request *r, int gw_id)
{
    for (int s = 0; s < GWX_SCOPES; s++)
        if (r->gw_id[s] >= 0 && r->gw_id[s] == gw_id)
            return s;
    return -1;
}

const char *gwx_request_single_key(const struct gwx_request *r, int gw_id)
{
    int s = scope_of(r, gw_id);

    return s < 0 ? NULL : r->single_key[s];
}

int gwx_request_answer(struct gwx_request *r, int gw_id, json_object *values, char **ret_text,
                       int *ret_dev_id)
{
    int s = scope_of(r, gw_id);

    if (s < 0 || !r->answer)
        return -ENOENT;
    json_object_object_add(r->answer, scope_member[s],
                           values ? json_object_get(values) : json_object_new_object());
    r->gw_id[s] = -1;
    for (int k = 0; k < GWX_SCOPES; k++)
        if (r->gw_id[k] >= 0)
            return 0;
    *ret_text = tb_json_text(r->answer, NULL);
    *ret_dev_id = r->dev_id;
    gwx_request_clear(r);
    return 1;
}

/* ---- device names ------------------------------------------------------------------------ */

static size_t hash_name(const char *s)
{
    size_t h = 2166136261u; /* FNV-1a */

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static size_t find_slot(const struct gwx_names *ix, const char *name)
{
    size_t mask = ix->cap - 1;

    for (size_t i = hash_name(name) & mask;; i = (i + 1) & mask)
        if (!ix->slot[i] || strcmp(ix->names[ix->slot[i] - 1], name) == 0)
            return i;
}

int gwx_names_init(struct gwx_names *ix, const char *const *names, size_t n)
{
    size_t cap = 16;

    while (cap < 2 * n + 2)
        cap *= 2;
    *ix = (struct gwx_names){.names = names, .n = n, .cap = cap};
    ix->slot = xcalloc(cap, sizeof(*ix->slot));
    for (size_t k = 0; k < n; k++) {
        size_t i = find_slot(ix, names[k]);
        if (ix->slot[i]) {
            gwx_names_clear(ix);
            return -EEXIST;
        }
        ix->slot[i] = (uint32_t)k + 1;
    }
    return 0;
}

void gwx_names_clear(struct gwx_names *ix)
{
    free(ix->slot);
    memset(ix, 0, sizeof(*ix));
}

long gwx_names_find(const struct gwx_names *ix, const char *name)
{
    size_t i;

    if (!ix->cap || !name)
        return -ENOENT;
    i = find_slot(ix, name);
    return ix->slot[i] ? (long)ix->slot[i] - 1 : -ENOENT;
}

/* ---- client RPC ids ---------------------------------------------------------------------- */

int gwx_idmap_put(struct gwx_idmap *m, uint32_t dev, int dev_id)
{
    unsigned k = m->next++ % GWX_CLIENT_RPCS;
    int id = m->next_id >= 1 && m->next_id <= GWX_CLIENT_RPC_ID_MAX ? m->next_id : 1;

    m->next_id = id >= GWX_CLIENT_RPC_ID_MAX || id < 1 ? 1 : id + 1;
    m->v[k].used = true;
    m->v[k].gw_id = id;
    m->v[k].dev = dev;
    m->v[k].dev_id = dev_id;
    return id;
}

int gwx_idmap_take(struct gwx_idmap *m, int gw_id, uint32_t *ret_dev, int *ret_dev_id)
{
    for (unsigned k = 0; k < GWX_CLIENT_RPCS; k++) {
        if (m->v[k].used && m->v[k].gw_id == gw_id) {
            m->v[k].used = false;
            *ret_dev = m->v[k].dev;
            *ret_dev_id = m->v[k].dev_id;
            return 0;
        }
    }
    return -ENOENT;
}
