/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once
/*
 * Uploads held back by pacing (pacing.h): a device's client attributes and OTA state
 * telemetry that found no room under the Edge's rate limits wait here, in order, and leave
 * as room appears. Bounded: beyond OUTBOX_MAX the oldest is dropped (and counted), since
 * what waits here is state that a later message repeats.
 *
 * Pure: no I/O, no locks, no globals. Thread: the owner's (the uplink's).
 */
#include <stddef.h>
#include <stdint.h>

#define OUTBOX_MAX 64u

struct outbox_msg {
    char *topic;
    char *text;
    size_t len;
    uint32_t points;   /* data points ThingsBoard counts for it */
    struct outbox_msg *next;
};

struct outbox {
    struct outbox_msg *head, *tail;
    size_t n;
    uint64_t dropped;
};

/* Queue a copy of topic and text (len bytes). */
void outbox_push(struct outbox *o, const char *topic, const char *text, size_t len,
                 uint32_t points);

/* The oldest message, or NULL. */
struct outbox_msg *outbox_peek(const struct outbox *o);

/* Drop the oldest message. */
void outbox_pop(struct outbox *o);

/* Drop everything. */
void outbox_clear(struct outbox *o);
