/* SPDX-License-Identifier: GPL-2.0-or-later */
/* ThingsBoard JSON: telemetry batches (grouping, number forms, size cap), provisioning
 * requests and every kind of provisioning answer. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tb/tb-json.h"

static void test_batch_groups_by_ts(void **state)
{
    struct tb_batch b;
    struct value i = {.kind = VK_INT, .i = 25};
    struct value d = {.kind = VK_DOUBLE, .d = 25.0};
    struct value f = {.kind = VK_FLOAT, .d = (double)0.1f};
    struct value t = {.kind = VK_BOOL, .b = true};
    struct value s = {.kind = VK_STRING, .s = (char *)"a\"b\\c\n"};
    size_t len;
    char *text;

    tb_batch_init(&b);
    assert_true(tb_batch_empty(&b));
    assert_true(tb_batch_add(&b, 1000, "i", &i));
    assert_true(tb_batch_add(&b, 1000, "d", &d));
    assert_true(tb_batch_add(&b, 2000, "f", &f));
    assert_true(tb_batch_add(&b, 2000, "t", &t));
    assert_true(tb_batch_add(&b, 2000, "s", &s));
    assert_int_equal(b.n_values, 5);
    assert_int_equal(b.first_ts, 1000);
    text = tb_batch_finish(&b, &len);
    assert_string_equal(text, "[{\"ts\":1000,\"values\":{\"i\":25,\"d\":25.0}},"
                              "{\"ts\":2000,\"values\":{\"f\":0.1,\"t\":true,"
                              "\"s\":\"a\\\"b\\\\c\\n\"}}]");
    assert_int_equal(len, strlen(text));
    assert_true(tb_batch_empty(&b)); /* reset */
    free(text);
}

/* A key twice at one ts never repeats a JSON member (a parser keeps one of them): the
 * second starts an entry of its own, after the first, so the later value wins. Keys and
 * strings that need escaping are escaped as json-c does it everywhere else. */
static void test_batch_repeated_key_and_escapes(void **state)
{
    struct tb_batch b;
    struct value one = {.kind = VK_INT, .i = 1}, two = {.kind = VK_INT, .i = 2};
    struct value s = {.kind = VK_STRING, .s = (char *)"tab\there/\x01"};
    size_t len;
    char *text;

    tb_batch_init(&b);
    assert_true(tb_batch_add(&b, 5, "a", &one));
    assert_true(tb_batch_add(&b, 5, "b\"q", &s));
    assert_true(tb_batch_add(&b, 5, "a", &two));
    assert_int_equal(b.n_values, 3);
    text = tb_batch_finish(&b, &len);
    assert_string_equal(text, "[{\"ts\":5,\"values\":{\"a\":1,\"b\\\"q\":\"tab\\there/\\u0001\"}},"
                              "{\"ts\":5,\"values\":{\"a\":2}}]");
    assert_int_equal(len, strlen(text));
    free(text);
}

/* The size the uplink closes batches by is the finished text's, exactly. */
static void test_batch_bytes_is_exact(void **state)
{
    struct tb_batch b;
    struct value d = {.kind = VK_DOUBLE, .d = 1.0 / 3.0};
    char key[8];
    size_t len, bytes;
    char *text;

    tb_batch_init(&b);
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "k%d", i % 7);
        assert_true(tb_batch_add(&b, 1000 + i / 3, key, &d));
    }
    bytes = b.bytes;
    text = tb_batch_finish(&b, &len);
    assert_int_equal(len, bytes);
    assert_int_equal(len, strlen(text));
    free(text);
}

static void test_unrepresentable_values(void **state)
{
    struct tb_batch b;
    struct value big = {.kind = VK_UINT, .u = UINT64_MAX};
    struct value nan = {.kind = VK_DOUBLE, .d = NAN};
    struct value mega = {.kind = VK_FLOAT, .d = 1e6};
    size_t len;
    char *text;

    tb_batch_init(&b);
    assert_false(tb_batch_add(&b, 1, "nan", &nan));
    assert_true(tb_batch_empty(&b));
    /* Beyond int64: the exact integer, which ThingsBoard keeps as a STRING. */
    assert_true(tb_batch_add(&b, 1, "big", &big));
    assert_true(tb_batch_add(&b, 1, "mega", &mega));
    text = tb_batch_finish(&b, &len);
    assert_string_equal(text, "[{\"ts\":1,\"values\":{\"big\":18446744073709551615,"
                              "\"mega\":1000000.0}}]");
    free(text);
    tb_batch_clear(&b);
}

static void test_size_estimate_is_an_upper_bound(void **state)
{
    struct tb_batch b;
    size_t len;
    char *text;
    char key[32];

    tb_batch_init(&b);
    for (int i = 0; b.bytes < TB_BATCH_SOFT_MAX; i++) {
        struct value v = {.kind = VK_DOUBLE, .d = i * 1.0000001};
        struct value s = {.kind = VK_STRING, .s = (char *)"\x01\x02 quote\" "};
        snprintf(key, sizeof(key), "key-%d", i);
        tb_batch_add(&b, 1700000000000 + i / 10, key, &v);
        tb_batch_add(&b, 1700000000000 + i / 10, "text", &s);
    }
    {
        size_t est = b.bytes;
        text = tb_batch_finish(&b, &len);
        assert_true(len <= est);
        assert_true(len < TB_PAYLOAD_MAX / 8);
    }
    free(text);
}

static void test_provision(void **state)
{
    struct tb_provisioned p;
    char msg[128];
    char *req = tb_provision_request("dev \"1\"", "K", "S");
    static const char tok[] =
        "{\"credentialsValue\":\"abc123\",\"credentialsType\":\"ACCESS_TOKEN\",\"status\":\"SUCCESS\"}";
    static const char basic[] =
        "{\"credentialsValue\":{\"clientId\":\"c\",\"userName\":\"u\",\"password\":\"\"},"
        "\"credentialsType\":\"MQTT_BASIC\",\"status\":\"SUCCESS\"}";
    static const char x509[] =
        "{\"credentialsValue\":\"MIIB\",\"credentialsType\":\"X509_CERTIFICATE\",\"status\":\"SUCCESS\"}";
    static const char nf[] = "{\"errorMsg\":\"Provision data was not found!\",\"status\":\"NOT_FOUND\"}";
    static const char fail[] = "{\"errorMsg\":\"Failed to provision device!\",\"status\":\"FAILURE\"}";

    assert_string_equal(req, "{\"deviceName\":\"dev \\\"1\\\"\",\"provisionDeviceKey\":\"K\","
                             "\"provisionDeviceSecret\":\"S\"}");
    free(req);

    assert_int_equal(tb_provision_response(tok, strlen(tok), &p, msg, sizeof(msg)), 0);
    assert_int_equal(p.type, PROV_TOKEN);
    assert_string_equal(p.token, "abc123");
    tb_provisioned_clear(&p);

    assert_int_equal(tb_provision_response(basic, strlen(basic), &p, msg, sizeof(msg)), 0);
    assert_int_equal(p.type, PROV_MQTT_BASIC);
    assert_string_equal(p.client_id, "c");
    assert_string_equal(p.username, "u");
    assert_null(p.password); /* "" means unset */
    tb_provisioned_clear(&p);

    assert_int_equal(tb_provision_response(x509, strlen(x509), &p, msg, sizeof(msg)), 0);
    assert_int_equal(p.type, PROV_X509);
    tb_provisioned_clear(&p);

    assert_int_equal(tb_provision_response(nf, strlen(nf), &p, msg, sizeof(msg)), -EACCES);
    assert_string_equal(msg, "NOT_FOUND: Provision data was not found!");
    assert_int_equal(tb_provision_response(fail, strlen(fail), &p, msg, sizeof(msg)), -EACCES);
    assert_string_equal(msg, "FAILURE: Failed to provision device!");
    assert_int_equal(tb_provision_response("[1]", 3, &p, msg, sizeof(msg)), -EBADMSG);
    assert_int_equal(tb_provision_response("{\"status\":\"SUCCESS\"}", 20, &p, msg, sizeof(msg)),
                     -EBADMSG);
    assert_int_equal(tb_provision_response("", 0, &p, msg, sizeof(msg)), -EBADMSG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_groups_by_ts),
        cmocka_unit_test(test_batch_repeated_key_and_escapes),
        cmocka_unit_test(test_batch_bytes_is_exact),
        cmocka_unit_test(test_unrepresentable_values),
        cmocka_unit_test(test_size_estimate_is_an_upper_bound),
        cmocka_unit_test(test_provision),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
