/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Why can we not reach the Edge? paho reports a failed TLS handshake only as "TCP/TLS
 * connect failure" (and a host name mismatch not at all), which helps nobody on site. So
 * on the first failure of an episode, tbgw repeats the connection itself with the same
 * settings and reports OpenSSL's verdict in words: "certificate has expired", "unable to
 * get local issuer certificate" (unknown CA), "hostname mismatch", "connection refused".
 *
 * Blocking, bounded by a few seconds. Thread: uplink.
 */
#ifndef TBGW_UPLINK_TLS_CHECK_H
#define TBGW_UPLINK_TLS_CHECK_H

#include <stddef.h>

#include "config/config.h"

/* TCP only. Writes the reason into why ("" if the connection works). */
void tcp_check(const struct edge_config *e, char *why, size_t size);

/* TCP + TLS handshake + verification as paho does it. cert/key: the client certificate,
 * if any. Writes the reason into why ("" if the handshake and verification succeed). */
void tls_check(const struct edge_config *e, const char *cert, const char *key, char *why,
               size_t size);

#endif
