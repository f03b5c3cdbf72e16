/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Modbus TCP to one endpoint (host name or address, port), or through the connection a
 * gateway dialled in on (listen = {…}: libmodbus is handed the accepted socket).
 * Everything else is in modbus-common.c.
 */
#include "config.h"

#include <errno.h>
#include <modbus.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/bus.h"
#include "drivers/driver.h"
#include "drivers/modbus-common.h"

static int tcp_open(struct bus *bus, void **ret_state)
{
    const struct bus_config *c = bus_config(bus);
    struct mb *mb = calloc(1, sizeof(*mb));
    char port[8];
    int r;

    if (!mb)
        return -ENOMEM;
    snprintf(port, sizeof(port), "%d", c->listen ? c->listen_port : c->tcp_port);
    /* The _pi variant resolves host names, not only dotted addresses. In listen mode the
     * context never connects: it is given each accepted socket. */
    r = mb_init(mb, bus, modbus_new_tcp_pi(c->listen ? c->listen_bind : c->host, port), false);
    if (r == 0)
        r = mb_listen(mb);
    if (r < 0) {
        if (mb->ctx)
            modbus_free(mb->ctx);
        free(mb);
        return r;
    }
    *ret_state = mb;
    return 0;
}

const struct driver driver_modbus_tcp = {
    .kind = DRIVER_MODBUS_TCP,
    .open = tcp_open,
    MB_DRIVER_OPS,
};
