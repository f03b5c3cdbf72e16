/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The control socket for tbgwctl (see control.c for the protocol).
 * Thread: main.
 */
#ifndef TBGW_CONTROL_CONTROL_H
#define TBGW_CONTROL_CONTROL_H

#include <systemd/sd-event.h>

struct gateway;
struct control;

struct control_ops {
    /* The running gateway (it changes on reload). */
    struct gateway *(*gateway)(void *userdata);
    /* Reload the configuration: 0, or -errno with *ret_problems set (malloc'd text). */
    int (*reload)(void *userdata, char **ret_problems);
    void *userdata;
};

/* Create the socket at path and serve it on event. 0 or -errno (logged). */
int control_open(sd_event *event, const char *path, const struct control_ops *ops,
                 struct control **ret);
struct control *control_close(struct control *c);
const char *control_path(const struct control *c);

#endif
