/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * From the rings to batches: every sample a bus pushed is taken here, telemetry into the
 * device's open batch (tb-json.h), client attributes into its attribute set, and a batch
 * is closed into the spool when the device can send, when it is full or when it has aged.
 *
 * Invariant: batching_values counts the values in open batches, so the accounting in
 * tbgwctl status adds up (status.c).
 *
 * Thread: uplink (the rings' consumer side).
 */
#include "config.h"

#include <json-c/json.h>
#include <stdatomic.h>

#include "core/device.h"
#include "core/keytab.h"
#include "core/ring.h"
#include "core/sample.h"
#include "tb/tb-json.h"
#include "uplink/uplink-private.h"
#include "util/log.h"
#include "util/macros.h"
#include "util/time-util.h"

#define DRAIN_CHUNK 512

void batch_close(struct uplink *u, struct up_dev *d)
{
    size_t len;
    uint32_t n = (uint32_t)d->batch.n_values;
    int64_t first = d->batch.first_ts;
    char *text;

    if (tb_batch_empty(&d->batch))
        return;
    u->batching_values -= n;
    text = tb_batch_finish(&d->batch, &len);
    spool_append(u->spool, (uint32_t)d->dc->index, first, n, text, len);
}

/* When d's open batch must close at the latest: once it has aged half a commit interval,
 * and in any case at the first commit after it opened, so that a commit takes everything
 * read before it. That is what bounds the loss of a SIGKILL or a power cut to one
 * interval (and the poll in progress): a batch left open across a commit would be on disk
 * only at the one after. */
uint64_t batch_deadline_ms(const struct uplink *u, const struct up_dev *d)
{
    return MIN(d->batch_opened_ms + (uint64_t)u->cfg->storage.commit_interval_ms / 2,
               spool_commit_after(u->spool, d->batch_opened_ms));
}

/* A batch closes when the device can send it now, when it is full, or when its deadline
 * has come. A bus pushes a whole poll before it wakes the uplink, so "can send now" makes
 * one poll one message. */
void batch_close_if_ready(struct uplink *u, struct up_dev *d, uint64_t now)
{
    bool can_send;

    if (tb_batch_empty(&d->batch))
        return;
    can_send = d->state == CS_UP && !d->provisioning && d->inflight < d->window &&
               spool_next(u->spool, (uint32_t)d->dc->index) == NULL;
    if (can_send || d->batch.bytes >= TB_BATCH_SOFT_MAX || now >= batch_deadline_ms(u, d))
        batch_close(u, d);
}

static uint32_t min_cap(uint32_t a, uint32_t b)
{
    return !a ? b : !b ? a : MIN(a, b);
}

uint32_t batch_points_cap(const struct uplink *u, const struct up_dev *d)
{
    uint32_t cap = min_cap(pace_capacity(&d->pace.points), pace_capacity(&u->tenant_pace.points));

    /* In gateway mode the gateway's session carries the message, under its limits too. */
    return u->gw ? min_cap(cap, pace_capacity(&gw_self(u)->pace.points)) : cap;
}

/* Whether the open batch holds as many data points as a period of the device's or the
 * tenant's limit admits: more would be refused however long it waited. */
static bool batch_full_of_points(struct uplink *u, struct up_dev *d)
{
    uint32_t cap = batch_points_cap(u, d);

    return cap && d->batch.n_values >= cap;
}

static void take_sample(struct uplink *u, struct sample *s)
{
    struct up_dev *d;
    struct value v = sample_value(s);
    const char *key;

    if (s->device >= u->n_devs)
        goto out;
    d = &u->devs[s->device];
    uplink_mark(u, d);
    key = keytab_get(d->dev->keys, s->key);
    if (s->flags & SAMPLE_ATTRIBUTE) {
        json_object *jv = tb_json_value(&v);
        if (!jv) {
            atomic_fetch_add(&u->rejected_values, 1);
            goto out;
        }
        u->attribute_values++;
        if (!d->attrs) /* most devices have none: a thousand empty objects are 1 MiB */
            d->attrs = json_object_new_object();
        json_object_object_add(d->attrs, key, json_object_get(jv));
        if (!d->attrs_dirty)
            d->attrs_dirty = json_object_new_object();
        json_object_object_add(d->attrs_dirty, key, jv);
        goto out;
    }
    /* A message with more data points than the Edge takes in a period would be refused
     * however long it waited. */
    if (d->batch.bytes >= TB_BATCH_SOFT_MAX || batch_full_of_points(u, d))
        batch_close(u, d);
    if (tb_batch_empty(&d->batch))
        d->batch_opened_ms = now_ms();
    if (tb_batch_add(&d->batch, s->ts_ms, key, &v)) {
        u->batching_values++;
    } else {
        atomic_fetch_add(&u->rejected_values, 1);
        if (!d->rejected_logged) {
            d->rejected_logged = true;
            log_warning("device '%s': key '%s' has a value ThingsBoard cannot store (beyond "
                        "a signed 64-bit integer); such values are not sent",
                        d->dc->name, key);
        }
    }
out:
    value_clear(&v);
}

void batch_drain_rings(struct uplink *u)
{
    struct sample buf[DRAIN_CHUNK];

    for (size_t r = 0; r < u->n_rings; r++) {
        size_t n;
        while ((n = ring_pop(u->rings[r], buf, DRAIN_CHUNK)) > 0) {
            u->taken += n;
            for (size_t i = 0; i < n; i++)
                take_sample(u, &buf[i]);
            if (n < DRAIN_CHUNK)
                break;
        }
    }
}
