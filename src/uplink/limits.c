/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The Edge's rate limits: from edge.rate_limits, or asked at every connect with the
 * client RPC getSessionLimits (ThingsBoard 3.8 and later answer it in the transport), and
 * applied to the device's pacers (pacing.h). Until the first answer, what counts waits up
 * to LIMITS_TIMEOUT_MS (publish.c: limits_pending).
 *
 * Invariant: a limit learnt later is charged with what was already sent (the ledger), so
 * a connect never starts with a full allowance it has partly used.
 *
 * Thread: uplink.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <string.h>

#include "downlink/router.h"
#include "uplink/uplink-private.h"
#include "util/log.h"
#include "util/macros.h"
#include "util/time-util.h"

/* LIMITS_TIMEOUT_MS (uplink-private.h): ThingsBoard answers getSessionLimits in its
 * transport (3.8 and later) within milliseconds; an older one passes it to the rule chain,
 * which does not answer. */

/* What was sent counts against a limit that is confirmed, not only against a new one. */
static void update_limit(struct up_dev *d, struct pace_limit *l, enum pace_kind kind,
                         const char *spec)
{
    struct pace_limit n;
    char err[160];
    bool same;

    if (pace_parse(spec, &n, err, sizeof(err)) < 0)
        log_warning("device '%s': ignoring a rate limit the edge gave: %s", d->dc->name, err);
    same = n.n == l->n;
    for (unsigned i = 0; same && i < n.n; i++)
        same = n.w[i].cap == l->w[i].cap && n.w[i].slot_ms == l->w[i].slot_ms;
    if (!same) {
        *l = n;
        pace_replay(l, kind, &d->ledger); /* sent before it was known: counted all the same */
    }
}

/* The tenant's limits (validated by the configuration), shared by every session: no
 * ThingsBoard tells them to a device (getSessionLimits answers with the device's). */
void limits_set_tenant(struct uplink *u)
{
    const struct edge_config *e = &u->cfg->edge;
    struct pace_level *t = &u->tenant_pace;
    char err[160], a[64], b[64], c[64];

    if (pace_parse(e->rl_tenant_messages, &t->msgs, err, sizeof(err)) < 0 ||
        pace_parse(e->rl_tenant_telemetry_messages, &t->tmsgs, err, sizeof(err)) < 0 ||
        pace_parse(e->rl_tenant_telemetry_datapoints, &t->points, err, sizeof(err)) < 0)
        memset(t, 0, sizeof(*t)); /* cannot happen: the configuration checked them */
    if (!pace_level_set(t))
        return;
    pace_format(&t->msgs, a, sizeof(a));
    pace_format(&t->tmsgs, b, sizeof(b));
    pace_format(&t->points, c, sizeof(c));
    log_info("pacing all %zu devices together below the tenant's rate limits: messages %s, "
             "telemetry messages %s, data points %s", u->n_devs, a, b, c);
}

/* Specs from the configuration (validated) or from the Edge's answer (checked here). */
void limits_set(struct uplink *u, struct up_dev *d, const char *msgs, const char *tmsgs,
                const char *points)
{
    update_limit(d, &d->pace.msgs, d->pace.every_msg ? PACE_ALL_MSGS : PACE_MSGS, msgs);
    update_limit(d, &d->pace.tmsgs, PACE_TMSGS, tmsgs);
    update_limit(d, &d->pace.points, PACE_POINTS, points);
    d->limits_known = true;
    if (!u->limits_logged && pace_level_set(&d->pace)) {
        char a[96], b[96], c[96];

        u->limits_logged = true;
        pace_format(&d->pace.msgs, a, sizeof(a));
        pace_format(&d->pace.tmsgs, b, sizeof(b));
        pace_format(&d->pace.points, c, sizeof(c));
        log_info("pacing each device below the edge's rate limits%s: messages %s, telemetry "
                 "messages %s, data points %s",
                 u->cfg->edge.rate_limits_set ? " (edge.rate_limits)" : "", a, b, c);
    }
}

static const char *limit_member(json_object *limits, const char *key)
{
    json_object *v;

    return json_object_object_get_ex(limits, key, &v) && json_object_is_type(v, json_type_string)
               ? json_object_get_string(v)
               : NULL;
}

void limits_apply(struct uplink *u, struct up_dev *d, int err, const char *payload, size_t len,
                  const char *member)
{
    json_tokener *tok;
    json_object *o = NULL, *limits = NULL, *v;

    if (!err) {
        tok = json_tokener_new();
        o = json_tokener_parse_ex(tok, payload, (int)MIN(len, (size_t)INT_MAX));
        json_tokener_free(tok);
    }
    if (!o || !json_object_is_type(o, json_type_object) ||
        json_object_object_get_ex(o, "error", NULL) ||
        !json_object_object_get_ex(o, member, &limits)) {
        if (!d->limits_known && !u->limits_logged) {
            u->limits_logged = true;
            log_info("the edge does not tell its rate limits (getSessionLimits needs ThingsBoard "
                     "3.8 or later); sending unpaced. If its tenant profile limits devices, set "
                     "edge.rate_limits");
        }
        d->limits_known = true;
        json_object_put(o);
        return;
    }
    if (json_object_object_get_ex(o, "maxInflightMessages", &v) &&
        json_object_is_type(v, json_type_int)) {
        int64_t n = json_object_get_int64(v);
        d->window = n > 0 && n < WINDOW ? (unsigned)n : WINDOW;
    }
    limits_set(u, d, limit_member(limits, "messages"), limit_member(limits, "telemetryMessages"),
               limit_member(limits, "telemetryDataPoints"));
    /* A gateway's answer also has each device's share of the session (rateLimits): every
     * message that names the device counts, as on the gateway's own level. */
    if (d == gw_self(u) && json_object_object_get_ex(o, "rateLimits", &limits) &&
        json_object_is_type(limits, json_type_object)) {
        for (size_t i = 0; i < u->n_devs; i++) {
            u->devs[i].pace.every_msg = true;
            limits_set(u, &u->devs[i], limit_member(limits, "messages"),
                       limit_member(limits, "telemetryMessages"),
                       limit_member(limits, "telemetryDataPoints"));
        }
    }
    json_object_put(o);
}

static void on_session_limits(struct downlink *dl, uint32_t dev, int err, const char *payload,
                              size_t len, uint64_t rtt_ms, void *ctx)
{
    struct uplink *u = ctx;
    struct up_dev *d = &u->devs[dev];

    if (err == -ENOTCONN)
        return; /* gone before the answer: the next connect asks again */
    limits_apply(u, d, err, payload, len, "rateLimits");
    log_debug("device '%s': rate limits answered in %" PRIu64 " ms", d->dc->name, rtt_ms);
}

/* Asked at every connect: the tenant profile may have changed. Telemetry waits for the
 * first answer only; after that the last known limits apply meanwhile. */
void limits_ask(struct uplink *u, struct up_dev *d)
{
    if (u->cfg->edge.rate_limits_set)
        return;
    if (router_client_rpc(u->downlink, (uint32_t)d->dc->index, "getSessionLimits", NULL,
                          LIMITS_TIMEOUT_MS, on_session_limits, u) == 0) {
        if (!d->limits_known)
            d->limits_deadline_ms = now_ms() + LIMITS_TIMEOUT_MS;
    } else {
        d->limits_known = true; /* no slot or not connected: do not hold telemetry for it */
    }
}
