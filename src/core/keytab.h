/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A device's key names, indexed by the small integer a sample carries. Append-only with a
 * fixed capacity: the writer (the device's bus thread, or the gateway before threads
 * start) fills an entry, then publishes it by a release store of the count; readers (the
 * uplink thread) load the count with acquire and may then read every entry below it.
 * Entries never change or move once published, so readers take no lock.
 *
 * Thread: keytab_add/keytab_find on the single writer; keytab_count/keytab_get on any.
 */
#ifndef TBGW_CORE_KEYTAB_H
#define TBGW_CORE_KEYTAB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#define KEYTAB_MAX 1024 /* keys per device: ThingsBoard dashboards stop being useful long before */

struct keytab {
    _Atomic size_t n;
    size_t cap;
    char **keys;
};

struct keytab *keytab_new(size_t cap);
struct keytab *keytab_free(struct keytab *kt);

/* Index of key, adding it if absent. Returns the index, or -ENOSPC when full. */
int keytab_intern(struct keytab *kt, const char *key);

/* Index of key, or -ENOENT. Writer thread. */
int keytab_find(const struct keytab *kt, const char *key);

size_t keytab_count(const struct keytab *kt);

/* Key i (< keytab_count()). */
const char *keytab_get(const struct keytab *kt, size_t i);

#endif
