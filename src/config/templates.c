/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Templates (templates.h): collected from the file, or from the template library
 * (NAME.conf in the folders of template_path), validated once each, found by name when a
 * device names one. A library file is read with its own libconfig tree, kept until the
 * load ends, so that every message about it carries its own file name and line.
 * Thread: main.
 */
#include "config/templates.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/devices.h"

static const char *const default_template_path[] = {
    SYSCONFDIR "/tbgw/templates",
    DATADIR "/tbgw/templates",
    NULL,
};

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

/* A name that can only be a file in the folder: no separators, no hidden or relative names. */
static bool is_file_name(const char *name)
{
    if (!*name || *name == '.' || strlen(name) > 200)
        return false;
    for (const char *p = name; *p; p++)
        if (!(('a' <= *p && *p <= 'z') || ('A' <= *p && *p <= 'Z') || ('0' <= *p && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.'))
            return false;
    return true;
}

/* template_path as absolute folders (relative entries are relative to the file's folder). */
static char **template_dirs(struct load *ld, const config_setting_t *root)
{
    const config_setting_t *a = cf_member(root, "template_path");
    char **dirs;

    if (a && config_setting_type(a) == CONFIG_TYPE_ARRAY) {
        dirs = cf_parse_strings(ld, a, "template_path");
    } else {
        size_t n = ARRAY_SIZE(default_template_path);
        dirs = xcalloc(n, sizeof(char *));
        for (size_t i = 0; default_template_path[i]; i++)
            dirs[i] = xstrdup(default_template_path[i]);
    }
    for (size_t i = 0; dirs[i]; i++) {
        if (dirs[i][0] != '/') {
            char *abs = xasprintf("%s/%s", ld->dir, dirs[i]);
            free(dirs[i]);
            dirs[i] = abs;
        }
    }
    return dirs;
}

/* Read dir/name.conf as template name into t; 0, -ENOENT when there is none, or -EINVAL
 * when it is there but unreadable or not libconfig (reported). */
static int read_template_file(struct load *ld, const char *dir, const char *name,
                              struct tmpls *t)
{
    char *file = xasprintf("%s/%s.conf", dir, name);
    const config_setting_t *nm;
    struct tmpl *tp;
    config_t *lc;
    int r = 0;

    if (access(file, F_OK) != 0) {
        free(file);
        return -ENOENT;
    }
    lc = xcalloc(1, sizeof(*lc));
    config_init(lc);
    config_set_include_dir(lc, dir);
    t->files = xreallocarray(t->files, t->n_files + 1, sizeof(*t->files));
    t->files[t->n_files++] = lc;
    if (config_read_file(lc, file) != CONFIG_TRUE) {
        if (config_error_type(lc) == CONFIG_ERR_FILE_IO)
            diag_add(ld->diag, false, file, 0, NULL, "template '%s': cannot read: %s", name,
                     strerror(errno ? errno : EIO));
        else
            diag_add(ld->diag, false, config_error_file(lc) ? config_error_file(lc) : file,
                     config_error_line(lc), NULL, "%s", config_error_text(lc));
        r = -EINVAL;
    }
    ld->library_files = xreallocarray(ld->library_files, ld->n_library_files + 1,
                                      sizeof(*ld->library_files));
    ld->library_files[ld->n_library_files++] = cf_intern_file(ld, file);
    t->v = xreallocarray(t->v, t->n + 1, sizeof(*t->v));
    tp = &t->v[t->n++];
    /* An unreadable file still defines the name: the device gets no second error. */
    *tp = (struct tmpl){.s = r == 0 ? config_root_setting(lc) : NULL, .name = xstrdup(name)};
    nm = tp->s ? cf_member(tp->s, "name") : NULL;
    if (nm && config_setting_type(nm) != CONFIG_TYPE_STRING)
        ERR(ld, nm, "name", "expected a string, got %s", cf_type_noun(config_setting_type(nm)));
    else if (nm && strcmp(config_setting_get_string(nm), name) != 0)
        ERR(ld, nm, "name",
            "'%s' is not this file's template name: a template file is named by its file name "
            "without .conf ('%s')",
            config_setting_get_string(nm), name);
    free(file);
    return r;
}

void cf_load_library_templates(struct load *ld, const config_setting_t *root, struct tmpls *t)
{
    const config_setting_t *buses = cf_member(root, "buses");
    int nb = buses && config_setting_type(buses) == CONFIG_TYPE_LIST ? config_setting_length(buses) : 0;
    char **dirs = template_dirs(ld, root);

    for (size_t i = 0; dirs[i]; i++) {
        char *s = t->searched ? xasprintf("%s, %s", t->searched, dirs[i]) : xstrdup(dirs[i]);
        free(t->searched);
        t->searched = s;
    }
    for (int b = 0; b < nb; b++) {
        const config_setting_t *devs = cf_member(config_setting_get_elem(buses, (unsigned)b), "devices");
        int nd = devs && config_setting_type(devs) == CONFIG_TYPE_LIST ? config_setting_length(devs) : 0;

        for (int i = 0; i < nd; i++) {
            const config_setting_t *ds = config_setting_get_elem(devs, (unsigned)i);
            const char *tn = NULL;

            if (config_setting_type(ds) != CONFIG_TYPE_GROUP ||
                !config_setting_lookup_string(ds, "template", &tn) || cf_find_template(t, tn) ||
                !is_file_name(tn))
                continue;
            for (size_t d = 0; dirs[d]; d++)
                if (read_template_file(ld, dirs[d], tn, t) != -ENOENT)
                    break;
        }
    }
    for (size_t i = 0; dirs[i]; i++)
        free(dirs[i]);
    free(dirs);
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
    for (size_t i = 0; i < t->n_files; i++) {
        config_destroy(t->files[i]);
        free(t->files[i]);
    }
    free(t->files);
    free(t->searched);
}
