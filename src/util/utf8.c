/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include "util/macros.h"
#include "util/utf8.h"

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if it is not valid. */
static size_t seq_len(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, cp = c & 0x07;
    else
        return 0;
    if (avail < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

bool utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;

    for (size_t i = 0; i < len;) {
        size_t n = seq_len(p + i, len - i);
        if (!n)
            return false;
        i += n;
    }
    return true;
}

size_t utf8_sanitize(char *dst, size_t size, const char *src, size_t len)
{
    static const char replacement[] = "\xef\xbf\xbd";
    const unsigned char *p = (const unsigned char *)src;
    size_t o = 0;

    if (!size)
        return 0;
    for (size_t i = 0; i < len;) {
        size_t n = seq_len(p + i, len - i);
        const char *out = src + i;
        size_t out_len = n;

        if (n == 0) {
            out = replacement;
            out_len = 3;
            n = 1;
        } else if (n == 1 && (p[i] < 0x20 || p[i] == 0x7f)) {
            i++;
            continue;
        }
        if (o + out_len > size - 1)
            break;
        memcpy(dst + o, out, out_len);
        o += out_len;
        i += n;
    }
    dst[o] = '\0';
    return o;
}

char *utf8_sanitize_dup(const char *src, size_t len)
{
    char *out = xmalloc(3 * len + 1);

    utf8_sanitize(out, 3 * len + 1, src, len);
    return out;
}
