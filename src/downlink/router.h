/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The downlink router: messages from the Edge to a device (shared-attribute pushes,
 * attribute responses, server-side RPC, OTA chunks) checked against what the device's
 * configuration allows, turned into bus commands, and answered.
 *
 * Thread: uplink (called from its loop).
 */
#ifndef TBGW_DOWNLINK_ROUTER_H
#define TBGW_DOWNLINK_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include "downlink/port.h"

struct command;
struct config;
struct device;
struct downlink;
struct json_object;

/* The downlink of every configured device (devices[i] is device index i), talking to the
 * uplink through port (copied). Opens the OTA state under storage.path. */
struct downlink *downlink_new(const struct config *cfg, struct device **devices,
                              const struct downlink_port *port);
struct downlink *downlink_free(struct downlink *dl);

/* The device's session is up (after subscribing) / went down. */
void router_connected(struct downlink *dl, uint32_t dev);
void router_disconnected(struct downlink *dl, uint32_t dev);
/* The device's session was up before a reload and goes on in this new downlink: an OTA
 * outcome to report or a download to resume goes on as after a connect. Its shared
 * attributes are not asked for again once the ask at connect was answered: the session
 * received every push since (nothing is written to the hardware again). */
void router_resumed(struct downlink *dl, uint32_t dev);
/* A reload: what the old router knew of dev's session (whether the ask at connect was
 * answered, request ids, the answers kept against repeated RPC ids) goes to the new one
 * with the session. router_export() on the stopped old downlink; router_import() before
 * router_resumed() on the new one (takes s). Thread: main / the new uplink. */
struct router_session;
struct router_session *router_export(struct downlink *dl, uint32_t dev);
void router_import(struct downlink *dl, uint32_t dev, struct router_session *s);
struct router_session *router_session_free(struct router_session *s);

/* A message from the Edge for dev. */
void router_message(struct downlink *dl, uint32_t dev, const char *topic, const char *payload,
                    size_t len);

/* A bus finished a command the router sent (ownership returns here; see
 * downlink_port.command_done). */
void router_command_done(struct downlink *dl, struct command *cmd);

/* A request from the control socket that needs the device's session: what names it
 * ("claim"), payload is its message. reply(reply_ctx, 0 or -errno) is called before this
 * returns. */
void router_control(struct downlink *dl, uint32_t dev, const char *what, const char *payload,
                    size_t len, void (*reply)(void *ctx, int err), void *reply_ctx);

/* Periodic work: timeouts. */
void router_tick(struct downlink *dl, uint64_t now_ms);

/* Client-side RPC: send method(params) as dev and call cb with the answer (err 0), or with
 * -ETIMEDOUT / -ENOTCONN. */
typedef void (*router_client_cb)(struct downlink *dl, uint32_t dev, int err, const char *payload,
                                 size_t len, uint64_t rtt_ms, void *ctx);
int router_client_rpc(struct downlink *dl, uint32_t dev, const char *method,
                      struct json_object *params, unsigned timeout_ms, router_client_cb cb,
                      void *ctx);

#endif
