/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Modbus RTU-over-TCP and ASCII framing (see modbus-frame.h). Pure; runs on whichever
 * thread calls it (the bus thread, the unit tests, the fuzzers).
 *
 * The matchers scan rather than parse from a fixed start: on a device server's stream a
 * late reply, a half frame from before a reconnect or line noise can sit in front of the
 * answer, and RTU has no delimiter to resynchronise on. A candidate is taken only when
 * every field and the checksum agree, so a stray byte that happens to equal the unit id
 * costs a CRC computation, never a wrong value.
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "drivers/mei.h"
#include "drivers/modbus-frame.h"

uint16_t mbf_crc16(const uint8_t *p, size_t n)
{
    uint16_t crc = 0xFFFF;

    /* Bitwise rather than table-driven: at most 256 bytes per frame at serial or device
     * server speed, and nothing to get wrong in a 512-byte table. */
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int b = 0; b < 8; b++)
            crc = (crc & 1) ? (uint16_t)((crc >> 1) ^ 0xA001) : (uint16_t)(crc >> 1);
    }
    return crc;
}

uint8_t mbf_lrc(const uint8_t *p, size_t n)
{
    uint8_t sum = 0;

    for (size_t i = 0; i < n; i++)
        sum = (uint8_t)(sum + p[i]);
    return (uint8_t)-sum;
}

size_t mbf_rtu_encode(uint8_t unit, const uint8_t *pdu, size_t n, uint8_t *out)
{
    uint16_t crc;

    out[0] = unit;
    memcpy(out + 1, pdu, n);
    crc = mbf_crc16(out, n + 1);
    /* The one little-endian field in Modbus. */
    out[n + 1] = (uint8_t)(crc & 0xFF);
    out[n + 2] = (uint8_t)(crc >> 8);
    return n + 3;
}

static const char hexdigits[] = "0123456789ABCDEF";

static char *put_hex(char *o, uint8_t b)
{
    *o++ = hexdigits[b >> 4];
    *o++ = hexdigits[b & 15];
    return o;
}

size_t mbf_ascii_encode(uint8_t unit, const uint8_t *pdu, size_t n, char *out)
{
    char *o = out;
    uint8_t lrc = (uint8_t)(mbf_lrc(&unit, 1) + mbf_lrc(pdu, n));

    *o++ = ':';
    o = put_hex(o, unit);
    for (size_t i = 0; i < n; i++)
        o = put_hex(o, pdu[i]);
    o = put_hex(o, lrc);
    *o++ = '\r';
    *o++ = '\n';
    return (size_t)(o - out);
}

/* The PDU length of a reply to e that starts with pdu[0..have) (have >= 1): 0 when it
 * cannot be one; more than have when more bytes are needed to tell. */
static size_t reply_pdu_len(const struct mbf_expect *e, const uint8_t *pdu, size_t have)
{
    int len;

    if (pdu[0] == (e->function | 0x80))
        return 2;
    if (pdu[0] != e->function)
        return 0;
    if (e->pdu_length) {
        len = e->pdu_length(pdu, have);
        return len > 0 ? (size_t)len : 0;
    }
    if (e->pdu_len)
        return e->pdu_len;
    return have < 2 ? 2 : 2u + pdu[1];
}

bool mbf_rtu_match(const uint8_t *buf, size_t n, const struct mbf_expect *e, uint8_t *pdu,
                   size_t *pdu_len, size_t *used)
{
    size_t keep = n;

    for (size_t i = 0; i < n; i++) {
        size_t plen, total;
        uint16_t crc;

        if (buf[i] != e->unit)
            continue;
        /* Too short to tell yet: this may still become the reply. */
        if (i + 1 >= n) {
            keep = keep < i ? keep : i;
            continue;
        }
        plen = reply_pdu_len(e, buf + i + 1, n - i - 1);
        if (!plen || plen > MBF_PDU_MAX)
            continue;
        total = 1 + plen + 2;
        if (total > n - i) {
            keep = keep < i ? keep : i;
            continue;
        }
        crc = mbf_crc16(buf + i, 1 + plen);
        if (buf[i + 1 + plen] != (crc & 0xFF) || buf[i + 2 + plen] != (crc >> 8))
            continue;
        memcpy(pdu, buf + i + 1, plen);
        *pdu_len = plen;
        *used = i + total;
        return true;
    }
    *used = keep;
    return false;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decode the hex between ':' and CR LF; true when it is a whole frame with a good LRC
 * that answers e. */
static bool ascii_frame(const char *hex, size_t len, const struct mbf_expect *e, uint8_t *pdu,
                        size_t *pdu_len)
{
    uint8_t raw[1 + MBF_PDU_MAX + 1];
    size_t nraw = len / 2, plen;

    if (len % 2 || nraw < 3 || nraw > sizeof(raw))
        return false;
    for (size_t i = 0; i < nraw; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        raw[i] = (uint8_t)(hi << 4 | lo);
    }
    if (mbf_lrc(raw, nraw - 1) != raw[nraw - 1] || raw[0] != e->unit)
        return false;
    plen = reply_pdu_len(e, raw + 1, nraw - 2);
    if (plen != nraw - 2)
        return false;
    memcpy(pdu, raw + 1, plen);
    *pdu_len = plen;
    return true;
}

bool mbf_ascii_match(const char *buf, size_t n, const struct mbf_expect *e, uint8_t *pdu,
                     size_t *pdu_len, size_t *used)
{
    size_t i = 0;

    for (;;) {
        const char *colon = i < n ? memchr(buf + i, ':', n - i) : NULL;
        size_t start, j;

        if (!colon) {
            *used = n;
            return false;
        }
        start = (size_t)(colon - buf);
        /* The frame ends at the first CR LF; a ':' before it means this one was cut off
         * and a new one started. */
        for (j = start + 1; j < n && buf[j] != ':' && buf[j] != '\n'; j++)
            ;
        if (j == n) {
            if (n - start >= MBF_ASCII_MAX) {
                /* Longer than any frame and still no end: not a frame. */
                i = start + 1;
                continue;
            }
            *used = start;
            return false;
        }
        if (buf[j] == ':') {
            i = j;
            continue;
        }
        i = j + 1;
        if (j - start >= 2 && buf[j - 1] == '\r' &&
            ascii_frame(buf + start + 1, j - start - 2, e, pdu, pdu_len)) {
            *used = i;
            return true;
        }
    }
}

/* ---- PDUs ---- */

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)(v & 0xFF);
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static void expect(struct mbf_expect *e, uint8_t function, uint16_t pdu_len)
{
    e->function = function;
    e->pdu_len = pdu_len;
    e->pdu_length = NULL;
}

size_t mbf_pdu_read(uint8_t function, uint16_t addr, uint16_t count, uint8_t *pdu,
                    struct mbf_expect *e)
{
    pdu[0] = function;
    put16(pdu + 1, addr);
    put16(pdu + 3, count);
    expect(e, function, (uint16_t)(2 + (function <= 2 ? (count + 7) / 8 : 2 * count)));
    return 5;
}

size_t mbf_pdu_write_single(uint8_t function, uint16_t addr, uint16_t value, uint8_t *pdu,
                            struct mbf_expect *e)
{
    pdu[0] = function;
    put16(pdu + 1, addr);
    put16(pdu + 3, function == 5 ? (value ? 0xFF00 : 0x0000) : value);
    expect(e, function, 5);
    return 5;
}

size_t mbf_pdu_write_registers(uint16_t addr, uint16_t count, const uint16_t *regs, uint8_t *pdu,
                               struct mbf_expect *e)
{
    pdu[0] = 16;
    put16(pdu + 1, addr);
    put16(pdu + 3, count);
    pdu[5] = (uint8_t)(2 * count);
    for (uint16_t i = 0; i < count; i++)
        put16(pdu + 6 + 2 * i, regs[i]);
    expect(e, 16, 5);
    return 6u + 2u * count;
}

size_t mbf_pdu_write_bits(uint16_t addr, uint16_t count, const uint8_t *bits, uint8_t *pdu,
                          struct mbf_expect *e)
{
    size_t nbytes = (count + 7u) / 8u;

    pdu[0] = 15;
    put16(pdu + 1, addr);
    put16(pdu + 3, count);
    pdu[5] = (uint8_t)nbytes;
    /* The first coil in the low bit of the first byte; unused high bits zero. */
    memset(pdu + 6, 0, nbytes);
    for (uint16_t i = 0; i < count; i++)
        if (bits[i])
            pdu[6 + i / 8] |= (uint8_t)(1u << (i % 8));
    expect(e, 15, 5);
    return 6 + nbytes;
}

size_t mbf_pdu_mask_write(uint16_t addr, uint16_t and_mask, uint16_t or_mask, uint8_t *pdu,
                          struct mbf_expect *e)
{
    pdu[0] = 22;
    put16(pdu + 1, addr);
    put16(pdu + 3, and_mask);
    put16(pdu + 5, or_mask);
    expect(e, 22, 7);
    return 7;
}

size_t mbf_pdu_identify(uint8_t read_code, uint8_t object, uint8_t *pdu, struct mbf_expect *e)
{
    pdu[0] = MEI_FUNCTION;
    pdu[1] = MEI_TYPE_DEVICE_ID;
    pdu[2] = read_code;
    pdu[3] = object;
    /* No byte count: the length follows from the objects (mei.c knows how). */
    expect(e, MEI_FUNCTION, 0);
    e->pdu_length = mei_pdu_length;
    return 4;
}

int mbf_pdu_exception(const uint8_t *pdu, size_t n)
{
    return n == 2 && (pdu[0] & 0x80) ? pdu[1] : 0;
}

int mbf_pdu_reply(const uint8_t *req, const uint8_t *rsp, size_t n, uint16_t *regs,
                  uint8_t *bits)
{
    uint16_t count;

    if (n < 1 || rsp[0] != req[0])
        return -EPROTO;
    switch (req[0]) {
    case 1:
    case 2:
        count = get16(req + 3);
        if (n != 2u + (count + 7u) / 8u || rsp[1] != n - 2)
            return -EPROTO;
        for (uint16_t i = 0; i < count; i++)
            bits[i] = (rsp[2 + i / 8] >> (i % 8)) & 1;
        return 0;
    case 3:
    case 4:
        count = get16(req + 3);
        if (n != 2u + 2u * count || rsp[1] != n - 2)
            return -EPROTO;
        for (uint16_t i = 0; i < count; i++)
            regs[i] = get16(rsp + 2 + 2 * i);
        return 0;
    case 5:
    case 6:
    case 15:
    case 16:
        /* The echo of the request (5, 6), or of its address and quantity (15, 16). */
        return n == 5 && memcmp(req, rsp, 5) == 0 ? 0 : -EPROTO;
    case 22:
        return n == 7 && memcmp(req, rsp, 7) == 0 ? 0 : -EPROTO;
    case MEI_FUNCTION:
        /* Its length was checked by the match (mei_pdu_length()); the MEI type and the
         * read code are echoed. */
        return n >= 7 && rsp[1] == req[1] && rsp[2] == req[2] ? 0 : -EPROTO;
    default:
        return -EPROTO;
    }
}
