/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Writing the Prometheus text exposition format, version 0.0.4: a family's # HELP and
 * # TYPE lines, then its samples, each with its labels escaped as the format requires.
 * Labels are given as a NULL-terminated list of name, value pairs.
 * Pure (writes only to the stream it is given). Thread: any.
 */
#ifndef TBGW_METRICS_PROM_H
#define TBGW_METRICS_PROM_H

#include <stdint.h>
#include <stdio.h>

#include "core/histogram.h"

#define PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

void prom_family(FILE *f, const char *name, const char *type, const char *help);
void prom_u64(FILE *f, const char *name, const char *const *labels, uint64_t v);
void prom_double(FILE *f, const char *name, const char *const *labels, double v);
/* A family of one sample without labels: HELP, TYPE and the sample. */
void prom_scalar(FILE *f, const char *name, const char *type, const char *help, uint64_t v);
/* name_bucket{…,le="…"}, name_sum and name_count of a latency histogram, in seconds. */
void prom_histogram(FILE *f, const char *name, const char *const *labels,
                    const struct histogram_snapshot *h);

#endif
