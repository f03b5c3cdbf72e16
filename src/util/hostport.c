/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * "host:port" parsing (hostport.h). An IPv6 address is written in brackets, as in URLs
 * (RFC 3986), because its own colons would make the port ambiguous. Pure. Thread: any.
 */
#include "util/hostport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

static int parse_port(const char *p, in_port_t *ret)
{
    char *end;
    long v;

    if (*p < '0' || *p > '9')
        return -EINVAL;
    errno = 0;
    v = strtol(p, &end, 10);
    if (errno || *end || v < 1 || v > 65535)
        return -EINVAL;
    *ret = htons((uint16_t)v);
    return 0;
}

int hostport_parse(const char *s, struct sockaddr_storage *ss, socklen_t *len, const char **why)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *colon;
    in_port_t port;
    size_t n;

    memset(ss, 0, sizeof(*ss));
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;

        if (!close || close[1] != ':') {
            *why = "expected \"[IPv6 address]:port\"";
            return -EINVAL;
        }
        n = (size_t)(close - s - 1);
        if (n == 0 || n >= sizeof(host) || (memcpy(host, s + 1, n), host[n] = '\0',
                                             inet_pton(AF_INET6, host, &a->sin6_addr) != 1)) {
            *why = "not an IPv6 address inside [ ]";
            return -EINVAL;
        }
        if (parse_port(close + 2, &port) < 0) {
            *why = "the port must be a number from 1 to 65535";
            return -EINVAL;
        }
        a->sin6_family = AF_INET6;
        a->sin6_port = port;
        *len = sizeof(*a);
        return 0;
    }
    colon = strrchr(s, ':');
    if (!colon) {
        *why = "expected \"address:port\", e.g. \"127.0.0.1:9105\" or \"[::1]:9105\"";
        return -EINVAL;
    }
    if (memchr(s, ':', (size_t)(colon - s))) {
        *why = "an IPv6 address needs brackets: \"[::1]:9105\"";
        return -EINVAL;
    }
    n = (size_t)(colon - s);
    {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;

        if (n == 0 || n >= sizeof(host) ||
            (memcpy(host, s, n), host[n] = '\0', inet_pton(AF_INET, host, &a->sin_addr) != 1)) {
            *why = "not an IPv4 address (names are not resolved: write 127.0.0.1, not localhost)";
            return -EINVAL;
        }
        if (parse_port(colon + 1, &port) < 0) {
            *why = "the port must be a number from 1 to 65535";
            return -EINVAL;
        }
        a->sin_family = AF_INET;
        a->sin_port = port;
        *len = sizeof(*a);
    }
    return 0;
}
