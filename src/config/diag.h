/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Adding to a struct diag (see config.h for reading one).
 */
#ifndef TBGW_CONFIG_DIAG_H
#define TBGW_CONFIG_DIAG_H

#include <stdarg.h>
#include <stdbool.h>

#include "util/macros.h"

struct diag;

/* One problem at file:line (line <= 0: the file as a whole), about the setting at path. */
void diag_add(struct diag *d, bool warning, const char *file, int line, const char *path,
              const char *fmt, ...) PRINTF_LIKE(6, 7);
void diag_addv(struct diag *d, bool warning, const char *file, int line, const char *path,
               const char *fmt, va_list ap) PRINTF_LIKE(6, 0);

#endif
