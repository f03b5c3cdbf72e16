/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What a reload changes: the difference between the running configuration and a new one,
 * per bus and per device, so that a reload can keep what did not change (a bus's open
 * port or connection, a device's MQTT session) and restart, stop or start only the rest.
 *
 * Buses and devices are matched by name. A device's own settings (its unit id, tags,
 * credentials, report settings, …) are compared apart from its bus's transport: a
 * device whose settings are unchanged keeps its session even if its bus restarts (new
 * baud rate), while its polling restarts with the bus.
 *
 * Pure: reads both trees, keeps pointers into them (valid while both live). Thread: any.
 */
#ifndef TBGW_CONFIG_DIFF_H
#define TBGW_CONFIG_DIFF_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

enum config_change {
    CHANGE_NONE,    /* identical: keep it running as it is */
    CHANGE_RESTART, /* in both, different: stop the old one, start the new one */
    CHANGE_REMOVE,  /* only in the old configuration: stop it */
    CHANGE_ADD,     /* only in the new configuration: start it */
};

struct bus_diff {
    const struct bus_config *old, *new; /* NULL for ADD / REMOVE respectively */
    enum config_change change;
    /* RESTART only: the port or connection settings are the same (what changed is the bus's
     * devices, or its timeout, retries or pause between frames, which the new bus applies
     * to the link), so the open port or connection can be handed to the new bus. */
    bool same_transport;
};

struct device_diff {
    const struct device_config *old, *new;
    enum config_change change;
};

struct config_diff {
    /* Settings every session depends on (edge, storage) changed: everything restarts. */
    bool restart_all;
    struct bus_diff *buses; /* the new configuration's buses in order, then removed ones */
    size_t n_buses;
    struct device_diff *devices; /* likewise */
    size_t n_devices;
};

/* Fill ret (release with config_diff_free). 0. */
int config_diff(const struct config *old, const struct config *new, struct config_diff *ret);
void config_diff_free(struct config_diff *d);

const char *config_change_to_string(enum config_change c);

#endif
