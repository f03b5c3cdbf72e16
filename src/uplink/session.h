/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * One MQTT session to the Edge for one field device: a paho MQTTAsync client with that
 * device's own credentials. MQTT 3.1.1, clean session (ThingsBoard keeps no session state
 * anyway), paho's own reconnect and retry switched off: the uplink decides when to
 * reconnect, with backoff and jitter.
 *
 * Every paho callback only copies what it receives into an event for the uplink thread
 * (events.h) and returns.
 *
 * Thread: everything but the callbacks runs on the uplink thread (session_free also on
 * main after the uplink thread has ended).
 */
#ifndef TBGW_UPLINK_SESSION_H
#define TBGW_UPLINK_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

struct evq;
struct session;

struct session_creds {
    const char *username;  /* token, basic user name, or "provision" */
    const char *password;
    const char *cert_file; /* X.509 client certificate (with edge.tls) */
    const char *key_file;
};

/* paho's global state, for the whole process: session_library_init() before the first
 * session_new() (once; it may be called again), session_library_cleanup() after the
 * last session_free(), at exit. Thread: main. */
void session_library_init(void);
void session_library_cleanup(void);

/* A client for device number `device` (reported in its events). No I/O yet. Returns
 * NULL with a log line on failure. */
struct session *session_new(uint32_t device, const char *device_name, const char *client_id,
                            const struct edge_config *edge, struct evq *evq);
struct session *session_free(struct session *s);

/* A reload hands the session to another uplink: its events go to evq as device number
 * device from now on, and it connects to edge (equal to the one it was created for). Thread:
 * main, while no uplink thread uses the session. */
void session_move(struct session *s, uint32_t device, const struct edge_config *edge,
                  struct evq *evq);

const char *session_client_id(const struct session *s);

/* Start connecting; the outcome arrives as EV_CONNECTED or EV_CONNECT_FAILED. */
int session_connect(struct session *s, const struct session_creds *c);

/* Close the connection (DISCONNECT, waiting up to timeout_ms for in-flight sends). */
void session_disconnect(struct session *s, int timeout_ms);

/* Publish; *ret_token identifies the EV_DELIVERED/EV_DELIVERY_FAILED event to come.
 * Returns 0 or -errno (-ENOTCONN when not connected). */
int session_publish(struct session *s, const char *topic, const void *payload, size_t len,
                    int qos, int *ret_token);

/* Whether an acknowledgement (EV_DELIVERED) wakes the uplink thread. Off, it waits in the
 * event queue for the next wake-up: a device with room in its window and nothing more to
 * send has no use for it now, and PUBACKs then retire in batches. On by default. */
void session_wake_on_ack(struct session *s, bool on);

int session_subscribe(struct session *s, const char *topic, int qos);

#endif
