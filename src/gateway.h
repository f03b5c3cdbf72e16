/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The running gateway: every component built from one struct config, started and stopped
 * in a fixed order. main.c owns one gateway at a time; a reload builds a new one, which
 * takes over what did not change from the old one (gateway_reload).
 *
 * Thread: main, except where noted.
 */
#ifndef TBGW_GATEWAY_H
#define TBGW_GATEWAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct config;
struct gateway;

/* Build the components (no threads yet). The gateway keeps a reference to cfg, which
 * must outlive it. Returns NULL with a log line on failure. */
struct gateway *gateway_new(const struct config *cfg);

/* The spool's quarantined batches (spool/inspect.h), or NULL with a message in err.
 * Thread: any. */
json_object *gateway_spool_json(struct gateway *g, char *err, size_t errlen);

/* Start threads and connections. Returns 0 or -errno (logged). */
int gateway_start(struct gateway *g);

/* Orderly stop: buses first, then drain what they produced, commit, disconnect. */
void gateway_stop(struct gateway *g);

struct gateway *gateway_free(struct gateway *g);

/* At exit, after the last gateway_free(): what the libraries keep for the whole process. */
void gateway_library_cleanup(void);

/* A reload to nc, whose difference from the running gateway's configuration is d: the
 * unchanged devices keep their MQTT sessions, the unchanged buses (and those whose only
 * change is their devices) their port or connection; the rest stops or starts. Everything
 * unsent is kept (the spool file), and the counters go on. The running gateway's
 * configuration must live until this returns; nothing points into it afterwards.
 * 0: *gp is the new gateway, running. -EINVAL: nc cannot be built; nothing changed.
 * -EIO: the old gateway has stopped and *gp, the new one, could not start (logged). */
struct config_diff;
int gateway_reload(struct gateway **gp, const struct config *nc, const struct config_diff *d);

/* True if every thread made progress recently (feeds the systemd watchdog). */
bool gateway_alive(struct gateway *g, unsigned long long max_age_ms);

/* One-line summary for sd_notify STATUS=. */
void gateway_status(struct gateway *g, char *buf, size_t size);

struct json_object;
struct device;
struct command;
struct event;

/* Everything tbgwctl status shows, as JSON (the caller owns it). Thread: main. */
struct json_object *gateway_status_json(struct gateway *g);

/* Everything above as Prometheus text format 0.0.4 (metrics/prom.h). Thread: main. */
void gateway_metrics(struct gateway *g, FILE *out);

/* The device called name, or NULL. */
struct device *gateway_device(struct gateway *g, const char *name);

/* Hand a command to the device's bus (see core/command.h). 0 or -errno. Thread: any. */
int gateway_submit(struct gateway *g, struct device *d, struct command *cmd);

/* Hand a request to the uplink thread (claiming). Thread: any. */
void gateway_post_uplink(struct gateway *g, struct event *e);

#endif
