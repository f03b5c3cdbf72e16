/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Templates (templates.h): collected from the file, validated once each, found by name
 * when a device names one. Thread: main.
 */
#include "config/templates.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/devices.h"

const struct tmpl *cf_find_template(const struct tmpls *t, const char *name)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i].name && strcmp(t->v[i].name, name) == 0)
            return &t->v[i];
    return NULL;
}

void cf_collect_templates(struct load *ld, const config_setting_t *root, struct tmpls *out)
{
    const config_setting_t *list = cf_member(root, "templates");
    int n;

    if (!list || config_setting_type(list) != CONFIG_TYPE_LIST)
        return;
    n = config_setting_length(list);
    out->v = xcalloc((size_t)n + 1, sizeof(*out->v));
    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(list, (unsigned)i);
        const config_setting_t *nm = cf_member(s, "name");
        struct tmpl *t = &out->v[out->n++];

        t->s = s;
        snprintf(t->path, sizeof(t->path), "templates.[%d]", i);
        if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
            ERR(ld, s, t->path, "expected a group { … }, got %s", cf_type_noun(config_setting_type(s)));
            t->s = NULL;
            continue;
        }
        if (!nm) {
            ERR(ld, s, t->path, "missing required setting 'name'");
            continue;
        }
        if (config_setting_type(nm) != CONFIG_TYPE_STRING || !*config_setting_get_string(nm))
            continue; /* reported by validate_template */
        t->name = xstrdup(config_setting_get_string(nm));
        for (size_t j = 0; j + 1 < out->n; j++)
            if (out->v[j].name && strcmp(out->v[j].name, t->name) == 0)
                ERR(ld, nm, t->path, "template '%s' is defined twice (first at line %d)", t->name,
                    cf_line_of(out->v[j].s));
    }
}

void cf_note_template_users(const config_setting_t *root, struct tmpls *t)
{
    const config_setting_t *buses = cf_member(root, "buses");
    int nb = buses && config_setting_type(buses) == CONFIG_TYPE_LIST ? config_setting_length(buses) : 0;

    for (int b = 0; b < nb; b++) {
        const config_setting_t *devs = cf_member(config_setting_get_elem(buses, (unsigned)b), "devices");
        int nd = devs && config_setting_type(devs) == CONFIG_TYPE_LIST ? config_setting_length(devs) : 0;
        for (int i = 0; i < nd; i++) {
            const config_setting_t *ds = config_setting_get_elem(devs, (unsigned)i);
            const char *tn = NULL, *dn = NULL;
            struct tmpl *tp;

            if (config_setting_type(ds) != CONFIG_TYPE_GROUP ||
                !config_setting_lookup_string(ds, "template", &tn) ||
                !config_setting_lookup_string(ds, "name", &dn))
                continue;
            tp = (struct tmpl *)cf_find_template(t, tn);
            if (!tp)
                continue;
            if (!tp->users) {
                tp->users = xasprintf("'%s'", dn);
            } else {
                char *u = xasprintf("%s, '%s'", tp->users, dn);
                free(tp->users);
                tp->users = u;
            }
        }
    }
    for (size_t i = 0; i < t->n; i++) {
        if (!t->v[i].name)
            continue;
        t->v[i].note = t->v[i].users
                           ? xasprintf(" (template '%s', used by %s)", t->v[i].name, t->v[i].users)
                           : xasprintf(" (template '%s', not used by any device)", t->v[i].name);
    }
}

void cf_validate_template(struct load *ld, const struct tmpl *t)
{
    struct bus_config any_bus = {.driver = DRIVER_MODBUS_TCP};
    struct device_config d = {.bus = &any_bus};
    static const char *const lists[N_ROLES] = {"telemetry", "attributes", "writes", "rpc"};
    struct tag_list *outs[N_ROLES] = {&d.telemetry, &d.attributes, &d.writes, &d.rpc};
    const char *saved = ld->note;
    struct layer self;
    seen_t seen;

    if (!t->s)
        return;
    self = (struct layer){.s = t->s, .path = t->path, .note = t->note};
    ld->note = t->note;
    cf_apply_defaults(device_keys, D_ALL | C_TEMPLATE, &d);
    seen = cf_walk(ld, t->s, t->path, device_keys, D_ALL | C_TEMPLATE, "any bus", "a template", &d);
    (void)seen;
    for (int r = 0; r < N_ROLES; r++) {
        char sub[512];
        cf_path_join(sub, sizeof(sub), t->path, lists[r]);
        cf_parse_tags(ld, cf_member(t->s, lists[r]), sub, (enum tag_role)r, &d, outs[r]);
    }
    if (cf_member(t->s, "ota")) {
        d.ota.enabled = true;
        cf_parse_group_into(ld, &self, "ota", ota_keys, D_ALL | C_TEMPLATE, "any bus", &d.ota);
    }
    for (size_t i = 0; i < 2; i++) {
        static const char *const arrays[] = {"columns", "keys"};
        char **(*dst[2]) = {&d.columns, &d.keys};
        const config_setting_t *a = cf_member(t->s, arrays[i]);
        char sub[512];

        if (!a || config_setting_type(a) != CONFIG_TYPE_ARRAY)
            continue;
        cf_path_join(sub, sizeof(sub), t->path, arrays[i]);
        *dst[i] = cf_parse_strings(ld, a, sub);
    }
    ld->note = saved;
    cf_device_free(&d);
}

void cf_tmpls_free(struct tmpls *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->v[i].name);
        free(t->v[i].users);
        free(t->v[i].note);
    }
    free(t->v);
}
