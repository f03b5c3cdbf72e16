/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Modbus ASCII on a serial port: ':' then unit, PDU and LRC in hex, then CR LF; commonly
 * 7E1 on older meters and PLCs, 8N1 works too. The serial settings are modbus-rtu's,
 * RS-485 direction control through RTS included (modbus-link.c drives it).
 *
 * libmodbus has no ASCII backend, so the frames are ours (modbus-frame.c, modbus-link.c);
 * retries, plans and commands are modbus-common.c's like for every Modbus driver. A port
 * that vanishes (USB adapter unplugged) reads as EIO or end of file: a link error, and
 * the bus re-opens it with backoff.
 * Thread: the bus thread.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>

#include "core/bus.h"
#include "drivers/driver.h"
#include "drivers/modbus-common.h"
#include "drivers/serial-port.h"

static int open_port(struct mb *mb)
{
    return serial_port_open(mb->cfg);
}

static int ascii_open(struct bus *bus, void **ret_state)
{
    struct mb *mb = calloc(1, sizeof(*mb));

    if (!mb)
        return -ENOMEM;
    mb_init_framed(mb, bus, true);
    mb->open_link = open_port;
    if (mb->cfg->rs485) {
        mb->link.rts = mb->cfg->rs485_rts;
        mb->link.rts_delay_us = mb->cfg->rs485_delay_us;
    }
    *ret_state = mb;
    return 0;
}

const struct driver driver_modbus_ascii = {
    .kind = DRIVER_MODBUS_ASCII,
    .open = ascii_open,
    MB_DRIVER_OPS,
};
