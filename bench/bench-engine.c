/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * bench-engine: how close the polling engine comes to the Modbus round trip itself, and
 * how fast the decode -> report -> ring path is.
 *
 *   bench-engine PORT [SECONDS [RTU_PORT]]
 *       PORT: a fake-modbus --tcp slave on 127.0.0.1; RTU_PORT: a fake-modbus --rtu-tcp one
 *
 * 1. raw: a plain libmodbus client reads back to back on one connection (the ceiling).
 * 2. engine: one real bus thread (src/core/bus.c) with devices whose plans need more
 *    requests than their poll period allows, so it polls flat out; a consumer thread
 *    drains the ring as the uplink would. Requests/s and registers/s are compared with the
 *    raw rate, for 1-register and 125-register reads.
 * 3. decode + report + ring, on one core: samples/s.
 * 4. with RTU_PORT: the engine over modbus-rtu-tcp (RTU frames with CRC on TCP, our own
 *    framing and reply matching, a flush before each request) against the same engine
 *    over Modbus TCP (libmodbus).
 * Each figure is the median of RUNS runs.
 */
#include "config.h"

#include <errno.h>
#include <modbus.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "config/config.h"
#include "core/bus.h"
#include "core/decode.h"
#include "core/device.h"
#include "core/keytab.h"
#include "core/report.h"
#include "core/ring.h"
#include "util/log.h"
#include "util/time-util.h"

#define RUNS 3

static int port, rtu_port;
static double seconds = 2.0;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return v[n / 2];
}

/* ---- raw libmodbus ---- */

static double raw_rate(int count)
{
    modbus_t *ctx = modbus_new_tcp("127.0.0.1", port);
    uint16_t regs[125];
    uint64_t end, n = 0;
    uint64_t start;

    modbus_set_slave(ctx, 1);
    if (modbus_connect(ctx) < 0) {
        fprintf(stderr, "bench-engine: cannot connect to 127.0.0.1:%d: %s\n", port,
                modbus_strerror(errno));
        exit(1);
    }
    start = now_us();
    end = start + (uint64_t)(seconds * 1e6);
    while (now_us() < end) {
        if (modbus_read_registers(ctx, 0, count, regs) != count) {
            fprintf(stderr, "bench-engine: read failed: %s\n", modbus_strerror(errno));
            exit(1);
        }
        n++;
    }
    double r = (double)n * 1e6 / (double)(now_us() - start);
    modbus_close(ctx);
    modbus_free(ctx);
    return r;
}

/* ---- the engine ---- */

struct consumer {
    struct ring *ring;
    int efd;
    _Atomic bool stop;
    uint64_t samples;
};

static void *consume(void *arg)
{
    struct consumer *c = arg;
    struct sample buf[512];

    while (!atomic_load(&c->stop)) {
        struct pollfd p = {.fd = c->efd, .events = POLLIN};
        eventfd_t v;
        size_t n;
        if (poll(&p, 1, 100) > 0)
            eventfd_read(c->efd, &v);
        while ((n = ring_pop(c->ring, buf, 512)) > 0)
            c->samples += n;
    }
    return NULL;
}

/* A bus with 8 devices; each device's plan is `blocks` requests of `count` registers, more
 * than fits in its 10 ms period, so the bus thread never idles. */
static double engine_rate(enum driver_kind driver, int tcp_port, int count, int blocks,
                          double *ret_samples_per_s)
{
    enum { DEVICES = 8 };
    struct bus_config bc = {.name = (char *)"bench", .driver = driver,
                            .host = (char *)"127.0.0.1", .tcp_port = tcp_port, .timeout_ms = 1000,
                            .retries = 0};
    struct device_config dc[DEVICES];
    struct tag_config *tags[DEVICES];
    struct device dev[DEVICES];
    struct device *devp[DEVICES];
    struct consumer cons = {0};
    struct bus *bus;
    pthread_t t;
    uint64_t r0, r1, t0, t1;

    memset(dc, 0, sizeof(dc));
    memset(dev, 0, sizeof(dev));
    for (int d = 0; d < DEVICES; d++) {
        tags[d] = calloc((size_t)blocks, sizeof(struct tag_config));
        for (int b = 0; b < blocks; b++) {
            struct tag_config *tg = &tags[d][b];
            char *key = malloc(16);
            snprintf(key, 16, "k%d", b);
            /* One tag per block: a string of `count` registers, far enough apart never to
             * be merged. */
            *tg = (struct tag_config){.key = key, .role = ROLE_TELEMETRY, .table = TABLE_HOLDING,
                                      .address = b * 200, .type = count == 1 ? VT_UINT16 : VT_STRING,
                                      .count = count, .scale = 1.0, .report = REPORT_ALWAYS};
        }
        dc[d] = (struct device_config){.name = (char *)"dev", .index = (size_t)d, .bus = &bc,
                                       .unit_id = 1, .poll_ms = 10,
                                       .telemetry = {.v = tags[d], .n = (size_t)blocks}};
        dev[d].cfg = &dc[d];
        dev[d].keys = keytab_new(KEYTAB_MAX);
        devp[d] = &dev[d];
    }
    bc.devices = dc;
    bc.n_devices = DEVICES;

    cons.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    bus = bus_new(&bc, devp, DEVICES, cons.efd);
    cons.ring = bus_ring(bus);
    pthread_create(&t, NULL, consume, &cons);
    bus_start(bus);
    sleep_ms(300); /* connected, steady */
    r0 = bus_requests(bus);
    t0 = now_us();
    uint64_t s0 = cons.samples;
    sleep_ms((uint64_t)(seconds * 1000));
    r1 = bus_requests(bus);
    t1 = now_us();
    uint64_t s1 = cons.samples;
    bus_stop(bus);
    atomic_store(&cons.stop, true);
    pthread_join(t, NULL);
    bus_free(bus);
    close(cons.efd);
    for (int d = 0; d < DEVICES; d++) {
        keytab_free(dev[d].keys);
        for (int b = 0; b < blocks; b++)
            free(tags[d][b].key);
        free(tags[d]);
    }
    *ret_samples_per_s = (double)(s1 - s0) * 1e6 / (double)(t1 - t0);
    return (double)(r1 - r0) * 1e6 / (double)(t1 - t0);
}

/* ---- decode + report + ring, one thread ---- */

static double pipeline_rate(void)
{
    struct tag_config tg[4] = {
        {.type = VT_INT16, .table = TABLE_HOLDING, .count = 1, .scale = 0.1},
        {.type = VT_UINT32, .table = TABLE_HOLDING, .count = 2, .scale = 1.0},
        {.type = VT_FLOAT32, .table = TABLE_HOLDING, .count = 2, .scale = 1.0, .word_order = ORDER_LITTLE},
        {.type = VT_BIT, .table = TABLE_HOLDING, .count = 1, .scale = 1.0, .bit = 3},
    };
    struct report_policy pol[4] = {{.mode = REPORT_ALWAYS}, {.mode = REPORT_ALWAYS},
                                   {.mode = REPORT_CHANGE, .deadband = 0.5},
                                   {.mode = REPORT_CHANGE}};
    struct report_state st[4] = {{{0}}};
    struct ring *r = ring_new(4096);
    struct sample out[256];
    uint16_t regs[2] = {0x41ac, 0x0000};
    uint64_t n = 0, start = now_us(), end = start + (uint64_t)(seconds * 1e6);

    while (now_us() < end) {
        for (int batch = 0; batch < 1000; batch++) {
            for (int i = 0; i < 4; i++) {
                struct value v;
                struct sample s = {.ts_ms = (int64_t)n, .device = 1, .key = (uint16_t)i};
                regs[1] = (uint16_t)n;
                if (decode_registers(&tg[i], regs, &v) == 0 &&
                    report_decide(&pol[i], &st[i], &v, n)) {
                    sample_set_value(&s, &v);
                    ring_push(r, &s);
                }
                value_clear(&v);
                n++;
            }
            ring_pop(r, out, 256);
        }
    }
    double rate = (double)n * 1e6 / (double)(now_us() - start);
    for (int i = 0; i < 4; i++)
        report_state_clear(&st[i]);
    ring_free(r);
    return rate;
}

int main(int argc, char **argv)
{
    double raw1[RUNS], raw125[RUNS], eng1[RUNS], eng125[RUNS], smp1[RUNS], smp125[RUNS], pipe[RUNS];
    double rtu1[RUNS], rtu125[RUNS], unused;

    if (argc < 2) {
        fprintf(stderr, "usage: bench-engine PORT [SECONDS [RTU_PORT]]\n");
        return 64;
    }
    port = atoi(argv[1]);
    if (argc > 2)
        seconds = atof(argv[2]);
    if (argc > 3)
        rtu_port = atoi(argv[3]);
    log_max_level = LOG_ERR; /* the overruns are the point here */

    for (int i = 0; i < RUNS; i++) {
        raw1[i] = raw_rate(1);
        eng1[i] = engine_rate(DRIVER_MODBUS_TCP, port, 1, 20, &smp1[i]);
        raw125[i] = raw_rate(125);
        eng125[i] = engine_rate(DRIVER_MODBUS_TCP, port, 125, 40, &smp125[i]);
        pipe[i] = pipeline_rate();
        if (rtu_port) {
            rtu1[i] = engine_rate(DRIVER_MODBUS_RTU_TCP, rtu_port, 1, 20, &unused);
            rtu125[i] = engine_rate(DRIVER_MODBUS_RTU_TCP, rtu_port, 125, 40, &unused);
        }
    }
    double r1 = median(raw1, RUNS), e1 = median(eng1, RUNS);
    double r125 = median(raw125, RUNS), e125 = median(eng125, RUNS);
    printf("bench-engine: median of %d runs of %.1f s, Modbus TCP on 127.0.0.1\n", RUNS, seconds);
    printf("  1-register reads:   raw libmodbus %8.0f req/s   engine %8.0f req/s (%5.1f%%)  %9.0f samples/s\n",
           r1, e1, 100.0 * e1 / r1, median(smp1, RUNS));
    printf("  125-register reads: raw libmodbus %8.0f req/s   engine %8.0f req/s (%5.1f%%)  %9.0f registers/s\n",
           r125, e125, 100.0 * e125 / r125, e125 * 125);
    printf("  decode + report + ring, one thread: %.2f M samples/s\n", median(pipe, RUNS) / 1e6);
    if (rtu_port) {
        double t1 = median(rtu1, RUNS), t125 = median(rtu125, RUNS);
        printf("  engine over RTU over TCP vs Modbus TCP:\n");
        printf("    1-register reads:   modbus-rtu-tcp %8.0f req/s   modbus-tcp %8.0f req/s (%5.1f%%)\n",
               t1, e1, 100.0 * t1 / e1);
        printf("    125-register reads: modbus-rtu-tcp %8.0f req/s   modbus-tcp %8.0f req/s (%5.1f%%)\n",
               t125, e125, 100.0 * t125 / e125);
    }
    return 0;
}
