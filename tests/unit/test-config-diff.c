/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the reload difference (config/diff.h): which buses and devices a new
 * file leaves alone, restarts, removes and adds.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/config.h"
#include "config/diff.h"
#include "load-text.h"

static struct config *load(const char *text)
{
    struct diag *d;
    struct config *c = load_text(text, &d);

    if (!c)
        fprintf(stderr, "%s", diag_text(d));
    diag_free(d);
    assert_non_null(c);
    return c;
}

/* A file with two buses: rtu "a" (devices m1, m2) and tcp "b" (device p1). %s are
 * substituted in order: edge host, baud of "a", m2's register, a device added to "b",
 * the log level. */
static struct config *make(const char *edge, int baud, int m2_addr, const char *extra_dev,
                           const char *level)
{
    char text[4096];

    snprintf(text, sizeof(text),
             "edge = { host = \"%s\"; };\n"
             "log = { level = \"%s\"; };\n"
             "buses = (\n"
             " { name = \"a\"; driver = \"modbus-rtu\"; port = \"/dev/ttyS9\"; baud = %d;\n"
             "   devices = (\n"
             "    { name = \"m1\"; unit_id = 1; token = \"T1\";\n"
             "      telemetry = ( { key = \"v\"; table = \"input\"; address = 0; type = \"float32\"; } ); },\n"
             "    { name = \"m2\"; unit_id = 2; token = \"T2\";\n"
             "      telemetry = ( { key = \"v\"; table = \"input\"; address = %d; type = \"float32\"; } ); }\n"
             "   ); },\n"
             " { name = \"b\"; driver = \"modbus-tcp\"; host = \"127.0.0.1\"; port = 1502;\n"
             "   devices = (\n"
             "    { name = \"p1\"; unit_id = 1; token = \"P1\";\n"
             "      telemetry = ( { key = \"c\"; table = \"holding\"; address = 0; type = \"uint16\"; } ); }\n"
             "    %s\n"
             "   ); }\n"
             ");\n",
             edge, level, baud, m2_addr, extra_dev);
    return load(text);
}

static const struct bus_diff *bus(const struct config_diff *d, const char *name)
{
    for (size_t i = 0; i < d->n_buses; i++) {
        const struct bus_config *b = d->buses[i].new ? d->buses[i].new : d->buses[i].old;
        if (strcmp(b->name, name) == 0)
            return &d->buses[i];
    }
    fail_msg("no bus %s in the difference", name);
    return NULL;
}

static const struct device_diff *dev(const struct config_diff *d, const char *name)
{
    for (size_t i = 0; i < d->n_devices; i++) {
        const struct device_config *c = d->devices[i].new ? d->devices[i].new : d->devices[i].old;
        if (strcmp(c->name, name) == 0)
            return &d->devices[i];
    }
    fail_msg("no device %s in the difference", name);
    return NULL;
}

#define P1B ""
#define P2 ", { name = \"p2\"; unit_id = 2; token = \"P2\"; telemetry = ( { key = \"c\"; " \
           "table = \"holding\"; address = 0; type = \"uint16\"; } ); }"

static void test_same_file_changes_nothing(void **state)
{
    struct config *o = make("edge", 9600, 0, P1B, "info"), *n = make("edge", 9600, 0, P1B, "debug");
    struct config_diff d;

    assert_int_equal(config_diff(o, n, &d), 0);
    assert_false(d.restart_all);
    assert_int_equal(d.n_buses, 2);
    assert_int_equal(d.n_devices, 3);
    for (size_t i = 0; i < d.n_buses; i++)
        assert_int_equal(d.buses[i].change, CHANGE_NONE);
    for (size_t i = 0; i < d.n_devices; i++)
        assert_int_equal(d.devices[i].change, CHANGE_NONE);
    config_diff_free(&d);
    config_free(o);
    config_free(n);
}

static void test_transport_change_restarts_the_bus_not_the_sessions(void **state)
{
    struct config *o = make("edge", 9600, 0, P1B, "info"), *n = make("edge", 19200, 0, P1B, "info");
    struct config_diff d;

    config_diff(o, n, &d);
    assert_int_equal(bus(&d, "a")->change, CHANGE_RESTART);
    assert_false(bus(&d, "a")->same_transport);
    assert_int_equal(bus(&d, "b")->change, CHANGE_NONE);
    assert_int_equal(dev(&d, "m1")->change, CHANGE_NONE);
    assert_int_equal(dev(&d, "m2")->change, CHANGE_NONE);
    config_diff_free(&d);
    config_free(o);
    config_free(n);
}

static void test_device_change_restarts_that_device(void **state)
{
    struct config *o = make("edge", 9600, 0, P1B, "info"), *n = make("edge", 9600, 4, P1B, "info");
    struct config_diff d;

    config_diff(o, n, &d);
    assert_int_equal(dev(&d, "m2")->change, CHANGE_RESTART);
    assert_int_equal(dev(&d, "m1")->change, CHANGE_NONE);
    assert_int_equal(dev(&d, "p1")->change, CHANGE_NONE);
    /* The bus keeps its port: only what it polls changed. */
    assert_int_equal(bus(&d, "a")->change, CHANGE_RESTART);
    assert_true(bus(&d, "a")->same_transport);
    assert_int_equal(bus(&d, "b")->change, CHANGE_NONE);
    config_diff_free(&d);
    config_free(o);
    config_free(n);
}

static void test_added_and_removed(void **state)
{
    struct config *o = make("edge", 9600, 0, P1B, "info"), *n = make("edge", 9600, 0, P2, "info");
    struct config_diff d;

    config_diff(o, n, &d);
    assert_int_equal(dev(&d, "p2")->change, CHANGE_ADD);
    assert_null(dev(&d, "p2")->old);
    assert_int_equal(bus(&d, "b")->change, CHANGE_RESTART);
    assert_true(bus(&d, "b")->same_transport);
    config_diff_free(&d);

    config_diff(n, o, &d);
    assert_int_equal(dev(&d, "p2")->change, CHANGE_REMOVE);
    assert_null(dev(&d, "p2")->new);
    assert_int_equal(d.n_devices, 4);
    assert_int_equal(dev(&d, "p1")->change, CHANGE_NONE);
    config_diff_free(&d);
    config_free(o);
    config_free(n);
}

static void test_removed_bus(void **state)
{
    struct config *o = make("edge", 9600, 0, P1B, "info");
    struct config *n = load("edge = { host = \"edge\"; };\nbuses = ( { name = \"b\"; driver = "
                                 "\"modbus-tcp\"; host = \"127.0.0.1\"; port = 1502; devices = ( "
                                 "{ name = \"p1\"; unit_id = 1; token = \"P1\"; telemetry = ( { "
                                 "key = \"c\"; table = \"holding\"; address = 0; type = "
                                 "\"uint16\"; } ); } ); } );\n");
    struct config_diff d;

    config_diff(o, n, &d);
    assert_int_equal(bus(&d, "a")->change, CHANGE_REMOVE);
    assert_int_equal(dev(&d, "m1")->change, CHANGE_REMOVE);
    assert_int_equal(dev(&d, "m2")->change, CHANGE_REMOVE);
    /* Same settings at other lines of the file: nothing to restart. */
    assert_int_equal(bus(&d, "b")->change, CHANGE_NONE);
    assert_int_equal(dev(&d, "p1")->change, CHANGE_NONE);
    config_diff_free(&d);
    config_free(o);
    config_free(n);
}

static void test_edge_change_restarts_everything(void **state)
{
    struct config *o = make("edge", 9600, 0, P1B, "info"), *n = make("edge2", 9600, 0, P1B, "info");
    struct config_diff d;

    config_diff(o, n, &d);
    assert_true(d.restart_all);
    for (size_t i = 0; i < d.n_buses; i++)
        assert_int_equal(d.buses[i].change, CHANGE_RESTART);
    for (size_t i = 0; i < d.n_devices; i++)
        assert_int_equal(d.devices[i].change, CHANGE_RESTART);
    config_diff_free(&d);
    config_free(o);
    config_free(n);
}

/* Gateway mode: the gateway's credentials are the session of every device; a device's
 * type is how it is announced. */
static void test_gateway_changes(void **state)
{
    static const char fmt[] =
        "edge = { host = \"h\"; %s };\n"
        "buses = ( { name = \"b\"; driver = \"modbus-tcp\"; host = \"127.0.0.1\"; devices = (\n"
        "  { name = \"m1\"; unit_id = 1; type = \"%s\";\n"
        "    telemetry = ( { key = \"k\"; table = \"holding\"; address = 0; type = \"uint16\"; } ); }\n"
        "); } );\n";
    char a[1024], b[1024];
    struct config *o, *n;
    struct config_diff d;

    snprintf(a, sizeof(a), fmt, "gateway = { token = \"G\"; };", "meter");
    snprintf(b, sizeof(b), fmt, "gateway = { token = \"G2\"; };", "meter");
    o = load(a);
    n = load(b);
    config_diff(o, n, &d);
    assert_true(d.restart_all);
    config_diff_free(&d);
    config_free(n);

    snprintf(b, sizeof(b), fmt, "gateway = { token = \"G\"; };", "meter2");
    n = load(b);
    config_diff(o, n, &d);
    assert_false(d.restart_all);
    assert_int_equal(d.n_devices, 1);
    assert_int_equal(d.devices[0].change, CHANGE_RESTART);
    config_diff_free(&d);
    config_free(n);

    n = load(a);
    config_diff(o, n, &d);
    assert_false(d.restart_all);
    assert_int_equal(d.devices[0].change, CHANGE_NONE);
    config_diff_free(&d);
    config_free(n);
    config_free(o);
    (void)state;
}

/* One tcp bus "b" with one device; %s: the bus's connection, then the device's extra
 * settings, then its tag's. */
static struct config *make_one(const char *link, const char *device, const char *tag)
{
    char text[2048];

    snprintf(text, sizeof(text),
             "edge = { host = \"edge\"; };\n"
             "buses = ( { name = \"b\"; driver = \"modbus-tcp\"; %s\n"
             "  devices = ( { name = \"p1\"; unit_id = 1; token = \"P1\"; %s\n"
             "    telemetry = ( { key = \"c\"; table = \"holding\"; type = \"uint16\"; %s } ); } ); } );\n",
             link, device, tag);
    return load(text);
}

#define A0 "address = 0; "

/* Settings a reload must not take for "unchanged" (it would keep running without them). */
static void test_every_setting_counts(void **state)
{
    static const struct {
        const char *link[2], *device[2], *tag[2];
        bool device_changes, same_transport;
    } cases[] = {
        {{"host = \"h\";", "host = \"h\";"}, {"", "identify = true;"}, {A0, A0}, true, true},
        {{"host = \"h\";", "host = \"h\";"}, {"", "address_base = 1;"}, {"address = 1;", "address = 2;"}, true, true},
        {{"host = \"h\";", "host = \"h\";"}, {"", ""}, {A0, A0 "poll_ms = 5000;"}, true, true},
        {{"host = \"h\";", "host = \"h\";"}, {"", ""}, {A0, A0 "invalid = [ 65535 ];"}, true, true},
        {{"listen = { port = 5020; };", "listen = { port = 5021; };"}, {"", ""}, {A0, A0}, false,
         false},
        {{"host = \"h\";", "listen = { port = 5020; };"}, {"", ""}, {A0, A0}, false, false},
        /* Applied to the link the new bus takes over. */
        {{"host = \"h\";", "host = \"h\"; timeout_ms = 700;"}, {"", ""}, {A0, A0}, false, true},
        {{"host = \"h\";", "host = \"h\"; retries = 3;"}, {"", ""}, {A0, A0}, false, true},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct config *o = make_one(cases[i].link[0], cases[i].device[0], cases[i].tag[0]);
        struct config *n = make_one(cases[i].link[1], cases[i].device[1], cases[i].tag[1]);
        struct config_diff d;

        config_diff(o, n, &d);
        assert_int_equal(bus(&d, "b")->change, CHANGE_RESTART);
        assert_int_equal(bus(&d, "b")->same_transport, cases[i].same_transport);
        assert_int_equal(dev(&d, "p1")->change,
                         cases[i].device_changes ? CHANGE_RESTART : CHANGE_NONE);
        config_diff_free(&d);
        config_free(o);
        config_free(n);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gateway_changes),
        cmocka_unit_test(test_same_file_changes_nothing),
        cmocka_unit_test(test_transport_change_restarts_the_bus_not_the_sessions),
        cmocka_unit_test(test_device_change_restarts_that_device),
        cmocka_unit_test(test_added_and_removed),
        cmocka_unit_test(test_removed_bus),
        cmocka_unit_test(test_edge_change_restarts_everything),
        cmocka_unit_test(test_every_setting_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
