/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Assembly of the components from one configuration. Start order: uplink (with its spool),
 * then buses, so data has somewhere to go before it is produced. Stop order is the
 * reverse: buses first, then the uplink drains what they left and keeps what it could not
 * send, so nothing a bus read is lost on the way out.
 *
 * A reload (gateway_reload) stops the old gateway in the same order and starts the new one
 * in the same order, but what did not change is handed from one to the other in between:
 * an unchanged bus's open port or connection (drivers' adopt), an unchanged device's MQTT
 * session (uplink/reconfigure.c), report state and key table, and every counter. Between
 * the two, nothing runs but paho's threads, so the hand-over needs no locks of its own.
 *
 * Thread: main.
 */
#include "config.h"

#include <json-c/json.h>
#include <string.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "config/config.h"
#include "config/diff.h"
#include "core/budget.h"
#include "core/bus.h"
#include "core/device.h"
#include "core/histogram.h"
#include "core/keytab.h"
#include "drivers/driver.h"
#include "gateway.h"
#include "spool/inspect.h"
#include "metrics/prom.h"
#include "uplink/session.h"
#include "uplink/uplink.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/macros.h"
#include "util/time-util.h"

/* What went through the gateways of this process (tbgwctl status: "totals"). At any
 * moment, with values_waiting counting what is in the rings, the open batches and the
 * spool:
 *   samples + health_values + values_at_start
 *     = attribute_values + values_rejected + values_delivered + values_waiting
 *       + values_dropped + values_quarantined + values_lost
 * and samples_dropped were lost before the uplink saw them (the ring was full). */
struct totals {
    uint64_t samples, samples_dropped, attribute_values, health_values, values_rejected,
        values_delivered, values_dropped, values_quarantined, values_lost, values_at_start;
    uint64_t messages_delivered; /* telemetry batches the Edge acknowledged */
};

struct gateway {
    const struct config *cfg;
    struct device *devices;
    struct device **devptrs;
    struct uplink *uplink;
    struct bus **buses;
    size_t n_buses;
    bool running;
    uint64_t started_ms;
    /* for the values/s figure in STATUS= */
    uint64_t rate_at_ms, rate_values;
    double rate;
    /* for requests/s per bus in tbgwctl status */
    uint64_t *bus_requests;
    uint64_t bus_rate_at_ms;
    double *bus_rate;
    struct totals carried; /* of the gateways before this one (reloads) */
    bool reloaded;
    /* What the devices' counters held when a reload handed them to this gateway: counted in
     * carried already. */
    uint64_t devices_samples_at_start, devices_dropped_at_start;
};

static void totals(struct gateway *g, struct totals *t, uint64_t *ret_waiting);

/* The keys a device can have: a Modbus device its tags' and the identification's (as
 * attributes); a text sensor names its keys as it goes. Per-key state on the bus is
 * sized by this, so it is worth not reserving KEYTAB_MAX for every device. */
static size_t device_key_capacity(const struct device_config *dc)
{
    if (dc->bus->driver == DRIVER_SERIAL_LINE)
        return KEYTAB_MAX;
    return dc->telemetry.n + dc->attributes.n + 8;
}

/* On a reload: is bus nb's port or connection taken over from the running bus of that
 * name (it is unchanged, or only its devices changed)? */
static bool adopts_link(const struct config_diff *d, const struct bus_config *nb)
{
    for (size_t i = 0; d && i < d->n_buses; i++)
        if (d->buses[i].new == nb)
            return d->buses[i].change == CHANGE_NONE ||
                   (d->buses[i].change == CHANGE_RESTART && d->buses[i].same_transport);
    return false;
}

/* The components of cfg, no threads yet. With a reload's diff d, the buses that take over
 * a running bus's link are left for gateway_reload() to build once that bus has stopped:
 * until then its port or listening socket is in use. */
static struct gateway *build(const struct config *cfg, const struct config_diff *d)
{
    struct gateway *g = xcalloc(1, sizeof(*g));
    size_t k = 0;

    session_library_init();
    g->cfg = cfg;
    g->devices = xcalloc(cfg->n_devices ? cfg->n_devices : 1, sizeof(*g->devices));
    g->devptrs = xcalloc(cfg->n_devices ? cfg->n_devices : 1, sizeof(*g->devptrs));
    for (size_t i = 0; i < cfg->n_devices; i++) {
        g->devices[i].cfg = cfg->devices[i];
        g->devices[i].keys = keytab_new(device_key_capacity(cfg->devices[i]));
        g->devptrs[i] = &g->devices[i];
    }

    g->uplink = uplink_new(cfg, g->devptrs);
    if (!g->uplink)
        return gateway_free(g);

    g->buses = xcalloc(cfg->n_buses ? cfg->n_buses : 1, sizeof(*g->buses));
    g->bus_requests = xcalloc(cfg->n_buses ? cfg->n_buses : 1, sizeof(*g->bus_requests));
    g->bus_rate = xcalloc(cfg->n_buses ? cfg->n_buses : 1, sizeof(*g->bus_rate));
    g->n_buses = cfg->n_buses; /* a NULL entry is built later, or failed */
    for (size_t b = 0; b < cfg->n_buses; b++) {
        const struct bus_config *bc = &cfg->buses[b];
        struct bus *bus;

        k += bc->n_devices;
        if (adopts_link(d, bc))
            continue;
        bus = bus_new(bc, &g->devptrs[k - bc->n_devices], bc->n_devices,
                      uplink_wake_fd(g->uplink));
        if (!bus)
            return gateway_free(g);
        g->buses[b] = bus;
        uplink_add_ring(g->uplink, bus_ring(bus));
    }
    return g;
}

struct gateway *gateway_new(const struct config *cfg)
{
    return build(cfg, NULL);
}

int gateway_start(struct gateway *g)
{
    int r = uplink_start(g->uplink);

    if (r < 0)
        return r;
    for (size_t b = 0; b < g->n_buses; b++) {
        r = bus_start(g->buses[b]);
        if (r < 0) {
            gateway_stop(g);
            return r;
        }
        g->bus_requests[b] = bus_requests(g->buses[b]); /* a bus's figures go on on reload */
    }
    g->running = true;
    g->started_ms = g->rate_at_ms = g->bus_rate_at_ms = now_ms();
    return 0;
}

/* Gateway mode (edge.gateway): the devices the new configuration no longer has leave
 * ThingsBoard's gateway session (v1/gateway/disconnect) as the running gateway stops;
 * every other device stays, and the new gateway announces the ones it adds. Without
 * gateway mode in the new file, every device leaves: it will have a session of its own. */
static void leave_removed(struct gateway *old, const struct config *nc,
                          const struct config_diff *d)
{
    const char **names;
    size_t n = 0;

    if (!old->cfg->edge.gateway)
        return;
    names = xcalloc(d->n_devices + 1, sizeof(*names));
    for (size_t i = 0; i < d->n_devices; i++)
        if (d->devices[i].old && (d->devices[i].change == CHANGE_REMOVE || !nc->edge.gateway))
            names[n++] = d->devices[i].old->name;
    uplink_gateway_leave(old->uplink, names, n);
    free(names);
}

void gateway_stop(struct gateway *g)
{
    for (size_t b = 0; b < g->n_buses; b++)
        if (g->buses[b])
            bus_stop(g->buses[b]);
    if (g->uplink)
        uplink_stop(g->uplink);
    g->running = false;
}

struct gateway *gateway_free(struct gateway *g)
{
    if (!g)
        return NULL;
    gateway_stop(g);
    for (size_t b = 0; b < g->n_buses; b++)
        bus_free(g->buses[b]);
    free(g->buses);
    free(g->bus_requests);
    free(g->bus_rate);
    uplink_free(g->uplink);
    for (size_t i = 0; i < g->cfg->n_devices; i++)
        keytab_free(g->devices[i].keys);
    free(g->devices);
    free(g->devptrs);
    free(g);
    return NULL;
}

/* ---- reload ------------------------------------------------------------------------------ */

static void copy_stats(struct device_stats *to, const struct device_stats *from)
{
#define COPY(f) atomic_store(&to->f, atomic_load(&from->f))
    COPY(polls);
    COPY(failures);
    COPY(requests);
    COPY(samples);
    COPY(dropped);
    COPY(overruns);
    COPY(invalid);
    COPY(last_poll_ms);
    COPY(last_ok_ms);
    COPY(latency_us);
    COPY(last_error);
    COPY(active);
#undef COPY
}

/* The running bus that bus_config ob of old's configuration was built into. */
static struct bus *old_bus(struct gateway *old, const struct bus_config *ob)
{
    return old->buses[ob - old->cfg->buses];
}

static bool bus_stays(const struct config_diff *d, const struct bus_config *ob)
{
    for (size_t i = 0; i < d->n_buses; i++)
        if (d->buses[i].old == ob && d->buses[i].new)
            return adopts_link(d, d->buses[i].new);
    return false;
}

/* The buses left for later by build(): each takes over the link of the stopped bus of its
 * name, and its unchanged devices their report state. 0 or -errno. */
static int adopt_buses(struct gateway *ng, struct gateway *old, const struct config_diff *d)
{
    for (size_t i = 0; i < d->n_buses; i++) {
        const struct bus_diff *bd = &d->buses[i];
        const struct bus_config *bc = bd->new;
        size_t b, first;
        bool *keep;
        struct bus *bus;

        if (!bc || !adopts_link(d, bc))
            continue;
        b = (size_t)(bc - ng->cfg->buses);
        first = 0;
        for (size_t j = 0; j < b; j++)
            first += ng->cfg->buses[j].n_devices;
        keep = xcalloc(bc->n_devices + 1, sizeof(*keep));
        for (size_t j = 0; j < d->n_devices; j++) {
            const struct device_diff *dd = &d->devices[j];
            size_t n = dd->new ? dd->new->index : SIZE_MAX;

            if (dd->change == CHANGE_NONE && n >= first && n < first + bc->n_devices)
                keep[n - first] = true;
        }
        bus = bus_adopt(bc, &ng->devptrs[first], bc->n_devices, uplink_wake_fd(ng->uplink),
                        old_bus(old, bd->old), keep);
        free(keep);
        if (!bus)
            return -ENOMEM;
        ng->buses[b] = bus;
        uplink_add_ring(ng->uplink, bus_ring(bus));
    }
    return 0;
}

int gateway_reload(struct gateway **gp, const struct config *nc, const struct config_diff *d)
{
    struct gateway *old = *gp, *ng = build(nc, d);
    uint64_t samples = 0, dropped = 0, waiting;
    int r;

    if (!ng)
        return -EINVAL;

    /* Stop the old gateway: its buses first, the links that go on left open; then the
     * uplink, which keeps everything unsent in the spool and leaves the sessions that go on
     * connected. */
    leave_removed(old, nc, d);
    uplink_keep_sessions(old->uplink, d);
    for (size_t b = 0; b < old->n_buses; b++) {
        if (bus_stays(d, &old->cfg->buses[b]))
            bus_stop_keep_link(old->buses[b]);
        else
            bus_stop(old->buses[b]);
    }
    uplink_stop(old->uplink);
    old->running = false;

    /* A device in both files goes on counting; an unchanged one whose link is taken over
     * keeps its key table, which its report state on the bus is indexed by. */
    for (size_t i = 0; i < d->n_devices; i++) {
        const struct device_diff *dd = &d->devices[i];
        struct device *od, *nd;

        if (!dd->old || !dd->new)
            continue;
        od = &old->devices[dd->old->index];
        nd = &ng->devices[dd->new->index];
        copy_stats(&nd->stats, &od->stats);
        samples += atomic_load(&od->stats.samples);
        dropped += atomic_load(&od->stats.dropped);
        if (dd->change == CHANGE_NONE && adopts_link(d, dd->new->bus)) {
            struct keytab *kt = nd->keys;
            nd->keys = od->keys;
            od->keys = kt;
        }
    }
    /* A bus that got a new link goes on counting too. */
    for (size_t i = 0; i < d->n_buses; i++) {
        const struct bus_diff *bd = &d->buses[i];
        if (bd->old && bd->new && !adopts_link(d, bd->new))
            bus_continue_figures(ng->buses[bd->new - nc->buses], old_bus(old, bd->old));
    }
    r = adopt_buses(ng, old, d);
    uplink_take_sessions(ng->uplink, old->uplink, d);

    /* The totals go on too. What old leaves waiting is in the spool file, which ng counts
     * when it opens it; the devices' counters that went on are counted in carried. */
    totals(old, &ng->carried, &waiting);
    ng->devices_samples_at_start = samples;
    ng->devices_dropped_at_start = dropped;
    ng->reloaded = true;

    /* The old spool is closed before the new uplink opens the file. */
    gateway_free(old);
    *gp = ng;
    if (r == 0)
        r = gateway_start(ng);
    return r < 0 ? -EIO : 0;
}

bool gateway_alive(struct gateway *g, unsigned long long max_age_ms)
{
    uint64_t now = now_ms();
    struct uplink_status st;

    if (!g->running)
        return false;
    for (size_t b = 0; b < g->n_buses; b++)
        if (now - bus_alive_ms(g->buses[b]) > max_age_ms) {
            log_error("bus '%s' has made no progress for %llus", bus_name(g->buses[b]),
                      (unsigned long long)(now - bus_alive_ms(g->buses[b])) / 1000);
            return false;
        }
    uplink_status(g->uplink, &st);
    if (now - st.alive_ms > max_age_ms) {
        log_error("the uplink has made no progress for %llus",
                  (unsigned long long)(now - st.alive_ms) / 1000);
        return false;
    }
    return true;
}

void gateway_status(struct gateway *g, char *buf, size_t size)
{
    struct uplink_status st;
    uint64_t now = now_ms();

    uplink_status(g->uplink, &st);
    if (now - g->rate_at_ms >= 1000) {
        g->rate = (double)(st.delivered_values - g->rate_values) * 1000.0 /
                  (double)(now - g->rate_at_ms);
        g->rate_values = st.delivered_values;
        g->rate_at_ms = now;
    }
    snprintf(buf, size, "%s%zu/%zu devices %s, %.0f values/s, spool %llu batches (%llu KiB)%s",
             !st.gateway ? "" : st.gateway_connected ? "gateway connected, " : "gateway offline, ",
             st.connected, st.devices, st.gateway ? "announced" : "connected", g->rate,
             (unsigned long long)st.spool.batches,
             (unsigned long long)(st.spool.bytes + 1023) / 1024,
             st.payload_refused ? ", a device profile refuses JSON payloads" : "");
}

struct device *gateway_device(struct gateway *g, const char *name)
{
    for (size_t i = 0; i < g->cfg->n_devices; i++)
        if (strcmp(g->devices[i].cfg->name, name) == 0)
            return &g->devices[i];
    return NULL;
}

int gateway_submit(struct gateway *g, struct device *d, struct command *cmd)
{
    if (!d->bus)
        return -ENODEV;
    return bus_submit(d->bus, cmd);
}

void gateway_post_uplink(struct gateway *g, struct event *e)
{
    uplink_post(g->uplink, e);
}

/* This gateway's counters on top of its predecessors'. Values that a stopped gateway could
 * not write to disk are lost (its spool said so when it closed); otherwise they wait. */
static void totals(struct gateway *g, struct totals *t, uint64_t *ret_waiting)
{
    struct uplink_status st;
    uint64_t samples = 0, unsaved;

    /* The uplink's snapshot first: samples only grow, so every sample it counts as taken
     * from a ring is among those counted here, and the rest are still in a ring. */
    uplink_status(g->uplink, &st);
    *t = g->carried;
    t->samples_dropped -= g->devices_dropped_at_start;
    for (size_t i = 0; i < g->cfg->n_devices; i++) {
        samples += atomic_load(&g->devices[i].stats.samples);
        t->samples_dropped += atomic_load(&g->devices[i].stats.dropped);
    }
    samples -= MIN(g->devices_samples_at_start, samples);
    t->samples += samples;
    t->attribute_values += st.acct.attribute_values;
    t->health_values += st.acct.health_values;
    t->values_rejected += st.acct.rejected_values;
    t->values_delivered += st.acct.delivered_values;
    t->messages_delivered += st.delivered_batches;
    t->values_dropped += st.spool.dropped_values;
    t->values_quarantined += st.spool.quarantined_values;
    if (!g->reloaded)
        t->values_at_start = st.spool.loaded_values;
    unsaved = g->running ? 0 : st.spool.unsaved_values;
    t->values_lost += unsaved;
    *ret_waiting = samples - MIN(st.acct.taken, samples) + st.acct.batching_values +
                   st.spool.values - MIN(unsaved, st.spool.values);
}

void gateway_library_cleanup(void)
{
    session_library_cleanup();
}

static void add_str(json_object *o, const char *k, const char *v)
{
    json_object_object_add(o, k, v ? json_object_new_string(v) : NULL);
}

static void add_int(json_object *o, const char *k, int64_t v)
{
    json_object_object_add(o, k, json_object_new_int64(v));
}

json_object *gateway_status_json(struct gateway *g)
{
    json_object *root = json_object_new_object(), *gw = json_object_new_object();
    json_object *spool = json_object_new_object(), *buses = json_object_new_array();
    json_object *devs = json_object_new_array(), *tot = json_object_new_object();
    struct uplink_status st;
    struct totals t;
    uint64_t waiting;
    uint64_t now = now_ms();
    int64_t wall = clock_wall_ms();
    char line[256];

    uplink_status(g->uplink, &st);
    gateway_status(g, line, sizeof(line));
    add_str(gw, "version", PACKAGE_VERSION);
    add_str(gw, "config", g->cfg->path);
    add_int(gw, "uptime_s", (int64_t)(now - g->started_ms) / 1000);
    add_str(gw, "edge", g->cfg->edge.host);
    add_int(gw, "edge_port", g->cfg->edge.port);
    add_int(gw, "devices", (int64_t)st.devices);
    add_int(gw, "connected", (int64_t)st.connected);
    /* Gateway mode: the one session, and the devices announced in it ("connected" counts
     * those too). */
    add_str(gw, "mode", st.gateway ? "gateway" : "device");
    if (st.gateway) {
        json_object *s = json_object_new_object();

        json_object_object_add(s, "connected", json_object_new_boolean(st.gateway_connected));
        add_int(s, "announced", (int64_t)st.announced);
        add_int(s, "sessions", (int64_t)st.gateway_sessions);
        json_object_object_add(gw, "gateway_session", s);
    }
    json_object_object_add(gw, "values_per_s", json_object_new_double(g->rate));
    add_int(gw, "values_delivered", (int64_t)st.delivered_values);
    add_int(gw, "values_rejected", (int64_t)st.rejected_values);
    add_int(gw, "clock_offset_ms", clock_offset_ms());
    add_str(gw, "summary", line);
    add_int(spool, "batches", (int64_t)st.spool.batches);
    add_int(spool, "bytes", (int64_t)st.spool.bytes);
    /* After the clock was set back, the oldest data may carry a time still to come. */
    add_int(spool, "oldest_age_s",
            st.spool.oldest_ts ? MAX(wall - st.spool.oldest_ts, (int64_t)0) / 1000 : 0);
    add_int(spool, "dropped_batches", (int64_t)st.spool.dropped);
    add_int(spool, "dropped_values", (int64_t)st.spool.dropped_values);
    add_int(spool, "quarantined", (int64_t)st.spool.quarantined);
    json_object_object_add(gw, "spool", spool);
    totals(g, &t, &waiting);
    add_int(tot, "samples", (int64_t)t.samples);
    add_int(tot, "samples_dropped", (int64_t)t.samples_dropped);
    add_int(tot, "health_values", (int64_t)t.health_values);
    add_int(tot, "values_at_start", (int64_t)t.values_at_start);
    add_int(tot, "attribute_values", (int64_t)t.attribute_values);
    add_int(tot, "values_rejected", (int64_t)t.values_rejected);
    add_int(tot, "values_delivered", (int64_t)t.values_delivered);
    add_int(tot, "values_waiting", (int64_t)waiting);
    add_int(tot, "values_dropped", (int64_t)t.values_dropped);
    add_int(tot, "values_quarantined", (int64_t)t.values_quarantined);
    add_int(tot, "values_lost", (int64_t)t.values_lost);
    json_object_object_add(gw, "totals", tot);
    json_object_object_add(root, "gateway", gw);

    if (now - g->bus_rate_at_ms >= 1000) {
        for (size_t b = 0; b < g->n_buses; b++) {
            uint64_t r = bus_requests(g->buses[b]);
            g->bus_rate[b] = (double)(r - g->bus_requests[b]) * 1000.0 / (double)(now - g->bus_rate_at_ms);
            g->bus_requests[b] = r;
        }
        g->bus_rate_at_ms = now;
    }
    for (size_t b = 0; b < g->n_buses; b++) {
        json_object *o = json_object_new_object();
        add_str(o, "name", bus_name(g->buses[b]));
        add_str(o, "driver", driver_kind_to_string(g->cfg->buses[b].driver));
        add_str(o, "state", bus_connected(g->buses[b]) ? "connected"
                            : bus_waiting(g->buses[b])  ? "waiting"
                                                        : "disconnected");
        add_str(o, "status", bus_waiting(g->buses[b]));
        json_object_object_add(o, "requests_per_s", json_object_new_double(g->bus_rate[b]));
        add_int(o, "requests", (int64_t)bus_requests(g->buses[b]));
        add_int(o, "errors", (int64_t)bus_errors(g->buses[b]));
        /* What check-config estimates: the share of the bus's time that polling every tag
         * at its own period needs (a lower bound on RTU). */
        json_object_object_add(o, "load_estimate",
                               json_object_new_double(budget_load(&g->cfg->buses[b], NULL)));
        json_object_array_add(buses, o);
    }
    json_object_object_add(root, "buses", buses);

    for (size_t i = 0; i < g->cfg->n_devices; i++) {
        struct device *d = &g->devices[i];
        struct device_stats *s = &d->stats;
        struct uplink_device_status us;
        json_object *o = json_object_new_object();
        int err = atomic_load(&s->last_error);
        int64_t last = atomic_load(&s->last_poll_ms);
        const char *bus_wait;

        uplink_device_status(g->uplink, i, &us);
        add_str(o, "name", d->cfg->name);
        add_str(o, "bus", d->cfg->bus->name);
        add_str(o, "edge", us.state);
        if (us.reason)
            add_str(o, "edge_reason", us.reason);
        bus_wait = d->bus ? bus_waiting(d->bus) : NULL;
        add_str(o, "polling", bus_wait                     ? "down"
                              : atomic_load(&s->active) ? "active"
                              : last                    ? "failing"
                                                        : "starting");
        add_int(o, "last_poll_age_ms", last ? wall - last : -1);
        add_str(o, "last_error", bus_wait ? bus_wait : err ? driver_strerror(err) : NULL);
        add_int(o, "polls", (int64_t)atomic_load(&s->polls));
        add_int(o, "failures", (int64_t)atomic_load(&s->failures));
        add_int(o, "overruns", (int64_t)atomic_load(&s->overruns));
        add_int(o, "invalid_values", (int64_t)atomic_load(&s->invalid));
        add_int(o, "latency_ms", (int64_t)(atomic_load(&s->latency_us) + 500) / 1000);
        add_int(o, "samples", (int64_t)atomic_load(&s->samples));
        add_int(o, "samples_dropped", (int64_t)atomic_load(&s->dropped));
        add_int(o, "values_delivered", (int64_t)us.delivered);
        add_int(o, "spool_backlog", (int64_t)us.backlog);
        json_object_array_add(devs, o);
    }
    json_object_object_add(root, "devices", devs);
    return root;
}

json_object *gateway_spool_json(struct gateway *g, char *err, size_t errlen)
{
    return spool_quarantine_json(g->cfg->storage.path, err, errlen);
}

/* ---- Prometheus ----------------------------------------------------------------------------- */

static const struct {
    const char *name, *type, *help;
} device_families[] = {
    {"tbgw_device_poll_overruns_total", "counter",
     "Poll cycles skipped because polling took longer than poll_ms."},
    {"tbgw_device_samples_total", "counter", "Values read from the device and handed to the uplink."},
    {"tbgw_device_samples_dropped_total", "counter",
     "Values lost because the uplink did not keep up (its ring was full)."},
    {"tbgw_device_values_delivered_total", "counter", "Values of the device that the Edge acknowledged."},
    {"tbgw_device_session_up", "gauge", "1 while the device's MQTT session with the Edge is up."},
    {"tbgw_device_reconnects_total", "counter",
     "MQTT sessions the device established after its first one."},
    {"tbgw_device_spool_batches", "gauge", "Telemetry messages of the device waiting in the spool."},
};

static const struct {
    const char *name, *type, *help;
} bus_families[] = {
    {"tbgw_bus_requests_total", "counter", "Transactions on the bus."},
    {"tbgw_bus_request_errors_total", "counter", "Transactions on the bus that got no valid answer."},
    {"tbgw_bus_up", "gauge", "1 while the bus's port or connection is open."},
};

/* Figure k of device_families for device i. */
static uint64_t device_figure(struct gateway *g, size_t i, size_t k)
{
    const struct device_stats *s = &g->devices[i].stats;
    struct uplink_device_status us;

    uplink_device_status(g->uplink, i, &us);
    switch (k) {
    case 0:
        return atomic_load(&s->overruns);
    case 1:
        return atomic_load(&s->samples);
    case 2:
        return atomic_load(&s->dropped);
    case 3:
        return us.delivered;
    case 4:
        return us.connected ? 1 : 0;
    case 5:
        return us.sessions ? us.sessions - 1 : 0;
    default:
        return us.backlog;
    }
}

/* The figures of tbgwctl status, in Prometheus's terms: counters end in _total, times are
 * in seconds, sizes in bytes. Every counter continues across reloads: the totals, and
 * those of each device and bus the new file still has (gateway_reload). */
void gateway_metrics(struct gateway *g, FILE *f)
{
    struct uplink_status st;
    struct totals t;
    uint64_t waiting;
    int64_t wall = clock_wall_ms();

    uplink_status(g->uplink, &st);
    totals(g, &t, &waiting);

    prom_family(f, "tbgw_build_info", "gauge", "tbgw's version, as a label; always 1.");
    prom_u64(f, "tbgw_build_info", (const char *const[]){"version", PACKAGE_VERSION, NULL}, 1);

    prom_family(f, "tbgw_device_polls_total", "counter",
                "Poll cycles of a device by result: ok (every read answered) or error (failed "
                "after the retries).");
    for (size_t i = 0; i < g->cfg->n_devices; i++) {
        const struct device *d = &g->devices[i];
        uint64_t polls = atomic_load(&d->stats.polls), fail = atomic_load(&d->stats.failures);
        const char *ok[] = {"device", d->cfg->name, "bus", d->cfg->bus->name, "result", "ok", NULL};
        const char *err[] = {"device", d->cfg->name, "bus", d->cfg->bus->name, "result", "error",
                             NULL};

        prom_u64(f, "tbgw_device_polls_total", ok, polls - MIN(fail, polls));
        prom_u64(f, "tbgw_device_polls_total", err, fail);
    }
    for (size_t k = 0; k < ARRAY_SIZE(device_families); k++) {
        prom_family(f, device_families[k].name, device_families[k].type, device_families[k].help);
        for (size_t i = 0; i < g->cfg->n_devices; i++)
            prom_u64(f, device_families[k].name,
                     (const char *const[]){"device", g->devices[i].cfg->name, NULL},
                     device_figure(g, i, k));
    }

    prom_family(f, "tbgw_bus_poll_duration_seconds", "histogram",
                "Duration of poll cycles on the bus, answered or not.");
    for (size_t b = 0; b < g->n_buses; b++) {
        struct histogram_snapshot h;
        bus_poll_latency(g->buses[b], &h);
        prom_histogram(f, "tbgw_bus_poll_duration_seconds",
                       (const char *const[]){"bus", bus_name(g->buses[b]), NULL}, &h);
    }
    prom_family(f, "tbgw_bus_busy_seconds_total", "counter",
                "Time the bus spent polling and running commands; its rate is the bus "
                "utilisation (0 to 1).");
    for (size_t b = 0; b < g->n_buses; b++)
        prom_double(f, "tbgw_bus_busy_seconds_total",
                    (const char *const[]){"bus", bus_name(g->buses[b]), NULL},
                    (double)bus_busy_us(g->buses[b]) / 1e6);
    for (size_t k = 0; k < ARRAY_SIZE(bus_families); k++) {
        prom_family(f, bus_families[k].name, bus_families[k].type, bus_families[k].help);
        for (size_t b = 0; b < g->n_buses; b++) {
            const struct bus *bus = g->buses[b];
            prom_u64(f, bus_families[k].name, (const char *const[]){"bus", bus_name(bus), NULL},
                     k == 0 ? bus_requests(bus) : k == 1 ? bus_errors(bus) : bus_connected(bus));
        }
    }

    prom_scalar(f, "tbgw_spool_values", "gauge",
                "Values waiting in the store-and-forward spool.", st.spool.values);
    prom_scalar(f, "tbgw_spool_batches", "gauge",
                "Telemetry messages waiting in the spool (including those in flight).",
                st.spool.batches);
    prom_scalar(f, "tbgw_spool_bytes", "gauge",
                "Size of what waits in the spool.", st.spool.bytes);
    prom_family(f, "tbgw_spool_oldest_age_seconds", "gauge",
                "Age of the oldest value waiting in the spool (0 when it is empty).");
    prom_double(f, "tbgw_spool_oldest_age_seconds", NULL,
                st.spool.oldest_ts ? (double)MAX(wall - st.spool.oldest_ts, (int64_t)0) / 1e3 : 0);

    prom_scalar(f, "tbgw_samples_total", "counter",
                "Values read from all devices.", t.samples);
    prom_scalar(f, "tbgw_samples_dropped_total", "counter",
                "Values lost before the uplink saw them (a ring was full).", t.samples_dropped);
    prom_scalar(f, "tbgw_values_delivered_total", "counter",
                "Telemetry values the Edge acknowledged.", t.values_delivered);
    prom_scalar(f, "tbgw_messages_published_total", "counter",
                "Telemetry messages published and acknowledged by the Edge.", t.messages_delivered);
    prom_scalar(f, "tbgw_values_rejected_total", "counter",
                "Values ThingsBoard cannot store (NaN, out of range), not sent.",
                t.values_rejected);
    prom_scalar(f, "tbgw_values_dropped_total", "counter",
                "Values dropped because the spool reached storage.max_size_mb.", t.values_dropped);
    prom_scalar(f, "tbgw_values_quarantined_total", "counter",
                "Values in messages the Edge kept refusing, set aside in the spool.",
                t.values_quarantined);
    prom_scalar(f, "tbgw_values_waiting", "gauge",
                "Values read and not yet acknowledged (rings, open messages, spool).", waiting);
    prom_scalar(f, "tbgw_sessions_up", "gauge",
                "MQTT sessions with the Edge that are up.",
                st.gateway ? (uint64_t)st.gateway_connected : st.connected);
    if (st.gateway)
        prom_scalar(f, "tbgw_gateway_devices_announced", "gauge",
                    "Devices announced in the gateway's session (gateway mode).", st.announced);
}
