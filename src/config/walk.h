/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The table-driven walker: reads one libconfig group against the rows of config/schema.h,
 * parses scalars into their destination, checks scope, shape and ranges, and reports every
 * problem as "file:line: path: message" into the load's diagnostics. Private to
 * src/config/; the section parsers (config.c, devices.c, templates.c) are built on it.
 */
#ifndef TBGW_CONFIG_WALK_H
#define TBGW_CONFIG_WALK_H

#include <libconfig.h>
#include <stdbool.h>

#include "config/config.h"
#include "config/diag.h"
#include "config/schema.h"
#include "util/macros.h"

struct load {
    struct config *cfg;
    struct diag *diag;
    const char *dir;          /* directory of the main file, for relative paths */
    const char *note;         /* appended to messages about a template's settings */
    bool template_layer;      /* applying a validated template to a device: only scope errors */
    /* Template files read from template_path (interned names, as in origins): vendor
     * register maps, whose addresses are taken as written (no Modicon warning). */
    const char **library_files;
    size_t n_library_files;
};

typedef unsigned long long seen_t; /* one bit per row of a key table */

const char *cf_file_of(struct load *ld, const config_setting_t *s);
/* f as kept in the config (the same pointer for the same name). */
const char *cf_intern_file(struct load *ld, const char *f);
int cf_line_of(const config_setting_t *s);

/* Add an error or warning at setting s (its file and line) for path. */
PRINTF_LIKE(5, 6)
void cf_report(struct load *ld, bool warning, const config_setting_t *s, const char *path,
               const char *fmt, ...);
#define ERR(ld, s, path, ...) cf_report(ld, false, s, path, __VA_ARGS__)
#define WARN(ld, s, path, ...) cf_report(ld, true, s, path, __VA_ARGS__)

void cf_path_join(char *out, size_t size, const char *parent, const char *name);
void cf_path_index(char *out, size_t size, const char *parent, size_t i);
/* "a number", "a group { … }", … for a libconfig type. */
const char *cf_type_noun(int t);

/* Store the defaults of the rows valid in scope into target. */
void cf_apply_defaults(const struct key *keys, unsigned scope, void *target);
/* Parse one scalar setting s into target according to row k. */
void cf_parse_value(struct load *ld, const struct key *k, const config_setting_t *s,
                    const char *path, void *target);
/*
 * Walk the members of group: each must be a row valid in scope. Scalars are parsed into
 * target; group/list/array members are only checked for shape (the caller parses them).
 * driver_desc names the driver side ("a modbus-tcp bus"), context_desc the context side
 * ("a template"), for "does not apply to …" messages. Returns the rows seen as a bitmask.
 */
seen_t cf_walk(struct load *ld, const config_setting_t *group, const char *path,
               const struct key *keys, unsigned scope, const char *driver_desc,
               const char *context_desc, void *target);
void cf_check_required(struct load *ld, const config_setting_t *group, const char *path,
                       const struct key *keys, unsigned scope, seen_t seen);
bool cf_was_seen(const struct key *keys, seen_t seen, const char *name);

const config_setting_t *cf_member(const config_setting_t *group, const char *name);
/* The setting to point a message at: the member if present, else its group. */
const config_setting_t *cf_at(const config_setting_t *group, const char *name);

/* A plain top-level section (storage, log, …): defaults, walk, required settings. */
void cf_parse_section(struct load *ld, const config_setting_t *root, const char *name,
                      const struct key *keys, void *target);
/* An error at s unless file can be read by this process. */
void cf_check_readable(struct load *ld, const config_setting_t *s, const char *path,
                       const char *file);

#endif
