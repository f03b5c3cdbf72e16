/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <stdlib.h>

#include "config/config.h"
#include "config/diag.h"
#include "core/budget.h"
#include "core/plan.h"
#include "drivers/modbus-common.h"
#include "util/macros.h"

/* Wire time of one device's poll, and its number of requests. */
static double device_us(const struct bus_config *b, const struct device_config *d,
                        unsigned *ret_requests)
{
    size_t n = d->telemetry.n + d->attributes.n;
    struct plan_tag *tags = xcalloc(n + 1, sizeof(*tags));
    struct plan_limits lim = plan_limits_for(b->driver);
    struct plan p;
    double us = 0;
    size_t k = 0;

    for (size_t i = 0; i < d->telemetry.n; i++)
        tags[k++] = (struct plan_tag){.tag = &d->telemetry.v[i]};
    for (size_t i = 0; i < d->attributes.n; i++)
        tags[k++] = (struct plan_tag){.tag = &d->attributes.v[i]};
    plan_build(&p, tags, n, &lim);
    *ret_requests = (unsigned)p.n_blocks;
    for (size_t i = 0; i < p.n_blocks; i++) {
        if (b->driver == DRIVER_MODBUS_RTU) {
            unsigned bits = 1u + (unsigned)b->data_bits + (b->parity != 'N') + (unsigned)b->stop_bits;
            double char_us = 1e6 * bits / b->baud;
            unsigned bytes = plan_request_bytes() + plan_response_bytes(&p.blocks[i]);
            us += bytes * char_us +
                  2.0 * mb_rtu_silent_interval_us(b->baud, b->data_bits, b->parity, b->stop_bits) +
                  b->inter_frame_ms * 1000.0;
        } else if (b->driver == DRIVER_MODBUS_ASCII) {
            /* An RTU frame of n bytes (CRC included) is 2n + 1 characters in ASCII (hex of
             * unit, PDU and LRC, with ':' and CR LF); no silent interval. */
            unsigned bits = 1u + (unsigned)b->data_bits + (b->parity != 'N') + (unsigned)b->stop_bits;
            double char_us = 1e6 * bits / b->baud;
            unsigned bytes = plan_request_bytes() + plan_response_bytes(&p.blocks[i]);
            us += (2.0 * bytes + 2.0) * char_us + b->inter_frame_ms * 1000.0;
        } else {
            us += TCP_ROUND_TRIP_US;
        }
    }
    plan_free(&p);
    free(tags);
    return us;
}

double budget_round_us(const struct bus_config *b, unsigned *ret_requests)
{
    double us = 0;
    unsigned total = 0;

    for (size_t i = 0; i < b->n_devices; i++) {
        unsigned r;
        us += device_us(b, &b->devices[i], &r);
        total += r;
    }
    if (ret_requests)
        *ret_requests = total;
    return us;
}

void budget_check(const struct config *c, struct diag *d)
{
    for (size_t i = 0; i < c->n_buses; i++) {
        const struct bus_config *b = &c->buses[i];
        double load = 0, round_us;
        unsigned requests;
        const struct device_config *fastest = NULL;

        if (b->driver == DRIVER_SERIAL_LINE || !b->n_devices)
            continue;
        for (size_t k = 0; k < b->n_devices; k++) {
            unsigned r;
            load += device_us(b, &b->devices[k], &r) / (b->devices[k].poll_ms * 1000.0);
            if (!fastest || b->devices[k].poll_ms < fastest->poll_ms)
                fastest = &b->devices[k];
        }
        if (load <= 1.0)
            continue;
        round_us = budget_round_us(b, &requests);
        if (b->driver == DRIVER_MODBUS_RTU || b->driver == DRIVER_MODBUS_ASCII)
            diag_add(d, true, b->origin.file, b->origin.line, "",
                     "bus '%s' cannot keep up: one round of its %u requests needs at least %.0f ms "
                     "of wire time at %d baud, but device '%s' polls every %d ms (the bus would "
                     "be %.0f%% busy); raise baud or poll_ms, or split the devices over buses",
                     b->name, requests, round_us / 1000.0, b->baud, fastest->name,
                     fastest->poll_ms, load * 100.0);
        else
            diag_add(d, true, b->origin.file, b->origin.line, "",
                     "bus '%s' may not keep up: one round of its %u requests takes about %.0f ms "
                     "at %u ms per round trip, but device '%s' polls every %d ms (the bus would "
                     "be %.0f%% busy)",
                     b->name, requests, round_us / 1000.0, TCP_ROUND_TRIP_US / 1000u,
                     fastest->name, fastest->poll_ms, load * 100.0);
    }
}
