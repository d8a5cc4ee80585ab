/*
 * utf8 — validation and iteration of UTF-8 text.
 *
 * Strict: overlong forms, surrogates (U+D800..DFFF) and code points above
 * U+10FFFF are invalid, as RFC 3629 requires. Streaming code uses
 * utf8_complete_len() to hold back the bytes of a character that has not
 * fully arrived yet.
 */
#ifndef CONFAB_BASE_UTF8_H
#define CONFAB_BASE_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Returns true when the N bytes at S are valid UTF-8. When invalid and
 * BAD_AT is not NULL, *BAD_AT gets the offset of the first bad byte. */
bool utf8_valid(const char *s, size_t n, size_t *bad_at);

/* Decodes one code point at S (N bytes available). Returns its length in
 * bytes (1..4) and stores the code point in *CP, or returns 0 when the bytes
 * are invalid or truncated (then *CP is U+FFFD). */
int utf8_decode(const char *s, size_t n, uint32_t *cp);

/* Encodes CP into OUT (at least 4 bytes). Returns the length, or 0 when CP is
 * not a valid scalar value. */
int utf8_encode(uint32_t cp, char *out);

/* Length of the longest prefix of S[0..N) that does not end inside a
 * multi-byte character: bytes after it are an incomplete (but so far valid)
 * sequence that more input may complete. Invalid bytes are not held back. */
size_t utf8_complete_len(const char *s, size_t n);

/* Number of code points in valid UTF-8 (invalid bytes count one each). */
size_t utf8_count(const char *s, size_t n);

#endif
