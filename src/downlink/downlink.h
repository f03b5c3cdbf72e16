/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The downlink's own state, shared by the files that serve it (router.c, ota.c,
 * timesync.c). Nothing outside src/downlink includes this; the uplink reaches the
 * downlink through router.h, and the downlink reaches the uplink only through its port
 * (port.h).
 *
 * Thread: uplink.
 */
#ifndef TBGW_DOWNLINK_DOWNLINK_H
#define TBGW_DOWNLINK_DOWNLINK_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "downlink/port.h"
#include "downlink/router.h"

struct device;
struct router;
struct ota;
struct timesync;

/* One field device as the downlink sees it. */
struct dl_dev {
    const struct device_config *dc;
    struct device *dev;
};

struct downlink {
    const struct config *cfg;
    struct downlink_port port;
    struct dl_dev *devs; /* by device_config.index */
    size_t n_devs;
    struct router *router;
    struct ota *ota;
    struct timesync *timesync;
};

static inline uint32_t dl_index(const struct dl_dev *d)
{
    return (uint32_t)d->dc->index;
}

static inline enum dl_session dl_session(struct downlink *dl, struct dl_dev *d)
{
    return dl->port.session(dl->port.ctx, dl_index(d));
}

static inline int dl_publish(struct downlink *dl, struct dl_dev *d, const char *topic,
                             const void *payload, size_t len)
{
    return dl->port.publish(dl->port.ctx, dl_index(d), topic, payload, len);
}

static inline int dl_publish_json(struct downlink *dl, struct dl_dev *d, const char *topic,
                                  json_object *o)
{
    return dl->port.publish_json(dl->port.ctx, dl_index(d), topic, o);
}

/* The same, taking o. */
static inline int dl_publish_json_take(struct downlink *dl, struct dl_dev *d, const char *topic,
                                       json_object *o)
{
    int r = dl_publish_json(dl, d, topic, o);

    json_object_put(o);
    return r;
}

static inline void dl_count_message(struct downlink *dl, struct dl_dev *d)
{
    dl->port.count_message(dl->port.ctx, dl_index(d));
}

static inline bool dl_message_fits(struct downlink *dl, struct dl_dev *d, uint64_t *retry_at)
{
    return dl->port.message_fits(dl->port.ctx, dl_index(d), retry_at);
}

/* A command of the gateway's own (the OTA runner pausing a bus): cb gets the finished
 * command. No deadline: the bus always answers. */
typedef void (*router_done_cb)(struct downlink *dl, struct dl_dev *d, struct command *cmd,
                               void *ctx);
int router_submit_internal(struct downlink *dl, struct dl_dev *d, struct command *cmd,
                           router_done_cb cb, void *ctx);

#endif
