/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Pacing under ThingsBoard rate limits: the spec parser, and that a sender that sends
 * whenever pacing allows never exceeds a window, as seen by either kind of server bucket. */
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

#include "tb/pacing.h"

static void test_parse(void **state)
{
    struct pace_limit l;
    char err[128], text[64];

    assert_int_equal(pace_parse(NULL, &l, err, sizeof(err)), 0);
    assert_int_equal(l.n, 0);
    assert_int_equal(pace_parse("", &l, err, sizeof(err)), 0);
    assert_int_equal(l.n, 0);
    assert_int_equal(pace_parse("200:1,6000:60", &l, err, sizeof(err)), 0);
    assert_int_equal(l.n, 2);
    pace_format(&l, text, sizeof(text));
    assert_string_equal(text, "180:1,5400:60"); /* a tenth below */
    assert_int_equal(pace_capacity(&l), 180);
    assert_int_equal(pace_parse(" 1:1 , 3:10 ", &l, err, sizeof(err)), 0);
    pace_format(&l, text, sizeof(text));
    assert_string_equal(text, "1:1,3:10");
    assert_int_equal(pace_capacity(&l), 1);

    static const char *const bad[] = {"200", "200:", ":1", "200:1,", "200:0", "0:1", "-5:1",
                                      "200:1;6000:60", "a:b", "1:1,1:2,1:3,1:4,1:5",
                                      "99999999999:1", "1:999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(pace_parse(bad[i], &l, err, sizeof(err)), -EINVAL);
        assert_int_equal(l.n, 0);
        assert_true(strlen(err) > 0);
    }
}

/* Slot numbers are kept modulo 2^32 and counters saturate: a window that straddles the
 * wrap still counts what it holds, and a huge take only fills the window. */
static void test_slot_wrap_and_saturation(void **state)
{
    struct pace_limit l;
    char err[128];
    const uint64_t wrap_ms = ((uint64_t)1 << 32) * 100; /* slot 2^32 of a 1 s period */

    assert_int_equal(pace_parse("10:1", &l, err, sizeof(err)), 0); /* 9 with the margin */
    pace_take(&l, 5, wrap_ms - 300);
    pace_take(&l, 4, wrap_ms + 200);
    assert_false(pace_allows(&l, 1, wrap_ms + 500)); /* both sides of the wrap count */
    assert_true(pace_allows(&l, 4, wrap_ms + 900));  /* the first take has left */
    assert_false(pace_allows(&l, 6, wrap_ms + 900));
    assert_true(pace_allows(&l, 9, wrap_ms + 1300));

    pace_take(&l, UINT64_MAX, 5000);
    pace_take(&l, UINT64_MAX, 5000);
    assert_false(pace_allows(&l, 1, 5000));
    assert_true(pace_allows(&l, 9, 6100)); /* full, not wrapped around to empty */
    (void)state;
}

static void test_window_boundaries(void **state)
{
    struct pace_limit l;
    char err[128];

    assert_int_equal(pace_parse("10:1", &l, err, sizeof(err)), 0); /* 9 with the margin */
    assert_true(pace_allows(&l, 9, 1000));
    pace_take(&l, 9, 1000);
    assert_false(pace_allows(&l, 1, 1000));
    assert_false(pace_allows(&l, 1, 2099)); /* still inside period + one slot */
    assert_int_equal(pace_retry_at(&l, 2099), 2100);
    assert_true(pace_allows(&l, 9, 2100));
    /* More than a whole window at once: only into an empty window. */
    assert_false(pace_allows(&l, 20, 1500));
    assert_true(pace_allows(&l, 20, 5000));
    pace_take(&l, 20, 5000);
    assert_false(pace_allows(&l, 1, 5500));
}

/* Send as fast as pacing allows for sim_ms, with events of size n; check every interval
 * of one period against the original capacity, and both server bucket models. */
static unsigned simulate(const char *spec, unsigned cap, unsigned period_ms, unsigned n,
                         unsigned sim_ms)
{
    struct pace_limit l;
    char err[128];
    uint64_t *t = calloc(sim_ms + 1, sizeof(*t));
    unsigned sent = 0;
    double greedy = cap, interval = cap;
    uint64_t interval_start = 0, t0 = 1000000;

    assert_int_equal(pace_parse(spec, &l, err, sizeof(err)), 0);
    for (uint64_t now = t0; now < t0 + sim_ms; now++) {
        greedy = greedy + (double)cap / period_ms > cap ? cap : greedy + (double)cap / period_ms;
        if (now - interval_start >= period_ms) {
            interval_start = now - (now - t0) % period_ms;
            interval = cap;
        }
        while (pace_allows(&l, n, now)) {
            pace_take(&l, n, now);
            t[sent++] = now;
            greedy -= n;
            interval -= n;
            assert_true(greedy >= -1e-9);
            assert_true(interval >= 0);
        }
    }
    for (unsigned i = 0, j = 0; i < sent; i++) {
        while (t[i] - t[j] >= period_ms)
            j++;
        assert_true((i - j + 1) * n <= cap);
    }
    free(t);
    return sent * n;
}

static void test_no_window_is_ever_exceeded(void **state)
{
    unsigned got;

    got = simulate("10:1", 10, 1000, 1, 20000);
    assert_true(got >= 150 && got <= 200); /* 8.2/s: the margin and the extra slot */
    got = simulate("100:1", 100, 1000, 7, 20000);
    assert_true(got >= 1400 && got <= 2000);
    got = simulate("50:1,300:60", 50, 1000, 1, 60000);
    assert_true(got <= 300);
    got = simulate("50:1,300:60", 300, 60000, 1, 60000);
    assert_true(got >= 240);
}

static void level(struct pace_level *v, const char *msgs, const char *tmsgs, const char *points)
{
    char err[128];

    assert_int_equal(pace_parse(msgs, &v->msgs, err, sizeof(err)), 0);
    assert_int_equal(pace_parse(tmsgs, &v->tmsgs, err, sizeof(err)), 0);
    assert_int_equal(pace_parse(points, &v->points, err, sizeof(err)), 0);
    v->every_msg = false; /* a device's level, unless a test says otherwise */
}

/* As DefaultTransportRateLimitService.checkEntityRateLimit: a message with data points
 * costs a telemetry message and its points and nothing against "messages"; one without
 * costs a message only. */
static void test_level_counts_by_kind(void **state)
{
    struct pace_level dev, none;
    uint64_t at;

    memset(&none, 0, sizeof(none));
    level(&dev, "10:1", "10:1", "100:1");
    assert_true(pace_level_set(&dev));
    assert_false(pace_level_set(&none));
    /* 9 messages (10 less the margin) fill "messages" ... */
    for (int i = 0; i < 9; i++)
        assert_true(pace_admit(&dev, &none, 0, 1000, &at));
    assert_false(pace_admit(&dev, &none, 0, 1000, &at));
    assert_true(at > 1000 && at <= 2100);
    /* ... and leave telemetry alone: the old code counted telemetry as a message too. */
    for (int i = 0; i < 9; i++)
        assert_true(pace_admit(&dev, &none, 10, 1000, &at));
    assert_false(pace_admit(&dev, &none, 1, 1000, &at));
    /* Nor does telemetry use up "messages". */
    level(&dev, "10:1", "", "");
    for (int i = 0; i < 50; i++)
        assert_true(pace_admit(&dev, &none, 5, 1000, &at));
    assert_true(pace_admit(&dev, &none, 0, 1000, &at));
}

/* The tenant's level is shared: two devices with room of their own are held back by it. */
static void test_tenant_level_is_shared(void **state)
{
    struct pace_level a, b, tenant;
    uint64_t at;
    int sent = 0;

    level(&a, "", "100:1", "");
    level(&b, "", "100:1", "");
    level(&tenant, "", "10:1", "");
    for (int i = 0; i < 20; i++) {
        sent += pace_admit(&a, &tenant, 1, 5000, &at);
        sent += pace_admit(&b, &tenant, 1, 5000, &at);
    }
    assert_int_equal(sent, 9);
    assert_true(at > 5000);
    /* A refusal counts against neither level. */
    assert_true(pace_level_allows(&a, 1, 5000));
    /* Messages sent regardless still count against both. */
    level(&tenant, "3:1", "", "");
    for (int i = 0; i < 5; i++)
        pace_count(&a, &tenant, 0, 7000);
    assert_false(pace_level_allows(&tenant, 0, 7000));
    assert_true(pace_level_allows(&tenant, 1, 7000));
}

/* A gateway session's level: telemetry costs a message too, and a limit learnt late is
 * charged with every message the ledger holds. */
static void test_gateway_level_counts_every_message(void **state)
{
    struct pace_level v = {0};
    struct pace_ledger g = {0};
    struct pace_limit l;
    char err[128];

    level(&v, "3:1", "100:1", "1000:1");
    v.every_msg = true;
    pace_level_take(&v, 10, 5000);
    pace_level_take(&v, 10, 5000);
    assert_true(pace_level_allows(&v, 10, 5000));
    assert_true(pace_level_allows(&v, 0, 5000));
    pace_level_take(&v, 10, 5000);
    /* Three messages, all telemetry: the messages limit is spent for both kinds. */
    assert_false(pace_level_allows(&v, 10, 5000));
    assert_false(pace_level_allows(&v, 0, 5000));
    assert_true(pace_level_retry_at(&v, 10, 5000) > 5000);
    v.every_msg = false;
    assert_true(pace_level_allows(&v, 10, 5000));

    pace_ledger_add(&g, 5, 1000);
    pace_ledger_add(&g, 0, 1000);
    assert_int_equal(pace_parse("2:1", &l, err, sizeof(err)), 0);
    pace_replay(&l, PACE_MSGS, &g);
    assert_true(pace_allows(&l, 1, 1000));
    assert_int_equal(pace_parse("2:1", &l, err, sizeof(err)), 0);
    pace_replay(&l, PACE_ALL_MSGS, &g);
    assert_false(pace_allows(&l, 1, 1000));
    (void)state;
}

/* After ThingsBoard closed a session, a full window passes before more is sent. */
static void test_fill_waits_a_whole_window(void **state)
{
    struct pace_level v;

    level(&v, "", "100:1,1000:10", "");
    assert_int_equal(pace_level_period_ms(&v), 10000);
    pace_level_fill(&v, 20000);
    assert_false(pace_level_allows(&v, 1, 20000));
    assert_false(pace_level_allows(&v, 1, 29000));
    assert_true(pace_level_allows(&v, 1, 31001));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_gateway_level_counts_every_message),
        cmocka_unit_test(test_window_boundaries),
        cmocka_unit_test(test_no_window_is_ever_exceeded),
        cmocka_unit_test(test_level_counts_by_kind),
        cmocka_unit_test(test_tenant_level_is_shared),
        cmocka_unit_test(test_fill_waits_a_whole_window),
        cmocka_unit_test(test_slot_wrap_and_saturation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
