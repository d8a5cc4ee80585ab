/*
 * chunk — re-chunks a reply's text stream at token, word or sentence
 * granularity, server-side, never splitting a UTF-8 character.
 *
 * Text arrives as deltas of any size (a token's bytes, which may end inside a
 * character). chunk_push() appends them and emits every chunk that is
 * complete at the chosen granularity; chunk_finish() emits what is left.
 *   token:    every delta as it comes (only incomplete UTF-8 is held back)
 *   word:     up to and including the whitespace after a word
 *   sentence: up to and including the space/newline after . ! ? (and their
 *             CJK forms) or a newline
 * A chunk is also emitted when the held text passes a limit (64 bytes for
 * words, 512 for sentences), so a long run without boundaries cannot stall a
 * stream. Concatenating every chunk gives back the input exactly.
 */
#ifndef CONFAB_APP_CHUNK_H
#define CONFAB_APP_CHUNK_H

#include "base/sb.h"

#include <stddef.h>

typedef enum { CHUNK_TOKEN = 0, CHUNK_WORD = 1, CHUNK_SENTENCE = 2 } chunk_mode;

/* Called with each chunk (not NUL-terminated; N > 0). */
typedef void (*chunk_emit_fn)(void *user, const char *text, size_t n);

typedef struct {
    chunk_mode mode;
    sb_t held; /* text not yet emitted */
    chunk_emit_fn emit;
    void *user;
} chunker;

/* Parses "token" | "word" | "sentence"; returns -1 for anything else. */
int chunk_mode_parse(const char *name, chunk_mode *out);
const char *chunk_mode_name(chunk_mode m);

void chunk_init(chunker *c, chunk_mode mode, chunk_emit_fn emit, void *user);
/* Changes granularity mid-stream; held text is re-examined at the next push. */
void chunk_set_mode(chunker *c, chunk_mode mode);
void chunk_push(chunker *c, const char *text, size_t n);
/* Emits everything still held (even an incomplete UTF-8 tail). */
void chunk_finish(chunker *c);
void chunk_free(chunker *c);

#endif
