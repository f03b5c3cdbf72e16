/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The bus's due-time heap and its command queue (with a second thread posting). */
#include "config.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/cmdq.h"
#include "core/schedule.h"

static void test_heap_order(void **state)
{
    struct schedule s;
    struct sched_entry e;
    uint64_t last = 0;
    unsigned seed = 7;

    schedule_init(&s);
    for (uint32_t i = 0; i < 1000; i++) {
        seed = seed * 1103515245u + 12345u;
        schedule_push(&s, (seed >> 8) % 500, i);
    }
    schedule_remove(&s, 17);
    for (int i = 0; i < 999; i++) {
        assert_true(schedule_pop(&s, &e));
        assert_true(e.due_ms >= last);
        assert_int_not_equal(e.id, 17);
        last = e.due_ms;
    }
    assert_false(schedule_pop(&s, &e));
    schedule_free(&s);
}

static void test_ties_by_id(void **state)
{
    struct schedule s;
    struct sched_entry e;

    schedule_init(&s);
    schedule_push(&s, 5, 3);
    schedule_push(&s, 5, 1);
    schedule_push(&s, 5, 2);
    schedule_push(&s, 4, 9);
    assert_true(schedule_peek(&s, &e));
    assert_int_equal(e.id, 9);
    schedule_pop(&s, &e);
    schedule_pop(&s, &e);
    assert_int_equal(e.id, 1);
    schedule_pop(&s, &e);
    assert_int_equal(e.id, 2);
    schedule_free(&s);
}

#define POSTS 20000

static void *poster(void *arg)
{
    struct cmdq *q = arg;

    for (int i = 0; i < POSTS;) {
        struct command *c = calloc(1, sizeof(*c));
        c->device = (uint32_t)i;
        if (cmdq_push(q, c) == 0)
            i++;
        else
            free(c); /* full: a real sender answers "busy" */
    }
    return NULL;
}

static void test_cmdq_threads(void **state)
{
    struct cmdq q;
    pthread_t t;
    uint32_t next = 0;

    assert_int_equal(cmdq_init(&q, 64), 0);
    pthread_create(&t, NULL, poster, &q);
    while (next < POSTS) {
        struct pollfd p = {.fd = q.efd, .events = POLLIN};
        struct command *c;
        /* Never miss a wake-up: either a command is there or the eventfd fires. */
        while ((c = cmdq_pop(&q))) {
            assert_int_equal(c->device, next);
            next++;
            free(c);
        }
        if (next < POSTS)
            assert_true(poll(&p, 1, 5000) == 1);
    }
    pthread_join(t, NULL);
    cmdq_destroy(&q);
}

static void test_cmdq_bound(void **state)
{
    struct cmdq q;
    struct command *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));

    assert_int_equal(cmdq_init(&q, 1), 0);
    assert_int_equal(cmdq_push(&q, a), 0);
    assert_int_equal(cmdq_push(&q, b), -EAGAIN);
    assert_int_equal(cmdq_length(&q), 1);
    free(b);
    cmdq_destroy(&q); /* frees a */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_heap_order),
        cmocka_unit_test(test_ties_by_id),
        cmocka_unit_test(test_cmdq_threads),
        cmocka_unit_test(test_cmdq_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
