/*
 * utf8 — strict UTF-8 decoding (RFC 3629 table 3-7 of Unicode). One decoder,
 * utf8_decode(), is the basis of everything else in this file.
 */
#include "base/utf8.h"

int utf8_decode(const char *s, size_t n, uint32_t *cp) {
    const unsigned char *p = (const unsigned char *)s;
    *cp = 0xFFFD;
    if (n == 0) return 0;
    unsigned char c = p[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int len;
    uint32_t v;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        v = c & 0x0F;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        v = c & 0x07;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 0;
    if ((size_t)len > n) return 0;
    for (int i = 1; i < len; i++) {
        unsigned char b = p[i];
        if (b < lo || b > hi) return 0;
        lo = 0x80;
        hi = 0xBF;
        v = (v << 6) | (b & 0x3F);
    }
    *cp = v;
    return len;
}

bool utf8_valid(const char *s, size_t n, size_t *bad_at) {
    size_t i = 0;
    while (i < n) {
        if ((unsigned char)s[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        int l = utf8_decode(s + i, n - i, &cp);
        if (!l) {
            if (bad_at) *bad_at = i;
            return false;
        }
        i += (size_t)l;
    }
    return true;
}

int utf8_encode(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    if (cp <= 0x10FFFF) {
        o[0] = (unsigned char)(0xF0 | (cp >> 18));
        o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[3] = (unsigned char)(0x80 | (cp & 0x3F));
        return 4;
    }
    return 0;
}

/* Expected total length of a sequence from its lead byte, 0 if invalid. */
static int lead_len(unsigned char c) {
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) return 2;
    if (c >= 0xE0 && c <= 0xEF) return 3;
    if (c >= 0xF0 && c <= 0xF4) return 4;
    return 0;
}

size_t utf8_complete_len(const char *s, size_t n) {
    /* Look back at most 3 bytes for the lead of the last sequence. */
    size_t start = n > 3 ? n - 3 : 0;
    for (size_t i = n; i > start; i--) {
        unsigned char c = (unsigned char)s[i - 1];
        if ((c & 0xC0) == 0x80) continue; /* continuation byte */
        int want = lead_len(c);
        if (want <= 1) return n; /* ASCII or invalid lead: keep all */
        size_t have = n - (i - 1);
        if ((size_t)want <= have) return n; /* complete */
        /* Incomplete: hold it back only if what arrived is a valid prefix. */
        uint32_t cp;
        char buf[4] = {0};
        for (size_t k = 0; k < have; k++)
            buf[k] = s[i - 1 + k];
        /* Complete the prefix with the smallest continuation to validate. */
        for (size_t k = have; k < (size_t)want; k++)
            buf[k] = (char)0x80;
        /* E0/F0 need a higher second byte; try the boundary values. */
        if (have == 1 && (c == 0xE0)) buf[1] = (char)0xA0;
        if (have == 1 && (c == 0xF0)) buf[1] = (char)0x90;
        if (utf8_decode(buf, (size_t)want, &cp) == want) return i - 1;
        return n;
    }
    return n;
}

size_t utf8_count(const char *s, size_t n) {
    size_t i = 0, count = 0;
    while (i < n) {
        uint32_t cp;
        int l = utf8_decode(s + i, n - i, &cp);
        i += l ? (size_t)l : 1;
        count++;
    }
    return count;
}
