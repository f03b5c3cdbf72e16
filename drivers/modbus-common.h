/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What the Modbus RTU and TCP drivers share: one libmodbus context per bus, the read plan
 * execution with retries, exception-2 splitting, and command execution. The two driver
 * files only create the context and add what is particular to their transport.
 *
 * Thread: the bus thread (the context has exactly one owner; libmodbus has no locks).
 */
#ifndef TBGW_DRIVERS_MODBUS_COMMON_H
#define TBGW_DRIVERS_MODBUS_COMMON_H

#include <modbus.h>
#include <stdbool.h>
#include <stdint.h>

struct bus;
struct bus_device;
struct command;

struct mb {
    struct bus *bus;
    const struct bus_config *cfg;
    modbus_t *ctx;
    bool rtu;
    bool connected;
    uint64_t last_end_us; /* end of the last transaction (RTU silent interval) */
    uint32_t gap_us;      /* RTU: 3.5 character times + inter_frame_ms */
};

/* Common settings on a new context; takes ownership of ctx. Returns 0 or -errno. */
int mb_init(struct mb *mb, struct bus *bus, modbus_t *ctx, bool rtu);

void mb_close(void *state);
int mb_connect(void *state);
void mb_disconnect(void *state);
int mb_poll(void *state, struct bus_device *bd);
int mb_execute(void *state, struct bus_device *bd, struct command *cmd);
struct device_ident;
int mb_identify(void *state, struct bus_device *bd, struct device_ident *id);

/* The Modbus RTU silent interval in microseconds for a serial line. */
uint32_t mb_rtu_silent_interval_us(int baud, int data_bits, int parity, int stop_bits);

#endif
