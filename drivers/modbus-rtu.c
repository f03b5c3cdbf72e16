/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Modbus RTU on a serial port (RS-485 or RS-232), with optional RTS direction control.
 * Everything else is in modbus-common.c.
 */
#include "config.h"

#include <errno.h>
#include <modbus.h>
#include <stdlib.h>

#include "core/bus.h"
#include "drivers/driver.h"
#include "drivers/modbus-common.h"

static int rtu_open(struct bus *bus, void **ret_state)
{
    const struct bus_config *c = bus_config(bus);
    struct mb *mb = calloc(1, sizeof(*mb));
    int r;

    if (!mb)
        return -ENOMEM;
    r = mb_init(mb, bus, modbus_new_rtu(c->device, c->baud, (char)c->parity, c->data_bits,
                                        c->stop_bits),
                true);
    if (r < 0) {
        free(mb);
        return r;
    }
    *ret_state = mb;
    return 0;
}

static int rtu_connect(void *state)
{
    struct mb *mb = state;
    int r = mb_connect(mb);

    if (r < 0 || !mb->cfg->rs485)
        return r;
    /* RTS can only be driven once the port is open. */
    if (modbus_rtu_set_rts(mb->ctx, mb->cfg->rs485_rts) < 0 ||
        modbus_rtu_set_rts_delay(mb->ctx, mb->cfg->rs485_delay_us) < 0) {
        r = -errno;
        mb_disconnect(mb);
        return r;
    }
    return 0;
}

const struct driver driver_modbus_rtu = {
    .kind = DRIVER_MODBUS_RTU,
    .open = rtu_open,
    .close = mb_close,
    .connect = rtu_connect,
    .disconnect = mb_disconnect,
    .poll = mb_poll,
    .execute = mb_execute,
    .identify = mb_identify,
};
