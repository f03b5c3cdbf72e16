/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/report.h"
#include "util/macros.h"

static bool changed(const struct report_policy *p, const struct value *last, const struct value *v)
{
    double a, b;

    if (last->kind != v->kind)
        return true;
    if (v->kind == VK_STRING || v->kind == VK_BOOL)
        return !value_equal(last, v);
    if (v->kind == VK_UINT || v->kind == VK_INT) {
        if (p->deadband <= 0)
            return !value_equal(last, v);
    }
    if (!value_as_double(last, &a) || !value_as_double(v, &b))
        return true;
    if (p->deadband <= 0)
        return a != b;
    return fabs(b - a) >= p->deadband;
}

static void remember(struct report_state *st, const struct value *v, uint64_t now_ms)
{
    value_clear(&st->last);
    st->last = *v;
    if (v->kind == VK_STRING)
        st->last.s = xstrdup(v->s);
    st->last_ms = now_ms;
    st->have = true;
}

bool report_decide(const struct report_policy *p, struct report_state *st, const struct value *v,
                   uint64_t now_ms)
{
    bool emit;

    if (p->mode == REPORT_ALWAYS || !st->have)
        emit = true;
    else if (changed(p, &st->last, v))
        emit = true;
    else
        emit = p->heartbeat_s > 0 && now_ms - st->last_ms >= (uint64_t)p->heartbeat_s * 1000u;

    if (emit && p->mode != REPORT_ALWAYS)
        remember(st, v, now_ms);
    return emit;
}

void report_reset(struct report_state *st)
{
    st->have = false;
}

void report_state_clear(struct report_state *st)
{
    value_clear(&st->last);
    st->have = false;
}
