/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * See log.h. The line is assembled in a stack buffer and written once, so lines from the
 * bus threads, the uplink thread and paho's threads never interleave mid-line (a pipe or
 * the journal stream keeps writes of up to PIPE_BUF bytes whole).
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"

_Atomic int log_max_level = LOG_INFO;

static bool log_journal;

static const char *default_strerror(int errnum)
{
    return strerror(errnum);
}

static const char *(*strerror_fn)(int) = default_strerror;

#define LINE_MAX_BYTES 2048

void log_open(void)
{
    const char *e = getenv("JOURNAL_STREAM");
    struct stat st;
    unsigned long long dev, ino;

    log_journal = false;
    if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
        return;
    if (fstat(STDERR_FILENO, &st) < 0)
        return;
    log_journal = (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_set_journal(bool journal)
{
    log_journal = journal;
}

void log_set_strerror(const char *(*fn)(int errnum))
{
    strerror_fn = fn ? fn : default_strerror;
}

const char *log_strerror(int errnum)
{
    return strerror_fn(errnum < 0 ? -errnum : errnum);
}

static const char *const level_names[] = {
    [LOG_ERR] = "error",   [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
    [LOG_INFO] = "info",   [LOG_DEBUG] = "debug",
};

int log_level_from_string(const char *s)
{
    if (!s)
        return -EINVAL;
    for (size_t i = 0; i < ARRAY_SIZE(level_names); i++)
        if (level_names[i] && strcmp(level_names[i], s) == 0)
            return (int)i;
    return -EINVAL;
}

const char *log_level_to_string(int level)
{
    if (level < 0 || (size_t)level >= ARRAY_SIZE(level_names) || !level_names[level])
        return "unknown";
    return level_names[level];
}

/* Copy fmt into out, replacing "%m" by the (escaped) text of err. */
static void expand_m(char *out, size_t size, const char *fmt, int err)
{
    const char *msg = NULL;
    size_t o = 0;

    for (const char *p = fmt; *p && o + 1 < size; p++) {
        if (p[0] == '%' && p[1] == '%') {
            if (o + 2 >= size)
                break;
            out[o++] = '%';
            out[o++] = '%';
            p++;
        } else if (p[0] == '%' && p[1] == 'm') {
            if (!msg)
                msg = log_strerror(err);
            for (const char *m = msg; *m && o + 2 < size; m++) {
                if (*m == '%')
                    out[o++] = '%';
                out[o++] = *m;
            }
            p++;
        } else {
            out[o++] = *p;
        }
    }
    out[o] = '\0';
}

int log_internalv(int prio, int err, const char *fmt, va_list ap)
{
    char f[512];
    char line[LINE_MAX_BYTES];
    int saved_errno = errno;
    size_t n = 0;

    if (err < 0)
        err = -err;
    expand_m(f, sizeof(f), fmt, err);

    if (log_journal) {
        n = (size_t)snprintf(line, sizeof(line), "<%d>", prio);
    } else {
        struct timespec ts;
        struct tm tm;

        clock_gettime(CLOCK_REALTIME, &ts);
        localtime_r(&ts.tv_sec, &tm);
        n = strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
        n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ld %s: ", ts.tv_nsec / 1000000,
                              log_level_to_string(prio));
    }

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    int r = vsnprintf(line + n, sizeof(line) - n - 1, f, ap);
#pragma GCC diagnostic pop
    if (r < 0)
        r = 0;
    n += (size_t)r;
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    (void)!write(STDERR_FILENO, line, n);

    errno = saved_errno;
    return -err;
}

int log_internal(int prio, int err, const char *fmt, ...)
{
    va_list ap;
    int r;

    va_start(ap, fmt);
    r = log_internalv(prio, err, fmt, ap);
    va_end(ap);
    return r;
}

const char *log_mask(const char *secret, char buf[static 24])
{
    if (!secret || !*secret)
        return "(none)";
    snprintf(buf, 24, "(%u chars)", (unsigned)MIN(strlen(secret), 99999u));
    return buf;
}
