/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Answer layout (Modbus Application Protocol v1.1b3, 6.21): function 43, MEI type 14,
 * read code, conformity level, more follows (0x00 / 0xFF), next object id, number of
 * objects, then per object: id, length, that many bytes of text. An exception answer is
 * function 43 | 0x80 and a code.
 */
#include "config.h"

#include <errno.h>
#include <modbus.h>

#include "drivers/mei.h"
#include "util/utf8.h"

#define HEADER 7 /* function .. number of objects */

void mei_request(uint8_t unit, uint8_t read_code, uint8_t object, uint8_t req[MEI_REQUEST_LEN])
{
    req[0] = unit;
    req[1] = MEI_FUNCTION;
    req[2] = MEI_TYPE_DEVICE_ID;
    req[3] = read_code;
    req[4] = object;
}

int mei_pdu_length(const uint8_t *pdu, size_t have)
{
    size_t pos = HEADER;

    if (have < 1)
        return 2;
    if (pdu[0] == (MEI_FUNCTION | 0x80))
        return 2;
    if (pdu[0] != MEI_FUNCTION)
        return -EBADMSG;
    if (have < HEADER)
        return HEADER;
    for (unsigned i = 0; i < pdu[6]; i++) {
        if (pos + 2 > MEI_PDU_MAX)
            return -EMSGSIZE; /* not even the object's header fits */
        if (have < pos + 2)
            return (int)pos + 2;
        pos += 2u + pdu[pos + 1];
        if (pos > MEI_PDU_MAX)
            return -EMSGSIZE;
    }
    return (int)pos;
}

int mei_parse(const uint8_t *pdu, size_t len, struct device_ident *id, bool *more,
              uint8_t *next)
{
    int want = mei_pdu_length(pdu, len);
    size_t pos = HEADER;

    if (want < 0)
        return want;
    if ((size_t)want != len)
        return -EBADMSG;
    if (pdu[0] == (MEI_FUNCTION | 0x80))
        return pdu[1] ? -(MODBUS_ENOBASE + pdu[1]) : -EBADMSG;
    if (pdu[1] != MEI_TYPE_DEVICE_ID || (pdu[4] != 0x00 && pdu[4] != 0xFF))
        return -EBADMSG;
    *more = pdu[4] == 0xFF;
    *next = pdu[5];
    for (unsigned i = 0; i < pdu[6]; i++) {
        uint8_t obj = pdu[pos], n = pdu[pos + 1];

        if (obj < N_IDENT_OBJECTS && !id->obj[obj])
            id->obj[obj] = utf8_sanitize_dup((const char *)pdu + pos + 2, n);
        pos += 2u + n;
    }
    return 0;
}
