/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <stdlib.h>

#include "config/config.h"
#include "config/diag.h"
#include "core/budget.h"
#include "core/plan.h"
#include "drivers/modbus-common.h"
#include "util/macros.h"

/* Wire time of the requests of one plan, in microseconds. */
static double plan_us(const struct bus_config *b, const struct plan *p)
{
    double us = 0;

    for (size_t i = 0; i < p->n_blocks; i++) {
        if (b->driver == DRIVER_MODBUS_RTU) {
            unsigned bits = 1u + (unsigned)b->data_bits + (b->parity != 'N') + (unsigned)b->stop_bits;
            double char_us = 1e6 * bits / b->baud;
            unsigned bytes = plan_request_bytes() + plan_response_bytes(&p->blocks[i]);
            us += bytes * char_us +
                  2.0 * mb_rtu_silent_interval_us(b->baud, b->data_bits, b->parity, b->stop_bits) +
                  b->inter_frame_ms * 1000.0;
        } else if (b->driver == DRIVER_MODBUS_ASCII) {
            /* An RTU frame of n bytes (CRC included) is 2n + 1 characters in ASCII (hex of
             * unit, PDU and LRC, with ':' and CR LF); no silent interval. */
            unsigned bits = 1u + (unsigned)b->data_bits + (b->parity != 'N') + (unsigned)b->stop_bits;
            double char_us = 1e6 * bits / b->baud;
            unsigned bytes = plan_request_bytes() + plan_response_bytes(&p->blocks[i]);
            us += (2.0 * bytes + 2.0) * char_us + b->inter_frame_ms * 1000.0;
        } else {
            us += TCP_ROUND_TRIP_US;
        }
    }
    return us;
}

/* One device's share of its bus: every poll period's plan, each as often as its period
 * says. Also (optional) one round of all its periods and its fastest period. */
static double device_load(const struct bus_config *b, const struct device_config *d,
                          struct budget_round *round)
{
    size_t n = d->telemetry.n + d->attributes.n;
    struct plan_tag *tags = xcalloc(n + 1, sizeof(*tags));
    struct plan_limits lim = plan_limits_for(b->driver);
    struct poll_group *g;
    size_t n_groups, k = 0;
    double load = 0;

    for (size_t i = 0; i < d->telemetry.n; i++)
        tags[k++] = (struct plan_tag){.tag = &d->telemetry.v[i]};
    for (size_t i = 0; i < d->attributes.n; i++)
        tags[k++] = (struct plan_tag){.tag = &d->attributes.v[i]};
    n_groups = plan_build_groups(&g, tags, n, d->poll_ms, &lim);
    for (size_t i = 0; i < n_groups; i++) {
        double us = plan_us(b, &g[i].plan);

        load += us / (g[i].period_ms * 1000.0);
        if (!round)
            continue;
        round->us += us;
        round->requests += (unsigned)g[i].plan.n_blocks;
        if (!round->fastest_ms || g[i].period_ms < round->fastest_ms) {
            round->fastest_ms = g[i].period_ms;
            round->fastest = d;
        }
    }
    plan_groups_free(g, n_groups);
    free(tags);
    return load;
}

double budget_load(const struct bus_config *b, struct budget_round *round)
{
    double load = 0;

    if (round)
        *round = (struct budget_round){0};
    if (b->driver == DRIVER_SERIAL_LINE)
        return 0;
    for (size_t i = 0; i < b->n_devices; i++)
        load += device_load(b, &b->devices[i], round);
    return load;
}

void budget_check(const struct config *c, struct diag *d)
{
    for (size_t i = 0; i < c->n_buses; i++) {
        const struct bus_config *b = &c->buses[i];
        struct budget_round r;
        double load = budget_load(b, &r);

        if (load <= 1.0)
            continue;
        if (b->driver == DRIVER_MODBUS_RTU || b->driver == DRIVER_MODBUS_ASCII)
            diag_add(d, true, b->origin.file, b->origin.line, "",
                     "bus '%s' cannot keep up: one round of its %u requests needs at least %.0f ms "
                     "of wire time at %d baud, but device '%s' polls every %d ms (the bus would "
                     "be %.0f%% busy); raise baud or poll_ms, or split the devices over buses",
                     b->name, r.requests, r.us / 1000.0, b->baud, r.fastest->name,
                     r.fastest_ms, load * 100.0);
        else
            diag_add(d, true, b->origin.file, b->origin.line, "",
                     "bus '%s' may not keep up: one round of its %u requests takes about %.0f ms "
                     "at %u ms per round trip, but device '%s' polls every %d ms (the bus would "
                     "be %.0f%% busy)",
                     b->name, r.requests, r.us / 1000.0, TCP_ROUND_TRIP_US / 1000u,
                     r.fastest->name, r.fastest_ms, load * 100.0);
    }
}
