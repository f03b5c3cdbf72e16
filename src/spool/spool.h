/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The outbox: telemetry batches waiting for the Edge to acknowledge them, per device, in
 * order. The publisher appends batches, takes the oldest unsent one to publish, and acks
 * a batch when its PUBACK arrives; only then does the batch leave.
 *
 * Thread: uplink.
 */
#ifndef TBGW_SPOOL_SPOOL_H
#define TBGW_SPOOL_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

struct batch {
    uint64_t seq;      /* global order */
    uint32_t device;   /* struct device_config.index */
    uint32_t n_values;
    int64_t first_ts;
    char *payload;
    size_t len;
    uint8_t tries;     /* times the session died right after it was sent alone */
    bool suspect;      /* a session died right after it was sent: send it alone */
    bool inflight;
    bool on_disk;      /* committed to the spool file */
    int token;         /* paho token while in flight */
    uint64_t sent_ms;  /* monotonic time it was last sent */
    struct batch *prev, *next;
};

struct spool_stats {
    uint64_t batches;     /* waiting (incl. in flight) */
    uint64_t bytes;
    int64_t oldest_ts;    /* first_ts of the oldest waiting batch, 0 when empty */
    uint64_t dropped;     /* batches dropped because the spool was full */
    uint64_t dropped_values;
    uint64_t quarantined; /* batches the Edge kept refusing (including earlier runs') */
    /* Values, for the accounting in tbgwctl status: every value appended is acknowledged,
     * dropped, quarantined or still waiting; unsaved ones are lost if the spool is closed
     * now (after a failed spool_flush, that is what spool_close logs as lost). */
    uint64_t values;              /* waiting (incl. in flight and on disk) */
    uint64_t loaded_values;       /* of those, found in the file when it was opened */
    uint64_t quarantined_values;  /* quarantined by this spool */
    uint64_t unsaved_values;      /* waiting, in memory only (the disk refused them) */
};

struct spool;

struct spool *spool_open(const struct config *cfg);
struct spool *spool_close(struct spool *s);

/* Append a batch for device (takes payload). */
struct batch *spool_append(struct spool *s, uint32_t device, int64_t first_ts, uint32_t n_values,
                           char *payload, size_t len);

/* The oldest batch of device that is not in flight, or NULL. */
struct batch *spool_next(struct spool *s, uint32_t device);

/* Mark b in flight under token. */
void spool_sent(struct spool *s, struct batch *b, int token);

/* The in-flight batch of device with token, or NULL. */
struct batch *spool_find_token(struct spool *s, uint32_t device, int token);

/* The Edge has it: drop b for good. */
void spool_ack(struct spool *s, struct batch *b);

/* The session (up since the monotonic time session_ms) was lost: every unacknowledged
 * batch of device is sent again, in order. Unless judge is false (the loss is known not to
 * be the data's fault), the oldest batch sent during that session is a suspect if the loss
 * came right after it was sent, and is quarantined if it was then alone in the session
 * twice: see "Rejection" in spool.c. */
void spool_requeue(struct spool *s, uint32_t device, uint64_t session_ms, bool judge);

/* Whether b must be sent alone: first after a CONNACK, with nothing else in flight, and
 * nothing else sent until it is acknowledged. */
bool spool_batch_alone(const struct batch *b);

/* Batches waiting for device. */
size_t spool_pending(const struct spool *s, uint32_t device);

/* Commit when one is due (spool_commit_due_ms) at now; cheap to call on every pass. now
 * is the caller's clock for the pass, the one it closed batches by: read afresh, it could
 * pass a commit instant that the batches due then were not yet closed for. */
void spool_tick(struct spool *s, uint64_t now);
/* When spool_tick() has a commit to make: UINT64_MAX while memory and disk agree. The
 * uplink wakes for it, so that SIGKILL loses at most one commit interval. */
uint64_t spool_commit_due_ms(const struct spool *s);
/* Commits fall on a grid of storage.commit_interval_ms on the monotonic clock: the first
 * instant of it after t. Whoever holds data back from the spool can know, before the
 * spool has anything to write, when the commit that must take that data will be. */
uint64_t spool_commit_after(const struct spool *s, uint64_t t);

/* Commit now (graceful stop). */
void spool_flush(struct spool *s);

struct spool_stats spool_stats(const struct spool *s);

#endif
