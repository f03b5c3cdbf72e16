/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A bounded FIFO of commands into one bus thread: a mutex-protected list plus an eventfd
 * that the bus polls alongside its schedule. Commands are rare (a person is waiting for
 * each), so a lock here costs nothing, and the bound means a flood of RPCs is refused
 * with an error answer instead of growing memory.
 *
 * Thread: cmdq_push on any thread; cmdq_pop on the bus thread.
 */
#ifndef TBGW_CORE_CMDQ_H
#define TBGW_CORE_CMDQ_H

#include <pthread.h>
#include <stddef.h>

#include "core/command.h"

struct cmdq {
    pthread_mutex_t lock;
    struct command *head, *tail;
    size_t n, max;
    int efd;
};

/* Returns 0 or -errno. */
int cmdq_init(struct cmdq *q, size_t max);
/* Frees queued commands (their senders are gone by then). */
void cmdq_destroy(struct cmdq *q);

/* Queue cmd and wake the bus. -EAGAIN when the queue is full (cmd stays with the caller). */
int cmdq_push(struct cmdq *q, struct command *cmd);

/* Next command, or NULL when empty. Clears the wake-up when the queue becomes empty. */
struct command *cmdq_pop(struct cmdq *q);

/* Wake the bus without a command (stop requests). */
void cmdq_wake(struct cmdq *q);

size_t cmdq_length(struct cmdq *q);

#endif
