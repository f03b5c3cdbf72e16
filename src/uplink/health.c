/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Health telemetry: every health.interval_s, each device's polling figures since the last
 * report, under tbgw_* keys, through the spool like any telemetry.
 *
 * Thread: uplink.
 */
#include "config.h"

#include <stdatomic.h>

#include "core/device.h"
#include "drivers/driver.h"
#include "tb/tb-json.h"
#include "uplink/uplink-private.h"
#include "util/clock.h"
#include "util/macros.h"

/* Every health.interval_s, each device reports how its polling went, as telemetry under
 * tbgw_* keys, so a dashboard can alarm on a dead sensor without extra rule chains. The
 * values go through the spool like any telemetry. */
void health_tick(struct uplink *u, uint64_t now)
{
    int64_t ts = clock_wall_ms();

    if (!u->cfg->health_interval_s)
        return;
    if (!u->next_health_ms) {
        u->next_health_ms = now + (uint64_t)u->cfg->health_interval_s * 1000u;
        return;
    }
    if (now < u->next_health_ms)
        return;
    u->next_health_ms = now + (uint64_t)u->cfg->health_interval_s * 1000u;
    for (size_t i = 0; i < u->n_devs; i++) {
        struct up_dev *d = &u->devs[i];
        struct device_stats *st = &d->dev->stats;
        uint64_t polls = atomic_load(&st->polls), failures = atomic_load(&st->failures);
        uint64_t invalid = atomic_load(&st->invalid);
        uint64_t dp = polls - d->health_polls, df = failures - d->health_failures;
        int err = atomic_load(&st->last_error);
        size_t before = d->batch.n_values;
        struct value v;

        d->health_polls = polls;
        d->health_failures = failures;
        if (tb_batch_empty(&d->batch))
            d->batch_opened_ms = now;
        v = (struct value){.kind = VK_DOUBLE, .d = dp ? (double)(dp - MIN(df, dp)) / (double)dp : 0.0};
        tb_batch_add(&d->batch, ts, "tbgw_poll_success_ratio", &v);
        v = (struct value){.kind = VK_INT, .i = (int64_t)dp};
        tb_batch_add(&d->batch, ts, "tbgw_polls", &v);
        v = (struct value){.kind = VK_INT, .i = (int64_t)df};
        tb_batch_add(&d->batch, ts, "tbgw_poll_failures", &v);
        v = (struct value){.kind = VK_INT,
                           .i = (int64_t)(atomic_load(&st->latency_us) + 500) / 1000};
        tb_batch_add(&d->batch, ts, "tbgw_latency_ms", &v);
        v = (struct value){.kind = VK_STRING, .s = (char *)(err ? driver_strerror(err) : "")};
        tb_batch_add(&d->batch, ts, "tbgw_last_error", &v);
        v = (struct value){.kind = VK_BOOL, .b = atomic_load(&st->active)};
        tb_batch_add(&d->batch, ts, "tbgw_active", &v);
        v = (struct value){.kind = VK_INT, .i = (int64_t)spool_pending(u->spool, (uint32_t)i)};
        tb_batch_add(&d->batch, ts, "tbgw_spool_backlog", &v);
        v = (struct value){.kind = VK_INT, .i = (int64_t)(invalid - d->health_invalid)};
        tb_batch_add(&d->batch, ts, "tbgw_invalid_values", &v);
        d->health_invalid = invalid;
        u->health_values += d->batch.n_values - before;
        u->batching_values += d->batch.n_values - before;
        uplink_mark(u, d);
    }
}
