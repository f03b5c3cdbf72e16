/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The control socket that tbgwctl talks to: a Unix stream socket (mode 0660, group tbgw)
 * taking one JSON request per connection and answering one JSON line.
 *
 *   {"cmd":"status"}                                  -> the gateway's state
 *   {"cmd":"read","device":D,"key":K}                 -> {"ok":true,"value":v}
 *   {"cmd":"write","device":D,"key":K,"value":v}      -> {"ok":true}
 *   {"cmd":"claim","device":D,"secret":S,"duration_ms":N}
 *   {"cmd":"reload"}                                  -> {"ok":true} or the problems
 *   {"cmd":"spool"}                                   -> the quarantined batches
 *   anything else                                     -> {"error":"…"}
 *
 * Only root, the daemon's own user and members of the group "tbgw" may talk to it: the
 * peer's credentials (SO_PEERCRED, SO_PEERGROUPS) are checked on accept. Reads and writes
 * go through the owning bus thread like any other command (never around it); what the
 * bus or uplink threads finish comes back here through a queue and an eventfd.
 *
 * Thread: main (sd-event), except control_complete's callers.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <json-c/json.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "config/config.h"
#include "control/control.h"
#include "core/command.h"
#include "core/device.h"
#include "downlink/rpc.h"
#include "drivers/driver.h"
#include "gateway.h"
#include "uplink/events.h"
#include "tb/tb-json.h"
#include "util/fileio.h"
#include "util/log.h"
#include "util/macros.h"

#define REQUEST_MAX 65536
#define CLIENT_TIMEOUT_US (10ull * 1000000ull)
#define CONTROL_GROUP "tbgw"

struct conn {
    uint64_t id;
    int fd;
    char buf[REQUEST_MAX];
    size_t len;
    bool waiting;           /* a reply will come from another thread */
    sd_event_source *io, *timer;
    struct control *c;
    struct conn *next;
};

struct completion {
    uint64_t conn;
    char *reply;
    struct completion *next;
};

struct control {
    sd_event *event;
    const struct control_ops *ops;
    char *path;
    int fd;
    sd_event_source *listen_src;
    struct conn *conns;
    uint64_t next_id;
    /* completions from bus and uplink threads */
    pthread_mutex_t lock;
    struct completion *done;
    int done_fd;
    sd_event_source *done_src;
};

/* ---- replies ----------------------------------------------------------------------------- */

static void conn_close(struct conn *k)
{
    struct control *c = k->c;

    for (struct conn **pp = &c->conns; *pp; pp = &(*pp)->next)
        if (*pp == k) {
            *pp = k->next;
            break;
        }
    sd_event_source_unref(k->io);
    sd_event_source_unref(k->timer);
    close(k->fd);
    free(k);
}

static void reply_text(struct conn *k, const char *text)
{
    struct timeval tv = {.tv_sec = 2};
    size_t len = strlen(text);
    const char *p = text;

    /* Replies are small; a blocking write with a timeout is simpler than another state. */
    fcntl(k->fd, F_SETFL, fcntl(k->fd, F_GETFL) & ~O_NONBLOCK);
    setsockopt(k->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    while (len) {
        ssize_t n = write(k->fd, p, len);
        if (n <= 0)
            break;
        p += n;
        len -= (size_t)n;
    }
    (void)!write(k->fd, "\n", 1);
    conn_close(k);
}

static void reply_json(struct conn *k, json_object *o)
{
    char *text = tb_json_text(o, NULL);

    reply_text(k, text);
    free(text);
    json_object_put(o);
}

static void reply_error(struct conn *k, const char *fmt, ...) PRINTF_LIKE(2, 3);

static void reply_error(struct conn *k, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    json_object *o = json_object_new_object();

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_object_object_add(o, "error", json_object_new_string(msg));
    reply_json(k, o);
}

static char *ok_text(json_object *value)
{
    json_object *o = json_object_new_object();
    char *s;

    json_object_object_add(o, "ok", json_object_new_boolean(1));
    if (value)
        json_object_object_add(o, "value", value);
    s = tb_json_text(o, NULL);
    json_object_put(o);
    return s;
}

static char *error_text(const char *msg)
{
    json_object *o = json_object_new_object();
    char *s;

    json_object_object_add(o, "error", json_object_new_string(msg));
    s = tb_json_text(o, NULL);
    json_object_put(o);
    return s;
}

/* ---- completions from other threads ---------------------------------------------------- */

static void complete(struct control *c, uint64_t conn, char *reply)
{
    struct completion *x = xcalloc(1, sizeof(*x));

    x->conn = conn;
    x->reply = reply;
    pthread_mutex_lock(&c->lock);
    x->next = c->done;
    c->done = x;
    pthread_mutex_unlock(&c->lock);
    eventfd_write(c->done_fd, 1);
}

static int on_done(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
    struct control *c = userdata;
    struct completion *x;
    eventfd_t v;

    eventfd_read(c->done_fd, &v);
    pthread_mutex_lock(&c->lock);
    x = c->done;
    c->done = NULL;
    pthread_mutex_unlock(&c->lock);
    while (x) {
        struct completion *next = x->next;
        struct conn *k = c->conns;
        while (k && k->id != x->conn)
            k = k->next;
        if (k)
            reply_text(k, x->reply); /* else the client gave up */
        free(x->reply);
        free(x);
        x = next;
    }
    return 0;
}

/* The identification objects the device sent, by attribute name. */
static json_object *ident_json(const struct device_ident *id)
{
    json_object *o = json_object_new_object();

    for (int i = 0; i < N_IDENT_OBJECTS; i++)
        if (id->obj[i])
            json_object_object_add(o, ident_attribute_names[i], json_object_new_string(id->obj[i]));
    return o;
}

/* Bus thread: a read, write or identification finished. */
static void command_done(struct command *cmd)
{
    struct control *c = cmd->ctx;
    char *reply;

    if (cmd->result < 0)
        reply = error_text(cmd->hint                    ? cmd->hint
                           : cmd->result == -ETIMEDOUT ? "the device did not answer"
                                                       : driver_strerror(cmd->result));
    else
        reply = ok_text(cmd->kind == CMD_READ       ? tb_json_value(&cmd->out)
                        : cmd->kind == CMD_IDENTIFY ? ident_json(&cmd->ident)
                                                    : NULL);
    complete(c, cmd->ctx_id, reply);
    command_free(cmd);
}

/* ---- requests ------------------------------------------------------------------------------- */

static const char *get_string(json_object *o, const char *name)
{
    json_object *m;

    if (!json_object_object_get_ex(o, name, &m) || !json_object_is_type(m, json_type_string))
        return NULL;
    return json_object_get_string(m);
}

/* The tag `key` of device d that a commissioning read may use: any declared tag. */
static const struct tag_config *readable_tag(const struct device_config *dc, const char *key)
{
    const struct tag_config *t = device_find_tag(&dc->telemetry, key);

    if (!t)
        t = device_find_tag(&dc->attributes, key);
    if (!t)
        t = device_find_tag(&dc->writes, key);
    return t;
}

int control_parse_request(const char *line, struct control_request *ret, char *err,
                          size_t err_size)
{
    static const char *const names[] = {
        [CONTROL_STATUS] = "status", [CONTROL_READ] = "read", [CONTROL_WRITE] = "write",
        [CONTROL_CLAIM] = "claim",   [CONTROL_RELOAD] = "reload",
        [CONTROL_IDENTIFY] = "identify", [CONTROL_SPOOL] = "spool",
    };
    json_object *root = json_tokener_parse(line), *m;
    const char *cmd = root ? get_string(root, "cmd") : NULL;
    size_t i;

    memset(ret, 0, sizeof(*ret));
    if (!cmd) {
        snprintf(err, err_size, "the request must be a JSON object with \"cmd\"");
        json_object_put(root);
        return -EBADMSG;
    }
    for (i = 0; i < ARRAY_SIZE(names) && strcmp(cmd, names[i]) != 0; i++)
        ;
    if (i == ARRAY_SIZE(names)) {
        snprintf(err, err_size,
                 "unknown command '%s' (status, read, write, claim, reload, identify, spool)",
                 cmd);
        json_object_put(root);
        return -EBADMSG;
    }
    ret->cmd = (enum control_cmd)i;
    ret->device = get_string(root, "device");
    ret->key = get_string(root, "key");
    ret->secret = get_string(root, "secret");
    if ((ret->cmd == CONTROL_READ || ret->cmd == CONTROL_WRITE) && (!ret->device || !ret->key)) {
        snprintf(err, err_size, "'device' and 'key' are required");
        json_object_put(root);
        memset(ret, 0, sizeof(*ret));
        return -EBADMSG;
    }
    if (ret->cmd == CONTROL_IDENTIFY && !ret->device) {
        snprintf(err, err_size, "'device' is required");
        json_object_put(root);
        memset(ret, 0, sizeof(*ret));
        return -EBADMSG;
    }
    if (json_object_object_get_ex(root, "value", &m))
        ret->value = m;
    if (json_object_object_get_ex(root, "duration_ms", &m) &&
        json_object_is_type(m, json_type_int)) {
        ret->has_duration = true;
        ret->duration_ms = json_object_get_int64(m);
    }
    ret->root = root;
    return 0;
}

void control_request_clear(struct control_request *r)
{
    json_object_put(r->root);
    memset(r, 0, sizeof(*r));
}

/* The Modbus device dev, or NULL after an error reply. */
static struct device *modbus_device(struct conn *k, struct gateway *g, const char *dev)
{
    struct device *d = gateway_device(g, dev);

    if (!d) {
        reply_error(k, "no device '%s'", dev);
        return NULL;
    }
    if (d->cfg->bus->driver == DRIVER_SERIAL_LINE) {
        reply_error(k, "device '%s' is a text sensor: its values arrive on their own", dev);
        return NULL;
    }
    return d;
}

static void submit(struct conn *k, struct gateway *g, struct device *d, struct command *cmd)
{
    int r;

    cmd->done = command_done;
    cmd->ctx = k->c;
    cmd->ctx_id = k->id;
    r = gateway_submit(g, d, cmd);
    if (r < 0) {
        command_free(cmd);
        reply_error(k, "cannot queue the request: %s", strerror(-r));
        return;
    }
    k->waiting = true;
}

/* The device identification (43/14), whether or not the device's config asks for it:
 * the question while commissioning is what is on the other end of the wire. */
static void do_identify(struct conn *k, const struct control_request *req)
{
    struct gateway *g = k->c->ops->gateway(k->c->ops->userdata);
    struct device *d = modbus_device(k, g, req->device);
    struct command *cmd;

    if (!d)
        return;
    cmd = xcalloc(1, sizeof(*cmd));
    cmd->kind = CMD_IDENTIFY;
    cmd->device = (uint32_t)d->cfg->index;
    submit(k, g, d, cmd);
}

static void do_read_write(struct conn *k, const struct control_request *req)
{
    struct gateway *g = k->c->ops->gateway(k->c->ops->userdata);
    const char *dev = req->device, *key = req->key;
    bool write = req->cmd == CONTROL_WRITE;
    struct device *d;
    const struct tag_config *t;
    struct command *cmd;
    char err[RPC_ERROR_MAX];

    d = modbus_device(k, g, dev);
    if (!d)
        return;
    t = write ? device_find_tag(&d->cfg->writes, key) : readable_tag(d->cfg, key);
    if (!t) {
        reply_error(k, write ? "device '%s' declares no write '%s'" : "device '%s' has no key '%s'",
                    dev, key);
        return;
    }
    cmd = xcalloc(1, sizeof(*cmd));
    cmd->kind = write ? CMD_WRITE : CMD_READ;
    cmd->device = (uint32_t)d->cfg->index;
    cmd->tag = *t;
    if (write) {
        if (rpc_value_for_tag(t, req->value, &cmd->value, err, sizeof(err)) < 0) {
            command_free(cmd);
            reply_error(k, "%s", err);
            return;
        }
    }
    submit(k, g, d, cmd);
}

struct claim_ctx {
    struct control *c;
    uint64_t conn;
};

static void claim_reply(void *ctx, int err)
{
    struct claim_ctx *x = ctx;

    complete(x->c, x->conn,
             err == 0 ? ok_text(NULL)
                      : error_text(err == -ENOTCONN ? "the device is not connected to the edge"
                                                    : "no such device"));
    free(x);
}

static void do_claim(struct conn *k, const struct control_request *req)
{
    struct gateway *g = k->c->ops->gateway(k->c->ops->userdata);
    const char *dev = req->device, *secret = req->secret;
    json_object *body = json_object_new_object();
    struct device *d;
    struct event *e;
    struct claim_ctx *x;

    if (!dev || !(d = gateway_device(g, dev))) {
        json_object_put(body);
        reply_error(k, "no device '%s'", dev ? dev : "");
        return;
    }
    if (secret)
        json_object_object_add(body, "secretKey", json_object_new_string(secret));
    if (req->has_duration)
        json_object_object_add(body, "durationMs", json_object_new_int64(req->duration_ms));
    e = xcalloc(1, sizeof(*e));
    e->type = EV_CONTROL;
    e->device = (uint32_t)d->cfg->index;
    e->topic = xstrdup("claim");
    e->payload = tb_json_text(body, &e->len);
    json_object_put(body);
    x = xcalloc(1, sizeof(*x));
    x->c = k->c;
    x->conn = k->id;
    e->reply = claim_reply;
    e->reply_ctx = x;
    k->waiting = true;
    gateway_post_uplink(g, e);
}

static void do_reload(struct conn *k)
{
    char *problems = NULL;
    int r = k->c->ops->reload(k->c->ops->userdata, &problems);
    json_object *o = json_object_new_object();

    if (r < 0) {
        json_object_object_add(o, "error", json_object_new_string("the configuration was refused; "
                                                                  "still running with the previous one"));
        json_object_object_add(o, "problems", json_object_new_string(problems ? problems : ""));
    } else {
        json_object_object_add(o, "ok", json_object_new_boolean(1));
        if (problems && *problems)
            json_object_object_add(o, "warnings", json_object_new_string(problems));
    }
    free(problems);
    /* The reload may have replaced this very control socket: answer, then go. */
    reply_json(k, o);
}

static void dispatch(struct conn *k)
{
    struct control_request req;
    char err[512];

    if (control_parse_request(k->buf, &req, err, sizeof(err)) < 0) {
        reply_error(k, "%s", err);
        return;
    }
    switch (req.cmd) {
    case CONTROL_STATUS:
        reply_json(k, gateway_status_json(k->c->ops->gateway(k->c->ops->userdata)));
        break;
    case CONTROL_READ:
    case CONTROL_WRITE:
        do_read_write(k, &req);
        break;
    case CONTROL_CLAIM:
        do_claim(k, &req);
        break;
    case CONTROL_RELOAD:
        do_reload(k);
        break;
    case CONTROL_IDENTIFY:
        do_identify(k, &req);
        break;
    case CONTROL_SPOOL: {
        json_object *o = gateway_spool_json(k->c->ops->gateway(k->c->ops->userdata), err,
                                            sizeof(err));
        if (o)
            reply_json(k, o);
        else
            reply_error(k, "%s", err);
        break;
    }
    }
    control_request_clear(&req);
}

static int on_readable(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
    struct conn *k = userdata;
    ssize_t n;
    char *nl;

    if (k->waiting)
        return 0;
    n = read(fd, k->buf + k->len, sizeof(k->buf) - 1 - k->len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (n <= 0) {
        conn_close(k);
        return 0;
    }
    k->len += (size_t)n;
    k->buf[k->len] = '\0';
    nl = strchr(k->buf, '\n');
    if (!nl && k->len < sizeof(k->buf) - 1)
        return 0;
    if (!nl) {
        reply_error(k, "request too long");
        return 0;
    }
    *nl = '\0';
    sd_event_source_set_enabled(k->io, SD_EVENT_OFF);
    dispatch(k);
    return 0;
}

static int on_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
    struct conn *k = userdata;

    if (k->waiting)
        reply_error(k, "no answer in time (the bus may be busy or the device slow)");
    else
        conn_close(k);
    return 0;
}

/* ---- who may connect ------------------------------------------------------------------------ */

static bool peer_allowed(int fd, char *who, size_t size)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    struct group *gr;
    gid_t groups[256];
    socklen_t glen = sizeof(groups);

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
        return false;
    snprintf(who, size, "uid %d, pid %d", (int)cred.uid, (int)cred.pid);
    if (cred.uid == 0 || cred.uid == geteuid())
        return true;
    gr = getgrnam(CONTROL_GROUP);
    if (!gr)
        return false;
    if (cred.gid == gr->gr_gid)
        return true;
    /* The peer's actual supplementary groups, as the kernel knows them. */
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &glen) == 0) {
        for (size_t i = 0; i < glen / sizeof(gid_t); i++)
            if (groups[i] == gr->gr_gid)
                return true;
    }
    return false;
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
    struct control *c = userdata;
    struct conn *k;
    char who[64];
    uint64_t now;
    int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

    if (cfd < 0)
        return 0;
    k = xcalloc(1, sizeof(*k));
    k->fd = cfd;
    k->c = c;
    k->id = ++c->next_id;
    k->next = c->conns;
    c->conns = k;
    if (!peer_allowed(cfd, who, sizeof(who))) {
        log_warning("control: refused a connection from %s (only root and members of group "
                    "'%s' may use tbgwctl)", who, CONTROL_GROUP);
        reply_error(k, "permission denied: only root and members of group '%s' may do this",
                    CONTROL_GROUP);
        return 0;
    }
    sd_event_add_io(c->event, &k->io, cfd, EPOLLIN, on_readable, k);
    sd_event_now(c->event, CLOCK_MONOTONIC, &now);
    sd_event_add_time(c->event, &k->timer, CLOCK_MONOTONIC, now + CLIENT_TIMEOUT_US, 0,
                      on_timeout, k);
    return 0;
}

/* ---- open / close --------------------------------------------------------------------------- */

int control_open(sd_event *event, const char *path, const struct control_ops *ops,
                 struct control **ret)
{
    struct control *c;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct stat st;
    struct group *gr;
    char *dir;
    int r;

    if (strlen(path) >= sizeof(sa.sun_path))
        return log_error_errno(ENAMETOOLONG, "control socket '%s': path too long", path);
    c = xcalloc(1, sizeof(*c));
    c->event = sd_event_ref(event);
    c->ops = ops;
    c->path = xstrdup(path);
    c->fd = c->done_fd = -1;
    pthread_mutex_init(&c->lock, NULL);

    dir = xstrdup(path);
    if (strrchr(dir, '/') && strrchr(dir, '/') != dir) {
        *strrchr(dir, '/') = '\0';
        mkdir_p(dir, 0755);
    }
    free(dir);
    /* A socket left by a previous run is ours to replace; anything else is not. */
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            r = log_error_errno(EEXIST, "control socket '%s': a file of another kind is in the way",
                                path);
            goto fail;
        }
        unlink(path);
    }
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    strcpy(sa.sun_path, path);
    if (c->fd < 0 || bind(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(c->fd, 16) < 0) {
        r = log_error_errno(errno, "control socket '%s': %m", path);
        goto fail;
    }
    chmod(path, 0660);
    gr = getgrnam(CONTROL_GROUP);
    if (gr && chown(path, (uid_t)-1, gr->gr_gid) < 0)
        log_warning("control socket '%s': cannot give it to group '%s': %s", path,
                    CONTROL_GROUP, strerror(errno));
    c->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    r = sd_event_add_io(event, &c->listen_src, c->fd, EPOLLIN, on_accept, c);
    if (r >= 0)
        r = sd_event_add_io(event, &c->done_src, c->done_fd, EPOLLIN, on_done, c);
    if (r < 0) {
        log_error_errno(r, "control socket '%s': %m", path);
        goto fail;
    }
    *ret = c;
    return 0;
fail:
    control_close(c);
    return r;
}

struct control *control_close(struct control *c)
{
    struct completion *x;

    if (!c)
        return NULL;
    while (c->conns)
        conn_close(c->conns);
    sd_event_source_unref(c->listen_src);
    sd_event_source_unref(c->done_src);
    if (c->fd >= 0) {
        close(c->fd);
        unlink(c->path);
    }
    if (c->done_fd >= 0)
        close(c->done_fd);
    x = c->done;
    while (x) {
        struct completion *next = x->next;
        free(x->reply);
        free(x);
        x = next;
    }
    pthread_mutex_destroy(&c->lock);
    sd_event_unref(c->event);
    free(c->path);
    free(c);
    return NULL;
}

const char *control_path(const struct control *c)
{
    return c->path;
}
