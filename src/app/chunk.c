/*
 * chunk — granularity re-chunking; see chunk.h. The held buffer is scanned
 * for the last boundary each push, so cost is linear in the text held, which
 * the size limits keep small.
 */
#include "app/chunk.h"

#include "base/utf8.h"

#include <string.h>

enum { WORD_LIMIT = 64, SENTENCE_LIMIT = 512 };

int chunk_mode_parse(const char *name, chunk_mode *out) {
    if (!strcmp(name, "token"))
        *out = CHUNK_TOKEN;
    else if (!strcmp(name, "word"))
        *out = CHUNK_WORD;
    else if (!strcmp(name, "sentence"))
        *out = CHUNK_SENTENCE;
    else
        return -1;
    return 0;
}

const char *chunk_mode_name(chunk_mode m) {
    return m == CHUNK_WORD ? "word" : m == CHUNK_SENTENCE ? "sentence" : "token";
}

void chunk_init(chunker *c, chunk_mode mode, chunk_emit_fn emit, void *user) {
    memset(c, 0, sizeof *c);
    c->mode = mode;
    c->emit = emit;
    c->user = user;
}

void chunk_set_mode(chunker *c, chunk_mode mode) { c->mode = mode; }

static int is_space(unsigned char ch) {
    return ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r';
}

/* Length of the sentence terminator ending at byte I (inclusive), or 0. */
static size_t terminator_before(const char *s, size_t i) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '.' || ch == '!' || ch == '?') return 1;
    /* 。！？ are 3-byte sequences ending at i. */
    if (i >= 2) {
        const char *p = s + i - 2;
        if (!memcmp(p, "\xE3\x80\x82", 3) || !memcmp(p, "\xEF\xBC\x81", 3) ||
            !memcmp(p, "\xEF\xBC\x9F", 3))
            return 3;
    }
    return 0;
}

/* End (exclusive) of the longest prefix of S[0..N) that ends on a boundary
 * of MODE, or 0 when there is none. */
static size_t last_boundary(chunk_mode mode, const char *s, size_t n) {
    for (size_t i = n; i > 0; i--) {
        unsigned char ch = (unsigned char)s[i - 1];
        if (mode == CHUNK_WORD) {
            if (is_space(ch)) return i;
        } else {
            if (ch == '\n') return i;
            if (is_space(ch) && i >= 2 && terminator_before(s, i - 2)) return i;
            /* CJK terminators need no following space. */
            if (i >= 3 && terminator_before(s, i - 1) == 3) return i;
        }
    }
    return 0;
}

static void emit_prefix(chunker *c, size_t n) {
    if (n == 0) return;
    c->emit(c->user, c->held.data, n);
    size_t rest = c->held.len - n;
    memmove(c->held.data, c->held.data + n, rest);
    sb_truncate(&c->held, rest);
}

void chunk_push(chunker *c, const char *text, size_t n) {
    sb_appendn(&c->held, text, n);
    size_t complete = utf8_complete_len(c->held.data, c->held.len);
    if (c->mode == CHUNK_TOKEN) {
        emit_prefix(c, complete);
        return;
    }
    size_t b = last_boundary(c->mode, c->held.data, complete);
    emit_prefix(c, b);
    size_t limit = c->mode == CHUNK_WORD ? WORD_LIMIT : SENTENCE_LIMIT;
    if (c->held.len > limit) emit_prefix(c, utf8_complete_len(c->held.data, c->held.len));
}

void chunk_finish(chunker *c) { emit_prefix(c, c->held.len); }

void chunk_free(chunker *c) { sb_free(&c->held); }
