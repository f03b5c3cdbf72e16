/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Telling a device profile that refuses JSON uploads from a bad batch, a rate limit or an
 * outage. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "uplink/closewatch.h"

/* One session: an upload at t, closed at t + after_ms, acked or not. */
static bool session(struct close_watch *w, uint64_t t, uint64_t after_ms, bool acked)
{
    close_watch_up(w);
    close_watch_published(w, t);
    if (acked)
        close_watch_acked(w);
    return close_watch_lost(w, t + after_ms);
}

static void test_every_upload_refused(void **state)
{
    struct close_watch w = {0};

    assert_false(session(&w, 1000, 50, false));
    assert_false(w.flagged);
    assert_true(session(&w, 5000, 50, false)); /* raised once */
    assert_true(w.flagged);
    assert_false(session(&w, 9000, 50, false)); /* still flagged, not raised again */
    assert_true(w.flagged);
    /* One acknowledged upload clears it. */
    close_watch_up(&w);
    close_watch_published(&w, 20000);
    assert_true(close_watch_acked(&w));
    assert_false(w.flagged);
}

static void test_other_closes(void **state)
{
    struct close_watch w = {0};

    /* A bad batch: the session got PUBACKs for what came before it. */
    for (int i = 0; i < 5; i++)
        assert_false(session(&w, 1000u * i, 50, true));
    /* An outage long after the last upload. */
    for (int i = 0; i < 5; i++)
        assert_false(session(&w, 100000u * i, 60000, false));
    /* Sessions that sent nothing neither count nor clear. */
    assert_false(session(&w, 1000000, 50, false));
    close_watch_up(&w);
    assert_false(close_watch_lost(&w, 1000100));
    assert_true(session(&w, 1001000, 50, false));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_upload_refused),
        cmocka_unit_test(test_other_closes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
