/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Report strategies: should this reading become a sample?
 *   always  - every reading;
 *   change  - when it differs from the last *reported* value: numbers by at least the
 *             deadband (any difference when the deadband is 0), booleans and strings
 *             exactly; and, with heartbeat_s, unchanged values at least that often.
 * Comparing with the last reported value (not the last read) means a slow drift is
 * reported once it has moved a deadband, instead of never.
 *
 * Pure. Thread: the owning bus.
 */
#ifndef TBGW_CORE_REPORT_H
#define TBGW_CORE_REPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/value.h"

struct report_policy {
    enum report_mode mode;
    double deadband;
    int heartbeat_s;
};

struct report_state {
    struct value last; /* last reported value (owned copy) */
    uint64_t last_ms;  /* monotonic time it was reported */
    bool have;
};

/* Decide for reading v at monotonic time now_ms. On true, st remembers v (a string is
 * copied; v itself is left to the caller). */
bool report_decide(const struct report_policy *p, struct report_state *st, const struct value *v,
                   uint64_t now_ms);

/* Forget the last value, so the next reading is reported (after a write, a reconnect). */
void report_reset(struct report_state *st);

void report_state_clear(struct report_state *st);

#endif
