/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Templates: named device settings that many devices share. Each is validated once on
 * its own, so that its errors appear once, at its own lines, naming the devices that use
 * it. Private to src/config/.
 */
#ifndef TBGW_CONFIG_TEMPLATES_H
#define TBGW_CONFIG_TEMPLATES_H

#include "config/walk.h"

struct tmpl {
    const config_setting_t *s;
    char *name;
    char path[64];
    char *users; /* "'a', 'b'" */
    char *note;
};

struct tmpls {
    struct tmpl *v;
    size_t n;
    config_t **files;  /* the template files read, alive as long as the load */
    size_t n_files;
    char *searched;    /* "'/etc/tbgw/templates', …" for "unknown template" messages */
};

const struct tmpl *cf_find_template(const struct tmpls *t, const char *name);
/* The templates list of root into out (names checked, duplicates reported). */
void cf_collect_templates(struct load *ld, const config_setting_t *root, struct tmpls *out);
/*
 * Templates that devices name but the file does not define: NAME.conf from the first
 * folder of template_path (root's, or the default) that has one. A file holds one
 * template's settings at top level; its problems are reported at its own file:line.
 */
void cf_load_library_templates(struct load *ld, const config_setting_t *root, struct tmpls *t);
/* Record which devices use which template, so errors in a template can name them. */
void cf_note_template_users(const config_setting_t *root, struct tmpls *t);
/* Validate a template on its own, for any driver, so that its problems are reported once. */
void cf_validate_template(struct load *ld, const struct tmpl *t);
void cf_tmpls_free(struct tmpls *t);

#endif
