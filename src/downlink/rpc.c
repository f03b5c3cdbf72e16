/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/decode.h"
#include "downlink/rpc.h"
#include "tb/tb-json.h"
#include "util/macros.h"
#include "util/utf8.h"

#define MAX_DEPTH 16

int rpc_fail(char *err, size_t size, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, size, fmt, ap);
    va_end(ap);
    return -EBADMSG;
}

int rpc_topic_id(const char *topic, const char *prefix, int *ret_id)
{
    size_t pl = strlen(prefix);
    const char *s;
    char *end;
    long v;

    if (strncmp(topic, prefix, pl) != 0)
        return -EINVAL;
    s = topic + pl;
    if (!*s || (*s != '-' && (*s < '0' || *s > '9')))
        return -EINVAL;
    errno = 0;
    v = strtol(s, &end, 10);
    if (*end || errno || v < INT_MIN || v > INT_MAX)
        return -EINVAL;
    *ret_id = (int)v;
    return 0;
}

json_object *rpc_parse_object(const char *payload, size_t len)
{
    json_tokener *tok = json_tokener_new_ex(MAX_DEPTH);
    json_object *o;

    if (!tok)
        return NULL;
    o = json_tokener_parse_ex(tok, payload, (int)MIN(len, (size_t)INT32_MAX));
    if (o && (json_tokener_get_error(tok) != json_tokener_success ||
              json_tokener_get_parse_end(tok) < len)) {
        /* trailing bytes: only whitespace is tolerated */
        for (size_t i = json_tokener_get_parse_end(tok); i < len; i++)
            if (payload[i] != ' ' && payload[i] != '\n' && payload[i] != '\r' && payload[i] != '\t') {
                json_object_put(o);
                o = NULL;
                break;
            }
    }
    json_tokener_free(tok);
    if (o && !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        o = NULL;
    }
    return o;
}

int rpc_request_from(json_object *o, struct rpc_request *ret, char *err, size_t err_size)
{
    json_object *m, *p;

    memset(ret, 0, sizeof(*ret));
    if (!json_object_object_get_ex(o, "method", &m) || !json_object_is_type(m, json_type_string) ||
        json_object_get_string_len(m) == 0)
        return rpc_fail(err, err_size, "the request has no method");
    ret->method = xstrdup(json_object_get_string(m));
    if (json_object_object_get_ex(o, "params", &p) && p)
        ret->params = json_object_get(p);
    return 0;
}

int rpc_parse_request(const char *payload, size_t len, struct rpc_request *ret, char *err,
                      size_t err_size)
{
    json_object *o = rpc_parse_object(payload, len);
    int r;

    memset(ret, 0, sizeof(*ret));
    if (!o)
        return rpc_fail(err, err_size, "the request is not a JSON object");
    r = rpc_request_from(o, ret, err, err_size);
    json_object_put(o);
    return r;
}

void rpc_request_clear(struct rpc_request *r)
{
    free(r->method);
    json_object_put(r->params);
    memset(r, 0, sizeof(*r));
}

json_object *rpc_write_value(json_object *params)
{
    json_object *v;

    if (params && json_object_is_type(params, json_type_object) &&
        json_object_object_get_ex(params, "value", &v))
        return v;
    return params;
}

/* Read an integer member; -ENOENT when absent. */
static int get_int(json_object *o, const char *name, long long min, long long max, int *ret,
                   char *err, size_t size)
{
    json_object *m;
    double d;

    if (!json_object_object_get_ex(o, name, &m) || !m)
        return -ENOENT;
    if (!json_object_is_type(m, json_type_int) && !json_object_is_type(m, json_type_double))
        return rpc_fail(err, size, "'%s' must be a number", name);
    d = json_object_get_double(m);
    if (d != floor(d) || d < (double)min || d > (double)max)
        return rpc_fail(err, size, "'%s' must be a whole number from %lld to %lld", name, min, max);
    *ret = (int)d;
    return 0;
}

static int get_enum(json_object *o, const char *name, const char *const *names, int *ret,
                    char *err, size_t size)
{
    json_object *m;
    const char *s;

    if (!json_object_object_get_ex(o, name, &m) || !m)
        return -ENOENT;
    if (!json_object_is_type(m, json_type_string))
        return rpc_fail(err, size, "'%s' must be a string", name);
    s = json_object_get_string(m);
    for (int i = 0; names[i]; i++)
        if (strcmp(names[i], s) == 0) {
            *ret = i;
            return 0;
        }
    return rpc_fail(err, size, "unknown %s '%.40s'", name, s);
}

int rpc_raw_tag(json_object *params, bool write, const struct device_config *dev,
                struct tag_config *ret, char *err, size_t err_size)
{
    static const char *const orders[] = {"big", "little", NULL};
    struct tag_config t = {
        .key = (char *)(write ? "write" : "read"),
        .role = ROLE_RPC,
        .access = write ? ACCESS_WRITE : ACCESS_READ,
        .type = VT_UINT16,
        .scale = 1.0,
        .byte_order = dev->byte_order,
        .word_order = dev->word_order,
    };
    int r, v;
    bool has_count = false;
    json_object *m;

    if (!params || !json_object_is_type(params, json_type_object))
        return rpc_fail(err, err_size, "params must be an object with table, address and type");
    r = get_enum(params, "table", table_names, &v, err, err_size);
    if (r == -ENOENT)
        return rpc_fail(err, err_size, "params need 'table' (coil, discrete, input or holding)");
    if (r < 0)
        return r;
    t.table = (enum mb_table)v;
    if (table_is_bits(t.table))
        t.type = VT_BOOL;
    /* In the device's own numbering (address_base), as its tags are written. */
    r = get_int(params, "address", dev->address_base, 65535 + dev->address_base, &t.address, err,
                err_size);
    if (r == -ENOENT)
        return rpc_fail(err, err_size, "params need 'address' (%d..%d)", dev->address_base,
                        65535 + dev->address_base);
    if (r < 0)
        return r;
    t.address -= dev->address_base;
    r = get_enum(params, "type", value_type_names, &v, err, err_size);
    if (r < 0 && r != -ENOENT)
        return r;
    if (r == 0)
        t.type = (enum value_type)v;
    if (!value_type_allowed(t.table, t.type))
        return rpc_fail(err, err_size, "type '%s' cannot be used with table '%s'",
                    value_type_to_string(t.type), table_to_string(t.table));
    r = get_int(params, "count", 1, 125, &t.count, err, err_size);
    if (r < 0 && r != -ENOENT)
        return r;
    has_count = r == 0;
    if (t.type == VT_STRING && !has_count)
        return rpc_fail(err, err_size, "type 'string' needs 'count' (registers, 1..125)");
    if (t.type != VT_STRING) {
        /* count 1 is what a generic client sends for single values: accept it when it matches */
        if (has_count && t.count != (int)value_type_width(t.type, 0))
            return rpc_fail(err, err_size, "'count' applies only to type 'string'");
        t.count = (int)value_type_width(t.type, 0);
    }
    r = get_int(params, "bit", 0, 15, &t.bit, err, err_size);
    if (r < 0 && r != -ENOENT)
        return r;
    if (t.type == VT_BIT && r == -ENOENT)
        return rpc_fail(err, err_size, "type 'bit' needs 'bit' (0..15)");
    r = get_enum(params, "byte_order", orders, &v, err, err_size);
    if (r < 0 && r != -ENOENT)
        return r;
    if (r == 0)
        t.byte_order = (enum byte_order)v;
    r = get_enum(params, "word_order", orders, &v, err, err_size);
    if (r < 0 && r != -ENOENT)
        return r;
    if (r == 0)
        t.word_order = (enum byte_order)v;
    if (json_object_object_get_ex(params, "scale", &m) || json_object_object_get_ex(params, "offset", &m))
        return rpc_fail(err, err_size, "raw access takes no scale or offset");
    if (t.address + t.count - 1 > 65535)
        return rpc_fail(err, err_size, "the value runs past address 65535");
    if (write && !table_is_writable(t.table))
        return rpc_fail(err, err_size, "table '%s' is read-only", table_to_string(t.table));
    *ret = t;
    return 0;
}

int rpc_value_for_tag(const struct tag_config *t, json_object *v, struct value *ret, char *err,
                      size_t err_size)
{
    uint16_t regs[125];
    int r;

    memset(ret, 0, sizeof(*ret));
    if (!v)
        return rpc_fail(err, err_size, "no value given");

    switch (t->type) {
    case VT_BOOL:
    case VT_BIT:
        if (json_object_is_type(v, json_type_boolean)) {
            ret->b = json_object_get_boolean(v);
        } else if (json_object_is_type(v, json_type_int) &&
                   (json_object_get_int64(v) == 0 || json_object_get_int64(v) == 1)) {
            ret->b = json_object_get_int64(v) == 1;
        } else if (json_object_is_type(v, json_type_string) &&
                   (strcmp(json_object_get_string(v), "true") == 0 ||
                    strcmp(json_object_get_string(v), "false") == 0)) {
            ret->b = strcmp(json_object_get_string(v), "true") == 0;
        } else {
            return rpc_fail(err, err_size, "'%s' needs true or false", t->key);
        }
        ret->kind = VK_BOOL;
        return 0;
    case VT_STRING:
        if (!json_object_is_type(v, json_type_string))
            return rpc_fail(err, err_size, "'%s' needs a string", t->key);
        if ((size_t)json_object_get_string_len(v) > (size_t)t->count * 2)
            return rpc_fail(err, err_size, "'%s' holds at most %d characters", t->key, t->count * 2);
        ret->kind = VK_STRING;
        ret->s = xstrdup(json_object_get_string(v));
        return 0;
    default:
        break;
    }

    /* Numbers; ThingsBoard may hand numeric strings through unchanged. */
    if (json_object_is_type(v, json_type_int)) {
        /* json-c turns an integer beyond its range into INT64_MIN or UINT64_MAX without a
         * word: the number that was sent is unknown, and the limit is not it. */
        if (json_object_get_int64(v) == INT64_MIN || json_object_get_uint64(v) == UINT64_MAX)
            return rpc_fail(err, err_size, "'%s': %s is out of range", t->key,
                        json_object_to_json_string(v));
        ret->kind = VK_DOUBLE;
        ret->d = json_object_get_double(v);
    } else if (json_object_is_type(v, json_type_double)) {
        ret->kind = VK_DOUBLE;
        ret->d = json_object_get_double(v);
    } else if (json_object_is_type(v, json_type_string)) {
        const char *s = json_object_get_string(v);
        char *end;
        errno = 0;
        ret->d = strtod(s, &end);
        if (!*s || *end || errno)
            return rpc_fail(err, err_size, "'%s' needs a number, got \"%.40s\"", t->key, s);
        ret->kind = VK_DOUBLE;
    } else {
        return rpc_fail(err, err_size, "'%s' needs a number", t->key);
    }
    if (!isfinite(ret->d))
        return rpc_fail(err, err_size, "'%s' needs a finite number", t->key);
    /* Integers above 2^53 lose precision as doubles: take them exactly when they are ints.
     * Beyond INT64_MAX json-c holds a uint64, which a write cannot carry exactly. */
    if (json_object_is_type(v, json_type_int) && t->type <= VT_UINT64 && t->scale == 1.0 &&
        t->offset == 0.0) {
        if (json_object_get_uint64(v) > (uint64_t)INT64_MAX)
            return rpc_fail(err, err_size, "'%s': %s is out of range (tbgw writes integers up to "
                        "9223372036854775807)", t->key, json_object_to_json_string(v));
        ret->kind = VK_INT;
        ret->i = json_object_get_int64(v);
        r = encode_integer(t, ret->i, regs);
    } else {
        r = encode_number(t, ret->d, regs);
    }
    if (r == -ERANGE)
        return rpc_fail(err, err_size, "%.17g does not fit '%s' (%s%s)",
                    ret->kind == VK_INT ? (double)ret->i : ret->d, t->key,
                    value_type_to_string(t->type),
                    t->scale != 1.0 || t->offset != 0.0 ? " after scale and offset" : "");
    if (r < 0)
        return rpc_fail(err, err_size, "'%s' cannot take that value", t->key);
    return 0;
}

static char *answer(json_object *o)
{
    char *s = tb_json_text(o, NULL);
    json_object_put(o);
    return s;
}

char *rpc_answer_ok(void)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "ok", json_object_new_boolean(1));
    return answer(o);
}

char *rpc_answer_value(const struct value *v)
{
    json_object *o = json_object_new_object();
    json_object *jv = tb_json_value(v);

    json_object_object_add(o, "value", jv ? jv : json_object_new_null());
    return answer(o);
}

char *rpc_answer_error(const char *msg)
{
    json_object *o = json_object_new_object();
    /* Messages quote the request (a method name, a value), which json-c does not check, and
     * may cut it in the middle of a character: ThingsBoard drops a session on bad UTF-8. */
    char *text = utf8_sanitize_dup(msg, strlen(msg));

    json_object_object_add(o, "error", json_object_new_string(text));
    free(text);
    return answer(o);
}

json_object *attributes_parse(const char *payload, size_t len)
{
    return rpc_parse_object(payload, len);
}

json_object *attributes_response_shared(json_object *resp)
{
    json_object *s;

    if (resp && json_object_object_get_ex(resp, "shared", &s) &&
        json_object_is_type(s, json_type_object))
        return s;
    return NULL;
}
