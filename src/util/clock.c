/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <stdatomic.h>

#include "util/clock.h"
#include "util/time-util.h"

static _Atomic int64_t offset_ms;

int64_t clock_wall_ms(void)
{
    return realtime_ms() + atomic_load_explicit(&offset_ms, memory_order_relaxed);
}

void clock_set_offset_ms(int64_t offset)
{
    atomic_store(&offset_ms, offset);
}

int64_t clock_offset_ms(void)
{
    return atomic_load(&offset_ms);
}
