/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Small helpers every file may use. No tbgw knowledge lives here.
 */
#ifndef TBGW_UTIL_MACROS_H
#define TBGW_UTIL_MACROS_H

#include <stddef.h>
#include <stdlib.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* <sys/param.h> (which modbus.h pulls in) defines MIN and MAX unguarded: take its
 * definitions first so that the include order never matters. */
#include <sys/param.h>
#ifndef MIN
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#endif
#ifndef MAX
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#endif
#define CLAMP(x, lo, hi) ((x) < (lo) ? (lo) : (x) > (hi) ? (hi) : (x))

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

#define PRINTF_LIKE(fmt, args) __attribute__((format(printf, fmt, args)))
#define WARN_UNUSED __attribute__((warn_unused_result))
#define NORETURN __attribute__((noreturn))

/* container_of: from a member pointer back to its enclosing struct. */
#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

/* free() that also clears the pointer, so a second free is harmless. */
#define freep(p)                                                                                   \
    do {                                                                                           \
        free(p);                                                                                   \
        (p) = NULL;                                                                                \
    } while (0)

/* Allocation failure is not a condition a daemon of this size can handle meaningfully:
 * these abort with a message instead of returning NULL (chrony's Malloc). */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
void *xreallocarray(void *p, size_t n, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) PRINTF_LIKE(1, 2);
void *xmemdup(const void *p, size_t n);
#define xmemdup_array(p, n) xmemdup((p), (n) * sizeof(*(p)))

static inline const char *strempty(const char *s)
{
    return s ? s : "";
}

static inline int streq(const char *a, const char *b)
{
    return a && b && __builtin_strcmp(a, b) == 0;
}

#endif
