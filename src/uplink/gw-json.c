/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Gateway-API uplink messages: groups the per-device texts tb-json writes into one message
 * per topic, with an exact byte count so that no message ever exceeds its limit.
 *
 * Invariants: m->bytes is the exact length gw_msg_finish() will return; members keep the
 * order in which devices first appeared and, inside a member, parts keep the order they
 * were added; once a part was refused (full), nothing more is taken.
 *
 * Pure: no I/O, no locks, no globals. Thread: any (one builder per thread).
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "uplink/gw-json.h"
#include "tb/tb-json.h"
#include "util/macros.h"

struct gw_member {
    char *name;       /* JSON string literal of the device name */
    size_t name_len;
    char *inner;      /* the parts' contents without their brackets, joined with ',' */
    size_t inner_len, inner_cap;
};

void gw_msg_init(struct gw_msg *m, enum gw_msg_kind kind, size_t limit)
{
    memset(m, 0, sizeof(*m));
    m->kind = kind;
    m->limit = limit;
    m->bytes = 2; /* {} */
}

void gw_msg_clear(struct gw_msg *m)
{
    for (size_t i = 0; i < m->n_members; i++) {
        free(m->members[i].name);
        free(m->members[i].inner);
    }
    free(m->members);
    free(m->index);
    gw_msg_init(m, m->kind, m->limit);
}

/* FNV-1a: a message of 1000 one-batch devices must not cost a million name compares. */
static size_t hash_name(const char *s, size_t len)
{
    uint64_t h = 14695981039346656037u;

    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211u;
    return (size_t)h;
}

/* The slot of name in the open-addressed index: its member's, or the empty one it would
 * take. The index holds member number + 1, 0 meaning empty, and is at most half full. */
static size_t find_slot(const struct gw_msg *m, const char *name, size_t name_len)
{
    size_t mask = m->index_cap - 1, i = hash_name(name, name_len) & mask;

    for (;; i = (i + 1) & mask) {
        size_t k = m->index[i];
        if (k == 0)
            return i;
        if (m->members[k - 1].name_len == name_len &&
            memcmp(m->members[k - 1].name, name, name_len) == 0)
            return i;
    }
}

static void grow_index(struct gw_msg *m)
{
    size_t cap = m->index_cap ? m->index_cap * 2 : 64;

    free(m->index);
    m->index = xcalloc(cap, sizeof(*m->index));
    m->index_cap = cap;
    for (size_t k = 0; k < m->n_members; k++)
        m->index[find_slot(m, m->members[k].name, m->members[k].name_len)] = k + 1;
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

int gw_msg_add(struct gw_msg *m, const char *device, const char *text, size_t len)
{
    char open = m->kind == GW_MSG_ARRAYS ? '[' : '{';
    char close = m->kind == GW_MSG_ARRAYS ? ']' : '}';
    struct gw_member *mb = NULL;
    size_t slot = 0, name_len, inner_len, need, i;
    char *name;

    /* JSON whitespace around the part is not part of it (tb-json writes none). */
    while (len && is_ws(text[0]))
        text++, len--;
    while (len && is_ws(text[len - 1]))
        len--;
    inner_len = len >= 2 ? len - 2 : 0;
    if (!device || !*device || len < 3 || text[0] != open || text[len - 1] != close)
        return -EINVAL;
    for (i = 1; i <= inner_len && is_ws(text[i]); i++)
        ;
    if (i > inner_len) /* [ ]: an empty batch is nothing to send */
        return -EINVAL;
    if (m->full)
        return -ENOSPC;
    name = tb_json_quote(device, &name_len);
    if (2 * (m->n_members + 1) > m->index_cap)
        grow_index(m);
    slot = find_slot(m, name, name_len);
    if (m->index[slot])
        mb = &m->members[m->index[slot] - 1];
    if (mb)
        need = inner_len + 1;                                   /* ,inner */
    else
        need = (m->n_members ? 1 : 0) + name_len + 1 + 2 + inner_len; /* ,"A":[inner] */
    if (m->bytes + need > m->limit) {
        /* Alone in an empty message it would need this much. */
        bool never = 2 + name_len + 1 + 2 + inner_len > m->limit;
        free(name);
        if (never)
            return -EMSGSIZE;
        m->full = true;
        return -ENOSPC;
    }
    if (!mb) {
        if (m->n_members == m->cap_members) {
            m->cap_members = m->cap_members ? m->cap_members * 2 : 8;
            m->members = xreallocarray(m->members, m->cap_members, sizeof(*m->members));
        }
        mb = &m->members[m->n_members++];
        m->index[slot] = m->n_members;
        memset(mb, 0, sizeof(*mb));
        mb->name = name;
        mb->name_len = name_len;
    } else {
        free(name);
    }
    if (mb->inner_len + inner_len + 1 > mb->inner_cap) {
        mb->inner_cap = MAX(mb->inner_cap * 2, mb->inner_len + inner_len + 1);
        mb->inner = xrealloc(mb->inner, mb->inner_cap);
    }
    if (mb->inner_len)
        mb->inner[mb->inner_len++] = ',';
    memcpy(mb->inner + mb->inner_len, text + 1, inner_len);
    mb->inner_len += inner_len;
    m->bytes += need;
    m->n_parts++;
    return 0;
}

char *gw_msg_finish(struct gw_msg *m, size_t *ret_len)
{
    char open = m->kind == GW_MSG_ARRAYS ? '[' : '{';
    char close = m->kind == GW_MSG_ARRAYS ? ']' : '}';
    char *out, *p;

    if (gw_msg_empty(m)) {
        gw_msg_clear(m);
        return NULL;
    }
    out = p = xmalloc(m->bytes + 1);
    *p++ = '{';
    for (size_t i = 0; i < m->n_members; i++) {
        struct gw_member *mb = &m->members[i];
        if (i)
            *p++ = ',';
        memcpy(p, mb->name, mb->name_len);
        p += mb->name_len;
        *p++ = ':';
        *p++ = open;
        memcpy(p, mb->inner, mb->inner_len);
        p += mb->inner_len;
        *p++ = close;
    }
    *p++ = '}';
    *p = '\0';
    if (ret_len)
        *ret_len = (size_t)(p - out);
    gw_msg_clear(m);
    return out;
}

char *gw_connect_body(const char *device, const char *type)
{
    char *name = tb_json_quote(device, NULL), *t = type ? tb_json_quote(type, NULL) : NULL;
    char *s = t ? xasprintf("{\"device\":%s,\"type\":%s}", name, t)
                : xasprintf("{\"device\":%s}", name);

    free(name);
    free(t);
    return s;
}

char *gw_disconnect_body(const char *device)
{
    return gw_connect_body(device, NULL);
}

char *gw_rpc_reply_body(const char *device, int id, const char *data)
{
    char *name = tb_json_quote(device, NULL);
    char *s = xasprintf("{\"device\":%s,\"id\":%d,\"data\":%s}", name, id, data);

    free(name);
    return s;
}

char *gw_attribute_request_body(const char *device, int id, bool client,
                                const char *const *keys, size_t n_keys)
{
    json_object *o = json_object_new_object();
    char *s;

    json_object_object_add(o, "id", json_object_new_int(id));
    json_object_object_add(o, "device", json_object_new_string(device));
    json_object_object_add(o, "client", json_object_new_boolean(client));
    if (n_keys == 1) {
        json_object_object_add(o, "key", json_object_new_string(keys[0]));
    } else {
        json_object *a = json_object_new_array_ext((int)n_keys);
        for (size_t i = 0; i < n_keys; i++)
            json_object_array_add(a, json_object_new_string(keys[i]));
        json_object_object_add(o, "keys", a);
    }
    s = tb_json_text(o, NULL);
    json_object_put(o);
    return s;
}

char *gw_claim_body(const char *device, const char *claim, size_t len)
{
    char *name = tb_json_quote(device, NULL);
    char *s = len ? xasprintf("{%s:%.*s}", name, (int)MIN(len, (size_t)INT32_MAX), claim)
                  : xasprintf("{%s:{}}", name);

    free(name);
    return s;
}
