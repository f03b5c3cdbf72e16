/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Files that must survive a power cut whole or not at all.
 * Thread: any.
 */
#ifndef TBGW_UTIL_FILEIO_H
#define TBGW_UTIL_FILEIO_H

#include <stddef.h>
#include <sys/types.h>

/* Replace path with data: write a temporary file beside it, fsync, rename over path,
 * fsync the directory. Readers see the old or the new content, never a mix. 0 or -errno. */
int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);

/* Read a whole (small) file into a NUL-terminated buffer. 0 or -errno. */
int read_file(const char *path, char **ret, size_t *ret_len, size_t max);

/* mkdir -p with mode for the directories it creates. 0 or -errno. */
int mkdir_p(const char *path, mode_t mode);

#endif
