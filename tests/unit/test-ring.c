/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The SPSC ring and the key table: behaviour at the edges (full, empty, wrap-around), and a
 * two-thread stress run checked for order and completeness. Built under ThreadSanitizer in
 * CI (make check with --enable-tsan), which checks the acquire/release pairing.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/keytab.h"
#include "core/ring.h"

static void test_push_pop(void **state)
{
    struct ring *r = ring_new(5); /* rounded to 8 */
    struct sample s = {0}, out[16];

    assert_int_equal(ring_capacity(r), 8);
    for (int i = 0; i < 8; i++) {
        s.v.i = i;
        assert_true(ring_push(r, &s));
    }
    s.v.i = 99;
    assert_false(ring_push(r, &s)); /* full: refused and counted */
    assert_int_equal(ring_dropped(r), 1);
    assert_int_equal(ring_size(r), 8);
    assert_int_equal(ring_pop(r, out, 3), 3);
    assert_int_equal(out[0].v.i, 0);
    assert_int_equal(out[2].v.i, 2);
    for (int i = 8; i < 11; i++) {
        s.v.i = i;
        assert_true(ring_push(r, &s)); /* wraps around */
    }
    assert_int_equal(ring_pop(r, out, 16), 8);
    for (int i = 0; i < 8; i++)
        assert_int_equal(out[i].v.i, i + 3);
    assert_int_equal(ring_pop(r, out, 16), 0);
    ring_free(r);
}

static void test_free_releases_strings(void **state)
{
    struct ring *r = ring_new(4);
    struct sample s = {.kind = VK_STRING};

    s.v.s = strdup("left behind");
    assert_true(ring_push(r, &s));
    ring_free(r); /* LeakSanitizer/valgrind would report the string otherwise */
}

#define STRESS_N 5000000u

struct stress {
    struct ring *r;
    uint64_t received;
    bool in_order;
};

static void *producer(void *arg)
{
    struct stress *st = arg;
    struct sample s = {0};

    for (uint64_t i = 0; i < STRESS_N;) {
        s.v.u = i;
        s.device = (uint32_t)(i & 0xffff);
        s.ts_ms = (int64_t)(i * 3);
        if (ring_push(st->r, &s))
            i++;
    }
    return NULL;
}

static void *consumer(void *arg)
{
    struct stress *st = arg;
    struct sample buf[256];

    while (st->received < STRESS_N) {
        size_t n = ring_pop(st->r, buf, 256);
        for (size_t i = 0; i < n; i++) {
            uint64_t want = st->received + i;
            if (buf[i].v.u != want || buf[i].device != (want & 0xffff) ||
                buf[i].ts_ms != (int64_t)(want * 3))
                st->in_order = false;
        }
        st->received += n;
    }
    return NULL;
}

static void test_stress_two_threads(void **state)
{
    struct stress st = {.r = ring_new(1024), .in_order = true};
    pthread_t p, c;
    uint64_t dropped;

    pthread_create(&c, NULL, consumer, &st);
    pthread_create(&p, NULL, producer, &st);
    pthread_join(p, NULL);
    pthread_join(c, NULL);
    assert_true(st.in_order);
    assert_int_equal(st.received, STRESS_N);
    /* The producer retries refused pushes, so "dropped" counts the times it was full. */
    dropped = ring_dropped(st.r);
    printf("# %u samples through a 1024-slot ring; producer found it full %llu times\n",
           STRESS_N, (unsigned long long)dropped);
    ring_free(st.r);
}

struct kt_stress {
    struct keytab *kt;
    _Atomic bool done;
    bool ok;
};

static void *kt_reader(void *arg)
{
    struct kt_stress *st = arg;

    while (!atomic_load(&st->done)) {
        size_t n = keytab_count(st->kt);
        for (size_t i = 0; i < n; i++) {
            char want[32];
            snprintf(want, sizeof(want), "k%zu", i);
            if (strcmp(keytab_get(st->kt, i), want) != 0)
                st->ok = false;
        }
    }
    return NULL;
}

static void test_keytab_publication(void **state)
{
    struct kt_stress st = {.kt = keytab_new(KEYTAB_MAX), .ok = true};
    pthread_t t;

    pthread_create(&t, NULL, kt_reader, &st);
    for (int i = 0; i < KEYTAB_MAX; i++) {
        char k[16];
        snprintf(k, sizeof(k), "k%d", i);
        assert_int_equal(keytab_intern(st.kt, k), i);
    }
    assert_int_equal(keytab_intern(st.kt, "k5"), 5);
    assert_int_equal(keytab_intern(st.kt, "one-too-many"), -ENOSPC);
    atomic_store(&st.done, true);
    pthread_join(t, NULL);
    assert_true(st.ok);
    assert_int_equal(keytab_find(st.kt, "k7"), 7);
    assert_int_equal(keytab_find(st.kt, "nope"), -ENOENT);
    keytab_free(st.kt);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_push_pop),
        cmocka_unit_test(test_free_releases_strings),
        cmocka_unit_test(test_stress_two_threads),
        cmocka_unit_test(test_keytab_publication),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
