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
 * Scopes: a row is valid for some drivers (modbus-rtu, modbus-tcp, serial-line) and some
 * contexts (a device, a template, a telemetry tag, an RPC method, …). A known setting in
 * the wrong place says where it does belong instead of "unknown".
 *
 * Thread: main. Pure apart from reading the files it is given (and checking that the
 * files named inside are readable).
 */
#include "config.h"

#include <errno.h>
#include <libconfig.h>
#include <limits.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "config/config.h"
#include "config/diag.h"
#include "core/keytab.h"
#include "uplink/pacing.h"
#include "util/macros.h"
#include "util/suggest.h"

/* ---- scopes ------------------------------------------------------------------------ */

#define D_RTU (1u << 0)
#define D_TCP (1u << 1)
#define D_LINE (1u << 2)
#define D_MODBUS (D_RTU | D_TCP)
#define D_SERIAL (D_RTU | D_LINE)
#define D_ALL (D_RTU | D_TCP | D_LINE)
#define DRIVER_MASK D_ALL

#define C_PLAIN (1u << 3)    /* a section with only one meaning: edge, storage, a bus… */
#define C_DEVICE (1u << 4)   /* a device */
#define C_TEMPLATE (1u << 5) /* a template */
#define C_TELEM (1u << 6)
#define C_ATTR (1u << 7)
#define C_WRITE (1u << 8)
#define C_RPC (1u << 9)
#define C_TAGS (C_TELEM | C_ATTR | C_WRITE | C_RPC)
#define C_DEVLIKE (C_DEVICE | C_TEMPLATE)
#define CONTEXT_MASK (~DRIVER_MASK)

static const unsigned driver_scope[N_DRIVERS] = {
    [DRIVER_MODBUS_RTU] = D_RTU,
    [DRIVER_MODBUS_TCP] = D_TCP,
    [DRIVER_SERIAL_LINE] = D_LINE,
};

static const char *const driver_names[] = {
    [DRIVER_MODBUS_RTU] = "modbus-rtu",
    [DRIVER_MODBUS_TCP] = "modbus-tcp",
    [DRIVER_SERIAL_LINE] = "serial-line",
    NULL,
};

static const char *const role_names[] = {
    [ROLE_TELEMETRY] = "telemetry",
    [ROLE_ATTRIBUTE] = "attributes",
    [ROLE_WRITE] = "writes",
    [ROLE_RPC] = "rpc",
    NULL,
};

static const unsigned role_scope[N_ROLES] = {
    [ROLE_TELEMETRY] = C_TELEM,
    [ROLE_ATTRIBUTE] = C_ATTR,
    [ROLE_WRITE] = C_WRITE,
    [ROLE_RPC] = C_RPC,
};

const char *driver_kind_to_string(enum driver_kind d)
{
    return d < N_DRIVERS ? driver_names[d] : "?";
}

const char *tag_role_to_string(enum tag_role r)
{
    return r < N_ROLES ? role_names[r] : "?";
}

/* ---- rows -------------------------------------------------------------------------- */

enum ktype {
    KT_STR,
    KT_INT,
    KT_NUM,
    KT_BOOL,
    KT_ENUM,
    KT_GROUP, /* parsed by the caller; the walker checks scope and shape */
    KT_LIST,  /* list of groups: ( {…}, {…} ) */
    KT_ARRAY, /* array of strings: [ "a", "b" ] */
};

#define K_REQUIRED (1u << 0)
#define K_NONEMPTY (1u << 1) /* strings: not "" */
#define K_INHERIT (1u << 2)  /* default comes from the enclosing device, not from the row */
#define K_NONZERO (1u << 3)  /* numbers: not 0 */
#define K_IDENTITY (1u << 4) /* never taken from a template (a device's name) */
#define K_PATH (1u << 5)     /* strings: a file path, relative to the config file's directory */

#define NO_OFF ((size_t)-1)

struct key {
    const char *name;
    enum ktype type;
    unsigned scope;
    size_t off;
    unsigned flags;
    long long min, max;           /* KT_INT */
    double dmin, dmax;            /* KT_NUM, checked when dmin < dmax */
    const char *const *names;     /* KT_ENUM, NULL-terminated */
    const int *values;            /* KT_ENUM: stored values (NULL: the index) */
    long long idef;
    double ddef;
    const char *sdef;
    const char *what;             /* KT_ENUM: noun for "unknown <what> 'x'" (default: name) */
};

#define END_KEYS { .name = NULL }

static const char *const log_levels[] = {"error", "warning", "info", "debug", NULL};
static const int log_level_values[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
static const char *const parity_names[] = {"none", "even", "odd", NULL};
static const int parity_values[] = {'N', 'E', 'O'};
static const char *const rts_names[] = {"none", "up", "down", NULL};
static const char *const order_names[] = {"big", "little", NULL};
static const char *const report_names[] = {"always", "change", NULL};
static const char *const access_names[] = {"read", "write", NULL};
static const char *const format_names[] = {"json", "kv", "csv", "regex", NULL};

/* ---- top level ---- */

static const struct key top_keys[] = {
    {.name = "edge", .type = KT_GROUP, .scope = D_ALL | C_PLAIN, .off = NO_OFF, .flags = K_REQUIRED},
    {.name = "storage", .type = KT_GROUP, .scope = D_ALL | C_PLAIN, .off = NO_OFF},
    {.name = "log", .type = KT_GROUP, .scope = D_ALL | C_PLAIN, .off = NO_OFF},
    {.name = "health", .type = KT_GROUP, .scope = D_ALL | C_PLAIN, .off = NO_OFF},
    {.name = "control", .type = KT_GROUP, .scope = D_ALL | C_PLAIN, .off = NO_OFF},
    {.name = "templates", .type = KT_LIST, .scope = D_ALL | C_PLAIN, .off = NO_OFF},
    {.name = "buses", .type = KT_LIST, .scope = D_ALL | C_PLAIN, .off = NO_OFF},
    END_KEYS,
};

#define PLAIN (D_ALL | C_PLAIN)

static const struct key edge_keys[] = {
    {.name = "host", .type = KT_STR, .scope = PLAIN, .off = offsetof(struct edge_config, host),
     .flags = K_REQUIRED | K_NONEMPTY},
    {.name = "port", .type = KT_INT, .scope = PLAIN, .off = offsetof(struct edge_config, port),
     .flags = K_INHERIT, .min = 1, .max = 65535},
    {.name = "keepalive_s", .type = KT_INT, .scope = PLAIN,
     .off = offsetof(struct edge_config, keepalive_s), .min = 0, .max = 65535, .idef = 60},
    {.name = "qos", .type = KT_INT, .scope = PLAIN, .off = offsetof(struct edge_config, qos),
     .min = 0, .max = 1, .idef = 1},
    {.name = "tls", .type = KT_GROUP, .scope = PLAIN, .off = NO_OFF},
    {.name = "rate_limits", .type = KT_GROUP, .scope = PLAIN, .off = NO_OFF},
    END_KEYS,
};

static const struct key rate_limit_keys[] = {
    {.name = "messages", .type = KT_STR, .scope = PLAIN,
     .off = offsetof(struct edge_config, rl_messages), .sdef = ""},
    {.name = "telemetry_messages", .type = KT_STR, .scope = PLAIN,
     .off = offsetof(struct edge_config, rl_telemetry_messages), .sdef = ""},
    {.name = "telemetry_datapoints", .type = KT_STR, .scope = PLAIN,
     .off = offsetof(struct edge_config, rl_telemetry_datapoints), .sdef = ""},
    END_KEYS,
};

static const struct key tls_keys[] = {
    {.name = "ca_file", .type = KT_STR, .scope = PLAIN, .off = offsetof(struct edge_config, ca_file),
     .flags = K_REQUIRED | K_NONEMPTY | K_PATH},
    {.name = "verify_hostname", .type = KT_BOOL, .scope = PLAIN,
     .off = offsetof(struct edge_config, verify_hostname), .idef = 1},
    END_KEYS,
};

static const struct key storage_keys[] = {
    {.name = "path", .type = KT_STR, .scope = PLAIN, .off = offsetof(struct storage_config, path),
     .flags = K_NONEMPTY | K_INHERIT | K_PATH},
    {.name = "max_size_mb", .type = KT_INT, .scope = PLAIN,
     .off = offsetof(struct storage_config, max_size_mb), .min = 1, .max = 1048576, .idef = 256},
    {.name = "commit_interval_ms", .type = KT_INT, .scope = PLAIN,
     .off = offsetof(struct storage_config, commit_interval_ms), .min = 10, .max = 60000,
     .idef = 1000},
    END_KEYS,
};

static const struct key log_keys[] = {
    {.name = "level", .type = KT_ENUM, .scope = PLAIN, .off = offsetof(struct config, log_level),
     .names = log_levels, .values = log_level_values, .idef = LOG_INFO, .what = "log level"},
    END_KEYS,
};

static const struct key health_keys[] = {
    {.name = "interval_s", .type = KT_INT, .scope = PLAIN,
     .off = offsetof(struct config, health_interval_s), .min = 0, .max = 86400, .idef = 60},
    END_KEYS,
};

static const struct key control_keys[] = {
    {.name = "socket", .type = KT_STR, .scope = PLAIN, .off = offsetof(struct config, control_socket),
     .flags = K_NONEMPTY | K_INHERIT | K_PATH},
    END_KEYS,
};

/* ---- buses ---- */

#define BUS(d) ((d) | C_PLAIN)

static const struct key bus_keys[] = {
    {.name = "name", .type = KT_STR, .scope = BUS(D_ALL), .off = offsetof(struct bus_config, name),
     .flags = K_REQUIRED | K_NONEMPTY},
    {.name = "driver", .type = KT_ENUM, .scope = BUS(D_ALL), .off = offsetof(struct bus_config, driver),
     .flags = K_REQUIRED, .names = driver_names},
    {.name = "port", .type = KT_STR, .scope = BUS(D_SERIAL), .off = offsetof(struct bus_config, device),
     .flags = K_REQUIRED | K_NONEMPTY},
    {.name = "baud", .type = KT_INT, .scope = BUS(D_SERIAL), .off = offsetof(struct bus_config, baud),
     .min = 50, .max = 4000000, .idef = 9600},
    {.name = "parity", .type = KT_ENUM, .scope = BUS(D_SERIAL), .off = offsetof(struct bus_config, parity),
     .names = parity_names, .values = parity_values, .idef = 'N'},
    {.name = "data_bits", .type = KT_INT, .scope = BUS(D_SERIAL),
     .off = offsetof(struct bus_config, data_bits), .min = 5, .max = 8, .idef = 8},
    {.name = "stop_bits", .type = KT_INT, .scope = BUS(D_SERIAL),
     .off = offsetof(struct bus_config, stop_bits), .min = 1, .max = 2, .idef = 1},
    {.name = "rs485", .type = KT_GROUP, .scope = BUS(D_RTU), .off = NO_OFF},
    {.name = "timeout_ms", .type = KT_INT, .scope = BUS(D_ALL),
     .off = offsetof(struct bus_config, timeout_ms), .min = 1, .max = 60000, .idef = 500},
    {.name = "inter_frame_ms", .type = KT_INT, .scope = BUS(D_RTU),
     .off = offsetof(struct bus_config, inter_frame_ms), .min = 0, .max = 10000, .idef = 0},
    {.name = "retries", .type = KT_INT, .scope = BUS(D_MODBUS),
     .off = offsetof(struct bus_config, retries), .min = 0, .max = 10, .idef = 1},
    {.name = "host", .type = KT_STR, .scope = BUS(D_TCP), .off = offsetof(struct bus_config, host),
     .flags = K_REQUIRED | K_NONEMPTY},
    {.name = "port", .type = KT_INT, .scope = BUS(D_TCP), .off = offsetof(struct bus_config, tcp_port),
     .min = 1, .max = 65535, .idef = 502},
    {.name = "devices", .type = KT_LIST, .scope = BUS(D_ALL), .off = NO_OFF},
    END_KEYS,
};

static const struct key rs485_keys[] = {
    {.name = "rts", .type = KT_ENUM, .scope = BUS(D_RTU), .off = offsetof(struct bus_config, rs485_rts),
     .names = rts_names, .idef = 1, .what = "rts mode"},
    {.name = "delay_us", .type = KT_INT, .scope = BUS(D_RTU),
     .off = offsetof(struct bus_config, rs485_delay_us), .min = 0, .max = 1000000, .idef = 0},
    END_KEYS,
};

/* ---- devices and templates ---- */

#define DEV(d, c) ((d) | (c))

static const struct key device_keys[] = {
    {.name = "name", .type = KT_STR, .scope = DEV(D_ALL, C_DEVLIKE),
     .off = offsetof(struct device_config, name), .flags = K_REQUIRED | K_NONEMPTY | K_IDENTITY},
    {.name = "template", .type = KT_STR, .scope = DEV(D_ALL, C_DEVICE),
     .off = offsetof(struct device_config, template_name), .flags = K_NONEMPTY},
    {.name = "unit_id", .type = KT_INT, .scope = DEV(D_MODBUS, C_DEVLIKE),
     .off = offsetof(struct device_config, unit_id), .flags = K_REQUIRED, .min = 0, .max = 255,
     .idef = -1 /* "not set", so that cross-checks skip a missing or invalid unit_id */},
    {.name = "poll_ms", .type = KT_INT, .scope = DEV(D_ALL, C_DEVLIKE),
     .off = offsetof(struct device_config, poll_ms), .min = 10, .max = 86400000, .idef = 1000},
    {.name = "token", .type = KT_STR, .scope = DEV(D_ALL, C_DEVICE),
     .off = offsetof(struct device_config, cred.token), .flags = K_NONEMPTY},
    {.name = "mqtt", .type = KT_GROUP, .scope = DEV(D_ALL, C_DEVICE), .off = NO_OFF},
    {.name = "x509", .type = KT_GROUP, .scope = DEV(D_ALL, C_DEVICE), .off = NO_OFF},
    {.name = "provision", .type = KT_GROUP, .scope = DEV(D_ALL, C_DEVICE), .off = NO_OFF},
    {.name = "byte_order", .type = KT_ENUM, .scope = DEV(D_MODBUS, C_DEVLIKE),
     .off = offsetof(struct device_config, byte_order), .names = order_names, .what = "byte order"},
    {.name = "word_order", .type = KT_ENUM, .scope = DEV(D_MODBUS, C_DEVLIKE),
     .off = offsetof(struct device_config, word_order), .names = order_names, .what = "word order"},
    {.name = "report", .type = KT_ENUM, .scope = DEV(D_ALL, C_DEVLIKE),
     .off = offsetof(struct device_config, report), .names = report_names, .what = "report mode"},
    {.name = "deadband", .type = KT_NUM, .scope = DEV(D_ALL, C_DEVLIKE),
     .off = offsetof(struct device_config, deadband), .dmin = 0, .dmax = HUGE_VAL},
    {.name = "heartbeat_s", .type = KT_INT, .scope = DEV(D_ALL, C_DEVLIKE),
     .off = offsetof(struct device_config, heartbeat_s), .min = 0, .max = 86400 * 365},
    {.name = "telemetry", .type = KT_LIST, .scope = DEV(D_MODBUS, C_DEVLIKE), .off = NO_OFF},
    {.name = "attributes", .type = KT_LIST, .scope = DEV(D_MODBUS, C_DEVLIKE), .off = NO_OFF},
    {.name = "writes", .type = KT_LIST, .scope = DEV(D_MODBUS, C_DEVLIKE), .off = NO_OFF},
    {.name = "rpc", .type = KT_LIST, .scope = DEV(D_MODBUS, C_DEVLIKE), .off = NO_OFF},
    {.name = "allow_raw_rpc", .type = KT_BOOL, .scope = DEV(D_MODBUS, C_DEVLIKE),
     .off = offsetof(struct device_config, allow_raw_rpc)},
    {.name = "ota", .type = KT_GROUP, .scope = DEV(D_ALL, C_DEVLIKE), .off = NO_OFF},
    {.name = "format", .type = KT_ENUM, .scope = DEV(D_LINE, C_DEVLIKE),
     .off = offsetof(struct device_config, format), .flags = K_REQUIRED, .names = format_names},
    {.name = "columns", .type = KT_ARRAY, .scope = DEV(D_LINE, C_DEVLIKE), .off = NO_OFF},
    {.name = "pattern", .type = KT_STR, .scope = DEV(D_LINE, C_DEVLIKE),
     .off = offsetof(struct device_config, pattern), .flags = K_NONEMPTY},
    {.name = "keys", .type = KT_ARRAY, .scope = DEV(D_LINE, C_DEVLIKE), .off = NO_OFF},
    {.name = "send", .type = KT_STR, .scope = DEV(D_LINE, C_DEVLIKE),
     .off = offsetof(struct device_config, send), .flags = K_NONEMPTY},
    END_KEYS,
};

static const struct key mqtt_keys[] = {
    {.name = "client_id", .type = KT_STR, .scope = DEV(D_ALL, C_DEVICE),
     .off = offsetof(struct credentials, client_id), .flags = K_NONEMPTY},
    {.name = "username", .type = KT_STR, .scope = DEV(D_ALL, C_DEVICE),
     .off = offsetof(struct credentials, username), .flags = K_NONEMPTY},
    {.name = "password", .type = KT_STR, .scope = DEV(D_ALL, C_DEVICE),
     .off = offsetof(struct credentials, password)},
    END_KEYS,
};

static const struct key x509_keys[] = {
    {.name = "cert_file", .type = KT_STR, .scope = DEV(D_ALL, C_DEVICE),
     .off = offsetof(struct credentials, cert_file), .flags = K_REQUIRED | K_NONEMPTY | K_PATH},
    {.name = "key_file", .type = KT_STR, .scope = DEV(D_ALL, C_DEVICE),
     .off = offsetof(struct credentials, key_file), .flags = K_REQUIRED | K_NONEMPTY | K_PATH},
    END_KEYS,
};

static const struct key provision_keys[] = {
    {.name = "key", .type = KT_STR, .scope = DEV(D_ALL, C_DEVICE),
     .off = offsetof(struct credentials, provision_key), .flags = K_REQUIRED | K_NONEMPTY},
    {.name = "secret", .type = KT_STR, .scope = DEV(D_ALL, C_DEVICE),
     .off = offsetof(struct credentials, provision_secret), .flags = K_REQUIRED | K_NONEMPTY},
    END_KEYS,
};

static const struct key ota_keys[] = {
    {.name = "command", .type = KT_STR, .scope = DEV(D_ALL, C_DEVLIKE),
     .off = offsetof(struct ota_config, command), .flags = K_REQUIRED | K_NONEMPTY | K_PATH},
    {.name = "exclusive_bus", .type = KT_BOOL, .scope = DEV(D_ALL, C_DEVLIKE),
     .off = offsetof(struct ota_config, exclusive_bus)},
    {.name = "timeout_s", .type = KT_INT, .scope = DEV(D_ALL, C_DEVLIKE),
     .off = offsetof(struct ota_config, timeout_s), .min = 1, .max = 86400, .idef = 900},
    END_KEYS,
};

/* ---- tags ---- */

#define TAG(c) (D_ALL | (c))

static const struct key tag_keys[] = {
    {.name = "key", .type = KT_STR, .scope = TAG(C_TELEM | C_ATTR | C_WRITE),
     .off = offsetof(struct tag_config, key), .flags = K_REQUIRED | K_NONEMPTY},
    {.name = "method", .type = KT_STR, .scope = TAG(C_RPC), .off = offsetof(struct tag_config, key),
     .flags = K_REQUIRED | K_NONEMPTY},
    {.name = "access", .type = KT_ENUM, .scope = TAG(C_RPC), .off = offsetof(struct tag_config, access),
     .flags = K_REQUIRED, .names = access_names},
    {.name = "table", .type = KT_ENUM, .scope = TAG(C_TAGS), .off = offsetof(struct tag_config, table),
     .flags = K_REQUIRED, .names = table_names},
    {.name = "address", .type = KT_INT, .scope = TAG(C_TAGS),
     .off = offsetof(struct tag_config, address), .flags = K_REQUIRED, .min = 0, .max = 65535},
    {.name = "type", .type = KT_ENUM, .scope = TAG(C_TAGS), .off = offsetof(struct tag_config, type),
     .flags = K_REQUIRED, .names = value_type_names},
    {.name = "count", .type = KT_INT, .scope = TAG(C_TAGS), .off = offsetof(struct tag_config, count),
     .min = 1, .max = 125},
    {.name = "bit", .type = KT_INT, .scope = TAG(C_TAGS), .off = offsetof(struct tag_config, bit),
     .min = 0, .max = 15},
    {.name = "scale", .type = KT_NUM, .scope = TAG(C_TAGS), .off = offsetof(struct tag_config, scale),
     .flags = K_NONZERO, .ddef = 1.0},
    {.name = "offset", .type = KT_NUM, .scope = TAG(C_TAGS),
     .off = offsetof(struct tag_config, offset)},
    {.name = "byte_order", .type = KT_ENUM, .scope = TAG(C_TAGS),
     .off = offsetof(struct tag_config, byte_order), .flags = K_INHERIT, .names = order_names,
     .what = "byte order"},
    {.name = "word_order", .type = KT_ENUM, .scope = TAG(C_TAGS),
     .off = offsetof(struct tag_config, word_order), .flags = K_INHERIT, .names = order_names,
     .what = "word order"},
    {.name = "report", .type = KT_ENUM, .scope = TAG(C_TELEM),
     .off = offsetof(struct tag_config, report), .flags = K_INHERIT, .names = report_names,
     .what = "report mode"},
    {.name = "deadband", .type = KT_NUM, .scope = TAG(C_TELEM),
     .off = offsetof(struct tag_config, deadband), .flags = K_INHERIT, .dmin = 0, .dmax = HUGE_VAL},
    {.name = "heartbeat_s", .type = KT_INT, .scope = TAG(C_TELEM),
     .off = offsetof(struct tag_config, heartbeat_s), .flags = K_INHERIT, .min = 0,
     .max = 86400 * 365},
    END_KEYS,
};

/* ---- the loader ---------------------------------------------------------------------- */

struct load {
    struct config *cfg;
    struct diag *diag;
    const char *dir;          /* directory of the main file, for relative paths */
    const char *note;         /* appended to messages about a template's settings */
    bool template_layer;      /* applying a validated template to a device: only scope errors */
};

typedef unsigned long long seen_t; /* one bit per row of a key table */

/* File names in origins must outlive libconfig's tree: keep one copy of each in the config. */
static const char *intern_file(struct config *c, const char *f)
{
    for (size_t i = 0; i < c->n_files; i++)
        if (strcmp(c->files[i], f) == 0)
            return c->files[i];
    c->files = xreallocarray(c->files, c->n_files + 1, sizeof(char *));
    return c->files[c->n_files++] = xstrdup(f);
}

static const char *file_of(struct load *ld, const config_setting_t *s)
{
    const char *f = s ? config_setting_source_file(s) : NULL;
    return intern_file(ld->cfg, f ? f : ld->cfg->path);
}

static int line_of(const config_setting_t *s)
{
    return s ? (int)config_setting_source_line(s) : 0;
}

PRINTF_LIKE(5, 6)
static void report(struct load *ld, bool warning, const config_setting_t *s, const char *path,
                   const char *fmt, ...)
{
    char msg[900];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    diag_add(ld->diag, warning, file_of(ld, s), line_of(s), path, "%s%s", msg,
             ld->note ? ld->note : "");
}

#define ERR(ld, s, path, ...) report(ld, false, s, path, __VA_ARGS__)
#define WARN(ld, s, path, ...) report(ld, true, s, path, __VA_ARGS__)

static void path_join(char *out, size_t size, const char *parent, const char *name)
{
    snprintf(out, size, "%s%s%s", parent, *parent ? "." : "", name);
}

static void path_index(char *out, size_t size, const char *parent, size_t i)
{
    snprintf(out, size, "%s.[%zu]", parent, i);
}

static const char *type_noun(int t)
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
        ERR(ld, s, path, "expected a number, got %s", type_noun(config_setting_type(s)));
        return false;
    }
}

static void apply_defaults(const struct key *keys, unsigned scope, void *target)
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
static void parse_value(struct load *ld, const struct key *k, const config_setting_t *s,
                        const char *path, void *target)
{
    void *p = (char *)target + k->off;
    int t = config_setting_type(s);

    switch (k->type) {
    case KT_STR: {
        const char *v;
        if (t != CONFIG_TYPE_STRING) {
            ERR(ld, s, path, "expected a string, got %s", type_noun(t));
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
            ERR(ld, s, path, "must be between %lld and %lld (got %.0f)", k->min, k->max, d);
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
            ERR(ld, s, path, "expected true or false, got %s", type_noun(t));
            return;
        }
        *(bool *)p = config_setting_get_bool(s);
        return;
    case KT_ENUM: {
        const char *v, *near;
        char expected[256];
        if (t != CONFIG_TYPE_STRING) {
            enum_expected(expected, sizeof(expected), k->names);
            ERR(ld, s, path, "expected one of %s, got %s", expected, type_noun(t));
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
    ERR(ld, s, path, "expected %s, got %s", type_noun(want), type_noun(t));
    return false;
}

/*
 * Walk the members of group: each must be a row valid in scope. Scalars are parsed into
 * target; group/list/array members are only checked for shape (the caller parses them).
 * scope_desc names the driver side ("a modbus-tcp bus"), context_desc the context side
 * ("a template"), for "does not apply to …" messages. Returns the rows seen as a bitmask.
 */
static seen_t walk(struct load *ld, const config_setting_t *group, const char *path,
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

        path_join(sub, sizeof(sub), path, name);
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
            parse_value(ld, k, s, sub, target);
            diag_free(ld->diag);
            ld->diag = real;
        } else {
            parse_value(ld, k, s, sub, target);
        }
    }
    return seen;
}

static void check_required(struct load *ld, const config_setting_t *group, const char *path,
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

static bool was_seen(const struct key *keys, seen_t seen, const char *name)
{
    for (const struct key *k = keys; k->name; k++)
        if ((seen & (1ull << (k - keys))) && strcmp(k->name, name) == 0)
            return true;
    return false;
}

static const config_setting_t *member(const config_setting_t *group, const char *name)
{
    return group ? config_setting_get_member(group, name) : NULL;
}

/* The setting to point a message at: the member if present, else its group. */
static const config_setting_t *at(const config_setting_t *group, const char *name)
{
    const config_setting_t *m = member(group, name);
    return m ? m : group;
}

/* ---- section parsers ----------------------------------------------------------------- */

static void parse_section(struct load *ld, const config_setting_t *root, const char *name,
                          const struct key *keys, void *target)
{
    const config_setting_t *s = member(root, name);

    apply_defaults(keys, PLAIN, target);
    if (!s || config_setting_type(s) != CONFIG_TYPE_GROUP)
        return;
    check_required(ld, s, name, keys, PLAIN, walk(ld, s, name, keys, PLAIN, "", "", target));
}

static void check_readable(struct load *ld, const config_setting_t *s, const char *path,
                           const char *file)
{
    if (file && access(file, R_OK) < 0)
        ERR(ld, s, path, "cannot read '%s': %s", file, strerror(errno));
}

static void parse_edge(struct load *ld, const config_setting_t *root)
{
    struct edge_config *e = &ld->cfg->edge;
    const config_setting_t *s = member(root, "edge");
    const config_setting_t *tls, *rl;
    seen_t seen;

    apply_defaults(edge_keys, PLAIN, e);
    if (!s)
        return; /* reported as a missing required top-level group */
    if (config_setting_type(s) != CONFIG_TYPE_GROUP)
        return;
    seen = walk(ld, s, "edge", edge_keys, PLAIN, "", "", e);
    check_required(ld, s, "edge", edge_keys, PLAIN, seen);

    tls = member(s, "tls");
    if (tls && config_setting_type(tls) == CONFIG_TYPE_GROUP) {
        e->tls = true;
        apply_defaults(tls_keys, PLAIN, e);
        check_required(ld, tls, "edge.tls", tls_keys, PLAIN,
                       walk(ld, tls, "edge.tls", tls_keys, PLAIN, "", "", e));
        check_readable(ld, member(tls, "ca_file"), "edge.tls.ca_file", e->ca_file);
    }
    if (!was_seen(edge_keys, seen, "port"))
        e->port = e->tls ? 8883 : 1883;

    rl = member(s, "rate_limits");
    if (rl && config_setting_type(rl) == CONFIG_TYPE_GROUP) {
        e->rate_limits_set = true;
        apply_defaults(rate_limit_keys, PLAIN, e);
        walk(ld, rl, "edge.rate_limits", rate_limit_keys, PLAIN, "", "", e);
        for (const struct key *k = rate_limit_keys; k->name; k++) {
            const char *spec = *(char **)(void *)((char *)e + k->off);
            struct pace_limit l;
            char err[160], path[64];

            if (pace_parse(spec, &l, err, sizeof(err)) < 0) {
                snprintf(path, sizeof(path), "edge.rate_limits.%s", k->name);
                ERR(ld, member(rl, k->name), path, "%s", err);
            }
        }
    }
}

/* ---- tags ---- */

static void tag_list_add(struct tag_list *l, const struct tag_config *t)
{
    l->v = xreallocarray(l->v, l->n + 1, sizeof(*l->v));
    l->v[l->n++] = *t;
}

static void tag_free(struct tag_config *t)
{
    free(t->key);
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
    bool has_count = was_seen(tag_keys, seen, "count");
    bool has_bit = was_seen(tag_keys, seen, "bit");
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
        (was_seen(tag_keys, seen, "scale") || was_seen(tag_keys, seen, "offset"))) {
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
    if (t->role == ROLE_TELEMETRY && t->report == REPORT_ALWAYS &&
        (was_seen(tag_keys, seen, "deadband") || was_seen(tag_keys, seen, "heartbeat_s")))
        WARN(ld, s, path, "key '%s': deadband and heartbeat_s have no effect with report = \"always\"",
             t->key);
    return ok;
}

/* Parse one list of tags (telemetry, attributes, writes or rpc) of a device or template
 * and add it to out. Entries already in out came from a template: one with the same key is
 * replaced (the device's entry wins). The same key twice in this one list is an error. */
static void parse_tags(struct load *ld, const config_setting_t *list, const char *path,
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
            .origin = {.file = file_of(ld, s), .line = line_of(s)},
        };
        char sub[512];
        size_t errors = diag_errors(ld->diag);
        seen_t seen;
        bool placed = false;

        path_index(sub, sizeof(sub), path, (size_t)i);
        if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
            ERR(ld, s, sub, "expected a group { … }, got %s", type_noun(config_setting_type(s)));
            continue;
        }
        apply_defaults(tag_keys, TAG(role_scope[role]), &t);
        seen = walk(ld, s, sub, tag_keys, TAG(role_scope[role]), "", role_names[role], &t);
        check_required(ld, s, sub, tag_keys, TAG(role_scope[role]), seen);
        /* A template's values are applied quietly (validate_template() reports them once):
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

/* ---- devices ---- */

static char **parse_strings(struct load *ld, const config_setting_t *arr, const char *path)
{
    int n = config_setting_length(arr);
    char **v = xcalloc((size_t)n + 1, sizeof(char *));
    int o = 0;

    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(arr, (unsigned)i);
        char sub[512];

        path_index(sub, sizeof(sub), path, (size_t)i);
        if (config_setting_type(s) != CONFIG_TYPE_STRING) {
            ERR(ld, s, sub, "expected a string, got %s", type_noun(config_setting_type(s)));
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

struct layer {
    const config_setting_t *s; /* the device's or the template's group */
    const char *path;
    const char *note;          /* for the template layer */
};

/* The last layer (device over template) that has a member name. */
static const config_setting_t *pick(const struct layer *layers, size_t n, const char *name,
                                    const struct layer **ret)
{
    for (size_t i = n; i-- > 0;) {
        const config_setting_t *m = member(layers[i].s, name);
        if (m) {
            if (ret)
                *ret = &layers[i];
            return m;
        }
    }
    return NULL;
}

static void parse_group_into(struct load *ld, const struct layer *layer, const char *name,
                             const struct key *keys, unsigned scope, const char *driver_desc,
                             void *target)
{
    const config_setting_t *g = member(layer->s, name);
    char sub[512];
    seen_t seen;
    const char *saved = ld->note;

    if (!g || config_setting_type(g) != CONFIG_TYPE_GROUP)
        return;
    path_join(sub, sizeof(sub), layer->path, name);
    ld->note = layer->note;
    apply_defaults(keys, scope, target);
    seen = walk(ld, g, sub, keys, scope, driver_desc, "", target);
    check_required(ld, g, sub, keys, scope, seen);
    ld->note = saved;
}

static void parse_credentials(struct load *ld, const config_setting_t *ds, const char *path,
                              struct device_config *d, unsigned scope, const char *driver_desc)
{
    static const char *const forms[] = {"token", "mqtt", "x509", "provision"};
    struct layer self = {.s = ds, .path = path};
    const char *present[4];
    size_t n = 0;
    struct credentials *c = &d->cred;

    for (size_t i = 0; i < ARRAY_SIZE(forms); i++)
        if (member(ds, forms[i]))
            present[n++] = forms[i];
    if (n == 0) {
        ERR(ld, ds, path,
            "device '%s' has no credentials: set exactly one of token, mqtt, x509 or provision",
            d->name);
        return;
    }
    if (n > 1) {
        ERR(ld, ds, path, "device '%s' has %s and %s: set exactly one credential form", d->name,
            present[0], present[1]);
        return;
    }
    if (member(ds, "token")) {
        c->kind = CRED_TOKEN;
    } else if (member(ds, "mqtt")) {
        const config_setting_t *g = member(ds, "mqtt");
        c->kind = CRED_MQTT;
        parse_group_into(ld, &self, "mqtt", mqtt_keys, scope, driver_desc, c);
        if (g && config_setting_type(g) == CONFIG_TYPE_GROUP) {
            char sub[512];
            path_join(sub, sizeof(sub), path, "mqtt");
            if (!c->client_id && !c->username)
                ERR(ld, g, sub, "needs client_id, username, or both");
            else if (c->client_id && !c->username && c->password)
                ERR(ld, g, sub,
                    "client_id with password but no username is not a ThingsBoard MQTT basic "
                    "credential: add username, or drop the password");
        }
    } else if (member(ds, "x509")) {
        c->kind = CRED_X509;
        parse_group_into(ld, &self, "x509", x509_keys, scope, driver_desc, c);
        if (!ld->cfg->edge.tls)
            ERR(ld, at(ds, "x509"), path,
                "device '%s': x509 credentials need TLS to the edge: add edge.tls { ca_file = … }",
                d->name);
        {
            char sub[512];
            path_join(sub, sizeof(sub), path, "x509.cert_file");
            check_readable(ld, at(member(ds, "x509"), "cert_file"), sub, c->cert_file);
            path_join(sub, sizeof(sub), path, "x509.key_file");
            check_readable(ld, at(member(ds, "x509"), "key_file"), sub, c->key_file);
        }
    } else {
        c->kind = CRED_PROVISION;
        parse_group_into(ld, &self, "provision", provision_keys, scope, driver_desc, c);
    }
}

/* Cross-field checks of one device. clean: the device's own settings had no errors (a
 * check that builds on a setting that failed to parse would only add noise). */
static void check_device(struct load *ld, const config_setting_t *ds, const char *path,
                         struct device_config *d, bool clean)
{
    const struct bus_config *b = d->bus;
    char sub[512];

    path_join(sub, sizeof(sub), path, "unit_id");
    if (b->driver != DRIVER_SERIAL_LINE) {
        bool reads = d->telemetry.n || d->attributes.n;

        if (d->unit_id > 247 && !(b->driver == DRIVER_MODBUS_TCP && d->unit_id == 255))
            ERR(ld, at(ds, "unit_id"), sub,
                "device '%s': unit_id %d is out of range (1..247; 0 and 255 are allowed on TCP)",
                d->name, d->unit_id);
        if (b->driver == DRIVER_MODBUS_RTU && d->unit_id == 0 && reads)
            ERR(ld, at(ds, "unit_id"), sub,
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
                    ERR(ld, at(ds, "pattern"), path, "device '%s': bad pattern: %s", d->name,
                        msg);
                } else {
                    if (re.re_nsub != nkeys)
                        ERR(ld, at(ds, "pattern"), path,
                            "device '%s': pattern has %zu capture groups but keys names %zu",
                            d->name, (size_t)re.re_nsub, nkeys);
                    regfree(&re);
                }
            }
        }
    }
    if (d->ota.enabled && d->ota.command && d->ota.command[0] != '/')
        ERR(ld, at(ds, "ota"), path, "device '%s': ota.command must be an absolute path",
            d->name);
    if (d->report == REPORT_ALWAYS && (d->deadband > 0 || d->heartbeat_s > 0))
        WARN(ld, ds, path,
             "device '%s': deadband and heartbeat_s have no effect with report = \"always\"",
             d->name);
}

/* The settings of one device (or, with dev == NULL semantics in validate_template, of a
 * template on its own): layers = [template?, device]. */
static void parse_device_layers(struct load *ld, const struct layer *layers, size_t n_layers,
                                struct device_config *d, unsigned drv_scope,
                                const char *driver_desc)
{
    static const char *const lists[N_ROLES] = {"telemetry", "attributes", "writes", "rpc"};
    struct tag_list *outs[N_ROLES] = {&d->telemetry, &d->attributes, &d->writes, &d->rpc};
    const struct layer *from;
    const config_setting_t *m;
    unsigned ctx_scope = drv_scope | C_DEVICE;
    seen_t seen = 0;

    apply_defaults(device_keys, ctx_scope, d);
    for (size_t i = 0; i < n_layers; i++) {
        const char *saved = ld->note;
        bool is_template = i + 1 < n_layers;

        ld->note = layers[i].note;
        ld->template_layer = is_template;
        seen |= walk(ld, layers[i].s, layers[i].path, device_keys,
                     is_template ? (drv_scope | C_TEMPLATE) : ctx_scope, driver_desc, "a template",
                     d);
        ld->template_layer = false;
        ld->note = saved;
    }
    check_required(ld, layers[n_layers - 1].s, layers[n_layers - 1].path, device_keys, ctx_scope,
                   seen);

    for (int r = 0; r < N_ROLES; r++) {
        for (size_t i = 0; i < n_layers; i++) {
            const char *saved = ld->note;
            char sub[512];

            m = member(layers[i].s, lists[r]);
            if (!m || !(drv_scope & D_MODBUS))
                continue; /* a serial-line device: already reported as out of scope */
            path_join(sub, sizeof(sub), layers[i].path, lists[r]);
            ld->note = layers[i].note;
            ld->template_layer = i + 1 < n_layers;
            if (ld->template_layer) {
                /* Reported once by validate_template(); build the tags quietly. */
                struct diag *real = ld->diag;
                ld->diag = diag_new();
                parse_tags(ld, m, sub, (enum tag_role)r, d, outs[r]);
                diag_free(ld->diag);
                ld->diag = real;
            } else {
                parse_tags(ld, m, sub, (enum tag_role)r, d, outs[r]);
            }
            ld->template_layer = false;
            ld->note = saved;
        }
    }

    m = pick(layers, n_layers, "ota", &from);
    if (m && config_setting_type(m) == CONFIG_TYPE_GROUP) {
        d->ota.enabled = true;
        parse_group_into(ld, from, "ota", ota_keys, ctx_scope, driver_desc, &d->ota);
    }
    m = pick(layers, n_layers, "columns", &from);
    if (m && config_setting_type(m) == CONFIG_TYPE_ARRAY) {
        char sub[512];
        path_join(sub, sizeof(sub), from->path, "columns");
        d->columns = parse_strings(ld, m, sub);
    }
    m = pick(layers, n_layers, "keys", &from);
    if (m && config_setting_type(m) == CONFIG_TYPE_ARRAY) {
        char sub[512];
        path_join(sub, sizeof(sub), from->path, "keys");
        d->keys = parse_strings(ld, m, sub);
    }
}

static void device_free(struct device_config *d)
{
    struct credentials *c = &d->cred;

    free(d->name);
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

/* ---- templates ---- */

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
};

static const struct tmpl *find_template(const struct tmpls *t, const char *name)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i].name && strcmp(t->v[i].name, name) == 0)
            return &t->v[i];
    return NULL;
}

static void collect_templates(struct load *ld, const config_setting_t *root, struct tmpls *out)
{
    const config_setting_t *list = member(root, "templates");
    int n;

    if (!list || config_setting_type(list) != CONFIG_TYPE_LIST)
        return;
    n = config_setting_length(list);
    out->v = xcalloc((size_t)n + 1, sizeof(*out->v));
    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(list, (unsigned)i);
        const config_setting_t *nm = member(s, "name");
        struct tmpl *t = &out->v[out->n++];

        t->s = s;
        snprintf(t->path, sizeof(t->path), "templates.[%d]", i);
        if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
            ERR(ld, s, t->path, "expected a group { … }, got %s", type_noun(config_setting_type(s)));
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
                    line_of(out->v[j].s));
    }
}

/* Record which devices use which template, so errors in a template can name them. */
static void note_template_users(const config_setting_t *root, struct tmpls *t)
{
    const config_setting_t *buses = member(root, "buses");
    int nb = buses && config_setting_type(buses) == CONFIG_TYPE_LIST ? config_setting_length(buses) : 0;

    for (int b = 0; b < nb; b++) {
        const config_setting_t *devs = member(config_setting_get_elem(buses, (unsigned)b), "devices");
        int nd = devs && config_setting_type(devs) == CONFIG_TYPE_LIST ? config_setting_length(devs) : 0;
        for (int i = 0; i < nd; i++) {
            const config_setting_t *ds = config_setting_get_elem(devs, (unsigned)i);
            const char *tn = NULL, *dn = NULL;
            struct tmpl *tp;

            if (config_setting_type(ds) != CONFIG_TYPE_GROUP ||
                !config_setting_lookup_string(ds, "template", &tn) ||
                !config_setting_lookup_string(ds, "name", &dn))
                continue;
            tp = (struct tmpl *)find_template(t, tn);
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

/* Validate a template on its own, for any driver, so that its problems are reported once. */
static void validate_template(struct load *ld, const struct tmpl *t)
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
    apply_defaults(device_keys, D_ALL | C_TEMPLATE, &d);
    seen = walk(ld, t->s, t->path, device_keys, D_ALL | C_TEMPLATE, "any bus", "a template", &d);
    (void)seen;
    for (int r = 0; r < N_ROLES; r++) {
        char sub[512];
        path_join(sub, sizeof(sub), t->path, lists[r]);
        parse_tags(ld, member(t->s, lists[r]), sub, (enum tag_role)r, &d, outs[r]);
    }
    if (member(t->s, "ota")) {
        d.ota.enabled = true;
        parse_group_into(ld, &self, "ota", ota_keys, D_ALL | C_TEMPLATE, "any bus", &d.ota);
    }
    for (size_t i = 0; i < 2; i++) {
        static const char *const arrays[] = {"columns", "keys"};
        char **(*dst[2]) = {&d.columns, &d.keys};
        const config_setting_t *a = member(t->s, arrays[i]);
        char sub[512];

        if (!a || config_setting_type(a) != CONFIG_TYPE_ARRAY)
            continue;
        path_join(sub, sizeof(sub), t->path, arrays[i]);
        *dst[i] = parse_strings(ld, a, sub);
    }
    ld->note = saved;
    device_free(&d);
}

static void tmpls_free(struct tmpls *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->v[i].name);
        free(t->v[i].users);
        free(t->v[i].note);
    }
    free(t->v);
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
    const config_setting_t *list = member(bs, "devices");
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
            ERR(ld, ds, path, "expected a group { … }, got %s", type_noun(config_setting_type(ds)));
            continue;
        }
        memset(d, 0, sizeof(*d));
        d->bus = b;
        d->origin = (struct origin){.file = file_of(ld, ds), .line = line_of(ds)};
        errors = diag_errors(ld->diag);
        if (config_setting_lookup_string(ds, "template", &tn)) {
            t = find_template(tmpls, tn);
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
                path_join(sub, sizeof(sub), path, "template");
                if (near)
                    ERR(ld, at(ds, "template"), sub, "unknown template '%s' (did you mean '%s'?)",
                        tn, near);
                else
                    ERR(ld, at(ds, "template"), sub, "unknown template '%s'", tn);
            } else if (t->s) {
                layers[nl++] = (struct layer){.s = t->s, .path = t->path, .note = t->note};
            }
        }
        layers[nl++] = (struct layer){.s = ds, .path = path};
        parse_device_layers(ld, layers, nl, d, drv, driver_desc);
        if (!d->name)
            d->name = xstrdup("");
        parse_credentials(ld, ds, path, d, drv | C_DEVICE, driver_desc);
        check_device(ld, ds, path, d, diag_errors(ld->diag) == errors);
        b->n_devices++;
    }
}

static void parse_buses(struct load *ld, const config_setting_t *root, const struct tmpls *tmpls)
{
    const config_setting_t *list = member(root, "buses");
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
            ERR(ld, bs, path, "expected a group { … }, got %s", type_noun(config_setting_type(bs)));
            continue;
        }
        memset(b, 0, sizeof(*b));
        b->origin = (struct origin){.file = file_of(ld, bs), .line = line_of(bs)};
        /* The driver decides which other settings exist: read it first. */
        if (config_setting_lookup_string(bs, "driver", &drv))
            for (int k = 0; k < N_DRIVERS; k++)
                if (strcmp(driver_names[k], drv) == 0)
                    d = k;
        if (d < 0) {
            /* Report driver problems (missing / unknown) through the usual row. */
            struct bus_config scratch = {0};
            const config_setting_t *ds = member(bs, "driver");
            char sub[80];
            path_join(sub, sizeof(sub), path, "driver");
            if (ds)
                parse_value(ld, &bus_keys[1], ds, sub, &scratch);
            else
                ERR(ld, bs, path, "missing required setting 'driver' (modbus-rtu, modbus-tcp or "
                                  "serial-line)");
            continue;
        }
        b->driver = (enum driver_kind)d;
        {
            char desc[64];
            seen_t seen;
            snprintf(desc, sizeof(desc), "a %s bus", driver_names[d]);
            apply_defaults(bus_keys, BUS(driver_scope[d]), b);
            seen = walk(ld, bs, path, bus_keys, BUS(driver_scope[d]), desc, "a bus", b);
            check_required(ld, bs, path, bus_keys, BUS(driver_scope[d]), seen);
        }
        rs = member(bs, "rs485");
        if (rs && config_setting_type(rs) == CONFIG_TYPE_GROUP && b->driver == DRIVER_MODBUS_RTU) {
            char sub[80];
            path_join(sub, sizeof(sub), path, "rs485");
            b->rs485 = true;
            apply_defaults(rs485_keys, BUS(D_RTU), b);
            walk(ld, rs, sub, rs485_keys, BUS(D_RTU), "a modbus-rtu bus", "", b);
        }
        if (b->driver != DRIVER_MODBUS_TCP) {
            bool std = false;
            for (size_t k = 0; k < ARRAY_SIZE(standard_bauds); k++)
                std |= standard_bauds[k] == b->baud;
            char sub[80];
            path_join(sub, sizeof(sub), path, "baud");
            if (!std)
                ERR(ld, at(bs, "baud"), sub,
                    "baud %d is not a rate the serial driver supports (e.g. 9600, 19200, 38400, "
                    "57600, 115200)",
                    b->baud);
        }
        for (size_t j = 0; j < c->n_buses; j++)
            if (b->name && c->buses[j].name && strcmp(b->name, c->buses[j].name) == 0)
                ERR(ld, at(bs, "name"), path, "bus name '%s' is used twice (first at line %d)",
                    b->name, c->buses[j].origin.line);
        if (!b->name)
            b->name = xstrdup("");
        parse_devices(ld, bs, path, b, tmpls);
        c->n_buses++;
    }
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
    }
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

    check_required(&ld, root, "", top_keys, PLAIN, walk(&ld, root, "", top_keys, PLAIN, "", "", c));
    parse_edge(&ld, root);
    parse_section(&ld, root, "storage", storage_keys, &c->storage);
    parse_section(&ld, root, "log", log_keys, c);
    parse_section(&ld, root, "health", health_keys, c);
    parse_section(&ld, root, "control", control_keys, c);
    apply_environment_defaults(c);

    collect_templates(&ld, root, &tmpls);
    note_template_users(root, &tmpls);
    for (size_t i = 0; i < tmpls.n; i++)
        validate_template(&ld, &tmpls.v[i]);
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
    tmpls_free(&tmpls);
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
            device_free(&b->devices[j]);
        free(b->devices);
        free(b->name);
        free(b->device);
        free(b->host);
    }
    free(c->buses);
    free(c->devices);
    free(c->edge.host);
    free(c->edge.ca_file);
    free(c->edge.rl_messages);
    free(c->edge.rl_telemetry_messages);
    free(c->edge.rl_telemetry_datapoints);
    free(c->storage.path);
    free(c->control_socket);
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
    for (size_t i = 0; i < c->n_devices; i++) {
        const struct credentials *cr = &c->devices[i]->cred;
        if (cr->token || cr->password || cr->provision_secret)
            return true;
    }
    return false;
}
