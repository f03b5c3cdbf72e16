/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Modbus transactions for the bus thread.
 *
 * Error convention: libmodbus returns -1 with errno (timeouts as ETIMEDOUT, Modbus
 * exceptions as EMBX* above MODBUS_ENOBASE, framing problems as EMBBAD*); this file turns
 * them into -errno once, and decides what is a device problem (retry, then back off) and
 * what is a link problem (-ENOTCONN: the bus reconnects).
 *
 * Retries: `retries` more attempts after a timeout or a damaged answer. An exception is an
 * answer, not a failure to answer: it is never retried.
 *
 * TCP: after a timeout the connection is re-opened before the next request, because a late
 * answer would otherwise be taken for the answer to the next request, and because a peer
 * that vanished without closing (a rebooted PLC) is only noticed this way.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/bus.h"
#include "core/command.h"
#include "core/decode.h"
#include "drivers/driver.h"
#include "drivers/modbus-common.h"
#include "util/macros.h"
#include "util/time-util.h"

uint32_t mb_rtu_silent_interval_us(int baud, int data_bits, int parity, int stop_bits)
{
    unsigned bits = 1u + (unsigned)data_bits + (parity != 'N' ? 1u : 0u) + (unsigned)stop_bits;

    /* The Modbus serial line spec fixes 1.75 ms above 19200 baud. */
    if (baud > 19200)
        return 1750;
    return (uint32_t)ceil(3.5 * bits * 1e6 / baud);
}

int mb_init(struct mb *mb, struct bus *bus, modbus_t *ctx, bool rtu)
{
    const struct bus_config *cfg = bus_config(bus);
    uint32_t to = (uint32_t)cfg->timeout_ms;

    memset(mb, 0, sizeof(*mb));
    mb->bus = bus;
    mb->cfg = cfg;
    mb->ctx = ctx;
    mb->rtu = rtu;
    if (!ctx)
        return -errno ? -errno : -ENOMEM;
    /* Recovery (reconnects, retries) is ours: libmodbus would sleep and loop on its own. */
    modbus_set_error_recovery(ctx, MODBUS_ERROR_RECOVERY_NONE);
    modbus_set_response_timeout(ctx, to / 1000, (to % 1000) * 1000);
    if (rtu)
        mb->gap_us = mb_rtu_silent_interval_us(cfg->baud, cfg->data_bits, cfg->parity,
                                               cfg->stop_bits) +
                     (uint32_t)cfg->inter_frame_ms * 1000u;
    return 0;
}

void mb_close(void *state)
{
    struct mb *mb = state;

    if (!mb)
        return;
    mb_disconnect(mb);
    if (mb->ctx)
        modbus_free(mb->ctx);
    free(mb);
}

int mb_connect(void *state)
{
    struct mb *mb = state;

    if (mb->connected)
        return 0;
    if (modbus_connect(mb->ctx) < 0)
        return -errno;
    mb->connected = true;
    mb->last_end_us = now_us();
    return 0;
}

void mb_disconnect(void *state)
{
    struct mb *mb = state;

    if (mb->connected)
        modbus_close(mb->ctx);
    mb->connected = false;
}

/* Keep the RTU silent interval: libmodbus sends as soon as it is asked, and many RS-485
 * slaves miss a request that follows the previous answer too closely. */
static void before_transaction(struct mb *mb, int unit)
{
    if (mb->rtu)
        sleep_until_us(mb->last_end_us + mb->gap_us);
    modbus_set_slave(mb->ctx, unit);
}

static bool is_exception(int err)
{
    return err > MODBUS_ENOBASE && err < MODBUS_ENOBASE + MODBUS_EXCEPTION_MAX;
}

/* After a failed attempt: decide whether to try again. Returns the error to report, or 0
 * to retry. */
static int after_failure(struct mb *mb, int err)
{
    if (is_exception(err))
        return -err;
    if (driver_link_error(-err)) {
        mb_disconnect(mb);
        return -ENOTCONN;
    }
    if (!mb->rtu && err == ETIMEDOUT) {
        /* Re-open: see the top of this file. A failure to re-open is a link failure. */
        mb_disconnect(mb);
        if (mb_connect(mb) < 0)
            return -ENOTCONN;
    } else {
        modbus_flush(mb->ctx);
    }
    return 0;
}

/* Read count registers or bits at addr of table, with retries. */
static int mb_read(struct mb *mb, struct bus_device *bd, int unit, enum mb_table table,
                   int addr, int count, uint16_t *regs, uint8_t *bits)
{
    int err = ETIMEDOUT;

    for (int attempt = 0; attempt <= mb->cfg->retries; attempt++) {
        int n, r;

        /* Writes first: what is queued goes before the next transaction of a poll. */
        if (bus_yield(mb->bus) < 0)
            return -EINTR;
        if (!mb->connected && mb_connect(mb) < 0)
            return -ENOTCONN;
        before_transaction(mb, unit);
        switch (table) {
        case TABLE_COIL:
            n = modbus_read_bits(mb->ctx, addr, count, bits);
            break;
        case TABLE_DISCRETE:
            n = modbus_read_input_bits(mb->ctx, addr, count, bits);
            break;
        case TABLE_INPUT:
            n = modbus_read_input_registers(mb->ctx, addr, count, regs);
            break;
        default:
            n = modbus_read_registers(mb->ctx, addr, count, regs);
            break;
        }
        err = n < 0 ? errno : EMBBADDATA;
        mb->last_end_us = now_us();
        bus_transaction(mb->bus, bd, n == count || (n < 0 && is_exception(err)));
        if (n == count)
            return 0;
        r = after_failure(mb, err);
        if (r)
            return r;
    }
    return -err;
}

int mb_poll(void *state, struct bus_device *bd)
{
    struct mb *mb = state;
    int unit = bd->dev->cfg->unit_id;
    uint16_t regs[MODBUS_MAX_READ_REGISTERS];
    uint8_t bits[MODBUS_MAX_READ_BITS];

    for (size_t i = 0; i < bd->plan->n_blocks && !bus_stopping(mb->bus); i++) {
        const struct read_block *blk = &bd->plan->blocks[i];
        int r = mb_read(mb, bd, unit, blk->table, blk->address, blk->count, regs, bits);

        if (r == 0) {
            bus_emit_block(mb->bus, bd, i, regs, bits);
            continue;
        }
        if (r == -EMBXILADD && blk->n > 1) {
            /* A hole in the device's map: read the tags on their own from now on, starting
             * with the first of them right away (i now indexes it). */
            bus_split_block(mb->bus, bd, i, r);
            i--;
            continue;
        }
        if (is_exception(-r)) {
            bus_tag_failed(mb->bus, bd, i, r);
            continue;
        }
        return r;
    }
    return 0;
}

static int value_to_double(const struct value *v, double *ret)
{
    if (v->kind == VK_STRING) {
        char *end;
        errno = 0;
        *ret = strtod(v->s, &end);
        return (*end || end == v->s || errno) ? -EINVAL : 0;
    }
    return value_as_double(v, ret) ? 0 : -EINVAL;
}

static int mb_write(struct mb *mb, struct bus_device *bd, int unit, const struct tag_config *t,
                    const struct value *v)
{
    uint16_t regs[MODBUS_MAX_WRITE_REGISTERS];
    int err = ETIMEDOUT;
    int r;
    double d = 0;

    /* Encode once, before touching the bus: a value that does not fit is refused here. */
    switch (t->type) {
    case VT_BOOL:
    case VT_BIT:
        if (v->kind != VK_BOOL && (value_to_double(v, &d) < 0 || (d != 0 && d != 1)))
            return -EINVAL;
        if (v->kind == VK_BOOL)
            d = v->b;
        break;
    case VT_STRING:
        if (v->kind != VK_STRING)
            return -EINVAL;
        r = encode_string(t, v->s, regs);
        if (r < 0)
            return r;
        break;
    default:
        if (v->kind == VK_INT && t->scale == 1.0 && t->offset == 0.0) {
            r = encode_integer(t, v->i, regs);
        } else {
            if (value_to_double(v, &d) < 0)
                return -EINVAL;
            r = encode_number(t, d, regs);
        }
        if (r < 0)
            return r;
        break;
    }

    for (int attempt = 0; attempt <= mb->cfg->retries; attempt++) {
        int n, expect = 1;

        if (!mb->connected && mb_connect(mb) < 0)
            return -ENOTCONN;
        if (t->type == VT_BIT) {
            /* Read-modify-write of the one register: this thread is the only writer on
             * our side, so the register cannot change under us from here. */
            uint16_t cur;
            before_transaction(mb, unit);
            n = modbus_read_registers(mb->ctx, t->address, 1, &cur);
            mb->last_end_us = now_us();
            bus_transaction(mb->bus, bd, n == 1);
            if (n == 1) {
                cur = d != 0 ? (uint16_t)(cur | (1u << t->bit)) : (uint16_t)(cur & ~(1u << t->bit));
                before_transaction(mb, unit);
                n = modbus_write_register(mb->ctx, t->address, cur);
            }
        } else if (t->type == VT_BOOL) {
            before_transaction(mb, unit);
            n = modbus_write_bit(mb->ctx, t->address, d != 0);
        } else if (t->count == 1) {
            before_transaction(mb, unit);
            n = modbus_write_register(mb->ctx, t->address, regs[0]);
        } else {
            before_transaction(mb, unit);
            n = modbus_write_registers(mb->ctx, t->address, t->count, regs);
            expect = t->count;
        }
        err = n < 0 ? errno : EMBBADDATA;
        mb->last_end_us = now_us();
        bus_transaction(mb->bus, bd, n == expect || (n < 0 && is_exception(err)));
        if (n == expect)
            return 0;
        r = after_failure(mb, err);
        if (r)
            return r;
    }
    return -err;
}

int mb_execute(void *state, struct bus_device *bd, struct command *cmd)
{
    struct mb *mb = state;
    int unit = bd->dev->cfg->unit_id;
    const struct tag_config *t = &cmd->tag;

    if (cmd->kind == CMD_WRITE)
        return mb_write(mb, bd, unit, t, &cmd->value);

    if (cmd->kind == CMD_READ) {
        uint16_t regs[MODBUS_MAX_READ_REGISTERS];
        uint8_t bits[MODBUS_MAX_READ_BITS];
        int r = mb_read(mb, bd, unit, t->table, t->address, t->count, regs, bits);

        if (r < 0)
            return r;
        value_clear(&cmd->out);
        if (table_is_bits(t->table))
            return decode_bit(t, bits, &cmd->out);
        return decode_registers(t, regs, &cmd->out);
    }
    return -EINVAL;
}
