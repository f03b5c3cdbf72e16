/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The uplink's figures for other threads (control socket, sd_notify STATUS): counters kept
 * as atomics, and a snapshot of the spool and the accounting taken on the uplink thread
 * under status_lock, so that readers never touch the uplink's own state.
 *
 * Thread: status_snapshot on the uplink thread; the rest on any.
 */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "core/device.h"
#include "uplink/uplink-private.h"

/* For uplink_status(): the spool's figures and the counters of the values that went
 * through, taken together so that the accounting in tbgwctl status adds up. */
void status_snapshot(struct uplink *u)
{
    struct spool_stats st = spool_stats(u->spool);
    struct uplink_accounting a = {
        .taken = u->taken,
        .attribute_values = u->attribute_values,
        .health_values = u->health_values,
        .rejected_values = atomic_load(&u->rejected_values),
        .delivered_values = atomic_load(&u->delivered_values),
        .batching_values = u->batching_values,
    };

    pthread_mutex_lock(&u->status_lock);
    u->spool_snapshot = st;
    u->acct_snapshot = a;
    pthread_mutex_unlock(&u->status_lock);
}

void uplink_status(struct uplink *u, struct uplink_status *ret)
{
    memset(ret, 0, sizeof(*ret));
    ret->devices = u->n_devs;
    ret->connected = (size_t)atomic_load(&u->n_connected);
    for (size_t i = 0; i < u->n_devs; i++)
        ret->payload_refused += atomic_load(&u->devs[i].payload_refused);
    ret->delivered_values = atomic_load(&u->delivered_values);
    ret->delivered_batches = atomic_load(&u->delivered_batches);
    ret->rejected_values = atomic_load(&u->rejected_values);
    ret->alive_ms = atomic_load(&u->alive_ms);
    if (u->gw) {
        const struct up_dev *g = gw_self(u);

        ret->gateway = true;
        ret->gateway_connected = atomic_load(&g->public_state) == CS_UP && atomic_load(&g->connected);
        ret->announced = gw_announced_count(u);
        ret->gateway_sessions = atomic_load_explicit(&g->sessions, memory_order_relaxed);
    }
    pthread_mutex_lock(&u->status_lock);
    ret->spool = u->spool_snapshot;
    ret->acct = u->acct_snapshot;
    pthread_mutex_unlock(&u->status_lock);
}

bool uplink_device_connected(struct uplink *u, size_t device)
{
    return device < u->n_devs && atomic_load(&u->devs[device].connected);
}

void uplink_device_status(struct uplink *u, size_t device, struct uplink_device_status *ret)
{
    struct up_dev *d = &u->devs[device];
    int st = atomic_load(&d->public_state);

    memset(ret, 0, sizeof(*ret));
    ret->connected = st == CS_UP;
    ret->delivered = atomic_load_explicit(&d->delivered, memory_order_relaxed);
    ret->backlog = atomic_load_explicit(&d->backlog, memory_order_relaxed);
    ret->sessions = atomic_load_explicit(&d->sessions, memory_order_relaxed);
    if (u->gw) {
        /* A device of the gateway's session: announced in it, or waiting for it. */
        int gst = atomic_load(&gw_self(u)->public_state);

        ret->state = st == CS_UP ? "announced" : gst == CS_UP ? "announcing" : "gateway offline";
        return;
    }
    switch (st) {
    case CS_UP:
        ret->state = "connected";
        break;
    case CS_CONNECTING:
        ret->state = "connecting";
        break;
    case CS_HALTED:
        ret->state = "halted";
        ret->reason = d->halted_reason; /* set before the state was published */
        break;
    default:
        ret->state = atomic_load(&d->refused) ? "refused" : "reconnecting";
        if (atomic_load(&d->refused))
            ret->reason = "the edge refused the credentials";
        break;
    }
    if (atomic_load(&d->payload_refused))
        ret->reason = PAYLOAD_REFUSED_TEXT;
}
