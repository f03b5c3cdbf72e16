/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the pure parts of the metrics endpoint: "address:port" parsing, the
 * latency histogram, and the Prometheus text format writer (escaping, histogram lines).
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/histogram.h"
#include "metrics/prom.h"
#include "util/hostport.h"

static void test_hostport(void **state)
{
    struct sockaddr_storage ss;
    socklen_t len;
    const char *why = NULL;
    char buf[64];

    assert_int_equal(hostport_parse("127.0.0.1:9105", &ss, &len, &why), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(len, sizeof(struct sockaddr_in));
    assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 9105);
    assert_string_equal(inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, buf, sizeof(buf)),
                        "127.0.0.1");

    assert_int_equal(hostport_parse("[::1]:1", &ss, &len, &why), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), 1);
    assert_int_equal(hostport_parse("[::]:65535", &ss, &len, &why), 0);
    assert_int_equal(hostport_parse("0.0.0.0:9105", &ss, &len, &why), 0);

    static const char *const bad[] = {
        "", ":9105", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
        "127.0.0.1:91x", "127.0.0.1:-1", "localhost:9105", "::1:9105", "[::1]", "[::1]9105",
        "[127.0.0.1]:9105", "[]:9105", "1.2.3:80", "127.0.0.1: 80", NULL};
    for (size_t i = 0; bad[i]; i++) {
        why = NULL;
        assert_int_equal(hostport_parse(bad[i], &ss, &len, &why), -EINVAL);
        assert_non_null(why);
    }
}

static char *render(void (*fn)(FILE *f))
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);

    fn(f);
    fclose(f);
    return text;
}

static void escaped(FILE *f)
{
    prom_family(f, "x_total", "counter", "back\\slash and\nnewline \"quoted\"");
    prom_u64(f, "x_total", (const char *const[]){"a", "q\"b\\c\nd", "e", "", NULL}, 42);
    prom_u64(f, "x_total", NULL, 18446744073709551615ull);
    prom_double(f, "y", NULL, 0.25);
    prom_double(f, "y", (const char *const[]){NULL}, 1.0 / 0.0);
}

static void test_prom_escaping(void **state)
{
    char *t = render(escaped);

    assert_string_equal(t, "# HELP x_total back\\\\slash and\\nnewline \"quoted\"\n"
                           "# TYPE x_total counter\n"
                           "x_total{a=\"q\\\"b\\\\c\\nd\",e=\"\"} 42\n"
                           "x_total 18446744073709551615\n"
                           "y 0.25\n"
                           "y +Inf\n");
    free(t);
}

static struct histogram hist;

static void histogram_lines(FILE *f)
{
    struct histogram_snapshot s;

    histogram_read(&hist, &s);
    prom_histogram(f, "d_seconds", (const char *const[]){"bus", "b", NULL}, &s);
}

static void test_histogram(void **state)
{
    char *t;

    memset(&hist, 0, sizeof(hist));
    histogram_observe(&hist, 0);
    histogram_observe(&hist, 1000);     /* on a bound: counted in it (le) */
    histogram_observe(&hist, 1001);
    histogram_observe(&hist, 20000000); /* beyond the last bound */
    t = render(histogram_lines);
    assert_non_null(strstr(t, "d_seconds_bucket{bus=\"b\",le=\"0.001\"} 2\n"
                              "d_seconds_bucket{bus=\"b\",le=\"0.005\"} 3\n"));
    assert_non_null(strstr(t, "d_seconds_bucket{bus=\"b\",le=\"10\"} 3\n"
                              "d_seconds_bucket{bus=\"b\",le=\"+Inf\"} 4\n"
                              "d_seconds_sum{bus=\"b\"} 20.002001\n"
                              "d_seconds_count{bus=\"b\"} 4\n"));
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostport),
        cmocka_unit_test(test_prom_escaping),
        cmocka_unit_test(test_histogram),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
