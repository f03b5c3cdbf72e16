/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz targets: the reply matchers of drivers/modbus-frame.c, as drivers/modbus-link.c
 * drives them on a device server's TCP stream (rtu-frame) or a Modbus ASCII serial line
 * (ascii-frame, built from this file with FUZZ_ASCII).
 *
 * Input: unit, function, the expected PDU length (0: from the byte count; else 2..253;
 * for function 43 the read device id code, the length then following from the answer's
 * objects as for device identification), a chunk size, then the bytes the link delivers,
 * fed in chunks into a buffer the size of modbus-link.c's. Promises checked: the matcher
 * never consumes more than it was given; what it keeps can still become a frame (shorter
 * than the longest frame, so the buffer never fills); a reply it returns really is in the
 * bytes just consumed, with this unit, this function (or its exception), the expected
 * length (for 43/14: the one mei_pdu_length() gives) and a good checksum; taking the data
 * out of it stays within the caller's buffers; and the reply checks of the writes (15,
 * 22) accept the exact echo of their request.
 */
#include "config.h"

#include <modbus.h>
#include <string.h>

#include "drivers/mei.h"
#include "drivers/modbus-frame.h"
#include "tests/fuzz/fuzz.h"

#ifdef FUZZ_ASCII
#define FRAME_MAX MBF_ASCII_MAX
#else
#define FRAME_MAX MBF_RTU_MAX
#endif

static uint8_t buf[2 * MBF_ASCII_MAX];

#ifdef FUZZ_ASCII
static int upper(int c)
{
    return c >= 'a' && c <= 'z' ? c - 32 : c;
}
#endif

/* The reply is really there: it ends at buf[used) and is what the matcher says it is. */
static void check_found(const struct mbf_expect *e, const uint8_t *pdu, size_t plen, size_t used)
{
    uint8_t frame[MBF_ASCII_MAX];
    size_t len;

    if (plen < 2 || plen > MBF_PDU_MAX)
        BROKEN();
    if (pdu[0] == (e->function | 0x80)) {
        if (plen != 2)
            BROKEN();
    } else if (pdu[0] != e->function) {
        BROKEN();
    } else if (e->pdu_length ? e->pdu_length(pdu, plen) != (int)plen
                             : (e->pdu_len && plen != e->pdu_len) ||
                                   (!e->pdu_len && plen != 2u + pdu[1])) {
        BROKEN();
    }
#ifdef FUZZ_ASCII
    len = mbf_ascii_encode(e->unit, pdu, plen, (char *)frame);
    if (len > used)
        BROKEN();
    for (size_t i = 0; i < len; i++)
        if (upper(buf[used - len + i]) != frame[i])
            BROKEN();
#else
    len = mbf_rtu_encode(e->unit, pdu, plen, frame);
    if (len > used || memcmp(buf + used - len, frame, len) != 0)
        BROKEN();
#endif
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

/* Taking the data of a reply to a read of as many items as it carries stays in bounds; a
 * write's reply check accepts the echo of a request made from the reply's own fields. */
static void take_data(const struct mbf_expect *e, const uint8_t *pdu, size_t plen,
                      const uint8_t *ident_req)
{
    uint8_t req[MBF_PDU_MAX];
    uint16_t regs[MBF_PDU_MAX];
    uint8_t bits[8 * MBF_PDU_MAX];
    struct mbf_expect x;
    int r;

    if (plen < 2 || (pdu[0] & 0x80))
        return;
    switch (e->function) {
    case 1:
    case 2:
    case 3:
    case 4:
        mbf_pdu_read(e->function, 0, (uint16_t)(e->function <= 2 ? 8 * pdu[1] : pdu[1] / 2),
                     req, &x);
        (void)mbf_pdu_reply(req, pdu, plen, regs, bits);
        return;
    case 15:
        if (plen != 5 || get16(pdu + 3) < 1 || get16(pdu + 3) > MODBUS_MAX_WRITE_BITS)
            return;
        memset(bits, 1, sizeof(bits));
        mbf_pdu_write_bits(get16(pdu + 1), get16(pdu + 3), bits, req, &x);
        break;
    case 22:
        if (plen != 7)
            return;
        mbf_pdu_mask_write(get16(pdu + 1), get16(pdu + 3), get16(pdu + 5), req, &x);
        break;
    case MEI_FUNCTION:
        /* Found, so its length is right; the echo decides (the objects: fuzz-mei). */
        r = mbf_pdu_reply(ident_req, pdu, plen, NULL, NULL);
        if ((r == 0) != (pdu[1] == ident_req[1] && pdu[2] == ident_req[2]))
            BROKEN();
        return;
    default:
        return;
    }
    if (mbf_pdu_reply(req, pdu, plen, NULL, NULL) != 0)
        BROKEN();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mbf_expect e;
    uint8_t pdu[MBF_PDU_MAX], ident_req[4] = {0};
    size_t n = 0, chunk, plen, used;

    if (size < 4)
        return 0;
    e = (struct mbf_expect){.unit = data[0], .function = data[1], .pdu_len = data[2]};
    if (e.pdu_len == 1)
        e.pdu_len = 0;
    if (e.function == MEI_FUNCTION)
        mbf_pdu_identify(data[2], 0, ident_req, &e);
    chunk = data[3] ? data[3] : 1;
    data += 4;
    size -= 4;

    while (size) {
        size_t take = chunk < size ? chunk : size;
        bool found;

        if (take > sizeof(buf) - n)
            take = sizeof(buf) - n;
        memcpy(buf + n, data, take);
        n += take;
        data += take;
        size -= take;
        do {
            memset(pdu, 0xA5, sizeof(pdu));
#ifdef FUZZ_ASCII
            found = mbf_ascii_match((const char *)buf, n, &e, pdu, &plen, &used);
#else
            found = mbf_rtu_match(buf, n, &e, pdu, &plen, &used);
#endif
            if (used > n)
                BROKEN();
            if (found) {
                check_found(&e, pdu, plen, used);
                take_data(&e, pdu, plen, ident_req);
            } else if (n - used >= FRAME_MAX) {
                BROKEN(); /* kept bytes that can never complete a frame */
            }
            memmove(buf, buf + used, n - used);
            n -= used;
        } while (found && n);
        if (n == sizeof(buf))
            BROKEN();
    }
    return 0;
}
