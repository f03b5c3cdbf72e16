/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Unit tests of the configuration loader: the contract example parsed into exactly the
 * documented values and defaults, template resolution, number forms. (Error messages are
 * tested end to end by tests/integration/test_config_check.py.)
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/config.h"
#include "load-text.h"

static char *example_path(void)
{
    const char *src = getenv("TBGW_SRCDIR");
    static char path[4096];

    snprintf(path, sizeof(path), "%s/etc/tbgw.conf.example", src ? src : "../..");
    return path;
}


static const struct tag_config *tag(const struct tag_list *l, const char *key)
{
    const struct tag_config *t = device_find_tag(l, key);
    assert_non_null(t);
    return t;
}

static void test_contract_example(void **state)
{
    struct diag *d = diag_new();
    struct config *c;
    const struct device_config *dev;
    const struct tag_config *t;
    const struct bus_config *b;

    unsetenv("STATE_DIRECTORY");
    unsetenv("RUNTIME_DIRECTORY");
    c = config_load(example_path(), d);
    if (!c)
        fail_msg("%s", diag_text(d));
    assert_int_equal(diag_errors(d), 0);

    assert_string_equal(c->edge.host, "127.0.0.1");
    assert_int_equal(c->edge.port, 1883);
    assert_int_equal(c->edge.keepalive_s, 60);
    assert_int_equal(c->edge.qos, 1);
    assert_false(c->edge.tls);
    assert_string_equal(c->storage.path, "/var/lib/tbgw");
    assert_int_equal(c->storage.max_size_mb, 256);
    assert_int_equal(c->storage.commit_interval_ms, 1000);
    assert_int_equal(c->log_level, LOG_INFO);
    assert_int_equal(c->health_interval_s, 60);
    assert_string_equal(c->control_socket, "/run/tbgw/control.sock");

    assert_null(c->metrics_listen); /* commented out in the example */

    assert_int_equal(c->n_buses, 5);
    assert_int_equal(c->n_devices, 6);

    b = &c->buses[0];
    assert_string_equal(b->name, "rs485");
    assert_int_equal(b->driver, DRIVER_MODBUS_RTU);
    assert_string_equal(b->device, "/dev/ttyUSB0");
    assert_int_equal(b->baud, 9600);
    assert_int_equal(b->parity, 'N');
    assert_int_equal(b->data_bits, 8);
    assert_int_equal(b->stop_bits, 1);
    assert_false(b->rs485);
    assert_int_equal(b->timeout_ms, 500);
    assert_int_equal(b->inter_frame_ms, 0);
    assert_int_equal(b->retries, 1);

    dev = config_find_device(c, "boiler-1");
    assert_non_null(dev);
    assert_int_equal(dev->index, 0);
    assert_ptr_equal(dev->bus, b);
    assert_int_equal(dev->unit_id, 1);
    assert_int_equal(dev->poll_ms, 1000);
    assert_int_equal(dev->cred.kind, CRED_TOKEN);
    assert_string_equal(dev->cred.token, "BOILER1_TOKEN");
    assert_int_equal(dev->byte_order, ORDER_BIG);
    assert_int_equal(dev->word_order, ORDER_BIG);
    assert_int_equal(dev->report, REPORT_ALWAYS);
    assert_int_equal(dev->telemetry.n, 11);
    assert_int_equal(dev->attributes.n, 2);
    assert_int_equal(dev->writes.n, 2);
    assert_int_equal(dev->rpc.n, 2);
    assert_false(dev->allow_raw_rpc);
    assert_int_equal(dev->address_base, 0);
    assert_false(dev->write_multiple);
    assert_false(dev->mask_write);
    assert_false(dev->identify);

    t = tag(&dev->telemetry, "temperature");
    assert_int_equal(t->table, TABLE_INPUT);
    assert_int_equal(t->address, 0);
    assert_int_equal(t->type, VT_INT16);
    assert_int_equal(t->count, 1);
    assert_true(t->scale == 0.1);
    assert_true(t->offset == 0.0);
    t = tag(&dev->telemetry, "pressure");
    assert_true(t->scale == 0.01);
    assert_true(t->offset == -1.0);
    t = tag(&dev->telemetry, "flow");
    assert_int_equal(t->word_order, ORDER_LITTLE);
    assert_int_equal(t->byte_order, ORDER_BIG);
    assert_int_equal(t->report, REPORT_CHANGE);
    assert_true(t->deadband == 0.5);
    assert_int_equal(t->count, 2);
    assert_int_equal(tag(&dev->telemetry, "runtime")->count, 4);
    assert_int_equal(tag(&dev->telemetry, "power")->type, VT_FLOAT64);
    assert_int_equal(tag(&dev->telemetry, "burner_on")->table, TABLE_COIL);
    assert_int_equal(tag(&dev->telemetry, "alarm_low")->table, TABLE_DISCRETE);
    t = tag(&dev->telemetry, "mode_bit2");
    assert_int_equal(t->type, VT_BIT);
    assert_int_equal(t->bit, 2);
    t = tag(&dev->telemetry, "outdoor_temp");
    assert_int_equal(t->poll_ms, 10000);
    assert_int_equal(t->n_invalid, 2);
    assert_true(t->invalid[0] == -32768 && t->invalid[1] == 32767);
    assert_int_equal(tag(&dev->telemetry, "line_current")->poll_ms, 200);
    assert_int_equal(tag(&dev->telemetry, "temperature")->poll_ms, 1000); /* the device's */
    t = tag(&dev->attributes, "serial");
    assert_int_equal(t->type, VT_STRING);
    assert_int_equal(t->count, 8);
    assert_int_equal(t->role, ROLE_ATTRIBUTE);
    t = tag(&dev->writes, "setpoint");
    assert_true(t->scale == 0.1);
    assert_int_equal(t->role, ROLE_WRITE);
    t = tag(&dev->rpc, "setValve");
    assert_int_equal(t->access, ACCESS_WRITE);
    assert_int_equal(t->table, TABLE_COIL);
    assert_int_equal(tag(&dev->rpc, "getSetpoint")->access, ACCESS_READ);
    assert_true(dev->ota.enabled);
    assert_string_equal(dev->ota.command, "/usr/local/lib/tbgw/flash-boiler.sh");
    assert_true(dev->ota.exclusive_bus);
    assert_int_equal(dev->ota.timeout_s, 900);

    /* meter-7: template energy-meter + its own frequency. */
    dev = config_find_device(c, "meter-7");
    assert_non_null(dev);
    assert_int_equal(dev->unit_id, 7);
    assert_int_equal(dev->poll_ms, 5000);
    assert_int_equal(dev->word_order, ORDER_LITTLE);
    assert_string_equal(dev->template_name, "energy-meter");
    assert_int_equal(dev->cred.kind, CRED_MQTT);
    assert_string_equal(dev->cred.client_id, "meter-7");
    assert_string_equal(dev->cred.username, "meter7");
    assert_string_equal(dev->cred.password, "s3cret");
    assert_int_equal(dev->telemetry.n, 4);
    assert_string_equal(dev->telemetry.v[0].key, "voltage");
    assert_string_equal(dev->telemetry.v[3].key, "frequency");
    assert_int_equal(tag(&dev->telemetry, "voltage")->word_order, ORDER_LITTLE);
    assert_true(tag(&dev->telemetry, "energy")->scale == 0.01);
    assert_false(dev->ota.enabled);

    b = &c->buses[1];
    assert_int_equal(b->driver, DRIVER_MODBUS_TCP);
    assert_string_equal(b->host, "192.168.10.20");
    assert_int_equal(b->tcp_port, 502);
    assert_int_equal(b->timeout_ms, 1000);
    dev = config_find_device(c, "press-line");
    assert_int_equal(dev->poll_ms, 100);
    assert_int_equal(tag(&dev->telemetry, "count")->type, VT_UINT32);

    b = &c->buses[4];
    assert_int_equal(b->driver, DRIVER_SERIAL_LINE);
    dev = config_find_device(c, "weather-station");
    assert_int_equal(dev->format, FORMAT_KV);
    assert_null(dev->send);
    assert_string_equal(dev->cred.token, "WEATHER_TOKEN");

    b = &c->buses[2];
    assert_string_equal(b->name, "field-server");
    assert_int_equal(b->driver, DRIVER_MODBUS_RTU_TCP);
    assert_string_equal(b->host, "192.168.10.30");
    assert_int_equal(b->tcp_port, 4001);
    assert_int_equal(b->timeout_ms, 1000);
    assert_false(b->listen);
    dev = config_find_device(c, "tank-3");
    assert_int_equal(dev->unit_id, 3);

    b = &c->buses[3];
    assert_string_equal(b->name, "legacy-line");
    assert_int_equal(b->driver, DRIVER_MODBUS_ASCII);
    assert_int_equal(b->parity, 'E');
    assert_int_equal(b->data_bits, 7);
    dev = config_find_device(c, "old-meter");
    assert_int_equal(tag(&dev->telemetry, "kwh")->type, VT_UINT32);

    assert_true(config_has_secrets(c));
    config_free(c);
    diag_free(d);
}

static void test_template_override(void **state)
{
    struct diag *d;
    struct config *c = load_text(
        "edge = { host = \"h\"; tls = { ca_file = \"/dev/null\"; }; };\n"
        "templates = ( { name = \"t\"; poll_ms = 250; byte_order = \"little\"; report = \"change\";\n"
        "  telemetry = ( { key = \"a\"; table = \"holding\"; address = 0; type = \"int16\"; },\n"
        "                { key = \"b\"; table = \"holding\"; address = 1; type = \"int16\"; } );\n"
        "  writes = ( { key = \"w\"; table = \"coil\"; address = 0; type = \"bool\"; } ); } );\n"
        "buses = ( { name = \"x\"; driver = \"modbus-tcp\"; host = \"h\"; devices = (\n"
        "  { name = \"d\"; unit_id = 3; template = \"t\"; poll_ms = 2000.0; token = \"T\";\n"
        "    telemetry = ( { key = \"b\"; table = \"input\"; address = 9; type = \"uint16\"; },\n"
        "                  { key = \"c\"; table = \"input\"; address = 10; type = \"uint16\";\n"
        "                    byte_order = \"big\"; } ); } ); } );\n",
        &d);

    if (!c)
        fail_msg("%s", diag_text(d));
    assert_int_equal(c->edge.port, 8883); /* default with tls */
    const struct device_config *dev = c->devices[0];
    assert_int_equal(dev->poll_ms, 2000);
    assert_int_equal(dev->report, REPORT_CHANGE);
    assert_int_equal(dev->telemetry.n, 3);
    /* Template order kept; the device's "b" replaced the template's in place. */
    assert_string_equal(dev->telemetry.v[0].key, "a");
    assert_string_equal(dev->telemetry.v[1].key, "b");
    assert_int_equal(dev->telemetry.v[1].table, TABLE_INPUT);
    assert_int_equal(dev->telemetry.v[1].address, 9);
    assert_string_equal(dev->telemetry.v[2].key, "c");
    /* Device-level settings (from the template) flow into tags unless the tag overrides. */
    assert_int_equal(dev->telemetry.v[0].byte_order, ORDER_LITTLE);
    assert_int_equal(dev->telemetry.v[2].byte_order, ORDER_BIG);
    assert_int_equal(dev->telemetry.v[0].report, REPORT_CHANGE);
    assert_int_equal(dev->writes.n, 1);
    config_free(c);
    diag_free(d);
}

static void test_environment_defaults(void **state)
{
    struct config *c;

    setenv("STATE_DIRECTORY", "/var/lib/tbgw-x:/other", 1);
    setenv("RUNTIME_DIRECTORY", "/run/tbgw-x", 1);
    c = load_text("edge = { host = \"h\"; };\n", NULL);
    assert_non_null(c);
    assert_string_equal(c->storage.path, "/var/lib/tbgw-x");
    assert_string_equal(c->control_socket, "/run/tbgw-x/control.sock");
    config_free(c);
    unsetenv("STATE_DIRECTORY");
    unsetenv("RUNTIME_DIRECTORY");
}

static void test_numbers_as_floats(void **state)
{
    struct config *c = load_text(
        "edge = { host = \"h\"; port = 1883.0; keepalive_s = 10L; };\n"
        "buses = ( { name = \"x\"; driver = \"modbus-tcp\"; host = \"h\"; devices = (\n"
        "  { name = \"d\"; unit_id = 1.0; token = \"T\"; deadband = 1;\n"
        "    telemetry = ( { key = \"a\"; table = \"holding\"; address = 0x10; type = \"int16\";\n"
        "                    scale = 10; offset = 2; } ); } ); } );\n",
        NULL);

    assert_non_null(c);
    assert_int_equal(c->edge.port, 1883);
    assert_int_equal(c->edge.keepalive_s, 10);
    assert_int_equal(c->devices[0]->unit_id, 1);
    assert_true(c->devices[0]->deadband == 1.0);
    assert_int_equal(c->devices[0]->telemetry.v[0].address, 16);
    assert_true(c->devices[0]->telemetry.v[0].scale == 10.0);
    assert_true(c->devices[0]->telemetry.v[0].offset == 2.0);
    config_free(c);
}

static void test_errors_return_null(void **state)
{
    struct diag *d;
    struct config *c = load_text("edge = { host = \"h\"; qos = 3; };\n", &d);

    assert_null(c);
    assert_int_equal(diag_errors(d), 1);
    assert_non_null(strstr(diag_text(d), ":1: edge.qos: must be between 0 and 1 (got 3)\n"));
    diag_free(d);
}

/* A template's tags are applied to each device quietly; one whose key did not parse used to
 * reach strcmp() as NULL (tests/fuzz/corpus/config/regress-template-empty-key). */
static void test_template_tag_without_key(void **state)
{
    struct diag *d;
    struct config *c = load_text(
        "edge = { host = \"h\"; };\n"
        "templates = ( { name = \"m\"; telemetry = ( { key = \"\"; table = \"input\"; "
        "address = 0; type = \"uint16\"; } ); } );\n"
        "buses = ( { name = \"b\"; driver = \"modbus-tcp\"; host = \"p\"; devices = ( { name "
        "= \"d\"; unit_id = 1; token = \"t\"; template = \"m\"; telemetry = ( { key = \"x\"; "
        "table = \"input\"; address = 1; type = \"uint16\"; } ); } ); } );\n",
        &d);

    assert_null(c);
    assert_int_equal(diag_errors(d), 1);
    assert_non_null(strstr(diag_text(d), ":2: templates.[0].telemetry.[0].key: must not be empty "
                                         "(template 'm', used by 'd')\n"));
    diag_free(d);
}

/* The bus keeps state per key in arrays of KEYTAB_MAX: a device with more keys used to be
 * accepted, and corrupted the heap at start. */
static void test_too_many_keys(void **state)
{
    size_t size = 64 * 1100, o = 0;
    char *text = malloc(size);
    struct diag *d;
    struct config *c;

    o += (size_t)snprintf(text + o, size - o,
                          "edge = { host = \"h\"; };\nbuses = ( { name = \"b\"; driver = "
                          "\"modbus-tcp\"; host = \"p\"; devices = ( { name = \"d\"; "
                          "unit_id = 1; token = \"t\";\ntelemetry = (");
    for (int i = 0; i < 1025; i++)
        o += (size_t)snprintf(text + o, size - o,
                              "%s{ key = \"k%d\"; table = \"input\"; address = %d; type = "
                              "\"uint16\"; }\n", i ? "," : "", i, i);
    snprintf(text + o, size - o, "); } ); } );\n");
    c = load_text(text, &d);
    assert_null(c);
    assert_non_null(strstr(diag_text(d), "device 'd' has 1025 telemetry keys and attributes; "
                                         "at most 1024\n"));
    diag_free(d);
    free(text);
}

static const char *const MAPS_HEAD =
    "edge = { host = \"h\"; };\nbuses = ( { name = \"b\"; driver = \"modbus-tcp\"; "
    "host = \"p\"; devices = ( { name = \"d\"; unit_id = 1; token = \"t\";\n";

static struct config *load_device(const char *device, struct diag **d)
{
    char text[4096];

    snprintf(text, sizeof(text), "%s%s\n} ); } );\n", MAPS_HEAD, device);
    return load_text(text, d);
}

/* address_base = 1: every address becomes the wire address; the device's own poll_ms is
 * the default of each tag's. */
static void test_register_map_settings(void **state)
{
    struct diag *d;
    struct config *c = load_device(
        "poll_ms = 500; address_base = 1; write_multiple = true; mask_write = true; "
        "identify = true;\n"
        "telemetry = ( { key = \"a\"; table = \"input\"; address = 1; type = \"int16\";\n"
        "  invalid = [ -32768, 32767 ]; poll_ms = 100; },\n"
        "  { key = \"b\"; table = \"holding\"; address = 65535; type = \"uint16\"; },\n"
        "  { key = \"f\"; table = \"holding\"; address = 7; type = \"float32\"; "
        "invalid = [ 0.5, -1e9 ]; } );\n"
        "writes = ( { key = \"w\"; table = \"coil\"; address = 10; type = \"bool\"; } );\n"
        "rpc = ( { method = \"m\"; access = \"read\"; table = \"holding\"; address = 3; "
        "type = \"uint16\"; } );",
        &d);
    const struct device_config *dc;

    assert_non_null(c);
    assert_string_equal(diag_text(d), "");
    dc = config_find_device(c, "d");
    assert_int_equal(dc->address_base, 1);
    assert_true(dc->write_multiple && dc->mask_write && dc->identify);
    assert_int_equal(tag(&dc->telemetry, "a")->address, 0);
    assert_int_equal(tag(&dc->telemetry, "a")->poll_ms, 100);
    assert_int_equal(tag(&dc->telemetry, "a")->n_invalid, 2);
    assert_true(tag(&dc->telemetry, "a")->invalid[0] == -32768);
    assert_true(tag(&dc->telemetry, "a")->invalid[1] == 32767);
    assert_int_equal(tag(&dc->telemetry, "f")->n_invalid, 2);
    assert_true(tag(&dc->telemetry, "f")->invalid[0] == 0.5);
    assert_true(tag(&dc->telemetry, "f")->invalid[1] == -1e9);
    assert_int_equal(tag(&dc->telemetry, "b")->address, 65534);
    assert_int_equal(tag(&dc->telemetry, "b")->poll_ms, 500);
    assert_int_equal(tag(&dc->writes, "w")->address, 9);
    assert_int_equal(tag(&dc->rpc, "m")->address, 2);
    config_free(c);
    diag_free(d);

    c = load_device("telemetry = ( { key = \"a\"; table = \"input\"; address = 0; "
                    "type = \"int16\"; } );", &d);
    dc = config_find_device(c, "d");
    assert_int_equal(dc->address_base, 0);
    assert_false(dc->write_multiple || dc->mask_write || dc->identify);
    assert_int_equal(tag(&dc->telemetry, "a")->address, 0);
    assert_int_equal(tag(&dc->telemetry, "a")->poll_ms, 1000);
    assert_int_equal(tag(&dc->telemetry, "a")->n_invalid, 0);
    config_free(c);
    diag_free(d);
}

static void expect_problem(const char *device, bool fatal, const char *message)
{
    struct diag *d;
    struct config *c = load_device(device, &d);

    if (fatal)
        assert_null(c);
    else
        assert_non_null(c);
    if (!strstr(diag_text(d), message))
        fail_msg("expected '%s' in:\n%s", message, diag_text(d));
    config_free(c);
    diag_free(d);
}

static void test_register_map_problems(void **state)
{
    expect_problem("address_base = 1; telemetry = ( { key = \"a\"; table = \"input\"; "
                   "address = 0; type = \"int16\"; } );",
                   true, "key 'a': address 0 does not exist with address_base = 1 (the first "
                         "register is address 1)");
    expect_problem("address_base = 2;", true, "address_base: must be between 0 and 1 (got 2)");
    expect_problem("telemetry = ( { key = \"a\"; table = \"holding\"; address = 40001; "
                   "type = \"int16\"; } );",
                   false, "key 'a': address 40001 looks like a Modicon reference (holding "
                          "register 1); the address is the register's number within the "
                          "holding table: write address = 0 (with address_base = 0)");
    expect_problem("address_base = 1; writes = ( { key = \"w\"; table = \"holding\"; "
                   "address = 40101; type = \"int16\"; } );",
                   false, "write address = 101 (with address_base = 1)");
    expect_problem("telemetry = ( { key = \"a\"; table = \"input\"; address = 39999; "
                   "type = \"int16\"; } );",
                   false, "input register 9999); the address is the register's number within "
                          "the input table: write address = 9998");
    expect_problem("telemetry = ( { key = \"a\"; table = \"input\"; address = 0; "
                   "type = \"string\"; count = 2; invalid = [ 1 ]; } );",
                   true, "key 'a': invalid applies only to numeric types");
    expect_problem("telemetry = ( { key = \"a\"; table = \"input\"; address = 0; "
                   "type = \"int16\"; invalid = [ \"x\" ]; } );",
                   true, "telemetry.[0].invalid.[0]: expected a number, got a string");
    expect_problem("telemetry = ( { key = \"a\"; table = \"input\"; address = 0; "
                   "type = \"int16\"; poll_ms = 5; } );",
                   true, "poll_ms: must be between 10 and 86400000 (got 5)");
    expect_problem("writes = ( { key = \"a\"; table = \"holding\"; address = 0; "
                   "type = \"int16\"; poll_ms = 100; } );",
                   true, "poll_ms");
}

/* edge.gateway: the gateway's credentials in any device form, devices without theirs and
 * with a type (default "default"); a device's credentials or ota block are errors there. */
static void test_gateway_mode(void **state)
{
    static const char bus[] =
        "buses = ( { name = \"b\"; driver = \"modbus-tcp\"; host = \"127.0.0.1\"; devices = (\n"
        "  { name = \"m1\"; unit_id = 1; type = \"meter\";\n"
        "    telemetry = ( { key = \"k\"; table = \"holding\"; address = 0; type = \"uint16\"; } ); },\n"
        "  { name = \"m2\"; unit_id = 2; %s\n"
        "    telemetry = ( { key = \"k\"; table = \"holding\"; address = 0; type = \"uint16\"; } ); }\n"
        "); } );\n";
    char text[2048], devs[1024];
    struct diag *d;
    struct config *c;

    snprintf(devs, sizeof(devs), bus, "");
    snprintf(text, sizeof(text),
             "edge = { host = \"h\"; gateway = { mqtt = { username = \"gw\"; password = \"p\"; }; }; };\n%s",
             devs);
    c = load_text(text, NULL);
    assert_non_null(c);
    assert_true(c->edge.gateway);
    assert_int_equal(c->edge.gw_cred.kind, CRED_MQTT);
    assert_string_equal(c->edge.gw_cred.username, "gw");
    assert_string_equal(c->devices[0]->type, "meter");
    assert_string_equal(c->devices[1]->type, "default");
    assert_true(config_has_secrets(c));
    config_free(c);

    snprintf(text, sizeof(text), "edge = { host = \"h\"; gateway = { provision = { key = \"k\"; "
             "secret = \"s\"; }; }; };\n%s", devs);
    c = load_text(text, NULL);
    assert_non_null(c);
    assert_int_equal(c->edge.gw_cred.kind, CRED_PROVISION);
    config_free(c);

    /* A device's own token, an ota block: each an error at its line. */
    snprintf(devs, sizeof(devs), bus, "token = \"T\"; ota = { command = \"/bin/true\"; };");
    snprintf(text, sizeof(text), "edge = { host = \"h\"; gateway = { token = \"G\"; }; };\n%s",
             devs);
    c = load_text(text, &d);
    assert_null(c);
    assert_int_equal(diag_errors(d), 2);
    assert_non_null(strstr(diag_text(d), ":5: buses.[0].devices.[1].token: device 'm2': in gateway "
                                         "mode (edge.gateway) a device has no credentials"));
    assert_non_null(strstr(diag_text(d), ":5: buses.[0].devices.[1]: device 'm2': OTA cannot be "
                                         "carried for a device over the gateway API"));
    diag_free(d);

    /* The gateway needs exactly one credential form. */
    snprintf(devs, sizeof(devs), bus, "");
    snprintf(text, sizeof(text), "edge = { host = \"h\"; gateway = { }; };\n%s", devs);
    c = load_text(text, &d);
    assert_null(c);
    assert_non_null(strstr(diag_text(d), ":1: edge.gateway: the gateway has no credentials"));
    diag_free(d);
    snprintf(text, sizeof(text), "edge = { host = \"h\"; gateway = { tokn = \"G\"; }; };\n%s", devs);
    c = load_text(text, &d);
    assert_null(c);
    assert_non_null(strstr(diag_text(d), "edge.gateway.tokn: unknown setting"));
    diag_free(d);

    /* Without gateway mode: devices need credentials; type is accepted with a warning. */
    snprintf(devs, sizeof(devs), bus, "token = \"T\";");
    snprintf(text, sizeof(text), "edge = { host = \"h\"; };\n%s", devs);
    c = load_text(text, &d);
    assert_null(c); /* m1 has none */
    assert_non_null(strstr(diag_text(d), "device 'm1' has no credentials"));
    assert_non_null(strstr(diag_text(d), ":3: warning: buses.[0].devices.[0]: device 'm1': type has an "
                                         "effect only in gateway mode"));
    diag_free(d);
    (void)state;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gateway_mode),
        cmocka_unit_test(test_contract_example),
        cmocka_unit_test(test_template_override),
        cmocka_unit_test(test_environment_defaults),
        cmocka_unit_test(test_numbers_as_floats),
        cmocka_unit_test(test_errors_return_null),
        cmocka_unit_test(test_template_tag_without_key),
        cmocka_unit_test(test_too_many_keys),
        cmocka_unit_test(test_register_map_settings),
        cmocka_unit_test(test_register_map_problems),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
