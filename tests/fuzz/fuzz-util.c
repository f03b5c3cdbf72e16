/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Helpers for the fuzz targets: a scratch directory and quiet logging (see fuzz.h).
 * Thread: the fuzzer's only thread.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/fuzz/fuzz.h"
#include "util/log.h"
#include "util/macros.h"

static char scratch[PATH_MAX];

/* LeakSanitizer reads this at start. libconfig 1.5 (Debian 12) loses a string buffer when
 * a file ends inside a string: its bug (fixed in 1.7), not the loader's. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libconfig.so\n";
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    remove(path);
    return 0;
}

static void remove_scratch(void)
{
    if (scratch[0])
        nftw(scratch, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *fuzz_scratch_dir(void)
{
    const char *tmp = getenv("TMPDIR");

    if (scratch[0])
        return scratch;
    snprintf(scratch, sizeof(scratch), "%s/tbgw-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(scratch)) {
        fprintf(stderr, "fuzz: cannot make a directory in '%s': %s\n",
                tmp && *tmp ? tmp : "/tmp", strerror(errno));
        abort();
    }
    atexit(remove_scratch);
    return scratch;
}

const char *fuzz_write_file(const char *name, const void *data, size_t size)
{
    static char path[PATH_MAX];
    const char *p = data;
    int fd;

    snprintf(path, sizeof(path), "%s/%s", fuzz_scratch_dir(), name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "fuzz: cannot write '%s': %s\n", path, strerror(errno));
        abort();
    }
    while (size) {
        ssize_t n = write(fd, p, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "fuzz: cannot write '%s': %s\n", path, strerror(errno));
            abort();
        }
        p += n;
        size -= (size_t)n;
    }
    close(fd);
    return path;
}

void fuzz_broken(const char *file, int line)
{
    fprintf(stderr, "%s:%d: broken promise (see the check on that line)\n", file, line);
    abort();
}

void fuzz_quiet(void)
{
    const char *e = getenv("TBGW_FUZZ_LOG");

    log_max_level = e && *e && strcmp(e, "0") != 0 ? LOG_DEBUG : -1;
}

char *fuzz_strndup(const uint8_t *data, size_t size)
{
    char *s = xmalloc(size + 1);

    if (size)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}
