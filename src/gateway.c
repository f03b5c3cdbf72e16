/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Assembly of the components from one configuration. Start order: uplink (with its spool),
 * then buses, so data has somewhere to go before it is produced. Stop order is the
 * reverse: buses first, then the uplink drains what they left and keeps what it could not
 * send, so nothing a bus read is lost on the way out.
 */
#include "config.h"

#include <MQTTAsync.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "config/config.h"
#include "core/bus.h"
#include "core/device.h"
#include "core/keytab.h"
#include "gateway.h"
#include "uplink/uplink.h"
#include "util/log.h"
#include "util/macros.h"
#include "util/time-util.h"

struct gateway {
    const struct config *cfg;
    struct device *devices;
    struct device **devptrs;
    struct uplink *uplink;
    struct bus **buses;
    size_t n_buses;
    bool running;
    /* for the values/s figure in STATUS= */
    uint64_t rate_at_ms, rate_values;
    double rate;
};

static pthread_once_t paho_once = PTHREAD_ONCE_INIT;

static void paho_init(void)
{
    MQTTAsync_init_options o = MQTTAsync_init_options_initializer;

    o.do_openssl_init = 1;
    MQTTAsync_global_init(&o);
}

struct gateway *gateway_new(const struct config *cfg)
{
    struct gateway *g = xcalloc(1, sizeof(*g));
    size_t k = 0;

    pthread_once(&paho_once, paho_init);
    g->cfg = cfg;
    g->devices = xcalloc(cfg->n_devices ? cfg->n_devices : 1, sizeof(*g->devices));
    g->devptrs = xcalloc(cfg->n_devices ? cfg->n_devices : 1, sizeof(*g->devptrs));
    for (size_t i = 0; i < cfg->n_devices; i++) {
        g->devices[i].cfg = cfg->devices[i];
        g->devices[i].keys = keytab_new(KEYTAB_MAX);
        g->devptrs[i] = &g->devices[i];
    }

    g->uplink = uplink_new(cfg, g->devptrs);
    if (!g->uplink)
        return gateway_free(g);

    g->buses = xcalloc(cfg->n_buses ? cfg->n_buses : 1, sizeof(*g->buses));
    for (size_t b = 0; b < cfg->n_buses; b++) {
        const struct bus_config *bc = &cfg->buses[b];
        struct bus *bus = bus_new(bc, &g->devptrs[k], bc->n_devices, uplink_wake_fd(g->uplink));

        k += bc->n_devices;
        if (!bus)
            return gateway_free(g);
        g->buses[g->n_buses++] = bus;
        uplink_add_ring(g->uplink, bus_ring(bus));
    }
    return g;
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
    }
    g->running = true;
    g->rate_at_ms = now_ms();
    return 0;
}

void gateway_stop(struct gateway *g)
{
    for (size_t b = 0; b < g->n_buses; b++)
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
    uplink_free(g->uplink);
    for (size_t i = 0; i < g->cfg->n_devices; i++)
        keytab_free(g->devices[i].keys);
    free(g->devices);
    free(g->devptrs);
    free(g);
    return NULL;
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
    snprintf(buf, size, "%zu/%zu devices connected, %.0f values/s, spool %llu batches (%llu KiB)",
             st.connected, st.devices, g->rate, (unsigned long long)st.spool.batches,
             (unsigned long long)(st.spool.bytes + 1023) / 1024);
}
