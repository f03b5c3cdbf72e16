/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Uploads held back by pacing: see outbox.h. Pure. Thread: uplink. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "uplink/outbox.h"
#include "util/macros.h"

void outbox_push(struct outbox *o, const char *topic, const char *text, size_t len,
                 uint32_t points)
{
    struct outbox_msg *m = xcalloc(1, sizeof(*m));

    if (o->n >= OUTBOX_MAX) {
        outbox_pop(o);
        o->dropped++;
    }
    m->topic = xstrdup(topic);
    m->text = xmalloc(len + 1);
    memcpy(m->text, text, len);
    m->text[len] = '\0';
    m->len = len;
    m->points = points;
    if (o->tail)
        o->tail->next = m;
    else
        o->head = m;
    o->tail = m;
    o->n++;
}

struct outbox_msg *outbox_peek(const struct outbox *o)
{
    return o->head;
}

void outbox_pop(struct outbox *o)
{
    struct outbox_msg *m = o->head;

    if (!m)
        return;
    o->head = m->next;
    if (!o->head)
        o->tail = NULL;
    o->n--;
    free(m->topic);
    free(m->text);
    free(m);
}

void outbox_clear(struct outbox *o)
{
    while (o->head)
        outbox_pop(o);
}
