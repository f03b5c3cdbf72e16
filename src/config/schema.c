/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The rows of tbgw.conf: every setting, where it is valid, its range and default, and
 * where it lands in struct config. Adding a setting starts here (and in tbgw.conf(5)).
 * Data only: no code but the two name look-ups.
 */
#include "config/schema.h"

#include <math.h>
#include <syslog.h>

#include "core/value.h"

const unsigned driver_scope[N_DRIVERS] = {
    [DRIVER_MODBUS_RTU] = D_RTU,
    [DRIVER_MODBUS_TCP] = D_TCP,
    [DRIVER_SERIAL_LINE] = D_LINE,
    [DRIVER_MODBUS_ASCII] = D_ASCII,
    [DRIVER_MODBUS_RTU_TCP] = D_RTUTCP,
};

const char *const driver_names[] = {
    [DRIVER_MODBUS_RTU] = "modbus-rtu",
    [DRIVER_MODBUS_TCP] = "modbus-tcp",
    [DRIVER_SERIAL_LINE] = "serial-line",
    [DRIVER_MODBUS_ASCII] = "modbus-ascii",
    [DRIVER_MODBUS_RTU_TCP] = "modbus-rtu-tcp",
    NULL,
};

const char *const role_names[] = {
    [ROLE_TELEMETRY] = "telemetry",
    [ROLE_ATTRIBUTE] = "attributes",
    [ROLE_WRITE] = "writes",
    [ROLE_RPC] = "rpc",
    NULL,
};

const unsigned role_scope[N_ROLES] = {
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


static const char *const log_levels[] = {"error", "warning", "info", "debug", NULL};
static const int log_level_values[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
static const char *const parity_names[] = {"none", "even", "odd", NULL};
static const int parity_values[] = {'N', 'E', 'O'};
static const char *const rts_names[] = {"none", "up", "down", NULL};
static const char *const order_names[] = {"big", "little", NULL};
static const char *const report_names[] = {"always", "change", NULL};
static const char *const access_names[] = {"read", "write", NULL};
const char *const format_names[] = {"json", "kv", "csv", "regex", NULL};

/* ---- top level ---- */

const struct key top_keys[] = {
    {.name = "edge", .type = KT_GROUP, .scope = D_ALL | C_PLAIN, .off = NO_OFF, .flags = K_REQUIRED},
    {.name = "storage", .type = KT_GROUP, .scope = D_ALL | C_PLAIN, .off = NO_OFF},
    {.name = "log", .type = KT_GROUP, .scope = D_ALL | C_PLAIN, .off = NO_OFF},
    {.name = "health", .type = KT_GROUP, .scope = D_ALL | C_PLAIN, .off = NO_OFF},
    {.name = "control", .type = KT_GROUP, .scope = D_ALL | C_PLAIN, .off = NO_OFF},
    {.name = "metrics", .type = KT_GROUP, .scope = D_ALL | C_PLAIN, .off = NO_OFF},
    {.name = "template_path", .type = KT_ARRAY, .scope = D_ALL | C_PLAIN, .off = NO_OFF},
    {.name = "templates", .type = KT_LIST, .scope = D_ALL | C_PLAIN, .off = NO_OFF},
    {.name = "buses", .type = KT_LIST, .scope = D_ALL | C_PLAIN, .off = NO_OFF},
    END_KEYS,
};

const struct key edge_keys[] = {
    {.name = "host", .type = KT_STR, .scope = PLAIN, .off = offsetof(struct edge_config, host),
     .flags = K_REQUIRED | K_NONEMPTY},
    {.name = "port", .type = KT_INT, .scope = PLAIN, .off = offsetof(struct edge_config, port),
     .flags = K_INHERIT, .min = 1, .max = 65535},
    {.name = "keepalive_s", .type = KT_INT, .scope = PLAIN,
     .off = offsetof(struct edge_config, keepalive_s), .min = 10, .max = 300, .idef = 60,
     /* transport.sessions.inactivity_timeout: 300 s on ThingsBoard 3.6, 600 s since 3.9 */
     .why = "ThingsBoard closes a session that is idle for longer than its inactivity "
            "timeout (300 s on ThingsBoard 3.6), and below 10 s the pings alone are traffic"},
    {.name = "qos", .type = KT_INT, .scope = PLAIN, .off = offsetof(struct edge_config, qos),
     .min = 0, .max = 1, .idef = 1},
    {.name = "tls", .type = KT_GROUP, .scope = PLAIN, .off = NO_OFF},
    {.name = "rate_limits", .type = KT_GROUP, .scope = PLAIN, .off = NO_OFF},
    {.name = "gateway", .type = KT_GROUP, .scope = PLAIN, .off = NO_OFF},
    END_KEYS,
};

/* edge.gateway: the gateway device's credentials, in the forms a device has (its group is
 * read with a device's scope, so that mqtt / x509 / provision are the device rows). */
const struct key gateway_keys[] = {
    {.name = "token", .type = KT_STR, .scope = DEV(D_ALL, C_DEVICE),
     .off = offsetof(struct credentials, token), .flags = K_NONEMPTY},
    {.name = "mqtt", .type = KT_GROUP, .scope = DEV(D_ALL, C_DEVICE), .off = NO_OFF},
    {.name = "x509", .type = KT_GROUP, .scope = DEV(D_ALL, C_DEVICE), .off = NO_OFF},
    {.name = "provision", .type = KT_GROUP, .scope = DEV(D_ALL, C_DEVICE), .off = NO_OFF},
    END_KEYS,
};

const struct key rate_limit_keys[] = {
    {.name = "messages", .type = KT_STR, .scope = PLAIN,
     .off = offsetof(struct edge_config, rl_messages), .sdef = ""},
    {.name = "telemetry_messages", .type = KT_STR, .scope = PLAIN,
     .off = offsetof(struct edge_config, rl_telemetry_messages), .sdef = ""},
    {.name = "telemetry_datapoints", .type = KT_STR, .scope = PLAIN,
     .off = offsetof(struct edge_config, rl_telemetry_datapoints), .sdef = ""},
    {.name = "tenant_messages", .type = KT_STR, .scope = PLAIN,
     .off = offsetof(struct edge_config, rl_tenant_messages), .sdef = ""},
    {.name = "tenant_telemetry_messages", .type = KT_STR, .scope = PLAIN,
     .off = offsetof(struct edge_config, rl_tenant_telemetry_messages), .sdef = ""},
    {.name = "tenant_telemetry_datapoints", .type = KT_STR, .scope = PLAIN,
     .off = offsetof(struct edge_config, rl_tenant_telemetry_datapoints), .sdef = ""},
    END_KEYS,
};

const struct key tls_keys[] = {
    {.name = "ca_file", .type = KT_STR, .scope = PLAIN, .off = offsetof(struct edge_config, ca_file),
     .flags = K_REQUIRED | K_NONEMPTY | K_PATH},
    {.name = "verify_hostname", .type = KT_BOOL, .scope = PLAIN,
     .off = offsetof(struct edge_config, verify_hostname), .idef = 1},
    END_KEYS,
};

const struct key storage_keys[] = {
    {.name = "path", .type = KT_STR, .scope = PLAIN, .off = offsetof(struct storage_config, path),
     .flags = K_NONEMPTY | K_INHERIT | K_PATH},
    {.name = "max_size_mb", .type = KT_INT, .scope = PLAIN,
     .off = offsetof(struct storage_config, max_size_mb), .min = 1, .max = 1048576, .idef = 256},
    {.name = "commit_interval_ms", .type = KT_INT, .scope = PLAIN,
     .off = offsetof(struct storage_config, commit_interval_ms), .min = 10, .max = 60000,
     .idef = 1000},
    END_KEYS,
};

const struct key log_keys[] = {
    {.name = "level", .type = KT_ENUM, .scope = PLAIN, .off = offsetof(struct config, log_level),
     .names = log_levels, .values = log_level_values, .idef = LOG_INFO, .what = "log level"},
    END_KEYS,
};

const struct key health_keys[] = {
    {.name = "interval_s", .type = KT_INT, .scope = PLAIN,
     .off = offsetof(struct config, health_interval_s), .min = 0, .max = 86400, .idef = 60},
    END_KEYS,
};

const struct key metrics_keys[] = {
    {.name = "listen", .type = KT_STR, .scope = PLAIN, .off = offsetof(struct config, metrics_listen),
     .flags = K_REQUIRED | K_NONEMPTY},
    END_KEYS,
};

const struct key control_keys[] = {
    {.name = "socket", .type = KT_STR, .scope = PLAIN, .off = offsetof(struct config, control_socket),
     .flags = K_NONEMPTY | K_INHERIT | K_PATH},
    END_KEYS,
};

/* ---- buses ---- */

const struct key bus_keys[] = {
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
    {.name = "rs485", .type = KT_GROUP, .scope = BUS(D_RTU | D_ASCII), .off = NO_OFF},
    {.name = "timeout_ms", .type = KT_INT, .scope = BUS(D_ALL),
     .off = offsetof(struct bus_config, timeout_ms), .min = 1, .max = 60000, .idef = 500},
    {.name = "inter_frame_ms", .type = KT_INT, .scope = BUS(D_FRAMED),
     .off = offsetof(struct bus_config, inter_frame_ms), .min = 0, .max = 10000, .idef = 0},
    {.name = "retries", .type = KT_INT, .scope = BUS(D_MODBUS),
     .off = offsetof(struct bus_config, retries), .min = 0, .max = 10, .idef = 1},
    /* host is required unless listen is set (config.c). */
    {.name = "host", .type = KT_STR, .scope = BUS(D_NET), .off = offsetof(struct bus_config, host),
     .flags = K_NONEMPTY},
    {.name = "port", .type = KT_INT, .scope = BUS(D_NET), .off = offsetof(struct bus_config, tcp_port),
     .min = 1, .max = 65535, .idef = 502},
    {.name = "listen", .type = KT_GROUP, .scope = BUS(D_NET), .off = NO_OFF},
    {.name = "devices", .type = KT_LIST, .scope = BUS(D_ALL), .off = NO_OFF},
    END_KEYS,
};

const struct key rs485_keys[] = {
    {.name = "rts", .type = KT_ENUM, .scope = BUS(D_RTU | D_ASCII), .off = offsetof(struct bus_config, rs485_rts),
     .names = rts_names, .idef = 1, .what = "rts mode"},
    {.name = "delay_us", .type = KT_INT, .scope = BUS(D_RTU | D_ASCII),
     .off = offsetof(struct bus_config, rs485_delay_us), .min = 0, .max = 1000000, .idef = 0},
    END_KEYS,
};

const struct key listen_keys[] = {
    {.name = "bind", .type = KT_STR, .scope = BUS(D_NET),
     .off = offsetof(struct bus_config, listen_bind), .flags = K_NONEMPTY, .sdef = "0.0.0.0"},
    {.name = "port", .type = KT_INT, .scope = BUS(D_NET),
     .off = offsetof(struct bus_config, listen_port), .flags = K_REQUIRED, .min = 1, .max = 65535},
    END_KEYS,
};

/* ---- devices and templates ---- */

const struct key device_keys[] = {
    {.name = "name", .type = KT_STR, .scope = DEV(D_ALL, C_DEVLIKE),
     .off = offsetof(struct device_config, name), .flags = K_REQUIRED | K_NONEMPTY | K_IDENTITY},
    {.name = "template", .type = KT_STR, .scope = DEV(D_ALL, C_DEVICE),
     .off = offsetof(struct device_config, template_name), .flags = K_NONEMPTY},
    {.name = "type", .type = KT_STR, .scope = DEV(D_ALL, C_DEVLIKE),
     .off = offsetof(struct device_config, type), .flags = K_NONEMPTY, .sdef = "default"},
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
    {.name = "address_base", .type = KT_INT, .scope = DEV(D_MODBUS, C_DEVLIKE),
     .off = offsetof(struct device_config, address_base), .min = 0, .max = 1},
    {.name = "write_multiple", .type = KT_BOOL, .scope = DEV(D_MODBUS, C_DEVLIKE),
     .off = offsetof(struct device_config, write_multiple)},
    {.name = "mask_write", .type = KT_BOOL, .scope = DEV(D_MODBUS, C_DEVLIKE),
     .off = offsetof(struct device_config, mask_write)},
    {.name = "identify", .type = KT_BOOL, .scope = DEV(D_MODBUS, C_DEVLIKE),
     .off = offsetof(struct device_config, identify)},
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

const struct key mqtt_keys[] = {
    {.name = "client_id", .type = KT_STR, .scope = DEV(D_ALL, C_DEVICE),
     .off = offsetof(struct credentials, client_id), .flags = K_NONEMPTY},
    {.name = "username", .type = KT_STR, .scope = DEV(D_ALL, C_DEVICE),
     .off = offsetof(struct credentials, username), .flags = K_NONEMPTY},
    {.name = "password", .type = KT_STR, .scope = DEV(D_ALL, C_DEVICE),
     .off = offsetof(struct credentials, password)},
    END_KEYS,
};

const struct key x509_keys[] = {
    {.name = "cert_file", .type = KT_STR, .scope = DEV(D_ALL, C_DEVICE),
     .off = offsetof(struct credentials, cert_file), .flags = K_REQUIRED | K_NONEMPTY | K_PATH},
    {.name = "key_file", .type = KT_STR, .scope = DEV(D_ALL, C_DEVICE),
     .off = offsetof(struct credentials, key_file), .flags = K_REQUIRED | K_NONEMPTY | K_PATH},
    END_KEYS,
};

const struct key provision_keys[] = {
    {.name = "key", .type = KT_STR, .scope = DEV(D_ALL, C_DEVICE),
     .off = offsetof(struct credentials, provision_key), .flags = K_REQUIRED | K_NONEMPTY},
    {.name = "secret", .type = KT_STR, .scope = DEV(D_ALL, C_DEVICE),
     .off = offsetof(struct credentials, provision_secret), .flags = K_REQUIRED | K_NONEMPTY},
    END_KEYS,
};

const struct key ota_keys[] = {
    {.name = "command", .type = KT_STR, .scope = DEV(D_ALL, C_DEVLIKE),
     .off = offsetof(struct ota_config, command), .flags = K_REQUIRED | K_NONEMPTY | K_PATH},
    {.name = "exclusive_bus", .type = KT_BOOL, .scope = DEV(D_ALL, C_DEVLIKE),
     .off = offsetof(struct ota_config, exclusive_bus)},
    {.name = "timeout_s", .type = KT_INT, .scope = DEV(D_ALL, C_DEVLIKE),
     .off = offsetof(struct ota_config, timeout_s), .min = 1, .max = 86400, .idef = 900},
    END_KEYS,
};

/* ---- tags ---- */

const struct key tag_keys[] = {
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
    {.name = "poll_ms", .type = KT_INT, .scope = TAG(C_TELEM | C_ATTR),
     .off = offsetof(struct tag_config, poll_ms), .flags = K_INHERIT, .min = 10, .max = 86400000},
    {.name = "invalid", .type = KT_ARRAY, .scope = TAG(C_TELEM | C_ATTR), .off = NO_OFF},
    END_KEYS,
};
