/* Tests for src/app/chunk: token/word/sentence re-chunking, UTF-8 safety. */
#include "app/chunk.h"
#include "base/utf8.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    char *chunks[256];
    int n;
    sb_t all;
} collected;

static void collect(void *user, const char *t, size_t n) {
    collected *c = user;
    assert_true(n > 0);
    assert_true(c->n < 256);
    c->chunks[c->n++] = strndup(t, n);
    sb_appendn(&c->all, t, n);
}

static void clear(collected *c) {
    for (int i = 0; i < c->n; i++)
        free(c->chunks[i]);
    sb_free(&c->all);
    memset(c, 0, sizeof *c);
}

/* Feeds TEXT in pieces of STEP bytes. */
static void feed(chunker *ch, const char *text, size_t step) {
    size_t n = strlen(text);
    for (size_t i = 0; i < n; i += step)
        chunk_push(ch, text + i, i + step > n ? n - i : step);
    chunk_finish(ch);
}

static void word_mode_emits_whole_words(void **st) {
    (void)st;
    collected c = {0};
    chunker ch;
    chunk_init(&ch, CHUNK_WORD, collect, &c);
    feed(&ch, "Hello brave new world", 3);
    assert_int_equal(c.n, 4);
    assert_string_equal(c.chunks[0], "Hello ");
    assert_string_equal(c.chunks[1], "brave ");
    assert_string_equal(c.chunks[2], "new ");
    assert_string_equal(c.chunks[3], "world");
    chunk_free(&ch);
    clear(&c);
}

static void sentence_mode_emits_whole_sentences(void **st) {
    (void)st;
    collected c = {0};
    chunker ch;
    chunk_init(&ch, CHUNK_SENTENCE, collect, &c);
    feed(&ch, "It works. Does it? Yes! 3.14 is pi\nNext line", 2);
    assert_string_equal(c.chunks[0], "It works. ");
    assert_string_equal(c.chunks[1], "Does it? ");
    assert_string_equal(c.chunks[2], "Yes! ");
    assert_string_equal(c.chunks[3], "3.14 is pi\n"); /* a decimal point is not an end */
    assert_string_equal(c.chunks[4], "Next line");
    assert_int_equal(c.n, 5);
    chunk_free(&ch);
    clear(&c);
    chunk_init(&ch, CHUNK_SENTENCE, collect, &c);
    feed(&ch, "你好。世界！", 1);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.chunks[0], "你好。");
    assert_string_equal(c.chunks[1], "世界！");
    chunk_free(&ch);
    clear(&c);
}

static void token_mode_never_splits_a_character(void **st) {
    (void)st;
    collected c = {0};
    chunker ch;
    chunk_init(&ch, CHUNK_TOKEN, collect, &c);
    const char *text = "a😀b中";
    feed(&ch, text, 1); /* one byte at a time */
    for (int i = 0; i < c.n; i++)
        assert_true(utf8_valid(c.chunks[i], strlen(c.chunks[i]), NULL));
    assert_string_equal(c.all.data, text);
    assert_int_equal(c.n, 4);
    assert_string_equal(c.chunks[1], "😀");
    chunk_free(&ch);
    clear(&c);
}

static void long_runs_are_flushed_at_the_limit(void **st) {
    (void)st;
    collected c = {0};
    chunker ch;
    chunk_init(&ch, CHUNK_WORD, collect, &c);
    char big[300];
    for (int i = 0; i < 299; i += 3)
        memcpy(big + i, "中", 3); /* 99 CJK chars, no spaces */
    big[297] = 0;
    for (size_t i = 0; i < strlen(big); i += 5) {
        chunk_push(&ch, big + i, strlen(big) - i < 5 ? strlen(big) - i : 5);
        assert_true(ch.held.len <= 64 + 5);
    }
    chunk_finish(&ch);
    assert_true(c.n > 1);
    for (int i = 0; i < c.n; i++)
        assert_true(utf8_valid(c.chunks[i], strlen(c.chunks[i]), NULL));
    assert_string_equal(c.all.data, big);
    chunk_free(&ch);
    clear(&c);
}

static void concatenation_is_lossless_in_every_mode(void **st) {
    (void)st;
    const char *text = "Line one. Line two?\n\n  Indented — ünïcödé 😀 words!  End";
    for (int mode = 0; mode < 3; mode++) {
        for (size_t step = 1; step < 9; step++) {
            collected c = {0};
            chunker ch;
            chunk_init(&ch, (chunk_mode)mode, collect, &c);
            feed(&ch, text, step);
            assert_string_equal(c.all.data, text);
            chunk_free(&ch);
            clear(&c);
        }
    }
}

static void mode_names_parse(void **st) {
    (void)st;
    chunk_mode m;
    assert_int_equal(chunk_mode_parse("sentence", &m), 0);
    assert_int_equal(m, CHUNK_SENTENCE);
    assert_string_equal(chunk_mode_name(m), "sentence");
    assert_int_equal(chunk_mode_parse("paragraph", &m), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(word_mode_emits_whole_words),
        cmocka_unit_test(sentence_mode_emits_whole_sentences),
        cmocka_unit_test(token_mode_never_splits_a_character),
        cmocka_unit_test(long_runs_are_flushed_at_the_limit),
        cmocka_unit_test(concatenation_is_lossless_in_every_mode),
        cmocka_unit_test(mode_names_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
