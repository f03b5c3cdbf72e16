/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Text sensor lines: the four formats, number detection, UTF-8, garbage. */
#include "config.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "drivers/serial-parse.h"

struct got {
    char text[1024];
};

/* Record "key=kind:value;" for each emitted value. */
static void emit(void *ctx, const char *key, struct value *v)
{
    struct got *g = ctx;
    size_t o = strlen(g->text);

    switch (v->kind) {
    case VK_INT:
        snprintf(g->text + o, sizeof(g->text) - o, "%s=i:%lld;", key, (long long)v->i);
        break;
    case VK_DOUBLE:
        snprintf(g->text + o, sizeof(g->text) - o, "%s=d:%g;", key, v->d);
        break;
    case VK_BOOL:
        snprintf(g->text + o, sizeof(g->text) - o, "%s=b:%d;", key, v->b);
        break;
    case VK_STRING:
        snprintf(g->text + o, sizeof(g->text) - o, "%s=s:%s;", key, v->s);
        break;
    default:
        break;
    }
    value_clear(v);
}

static void expect(const struct line_parser *p, const char *line, int n, const char *want)
{
    struct got g = {""};
    int r = line_parse(p, line, strlen(line), emit, &g);

    if (r != n)
        fail_msg("'%s': %d values, want %d (%s)", line, r, n, g.text);
    assert_string_equal(g.text, want);
}

static void test_kv(void **state)
{
    struct line_parser p;

    assert_int_equal(line_parser_init(&p, FORMAT_KV, NULL, NULL, NULL), 0);
    expect(&p, "t=21.5 h=40", 2, "t=d:21.5;h=i:40;");
    expect(&p, "t:21.5,h:40;p=1013.2", 3, "t=d:21.5;h=i:40;p=d:1013.2;");
    expect(&p, "WS1 t=-3 status=\"ok now\"", 2, "t=i:-3;status=s:ok now;");
    expect(&p, "id=0012 x=1e3 y=nan", 3, "id=i:12;x=d:1000;y=s:nan;");
    expect(&p, "hello world", -EBADMSG, "");
    expect(&p, "=5", -EBADMSG, "");
    expect(&p, "", -EBADMSG, "");
    line_parser_free(&p);
}

static void test_csv(void **state)
{
    char *cols[] = {(char *)"t", (char *)"-", (char *)"h", NULL};
    struct line_parser p;

    assert_int_equal(line_parser_init(&p, FORMAT_CSV, cols, NULL, NULL), 0);
    expect(&p, "21.5,junk,40", 2, "t=d:21.5;h=i:40;");
    expect(&p, "21.5,junk,40,extra", 2, "t=d:21.5;h=i:40;");
    expect(&p, "21.5", 1, "t=d:21.5;");
    expect(&p, ",,", -EBADMSG, "");
    expect(&p, " 7 ,x, abc ", 2, "t=i:7;h=s:abc;");
    line_parser_free(&p);
}

static void test_regex(void **state)
{
    char *keys[] = {(char *)"t", (char *)"h", NULL};
    struct line_parser p;

    assert_int_equal(line_parser_init(&p, FORMAT_REGEX, NULL, "T=([-0-9.]+) H=([0-9.]+)", keys), 0);
    expect(&p, "T=21.5 H=40", 2, "t=d:21.5;h=i:40;");
    expect(&p, "prefix T=-1 H=2 suffix", 2, "t=i:-1;h=i:2;");
    expect(&p, "T=x H=40", -EBADMSG, "");
    line_parser_free(&p);
    assert_int_equal(line_parser_init(&p, FORMAT_REGEX, NULL, "(", keys), -EINVAL);
}

static void test_json(void **state)
{
    struct line_parser p;

    assert_int_equal(line_parser_init(&p, FORMAT_JSON, NULL, NULL, NULL), 0);
    expect(&p, "{\"t\":21.5,\"wind\":{\"speed\":3,\"dir\":\"NE\"},\"ok\":true,\"n\":null}", 4,
           "t=d:21.5;wind.speed=i:3;wind.dir=s:NE;ok=b:1;");
    expect(&p, "{\"a\":[1,2]}", 2, "a.0=i:1;a.1=i:2;");
    expect(&p, "{\"t\":1}   ", 1, "t=i:1;");
    expect(&p, "{\"t\":1} x", -EBADMSG, "");
    expect(&p, "[1,2]", -EBADMSG, "");
    expect(&p, "{\"t\":", -EBADMSG, "");
    expect(&p, "{}", -EBADMSG, "");
    /* A key of control characters only is no key (the fuzzer's find: "\x7f" became ""). */
    expect(&p, "{\"\x7f\":1,\"\\u0001\":2,\"t\":3}", 1, "t=i:3;");
    expect(&p, "{\"\x7f\":1}", -EBADMSG, "");
    line_parser_free(&p);
}

static void test_not_utf8(void **state)
{
    struct line_parser p;

    assert_int_equal(line_parser_init(&p, FORMAT_KV, NULL, NULL, NULL), 0);
    expect(&p, "k\xff=v\xfe", 1, "k\xef\xbf\xbd=s:v\xef\xbf\xbd;");
    line_parser_free(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kv),    cmocka_unit_test(test_csv), cmocka_unit_test(test_regex),
        cmocka_unit_test(test_json),  cmocka_unit_test(test_not_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
