/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once
/*
 * Telling why ThingsBoard closed a session, from what the session saw.
 *
 * ThingsBoard answers an upload it cannot parse by closing the session, without a PUBACK
 * and without a reason (MQTT 3.1.1). A device whose profile has the PROTOBUF payload type
 * gets every JSON upload parsed as protobuf (MqttTransportHandler, ProtoMqttAdaptor): each
 * session dies right after its first upload, and none is ever acknowledged. A bad batch, a
 * rate limit or an outage look different: the same session got PUBACKs for something.
 *
 * close_watch flags a device after PAYLOAD_STRIKES sessions in a row that each closed
 * right after an upload with no PUBACK at all; one acknowledged upload clears it.
 *
 * Pure: no I/O, no locks, no globals. Thread: the caller's (the uplink's).
 */
#include <stdbool.h>
#include <stdint.h>

#define CLOSE_WATCH_STRIKES 2
#define CLOSE_WATCH_WINDOW_MS 5000u /* a close this soon after an upload is its answer */

struct close_watch {
    unsigned strikes;
    bool flagged;           /* the profile refuses JSON uploads */
    bool published;         /* this session sent an upload */
    bool acked;             /* this session got a PUBACK */
    uint64_t last_publish_ms;
};

/* A CONNACK: a new session starts. */
void close_watch_up(struct close_watch *w);

/* An upload (PUBLISH at QoS 1) left at now_ms. */
void close_watch_published(struct close_watch *w, uint64_t now_ms);

/* A PUBACK arrived. Returns true if that cleared the flag. */
bool close_watch_acked(struct close_watch *w);

/* The session was lost at now_ms. Returns true if this loss raised the flag. */
bool close_watch_lost(struct close_watch *w, uint64_t now_ms);
