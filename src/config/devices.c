/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A device's settings from its layers (devices.h). A template layer is applied quietly:
 * its problems were reported once, at its own lines, when the template was validated.
 * Thread: main.
 */
#include "config/devices.h"

#include <errno.h>
#include <libconfig.h>
#include <limits.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/keytab.h"
#include "util/suggest.h"

static void tag_list_add(struct tag_list *l, const struct tag_config *t)
{
    l->v = xreallocarray(l->v, l->n + 1, sizeof(*l->v));
    l->v[l->n++] = *t;
}

static void tag_free(struct tag_config *t)
{
    free(t->key);
    free(t->invalid);
}

static void tag_list_free(struct tag_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        tag_free(&l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* Cross-field checks of one tag. */
static bool check_tag(struct load *ld, const config_setting_t *s, const char *path,
                      struct tag_config *t, seen_t seen)
{
    bool ok = true;
    bool has_count = cf_was_seen(tag_keys, seen, "count");
    bool has_bit = cf_was_seen(tag_keys, seen, "bit");
    const char *what = t->role == ROLE_RPC ? "method" : "key";

    if (!value_type_allowed(t->table, t->type)) {
        if (table_is_bits(t->table))
            ERR(ld, s, path, "%s '%s': table '%s' holds single bits: type must be 'bool' (got '%s')",
                what, t->key, table_to_string(t->table), value_type_to_string(t->type));
        else
            ERR(ld, s, path,
                "%s '%s': type 'bool' is for coil and discrete tables; use type 'bit' with "
                "bit = N for a bit of a register",
                what, t->key);
        ok = false;
    }
    if (t->type == VT_STRING) {
        if (!has_count) {
            ERR(ld, s, path, "%s '%s': type 'string' needs count (registers, 1..125)", what,
                t->key);
            ok = false;
        }
    } else if (has_count) {
        ERR(ld, s, path, "%s '%s': count applies only to type 'string'", what, t->key);
        ok = false;
    }
    if (t->type == VT_BIT && !has_bit) {
        ERR(ld, s, path, "%s '%s': type 'bit' needs bit (0..15)", what, t->key);
        ok = false;
    } else if (t->type != VT_BIT && has_bit) {
        ERR(ld, s, path, "%s '%s': bit applies only to type 'bit'", what, t->key);
        ok = false;
    }
    if (!value_type_is_numeric(t->type) &&
        (cf_was_seen(tag_keys, seen, "scale") || cf_was_seen(tag_keys, seen, "offset"))) {
        ERR(ld, s, path, "%s '%s': scale and offset apply only to numeric types", what, t->key);
        ok = false;
    }
    if (t->type != VT_STRING)
        t->count = (int)value_type_width(t->type, 0);
    if (ok && t->address + t->count - 1 > 65535) {
        ERR(ld, s, path, "%s '%s': %d %s at address %d run past address 65535", what, t->key,
            t->count, table_is_bits(t->table) ? "bits" : "registers", t->address);
        ok = false;
    }
    if ((t->role == ROLE_WRITE || (t->role == ROLE_RPC && t->access == ACCESS_WRITE)) &&
        !table_is_writable(t->table)) {
        ERR(ld, s, path, "%s '%s': table '%s' is read-only (writable tables: coil, holding)", what,
            t->key, table_to_string(t->table));
        ok = false;
    }
    if (t->n_invalid && !value_type_is_numeric(t->type)) {
        ERR(ld, s, path, "%s '%s': invalid applies only to numeric types", what, t->key);
        ok = false;
    }
    if (t->role == ROLE_TELEMETRY && t->report == REPORT_ALWAYS &&
        (cf_was_seen(tag_keys, seen, "deadband") || cf_was_seen(tag_keys, seen, "heartbeat_s")))
        WARN(ld, s, path, "key '%s': deadband and heartbeat_s have no effect with report = \"always\"",
             t->key);
    return ok;
}

/* `invalid = [ … ]`: the raw values that mean "no reading". */
static void parse_invalid(struct load *ld, const config_setting_t *tag, const char *path,
                          struct tag_config *t)
{
    const config_setting_t *arr = cf_member(tag, "invalid");
    char sub[512];
    int n;

    if (!arr || config_setting_type(arr) != CONFIG_TYPE_ARRAY)
        return; /* absent, or already reported by the walker */
    n = config_setting_length(arr);
    t->invalid = xcalloc((size_t)n + 1, sizeof(*t->invalid));
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = config_setting_get_elem(arr, (unsigned)i);
        int type = config_setting_type(e);

        cf_path_index(sub, sizeof(sub), path, (size_t)i);
        if (type == CONFIG_TYPE_INT || type == CONFIG_TYPE_INT64)
            t->invalid[t->n_invalid++] = (double)config_setting_get_int64(e);
        else if (type == CONFIG_TYPE_FLOAT)
            t->invalid[t->n_invalid++] = config_setting_get_float(e);
        else
            ERR(ld, e, sub, "expected a number, got %s", cf_type_noun(type));
    }
}

/* Parse one list of tags (telemetry, attributes, writes or rpc) of a device or template
 * and add it to out. Entries already in out came from a template: one with the same key is
 * replaced (the device's entry wins). The same key twice in this one list is an error. */
void cf_parse_tags(struct load *ld, const config_setting_t *list, const char *path,
                   enum tag_role role, const struct device_config *dev, struct tag_list *out)
{
    size_t base = out->n;
    int n;

    if (!list || config_setting_type(list) != CONFIG_TYPE_LIST)
        return;
    n = config_setting_length(list);
    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(list, (unsigned)i);
        struct tag_config t = {
            .role = role,
            .byte_order = dev->byte_order,
            .word_order = dev->word_order,
            .report = role == ROLE_TELEMETRY ? dev->report : REPORT_CHANGE,
            .deadband = role == ROLE_TELEMETRY ? dev->deadband : 0,
            .heartbeat_s = role == ROLE_TELEMETRY ? dev->heartbeat_s : 0,
            .poll_ms = dev->poll_ms,
            .origin = {.file = cf_file_of(ld, s), .line = cf_line_of(s)},
        };
        char sub[512];
        size_t errors = diag_errors(ld->diag);
        seen_t seen;
        bool placed = false;

        cf_path_index(sub, sizeof(sub), path, (size_t)i);
        if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
            ERR(ld, s, sub, "expected a group { … }, got %s", cf_type_noun(config_setting_type(s)));
            continue;
        }
        cf_apply_defaults(tag_keys, TAG(role_scope[role]), &t);
        seen = cf_walk(ld, s, sub, tag_keys, TAG(role_scope[role]), "", role_names[role], &t);
        cf_check_required(ld, s, sub, tag_keys, TAG(role_scope[role]), seen);
        {
            char isub[520];
            cf_path_join(isub, sizeof(isub), sub, "invalid");
            parse_invalid(ld, s, isub, &t);
        }
        /* A template's values are applied quietly (cf_validate_template() reports them once):
         * a key that did not parse leaves the tag without one, errors or not. */
        if (!t.key || diag_errors(ld->diag) != errors || !check_tag(ld, s, sub, &t, seen)) {
            tag_free(&t);
            continue;
        }
        for (size_t j = 0; j < out->n && !placed; j++) {
            if (strcmp(out->v[j].key, t.key) != 0)
                continue;
            if (j >= base) {
                ERR(ld, s, sub, "%s '%s' is listed twice (first at line %d)",
                    role == ROLE_RPC ? "method" : "key", t.key, out->v[j].origin.line);
                tag_free(&t);
            } else {
                tag_free(&out->v[j]);
                out->v[j] = t;
            }
            placed = true;
        }
        if (!placed)
            tag_list_add(out, &t);
    }
}

char **cf_parse_strings(struct load *ld, const config_setting_t *arr, const char *path)
{
    int n = config_setting_length(arr);
    char **v = xcalloc((size_t)n + 1, sizeof(char *));
    int o = 0;

    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(arr, (unsigned)i);
        char sub[512];

        cf_path_index(sub, sizeof(sub), path, (size_t)i);
        if (config_setting_type(s) != CONFIG_TYPE_STRING) {
            ERR(ld, s, sub, "expected a string, got %s", cf_type_noun(config_setting_type(s)));
            continue;
        }
        if (!*config_setting_get_string(s)) {
            ERR(ld, s, sub, "must not be empty");
            continue;
        }
        v[o++] = xstrdup(config_setting_get_string(s));
    }
    return v;
}

static void strv_free(char **v)
{
    for (char **p = v; p && *p; p++)
        free(*p);
    free(v);
}

static size_t strv_len(char *const *v)
{
    size_t n = 0;
    while (v && v[n])
        n++;
    return n;
}

/* The last layer (device over template) that has a member name. */
static const config_setting_t *pick(const struct layer *layers, size_t n, const char *name,
                                    const struct layer **ret)
{
    for (size_t i = n; i-- > 0;) {
        const config_setting_t *m = cf_member(layers[i].s, name);
        if (m) {
            if (ret)
                *ret = &layers[i];
            return m;
        }
    }
    return NULL;
}

void cf_parse_group_into(struct load *ld, const struct layer *layer, const char *name,
                         const struct key *keys, unsigned scope, const char *driver_desc,
                         void *target)
{
    const config_setting_t *g = cf_member(layer->s, name);
    char sub[512];
    seen_t seen;
    const char *saved = ld->note;

    if (!g || config_setting_type(g) != CONFIG_TYPE_GROUP)
        return;
    cf_path_join(sub, sizeof(sub), layer->path, name);
    ld->note = layer->note;
    cf_apply_defaults(keys, scope, target);
    seen = cf_walk(ld, g, sub, keys, scope, driver_desc, "", target);
    cf_check_required(ld, g, sub, keys, scope, seen);
    ld->note = saved;
}

/* Exactly one credential form of group ds (a device's, or edge.gateway) into c; who
 * names its owner in messages ("device 'x'", "the gateway"). */
void cf_parse_creds(struct load *ld, const config_setting_t *ds, const char *path,
                    struct credentials *c, const char *who, unsigned scope,
                    const char *driver_desc)
{
    static const char *const forms[] = {"token", "mqtt", "x509", "provision"};
    struct layer self = {.s = ds, .path = path};
    const char *present[4];
    size_t n = 0;

    for (size_t i = 0; i < ARRAY_SIZE(forms); i++)
        if (cf_member(ds, forms[i]))
            present[n++] = forms[i];
    if (n == 0) {
        ERR(ld, ds, path, "%s has no credentials: set exactly one of token, mqtt, x509 or provision",
            who);
        return;
    }
    if (n > 1) {
        ERR(ld, ds, path, "%s has %s and %s: set exactly one credential form", who, present[0],
            present[1]);
        return;
    }
    if (cf_member(ds, "token")) {
        c->kind = CRED_TOKEN;
    } else if (cf_member(ds, "mqtt")) {
        const config_setting_t *g = cf_member(ds, "mqtt");
        c->kind = CRED_MQTT;
        cf_parse_group_into(ld, &self, "mqtt", mqtt_keys, scope, driver_desc, c);
        if (g && config_setting_type(g) == CONFIG_TYPE_GROUP) {
            char sub[512];
            cf_path_join(sub, sizeof(sub), path, "mqtt");
            if (!c->client_id && !c->username)
                ERR(ld, g, sub, "needs client_id, username, or both");
            else if (c->client_id && !c->username && c->password)
                ERR(ld, g, sub,
                    "client_id with password but no username is not a ThingsBoard MQTT basic "
                    "credential: add username, or drop the password");
        }
    } else if (cf_member(ds, "x509")) {
        c->kind = CRED_X509;
        cf_parse_group_into(ld, &self, "x509", x509_keys, scope, driver_desc, c);
        if (!ld->cfg->edge.tls)
            ERR(ld, cf_at(ds, "x509"), path,
                "%s: x509 credentials need TLS to the edge: add edge.tls { ca_file = … }", who);
        {
            char sub[512];
            cf_path_join(sub, sizeof(sub), path, "x509.cert_file");
            cf_check_readable(ld, cf_at(cf_member(ds, "x509"), "cert_file"), sub, c->cert_file);
            cf_path_join(sub, sizeof(sub), path, "x509.key_file");
            cf_check_readable(ld, cf_at(cf_member(ds, "x509"), "key_file"), sub, c->key_file);
        }
    } else {
        c->kind = CRED_PROVISION;
        cf_parse_group_into(ld, &self, "provision", provision_keys, scope, driver_desc, c);
    }
}

void cf_parse_credentials(struct load *ld, const config_setting_t *ds, const char *path,
                          struct device_config *d, unsigned scope, const char *driver_desc)
{
    static const char *const forms[] = {"token", "mqtt", "x509", "provision"};
    char who[300];

    /* Gateway mode: the gateway's credentials carry every device, and ThingsBoard knows a
     * device only by its name. A device's own would never be used: say so rather than
     * ignore them. */
    if (ld->cfg->edge.gateway) {
        for (size_t i = 0; i < ARRAY_SIZE(forms); i++) {
            char sub[512];

            if (!cf_member(ds, forms[i]))
                continue;
            cf_path_join(sub, sizeof(sub), path, forms[i]);
            ERR(ld, cf_at(ds, forms[i]), sub,
                "device '%s': in gateway mode (edge.gateway) a device has no credentials of its "
                "own; the gateway's carry it: remove %s",
                d->name, forms[i]);
        }
        return;
    }
    snprintf(who, sizeof(who), "device '%s'", d->name);
    cf_parse_creds(ld, ds, path, &d->cred, who, scope, driver_desc);
}

/* A Modicon reference (4xxxx: holding register xxxx, 3xxxx: input register xxxx, both
 * numbered from 1) written where an address belongs reads a register ~40000 too high, and
 * the device answers with exception 2 or, worse, with some other register. Not said of a
 * register map read from template_path: its numbers come from the vendor's document
 * (Schneider's energy registers really are at 45100). */
static void check_modicon(struct load *ld, const char *path, const struct device_config *d,
                          const struct tag_config *t)
{
    int ref = t->address, first;

    for (size_t i = 0; i < ld->n_library_files; i++)
        if (t->origin.file == ld->library_files[i])
            return;
    if (t->table == TABLE_HOLDING && ref >= 40001 && ref <= 49999)
        first = 40001;
    else if (t->table == TABLE_INPUT && ref >= 30001 && ref <= 39999)
        first = 30001;
    else
        return;
    diag_add(ld->diag, true, t->origin.file, t->origin.line, path,
             "%s '%s': address %d looks like a Modicon reference (%s register %d); the "
             "address is the register's number within the %s table: write address = %d "
             "(with address_base = %d)",
             t->role == ROLE_RPC ? "method" : "key", t->key, ref, table_to_string(t->table),
             ref - first + 1, table_to_string(t->table), ref - first + d->address_base,
             d->address_base);
}

/* Check each tag's address against address_base and turn it into the wire address. */
static void resolve_addresses(struct load *ld, const char *path, struct device_config *d)
{
    struct tag_list *lists[] = {&d->telemetry, &d->attributes, &d->writes, &d->rpc};

    for (size_t l = 0; l < ARRAY_SIZE(lists); l++) {
        for (size_t i = 0; i < lists[l]->n; i++) {
            struct tag_config *t = &lists[l]->v[i];

            check_modicon(ld, path, d, t);
            if (!d->address_base)
                continue;
            if (t->address == 0) {
                diag_add(ld->diag, false, t->origin.file, t->origin.line, path,
                         "%s '%s': address 0 does not exist with address_base = 1 (the first "
                         "register is address 1)",
                         t->role == ROLE_RPC ? "method" : "key", t->key);
                continue;
            }
            t->address--;
        }
    }
}

/* Cross-field checks of one device. clean: the device's own settings had no errors (a
 * check that builds on a setting that failed to parse would only add noise). */
void cf_check_device(struct load *ld, const config_setting_t *ds, const char *path,
                     struct device_config *d, bool clean)
{
    const struct bus_config *b = d->bus;
    char sub[512];

    cf_path_join(sub, sizeof(sub), path, "unit_id");
    if (b->driver != DRIVER_SERIAL_LINE) {
        bool reads = d->telemetry.n || d->attributes.n;

        resolve_addresses(ld, path, d);
        if (d->unit_id > 247 && !(b->driver == DRIVER_MODBUS_TCP && d->unit_id == 255))
            ERR(ld, cf_at(ds, "unit_id"), sub,
                "device '%s': unit_id %d is out of range (1..247; 0 and 255 are allowed on TCP)",
                d->name, d->unit_id);
        if ((driver_scope[b->driver] & D_FRAMED) && d->unit_id == 0 && reads)
            ERR(ld, cf_at(ds, "unit_id"), sub,
                "device '%s': unit_id 0 is the RTU broadcast address; a device there never "
                "answers a read",
                d->name);
        /* The bus sizes its per-key state by the key table (tests/fuzz/fuzz-config.c). */
        if (d->telemetry.n + d->attributes.n > KEYTAB_MAX)
            ERR(ld, ds, path, "device '%s' has %zu telemetry keys and attributes; at most %d",
                d->name, d->telemetry.n + d->attributes.n, KEYTAB_MAX);
        for (size_t i = 0; i < d->attributes.n; i++)
            if (device_find_tag(&d->telemetry, d->attributes.v[i].key))
                diag_add(ld->diag, false, d->attributes.v[i].origin.file,
                         d->attributes.v[i].origin.line, path,
                         "'%s' is both a telemetry key and an attribute of device '%s'",
                         d->attributes.v[i].key, d->name);
        for (size_t i = 0; i < d->rpc.n; i++)
            if (d->allow_raw_rpc &&
                (strcmp(d->rpc.v[i].key, "read") == 0 || strcmp(d->rpc.v[i].key, "write") == 0))
                diag_add(ld->diag, false, d->rpc.v[i].origin.file, d->rpc.v[i].origin.line, path,
                         "rpc method '%s' is reserved for raw register access when "
                         "allow_raw_rpc = true",
                         d->rpc.v[i].key);
        if (clean && !reads && !d->writes.n && !d->rpc.n && !d->allow_raw_rpc)
            WARN(ld, ds, path, "device '%s' has nothing to read or write", d->name);
    } else {
        size_t nkeys = strv_len(d->keys);
        const char *fmt = format_names[d->format];

        if (d->columns && d->format != FORMAT_CSV)
            ERR(ld, ds, path, "device '%s': columns applies only to format 'csv' (format is '%s')",
                d->name, fmt);
        if ((d->pattern || d->keys) && d->format != FORMAT_REGEX)
            ERR(ld, ds, path,
                "device '%s': pattern and keys apply only to format 'regex' (format is '%s')",
                d->name, fmt);
        if (d->format == FORMAT_CSV && strv_len(d->columns) == 0)
            ERR(ld, ds, path, "device '%s': format 'csv' needs columns = [ \"key1\", … ]", d->name);
        if (d->format == FORMAT_REGEX) {
            if (!d->pattern || !nkeys) {
                ERR(ld, ds, path,
                    "device '%s': format 'regex' needs pattern and keys = [ \"key1\", … ]",
                    d->name);
            } else {
                regex_t re;
                int r = regcomp(&re, d->pattern, REG_EXTENDED);
                if (r != 0) {
                    char msg[256];
                    regerror(r, &re, msg, sizeof(msg));
                    ERR(ld, cf_at(ds, "pattern"), path, "device '%s': bad pattern: %s", d->name,
                        msg);
                } else {
                    if (re.re_nsub != nkeys)
                        ERR(ld, cf_at(ds, "pattern"), path,
                            "device '%s': pattern has %zu capture groups but keys names %zu",
                            d->name, (size_t)re.re_nsub, nkeys);
                    regfree(&re);
                }
            }
        }
    }
    if (!ld->cfg->edge.gateway && cf_member(ds, "type"))
        WARN(ld, cf_at(ds, "type"), path,
             "device '%s': type has an effect only in gateway mode (edge.gateway); with a session "
             "of its own, a device's profile is the one of the device its credentials belong to",
             d->name);
    if (d->ota.enabled && ld->cfg->edge.gateway)
        ERR(ld, cf_at(ds, "ota"), path,
            "device '%s': OTA cannot be carried for a device over the gateway API (edge.gateway): "
            "remove the ota block, or give the device its own session (no edge.gateway)",
            d->name);
    else if (d->ota.enabled && d->ota.command && d->ota.command[0] != '/')
        ERR(ld, cf_at(ds, "ota"), path, "device '%s': ota.command must be an absolute path",
            d->name);
    if (d->report == REPORT_ALWAYS && (d->deadband > 0 || d->heartbeat_s > 0))
        WARN(ld, ds, path,
             "device '%s': deadband and heartbeat_s have no effect with report = \"always\"",
             d->name);
}

/* The settings of one device (or, with dev == NULL semantics in validate_template, of a
 * template on its own): layers = [template?, device]. */
void cf_parse_device_layers(struct load *ld, const struct layer *layers, size_t n_layers,
                            struct device_config *d, unsigned drv_scope,
                            const char *driver_desc)
{
    static const char *const lists[N_ROLES] = {"telemetry", "attributes", "writes", "rpc"};
    struct tag_list *outs[N_ROLES] = {&d->telemetry, &d->attributes, &d->writes, &d->rpc};
    const struct layer *from;
    const config_setting_t *m;
    unsigned ctx_scope = drv_scope | C_DEVICE;
    seen_t seen = 0;

    cf_apply_defaults(device_keys, ctx_scope, d);
    for (size_t i = 0; i < n_layers; i++) {
        const char *saved = ld->note;
        bool is_template = i + 1 < n_layers;

        ld->note = layers[i].note;
        ld->template_layer = is_template;
        seen |= cf_walk(ld, layers[i].s, layers[i].path, device_keys,
                     is_template ? (drv_scope | C_TEMPLATE) : ctx_scope, driver_desc, "a template",
                     d);
        ld->template_layer = false;
        ld->note = saved;
    }
    cf_check_required(ld, layers[n_layers - 1].s, layers[n_layers - 1].path, device_keys, ctx_scope,
                   seen);

    for (int r = 0; r < N_ROLES; r++) {
        for (size_t i = 0; i < n_layers; i++) {
            const char *saved = ld->note;
            char sub[512];

            m = cf_member(layers[i].s, lists[r]);
            if (!m || !(drv_scope & D_MODBUS))
                continue; /* a serial-line device: already reported as out of scope */
            cf_path_join(sub, sizeof(sub), layers[i].path, lists[r]);
            ld->note = layers[i].note;
            ld->template_layer = i + 1 < n_layers;
            if (ld->template_layer) {
                /* Reported once by cf_validate_template(); build the tags quietly. */
                struct diag *real = ld->diag;
                ld->diag = diag_new();
                cf_parse_tags(ld, m, sub, (enum tag_role)r, d, outs[r]);
                diag_free(ld->diag);
                ld->diag = real;
            } else {
                cf_parse_tags(ld, m, sub, (enum tag_role)r, d, outs[r]);
            }
            ld->template_layer = false;
            ld->note = saved;
        }
    }

    m = pick(layers, n_layers, "ota", &from);
    if (m && config_setting_type(m) == CONFIG_TYPE_GROUP) {
        d->ota.enabled = true;
        cf_parse_group_into(ld, from, "ota", ota_keys, ctx_scope, driver_desc, &d->ota);
    }
    m = pick(layers, n_layers, "columns", &from);
    if (m && config_setting_type(m) == CONFIG_TYPE_ARRAY) {
        char sub[512];
        cf_path_join(sub, sizeof(sub), from->path, "columns");
        d->columns = cf_parse_strings(ld, m, sub);
    }
    m = pick(layers, n_layers, "keys", &from);
    if (m && config_setting_type(m) == CONFIG_TYPE_ARRAY) {
        char sub[512];
        cf_path_join(sub, sizeof(sub), from->path, "keys");
        d->keys = cf_parse_strings(ld, m, sub);
    }
}

void cf_device_free(struct device_config *d)
{
    struct credentials *c = &d->cred;

    free(d->name);
    free(d->type);
    free(c->token);
    free(c->client_id);
    free(c->username);
    free(c->password);
    free(c->cert_file);
    free(c->key_file);
    free(c->provision_key);
    free(c->provision_secret);
    tag_list_free(&d->telemetry);
    tag_list_free(&d->attributes);
    tag_list_free(&d->writes);
    tag_list_free(&d->rpc);
    free(d->ota.command);
    strv_free(d->columns);
    free(d->pattern);
    strv_free(d->keys);
    free(d->send);
    free(d->template_name);
}
