/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fake-modbus: the Modbus slave that tbgw's integration tests, benches and demo talk to.
 *
 * One process, one thread, one poll() loop. It serves Modbus TCP on 127.0.0.1 (any number of
 * clients at once) or Modbus RTU on a serial device (normally one end of a socat pty pair),
 * or one of the field-link transports (RTU frames on TCP as a device server does, served
 * or dialled out like a cellular DTU; Modbus ASCII on a serial device), plus a line-based
 * control port through which a test reads and writes the tables, reads the
 * counters and the request log, and scripts faults. tests/fakes/README.md is the interface;
 * this file implements it.
 *
 * Why it is built this way:
 *
 * - Normal answers come from libmodbus's server side, modbus_reply(), so tbgw is tested
 *   against the encoder that real libmodbus-based slaves use, not against our own reading of
 *   the specification. Only deliberately broken answers (garbage, a wrong CRC) are made here.
 *
 * - modbus_reply() writes its answer straight to the context's socket. While it replies, the
 *   context points at one end of a datagram socketpair (the "shim"), and we read the answer
 *   back from the other end. That one indirection hands us the answer as bytes: we count
 *   exceptions, corrupt the answer for the garbage and CRC faults, and hold it back for
 *   `fault delay` without sleeping, so the control port and the other clients stay served
 *   while a slow slave is simulated.
 *
 * - libmodbus's RTU receiver only accepts frames for the one slave id it was given, and a
 *   test line carries many. So on RTU we frame requests ourselves: the length follows from
 *   the function code, the CRC-16 is checked, a frame with a bad CRC is dropped unanswered
 *   and counted (as a real slave does), and a partial frame is discarded after 50 ms of
 *   silence. A function code of unknown length ends at 5 ms of silence and is answered with
 *   exception 1 (illegal function).
 *
 * - On TCP we peek until the MBAP header says a whole frame is there and only then call
 *   modbus_receive(), so a client that sends half a frame cannot stall the loop: it is
 *   re-checked every few milliseconds and closed when the rest has not come after 500 ms.
 *   If the MBAP length and the function code disagree, libmodbus waits at most its byte
 *   timeout (100 ms here) and the connection is closed. libmodbus waits with select(), so a
 *   client whose descriptor does not fit in an fd_set is refused.
 *
 * - A unit's four tables (65 536 entries each, about 0.4 MB) are created on first use, as a
 *   copy of a template that holds the values written for `*`; only units that something
 *   addresses cost memory. Unit 0 is broadcast: a write goes to every existing served unit
 *   and to the template (so a unit created later looks as if it had heard it too), and
 *   nothing is answered.
 *
 * Invariants: nothing waits on a peer without a bound (every socket and the serial line are
 * non-blocking; writes wait at most 100 ms for room, then the answer or the client is
 * dropped); stdout carries exactly the READY line; SIGTERM and SIGINT arrive through a
 * signalfd, end the loop and give exit status 0. Exit status 2 means a bad command line or
 * map file, 1 a failure at run time.
 *
 * Where the README leaves room, this file decides: every request with a good CRC is counted
 * in `requests` and logged, ignored ones and broadcasts included; function 23 counts as a
 * read and a write; `exceptions` counts exception answers sent, from libmodbus or from a
 * fault; a request for a silent or unserved unit is not executed (`ignored`); garbage, crc
 * and drop act on the answer after the request was executed (a write whose answer is lost
 * still wrote); `fault crc` is refused on TCP and `fault drop` on a serial line; in `fault silent`,
 * `exception` and `hole`, unit 0 or * means every unit; `log` answers "ok N", N lines, "end".
 * `min_gap_us` runs from the moment write() of an answer returns to the moment the first
 * byte of the next request is read (so it errs long, never short: what a pty relays late
 * only adds), a request already buffered when the answer goes out counts as 0, and on TCP
 * it stays -1.
 *
 * Ownership: struct fake owns everything (the libmodbus context, the tables, the peers, the
 * control clients, the log ring). A peer or control client that fails is marked dead where
 * it fails and freed at the end of the loop iteration, so pointers taken during one
 * iteration stay valid.
 */
#ifndef _GNU_SOURCE /* config.h (included by the build) may define it already */
#define _GNU_SOURCE
#endif

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <modbus.h>

#define N_ADDRESSES 65536
#define N_UNIT_IDS 256
#define UNIT_STAR N_UNIT_IDS          /* "*" in a unit field */
#define LOG_CAPACITY 100000
#define MAX_RANGE_FAULTS 64
#define MAX_DELAY_MS 600000
#define MAX_FAULT_COUNT 1000000000UL
#define ANSWER_MAX 512
#define RTU_RX_MAX 1024
#define RTU_GAP_UNKNOWN_MS 5          /* silence that ends a frame of unknown length */
#define RTU_GAP_PARTIAL_MS 50         /* silence after which a partial frame is discarded */
#define TCP_RECHECK_MS 5              /* how often a half-received TCP frame is looked at */
#define TCP_PARTIAL_MS 500            /* how long the rest of a TCP frame may take */
#define WRITE_WAIT_MS 100             /* how long a write may wait for room */
#define MBAP_LENGTH 7
#define FC_MEI 0x2B                   /* encapsulated interface transport (43) */
#define MEI_DEVICE_ID 0x0E            /* read device identification (43/14) */
#define CTL_LINE_MAX (1024 * 1024)
#define CTL_OUT_MAX (64 * 1024 * 1024)
#define REDIAL_MS 200                 /* --rtu-tcp-dial: pause before dialling again */
#define ASCII_LINE_MAX 513            /* ':' + 2 * (unit, 253-byte PDU, LRC) + CR LF */

enum table { TABLE_COIL, TABLE_DISCRETE, TABLE_INPUT, TABLE_HOLDING, N_TABLES };

static const char *const table_names[N_TABLES] = { "coil", "discrete", "input", "holding" };

struct log_entry {
    uint8_t unit;
    uint8_t fc;
    uint16_t addr;
    uint16_t count;
};

/* `fault exception` / `fault hole`: requests touching [addr, addr + count) of one table. */
struct range_fault {
    unsigned unit;                      /* 0: every unit */
    enum table table;
    unsigned addr;
    unsigned count;
    unsigned code;
};

struct faults {
    unsigned delay_ms;
    bool silent_all;
    bool silent[N_UNIT_IDS];
    struct range_fault ranges[MAX_RANGE_FAULTS];
    unsigned n_ranges;
    unsigned long garbage;
    unsigned long crc;
    unsigned long drop;
};

/* `unit` and `ident`: how one unit differs from a plain slave (allocated on first use). */
struct unit_opts {
    unsigned delay_ms;                  /* every answer of this unit is this late */
    bool refuse[256];                   /* function codes answered with exception 1 */
    char *ident[256];                   /* device identification objects (43/14) */
    unsigned ident_per_answer;          /* objects per 43/14 answer, 0: as many as fit */
    unsigned ident_max_code;            /* highest read device id code served, 0: all (4) */
};

struct counters {
    uint64_t requests;
    uint64_t reads;
    uint64_t writes;
    uint64_t exceptions;
    uint64_t crc_errors;
    uint64_t ignored;
    uint64_t damaged;                   /* answers dropped, garbled or sent with a bad CRC */
    int64_t min_gap_us;                 /* RTU: shortest answer-to-next-request silence, -1 */
};

/* What a request asks for, as far as the log, the counters and the range faults care. */
struct request {
    unsigned unit;
    unsigned fc;
    unsigned addr;                      /* first address, as logged */
    unsigned count;                     /* entries, as logged (1 for single writes) */
    int table;                          /* the table it touches, -1 for none */
    unsigned waddr;                     /* function 23: the range written */
    unsigned wcount;
    bool read;
    bool write;
};

/* A Modbus TCP client, or (on RTU) the serial line. */
struct peer {
    int fd;
    bool dead;
    int64_t partial_since_ms;           /* TCP: a frame is half there since, -1: none */
    bool held;                          /* an answer is held back by `fault delay` */
    int64_t held_due_ms;
    uint8_t held_buf[ANSWER_MAX];
    size_t held_len;
    uint8_t rx[RTU_RX_MAX];             /* RTU: bytes not yet framed */
    size_t rx_len;
    int64_t rx_last_ms;
    int64_t answer_end_us;              /* RTU: when our last answer was written, -1: none */
    bool zombie;                        /* --rtu-tcp-dial: left open but abandoned (redial keep) */
};

struct ctl {
    int fd;
    bool dead;
    bool eof;                           /* peer shut down its side: close once out is sent */
    char *in;
    size_t in_len;
    size_t in_cap;
    char *out;
    size_t out_off;
    size_t out_len;
    size_t out_cap;
};

struct tokens {
    char **v;
    size_t n;
    size_t cap;
};

struct fake {
    bool rtu;                           /* RTU frames inside (also for the transports below) */
    bool stream;                        /* RTU frames on TCP connections (--rtu-tcp, --rtu-tcp-dial) */
    bool ascii;                         /* Modbus ASCII on the serial line (--ascii) */
    int dial_port;                      /* --rtu-tcp-dial: tbgw's listen port, else -1 */
    int64_t redial_due_ms;              /* when to dial again, -1: connected or not dialling */
    uint64_t connections;               /* connections accepted or dialled since start */
    modbus_t *mb;
    int shim[2];                        /* [0] is where modbus_reply() writes, [1] we read */
    int listen_fd;                      /* Modbus TCP, -1 on RTU */
    int control_fd;
    int signal_fd;
    int tcp_port;
    int control_port;
    bool served[N_UNIT_IDS];
    modbus_mapping_t *units[N_UNIT_IDS];
    modbus_mapping_t *template;         /* values written for "*": every new unit starts so */
    struct peer **peers;
    size_t n_peers;
    size_t cap_peers;
    struct ctl **ctls;
    size_t n_ctls;
    size_t cap_ctls;
    struct faults faults;
    struct unit_opts *opts[N_UNIT_IDS];
    struct counters counters;
    struct log_entry *log;
    size_t log_head;
    size_t log_len;
    struct tokens tokens;
    uint64_t rng;
    bool stop;
    int exit_status;
};

static bool arg_quiet;
static int arg_tcp_port = -1;
static const char *arg_rtu_path;
static int arg_rtu_tcp_port = -1;
static int arg_dial_port = -1;
static bool arg_dial_tcp;                /* --tcp-dial: Modbus TCP frames on the dialled link */
static bool arg_ascii;
static int arg_baud = 19200;
static char arg_parity = 'N';
static int arg_data_bits = 8;
static int arg_stop_bits = 1;
static int arg_control_port;
static const char *arg_units;
static const char *arg_map;

/* ---- small helpers ---- */

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void complain(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A diagnostic, silenced by --quiet. */
static void note(const char *fmt, ...)
{
    va_list ap;

    if (arg_quiet)
        return;
    va_start(ap, fmt);
    fputs("fake-modbus: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* An error that stops the program; printed even with --quiet. */
static void complain(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("fake-modbus: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t now_ms(void)
{
    return now_us() / 1000;
}

static void counters_reset(struct counters *c)
{
    memset(c, 0, sizeof(*c));
    c->min_gap_us = -1;
}

/* RTU: the silence between our last answer and the next request, gap_us (0 when the request
 * had begun before the answer was out), goes into min_gap_us. */
static void note_gap(struct counters *c, int64_t gap_us)
{
    if (gap_us < 0)
        gap_us = 0;
    if (c->min_gap_us < 0 || gap_us < c->min_gap_us)
        c->min_gap_us = gap_us;
}

static unsigned be16(const uint8_t *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

/* CRC-16/MODBUS: reflected polynomial 0xA001, initial value 0xFFFF, sent low byte first. */
static unsigned crc16(const uint8_t *p, size_t len)
{
    unsigned crc = 0xFFFF;

    for (size_t i = 0; i < len; i++) {
        crc ^= p[i];
        for (int bit = 0; bit < 8; bit++)
            crc = (crc & 1) ? (crc >> 1) ^ 0xA001 : crc >> 1;
    }
    return crc;
}

static bool crc_ok(const uint8_t *frame, size_t len)
{
    return len >= 4 && crc16(frame, len - 2) == (frame[len - 2] | (unsigned)frame[len - 1] << 8);
}

/* xorshift64*: only has to look random to a Modbus master. */
static uint8_t random_byte(struct fake *f)
{
    f->rng ^= f->rng >> 12;
    f->rng ^= f->rng << 25;
    f->rng ^= f->rng >> 27;
    return (uint8_t)((f->rng * 0x2545F4914F6CDD1DULL) >> 56);
}

/* Parses a decimal or 0x-hexadecimal number no greater than max. Returns 0 or -EINVAL. */
static int parse_number(const char *s, unsigned long max, unsigned long *ret)
{
    unsigned long v;
    char *end;
    int base = 10;

    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
        if (!isxdigit((unsigned char)s[0]))
            return -EINVAL;
    } else if (!isdigit((unsigned char)s[0])) {
        return -EINVAL;
    }
    errno = 0;
    v = strtoul(s, &end, base);
    if (*end != '\0' || errno == ERANGE || v > max)
        return -EINVAL;
    *ret = v;
    return 0;
}

/* A unit id 0..255, or "*" (UNIT_STAR) when star is allowed. Returns the unit or -EINVAL. */
static int parse_unit(const char *s, bool star)
{
    unsigned long v;

    if (star && strcmp(s, "*") == 0)
        return UNIT_STAR;
    if (parse_number(s, N_UNIT_IDS - 1, &v) < 0)
        return -EINVAL;
    return (int)v;
}

static int table_from_string(const char *s)
{
    for (int t = 0; t < N_TABLES; t++)
        if (strcmp(s, table_names[t]) == 0)
            return t;
    return -EINVAL;
}

static bool table_is_bits(enum table t)
{
    return t == TABLE_COIL || t == TABLE_DISCRETE;
}

static unsigned table_get(const modbus_mapping_t *m, enum table t, unsigned addr)
{
    switch (t) {
    case TABLE_COIL:
        return m->tab_bits[addr];
    case TABLE_DISCRETE:
        return m->tab_input_bits[addr];
    case TABLE_INPUT:
        return m->tab_input_registers[addr];
    default:
        return m->tab_registers[addr];
    }
}

static void table_set(modbus_mapping_t *m, enum table t, unsigned addr, unsigned v)
{
    switch (t) {
    case TABLE_COIL:
        m->tab_bits[addr] = (uint8_t)v;
        break;
    case TABLE_DISCRETE:
        m->tab_input_bits[addr] = (uint8_t)v;
        break;
    case TABLE_INPUT:
        m->tab_input_registers[addr] = (uint16_t)v;
        break;
    default:
        m->tab_registers[addr] = (uint16_t)v;
        break;
    }
}

/* Splits line in place at blanks. Returns 0 or -ENOMEM. */
static int tokenize(struct tokens *t, char *line)
{
    char *save = NULL;

    t->n = 0;
    for (char *w = strtok_r(line, " \t\r\n", &save); w; w = strtok_r(NULL, " \t\r\n", &save)) {
        if (t->n == t->cap) {
            size_t cap = t->cap ? 2 * t->cap : 16;
            char **v = realloc(t->v, cap * sizeof(*v));

            if (!v)
                return -ENOMEM;
            t->v = v;
            t->cap = cap;
        }
        t->v[t->n++] = w;
    }
    return 0;
}

static int set_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);

    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

/* Writes all of buf to a non-blocking fd, waiting at most WRITE_WAIT_MS in total for room.
 * Returns 0 or -errno (-ETIMEDOUT when the peer does not take the bytes). */
static int write_bounded(int fd, const void *buf, size_t len, bool socket)
{
    const uint8_t *p = buf;
    int64_t deadline = now_ms() + WRITE_WAIT_MS;

    while (len > 0) {
        ssize_t n = socket ? send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT) : write(fd, p, len);

        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;

        int64_t left = deadline - now_ms();
        struct pollfd pfd = { .fd = fd, .events = POLLOUT };

        if (left <= 0)
            return -ETIMEDOUT;
        if (poll(&pfd, 1, (int)left) < 0 && errno != EINTR)
            return -errno;
    }
    return 0;
}

static int bound_port(int fd)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    socklen_t len = sizeof(sa);

    if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
        return -errno;
    return ntohs(sa.sin_port);
}

/* A non-blocking listening socket on 127.0.0.1:port (0: any) in *ret_fd. Returns the port
 * it got, or -errno. */
static int listen_loopback(int port, int backlog, int *ret_fd)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int one = 1;

    *ret_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (*ret_fd < 0)
        return -errno;
    setsockopt(*ret_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(*ret_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(*ret_fd, backlog) < 0)
        return -errno;
    return bound_port(*ret_fd);
}

/* ---- units and their tables ---- */

static modbus_mapping_t *mapping_new(void)
{
    return modbus_mapping_new(N_ADDRESSES, N_ADDRESSES, N_ADDRESSES, N_ADDRESSES);
}

/* The tables of unit 1..255, created from the template on first use. NULL when out of memory. */
static modbus_mapping_t *unit_tables(struct fake *f, unsigned unit)
{
    modbus_mapping_t *m = f->units[unit];

    if (m)
        return m;
    m = mapping_new();
    if (!m)
        return NULL;
    memcpy(m->tab_bits, f->template->tab_bits, N_ADDRESSES);
    memcpy(m->tab_input_bits, f->template->tab_input_bits, N_ADDRESSES);
    memcpy(m->tab_input_registers, f->template->tab_input_registers,
           N_ADDRESSES * sizeof(uint16_t));
    memcpy(m->tab_registers, f->template->tab_registers, N_ADDRESSES * sizeof(uint16_t));
    f->units[unit] = m;
    return m;
}

static bool unit_silent(const struct fake *f, unsigned unit)
{
    return f->faults.silent_all || f->faults.silent[unit];
}

/* Parses "UNIT TABLE ADDR V1 [V2 ...]" (the map file's lines and the control port's `set`)
 * and writes the values. All of it is checked before anything is written. Returns 0, or
 * -EINVAL with a message in err, or -ENOMEM. */
static int apply_set(struct fake *f, char **tok, size_t n, char *err, size_t errlen)
{
    unsigned long addr, v;
    int unit, t;

    if (n < 4) {
        snprintf(err, errlen, "expected UNIT TABLE ADDR V1 [V2 ...]");
        return -EINVAL;
    }
    unit = parse_unit(tok[0], true);
    if (unit < 1) {
        snprintf(err, errlen, "bad unit '%s' (1..255 or *)", tok[0]);
        return -EINVAL;
    }
    t = table_from_string(tok[1]);
    if (t < 0) {
        snprintf(err, errlen, "bad table '%s' (coil, discrete, input or holding)", tok[1]);
        return -EINVAL;
    }
    if (parse_number(tok[2], N_ADDRESSES - 1, &addr) < 0) {
        snprintf(err, errlen, "bad address '%s' (0..65535)", tok[2]);
        return -EINVAL;
    }
    if (addr + (n - 3) > N_ADDRESSES) {
        snprintf(err, errlen, "%zu values from address %lu run past 65535", n - 3, addr);
        return -EINVAL;
    }
    for (size_t i = 3; i < n; i++) {
        if (parse_number(tok[i], table_is_bits(t) ? 1 : 0xFFFF, &v) < 0) {
            snprintf(err, errlen, "bad value '%s' (%s)", tok[i],
                     table_is_bits(t) ? "0 or 1" : "0..65535 or 0x0..0xffff");
            return -EINVAL;
        }
    }

    if (unit == UNIT_STAR) {
        for (size_t i = 3; i < n; i++) {
            parse_number(tok[i], 0xFFFF, &v);
            table_set(f->template, t, (unsigned)(addr + i - 3), (unsigned)v);
            for (unsigned u = 1; u < N_UNIT_IDS; u++)
                if (f->units[u])
                    table_set(f->units[u], t, (unsigned)(addr + i - 3), (unsigned)v);
        }
        return 0;
    }

    modbus_mapping_t *m = unit_tables(f, (unsigned)unit);

    if (!m)
        return -ENOMEM;
    for (size_t i = 3; i < n; i++) {
        parse_number(tok[i], 0xFFFF, &v);
        table_set(m, t, (unsigned)(addr + i - 3), (unsigned)v);
    }
    return 0;
}

/* Parses "1,7,20-30" into f->served. Returns 0 or -EINVAL. */
static int parse_units(struct fake *f, const char *list)
{
    char *copy = strdup(list), *save = NULL;
    int r = 0;

    if (!copy)
        return -ENOMEM;
    memset(f->served, 0, sizeof(f->served));
    for (char *w = strtok_r(copy, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
        char *dash = strchr(w, '-');
        unsigned long lo, hi;

        if (dash)
            *dash = '\0';
        if (parse_number(w, N_UNIT_IDS - 1, &lo) < 0 ||
            (dash && parse_number(dash + 1, N_UNIT_IDS - 1, &hi) < 0) || lo < 1) {
            r = -EINVAL;
            break;
        }
        if (!dash)
            hi = lo;
        if (hi < lo) {
            r = -EINVAL;
            break;
        }
        for (unsigned long u = lo; u <= hi; u++)
            f->served[u] = true;
    }
    free(copy);
    if (r == 0 && !memchr(f->served, true, sizeof(f->served)))
        r = -EINVAL;
    return r;
}

/* Loads --map FILE. Every bad line is reported as FILE:LINE: message. Returns 0, -EINVAL
 * when some line was bad (the good ones are applied), or -errno when the file is unreadable
 * or memory runs out. */
static int load_map(struct fake *f, const char *path)
{
    FILE *fp = fopen(path, "re");
    char *line = NULL, err[160];
    size_t cap = 0;
    unsigned lineno = 0;
    int r = 0;

    if (!fp) {
        r = -errno;
        complain("%s: %s", path, strerror(-r));
        return r;
    }
    while (getline(&line, &cap, fp) >= 0) {
        char *hash = strchr(line, '#');
        int q;

        lineno++;
        if (hash)
            *hash = '\0';
        q = tokenize(&f->tokens, line);
        if (q == 0 && f->tokens.n == 0)
            continue;
        if (q == 0)
            q = apply_set(f, f->tokens.v, f->tokens.n, err, sizeof(err));
        if (q == -ENOMEM) {
            complain("%s:%u: out of memory", path, lineno);
            r = q;
            break;
        }
        if (q < 0) {
            fprintf(stderr, "%s:%u: %s\n", path, lineno, err);
            r = -EINVAL;
        }
    }
    if (ferror(fp) && r == 0) {
        complain("%s: read error", path);
        r = -EIO;
    }
    free(line);
    fclose(fp);
    return r;
}

/* ---- requests ---- */

/* Which table and range a request touches. pdu starts at the function code; len excludes the
 * MBAP header and the CRC. Short PDUs (only possible for unknown codes) leave addr/count 0. */
static void request_describe(unsigned unit, const uint8_t *pdu, size_t len, struct request *r)
{
    memset(r, 0, sizeof(*r));
    r->unit = unit;
    r->fc = pdu[0];
    r->table = -1;
    switch (r->fc) {
    case MODBUS_FC_READ_COILS:
    case MODBUS_FC_READ_DISCRETE_INPUTS:
    case MODBUS_FC_READ_HOLDING_REGISTERS:
    case MODBUS_FC_READ_INPUT_REGISTERS:
        r->read = true;
        r->table = r->fc == MODBUS_FC_READ_COILS              ? TABLE_COIL
                   : r->fc == MODBUS_FC_READ_DISCRETE_INPUTS  ? TABLE_DISCRETE
                   : r->fc == MODBUS_FC_READ_HOLDING_REGISTERS ? TABLE_HOLDING
                                                                : TABLE_INPUT;
        if (len >= 5) {
            r->addr = be16(pdu + 1);
            r->count = be16(pdu + 3);
        }
        break;
    case MODBUS_FC_WRITE_SINGLE_COIL:
    case MODBUS_FC_WRITE_SINGLE_REGISTER:
    case MODBUS_FC_MASK_WRITE_REGISTER:
        r->write = true;
        r->table = r->fc == MODBUS_FC_WRITE_SINGLE_COIL ? TABLE_COIL : TABLE_HOLDING;
        if (len >= 3) {
            r->addr = be16(pdu + 1);
            r->count = 1;
        }
        break;
    case MODBUS_FC_WRITE_MULTIPLE_COILS:
    case MODBUS_FC_WRITE_MULTIPLE_REGISTERS:
        r->write = true;
        r->table = r->fc == MODBUS_FC_WRITE_MULTIPLE_COILS ? TABLE_COIL : TABLE_HOLDING;
        if (len >= 5) {
            r->addr = be16(pdu + 1);
            r->count = be16(pdu + 3);
        }
        break;
    case FC_MEI:
        /* Logged as: the first object asked for, and the read device id code. */
        if (len >= 4) {
            r->addr = pdu[3];
            r->count = pdu[2];
        }
        break;
    case MODBUS_FC_WRITE_AND_READ_REGISTERS:
        r->read = true;
        r->write = true;
        r->table = TABLE_HOLDING;
        if (len >= 9) {
            r->addr = be16(pdu + 1);
            r->count = be16(pdu + 3);
            r->waddr = be16(pdu + 5);
            r->wcount = be16(pdu + 7);
        }
        break;
    default:
        break;
    }
}

/* The function codes modbus_reply() answers; others get exception 1 from us. */
static bool fc_supported(unsigned fc)
{
    switch (fc) {
    case MODBUS_FC_READ_COILS:
    case MODBUS_FC_READ_DISCRETE_INPUTS:
    case MODBUS_FC_READ_HOLDING_REGISTERS:
    case MODBUS_FC_READ_INPUT_REGISTERS:
    case MODBUS_FC_WRITE_SINGLE_COIL:
    case MODBUS_FC_WRITE_SINGLE_REGISTER:
    case MODBUS_FC_WRITE_MULTIPLE_COILS:
    case MODBUS_FC_WRITE_MULTIPLE_REGISTERS:
    case MODBUS_FC_REPORT_SLAVE_ID:
    case MODBUS_FC_MASK_WRITE_REGISTER:
    case MODBUS_FC_WRITE_AND_READ_REGISTERS:
        return true;
    default:
        return false;
    }
}

static bool overlaps(unsigned a, unsigned n, unsigned b, unsigned m)
{
    return n > 0 && m > 0 && a < b + m && b < a + n;
}

/* The exception code a configured range fault forces on this request, or 0. */
static unsigned range_fault_code(const struct fake *f, const struct request *r)
{
    for (unsigned i = 0; i < f->faults.n_ranges; i++) {
        const struct range_fault *rf = &f->faults.ranges[i];

        if ((rf->unit != 0 && rf->unit != r->unit) || (int)rf->table != r->table)
            continue;
        if (overlaps(r->addr, r->count, rf->addr, rf->count) ||
            (r->fc == MODBUS_FC_WRITE_AND_READ_REGISTERS &&
             overlaps(r->waddr, r->wcount, rf->addr, rf->count)))
            return rf->code;
    }
    return 0;
}

static void log_add(struct fake *f, const struct request *r)
{
    struct log_entry *e = &f->log[f->log_head];

    e->unit = (uint8_t)r->unit;
    e->fc = (uint8_t)r->fc;
    e->addr = (uint16_t)r->addr;
    e->count = (uint16_t)r->count;
    f->log_head = (f->log_head + 1) % LOG_CAPACITY;
    if (f->log_len < LOG_CAPACITY)
        f->log_len++;
}

/* Applies a broadcast write to one set of tables, with the checks modbus_reply() makes.
 * Returns 0, or -EINVAL for a request that is not a valid write (nothing is written). */
static int broadcast_apply(modbus_mapping_t *m, const uint8_t *pdu, size_t len)
{
    unsigned addr, nb, bc, v;

    if (len < 5)
        return -EINVAL;
    addr = be16(pdu + 1);
    switch (pdu[0]) {
    case MODBUS_FC_WRITE_SINGLE_COIL:
        v = be16(pdu + 3);
        if (v != 0xFF00 && v != 0)
            return -EINVAL;
        m->tab_bits[addr] = v ? 1 : 0;
        return 0;
    case MODBUS_FC_WRITE_SINGLE_REGISTER:
        m->tab_registers[addr] = (uint16_t)be16(pdu + 3);
        return 0;
    case MODBUS_FC_MASK_WRITE_REGISTER:
        if (len < 7)
            return -EINVAL;
        v = be16(pdu + 3);
        m->tab_registers[addr] = (uint16_t)((m->tab_registers[addr] & v) | (be16(pdu + 5) & ~v));
        return 0;
    case MODBUS_FC_WRITE_MULTIPLE_COILS:
        if (len < 6)
            return -EINVAL;
        nb = be16(pdu + 3);
        bc = pdu[5];
        if (nb < 1 || nb > MODBUS_MAX_WRITE_BITS || bc * 8 < nb || len < 6 + bc ||
            addr + nb > N_ADDRESSES)
            return -EINVAL;
        modbus_set_bits_from_bytes(m->tab_bits, (int)addr, nb, pdu + 6);
        return 0;
    case MODBUS_FC_WRITE_MULTIPLE_REGISTERS:
        if (len < 6)
            return -EINVAL;
        nb = be16(pdu + 3);
        bc = pdu[5];
        if (nb < 1 || nb > MODBUS_MAX_WRITE_REGISTERS || bc != 2 * nb || len < 6 + bc ||
            addr + nb > N_ADDRESSES)
            return -EINVAL;
        for (unsigned i = 0; i < nb; i++)
            m->tab_registers[addr + i] = (uint16_t)be16(pdu + 6 + 2 * i);
        return 0;
    case MODBUS_FC_WRITE_AND_READ_REGISTERS:
        if (len < 10)
            return -EINVAL;
        addr = be16(pdu + 5);
        nb = be16(pdu + 7);
        bc = pdu[9];
        if (nb < 1 || nb > MODBUS_MAX_WR_WRITE_REGISTERS || bc != 2 * nb || len < 10 + bc ||
            addr + nb > N_ADDRESSES)
            return -EINVAL;
        for (unsigned i = 0; i < nb; i++)
            m->tab_registers[addr + i] = (uint16_t)be16(pdu + 10 + 2 * i);
        return 0;
    default:
        return -EINVAL;
    }
}

static void serve_broadcast(struct fake *f, const struct request *r, const uint8_t *pdu,
                            size_t len)
{
    if (!r->write || f->faults.silent_all || broadcast_apply(f->template, pdu, len) < 0) {
        f->counters.ignored++;
        return;
    }
    f->counters.writes++;
    for (unsigned u = 1; u < N_UNIT_IDS; u++)
        if (f->units[u] && f->served[u] && !f->faults.silent[u])
            broadcast_apply(f->units[u], pdu, len);
}

/* ---- per-unit behaviour: `unit` and `ident` ---- */

#define ANSWERED 0x100 /* serve_identification() wrote the answer itself */

static const char *const ident_defaults[3] = {"fake-modbus", "FM-1", "1.0"};

static struct unit_opts *unit_opts(struct fake *f, unsigned unit)
{
    if (!f->opts[unit]) {
        f->opts[unit] = calloc(1, sizeof(*f->opts[unit]));
        if (!f->opts[unit])
            return NULL;
        for (unsigned i = 0; i < 3; i++)
            f->opts[unit]->ident[i] = strdup(ident_defaults[i]);
    }
    return f->opts[unit];
}

static void unit_opts_free(struct unit_opts *o)
{
    if (!o)
        return;
    for (unsigned i = 0; i < 256; i++)
        free(o->ident[i]);
    free(o);
}

static unsigned unit_delay_ms(const struct fake *f, unsigned unit)
{
    return f->opts[unit] ? f->opts[unit]->delay_ms : 0;
}

/* The identification object of unit, with the defaults for a unit never configured. */
static const char *ident_object(const struct fake *f, unsigned unit, unsigned obj)
{
    if (f->opts[unit])
        return f->opts[unit]->ident[obj];
    return obj < 3 ? ident_defaults[obj] : NULL;
}

/* Function 43 / MEI 14 (Modbus Application Protocol 1.1b3, 6.21): the objects of the asked
 * category from the asked one on, as many as fit (or ident_per_answer), with "more follows"
 * and the next object id when they do not. Writes the whole answer to the shim and returns
 * ANSWERED, or returns the exception code to answer with. */
static unsigned serve_identification(struct fake *f, unsigned unit, const uint8_t *req,
                                     size_t hl, const uint8_t *pdu, size_t len)
{
    static const unsigned last_of[5] = {0, 0x02, 0x06, 0xFF, 0xFF};
    uint8_t ans[ANSWER_MAX];
    size_t n = hl, count_at;
    unsigned code, first, last, per = f->opts[unit] ? f->opts[unit]->ident_per_answer : 0;
    unsigned sent = 0, obj, regular = 0;

    if (len != 4 || pdu[1] != MEI_DEVICE_ID)
        return len != 4 ? MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE : MODBUS_EXCEPTION_ILLEGAL_FUNCTION;
    code = pdu[2];
    first = pdu[3];
    if (code < 1 || code > 4 ||
        (f->opts[unit] && f->opts[unit]->ident_max_code && code > f->opts[unit]->ident_max_code))
        return MODBUS_EXCEPTION_ILLEGAL_DATA_VALUE;
    if (code == 4 && !ident_object(f, unit, first))
        return MODBUS_EXCEPTION_ILLEGAL_DATA_ADDRESS;
    last = code == 4 ? first : last_of[code];
    if (code != 4 && (first > last || !ident_object(f, unit, first)))
        first = 0; /* an unknown start object means "from the beginning" */
    for (obj = 3; obj < 7; obj++)
        regular |= ident_object(f, unit, obj) != NULL;

    memcpy(ans, req, hl);
    ans[n++] = FC_MEI;
    ans[n++] = MEI_DEVICE_ID;
    ans[n++] = (uint8_t)code;
    ans[n++] = regular ? 0x82 : 0x81; /* basic or regular; stream and individual access */
    ans[n++] = 0;                     /* more follows, next object: set below */
    ans[n++] = 0;
    count_at = n++;
    for (obj = first; obj <= last; obj++) {
        const char *v = ident_object(f, unit, obj);
        size_t vl = v ? strlen(v) : 0;

        if (!v)
            continue;
        if ((per && sent == per) || n - hl + 2 + vl > 253) {
            ans[hl + 4] = 0xFF;
            ans[hl + 5] = (uint8_t)obj;
            break;
        }
        ans[n++] = (uint8_t)obj;
        ans[n++] = (uint8_t)vl;
        memcpy(ans + n, v, vl);
        n += vl;
        sent++;
    }
    ans[count_at] = (uint8_t)sent;
    if (f->rtu) {
        unsigned crc = crc16(ans, n);
        ans[n++] = (uint8_t)crc;
        ans[n++] = (uint8_t)(crc >> 8);
    } else {
        ans[4] = (uint8_t)((n - 6) >> 8);
        ans[5] = (uint8_t)(n - 6);
    }
    if (send(f->shim[0], ans, n, MSG_DONTWAIT) < 0)
        note("unit %u: no answer to function 43: %s", unit, strerror(errno));
    return ANSWERED;
}

/* ---- answers ---- */

static void peer_kill(struct peer *p, const char *why)
{
    if (p->dead)
        return;
    p->dead = true;
    note("client %d: %s, closing", p->fd, why);
}

static bool on_socket(const struct fake *f);
static size_t ascii_from_rtu(const uint8_t *frame, size_t len, char *out);

static void peer_send(struct fake *f, struct peer *p, const uint8_t *buf, size_t len)
{
    char ascii[ASCII_LINE_MAX + 1];
    int r;

    if (f->ascii) {
        len = ascii_from_rtu(buf, len, ascii);
        buf = (const uint8_t *)ascii;
    }
    r = write_bounded(p->fd, buf, len, on_socket(f));
    if (r < 0) {
        if (!on_socket(f))
            note("serial line: answer not written: %s", strerror(-r));
        else
            peer_kill(p, "cannot send");
        return;
    }
    if (f->rtu) {
        p->answer_end_us = now_us();
        if (p->rx_len > 0) { /* the next request had started before our answer was out */
            note_gap(&f->counters, 0);
            p->answer_end_us = -1;
        }
    }
}

/* Random bytes in place of an answer of the same length, made sure to be invalid: a wrong
 * transaction id on TCP, a wrong CRC on RTU. */
static void make_garbage(struct fake *f, uint8_t *ans, size_t len, const uint8_t *req)
{
    for (size_t i = 0; i < len; i++)
        ans[i] = random_byte(f);
    if (!f->rtu && len >= 2 && ans[0] == req[0] && ans[1] == req[1])
        ans[0] ^= 0xFF;
    if (f->rtu && crc_ok(ans, len))
        ans[len - 1] ^= 0xFF;
}

/* Takes the answer modbus_reply() wrote to the shim and sends it to p, through the faults. */
static void deliver_answer(struct fake *f, struct peer *p, const uint8_t *req)
{
    uint8_t ans[ANSWER_MAX], junk[ANSWER_MAX];
    size_t hl = f->rtu ? 1 : MBAP_LENGTH;
    ssize_t n = recv(f->shim[1], ans, sizeof(ans), MSG_DONTWAIT);

    while (recv(f->shim[1], junk, sizeof(junk), MSG_DONTWAIT) > 0)
        ; /* never more than one answer per request; keep the shim empty regardless */
    if (n <= (ssize_t)hl)
        return;
    if (ans[hl] & 0x80)
        f->counters.exceptions++;

    if (on_socket(f) && f->faults.drop > 0) {
        f->faults.drop--;
        f->counters.damaged++;
        peer_kill(p, "fault drop");
        return;
    }
    if (f->faults.garbage > 0) {
        f->faults.garbage--;
        f->counters.damaged++;
        make_garbage(f, ans, (size_t)n, req);
    } else if (f->rtu && f->faults.crc > 0) {
        f->faults.crc--;
        f->counters.damaged++;
        ans[n - 2] ^= 0xFF;
        ans[n - 1] ^= 0xFF;
    }
    if (f->faults.delay_ms > 0 || unit_delay_ms(f, req[hl - 1]) > 0) {
        p->held = true;
        p->held_due_ms = now_ms() + f->faults.delay_ms + unit_delay_ms(f, req[hl - 1]);
        memcpy(p->held_buf, ans, (size_t)n);
        p->held_len = (size_t)n;
        return;
    }
    peer_send(f, p, ans, (size_t)n);
}

/* One whole request frame (TCP: MBAP header + PDU; RTU: unit + PDU + good CRC). */
static void serve(struct fake *f, struct peer *p, const uint8_t *req, size_t len)
{
    size_t hl = f->rtu ? 1 : MBAP_LENGTH;
    size_t pdu_len = len - hl - (f->rtu ? 2 : 0);
    const uint8_t *pdu = req + hl;
    struct request r;
    modbus_mapping_t *m;
    unsigned code;
    int rc;

    request_describe(req[hl - 1], pdu, pdu_len, &r);
    f->counters.requests++;
    log_add(f, &r);

    if (r.unit == MODBUS_BROADCAST_ADDRESS) {
        serve_broadcast(f, &r, pdu, pdu_len);
        return;
    }
    if (!f->served[r.unit] || unit_silent(f, r.unit)) {
        f->counters.ignored++;
        return;
    }
    m = unit_tables(f, r.unit);
    if (!m) {
        note("unit %u: out of memory for its tables, not answering", r.unit);
        f->counters.ignored++;
        return;
    }
    if (r.read)
        f->counters.reads++;
    if (r.write)
        f->counters.writes++;

    code = range_fault_code(f, &r);
    if (!code && f->opts[r.unit] && f->opts[r.unit]->refuse[r.fc])
        code = MODBUS_EXCEPTION_ILLEGAL_FUNCTION;
    modbus_set_socket(f->mb, f->shim[0]);
    if (f->rtu)
        modbus_set_slave(f->mb, (int)r.unit); /* fails for 248..255; the reply uses req[0] */
    if (!code && r.fc == FC_MEI)
        code = serve_identification(f, r.unit, req, hl, pdu, pdu_len);
    if (code == ANSWERED)
        rc = 0;
    else if (code)
        rc = modbus_reply_exception(f->mb, req, code);
    else if (fc_supported(r.fc))
        rc = modbus_reply(f->mb, req, (int)len, m);
    else
        rc = modbus_reply_exception(f->mb, req, MODBUS_EXCEPTION_ILLEGAL_FUNCTION);
    if (rc < 0)
        note("unit %u: no answer to function %u: %s", r.unit, r.fc, modbus_strerror(errno));
    deliver_answer(f, p, req);
}

/* ---- Modbus TCP ---- */

static int peer_add(struct fake *f, int fd)
{
    struct peer *p;

    if (f->n_peers == f->cap_peers) {
        size_t cap = f->cap_peers ? 2 * f->cap_peers : 8;
        struct peer **v = realloc(f->peers, cap * sizeof(*v));

        if (!v)
            return -ENOMEM;
        f->peers = v;
        f->cap_peers = cap;
    }
    p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->fd = fd;
    p->partial_since_ms = -1;
    p->answer_end_us = -1;
    f->peers[f->n_peers++] = p;
    return 0;
}

static void tcp_accept(struct fake *f)
{
    for (;;) {
        int one = 1, fd = accept4(f->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                note("accept: %s", strerror(errno));
            return;
        }
        if (fd >= FD_SETSIZE) {
            note("client %d: descriptor too large for libmodbus's select(), refusing", fd);
            close(fd);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (peer_add(f, fd) < 0) {
            note("client %d: out of memory, refusing", fd);
            close(fd);
            continue;
        }
        f->connections++;
        note("client %d: connected", fd);
    }
}

/* Reads and serves one request if a whole MBAP frame has arrived; otherwise notes since when
 * it is partial (the loop looks again after TCP_RECHECK_MS) and gives up after
 * TCP_PARTIAL_MS. */
static void tcp_readable(struct fake *f, struct peer *p, int64_t now)
{
    uint8_t req[MODBUS_TCP_MAX_ADU_LENGTH], junk[MODBUS_TCP_MAX_ADU_LENGTH];
    ssize_t n = recv(p->fd, req, sizeof(req), MSG_PEEK | MSG_DONTWAIT);
    size_t total;
    int rc;

    if (n == 0) {
        peer_kill(p, "closed the connection");
        return;
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            peer_kill(p, strerror(errno));
        return;
    }
    total = n >= 6 ? 6 + be16(req + 4) : SIZE_MAX;
    if (n >= 6 && (total < MBAP_LENGTH + 1 || total > MODBUS_TCP_MAX_ADU_LENGTH)) {
        peer_kill(p, "bad MBAP length");
        return;
    }
    if ((size_t)n < total) {
        if (p->partial_since_ms < 0)
            p->partial_since_ms = now;
        else if (now - p->partial_since_ms >= TCP_PARTIAL_MS)
            peer_kill(p, "incomplete frame");
        return;
    }
    p->partial_since_ms = -1;

    if (req[MBAP_LENGTH] == FC_MEI) {
        /* modbus_receive() does not know the length of function 43: take the MBAP's. */
        if (recv(p->fd, req, total, MSG_DONTWAIT) != (ssize_t)total) {
            peer_kill(p, "short read");
            return;
        }
        serve(f, p, req, total);
        return;
    }
    memset(req, 0, sizeof(req));
    modbus_set_socket(f->mb, p->fd);
    rc = modbus_receive(f->mb, req);
    if (rc <= 0) {
        peer_kill(p, rc < 0 ? modbus_strerror(errno) : "empty frame");
        return;
    }
    if ((size_t)rc > total) {
        peer_kill(p, "MBAP length shorter than the function code needs");
        return;
    }
    if ((size_t)rc < total && recv(p->fd, junk, total - (size_t)rc, MSG_DONTWAIT) < 0) {
        peer_kill(p, strerror(errno));
        return;
    }
    serve(f, p, req, (size_t)rc);
}

/* ---- Modbus RTU ---- */

/* The length of the RTU request at the start of buf, from its function code: the length
 * (possibly more than len: wait), 0 when more bytes are needed to tell, -1 when unknown. */
static int rtu_request_length(const uint8_t *buf, size_t len)
{
    if (len < 2)
        return 0;
    switch (buf[1]) {
    case MODBUS_FC_READ_COILS:
    case MODBUS_FC_READ_DISCRETE_INPUTS:
    case MODBUS_FC_READ_HOLDING_REGISTERS:
    case MODBUS_FC_READ_INPUT_REGISTERS:
    case MODBUS_FC_WRITE_SINGLE_COIL:
    case MODBUS_FC_WRITE_SINGLE_REGISTER:
        return 8;
    case MODBUS_FC_WRITE_MULTIPLE_COILS:
    case MODBUS_FC_WRITE_MULTIPLE_REGISTERS:
        return len < 7 ? 0 : 9 + buf[6];
    case MODBUS_FC_REPORT_SLAVE_ID:
        return 4;
    case MODBUS_FC_MASK_WRITE_REGISTER:
        return 10;
    case FC_MEI:
        return 7;
    case MODBUS_FC_WRITE_AND_READ_REGISTERS:
        return len < 11 ? 0 : 13 + buf[10];
    default:
        return -1;
    }
}

static void rtu_frame(struct fake *f, struct peer *p, const uint8_t *frame, size_t len)
{
    if (!crc_ok(frame, len)) {
        f->counters.crc_errors++;
        note("serial line: dropping a %zu-byte frame with a bad CRC", len);
        return;
    }
    serve(f, p, frame, len);
}

/* Cuts whole frames off the receive buffer and serves them, unless an answer is held back. */
static void rtu_process(struct fake *f, struct peer *p, int64_t now)
{
    while (p->rx_len > 0 && !p->held) {
        uint8_t frame[RTU_RX_MAX];
        int need = rtu_request_length(p->rx, p->rx_len);
        int64_t quiet = now - p->rx_last_ms;
        size_t take;

        if (need > 0 && (size_t)need <= p->rx_len) {
            take = (size_t)need;
        } else if (need < 0 && quiet >= RTU_GAP_UNKNOWN_MS) {
            take = p->rx_len;
        } else if (need >= 0 && quiet >= RTU_GAP_PARTIAL_MS) {
            note("serial line: discarding %zu bytes of a partial frame", p->rx_len);
            p->rx_len = 0;
            return;
        } else {
            return;
        }
        memcpy(frame, p->rx, take);
        memmove(p->rx, p->rx + take, p->rx_len - take);
        p->rx_len -= take;
        rtu_frame(f, p, frame, take);
    }
}

static void frames_process(struct fake *f, struct peer *p, int64_t now);

/* Reads what the line has. libmodbus leaves the tty at VMIN=0 VTIME=0, where read() returns 0
 * for "nothing more now", so a hang-up shows as POLLHUP with nothing to read, or EIO. */
static void rtu_readable(struct fake *f, struct peer *p, short revents, int64_t now)
{
    size_t got = 0;

    for (;;) {
        ssize_t n;

        if (p->rx_len == sizeof(p->rx)) {
            note("serial line: %zu bytes without a frame, discarding", p->rx_len);
            p->rx_len = 0;
        }
        n = read(p->fd, p->rx + p->rx_len, sizeof(p->rx) - p->rx_len);
        if (n > 0) {
            if (p->answer_end_us >= 0) {
                note_gap(&f->counters, now_us() - p->answer_end_us);
                p->answer_end_us = -1;
            }
            p->rx_len += (size_t)n;
            p->rx_last_ms = now;
            got += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0 || errno == EAGAIN || errno == EWOULDBLOCK)
            break;
        complain("serial line %s: %s, stopping", arg_rtu_path, strerror(errno));
        f->stop = true;
        f->exit_status = 1;
        return;
    }
    if (got == 0 && (revents & (POLLHUP | POLLERR))) {
        complain("serial line %s: hung up, stopping", arg_rtu_path);
        f->stop = true;
        f->exit_status = 1;
        return;
    }
    frames_process(f, p, now);
}

/* ---- field-link transports: RTU frames on TCP (served or dialled), Modbus ASCII ----
 *
 * Inside, these are RTU: an ASCII request is turned into unit + PDU + CRC and served like
 * one from the serial line, and the answer is turned back into ASCII on its way out; RTU
 * frames from a TCP connection are cut by rtu_process() exactly as from the serial line.
 * So faults, counters and the log behave the same on every transport. */

static void ctl_printf(struct ctl *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool on_socket(const struct fake *f)
{
    return !f->rtu || f->stream;
}

static bool dialling(const struct fake *f)
{
    return f->dial_port >= 0;
}

static int hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* unit + PDU + CRC -> ":" hex(unit PDU LRC) CR LF. A frame whose CRC is bad (the garbage
 * and crc faults) gets a bad LRC, so the fault survives the translation. */
static size_t ascii_from_rtu(const uint8_t *frame, size_t len, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    uint8_t lrc = 0;
    size_t o = 0, n = len >= 3 ? len - 2 : 0;

    if (2 * n + 5 > ASCII_LINE_MAX)
        n = (ASCII_LINE_MAX - 5) / 2;
    out[o++] = ':';
    for (size_t i = 0; i < n; i++) {
        out[o++] = hex[frame[i] >> 4];
        out[o++] = hex[frame[i] & 15];
        lrc = (uint8_t)(lrc + frame[i]);
    }
    lrc = (uint8_t)-lrc;
    if (!crc_ok(frame, len))
        lrc ^= 0xFF;
    out[o++] = hex[lrc >> 4];
    out[o++] = hex[lrc & 15];
    out[o++] = '\r';
    out[o++] = '\n';
    return o;
}

/* Serves every complete ':' … CR LF line in p->rx; a bad LRC or a line that is not hex is
 * dropped unanswered and counted in crc_errors, as a real slave does. */
static void ascii_process(struct fake *f, struct peer *p)
{
    while (p->rx_len > 0 && !p->held) {
        uint8_t *colon = memchr(p->rx, ':', p->rx_len);
        uint8_t *lf, frame[ASCII_LINE_MAX / 2 + 2];
        size_t start, len, nbytes;
        uint8_t lrc = 0;
        bool ok;

        if (!colon) {
            p->rx_len = 0;
            return;
        }
        start = (size_t)(colon - p->rx);
        memmove(p->rx, p->rx + start, p->rx_len - start);
        p->rx_len -= start;
        lf = memchr(p->rx, '\n', p->rx_len);
        if (!lf)
            return;
        len = (size_t)(lf - p->rx) + 1;
        /* ':' hex CR LF */
        nbytes = len >= 4 ? (len - 3) / 2 : 0;
        ok = len >= 4 && (len - 3) % 2 == 0 && p->rx[len - 2] == '\r' && nbytes >= 3 &&
             nbytes <= sizeof(frame) - 2;
        for (size_t i = 0; ok && i < nbytes; i++) {
            int hi = hex_digit(p->rx[1 + 2 * i]), lo = hex_digit(p->rx[2 + 2 * i]);
            ok = hi >= 0 && lo >= 0;
            frame[i] = (uint8_t)(hi << 4 | lo);
            lrc = (uint8_t)(lrc + frame[i]);
        }
        memmove(p->rx, p->rx + len, p->rx_len - len);
        p->rx_len -= len;
        if (!ok || lrc != 0) {
            f->counters.crc_errors++;
            note("serial line: dropping an ASCII frame with a bad LRC or bad hex");
            continue;
        }
        /* Without the LRC, with a CRC: the frame serve() expects from an RTU line. */
        nbytes--;
        unsigned crc = crc16(frame, nbytes);
        frame[nbytes] = (uint8_t)(crc & 0xFF);
        frame[nbytes + 1] = (uint8_t)(crc >> 8);
        serve(f, p, frame, nbytes + 2);
    }
}

static void frames_process(struct fake *f, struct peer *p, int64_t now)
{
    if (f->ascii)
        ascii_process(f, p);
    else
        rtu_process(f, p, now);
}

/* RTU frames from a TCP connection: end of stream or an error ends the connection (and,
 * dialling, leads to a new one). */
static void stream_readable(struct fake *f, struct peer *p, int64_t now)
{
    for (;;) {
        ssize_t n;

        if (p->rx_len == sizeof(p->rx)) {
            note("client %d: %zu bytes without a frame, discarding", p->fd, p->rx_len);
            p->rx_len = 0;
        }
        n = recv(p->fd, p->rx + p->rx_len, sizeof(p->rx) - p->rx_len, MSG_DONTWAIT);
        if (n > 0) {
            p->rx_len += (size_t)n;
            p->rx_last_ms = now;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        peer_kill(p, n == 0 ? "closed the connection" : strerror(errno));
        return;
    }
    rtu_process(f, p, now);
}

/* --rtu-tcp-dial: connect to tbgw's listen port as a DTU does; on failure, again later. */
static void dial(struct fake *f)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)f->dial_port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    f->redial_due_ms = -1;
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || set_nonblocking(fd) < 0 ||
        peer_add(f, fd) < 0) {
        note("dialling 127.0.0.1:%d: %s; again in %d ms", f->dial_port, strerror(errno),
             REDIAL_MS);
        if (fd >= 0)
            close(fd);
        f->redial_due_ms = now_ms() + REDIAL_MS;
        return;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    f->connections++;
    note("client %d: dialled 127.0.0.1:%d", fd, f->dial_port);
}

static int open_stream(struct fake *f)
{
    /* Never connected: it only decodes requests and encodes answers. */
    f->mb = f->rtu ? modbus_new_rtu("/dev/null", 9600, 'N', 8, 1) : modbus_new_tcp("127.0.0.1", 0);
    if (!f->mb)
        return -errno;
    if (f->dial_port >= 0) {
        dial(f);
        return 0;
    }

    int port = listen_loopback(arg_rtu_tcp_port, 64, &f->listen_fd);

    if (port < 0)
        return port;
    f->tcp_port = port;
    return 0;
}

/* connections | hangup | redial [keep]. Returns false for a command that is not one of these. */
static bool transport_command(struct fake *f, struct ctl *c, char **tok, size_t n)
{
    if (strcmp(tok[0], "connections") == 0 && n == 1) {
        ctl_printf(c, "ok %" PRIu64 "\n", f->connections);
    } else if (strcmp(tok[0], "hangup") == 0 && n == 1) {
        if (!f->stream && !dialling(f)) {
            ctl_printf(c, "err hangup needs --rtu-tcp, --rtu-tcp-dial or --tcp-dial\n");
            return true;
        }
        for (size_t i = 0; i < f->n_peers; i++)
            peer_kill(f->peers[i], "hangup");
        ctl_printf(c, "ok\n");
    } else if (strcmp(tok[0], "redial") == 0 && (n == 1 || (n == 2 && !strcmp(tok[1], "keep")))) {
        if (f->dial_port < 0) {
            ctl_printf(c, "err redial needs --rtu-tcp-dial or --tcp-dial\n");
            return true;
        }
        /* keep: the old connection stays open but unanswered, as one a DTU lost track of. */
        for (size_t i = 0; i < f->n_peers; i++) {
            if (n == 2)
                f->peers[i]->zombie = true;
            else
                peer_kill(f->peers[i], "redial");
        }
        dial(f);
        ctl_printf(c, "ok\n");
    } else {
        return false;
    }
    return true;
}

/* ---- the control port ---- */

static void ctl_printf(struct ctl *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends to c's output; a client that lets more than CTL_OUT_MAX pile up is dropped. */
static void ctl_printf(struct ctl *c, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (c->dead)
        return;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (c->out_len + (size_t)n + 1 > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        char *o;

        while (cap < c->out_len + (size_t)n + 1)
            cap *= 2;
        if (cap > CTL_OUT_MAX || !(o = realloc(c->out, cap))) {
            note("control client %d: too much unread output, closing", c->fd);
            c->dead = true;
            return;
        }
        c->out = o;
        c->out_cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(c->out + c->out_len, c->out_cap - c->out_len, fmt, ap);
    va_end(ap);
    c->out_len += (size_t)n;
}

static void ctl_flush(struct ctl *c)
{
    while (!c->dead && c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);

        if (n > 0) {
            c->out_off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        } else {
            c->dead = true;
        }
    }
    c->out_off = c->out_len = 0;
    if (c->eof)
        c->dead = true;
}

static void cmd_get(struct fake *f, struct ctl *c, char **tok, size_t n)
{
    unsigned long addr, count;
    const modbus_mapping_t *m;
    int unit, t;

    if (n != 4) {
        ctl_printf(c, "err usage: get UNIT TABLE ADDR COUNT\n");
        return;
    }
    unit = parse_unit(tok[0], false);
    t = table_from_string(tok[1]);
    if (unit < 1) {
        ctl_printf(c, "err bad unit '%s' (1..255)\n", tok[0]);
    } else if (t < 0) {
        ctl_printf(c, "err bad table '%s' (coil, discrete, input or holding)\n", tok[1]);
    } else if (parse_number(tok[2], N_ADDRESSES - 1, &addr) < 0) {
        ctl_printf(c, "err bad address '%s' (0..65535)\n", tok[2]);
    } else if (parse_number(tok[3], N_ADDRESSES, &count) < 0 || count < 1 ||
               addr + count > N_ADDRESSES) {
        ctl_printf(c, "err bad count '%s' (1.., up to address 65535)\n", tok[3]);
    } else {
        /* A unit nobody has touched yet reads as the template: no need to create it. */
        m = f->units[unit] ? f->units[unit] : f->template;
        ctl_printf(c, "ok");
        for (unsigned long i = 0; i < count; i++)
            ctl_printf(c, " %u", table_get(m, t, (unsigned)(addr + i)));
        ctl_printf(c, "\n");
    }
}

/* Parses "UNIT TABLE ADDR COUNT" of `fault exception` / `fault hole` into rf. */
static int parse_range_fault(char **tok, struct range_fault *rf, char *err, size_t errlen)
{
    unsigned long addr, count;
    int unit = parse_unit(tok[0], true), t = table_from_string(tok[1]);

    if (unit < 0) {
        snprintf(err, errlen, "bad unit '%s' (0 or * for every unit, 1..255)", tok[0]);
        return -EINVAL;
    }
    if (t < 0) {
        snprintf(err, errlen, "bad table '%s' (coil, discrete, input or holding)", tok[1]);
        return -EINVAL;
    }
    if (parse_number(tok[2], N_ADDRESSES - 1, &addr) < 0) {
        snprintf(err, errlen, "bad address '%s' (0..65535)", tok[2]);
        return -EINVAL;
    }
    if (parse_number(tok[3], N_ADDRESSES, &count) < 0 || count < 1 ||
        addr + count > N_ADDRESSES) {
        snprintf(err, errlen, "bad count '%s' (1.., up to address 65535)", tok[3]);
        return -EINVAL;
    }
    rf->unit = unit == UNIT_STAR ? 0 : (unsigned)unit;
    rf->table = t;
    rf->addr = (unsigned)addr;
    rf->count = (unsigned)count;
    return 0;
}

static void cmd_fault(struct fake *f, struct ctl *c, char **tok, size_t n)
{
    struct faults *fl = &f->faults;
    const char *what = n > 0 ? tok[0] : "";
    unsigned long v;
    char err[128];

    if (strcmp(what, "clear") == 0 && n == 1) {
        memset(fl, 0, sizeof(*fl));
    } else if (strcmp(what, "delay") == 0 && n == 2) {
        if (parse_number(tok[1], MAX_DELAY_MS, &v) < 0) {
            ctl_printf(c, "err bad delay '%s' (0..%d ms)\n", tok[1], MAX_DELAY_MS);
            return;
        }
        fl->delay_ms = (unsigned)v;
    } else if (strcmp(what, "silent") == 0 && n == 2) {
        int unit = parse_unit(tok[1], true);

        if (unit < 0) {
            ctl_printf(c, "err bad unit '%s' (0 or * for every unit, 1..255)\n", tok[1]);
            return;
        }
        if (unit == 0 || unit == UNIT_STAR)
            fl->silent_all = true;
        else
            fl->silent[unit] = true;
    } else if ((strcmp(what, "exception") == 0 && n == 6) ||
               (strcmp(what, "hole") == 0 && n == 5)) {
        struct range_fault rf;

        if (parse_range_fault(tok + 1, &rf, err, sizeof(err)) < 0) {
            ctl_printf(c, "err %s\n", err);
            return;
        }
        rf.code = MODBUS_EXCEPTION_ILLEGAL_DATA_ADDRESS;
        if (n == 6 && (parse_number(tok[5], MODBUS_EXCEPTION_MAX - 1, &v) < 0 || v < 1)) {
            ctl_printf(c, "err bad exception code '%s' (1..%d)\n", tok[5],
                       MODBUS_EXCEPTION_MAX - 1);
            return;
        }
        if (n == 6)
            rf.code = (unsigned)v;
        if (fl->n_ranges == MAX_RANGE_FAULTS) {
            ctl_printf(c, "err too many exception/hole faults (%d)\n", MAX_RANGE_FAULTS);
            return;
        }
        fl->ranges[fl->n_ranges++] = rf;
    } else if ((strcmp(what, "garbage") == 0 || strcmp(what, "crc") == 0 ||
                strcmp(what, "drop") == 0) && n == 2) {
        if (parse_number(tok[1], MAX_FAULT_COUNT, &v) < 0) {
            ctl_printf(c, "err bad count '%s'\n", tok[1]);
            return;
        }
        if (what[0] == 'c' && !f->rtu) {
            ctl_printf(c, "err crc faults need --rtu (Modbus TCP has no CRC)\n");
            return;
        }
        if (what[0] == 'd' && f->rtu && !f->stream) {
            ctl_printf(c, "err drop faults need --tcp (a serial line has no connection)\n");
            return;
        }
        *(what[0] == 'g' ? &fl->garbage : what[0] == 'c' ? &fl->crc : &fl->drop) = v;
    } else {
        ctl_printf(c, "err usage: fault delay MS | silent UNIT | exception UNIT TABLE ADDR "
                      "COUNT CODE | hole UNIT TABLE ADDR COUNT | garbage N | crc N | drop N | "
                      "clear\n");
        return;
    }
    note("fault %s set", what);
    ctl_printf(c, "ok\n");
}

/* unit UNIT delay MS | unit UNIT refuse FC[,FC…] | unit UNIT accept FC[,FC…] | unit UNIT clear */
static void cmd_unit(struct fake *f, struct ctl *c, char **tok, size_t n)
{
    int unit = n >= 2 ? parse_unit(tok[0], false) : -1;
    struct unit_opts *o;
    unsigned long v;

    if (unit < 1 || (strcmp(tok[1], "clear") != 0 && n != 3) ||
        (strcmp(tok[1], "clear") == 0 && n != 2)) {
        ctl_printf(c, "err usage: unit UNIT delay MS | refuse FC[,FC…] | accept FC[,FC…] | "
                      "clear (UNIT 1..255)\n");
        return;
    }
    if (strcmp(tok[1], "clear") == 0) {
        unit_opts_free(f->opts[unit]);
        f->opts[unit] = NULL;
        ctl_printf(c, "ok\n");
        return;
    }
    o = unit_opts(f, (unsigned)unit);
    if (!o) {
        ctl_printf(c, "err out of memory\n");
        return;
    }
    if (strcmp(tok[1], "delay") == 0) {
        if (parse_number(tok[2], MAX_DELAY_MS, &v) < 0) {
            ctl_printf(c, "err bad delay '%s' (0..%d ms)\n", tok[2], MAX_DELAY_MS);
            return;
        }
        o->delay_ms = (unsigned)v;
    } else if (strcmp(tok[1], "refuse") == 0 || strcmp(tok[1], "accept") == 0) {
        bool refuse = tok[1][0] == 'r';
        char *save = NULL;

        for (char *fc = strtok_r(tok[2], ",", &save); fc; fc = strtok_r(NULL, ",", &save)) {
            if (parse_number(fc, 255, &v) < 0 || v < 1) {
                ctl_printf(c, "err bad function code '%s' (1..255)\n", fc);
                return;
            }
            o->refuse[v] = refuse;
        }
    } else {
        ctl_printf(c, "err unknown unit setting '%s' (delay, refuse, accept, clear)\n", tok[1]);
        return;
    }
    ctl_printf(c, "ok\n");
}

/* ident UNIT OBJECT TEXT… | ident UNIT OBJECT (remove it) | ident UNIT per-answer N |
 * ident UNIT max-code N */
static void cmd_ident(struct fake *f, struct ctl *c, char **tok, size_t n)
{
    int unit = n >= 2 ? parse_unit(tok[0], false) : -1;
    struct unit_opts *o;
    unsigned long v;
    char text[254] = "";

    if (unit < 1) {
        ctl_printf(c, "err usage: ident UNIT OBJECT [TEXT…] | ident UNIT per-answer N | "
                      "ident UNIT max-code N\n");
        return;
    }
    o = unit_opts(f, (unsigned)unit);
    if (!o) {
        ctl_printf(c, "err out of memory\n");
        return;
    }
    if (strcmp(tok[1], "per-answer") == 0 || strcmp(tok[1], "max-code") == 0) {
        bool per = tok[1][0] == 'p';

        if (n != 3 || parse_number(tok[2], per ? 255 : 4, &v) < 0) {
            ctl_printf(c, per ? "err usage: ident UNIT per-answer N (0: as many as fit)\n"
                              : "err usage: ident UNIT max-code N (1..4, 0: all)\n");
            return;
        }
        *(per ? &o->ident_per_answer : &o->ident_max_code) = (unsigned)v;
        ctl_printf(c, "ok\n");
        return;
    }
    if (parse_number(tok[1], 255, &v) < 0) {
        ctl_printf(c, "err bad object id '%s' (0..255)\n", tok[1]);
        return;
    }
    /* The words after the object id, joined by single spaces. */
    for (size_t i = 2; i < n; i++) {
        if (strlen(text) + strlen(tok[i]) + 2 > 245) {
            ctl_printf(c, "err object text too long (245 bytes at most)\n");
            return;
        }
        if (i > 2)
            strcat(text, " ");
        strcat(text, tok[i]);
    }
    free(o->ident[v]);
    o->ident[v] = n > 2 ? strdup(text) : NULL;
    ctl_printf(c, "ok\n");
}

static bool transport_command(struct fake *f, struct ctl *c, char **tok, size_t n);

static void ctl_command(struct fake *f, struct ctl *c, char *line)
{
    char **tok, err[160];
    size_t n;
    int r;

    if (tokenize(&f->tokens, line) < 0) {
        ctl_printf(c, "err out of memory\n");
        return;
    }
    tok = f->tokens.v;
    n = f->tokens.n;
    if (n == 0)
        return;

    if (strcmp(tok[0], "set") == 0) {
        r = apply_set(f, tok + 1, n - 1, err, sizeof(err));
        if (r == -ENOMEM)
            ctl_printf(c, "err out of memory\n");
        else if (r < 0)
            ctl_printf(c, "err %s\n", err);
        else
            ctl_printf(c, "ok\n");
    } else if (strcmp(tok[0], "get") == 0) {
        cmd_get(f, c, tok + 1, n - 1);
    } else if (strcmp(tok[0], "stats") == 0 && n == 1) {
        ctl_printf(c,
                   "ok requests=%" PRIu64 " reads=%" PRIu64 " writes=%" PRIu64
                   " exceptions=%" PRIu64 " crc_errors=%" PRIu64 " ignored=%" PRIu64
                   " damaged=%" PRIu64 " min_gap_us=%" PRId64 "\n",
                   f->counters.requests, f->counters.reads, f->counters.writes,
                   f->counters.exceptions, f->counters.crc_errors, f->counters.ignored,
                   f->counters.damaged, f->counters.min_gap_us);
    } else if (strcmp(tok[0], "log") == 0 && n == 1) {
        ctl_printf(c, "ok %zu\n", f->log_len);
        for (size_t i = 0; i < f->log_len; i++) {
            const struct log_entry *e =
                &f->log[(f->log_head + LOG_CAPACITY - f->log_len + i) % LOG_CAPACITY];

            ctl_printf(c, "%u %u %u %u\n", e->unit, e->fc, e->addr, e->count);
        }
        ctl_printf(c, "end\n");
    } else if (strcmp(tok[0], "reset") == 0 && n == 1) {
        counters_reset(&f->counters);
        f->log_head = f->log_len = 0;
        ctl_printf(c, "ok\n");
    } else if (strcmp(tok[0], "fault") == 0) {
        cmd_fault(f, c, tok + 1, n - 1);
    } else if (strcmp(tok[0], "unit") == 0) {
        cmd_unit(f, c, tok + 1, n - 1);
    } else if (strcmp(tok[0], "ident") == 0) {
        cmd_ident(f, c, tok + 1, n - 1);
    } else if (transport_command(f, c, tok, n)) {
        ;
    } else {
        ctl_printf(c, "err unknown command '%s' (set, get, stats, log, reset, fault, unit, "
                      "ident, connections, hangup, redial)\n", tok[0]);
    }
}

static void ctl_accept(struct fake *f)
{
    for (;;) {
        int fd = accept4(f->control_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        struct ctl *c;

        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                note("control accept: %s", strerror(errno));
            return;
        }
        if (f->n_ctls == f->cap_ctls) {
            size_t cap = f->cap_ctls ? 2 * f->cap_ctls : 4;
            struct ctl **v = realloc(f->ctls, cap * sizeof(*v));

            if (!v) {
                close(fd);
                continue;
            }
            f->ctls = v;
            f->cap_ctls = cap;
        }
        c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        f->ctls[f->n_ctls++] = c;
    }
}

/* Runs the complete lines in c's input and keeps the incomplete rest. */
static void ctl_lines(struct fake *f, struct ctl *c)
{
    size_t start = 0;

    for (char *nl; !c->dead && (nl = memchr(c->in + start, '\n', c->in_len - start));) {
        *nl = '\0';
        ctl_command(f, c, c->in + start);
        start = (size_t)(nl - c->in) + 1;
    }
    memmove(c->in, c->in + start, c->in_len - start);
    c->in_len -= start;
    if (c->in_len > CTL_LINE_MAX) {
        ctl_printf(c, "err line too long\n");
        c->in_len = 0;
        c->eof = true;
    }
}

/* Reads and runs commands: a bounded number of reads per wake-up, so that one busy control
 * client cannot keep the loop from everything else. */
static void ctl_readable(struct fake *f, struct ctl *c)
{
    for (int reads = 0; reads < 64 && !c->dead && !c->eof; reads++) {
        ssize_t n;

        if (c->in_cap - c->in_len < 4096) {
            size_t cap = c->in_cap ? 2 * c->in_cap : 8192;
            char *in = realloc(c->in, cap);

            if (!in) {
                c->dead = true;
                break;
            }
            c->in = in;
            c->in_cap = cap;
        }
        n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, MSG_DONTWAIT);
        if (n > 0) {
            c->in_len += (size_t)n;
            ctl_lines(f, c);
        } else if (n == 0) {
            c->eof = true;
            if (c->in_len > 0) { /* a last line without its newline still counts */
                c->in[c->in_len++] = '\n';
                ctl_lines(f, c);
            }
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        } else if (errno != EINTR) {
            c->dead = true;
        }
    }
    ctl_flush(c);
}

/* ---- set-up, the loop, tear-down ---- */

static int open_control(struct fake *f)
{
    int port = listen_loopback(arg_control_port, 16, &f->control_fd);

    if (port < 0)
        return port;
    f->control_port = port;
    return 0;
}

static int open_tcp(struct fake *f)
{
    int port;

    f->mb = modbus_new_tcp("127.0.0.1", arg_tcp_port);
    if (!f->mb)
        return -errno;
    f->listen_fd = modbus_tcp_listen(f->mb, 64);
    if (f->listen_fd < 0)
        return -errno;
    if (set_nonblocking(f->listen_fd) < 0 || fcntl(f->listen_fd, F_SETFD, FD_CLOEXEC) < 0)
        return -errno;
    port = bound_port(f->listen_fd);
    if (port < 0)
        return port;
    f->tcp_port = port;
    return 0;
}

static int open_rtu(struct fake *f)
{
    int fd, r;

    f->mb = modbus_new_rtu(arg_rtu_path, arg_baud, arg_parity, arg_data_bits, arg_stop_bits);
    if (!f->mb)
        return -errno;
    if (modbus_connect(f->mb) < 0)
        return -errno;
    fd = modbus_get_socket(f->mb);
    r = set_nonblocking(fd);
    if (r < 0)
        return r;
    r = peer_add(f, fd);
    if (r < 0)
        return r;
    /* From here on libmodbus only ever writes answers, and those go to the shim. */
    modbus_set_socket(f->mb, f->shim[0]);
    return 0;
}

static int open_signals(struct fake *f)
{
    sigset_t mask;

    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
        return -errno;
    f->signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (f->signal_fd < 0)
        return -errno;
    return 0;
}

static int fake_init(struct fake *f)
{
    f->listen_fd = f->control_fd = f->signal_fd = -1;
    f->shim[0] = f->shim[1] = -1;
    f->rtu = arg_rtu_path != NULL || arg_rtu_tcp_port >= 0 || (arg_dial_port >= 0 && !arg_dial_tcp);
    f->stream = f->rtu && (arg_rtu_tcp_port >= 0 || arg_dial_port >= 0);
    f->ascii = arg_ascii;
    f->dial_port = arg_dial_port;
    f->redial_due_ms = -1;
    counters_reset(&f->counters);
    f->rng = ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid() ^ 0x9E3779B97F4A7C15ULL;
    f->log = calloc(LOG_CAPACITY, sizeof(*f->log));
    f->template = mapping_new();
    if (!f->log || !f->template)
        return -ENOMEM;
    if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, f->shim) < 0)
        return -errno;
    return 0;
}

static void fake_free(struct fake *f)
{
    if (f->mb) {
        if (f->rtu && !f->stream) {
            /* Give the context its line back: modbus_close() restores the line's settings
             * and closes it. (On TCP the context holds no descriptor of its own.) */
            if (modbus_get_socket(f->mb) == f->shim[0])
                modbus_set_socket(f->mb, f->peers[0]->fd);
            modbus_close(f->mb);
        }
        modbus_free(f->mb);
    }
    for (size_t i = 0; i < f->n_peers; i++) {
        if (on_socket(f))
            close(f->peers[i]->fd);
        free(f->peers[i]);
    }
    free(f->peers);
    for (size_t i = 0; i < f->n_ctls; i++) {
        close(f->ctls[i]->fd);
        free(f->ctls[i]->in);
        free(f->ctls[i]->out);
        free(f->ctls[i]);
    }
    free(f->ctls);
    for (unsigned u = 0; u < N_UNIT_IDS; u++) {
        modbus_mapping_free(f->units[u]);
        unit_opts_free(f->opts[u]);
    }
    modbus_mapping_free(f->template);
    free(f->log);
    free(f->tokens.v);
    if (f->listen_fd >= 0)
        close(f->listen_fd);
    if (f->control_fd >= 0)
        close(f->control_fd);
    if (f->signal_fd >= 0)
        close(f->signal_fd);
    if (f->shim[0] >= 0)
        close(f->shim[0]);
    if (f->shim[1] >= 0)
        close(f->shim[1]);
}

static void sweep(struct fake *f)
{
    size_t j = 0;

    for (size_t i = 0; i < f->n_peers; i++) {
        if (f->peers[i]->dead && on_socket(f)) {
            close(f->peers[i]->fd);
            free(f->peers[i]);
            if (f->dial_port >= 0 && f->redial_due_ms < 0)
                f->redial_due_ms = now_ms() + REDIAL_MS;
        } else {
            f->peers[j++] = f->peers[i];
        }
    }
    f->n_peers = j;
    j = 0;
    for (size_t i = 0; i < f->n_ctls; i++) {
        struct ctl *c = f->ctls[i];

        if (c->dead) {
            close(c->fd);
            free(c->in);
            free(c->out);
            free(c);
        } else {
            f->ctls[j++] = c;
        }
    }
    f->n_ctls = j;
}

/* Milliseconds until the next timer (held answer, half-received frame), -1 for none. */
static int next_timeout(const struct fake *f, int64_t now)
{
    int64_t due = INT64_MAX;

    for (size_t i = 0; i < f->n_peers; i++) {
        const struct peer *p = f->peers[i];

        if (p->held && p->held_due_ms < due)
            due = p->held_due_ms;
        if (p->partial_since_ms >= 0 && now + TCP_RECHECK_MS < due)
            due = now + TCP_RECHECK_MS;
        if (f->rtu && !f->ascii && p->rx_len > 0 && !p->held) {
            int gap = rtu_request_length(p->rx, p->rx_len) < 0 ? RTU_GAP_UNKNOWN_MS
                                                                 : RTU_GAP_PARTIAL_MS;
            if (p->rx_last_ms + gap < due)
                due = p->rx_last_ms + gap;
        }
    }
    if (f->redial_due_ms >= 0 && f->redial_due_ms < due)
        due = f->redial_due_ms;
    if (due == INT64_MAX)
        return -1;
    return due <= now ? 0 : (int)(due - now + 1);
}

enum slot_kind { SLOT_SIGNAL, SLOT_CONTROL, SLOT_CTL, SLOT_LISTEN, SLOT_PEER };

struct slot {
    enum slot_kind kind;
    void *obj;
};

static int run(struct fake *f)
{
    struct pollfd *pfd = NULL;
    struct slot *slots = NULL;
    size_t cap = 0;
    int r = 0;

    while (!f->stop) {
        size_t n = 0, want = 3 + f->n_peers + f->n_ctls;
        int64_t now;

        if (want > cap || !pfd || !slots) {
            size_t ncap = want < 16 ? 16 : 2 * want;
            struct pollfd *np = realloc(pfd, ncap * sizeof(*np));
            struct slot *ns;

            if (!np) {
                r = -ENOMEM;
                break;
            }
            pfd = np;
            ns = realloc(slots, ncap * sizeof(*ns));
            if (!ns) {
                r = -ENOMEM;
                break;
            }
            slots = ns;
            cap = ncap;
        }
        pfd[n] = (struct pollfd){ .fd = f->signal_fd, .events = POLLIN };
        slots[n++] = (struct slot){ SLOT_SIGNAL, NULL };
        pfd[n] = (struct pollfd){ .fd = f->control_fd, .events = POLLIN };
        slots[n++] = (struct slot){ SLOT_CONTROL, NULL };
        if (f->listen_fd >= 0) {
            pfd[n] = (struct pollfd){ .fd = f->listen_fd, .events = POLLIN };
            slots[n++] = (struct slot){ SLOT_LISTEN, NULL };
        }
        for (size_t i = 0; i < f->n_ctls; i++) {
            struct ctl *c = f->ctls[i];
            short ev = (short)((c->eof ? 0 : POLLIN) | (c->out_len > c->out_off ? POLLOUT : 0));

            pfd[n] = (struct pollfd){ .fd = c->fd, .events = ev };
            slots[n++] = (struct slot){ SLOT_CTL, c };
        }
        for (size_t i = 0; i < f->n_peers; i++) {
            struct peer *p = f->peers[i];

            /* A peer with an answer held back, or a half frame, is not read meanwhile. */
            if (p->held || p->partial_since_ms >= 0 || p->zombie)
                continue;
            pfd[n] = (struct pollfd){ .fd = p->fd, .events = POLLIN };
            slots[n++] = (struct slot){ SLOT_PEER, p };
        }

        now = now_ms();
        if (poll(pfd, (nfds_t)n, next_timeout(f, now)) < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            break;
        }
        now = now_ms();

        for (size_t i = 0; i < n && !f->stop; i++) {
            if (!pfd[i].revents)
                continue;
            switch (slots[i].kind) {
            case SLOT_SIGNAL: {
                struct signalfd_siginfo si;

                if (read(f->signal_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                    note("received %s, stopping", strsignal((int)si.ssi_signo));
                    f->stop = true;
                }
                break;
            }
            case SLOT_CONTROL:
                ctl_accept(f);
                break;
            case SLOT_LISTEN:
                tcp_accept(f);
                break;
            case SLOT_CTL: {
                struct ctl *c = slots[i].obj;

                if (pfd[i].revents & (POLLIN | POLLHUP | POLLERR))
                    ctl_readable(f, c);
                else
                    ctl_flush(c);
                break;
            }
            case SLOT_PEER:
                if (f->stream)
                    stream_readable(f, slots[i].obj, now);
                else if (f->rtu)
                    rtu_readable(f, slots[i].obj, pfd[i].revents, now);
                else
                    tcp_readable(f, slots[i].obj, now);
                break;
            }
        }

        /* Timers: held answers that are due, half frames to look at again. */
        for (size_t i = 0; i < f->n_peers && !f->stop; i++) {
            struct peer *p = f->peers[i];

            if (p->dead)
                continue;
            if (p->held && p->held_due_ms <= now) {
                p->held = false;
                peer_send(f, p, p->held_buf, p->held_len);
            }
            if (f->rtu)
                frames_process(f, p, now);
            else if (p->partial_since_ms >= 0 && !p->held)
                tcp_readable(f, p, now);
        }
        sweep(f);
        if (f->redial_due_ms >= 0 && f->redial_due_ms <= now_ms())
            dial(f);
    }
    free(pfd);
    free(slots);
    return r;
}

static void usage(FILE *to)
{
    fputs("usage: fake-modbus (--tcp PORT | --tcp-dial PORT | --rtu-tcp PORT | --rtu-tcp-dial PORT |\n"
          "                    (--rtu PATH | --ascii PATH) [--baud N] [--parity N|E|O]\n"
          "                    [--data-bits N] [--stop-bits N])\n"
          "                   [--control PORT] [--units LIST] [--map FILE] [--quiet]\n"
          "\n"
          "A Modbus slave for tests: TCP on 127.0.0.1:PORT (0 picks one), RTU frames on TCP\n"
          "(served on PORT, or dialled to 127.0.0.1:PORT and re-dialled; --tcp-dial dials with\n"
          "Modbus TCP frames), or RTU or ASCII on PATH,\n"
          "unit ids LIST (e.g. 1,7,20-30), tables preloaded from FILE, and a line-based\n"
          "control port on 127.0.0.1. Prints \"READY tcp=<port> control=<port>\" when ready.\n"
          "See tests/fakes/README.md.\n",
          to);
}

/* Returns 0, 1 when --help was answered, or -EINVAL (bad command line). */
static int parse_argv(int argc, char **argv)
{
    enum { OPT_TCP = 0x100, OPT_RTU, OPT_RTU_TCP, OPT_DIAL, OPT_TCP_DIAL, OPT_ASCII, OPT_BAUD, OPT_PARITY, OPT_DATA_BITS, OPT_STOP_BITS,
           OPT_CONTROL, OPT_UNITS, OPT_MAP, OPT_QUIET, OPT_HELP };
    static const struct option options[] = {
        { "tcp", required_argument, NULL, OPT_TCP },
        { "rtu", required_argument, NULL, OPT_RTU },
        { "rtu-tcp", required_argument, NULL, OPT_RTU_TCP },
        { "rtu-tcp-dial", required_argument, NULL, OPT_DIAL },
        { "tcp-dial", required_argument, NULL, OPT_TCP_DIAL },
        { "ascii", required_argument, NULL, OPT_ASCII },
        { "baud", required_argument, NULL, OPT_BAUD },
        { "parity", required_argument, NULL, OPT_PARITY },
        { "data-bits", required_argument, NULL, OPT_DATA_BITS },
        { "stop-bits", required_argument, NULL, OPT_STOP_BITS },
        { "control", required_argument, NULL, OPT_CONTROL },
        { "units", required_argument, NULL, OPT_UNITS },
        { "map", required_argument, NULL, OPT_MAP },
        { "quiet", no_argument, NULL, OPT_QUIET },
        { "help", no_argument, NULL, OPT_HELP },
        {}
    };
    unsigned long v;
    int c;

    while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0) {
        switch (c) {
        case OPT_TCP:
        case OPT_CONTROL:
            if (parse_number(optarg, 65535, &v) < 0) {
                complain("bad port '%s'", optarg);
                return -EINVAL;
            }
            *(c == OPT_TCP ? &arg_tcp_port : &arg_control_port) = (int)v;
            break;
        case OPT_RTU:
            arg_rtu_path = optarg;
            break;
        case OPT_ASCII:
            arg_rtu_path = optarg;
            arg_ascii = true;
            break;
        case OPT_RTU_TCP:
        case OPT_DIAL:
        case OPT_TCP_DIAL:
            if (parse_number(optarg, 65535, &v) < 0 || (c != OPT_RTU_TCP && v == 0)) {
                complain("bad port '%s'", optarg);
                return -EINVAL;
            }
            *(c == OPT_RTU_TCP ? &arg_rtu_tcp_port : &arg_dial_port) = (int)v;
            arg_dial_tcp = c == OPT_TCP_DIAL;
            break;
        case OPT_BAUD:
            if (parse_number(optarg, 4000000, &v) < 0 || v == 0) {
                complain("bad baud rate '%s'", optarg);
                return -EINVAL;
            }
            arg_baud = (int)v;
            break;
        case OPT_PARITY:
            if (strlen(optarg) != 1 || !strchr("NEO", optarg[0])) {
                complain("bad parity '%s' (N, E or O)", optarg);
                return -EINVAL;
            }
            arg_parity = optarg[0];
            break;
        case OPT_DATA_BITS:
            if (parse_number(optarg, 8, &v) < 0 || v < 5) {
                complain("bad data bits '%s' (5..8)", optarg);
                return -EINVAL;
            }
            arg_data_bits = (int)v;
            break;
        case OPT_STOP_BITS:
            if (parse_number(optarg, 2, &v) < 0 || v < 1) {
                complain("bad stop bits '%s' (1 or 2)", optarg);
                return -EINVAL;
            }
            arg_stop_bits = (int)v;
            break;
        case OPT_UNITS:
            arg_units = optarg;
            break;
        case OPT_MAP:
            arg_map = optarg;
            break;
        case OPT_QUIET:
            arg_quiet = true;
            break;
        case OPT_HELP:
            usage(stdout);
            return 1;
        default:
            return -EINVAL;
        }
    }
    if (optind < argc) {
        complain("unexpected argument '%s'", argv[optind]);
        return -EINVAL;
    }
    if ((arg_tcp_port >= 0) + (arg_rtu_path != NULL) + (arg_rtu_tcp_port >= 0) +
            (arg_dial_port >= 0) != 1) {
        complain("give exactly one of --tcp, --tcp-dial, --rtu, --ascii, --rtu-tcp and "
                 "--rtu-tcp-dial");
        return -EINVAL;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct fake *f;
    int r, status = 0;

    r = parse_argv(argc, argv);
    if (r != 0) {
        if (r < 0)
            usage(stderr);
        return r < 0 ? 2 : 0;
    }

    f = calloc(1, sizeof(*f));
    if (!f) {
        complain("out of memory");
        return 1;
    }
    r = fake_init(f);
    if (r < 0) {
        complain("cannot start: %s", strerror(-r));
        status = 1;
        goto out;
    }

    if (arg_units) {
        r = parse_units(f, arg_units);
        if (r < 0) {
            complain("bad --units '%s' (e.g. 1,7,20-30; ids 1..255)", arg_units);
            usage(stderr);
            status = 2;
            goto out;
        }
    } else {
        for (unsigned u = 1; u <= 247; u++)
            f->served[u] = true;
        f->served[255] = !f->rtu;
    }
    if (arg_map) {
        r = load_map(f, arg_map);
        if (r < 0) {
            status = r == -ENOMEM ? 1 : 2;
            goto out;
        }
    }

    r = open_signals(f);
    if (r < 0) {
        complain("signals: %s", strerror(-r));
        status = 1;
        goto out;
    }
    r = f->stream || dialling(f) ? open_stream(f) : f->rtu ? open_rtu(f) : open_tcp(f);
    if (r < 0) {
        if (f->stream || dialling(f))
            complain("127.0.0.1:%d: %s", f->dial_port >= 0 ? f->dial_port : arg_rtu_tcp_port,
                     strerror(-r));
        else if (f->rtu)
            complain("serial line %s: %s", arg_rtu_path, modbus_strerror(-r));
        else
            complain("127.0.0.1:%d: %s", arg_tcp_port, modbus_strerror(-r));
        status = 1;
        goto out;
    }
    /* Timeouts libmodbus uses on our side: the byte timeout bounds a frame whose MBAP length
     * and function code disagree; the response timeout is what modbus_reply() sleeps before
     * flushing after an illegal quantity, so keep it tiny. */
    modbus_set_byte_timeout(f->mb, 0, 100000);
    modbus_set_indication_timeout(f->mb, 1, 0);
    modbus_set_response_timeout(f->mb, 0, 1000);

    r = open_control(f);
    if (r < 0) {
        complain("control port 127.0.0.1:%d: %s", arg_control_port, strerror(-r));
        status = 1;
        goto out;
    }

    if ((f->rtu && !(f->stream && !dialling(f))) || dialling(f))
        printf("READY tcp=- control=%d\n", f->control_port);
    else
        printf("READY tcp=%d control=%d\n", f->tcp_port, f->control_port);
    fflush(stdout);
    if (f->stream || dialling(f))
        note("serving %s on TCP (%s %d), control port %d", f->rtu ? "RTU frames" : "Modbus TCP",
             f->dial_port >= 0 ? "dialling" : "port", f->dial_port >= 0 ? f->dial_port : f->tcp_port,
             f->control_port);
    else if (f->rtu)
        note("serving %s on %s, control port %d", f->ascii ? "ASCII" : "RTU", arg_rtu_path,
             f->control_port);
    else
        note("serving TCP on 127.0.0.1:%d, control port %d", f->tcp_port, f->control_port);

    r = run(f);
    if (r < 0) {
        complain("main loop: %s", strerror(-r));
        status = 1;
    } else {
        status = f->exit_status;
    }
out:
    fake_free(f);
    free(f);
    return status;
}
