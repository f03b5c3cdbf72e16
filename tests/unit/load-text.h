/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * For the configuration unit tests: load a configuration from text (through a temporary
 * file, as config_load() reads files). Include after <cmocka.h>.
 */
#ifndef TBGW_TESTS_UNIT_LOAD_TEXT_H
#define TBGW_TESTS_UNIT_LOAD_TEXT_H

#include <string.h>
#include <unistd.h>

#include "config/config.h"

/* The configuration, or NULL; its diagnostics in *ret_diag when given (caller frees). */
static inline struct config *load_text(const char *text, struct diag **ret_diag)
{
    char path[] = "/tmp/tbgw-test-config-XXXXXX";
    int fd = mkstemp(path);
    struct diag *d = diag_new();
    struct config *c;

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    c = config_load(path, d);
    unlink(path);
    if (ret_diag)
        *ret_diag = d;
    else
        diag_free(d);
    return c;
}

#endif
