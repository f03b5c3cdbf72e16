/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Modbus frames for the transports libmodbus does not carry: RTU frames on a TCP stream
 * (serial device servers, cellular DTUs) and Modbus ASCII on a serial line. Building a
 * request, and finding the one reply that belongs to it in whatever bytes arrived.
 *
 * Pure: no I/O, no allocation, no globals. The matchers are total over any input (they
 * are fuzzed): they never read past the bytes they are given and always make progress.
 *
 * Matching rule: a reply belongs to the request when its unit, its function (or the
 * function's exception form), its length (fixed, from its byte count, or for device
 * identification from its objects) and its checksum (CRC-16 or LRC) all agree.
 * Everything in front of such a reply is stale or garbage and is dropped; nothing that
 * fails the rule is ever taken for the answer.
 */
#ifndef TBGW_DRIVERS_MODBUS_FRAME_H
#define TBGW_DRIVERS_MODBUS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MBF_PDU_MAX 253                       /* function code + data */
#define MBF_RTU_MAX (1 + MBF_PDU_MAX + 2)     /* unit, PDU, CRC: 256 */
#define MBF_ASCII_MAX (1 + 2 * (1 + MBF_PDU_MAX + 1) + 2) /* ':' hex(unit PDU LRC) CR LF: 513 */

/* What the reply to a request must look like. */
struct mbf_expect {
    uint8_t unit;
    uint8_t function;
    /* Length of the normal reply's PDU, or 0 when its second byte is a byte count (the
     * PDU is then 2 + that count). An exception reply is always 2 bytes. */
    uint16_t pdu_len;
    /* For a reply whose length shows only in its content (43/14 device identification):
     * the PDU's length as far as its first have bytes tell, more than have when more
     * bytes are needed to tell, < 0 when they cannot be the reply. It reads only
     * pdu[0..have) and must be as total as the matchers (it is fuzzed with them).
     * Overrides pdu_len. */
    int (*pdu_length)(const uint8_t *pdu, size_t have);
};

uint16_t mbf_crc16(const uint8_t *p, size_t n);
uint8_t mbf_lrc(const uint8_t *p, size_t n);

/* unit + pdu + CRC into out (at least n + 3 bytes). Returns the frame length. */
size_t mbf_rtu_encode(uint8_t unit, const uint8_t *pdu, size_t n, uint8_t *out);

/* ':' + hex(unit pdu LRC) + CR LF into out (at least 2 * n + 7 bytes). Returns its length. */
size_t mbf_ascii_encode(uint8_t unit, const uint8_t *pdu, size_t n, char *out);

/*
 * Look for the reply to e in buf[0..n). Returns true when found: the reply's PDU is then
 * pdu[0..*pdu_len) (pdu has room for MBF_PDU_MAX bytes) and *used bytes of buf (the reply
 * and everything before it) are consumed. Returns false when there is no reply yet: the
 * first *used bytes can never start one and may be dropped; the rest may still grow into
 * one.
 */
bool mbf_rtu_match(const uint8_t *buf, size_t n, const struct mbf_expect *e, uint8_t *pdu,
                   size_t *pdu_len, size_t *used);
bool mbf_ascii_match(const char *buf, size_t n, const struct mbf_expect *e, uint8_t *pdu,
                     size_t *pdu_len, size_t *used);

/* ---- PDUs of the functions the bus thread uses ---- */

/* A read (functions 1-4) of count items at addr. Returns the PDU length (5). */
size_t mbf_pdu_read(uint8_t function, uint16_t addr, uint16_t count, uint8_t *pdu,
                    struct mbf_expect *e);
/* Write single coil (5; value 0/1) or register (6). Returns 5. */
size_t mbf_pdu_write_single(uint8_t function, uint16_t addr, uint16_t value, uint8_t *pdu,
                            struct mbf_expect *e);
/* Write multiple registers (16); count <= 123. Returns 6 + 2 * count. */
size_t mbf_pdu_write_registers(uint16_t addr, uint16_t count, const uint16_t *regs, uint8_t *pdu,
                               struct mbf_expect *e);

/* Write multiple coils (15), one byte per bit in bits; count <= 1968. Returns
 * 6 + (count + 7) / 8. */
size_t mbf_pdu_write_bits(uint16_t addr, uint16_t count, const uint8_t *bits, uint8_t *pdu,
                          struct mbf_expect *e);
/* Mask write register (22): the register becomes (current AND and) OR (or AND NOT and).
 * Returns 7. */
size_t mbf_pdu_mask_write(uint16_t addr, uint16_t and_mask, uint16_t or_mask, uint8_t *pdu,
                          struct mbf_expect *e);
/* Read device identification (43 / MEI 14) with read_code from object on (drivers/mei.h
 * frames and parses the answer). Returns 4. */
size_t mbf_pdu_identify(uint8_t read_code, uint8_t object, uint8_t *pdu, struct mbf_expect *e);

/* The exception code of a reply PDU, or 0 for a normal reply. */
int mbf_pdu_exception(const uint8_t *pdu, size_t n);

/*
 * Check a normal reply against its request PDU and take its data: registers for
 * functions 3/4 into regs, one byte per bit for 1/2 into bits (the data of a 43/14 answer
 * stays in rsp, for mei_parse()). Returns 0, or -EPROTO when the reply does not answer the
 * request (a byte count, an echo or a MEI type that disagrees).
 */
int mbf_pdu_reply(const uint8_t *req, const uint8_t *rsp, size_t n, uint16_t *regs,
                  uint8_t *bits);

#endif
