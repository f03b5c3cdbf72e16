/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Opening a serial port the way the bus's settings say (baud, parity, data and stop bits),
 * raw and non-blocking, for the drivers that do their own serial I/O (serial-line,
 * modbus-ascii). modbus-rtu leaves this to libmodbus.
 */
#ifndef TBGW_DRIVERS_SERIAL_PORT_H
#define TBGW_DRIVERS_SERIAL_PORT_H

struct bus_config;

/* Open and configure c->device. Returns the fd (O_NONBLOCK, O_CLOEXEC, exclusive) or
 * -errno. An empty port reads as EAGAIN, a hang-up (USB adapter gone) as 0 or EIO. */
int serial_port_open(const struct bus_config *c);

#endif
