/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The control socket for tbgwctl (see control.c for the protocol).
 * Thread: main.
 */
#ifndef TBGW_CONTROL_CONTROL_H
#define TBGW_CONTROL_CONTROL_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
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

/* ---- requests: pure, fuzzed (tests/fuzz/fuzz-control) ---- */

enum control_cmd {
    CONTROL_STATUS,
    CONTROL_READ,
    CONTROL_WRITE,
    CONTROL_CLAIM,
    CONTROL_RELOAD,
    CONTROL_IDENTIFY,
    CONTROL_SPOOL
};

struct control_request {
    enum control_cmd cmd;
    const char *device, *key; /* read and write: both set; claim: device may be NULL;
                               * identify: device set */
    const char *secret;       /* claim, may be NULL */
    json_object *value;       /* write: the value (NULL: absent or null) */
    bool has_duration;
    int64_t duration_ms;      /* claim */
    json_object *root;        /* owns all of the above */
};

/* Parse one request line (NUL-terminated, without its newline). 0, or -EBADMSG with err
 * set to the text of the answer. */
int control_parse_request(const char *line, struct control_request *ret, char *err,
                          size_t err_size);
void control_request_clear(struct control_request *r);

#endif
