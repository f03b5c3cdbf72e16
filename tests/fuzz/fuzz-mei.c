/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz target: device identification answers (drivers/mei.c), as a device on the wire
 * sends them. The input is fed to mei_pdu_length() byte by byte, as the driver reads an
 * answer, then the framed PDU to mei_parse().
 *
 * Promises checked (abort when broken): the length asked for never shrinks below what was
 * already read and never exceeds a PDU; a PDU of exactly that length parses or is refused
 * with nothing kept; every object kept is valid UTF-8 (it becomes JSON for ThingsBoard).
 */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "drivers/mei.h"
#include "tests/fuzz/fuzz.h"
#include "util/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct device_ident id = {0};
    size_t have = 0;
    bool more;
    uint8_t next;
    int want, r;

    /* Read as the driver does: ask how long, read up to there, ask again. */
    while ((want = mei_pdu_length(data, have)) > (int)have) {
        if (want > MEI_PDU_MAX)
            BROKEN();
        if ((size_t)want > size)
            return 0; /* the device stopped sending: a timeout */
        have = (size_t)want;
    }
    if (want < 0)
        return 0;
    if (want != (int)have)
        BROKEN();
    r = mei_parse(data, have, &id, &more, &next);
    for (int i = 0; i < N_IDENT_OBJECTS; i++) {
        if (r < 0 && id.obj[i])
            BROKEN();
        if (id.obj[i] && !utf8_valid(id.obj[i], strlen(id.obj[i])))
            BROKEN();
    }
    device_ident_clear(&id);
    return 0;
}
