/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The Prometheus endpoint: GET /metrics on the configured "address:port", answered with
 * what render() writes (Prometheus text format 0.0.4). Off unless configured.
 * Thread: main (the sd-event loop it was opened on).
 */
#ifndef TBGW_METRICS_METRICS_H
#define TBGW_METRICS_METRICS_H

#include <stdio.h>
#include <systemd/sd-event.h>

struct metrics;

typedef void (*metrics_render_fn)(void *userdata, FILE *out);

/* Listen on listen ("127.0.0.1:9105", "[::1]:9105"). 0, or -errno with the reason
 * logged (e.g. -EADDRINUSE: "cannot listen on 127.0.0.1:9105: Address already in use"). */
int metrics_open(sd_event *event, const char *listen, metrics_render_fn render, void *userdata,
                 struct metrics **ret);
const char *metrics_listen(const struct metrics *m);
struct metrics *metrics_close(struct metrics *m);

#endif
