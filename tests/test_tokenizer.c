/* Tests for src/engine/tokenizer: the llama.cpp test vectors of every vocab
 * file in the shared test data, SentencePiece and BPE details, special
 * tokens, the streaming detokenizer, hostile input, and the CLI. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/sb.h"
#include "base/utf8.h"
#include "engine/gguf.h"
#include "engine/tokenizer.h"
#include "testutil.h"

/* ------------------------------------------------------------------ helpers */

/* Splits a .inp file into its texts (see testdata/README.md): each text is
 * followed by "\n__ggml_vocab_test__\n". Returns the count; TEXTS[i] point
 * into BUF (modified: NUL-terminated in place) with LENS[i]. */
static size_t split_inp(char *buf, size_t len, char **texts, size_t *lens, size_t max) {
    static const char mark[] = "\n__ggml_vocab_test__\n";
    size_t ml = sizeof mark - 1, pos = 0, n = 0;
    while (pos < len && n < max) {
        char *m = memmem(buf + pos, len - pos, mark, ml);
        if (!m) break;
        texts[n] = buf + pos;
        lens[n] = (size_t)(m - (buf + pos));
        *m = 0;
        n++;
        pos = (size_t)(m - buf) + ml;
    }
    return n;
}

/* Checks every vector of INP/OUT against T; prints each mismatch and
 * returns how many texts differ. */
static int check_vectors(const tok_tokenizer *t, const char *inp_path, const char *out_path) {
    size_t ilen = 0, olen = 0;
    char *inp = tu_read_file(inp_path, &ilen);
    char *outp = tu_read_file(out_path, &olen);
    assert_non_null(inp);
    assert_non_null(outp);
    char *texts[256];
    size_t lens[256];
    size_t n = split_inp(inp, ilen, texts, lens, 256);
    assert_true(n > 10);
    int bad = 0;
    char *line = outp;
    for (size_t i = 0; i < n; i++) {
        assert_non_null(line);
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        tok_ids got = {0};
        cf_err err = {0};
        assert_int_equal(tok_encode(t, texts[i], lens[i], false, false, &got, &err), 0);
        sb_t g = {0};
        for (size_t k = 0; k < got.n; k++) sb_printf(&g, "%s%d", k ? " " : "", got.v[k]);
        /* Expected lines may carry a leading space; compare token lists. */
        const char *exp = line;
        while (*exp == ' ') exp++;
        if (strcmp(sb_str(&g), exp) != 0) {
            if (bad < 12)
                print_message("# MISMATCH text %zu '%.*s'\n#   want: %s\n#   got:  %s\n", i,
                              (int)(lens[i] > 80 ? 80 : lens[i]), texts[i], exp, sb_str(&g));
            bad++;
        }
        sb_free(&g);
        tok_ids_free(&got);
        line = nl ? nl + 1 : NULL;
    }
    free(inp);
    free(outp);
    return bad;
}

/* Builds the Llama 3.2 BPE tokenizer from encoder.json + vocab.bpe. */
static tok_tokenizer *load_llama3_json(const char *enc_path, const char *bpe_path) {
    json_error_t je;
    json_t *enc = json_load_file(enc_path, 0, &je);
    assert_non_null(enc);
    size_t n = 0;
    const char *key;
    json_t *val;
    json_object_foreach(enc, key, val) {
        json_int_t id = json_integer_value(val);
        if ((size_t)id + 1 > n) n = (size_t)id + 1;
    }
    tok_str *toks = calloc(n, sizeof *toks);
    json_object_foreach(enc, key, val) {
        toks[json_integer_value(val)] = (tok_str){key, strlen(key)};
    }
    for (size_t i = 0; i < n; i++) assert_non_null(toks[i].p);

    size_t blen = 0;
    char *bpe = tu_read_file(bpe_path, &blen);
    assert_non_null(bpe);
    size_t cap = 1024, nm = 0;
    tok_str *merges = malloc(cap * sizeof *merges);
    for (char *p = bpe; p < bpe + blen;) {
        char *nl = memchr(p, '\n', (size_t)(bpe + blen - p));
        size_t l = nl ? (size_t)(nl - p) : (size_t)(bpe + blen - p);
        if (l && strncmp(p, "#version", 8) != 0) {
            if (nm == cap) merges = realloc(merges, (cap *= 2) * sizeof *merges);
            merges[nm++] = (tok_str){p, l};
        }
        p += l + 1;
    }
    tok_vocab_desc d;
    tok_desc_init(&d, TOK_BPE);
    d.pre = "llama-bpe";
    d.n_tokens = (uint32_t)n;
    d.tokens = toks;
    d.n_merges = (uint32_t)nm;
    d.merges = merges;
    d.bos_id = -1; /* the JSON vocabulary has no special tokens */
    d.add_bos = 0;
    cf_err err = {0};
    tok_tokenizer *t = tok_new(&d, &err);
    if (!t) print_message("# tok_new: %s\n", err.msg);
    assert_non_null(t);
    free(toks);
    free(merges);
    free(bpe);
    json_decref(enc);
    return t;
}

static char *td_dup(const char *rel) {
    const char *p = td_find(rel);
    return p ? strdup(p) : NULL;
}

/* ------------------------------------------------------------------ llama-bpe via JSON */

static void llama3_bpe_from_json_matches_llama_bpe_vectors(void **st) {
    (void)st;
    char *enc = td_dup("llama3.2-bpe/llama3.2-encoder.json");
    char *bpe = td_dup("llama3.2-bpe/llama3.2-vocab.bpe");
    char *inp = td_dup("vocab/ggml-vocab-llama-bpe.gguf.inp");
    char *out = td_dup("vocab/ggml-vocab-llama-bpe.gguf.out");
    if (!enc || !bpe || !inp || !out) {
        free(enc), free(bpe), free(inp), free(out);
        td_path("llama3.2-bpe/llama3.2-encoder.json");
        td_path("llama3.2-bpe/llama3.2-vocab.bpe");
        td_path("vocab/ggml-vocab-llama-bpe.gguf.inp");
        td_path("vocab/ggml-vocab-llama-bpe.gguf.out");
        return;
    }
    tok_tokenizer *t = load_llama3_json(enc, bpe);
    assert_string_equal(tok_pre_name(t), "llama3");
    assert_int_equal(check_vectors(t, inp, out), 0);
    tok_free(t);
    free(enc), free(bpe), free(inp), free(out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(llama3_bpe_from_json_matches_llama_bpe_vectors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
