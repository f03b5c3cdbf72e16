/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fake-modbus: a Modbus slave for tbgw's tests and benchmarks, built on libmodbus's server
 * API so that tbgw is tested against libmodbus's own answers, not against our idea of them.
 *
 * TCP (any number of clients, one select() loop) or RTU on a serial device (one end of a
 * socat pty pair). Many unit ids, each with its own four tables of 65 536 entries. A line
 * protocol on a second TCP port lets a test set and get registers, read the request log,
 * and inject faults (delays, silence, exceptions, holes, garbage, bad CRCs, dropped
 * connections). See tests/fakes/README.md.
 *
 * On RTU, libmodbus's receive filters on a single slave id, so this program frames RTU
 * requests itself (length from the function code, CRC-16 checked) and hands whole frames
 * to modbus_reply() with the unit's mapping. Only deliberately broken answers are built by
 * hand.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <modbus.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_UNITS 256
#define MAX_CLIENTS 64
#define MAX_FAULTS 64
#define LOG_MAX 100000
#define TABLE_SIZE 65536

enum table { COIL, DISCRETE, INPUT, HOLDING };
static const char *const table_names[] = {"coil", "discrete", "input", "holding"};

struct range_fault {
    int unit;
    enum table table;
    int addr, count;
    int code;
};

struct log_entry {
    unsigned char unit, fc;
    unsigned short addr, count;
};

static struct {
    bool rtu;
    bool quiet;
    modbus_mapping_t *units[MAX_UNITS];
    bool serve[MAX_UNITS];
    /* faults */
    int delay_ms;
    bool silent[MAX_UNITS];
    bool silent_all;
    struct range_fault ranges[MAX_FAULTS];
    int n_ranges;
    int garbage, crc, drop;
    /* log and counters */
    struct log_entry *log;
    size_t log_head, log_n;
    unsigned long requests, reads, writes, exceptions, crc_errors, ignored;
} st;

static volatile sig_atomic_t stop;
static int sigpipe_fds[2] = {-1, -1};

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
    if (sigpipe_fds[1] >= 0)
        (void)!write(sigpipe_fds[1], "x", 1);
}

static void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void diag(const char *fmt, ...)
{
    va_list ap;

    if (st.quiet)
        return;
    va_start(ap, fmt);
    fputs("fake-modbus: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static modbus_mapping_t *unit_map(int unit)
{
    if (unit < 0 || unit >= MAX_UNITS)
        return NULL;
    if (!st.units[unit]) {
        st.units[unit] = modbus_mapping_new(TABLE_SIZE, TABLE_SIZE, TABLE_SIZE, TABLE_SIZE);
        if (!st.units[unit]) {
            fprintf(stderr, "fake-modbus: out of memory for unit %d\n", unit);
            exit(1);
        }
    }
    return st.units[unit];
}

static int table_from(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, table_names[i]) == 0)
            return i;
    return -1;
}

static void set_value(modbus_mapping_t *m, enum table t, int addr, unsigned v)
{
    switch (t) {
    case COIL:
        m->tab_bits[addr] = v != 0;
        break;
    case DISCRETE:
        m->tab_input_bits[addr] = v != 0;
        break;
    case INPUT:
        m->tab_input_registers[addr] = (uint16_t)v;
        break;
    case HOLDING:
        m->tab_registers[addr] = (uint16_t)v;
        break;
    }
}

static unsigned get_value(modbus_mapping_t *m, enum table t, int addr)
{
    switch (t) {
    case COIL:
        return m->tab_bits[addr];
    case DISCRETE:
        return m->tab_input_bits[addr];
    case INPUT:
        return m->tab_input_registers[addr];
    default:
        return m->tab_registers[addr];
    }
}

/* ---- request inspection ---- */

struct req_info {
    int unit, fc, addr, count;
    enum table table;
    bool write, known;
};

static struct req_info inspect(const uint8_t *pdu_with_unit, int len)
{
    const uint8_t *p = pdu_with_unit;
    struct req_info r = {.unit = p[0], .fc = len > 1 ? p[1] : 0};

    if (len < 6)
        return r;
    r.addr = p[2] << 8 | p[3];
    r.count = p[4] << 8 | p[5];
    r.known = true;
    switch (r.fc) {
    case 1:
        r.table = COIL;
        break;
    case 2:
        r.table = DISCRETE;
        break;
    case 3:
        r.table = HOLDING;
        break;
    case 4:
        r.table = INPUT;
        break;
    case 5:
        r.table = COIL, r.count = 1, r.write = true;
        break;
    case 6:
        r.table = HOLDING, r.count = 1, r.write = true;
        break;
    case 15:
        r.table = COIL, r.write = true;
        break;
    case 16:
        r.table = HOLDING, r.write = true;
        break;
    case 22:
        r.table = HOLDING, r.count = 1, r.write = true;
        break;
    case 23:
        r.table = HOLDING, r.write = true;
        break;
    default:
        r.known = false;
        break;
    }
    return r;
}

static void log_request(const struct req_info *r)
{
    struct log_entry *e = &st.log[(st.log_head + st.log_n) % LOG_MAX];

    *e = (struct log_entry){.unit = (unsigned char)r->unit, .fc = (unsigned char)r->fc,
                            .addr = (unsigned short)r->addr, .count = (unsigned short)r->count};
    if (st.log_n < LOG_MAX)
        st.log_n++;
    else
        st.log_head = (st.log_head + 1) % LOG_MAX;
}

static int range_exception(const struct req_info *r)
{
    for (int i = 0; i < st.n_ranges; i++) {
        const struct range_fault *f = &st.ranges[i];
        if (f->unit == r->unit && f->table == r->table && r->addr < f->addr + f->count &&
            f->addr < r->addr + r->count)
            return f->code;
    }
    return 0;
}

/* ---- RTU framing ---- */

static uint16_t crc16(const uint8_t *p, size_t n)
{
    uint16_t crc = 0xffff;

    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int b = 0; b < 8; b++)
            crc = (crc & 1) ? (crc >> 1) ^ 0xa001 : crc >> 1;
    }
    return crc;
}

/* Expected RTU request length from what has arrived so far; 0 if it cannot be known yet,
 * -1 for a function code we do not frame. */
static int rtu_expected(const uint8_t *b, size_t n)
{
    if (n < 2)
        return 0;
    switch (b[1]) {
    case 1: case 2: case 3: case 4: case 5: case 6:
        return 8;
    case 15: case 16:
        return n < 7 ? 0 : 7 + b[6] + 2;
    case 22:
        return 10;
    case 23:
        return n < 11 ? 0 : 11 + b[10] + 2;
    default:
        return -1;
    }
}

static long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR && !stop)
        ;
}

/* ---- answering ---- */

/* Answer req (length len, header_len bytes before the unit id's PDU) on ctx.
 * Returns -1 if the connection should be dropped. */
static int answer(modbus_t *ctx, const uint8_t *req, int len, int header_len, int fd)
{
    struct req_info r = inspect(req + header_len - 1, len - header_len + 1);
    int code;

    st.requests++;
    log_request(&r);
    if (r.write)
        st.writes++;
    else
        st.reads++;

    if (st.silent_all || (r.unit < MAX_UNITS && (st.silent[r.unit] || !st.serve[r.unit]))) {
        if (!(r.unit == 0 && st.rtu && r.write)) {
            st.ignored++;
            return 0;
        }
    }
    if (st.delay_ms)
        sleep_ms(st.delay_ms);
    if (st.drop > 0 && !st.rtu) {
        st.drop--;
        return -1;
    }
    if (st.garbage > 0) {
        uint8_t g[16];
        int n = st.rtu ? 7 : 12;
        st.garbage--;
        for (int i = 0; i < n; i++)
            g[i] = (uint8_t)rand();
        (void)!write(fd, g, (size_t)n);
        return 0;
    }
    if (st.crc > 0 && st.rtu && r.known && !r.write) {
        /* The right data with a wrong CRC. */
        modbus_mapping_t *m = unit_map(r.unit);
        uint8_t out[260];
        int n = 0;
        st.crc--;
        out[n++] = (uint8_t)r.unit;
        out[n++] = (uint8_t)r.fc;
        if (r.table == COIL || r.table == DISCRETE) {
            int bytes = (r.count + 7) / 8;
            out[n++] = (uint8_t)bytes;
            memset(out + n, 0, (size_t)bytes);
            for (int i = 0; i < r.count && r.addr + i < TABLE_SIZE; i++)
                if (get_value(m, r.table, r.addr + i))
                    out[n + i / 8] |= (uint8_t)(1 << (i % 8));
            n += bytes;
        } else {
            out[n++] = (uint8_t)(2 * r.count);
            for (int i = 0; i < r.count && r.addr + i < TABLE_SIZE; i++) {
                unsigned v = get_value(m, r.table, r.addr + i);
                out[n++] = (uint8_t)(v >> 8);
                out[n++] = (uint8_t)v;
            }
        }
        {
            uint16_t c = (uint16_t)(crc16(out, (size_t)n) ^ 0x5555);
            out[n++] = (uint8_t)c;
            out[n++] = (uint8_t)(c >> 8);
        }
        (void)!write(fd, out, (size_t)n);
        return 0;
    }
    if (r.known && (code = range_exception(&r))) {
        st.exceptions++;
        modbus_reply_exception(ctx, req, (unsigned)code);
        return 0;
    }
    if (r.unit == 0 && st.rtu) {
        /* Broadcast write: every unit takes it, nobody answers. */
        for (int u = 1; u < MAX_UNITS; u++)
            if (st.units[u] && st.serve[u])
                modbus_reply(ctx, req, len, st.units[u]);
        return 0;
    }
    if (modbus_reply(ctx, req, len, unit_map(r.unit)) < 0 && errno != EMBXILFUN)
        return errno == EPIPE || errno == ECONNRESET ? -1 : 0;
    return 0;
}

/* ---- control port ---- */

struct control {
    int fd;
    char buf[4096];
    size_t len;
};

static void reply(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void reply(int fd, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof(buf) - 2)
        n = (int)sizeof(buf) - 2;
    buf[n++] = '\n';
    (void)!write(fd, buf, (size_t)n);
}

static void control_command(int fd, char *line)
{
    char *argv[140];
    int argc = 0;

    for (char *tok = strtok(line, " \t\r"); tok && argc < 140; tok = strtok(NULL, " \t\r"))
        argv[argc++] = tok;
    if (!argc)
        return;

    if (strcmp(argv[0], "set") == 0 && argc >= 5) {
        int unit = atoi(argv[1]), t = table_from(argv[2]), addr = atoi(argv[3]);
        modbus_mapping_t *m = unit_map(unit);
        if (!m || t < 0 || addr < 0 || addr + argc - 4 > TABLE_SIZE) {
            reply(fd, "err bad arguments");
            return;
        }
        for (int i = 4; i < argc; i++)
            set_value(m, (enum table)t, addr + i - 4, (unsigned)strtoul(argv[i], NULL, 0));
        reply(fd, "ok");
    } else if (strcmp(argv[0], "get") == 0 && argc == 5) {
        int unit = atoi(argv[1]), t = table_from(argv[2]), addr = atoi(argv[3]), n = atoi(argv[4]);
        modbus_mapping_t *m = unit_map(unit);
        char out[8192];
        size_t o = 0;
        if (!m || t < 0 || addr < 0 || n < 1 || n > 1000 || addr + n > TABLE_SIZE) {
            reply(fd, "err bad arguments");
            return;
        }
        o += (size_t)snprintf(out, sizeof(out), "ok");
        for (int i = 0; i < n && o < sizeof(out) - 8; i++)
            o += (size_t)snprintf(out + o, sizeof(out) - o, " %u", get_value(m, (enum table)t, addr + i));
        reply(fd, "%s", out);
    } else if (strcmp(argv[0], "stats") == 0) {
        reply(fd, "ok requests=%lu reads=%lu writes=%lu exceptions=%lu crc_errors=%lu ignored=%lu",
              st.requests, st.reads, st.writes, st.exceptions, st.crc_errors, st.ignored);
    } else if (strcmp(argv[0], "log") == 0) {
        reply(fd, "ok %zu", st.log_n);
        for (size_t i = 0; i < st.log_n; i++) {
            struct log_entry *e = &st.log[(st.log_head + i) % LOG_MAX];
            reply(fd, "%u %u %u %u", e->unit, e->fc, e->addr, e->count);
        }
        reply(fd, "end");
    } else if (strcmp(argv[0], "reset") == 0) {
        st.log_n = st.log_head = 0;
        st.requests = st.reads = st.writes = st.exceptions = st.crc_errors = st.ignored = 0;
        reply(fd, "ok");
    } else if (strcmp(argv[0], "fault") == 0 && argc >= 2) {
        const char *f = argv[1];
        if (strcmp(f, "clear") == 0) {
            st.delay_ms = st.garbage = st.crc = st.drop = st.n_ranges = 0;
            st.silent_all = false;
            memset(st.silent, 0, sizeof(st.silent));
        } else if (strcmp(f, "delay") == 0 && argc == 3) {
            st.delay_ms = atoi(argv[2]);
        } else if (strcmp(f, "silent") == 0 && argc == 3) {
            int u = atoi(argv[2]);
            if (u == 0)
                st.silent_all = true;
            else if (u > 0 && u < MAX_UNITS)
                st.silent[u] = true;
        } else if ((strcmp(f, "exception") == 0 && argc == 7) || (strcmp(f, "hole") == 0 && argc == 6)) {
            int t = table_from(argv[3]);
            if (t < 0 || st.n_ranges >= MAX_FAULTS) {
                reply(fd, "err bad arguments");
                return;
            }
            st.ranges[st.n_ranges++] = (struct range_fault){
                .unit = atoi(argv[2]), .table = (enum table)t, .addr = atoi(argv[4]),
                .count = atoi(argv[5]), .code = argc == 7 ? atoi(argv[6]) : 2};
        } else if (strcmp(f, "garbage") == 0 && argc == 3) {
            st.garbage = atoi(argv[2]);
        } else if (strcmp(f, "crc") == 0 && argc == 3) {
            st.crc = atoi(argv[2]);
        } else if (strcmp(f, "drop") == 0 && argc == 3) {
            st.drop = atoi(argv[2]);
        } else {
            reply(fd, "err unknown fault");
            return;
        }
        reply(fd, "ok");
    } else {
        reply(fd, "err unknown command");
    }
}

/* ---- main loop ---- */

static int listen_on(int port, int *ret_port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 16) < 0) {
        close(fd);
        return -1;
    }
    getsockname(fd, (struct sockaddr *)&sa, &len);
    *ret_port = ntohs(sa.sin_port);
    return fd;
}

static int parse_units(const char *s)
{
    char *copy = strdup(s), *save = NULL;

    memset(st.serve, 0, sizeof(st.serve));
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int a, b;
        if (sscanf(tok, "%d-%d", &a, &b) == 2) {
        } else if (sscanf(tok, "%d", &a) == 1) {
            b = a;
        } else {
            free(copy);
            return -1;
        }
        for (int u = a; u <= b && u >= 0 && u < MAX_UNITS; u++)
            st.serve[u] = true;
    }
    free(copy);
    return 0;
}

static int load_map(const char *path)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    int lineno = 0;

    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof(line), f)) {
        char *argv[600], *hash = strchr(line, '#');
        int argc = 0, t, addr, lo, hi;

        lineno++;
        if (hash)
            *hash = '\0';
        for (char *tok = strtok(line, " \t\r\n"); tok && argc < 600; tok = strtok(NULL, " \t\r\n"))
            argv[argc++] = tok;
        if (!argc)
            continue;
        if (argc < 4 || (t = table_from(argv[1])) < 0) {
            fprintf(stderr, "%s:%d: expected UNIT TABLE ADDR VALUE...\n", path, lineno);
            fclose(f);
            return -1;
        }
        addr = atoi(argv[2]);
        if (strcmp(argv[0], "*") == 0)
            lo = 1, hi = 247;
        else
            lo = hi = atoi(argv[0]);
        if (addr < 0 || addr + argc - 3 > TABLE_SIZE || lo < 0 || hi >= MAX_UNITS) {
            fprintf(stderr, "%s:%d: address or unit out of range\n", path, lineno);
            fclose(f);
            return -1;
        }
        for (int u = lo; u <= hi; u++)
            for (int i = 3; i < argc; i++)
                set_value(unit_map(u), (enum table)t, addr + i - 3,
                          (unsigned)strtoul(argv[i], NULL, 0));
    }
    fclose(f);
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: fake-modbus (--tcp PORT | --rtu PATH [--baud N] [--parity N|E|O] "
                    "[--data-bits N] [--stop-bits N]) [--control PORT] [--units LIST] "
                    "[--map FILE] [--quiet]\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"tcp", required_argument, NULL, 't'},      {"rtu", required_argument, NULL, 'r'},
        {"baud", required_argument, NULL, 'b'},     {"parity", required_argument, NULL, 'p'},
        {"data-bits", required_argument, NULL, 'd'}, {"stop-bits", required_argument, NULL, 's'},
        {"control", required_argument, NULL, 'c'},  {"units", required_argument, NULL, 'u'},
        {"map", required_argument, NULL, 'm'},      {"quiet", no_argument, NULL, 'q'},
        {NULL, 0, NULL, 0},
    };
    const char *rtu_path = NULL, *map = NULL;
    int tcp_port = -1, control_port = 0, baud = 9600, data_bits = 8, stop_bits = 1;
    char parity = 'N';
    modbus_t *ctx;
    int listen_fd = -1, ctl_fd, serial_fd = -1;
    int clients[MAX_CLIENTS];
    struct control ctls[8];
    int n_clients = 0, n_ctls = 0, c;
    uint8_t rtu_buf[512];
    size_t rtu_len = 0;
    long rtu_last = 0;

    /* On TCP, unit 0 and 255 are ordinary addresses many devices answer to. */
    for (int u = 0; u <= 247; u++)
        st.serve[u] = true;
    st.serve[255] = true;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) >= 0) {
        switch (c) {
        case 't':
            tcp_port = atoi(optarg);
            break;
        case 'r':
            rtu_path = optarg;
            break;
        case 'b':
            baud = atoi(optarg);
            break;
        case 'p':
            parity = optarg[0];
            break;
        case 'd':
            data_bits = atoi(optarg);
            break;
        case 's':
            stop_bits = atoi(optarg);
            break;
        case 'c':
            control_port = atoi(optarg);
            break;
        case 'u':
            if (parse_units(optarg) < 0) {
                usage();
                return 2;
            }
            break;
        case 'm':
            map = optarg;
            break;
        case 'q':
            st.quiet = true;
            break;
        default:
            usage();
            return 2;
        }
    }
    if ((tcp_port < 0) == !rtu_path || optind != argc) {
        usage();
        return 2;
    }
    st.rtu = rtu_path != NULL;
    if (st.rtu)
        st.serve[0] = false; /* the broadcast address */
    st.log = calloc(LOG_MAX, sizeof(*st.log));
    if (map && load_map(map) < 0)
        return 2;
    srand((unsigned)time(NULL));
    signal(SIGPIPE, SIG_IGN);
    if (pipe2(sigpipe_fds, O_CLOEXEC | O_NONBLOCK) < 0)
        return 1;
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);

    if (st.rtu) {
        ctx = modbus_new_rtu(rtu_path, baud, parity, data_bits, stop_bits);
        if (!ctx || modbus_connect(ctx) < 0) {
            fprintf(stderr, "fake-modbus: %s: %s\n", rtu_path, modbus_strerror(errno));
            return 1;
        }
        serial_fd = modbus_get_socket(ctx);
    } else {
        ctx = modbus_new_tcp("127.0.0.1", tcp_port);
        listen_fd = listen_on(tcp_port, &tcp_port);
        if (!ctx || listen_fd < 0) {
            fprintf(stderr, "fake-modbus: cannot listen on port %d: %s\n", tcp_port, strerror(errno));
            return 1;
        }
    }
    ctl_fd = listen_on(control_port, &control_port);
    if (ctl_fd < 0) {
        fprintf(stderr, "fake-modbus: cannot open the control port: %s\n", strerror(errno));
        return 1;
    }
    if (st.rtu)
        printf("READY tcp=- control=%d\n", control_port);
    else
        printf("READY tcp=%d control=%d\n", tcp_port, control_port);
    fflush(stdout);

    while (!stop) {
        fd_set rd;
        int maxfd = sigpipe_fds[0];
        struct timeval tv = {.tv_sec = 0, .tv_usec = 50000};

        FD_ZERO(&rd);
        FD_SET(sigpipe_fds[0], &rd);
        FD_SET(ctl_fd, &rd);
        maxfd = ctl_fd > maxfd ? ctl_fd : maxfd;
        for (int i = 0; i < n_ctls; i++) {
            FD_SET(ctls[i].fd, &rd);
            maxfd = ctls[i].fd > maxfd ? ctls[i].fd : maxfd;
        }
        if (st.rtu) {
            FD_SET(serial_fd, &rd);
            maxfd = serial_fd > maxfd ? serial_fd : maxfd;
        } else {
            FD_SET(listen_fd, &rd);
            maxfd = listen_fd > maxfd ? listen_fd : maxfd;
            for (int i = 0; i < n_clients; i++) {
                FD_SET(clients[i], &rd);
                maxfd = clients[i] > maxfd ? clients[i] : maxfd;
            }
        }
        if (select(maxfd + 1, &rd, NULL, NULL, &tv) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (stop)
            break;

        /* control */
        if (FD_ISSET(ctl_fd, &rd)) {
            int fd = accept4(ctl_fd, NULL, NULL, SOCK_CLOEXEC);
            if (fd >= 0 && n_ctls < 8)
                ctls[n_ctls++] = (struct control){.fd = fd};
            else if (fd >= 0)
                close(fd);
        }
        for (int i = 0; i < n_ctls; i++) {
            struct control *k = &ctls[i];
            ssize_t n;
            char *nl;
            if (!FD_ISSET(k->fd, &rd))
                continue;
            n = read(k->fd, k->buf + k->len, sizeof(k->buf) - 1 - k->len);
            if (n <= 0) {
                close(k->fd);
                ctls[i--] = ctls[--n_ctls];
                continue;
            }
            k->len += (size_t)n;
            k->buf[k->len] = '\0';
            while ((nl = strchr(k->buf, '\n'))) {
                *nl = '\0';
                control_command(k->fd, k->buf);
                memmove(k->buf, nl + 1, k->len - (size_t)(nl + 1 - k->buf) + 1);
                k->len -= (size_t)(nl + 1 - k->buf);
            }
            if (k->len == sizeof(k->buf) - 1)
                k->len = 0;
        }

        if (st.rtu) {
            /* A partial frame followed by 50 ms of silence is noise. */
            if (rtu_len && now_ms() - rtu_last > 50)
                rtu_len = 0;
            if (FD_ISSET(serial_fd, &rd)) {
                ssize_t n = read(serial_fd, rtu_buf + rtu_len, sizeof(rtu_buf) - rtu_len);
                if (n > 0) {
                    rtu_len += (size_t)n;
                    rtu_last = now_ms();
                }
            }
            for (;;) {
                int want = rtu_expected(rtu_buf, rtu_len);
                if (want == 0 || (want > 0 && rtu_len < (size_t)want))
                    break;
                if (want < 0) {
                    /* Unknown function: wait for the line to go quiet, then answer 01. */
                    if (now_ms() - rtu_last < 5)
                        break;
                    if (rtu_len >= 4 && crc16(rtu_buf, rtu_len - 2) ==
                                            (uint16_t)(rtu_buf[rtu_len - 2] | rtu_buf[rtu_len - 1] << 8)) {
                        modbus_set_slave(ctx, rtu_buf[0]);
                        st.requests++;
                        st.exceptions++;
                        modbus_reply_exception(ctx, rtu_buf, MODBUS_EXCEPTION_ILLEGAL_FUNCTION);
                    }
                    rtu_len = 0;
                    break;
                }
                if (crc16(rtu_buf, (size_t)want - 2) !=
                    (uint16_t)(rtu_buf[want - 2] | rtu_buf[want - 1] << 8)) {
                    st.crc_errors++;
                    diag("dropped a frame with a bad CRC");
                } else {
                    modbus_set_slave(ctx, rtu_buf[0] ? rtu_buf[0] : 1);
                    answer(ctx, rtu_buf, want, 1, serial_fd);
                }
                memmove(rtu_buf, rtu_buf + want, rtu_len - (size_t)want);
                rtu_len -= (size_t)want;
            }
        } else {
            if (FD_ISSET(listen_fd, &rd)) {
                int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
                if (fd >= 0 && n_clients < MAX_CLIENTS)
                    clients[n_clients++] = fd;
                else if (fd >= 0)
                    close(fd);
            }
            for (int i = 0; i < n_clients; i++) {
                uint8_t req[MODBUS_TCP_MAX_ADU_LENGTH];
                int n;
                if (!FD_ISSET(clients[i], &rd))
                    continue;
                modbus_set_socket(ctx, clients[i]);
                n = modbus_receive(ctx, req);
                if (n > 0 && answer(ctx, req, n, modbus_get_header_length(ctx), clients[i]) == 0)
                    continue;
                if (n == 0)
                    continue;
                close(clients[i]);
                clients[i--] = clients[--n_clients];
            }
        }
    }

    for (int i = 0; i < n_clients; i++)
        close(clients[i]);
    for (int i = 0; i < n_ctls; i++)
        close(ctls[i].fd);
    if (listen_fd >= 0)
        close(listen_fd);
    close(ctl_fd);
    if (st.rtu)
        modbus_close(ctx);
    modbus_free(ctx);
    for (int u = 0; u < MAX_UNITS; u++)
        if (st.units[u])
            modbus_mapping_free(st.units[u]);
    free(st.log);
    return 0;
}
