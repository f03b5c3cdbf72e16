/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What other threads tell the uplink thread. paho calls back on its own threads; those
 * callbacks copy what they were given into an event, post it here and return at once:
 * they never block, never touch a bus, never touch session state. Bus threads post
 * finished commands the same way. The uplink thread takes the whole list at once.
 *
 * The queue shares the uplink's eventfd with the sample rings: one wake-up source.
 *
 * Thread: evq_post on any thread; evq_take on the uplink thread.
 */
#ifndef TBGW_UPLINK_EVENTS_H
#define TBGW_UPLINK_EVENTS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct command;

enum event_type {
    EV_CONNECTED,       /* CONNACK 0 */
    EV_CONNECT_FAILED,  /* code: CONNACK code (1..5) or a negative paho code */
    EV_CONNECTION_LOST,
    EV_MESSAGE,         /* topic, payload */
    EV_DELIVERED,       /* token */
    EV_DELIVERY_FAILED, /* token, code */
    EV_SUBSCRIBED,      /* code: granted QoS or 0x80 */
    EV_TLS_ERROR,       /* text: OpenSSL's description */
    EV_COMMAND_DONE,    /* cmd */
    EV_CONTROL,         /* a control-socket request (see src/control) */
};

struct event {
    enum event_type type;
    uint32_t device;
    int code;
    int token;
    char *topic;
    char *payload; /* NUL-terminated copy (len bytes before the NUL) */
    size_t len;
    char *text;
    struct command *cmd;
    void (*reply)(void *ctx, int err); /* EV_CONTROL: called on the uplink thread */
    void *reply_ctx;
    struct event *next;
};

struct evq {
    pthread_mutex_t lock;
    struct event *head, *tail;
    size_t n;
    int wake_fd;
    bool signalled; /* the eventfd was written since the last evq_take */
};

void evq_init(struct evq *q, int wake_fd);
/* Frees events still queued. */
void evq_destroy(struct evq *q);
void evq_post(struct evq *q, struct event *e);
/* Queue without waking the uplink: the event waits for its next wake-up, whatever the
 * cause (acknowledgements nobody waits for, see session.h). */
void evq_post_quiet(struct evq *q, struct event *e);
/* All queued events, oldest first (NULL when none). */
struct event *evq_take(struct evq *q);
/* Put the list head (linked through next) in front of everything queued, in one step under
 * the queue's lock: events posted meanwhile stay behind it. */
void evq_prepend(struct evq *q, struct event *head);
void event_free(struct event *e);

#endif
