/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The uplink's event queue (see events.h): a mutex-protected list, and at most one
 * eventfd write per wake-up of the uplink thread however many events arrive meanwhile.
 *
 * Thread: evq_post and evq_post_quiet on any; evq_take on the uplink thread; evq_prepend on
 * whichever thread owns the queue's consumer (main, during a reload).
 */
#include "config.h"

#include <stdbool.h>
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

static void post(struct evq *q, struct event *e, bool wake)
{
    bool write_fd;

    e->next = NULL;
    pthread_mutex_lock(&q->lock);
    if (q->tail)
        q->tail->next = e;
    else
        q->head = e;
    q->tail = e;
    q->n++;
    /* One write per wake-up: once the uplink has been told, later events wait for it. */
    write_fd = wake && !q->signalled;
    if (write_fd)
        q->signalled = true;
    pthread_mutex_unlock(&q->lock);
    if (write_fd)
        eventfd_write(q->wake_fd, 1);
}

void evq_post(struct evq *q, struct event *e)
{
    post(q, e, true);
}

void evq_post_quiet(struct evq *q, struct event *e)
{
    post(q, e, false);
}

struct event *evq_take(struct evq *q)
{
    struct event *e;

    pthread_mutex_lock(&q->lock);
    e = q->head;
    q->head = q->tail = NULL;
    q->n = 0;
    q->signalled = false;
    pthread_mutex_unlock(&q->lock);
    return e;
}

void evq_prepend(struct evq *q, struct event *head)
{
    struct event *tail = head;
    size_t n = 1;
    bool write_fd;

    if (!head)
        return;
    while (tail->next) {
        tail = tail->next;
        n++;
    }
    pthread_mutex_lock(&q->lock);
    tail->next = q->head;
    q->head = head;
    if (!q->tail)
        q->tail = tail;
    q->n += n;
    write_fd = !q->signalled;
    q->signalled = true;
    pthread_mutex_unlock(&q->lock);
    if (write_fd)
        eventfd_write(q->wake_fd, 1);
}
