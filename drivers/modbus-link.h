/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * One Modbus request at a time on a byte stream that libmodbus does not frame for us: RTU
 * frames on a TCP connection, or Modbus ASCII on a serial port. The framing is
 * modbus-frame.c's; this file does the I/O around it.
 *
 * A transaction: drop whatever is pending (a late reply, noise), send the request, then
 * read until the reply that matches it arrives or timeout_ms passes. Bytes that do not
 * belong to the reply are dropped, never returned.
 *
 * Errors: -ETIMEDOUT (no matching reply; the link stays open), -(MODBUS_ENOBASE + code)
 * for a Modbus exception, -EPROTO for a reply that matches but contradicts its request,
 * and -ECONNRESET (end of stream) or the read/write errno when the link itself is gone.
 *
 * Thread: the bus thread that owns the link.
 */
#ifndef TBGW_DRIVERS_MODBUS_LINK_H
#define TBGW_DRIVERS_MODBUS_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "drivers/modbus-frame.h"

struct mb_link {
    int fd;          /* -1: not open; owned by whoever opened it */
    bool ascii;      /* ASCII frames, else RTU frames */
    int timeout_ms;
    int rts;          /* serial RS-485 direction through RTS: 0 none, 1 high / 2 low while sending */
    int rts_delay_us; /* before and after sending, with rts */
    size_t n;        /* bytes waiting in buf */
    uint8_t buf[2 * MBF_ASCII_MAX];
};

void mb_link_init(struct mb_link *l, bool ascii, int timeout_ms);

/* Use fd (non-blocking from now on) for the next transactions; forgets buffered bytes. */
void mb_link_attach(struct mb_link *l, int fd);

/* Read functions 1-4: count items at addr into regs or bits. 0 or -errno (see above). */
int mb_link_read(struct mb_link *l, uint8_t unit, uint8_t function, uint16_t addr,
                 uint16_t count, uint16_t *regs, uint8_t *bits);
/* Write a single coil (5) or register (6). */
int mb_link_write_single(struct mb_link *l, uint8_t unit, uint8_t function, uint16_t addr,
                         uint16_t value);
/* Write multiple registers (16). */
int mb_link_write_registers(struct mb_link *l, uint8_t unit, uint16_t addr, uint16_t count,
                            const uint16_t *regs);

/* Write multiple coils (15), one byte per bit in bits. */
int mb_link_write_bits(struct mb_link *l, uint8_t unit, uint16_t addr, uint16_t count,
                       const uint8_t *bits);
/* Mask write register (22). */
int mb_link_mask_write(struct mb_link *l, uint8_t unit, uint16_t addr, uint16_t and_mask,
                       uint16_t or_mask);
/* Read device identification (43/14) from object on: the answer's PDU into pdu (room for
 * MBF_PDU_MAX bytes), its length into *len, for mei_parse(). */
int mb_link_identify(struct mb_link *l, uint8_t unit, uint8_t read_code, uint8_t object,
                     uint8_t *pdu, size_t *len);

/* Drop pending input. 0, or -errno when the link turned out to be gone. */
int mb_link_flush(struct mb_link *l);

/* Read and drop what fd (a socket or a tty, blocking or not) has now, without waiting.
 * 0, -ECONNRESET at end of stream, or the read error. */
int mb_drain(int fd);

#endif
