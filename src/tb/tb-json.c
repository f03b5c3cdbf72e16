/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb/tb-json.h"
#include "util/fmt-num.h"
#include "util/macros.h"

#define TO_STRING_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

json_object *tb_json_value(const struct value *v)
{
    char buf[FMT_NUM_MAX];

    switch (v->kind) {
    case VK_INT:
        return json_object_new_int64(v->i);
    case VK_DOUBLE:
        if (fmt_double(buf, v->d) < 0)
            return NULL;
        /* _s: json-c prints our text, not its own %.17g. */
        return json_object_new_double_s(v->d, buf);
    case VK_FLOAT:
        if (fmt_float(buf, (float)v->d) < 0)
            return NULL;
        return json_object_new_double_s(v->d, buf);
    case VK_BOOL:
        return json_object_new_boolean(v->b);
    case VK_STRING:
        return json_object_new_string(v->s);
    case VK_UINT:
        /* Beyond int64: sent as the exact integer all the same, which ThingsBoard keeps as
         * a STRING (JsonConverter: longValueExact fails, type cast to text). */
        return json_object_new_uint64(v->u);
    case VK_NONE:
        break;
    }
    return NULL;
}

int tb_value_from_json(json_object *o, struct value *ret)
{
    switch (json_object_get_type(o)) {
    case json_type_boolean:
        ret->kind = VK_BOOL;
        ret->b = json_object_get_boolean(o);
        return 0;
    case json_type_int:
        ret->kind = VK_INT;
        ret->i = json_object_get_int64(o);
        return 0;
    case json_type_double:
        ret->kind = VK_DOUBLE;
        ret->d = json_object_get_double(o);
        return 0;
    case json_type_string:
        ret->kind = VK_STRING;
        ret->s = xstrdup(json_object_get_string(o));
        return 0;
    default:
        return -EINVAL;
    }
}

void tb_batch_init(struct tb_batch *b)
{
    memset(b, 0, sizeof(*b));
}

void tb_batch_clear(struct tb_batch *b)
{
    free(b->text);
    free(b->key_hash);
    tb_batch_init(b);
}

static void append(struct tb_batch *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;

        while (cap < b->len + n + 1)
            cap *= 2;
        b->text = xrealloc(b->text, cap);
        b->cap = cap;
    }
    memcpy(b->text + b->len, s, n);
    b->len += n;
    b->text[b->len] = '\0';
}

/* JSON needs nothing done to most keys and strings; the rest are escaped by json-c, the one
 * escaper every payload uses (tb_json_quote()). */
static bool plain(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == '"' || *p == '\\')
            return false;
    return true;
}

static void append_string(struct tb_batch *b, const char *s)
{
    size_t n;
    char *q;

    if (plain(s)) {
        append(b, "\"", 1);
        append(b, s, strlen(s));
        append(b, "\"", 1);
        return;
    }
    q = tb_json_quote(s, &n);
    append(b, q, n);
    free(q);
}

/* v as JSON text into buf (FMT_NUM_MAX bytes), exactly as tb_json_value() prints it; the
 * length, or -1 if ThingsBoard could not store it. Strings are not handled here. */
static int format_scalar(char *buf, const struct value *v)
{
    switch (v->kind) {
    case VK_INT:
        return fmt_int64(buf, v->i);
    case VK_UINT:
        return fmt_uint64(buf, v->u);
    case VK_DOUBLE:
        return fmt_double(buf, v->d) < 0 ? -1 : (int)strlen(buf);
    case VK_FLOAT:
        return fmt_float(buf, (float)v->d) < 0 ? -1 : (int)strlen(buf);
    case VK_BOOL:
        strcpy(buf, v->b ? "true" : "false");
        return v->b ? 4 : 5;
    case VK_STRING:
    case VK_NONE:
        break;
    }
    return -1;
}

static uint32_t hash_key(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* A hash seen before may be another key's: that only starts a new entry early. */
static bool key_seen(struct tb_batch *b, uint32_t h)
{
    for (size_t i = 0; i < b->n_keys; i++)
        if (b->key_hash[i] == h)
            return true;
    if (b->n_keys == b->cap_keys) {
        b->cap_keys = b->cap_keys ? 2 * b->cap_keys : 16;
        b->key_hash = xreallocarray(b->key_hash, b->cap_keys, sizeof(*b->key_hash));
    }
    b->key_hash[b->n_keys++] = h;
    return false;
}

static void open_entry(struct tb_batch *b, int64_t ts)
{
    char num[FMT_NUM_MAX];
    int n = fmt_int64(num, ts);

    append(b, b->len ? "}},{\"ts\":" : "[{\"ts\":", b->len ? 9 : 7);
    append(b, num, (size_t)n);
    append(b, ",\"values\":{", 11);
    b->ts = ts;
    b->n_keys = 0;
}

bool tb_batch_add(struct tb_batch *b, int64_t ts, const char *key, const struct value *v)
{
    char num[FMT_NUM_MAX];
    int n = 0;
    uint32_t h = hash_key(key);

    if (v->kind != VK_STRING && (n = format_scalar(num, v)) < 0)
        return false;
    if (!b->n_values) {
        b->len = 0;
        b->first_ts = ts;
        open_entry(b, ts);
        key_seen(b, h);
    } else if (ts != b->ts || key_seen(b, h)) {
        open_entry(b, ts);
        key_seen(b, h);
    } else {
        append(b, ",", 1);
    }
    append_string(b, key);
    append(b, ":", 1);
    if (v->kind == VK_STRING)
        append_string(b, v->s);
    else
        append(b, num, (size_t)n);
    b->n_values++;
    b->bytes = b->len + 3; /* "}}]" */
    return true;
}

char *tb_json_text(json_object *o, size_t *ret_len)
{
    size_t len;
    const char *s = json_object_to_json_string_length(o, TO_STRING_FLAGS, &len);
    char *out = xmalloc(len + 1);

    memcpy(out, s, len + 1);
    if (ret_len)
        *ret_len = len;
    return out;
}

char *tb_json_quote(const char *s, size_t *ret_len)
{
    json_object *o = json_object_new_string(s);
    char *text = tb_json_text(o, ret_len);

    json_object_put(o);
    return text;
}

char *tb_batch_finish(struct tb_batch *b, size_t *ret_len)
{
    char *s;

    if (!b->n_values) {
        tb_batch_clear(b);
        if (ret_len)
            *ret_len = 2;
        return xstrdup("[]");
    }
    append(b, "}}]", 3);
    s = b->text;
    if (ret_len)
        *ret_len = b->len;
    b->text = NULL;
    tb_batch_clear(b);
    return s;
}

char *tb_provision_request(const char *device_name, const char *key, const char *secret)
{
    json_object *o = json_object_new_object();
    char *s;

    json_object_object_add(o, "deviceName", json_object_new_string(device_name));
    json_object_object_add(o, "provisionDeviceKey", json_object_new_string(key));
    json_object_object_add(o, "provisionDeviceSecret", json_object_new_string(secret));
    s = tb_json_text(o, NULL);
    json_object_put(o);
    return s;
}

static char *dup_member(json_object *o, const char *name)
{
    json_object *m;
    const char *s;

    if (!json_object_object_get_ex(o, name, &m) || !json_object_is_type(m, json_type_string))
        return NULL;
    s = json_object_get_string(m);
    return *s ? xstrdup(s) : NULL;
}

void tb_provisioned_clear(struct tb_provisioned *p)
{
    free(p->token);
    free(p->client_id);
    free(p->username);
    free(p->password);
    free(p->cert);
    memset(p, 0, sizeof(*p));
}

int tb_provision_response(const char *payload, size_t len, struct tb_provisioned *ret,
                          char *ret_msg, size_t msg_size)
{
    json_tokener *tok = json_tokener_new();
    json_object *o, *status, *value, *type;
    const char *st;
    int r = -EBADMSG;

    memset(ret, 0, sizeof(*ret));
    snprintf(ret_msg, msg_size, "malformed answer");
    o = json_tokener_parse_ex(tok, payload, (int)MIN(len, (size_t)INT32_MAX));
    json_tokener_free(tok);
    if (!o || !json_object_is_type(o, json_type_object) ||
        !json_object_object_get_ex(o, "status", &status) ||
        !json_object_is_type(status, json_type_string))
        goto out;
    st = json_object_get_string(status);
    if (strcmp(st, "SUCCESS") != 0) {
        json_object *msg;
        if (json_object_object_get_ex(o, "errorMsg", &msg) &&
            json_object_is_type(msg, json_type_string))
            snprintf(ret_msg, msg_size, "%s: %s", st, json_object_get_string(msg));
        else
            snprintf(ret_msg, msg_size, "%s", st);
        r = -EACCES;
        goto out;
    }
    if (!json_object_object_get_ex(o, "credentialsValue", &value))
        goto out;
    if (!json_object_object_get_ex(o, "credentialsType", &type) ||
        !json_object_is_type(type, json_type_string))
        goto out;
    st = json_object_get_string(type);
    if (strcmp(st, "ACCESS_TOKEN") == 0 && json_object_is_type(value, json_type_string) &&
        json_object_get_string_len(value) > 0) {
        ret->type = PROV_TOKEN;
        ret->token = xstrdup(json_object_get_string(value));
        r = 0;
    } else if (strcmp(st, "MQTT_BASIC") == 0 && json_object_is_type(value, json_type_object)) {
        ret->type = PROV_MQTT_BASIC;
        ret->client_id = dup_member(value, "clientId");
        ret->username = dup_member(value, "userName"); /* sic: "username" in the request */
        ret->password = dup_member(value, "password");
        r = (ret->client_id || ret->username) ? 0 : -EBADMSG;
    } else if (strcmp(st, "X509_CERTIFICATE") == 0 && json_object_is_type(value, json_type_string)) {
        ret->type = PROV_X509;
        ret->cert = xstrdup(json_object_get_string(value));
        r = 0;
    } else {
        snprintf(ret_msg, msg_size, "unknown credentials type '%s'", st);
    }
    if (r < 0)
        tb_provisioned_clear(ret);
    else
        snprintf(ret_msg, msg_size, "SUCCESS");
out:
    json_object_put(o);
    return r;
}

static uint32_t object_points(json_object *o)
{
    json_object *values;
    uint32_t n = 0;

    if (json_object_object_get_ex(o, "ts", NULL) && json_object_object_get_ex(o, "values", &values) &&
        json_object_is_type(values, json_type_object))
        o = values;
    json_object_object_foreach(o, key, v) {
        (void)key;
        n += v != NULL;
    }
    return n;
}

uint32_t tb_json_points(json_object *o)
{
    uint32_t n = 0;

    if (json_object_is_type(o, json_type_object))
        return object_points(o);
    if (json_object_is_type(o, json_type_array))
        for (size_t i = 0; i < json_object_array_length(o); i++) {
            json_object *e = json_object_array_get_idx(o, i);
            if (json_object_is_type(e, json_type_object))
                n += object_points(e);
        }
    return n;
}
