/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Text sensor lines -> (key, value) pairs, for the four formats of a serial-line device:
 *   json   {"t":21.5,"wind":{"speed":3}}   nested keys flattened with '.': wind.speed
 *   kv     t=21.5 h=40  (also t:21.5; pairs separated by spaces, ',' or ';'; "quoted values")
 *   csv    21.5,40      with columns = [ "t", "h" ]  ("-" skips a column)
 *   regex  T=21.5 H=40  with a POSIX ERE; capture group N becomes keys[N-1]
 * Text that reads entirely as a number becomes a number (an integer without '.' or
 * exponent, else a double); everything else a string, made valid UTF-8.
 *
 * Pure: no I/O, no locks, no globals; fuzzed (tests/fuzz). Thread: any.
 */
#ifndef TBGW_DRIVERS_SERIAL_PARSE_H
#define TBGW_DRIVERS_SERIAL_PARSE_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "core/value.h"

#define LINE_KEY_MAX 128

struct line_parser {
    enum line_format format;
    char *const *columns; /* csv (borrowed from the config) */
    char *const *keys;    /* regex (borrowed) */
    size_t n_keys;
    regex_t re;
    bool have_re;
};

/* Called for each value; v is the callee's (it must clear it). */
typedef void (*line_emit_fn)(void *ctx, const char *key, struct value *v);

int line_parser_init(struct line_parser *p, enum line_format format, char *const *columns,
                     const char *pattern, char *const *keys);
void line_parser_free(struct line_parser *p);

/* Parse one line (without its end-of-line). Returns the number of values emitted, or
 * -EBADMSG when the line is not in the format (nothing is emitted then). */
int line_parse(const struct line_parser *p, const char *line, size_t len, line_emit_fn emit,
               void *ctx);

/* Text -> number or string, as described above. The value owns its string. */
void line_value_from_text(const char *s, size_t len, struct value *ret);

#endif
