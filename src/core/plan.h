/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Read planning: a device's tags -> the fewest Modbus read requests.
 *
 * The round trip dominates the cost of a Modbus read (on TCP ~60 µs whether 1 or 125
 * registers; on RTU the frame overhead and two silent intervals), so tags are merged into
 * blocks per table: sorted by address, a tag joins the current block when the block stays
 * within the protocol limit (125 registers, 2000 bits) and the gap it bridges costs less
 * than another round trip. A tag is never split across blocks. Greedy by start address is
 * minimal here: any block can be assumed to start at its lowest tag, and extending it as
 * far as the limits allow can only leave fewer tags for the blocks after it.
 *
 * A merged block that the device refuses with exception 2 (a hole in its register map) is
 * split into the tags' own requests for good (plan_split_block).
 *
 * Poll periods: tags may have their own poll_ms. A device's tags are planned per period
 * (plan_build_groups): the tags of one period are coalesced as above and read together, and
 * a tag is read at its own period only, so a register is never read more often than the
 * fastest tag that needs it and a slow tag never rides along with a fast one. (Merging a
 * slow tag into a fast block would save nothing: it would add its registers to every fast
 * read instead of one request per slow period.)
 *
 * Pure: no I/O, no locks, no globals. The plan is built once per device at start and
 * owned by the device's bus thread.
 */
#ifndef TBGW_CORE_PLAN_H
#define TBGW_CORE_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

struct plan_tag {
    const struct tag_config *tag;
    uint16_t key;  /* key table index the samples of this tag carry */
    uint8_t flags; /* SAMPLE_* */
};

struct read_block {
    enum mb_table table;
    uint16_t address;
    uint16_t count;  /* registers or bits */
    uint32_t first;  /* plan->tags[first .. first+n) are read by this block */
    uint32_t n;
    bool split;      /* the result of splitting a refused merged block: never merged again */
};

struct plan {
    struct plan_tag *tags; /* sorted by table, then address */
    size_t n_tags;
    struct read_block *blocks;
    size_t n_blocks;
};

struct plan_limits {
    unsigned max_regs;     /* per request: 125 (MODBUS_MAX_READ_REGISTERS) */
    unsigned max_bits;     /* 2000 (MODBUS_MAX_READ_BITS) */
    unsigned max_gap_regs; /* unused registers one request may span between tags */
    unsigned max_gap_bits;
};

/* Limits for a bus: the gap a request may bridge is what costs less than a round trip.
 * On TCP the round trip always dominates; on RTU it is ~24 character times (request frame,
 * response header, two silent intervals and the slave's turnaround). */
struct plan_limits plan_limits_for(enum driver_kind driver);

/* Build the plan of tags[0..n). The plan keeps pointers to the tag configs. */
void plan_build(struct plan *p, const struct plan_tag *tags, size_t n,
                const struct plan_limits *lim);

/* The tags of one poll period and their plan. */
struct poll_group {
    int period_ms;
    struct plan plan;
};

/* Group tags[0..n) by tag->poll_ms (0: default_ms, the device's), fastest first, and plan
 * each group. Returns the number of groups (0 when n is 0); *ret is allocated, free it
 * with plan_groups_free(). */
size_t plan_build_groups(struct poll_group **ret, const struct plan_tag *tags, size_t n,
                         int default_ms, const struct plan_limits *lim);
void plan_groups_free(struct poll_group *g, size_t n);

/* The most samples groups g[0..n) produce in hold_ms: each tag once per poll of its group,
 * a period that has begun counting whole. */
uint64_t plan_groups_samples(const struct poll_group *g, size_t n, unsigned hold_ms);

/* Replace block i by one request per tag (tags whose registers overlap stay together).
 * Returns the number of blocks that replaced it. */
size_t plan_split_block(struct plan *p, size_t i);

void plan_free(struct plan *p);

/* Wire bytes of a read: request and response frames (RTU framing: unit + PDU + CRC). */
unsigned plan_request_bytes(void);
unsigned plan_response_bytes(const struct read_block *b);

#endif
