/*
 * sb — growable byte string. Capacity doubles, so appending N bytes one at a
 * time costs O(N) in total. See sb.h for the contract.
 */
#include "base/sb.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sb_reserve(sb_t *s, size_t extra) {
    size_t need = s->len + extra + 1;
    if (need < extra) abort(); /* overflow */
    if (need <= s->cap) return;
    size_t cap = s->cap ? s->cap : 64;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    char *p = realloc(s->data, cap);
    if (!p) abort();
    s->data = p;
    s->cap = cap;
}

void sb_appendn(sb_t *s, const void *p, size_t n) {
    sb_reserve(s, n);
    if (n) memcpy(s->data + s->len, p, n);
    s->len += n;
    s->data[s->len] = 0;
}

void sb_append(sb_t *s, const char *str) { sb_appendn(s, str, strlen(str)); }

void sb_putc(sb_t *s, char c) {
    sb_reserve(s, 1);
    s->data[s->len++] = c;
    s->data[s->len] = 0;
}

void sb_vprintf(sb_t *s, const char *fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    if (n < 0) {
        va_end(ap2);
        return;
    }
    if ((size_t)n < sizeof tmp) {
        sb_appendn(s, tmp, (size_t)n);
    } else {
        sb_reserve(s, (size_t)n);
        vsnprintf(s->data + s->len, (size_t)n + 1, fmt, ap2);
        s->len += (size_t)n;
    }
    va_end(ap2);
}

void sb_printf(sb_t *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(s, fmt, ap);
    va_end(ap);
}

void sb_append_json_str(sb_t *s, const char *str, size_t n) {
    static const char hex[] = "0123456789abcdef";
    sb_reserve(s, n + 2);
    sb_putc(s, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)str[i];
        switch (c) {
        case '"': sb_appendn(s, "\\\"", 2); break;
        case '\\': sb_appendn(s, "\\\\", 2); break;
        case '\n': sb_appendn(s, "\\n", 2); break;
        case '\r': sb_appendn(s, "\\r", 2); break;
        case '\t': sb_appendn(s, "\\t", 2); break;
        case '\b': sb_appendn(s, "\\b", 2); break;
        case '\f': sb_appendn(s, "\\f", 2); break;
        default:
            if (c < 0x20) {
                char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                sb_appendn(s, e, 6);
            } else {
                sb_putc(s, (char)c);
            }
        }
    }
    sb_putc(s, '"');
}

void sb_clear(sb_t *s) {
    s->len = 0;
    if (s->data) s->data[0] = 0;
}

void sb_truncate(sb_t *s, size_t n) {
    if (n >= s->len) return;
    s->len = n;
    s->data[n] = 0;
}

char *sb_take(sb_t *s) {
    char *p = s->data;
    if (!p) {
        p = malloc(1);
        if (!p) abort();
        p[0] = 0;
    }
    s->data = NULL;
    s->len = s->cap = 0;
    return p;
}

void sb_free(sb_t *s) {
    free(s->data);
    s->data = NULL;
    s->len = s->cap = 0;
}

const char *sb_str(const sb_t *s) { return s->data ? s->data : ""; }
