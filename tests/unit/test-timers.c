/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The uplink's per-device deadline heap: order, moving an entry, removing one. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "uplink/timers.h"

static void test_order_and_moves(void **state)
{
    struct timers t;
    uint64_t want[1000], last = 0;
    unsigned seed = 11, seen = 0;
    uint32_t id;

    (void)state;
    timers_init(&t, 1000);
    for (uint32_t i = 0; i < 1000; i++) {
        seed = seed * 1103515245u + 12345u;
        want[i] = 1 + (seed >> 8) % 5000;
        timers_set(&t, i, want[i]);
    }
    /* Every third one moves, every seventh one goes. */
    for (uint32_t i = 0; i < 1000; i += 3) {
        seed = seed * 1103515245u + 12345u;
        want[i] = 1 + (seed >> 8) % 5000;
        timers_set(&t, i, want[i]);
    }
    for (uint32_t i = 0; i < 1000; i += 7) {
        timers_set(&t, i, TIMERS_NEVER);
        want[i] = TIMERS_NEVER;
    }
    assert_false(timers_pop_due(&t, 0, &id));
    while (timers_next(&t) != TIMERS_NEVER) {
        uint64_t due = timers_next(&t);
        assert_true(timers_pop_due(&t, due, &id));
        assert_int_equal(want[id], due);
        assert_true(due >= last);
        last = due;
        want[id] = 0;
        seen++;
    }
    assert_int_equal(seen, 1000 - 143);
    timers_free(&t);
}

static void test_one_entry_per_id(void **state)
{
    struct timers t;
    uint32_t id;

    (void)state;
    timers_init(&t, 4);
    timers_set(&t, 2, 50);
    timers_set(&t, 2, 10);
    timers_set(&t, 3, 10);
    timers_set(&t, 9, 1); /* out of range: ignored */
    assert_int_equal(timers_next(&t), 10);
    assert_true(timers_pop_due(&t, 10, &id));
    assert_int_equal(id, 2); /* ties: the lower device first */
    assert_true(timers_pop_due(&t, 10, &id));
    assert_int_equal(id, 3);
    assert_false(timers_pop_due(&t, 1000, &id));
    timers_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_and_moves),
        cmocka_unit_test(test_one_entry_per_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
