/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The table-driven walker (see walk.h): one generic pass over a libconfig group against a
 * table of rows, so that unknown names ("did you mean"), settings in the wrong place,
 * wrong types and out-of-range values are all found in one walk, with the same words
 * everywhere. Thread: main. Pure apart from the diagnostics it adds to.
 */
#include "config/walk.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/suggest.h"

/* File names in origins must outlive libconfig's tree: keep one copy of each in the config. */
static const char *intern_file(struct config *c, const char *f)
{
    for (size_t i = 0; i < c->n_files; i++)
        if (strcmp(c->files[i], f) == 0)
            return c->files[i];
    c->files = xreallocarray(c->files, c->n_files + 1, sizeof(char *));
    return c->files[c->n_files++] = xstrdup(f);
}

const char *cf_intern_file(struct load *ld, const char *f)
{
    return intern_file(ld->cfg, f);
}

const char *cf_file_of(struct load *ld, const config_setting_t *s)
{
    const char *f = s ? config_setting_source_file(s) : NULL;
    return intern_file(ld->cfg, f ? f : ld->cfg->path);
}

int cf_line_of(const config_setting_t *s)
{
    return s ? (int)config_setting_source_line(s) : 0;
}

void cf_report(struct load *ld, bool warning, const config_setting_t *s, const char *path,
               const char *fmt, ...)
{
    char msg[900];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    diag_add(ld->diag, warning, cf_file_of(ld, s), cf_line_of(s), path, "%s%s", msg,
             ld->note ? ld->note : "");
}

void cf_path_join(char *out, size_t size, const char *parent, const char *name)
{
    snprintf(out, size, "%s%s%s", parent, *parent ? "." : "", name);
}

void cf_path_index(char *out, size_t size, const char *parent, size_t i)
{
    snprintf(out, size, "%s.[%zu]", parent, i);
}

const char *cf_type_noun(int t)
{
    switch (t) {
    case CONFIG_TYPE_GROUP:
        return "a group { … }";
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
    case CONFIG_TYPE_FLOAT:
        return "a number";
    case CONFIG_TYPE_STRING:
        return "a string";
    case CONFIG_TYPE_BOOL:
        return "true or false";
    case CONFIG_TYPE_ARRAY:
        return "an array [ … ]";
    case CONFIG_TYPE_LIST:
        return "a list ( … )";
    default:
        return "nothing";
    }
}

static char *resolve_path(struct load *ld, const char *p)
{
    if (p[0] == '/' || !ld->dir)
        return xstrdup(p);
    return xasprintf("%s/%s", ld->dir, p);
}

static void enum_expected(char *buf, size_t size, const char *const *names)
{
    size_t n = 0, o = 0;

    while (names[n])
        n++;
    buf[0] = '\0';
    for (size_t i = 0; i < n && o < size; i++)
        o += (size_t)snprintf(buf + o, size - o, "%s%s", i == 0 ? "" : i + 1 == n ? " or " : ", ",
                              names[i]);
}

/* Read a number setting as double. Returns false (and reports) if it is not a number. */
static bool get_number(struct load *ld, const config_setting_t *s, const char *path, double *ret)
{
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
        *ret = config_setting_get_int(s);
        return true;
    case CONFIG_TYPE_INT64:
        *ret = (double)config_setting_get_int64(s);
        return true;
    case CONFIG_TYPE_FLOAT:
        *ret = config_setting_get_float(s);
        return true;
    default:
        ERR(ld, s, path, "expected a number, got %s", cf_type_noun(config_setting_type(s)));
        return false;
    }
}

void cf_apply_defaults(const struct key *keys, unsigned scope, void *target)
{
    for (const struct key *k = keys; k->name; k++) {
        void *p;

        if (k->off == NO_OFF || (k->flags & K_INHERIT) || !(k->scope & scope & DRIVER_MASK) ||
            !(k->scope & scope & CONTEXT_MASK))
            continue;
        p = (char *)target + k->off;
        switch (k->type) {
        case KT_STR:
            if (k->sdef)
                *(char **)p = xstrdup(k->sdef);
            break;
        case KT_INT:
        case KT_ENUM:
            *(int *)p = (int)k->idef;
            break;
        case KT_NUM:
            *(double *)p = k->ddef;
            break;
        case KT_BOOL:
            *(bool *)p = k->idef != 0;
            break;
        default:
            break;
        }
    }
}

/* Parse one scalar setting s into target according to row k. */
void cf_parse_value(struct load *ld, const struct key *k, const config_setting_t *s,
                    const char *path, void *target)
{
    void *p = (char *)target + k->off;
    int t = config_setting_type(s);

    switch (k->type) {
    case KT_STR: {
        const char *v;
        if (t != CONFIG_TYPE_STRING) {
            ERR(ld, s, path, "expected a string, got %s", cf_type_noun(t));
            return;
        }
        v = config_setting_get_string(s);
        if ((k->flags & K_NONEMPTY) && !*v) {
            ERR(ld, s, path, "must not be empty");
            return;
        }
        free(*(char **)p);
        *(char **)p = (k->flags & K_PATH) ? resolve_path(ld, v) : xstrdup(v);
        return;
    }
    case KT_INT: {
        double d;
        if (!get_number(ld, s, path, &d))
            return;
        if (d != floor(d)) {
            ERR(ld, s, path, "expected a whole number, got %g", d);
            return;
        }
        if (d < (double)k->min || d > (double)k->max) {
            ERR(ld, s, path, "must be between %lld and %lld (got %.0f)%s%s", k->min, k->max, d,
                k->why ? ": " : "", k->why ? k->why : "");
            return;
        }
        *(int *)p = (int)d;
        return;
    }
    case KT_NUM: {
        double d;
        if (!get_number(ld, s, path, &d))
            return;
        if (!isfinite(d)) {
            ERR(ld, s, path, "must be a finite number");
            return;
        }
        if ((k->flags & K_NONZERO) && d == 0) {
            ERR(ld, s, path, "must not be 0");
            return;
        }
        if (k->dmin < k->dmax && (d < k->dmin || d > k->dmax)) {
            if (isinf(k->dmax))
                ERR(ld, s, path, "must be at least %g (got %g)", k->dmin, d);
            else
                ERR(ld, s, path, "must be between %g and %g (got %g)", k->dmin, k->dmax, d);
            return;
        }
        *(double *)p = d;
        return;
    }
    case KT_BOOL:
        if (t != CONFIG_TYPE_BOOL) {
            ERR(ld, s, path, "expected true or false, got %s", cf_type_noun(t));
            return;
        }
        *(bool *)p = config_setting_get_bool(s);
        return;
    case KT_ENUM: {
        const char *v, *near;
        char expected[256];
        if (t != CONFIG_TYPE_STRING) {
            enum_expected(expected, sizeof(expected), k->names);
            ERR(ld, s, path, "expected one of %s, got %s", expected, cf_type_noun(t));
            return;
        }
        v = config_setting_get_string(s);
        for (size_t i = 0; k->names[i]; i++) {
            if (strcmp(k->names[i], v) == 0) {
                *(int *)p = k->values ? k->values[i] : (int)i;
                return;
            }
        }
        near = suggest(v, k->names);
        if (near) {
            ERR(ld, s, path, "unknown %s '%s' (did you mean '%s'?)", k->what ? k->what : k->name,
                v, near);
        } else {
            enum_expected(expected, sizeof(expected), k->names);
            ERR(ld, s, path, "unknown %s '%s' (expected %s)", k->what ? k->what : k->name, v,
                expected);
        }
        return;
    }
    case KT_GROUP:
    case KT_LIST:
    case KT_ARRAY:
        break;
    }
}

static bool shape_ok(struct load *ld, const struct key *k, const config_setting_t *s,
                     const char *path)
{
    int t = config_setting_type(s);
    int want;

    switch (k->type) {
    case KT_GROUP:
        want = CONFIG_TYPE_GROUP;
        break;
    case KT_LIST:
        want = CONFIG_TYPE_LIST;
        /* An empty ( ) and an empty [ ] mean the same to a user. */
        if (t == CONFIG_TYPE_ARRAY && config_setting_length(s) == 0)
            return true;
        break;
    case KT_ARRAY:
        want = CONFIG_TYPE_ARRAY;
        if (t == CONFIG_TYPE_LIST && config_setting_length(s) == 0)
            return true;
        break;
    default:
        return true;
    }
    if (t == want)
        return true;
    ERR(ld, s, path, "expected %s, got %s", cf_type_noun(want), cf_type_noun(t));
    return false;
}

/*
 * Walk the members of group: each must be a row valid in scope. Scalars are parsed into
 * target; group/list/array members are only checked for shape (the caller parses them).
 * scope_desc names the driver side ("a modbus-tcp bus"), context_desc the context side
 * ("a template"), for "does not apply to …" messages. Returns the rows seen as a bitmask.
 */
seen_t cf_walk(struct load *ld, const config_setting_t *group, const char *path,
               const struct key *keys, unsigned scope, const char *driver_desc,
               const char *context_desc, void *target)
{
    seen_t seen = 0;
    int n = config_setting_length(group);

    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
        const char *name = config_setting_name(s);
        const struct key *named = NULL, *k = NULL;
        char sub[512];
        size_t row = 0;

        cf_path_join(sub, sizeof(sub), path, name);
        for (const struct key *r = keys; r->name; r++) {
            if (strcmp(r->name, name) != 0)
                continue;
            named = r;
            if ((r->scope & scope & DRIVER_MASK) && (r->scope & scope & CONTEXT_MASK)) {
                k = r;
                row = (size_t)(r - keys);
                break;
            }
        }

        if (!named) {
            const char *cands[64];
            size_t c = 0;
            const char *near;
            if (ld->template_layer)
                continue;
            for (const struct key *r = keys; r->name && c + 1 < ARRAY_SIZE(cands); r++)
                if ((r->scope & scope & DRIVER_MASK) && (r->scope & scope & CONTEXT_MASK))
                    cands[c++] = r->name;
            cands[c] = NULL;
            near = suggest(name, cands);
            if (near)
                ERR(ld, s, sub, "unknown setting '%s' (did you mean '%s'?)", name, near);
            else
                ERR(ld, s, sub, "unknown setting '%s'", name);
            continue;
        }
        if (!k) {
            /* Known name, wrong place: say which side of the scope failed. */
            bool driver_ok = false;
            for (const struct key *r = keys; r->name; r++)
                if (strcmp(r->name, name) == 0 && (r->scope & scope & DRIVER_MASK))
                    driver_ok = true;
            if (!driver_ok)
                ERR(ld, s, sub, "'%s' does not apply to %s", name, driver_desc);
            else if (!ld->template_layer)
                ERR(ld, s, sub, "'%s' does not apply to %s", name, context_desc);
            continue;
        }
        if (ld->template_layer && (k->flags & K_IDENTITY))
            continue;
        seen |= 1ull << row;
        if (!shape_ok(ld, k, s, sub) || k->off == NO_OFF)
            continue;
        if (ld->template_layer) {
            /* Values were checked when the template was validated; apply them quietly. */
            struct diag *real = ld->diag;
            ld->diag = diag_new();
            cf_parse_value(ld, k, s, sub, target);
            diag_free(ld->diag);
            ld->diag = real;
        } else {
            cf_parse_value(ld, k, s, sub, target);
        }
    }
    return seen;
}

void cf_check_required(struct load *ld, const config_setting_t *group, const char *path,
                       const struct key *keys, unsigned scope, seen_t seen)
{
    for (const struct key *k = keys; k->name; k++) {
        size_t row = (size_t)(k - keys);
        if (!(k->flags & K_REQUIRED) || (seen & (1ull << row)))
            continue;
        if (!(k->scope & scope & DRIVER_MASK) || !(k->scope & scope & CONTEXT_MASK))
            continue;
        ERR(ld, group, path, "missing required setting '%s'", k->name);
    }
}

bool cf_was_seen(const struct key *keys, seen_t seen, const char *name)
{
    for (const struct key *k = keys; k->name; k++)
        if ((seen & (1ull << (k - keys))) && strcmp(k->name, name) == 0)
            return true;
    return false;
}

const config_setting_t *cf_member(const config_setting_t *group, const char *name)
{
    return group ? config_setting_get_member(group, name) : NULL;
}

/* The setting to point a message at: the member if present, else its group. */
const config_setting_t *cf_at(const config_setting_t *group, const char *name)
{
    const config_setting_t *m = cf_member(group, name);
    return m ? m : group;
}

void cf_parse_section(struct load *ld, const config_setting_t *root, const char *name,
                      const struct key *keys, void *target)
{
    const config_setting_t *s = cf_member(root, name);

    cf_apply_defaults(keys, PLAIN, target);
    if (!s || config_setting_type(s) != CONFIG_TYPE_GROUP)
        return;
    cf_check_required(ld, s, name, keys, PLAIN, cf_walk(ld, s, name, keys, PLAIN, "", "", target));
}

void cf_check_readable(struct load *ld, const config_setting_t *s, const char *path,
                       const char *file)
{
    if (file && access(file, R_OK) < 0)
        ERR(ld, s, path, "cannot read '%s': %s", file, strerror(errno));
}
