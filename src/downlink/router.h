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

/* A request from the control socket. */
void router_control(struct uplink *u, struct event *e);

/* Periodic work: timeouts. */
void router_tick(struct uplink *u, uint64_t now_ms);

#endif
