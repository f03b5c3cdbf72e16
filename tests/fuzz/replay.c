/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * main() for the fuzz targets in builds without libFuzzer: every file named on the command
 * line, and every regular file in a directory named there, is passed once to
 * LLVMFuzzerTestOneInput(), in name order, as libFuzzer does with file arguments. Without
 * arguments a program called fuzz-<name> replays its own corpus,
 * $TBGW_SRCDIR/tests/fuzz/corpus/<name>: that is what make check runs, under whatever
 * sanitizers the build has.
 *
 * Arguments that start with '-' (libFuzzer's -runs=0, -dict=…) are ignored, so one command
 * line works with either main(). Each input is handed over in a buffer of exactly its size,
 * so that AddressSanitizer sees a read past its end.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/fuzz/fuzz.h"
#include "util/macros.h"

struct list {
    char **v;
    size_t n;
};

static void add(struct list *l, char *path)
{
    l->v = xreallocarray(l->v, l->n + 1, sizeof(*l->v));
    l->v[l->n++] = path;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A file, or the regular files of a directory. -errno if path cannot be read. */
static int collect(struct list *l, const char *path)
{
    struct stat st;
    struct dirent *e;
    DIR *dir;

    if (stat(path, &st) < 0)
        return -errno;
    if (!S_ISDIR(st.st_mode)) {
        add(l, xstrdup(path));
        return 0;
    }
    dir = opendir(path);
    if (!dir)
        return -errno;
    while ((e = readdir(dir))) {
        char *p;
        if (e->d_name[0] == '.')
            continue;
        p = xasprintf("%s/%s", path, e->d_name);
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode))
            add(l, p);
        else
            free(p);
    }
    closedir(dir);
    return 0;
}

static int replay(const char *path, size_t *ret_bytes)
{
    FILE *f = fopen(path, "rb");
    uint8_t *data = NULL;
    size_t size = 0, cap = 0, n;

    if (!f)
        return -errno;
    do {
        if (size == cap) {
            cap = cap ? cap * 2 : 4096;
            data = xrealloc(data, cap);
        }
        n = fread(data + size, 1, cap - size, f);
        size += n;
    } while (n > 0);
    fclose(f);
    /* Exactly size bytes, not the larger read buffer. */
    {
        uint8_t *exact = xmalloc(size ? size : 1);
        if (size)
            memcpy(exact, data, size);
        free(data);
        LLVMFuzzerTestOneInput(exact, size);
        free(exact);
    }
    *ret_bytes += size;
    return 0;
}

int main(int argc, char **argv)
{
    const char *prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    struct list l = {0};
    size_t bytes = 0;
    int paths = 0, r;

    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-')
            continue;
        paths++;
        r = collect(&l, argv[i]);
        if (r < 0) {
            fprintf(stderr, "%s: '%s': %s\n", prog, argv[i], strerror(-r));
            return 1;
        }
    }
    if (!paths) {
        const char *src = getenv("TBGW_SRCDIR");
        char *dir;

        if (strncmp(prog, "fuzz-", 5) != 0 || !src || !*src) {
            fprintf(stderr, "usage: %s FILE|DIR... (or no argument, with TBGW_SRCDIR set, for "
                            "the corpus of a fuzz-<name> program)\n", prog);
            return 2;
        }
        dir = xasprintf("%s/tests/fuzz/corpus/%s", src, prog + 5);
        r = collect(&l, dir);
        if (r < 0) {
            fprintf(stderr, "%s: '%s': %s\n", prog, dir, strerror(-r));
            free(dir);
            return 1;
        }
        free(dir);
    }
    if (!l.n) {
        fprintf(stderr, "%s: no inputs\n", prog);
        return 1;
    }
    qsort(l.v, l.n, sizeof(*l.v), by_name);
    for (size_t i = 0; i < l.n; i++) {
        r = replay(l.v[i], &bytes);
        if (r < 0) {
            fprintf(stderr, "%s: '%s': %s\n", prog, l.v[i], strerror(-r));
            return 1;
        }
    }
    printf("%s: %zu inputs (%zu bytes) replayed\n", prog, l.n, bytes);
    for (size_t i = 0; i < l.n; i++)
        free(l.v[i]);
    free(l.v);
    return 0;
}
