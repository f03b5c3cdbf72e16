/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Fuzz target: the configuration loader (src/config/config.c) on a tbgw.conf made of the
 * input, then what the daemon does with a configuration it accepted before anything runs:
 * the bus budget check (main.c), each Modbus device's read plan (bus.c) and each text
 * sensor's line parser (serial-line.c).
 *
 * The input goes to a file and through config_load(), the daemon's only code path:
 * parsing a string instead would skip the include and file:line handling. @include may
 * name only plain file names in the scratch directory (inc.conf is a valid bus, ca.pem a
 * readable file): an input with any other @include is skipped, so that the fuzzer never
 * opens /dev/zero, /dev/stdin or files of the machine it runs on.
 *
 * What the loader promises the bus threads is checked here, and a broken promise aborts:
 * at most KEYTAB_MAX distinct keys per device (bus.c indexes its arrays by key), read
 * blocks inside the address space and within the Modbus request limits.
 */
#include "config.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config.h"
#include "core/budget.h"
#include "core/keytab.h"
#include "core/plan.h"
#include "drivers/serial-parse.h"
#include "tests/fuzz/fuzz.h"
#include "util/macros.h"

static const char *conf_path;

static void init(void)
{
    static const char inc[] =
        "buses = ( { name = \"inc\"; driver = \"modbus-tcp\"; host = \"127.0.0.1\";\n"
        "  devices = ( { name = \"inc1\"; unit_id = 1; token = \"T\";\n"
        "    telemetry = ( { key = \"t\"; table = \"input\"; address = 0;\n"
        "                    type = \"float32\"; } ); } ); } );\n";
    static const char pem[] = "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n";

    fuzz_quiet();
    fuzz_write_file("inc.conf", inc, sizeof(inc) - 1);
    fuzz_write_file("ca.pem", pem, sizeof(pem) - 1);
    conf_path = xstrdup(fuzz_write_file("tbgw.conf", "", 0));
}

/* Every "@include" must be followed by a quoted plain file name. */
static bool includes_confined(const char *s, size_t len)
{
    static const char kw[] = "@include";

    for (size_t i = 0; i + sizeof(kw) - 1 <= len; i++) {
        size_t j, k;

        if (strncasecmp(s + i, kw, sizeof(kw) - 1) != 0)
            continue;
        j = i + sizeof(kw) - 1;
        while (j < len && (s[j] == ' ' || s[j] == '\t'))
            j++;
        if (j >= len || s[j] != '"')
            return false;
        k = ++j;
        while (k < len && (s[k] == '-' || s[k] == '_' || s[k] == '.' ||
                           (s[k] >= 'a' && s[k] <= 'z') || (s[k] >= 'A' && s[k] <= 'Z') ||
                           (s[k] >= '0' && s[k] <= '9')))
            k++;
        if (k == j || k >= len || s[k] != '"' || s[j] == '.')
            return false;
    }
    return true;
}

static void drop(void *ctx, const char *key, struct value *v)
{
    value_clear(v);
}

static void check_plan(const struct device_config *dc, enum driver_kind driver)
{
    size_t n = dc->telemetry.n + dc->attributes.n, i = 0;
    struct plan_tag *tags = xcalloc(n + 1, sizeof(*tags));
    struct plan_limits lim = plan_limits_for(driver);
    struct keytab *kt = keytab_new(KEYTAB_MAX);
    struct plan p = {0};

    for (size_t k = 0; k < n; k++) {
        const struct tag_config *t =
            k < dc->telemetry.n ? &dc->telemetry.v[k] : &dc->attributes.v[k - dc->telemetry.n];
        int key = keytab_intern(kt, t->key);
        if (key < 0)
            BROKEN(); /* bus.c: "the table is sized for them" */
        tags[i++] = (struct plan_tag){.tag = t, .key = (uint16_t)key};
    }
    plan_build(&p, tags, n, &lim);
    for (size_t b = 0; b < p.n_blocks; b++) {
        const struct read_block *rb = &p.blocks[b];
        unsigned max = table_is_bits(rb->table) ? lim.max_bits : lim.max_regs;
        if (rb->count == 0 || rb->count > max || (unsigned)rb->address + rb->count > 65536u ||
            rb->first + rb->n > p.n_tags)
            BROKEN();
        for (size_t k = rb->first; k < rb->first + rb->n; k++) {
            const struct tag_config *t = p.tags[k].tag;
            if (t->table != rb->table || t->address < rb->address ||
                t->address + t->count > rb->address + rb->count)
                BROKEN();
        }
    }
    plan_free(&p);
    keytab_free(kt);
    free(tags);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct diag *d;
    struct config *c;

    if (!conf_path)
        init();
    if (!includes_confined((const char *)data, size))
        return 0;
    fuzz_write_file("tbgw.conf", data, size);
    d = diag_new();
    c = config_load(conf_path, d);
    if (c) {
        budget_check(c, d);
        for (size_t b = 0; b < c->n_buses; b++) {
            const struct bus_config *bc = &c->buses[b];
            for (size_t i = 0; i < bc->n_devices; i++) {
                const struct device_config *dc = &bc->devices[i];
                struct line_parser lp;

                if (config_find_device(c, dc->name) != dc)
                    BROKEN();
                if (bc->driver != DRIVER_SERIAL_LINE) {
                    check_plan(dc, bc->driver);
                    continue;
                }
                if (line_parser_init(&lp, dc->format, dc->columns, dc->pattern, dc->keys) < 0)
                    BROKEN(); /* the loader compiled the same pattern */
                line_parse(&lp, "t=1,h=2", 7, drop, NULL);
                line_parser_free(&lp);
            }
        }
        (void)config_has_secrets(c);
    }
    (void)diag_text(d);
    config_free(c);
    diag_free(d);
    return 0;
}
