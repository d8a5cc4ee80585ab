/*
 * sb — a growable byte string ("string builder").
 *
 * The one place confab grows strings: every module appends with sb_* rather
 * than re-implementing realloc loops. The buffer is always NUL-terminated so
 * sb.data can be passed to C string functions; it may also hold binary data
 * (len counts the bytes, the terminator is extra).
 *
 * An sb starts zeroed (`sb_t s = {0};`). Allocation failure aborts: confab
 * treats running out of memory while building a string as fatal.
 */
#ifndef CONFAB_BASE_SB_H
#define CONFAB_BASE_SB_H

#include <stdarg.h>
#include <stddef.h>

typedef struct {
    char *data; /* (cap,) NUL-terminated when non-NULL */
    size_t len; /* bytes used, terminator excluded */
    size_t cap; /* bytes allocated */
} sb_t;

/* Makes room for at least EXTRA more bytes plus the terminator. */
void sb_reserve(sb_t *s, size_t extra);
/* Appends N bytes of P (which may contain NULs). */
void sb_appendn(sb_t *s, const void *p, size_t n);
/* Appends the C string STR. */
void sb_append(sb_t *s, const char *str);
/* Appends one byte. */
void sb_putc(sb_t *s, char c);
/* Appends printf-formatted text. */
void sb_printf(sb_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_vprintf(sb_t *s, const char *fmt, va_list ap);
/* Appends STR as a JSON string literal, quotes included. */
void sb_append_json_str(sb_t *s, const char *str, size_t n);
/* Empties the string, keeping its memory. */
void sb_clear(sb_t *s);
/* Shortens the string to N bytes (N <= len). */
void sb_truncate(sb_t *s, size_t n);
/* Returns the buffer (caller frees; never NULL) and resets S to empty. */
char *sb_take(sb_t *s);
/* Frees the buffer and resets S to empty. */
void sb_free(sb_t *s);
/* Returns the content as a C string ("" when empty); owned by S. */
const char *sb_str(const sb_t *s);

#endif
