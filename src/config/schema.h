/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The settings tbgw.conf may hold: one row per setting (name, type, where it is valid,
 * range, default, destination in struct config). The rows are data; config/walk.c reads a
 * libconfig group against them and config/config.c and its helpers apply the rules that
 * span settings. Private to src/config/.
 *
 * Scopes: a row is valid for some drivers (the D_ bits) and some contexts (the C_ bits:
 * a plain section, a device, a template, a kind of tag). A known setting in the wrong
 * place is reported as such, not as unknown.
 */
#ifndef TBGW_CONFIG_SCHEMA_H
#define TBGW_CONFIG_SCHEMA_H

#include <stddef.h>

#include "config/config.h"

#define D_RTU (1u << 0)
#define D_TCP (1u << 1)
#define D_LINE (1u << 2)
#define D_ASCII (1u << 16)  /* above the C_ bits */
#define D_RTUTCP (1u << 17)
#define D_MODBUS (D_RTU | D_TCP | D_ASCII | D_RTUTCP)
#define D_SERIAL (D_RTU | D_ASCII | D_LINE)
#define D_NET (D_TCP | D_RTUTCP)
#define D_FRAMED (D_RTU | D_ASCII | D_RTUTCP) /* Modbus without a transaction id */
#define D_ALL (D_MODBUS | D_LINE)
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

#define PLAIN (D_ALL | C_PLAIN)
#define BUS(d) ((d) | C_PLAIN)
#define DEV(d, c) ((d) | (c))
#define TAG(c) (D_ALL | (c))


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
    const char *why;              /* KT_INT: why the range is what it is, for its error */
};

#define END_KEYS { .name = NULL }

extern const unsigned driver_scope[N_DRIVERS];
extern const char *const driver_names[];
extern const char *const role_names[];
extern const unsigned role_scope[N_ROLES];
extern const char *const format_names[];

extern const struct key top_keys[], edge_keys[], gateway_keys[], rate_limit_keys[], tls_keys[],
    storage_keys[],
    log_keys[], health_keys[], control_keys[], metrics_keys[];
extern const struct key bus_keys[], rs485_keys[], listen_keys[];
extern const struct key device_keys[], mqtt_keys[], x509_keys[], provision_keys[], ota_keys[];
extern const struct key tag_keys[];

#endif
