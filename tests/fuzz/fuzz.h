/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * What the fuzz targets share. Each tests/fuzz/fuzz-<name>.c defines
 * LLVMFuzzerTestOneInput() and feeds the bytes to the daemon's own parsing code from
 * libtbgw.a; libFuzzer's main() (--enable-fuzzing) or replay.c's (every other build)
 * calls it.
 *
 * A target calls BROKEN() when the code under test breaks one of its promises (an order
 * lost, a value written other than the one asked for): it names the line and aborts, and
 * libFuzzer records a crash like any sanitizer report.
 */
#ifndef TBGW_TESTS_FUZZ_FUZZ_H
#define TBGW_TESTS_FUZZ_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define BROKEN() fuzz_broken(__FILE__, __LINE__)
void fuzz_broken(const char *file, int line) __attribute__((noreturn));

/* A private directory for the target's files ($TMPDIR or /tmp), made on first use and
 * removed with everything in it at exit. Aborts if it cannot be made. */
const char *fuzz_scratch_dir(void);

/* Replace <scratch>/name with data. Returns the path (static storage, per call). */
const char *fuzz_write_file(const char *name, const void *data, size_t size);

/* The daemon's log lines would only slow the fuzzer down; TBGW_FUZZ_LOG=1 keeps them. */
void fuzz_quiet(void);

/* The input as a NUL-terminated string (malloc'd). */
char *fuzz_strndup(const uint8_t *data, size_t size);

#endif
