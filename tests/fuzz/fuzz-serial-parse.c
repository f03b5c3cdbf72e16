/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz target: text sensor lines (drivers/serial-parse.c). The first byte picks one of
 * the parser set-ups below (a format, with columns or a pattern and keys as a
 * configuration would give them); the rest is what the serial port delivers, cut into
 * lines as serial-line.c does: at CR or LF, a line over SL_LINE_MAX bytes dropped whole.
 *
 * Promises checked (abort when broken): every key and string value is valid UTF-8 (they
 * become JSON for ThingsBoard) and keys fit LINE_KEY_MAX; numbers are finite; a line
 * either yields values and says how many, or is refused with nothing emitted.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "drivers/serial-parse.h"
#include "tests/fuzz/fuzz.h"
#include "util/macros.h"
#include "util/utf8.h"

#define SL_LINE_MAX 1024 /* serial-line.c */

static char *const cols_thp[] = {(char *)"t", (char *)"h", (char *)"-", (char *)"p", NULL};
static char *const cols_one[] = {(char *)"a", NULL};
static char *const keys_th[] = {(char *)"t", (char *)"h", NULL};
static char *const keys_xyz[] = {(char *)"x", (char *)"y", (char *)"z", NULL};
static char *const keys_one[] = {(char *)"one", NULL};
static char *const keys_many[] = {(char *)"v", (char *)"extra", (char *)"more", NULL};

static const struct setup {
    enum line_format format;
    char *const *columns;
    const char *pattern;
    char *const *keys;
} setups[] = {
    {FORMAT_JSON, NULL, NULL, NULL},
    {FORMAT_KV, NULL, NULL, NULL},
    {FORMAT_CSV, cols_thp, NULL, NULL},
    {FORMAT_CSV, cols_one, NULL, NULL},
    {FORMAT_REGEX, NULL, "T=([-0-9.]+) H=([0-9.]+)", keys_th},
    {FORMAT_REGEX, NULL, "(a)?(b)?(c+)", keys_xyz},
    {FORMAT_REGEX, NULL, "(x+)(y+)(z+)", keys_one},
    {FORMAT_REGEX, NULL, "v=([0-9]+)", keys_many},
};

static struct line_parser parsers[ARRAY_SIZE(setups)];
static int emitted;

static void check_value(const struct value *v)
{
    switch (v->kind) {
    case VK_INT:
    case VK_BOOL:
        break;
    case VK_DOUBLE:
        if (!isfinite(v->d))
            BROKEN();
        break;
    case VK_STRING:
        if (!v->s || !utf8_valid(v->s, strlen(v->s)))
            BROKEN();
        break;
    default:
        BROKEN();
    }
}

static void emit(void *ctx, const char *key, struct value *v)
{
    size_t kl = strlen(key);

    if (!kl || kl >= LINE_KEY_MAX || !utf8_valid(key, kl))
        BROKEN();
    check_value(v);
    value_clear(v);
    emitted++;
}

static void line(const struct line_parser *p, const char *s, size_t len)
{
    struct value v = {0};
    int n;

    emitted = 0;
    n = line_parse(p, s, len, emit, NULL);
    if (n != emitted && !(n == -EBADMSG && emitted == 0))
        BROKEN();
    line_value_from_text(s, len, &v);
    check_value(&v);
    value_clear(&v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    const struct line_parser *p;
    char *buf;
    size_t len = 0;
    bool discarding = false;

    if (!ready) {
        for (size_t i = 0; i < ARRAY_SIZE(setups); i++)
            if (line_parser_init(&parsers[i], setups[i].format, setups[i].columns,
                                 setups[i].pattern, setups[i].keys) < 0)
                BROKEN();
        ready = true;
    }
    if (size < 1)
        return 0;
    p = &parsers[data[0] % ARRAY_SIZE(setups)];
    /* A line lives in a buffer of its own size, as a copy of serial-line.c's buffer. */
    buf = xmalloc(SL_LINE_MAX);
    for (size_t i = 1; i <= size; i++) {
        char c = i < size ? (char)data[i] : '\n';
        if (c == '\r' || c == '\n') {
            if (!discarding && len) {
                char *exact = xmalloc(len);
                memcpy(exact, buf, len);
                line(p, exact, len);
                free(exact);
            }
            discarding = false;
            len = 0;
        } else if (!discarding) {
            if (len == SL_LINE_MAX)
                discarding = true, len = 0;
            else
                buf[len++] = c;
        }
    }
    free(buf);
    return 0;
}
