/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The uplink's side of the downlink's port (downlink/port.h): the few things the router,
 * OTA and clock check may do with a device's session, each a thin call into the uplink.
 * The downlink never sees struct uplink; this file is where the two meet.
 *
 * Thread: uplink, but port_command_done, which runs on a bus thread and only posts an
 * event.
 */
#include "config.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdlib.h>

#include "downlink/port.h"
#include "downlink/router.h"
#include "uplink/events.h"
#include "uplink/gw-route.h"
#include "uplink/session.h"
#include "uplink/uplink-private.h"
#include "util/macros.h"

static enum dl_session port_session(void *ctx, uint32_t dev)
{
    const struct up_dev *d = &((struct uplink *)ctx)->devs[dev];

    if (d->state != CS_UP)
        return DL_DOWN;
    return d->provisioning ? DL_PROVISIONING : DL_UP;
}

static int port_publish(void *ctx, uint32_t dev, const char *topic, const void *payload,
                        size_t len)
{
    struct up_dev *d = &((struct uplink *)ctx)->devs[dev];

    if (d->state != CS_UP || !d->sess)
        return -ENOTCONN;
    return session_publish(d->sess, topic, payload, len, 1, NULL);
}

static int port_publish_json(void *ctx, uint32_t dev, const char *topic, json_object *o)
{
    struct uplink *u = ctx;

    return uplink_publish_json(u, &u->devs[dev], topic, o);
}

static void port_count_message(void *ctx, uint32_t dev)
{
    struct uplink *u = ctx;

    uplink_count_message(u, &u->devs[dev]);
}

static bool port_message_fits(void *ctx, uint32_t dev, uint64_t *retry_at)
{
    struct uplink *u = ctx;

    return uplink_message_fits(u, &u->devs[dev], retry_at);
}

/* Thread: the bus's. */
static void port_command_done(void *ctx, struct command *cmd)
{
    struct event *e = xcalloc(1, sizeof(*e));

    e->type = EV_COMMAND_DONE;
    e->cmd = cmd;
    uplink_post(ctx, e);
}

struct downlink *port_downlink_new(struct uplink *u)
{
    struct downlink_port port = {
        .ctx = u,
        .session = port_session,
        .publish = port_publish,
        .publish_json = port_publish_json,
        .count_message = port_count_message,
        .message_fits = port_message_fits,
        .command_done = port_command_done,
    };
    struct device **devices = xcalloc(u->n_devs ? u->n_devs : 1, sizeof(*devices));
    struct downlink *dl;

    if (u->gw)
        gw_route_port(u, &port); /* every device on the gateway's session */
    for (size_t i = 0; i < u->n_devs; i++)
        devices[i] = u->devs[i].dev;
    dl = downlink_new(u->cfg, devices, &port);
    free(devices);
    return dl;
}
