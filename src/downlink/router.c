/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include "core/command.h"
#include "downlink/router.h"
#include "uplink/uplink-private.h"
#include "util/log.h"

void router_init(struct uplink *u)
{
}

void router_free(struct uplink *u)
{
}

void router_connected(struct uplink *u, struct up_dev *d)
{
}

void router_disconnected(struct uplink *u, struct up_dev *d)
{
}

void router_message(struct uplink *u, struct up_dev *d, const char *topic, const char *payload,
                    size_t len)
{
    log_debug("device '%s': message on %s (%zu bytes)", d->dc->name, topic, len);
}

void router_command_done(struct uplink *u, struct command *cmd)
{
    command_free(cmd);
}

void router_control(struct uplink *u, struct event *e)
{
}

void router_tick(struct uplink *u, uint64_t now_ms)
{
}
