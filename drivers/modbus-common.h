/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What the Modbus drivers share: one link per bus (a libmodbus context, or for RTU over
 * TCP and ASCII a framed link of our own, modbus-link.c), the read plan execution with
 * retries, exception-2 splitting, and command execution. The driver files only set up
 * the link and add what is particular to their transport.
 *
 * Thread: the bus thread (the context has exactly one owner; libmodbus has no locks).
 */
#ifndef TBGW_DRIVERS_MODBUS_COMMON_H
#define TBGW_DRIVERS_MODBUS_COMMON_H

#include <modbus.h>
#include <stdbool.h>
#include <stdint.h>

#include "drivers/modbus-link.h"
#include "drivers/tcp-peer.h"

struct bus;
struct bus_device;
struct command;

struct mb {
    struct bus *bus;
    const struct bus_config *cfg;
    modbus_t *ctx;        /* NULL for a framed link */
    bool rtu;
    bool connected;
    uint64_t last_end_us; /* end of the last transaction (RTU silent interval) */
    uint32_t gap_us;      /* RTU: 3.5 character times + inter_frame_ms */

    /* Framed links: open_link returns the fd of a new connection or port (or -errno);
     * link.fd is closed here. */
    bool framed;
    struct mb_link link;
    int (*open_link)(struct mb *mb);

    /* listen = {…}: the peer dials in; listener.fd is -1 when tbgw dials out. */
    struct tcp_listener listener;
};

/* Common settings on a new libmodbus context; takes ownership of ctx. Returns 0 or -errno. */
int mb_init(struct mb *mb, struct bus *bus, modbus_t *ctx, bool rtu);

/* Common settings for a framed link (RTU frames on TCP, or ASCII). */
void mb_init_framed(struct mb *mb, struct bus *bus, bool ascii);

/* With listen = {…}: bind the listen socket now, so a port in use fails the start-up.
 * 0 (also when the bus dials out) or -errno, logged. */
int mb_listen(struct mb *mb);

/* The connection to poll through in listen mode: the newest one accepted. -EAGAIN while
 * none has arrived (the bus shows "waiting for a connection on …"). */
int mb_accept(struct mb *mb);

void mb_close(void *state);
int mb_adopt(struct bus *bus, void *old_state, void **ret_state);
int mb_connect(void *state);
void mb_disconnect(void *state);
int mb_poll(void *state, struct bus_device *bd);
int mb_event_fd(void *state);
int mb_on_event(void *state);
int mb_execute(void *state, struct bus_device *bd, struct command *cmd);
struct device_ident;
int mb_identify(void *state, struct bus_device *bd, struct device_ident *id);

/* The driver callbacks of a Modbus driver that only sets its link up in open(). */
#define MB_DRIVER_OPS                                                                        \
    .close = mb_close, .adopt = mb_adopt, .connect = mb_connect, .disconnect = mb_disconnect, .poll = mb_poll,  \
    .execute = mb_execute, .identify = mb_identify, .event_fd = mb_event_fd,              \
    .on_event = mb_on_event

/* The Modbus RTU silent interval in microseconds for a serial line. */
uint32_t mb_rtu_silent_interval_us(int baud, int data_bits, int parity, int stop_bits);

#endif
