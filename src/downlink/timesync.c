/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timex.h>

#include "downlink/downlink.h"
#include "downlink/router.h"
#include "downlink/timesync.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/macros.h"
#include "util/time-util.h"

#define CHECK_INTERVAL_MS 60000u      /* how often to look at the kernel's verdict */
#define RESYNC_INTERVAL_MS 600000u    /* how often to ask again while unsynchronised */
#define ANSWER_TIMEOUT_MS 10000u
#define SIGNIFICANT_MS 500            /* smaller offsets are not worth correcting */

struct timesync {
    uint64_t next_check_ms;
    uint64_t next_ask_ms;
    bool asking;
    bool no_answer_logged;
    bool unsync_logged;
};

bool timesync_clock_synchronised(void)
{
    const char *force = getenv("TBGW_CLOCK");
    struct timex tx = {0};
    int state;

    if (force && strcmp(force, "synced") == 0)
        return true;
    if (force && strcmp(force, "unsynced") == 0)
        return false;
    state = adjtimex(&tx);
    return state >= 0 && state != TIME_ERROR && !(tx.status & STA_UNSYNC);
}

int timesync_parse_answer(const char *payload, size_t len, int64_t *ret_ms)
{
    /* A bare number only ends at the end of the text: parse a terminated copy. */
    char *text = xstrndup(payload, MIN(len, (size_t)4096));
    json_object *o = json_tokener_parse(text), *m;
    double v;
    int r = -EBADMSG;

    free(text);
    if (o && json_object_is_type(o, json_type_object) &&
        (json_object_object_get_ex(o, "time", &m) || json_object_object_get_ex(o, "ts", &m)))
        ;
    else
        m = o;
    if (m && (json_object_is_type(m, json_type_int) || json_object_is_type(m, json_type_double))) {
        v = json_object_get_double(m);
        /* Plausibility: after 2001 and before 2286, in milliseconds. */
        if (isfinite(v) && v > 1e12 && v < 1e13) {
            *ret_ms = (int64_t)v;
            r = 0;
        }
    }
    json_object_put(o);
    return r;
}

static void on_answer(struct downlink *dl, uint32_t dev, int err, const char *payload,
                      size_t len, uint64_t rtt_ms, void *ctx)
{
    struct timesync *ts = dl->timesync;
    const struct dl_dev *d = &dl->devs[dev];
    int64_t server, offset, old;

    ts->asking = false;
    if (err < 0 || timesync_parse_answer(payload, len, &server) < 0) {
        if (!ts->no_answer_logged) {
            ts->no_answer_logged = true;
            log_warning("the system clock is not synchronised and the edge %s getTime; sample "
                        "timestamps come from the unsynchronised clock (the edge's rule chain "
                        "must answer client RPC getTime, see tbgw(8))",
                        err == -ETIMEDOUT ? "does not answer" : "gave no usable answer to");
        }
        return;
    }
    ts->no_answer_logged = false;
    /* The answer was made about half a round trip ago. */
    offset = server + (int64_t)rtt_ms / 2 - realtime_ms();
    old = clock_offset_ms();
    if (llabs(offset) < SIGNIFICANT_MS)
        offset = 0;
    clock_set_offset_ms(offset);
    if (llabs(offset - old) >= 1000 || (offset == 0) != (old == 0))
        log_warning("the system clock is not synchronised%s; %s (asked the edge through device "
                    "'%s', round trip %llums)",
                    offset ? "" : " but agrees with the edge",
                    offset ? "correcting sample timestamps" : "timestamps are not corrected",
                    d->dc->name, (unsigned long long)rtt_ms);
    if (offset)
        log_info("sample timestamps are corrected by %+lld ms until the clock is synchronised",
                 (long long)offset);
}

void timesync_init(struct downlink *dl)
{
    dl->timesync = xcalloc(1, sizeof(struct timesync));
}

void timesync_free(struct downlink *dl)
{
    free(dl->timesync);
    dl->timesync = NULL;
}

static void ask(struct downlink *dl, struct dl_dev *d, uint64_t now)
{
    struct timesync *ts = dl->timesync;

    if (ts->asking || now < ts->next_ask_ms)
        return;
    if (router_client_rpc(dl, dl_index(d), "getTime", NULL, ANSWER_TIMEOUT_MS, on_answer, NULL) == 0) {
        ts->asking = true;
        ts->next_ask_ms = now + RESYNC_INTERVAL_MS;
    }
}

void timesync_connected(struct downlink *dl, struct dl_dev *d)
{
    if (!timesync_clock_synchronised())
        ask(dl, d, now_ms());
}

void timesync_tick(struct downlink *dl, uint64_t now)
{
    struct timesync *ts = dl->timesync;

    if (now < ts->next_check_ms)
        return;
    ts->next_check_ms = now + CHECK_INTERVAL_MS;
    if (timesync_clock_synchronised()) {
        if (clock_offset_ms()) {
            clock_set_offset_ms(0);
            log_info("the system clock is synchronised now; sample timestamps are no longer "
                     "corrected");
        }
        return;
    }
    for (size_t i = 0; i < dl->n_devs; i++) {
        if (dl_session(dl, &dl->devs[i]) == DL_UP) {
            ask(dl, &dl->devs[i], now);
            return;
        }
    }
}
