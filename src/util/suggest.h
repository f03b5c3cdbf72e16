/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * "Did you mean …?" for misspelt setting names and enum values.
 * Pure. Thread: any.
 */
#ifndef TBGW_UTIL_SUGGEST_H
#define TBGW_UTIL_SUGGEST_H

#include <stddef.h>

/* Edit distance with adjacent transpositions counted as one edit ("flaot" -> "float" is 1). */
size_t edit_distance(const char *a, const char *b);

/* The candidate closest to word, if it is close enough to be a plausible typo; else NULL.
 * candidates is NULL-terminated. */
const char *suggest(const char *word, const char *const *candidates);

#endif
