/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Request/reply I/O for RTU-over-TCP and Modbus ASCII links (see modbus-link.h).
 *
 * Invariants: the fd is non-blocking and every wait is a poll() bounded by the request's
 * deadline, so a silent peer costs exactly timeout_ms; buf never holds a byte that can no
 * longer start the awaited reply (modbus-frame.c says which those are).
 *
 * Thread: the bus thread.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <modbus.h>
#include <poll.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include "drivers/modbus-link.h"
#include "util/time-util.h"

void mb_link_init(struct mb_link *l, bool ascii, int timeout_ms)
{
    memset(l, 0, sizeof(*l));
    l->fd = -1;
    l->ascii = ascii;
    l->timeout_ms = timeout_ms;
}

void mb_link_attach(struct mb_link *l, int fd)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl >= 0)
        (void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    l->fd = fd;
    l->n = 0;
}

/* A read or write error as the bus should see it: a socket that gave up on its peer
 * (TCP_USER_TIMEOUT, keepalive) reports ETIMEDOUT, which must not pass for a unit's
 * silence. */
static int io_error(int err)
{
    return err == ETIMEDOUT ? -ECONNABORTED : -err;
}

int mb_drain(int fd)
{
    uint8_t junk[256];
    bool sock = true;

    for (;;) {
        /* MSG_DONTWAIT: libmodbus's sockets are blocking. */
        ssize_t r = sock ? recv(fd, junk, sizeof(junk), MSG_DONTWAIT) : read(fd, junk, sizeof(junk));
        if (r > 0)
            continue;
        if (r == 0)
            return -ECONNRESET;
        if (errno == EINTR)
            continue;
        if (errno == ENOTSOCK && sock) {
            sock = false; /* a tty: non-blocking, VMIN 1 (serial-port.c) */
            continue;
        }
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : io_error(errno);
    }
}

int mb_link_flush(struct mb_link *l)
{
    l->n = 0;
    return mb_drain(l->fd);
}

static int wait_fd(int fd, short events, uint64_t deadline_ms)
{
    struct pollfd p = {.fd = fd, .events = events};

    for (;;) {
        uint64_t now = now_ms();
        int r;

        if (now >= deadline_ms)
            return -ETIMEDOUT;
        r = poll(&p, 1, (int)(deadline_ms - now));
        if (r > 0)
            return 0;
        if (r == 0)
            return -ETIMEDOUT;
        if (errno != EINTR)
            return -errno;
    }
}

static int send_all(struct mb_link *l, const void *p, size_t n, uint64_t deadline_ms)
{
    const uint8_t *b = p;

    while (n) {
        ssize_t w = write(l->fd, b, n);
        if (w > 0) {
            b += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int r = wait_fd(l->fd, POLLOUT, deadline_ms);
            if (r < 0)
                return r;
            continue;
        }
        return io_error(w < 0 ? errno : EIO);
    }
    return 0;
}

/* Best effort, as libmodbus does for RTU: a port without modem lines (a pty, some USB
 * adapters with automatic direction control) still carries the frame. */
static void set_rts(int fd, bool on)
{
    int bit = TIOCM_RTS;

    (void)ioctl(fd, on ? TIOCMBIS : TIOCMBIC, &bit);
}

/* RS-485 half duplex with the driver enable on RTS (as libmodbus does for RTU): RTS at its
 * sending level while the frame leaves, back once the last bit is out of the UART. */
static int send_frame(struct mb_link *l, const void *p, size_t n, uint64_t deadline_ms)
{
    int r;

    if (!l->rts)
        return send_all(l, p, n, deadline_ms);
    set_rts(l->fd, l->rts == 1);
    usleep((useconds_t)l->rts_delay_us);
    r = send_all(l, p, n, deadline_ms);
    if (r == 0 && tcdrain(l->fd) < 0)
        r = io_error(errno);
    usleep((useconds_t)l->rts_delay_us);
    set_rts(l->fd, l->rts != 1);
    return r;
}

static bool match(struct mb_link *l, const struct mbf_expect *e, uint8_t *pdu, size_t *pdu_len)
{
    size_t used;
    bool found = l->ascii ? mbf_ascii_match((const char *)l->buf, l->n, e, pdu, pdu_len, &used)
                          : mbf_rtu_match(l->buf, l->n, e, pdu, pdu_len, &used);

    memmove(l->buf, l->buf + used, l->n - used);
    l->n -= used;
    return found;
}

/* Send req to unit and wait for the PDU that answers it. */
static int transact(struct mb_link *l, uint8_t unit, const uint8_t *req, size_t req_len,
                    struct mbf_expect *e, uint8_t *rsp, size_t *rsp_len)
{
    uint64_t deadline = now_ms() + (uint64_t)l->timeout_ms;
    uint8_t frame[MBF_ASCII_MAX];
    size_t len;
    int r;

    if (l->fd < 0)
        return -ENOTCONN;
    /* Whatever is pending now answers nothing we will ask. */
    r = mb_link_flush(l);
    if (r < 0)
        return r;
    e->unit = unit;
    len = l->ascii ? mbf_ascii_encode(unit, req, req_len, (char *)frame)
                   : mbf_rtu_encode(unit, req, req_len, frame);
    r = send_frame(l, frame, len, deadline);
    if (r < 0)
        return r;

    for (;;) {
        ssize_t got;

        if (match(l, e, rsp, rsp_len))
            break;
        if (l->n == sizeof(l->buf))
            l->n = 0; /* cannot happen (see the invariant), but never spin on a full buffer */
        r = wait_fd(l->fd, POLLIN, deadline);
        if (r < 0)
            return r;
        got = read(l->fd, l->buf + l->n, sizeof(l->buf) - l->n);
        if (got > 0)
            l->n += (size_t)got;
        else if (got == 0)
            return -ECONNRESET;
        else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return io_error(errno);
    }
    r = mbf_pdu_exception(rsp, *rsp_len);
    return r ? -(MODBUS_ENOBASE + r) : 0;
}

/* One request and its checked reply; regs or bits take a read's data. */
static int request(struct mb_link *l, uint8_t unit, const uint8_t *req, size_t n,
                   struct mbf_expect *e, uint16_t *regs, uint8_t *bits)
{
    uint8_t rsp[MBF_PDU_MAX];
    size_t rn;
    int r = transact(l, unit, req, n, e, rsp, &rn);

    return r < 0 ? r : mbf_pdu_reply(req, rsp, rn, regs, bits);
}

int mb_link_read(struct mb_link *l, uint8_t unit, uint8_t function, uint16_t addr,
                 uint16_t count, uint16_t *regs, uint8_t *bits)
{
    uint8_t req[5];
    struct mbf_expect e;
    size_t n = mbf_pdu_read(function, addr, count, req, &e);

    return request(l, unit, req, n, &e, regs, bits);
}

int mb_link_write_single(struct mb_link *l, uint8_t unit, uint8_t function, uint16_t addr,
                         uint16_t value)
{
    uint8_t req[5];
    struct mbf_expect e;
    size_t n = mbf_pdu_write_single(function, addr, value, req, &e);

    return request(l, unit, req, n, &e, NULL, NULL);
}

int mb_link_write_registers(struct mb_link *l, uint8_t unit, uint16_t addr, uint16_t count,
                            const uint16_t *regs)
{
    uint8_t req[MBF_PDU_MAX];
    struct mbf_expect e;
    size_t n;

    if (count < 1 || count > MODBUS_MAX_WRITE_REGISTERS)
        return -EINVAL;
    n = mbf_pdu_write_registers(addr, count, regs, req, &e);
    return request(l, unit, req, n, &e, NULL, NULL);
}

int mb_link_write_bits(struct mb_link *l, uint8_t unit, uint16_t addr, uint16_t count,
                       const uint8_t *bits)
{
    uint8_t req[MBF_PDU_MAX];
    struct mbf_expect e;
    size_t n;

    if (count < 1 || count > MODBUS_MAX_WRITE_BITS)
        return -EINVAL;
    n = mbf_pdu_write_bits(addr, count, bits, req, &e);
    return request(l, unit, req, n, &e, NULL, NULL);
}

int mb_link_mask_write(struct mb_link *l, uint8_t unit, uint16_t addr, uint16_t and_mask,
                       uint16_t or_mask)
{
    uint8_t req[7];
    struct mbf_expect e;
    size_t n = mbf_pdu_mask_write(addr, and_mask, or_mask, req, &e);

    return request(l, unit, req, n, &e, NULL, NULL);
}

int mb_link_identify(struct mb_link *l, uint8_t unit, uint8_t read_code, uint8_t object,
                     uint8_t *pdu, size_t *len)
{
    uint8_t req[4];
    struct mbf_expect e;
    size_t n = mbf_pdu_identify(read_code, object, req, &e);
    int r = transact(l, unit, req, n, &e, pdu, len);

    /* The objects stay in pdu: the caller parses them (mei_parse()). */
    return r < 0 ? r : mbf_pdu_reply(req, pdu, *len, NULL, NULL);
}
