/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * How a Modbus bus's TCP connection comes to be: tbgw dials the device (host, port), or,
 * with listen = { bind; port; }, the device server / DTU dials tbgw and tbgw polls
 * through the connection it accepted. The newest accepted connection wins: a DTU that
 * re-dials after a cellular hiccup leaves its old, dead connection behind.
 *
 * Thread: the bus thread (the listen socket is created by bus_new() on the main thread,
 * before the bus thread exists).
 */
#ifndef TBGW_DRIVERS_TCP_PEER_H
#define TBGW_DRIVERS_TCP_PEER_H

#include <stdbool.h>

struct tcp_listener {
    int fd;          /* the listen socket; -1 when the bus dials out */
    char where[64];  /* "0.0.0.0:5020", for messages */
};

/* Bind and listen on addr:port (numeric address). 0 or -errno. */
int tcp_listener_open(struct tcp_listener *ls, const char *addr, int port);
void tcp_listener_close(struct tcp_listener *ls);

/* The newest connection waiting on ls (older waiting ones are closed), or -EAGAIN when
 * none is waiting, or another -errno. */
int tcp_listener_accept(struct tcp_listener *ls);

/* Connect to host:port within timeout_ms. The fd, or -errno. */
int tcp_dial(const char *host, int port, int timeout_ms);

/* Make a dead peer show as an error rather than as silence: a peer that power-cycled
 * never sends FIN, so unacknowledged requests and idle keepalives time the socket out. */
void tcp_tune(int fd);

#endif
