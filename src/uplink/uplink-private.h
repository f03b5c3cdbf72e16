/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The uplink's state, shared by the files that run on the uplink thread. Nothing outside
 * src/uplink includes this: the downlink sees the uplink only through its port
 * (downlink/port.h).
 */
#ifndef TBGW_UPLINK_PRIVATE_H
#define TBGW_UPLINK_PRIVATE_H

#include <json-c/json.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "spool/spool.h"
#include "uplink/closewatch.h"
#include "uplink/events.h"
#include "uplink/outbox.h"
#include "tb/pacing.h"
#include "tb/tb-json.h"
#include "uplink/timers.h"
#include "uplink/uplink.h"
#include "util/complain.h"

struct credstore;
struct device;
struct gw_route;
struct up_gw;
struct ring;
struct downlink;
struct session;

enum conn_state {
    CS_WAIT,       /* disconnected, connecting again at retry_at_ms */
    CS_CONNECTING, /* CONNECT sent, no answer yet */
    CS_UP,         /* CONNACK 0 */
    CS_HALTED,     /* will not connect until reload (provisioning refused) */
};

struct up_creds {
    char *client_id;
    char *username;
    char *password;
};

struct up_dev {
    struct device *dev;
    const struct device_config *dc;
    struct session *sess;
    struct up_creds creds;
    enum conn_state state;
    _Atomic int public_state;     /* state, for other threads */
    _Atomic bool connected;
    _Atomic bool refused;         /* the last attempt got CONNACK 5/2/4 */
    _Atomic uint64_t sessions;    /* sessions established (CONNACK 0) since start */
    _Atomic uint64_t backlog;     /* spool batches, refreshed every tick */
    bool provisioning;            /* connected as "provision" */
    uint64_t provision_deadline_ms;
    char *halted_reason;
    uint64_t retry_at_ms, backoff_ms;
    uint64_t up_since_ms;         /* monotonic time of the last CONNACK */
    bool auth_logged;
    struct complain conn;
    struct tb_batch batch;        /* open telemetry batch */
    uint64_t batch_opened_ms;
    json_object *attrs;           /* every client attribute value known (NULL: none yet) */
    json_object *attrs_dirty;     /* changed since last published */
    unsigned inflight;            /* telemetry batches awaiting PUBACK */
    uint64_t ack_since_ms;        /* ... since this monotonic time with no PUBACK */
    struct complain ack;          /* the Edge takes batches but acknowledges none */
    unsigned window;              /* ... at most (the Edge's maxInflightMessages, or WINDOW) */
    /* Pacing below the Edge's rate limits (pacing.h), from edge.rate_limits or asked at
     * every connect (getSessionLimits). Until the first answer, telemetry waits up to
     * limits_deadline_ms. */
    struct pace_level pace;
    struct pace_ledger ledger;    /* what was sent, for limits learnt later */
    bool limits_known;
    uint64_t limits_deadline_ms;
    uint64_t paced_until_ms;      /* telemetry found no room: look again then */
    struct outbox held;           /* attributes and OTA state waiting for room */
    struct outbox held_msgs;      /* other messages (requests, client RPCs) waiting */
    bool lone_inflight;           /* a suspect batch is in flight alone (spool_batch_alone) */
    struct close_watch cw;        /* why ThingsBoard closes its sessions */
    _Atomic bool payload_refused; /* cw.flagged, for other threads */
    bool rejected_logged;
    _Atomic uint64_t delivered;   /* values acknowledged */
    /* health telemetry: counters at the previous report */
    uint64_t health_polls, health_failures, health_invalid;
    /* Scheduling (uplink.c): on the list of devices to serve in this pass; waiting for a
     * CONNECT slot. */
    bool ready, connq;
    uint32_t next_ready;
    /* Gateway mode (gw-session.c): announced with v1/gateway/connect in the gateway's current
     * session (state is CS_UP from then, CS_WAIT before); on the gateway's queue of devices
     * with something to send. */
    bool gw_queued;
    uint32_t gw_next;
    /* A reload hands the session to the next uplink (reconfigure.c): from now on messages
     * from the Edge wait for it, and stopping leaves the session connected. Set on main
     * before the buses stop. */
    _Atomic bool keep;
    /* ... and what the old downlink knew of it, for the new one (router_import()). */
    struct router_session *carried;
};

struct uplink {
    const struct config *cfg;
    struct up_dev *devs;
    size_t n_devs;
    struct ring **rings;
    size_t n_rings;
    int wake_fd;
    struct evq evq;
    struct spool *spool;
    struct credstore *creds;
    struct downlink *downlink;    /* router, OTA, clock check */
    pthread_t thread;
    bool started;
    _Atomic bool stop;
    _Atomic uint64_t alive_ms;
    _Atomic int n_connected;
    _Atomic uint64_t delivered_values, delivered_batches, rejected_values;
    uint64_t taken, attribute_values, health_values; /* uplink thread's own */
    pthread_mutex_t status_lock;
    struct spool_stats spool_snapshot;
    struct uplink_accounting acct_snapshot; /* of the same instant as spool_snapshot */
    struct complain edge_down;
    bool limits_logged;           /* the Edge's rate limits were logged once */
    struct pace_level tenant_pace; /* edge.rate_limits.tenant_*: all devices together */
    uint64_t next_tick_ms;
    uint64_t next_health_ms;
    /* Scheduling: the devices something happened to since the last pass (a list through
     * up_dev.next_ready), each device's next deadline, and the devices waiting for one
     * of the bounded CONNECT slots, in order. */
    uint32_t ready_head;
    struct timers timers;
    uint32_t *connq;
    size_t connq_head, connq_len;
    unsigned n_connecting;
    uint64_t batching_values; /* values in open batches */
    uint64_t rng;
    /* Gateway mode (edge.gateway): the one session that carries every device, or NULL in
     * device mode (one session per device). */
    struct up_gw *gw;
    struct gw_route *gw_route; /* its downlink side (gw-route.c) */
    /* Stopping for a reload: messages from the Edge for sessions that go on, left for the
     * next uplink's downlink (reconfigure.c), oldest first. */
    struct event *deferred, **deferred_tail;
};

#define WINDOW 4                  /* QoS 1 messages in flight per device */
#define PROVISION_TIMEOUT_MS 30000u

#define TOPIC_ATTRIBUTES "v1/devices/me/attributes"
#define TOPIC_PROVISION_RESPONSE "/provision/response"

/* uplink.c: the thread. Something happened to d: serve it in this pass (see serve()). */
void uplink_mark(struct uplink *u, struct up_dev *d);

/* connection.c: one device's session and its state machine. */
void conn_set_state(struct uplink *u, struct up_dev *d, enum conn_state st);
void conn_free_creds(struct up_creds *c);
void conn_resolve_creds(struct uplink *u, struct up_dev *d);
void conn_schedule_retry(struct uplink *u, struct up_dev *d, bool auth);
void conn_start_connect(struct uplink *u, struct up_dev *d);
void conn_on_connected(struct uplink *u, struct up_dev *d);
void conn_on_connect_failed(struct uplink *u, struct up_dev *d, int code, const char *text);
void conn_on_connection_lost(struct uplink *u, struct up_dev *d, const char *cause);
void conn_on_provision_response(struct uplink *u, struct up_dev *d, const char *payload,
                                size_t len);

/* limits.c: the Edge's rate limits. */
void limits_set_tenant(struct uplink *u);
void limits_set(struct uplink *u, struct up_dev *d, const char *msgs, const char *tmsgs,
                const char *points);
void limits_ask(struct uplink *u, struct up_dev *d);
/* A getSessionLimits answer (err < 0: none) for d; member names the limits that govern
 * d's session: "rateLimits" for a device, "gatewayRateLimits" for the gateway. */
void limits_apply(struct uplink *u, struct up_dev *d, int err, const char *payload, size_t len,
                  const char *member);
/* How long telemetry waits, after a session's first connect, for the Edge's limits. */
#define LIMITS_TIMEOUT_MS 3000u

/* publish.c: sending, pacing, acknowledgements. */
/* points: the data points ThingsBoard counts for it (0: a message without any). */
int pub_send(struct uplink *u, struct up_dev *d, const char *topic, const char *payload,
             size_t len, int qos, int *ret_token, uint32_t points);
/* Publish a JSON object on topic for d at the configured QoS (not tracked). 0 or -errno. */
int uplink_publish_json(struct uplink *u, struct up_dev *d, const char *topic, json_object *o);
void pub_attributes(struct uplink *u, struct up_dev *d, json_object *set);
void pub_gateway_attributes(struct uplink *u, struct up_dev *d);
void pub_pump(struct uplink *u, struct up_dev *d);
/* Until the Edge has told its limits (or the wait for them is over), what counts waits. */
bool pub_limits_pending(const struct up_dev *d, uint64_t now);
void pub_on_delivered(struct uplink *u, struct up_dev *d, int token);
void pub_on_delivery_failed(struct uplink *u, struct up_dev *d, int token);
/* A message without data points that was published directly (RPC answers, claims, OTA
 * chunk requests): ThingsBoard counts it against the device's and the tenant's limits. */
void uplink_count_message(struct uplink *u, struct up_dev *d);
/* Whether such a message fits the device's and the tenant's limits now; if not, *retry_at
 * is when to look again. */
bool uplink_message_fits(struct uplink *u, struct up_dev *d, uint64_t *retry_at);

/* batch.c: samples from the rings into batches. */
void batch_close(struct uplink *u, struct up_dev *d);
/* The latest instant d's open batch may stay open. */
uint64_t batch_deadline_ms(const struct uplink *u, const struct up_dev *d);
/* The most data points one message of d may carry: what one period of the limits that
 * govern it (d's or, in gateway mode, the gateway's, and the tenant's) admits; 0: any. */
uint32_t batch_points_cap(const struct uplink *u, const struct up_dev *d);
void batch_close_if_ready(struct uplink *u, struct up_dev *d, uint64_t now);
void batch_drain_rings(struct uplink *u);

/* health.c */
void health_tick(struct uplink *u, uint64_t now);

/* status.c: for uplink_status(), on the uplink thread. */
void status_snapshot(struct uplink *u);

/* gw-session.c: gateway mode (edge.gateway). One session, with the gateway device's
 * credentials, carries every device over ThingsBoard's gateway API (v1/gateway/...). Its
 * state machine is a device's (connection.c): the gateway is an up_dev of its own,
 * u->devs[u->n_devs], with a device_config built from edge.gateway, so backoff,
 * provisioning, pacing (from gatewayRateLimits) and the close watch are the same code.
 * A device is CS_UP while the gateway is up and the device has been announced in the
 * current session (v1/gateway/connect acknowledged). */
struct up_gw;

/* The gateway's own up_dev (its session, its limits), or NULL in device mode. */
struct up_dev *gw_self(const struct uplink *u);
/* Whether the gateway's session is up (CONNACK 0, not provisioning). */
bool gw_session_up(const struct uplink *u);
/* Whether device d is announced in the gateway's current session. */
bool gw_announced(const struct uplink *u, const struct up_dev *d);
/* Publish a ready text on the gateway's session, now and unpaced, counted against the
 * gateway's and the tenant's limits like any message (RPC replies, claims, attribute
 * requests). qos 0 or 1; *ret_token may be NULL. 0, -ENOTCONN without a session, or
 * -errno. Use uplink_message_fits(u, gw_self(u), …) first to keep below the limits. */
int gw_send(struct uplink *u, const char *topic, const char *payload, size_t len, int qos,
            int *ret_token);
/* Client attributes of device d (set stays the caller's): merged into what d has to
 * publish and sent in the next v1/gateway/attributes message that fits the gateway's
 * limits, grouped with other devices' (pub_attributes() comes here in gateway mode). */
void gw_pub_attributes(struct uplink *u, struct up_dev *d, json_object *set);

int gw_new(struct uplink *u);            /* uplink_new: edge.gateway set */
void gw_free(struct uplink *u);
void gw_on_connected(struct uplink *u);  /* the gateway's CONNACK 0 (not provisioning) */
/* The gateway's session ended; refused: ThingsBoard refuses its uploads (the close watch),
 * so no batch is to blame. */
void gw_on_lost(struct uplink *u, bool refused);
/* A message on the gateway's session: its own getSessionLimits answer, or the downlink's
 * (gw_route_downlink(), which also gets the device-mode answers v1/devices/me/rpc/response/+
 * the uplink did not ask for). */
void gw_on_message(struct uplink *u, const char *topic, const char *payload, size_t len);
void gw_on_delivered(struct uplink *u, int token);
void gw_on_delivery_failed(struct uplink *u, int token);
/* Device d has something to send (a closed batch, attributes): queue it for gw_pump(). */
void gw_want(struct uplink *u, struct up_dev *d);
/* Announce, then send what the queued devices have, as the window and pacing allow. */
void gw_pump(struct uplink *u);
/* A reload handed the gateway's session from old to u (reconfigure.c): carry on with it,
 * disconnecting the devices the reload removed and announcing those not announced. Thread: main, neither uplink running. */
void gw_resume(struct uplink *u, struct uplink *old);
/* Stopping: disconnect (v1/gateway/disconnect) the devices a reload removes. */
void gw_leave_publish(struct uplink *u);
/* Messages of the gateway awaiting a PUBACK. */
bool gw_inflight(const struct uplink *u);
size_t gw_announced_count(const struct uplink *u);
/* reconfigure.c: whether a stopping uplink leaves d's session up for the next one. */
bool uplink_hands_over(const struct up_dev *d);
/* Whether e is a message for such a session: then it is kept for the next uplink (taken;
 * not to be handled or freed), since the buses it may need are stopping. */
bool uplink_defer_event(struct uplink *u, struct event *e);
void uplink_free_deferred(struct uplink *u);

/* downlink-port.c: the downlink, talking to u through its port. */
struct downlink *port_downlink_new(struct uplink *u);

#endif
