/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A field device at run time: its configuration, its key table, and the counters every
 * part of the gateway may read. One struct device per configured device, created by the
 * gateway and shared (never copied) by the device's bus thread, which writes the
 * counters, and the uplink, status and health code, which read them.
 */
#ifndef TBGW_CORE_DEVICE_H
#define TBGW_CORE_DEVICE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "core/keytab.h"

struct bus;

struct device_stats {
    _Atomic uint64_t polls;       /* completed poll cycles, successful or not */
    _Atomic uint64_t failures;    /* cycles that failed after retries */
    _Atomic uint64_t requests;    /* Modbus transactions (or serial lines) */
    _Atomic uint64_t samples;     /* samples pushed to the uplink */
    _Atomic uint64_t dropped;     /* samples lost to a full ring */
    _Atomic uint64_t overruns;    /* polls that started a whole period late */
    _Atomic uint64_t invalid;     /* readings not sent: listed in `invalid`, NaN or infinite */
    _Atomic int64_t last_poll_ms; /* wall-clock time of the last poll */
    _Atomic int64_t last_ok_ms;   /* wall-clock time of the last successful poll */
    _Atomic uint32_t latency_us;  /* duration of the last successful poll */
    _Atomic int last_error;       /* -errno of the last failure, 0 after a success */
    _Atomic bool active;          /* answering (false while backed off) */
};

struct device {
    const struct device_config *cfg;
    struct bus *bus;
    struct keytab *keys;
    struct device_stats stats;
};

#endif
