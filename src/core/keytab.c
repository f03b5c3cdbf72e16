/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/keytab.h"
#include "util/macros.h"

struct keytab *keytab_new(size_t cap)
{
    struct keytab *kt = xcalloc(1, sizeof(*kt));

    kt->cap = MIN(MAX(cap, (size_t)1), (size_t)KEYTAB_MAX);
    kt->keys = xcalloc(kt->cap, sizeof(char *));
    atomic_init(&kt->n, 0);
    return kt;
}

struct keytab *keytab_free(struct keytab *kt)
{
    if (!kt)
        return NULL;
    for (size_t i = 0; i < atomic_load_explicit(&kt->n, memory_order_relaxed); i++)
        free(kt->keys[i]);
    free(kt->keys);
    free(kt);
    return NULL;
}

int keytab_find(const struct keytab *kt, const char *key)
{
    size_t n = atomic_load_explicit(&kt->n, memory_order_relaxed);

    for (size_t i = 0; i < n; i++)
        if (strcmp(kt->keys[i], key) == 0)
            return (int)i;
    return -ENOENT;
}

int keytab_intern(struct keytab *kt, const char *key)
{
    size_t n = atomic_load_explicit(&kt->n, memory_order_relaxed);
    int i = keytab_find(kt, key);

    if (i >= 0)
        return i;
    if (n >= kt->cap)
        return -ENOSPC;
    kt->keys[n] = xstrdup(key);
    atomic_store_explicit(&kt->n, n + 1, memory_order_release);
    return (int)n;
}

size_t keytab_count(const struct keytab *kt)
{
    return atomic_load_explicit(&kt->n, memory_order_acquire);
}

const char *keytab_get(const struct keytab *kt, size_t i)
{
    return kt->keys[i];
}
