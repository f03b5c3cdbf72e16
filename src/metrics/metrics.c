/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The Prometheus endpoint (metrics.h), served by libmicrohttpd.
 *
 * It runs in the main thread's sd-event loop, not in a thread of its own: libmicrohttpd
 * in "external epoll" mode gives one epoll descriptor, which the loop watches, and a
 * timeout, which the loop's timer follows; both call MHD_run(). So a scrape runs on the
 * same thread as a reload, and reads the gateway that is current, with no lock between
 * them: the figures themselves are atomics that the bus and uplink threads update as they
 * go (the same ones tbgwctl status reads), so a scrape never stops or slows a poll.
 * A scrape renders a few kilobytes from memory; libmicrohttpd never blocks on a client
 * (non-blocking sockets, at most 16 connections, 10 s idle timeout).
 *
 * The listening socket is made here, not by libmicrohttpd, so that "address in use"
 * reaches the log as such. libmicrohttpd itself is loaded when the endpoint first opens
 * (mhd.h): a gateway without metrics never has it in memory.
 */
#include "metrics/metrics.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "metrics/mhd.h"
#include "metrics/prom.h"
#include "util/hostport.h"
#include "util/log.h"
#include "util/macros.h"

static const struct mhd *mhd; /* loaded by the first metrics_open() */

struct metrics {
    sd_event *event;
    char *listen;
    int fd;
    struct MHD_Daemon *mhd;
    sd_event_source *io, *timer;
    metrics_render_fn render;
    void *userdata;
};

static enum MHD_Result answer(struct MHD_Connection *c, unsigned status, const char *type,
                              char *body, size_t len)
{
    struct MHD_Response *r = mhd->create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    enum MHD_Result ret;

    if (!r) {
        free(body);
        return MHD_NO;
    }
    mhd->add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    ret = mhd->queue_response(c, status, r);
    mhd->destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **state)
{
    struct metrics *m = cls;
    char *body = NULL;
    size_t len = 0;
    FILE *f;

    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return answer(c, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain; charset=utf-8",
                      xstrdup("only GET\n"), strlen("only GET\n"));
    if (strcmp(url, "/metrics") != 0) {
        static const char hint[] = "tbgw: the metrics are at /metrics\n";
        return answer(c, MHD_HTTP_NOT_FOUND, "text/plain; charset=utf-8", xstrdup(hint),
                      sizeof(hint) - 1);
    }
    f = open_memstream(&body, &len);
    if (!f)
        return MHD_NO;
    m->render(m->userdata, f);
    if (fclose(f) != 0) {
        free(body);
        return MHD_NO;
    }
    return answer(c, MHD_HTTP_OK, PROM_CONTENT_TYPE, body, len);
}

static void rearm(struct metrics *m);

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
    struct metrics *m = userdata;

    mhd->run(m->mhd);
    rearm(m);
    return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
    return on_io(NULL, -1, 0, userdata);
}

/* libmicrohttpd's own deadlines (idle connections, and work it has already buffered). */
static void rearm(struct metrics *m)
{
    MHD_UNSIGNED_LONG_LONG ms;
    uint64_t now;

    if (mhd->get_timeout(m->mhd, &ms) != MHD_YES) {
        sd_event_source_set_enabled(m->timer, SD_EVENT_OFF);
        return;
    }
    sd_event_now(m->event, CLOCK_MONOTONIC, &now);
    sd_event_source_set_time(m->timer, now + (uint64_t)ms * 1000);
    sd_event_source_set_enabled(m->timer, SD_EVENT_ONESHOT);
}

static int listen_on(const char *addr)
{
    struct sockaddr_storage ss;
    socklen_t len;
    const char *why;
    int fd, one = 1;

    if (hostport_parse(addr, &ss, &len, &why) < 0)
        return log_error_errno(EINVAL, "metrics: cannot listen on '%s': %s", addr, why);
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return log_error_errno(errno, "metrics: cannot listen on %s: %m", addr);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 16) < 0) {
        int r = log_error_errno(errno, "metrics: cannot listen on %s: %m", addr);
        close(fd);
        return r;
    }
    return fd;
}

int metrics_open(sd_event *event, const char *listen, metrics_render_fn render, void *userdata,
                 struct metrics **ret)
{
    struct metrics *m = xcalloc(1, sizeof(*m));
    const union MHD_DaemonInfo *info;
    int r;

    m->fd = -1;
    m->event = sd_event_ref(event);
    m->listen = xstrdup(listen);
    m->render = render;
    m->userdata = userdata;
    /* The socket first: a port in use (a reload keeps the running gateway) must not leave
     * the HTTP library and its TLS stack mapped for nothing. */
    m->fd = listen_on(listen);
    if (m->fd < 0) {
        r = m->fd;
        goto fail;
    }
    if (!mhd && !(mhd = mhd_load())) {
        r = -ELIBACC;
        goto fail;
    }
    m->mhd = mhd->start_daemon(MHD_USE_EPOLL, 0, NULL, NULL, on_request, m,
                               MHD_OPTION_LISTEN_SOCKET, (MHD_socket)m->fd,
                               MHD_OPTION_CONNECTION_LIMIT, (unsigned)16,
                               MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
    if (m->mhd)
        m->fd = -1; /* libmicrohttpd closes it when it stops */
    info = m->mhd ? mhd->get_daemon_info(m->mhd, MHD_DAEMON_INFO_EPOLL_FD) : NULL;
    if (!info) {
        r = log_error_errno(EIO, "metrics: cannot start the HTTP server on %s", listen);
        goto fail;
    }
    r = sd_event_add_io(event, &m->io, info->epoll_fd, EPOLLIN, on_io, m);
    if (r >= 0)
        r = sd_event_add_time(event, &m->timer, CLOCK_MONOTONIC, UINT64_MAX, 0, on_timer, m);
    if (r < 0) {
        log_error_errno(r, "metrics: %m");
        goto fail;
    }
    rearm(m);
    log_info("metrics: serving http://%s/metrics", listen);
    *ret = m;
    return 0;
fail:
    metrics_close(m);
    return r;
}

const char *metrics_listen(const struct metrics *m)
{
    return m->listen;
}

struct metrics *metrics_close(struct metrics *m)
{
    if (!m)
        return NULL;
    sd_event_source_disable_unref(m->io);
    sd_event_source_disable_unref(m->timer);
    if (m->mhd)
        mhd->stop_daemon(m->mhd);
    if (m->fd >= 0)
        close(m->fd);
    sd_event_unref(m->event);
    free(m->listen);
    free(m);
    return NULL;
}
