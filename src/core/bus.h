/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A bus: one serial port or one TCP endpoint, its devices, and the one thread that talks
 * to them. Nothing else touches the port: reads are scheduled here, writes and on-demand
 * reads arrive as commands (src/core/command.h) and run between two transactions, never
 * during one, also between the transactions of one poll (bus_yield).
 *
 * Thread: bus_new/bus_adopt/bus_start/bus_stop/bus_free on main; bus_submit on any thread; the
 * bus_* helpers for drivers on the bus thread only.
 */
#ifndef TBGW_CORE_BUS_H
#define TBGW_CORE_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/device.h"
#include "core/plan.h"
#include "core/report.h"
#include "util/complain.h"

struct bus;
struct command;
struct ring;

/* Per-device state private to the bus thread. */
struct bus_device {
    struct device *dev;
    uint32_t id;                   /* position in the bus */
    struct poll_group *groups;     /* Modbus read plans by poll period, fastest first */
    size_t n_groups;               /* at least 1 (an empty plan for a device without tags) */
    struct plan *plan;             /* the plan of the poll in progress */
    struct report_policy *policy;  /* per key; NULL entries use the device's policy */
    struct report_state *state;    /* per key */
    size_t n_state;
    bool *warned;                  /* per key: a decode problem was logged */
    bool *unreadable;              /* per key: refused with an exception (logged) until read */
    int64_t poll_ts;               /* wall-clock time of the poll in progress */
    uint64_t backoff_ms;           /* 0 while the device answers */
    bool overrun_logged;
    bool identify_due;             /* identify = true: read the identification (new link) */
    struct complain fail;
    void *driver_data;             /* the driver's per-device state, if it needs one */
};

/* devices: the bus's devices (in config order); wake_fd: eventfd of the ring consumer. */
struct bus *bus_new(const struct bus_config *cfg, struct device **devices, size_t n,
                    int wake_fd);
/* A reload: a bus like bus_new()'s that takes over old's port or connection (old has stopped
 * with bus_stop_keep_link() and has the same transport settings; its driver state is
 * consumed), and old's figures. keep_state[i]: devices[i] is unchanged, has the key table of
 * old's device of that name, and keeps its report state (last values, heartbeats) and, on
 * a link that stays up, its identification. Without
 * the driver's adopt hook, the bus opens a new link. NULL (logged) on failure. */
struct bus *bus_adopt(const struct bus_config *cfg, struct device **devices, size_t n,
                      int wake_fd, struct bus *old, const bool *keep_state);
int bus_start(struct bus *b);
/* Stop the thread after the transaction in flight; close the port. */
void bus_stop(struct bus *b);
/* Stop the thread, leaving the port or connection open for bus_adopt(). */
void bus_stop_keep_link(struct bus *b);
/* A reload: b (not started) goes on with the counters and poll durations of old (stopped),
 * the bus of the same name, so that status and Prometheus see one bus, not two. */
void bus_continue_figures(struct bus *b, const struct bus *old);
struct bus *bus_free(struct bus *b);

const char *bus_name(const struct bus *b);
struct ring *bus_ring(struct bus *b);

/* Queue a command for the bus thread (see command.h for ownership). -EAGAIN when the
 * bus's queue is full, -ESHUTDOWN when it is stopping. Thread: any. */
int bus_submit(struct bus *b, struct command *cmd);

/* Monotonic time the thread last made progress (watchdog). Thread: any. */
uint64_t bus_alive_ms(const struct bus *b);

/* Counters for status. Thread: any. */
bool bus_connected(const struct bus *b);
/* "waiting for a connection on ADDR:PORT" while a listening bus has no peer, else NULL.
 * Any thread. */
const char *bus_waiting(const struct bus *b);
uint64_t bus_requests(const struct bus *b);
uint64_t bus_errors(const struct bus *b);
struct histogram_snapshot;
/* Durations of poll cycles (whether the device answered or not). Thread: any. */
void bus_poll_latency(const struct bus *b, struct histogram_snapshot *ret);
/* Microseconds the bus spent in polls and commands since it started. Thread: any. */
uint64_t bus_busy_us(const struct bus *b);

/* ---- for drivers (bus thread only) ---- */

const struct bus_config *bus_config(const struct bus *b);
size_t bus_n_devices(const struct bus *b);
struct bus_device *bus_device(struct bus *b, size_t i);

/* Mark progress and count one transaction (ok = it got an answer; an answer also ends an
 * outage of the link). */
void bus_transaction(struct bus *b, struct bus_device *bd, bool ok);

/* Decode the tags of plan block i from what was read and hand the reportable values to the
 * uplink. regs for register tables, bits (one byte per bit) for coil/discrete. */
void bus_emit_block(struct bus *b, struct bus_device *bd, size_t i, const uint16_t *regs,
                    const uint8_t *bits);

/* One value of a text sensor (key interned in the device's key table). v is consumed. */
void bus_emit_value(struct bus *b, struct bus_device *bd, const char *key, struct value *v);

/* Plan block i was refused as a whole (exception 2): split it for good, log once. */
void bus_split_block(struct bus *b, struct bus_device *bd, size_t i, int err);

/* A single-tag read was refused: log once per tag. */
void bus_tag_failed(struct bus *b, struct bus_device *bd, size_t i, int err);

/* Run the commands that are waiting (a write, an on-demand read) now, between two
 * transactions of a poll, so that they wait for at most the transaction in flight. Returns
 * 0 to go on with the poll, or -EINTR when the poll must end here (the bus is stopping or
 * paused, or a command lost the link); the driver returns that from poll(). */
int bus_yield(struct bus *b);

/* A device that talks on its own (a streaming sensor) was heard from: if it was backed
 * off as silent, it is active again now rather than at its next scheduled check. */
void bus_device_answered(struct bus *b, struct bus_device *bd);

bool bus_stopping(const struct bus *b);

#endif
