/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The driver contract: how a kind of bus is opened, polled and commanded.
 *
 * Every callback runs on the bus's own thread, so a driver takes no locks and owns its
 * state (the libmodbus context, the serial fd) outright. The bus owns everything else:
 * scheduling, retries of the link, device backoff, decoding, report strategies and the
 * hand-off to the uplink. Drivers reach the core only through the bus_* helpers in
 * src/core/bus.h.
 *
 * Adding a driver takes one .c file, one line in drivers/registry.c, one line in
 * Makefile.am, a section in tbgw.conf(5) and a test against a fake peer.
 */
#ifndef TBGW_DRIVERS_DRIVER_H
#define TBGW_DRIVERS_DRIVER_H

#include "config/config.h"

struct bus;
struct bus_device;
struct command;
struct device_ident;

struct driver {
    enum driver_kind kind;

    /* Allocate the driver's state for bus; no I/O yet. Returns 0 or -errno. */
    int (*open)(struct bus *bus, void **ret_state);
    /* Release everything (also disconnects). Accepts NULL. */
    void (*close)(void *state);
    /* Optional, for a reload: like open, but take over old_state's port or connection (and
     * listening socket) as it is, open or not, with bus's timeout, retries and pause between
     * frames. old_state is a stopped bus's of the same driver and port or connection
     * settings; it is consumed. Returns 0 or -errno. */
    int (*adopt)(struct bus *bus, void *old_state, void **ret_state);

    /* Open the port / connect the socket. 0 or -errno; the bus retries with backoff.
     * -EAGAIN on a bus with listen = {…}: no peer has dialled in yet (the bus shows that it
     * is waiting, and looks again every second). */
    int (*connect)(void *state);
    void (*disconnect)(void *state);

    /* Read what the device needs read now and hand the values to bus_emit_*(). Returns 0,
     * -errno for a failure of this device (it is backed off), or -ENOTCONN when the link
     * itself is gone (the bus disconnects and reconnects with backoff). A device's timeout
     * or exception must leave the link open: other devices share it. */
    int (*poll)(void *state, struct bus_device *bd);

    /* Execute a CMD_READ/CMD_WRITE for bd. Returns 0 or -errno (also stored in cmd). */
    int (*execute)(void *state, struct bus_device *bd, struct command *cmd);

    /* Optional: read the device's identification (Modbus 43/14) into id. 0 or -errno;
     * -EOPNOTSUPP for a driver or device that has none. */
    int (*identify)(void *state, struct bus_device *bd, struct device_ident *id);

    /* Optional: a fd that becomes readable when the peer talks unasked (a streaming
     * serial sensor), or that the driver watches between requests (a Modbus connection,
     * to drop stray bytes and notice its end); -1 when there is none. on_event is then
     * called on the bus thread; -ENOTCONN from it: the link is gone. */
    int (*event_fd)(void *state);
    int (*on_event)(void *state);
};

/* The driver for kind. */
const struct driver *driver_for(enum driver_kind kind);

/* Error text for -errno values and libmodbus exception codes alike. */
const char *driver_strerror(int errnum);

/* True for errors that mean the link (port, socket) is gone rather than the device. */
bool driver_link_error(int err);

#endif
