/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Report strategies: always, change with deadband (against the last reported value),
 * heartbeat, exact comparison of booleans and strings. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/report.h"

static struct value num(double d)
{
    return (struct value){.kind = VK_DOUBLE, .d = d};
}

static void test_always(void **state)
{
    struct report_policy p = {.mode = REPORT_ALWAYS};
    struct report_state st = {0};
    struct value v = num(1);

    for (int i = 0; i < 3; i++)
        assert_true(report_decide(&p, &st, &v, (uint64_t)i));
    report_state_clear(&st);
}

static void test_change_exact(void **state)
{
    struct report_policy p = {.mode = REPORT_CHANGE};
    struct report_state st = {0};
    struct value a = {.kind = VK_INT, .i = 5}, b = {.kind = VK_INT, .i = 6};

    assert_true(report_decide(&p, &st, &a, 0)); /* first value */
    assert_false(report_decide(&p, &st, &a, 1));
    assert_true(report_decide(&p, &st, &b, 2));
    assert_false(report_decide(&p, &st, &b, 3));
    report_state_clear(&st);
}

static void test_deadband_drift(void **state)
{
    struct report_policy p = {.mode = REPORT_CHANGE, .deadband = 0.5};
    struct report_state st = {0};
    struct value v;

    v = num(10.0);
    assert_true(report_decide(&p, &st, &v, 0));
    /* A slow drift: each step below the deadband, but reported once it adds up. */
    v = num(10.2);
    assert_false(report_decide(&p, &st, &v, 1));
    v = num(10.4);
    assert_false(report_decide(&p, &st, &v, 2));
    v = num(10.5);
    assert_true(report_decide(&p, &st, &v, 3));
    v = num(10.1);
    assert_false(report_decide(&p, &st, &v, 4));
    v = num(9.9);
    assert_true(report_decide(&p, &st, &v, 5));
    report_state_clear(&st);
}

static void test_heartbeat(void **state)
{
    struct report_policy p = {.mode = REPORT_CHANGE, .heartbeat_s = 10};
    struct report_state st = {0};
    struct value v = num(1);

    assert_true(report_decide(&p, &st, &v, 1000));
    assert_false(report_decide(&p, &st, &v, 5000));
    assert_false(report_decide(&p, &st, &v, 10999));
    assert_true(report_decide(&p, &st, &v, 11000));
    assert_false(report_decide(&p, &st, &v, 12000));
    report_state_clear(&st);
}

static void test_bool_string_kind(void **state)
{
    struct report_policy p = {.mode = REPORT_CHANGE, .deadband = 100};
    struct report_state st = {0};
    struct value t = {.kind = VK_BOOL, .b = true}, f = {.kind = VK_BOOL, .b = false};
    struct value s1 = {.kind = VK_STRING, .s = (char *)"abc"};
    struct value s2 = {.kind = VK_STRING, .s = (char *)"abd"};
    char copy[] = "abc";
    struct value s3 = {.kind = VK_STRING, .s = copy};

    /* The deadband does not apply to booleans and strings. */
    assert_true(report_decide(&p, &st, &t, 0));
    assert_true(report_decide(&p, &st, &f, 1));
    assert_false(report_decide(&p, &st, &f, 2));
    assert_true(report_decide(&p, &st, &s3, 3)); /* kind changed */
    copy[0] = 'x'; /* the caller's buffer changes; the state kept its own copy of "abc" */
    assert_false(report_decide(&p, &st, &s1, 4));
    assert_true(report_decide(&p, &st, &s2, 5));
    report_reset(&st);
    assert_true(report_decide(&p, &st, &s2, 6)); /* forgotten: reported again */
    report_state_clear(&st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_always),
        cmocka_unit_test(test_change_exact),
        cmocka_unit_test(test_deadband_drift),
        cmocka_unit_test(test_heartbeat),
        cmocka_unit_test(test_bool_string_kind),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
