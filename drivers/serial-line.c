/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Text sensors on a serial port: weather stations, GPS receivers, particle counters and
 * scales that print a line per reading.
 *
 * Two kinds of device:
 *  - polled (send = "…"): every poll_ms the request is written and the next line that
 *    arrives within timeout_ms is the answer. Several polled devices may share a port
 *    (RS-485 ASCII multidrop), each with its own request.
 *  - streaming (no send): the sensor talks on its own; its lines are read as they arrive
 *    (the port is the bus's event fd) and stamped with their arrival time. Such a device
 *    needs a port of its own (enforced by the configuration). It counts as silent, and is
 *    backed off like a device that does not answer, when no line has come for
 *    max(3 * poll_ms, timeout_ms).
 *
 * Lines end with CR, LF or CRLF. A line longer than SL_LINE_MAX bytes is dropped (up to
 * its end) and counted; bytes that are not UTF-8 never reach a payload (serial-parse.c).
 * A vanished port (USB adapter unplugged: read() gives EIO or 0) is a link error: the bus
 * re-opens it with backoff.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "core/bus.h"
#include "core/command.h"
#include "drivers/driver.h"
#include "drivers/serial-parse.h"
#include "drivers/serial-port.h"
#include "util/log.h"
#include "util/clock.h"
#include "util/macros.h"
#include "util/time-util.h"

#define SL_LINE_MAX 1024

struct sl_device {
    struct bus_device *bd;
    struct line_parser parser;
    bool dbl[KEYTAB_MAX]; /* key index: has been a double, so integers go out as doubles */
    bool garbage_logged;
};

struct sl {
    struct bus *bus;
    const struct bus_config *cfg;
    int fd;
    char buf[SL_LINE_MAX];
    size_t len;
    bool discarding; /* inside an over-long line */
    bool overlong_logged;
    struct sl_device *devs;
    size_t n_devs;
    struct sl_device *stream; /* the streaming device of this bus, if any */
    uint64_t last_line_ms;
    struct sl_device *emitting;
};

static int sl_open(struct bus *bus, void **ret_state)
{
    struct sl *sl = xcalloc(1, sizeof(*sl));

    sl->bus = bus;
    sl->cfg = bus_config(bus);
    sl->fd = -1;
    sl->n_devs = bus_n_devices(bus);
    sl->devs = xcalloc(sl->n_devs ? sl->n_devs : 1, sizeof(*sl->devs));
    for (size_t i = 0; i < sl->n_devs; i++) {
        struct sl_device *d = &sl->devs[i];
        const struct device_config *dc;
        int r;

        d->bd = bus_device(bus, i);
        d->bd->driver_data = d;
        dc = d->bd->dev->cfg;
        r = line_parser_init(&d->parser, dc->format, dc->columns, dc->pattern, dc->keys);
        if (r < 0) {
            for (size_t j = 0; j < i; j++)
                line_parser_free(&sl->devs[j].parser);
            free(sl->devs);
            free(sl);
            return r;
        }
        if (!dc->send)
            sl->stream = d;
    }
    *ret_state = sl;
    return 0;
}

static void sl_disconnect(void *state)
{
    struct sl *sl = state;

    if (sl->fd >= 0)
        close(sl->fd);
    sl->fd = -1;
    sl->len = 0;
    sl->discarding = false;
}

static void sl_close(void *state)
{
    struct sl *sl = state;

    if (!sl)
        return;
    sl_disconnect(sl);
    for (size_t i = 0; i < sl->n_devs; i++)
        line_parser_free(&sl->devs[i].parser);
    free(sl->devs);
    free(sl);
}

/* The devices of the bus may have changed: their parsers are the new bus's; the port and
 * what was read from it so far stay. */
static int sl_adopt(struct bus *bus, void *old_state, void **ret_state)
{
    struct sl *old = old_state, *sl;
    int r = sl_open(bus, ret_state);

    if (r < 0) {
        sl_close(old);
        return r;
    }
    sl = *ret_state;
    sl->fd = old->fd;
    memcpy(sl->buf, old->buf, old->len);
    sl->len = old->len;
    sl->discarding = old->discarding;
    sl->overlong_logged = old->overlong_logged;
    sl->last_line_ms = old->last_line_ms;
    old->fd = -1;
    sl_close(old);
    return 0;
}

static int sl_connect(void *state)
{
    struct sl *sl = state;
    const struct bus_config *c = sl->cfg;
    int fd;

    fd = serial_port_open(c);
    if (fd < 0)
        return fd;
    sl->fd = fd;
    sl->len = 0;
    sl->discarding = false;
    sl->last_line_ms = now_ms();
    return 0;
}

static void emit(void *ctx, const char *key, struct value *v)
{
    struct sl *sl = ctx;
    struct sl_device *d = sl->emitting;
    struct keytab *kt = d->bd->dev->keys;
    int k = keytab_find(kt, key);
    bool is_double = v->kind == VK_DOUBLE;

    /* One JSON form per key: once a key has carried a fraction, its whole numbers are sent
     * as doubles too, so ThingsBoard does not see LONG and DOUBLE alternate. */
    if (v->kind == VK_INT && k >= 0 && d->dbl[k]) {
        v->kind = VK_DOUBLE;
        v->d = (double)v->i;
    }
    bus_emit_value(sl->bus, d->bd, key, v);
    if (is_double) {
        if (k < 0)
            k = keytab_find(kt, key);
        if (k >= 0)
            d->dbl[k] = true;
    }
}

/* Parse one complete line for device d. Returns values emitted, or -EBADMSG. */
static int handle_line(struct sl *sl, struct sl_device *d, const char *line, size_t len)
{
    int n;

    sl->emitting = d;
    d->bd->poll_ts = clock_wall_ms();
    n = line_parse(&d->parser, line, len, emit, sl);
    sl->emitting = NULL;
    bus_transaction(sl->bus, d->bd, n > 0);
    if (n < 0 && !d->garbage_logged) {
        d->garbage_logged = true;
        /* line is not NUL-terminated: without the length, the end of an older, longer
         * line would be printed too. */
        log_warning("device '%s': ignoring a line that is not %s: \"%.*s\"",
                    d->bd->dev->cfg->name,
                    d->parser.format == FORMAT_JSON  ? "a JSON object"
                    : d->parser.format == FORMAT_KV  ? "key=value pairs"
                    : d->parser.format == FORMAT_CSV ? "comma-separated values"
                                                     : "matched by the pattern",
                    (int)MIN(len, (size_t)60), line);
    }
    return n;
}

/* Read what is available; call on_line for each complete line. Returns 0, or -errno when
 * the port failed (EIO and end-of-file both mean the device went away). */
static int read_lines(struct sl *sl, void (*on_line)(struct sl *, const char *, size_t, void *),
                      void *arg)
{
    char chunk[512];

    for (;;) {
        ssize_t n = read(sl->fd, chunk, sizeof(chunk));

        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return 0;
            return -errno;
        }
        if (n == 0)
            return -EIO;
        for (ssize_t i = 0; i < n; i++) {
            char c = chunk[i];
            if (c == '\r' || c == '\n') {
                if (sl->discarding)
                    sl->discarding = false;
                else if (sl->len)
                    on_line(sl, sl->buf, sl->len, arg);
                sl->len = 0;
                continue;
            }
            if (sl->discarding)
                continue;
            if (sl->len == sizeof(sl->buf)) {
                sl->discarding = true;
                sl->len = 0;
                if (!sl->overlong_logged) {
                    sl->overlong_logged = true;
                    log_warning("bus '%s': dropping a line longer than %d bytes (and any "
                                "further ones)",
                                sl->cfg->name, SL_LINE_MAX);
                }
                continue;
            }
            sl->buf[sl->len++] = c;
        }
        if ((size_t)n < sizeof(chunk))
            return 0;
    }
}

/* ---- streaming ---- */

static void stream_line(struct sl *sl, const char *line, size_t len, void *arg)
{
    sl->last_line_ms = now_ms();
    if (sl->stream && handle_line(sl, sl->stream, line, len) > 0)
        bus_device_answered(sl->bus, sl->stream->bd);
    /* On a polled bus a line nobody asked for is noise from the line: dropped. */
}

static int sl_event_fd(void *state)
{
    return ((struct sl *)state)->fd;
}

static int sl_on_event(void *state)
{
    struct sl *sl = state;
    int r = read_lines(sl, stream_line, NULL);

    return r < 0 ? (r == -EAGAIN ? 0 : -EIO) : 0;
}

/* ---- polled ---- */

struct answer {
    struct sl_device *d;
    int result; /* >0 values, -EBADMSG garbage, 0 nothing yet */
};

static void answer_line(struct sl *sl, const char *line, size_t len, void *arg)
{
    struct answer *a = arg;

    if (a->result > 0)
        return; /* the answer is in; anything after it is dropped */
    a->result = handle_line(sl, a->d, line, len);
}

static int write_all(struct sl *sl, const char *s, size_t len, uint64_t deadline)
{
    while (len) {
        ssize_t n = write(sl->fd, s, len);
        if (n < 0) {
            struct pollfd p = {.fd = sl->fd, .events = POLLOUT};
            uint64_t now = now_ms();
            if (errno != EAGAIN && errno != EINTR)
                return -errno;
            if (now >= deadline)
                return -ETIMEDOUT;
            poll(&p, 1, (int)(deadline - now));
            continue;
        }
        s += n;
        len -= (size_t)n;
    }
    return 0;
}

static int sl_poll(void *state, struct bus_device *bd)
{
    struct sl *sl = state;
    struct sl_device *d = bd->driver_data;
    const struct device_config *dc = bd->dev->cfg;
    struct answer a = {.d = d};
    uint64_t deadline;
    int r;

    if (!dc->send) {
        uint64_t silence = MAX((uint64_t)dc->poll_ms * 3, (uint64_t)sl->cfg->timeout_ms);
        return now_ms() - sl->last_line_ms > silence ? -ETIMEDOUT : 0;
    }

    /* Whatever arrived before the request is not its answer. */
    r = read_lines(sl, stream_line, NULL);
    if (r < 0)
        return -ENOTCONN;
    sl->len = 0;
    sl->discarding = false;
    deadline = now_ms() + (uint64_t)sl->cfg->timeout_ms;
    r = write_all(sl, dc->send, strlen(dc->send), deadline);
    if (r < 0)
        return driver_link_error(r) ? -ENOTCONN : r;

    while (a.result <= 0) {
        struct pollfd p = {.fd = sl->fd, .events = POLLIN};
        uint64_t now = now_ms();
        if (now >= deadline)
            break;
        if (poll(&p, 1, (int)(deadline - now)) <= 0)
            continue;
        r = read_lines(sl, answer_line, &a);
        if (r < 0)
            return -ENOTCONN;
    }
    if (a.result > 0)
        return 0;
    if (a.result == 0)
        bus_transaction(sl->bus, bd, false);
    return a.result < 0 ? -EBADMSG : -ETIMEDOUT;
}

static int sl_execute(void *state, struct bus_device *bd, struct command *cmd)
{
    return -EOPNOTSUPP; /* text sensors have nothing to write; reads happen on schedule */
}

const struct driver driver_serial_line = {
    .kind = DRIVER_SERIAL_LINE,
    .open = sl_open,
    .close = sl_close,
    .adopt = sl_adopt,
    .connect = sl_connect,
    .disconnect = sl_disconnect,
    .poll = sl_poll,
    .execute = sl_execute,
    .event_fd = sl_event_fd,
    .on_event = sl_on_event,
};
