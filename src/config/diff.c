/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Reload difference (diff.h). Equality is by value, setting by setting; where a setting
 * came from (file, line) is not a difference, so moving a device within the file or
 * adding a comment restarts nothing. Pure. Thread: any.
 */
#include "config/diff.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/macros.h"

static bool str_eq(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

static bool strv_eq(char *const *a, char *const *b)
{
    if (!a || !b)
        return a == b;
    for (; *a && *b; a++, b++)
        if (strcmp(*a, *b) != 0)
            return false;
    return !*a && !*b;
}

/* Exact comparison is right here: both come from parsing the same kind of text. */
static bool num_eq(double a, double b)
{
    return a == b || (isnan(a) && isnan(b));
}

static bool nums_eq(const double *a, size_t na, const double *b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (!num_eq(a[i], b[i]))
            return false;
    return true;
}

static bool tag_eq(const struct tag_config *a, const struct tag_config *b)
{
    return a->poll_ms == b->poll_ms && nums_eq(a->invalid, a->n_invalid, b->invalid, b->n_invalid) && str_eq(a->key, b->key) && a->role == b->role && a->access == b->access &&
           a->table == b->table && a->address == b->address && a->count == b->count &&
           a->type == b->type && a->bit == b->bit && num_eq(a->scale, b->scale) &&
           num_eq(a->offset, b->offset) && a->byte_order == b->byte_order &&
           a->word_order == b->word_order && a->report == b->report &&
           num_eq(a->deadband, b->deadband) && a->heartbeat_s == b->heartbeat_s;
}

static bool tags_eq(const struct tag_list *a, const struct tag_list *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (!tag_eq(&a->v[i], &b->v[i]))
            return false;
    return true;
}

static bool cred_eq(const struct credentials *a, const struct credentials *b)
{
    return a->kind == b->kind && str_eq(a->token, b->token) && str_eq(a->client_id, b->client_id) &&
           str_eq(a->username, b->username) && str_eq(a->password, b->password) &&
           str_eq(a->cert_file, b->cert_file) && str_eq(a->key_file, b->key_file) &&
           str_eq(a->provision_key, b->provision_key) &&
           str_eq(a->provision_secret, b->provision_secret);
}

/* A device's own settings, its bus's transport aside (but not which bus it is on). */
static bool device_eq(const struct device_config *a, const struct device_config *b)
{
    return str_eq(a->name, b->name) && str_eq(a->type, b->type) &&
           str_eq(a->bus->name, b->bus->name) &&
           a->bus->driver == b->bus->driver && a->unit_id == b->unit_id &&
           a->poll_ms == b->poll_ms && cred_eq(&a->cred, &b->cred) &&
           a->address_base == b->address_base && a->write_multiple == b->write_multiple &&
           a->mask_write == b->mask_write && a->identify == b->identify &&
           a->byte_order == b->byte_order && a->word_order == b->word_order &&
           a->report == b->report && num_eq(a->deadband, b->deadband) &&
           a->heartbeat_s == b->heartbeat_s && tags_eq(&a->telemetry, &b->telemetry) &&
           tags_eq(&a->attributes, &b->attributes) && tags_eq(&a->writes, &b->writes) &&
           tags_eq(&a->rpc, &b->rpc) && a->allow_raw_rpc == b->allow_raw_rpc &&
           a->ota.enabled == b->ota.enabled && str_eq(a->ota.command, b->ota.command) &&
           a->ota.exclusive_bus == b->ota.exclusive_bus && a->ota.timeout_s == b->ota.timeout_s &&
           a->format == b->format && strv_eq(a->columns, b->columns) &&
           str_eq(a->pattern, b->pattern) && strv_eq(a->keys, b->keys) && str_eq(a->send, b->send);
}

/* What opens the port or connection (or listens for it). */
static bool transport_eq(const struct bus_config *a, const struct bus_config *b)
{
    return a->driver == b->driver && str_eq(a->device, b->device) && a->baud == b->baud &&
           a->parity == b->parity && a->data_bits == b->data_bits &&
           a->stop_bits == b->stop_bits && a->rs485 == b->rs485 &&
           a->rs485_rts == b->rs485_rts && a->rs485_delay_us == b->rs485_delay_us &&
           str_eq(a->host, b->host) && a->tcp_port == b->tcp_port && a->listen == b->listen &&
           str_eq(a->listen_bind, b->listen_bind) && a->listen_port == b->listen_port;
}

/* How transactions go on that link: a new bus applies these to a link it takes over. */
static bool timing_eq(const struct bus_config *a, const struct bus_config *b)
{
    return a->timeout_ms == b->timeout_ms && a->retries == b->retries &&
           a->inter_frame_ms == b->inter_frame_ms;
}

static bool devices_of_bus_eq(const struct bus_config *a, const struct bus_config *b)
{
    if (a->n_devices != b->n_devices)
        return false;
    for (size_t i = 0; i < a->n_devices; i++)
        if (!device_eq(&a->devices[i], &b->devices[i]))
            return false;
    return true;
}

static bool edge_eq(const struct edge_config *a, const struct edge_config *b)
{
    return str_eq(a->host, b->host) && a->port == b->port && a->keepalive_s == b->keepalive_s &&
           a->qos == b->qos && a->tls == b->tls && str_eq(a->ca_file, b->ca_file) &&
           a->verify_hostname == b->verify_hostname && a->rate_limits_set == b->rate_limits_set &&
           str_eq(a->rl_messages, b->rl_messages) &&
           str_eq(a->rl_telemetry_messages, b->rl_telemetry_messages) &&
           str_eq(a->rl_telemetry_datapoints, b->rl_telemetry_datapoints) &&
           str_eq(a->rl_tenant_messages, b->rl_tenant_messages) &&
           str_eq(a->rl_tenant_telemetry_messages, b->rl_tenant_telemetry_messages) &&
           str_eq(a->rl_tenant_telemetry_datapoints, b->rl_tenant_telemetry_datapoints) &&
           a->gateway == b->gateway && (!a->gateway || cred_eq(&a->gw_cred, &b->gw_cred));
}

static const struct bus_config *find_bus(const struct config *c, const char *name)
{
    for (size_t i = 0; i < c->n_buses; i++)
        if (str_eq(c->buses[i].name, name))
            return &c->buses[i];
    return NULL;
}

int config_diff(const struct config *old, const struct config *new, struct config_diff *ret)
{
    struct config_diff d = {0};

    d.restart_all = !edge_eq(&old->edge, &new->edge) ||
                    !str_eq(old->storage.path, new->storage.path) ||
                    old->storage.max_size_mb != new->storage.max_size_mb ||
                    old->storage.commit_interval_ms != new->storage.commit_interval_ms ||
                    old->health_interval_s != new->health_interval_s;

    d.buses = xcalloc(old->n_buses + new->n_buses + 1, sizeof(*d.buses));
    for (size_t i = 0; i < new->n_buses; i++) {
        const struct bus_config *nb = &new->buses[i], *ob = find_bus(old, nb->name);
        struct bus_diff *bd = &d.buses[d.n_buses++];

        *bd = (struct bus_diff){.old = ob, .new = nb, .change = CHANGE_ADD};
        if (!ob)
            continue;
        bd->same_transport = transport_eq(ob, nb);
        bd->change = !d.restart_all && bd->same_transport && timing_eq(ob, nb) &&
                             devices_of_bus_eq(ob, nb)
                         ? CHANGE_NONE
                         : CHANGE_RESTART;
    }
    for (size_t i = 0; i < old->n_buses; i++)
        if (!find_bus(new, old->buses[i].name))
            d.buses[d.n_buses++] = (struct bus_diff){.old = &old->buses[i],
                                                     .change = CHANGE_REMOVE};

    d.devices = xcalloc(old->n_devices + new->n_devices + 1, sizeof(*d.devices));
    for (size_t i = 0; i < new->n_devices; i++) {
        const struct device_config *nd = new->devices[i];
        const struct device_config *od = config_find_device(old, nd->name);
        struct device_diff *dd = &d.devices[d.n_devices++];

        *dd = (struct device_diff){.old = od, .new = nd, .change = CHANGE_ADD};
        if (od)
            dd->change = !d.restart_all && device_eq(od, nd) ? CHANGE_NONE : CHANGE_RESTART;
    }
    for (size_t i = 0; i < old->n_devices; i++)
        if (!config_find_device(new, old->devices[i]->name))
            d.devices[d.n_devices++] = (struct device_diff){.old = old->devices[i],
                                                            .change = CHANGE_REMOVE};
    *ret = d;
    return 0;
}

void config_diff_free(struct config_diff *d)
{
    free(d->buses);
    free(d->devices);
    *d = (struct config_diff){0};
}

const char *config_change_to_string(enum config_change c)
{
    static const char *const names[] = {[CHANGE_NONE] = "unchanged", [CHANGE_RESTART] = "restart",
                                        [CHANGE_REMOVE] = "remove", [CHANGE_ADD] = "add"};
    return (size_t)c < ARRAY_SIZE(names) ? names[c] : "?";
}
