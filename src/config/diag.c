/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Collected configuration problems. The loader reports every problem it finds rather
 * than stopping at the first, so one `tbgw --check-config` run shows the user everything
 * to fix. A template's error is found once per device that uses it; identical lines are
 * kept once.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "config/diag.h"
#include "util/macros.h"

struct diag_entry {
    char *file;
    int line;
    bool warning;
    char *text; /* the whole line without '\n' */
};

struct diag {
    struct diag_entry *v;
    size_t n, errors, warnings;
    char *text;
};

struct diag *diag_new(void)
{
    return xcalloc(1, sizeof(struct diag));
}

struct diag *diag_free(struct diag *d)
{
    if (!d)
        return NULL;
    for (size_t i = 0; i < d->n; i++) {
        free(d->v[i].file);
        free(d->v[i].text);
    }
    free(d->v);
    free(d->text);
    free(d);
    return NULL;
}

size_t diag_errors(const struct diag *d)
{
    return d->errors;
}

size_t diag_warnings(const struct diag *d)
{
    return d->warnings;
}

void diag_addv(struct diag *d, bool warning, const char *file, int line, const char *path,
               const char *fmt, va_list ap)
{
    char msg[1024];
    char *text;
    size_t o;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (line > 0)
        text = xasprintf("%s:%d: %s%s%s%s", file, line, warning ? "warning: " : "",
                         path ? path : "", path && *path ? ": " : "", msg);
    else
        text = xasprintf("%s: %s%s%s%s", file, warning ? "warning: " : "", path ? path : "",
                         path && *path ? ": " : "", msg);

    for (size_t i = 0; i < d->n; i++) {
        if (strcmp(d->v[i].text, text) == 0) {
            free(text);
            return;
        }
    }
    o = d->n++;
    d->v = xreallocarray(d->v, d->n, sizeof(*d->v));
    d->v[o] = (struct diag_entry){
        .file = xstrdup(file), .line = line, .warning = warning, .text = text};
    if (warning)
        d->warnings++;
    else
        d->errors++;
}

void diag_add(struct diag *d, bool warning, const char *file, int line, const char *path,
              const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    diag_addv(d, warning, file, line, path, fmt, ap);
    va_end(ap);
}

static int entry_cmp(const void *a, const void *b)
{
    const struct diag_entry *x = a, *y = b;
    int r = strcmp(x->file, y->file);

    if (r)
        return r;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    return 0;
}

const char *diag_text(struct diag *d)
{
    size_t len = 1;
    char *p;

    /* Insertion sort: stable, so problems on one line keep the order they were found in. */
    for (size_t i = 1; i < d->n; i++) {
        struct diag_entry e = d->v[i];
        size_t j = i;
        while (j > 0 && entry_cmp(&d->v[j - 1], &e) > 0) {
            d->v[j] = d->v[j - 1];
            j--;
        }
        d->v[j] = e;
    }
    for (size_t i = 0; i < d->n; i++)
        len += strlen(d->v[i].text) + 1;
    free(d->text);
    d->text = p = xmalloc(len);
    for (size_t i = 0; i < d->n; i++) {
        size_t l = strlen(d->v[i].text);
        memcpy(p, d->v[i].text, l);
        p[l] = '\n';
        p += l + 1;
    }
    *p = '\0';
    return d->text;
}
