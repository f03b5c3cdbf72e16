/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The uplink: the one thread that drains every bus's ring, turns samples into
 * ThingsBoard batches per device, keeps them in the spool until the Edge acknowledges
 * them, and runs one MQTT session per device (connect, subscribe, publish, reconnect,
 * provisioning), or in gateway mode (edge.gateway) one session that carries every device. Downlink messages arrive here too and are routed to the buses.
 *
 * Thread: uplink_new/start/stop/free on main; uplink_status and uplink_post on any.
 * uplink_start, not uplink_new, opens what lives under storage.path: on a reload the old
 * gateway keeps writing it until it has stopped.
 */
#ifndef TBGW_UPLINK_UPLINK_H
#define TBGW_UPLINK_UPLINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spool/spool.h"

struct config;
struct device;
struct ring;
struct event;

struct uplink;

struct uplink *uplink_new(const struct config *cfg, struct device **devices);
/* The eventfd that bus threads write after pushing samples. */
int uplink_wake_fd(const struct uplink *u);
/* Drain this ring too (one per bus). Before uplink_start. */
void uplink_add_ring(struct uplink *u, struct ring *r);

int uplink_start(struct uplink *u);
/* Drain what the buses produced, keep everything unacknowledged, disconnect. */
void uplink_stop(struct uplink *u);
struct uplink *uplink_free(struct uplink *u);

/* Gateway mode: the devices a reload removes (by name) leave the gateway's session
 * (v1/gateway/disconnect) when u stops; nobody else is disconnected. Thread: main, before
 * uplink_stop(). No effect in device mode. */
void uplink_gateway_leave(struct uplink *u, const char *const *names, size_t n);
/* A reload (reconfigure.c), on main. Before old's buses stop: the sessions of the devices
 * that d leaves unchanged stay up when old stops, and their messages from the Edge wait for
 * u. After it, before uplink_start(u) (u is
 * built from d's new configuration): u takes those sessions over with everything known
 * about them (client attributes sent, pacing, counters) and the events paho posted to old
 * for them meanwhile, so the Edge sees no new CONNECT. */
struct config_diff;
void uplink_keep_sessions(struct uplink *old, const struct config_diff *d);
void uplink_take_sessions(struct uplink *u, struct uplink *old, const struct config_diff *d);

/* Hand an event to the uplink thread (finished commands, control requests). */
void uplink_post(struct uplink *u, struct event *e);

struct uplink_status {
    size_t devices;
    size_t connected;
    size_t payload_refused;     /* devices whose profile refuses JSON uploads */
    uint64_t delivered_values;  /* values acknowledged by the Edge since start */
    uint64_t delivered_batches;
    uint64_t rejected_values;   /* values ThingsBoard could not store (NaN, > int64) */
    /* The spool's figures and the uplink's counters of the same instant (the last tick),
     * so that they add up: every sample taken from a ring is an attribute value, rejected,
     * delivered, batching or in the spool (tbgwctl status: "totals"). */
    struct spool_stats spool;
    struct uplink_accounting {
        uint64_t taken;            /* samples taken from the rings */
        uint64_t attribute_values; /* ... that went out as client attributes instead */
        uint64_t health_values;    /* tbgw_* values of the health telemetry */
        uint64_t rejected_values;
        uint64_t delivered_values;
        uint64_t batching_values;  /* values in batches not yet closed into the spool */
    } acct;
    uint64_t alive_ms;          /* monotonic time the thread last ran */
    /* Gateway mode (edge.gateway): one session carries every device. */
    bool gateway;
    bool gateway_connected;     /* its session is up */
    size_t announced;           /* devices announced in it (v1/gateway/connect) */
    uint64_t gateway_sessions;  /* its sessions established since start */
};

/* Thread: any. */
void uplink_status(struct uplink *u, struct uplink_status *ret);

/* Is device connected to the Edge? Thread: any. */
bool uplink_device_connected(struct uplink *u, size_t device);

struct uplink_device_status {
    bool connected;
    const char *state;      /* "connected", "connecting", "reconnecting", "refused", "halted";
                             * gateway mode: "announced", "announcing", "gateway offline" */
    const char *reason;     /* why halted or refused, or NULL */
    uint64_t delivered;     /* values acknowledged by the Edge */
    uint64_t backlog;       /* batches waiting in the spool */
    uint64_t sessions;      /* MQTT sessions established since start (first + reconnects) */
};

/* The reason a device whose every upload ThingsBoard refuses is given. */
#define PAYLOAD_REFUSED_TEXT \
    "ThingsBoard closed the session after telemetry: the device profile must use JSON payloads"

/* Thread: any. */
void uplink_device_status(struct uplink *u, size_t device, struct uplink_device_status *ret);

#endif
