/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The drivers tbgw has, by kind. A static table, not dlopen(): the drivers are all in
 * tree and there is no ABI to version.
 */
#include "config.h"

#include <errno.h>
#include <modbus.h>
#include <string.h>

#include "drivers/driver.h"

extern const struct driver driver_modbus_rtu, driver_modbus_tcp, driver_serial_line,
    driver_modbus_ascii, driver_modbus_rtu_tcp;

static const struct driver *const drivers[N_DRIVERS] = {
    [DRIVER_MODBUS_RTU] = &driver_modbus_rtu,
    [DRIVER_MODBUS_TCP] = &driver_modbus_tcp,
    [DRIVER_SERIAL_LINE] = &driver_serial_line,
    [DRIVER_MODBUS_ASCII] = &driver_modbus_ascii,
    [DRIVER_MODBUS_RTU_TCP] = &driver_modbus_rtu_tcp,
};

const struct driver *driver_for(enum driver_kind kind)
{
    return kind < N_DRIVERS ? drivers[kind] : NULL;
}

const char *driver_strerror(int errnum)
{
    if (errnum < 0)
        errnum = -errnum;
    /* libmodbus numbers its own errors (exceptions, bad CRC…) above MODBUS_ENOBASE. */
    if (errnum >= MODBUS_ENOBASE)
        return modbus_strerror(errnum);
    return strerror(errnum);
}

bool driver_link_error(int err)
{
    switch (err < 0 ? -err : err) {
    case ENOTCONN:
    case ECONNRESET:
    case ECONNREFUSED:
    case ECONNABORTED:
    case EPIPE:
    case EBADF:
    case EIO:
    case ENXIO:
    case ENODEV:
    case ENOENT:
    case EHOSTUNREACH:
    case ENETUNREACH:
        return true;
    default:
        return false;
    }
}
