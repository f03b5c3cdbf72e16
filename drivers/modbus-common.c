/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Modbus transactions for the bus thread.
 *
 * Error convention: libmodbus returns -1 with errno (timeouts as ETIMEDOUT, Modbus
 * exceptions as EMBX* above MODBUS_ENOBASE, framing problems as EMBBAD*); the framed links
 * (modbus-link.c) follow it, and this file turns them into -errno once, and decides what
 * is a device problem (retry, then back off) and what is a link problem (-ENOTCONN: the
 * bus reconnects).
 *
 * Retries: `retries` more attempts after a timeout or a damaged answer. An exception is an
 * answer, not a failure to answer: it is never retried.
 *
 * Faults stay local: a timeout, a damaged answer or an exception concerns one unit, and
 * the units behind a TCP gateway or on one RS-485 line share the link, so the link is
 * never closed for them. Pending input is flushed instead (a late answer on TCP carries
 * an old transaction id, on framed links it fails the match, modbus-frame.c). The link is
 * re-opened only when it is gone: an I/O error, end of stream, or a TCP socket that gave
 * up on its peer (tcp-peer.c: a device server that power-cycled never says goodbye).
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/bus.h"
#include "core/command.h"
#include "core/decode.h"
#include "drivers/driver.h"
#include "drivers/mei.h"
#include "drivers/modbus-common.h"
#include "util/log.h"
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

/* The pause before each request: RTU's silent interval on a serial line (a device server
 * keeps it itself; ASCII frames are delimited), and the user's inter_frame_ms. */
static uint32_t frame_gap_us(const struct mb *mb)
{
    const struct bus_config *c = mb->cfg;
    uint32_t silent = mb->rtu ? mb_rtu_silent_interval_us(c->baud, c->data_bits, c->parity,
                                                         c->stop_bits)
                              : 0;

    return mb->rtu || mb->framed ? silent + (uint32_t)c->inter_frame_ms * 1000u : 0;
}

static void set_timeout(struct mb *mb)
{
    uint32_t to = (uint32_t)mb->cfg->timeout_ms;

    if (mb->ctx)
        modbus_set_response_timeout(mb->ctx, to / 1000, (to % 1000) * 1000);
    mb->link.timeout_ms = mb->cfg->timeout_ms;
}

int mb_init(struct mb *mb, struct bus *bus, modbus_t *ctx, bool rtu)
{
    memset(mb, 0, sizeof(*mb));
    mb->bus = bus;
    mb->cfg = bus_config(bus);
    mb->ctx = ctx;
    mb->rtu = rtu;
    mb->listener.fd = -1;
    if (!ctx)
        return -errno ? -errno : -ENOMEM;
    /* Recovery (reconnects, retries) is ours: libmodbus would sleep and loop on its own. */
    modbus_set_error_recovery(ctx, MODBUS_ERROR_RECOVERY_NONE);
    set_timeout(mb);
    mb->gap_us = frame_gap_us(mb);
    return 0;
}

void mb_init_framed(struct mb *mb, struct bus *bus, bool ascii)
{
    const struct bus_config *cfg = bus_config(bus);

    memset(mb, 0, sizeof(*mb));
    mb->bus = bus;
    mb->cfg = cfg;
    mb->framed = true;
    mb->listener.fd = -1;
    mb_link_init(&mb->link, ascii, cfg->timeout_ms);
    mb->gap_us = frame_gap_us(mb);
}

int mb_listen(struct mb *mb)
{
    const struct bus_config *c = mb->cfg;
    int r;

    if (!c->listen)
        return 0;
    r = tcp_listener_open(&mb->listener, c->listen_bind, c->listen_port);
    if (r < 0)
        log_error_errno(r, "bus '%s': cannot listen on %s: %m", c->name, mb->listener.where);
    return r;
}

int mb_accept(struct mb *mb)
{
    return tcp_listener_accept(&mb->listener);
}

void mb_close(void *state)
{
    struct mb *mb = state;

    if (!mb)
        return;
    mb_disconnect(mb);
    if (mb->ctx)
        modbus_free(mb->ctx);
    tcp_listener_close(&mb->listener);
    free(mb);
}

/* Nothing in the state belongs to one device: the link (its settings are equal, the
 * caller says) and the listening socket move to the new bus as they are; the timeout and
 * the pause between frames are the new bus's (retries are read at each transaction). */
int mb_adopt(struct bus *bus, void *old_state, void **ret_state)
{
    struct mb *mb = old_state;

    mb->bus = bus;
    mb->cfg = bus_config(bus);
    set_timeout(mb);
    mb->gap_us = frame_gap_us(mb);
    *ret_state = mb;
    return 0;
}

/* Poll through fd, a connection accepted in listen mode. */
static void attach(struct mb *mb, int fd)
{
    if (mb->framed)
        mb_link_attach(&mb->link, fd);
    else
        modbus_set_socket(mb->ctx, fd);
}

int mb_connect(void *state)
{
    struct mb *mb = state;

    if (mb->connected)
        return 0;
    if (mb->listener.fd >= 0) {
        int fd = mb_accept(mb);
        if (fd < 0)
            return fd;
        attach(mb, fd);
    } else if (mb->framed) {
        int fd = mb->open_link(mb);
        if (fd < 0)
            return fd;
        mb_link_attach(&mb->link, fd);
    } else if (modbus_connect(mb->ctx) < 0) {
        return -errno;
    } else if (!mb->rtu) {
        tcp_tune(modbus_get_socket(mb->ctx));
    }
    mb->connected = true;
    mb->last_end_us = now_us();
    return 0;
}

void mb_disconnect(void *state)
{
    struct mb *mb = state;

    if (mb->connected) {
        if (mb->framed) {
            close(mb->link.fd);
            mb->link.fd = -1;
        } else {
            modbus_close(mb->ctx);
        }
    }
    mb->connected = false;
}

/* Listen mode: a DTU that re-dialled has left its old connection dead; poll through the
 * newest one. */
static void take_newer_connection(struct mb *mb)
{
    int fd = mb_accept(mb);

    if (fd < 0)
        return;
    log_info("bus '%s': a newer connection on %s replaces the current one", mb->cfg->name,
             mb->listener.where);
    mb_disconnect(mb);
    attach(mb, fd);
    mb->connected = true;
}

/* Keep the RTU silent interval (and inter_frame_ms): libmodbus sends as soon as it is
 * asked, and many RS-485 slaves miss a request that follows the previous answer too
 * closely. */
static void before_transaction(struct mb *mb, int unit)
{
    if (mb->listener.fd >= 0 && mb->connected)
        take_newer_connection(mb);
    if (mb->gap_us)
        sleep_until_us(mb->last_end_us + mb->gap_us);
    if (!mb->framed)
        modbus_set_slave(mb->ctx, unit);
}

/* A TCP socket that the kernel has given up on (peer reset, TCP_USER_TIMEOUT): libmodbus
 * reports only the timeout of its select(). */
static bool tcp_socket_dead(struct mb *mb)
{
    struct pollfd p = {.fd = modbus_get_socket(mb->ctx), .events = POLLIN};

    if (p.fd < 0)
        return true;
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLERR | POLLHUP));
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
    if (driver_link_error(-err) || (!mb->framed && !mb->rtu && tcp_socket_dead(mb))) {
        mb_disconnect(mb);
        return -ENOTCONN;
    }
    /* Flush, never re-open: see the top of this file. */
    if (mb->framed ? mb_link_flush(&mb->link) < 0 : (modbus_flush(mb->ctx) < 0 && !mb->rtu)) {
        mb_disconnect(mb);
        return -ENOTCONN;
    }
    return 0;
}

/* Between transactions the link is watched (the bus polls event_fd): bytes nobody asked
 * for are late answers or noise and are dropped now, and the end of a connection is
 * noticed now, not at the next request (which may be a long device backoff away). Not on
 * modbus-rtu: libmodbus leaves its tty at VMIN 0, where "nothing" and "hung up" read
 * alike; a vanished port shows at the next request there. */
int mb_event_fd(void *state)
{
    struct mb *mb = state;

    if (!mb->connected || (mb->rtu && !mb->framed))
        return -1;
    return mb->framed ? mb->link.fd : modbus_get_socket(mb->ctx);
}

int mb_on_event(void *state)
{
    struct mb *mb = state;
    int r;

    if (!mb->connected)
        return 0;
    r = mb->framed ? mb_link_flush(&mb->link) : mb_drain(modbus_get_socket(mb->ctx));
    if (r < 0) {
        mb_disconnect(mb);
        return -ENOTCONN;
    }
    return 0;
}

/* The transactions, on libmodbus's framing or on ours, with libmodbus's return
 * convention (the count, or -1 and errno). */
static int op_result(int r, int n)
{
    if (r < 0) {
        errno = r == -EPROTO ? EMBBADDATA : -r;
        return -1;
    }
    return n;
}

static int op_read(struct mb *mb, int unit, enum mb_table table, int addr, int count,
                   uint16_t *regs, uint8_t *bits)
{
    static const uint8_t function[] = {[TABLE_COIL] = 1, [TABLE_DISCRETE] = 2,
                                       [TABLE_HOLDING] = 3, [TABLE_INPUT] = 4};

    if (mb->framed)
        return op_result(mb_link_read(&mb->link, (uint8_t)unit, function[table], (uint16_t)addr,
                                      (uint16_t)count, regs, bits),
                         count);
    switch (table) {
    case TABLE_COIL:
        return modbus_read_bits(mb->ctx, addr, count, bits);
    case TABLE_DISCRETE:
        return modbus_read_input_bits(mb->ctx, addr, count, bits);
    case TABLE_INPUT:
        return modbus_read_input_registers(mb->ctx, addr, count, regs);
    default:
        return modbus_read_registers(mb->ctx, addr, count, regs);
    }
}

static int op_write_bit(struct mb *mb, int unit, int addr, bool on)
{
    if (mb->framed)
        return op_result(mb_link_write_single(&mb->link, (uint8_t)unit, 5, (uint16_t)addr, on), 1);
    return modbus_write_bit(mb->ctx, addr, on);
}

static int op_write_register(struct mb *mb, int unit, int addr, uint16_t v)
{
    if (mb->framed)
        return op_result(mb_link_write_single(&mb->link, (uint8_t)unit, 6, (uint16_t)addr, v), 1);
    return modbus_write_register(mb->ctx, addr, v);
}

static int op_write_registers(struct mb *mb, int unit, int addr, int count, const uint16_t *regs)
{
    if (mb->framed)
        return op_result(mb_link_write_registers(&mb->link, (uint8_t)unit, (uint16_t)addr,
                                                 (uint16_t)count, regs),
                         count);
    return modbus_write_registers(mb->ctx, addr, count, regs);
}

static int op_write_bits(struct mb *mb, int unit, int addr, int count, const uint8_t *bits)
{
    if (mb->framed)
        return op_result(mb_link_write_bits(&mb->link, (uint8_t)unit, (uint16_t)addr,
                                            (uint16_t)count, bits),
                         count);
    return modbus_write_bits(mb->ctx, addr, count, bits);
}

static int op_mask_write(struct mb *mb, int unit, int addr, uint16_t and_mask, uint16_t or_mask)
{
    if (mb->framed)
        return op_result(mb_link_mask_write(&mb->link, (uint8_t)unit, (uint16_t)addr, and_mask,
                                            or_mask),
                         1);
    return modbus_mask_write_register(mb->ctx, addr, and_mask, or_mask);
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
        n = op_read(mb, unit, table, addr, count, regs, bits);
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

/* A device that answers "illegal function" to a write has a setting for it. */
static const char *write_hint(int fc)
{
    switch (fc) {
    case MODBUS_FC_WRITE_SINGLE_COIL:
        return "the device does not take function 5 (write single coil): set write_multiple = true";
    case MODBUS_FC_WRITE_SINGLE_REGISTER:
        return "the device does not take function 6 (write single register): set "
               "write_multiple = true";
    case MODBUS_FC_MASK_WRITE_REGISTER:
        return "the device does not take function 22 (mask write register): set "
               "mask_write = false";
    default:
        return NULL;
    }
}

/* One attempt of a write, with the function codes the device's settings ask for. Returns
 * what libmodbus returned and, in *expect, what it returns on success; *fc is the write
 * function that was sent. */
static int write_once(struct mb *mb, struct bus_device *bd, int unit, const struct tag_config *t,
                      const uint16_t *regs, double d, int *expect, int *fc)
{
    const struct device_config *dc = bd->dev->cfg;
    int n;

    *expect = 1;
    if (t->type == VT_BIT && dc->mask_write) {
        /* (register AND and) OR (or AND NOT and): only our bit changes, atomically in the
         * device, so a bit the device itself sets meanwhile is not lost. */
        uint16_t bit = (uint16_t)(1u << t->bit);
        *fc = MODBUS_FC_MASK_WRITE_REGISTER;
        before_transaction(mb, unit);
        return op_mask_write(mb, unit, t->address, (uint16_t)~bit, d != 0 ? bit : 0);
    }
    if (t->type == VT_BIT) {
        /* Read-modify-write of the one register: this thread is the only writer on our
         * side, so the register cannot change under us from here. */
        uint16_t cur;
        *fc = MODBUS_FC_READ_HOLDING_REGISTERS;
        before_transaction(mb, unit);
        n = op_read(mb, unit, TABLE_HOLDING, t->address, 1, &cur, NULL);
        mb->last_end_us = now_us();
        bus_transaction(mb->bus, bd, n == 1);
        if (n != 1)
            return n < 0 ? n : -1;
        cur = d != 0 ? (uint16_t)(cur | (1u << t->bit)) : (uint16_t)(cur & ~(1u << t->bit));
        before_transaction(mb, unit);
        if (dc->write_multiple) {
            *fc = MODBUS_FC_WRITE_MULTIPLE_REGISTERS;
            return op_write_registers(mb, unit, t->address, 1, &cur);
        }
        *fc = MODBUS_FC_WRITE_SINGLE_REGISTER;
        return op_write_register(mb, unit, t->address, cur);
    }
    before_transaction(mb, unit);
    if (t->type == VT_BOOL) {
        uint8_t bit = d != 0;
        if (dc->write_multiple) {
            *fc = MODBUS_FC_WRITE_MULTIPLE_COILS;
            return op_write_bits(mb, unit, t->address, 1, &bit);
        }
        *fc = MODBUS_FC_WRITE_SINGLE_COIL;
        return op_write_bit(mb, unit, t->address, bit);
    }
    if (t->count == 1 && !dc->write_multiple) {
        *fc = MODBUS_FC_WRITE_SINGLE_REGISTER;
        return op_write_register(mb, unit, t->address, regs[0]);
    }
    *fc = MODBUS_FC_WRITE_MULTIPLE_REGISTERS;
    *expect = t->count;
    return op_write_registers(mb, unit, t->address, t->count, regs);
}

static int mb_write(struct mb *mb, struct bus_device *bd, int unit, const struct tag_config *t,
                    const struct value *v, const char **hint)
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
        int n, expect, fc;

        if (!mb->connected && mb_connect(mb) < 0)
            return -ENOTCONN;
        n = write_once(mb, bd, unit, t, regs, d, &expect, &fc);
        err = n < 0 ? errno : EMBBADDATA;
        mb->last_end_us = now_us();
        bus_transaction(mb->bus, bd, n == expect || (n < 0 && is_exception(err)));
        if (n == expect)
            return 0;
        if (err == EMBXILFUN)
            *hint = write_hint(fc);
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
        return mb_write(mb, bd, unit, t, &cmd->value, &cmd->hint);

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

/* ---- device identification (function 43/14) ---------------------------------------------- */

/* Read exactly len bytes by the deadline. */
static int read_by(int fd, uint8_t *buf, size_t len, uint64_t deadline_us)
{
    size_t got = 0;

    while (got < len) {
        uint64_t now = now_us();
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        ssize_t n;
        int r;

        if (now >= deadline_us)
            return -ETIMEDOUT;
        r = poll(&pfd, 1, (int)((deadline_us - now + 999) / 1000));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return -ETIMEDOUT;
        n = read(fd, buf + got, len - got);
        if (n == 0)
            return -ECONNRESET;
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0)
            return -errno;
        got += (size_t)n;
    }
    return 0;
}

/* The answer PDU of one 43/14 request, framed here (see drivers/mei.h): on TCP by the MBAP
 * length, on RTU by mei_pdu_length() and checked by its CRC. Returns the PDU length or
 * -errno, with the errno values libmodbus uses for the same failures. The MBAP transaction
 * id is not compared (libmodbus keeps it private); a late answer cannot be mistaken for
 * this one because a TCP timeout re-opens the connection. */
static int mei_receive(struct mb *mb, int unit, uint8_t *pdu)
{
    uint64_t deadline = now_us() + (uint64_t)mb->cfg->timeout_ms * 1000u;
    int fd = modbus_get_socket(mb->ctx);
    uint8_t adu[1 + MEI_PDU_MAX + 2];
    size_t have;
    int want, r;

    if (!mb->rtu) {
        unsigned len;
        r = read_by(fd, adu, 7, deadline);
        if (r < 0)
            return r;
        len = (unsigned)adu[4] << 8 | adu[5];
        if (adu[2] || adu[3] || adu[6] != unit || len < 2 || len > MEI_PDU_MAX + 1)
            return -EMBBADDATA;
        r = read_by(fd, pdu, len - 1, deadline);
        if (r < 0)
            return r;
        want = mei_pdu_length(pdu, len - 1);
        return want == (int)len - 1 ? want : -EMBBADDATA;
    }
    /* RTU: unit, PDU, CRC (low byte first). */
    r = read_by(fd, adu, 1, deadline);
    if (r < 0)
        return r;
    have = 1;
    while ((want = mei_pdu_length(adu + 1, have - 1)) > (int)have - 1) {
        r = read_by(fd, adu + have, (size_t)want - (have - 1), deadline);
        if (r < 0)
            return r;
        have = (size_t)want + 1;
    }
    if (want < 0)
        return -EMBBADDATA;
    r = read_by(fd, adu + have, 2, deadline);
    if (r < 0)
        return r;
    if (adu[0] != unit || mbf_crc16(adu, have) != (uint16_t)(adu[have] | adu[have + 1] << 8))
        return -EMBBADCRC;
    memcpy(pdu, adu + 1, (size_t)want);
    return want;
}

/* One 43/14 request, req as mei_request() made it: the answer PDU into pdu (room for
 * MEI_PDU_MAX bytes). Its length, or -errno as for the other transactions. */
static int op_identify(struct mb *mb, int unit, const uint8_t *req, uint8_t *pdu)
{
    if (mb->framed) {
        size_t n;
        int r = mb_link_identify(&mb->link, (uint8_t)unit, req[3], req[4], pdu, &n);

        return r < 0 ? (r == -EPROTO ? -EMBBADDATA : r) : (int)n;
    }
    if (modbus_send_raw_request(mb->ctx, req, MEI_REQUEST_LEN) < 0)
        return -errno;
    return mei_receive(mb, unit, pdu);
}

/* One request from object obj, with retries; the objects go into id. */
static int mei_read(struct mb *mb, struct bus_device *bd, int unit, uint8_t code, uint8_t obj,
                    struct device_ident *id, bool *more, uint8_t *next)
{
    uint8_t req[MEI_REQUEST_LEN], pdu[MEI_PDU_MAX];
    int err = ETIMEDOUT;

    mei_request((uint8_t)unit, code, obj, req);
    for (int attempt = 0; attempt <= mb->cfg->retries; attempt++) {
        int n, r;

        if (!mb->connected && mb_connect(mb) < 0)
            return -ENOTCONN;
        before_transaction(mb, unit);
        n = op_identify(mb, unit, req, pdu);
        if (n >= 0)
            n = mei_parse(pdu, (size_t)n, id, more, next);
        err = n < 0 ? -n : 0;
        mb->last_end_us = now_us();
        bus_transaction(mb->bus, bd, n >= 0 || is_exception(err));
        if (n >= 0)
            return 0;
        if (err == EBADMSG)
            err = EMBBADDATA;
        r = after_failure(mb, err);
        if (r)
            return r;
    }
    return -err;
}

int mb_identify(void *state, struct bus_device *bd, struct device_ident *id)
{
    struct mb *mb = state;
    int unit = bd->dev->cfg->unit_id;
    uint8_t code = MEI_READ_REGULAR, obj = 0;

    /* An answer that does not fit one PDU comes in pieces ("more follows"); a device that
     * keeps saying "more" without moving on is cut off. */
    for (int i = 0; i < 8; i++) {
        bool more = false;
        uint8_t next = 0;
        int r = mei_read(mb, bd, unit, code, obj, id, &more, &next);

        if (r < 0 && r != -EMBXILFUN && is_exception(-r) && code == MEI_READ_REGULAR) {
            /* A device of basic conformity may refuse the regular objects. */
            code = MEI_READ_BASIC;
            obj = 0;
            continue;
        }
        if (r < 0) {
            device_ident_clear(id);
            return r;
        }
        if (!more || next <= obj)
            return 0;
        obj = next;
    }
    return 0;
}
