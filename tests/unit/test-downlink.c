/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Downlink parsing and checks: RPC topics and requests, raw register access, value checks
 * against register types (refused, never wrapped), answers, attribute messages, getTime.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "downlink/ota.h"
#include "downlink/rpc.h"
#include "downlink/timesync.h"

static json_object *J(const char *s)
{
    json_object *o = json_tokener_parse(s);
    assert_non_null(o);
    return o;
}

static void test_topic_id(void **state)
{
    const char *p = "v1/devices/me/rpc/request/";
    int id = -1;

    assert_int_equal(rpc_topic_id("v1/devices/me/rpc/request/0", p, &id), 0);
    assert_int_equal(id, 0);
    assert_int_equal(rpc_topic_id("v1/devices/me/rpc/request/2147483647", p, &id), 0);
    assert_int_equal(id, INT_MAX);
    assert_int_equal(rpc_topic_id("v1/devices/me/rpc/request/-5", p, &id), 0);
    assert_int_equal(rpc_topic_id("v1/devices/me/rpc/request/2147483648", p, &id), -EINVAL);
    assert_int_equal(rpc_topic_id("v1/devices/me/rpc/request/", p, &id), -EINVAL);
    assert_int_equal(rpc_topic_id("v1/devices/me/rpc/request/1a", p, &id), -EINVAL);
    assert_int_equal(rpc_topic_id("v1/devices/me/rpc/request/ 1", p, &id), -EINVAL);
    assert_int_equal(rpc_topic_id("v1/devices/me/attributes", p, &id), -EINVAL);
}

static void test_parse_request(void **state)
{
    struct rpc_request r;
    char err[RPC_ERROR_MAX];
    static const char *const bad[] = {
        "", "null", "[]", "\"x\"", "{}", "{\"method\":1}", "{\"method\":\"\"}",
        "{\"method\":\"m\"} trailing", "{\"method\":\"m\"", "\xff\xfe",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]",
    };

    assert_int_equal(rpc_parse_request("{\"method\":\"setValve\",\"params\":{\"value\":true}}", strlen("{\"method\":\"setValve\",\"params\":{\"value\":true}}"),
                                       &r, err, sizeof(err)),
                     0);
    assert_string_equal(r.method, "setValve");
    assert_true(json_object_get_boolean(rpc_write_value(r.params)));
    rpc_request_clear(&r);
    assert_int_equal(rpc_parse_request("{\"method\":\"m\",\"params\":42} \n", strlen("{\"method\":\"m\",\"params\":42} \n"), &r, err,
                                       sizeof(err)),
                     0);
    assert_int_equal(json_object_get_int(rpc_write_value(r.params)), 42); /* a bare value */
    rpc_request_clear(&r);
    assert_int_equal(rpc_parse_request("{\"method\":\"m\",\"params\":null}", strlen("{\"method\":\"m\",\"params\":null}"), &r, err,
                                       sizeof(err)),
                     0);
    assert_null(r.params);
    rpc_request_clear(&r);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(rpc_parse_request(bad[i], strlen(bad[i]), &r, err, sizeof(err)), -EBADMSG);
}

static void test_raw_tag(void **state)
{
    struct device_config dev = {.byte_order = ORDER_BIG, .word_order = ORDER_LITTLE};
    struct tag_config t;
    char err[RPC_ERROR_MAX];
    json_object *p;

    p = J("{\"table\":\"holding\",\"address\":7,\"type\":\"uint16\",\"count\":1,\"value\":42}");
    assert_int_equal(rpc_raw_tag(p, true, &dev, &t, err, sizeof(err)), 0);
    assert_int_equal(t.table, TABLE_HOLDING);
    assert_int_equal(t.address, 7);
    assert_int_equal(t.count, 1);
    assert_int_equal(t.word_order, ORDER_LITTLE); /* the device's default */
    json_object_put(p);

    p = J("{\"table\":\"coil\",\"address\":3}");
    assert_int_equal(rpc_raw_tag(p, false, &dev, &t, err, sizeof(err)), 0);
    assert_int_equal(t.type, VT_BOOL);
    json_object_put(p);

    p = J("{\"table\":\"holding\",\"address\":0,\"type\":\"string\",\"count\":4}");
    assert_int_equal(rpc_raw_tag(p, false, &dev, &t, err, sizeof(err)), 0);
    assert_int_equal(t.count, 4);
    json_object_put(p);

    static const char *const bad[][2] = {
        {"{\"address\":1}", "table"},
        {"{\"table\":\"holdng\",\"address\":1}", "unknown table"},
        {"{\"table\":\"holding\"}", "address"},
        {"{\"table\":\"holding\",\"address\":65536}", "0 to 65535"},
        {"{\"table\":\"holding\",\"address\":1.5}", "whole number"},
        {"{\"table\":\"holding\",\"address\":\"1\"}", "must be a number"},
        {"{\"table\":\"coil\",\"address\":1,\"type\":\"int16\"}", "cannot be used"},
        {"{\"table\":\"input\",\"address\":1}", "read-only"},
        {"{\"table\":\"holding\",\"address\":65535,\"type\":\"uint32\"}", "past address 65535"},
        {"{\"table\":\"holding\",\"address\":1,\"type\":\"string\"}", "count"},
        {"{\"table\":\"holding\",\"address\":1,\"type\":\"int32\",\"count\":7}", "count"},
        {"{\"table\":\"holding\",\"address\":1,\"type\":\"bit\"}", "bit"},
        {"{\"table\":\"holding\",\"address\":1,\"scale\":2}", "scale"},
        {"[1,2]", "object"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        p = json_tokener_parse(bad[i][0]);
        assert_int_equal(rpc_raw_tag(p, true, &dev, &t, err, sizeof(err)), -EBADMSG);
        if (!strstr(err, bad[i][1]))
            fail_msg("%s: '%s' does not mention '%s'", bad[i][0], err, bad[i][1]);
        json_object_put(p);
    }
    assert_int_equal(rpc_raw_tag(NULL, true, &dev, &t, err, sizeof(err)), -EBADMSG);
}

static void check_value(const struct tag_config *t, const char *json, int want)
{
    struct value v;
    char err[RPC_ERROR_MAX];
    json_object *o = json_tokener_parse(json);
    int r = rpc_value_for_tag(t, o, &v, err, sizeof(err));

    if (r != want)
        fail_msg("%s: got %d (%s), want %d", json, r, err, want);
    if (r == 0)
        value_clear(&v);
    json_object_put(o);
}

static void test_values_are_checked(void **state)
{
    struct tag_config t = {.key = (char *)"sp", .type = VT_INT16, .table = TABLE_HOLDING,
                           .count = 1, .scale = 0.1};

    check_value(&t, "22.5", 0);
    check_value(&t, "\"22.5\"", 0);   /* a numeric string */
    check_value(&t, "3276.7", 0);     /* raw 32767 */
    check_value(&t, "3276.8", -EBADMSG); /* raw 32768: refused, not wrapped */
    check_value(&t, "-3276.8", 0);
    check_value(&t, "true", -EBADMSG);
    check_value(&t, "\"abc\"", -EBADMSG);
    check_value(&t, "{}", -EBADMSG);
    check_value(&t, "null", -EBADMSG);
    t.type = VT_UINT16;
    t.scale = 1;
    check_value(&t, "-1", -EBADMSG);
    check_value(&t, "65535", 0);
    t.type = VT_BOOL;
    t.table = TABLE_COIL;
    check_value(&t, "true", 0);
    check_value(&t, "0", 0);
    check_value(&t, "2", -EBADMSG);
    check_value(&t, "\"false\"", 0);
    check_value(&t, "\"yes\"", -EBADMSG);
    t.type = VT_STRING;
    t.table = TABLE_HOLDING;
    t.count = 2;
    check_value(&t, "\"abcd\"", 0);
    check_value(&t, "\"abcde\"", -EBADMSG);
    check_value(&t, "5", -EBADMSG);
    t.type = VT_INT64;
    t.count = 4;
    check_value(&t, "9223372036854775807", 0);
    /* json-c keeps 2^63 as a uint64, and turns anything beyond its range into INT64_MIN or
     * UINT64_MAX: never written as INT64_MAX, or as the limit. */
    check_value(&t, "9223372036854775808", -EBADMSG);
    check_value(&t, "-9223372036854775809", -EBADMSG);
    t.type = VT_UINT64;
    check_value(&t, "18446744073709551615", -EBADMSG);
    check_value(&t, "100000000000000000000", -EBADMSG);
    check_value(&t, "\"100000000000000000000\"", -EBADMSG); /* as a string: a double, too big */
    t.type = VT_FLOAT32;
    t.count = 2;
    check_value(&t, "1e39", -EBADMSG);
    check_value(&t, "100000000000000000000000", -EBADMSG);
    check_value(&t, "1e23", 0);
}

static void test_answers(void **state)
{
    char *s;
    struct value v = {.kind = VK_DOUBLE, .d = 22.5};

    s = rpc_answer_ok();
    assert_string_equal(s, "{\"ok\":true}");
    free(s);
    s = rpc_answer_value(&v);
    assert_string_equal(s, "{\"value\":22.5}");
    free(s);
    s = rpc_answer_error("unknown method 'x\"y'");
    assert_string_equal(s, "{\"error\":\"unknown method 'x\\\"y'\"}");
    free(s);
    /* A method name that is not UTF-8, quoted back: ThingsBoard drops a session on it. */
    s = rpc_answer_error("unknown method 'a\xff\xc3'");
    assert_string_equal(s, "{\"error\":\"unknown method 'a\xef\xbf\xbd\xef\xbf\xbd'\"}");
    free(s);
}

static void test_attributes(void **state)
{
    json_object *o = attributes_parse("{\"shared\":{\"sp\":22.0},\"client\":{}}", strlen("{\"shared\":{\"sp\":22.0},\"client\":{}}"));

    assert_non_null(o);
    assert_non_null(attributes_response_shared(o));
    json_object_put(o);
    o = attributes_parse("{\"client\":{\"a\":1}}", strlen("{\"client\":{\"a\":1}}"));
    assert_null(attributes_response_shared(o));
    json_object_put(o);
    assert_null(attributes_parse("[1]", strlen("[1]")));
    assert_null(attributes_parse("", strlen("")));
}

static int gettime(const char *s, int64_t *ms)
{
    return timesync_parse_answer(s, strlen(s), ms);
}

static void test_gettime_answer(void **state)
{
    int64_t ms;

    assert_int_equal(gettime("1795543812798", &ms), 0);
    assert_true(ms == 1795543812798ll);
    assert_int_equal(gettime("{\"time\":1795543812798}", &ms), 0);
    assert_int_equal(gettime("{\"ts\":1795543812798.0}", &ms), 0);
    assert_int_equal(gettime("{\"time\":1795543812}", &ms), -EBADMSG); /* seconds */
    assert_int_equal(gettime("\"now\"", &ms), -EBADMSG);
    assert_int_equal(gettime("", &ms), -EBADMSG);
}

static unsigned announce(struct ota_package *const pkg[N_OTA_KINDS], const char *json)
{
    json_object *o = J(json), *deleted;
    unsigned r = json_object_object_get_ex(o, "deleted", &deleted) ? ota_unannounce(pkg, deleted)
                                                                    : ota_announce(pkg, o);

    json_object_put(o);
    return r;
}

static void test_ota_announcement(void **state)
{
    struct ota_package fw = {0}, sw = {0};
    struct ota_package *const pkg[N_OTA_KINDS] = {&fw, &sw};
    int req;
    unsigned n;

    ota_package_clear(&fw);
    ota_package_clear(&sw);
    /* Announced strings go back out in telemetry: made valid UTF-8, control characters
     * dropped (the fuzzer's first find: fw_checksum_algorithm "MURM\xd5R3_128"). */
    assert_int_equal(announce(pkg, "{\"fw_title\":\"pump\\u0007\",\"fw_version\":\"1.\xff\","
                                   "\"sw_tag\":\"x\",\"fw_state\":\"QUEUED\",\"other\":1}"),
                     (1u << OTA_FW) | (1u << OTA_SW));
    assert_string_equal(fw.title, "pump");
    assert_string_equal(fw.version, "1.\xef\xbf\xbd");
    assert_string_equal(sw.tag, "x");
    assert_int_equal(ota_package_check(&fw), -EAGAIN);
    /* The rest of the push, in another message. */
    assert_int_equal(announce(pkg, "{\"fw_size\":1024,\"fw_checksum\":\"ab\","
                                   "\"fw_checksum_algorithm\":\"sha256\"}"),
                     1u << OTA_FW);
    assert_true(fw.size == 1024);
    assert_int_equal(ota_package_check(&fw), 0);
    announce(pkg, "{\"fw_checksum_algorithm\":\"ROT13\"}");
    assert_int_equal(ota_package_check(&fw), -EINVAL);
    announce(pkg, "{\"fw_checksum_algorithm\":\"CRC32\",\"fw_url\":\"http://x/y\"}");
    assert_int_equal(ota_package_check(&fw), -ENOTSUP);
    assert_int_equal(announce(pkg, "{\"deleted\":[\"fw_url\",\"fw_tag\"]}"), 0);
    assert_int_equal(ota_package_check(&fw), 0);
    /* fw_size: whole numbers only; NaN never reaches json-c's conversion to an integer. */
    static const char *const sizes[][2] = {
        {"\"17\"", "17"}, {"2.5e3", "2500"}, {"2.5", "-1"}, {"-3", "-1"}, {"NaN", "-1"},
        {"\"12abc\"", "-1"}, {"\"abc\"", "-1"}, {"1e300", "-1"}, {"null", "-1"}, {"{}", "-1"},
    };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        char json[64];
        snprintf(json, sizeof(json), "{\"fw_size\":%s}", sizes[i][0]);
        announce(pkg, json);
        if (fw.size != atoll(sizes[i][1]))
            fail_msg("fw_size %s: got %lld, want %s", sizes[i][0], fw.size, sizes[i][1]);
    }
    /* Unassigned: the package is gone. */
    assert_int_equal(announce(pkg, "{\"deleted\":[\"fw_title\",\"fw_version\"]}"), 1u << OTA_FW);
    assert_null(fw.title);
    assert_int_equal(ota_package_check(&fw), -EAGAIN);
    ota_package_clear(&fw);
    ota_package_clear(&sw);

    assert_int_equal(ota_chunk_topic("v2/sw/response/5/chunk/2", &req, &n), OTA_SW);
    assert_int_equal(req, 5);
    assert_int_equal(n, 2);
    assert_int_equal(ota_chunk_topic("v2/fw/response/5/chunk/", &req, &n), -EINVAL);
    assert_int_equal(ota_chunk_topic("v2/fw/response/-1/chunk/0", &req, &n), -EINVAL);
    assert_int_equal(ota_chunk_topic("v2/fw/error", &req, &n), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topic_id),       cmocka_unit_test(test_parse_request),
        cmocka_unit_test(test_raw_tag),        cmocka_unit_test(test_values_are_checked),
        cmocka_unit_test(test_answers),        cmocka_unit_test(test_attributes),
        cmocka_unit_test(test_gettime_answer), cmocka_unit_test(test_ota_announcement),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
