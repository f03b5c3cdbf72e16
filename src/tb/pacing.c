/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Pacing below ThingsBoard's transport rate limits: see pacing.h. Pure. Thread: uplink. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tb/pacing.h"
#include "util/macros.h"

#define MAX_PERIOD_S 86400u

/* Stay a tenth below the server's capacity: its clock and ours see the same messages at
 * times that differ by the network's jitter. */
static uint32_t with_margin(uint64_t cap)
{
    uint64_t c = cap - cap / 10;

    return (uint32_t)MAX(c, 1u);
}

int pace_parse(const char *spec, struct pace_limit *ret, char *err, size_t errlen)
{
    const char *p = spec;

    memset(ret, 0, sizeof(*ret));
    if (!spec)
        return 0;
    while (*p == ' ')
        p++;
    if (!*p)
        return 0;
    for (;;) {
        unsigned long long cap, period;
        char *end;

        if (ret->n == PACE_WINDOWS) {
            snprintf(err, errlen, "more than %d limits in '%s'", PACE_WINDOWS, spec);
            goto fail;
        }
        errno = 0;
        cap = strtoull(p, &end, 10);
        if (end == p || *p == '-' || errno || cap < 1 || cap > UINT32_MAX || *end != ':') {
            snprintf(err, errlen, "'%s' is not a list of capacity:seconds (like \"200:1,6000:60\")",
                     spec);
            goto fail;
        }
        p = end + 1;
        period = strtoull(p, &end, 10);
        if (end == p || *p == '-' || errno || period < 1 || period > MAX_PERIOD_S) {
            snprintf(err, errlen, "'%s': a period must be 1..%u seconds", spec, MAX_PERIOD_S);
            goto fail;
        }
        ret->w[ret->n].cap = with_margin(cap);
        ret->w[ret->n].slot_ms = (uint32_t)(period * 1000u / PACE_SLOTS);
        ret->n++;
        p = end;
        while (*p == ' ')
            p++;
        if (!*p)
            return 0;
        if (*p != ',') {
            snprintf(err, errlen, "'%s' is not a list of capacity:seconds (like \"200:1,6000:60\")",
                     spec);
            goto fail;
        }
        p++;
        while (*p == ' ')
            p++;
    }
fail:
    memset(ret, 0, sizeof(*ret));
    return -EINVAL;
}

/* Events counted in the slots that cover the last period as of slot cur. */
static uint64_t recent(const struct pace_window *w, uint64_t cur)
{
    uint64_t sum = 0;

    for (unsigned i = 0; i <= PACE_SLOTS; i++)
        if ((uint32_t)((uint32_t)cur - w->slot_id[i]) <= PACE_SLOTS)
            sum += w->count[i];
    return sum;
}

bool pace_allows(const struct pace_limit *l, uint64_t n, uint64_t now_ms)
{
    for (unsigned i = 0; i < l->n; i++) {
        const struct pace_window *w = &l->w[i];
        uint64_t used = recent(w, now_ms / w->slot_ms);

        if (n > w->cap ? used > 0 : used + n > w->cap)
            return false;
    }
    return true;
}

static void pace_take_one(struct pace_window *w, uint64_t n, uint64_t now_ms)
{
    uint64_t cur = now_ms / w->slot_ms;
    unsigned k = (unsigned)(cur % (PACE_SLOTS + 1));

    /* A slot id of 0 is slot 0 of the epoch: harmless, the counter is then zero. */
    if (w->slot_id[k] != (uint32_t)cur) {
        w->slot_id[k] = (uint32_t)cur;
        w->count[k] = 0;
    }
    w->count[k] = (uint32_t)MIN((uint64_t)w->count[k] + n, (uint64_t)UINT32_MAX);
}

void pace_take(struct pace_limit *l, uint64_t n, uint64_t now_ms)
{
    for (unsigned i = 0; i < l->n; i++)
        pace_take_one(&l->w[i], n, now_ms);
}

uint32_t pace_capacity(const struct pace_limit *l)
{
    uint32_t cap = 0;

    for (unsigned i = 0; i < l->n; i++)
        if (!cap || l->w[i].cap < cap)
            cap = l->w[i].cap;
    return cap;
}

uint64_t pace_retry_at(const struct pace_limit *l, uint64_t now_ms)
{
    uint64_t at = UINT64_MAX;

    for (unsigned i = 0; i < l->n; i++)
        at = MIN(at, (now_ms / l->w[i].slot_ms + 1) * l->w[i].slot_ms);
    return at == UINT64_MAX ? now_ms : at;
}

void pace_format(const struct pace_limit *l, char *buf, size_t size)
{
    size_t o = 0;

    if (size)
        buf[0] = '\0';
    if (!l->n) {
        snprintf(buf, size, "none");
        return;
    }
    for (unsigned i = 0; i < l->n && o < size; i++) {
        int r = snprintf(buf + o, size - o, "%s%u:%u", i ? "," : "", l->w[i].cap,
                         l->w[i].slot_ms * PACE_SLOTS / 1000u);
        if (r < 0)
            break;
        o += (size_t)r;
    }
}

uint64_t pace_period_ms(const struct pace_limit *l)
{
    uint64_t p = 0;

    for (unsigned i = 0; i < l->n; i++)
        p = MAX(p, (uint64_t)l->w[i].slot_ms * PACE_SLOTS);
    return p;
}

void pace_fill(struct pace_limit *l, uint64_t now_ms)
{
    for (unsigned i = 0; i < l->n; i++) {
        struct pace_window *w = &l->w[i];
        uint64_t used = recent(w, now_ms / w->slot_ms);

        if (used < w->cap)
            pace_take_one(w, w->cap - used, now_ms);
    }
}

bool pace_level_set(const struct pace_level *v)
{
    return v->msgs.n || v->tmsgs.n || v->points.n;
}

bool pace_level_allows(const struct pace_level *v, uint32_t points, uint64_t now_ms)
{
    if (!points)
        return pace_allows(&v->msgs, 1, now_ms);
    if (v->every_msg && !pace_allows(&v->msgs, 1, now_ms))
        return false;
    return pace_allows(&v->tmsgs, 1, now_ms) && pace_allows(&v->points, points, now_ms);
}

void pace_level_take(struct pace_level *v, uint32_t points, uint64_t now_ms)
{
    if (!points || v->every_msg)
        pace_take(&v->msgs, 1, now_ms);
    if (!points)
        return;
    pace_take(&v->tmsgs, 1, now_ms);
    pace_take(&v->points, points, now_ms);
}

uint64_t pace_level_retry_at(const struct pace_level *v, uint32_t points, uint64_t now_ms)
{
    uint64_t at = UINT64_MAX;

    if (!points || v->every_msg) {
        if (!pace_allows(&v->msgs, 1, now_ms))
            at = pace_retry_at(&v->msgs, now_ms);
    }
    if (points) {
        if (!pace_allows(&v->tmsgs, 1, now_ms))
            at = MIN(at, pace_retry_at(&v->tmsgs, now_ms));
        if (!pace_allows(&v->points, points, now_ms))
            at = MIN(at, pace_retry_at(&v->points, now_ms));
    }
    return at == UINT64_MAX ? now_ms : at;
}

void pace_level_fill(struct pace_level *v, uint64_t now_ms)
{
    pace_fill(&v->msgs, now_ms);
    pace_fill(&v->tmsgs, now_ms);
    pace_fill(&v->points, now_ms);
}

uint64_t pace_level_period_ms(const struct pace_level *v)
{
    return MAX(pace_period_ms(&v->msgs), MAX(pace_period_ms(&v->tmsgs), pace_period_ms(&v->points)));
}

bool pace_fits(const struct pace_level *device, const struct pace_level *tenant, uint32_t points,
               uint64_t now_ms, uint64_t *retry_at)
{
    bool dev_ok = pace_level_allows(device, points, now_ms);
    bool ten_ok = pace_level_allows(tenant, points, now_ms);

    if (dev_ok && ten_ok)
        return true;
    /* Both must have room: the later of the two is the earliest time worth looking. */
    *retry_at = 0;
    if (!dev_ok)
        *retry_at = pace_level_retry_at(device, points, now_ms);
    if (!ten_ok)
        *retry_at = MAX(*retry_at, pace_level_retry_at(tenant, points, now_ms));
    return false;
}

bool pace_admit(struct pace_level *device, struct pace_level *tenant, uint32_t points,
                uint64_t now_ms, uint64_t *retry_at)
{
    if (!pace_fits(device, tenant, points, now_ms, retry_at))
        return false;
    pace_count(device, tenant, points, now_ms);
    return true;
}

void pace_count(struct pace_level *device, struct pace_level *tenant, uint32_t points,
                uint64_t now_ms)
{
    pace_level_take(device, points, now_ms);
    pace_level_take(tenant, points, now_ms);
}

void pace_ledger_add(struct pace_ledger *g, uint32_t points, uint64_t now_ms)
{
    g->ms[g->next] = now_ms;
    g->points[g->next] = points;
    g->next = (g->next + 1) % PACE_LEDGER;
    if (g->n < PACE_LEDGER)
        g->n++;
}

void pace_replay(struct pace_limit *l, enum pace_kind kind, const struct pace_ledger *g)
{
    /* Oldest first, so that each slot sees its messages in order. */
    for (unsigned i = 0; i < g->n; i++) {
        unsigned k = (g->next + PACE_LEDGER - g->n + i) % PACE_LEDGER;
        uint32_t p = g->points[k];

        if ((kind == PACE_MSGS && !p) || kind == PACE_ALL_MSGS)
            pace_take(l, 1, g->ms[k]);
        else if (kind == PACE_TMSGS && p)
            pace_take(l, 1, g->ms[k]);
        else if (kind == PACE_POINTS && p)
            pace_take(l, p, g->ms[k]);
    }
}
