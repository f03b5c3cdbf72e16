/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A reload without new sessions: the MQTT sessions of the devices a reload leaves
 * unchanged go from the stopping uplink to the one built from the new file.
 *
 * The old uplink stops as always (its rings drained, every batch closed and kept in the
 * spool file, which the new uplink opens again), except that the sessions it hands over
 * stay connected. The new uplink takes each of them with the device's session state: the
 * client attributes known and sent, pacing and the Edge's limits, the close watch, the
 * counters. Batches that were in flight are in the spool file as unacknowledged and go
 * again; an acknowledgement of the old session that arrives later finds no batch and is
 * ignored (publish.c).
 *
 * Events: a paho callback posts under the session's lock (session.c), so each event of a
 * handed-over session is either in the old uplink's queue under the old device number, or,
 * after session_move(), in the new one under the new number. The old queue's events of
 * those sessions are moved in front of the new queue's, renumbered; nothing paho said is
 * lost or reordered (a shared-attribute push, an RPC request, a lost connection). Messages
 * from the Edge that reach the old uplink once the reload has begun are not routed by it
 * (the buses they may need are stopping: a write would be refused) but deferred, and go
 * first. What the old router had already sent to a bus runs before that bus stops
 * (bus_stop_keep_link).
 *
 * Gateway mode: the gateway's session is handed over like a device's (unless the edge
 * settings changed), and with it each unchanged device's announcement, so ThingsBoard sees
 * neither a new CONNECT nor a device connect again; the new uplink disconnects the devices
 * the reload removed and announces the added and changed ones (gw_resume()).
 *
 * Not handed over: a device halted until a reload (refused provisioning: the reload is the
 * user's way to try again), and every device when edge or storage settings change
 * (config_diff says restart_all, so no device is unchanged).
 *
 * Invariants: a session belongs to exactly one uplink; the old uplink frees what the new
 * one did not take.
 *
 * Thread: main, while neither uplink's thread runs (the old one has stopped, the new one
 * has not started); uplink_keep_sessions() before the old one's buses stop;
 * uplink_defer_event() on the old uplink's thread.
 */
#include "config.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "config/diff.h"
#include "downlink/router.h"
#include "uplink/gw-route.h"
#include "uplink/session.h"
#include "uplink/uplink-private.h"
#include "util/macros.h"

#define NOT_KEPT UINT32_MAX

bool uplink_hands_over(const struct up_dev *d)
{
    return atomic_load(&d->keep) && d->state != CS_HALTED;
}

/* Device numbers with a session: the devices, and in gateway mode the gateway after them. */
static size_t n_sessions(const struct uplink *u)
{
    return u->n_devs + (u->gw ? 1 : 0);
}

bool uplink_defer_event(struct uplink *u, struct event *e)
{
    if (e->type != EV_MESSAGE || e->device >= n_sessions(u) ||
        !uplink_hands_over(&u->devs[e->device]))
        return false;
    e->next = NULL;
    if (!u->deferred)
        u->deferred_tail = &u->deferred;
    *u->deferred_tail = e;
    u->deferred_tail = &e->next;
    return true;
}

void uplink_free_deferred(struct uplink *u)
{
    while (u->deferred) {
        struct event *next = u->deferred->next;
        event_free(u->deferred);
        u->deferred = next;
    }
}

void uplink_keep_sessions(struct uplink *old, const struct config_diff *d)
{
    for (size_t i = 0; i < d->n_devices; i++)
        if (d->devices[i].change == CHANGE_NONE)
            atomic_store(&old->devs[d->devices[i].old->index].keep, true);
    /* In gateway mode every device rides on the gateway's session: it goes on unless the
     * edge settings (its credentials among them) changed. */
    if (old->gw && !d->restart_all)
        atomic_store(&gw_self(old)->keep, true);
}

/* n gets o's session and everything known about it; o gets n's fresh state, which
 * uplink_free() releases with the old uplink. */
static void take(struct uplink *u, struct up_dev *n, struct up_dev *o, uint32_t index)
{
    struct up_dev fresh = *n;
    struct device *odev = o->dev;
    const struct device_config *odc = o->dc;
    enum conn_state st = o->state;

    *n = *o;
    *o = fresh;
    /* Each keeps its identity: n is the new configuration's device. */
    n->dev = fresh.dev;
    n->dc = fresh.dc;
    o->dev = odev;
    o->dc = odc;
    /* The old uplink's scheduling and its batches in flight stay behind: those batches are
     * in the spool file, unacknowledged, and are sent again. */
    n->ready = n->connq = false;
    n->next_ready = 0;
    n->gw_queued = false;
    n->gw_next = 0;
    n->inflight = 0;
    n->lone_inflight = false;
    n->ack = (struct complain){0};
    atomic_store(&n->keep, false);
    atomic_store(&n->backlog, 0);
    /* In u's counts of connected and connecting devices. */
    n->state = CS_WAIT;
    atomic_store(&n->connected, false);
    conn_set_state(u, n, st);
    /* A device of a gateway session has none of its own: what it keeps is its place on
     * the gateway's (announced or not), its attributes and its share of the limits. */
    if (n->sess)
        session_move(n->sess, index, &u->cfg->edge, &u->evq);
}

/* The events old deferred or still holds for the sessions u took, in front of u's own.
 * paho's threads post to u's queue from session_move() on, so the old events go in front
 * in one step (evq_prepend): nothing paho said is reordered. */
static void take_events(struct uplink *u, struct uplink *old, const uint32_t *map)
{
    struct event *e = old->deferred, *head = NULL, **tail = &head;

    if (old->deferred_tail)
        *old->deferred_tail = evq_take(&old->evq);
    else
        e = evq_take(&old->evq);
    old->deferred = NULL;
    old->deferred_tail = NULL;
    while (e) {
        struct event *next = e->next;
        bool of_session = e->type != EV_COMMAND_DONE && e->type != EV_CONTROL;

        if (of_session && e->device < n_sessions(old) && map[e->device] != NOT_KEPT) {
            e->device = map[e->device];
            e->next = NULL;
            *tail = e;
            tail = &e->next;
        } else {
            event_free(e);
        }
        e = next;
    }
    evq_prepend(&u->evq, head);
}

void uplink_take_sessions(struct uplink *u, struct uplink *old, const struct config_diff *d)
{
    uint32_t *map = xcalloc(n_sessions(old) + 1, sizeof(*map));
    struct up_dev *ogw = gw_self(old);
    bool gateway = u->gw && ogw && uplink_hands_over(ogw) && ogw->sess;

    for (size_t i = 0; i < n_sessions(old); i++)
        map[i] = NOT_KEPT;
    for (size_t i = 0; i < d->n_devices; i++) {
        const struct device_diff *dd = &d->devices[i];
        struct up_dev *o;

        if (dd->change != CHANGE_NONE)
            continue;
        o = &old->devs[dd->old->index];
        if (!uplink_hands_over(o) || !(o->sess || gateway))
            continue;
        take(u, &u->devs[dd->new->index], o, (uint32_t)dd->new->index);
        u->devs[dd->new->index].carried =
            router_export(old->downlink, (uint32_t)dd->old->index);
        map[dd->old->index] = (uint32_t)dd->new->index;
    }
    if (gateway) {
        take(u, gw_self(u), ogw, (uint32_t)u->n_devs);
        map[old->n_devs] = (uint32_t)u->n_devs;
        gw_resume(u, old);
        gw_route_carry(u, old);
    }
    take_events(u, old, map);
    free(map);
}
