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

/* ------------------------------------------------------------------ vocab GGUF vectors */

/* Checks the vectors of vocab/ggml-vocab-NAME.gguf(.SUFFIX) against the
 * tokenizer read from that GGUF. */
static void vocab_vectors(const char *file) {
    char rel[160], rin[170], rout[170];
    snprintf(rel, sizeof rel, "vocab/%s", file);
    snprintf(rin, sizeof rin, "vocab/%s.inp", file);
    snprintf(rout, sizeof rout, "vocab/%s.out", file);
    char *vocab = td_dup(rel), *inp = td_dup(rin), *out = td_dup(rout);
    if (!vocab || !inp || !out) {
        free(vocab), free(inp), free(out);
        print_message("# SKIP: %s or its vectors are absent from the test data\n", file);
        skip();
        return;
    }
    cf_err err = {0};
    tok_tokenizer *t = tok_load(vocab, &err);
    if (!t) print_message("# tok_load(%s): %s\n", file, err.msg);
    assert_non_null(t);
    assert_int_equal(check_vectors(t, inp, out), 0);
    tok_free(t);
    free(vocab), free(inp), free(out);
}

#define VOCAB_TEST(fn, file) \
    static void fn(void **st) { (void)st; vocab_vectors(file); }
VOCAB_TEST(spm_llama_vocab_matches_vectors, "ggml-vocab-llama-spm.gguf")
VOCAB_TEST(spm_phi3_vocab_matches_vectors, "ggml-vocab-phi-3.gguf")
VOCAB_TEST(bpe_gpt2_vocab_matches_vectors, "ggml-vocab-gpt-2.gguf")
VOCAB_TEST(bpe_falcon_vocab_matches_vectors, "ggml-vocab-falcon.gguf")
VOCAB_TEST(bpe_deepseek_coder_vocab_matches_vectors, "ggml-vocab-deepseek-coder.gguf")
VOCAB_TEST(bpe_deepseek_llm_vocab_matches_vectors, "ggml-vocab-deepseek-llm.gguf")
VOCAB_TEST(bpe_mpt_vocab_matches_vectors, "ggml-vocab-mpt.gguf")
VOCAB_TEST(bpe_refact_vocab_matches_vectors, "ggml-vocab-refact.gguf")
VOCAB_TEST(bpe_starcoder_vocab_matches_vectors, "ggml-vocab-starcoder.gguf")
VOCAB_TEST(bpe_dbrx_old_vocab_matches_vectors, "ggml-vocab-dbrx.gguf.old")
VOCAB_TEST(bpe_qwen2_vocab_matches_vectors, "ggml-vocab-qwen2.gguf")
VOCAB_TEST(bpe_qwen35_vocab_matches_vectors, "ggml-vocab-qwen35.gguf")
VOCAB_TEST(bpe_command_r_vocab_matches_vectors, "ggml-vocab-command-r.gguf")
VOCAB_TEST(bpe_gemma4_vocab_matches_vectors, "ggml-vocab-gemma-4.gguf")
VOCAB_TEST(bpe_llama_bpe_gguf_matches_vectors, "ggml-vocab-llama-bpe.gguf")

/* bert-bge is WordPiece, which confab does not implement: loading it must
 * say so rather than tokenize wrongly. */
static void wordpiece_bert_vocab_is_refused_with_message(void **st) {
    (void)st;
    const char *p = td_path("vocab/ggml-vocab-bert-bge.gguf");
    print_message("# bert-bge vectors not checked: WordPiece is not supported\n");
    cf_err err = {0};
    tok_tokenizer *t = tok_load(p, &err);
    assert_null(t);
    assert_non_null(strstr(err.msg, "WordPiece"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(llama3_bpe_from_json_matches_llama_bpe_vectors),
        cmocka_unit_test(spm_llama_vocab_matches_vectors),
        cmocka_unit_test(spm_phi3_vocab_matches_vectors),
        cmocka_unit_test(bpe_gpt2_vocab_matches_vectors),
        cmocka_unit_test(bpe_falcon_vocab_matches_vectors),
        cmocka_unit_test(bpe_deepseek_coder_vocab_matches_vectors),
        cmocka_unit_test(bpe_deepseek_llm_vocab_matches_vectors),
        cmocka_unit_test(bpe_mpt_vocab_matches_vectors),
        cmocka_unit_test(bpe_refact_vocab_matches_vectors),
        cmocka_unit_test(bpe_starcoder_vocab_matches_vectors),
        cmocka_unit_test(bpe_dbrx_old_vocab_matches_vectors),
        cmocka_unit_test(bpe_qwen2_vocab_matches_vectors),
        cmocka_unit_test(bpe_qwen35_vocab_matches_vectors),
        cmocka_unit_test(bpe_command_r_vocab_matches_vectors),
        cmocka_unit_test(bpe_gemma4_vocab_matches_vectors),
        cmocka_unit_test(bpe_llama_bpe_gguf_matches_vectors),
        cmocka_unit_test(wordpiece_bert_vocab_is_refused_with_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
