/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Modbus RTU frames (unit, PDU, CRC-16) on a TCP connection: serial device servers (Moxa
 * NPort, USR-TCP232 …) and cellular DTUs in transparent mode, in front of an RS-485 line.
 * tbgw dials host:port, or with listen = {…} waits for the device server to dial in.
 *
 * libmodbus has no such backend, so the frames are ours (modbus-frame.c, modbus-link.c);
 * retries, plans and commands are modbus-common.c's like for every Modbus driver.
 * Thread: the bus thread.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>

#include "core/bus.h"
#include "drivers/driver.h"
#include "drivers/modbus-common.h"
#include "util/macros.h"

/* A device server behind a cellular link can take seconds to answer SYN. */
#define DIAL_TIMEOUT_MIN_MS 3000

static int dial(struct mb *mb)
{
    return tcp_dial(mb->cfg->host, mb->cfg->tcp_port, MAX(mb->cfg->timeout_ms, DIAL_TIMEOUT_MIN_MS));
}

static int rtutcp_open(struct bus *bus, void **ret_state)
{
    struct mb *mb = calloc(1, sizeof(*mb));
    int r;

    if (!mb)
        return -ENOMEM;
    mb_init_framed(mb, bus, false);
    mb->open_link = dial;
    r = mb_listen(mb);
    if (r < 0) {
        free(mb);
        return r;
    }
    *ret_state = mb;
    return 0;
}

const struct driver driver_modbus_rtu_tcp = {
    .kind = DRIVER_MODBUS_RTU_TCP,
    .open = rtutcp_open,
    MB_DRIVER_OPS,
};
