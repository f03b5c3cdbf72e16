/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Dialling and accepting a bus's TCP connection (tcp-peer.h).
 *
 * Invariant: every fd returned is O_CLOEXEC; the caller owns it.
 * Thread: the bus thread; tcp_listener_open() on the main thread at start-up.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "drivers/tcp-peer.h"
#include "util/time-util.h"

/* Keepalive idle/interval/count and the unacknowledged-data limit: a dead peer is noticed
 * within about 10 s, well inside the 10 s + backoff the bus promises for a restart. */
#define KEEPIDLE_S 5
#define KEEPINTVL_S 2
#define KEEPCNT 3
#define USER_TIMEOUT_MS 10000

int tcp_listener_open(struct tcp_listener *ls, const char *addr, int port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    char serv[8];
    int fd, one = 1, r;

    ls->fd = -1;
    snprintf(ls->where, sizeof(ls->where), "%s:%d", addr, port);
    snprintf(serv, sizeof(serv), "%d", port);
    r = getaddrinfo(addr, serv, &hints, &ai);
    if (r != 0)
        return r == EAI_SYSTEM ? -errno : -EADDRNOTAVAIL;
    fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        r = -errno;
        freeaddrinfo(ai);
        return r;
    }
    /* A restart of tbgw must not wait out TIME_WAIT of the previous run's connection; and
     * a reload builds the new buses while the old ones still listen (SO_REUSEPORT admits
     * only sockets of the same user that ask for it: another program on the port is still
     * an error). */
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 4) < 0) {
        r = -errno;
        close(fd);
        freeaddrinfo(ai);
        return r;
    }
    freeaddrinfo(ai);
    ls->fd = fd;
    return 0;
}

void tcp_listener_close(struct tcp_listener *ls)
{
    if (ls->fd >= 0)
        close(ls->fd);
    ls->fd = -1;
}

int tcp_listener_accept(struct tcp_listener *ls)
{
    int newest = -1;

    for (;;) {
        int fd = accept4(ls->fd, NULL, NULL, SOCK_CLOEXEC);

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return newest >= 0 ? newest : -EAGAIN;
            if (newest >= 0)
                return newest;
            return -errno;
        }
        if (newest >= 0)
            close(newest);
        newest = fd;
        tcp_tune(newest);
    }
}

void tcp_tune(int fd)
{
    int one = 1, idle = KEEPIDLE_S, intvl = KEEPINTVL_S, cnt = KEEPCNT;
    unsigned user_timeout = USER_TIMEOUT_MS;

    /* Best effort: each is an improvement, none is needed for correctness. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof(user_timeout));
}

static int connect_one(const struct addrinfo *a, uint64_t deadline_ms)
{
    int fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct pollfd p;
    int err = 0, r;
    socklen_t len = sizeof(err);

    if (fd < 0)
        return -errno;
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
        return fd;
    if (errno != EINPROGRESS) {
        r = -errno;
        close(fd);
        return r;
    }
    p = (struct pollfd){.fd = fd, .events = POLLOUT};
    for (;;) {
        uint64_t now = now_ms();
        r = now < deadline_ms ? poll(&p, 1, (int)(deadline_ms - now)) : 0;
        if (r >= 0 || errno != EINTR)
            break;
    }
    if (r == 0)
        err = ETIMEDOUT;
    else if (r < 0)
        err = errno;
    else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        close(fd);
        return -err;
    }
    return fd;
}

int tcp_dial(const char *host, int port, int timeout_ms)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    char serv[8];
    int r, fd = -EHOSTUNREACH;

    snprintf(serv, sizeof(serv), "%d", port);
    r = getaddrinfo(host, serv, &hints, &ai);
    if (r != 0)
        return r == EAI_SYSTEM ? -errno : -EHOSTUNREACH;
    for (const struct addrinfo *a = ai; a; a = a->ai_next) {
        fd = connect_one(a, deadline);
        if (fd >= 0)
            break;
    }
    freeaddrinfo(ai);
    if (fd >= 0)
        tcp_tune(fd);
    /* A connect timeout is the link's failure, not a unit's silence. */
    return fd == -ETIMEDOUT ? -EHOSTUNREACH : fd;
}
