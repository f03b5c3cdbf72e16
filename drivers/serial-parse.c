/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/serial-parse.h"
#include "util/macros.h"
#include "util/utf8.h"

#define JSON_DEPTH_MAX 8

int line_parser_init(struct line_parser *p, enum line_format format, char *const *columns,
                     const char *pattern, char *const *keys)
{
    memset(p, 0, sizeof(*p));
    p->format = format;
    p->columns = columns;
    p->keys = keys;
    while (keys && keys[p->n_keys])
        p->n_keys++;
    if (format == FORMAT_REGEX) {
        if (!pattern || regcomp(&p->re, pattern, REG_EXTENDED) != 0)
            return -EINVAL;
        p->have_re = true;
    }
    return 0;
}

void line_parser_free(struct line_parser *p)
{
    if (p->have_re)
        regfree(&p->re);
    p->have_re = false;
}

void line_value_from_text(const char *s, size_t len, struct value *ret)
{
    char buf[64];
    char *end;

    while (len && isspace((unsigned char)*s))
        s++, len--;
    while (len && isspace((unsigned char)s[len - 1]))
        len--;
    if (len > 0 && len < sizeof(buf)) {
        memcpy(buf, s, len);
        buf[len] = '\0';
        /* Only plain decimal numbers: strtod would also take "inf", "nan" and hex. */
        if (strspn(buf, "+-0123456789.eE") == len && strpbrk(buf, "0123456789")) {
            if (!strpbrk(buf, ".eE")) {
                long long v;
                errno = 0;
                v = strtoll(buf, &end, 10);
                if (!*end && !errno) {
                    ret->kind = VK_INT;
                    ret->i = v;
                    return;
                }
            }
            errno = 0;
            double d = strtod(buf, &end);
            if (!*end && !errno && isfinite(d)) {
                ret->kind = VK_DOUBLE;
                ret->d = d;
                return;
            }
        }
    }
    ret->kind = VK_STRING;
    ret->s = utf8_sanitize_dup(s, len);
}

static bool emit_text(line_emit_fn emit, void *ctx, const char *key, size_t klen, const char *v,
                      size_t vlen)
{
    char k[LINE_KEY_MAX];
    struct value val = {0};

    while (klen && isspace((unsigned char)*key))
        key++, klen--;
    while (klen && isspace((unsigned char)key[klen - 1]))
        klen--;
    if (!klen || klen >= LINE_KEY_MAX / 3)
        return false;
    utf8_sanitize(k, sizeof(k), key, klen);
    if (!*k)
        return false;
    line_value_from_text(v, vlen, &val);
    emit(ctx, k, &val);
    return true;
}

/* ---- kv ---- */

static bool is_pair_sep(char c)
{
    return isspace((unsigned char)c) || c == ',' || c == ';';
}

static int parse_kv(const char *s, size_t len, line_emit_fn emit, void *ctx)
{
    size_t i = 0;
    int n = 0;

    while (i < len) {
        size_t k0, k1, v0, v1;

        while (i < len && is_pair_sep(s[i]))
            i++;
        if (i >= len)
            break;
        k0 = i;
        while (i < len && s[i] != '=' && s[i] != ':' && !is_pair_sep(s[i]))
            i++;
        k1 = i;
        if (i >= len || (s[i] != '=' && s[i] != ':'))
            continue; /* a word without a value ("WS1 t=21.5"): skipped */
        i++;
        if (i < len && s[i] == '"') {
            v0 = ++i;
            while (i < len && s[i] != '"')
                i++;
            v1 = i;
            if (i < len)
                i++;
        } else {
            v0 = i;
            while (i < len && !is_pair_sep(s[i]))
                i++;
            v1 = i;
        }
        if (emit_text(emit, ctx, s + k0, k1 - k0, s + v0, v1 - v0))
            n++;
    }
    return n ? n : -EBADMSG;
}

/* ---- csv ---- */

static int parse_csv(const struct line_parser *p, const char *s, size_t len, line_emit_fn emit,
                     void *ctx)
{
    size_t i = 0, col = 0;
    int n = 0;

    if (!p->columns)
        return -EBADMSG;
    while (i <= len && p->columns[col]) {
        size_t start = i;
        while (i < len && s[i] != ',')
            i++;
        if (strcmp(p->columns[col], "-") != 0 && i > start) {
            const char *c = p->columns[col];
            if (emit_text(emit, ctx, c, strlen(c), s + start, i - start))
                n++;
        }
        col++;
        i++;
    }
    return n ? n : -EBADMSG;
}

/* ---- regex ---- */

static int parse_regex(const struct line_parser *p, const char *s, size_t len, line_emit_fn emit,
                       void *ctx)
{
    regmatch_t m[32];
    size_t nm = MIN(p->n_keys + 1, ARRAY_SIZE(m));
    char *line = xstrndup(s, len);
    int n = 0;

    if (regexec(&p->re, line, nm, m, 0) != 0) {
        free(line);
        return -EBADMSG;
    }
    for (size_t g = 1; g < nm; g++) {
        const char *k = p->keys[g - 1];
        if (m[g].rm_so < 0)
            continue;
        if (emit_text(emit, ctx, k, strlen(k), line + m[g].rm_so,
                      (size_t)(m[g].rm_eo - m[g].rm_so)))
            n++;
    }
    free(line);
    return n ? n : -EBADMSG;
}

/* ---- json ---- */

static int flatten(json_object *o, char *prefix, size_t plen, int depth, line_emit_fn emit,
                   void *ctx)
{
    int n = 0;

    if (depth > JSON_DEPTH_MAX)
        return 0;
    switch (json_object_get_type(o)) {
    case json_type_object: {
        json_object_object_foreach(o, k, child) {
            size_t kl = strlen(k);
            if (plen + kl + 2 > LINE_KEY_MAX)
                continue;
            size_t l = plen;
            if (plen)
                prefix[l++] = '.';
            memcpy(prefix + l, k, kl + 1);
            n += flatten(child, prefix, l + kl, depth + 1, emit, ctx);
            prefix[plen] = '\0';
        }
        return n;
    }
    case json_type_array: {
        size_t len = json_object_array_length(o);
        for (size_t i = 0; i < len; i++) {
            char idx[24];
            int il = snprintf(idx, sizeof(idx), "%s%zu", plen ? "." : "", i);
            if (plen + (size_t)il + 1 > LINE_KEY_MAX)
                break;
            memcpy(prefix + plen, idx, (size_t)il + 1);
            n += flatten(json_object_array_get_idx(o, i), prefix, plen + (size_t)il, depth + 1,
                         emit, ctx);
            prefix[plen] = '\0';
        }
        return n;
    }
    default:
        break;
    }

    if (!plen)
        return 0;
    {
        char k[LINE_KEY_MAX];
        struct value v = {0};

        /* A key of control characters only is no key (as in emit_text()). */
        if (!utf8_sanitize(k, sizeof(k), prefix, plen))
            return 0;
        switch (json_object_get_type(o)) {
        case json_type_boolean:
            v.kind = VK_BOOL;
            v.b = json_object_get_boolean(o);
            break;
        case json_type_int:
            v.kind = VK_INT;
            v.i = json_object_get_int64(o);
            break;
        case json_type_double:
            v.kind = VK_DOUBLE;
            v.d = json_object_get_double(o);
            if (!isfinite(v.d))
                return 0;
            break;
        case json_type_string:
            v.kind = VK_STRING;
            v.s = utf8_sanitize_dup(json_object_get_string(o),
                                   (size_t)json_object_get_string_len(o));
            break;
        default:
            return 0; /* null: no value */
        }
        emit(ctx, k, &v);
        return 1;
    }
}

static int parse_json(const char *s, size_t len, line_emit_fn emit, void *ctx)
{
    json_tokener *tok = json_tokener_new_ex(JSON_DEPTH_MAX + 2);
    json_object *o;
    char prefix[LINE_KEY_MAX] = "";
    int n;

    if (!tok)
        return -ENOMEM;
    o = json_tokener_parse_ex(tok, s, (int)MIN(len, (size_t)INT32_MAX));
    if (o) {
        size_t end = json_tokener_get_parse_end(tok);
        while (end < len && isspace((unsigned char)s[end]))
            end++;
        if (end < len) {
            json_object_put(o);
            o = NULL;
        }
    }
    if (!o || json_tokener_get_error(tok) != json_tokener_success ||
        !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        json_tokener_free(tok);
        return -EBADMSG;
    }
    n = flatten(o, prefix, 0, 0, emit, ctx);
    json_object_put(o);
    json_tokener_free(tok);
    return n ? n : -EBADMSG;
}

int line_parse(const struct line_parser *p, const char *line, size_t len, line_emit_fn emit,
               void *ctx)
{
    switch (p->format) {
    case FORMAT_JSON:
        return parse_json(line, len, emit, ctx);
    case FORMAT_KV:
        return parse_kv(line, len, emit, ctx);
    case FORMAT_CSV:
        return parse_csv(p, line, len, emit, ctx);
    case FORMAT_REGEX:
        return p->have_re ? parse_regex(p, line, len, emit, ctx) : -EINVAL;
    }
    return -EINVAL;
}
