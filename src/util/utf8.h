/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Bytes from a device are not text until proven so. JSON must be valid UTF-8, and
 * ThingsBoard drops the session on a malformed message, so every string from the field
 * passes through here before it can reach a payload.
 * Pure. Thread: any.
 */
#ifndef TBGW_UTIL_UTF8_H
#define TBGW_UTIL_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Copy src[0..len) to dst as valid UTF-8: each invalid sequence becomes U+FFFD and C0
 * control characters (and DEL) are dropped. dst always ends with NUL; at most size-1
 * bytes are written, never cutting a character in half. Returns the length written. */
size_t utf8_sanitize(char *dst, size_t size, const char *src, size_t len);

/* utf8_sanitize() into a new string with room for all of src (each byte may become the
 * three of U+FFFD). Never NULL; free() it. */
char *utf8_sanitize_dup(const char *src, size_t len);

/* True if s[0..len) is valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool utf8_valid(const char *s, size_t len);

#endif
