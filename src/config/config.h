/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The loaded configuration: an immutable tree built once from tbgw.conf (and again on
 * reload), validated completely before anything starts. Every part of the daemon reads
 * its settings from here and never from the file. Templates are already resolved: a
 * device carries its own complete tag lists.
 *
 * Ownership: config_load() returns a tree that config_free() releases; nothing inside
 * may be modified or kept beyond the tree's lifetime. Thread: load on main; read-only
 * from any thread afterwards.
 */
#ifndef TBGW_CONFIG_CONFIG_H
#define TBGW_CONFIG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/value.h"

#define EX_CONFIG_ERROR 78 /* sysexits.h EX_CONFIG */

#define DEFAULT_CONFIG_FILE SYSCONFDIR "/tbgw.conf"
#define DEFAULT_STATE_DIR LOCALSTATEDIR "/lib/tbgw"
#define DEFAULT_CONTROL_SOCKET RUNSTATEDIR "/tbgw/control.sock"

enum driver_kind {
    DRIVER_MODBUS_RTU,
    DRIVER_MODBUS_TCP,
    DRIVER_SERIAL_LINE,
    DRIVER_MODBUS_ASCII,
    DRIVER_MODBUS_RTU_TCP,
    N_DRIVERS
};

enum tag_role {
    ROLE_TELEMETRY,
    ROLE_ATTRIBUTE,
    ROLE_WRITE,
    ROLE_RPC,
    N_ROLES
};

enum rpc_access {
    ACCESS_READ,
    ACCESS_WRITE
};

enum cred_kind {
    CRED_TOKEN,
    CRED_MQTT,
    CRED_X509,
    CRED_PROVISION
};

enum line_format {
    FORMAT_JSON,
    FORMAT_KV,
    FORMAT_CSV,
    FORMAT_REGEX
};

/* Where a setting came from, for messages after load (planner warnings, runtime errors). */
struct origin {
    const char *file; /* owned by struct config's file list */
    int line;
};

/* One register-mapped value: a telemetry or attribute key, a writable shared attribute,
 * or a server-side RPC method. */
struct tag_config {
    char *key; /* key, or RPC method name */
    enum tag_role role;
    enum rpc_access access; /* ROLE_RPC only */
    enum mb_table table;
    int address;
    int count;      /* registers (bits) the value occupies: strings as configured */
    enum value_type type;
    int bit;        /* VT_BIT: 0..15 */
    double scale;   /* value = raw * scale + offset */
    double offset;
    enum byte_order byte_order;
    enum byte_order word_order;
    enum report_mode report;
    double deadband;
    int heartbeat_s;
    int poll_ms;           /* telemetry and attributes: this tag's period (0: the device's) */
    double *invalid;       /* raw values (before scale/offset) that mean "no reading" */
    size_t n_invalid;
    struct origin origin;
};

struct tag_list {
    struct tag_config *v;
    size_t n;
};

struct credentials {
    enum cred_kind kind;
    char *token;                         /* CRED_TOKEN */
    char *client_id, *username, *password; /* CRED_MQTT: any may be NULL (not all) */
    char *cert_file, *key_file;          /* CRED_X509 */
    char *provision_key, *provision_secret; /* CRED_PROVISION */
};

struct ota_config {
    bool enabled; /* the device has an ota block */
    char *command;
    bool exclusive_bus;
    int timeout_s;
};

struct device_config {
    char *name;
    size_t index; /* 0 .. config->n_devices-1, stable for one config */
    struct bus_config *bus;
    int unit_id;
    int poll_ms;
    struct credentials cred;
    enum byte_order byte_order, word_order;
    enum report_mode report;
    double deadband;
    int heartbeat_s;
    struct tag_list telemetry, attributes, writes, rpc;
    bool allow_raw_rpc;
    /* Addresses above are 0-based (what goes on the wire) once loaded; address_base is what
     * the user wrote them in, for messages and for tbgwctl/raw-RPC addresses. */
    int address_base;
    bool write_multiple; /* single writes as function 16 / 15 */
    bool mask_write;     /* bit writes as function 22 */
    bool identify;       /* read function 43/14 once per connection */
    struct ota_config ota;

    /* serial-line */
    enum line_format format;
    char **columns; /* NULL-terminated */
    char *pattern;
    char **keys;    /* NULL-terminated */
    char *send;     /* request to send every poll_ms; NULL: the sensor streams */

    char *template_name;
    /* Gateway mode: the ThingsBoard device profile (v1/gateway/connect "type"). */
    char *type;
    struct origin origin;
};

struct bus_config {
    char *name;
    enum driver_kind driver;
    /* serial */
    char *device;   /* `port` of a serial bus */
    int baud;
    int parity;     /* 'N', 'E', 'O' (libmodbus's letters) */
    int data_bits, stop_bits;
    bool rs485;
    int rs485_rts;  /* 0 none, 1 up, 2 down (MODBUS_RTU_RTS_*) */
    int rs485_delay_us;
    int inter_frame_ms;
    /* tcp (modbus-tcp, modbus-rtu-tcp) */
    char *host;
    int tcp_port;
    bool listen;        /* listen = {…}: the peer dials tbgw */
    char *listen_bind;
    int listen_port;
    /* common */
    int timeout_ms;
    int retries;
    struct device_config *devices;
    size_t n_devices;
    struct origin origin;
};

struct edge_config {
    char *host;
    int port;
    int keepalive_s;
    int qos;
    bool tls;
    char *ca_file;
    bool verify_hostname;
    /* edge.rate_limits: set means use these ("" = that limit is off) and do not ask the
     * Edge (getSessionLimits). ThingsBoard's "capacity:seconds,..." form, validated. */
    bool rate_limits_set;
    char *rl_messages, *rl_telemetry_messages, *rl_telemetry_datapoints;
    /* edge.rate_limits.tenant_*: the tenant's own limits, shared by every device of the
     * tenant ("" = off). ThingsBoard's getSessionLimits never tells them. */
    char *rl_tenant_messages, *rl_tenant_telemetry_messages, *rl_tenant_telemetry_datapoints;
    /* edge.gateway: gateway mode, one session with these credentials for every device
     * (the devices then have none). */
    bool gateway;
    struct credentials gw_cred;
    struct origin gw_origin;
};

struct storage_config {
    char *path;
    int max_size_mb;
    int commit_interval_ms;
};

struct config {
    char *path;
    struct edge_config edge;
    struct storage_config storage;
    int log_level;
    int health_interval_s;
    char *control_socket;
    char *metrics_listen;       /* "address:port" of the Prometheus endpoint, or NULL */
    struct bus_config *buses;
    size_t n_buses;
    size_t n_devices;
    struct device_config **devices; /* by index */
    char **files;                   /* every file read (includes), for origins */
    size_t n_files;
};

/* Problems found while loading: "file:line: path: message" lines, errors and warnings. */
struct diag;

struct diag *diag_new(void);
struct diag *diag_free(struct diag *d);
size_t diag_errors(const struct diag *d);
size_t diag_warnings(const struct diag *d);
/* Sorted by file and line, one per line, each ending in '\n'; "" when there are none.
 * The returned string belongs to d. */
const char *diag_text(struct diag *d);

/* Load and validate path. Returns the config, or NULL when there were errors; either way
 * every problem (and every warning) is in diag. Thread: main. */
struct config *config_load(const char *path, struct diag *diag);

struct config *config_free(struct config *c);

const char *driver_kind_to_string(enum driver_kind d);
const char *tag_role_to_string(enum tag_role r);

/* Find by name, or NULL. */
const struct device_config *config_find_device(const struct config *c, const char *name);
const struct tag_config *device_find_tag(const struct tag_list *l, const char *key);

/* True if any credential (token, password, secret, key file path) is in the file. */
bool config_has_secrets(const struct config *c);

#endif
