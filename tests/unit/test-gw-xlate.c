/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Gateway mode's translation: the router's device-mode topics as the gateway carries them,
 * attribute requests split per scope and their answers merged back, device names, client-RPC
 * ids. */
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

#include "uplink/gw-xlate.h"

static void test_classify(void **state)
{
    int id;

    (void)state;
    assert_int_equal(gwx_classify("v1/devices/me/rpc/response/17", &id), GWX_RPC_REPLY);
    assert_int_equal(id, 17);
    assert_int_equal(gwx_classify("v1/devices/me/rpc/request/3", &id), GWX_CLIENT_RPC);
    assert_int_equal(id, 3);
    assert_int_equal(gwx_classify("v1/devices/me/attributes/request/2147483647", &id),
                     GWX_ATTR_REQUEST);
    assert_int_equal(id, 2147483647);
    assert_int_equal(gwx_classify("v1/devices/me/claim", NULL), GWX_CLAIM);
    assert_int_equal(gwx_classify("v1/devices/me/telemetry", NULL), GWX_TELEMETRY);
    assert_int_equal(gwx_classify("v1/devices/me/attributes", NULL), GWX_ATTRIBUTES);
    /* OTA has no gateway form: it must never leave on the gateway session. */
    assert_int_equal(gwx_classify("v2/fw/request/1/chunk/0", &id), GWX_REFUSED);
    assert_int_equal(id, -1);
    assert_int_equal(gwx_classify("v2/sw/request/1/chunk/0", NULL), GWX_REFUSED);
    assert_int_equal(gwx_classify("v1/devices/me/rpc/response/x", NULL), GWX_REFUSED);
    assert_int_equal(gwx_classify("v1/devices/me/rpc/response/", NULL), GWX_REFUSED);
    assert_int_equal(gwx_classify("v1/devices/me/attributes/response/1", NULL), GWX_REFUSED);
    assert_int_equal(gwx_classify("v1/devices/me/claimX", NULL), GWX_REFUSED);
}

static char *wrap(enum gwx_topic kind, const char *device, json_object *o)
{
    json_object *w = gwx_wrap(kind, device, o);
    char *s = w ? strdup(json_object_to_json_string_ext(w, JSON_C_TO_STRING_PLAIN)) : NULL;

    json_object_put(w);
    return s;
}

static void test_wrap(void **state)
{
    json_object *o = json_tokener_parse("{\"fw_state\":\"FAILED\"}");
    json_object *a = json_tokener_parse("[{\"ts\":1,\"values\":{\"t\":1}}]");
    json_object *empty = json_object_new_object();
    char *s;

    (void)state;
    s = wrap(GWX_TELEMETRY, "M\"1", o);
    assert_string_equal(s, "{\"M\\\"1\":[{\"fw_state\":\"FAILED\"}]}");
    free(s);
    s = wrap(GWX_TELEMETRY, "M", a);
    assert_string_equal(s, "{\"M\":[{\"ts\":1,\"values\":{\"t\":1}}]}");
    free(s);
    s = wrap(GWX_ATTRIBUTES, "M", o);
    assert_string_equal(s, "{\"M\":{\"fw_state\":\"FAILED\"}}");
    free(s);
    /* Shapes ThingsBoard would skip (and, with nothing left, close the session for). */
    assert_null(wrap(GWX_ATTRIBUTES, "M", a));
    assert_null(wrap(GWX_ATTRIBUTES, "M", empty));
    assert_null(wrap(GWX_CLAIM, "M", o));
    /* o is borrowed */
    assert_int_equal(json_object_put(o), 1);
    json_object_put(a);
    json_object_put(empty);
}

static void test_request_shared_only(void **state)
{
    struct gwx_request r;
    json_object *body = json_tokener_parse("{\"sharedKeys\":\"setpoint,mode,,fw_title\"}");
    json_object *values = json_tokener_parse("{\"setpoint\":21.5}");
    char *out[GWX_SCOPES], *text = NULL;
    int next = 7, dev_id = -1;

    (void)state;
    gwx_request_init(&r);
    assert_int_equal(gwx_request_start(&r, "M1", 4, body, &next, out), 1);
    assert_int_equal(next, 8);
    assert_null(out[GWX_CLIENT]);
    assert_string_equal(out[GWX_SHARED], "{\"id\":7,\"device\":\"M1\",\"client\":false,"
                                         "\"keys\":[\"setpoint\",\"mode\",\"fw_title\"]}");
    assert_null(gwx_request_single_key(&r, 7));
    /* An answer to something else is not this one's. */
    assert_int_equal(gwx_request_answer(&r, 8, values, &text, &dev_id), -ENOENT);
    assert_int_equal(gwx_request_answer(&r, 7, values, &text, &dev_id), 1);
    assert_int_equal(dev_id, 4);
    assert_string_equal(text, "{\"shared\":{\"setpoint\":21.5}}");
    free(text);
    /* Idle again: a repeat of the answer finds nothing. */
    assert_int_equal(r.dev_id, -1);
    assert_int_equal(gwx_request_answer(&r, 7, values, &text, &dev_id), -ENOENT);
    free(out[GWX_SHARED]);
    gwx_request_clear(&r);
    json_object_put(body);
    json_object_put(values);
}

static void test_request_both_scopes_merge(void **state)
{
    struct gwx_request r;
    json_object *body = json_tokener_parse("{\"clientKeys\":\"serial\",\"sharedKeys\":\"a,b\"}");
    json_object *client = json_tokener_parse("{\"serial\":\"X1\"}");
    json_object *none = json_object_new_object();
    char *out[GWX_SCOPES], *text = NULL;
    int next = 0x7fffffff, dev_id = -1;

    (void)state;
    gwx_request_init(&r);
    assert_int_equal(gwx_request_start(&r, "M", 9, body, &next, out), 2);
    /* ids stay Java ints: they wrap to 0 */
    assert_string_equal(out[GWX_SHARED], "{\"id\":2147483647,\"device\":\"M\",\"client\":false,"
                                         "\"keys\":[\"a\",\"b\"]}");
    assert_string_equal(out[GWX_CLIENT],
                        "{\"id\":0,\"device\":\"M\",\"client\":true,\"key\":\"serial\"}");
    assert_int_equal(next, 1);
    assert_string_equal(gwx_request_single_key(&r, 0), "serial");
    assert_null(gwx_request_single_key(&r, 2147483647));
    assert_int_equal(gwx_request_answer(&r, 0, client, &text, &dev_id), 0);
    assert_null(text);
    /* Nothing found is an empty scope, still an answer. */
    assert_int_equal(gwx_request_answer(&r, 2147483647, none, &text, &dev_id), 1);
    assert_int_equal(dev_id, 9);
    assert_string_equal(text, "{\"client\":{\"serial\":\"X1\"},\"shared\":{}}");
    free(text);
    free(out[GWX_SHARED]);
    free(out[GWX_CLIENT]);
    json_object_put(body);
    json_object_put(client);
    json_object_put(none);
}

static void test_request_repeated_key_is_one(void **state)
{
    struct gwx_request r;
    json_object *body = json_tokener_parse("{\"sharedKeys\":\"sp,sp,\"}");
    json_object *v = json_tokener_parse("{\"sp\":1}");
    char *out[GWX_SCOPES], *text = NULL;
    int next = 3, dev_id;

    (void)state;
    gwx_request_init(&r);
    assert_int_equal(gwx_request_start(&r, "M", 1, body, &next, out), 1);
    assert_string_equal(out[GWX_SHARED], "{\"id\":3,\"device\":\"M\",\"client\":false,\"key\":\"sp\"}");
    assert_string_equal(gwx_request_single_key(&r, 3), "sp");
    assert_int_equal(gwx_request_answer(&r, 3, v, &text, &dev_id), 1);
    assert_string_equal(text, "{\"shared\":{\"sp\":1}}");
    free(text);
    free(out[GWX_SHARED]);
    json_object_put(body);
    json_object_put(v);
}

static void test_request_without_keys(void **state)
{
    struct gwx_request r;
    const char *bodies[] = {"{}", "{\"sharedKeys\":\"\"}", "{\"sharedKeys\":\",,\"}",
                            "{\"sharedKeys\":[\"a\"]}"};
    char *out[GWX_SCOPES];
    int next = 1;

    (void)state;
    gwx_request_init(&r);
    for (size_t i = 0; i < sizeof(bodies) / sizeof(*bodies); i++) {
        json_object *b = json_tokener_parse(bodies[i]);
        assert_int_equal(gwx_request_start(&r, "M", 1, b, &next, out), -EINVAL);
        assert_null(out[GWX_SHARED]);
        assert_null(out[GWX_CLIENT]);
        json_object_put(b);
    }
    assert_int_equal(next, 1);
    assert_int_equal(r.dev_id, -1);
    gwx_request_clear(&r);
}

static void test_request_restart_drops_old(void **state)
{
    struct gwx_request r;
    json_object *body = json_tokener_parse("{\"sharedKeys\":\"a\"}");
    json_object *v = json_object_new_object();
    char *out[GWX_SCOPES], *text = NULL;
    int next = 1, dev_id;

    (void)state;
    gwx_request_init(&r);
    assert_int_equal(gwx_request_start(&r, "M", 1, body, &next, out), 1);
    free(out[GWX_SHARED]);
    assert_int_equal(gwx_request_start(&r, "M", 2, body, &next, out), 1);
    free(out[GWX_SHARED]);
    /* The answer to the first (a previous session's) is stale. */
    assert_int_equal(gwx_request_answer(&r, 1, v, &text, &dev_id), -ENOENT);
    assert_int_equal(gwx_request_answer(&r, 2, v, &text, &dev_id), 1);
    assert_int_equal(dev_id, 2);
    free(text);
    json_object_put(body);
    json_object_put(v);
}

static void test_names(void **state)
{
    static const char *const names[] = {"meter-1", "meter-2", "", "Ünïcode", "meter-10"};
    static const char *const dup[] = {"a", "b", "a"};
    char buf[32];
    struct gwx_names ix;

    (void)state;
    assert_int_equal(gwx_names_init(&ix, names, 5), 0);
    for (long i = 0; i < 5; i++)
        assert_int_equal(gwx_names_find(&ix, names[i]), i);
    assert_int_equal(gwx_names_find(&ix, "meter-3"), -ENOENT);
    assert_int_equal(gwx_names_find(&ix, "meter-1 "), -ENOENT);
    assert_int_equal(gwx_names_find(&ix, NULL), -ENOENT);
    gwx_names_clear(&ix);
    assert_int_equal(gwx_names_find(&ix, "meter-1"), -ENOENT);
    assert_int_equal(gwx_names_init(&ix, dup, 3), -EEXIST);
    assert_int_equal(gwx_names_find(&ix, "a"), -ENOENT);
    assert_int_equal(gwx_names_init(&ix, NULL, 0), 0);
    assert_int_equal(gwx_names_find(&ix, "a"), -ENOENT);
    gwx_names_clear(&ix);

    /* Many names: every one found, none confused. */
    {
        enum { N = 1000 };
        char **many = malloc(N * sizeof(*many));
        for (int i = 0; i < N; i++) {
            snprintf(buf, sizeof(buf), "dev-%d", i);
            many[i] = strdup(buf);
        }
        assert_int_equal(gwx_names_init(&ix, (const char *const *)many, N), 0);
        for (long i = 0; i < N; i++)
            assert_int_equal(gwx_names_find(&ix, many[i]), i);
        assert_int_equal(gwx_names_find(&ix, "dev-1000"), -ENOENT);
        gwx_names_clear(&ix);
        for (int i = 0; i < N; i++)
            free(many[i]);
        free(many);
    }
}

static void test_idmap(void **state)
{
    struct gwx_idmap m = {0};
    uint32_t dev;
    int dev_id, a, b;

    (void)state;
    /* Two devices with the same own id get different gateway ids. */
    a = gwx_idmap_put(&m, 1, 5);
    b = gwx_idmap_put(&m, 2, 5);
    assert_int_not_equal(a, b);
    assert_int_equal(gwx_idmap_take(&m, b, &dev, &dev_id), 0);
    assert_int_equal(dev, 2);
    assert_int_equal(dev_id, 5);
    assert_int_equal(gwx_idmap_take(&m, b, &dev, &dev_id), -ENOENT); /* answered once */
    /* The oldest is forgotten after GWX_CLIENT_RPCS newer ones. */
    for (int i = 0; i < GWX_CLIENT_RPCS; i++)
        gwx_idmap_put(&m, 3, i);
    assert_int_equal(gwx_idmap_take(&m, a, &dev, &dev_id), -ENOENT);
    assert_int_equal(gwx_idmap_take(&m, a + 2 + GWX_CLIENT_RPCS - 1, &dev, &dev_id), 0);
    assert_int_equal(dev, 3);
    assert_int_equal(dev_id, GWX_CLIENT_RPCS - 1);
    /* Ids stay in their range, below the uplink's own. */
    m.next_id = GWX_CLIENT_RPC_ID_MAX;
    assert_int_equal(gwx_idmap_put(&m, 0, 0), GWX_CLIENT_RPC_ID_MAX);
    assert_int_equal(gwx_idmap_put(&m, 0, 1), 1);
    m = (struct gwx_idmap){0}; /* a zeroed map starts at 1 */
    assert_int_equal(gwx_idmap_put(&m, 0, 1), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_wrap),
        cmocka_unit_test(test_request_shared_only),
        cmocka_unit_test(test_request_both_scopes_merge),
        cmocka_unit_test(test_request_repeated_key_is_one),
        cmocka_unit_test(test_request_without_keys),
        cmocka_unit_test(test_request_restart_drops_old),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_idmap),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
