/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * tbgw.conf -> struct config.
 *
 * The file is the user's contract, so this loader is strict and talkative: every setting
 * is described by one row of a table (name, type, where it is valid, range, default,
 * destination), unknown names are errors with a "did you mean", values are range-checked,
 * and every problem found is reported at once as "file:line: path: message". Rules that
 * span settings (one credential form per device, x509 needs edge.tls, addresses that
 * must not run past 65535, unique names, …) are named check functions after the walk.
 *
 * Templates: a device's effective settings are the template's, overridden by the device's
 * own; tag lists are the template's plus the device's (same key: the device's wins). A
 * template is validated once on its own, so its errors appear once, at its own line, with
 * the devices that use it named.
 *
 * Scopes: a row is valid for some drivers (modbus-rtu, modbus-tcp, …) and some
 * contexts (a device, a template, a telemetry tag, an RPC method, …). A known setting in
 * the wrong place says where it does belong instead of "unknown".
 *
 * Thread: main. Pure apart from reading the files it is given (and checking that the
 * files named inside are readable, and that a listen address is one of this host's).
 */
#include "config/config.h"

#include <errno.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <libconfig.h>
#include <limits.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <syslog.h>

#include "config/devices.h"
#include "config/diag.h"
#include "config/schema.h"
#include "config/templates.h"
#include "config/walk.h"
#include "core/keytab.h"
#include "tb/pacing.h"
#include "util/hostport.h"
#include "util/macros.h"
#include "util/suggest.h"

static void parse_edge(struct load *ld, const config_setting_t *root)
{
    struct edge_config *e = &ld->cfg->edge;
    const config_setting_t *s = cf_member(root, "edge");
    const config_setting_t *tls, *rl, *gw;
    seen_t seen;

    cf_apply_defaults(edge_keys, PLAIN, e);
    if (!s)
        return; /* reported as a missing required top-level group */
    if (config_setting_type(s) != CONFIG_TYPE_GROUP)
        return;
    seen = cf_walk(ld, s, "edge", edge_keys, PLAIN, "", "", e);
    cf_check_required(ld, s, "edge", edge_keys, PLAIN, seen);

    tls = cf_member(s, "tls");
    if (tls && config_setting_type(tls) == CONFIG_TYPE_GROUP) {
        e->tls = true;
        cf_apply_defaults(tls_keys, PLAIN, e);
        cf_check_required(ld, tls, "edge.tls", tls_keys, PLAIN,
                       cf_walk(ld, tls, "edge.tls", tls_keys, PLAIN, "", "", e));
        cf_check_readable(ld, cf_member(tls, "ca_file"), "edge.tls.ca_file", e->ca_file);
    }
    if (!cf_was_seen(edge_keys, seen, "port"))
        e->port = e->tls ? 8883 : 1883;

    gw = cf_member(s, "gateway");
    if (gw && config_setting_type(gw) == CONFIG_TYPE_GROUP) {
        e->gateway = true;
        e->gw_origin = (struct origin){.file = cf_file_of(ld, gw), .line = cf_line_of(gw)};
        cf_walk(ld, gw, "edge.gateway", gateway_keys, DEV(D_ALL, C_DEVICE), "", "", &e->gw_cred);
        cf_parse_creds(ld, gw, "edge.gateway", &e->gw_cred, "the gateway", DEV(D_ALL, C_DEVICE),
                       "");
    }

    rl = cf_member(s, "rate_limits");
    cf_apply_defaults(rate_limit_keys, PLAIN, e);
    if (rl && config_setting_type(rl) == CONFIG_TYPE_GROUP) {
        seen = cf_walk(ld, rl, "edge.rate_limits", rate_limit_keys, PLAIN, "", "", e);
        /* The device limits given here replace getSessionLimits; tenant ones alone do not. */
        e->rate_limits_set = cf_was_seen(rate_limit_keys, seen, "messages") ||
                             cf_was_seen(rate_limit_keys, seen, "telemetry_messages") ||
                             cf_was_seen(rate_limit_keys, seen, "telemetry_datapoints");
        for (const struct key *k = rate_limit_keys; k->name; k++) {
            const char *spec = *(char **)(void *)((char *)e + k->off);
            struct pace_limit l;
            char err[160], path[64];

            if (pace_parse(spec, &l, err, sizeof(err)) < 0) {
                snprintf(path, sizeof(path), "edge.rate_limits.%s", k->name);
                ERR(ld, cf_member(rl, k->name), path, "%s", err);
            }
        }
    }
}

/* ---- buses ---- */

static const int standard_bauds[] = {50,     75,     110,    134,    150,    200,     300,
                                     600,    1200,   1800,   2400,   4800,   9600,    19200,
                                     38400,  57600,  115200, 230400, 460800, 500000,  576000,
                                     921600, 1000000, 1152000, 1500000, 2000000, 2500000,
                                     3000000, 3500000, 4000000};

static void parse_devices(struct load *ld, const config_setting_t *bs, const char *bpath,
                          struct bus_config *b, const struct tmpls *tmpls)
{
    const config_setting_t *list = cf_member(bs, "devices");
    unsigned drv = driver_scope[b->driver];
    char driver_desc[64];
    int n;

    snprintf(driver_desc, sizeof(driver_desc), "a %s device", driver_names[b->driver]);
    if (!list || config_setting_type(list) != CONFIG_TYPE_LIST || config_setting_length(list) == 0) {
        WARN(ld, bs, bpath, "bus '%s' has no devices", strempty(b->name));
        return;
    }
    n = config_setting_length(list);
    b->devices = xcalloc((size_t)n, sizeof(*b->devices));
    for (int i = 0; i < n; i++) {
        const config_setting_t *ds = config_setting_get_elem(list, (unsigned)i);
        struct device_config *d = &b->devices[b->n_devices];
        char path[256];
        struct layer layers[2];
        size_t nl = 0;
        const char *tn = NULL;
        const struct tmpl *t = NULL;
        size_t errors;

        snprintf(path, sizeof(path), "%s.devices.[%d]", bpath, i);
        if (config_setting_type(ds) != CONFIG_TYPE_GROUP) {
            ERR(ld, ds, path, "expected a group { … }, got %s", cf_type_noun(config_setting_type(ds)));
            continue;
        }
        memset(d, 0, sizeof(*d));
        d->bus = b;
        d->origin = (struct origin){.file = cf_file_of(ld, ds), .line = cf_line_of(ds)};
        errors = diag_errors(ld->diag);
        if (config_setting_lookup_string(ds, "template", &tn)) {
            t = cf_find_template(tmpls, tn);
            if (!t) {
                const char *names[64];
                size_t c = 0;
                const char *near;
                for (size_t j = 0; j < tmpls->n && c + 1 < ARRAY_SIZE(names); j++)
                    if (tmpls->v[j].name)
                        names[c++] = tmpls->v[j].name;
                names[c] = NULL;
                near = suggest(tn, names);
                char sub[300];
                cf_path_join(sub, sizeof(sub), path, "template");
                if (near)
                    ERR(ld, cf_at(ds, "template"), sub, "unknown template '%s' (did you mean '%s'?)",
                        tn, near);
                else
                    ERR(ld, cf_at(ds, "template"), sub,
                        "unknown template '%s': not in this file's templates, and no %s.conf in %s",
                        tn, tn, tmpls->searched ? tmpls->searched : "template_path");
            } else if (t->s) {
                layers[nl++] = (struct layer){.s = t->s, .path = t->path, .note = t->note};
            }
        }
        layers[nl++] = (struct layer){.s = ds, .path = path};
        cf_parse_device_layers(ld, layers, nl, d, drv, driver_desc);
        if (!d->name)
            d->name = xstrdup("");
        cf_parse_credentials(ld, ds, path, d, drv | C_DEVICE, driver_desc);
        cf_check_device(ld, ds, path, d, diag_errors(ld->diag) == errors);
        b->n_devices++;
    }
}

/* True when s is a numeric address this host can listen on. Whether the port is free is
 * not known here (tbgw itself may hold it); start-up says so. */
static bool local_address(const char *s)
{
    struct sockaddr_storage ss = {0};
    struct sockaddr_in *in = (struct sockaddr_in *)(void *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(void *)&ss;
    socklen_t len;
    int fd, r;

    if (inet_pton(AF_INET, s, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        len = sizeof(*in);
    } else if (inet_pton(AF_INET6, s, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        len = sizeof(*in6);
    } else {
        return false;
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return true; /* cannot tell: start-up will */
    /* Port 0: any free one, only to learn whether the address is ours. */
    r = bind(fd, (struct sockaddr *)&ss, len);
    close(fd);
    return r == 0 || errno != EADDRNOTAVAIL;
}

/* Where a TCP bus's connection comes from: host/port, or listen = { bind; port; }. */
static void parse_tcp_endpoint(struct load *ld, const config_setting_t *bs, const char *path,
                               struct bus_config *b)
{
    const config_setting_t *ls = cf_member(bs, "listen");
    char sub[80];

    if (!ls || config_setting_type(ls) != CONFIG_TYPE_GROUP) {
        if (!b->host && !ls)
            ERR(ld, bs, path, "missing required setting 'host' (or listen = { port = …; } for "
                              "a device server that connects to tbgw)");
        return;
    }
    cf_path_join(sub, sizeof(sub), path, "listen");
    b->listen = true;
    cf_apply_defaults(listen_keys, BUS(D_NET), b);
    cf_check_required(ld, ls, sub, listen_keys, BUS(D_NET),
                      cf_walk(ld, ls, sub, listen_keys, BUS(D_NET), "a TCP bus", "", b));
    if (b->host)
        ERR(ld, cf_at(bs, "host"), path, "'host' and 'listen' exclude each other: tbgw either "
                                         "connects to the device or waits for it to connect");
    if (b->listen_bind && !local_address(b->listen_bind)) {
        cf_path_join(sub, sizeof(sub), path, "listen.bind");
        ERR(ld, cf_at(ls, "bind"), sub,
            "bind '%s' is not an IP address of this host (e.g. \"0.0.0.0\" for all)",
            b->listen_bind);
    }
}

static void parse_buses(struct load *ld, const config_setting_t *root, const struct tmpls *tmpls)
{
    const config_setting_t *list = cf_member(root, "buses");
    struct config *c = ld->cfg;
    int n;

    if (!list || config_setting_type(list) != CONFIG_TYPE_LIST || config_setting_length(list) == 0) {
        WARN(ld, list ? list : root, "buses", "no buses are configured: tbgw has nothing to poll");
        return;
    }
    n = config_setting_length(list);
    c->buses = xcalloc((size_t)n, sizeof(*c->buses));
    for (int i = 0; i < n; i++) {
        const config_setting_t *bs = config_setting_get_elem(list, (unsigned)i);
        struct bus_config *b = &c->buses[c->n_buses];
        char path[64];
        const char *drv = NULL;
        int d = -1;
        const config_setting_t *rs;

        snprintf(path, sizeof(path), "buses.[%d]", i);
        if (config_setting_type(bs) != CONFIG_TYPE_GROUP) {
            ERR(ld, bs, path, "expected a group { … }, got %s", cf_type_noun(config_setting_type(bs)));
            continue;
        }
        memset(b, 0, sizeof(*b));
        b->origin = (struct origin){.file = cf_file_of(ld, bs), .line = cf_line_of(bs)};
        /* The driver decides which other settings exist: read it first. */
        if (config_setting_lookup_string(bs, "driver", &drv))
            for (int k = 0; k < N_DRIVERS; k++)
                if (strcmp(driver_names[k], drv) == 0)
                    d = k;
        if (d < 0) {
            /* Report driver problems (missing / unknown) through the usual row. */
            struct bus_config scratch = {0};
            const config_setting_t *ds = cf_member(bs, "driver");
            char sub[80];
            cf_path_join(sub, sizeof(sub), path, "driver");
            if (ds)
                cf_parse_value(ld, &bus_keys[1], ds, sub, &scratch);
            else
                ERR(ld, bs, path, "missing required setting 'driver' (modbus-rtu, modbus-ascii, "
                                  "modbus-tcp, modbus-rtu-tcp or serial-line)");
            continue;
        }
        b->driver = (enum driver_kind)d;
        {
            char desc[64];
            seen_t seen;
            snprintf(desc, sizeof(desc), "a %s bus", driver_names[d]);
            cf_apply_defaults(bus_keys, BUS(driver_scope[d]), b);
            seen = cf_walk(ld, bs, path, bus_keys, BUS(driver_scope[d]), desc, "a bus", b);
            cf_check_required(ld, bs, path, bus_keys, BUS(driver_scope[d]), seen);
        }
        rs = cf_member(bs, "rs485");
        if (rs && config_setting_type(rs) == CONFIG_TYPE_GROUP &&
            (driver_scope[b->driver] & (D_RTU | D_ASCII))) {
            char sub[80];
            cf_path_join(sub, sizeof(sub), path, "rs485");
            b->rs485 = true;
            cf_apply_defaults(rs485_keys, BUS(driver_scope[b->driver]), b);
            cf_walk(ld, rs, sub, rs485_keys, BUS(driver_scope[b->driver]), "a serial bus", "", b);
        }
        if (driver_scope[b->driver] & D_NET)
            parse_tcp_endpoint(ld, bs, path, b);
        if (driver_scope[b->driver] & D_SERIAL) {
            bool std = false;
            for (size_t k = 0; k < ARRAY_SIZE(standard_bauds); k++)
                std |= standard_bauds[k] == b->baud;
            char sub[80];
            cf_path_join(sub, sizeof(sub), path, "baud");
            if (!std)
                ERR(ld, cf_at(bs, "baud"), sub,
                    "baud %d is not a rate the serial driver supports (e.g. 9600, 19200, 38400, "
                    "57600, 115200)",
                    b->baud);
        }
        for (size_t j = 0; j < c->n_buses; j++)
            if (b->name && c->buses[j].name && strcmp(b->name, c->buses[j].name) == 0)
                ERR(ld, cf_at(bs, "name"), path, "bus name '%s' is used twice (first at line %d)",
                    b->name, c->buses[j].origin.line);
        if (!b->name)
            b->name = xstrdup("");
        parse_devices(ld, bs, path, b, tmpls);
        c->n_buses++;
    }
}

/* /dev/ttyUSB3, /dev/ttyACM0: names handed out in order of appearance. */
static bool unstable_port_name(const char *dev)
{
    const char *p = NULL;

    if (strncmp(dev, "/dev/ttyUSB", 11) == 0)
        p = dev + 11;
    else if (strncmp(dev, "/dev/ttyACM", 11) == 0)
        p = dev + 11;
    if (!p || !*p)
        return false;
    return strspn(p, "0123456789") == strlen(p);
}

/* Cross-bus rules: unique device names, one device per streaming serial-line bus, one
 * bus per serial port. */
static void check_global(struct load *ld)
{
    struct config *c = ld->cfg;
    size_t k = 0;
    char path[128];

    c->devices = xcalloc(c->n_devices + 1, sizeof(*c->devices));
    for (size_t i = 0; i < c->n_buses; i++) {
        for (size_t j = 0; j < c->buses[i].n_devices; j++) {
            struct device_config *d = &c->buses[i].devices[j];

            d->index = k;
            c->devices[k++] = d;
            snprintf(path, sizeof(path), "buses.[%zu].devices.[%zu].name", i, j);
            for (size_t x = 0; x + 1 < k; x++)
                if (*d->name && strcmp(d->name, c->devices[x]->name) == 0)
                    diag_add(ld->diag, false, d->origin.file, d->origin.line, path,
                             "device name '%s' is used twice (first at line %d); ThingsBoard "
                             "device names are unique",
                             d->name, c->devices[x]->origin.line);
        }
    }
    c->n_devices = k;

    for (size_t i = 0; i < c->n_buses; i++) {
        struct bus_config *b = &c->buses[i];

        snprintf(path, sizeof(path), "buses.[%zu].devices", i);
        if (b->driver == DRIVER_SERIAL_LINE && b->n_devices > 1) {
            char names[256] = "";
            size_t o = 0;
            for (size_t j = 0; j < b->n_devices; j++)
                if (!b->devices[j].send && o < sizeof(names))
                    o += (size_t)snprintf(names + o, sizeof(names) - o, "%s'%s'", o ? ", " : "",
                                          b->devices[j].name);
            if (o)
                diag_add(ld->diag, false, b->origin.file, b->origin.line, path,
                         "serial-line bus '%s' has %zu devices and %s stream%s (no send): a "
                         "streaming sensor needs a bus of its own",
                         b->name, b->n_devices, names, strchr(names, ',') ? "" : "s");
        }
        snprintf(path, sizeof(path), "buses.[%zu].port", i);
        for (size_t j = 0; j < i; j++)
            if (b->device && c->buses[j].device && strcmp(b->device, c->buses[j].device) == 0)
                diag_add(ld->diag, false, b->origin.file, b->origin.line, path,
                         "port '%s' is already used by bus '%s'; devices on one port belong on "
                         "one bus",
                         b->device, c->buses[j].name);
        if (b->device && unstable_port_name(b->device))
            diag_add(ld->diag, true, b->origin.file, b->origin.line, path,
                     "port '%s' is numbered by the order USB adapters appear in and may name "
                     "another adapter after a replug or reboot; prefer its /dev/serial/by-id/ "
                     "path",
                     b->device);
        snprintf(path, sizeof(path), "buses.[%zu].listen.port", i);
        for (size_t j = 0; j < i; j++)
            if (b->listen && c->buses[j].listen && b->listen_port == c->buses[j].listen_port)
                diag_add(ld->diag, false, b->origin.file, b->origin.line, path,
                         "port %d is already listened on by bus '%s'", b->listen_port,
                         c->buses[j].name);
    }
}

static void check_metrics(struct load *ld, const config_setting_t *root)
{
    const char *listen = ld->cfg->metrics_listen, *why;
    struct sockaddr_storage ss;
    socklen_t len;

    if (listen && *listen && hostport_parse(listen, &ss, &len, &why) < 0)
        ERR(ld, cf_at(cf_member(root, "metrics"), "listen"), "metrics.listen", "'%s': %s", listen,
            why);
}

/* ---- public ---------------------------------------------------------------------------- */

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');

    if (!slash)
        return xstrdup(".");
    if (slash == path)
        return xstrdup("/");
    return xstrndup(path, (size_t)(slash - path));
}

static void apply_environment_defaults(struct config *c)
{
    const char *e;

    if (!c->storage.path) {
        e = getenv("STATE_DIRECTORY");
        c->storage.path = xstrdup(e && *e ? e : DEFAULT_STATE_DIR);
        /* systemd may list several directories separated by ':'; ours is the first. */
        if (strchr(c->storage.path, ':'))
            *strchr(c->storage.path, ':') = '\0';
    }
    if (!c->control_socket) {
        e = getenv("RUNTIME_DIRECTORY");
        if (e && *e) {
            char *first = xstrdup(e);
            if (strchr(first, ':'))
                *strchr(first, ':') = '\0';
            c->control_socket = xasprintf("%s/control.sock", first);
            free(first);
        } else {
            c->control_socket = xstrdup(DEFAULT_CONTROL_SOCKET);
        }
    }
}

struct config *config_load(const char *path, struct diag *diag)
{
    struct config *c = xcalloc(1, sizeof(*c));
    struct load ld = {.cfg = c, .diag = diag};
    struct tmpls tmpls = {0};
    config_t lc;
    const config_setting_t *root;
    char *dir;

    c->path = xstrdup(path);
    dir = dir_of(path);
    ld.dir = dir;

    config_init(&lc);
    config_set_include_dir(&lc, dir);
    if (config_read_file(&lc, path) != CONFIG_TRUE) {
        if (config_error_type(&lc) == CONFIG_ERR_FILE_IO)
            diag_add(diag, false, path, 0, NULL, "cannot read: %s", strerror(errno ? errno : EIO));
        else
            diag_add(diag, false, config_error_file(&lc) ? config_error_file(&lc) : path,
                     config_error_line(&lc), NULL, "%s", config_error_text(&lc));
        goto out;
    }
    root = config_root_setting(&lc);

    cf_check_required(&ld, root, "", top_keys, PLAIN,
                      cf_walk(&ld, root, "", top_keys, PLAIN, "", "", c));
    parse_edge(&ld, root);
    cf_parse_section(&ld, root, "storage", storage_keys, &c->storage);
    cf_parse_section(&ld, root, "log", log_keys, c);
    cf_parse_section(&ld, root, "health", health_keys, c);
    cf_parse_section(&ld, root, "control", control_keys, c);
    cf_parse_section(&ld, root, "metrics", metrics_keys, c);
    check_metrics(&ld, root);
    apply_environment_defaults(c);

    cf_collect_templates(&ld, root, &tmpls);
    cf_load_library_templates(&ld, root, &tmpls);
    cf_note_template_users(root, &tmpls);
    for (size_t i = 0; i < tmpls.n; i++)
        cf_validate_template(&ld, &tmpls.v[i]);
    parse_buses(&ld, root, &tmpls);
    for (size_t i = 0; i < c->n_buses; i++)
        c->n_devices += c->buses[i].n_devices;
    check_global(&ld);

    {
        struct stat st;
        if (stat(path, &st) == 0 && (st.st_mode & S_IROTH) && config_has_secrets(c))
            diag_add(diag, true, path, 0, NULL,
                     "the file holds device credentials and every user can read it; fix: "
                     "chown root:tbgw %s && chmod 0640 %s",
                     path, path);
    }

out:
    cf_tmpls_free(&tmpls);
    free(ld.library_files);
    config_destroy(&lc);
    free(dir);
    if (diag_errors(diag) > 0)
        return config_free(c);
    return c;
}

struct config *config_free(struct config *c)
{
    if (!c)
        return NULL;
    for (size_t i = 0; i < c->n_buses; i++) {
        struct bus_config *b = &c->buses[i];
        for (size_t j = 0; j < b->n_devices; j++)
            cf_device_free(&b->devices[j]);
        free(b->devices);
        free(b->name);
        free(b->device);
        free(b->host);
        free(b->listen_bind);
    }
    free(c->buses);
    free(c->devices);
    free(c->edge.host);
    free(c->edge.ca_file);
    free(c->edge.rl_messages);
    free(c->edge.rl_telemetry_messages);
    free(c->edge.rl_telemetry_datapoints);
    free(c->edge.rl_tenant_messages);
    free(c->edge.rl_tenant_telemetry_messages);
    free(c->edge.rl_tenant_telemetry_datapoints);
    free(c->edge.gw_cred.token);
    free(c->edge.gw_cred.client_id);
    free(c->edge.gw_cred.username);
    free(c->edge.gw_cred.password);
    free(c->edge.gw_cred.cert_file);
    free(c->edge.gw_cred.key_file);
    free(c->edge.gw_cred.provision_key);
    free(c->edge.gw_cred.provision_secret);
    free(c->storage.path);
    free(c->control_socket);
    free(c->metrics_listen);
    free(c->path);
    for (size_t i = 0; i < c->n_files; i++)
        free(c->files[i]);
    free(c->files);
    free(c);
    return NULL;
}

const struct device_config *config_find_device(const struct config *c, const char *name)
{
    for (size_t i = 0; i < c->n_devices; i++)
        if (strcmp(c->devices[i]->name, name) == 0)
            return c->devices[i];
    return NULL;
}

const struct tag_config *device_find_tag(const struct tag_list *l, const char *key)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i].key, key) == 0)
            return &l->v[i];
    return NULL;
}

bool config_has_secrets(const struct config *c)
{
    const struct credentials *g = &c->edge.gw_cred;

    if (c->edge.gateway && (g->token || g->password || g->provision_secret))
        return true;
    for (size_t i = 0; i < c->n_devices; i++) {
        const struct credentials *cr = &c->devices[i]->cred;
        if (cr->token || cr->password || cr->provision_secret)
            return true;
    }
    return false;
}
