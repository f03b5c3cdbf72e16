/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The downlink router: messages from the Edge to a device (shared-attribute pushes,
 * attribute responses, server-side RPC, OTA chunks) checked against what the device's
 * configuration allows, turned into bus commands, and answered.
 *
 * Thread: uplink (called from uplink.c's loop).
 */
#ifndef TBGW_DOWNLINK_ROUTER_H
#define TBGW_DOWNLINK_ROUTER_H

#include <stddef.h>
#include <stdint.h>

struct uplink;
struct up_dev;
struct command;
struct event;
struct json_object;

void router_init(struct uplink *u);
void router_free(struct uplink *u);

/* The device's session is up (after subscribing) / went down. */
void router_connected(struct uplink *u, struct up_dev *d);
void router_disconnected(struct uplink *u, struct up_dev *d);

/* A message from the Edge for d. */
void router_message(struct uplink *u, struct up_dev *d, const char *topic, const char *payload,
                    size_t len);

/* A bus finished a command the router sent (ownership returns here). */
void router_command_done(struct uplink *u, struct command *cmd);

/* A request from the control socket that needs the device's session (claiming). The
 * event carries its reply callback. */
void router_control(struct uplink *u, struct event *e);

/* Periodic work: timeouts. */
void router_tick(struct uplink *u, uint64_t now_ms);

/* Client-side RPC: send method(params) as d and call cb with the answer (err 0), or with
 * -ETIMEDOUT / -ENOTCONN. */
typedef void (*router_client_cb)(struct uplink *u, struct up_dev *d, int err, const char *payload,
                                 size_t len, uint64_t rtt_ms, void *ctx);
int router_client_rpc(struct uplink *u, struct up_dev *d, const char *method,
                      struct json_object *params, unsigned timeout_ms, router_client_cb cb,
                      void *ctx);

/* A command of the gateway's own (the OTA runner pausing a bus): cb gets the finished
 * command. No deadline: the bus always answers. */
typedef void (*router_done_cb)(struct uplink *u, struct up_dev *d, struct command *cmd, void *ctx);
int router_submit_internal(struct uplink *u, struct up_dev *d, struct command *cmd,
                           router_done_cb cb, void *ctx);

#endif
