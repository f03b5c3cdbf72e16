/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * "host:port" listen addresses: "127.0.0.1:9105", "[::1]:9105", "0.0.0.0:9105",
 * "[::]:9105". Numeric addresses only, so that the check is the same everywhere and a
 * listener never depends on name resolution at start-up.
 * Pure. Thread: any.
 */
#ifndef TBGW_UTIL_HOSTPORT_H
#define TBGW_UTIL_HOSTPORT_H

#include <sys/socket.h>

/* Parse s into *ss and *len. 0, or -EINVAL with *why set to a static explanation. */
int hostport_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len, const char **why);

#endif
