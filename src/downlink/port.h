/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What the downlink needs from the uplink, and all it ever sees of it: whether a device's
 * session is up, a way to send on it, and the Edge's rate limits. The uplink fills in one
 * struct downlink_port and hands it to downlink_new(); the downlink never reads the
 * uplink's state, so imports run one way: the uplink knows the router (router.h), the
 * router knows only this port.
 *
 * Devices are named by their index in the configuration (device_config.index).
 *
 * Thread: every callback is called on the uplink thread, but command_done, which a bus
 * thread calls.
 */
#ifndef TBGW_DOWNLINK_PORT_H
#define TBGW_DOWNLINK_PORT_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct command;

enum dl_session {
    DL_DOWN,         /* no session */
    DL_PROVISIONING, /* connected as "provision", not yet as the device */
    DL_UP,           /* connected with the device's own credentials */
};

struct downlink_port {
    void *ctx; /* passed to every callback */
    enum dl_session (*session)(void *ctx, uint32_t dev);
    /* Send a ready text at QoS 1 now, unpaced and not counted (RPC answers, claims, OTA
     * chunk requests cannot wait). 0, or -ENOTCONN without a session, or -errno. */
    int (*publish)(void *ctx, uint32_t dev, const char *topic, const void *payload, size_t len);
    /* Send o at the configured QoS, paced below the Edge's rate limits: it may wait in the
     * device's outbox until it fits. 0, or -ENOTCONN unless DL_UP. o stays the caller's. */
    int (*publish_json)(void *ctx, uint32_t dev, const char *topic, json_object *o);
    /* A message sent through publish(): the Edge counts it against dev's and the tenant's
     * limits. */
    void (*count_message)(void *ctx, uint32_t dev);
    /* Whether one more such message fits the limits now; if not, *retry_at is when to look
     * again. */
    bool (*message_fits)(void *ctx, uint32_t dev, uint64_t *retry_at);
    /* A bus finished a command the router sent: hand it to the uplink thread, which gives
     * it back through router_command_done(). Thread: the bus's. */
    void (*command_done)(void *ctx, struct command *cmd);
};

#endif
