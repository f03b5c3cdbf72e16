/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Gateway-API JSON: grouping many devices' batches into messages within the payload limit
 * (order kept per device), the small uplink bodies, and the downlink envelopes. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "downlink/gw-parse.h"
#include "downlink/rpc.h"
#include "uplink/gw-json.h"
#include "tb/tb-json.h"

static int add(struct gw_msg *m, const char *device, const char *text)
{
    return gw_msg_add(m, device, text, strlen(text));
}

static void test_groups_devices_and_keeps_order(void **state)
{
    struct gw_msg m;
    size_t len;
    char *text;

    gw_msg_init(&m, GW_MSG_ARRAYS, TB_PAYLOAD_MAX);
    assert_true(gw_msg_empty(&m));
    assert_null(gw_msg_finish(&m, &len));
    assert_int_equal(add(&m, "A", "[{\"ts\":1,\"values\":{\"t\":1.5}}]\n"), 0);
    assert_int_equal(add(&m, "B", "[{\"ts\":1,\"values\":{\"x\":2}}]"), 0);
    assert_int_equal(add(&m, "A", "[{\"ts\":2,\"values\":{\"t\":1.0}},{\"ts\":3,\"values\":{\"t\":7}}]"), 0);
    assert_int_equal(add(&m, "q\"uote", "[{\"ts\":4,\"values\":{\"s\":\"v\"}}]"), 0);
    assert_int_equal(m.n_parts, 4);
    {
        size_t bytes = m.bytes;
        text = gw_msg_finish(&m, &len);
        assert_int_equal(len, bytes);
    }
    assert_string_equal(text,
        "{\"A\":[{\"ts\":1,\"values\":{\"t\":1.5}},{\"ts\":2,\"values\":{\"t\":1.0}},"
        "{\"ts\":3,\"values\":{\"t\":7}}],\"B\":[{\"ts\":1,\"values\":{\"x\":2}}],"
        "\"q\\\"uote\":[{\"ts\":4,\"values\":{\"s\":\"v\"}}]}");
    assert_int_equal(len, strlen(text));
    assert_true(gw_msg_empty(&m)); /* reset for the next message */
    free(text);

    gw_msg_init(&m, GW_MSG_OBJECTS, TB_PAYLOAD_MAX);
    assert_int_equal(add(&m, "A", "{\"fw\":\"1.2\"}"), 0);
    assert_int_equal(add(&m, "A", "{\"up\":true}"), 0);
    assert_int_equal(add(&m, "A", "[1]"), -EINVAL); /* not an object */
    text = gw_msg_finish(&m, &len);
    assert_string_equal(text, "{\"A\":{\"fw\":\"1.2\",\"up\":true}}");
    free(text);
}

/* The per-device writer is device mode's: a finished tb_batch is a gateway member as is. */
static void test_device_mode_batches_are_members(void **state)
{
    struct tb_batch b;
    struct gw_msg m;
    struct value d = {.kind = VK_DOUBLE, .d = 25.0}, i = {.kind = VK_INT, .i = 3};
    size_t len;
    char *batch, *text;

    tb_batch_init(&b);
    tb_batch_add(&b, 1700000000000, "t", &d);
    tb_batch_add(&b, 1700000000000, "n", &i);
    batch = tb_batch_finish(&b, &len);
    gw_msg_init(&m, GW_MSG_ARRAYS, TB_PAYLOAD_MAX);
    assert_int_equal(gw_msg_add(&m, "boiler", batch, len), 0);
    text = gw_msg_finish(&m, &len);
    assert_string_equal(text, "{\"boiler\":[{\"ts\":1700000000000,\"values\":{\"t\":25.0,\"n\":3}}]}");
    free(text);
    free(batch);
}

/* Hundreds of devices in one message (the name index grows several times): each keeps one
 * member holding its batches in order. */
static void test_many_devices_one_member_each(void **state)
{
    struct gw_msg m;
    json_object *o, *arr;
    char dev[16], batch[32];
    size_t len;
    char *text;

    gw_msg_init(&m, GW_MSG_ARRAYS, TB_PAYLOAD_MAX);
    for (int round = 0; round < 2; round++)
        for (int d = 0; d < 500; d++) {
            snprintf(dev, sizeof(dev), "m%d", d);
            snprintf(batch, sizeof(batch), "[%d]", round * 1000 + d);
            assert_int_equal(add(&m, dev, batch), 0);
        }
    assert_int_equal(m.n_members, 500);
    text = gw_msg_finish(&m, &len);
    o = rpc_parse_object(text, len);
    assert_non_null(o);
    assert_int_equal(json_object_object_length(o), 500);
    assert_true(json_object_object_get_ex(o, "m321", &arr));
    assert_string_equal(json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN), "[321,1321]");
    json_object_put(o);
    free(text);
}

static void test_payload_limit_counts_the_topic(void **state)
{
    /* 65 536 - 2 - 20 ("v1/gateway/telemetry") - 2 */
    assert_int_equal(gw_payload_limit(GW_TOPIC_TELEMETRY), 65512);
    assert_int_equal(gw_payload_limit(GW_TOPIC_ATTRIBUTES), 65536 - 2 - 21 - 2);
}

static void test_refuses_bad_parts(void **state)
{
    struct gw_msg m;

    gw_msg_init(&m, GW_MSG_ARRAYS, 40);
    assert_int_equal(add(&m, "A", "[]"), -EINVAL);
    assert_int_equal(add(&m, "A", "{\"a\":1}"), -EINVAL);
    assert_int_equal(add(&m, "A", "[1"), -EINVAL);
    assert_int_equal(add(&m, "A", " [ ]\n"), -EINVAL);
    assert_int_equal(add(&m, "", "[1]"), -EINVAL);
    assert_int_equal(gw_msg_add(&m, NULL, "[1]", 3), -EINVAL);
    /* {"A":[…]} alone would be 41 bytes: it can never be sent with this limit */
    assert_int_equal(add(&m, "A", "[\"123456789012345678901234567890x\"]"), -EMSGSIZE);
    assert_false(m.full);
    assert_true(gw_msg_empty(&m));
    gw_msg_clear(&m);
}

static void test_exact_limit_and_refusal_is_final(void **state)
{
    struct gw_msg m;
    size_t len;
    char *text;

    /* {"A":[1],"B":[2]} is 17 bytes */
    gw_msg_init(&m, GW_MSG_ARRAYS, 17);
    assert_int_equal(add(&m, "A", "[1]"), 0);
    assert_int_equal(add(&m, "B", "[2]"), 0);
    assert_int_equal(m.bytes, 17);
    assert_int_equal(add(&m, "A", "[3]"), -ENOSPC);
    assert_true(m.full);
    /* Nothing more, however small: a later batch must not overtake the refused one. */
    assert_int_equal(add(&m, "C", "[4]"), -ENOSPC);
    text = gw_msg_finish(&m, &len);
    assert_string_equal(text, "{\"A\":[1],\"B\":[2]}");
    assert_int_equal(len, 17);
    free(text);
    assert_false(m.full);
    assert_int_equal(add(&m, "A", "[3]"), 0);
    gw_msg_clear(&m);
}

/* Many devices, batches of varied sizes, a small limit: every message is valid JSON within
 * the limit, and reading the messages back in order gives every device's entries in the
 * order they were added. */
static void test_split_keeps_every_sample_in_order(void **state)
{
    enum { DEVICES = 23, BATCHES = 400, LIMIT = 1500 };
    int next_in[DEVICES] = {0}, next_out[DEVICES] = {0};
    struct gw_msg m;
    unsigned seed = 12345;
    size_t n_msgs = 0;

    gw_msg_init(&m, GW_MSG_ARRAYS, LIMIT);
    for (int i = 0; i <= BATCHES; i++) {
        char dev[16], batch[1024];
        size_t off;
        int d = 0, r = -ENOSPC;

        if (i < BATCHES) {
            seed = seed * 1103515245u + 12345u;
            d = (int)((seed >> 16) % DEVICES);
            snprintf(dev, sizeof(dev), "meter-%02d", d);
            off = (size_t)snprintf(batch, sizeof(batch), "[");
            for (int k = 0, n = 1 + (int)((seed >> 8) % 12); k < n; k++)
                off += (size_t)snprintf(batch + off, sizeof(batch) - off,
                                        "%s{\"ts\":%d,\"values\":{\"seq\":%d}}", k ? "," : "",
                                        1000 + next_in[d], next_in[d]), next_in[d]++;
            snprintf(batch + off, sizeof(batch) - off, "]");
            r = add(&m, dev, batch);
            assert_true(r == 0 || r == -ENOSPC);
        }
        if (r == -ENOSPC) {
            size_t len;
            char *text = gw_msg_finish(&m, &len);
            json_object *o;

            if (text) {
                assert_true(len <= LIMIT);
                o = rpc_parse_object(text, len);
                assert_non_null(o);
                json_object_object_foreach(o, name, arr) {
                    int dn = atoi(name + strlen("meter-"));
                    assert_true(json_object_is_type(arr, json_type_array));
                    for (size_t k = 0; k < json_object_array_length(arr); k++) {
                        json_object *e = json_object_array_get_idx(arr, k), *v, *seq;
                        assert_true(json_object_object_get_ex(e, "values", &v));
                        assert_true(json_object_object_get_ex(v, "seq", &seq));
                        assert_int_equal(json_object_get_int(seq), next_out[dn]);
                        next_out[dn]++;
                    }
                }
                json_object_put(o);
                free(text);
                n_msgs++;
            }
            if (i < BATCHES)
                assert_int_equal(add(&m, dev, batch), 0); /* starts the next message */
        }
    }
    for (int d = 0; d < DEVICES; d++)
        assert_int_equal(next_out[d], next_in[d]);
    assert_true(n_msgs > 10);
    gw_msg_clear(&m);
}

static void test_bodies(void **state)
{
    const char *one[] = {"sp"}, *two[] = {"sp", "mode"};
    const char *claim = "{\"secretKey\":\"s3cret\",\"durationMs\":60000}";
    char *s, *err;

    s = gw_connect_body("boiler \"1\"", "meter");
    assert_string_equal(s, "{\"device\":\"boiler \\\"1\\\"\",\"type\":\"meter\"}");
    free(s);
    s = gw_connect_body("A", NULL);
    assert_string_equal(s, "{\"device\":\"A\"}");
    free(s);
    s = gw_disconnect_body("A/b");
    assert_string_equal(s, "{\"device\":\"A/b\"}");
    free(s);
    err = rpc_answer_error("bad \"value\"");
    s = gw_rpc_reply_body("A", 5, err);
    assert_string_equal(s, "{\"device\":\"A\",\"id\":5,\"data\":{\"error\":\"bad \\\"value\\\"\"}}");
    free(s);
    free(err);
    s = gw_attribute_request_body("A", 1, false, one, 1);
    assert_string_equal(s, "{\"id\":1,\"device\":\"A\",\"client\":false,\"key\":\"sp\"}");
    free(s);
    s = gw_attribute_request_body("A", 2, true, two, 2);
    assert_string_equal(s, "{\"id\":2,\"device\":\"A\",\"client\":true,\"keys\":[\"sp\",\"mode\"]}");
    free(s);
    s = gw_claim_body("A", claim, strlen(claim));
    assert_string_equal(s, "{\"A\":{\"secretKey\":\"s3cret\",\"durationMs\":60000}}");
    free(s);
    s = gw_claim_body("A", "", 0);
    assert_string_equal(s, "{\"A\":{}}");
    free(s);
}

static int push(const char *text, struct gw_downlink *g, char *err, size_t size)
{
    return gw_parse_attribute_push(text, strlen(text), g, err, size);
}

static void test_parse_attribute_push(void **state)
{
    struct gw_downlink g;
    char err[RPC_ERROR_MAX];

    assert_int_equal(push("{\"device\":\"A\",\"data\":{\"sp\":21.5}}", &g, err, sizeof(err)), 0);
    assert_string_equal(g.device, "A");
    assert_string_equal(json_object_to_json_string_ext(g.data, JSON_C_TO_STRING_PLAIN),
                        "{\"sp\":21.5}");
    gw_downlink_clear(&g);
    assert_int_equal(push("{\"data\":{\"deleted\":[\"sp\"]},\"device\":\"B\"}", &g, err,
                          sizeof(err)), 0);
    assert_string_equal(g.device, "B");
    assert_true(json_object_object_get_ex(g.data, "deleted", NULL));
    gw_downlink_clear(&g);

    static const char *const bad[] = {
        "", "null", "[1]", "{\"device\":\"A\",\"data\":{}} x", "{\"data\":{\"a\":1}}",
        "{\"device\":5,\"data\":{\"a\":1}}", "{\"device\":\"\",\"data\":{\"a\":1}}",
        "{\"device\":\"A\"}", "{\"device\":\"A\",\"data\":[1]}", "{\"device\":\"A\",\"data\":1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(push(bad[i], &g, err, sizeof(err)), -EBADMSG);
        assert_true(err[0] != '\0');
        gw_downlink_clear(&g);
    }
}

static int rpc(const char *text, struct gw_downlink *g, char *err, size_t size)
{
    return gw_parse_rpc(text, strlen(text), g, err, size);
}

static void test_parse_rpc(void **state)
{
    struct gw_downlink g;
    char err[RPC_ERROR_MAX];

    assert_int_equal(rpc("{\"device\":\"A\",\"data\":{\"id\":5,\"method\":\"setValve\","
                         "\"params\":{\"open\":true}}}", &g, err, sizeof(err)), 0);
    assert_string_equal(g.device, "A");
    assert_int_equal(g.id, 5);
    assert_string_equal(g.rpc.method, "setValve");
    assert_true(json_object_is_type(g.rpc.params, json_type_object));
    gw_downlink_clear(&g);
    assert_int_equal(rpc("{\"device\":\"A\",\"data\":{\"id\":0,\"method\":\"m\",\"params\":null}}",
                         &g, err, sizeof(err)), 0);
    assert_null(g.rpc.params);
    gw_downlink_clear(&g);

    /* Bad bodies: device and id are still known, so the caller can answer an error. */
    assert_int_equal(rpc("{\"device\":\"A\",\"data\":{\"id\":7,\"params\":{}}}", &g, err,
                         sizeof(err)), -EBADMSG);
    assert_string_equal(g.device, "A");
    assert_int_equal(g.id, 7);
    assert_string_equal(err, "the request has no method");
    gw_downlink_clear(&g);
    assert_int_equal(rpc("{\"device\":\"A\",\"data\":{\"method\":\"m\"}}", &g, err, sizeof(err)),
                     -EBADMSG);
    assert_string_equal(g.device, "A");
    assert_int_equal(g.id, -1);
    gw_downlink_clear(&g);
    assert_int_equal(rpc("{\"device\":\"A\",\"data\":{\"id\":2147483648,\"method\":\"m\"}}", &g,
                         err, sizeof(err)), -EBADMSG);
    assert_int_equal(g.id, -1);
    gw_downlink_clear(&g);
    assert_int_equal(rpc("{\"device\":\"A\",\"data\":{\"id\":\"5\",\"method\":\"m\"}}", &g, err,
                         sizeof(err)), -EBADMSG);
    gw_downlink_clear(&g);
    assert_int_equal(rpc("{\"device\":\"A\",\"data\":\"x\"}", &g, err, sizeof(err)), -EBADMSG);
    assert_string_equal(g.device, "A");
    gw_downlink_clear(&g);
    assert_int_equal(rpc("{\"data\":{\"id\":1,\"method\":\"m\"}}", &g, err, sizeof(err)), -EBADMSG);
    assert_null(g.device);
    gw_downlink_clear(&g);
    assert_int_equal(rpc("\xff", &g, err, sizeof(err)), -EBADMSG);
    gw_downlink_clear(&g);
}

static int resp(const char *text, const char *key, struct gw_downlink *g, char *err, size_t size)
{
    return gw_parse_attribute_response(text, strlen(text), key, g, err, size);
}

static void test_parse_attribute_response(void **state)
{
    struct gw_downlink g;
    char err[RPC_ERROR_MAX];

    assert_int_equal(resp("{\"id\":1,\"device\":\"A\",\"value\":21.5}", "sp", &g, err,
                          sizeof(err)), 0);
    assert_int_equal(g.id, 1);
    assert_string_equal(json_object_to_json_string_ext(g.data, JSON_C_TO_STRING_PLAIN),
                        "{\"sp\":21.5}");
    gw_downlink_clear(&g);
    assert_int_equal(resp("{\"id\":2,\"device\":\"A\",\"values\":{\"a\":1,\"b\":\"x\"}}", NULL, &g,
                          err, sizeof(err)), 0);
    assert_int_equal(json_object_object_length(g.data), 2);
    gw_downlink_clear(&g);
    assert_int_equal(resp("{\"id\":3,\"device\":\"A\"}", "sp", &g, err, sizeof(err)), 0);
    assert_int_equal(json_object_object_length(g.data), 0);
    gw_downlink_clear(&g);

    assert_int_equal(resp("{\"id\":4,\"device\":\"A\",\"value\":1}", NULL, &g, err, sizeof(err)),
                     -EBADMSG);
    assert_string_equal(g.device, "A");
    assert_int_equal(g.id, 4);
    gw_downlink_clear(&g);
    assert_int_equal(resp("{\"device\":\"A\",\"values\":{}}", NULL, &g, err, sizeof(err)), -EBADMSG);
    gw_downlink_clear(&g);
    assert_int_equal(resp("{\"id\":5,\"device\":\"A\",\"values\":[1]}", NULL, &g, err,
                          sizeof(err)), -EBADMSG);
    assert_null(g.data);
    gw_downlink_clear(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_groups_devices_and_keeps_order),
        cmocka_unit_test(test_device_mode_batches_are_members),
        cmocka_unit_test(test_many_devices_one_member_each),
        cmocka_unit_test(test_payload_limit_counts_the_topic),
        cmocka_unit_test(test_refuses_bad_parts),
        cmocka_unit_test(test_exact_limit_and_refusal_is_final),
        cmocka_unit_test(test_split_keeps_every_sample_in_order),
        cmocka_unit_test(test_bodies),
        cmocka_unit_test(test_parse_attribute_push),
        cmocka_unit_test(test_parse_rpc),
        cmocka_unit_test(test_parse_attribute_response),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
