/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Log a failing condition once when it starts and once when it ends, not on every poll
 * (collectd's c_complain/c_release). A device that stops answering for an hour produces two
 * lines, the second saying how long and how often it failed.
 *
 * Thread: the owner of the struct complain (usually one bus thread).
 */
#ifndef TBGW_UTIL_COMPLAIN_H
#define TBGW_UTIL_COMPLAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "util/macros.h"

struct complain {
    bool active;
    uint64_t since_ms;   /* monotonic time the episode started */
    uint64_t count;      /* failures in this episode */
};

/* Count a failure; log it only when it starts an episode. Returns true if it logged. */
bool complain(struct complain *c, int prio, int err, const char *fmt, ...) PRINTF_LIKE(4, 5);

/* End the episode, if any: logs fmt at info level followed by ", after N failures in Ts". */
bool complain_release(struct complain *c, const char *fmt, ...) PRINTF_LIKE(2, 3);

#endif
