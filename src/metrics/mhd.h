/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libmicrohttpd, loaded the first time the metrics endpoint opens rather than linked.
 * Linked, it is loaded at every start, and its constructor initialises GnuTLS, which
 * brings in p11-kit, nettle, gmp and more: 2.4 MiB of resident memory in a gateway whose
 * metrics are off (the default), a fifth of what it needs in all.
 *
 * The entry points keep libmicrohttpd's own prototypes (microhttpd.h), so every call is
 * checked by the compiler as if it were linked.
 *
 * Thread: main.
 */
#ifndef TBGW_METRICS_MHD_H
#define TBGW_METRICS_MHD_H

#include <microhttpd.h>

struct mhd {
    __typeof__(MHD_start_daemon) *start_daemon;
    __typeof__(MHD_stop_daemon) *stop_daemon;
    __typeof__(MHD_run) *run;
    __typeof__(MHD_get_timeout) *get_timeout;
    __typeof__(MHD_get_daemon_info) *get_daemon_info;
    __typeof__(MHD_create_response_from_buffer) *create_response_from_buffer;
    __typeof__(MHD_add_response_header) *add_response_header;
    __typeof__(MHD_queue_response) *queue_response;
    __typeof__(MHD_destroy_response) *destroy_response;
};

/* The library's entry points, loaded once (it stays loaded). NULL, with the reason
 * logged, when it cannot be: not installed, or a version without one of them. */
const struct mhd *mhd_load(void);

#endif
