/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The uplink thread: its loop, its passes, and the uplink's life (new, start, stop, free).
 *
 * One loop, asleep in poll() on one eventfd until there is work (bus threads write it once
 * per poll; the event queue once per wake-up) or until the earliest deadline. A pass:
 *   1. take every event: connection outcomes, PUBACKs, downlink messages, finished commands;
 *   2. drain every ring (batch.c): telemetry samples go into the device's open batch,
 *      attribute samples into the device's attribute set;
 *   3. take the devices whose deadline has come from the timer heap (timers.h: one
 *      deadline per device: reconnect, batch age, pacing, provisioning, ack patience);
 *   4. serve each device that steps 1-3 touched, once: its due deadlines, closing its
 *      batch when it can send (so one poll is one message), is full, has aged or a commit
 *      is due, publishing the oldest unsent batches while fewer than WINDOW are in flight
 *      and pacing allows (publish.c); its next deadline goes back into the heap;
 *   5. when the spool has a commit due (commits fall on a grid of
 *      storage.commit_interval_ms, while anything in memory is not on disk): the commit,
 *      which takes every batch step 4 closed for it;
 *   6. every TICK_MS: downlink timers, health, the status snapshot.
 * A pass costs what changed: nothing walks every device on a timer. After a pass that took
 * samples the thread lingers LINGER_US, so that under load it wakes a bounded number of
 * times a second whatever the number of devices.
 *
 * The other files of src/uplink each do one job for this loop: connection.c (a device's
 * session and its state machine), limits.c (the Edge's rate limits), publish.c (sending,
 * pacing, acknowledgements), batch.c (samples into batches), health.c (health telemetry),
 * status.c (figures for other threads), downlink-port.c (what the downlink may use),
 * gw-session.c (gateway mode: one session for every device; the gateway is the last
 * up_dev, served last in each pass so that it sends what the devices queued together),
 * reconfigure.c (sessions handed from one uplink to the next on a reload). All
 * session state lives on this thread, so none of it needs a lock.
 *
 * Invariants: a device is on the ready list at most once per pass (up_dev.ready), and in
 * the CONNECT queue at most once (up_dev.connq); at most MAX_CONNECTING are connecting.
 *
 * Thread: the loop and everything it calls run on the uplink thread; uplink_new, start,
 * stop and free on main; uplink_post on any.
 */
#include "config.h"

#include <errno.h>
#include <json-c/json.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/device.h"
#include "downlink/router.h"
#include "tb/tb-json.h"
#include "uplink/credstore.h"
#include "uplink/events.h"
#include "uplink/gw-route.h"
#include "uplink/session.h"
#include "uplink/timers.h"
#include "uplink/uplink-private.h"
#include "util/fileio.h"
#include "util/log.h"
#include "util/macros.h"
#include "util/time-util.h"

/* The gateway-wide timers (spool commits, the downlink's deadlines, the status snapshot)
 * run this often; an idle uplink wakes for nothing else. */
#define TICK_MS 500u
/* CONNECTs in flight at once: a thousand devices come online in a few seconds without
 * the Edge seeing a thousand TLS handshakes in the same instant. */
#define MAX_CONNECTING 32u
#define NO_DEVICE UINT32_MAX
/* After a pass that took samples, the uplink lets the next ones gather this long before it
 * looks again: under load it then wakes at most this often, whatever the number of
 * devices, and each wake publishes every device whose poll completed meanwhile, one
 * message each, which paho's threads and the kernel also handle as one burst. It is the
 * most it adds to the latency from poll to Edge; an idle uplink sleeps until there is work. */
#define LINGER_US 20000u

/* Something happened to d: serve it in this pass (see serve()). */
void uplink_mark(struct uplink *u, struct up_dev *d)
{
    if (d->ready)
        return;
    d->ready = true;
    d->next_ready = u->ready_head;
    u->ready_head = (uint32_t)d->dc->index;
}

static void handle_event(struct uplink *u, struct event *e)
{
    struct up_dev *d;

    if (e->type == EV_COMMAND_DONE) {
        router_command_done(u->downlink, e->cmd);
        e->cmd = NULL;
        return;
    }
    if (e->type == EV_CONTROL) {
        router_control(u->downlink, e->device, e->topic, e->payload, e->len, e->reply,
                       e->reply_ctx);
        return;
    }
    if (e->device >= u->n_devs + (u->gw ? 1 : 0))
        return;
    d = &u->devs[e->device];
    uplink_mark(u, d);
    if (d == gw_self(u)) {
        /* The gateway's session: its acknowledgements and messages are every device's
         * (but the answer to its own provisioning). It has no spool queue of its own. */
        switch (e->type) {
        case EV_DELIVERED:
            gw_on_delivered(u, e->token);
            return;
        case EV_DELIVERY_FAILED:
            gw_on_delivery_failed(u, e->token);
            return;
        case EV_MESSAGE:
            if (d->provisioning)
                break;
            gw_on_message(u, e->topic, e->payload, e->len);
            return;
        default:
            break;
        }
    }
    switch (e->type) {
    case EV_CONNECTED:
        if (d->state == CS_CONNECTING)
            conn_on_connected(u, d);
        break;
    case EV_CONNECT_FAILED:
        if (d->state == CS_CONNECTING)
            conn_on_connect_failed(u, d, e->code, e->text);
        break;
    case EV_CONNECTION_LOST:
        conn_on_connection_lost(u, d, e->text);
        break;
    case EV_DELIVERED:
        pub_on_delivered(u, d, e->token);
        break;
    case EV_DELIVERY_FAILED:
        pub_on_delivery_failed(u, d, e->token);
        break;
    case EV_MESSAGE:
        if (d->provisioning) {
            if (strcmp(e->topic, TOPIC_PROVISION_RESPONSE) == 0)
                conn_on_provision_response(u, d, e->payload, e->len);
        } else {
            router_message(u->downlink, e->device, e->topic, e->payload, e->len);
        }
        break;
    case EV_SUBSCRIBED:
        if (e->code == 0x80)
            log_warning("device '%s': the edge refused a subscription; server-side RPC or "
                        "shared attributes will not reach it", d->dc->name);
        break;
    case EV_TLS_ERROR:
        log_debug("device '%s': TLS: %s", d->dc->name, e->text);
        break;
    default:
        break;
    }
}

static void handle_events(struct uplink *u)
{
    struct event *e = evq_take(&u->evq);

    while (e) {
        struct event *next = e->next;
        if (!uplink_defer_event(u, e)) {
            handle_event(u, e);
            event_free(e);
        }
        e = next;
    }
}

/* How long the Edge may sit on every PUBACK before that is worth a line in the log: one
 * keepalive interval, the time the link itself gets to show it is alive. A connection
 * that answers PINGREQ but acknowledges nothing stays up (ThingsBoard's queue may be
 * full); the window of unacknowledged batches stops sending, and the spool holds the rest. */
static uint64_t ack_patience_ms(const struct uplink *u)
{
    return u->cfg->edge.keepalive_s > 0 ? (uint64_t)u->cfg->edge.keepalive_s * 1000u : 60000u;
}

/* The earliest instant d needs the uplink without anything happening to it. */
static uint64_t next_deadline(const struct uplink *u, const struct up_dev *d, uint64_t now)
{
    uint64_t next = TIMERS_NEVER;

    if (d->state == CS_WAIT && !d->connq)
        next = MIN(next, d->retry_at_ms);
    if (d->state == CS_UP && d->provisioning && d->provision_deadline_ms)
        next = MIN(next, d->provision_deadline_ms);
    if (d->state == CS_UP && d->inflight && !d->ack.active)
        next = MIN(next, d->ack_since_ms + ack_patience_ms(u));
    if (!tb_batch_empty(&d->batch))
        next = MIN(next, batch_deadline_ms(u, d));
    if (d->paced_until_ms > now)
        next = MIN(next, d->paced_until_ms);
    if (!d->limits_known && d->limits_deadline_ms > now)
        next = MIN(next, d->limits_deadline_ms);
    return next;
}

static void connq_push(struct uplink *u, struct up_dev *d)
{
    if (d->connq)
        return;
    d->connq = true;
    u->connq[(u->connq_head + u->connq_len++) % u->n_devs] = (uint32_t)d->dc->index;
}

/* Hand the free CONNECT slots to the devices that have waited longest for one. */
static void connq_release(struct uplink *u)
{
    for (unsigned n = u->n_connecting; n < MAX_CONNECTING && u->connq_len; n++) {
        struct up_dev *d = &u->devs[u->connq[u->connq_head]];

        u->connq_head = (u->connq_head + 1) % u->n_devs;
        u->connq_len--;
        d->connq = false;
        uplink_mark(u, d);
    }
}

/* Gateway mode: a device has no session of its own. Its batch closes as in device mode,
 * and what it has to send joins the gateway's queue; the gateway sends it (gw_pump). */
static void serve_gw_device(struct uplink *u, struct up_dev *d, uint64_t now)
{
    uint32_t i = (uint32_t)d->dc->index;

    batch_close_if_ready(u, d, now);
    gw_want(u, d);
    atomic_store_explicit(&d->backlog, spool_pending(u->spool, i), memory_order_relaxed);
    timers_set(&u->timers, i, tb_batch_empty(&d->batch) ? TIMERS_NEVER : batch_deadline_ms(u, d));
}

/* Everything d needs now: its deadlines that have passed, closing its batch, publishing
 * what its window and pacing allow; then its next deadline goes into the heap. Only the
 * devices something happened to are served, so a pass costs what changed. */
static void serve(struct uplink *u, struct up_dev *d, uint64_t now)
{
    uint32_t i = (uint32_t)d->dc->index;
    bool is_gw = d == gw_self(u);

    if (u->gw && !is_gw) {
        serve_gw_device(u, d, now);
        return;
    }
    if (d->state == CS_WAIT && !d->connq && d->retry_at_ms <= now) {
        if (u->n_connecting < MAX_CONNECTING)
            conn_start_connect(u, d);
        else
            connq_push(u, d);
    }
    if (d->state == CS_UP && d->provisioning && d->provision_deadline_ms &&
        d->provision_deadline_ms <= now) {
        log_warning("device '%s': no answer to the provisioning request within %us; "
                    "asking again later (if ThingsBoard did create the device, it will "
                    "answer FAILURE)",
                    d->dc->name, PROVISION_TIMEOUT_MS / 1000);
        d->provision_deadline_ms = 0;
        session_disconnect(d->sess, 0);
        conn_schedule_retry(u, d, false);
    }
    if (d->state == CS_UP && d->inflight && !d->ack.active &&
        d->ack_since_ms + ack_patience_ms(u) <= now)
        complain(&d->ack, LOG_WARNING, 0, "device '%s': the edge has acknowledged "
                 "nothing for %llus; %u messages wait for it, and the data is kept",
                 d->dc->name, (unsigned long long)(now - d->ack_since_ms + 500) / 1000,
                 d->inflight);
    if (is_gw) {
        gw_pump(u); /* what every device queued in this pass, grouped */
    } else {
        batch_close_if_ready(u, d, now);
        pub_pump(u, d);
        /* An acknowledgement matters now only to a device whose window is full; the
         * others' wait for the next wake-up and retire together. */
        if (d->sess)
            session_wake_on_ack(d->sess, d->inflight >= d->window);
        atomic_store_explicit(&d->backlog, spool_pending(u->spool, i), memory_order_relaxed);
    }
    timers_set(&u->timers, i, next_deadline(u, d, now));
}

/* One pass: the devices whose deadline has come join those something happened to, and
 * each is served once. Returns when the uplink must look again at the latest. */
static uint64_t run_pass(struct uplink *u, uint64_t now)
{
    bool tick = now >= u->next_tick_ms;
    uint32_t i;

    while (timers_pop_due(&u->timers, now, &i))
        uplink_mark(u, &u->devs[i]);
    if (tick) {
        router_tick(u->downlink, now);
        health_tick(u, now);
        u->next_tick_ms = now + TICK_MS;
    }
    connq_release(u);
    while ((i = u->ready_head) != NO_DEVICE) {
        struct up_dev *d = &u->devs[i];

        u->ready_head = d->next_ready;
        d->ready = false;
        if (d != gw_self(u))
            serve(u, d, now);
    }
    /* The gateway last, once: it sends what the devices queued in this pass together. */
    if (u->gw)
        serve(u, gw_self(u), now);
    /* After the devices: the batches whose deadline was this commit have just closed. */
    spool_tick(u->spool, now);
    if (tick)
        status_snapshot(u); /* after the pass, so that the accounting adds up */
    return MIN(MIN(timers_next(&u->timers), u->next_tick_ms), spool_commit_due_ms(u->spool));
}

static void *uplink_thread(void *arg)
{
    struct uplink *u = arg;

    pthread_setname_np(pthread_self(), "tbgw/uplink");
    /* In gateway mode the gateway connects, its devices wait for their announcement. */
    for (size_t i = 0; i < u->n_devs + (u->gw ? 1 : 0); i++) {
        struct up_dev *d = &u->devs[i];

        /* A session taken over from before a reload (reconfigure.c) goes on as it is; so
         * does a device announced on a gateway session that was taken over. */
        if (d->carried) {
            router_import(u->downlink, (uint32_t)i, d->carried);
            d->carried = NULL;
        }
        if (d->state == CS_UP && !d->provisioning) {
            if (i < u->n_devs)
                router_resumed(u->downlink, (uint32_t)i);
        } else if (d->state != CS_UP && d->state != CS_CONNECTING) {
            d->retry_at_ms = now_ms();
            conn_set_state(u, d, CS_WAIT);
        }
        uplink_mark(u, d);
    }

    while (!atomic_load(&u->stop)) {
        struct pollfd p = {.fd = u->wake_fd, .events = POLLIN};
        uint64_t now = now_ms(), next, start = now_us(), taken = u->taken;
        eventfd_t v;

        atomic_store_explicit(&u->alive_ms, now, memory_order_relaxed);
        handle_events(u);
        batch_drain_rings(u);
        next = run_pass(u, now);
        if (u->taken != taken && !atomic_load(&u->stop))
            sleep_until_us(start + LINGER_US);
        /* Sleep until a bus, paho or a deadline has something; a stop request writes the
         * eventfd too. */
        now = now_ms();
        if (next > now && poll(&p, 1, (int)MIN(next - now, (uint64_t)1000)) > 0)
            eventfd_read(u->wake_fd, &v);
    }

    /* Stopping: the buses have stopped; take what they left, keep everything unsent. */
    handle_events(u);
    batch_drain_rings(u);
    for (size_t i = 0; i < u->n_devs; i++)
        batch_close(u, &u->devs[i]);
    /* Every acknowledgement wakes the thread now: the wait below ends with the last one
     * (a reload's pause in polling is this wait). */
    if (u->gw) {
        for (size_t i = 0; i < u->n_devs; i++)
            gw_want(u, &u->devs[i]);
        gw_pump(u);
        gw_leave_publish(u); /* a reload removed them: the only disconnects there are */
        if (gw_self(u)->sess)
            session_wake_on_ack(gw_self(u)->sess, true);
    } else {
        for (size_t i = 0; i < u->n_devs; i++) {
            pub_pump(u, &u->devs[i]);
            if (u->devs[i].sess)
                session_wake_on_ack(u->devs[i].sess, true);
        }
    }
    /* A moment for PUBACKs of what is in flight: saves resending it after a restart. */
    for (uint64_t deadline = now_ms() + 500; now_ms() < deadline;) {
        struct pollfd p = {.fd = u->wake_fd, .events = POLLIN};
        bool busy = gw_inflight(u);
        eventfd_t v;
        handle_events(u);
        for (size_t i = 0; i < u->n_devs; i++)
            busy |= u->devs[i].inflight > 0;
        if (!busy)
            break;
        if (poll(&p, 1, 50) > 0)
            eventfd_read(u->wake_fd, &v);
    }
    /* Everything unacknowledged, in flight or not, is on disk from here. */
    spool_flush(u->spool);
    status_snapshot(u); /* final: what a failed flush left unsaved is reported as lost */
    for (size_t i = 0; i < u->n_devs + (u->gw ? 1 : 0); i++) {
        struct up_dev *d = &u->devs[i];
        if (uplink_hands_over(d))
            continue;
        if (d->sess)
            session_disconnect(d->sess, 100);
        conn_set_state(u, d, CS_WAIT);
    }
    return NULL;
}

struct uplink *uplink_new(const struct config *cfg, struct device **devices)
{
    struct uplink *u = xcalloc(1, sizeof(*u));
    size_t n_all;

    u->cfg = cfg;
    u->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (u->wake_fd < 0) {
        log_error_errno(errno, "uplink: eventfd: %m");
        free(u);
        return NULL;
    }
    evq_init(&u->evq, u->wake_fd);
    pthread_mutex_init(&u->status_lock, NULL);
    u->rng = (uint64_t)now_us() ^ ((uint64_t)getpid() << 32) ^ 0x9e3779b97f4a7c15ull;
    u->n_devs = cfg->n_devices;
    n_all = u->n_devs + (cfg->edge.gateway ? 1 : 0); /* the gateway is the last */
    u->devs = xcalloc(n_all ? n_all : 1, sizeof(*u->devs));
    u->connq = xcalloc(n_all ? n_all : 1, sizeof(*u->connq));
    u->ready_head = NO_DEVICE;
    timers_init(&u->timers, n_all);
    if (cfg->edge.gateway)
        gw_new(u);
    for (size_t i = 0; i < n_all; i++) {
        struct up_dev *d = &u->devs[i];
        if (i < u->n_devs) {
            d->dev = devices[i];
            d->dc = devices[i]->cfg;
        }
        tb_batch_init(&d->batch);
        d->window = WINDOW;
        /* In gateway mode the edge's limits are the gateway session's. */
        if (cfg->edge.rate_limits_set && (!u->gw || d == gw_self(u)))
            limits_set(u, d, cfg->edge.rl_messages, cfg->edge.rl_telemetry_messages,
                       cfg->edge.rl_telemetry_datapoints);
        else if (u->gw && d != gw_self(u))
            d->limits_known = true; /* a device's data waits for the gateway's, not its own */
    }
    limits_set_tenant(u);
    return u;
}

/* What lives under storage.path (the spool, provisioned credentials, OTA state) is read
 * at start, not in uplink_new(): on a reload the new gateway is built while the old one
 * still runs, and the old one writes all of it until it has stopped. A spool opened
 * before the old one's last commit would count rows that commit deletes (the device then
 * waits forever for them) and hand out sequence numbers that commit uses (overwriting
 * batches). */
static void open_storage(struct uplink *u)
{
    const struct config *cfg = u->cfg;
    int r;

    if (u->spool)
        return;
    r = mkdir_p(cfg->storage.path, 0750);
    if (r < 0)
        log_error_errno(r, "storage '%s': cannot create it: %m; provisioned credentials and "
                           "the spool cannot be kept",
                        cfg->storage.path);
    u->creds = credstore_load(cfg->storage.path);
    u->spool = spool_open(cfg);
    for (size_t i = 0; i < u->n_devs + (u->gw ? 1 : 0); i++)
        if (!u->gw || &u->devs[i] == gw_self(u)) /* gateway mode: the gateway's only */
            conn_resolve_creds(u, &u->devs[i]);
    u->downlink = port_downlink_new(u);
}

int uplink_wake_fd(const struct uplink *u)
{
    return u->wake_fd;
}

void uplink_add_ring(struct uplink *u, struct ring *r)
{
    u->rings = xreallocarray(u->rings, u->n_rings + 1, sizeof(*u->rings));
    u->rings[u->n_rings++] = r;
}

int uplink_start(struct uplink *u)
{
    int r;

    open_storage(u);
    status_snapshot(u); /* a status asked before the first tick sees the spool as opened */
    atomic_store(&u->stop, false);
    atomic_store(&u->alive_ms, now_ms());
    r = pthread_create(&u->thread, NULL, uplink_thread, u);
    if (r != 0)
        return log_error_errno(r, "uplink: cannot start its thread: %m");
    u->started = true;
    return 0;
}

void uplink_stop(struct uplink *u)
{
    if (!u->started)
        return;
    atomic_store(&u->stop, true);
    eventfd_write(u->wake_fd, 1);
    pthread_join(u->thread, NULL);
    u->started = false;
}

struct uplink *uplink_free(struct uplink *u)
{
    if (!u)
        return NULL;
    uplink_stop(u);
    /* Sessions last: paho may still deliver callbacks until each client is destroyed. */
    for (size_t i = 0; i < u->n_devs + (u->gw ? 1 : 0); i++)
        u->devs[i].sess = session_free(u->devs[i].sess);
    u->downlink = downlink_free(u->downlink);
    gw_route_free(u);
    for (size_t i = 0; i < u->n_devs + (u->gw ? 1 : 0); i++) {
        struct up_dev *d = &u->devs[i];
        tb_batch_clear(&d->batch);
        d->carried = router_session_free(d->carried);
        json_object_put(d->attrs);
        outbox_clear(&d->held);
        outbox_clear(&d->held_msgs);
        json_object_put(d->attrs_dirty);
        conn_free_creds(&d->creds);
        free(d->halted_reason);
    }
    gw_free(u);
    free(u->devs);
    free(u->connq);
    timers_free(&u->timers);
    free(u->rings);
    spool_close(u->spool);
    credstore_free(u->creds);
    evq_destroy(&u->evq);
    uplink_free_deferred(u);
    pthread_mutex_destroy(&u->status_lock);
    close(u->wake_fd);
    free(u);
    return NULL;
}

void uplink_post(struct uplink *u, struct event *e)
{
    evq_post(&u->evq, e);
}
