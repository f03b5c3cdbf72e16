/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Credentials that devices obtained by provisioning themselves, kept in
 * <storage.path>/credentials.json (mode 0600, replaced atomically). ThingsBoard answers a
 * provisioning request once; a retry fails. So what it gave is written to disk before it
 * is used, and used from then on instead of provisioning again.
 *
 * Thread: uplink (and main, before the uplink thread starts).
 */
#ifndef TBGW_UPLINK_CREDSTORE_H
#define TBGW_UPLINK_CREDSTORE_H

#include "tb/tb-json.h"

struct credstore;

/* Load <dir>/credentials.json (missing: empty). A damaged file is moved aside to
 * credentials.json.damaged with a log line. Never NULL. */
struct credstore *credstore_load(const char *dir);
struct credstore *credstore_free(struct credstore *cs);

/* Stored credentials of device, or NULL. */
const struct tb_provisioned *credstore_get(const struct credstore *cs, const char *device);

/* Store (replacing) and write the file. 0 or -errno (logged by the caller). */
int credstore_put(struct credstore *cs, const char *device, const struct tb_provisioned *p);

#endif
