/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Logging to stderr. Under systemd (JOURNAL_STREAM names our stderr) every line carries a
 * "<N>" syslog priority prefix, which journald turns into the entry's priority; on a
 * terminal or in a file, lines are plain text with a timestamp and the level.
 *
 * Rule of thumb (systemd's): a function either logs or returns an error, not both. Pure
 * code never logs. The *_errno variants return -|err| so a caller can write
 *     return log_error_errno(r, "spool '%s': cannot open: %m", path);
 * "%m" expands to the text of err (errno values and libmodbus's EMBX* values alike).
 *
 * Thread: any. Each line is written with a single write(2).
 */
#ifndef TBGW_UTIL_LOG_H
#define TBGW_UTIL_LOG_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <syslog.h>

#include "util/macros.h"

/* Maximum priority that is printed (LOG_ERR … LOG_DEBUG). Atomic: a reload that keeps the
 * gateway running changes it while the bus and uplink threads log. */
extern _Atomic int log_max_level;

/* Decide between journal and plain output from the environment. Thread: main, at start. */
void log_open(void);

/* Force the output style (tests). */
void log_set_journal(bool journal);

/* Text for an error number; defaults to strerror(). main.c installs one that also knows
 * libmodbus's exception codes. */
void log_set_strerror(const char *(*fn)(int errnum));
const char *log_strerror(int errnum);

int log_level_from_string(const char *s);
const char *log_level_to_string(int level);

int log_internal(int prio, int err, const char *fmt, ...) PRINTF_LIKE(3, 4);
int log_internalv(int prio, int err, const char *fmt, va_list ap) PRINTF_LIKE(3, 0);

#define log_full_errno(prio, err, ...)                                                             \
    ({                                                                                             \
        int log_p_ = (prio);                                                                       \
        int log_e_ = (err);                                                                        \
        log_p_ <= log_max_level ? log_internal(log_p_, log_e_, __VA_ARGS__)                        \
                                : -(log_e_ < 0 ? -log_e_ : log_e_);                                \
    })

#define log_error(...) (void)log_full_errno(LOG_ERR, 0, __VA_ARGS__)
#define log_warning(...) (void)log_full_errno(LOG_WARNING, 0, __VA_ARGS__)
#define log_notice(...) (void)log_full_errno(LOG_NOTICE, 0, __VA_ARGS__)
#define log_info(...) (void)log_full_errno(LOG_INFO, 0, __VA_ARGS__)
#define log_debug(...) (void)log_full_errno(LOG_DEBUG, 0, __VA_ARGS__)

#define log_error_errno(err, ...) log_full_errno(LOG_ERR, err, __VA_ARGS__)
#define log_warning_errno(err, ...) log_full_errno(LOG_WARNING, err, __VA_ARGS__)
#define log_info_errno(err, ...) log_full_errno(LOG_INFO, err, __VA_ARGS__)
#define log_debug_errno(err, ...) log_full_errno(LOG_DEBUG, err, __VA_ARGS__)

/* A secret for a log line: never the secret itself. Returns "(none)" or "(N chars)". */
const char *log_mask(const char *secret, char buf[static 24]);

#endif
