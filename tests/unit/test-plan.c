/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Read planning: hand-picked tricky maps, and a brute-force proof on random small maps that
 * the greedy plan uses the fewest requests any valid plan could; with per-tag poll periods,
 * that the grouped plans cost the fewest requests per second of any plan that reads every
 * tag at its own period.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/plan.h"

#define MAXT 64

struct fixture {
    struct tag_config tags[MAXT];
    struct plan_tag pt[MAXT];
    size_t n;
};

static void add(struct fixture *f, enum mb_table table, int addr, enum value_type type, int count)
{
    struct tag_config *t = &f->tags[f->n];

    memset(t, 0, sizeof(*t));
    t->table = table;
    t->address = addr;
    t->type = type;
    t->count = type == VT_STRING ? count : (int)value_type_width(type, 0);
    f->pt[f->n] = (struct plan_tag){.tag = t, .key = (uint16_t)f->n};
    f->n++;
}

static struct plan build(struct fixture *f, enum driver_kind driver)
{
    struct plan p;
    struct plan_limits lim = plan_limits_for(driver);

    plan_build(&p, f->pt, f->n, &lim);
    return p;
}

static void expect_block(const struct plan *p, size_t i, enum mb_table table, int addr, int count,
                         uint32_t ntags)
{
    assert_true(i < p->n_blocks);
    assert_int_equal(p->blocks[i].table, table);
    assert_int_equal(p->blocks[i].address, addr);
    assert_int_equal(p->blocks[i].count, count);
    assert_int_equal(p->blocks[i].n, ntags);
}

static void test_contiguous_merge(void **state)
{
    struct fixture f = {0};
    struct plan p;

    add(&f, TABLE_HOLDING, 10, VT_UINT32, 0);
    add(&f, TABLE_HOLDING, 12, VT_FLOAT32, 0);
    add(&f, TABLE_HOLDING, 0, VT_INT16, 0);
    add(&f, TABLE_HOLDING, 1, VT_INT16, 0);
    p = build(&f, DRIVER_MODBUS_TCP);
    /* TCP: bridging a 8-register gap is cheaper than a second round trip. */
    assert_int_equal(p.n_blocks, 1);
    expect_block(&p, 0, TABLE_HOLDING, 0, 14, 4);
    /* Tags are sorted by address inside the plan. */
    assert_int_equal(p.tags[0].tag->address, 0);
    assert_int_equal(p.tags[3].tag->address, 12);
    plan_free(&p);
}

static void test_rtu_gap_limit(void **state)
{
    struct fixture f = {0};
    struct plan_limits lim = plan_limits_for(DRIVER_MODBUS_RTU);
    struct plan p;

    add(&f, TABLE_HOLDING, 0, VT_INT16, 0);
    add(&f, TABLE_HOLDING, 1 + (int)lim.max_gap_regs, VT_INT16, 0);      /* gap = max: merged */
    add(&f, TABLE_HOLDING, 3 + 2 * (int)lim.max_gap_regs, VT_INT16, 0); /* gap = max+1: not */
    p = build(&f, DRIVER_MODBUS_RTU);
    assert_int_equal(p.n_blocks, 2);
    expect_block(&p, 0, TABLE_HOLDING, 0, 2 + (int)lim.max_gap_regs, 2);
    expect_block(&p, 1, TABLE_HOLDING, 3 + 2 * (int)lim.max_gap_regs, 1, 1);
    plan_free(&p);
}

static void test_tables_never_merge(void **state)
{
    struct fixture f = {0};
    struct plan p;

    add(&f, TABLE_INPUT, 0, VT_INT16, 0);
    add(&f, TABLE_HOLDING, 0, VT_INT16, 0);
    add(&f, TABLE_COIL, 0, VT_BOOL, 0);
    add(&f, TABLE_DISCRETE, 0, VT_BOOL, 0);
    add(&f, TABLE_COIL, 7, VT_BOOL, 0);
    p = build(&f, DRIVER_MODBUS_TCP);
    assert_int_equal(p.n_blocks, 4);
    expect_block(&p, 0, TABLE_COIL, 0, 8, 2);
    plan_free(&p);
}

static void test_limit_never_splits_a_tag(void **state)
{
    struct fixture f = {0};
    struct plan p;

    add(&f, TABLE_HOLDING, 0, VT_INT16, 0);
    add(&f, TABLE_HOLDING, 124, VT_UINT32, 0); /* would end at 126: a new request */
    add(&f, TABLE_HOLDING, 126, VT_STRING, 123);
    p = build(&f, DRIVER_MODBUS_TCP);
    assert_int_equal(p.n_blocks, 2);
    expect_block(&p, 0, TABLE_HOLDING, 0, 1, 1);
    expect_block(&p, 1, TABLE_HOLDING, 124, 125, 2);
    plan_free(&p);
}

static void test_overlaps_share_a_request(void **state)
{
    struct fixture f = {0};
    struct plan p;

    /* Bits of one register, a float and its low word read as uint16. */
    add(&f, TABLE_HOLDING, 30, VT_BIT, 0);
    add(&f, TABLE_HOLDING, 30, VT_BIT, 0);
    add(&f, TABLE_HOLDING, 100, VT_FLOAT32, 0);
    add(&f, TABLE_HOLDING, 101, VT_UINT16, 0);
    p = build(&f, DRIVER_MODBUS_RTU);
    assert_int_equal(p.n_blocks, 2);
    expect_block(&p, 0, TABLE_HOLDING, 30, 1, 2);
    expect_block(&p, 1, TABLE_HOLDING, 100, 2, 2);
    plan_free(&p);
}

static void test_bits_limit(void **state)
{
    struct fixture f = {0};
    struct plan p;

    add(&f, TABLE_COIL, 0, VT_BOOL, 0);
    add(&f, TABLE_COIL, 1999, VT_BOOL, 0); /* 2000 bits: one request */
    add(&f, TABLE_COIL, 2000, VT_BOOL, 0); /* 2001: another */
    p = build(&f, DRIVER_MODBUS_TCP);
    assert_int_equal(p.n_blocks, 2);
    expect_block(&p, 0, TABLE_COIL, 0, 2000, 2);
    plan_free(&p);
}

static void test_split_block(void **state)
{
    struct fixture f = {0};
    struct plan p;
    size_t n;

    add(&f, TABLE_INPUT, 0, VT_INT16, 0);
    add(&f, TABLE_INPUT, 2, VT_FLOAT32, 0);
    add(&f, TABLE_INPUT, 3, VT_UINT16, 0); /* overlaps the float: stays with it */
    add(&f, TABLE_INPUT, 9, VT_INT16, 0);
    add(&f, TABLE_HOLDING, 0, VT_INT16, 0);
    p = build(&f, DRIVER_MODBUS_TCP);
    assert_int_equal(p.n_blocks, 2);
    expect_block(&p, 0, TABLE_INPUT, 0, 10, 4); /* tables in enum order: input before holding */
    n = plan_split_block(&p, 0);
    assert_int_equal(n, 3);
    assert_int_equal(p.n_blocks, 4);
    expect_block(&p, 0, TABLE_INPUT, 0, 1, 1);
    expect_block(&p, 1, TABLE_INPUT, 2, 2, 2);
    expect_block(&p, 2, TABLE_INPUT, 9, 1, 1);
    expect_block(&p, 3, TABLE_HOLDING, 0, 1, 1);
    assert_true(p.blocks[0].split && p.blocks[2].split && !p.blocks[3].split);
    plan_free(&p);
}

/* ---- brute force ---- */

static const struct plan_limits small = {.max_regs = 20, .max_bits = 40, .max_gap_regs = 3,
                                         .max_gap_bits = 8};

/* Can these tags be read in one request under lim? */
static bool feasible(struct tag_config **g, size_t n)
{
    int lo = 1 << 30, hi = 0;
    unsigned char cover[400] = {0};
    bool bits;

    for (size_t i = 0; i < n; i++) {
        if (g[i]->table != g[0]->table)
            return false;
        lo = g[i]->address < lo ? g[i]->address : lo;
        hi = g[i]->address + g[i]->count > hi ? g[i]->address + g[i]->count : hi;
        for (int a = g[i]->address; a < g[i]->address + g[i]->count; a++)
            cover[a] = 1;
    }
    bits = table_is_bits(g[0]->table);
    if ((unsigned)(hi - lo) > (bits ? small.max_bits : small.max_regs))
        return false;
    for (int a = lo, run = 0; a < hi; a++) {
        run = cover[a] ? 0 : run + 1;
        if ((unsigned)run > (bits ? small.max_gap_bits : small.max_gap_regs))
            return false;
    }
    return true;
}

/* What one request of these tags costs, or SIZE_MAX when it is not a valid request. */
typedef size_t block_cost_fn(struct tag_config **members, size_t m);

static size_t one_request(struct tag_config **members, size_t m)
{
    return feasible(members, m) ? 1 : SIZE_MAX;
}

/* Lowest total cost of any partition of the n tags into valid requests. Every request
 * costs at least 1, so a partition with limit groups or more is no better than limit. */
static size_t best(struct tag_config **tags, size_t n, size_t *group_of, size_t k, size_t groups,
                   size_t limit, block_cost_fn *cost_of)
{
    size_t result = limit;

    if (groups >= limit)
        return limit;
    if (k == n) {
        size_t cost = 0;
        for (size_t g = 0; g < groups; g++) {
            struct tag_config *members[16];
            size_t m = 0, c;
            for (size_t i = 0; i < n; i++)
                if (group_of[i] == g)
                    members[m++] = tags[i];
            c = cost_of(members, m);
            if (c == SIZE_MAX)
                return limit;
            cost += c;
        }
        return cost < limit ? cost : limit;
    }
    for (size_t g = 0; g <= groups; g++) {
        size_t r;
        group_of[k] = g;
        r = best(tags, n, group_of, k + 1, g == groups ? groups + 1 : groups, result, cost_of);
        if (r < result)
            result = r;
    }
    return result;
}

static void test_greedy_is_minimal(void **state)
{
    unsigned seed = 2024;

    for (int round = 0; round < 300; round++) {
        struct fixture f = {0};
        struct tag_config *ptrs[MAXT];
        size_t group_of[MAXT];
        struct plan p;
        size_t n = 3 + (size_t)(round % 5);

        for (size_t i = 0; i < n; i++) {
            static const enum value_type types[] = {VT_INT16, VT_UINT32, VT_FLOAT64};
            seed = seed * 1103515245u + 12345u;
            if ((seed >> 16) % 4 == 0)
                add(&f, TABLE_COIL, (int)((seed >> 8) % 60), VT_BOOL, 0);
            else
                add(&f, TABLE_HOLDING, (int)((seed >> 8) % 60), types[(seed >> 20) % 3], 0);
        }
        for (size_t i = 0; i < n; i++)
            ptrs[i] = &f.tags[i];
        plan_build(&p, f.pt, f.n, &small);
        assert_int_equal(p.n_blocks, best(ptrs, n, group_of, 0, 0, n + 1, one_request));
        /* And every block the planner made is itself valid. */
        for (size_t b = 0; b < p.n_blocks; b++) {
            struct tag_config *members[MAXT];
            for (uint32_t k = 0; k < p.blocks[b].n; k++)
                members[k] = (struct tag_config *)p.tags[p.blocks[b].first + k].tag;
            assert_true(feasible(members, p.blocks[b].n));
        }
        plan_free(&p);
    }
}

/* ---- poll periods ---- */

static void set_period(struct fixture *f, size_t i, int poll_ms)
{
    f->tags[i].poll_ms = poll_ms;
}

static void test_groups_by_period(void **state)
{
    struct fixture f = {0};
    struct plan_limits lim = plan_limits_for(DRIVER_MODBUS_TCP);
    struct poll_group *g;
    size_t n;

    add(&f, TABLE_HOLDING, 0, VT_UINT16, 0);  /* 1000 */
    add(&f, TABLE_HOLDING, 1, VT_UINT16, 0);  /* 100 */
    add(&f, TABLE_HOLDING, 2, VT_UINT16, 0);  /* 1000 */
    add(&f, TABLE_HOLDING, 3, VT_UINT16, 0);  /* 100 */
    add(&f, TABLE_INPUT, 0, VT_FLOAT32, 0);   /* 10000 */
    set_period(&f, 0, 0); /* the device's: 1000 */
    set_period(&f, 1, 100);
    set_period(&f, 2, 1000);
    set_period(&f, 3, 100);
    set_period(&f, 4, 10000);
    n = plan_build_groups(&g, f.pt, f.n, 1000, &lim);
    assert_int_equal(n, 3);
    /* Fastest first; each period's tags coalesced into one request. */
    assert_int_equal(g[0].period_ms, 100);
    expect_block(&g[0].plan, 0, TABLE_HOLDING, 1, 3, 2);
    assert_int_equal(g[0].plan.n_blocks, 1);
    assert_int_equal(g[1].period_ms, 1000);
    expect_block(&g[1].plan, 0, TABLE_HOLDING, 0, 3, 2);
    assert_int_equal(g[1].plan.n_blocks, 1);
    assert_int_equal(g[2].period_ms, 10000);
    expect_block(&g[2].plan, 0, TABLE_INPUT, 0, 2, 1);
    /* Every tag in exactly one group, the one of its own period. */
    for (size_t i = 0; i < f.n; i++) {
        int seen = 0;
        for (size_t k = 0; k < n; k++)
            for (size_t t = 0; t < g[k].plan.n_tags; t++)
                if (g[k].plan.tags[t].tag == &f.tags[i]) {
                    seen++;
                    assert_int_equal(g[k].period_ms, f.tags[i].poll_ms ? f.tags[i].poll_ms : 1000);
                }
        assert_int_equal(seen, 1);
    }
    /* What they produce in 4 s (what a bus's ring holds): 2 tags x 40 polls, 2 x 4, and
     * 1 x 1 (a 10 s period that begins counts whole); in 250 ms: 2 x 3 + 2 + 1. */
    assert_int_equal(plan_groups_samples(g, n, 4000), 80 + 8 + 1);
    assert_int_equal(plan_groups_samples(g, n, 250), 6 + 2 + 1);
    assert_int_equal(plan_groups_samples(g, 0, 4000), 0);
    plan_groups_free(g, n);
    assert_int_equal(plan_build_groups(&g, f.pt, 0, 1000, &lim), 0);
    assert_null(g);
}

/* Reads per 10 s of a request every period_ms (periods divide 10 s). */
static size_t rate_cost(int period_ms)
{
    return (size_t)(10000 / period_ms);
}

/* A request is repeated at the period of its tags; one that mixed periods would read some
 * tag at a period not its own, so it is not valid. */
static size_t request_rate(struct tag_config **members, size_t m)
{
    for (size_t i = 1; i < m; i++)
        if (members[i]->poll_ms != members[0]->poll_ms)
            return SIZE_MAX;
    return feasible(members, m) ? rate_cost(members[0]->poll_ms) : SIZE_MAX;
}

static void test_grouped_plans_are_minimal(void **state)
{
    static const int periods[] = {100, 200, 1000};
    unsigned seed = 1977;

    for (int round = 0; round < 300; round++) {
        struct fixture f = {0};
        struct tag_config *ptrs[MAXT];
        size_t group_of[MAXT], n_groups, cost = 0;
        struct poll_group *g;
        size_t n = 3 + (size_t)(round % 5);

        for (size_t i = 0; i < n; i++) {
            static const enum value_type types[] = {VT_INT16, VT_UINT32, VT_FLOAT64};
            seed = seed * 1103515245u + 12345u;
            if ((seed >> 16) % 4 == 0)
                add(&f, TABLE_COIL, (int)((seed >> 8) % 40), VT_BOOL, 0);
            else
                add(&f, TABLE_HOLDING, (int)((seed >> 8) % 40), types[(seed >> 20) % 3], 0);
            set_period(&f, i, periods[(seed >> 24) % 3]);
        }
        for (size_t i = 0; i < n; i++)
            ptrs[i] = &f.tags[i];
        n_groups = plan_build_groups(&g, f.pt, f.n, 200, &small);
        for (size_t k = 0; k < n_groups; k++) {
            cost += g[k].plan.n_blocks * rate_cost(g[k].period_ms);
            if (k > 0)
                assert_true(g[k - 1].period_ms < g[k].period_ms);
        }
        /* The fewest reads per 10 s of any plan that reads each tag at its own period. */
        assert_int_equal(cost, best(ptrs, n, group_of, 0, 0, SIZE_MAX, request_rate));
        plan_groups_free(g, n_groups);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_contiguous_merge),
        cmocka_unit_test(test_rtu_gap_limit),
        cmocka_unit_test(test_tables_never_merge),
        cmocka_unit_test(test_limit_never_splits_a_tag),
        cmocka_unit_test(test_overlaps_share_a_request),
        cmocka_unit_test(test_bits_limit),
        cmocka_unit_test(test_split_block),
        cmocka_unit_test(test_greedy_is_minimal),
        cmocka_unit_test(test_groups_by_period),
        cmocka_unit_test(test_grouped_plans_are_minimal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
