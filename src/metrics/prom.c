/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The Prometheus text format (prom.h), as specified in Prometheus's "Exposition formats"
 * document, format version 0.0.4: label values escape backslash, double quote and line
 * feed; HELP text escapes backslash and line feed; floats are Go-style ("+Inf", "NaN").
 */
#include "metrics/prom.h"

#include <math.h>

static void put_escaped(FILE *f, const char *s, int quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            fputs("\\\\", f);
        else if (*s == '\n')
            fputs("\\n", f);
        else if (quote && *s == '"')
            fputs("\\\"", f);
        else
            fputc(*s, f);
    }
}

static void put_labels(FILE *f, const char *const *labels, const char *le)
{
    int first = 1;

    if ((!labels || !labels[0]) && !le)
        return;
    fputc('{', f);
    for (size_t i = 0; labels && labels[i] && labels[i + 1]; i += 2) {
        fprintf(f, "%s%s=\"", first ? "" : ",", labels[i]);
        put_escaped(f, labels[i + 1], 1);
        fputc('"', f);
        first = 0;
    }
    if (le)
        fprintf(f, "%sle=\"%s\"", first ? "" : ",", le);
    fputc('}', f);
}

static void put_double(FILE *f, double v)
{
    if (isnan(v))
        fputs("NaN", f);
    else if (isinf(v))
        fputs(v > 0 ? "+Inf" : "-Inf", f);
    else
        fprintf(f, "%.15g", v);
}

void prom_family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s ", name);
    put_escaped(f, help, 0);
    fprintf(f, "\n# TYPE %s %s\n", name, type);
}

void prom_u64(FILE *f, const char *name, const char *const *labels, uint64_t v)
{
    fputs(name, f);
    put_labels(f, labels, NULL);
    fprintf(f, " %llu\n", (unsigned long long)v);
}

void prom_double(FILE *f, const char *name, const char *const *labels, double v)
{
    fputs(name, f);
    put_labels(f, labels, NULL);
    fputc(' ', f);
    put_double(f, v);
    fputc('\n', f);
}

void prom_scalar(FILE *f, const char *name, const char *type, const char *help, uint64_t v)
{
    prom_family(f, name, type, help);
    prom_u64(f, name, NULL, v);
}

void prom_histogram(FILE *f, const char *name, const char *const *labels,
                    const struct histogram_snapshot *h)
{
    char le[32];

    for (size_t i = 0; i <= HISTOGRAM_N_BOUNDS; i++) {
        if (i < HISTOGRAM_N_BOUNDS)
            snprintf(le, sizeof(le), "%g", (double)histogram_bounds_us[i] / 1e6);
        else
            snprintf(le, sizeof(le), "+Inf");
        fprintf(f, "%s_bucket", name);
        put_labels(f, labels, le);
        fprintf(f, " %llu\n", (unsigned long long)h->cumulative[i]);
    }
    fprintf(f, "%s_sum", name);
    put_labels(f, labels, NULL);
    fputc(' ', f);
    put_double(f, (double)h->sum_us / 1e6);
    fprintf(f, "\n%s_count", name);
    put_labels(f, labels, NULL);
    fprintf(f, " %llu\n", (unsigned long long)h->cumulative[HISTOGRAM_N_BOUNDS]);
}
