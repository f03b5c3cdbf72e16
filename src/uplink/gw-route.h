/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Gateway mode's downlink half (edge.gateway): the one gateway session carries every
 * device's shared attributes, server RPC, attribute answers and claims on v1/gateway/...
 * topics. The device-mode router (downlink/router.h) stays as it is: this file translates
 * at its edges. A gateway downlink becomes the device-mode call the router already takes,
 * and what the router publishes through its port on device-mode topics becomes the
 * gateway message for the same device.
 *
 * Thread: uplink.
 */
#ifndef TBGW_UPLINK_GW_ROUTE_H
#define TBGW_UPLINK_GW_ROUTE_H

#include <stddef.h>

struct uplink;
struct downlink_port;

/* A message that arrived on the gateway session on a v1/gateway/... topic. Thread: uplink. */
void gw_route_downlink(struct uplink *u, const char *topic, const char *payload, size_t len);

/* The downlink_port callbacks (src/downlink/port.h) to use in gateway mode: every one that
 * reaches a session is replaced (command_done, which only hands a command to the uplink
 * thread, stays as the caller set it). */
void gw_route_port(struct uplink *u, struct downlink_port *port);

/* The route's state (uplink_free). */
void gw_route_free(struct uplink *u);
/* A reload handed the gateway's session from old to u: ids of attribute requests and
 * client RPCs go on from where old's were, so that an answer to one of old's is never
 * taken for one of u's. Thread: main, while neither uplink runs. */
void gw_route_carry(struct uplink *u, const struct uplink *old);

#endif
