/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Modbus "Read Device Identification" (function 43, MEI type 14) as bytes: the request,
 * the length of an answer still arriving, and the answer's objects. libmodbus 3.1 has no
 * call for this function and its receiver cannot frame the answer (it does not know the
 * answer's length), so the Modbus driver sends the request raw and frames the answer
 * with mei_pdu_length(); on RTU over TCP and ASCII links the same function is the reply
 * matcher's length rule (modbus-frame.c).
 *
 * An answer carries as many objects as fit; "more follows" with the next object id asks
 * for another request from there (mei_parse reports both).
 *
 * Pure: no I/O, no locks, no globals. Thread: any.
 */
#ifndef TBGW_DRIVERS_MEI_H
#define TBGW_DRIVERS_MEI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/ident.h"

#define MEI_FUNCTION 0x2B
#define MEI_TYPE_DEVICE_ID 0x0E
#define MEI_READ_BASIC 1   /* objects 0..2 */
#define MEI_READ_REGULAR 2 /* objects 0..6 */
#define MEI_PDU_MAX 253    /* a Modbus PDU */
#define MEI_REQUEST_LEN 5  /* unit + PDU */

/* unit, 43, 14, read code, first object: what modbus_send_raw_request() takes. */
void mei_request(uint8_t unit, uint8_t read_code, uint8_t object, uint8_t req[MEI_REQUEST_LEN]);

/* The length of the whole answer PDU (from the function code on) as far as the first have
 * bytes tell: a value greater than have means "read up to there and ask again". -EBADMSG
 * for an answer to another function, -EMSGSIZE for one longer than a PDU can be. */
int mei_pdu_length(const uint8_t *pdu, size_t have);

/* Take the objects of a complete answer PDU into id (objects it already has are kept;
 * unknown and private objects are skipped). *more and *next say whether and from which
 * object to ask again. 0; -EMBX* (libmodbus's errno values) for an exception answer;
 * -EBADMSG for a malformed one. */
int mei_parse(const uint8_t *pdu, size_t len, struct device_ident *id, bool *more,
              uint8_t *next);

#endif
