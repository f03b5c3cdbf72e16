/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The uplink's event queue: one eventfd write per wake-up, quiet posts wake nobody but
 * never swallow the wake-up of a later loud one. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cmocka.h>

#include "uplink/events.h"

static struct event *ev(int token)
{
    struct event *e = calloc(1, sizeof(*e));

    assert_non_null(e);
    e->type = EV_DELIVERED;
    e->token = token;
    return e;
}

/* What the eventfd holds (0 when nothing was written), emptying it. */
static uint64_t wakes(int fd)
{
    eventfd_t v = 0;

    return eventfd_read(fd, &v) == 0 ? v : 0;
}

static void free_all(struct event *e, int *n)
{
    while (e) {
        struct event *next = e->next;
        (*n)++;
        event_free(e);
        e = next;
    }
}

static void test_wakes(void **state)
{
    int fd = eventfd(0, EFD_NONBLOCK);
    struct evq q;
    int n = 0;

    (void)state;
    assert_true(fd >= 0);
    evq_init(&q, fd);
    evq_post_quiet(&q, ev(1));
    assert_int_equal(wakes(fd), 0);
    evq_post(&q, ev(2)); /* queued behind a quiet one: still wakes */
    evq_post(&q, ev(3)); /* already told */
    evq_post_quiet(&q, ev(4));
    assert_int_equal(wakes(fd), 1);
    free_all(evq_take(&q), &n);
    assert_int_equal(n, 4);
    evq_post(&q, ev(5)); /* after a take, the next loud post wakes again */
    assert_int_equal(wakes(fd), 1);
    evq_destroy(&q);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wakes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
