/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <stdlib.h>
#include <sys/eventfd.h>

#include "core/command.h"
#include "uplink/events.h"

void evq_init(struct evq *q, int wake_fd)
{
    *q = (struct evq){.wake_fd = wake_fd};
    pthread_mutex_init(&q->lock, NULL);
}

void event_free(struct event *e)
{
    if (!e)
        return;
    free(e->topic);
    free(e->payload);
    free(e->text);
    command_free(e->cmd);
    free(e);
}

void evq_destroy(struct evq *q)
{
    struct event *e = evq_take(q);

    while (e) {
        struct event *next = e->next;
        event_free(e);
        e = next;
    }
    pthread_mutex_destroy(&q->lock);
}

void evq_post(struct evq *q, struct event *e)
{
    e->next = NULL;
    pthread_mutex_lock(&q->lock);
    if (q->tail)
        q->tail->next = e;
    else
        q->head = e;
    q->tail = e;
    q->n++;
    pthread_mutex_unlock(&q->lock);
    eventfd_write(q->wake_fd, 1);
}

struct event *evq_take(struct evq *q)
{
    struct event *e;

    pthread_mutex_lock(&q->lock);
    e = q->head;
    q->head = q->tail = NULL;
    q->n = 0;
    pthread_mutex_unlock(&q->lock);
    return e;
}
