/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <stdio.h>

#include "util/complain.h"
#include "util/log.h"
#include "util/time-util.h"

bool complain(struct complain *c, int prio, int err, const char *fmt, ...)
{
    va_list ap;

    c->count++;
    if (c->active)
        return false;
    c->active = true;
    c->since_ms = now_ms();
    if (prio > log_max_level)
        return false;
    va_start(ap, fmt);
    log_internalv(prio, err, fmt, ap);
    va_end(ap);
    return true;
}

bool complain_release(struct complain *c, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    uint64_t secs;

    if (!c->active)
        return false;
    secs = (now_ms() - c->since_ms + 500) / 1000;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_info("%s, after %llu failure%s in %llus", msg, (unsigned long long)c->count,
             c->count == 1 ? "" : "s", (unsigned long long)secs);
    c->active = false;
    c->count = 0;
    return true;
}
