/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Why ThingsBoard closed a session: see closewatch.h. Pure. Thread: uplink. */
#include "config.h"

#include "uplink/closewatch.h"

void close_watch_up(struct close_watch *w)
{
    w->published = false;
    w->acked = false;
}

void close_watch_published(struct close_watch *w, uint64_t now_ms)
{
    w->published = true;
    w->last_publish_ms = now_ms;
}

bool close_watch_acked(struct close_watch *w)
{
    bool was = w->flagged;

    w->acked = true;
    w->strikes = 0;
    w->flagged = false;
    return was;
}

bool close_watch_lost(struct close_watch *w, uint64_t now_ms)
{
    bool was = w->flagged;

    if (w->published && !w->acked && now_ms - w->last_publish_ms <= CLOSE_WATCH_WINDOW_MS)
        w->strikes++;
    else if (w->acked || w->published)
        w->strikes = 0;
    /* A session that sent nothing tells nothing: strikes stay. */
    w->flagged = w->strikes >= CLOSE_WATCH_STRIKES;
    w->published = false;
    w->acked = false;
    return w->flagged && !was;
}
