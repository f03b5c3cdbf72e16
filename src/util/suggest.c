/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <ctype.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "util/macros.h"
#include "util/suggest.h"

#define WORD_MAX 64

/* Optimal string alignment distance, case-insensitive. Words longer than WORD_MAX are
 * not typos of a setting name; they get a large distance. */
size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t d[WORD_MAX + 1][WORD_MAX + 1];

    if (la > WORD_MAX || lb > WORD_MAX)
        return SIZE_MAX / 2;
    for (size_t i = 0; i <= la; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            size_t v = MIN(d[i - 1][j] + 1, d[i][j - 1] + 1);
            v = MIN(v, d[i - 1][j - 1] + cost);
            if (i > 1 && j > 1 && tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == tolower((unsigned char)b[j - 1]))
                v = MIN(v, d[i - 2][j - 2] + 1);
            d[i][j] = v;
        }
    }
    return d[la][lb];
}

const char *suggest(const char *word, const char *const *candidates)
{
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    size_t len = strlen(word);
    /* One edit for short words, up to a third of the word for longer ones. */
    size_t limit = len <= 4 ? 1 : MAX((size_t)2, len / 3);

    for (; candidates && *candidates; candidates++) {
        size_t dist = edit_distance(word, *candidates);
        size_t clen = strlen(*candidates);

        /* "baudrate" for "baud", "poll" for "poll_ms": one name extends the other. */
        if (len >= 3 && clen >= 3 && strncasecmp(word, *candidates, MIN(len, clen)) == 0)
            dist = MIN(dist, limit);
        if (dist < best_d) {
            best_d = dist;
            best = *candidates;
        }
    }
    return best_d <= limit ? best : NULL;
}
