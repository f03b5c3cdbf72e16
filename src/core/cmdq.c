/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/cmdq.h"

int cmdq_init(struct cmdq *q, size_t max)
{
    *q = (struct cmdq){.max = max};
    q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (q->efd < 0)
        return -errno;
    pthread_mutex_init(&q->lock, NULL);
    return 0;
}

void cmdq_destroy(struct cmdq *q)
{
    struct command *c;

    if (q->efd < 0)
        return;
    while ((c = cmdq_pop(q)))
        command_free(c);
    pthread_mutex_destroy(&q->lock);
    close(q->efd);
    q->efd = -1;
}

void cmdq_wake(struct cmdq *q)
{
    eventfd_write(q->efd, 1);
}

int cmdq_push(struct cmdq *q, struct command *cmd)
{
    pthread_mutex_lock(&q->lock);
    if (q->n >= q->max) {
        pthread_mutex_unlock(&q->lock);
        return -EAGAIN;
    }
    cmd->next = NULL;
    if (q->tail)
        q->tail->next = cmd;
    else
        q->head = cmd;
    q->tail = cmd;
    q->n++;
    pthread_mutex_unlock(&q->lock);
    cmdq_wake(q);
    return 0;
}

struct command *cmdq_pop(struct cmdq *q)
{
    struct command *c;
    eventfd_t v;

    pthread_mutex_lock(&q->lock);
    c = q->head;
    if (c) {
        q->head = c->next;
        if (!q->head)
            q->tail = NULL;
        q->n--;
        c->next = NULL;
    } else {
        /* Empty: consume the wake-up under the lock, so a push racing with us either
         * lands before (and we return it) or writes the eventfd after this read. */
        eventfd_read(q->efd, &v);
    }
    pthread_mutex_unlock(&q->lock);
    return c;
}

size_t cmdq_length(struct cmdq *q)
{
    size_t n;

    pthread_mutex_lock(&q->lock);
    n = q->n;
    pthread_mutex_unlock(&q->lock);
    return n;
}
