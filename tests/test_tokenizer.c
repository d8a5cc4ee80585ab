/* Tests for src/engine/tokenizer: the llama.cpp test vectors of every vocab
 * file in the shared test data, SentencePiece and BPE details, special
 * tokens, the streaming detokenizer, hostile input, and the CLI. */
#include <dirent.h>
#include <jansson.h>
#include <pthread.h>
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
        for (size_t k = 0; k < got.n; k++)
            sb_printf(&g, "%s%d", k ? " " : "", got.v[k]);
        /* Expected lines may carry a leading space; compare token lists. */
        const char *exp = line;
        while (*exp == ' ')
            exp++;
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
    for (size_t i = 0; i < n; i++)
        assert_non_null(toks[i].p);

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

#define VOCAB_TEST(fn, file)                                                                       \
    static void fn(void **st) {                                                                    \
        (void)st;                                                                                  \
        vocab_vectors(file);                                                                       \
    }
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

/* Whatever vectors the test data holds: every X.inp whose vocabulary X is
 * present must match (bert-bge excepted: WordPiece). Guards against a
 * vocabulary added to the test data without a test above. */
static void every_present_vocab_matches_its_vectors(void **st) {
    (void)st;
    const char *root = td_root();
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/vocab", root);
    DIR *dp = opendir(dir);
    if (!dp) {
        td_path("vocab");
        return;
    }
    struct dirent *de;
    int checked = 0;
    while ((de = readdir(dp))) {
        size_t l = strlen(de->d_name);
        if (l < 5 || strcmp(de->d_name + l - 4, ".inp") != 0) continue;
        char vocab[512];
        snprintf(vocab, sizeof vocab, "%.*s", (int)(l - 4), de->d_name);
        if (strstr(vocab, "bert-bge")) {
            print_message("# %s: WordPiece, not supported; vectors not checked\n", vocab);
            continue;
        }
        char rel[600];
        snprintf(rel, sizeof rel, "vocab/%s", vocab);
        if (!td_find(rel)) {
            print_message("# %s absent: its vectors cannot be checked here%s\n", vocab,
                          strstr(vocab, "llama-bpe") ? " (llama3.2-bpe JSON test covers them)"
                                                     : "");
            continue;
        }
        char vp[2200], ip[2200], op[2200];
        snprintf(vp, sizeof vp, "%s/%s", dir, vocab);
        snprintf(ip, sizeof ip, "%s/%s.inp", dir, vocab);
        snprintf(op, sizeof op, "%s/%s.out", dir, vocab);
        cf_err err = {0};
        tok_tokenizer *t = tok_load(vp, &err);
        if (!t) print_message("# %s: %s\n", vocab, err.msg);
        assert_non_null(t);
        int bad = check_vectors(t, ip, op);
        if (bad) print_message("# %s: %d texts differ\n", vocab, bad);
        assert_int_equal(bad, 0);
        tok_free(t);
        checked++;
    }
    closedir(dp);
    print_message("# %d vocabularies checked against their vectors\n", checked);
    assert_true(checked > 0);
}

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

/* ------------------------------------------------------------------ reference tokenizations */

/* stories260K.tokenize_llamacpp.txt: "### 'TEXT'" lines, each followed by
 * the ids llama.cpp gives with BOS added. */
static void stories260k_matches_llamacpp_tokenize_reference(void **st) {
    (void)st;
    char *model = td_dup("models/stories260K.gguf");
    const char *ref = td_path("reference/stories260K.tokenize_llamacpp.txt");
    size_t n = 0;
    char *buf = tu_read_file(ref, &n);
    assert_non_null(buf);
    if (!model) {
        free(buf);
        td_path("models/stories260K.gguf");
        return;
    }
    cf_err err = {0};
    tok_tokenizer *t = tok_load(model, &err);
    assert_non_null(t);
    int cases = 0;
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "### '", 5) != 0) continue;
        char *text = line + 5;
        size_t tl = strlen(text);
        assert_true(tl > 0 && text[tl - 1] == '\'');
        text[tl - 1] = 0;
        char *ids = strtok(NULL, "\n");
        assert_non_null(ids);
        tok_ids got = {0};
        assert_int_equal(tok_encode(t, text, strlen(text), true, false, &got, &err), 0);
        sb_t g = {0};
        sb_putc(&g, '[');
        for (size_t k = 0; k < got.n; k++)
            sb_printf(&g, "%s%d", k ? ", " : "", got.v[k]);
        sb_putc(&g, ']');
        if (strcmp(g.data, ids) != 0) print_message("# '%s': want %s got %s\n", text, ids, g.data);
        assert_string_equal(g.data, ids);
        sb_free(&g);
        tok_ids_free(&got);
        cases++;
    }
    assert_int_equal(cases, 5);
    tok_free(t);
    free(buf);
    free(model);
}

/* reference/<model>/<case>/: prompt.txt tokenized by llama.cpp (BOS added)
 * into tokens.txt, for every model and case present. */
static void model_prompts_match_reference_tokens(void **st) {
    (void)st;
    static const char *const models[] = {
        "stories260K",           "stories260K-F16",       "stories260K-BF16",
        "stories260K-Q8_0mix",   "stories260K-Q5_0mix",   "stories260K-Q5_1mix",
        "stories260K-IQ4_NLmix", "tiny-llama-d64-f32",    "tiny-llama-d64-Q8_0",
        "tiny-llama-d64-Q4_0",   "tiny-llama-d64-Q4_K_M", "tiny-llama-d256-Q4_0",
        "tiny-llama-d256-Q4_K_M"};
    static const char *const cases[] = {"p1", "p2", "p1-kvf32", "p2-kvf32"};
    int checked = 0;
    for (size_t m = 0; m < sizeof models / sizeof models[0]; m++) {
        char rel[256];
        snprintf(rel, sizeof rel, "models/%s.gguf", models[m]);
        char *mp = td_dup(rel);
        if (!mp) continue;
        cf_err err = {0};
        tok_tokenizer *t = tok_load(mp, &err);
        if (!t) print_message("# %s: %s\n", rel, err.msg);
        assert_non_null(t);
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            snprintf(rel, sizeof rel, "reference/%s/%s/prompt.txt", models[m], cases[c]);
            char *pp = td_dup(rel);
            snprintf(rel, sizeof rel, "reference/%s/%s/tokens.txt", models[m], cases[c]);
            char *tp = td_dup(rel);
            if (pp && tp) {
                size_t pl = 0, tl = 0;
                char *prompt = tu_read_file(pp, &pl), *want = tu_read_file(tp, &tl);
                while (tl && (want[tl - 1] == '\n' || want[tl - 1] == ' '))
                    want[--tl] = 0;
                tok_ids ids = {0};
                assert_int_equal(tok_encode(t, prompt, pl, true, false, &ids, &err), 0);
                sb_t got = {0};
                for (size_t k = 0; k < ids.n; k++)
                    sb_printf(&got, "%s%d", k ? " " : "", ids.v[k]);
                if (strcmp(sb_str(&got), want) != 0)
                    print_message("# %s/%s: want %s\n#   got %s\n", models[m], cases[c], want,
                                  sb_str(&got));
                assert_string_equal(sb_str(&got), want);
                checked++;
                sb_free(&got);
                tok_ids_free(&ids);
                free(prompt);
                free(want);
            }
            free(pp);
            free(tp);
        }
        tok_free(t);
        free(mp);
    }
    if (checked == 0) td_path("reference/stories260K/p1/tokens.txt");
    print_message("# %d reference prompts checked\n", checked);
}

/* ---------------------------------------------------------- behaviour on real vocabularies */

static tok_tokenizer *load_vocab(const char *name) {
    char rel[128];
    snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf", name);
    const char *p = td_find(rel);
    if (!p) return NULL;
    cf_err err = {0};
    tok_tokenizer *t = tok_load(p, &err);
    if (!t) print_message("# %s: %s\n", rel, err.msg);
    assert_non_null(t);
    return t;
}

#define NEED_VOCAB(t, name)                                                                        \
    tok_tokenizer *t = load_vocab(name);                                                           \
    if (!t) {                                                                                      \
        td_path("vocab/ggml-vocab-" name ".gguf");                                                 \
        return;                                                                                    \
    }

static void expect_ids(const tok_tokenizer *t, const char *text, bool add_special,
                       bool parse_special, const int32_t *want, size_t n_want) {
    tok_ids got = {0};
    cf_err err = {0};
    assert_int_equal(tok_encode(t, text, strlen(text), add_special, parse_special, &got, &err), 0);
    if (got.n != n_want || memcmp(got.v, want, n_want * sizeof *want) != 0) {
        sb_t g = {0};
        for (size_t k = 0; k < got.n; k++)
            sb_printf(&g, " %d", got.v[k]);
        print_message("# '%s' gave%s\n", text, sb_str(&g));
        sb_free(&g);
    }
    assert_int_equal(got.n, n_want);
    assert_memory_equal(got.v, want, n_want * sizeof *want);
    tok_ids_free(&got);
}

static void spm_adds_bos_and_prefix_space_by_default(void **st) {
    (void)st;
    NEED_VOCAB(t, "llama-spm");
    assert_int_equal(tok_get_kind(t), TOK_SPM);
    assert_true(tok_add_bos(t));
    assert_false(tok_add_eos(t));
    assert_int_equal(tok_bos(t), 1);
    assert_int_equal(tok_eos(t), 2);
    expect_ids(t, "Hello world", true, false, (const int32_t[]){1, 15043, 3186}, 3);
    expect_ids(t, "Hello world", false, false, (const int32_t[]){15043, 3186}, 2);
    expect_ids(t, "", true, false, (const int32_t[]){1}, 1);
    tok_free(t);
}

static void spm_falls_back_to_byte_tokens(void **st) {
    (void)st;
    NEED_VOCAB(t, "llama-spm");
    /* U+10FFFD (private use) is no token: its 4 UTF-8 bytes become <0xF4>
     * <0x8F> <0xBF> <0xBD>, ids 3 + byte value. */
    expect_ids(t, "\xF4\x8F\xBF\xBD", false, false,
               (const int32_t[]){29871, 3 + 0xF4, 3 + 0x8F, 3 + 0xBF, 3 + 0xBD}, 5);
    tok_free(t);
}

static void control_tokens_are_parsed_only_when_allowed(void **st) {
    (void)st;
    NEED_VOCAB(t, "llama-spm");
    /* "<s>" with parse_special is BOS; the text after it gets the prefix space. */
    expect_ids(t, "<s>Hello", false, true, (const int32_t[]){1, 15043}, 2);
    tok_ids plain = {0};
    cf_err err = {0};
    assert_int_equal(tok_encode(t, "<s>Hello", 8, false, false, &plain, &err), 0);
    assert_true(plain.n > 2);
    for (size_t i = 0; i < plain.n; i++)
        assert_int_not_equal(plain.v[i], 1);
    tok_ids_free(&plain);
    tok_free(t);

    NEED_VOCAB(g, "gpt-2");
    expect_ids(g, "Hello world<|endoftext|>", false, true, (const int32_t[]){15496, 995, 50256}, 3);
    expect_ids(g, "Hello world<|endoftext|>", false, false,
               (const int32_t[]){15496, 995, 27, 91, 437, 1659, 5239, 91, 29}, 9);
    assert_int_equal(tok_eot(g), 50256);
    tok_free(g);
}

static void bpe_gpt2_adds_no_bos(void **st) {
    (void)st;
    NEED_VOCAB(t, "gpt-2");
    assert_int_equal(tok_get_kind(t), TOK_BPE);
    assert_string_equal(tok_pre_name(t), "gpt2");
    assert_false(tok_add_bos(t));
    expect_ids(t, "Hello world", true, false, (const int32_t[]){15496, 995}, 2);
    tok_free(t);
}

/* decode(encode(x)) == x for every test text of a vocabulary. */
static void round_trip(const char *name) {
    char rel[128];
    snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf.inp", name);
    const char *ip = td_path(rel);
    size_t len = 0;
    char *inp = tu_read_file(ip, &len);
    assert_non_null(inp);
    tok_tokenizer *t = load_vocab(name);
    if (!t) {
        free(inp);
        snprintf(rel, sizeof rel, "vocab/ggml-vocab-%s.gguf", name);
        td_path(rel);
        return;
    }
    char *texts[256];
    size_t lens[256];
    size_t n = split_inp(inp, len, texts, lens, 256);
    for (size_t i = 0; i < n; i++) {
        tok_ids ids = {0};
        cf_err err = {0};
        assert_int_equal(tok_encode(t, texts[i], lens[i], true, false, &ids, &err), 0);
        sb_t out = {0};
        assert_int_equal(tok_decode(t, ids.v, ids.n, false, &out, &err), 0);
        if (out.len != lens[i] || memcmp(sb_str(&out), texts[i], lens[i]) != 0)
            print_message("# %s text %zu: '%s' decoded as '%s'\n", name, i, texts[i], sb_str(&out));
        assert_int_equal(out.len, lens[i]);
        assert_memory_equal(sb_str(&out), texts[i], lens[i]);
        sb_free(&out);
        tok_ids_free(&ids);
    }
    tok_free(t);
    free(inp);
}

static void spm_decode_inverts_encode(void **st) {
    (void)st;
    round_trip("llama-spm");
}

static void bpe_decode_inverts_encode(void **st) {
    (void)st;
    round_trip("gpt-2");
    round_trip("deepseek-llm");
    round_trip("falcon");
}

static void decode_hides_control_tokens_unless_special(void **st) {
    (void)st;
    NEED_VOCAB(t, "llama-spm");
    const int32_t ids[] = {1, 15043, 2};
    sb_t s = {0};
    cf_err err = {0};
    assert_int_equal(tok_decode(t, ids, 3, false, &s, &err), 0);
    assert_string_equal(sb_str(&s), "Hello");
    sb_clear(&s);
    assert_int_equal(tok_decode(t, ids, 3, true, &s, &err), 0);
    assert_string_equal(sb_str(&s), "<s> Hello</s>");
    sb_clear(&s);
    const int32_t bad[] = {15043, 32000};
    assert_int_equal(tok_decode(t, bad, 2, false, &s, &err), CF_ERANGE);
    assert_non_null(strstr(err.msg, "32000"));
    sb_free(&s);
    tok_free(t);
}

/* ------------------------------------------------------------------ streaming detokenizer */

/* Pushes the ids of TEXT one at a time; every chunk must be whole UTF-8 and
 * the chunks together the text. Returns how many pushes held bytes back. */
static int stream_text(const tok_tokenizer *t, const char *text) {
    tok_ids ids = {0};
    cf_err err = {0};
    assert_int_equal(tok_encode(t, text, strlen(text), false, false, &ids, &err), 0);
    tok_stream *s = tok_stream_new(t, TOK_STREAM_STRIP_SPACE);
    assert_non_null(s);
    sb_t all = {0};
    int held = 0;
    for (size_t i = 0; i < ids.n; i++) {
        sb_t chunk = {0};
        assert_int_equal(tok_stream_push(s, ids.v[i], &chunk, &err), 0);
        assert_true(utf8_valid(chunk.data ? chunk.data : "", chunk.len, NULL));
        if (tok_stream_pending(s) > 0) held++;
        sb_appendn(&all, chunk.data ? chunk.data : "", chunk.len);
        sb_free(&chunk);
    }
    assert_int_equal(tok_stream_pending(s), 0);
    tok_stream_flush(s, &all);
    assert_string_equal(sb_str(&all), text);
    sb_free(&all);
    tok_stream_free(s);
    tok_ids_free(&ids);
    return held;
}

static void stream_emits_only_whole_utf8_characters(void **st) {
    (void)st;
    NEED_VOCAB(b, "gpt-2");
    /* GPT-2 splits the llama emoji's 4 bytes over several tokens. */
    assert_true(
        stream_text(b, "this is \xF0\x9F\xA6\x99.cpp, caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC") > 0);
    tok_free(b);
    NEED_VOCAB(s, "llama-spm");
    /* SPM byte fallback: an unknown character arrives one byte token at a time. */
    assert_true(stream_text(s, "Hello \xF4\x8F\xBF\xBD world \xF0\x9F\xA6\x99") > 0);
    tok_free(s);
}

static void stream_flush_replaces_an_unfinished_character(void **st) {
    (void)st;
    NEED_VOCAB(t, "llama-spm");
    tok_stream *s = tok_stream_new(t, 0);
    sb_t out = {0};
    cf_err err = {0};
    /* <0xE6> <0x97>: two of the three bytes of U+65E5. */
    assert_int_equal(tok_stream_push(s, 3 + 0xE6, &out, &err), 0);
    assert_int_equal(tok_stream_push(s, 3 + 0x97, &out, &err), 0);
    assert_int_equal(out.len, 0);
    assert_int_equal(tok_stream_pending(s), 2);
    tok_stream_flush(s, &out);
    assert_string_equal(sb_str(&out), "\xEF\xBF\xBD");
    assert_int_equal(tok_stream_pending(s), 0);
    /* A byte that can never start a character is replaced at once. */
    sb_clear(&out);
    assert_int_equal(tok_stream_push(s, 3 + 0xFF, &out, &err), 0);
    assert_string_equal(sb_str(&out), "\xEF\xBF\xBD");
    assert_int_equal(tok_stream_push(s, 99999, &out, &err), CF_ERANGE);
    sb_free(&out);
    tok_stream_free(s);
    tok_free(t);
}

/* ------------------------------------------------------------------ hostile input */

static void invalid_utf8_is_read_as_replacement_characters(void **st) {
    (void)st;
    const char *names[] = {"llama-spm", "gpt-2"};
    for (int k = 0; k < 2; k++) {
        tok_tokenizer *t = load_vocab(names[k]);
        if (!t) {
            td_path("vocab/ggml-vocab-gpt-2.gguf");
            td_path("vocab/ggml-vocab-llama-spm.gguf");
            return;
        }
        struct {
            const char *bad, *good;
        } cases[] = {
            {"a\xFF"
             "b",
             "a\xEF\xBF\xBD"
             "b"},
            {"caf\xC3", "caf\xEF\xBF\xBD"},               /* truncated at the end */
            {"\xE2\x82 x", "\xEF\xBF\xBD\xEF\xBF\xBD x"}, /* cut sequence: one per byte */
            {"\xED\xA0\x80!", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD!"}, /* a surrogate */
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            tok_ids a = {0}, b = {0};
            cf_err err = {0};
            assert_int_equal(
                tok_encode(t, cases[i].bad, strlen(cases[i].bad), true, false, &a, &err), 0);
            assert_int_equal(
                tok_encode(t, cases[i].good, strlen(cases[i].good), true, false, &b, &err), 0);
            assert_int_equal(a.n, b.n);
            assert_memory_equal(a.v, b.v, a.n * sizeof *a.v);
            tok_ids_free(&a);
            tok_ids_free(&b);
        }
        tok_free(t);
    }
}

/* One enormous "word" for each kind of pre-tokenizer piece: runs of
 * letters, digits, spaces and punctuation, half a megabyte each. Quadratic
 * merging or regex rescans would take minutes; linear work takes well
 * under a second. The result must still decode to the input. */
static void huge_single_word_tokenizes_in_linear_time(void **st) {
    (void)st;
    const char *names[] = {"gpt-2", "llama-spm", "deepseek-llm", "falcon"};
    size_t n = 1u << 19;
    char *big = malloc(n + 8);
    for (int k = 0; k < 4; k++) {
        tok_tokenizer *t = load_vocab(names[k]);
        if (!t) {
            free(big);
            td_path("vocab/ggml-vocab-gpt-2.gguf");
            return;
        }
        const char fill[] = {'a', '7', ' ', '!'};
        for (int f = 0; f < 4; f++) {
            memset(big, fill[f], n);
            memcpy(big + n, "\xE4\xB8\xAD", 4); /* a CJK letter after the run, NUL included */
            size_t len = n + 3;
            tok_ids ids = {0};
            cf_err err = {0};
            assert_int_equal(tok_encode(t, big, len, false, false, &ids, &err), 0);
            assert_true(ids.n > 0 && ids.n <= len + 1);
            sb_t out = {0};
            assert_int_equal(tok_decode(t, ids.v, ids.n, false, &out, &err), 0);
            assert_int_equal(out.len, len);
            assert_memory_equal(out.data, big, len);
            sb_free(&out);
            tok_ids_free(&ids);
        }
        tok_free(t);
    }
    free(big);
}

/* Phi-3 (general.name "Phi3"): whitespace after its special tokens belongs
 * to the token, as llama.cpp sets up for that model. */
static void phi3_special_tokens_eat_following_whitespace(void **st) {
    (void)st;
    NEED_VOCAB(t, "phi-3");
    expect_ids(t, "<|user|>\nHello<|end|>\n<|assistant|>", true, true,
               (const int32_t[]){1, 32010, 15043, 32007, 32001}, 5);
    tok_free(t);
}

/* User-defined tokens are cut out longest first, then leftmost, whatever
 * their position: "bcd" beats the earlier "ab" in "abcd". */
static void special_tokens_are_cut_longest_first(void **st) {
    (void)st;
    tok_str toks[] = {{"a", 1},  {"b", 1},  {"c", 1},   {"d", 1},
                      {"cd", 2}, {"ab", 2}, {"bcd", 3}, {"\xC4\xA0", 2}};
    int32_t types[] = {1, 1, 1, 1, 1, 4, 4, 1};
    tok_str merges[] = {{"c d", 3}};
    tok_vocab_desc d;
    tok_desc_init(&d, TOK_BPE);
    d.pre = "gpt-2", d.n_tokens = 8, d.tokens = toks, d.types = types, d.n_merges = 1,
    d.merges = merges;
    cf_err err = {0};
    tok_tokenizer *t = tok_new(&d, &err);
    assert_non_null(t);
    expect_ids(t, "abcd", false, false, (const int32_t[]){0, 6}, 2);
    expect_ids(t, "ababcd", false, false, (const int32_t[]){5, 0, 6}, 3);
    expect_ids(t, "ababacd", false, false, (const int32_t[]){5, 5, 0, 4}, 4);
    /* Without rstrip the spaces stay text ("Ġ" is id 7)... */
    expect_ids(t, "ab  cd", false, false, (const int32_t[]){5, 7, 7, 4}, 4);
    tok_free(t);
    /* ...with it (Phi-3 style) the token eats them. */
    d.rstrip_special = true;
    t = tok_new(&d, &err);
    assert_non_null(t);
    expect_ids(t, "ab  cd", false, false, (const int32_t[]){5, 4}, 2);
    tok_free(t);
}

/* Random bytes (ASCII, pieces of UTF-8, stray continuation bytes, NULs):
 * encoding never fails, decoding gives back the text with invalid bytes as
 * U+FFFD, and a stream of random ids only ever emits valid UTF-8. */
static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void random_bytes_round_trip_and_stream_valid_utf8(void **st) {
    (void)st;
    const char *names[] = {"gpt-2", "llama-spm", "deepseek-llm", "mpt"};
    static const char *const alphabet[] = {
        "a",    "Z",    " ",    "  ",       "\n",           "\t",
        "7",    "'s",   "!",    "\xC3\xA9", "\xE6\x97\xA5", "\xF0\x9F\xA6\x99",
        "\xC3", "\x80", "\xFF", "\xE2\x82", "<s>",          "<|endoftext|>",
        "\r\n"};
    size_t na = sizeof alphabet / sizeof alphabet[0];
    for (int k = 0; k < 4; k++) {
        tok_tokenizer *t = load_vocab(names[k]);
        if (!t) {
            td_path("vocab/ggml-vocab-gpt-2.gguf");
            return;
        }
        uint64_t seed = 0x9E3779B97F4A7C15ULL + (uint64_t)k;
        for (int iter = 0; iter < 150; iter++) {
            sb_t text = {0};
            int parts = (int)(rng_next(&seed) % 40);
            for (int i = 0; i < parts; i++) {
                uint64_t r = rng_next(&seed);
                if (r % 5 == 0)
                    sb_putc(&text, (char)(r >> 8)); /* any byte, NUL included */
                else
                    sb_append(&text, alphabet[(r >> 8) % na]);
            }
            tok_ids ids = {0};
            cf_err err = {0};
            assert_int_equal(
                tok_encode(t, text.data ? text.data : "", text.len, true, false, &ids, &err), 0);
            sb_t want = {0}, got = {0};
            /* What the tokenizer reads: invalid bytes as U+FFFD. */
            for (size_t i = 0; i < text.len;) {
                uint32_t cp;
                int l = utf8_decode(text.data + i, text.len - i, &cp);
                if (l > 0)
                    sb_appendn(&want, text.data + i, (size_t)l), i += (size_t)l;
                else
                    sb_append(&want, "\xEF\xBF\xBD"), i++;
            }
            assert_int_equal(tok_decode(t, ids.v, ids.n, false, &got, &err), 0);
            if (got.len != want.len || memcmp(sb_str(&got), sb_str(&want), want.len) != 0)
                print_message("# %s iter %d: round trip differs\n", names[k], iter);
            assert_int_equal(got.len, want.len);
            assert_memory_equal(sb_str(&got), sb_str(&want), want.len);
            sb_free(&want);
            sb_free(&got);
            sb_free(&text);
            tok_ids_free(&ids);
        }
        tok_stream *s = tok_stream_new(t, TOK_STREAM_SPECIAL);
        for (int i = 0; i < 3000; i++) {
            sb_t chunk = {0};
            cf_err err = {0};
            int32_t id = (int32_t)(rng_next(&seed) % tok_n_tokens(t));
            assert_int_equal(tok_stream_push(s, id, &chunk, &err), 0);
            assert_true(utf8_valid(chunk.data ? chunk.data : "", chunk.len, NULL));
            sb_free(&chunk);
        }
        sb_t tail = {0};
        tok_stream_flush(s, &tail);
        assert_true(utf8_valid(tail.data ? tail.data : "", tail.len, NULL));
        sb_free(&tail);
        tok_stream_free(s);
        tok_free(t);
    }
}

/* A tokenizer is immutable once built: threads encoding at once with the
 * same one get the same ids as one thread alone. */
typedef struct {
    const tok_tokenizer *t;
    const char *text;
    size_t len;
    tok_ids out;
    int rc;
} enc_job;

static void *enc_thread(void *arg) {
    enc_job *j = arg;
    cf_err err = {0};
    for (int r = 0; r < 20 && j->rc == 0; r++) {
        j->out.n = 0;
        j->rc = tok_encode(j->t, j->text, j->len, true, true, &j->out, &err);
    }
    return NULL;
}

static void concurrent_encodes_agree(void **st) {
    (void)st;
    NEED_VOCAB(t, "deepseek-llm");
    const char *ip = td_path("vocab/ggml-vocab-deepseek-llm.gguf.inp");
    size_t len = 0;
    char *text = tu_read_file(ip, &len);
    assert_non_null(text);
    tok_ids ref = {0};
    cf_err err = {0};
    assert_int_equal(tok_encode(t, text, len, true, true, &ref, &err), 0);
    enc_job jobs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (enc_job){t, text, len, {0}, 0};
        assert_int_equal(pthread_create(&th[i], NULL, enc_thread, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(jobs[i].rc, 0);
        assert_int_equal(jobs[i].out.n, ref.n);
        assert_memory_equal(jobs[i].out.v, ref.v, ref.n * sizeof *ref.v);
        tok_ids_free(&jobs[i].out);
    }
    tok_ids_free(&ref);
    free(text);
    tok_free(t);
}

/* Every pre-tokenizer in the table, over a byte-level vocabulary with no
 * useful merges: a 128 KiB run of one character class is one enormous
 * piece for some regex of each list. All must finish (no backtracking blow
 * up, no PCRE2 match-limit error) and give back the text. */
static uint32_t gpt2_byte_cp(int b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))
        return (uint32_t)b;
    int n = 0;
    for (int c = 0; c < b; c++)
        if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF)))
            n++;
    return 256u + (uint32_t)n;
}

static void every_pre_tokenizer_handles_huge_runs(void **st) {
    (void)st;
    static char enc[256][4];
    tok_str toks[257];
    for (int b = 0; b < 256; b++) {
        int l = utf8_encode(gpt2_byte_cp(b), enc[b]);
        toks[b] = (tok_str){enc[b], (size_t)l};
    }
    toks[256] = (tok_str){"aa", 2};
    tok_str merges[] = {{"a a", 3}};
    static const char *const pres[] = {
        "default",     "llama3",    "dbrx",   "deepseek-llm", "deepseek-coder", "deepseek-v3",
        "falcon",      "starcoder", "gpt-2",  "qwen2",        "qwen35",         "poro-chat",
        "chatglm-bpe", "viking",    "tekken", "gpt-4o",       "seed-coder"};
    static const char *const fills[] = {"a",  "A",  "7",        " ", "!", "\xE4\xB8\xAD",
                                        "\n", "aA", "\xCC\x81", "'s"};
    size_t n = 128u << 10;
    char *big = malloc(n + 8);
    for (size_t p = 0; p < sizeof pres / sizeof pres[0]; p++) {
        tok_vocab_desc d;
        tok_desc_init(&d, TOK_BPE);
        d.pre = pres[p], d.n_tokens = 257, d.tokens = toks, d.n_merges = 1, d.merges = merges;
        d.bos_id = d.eos_id = -1, d.add_bos = 0;
        cf_err err = {0};
        tok_tokenizer *t = tok_new(&d, &err);
        if (!t) print_message("# %s: %s\n", pres[p], err.msg);
        assert_non_null(t);
        for (size_t f = 0; f < sizeof fills / sizeof fills[0]; f++) {
            size_t fl = strlen(fills[f]), len = 0;
            while (len + fl <= n)
                memcpy(big + len, fills[f], fl), len += fl;
            tok_ids ids = {0};
            int rc = tok_encode(t, big, len, false, false, &ids, &err);
            if (rc) print_message("# %s, run of '%s': %s\n", pres[p], fills[f], err.msg);
            assert_int_equal(rc, 0);
            sb_t out = {0};
            assert_int_equal(tok_decode(t, ids.v, ids.n, false, &out, &err), 0);
            assert_int_equal(out.len, len);
            assert_memory_equal(out.data, big, len);
            sb_free(&out);
            tok_ids_free(&ids);
        }
        tok_free(t);
    }
    free(big);
}

/* ------------------------------------------------------------------ construction errors */

static void bad_descriptions_are_refused_with_reasons(void **st) {
    (void)st;
    tok_str toks[] = {{"a", 1}, {"b", 1}, {"ab", 2}};
    tok_str merges[] = {{"a b", 3}};
    tok_vocab_desc d;
    cf_err err = {0};

    tok_desc_init(&d, TOK_BPE);
    d.n_tokens = 3, d.tokens = toks, d.n_merges = 1, d.merges = merges, d.pre = "gpt-2";
    tok_tokenizer *t = tok_new(&d, &err);
    assert_non_null(t);
    expect_ids(t, "ab", false, false, (const int32_t[]){2}, 1);
    expect_ids(t, "ba", false, false, (const int32_t[]){1, 0}, 2);
    tok_free(t);

    d.pre = "no-such-pre";
    assert_null(tok_new(&d, &err));
    assert_non_null(strstr(err.msg, "no-such-pre"));

    d.pre = "gpt-2";
    d.n_merges = 0;
    assert_null(tok_new(&d, &err));
    assert_non_null(strstr(err.msg, "merges"));

    tok_str dup[] = {{"a", 1}, {"b", 1}, {"a", 1}};
    d.n_merges = 1, d.tokens = dup;
    assert_null(tok_new(&d, &err));
    assert_non_null(strstr(err.msg, "duplicate"));

    tok_str empty[] = {{"a", 1}, {"", 0}, {"ab", 2}};
    d.tokens = empty;
    assert_null(tok_new(&d, &err));
    assert_non_null(strstr(err.msg, "token 1 is empty"));

    tok_str nosp[] = {{"ab", 2}};
    d.tokens = toks, d.merges = nosp;
    assert_null(tok_new(&d, &err));
    assert_non_null(strstr(err.msg, "no space"));

    d.merges = merges, d.add_bos = 1, d.bos_id = -1;
    assert_null(tok_new(&d, &err));
    assert_non_null(strstr(err.msg, "BOS"));

    d.add_bos = -1, d.bos_id = 7;
    assert_null(tok_new(&d, &err));
    assert_non_null(strstr(err.msg, "outside the vocabulary"));

    tok_desc_init(&d, TOK_SPM);
    assert_null(tok_new(&d, &err));
    assert_non_null(strstr(err.msg, "no tokens"));
}

/* Writes a vocabulary GGUF with MODEL and the given arrays to DIR/NAME. */
static char *write_vocab(const char *dir, const char *name, const char *model, bool with_tokens,
                         int n_scores, bool types_as_float, bool with_merges) {
    gguf_writer *w = gguf_w_new();
    if (model) gguf_w_set_str(w, "tokenizer.ggml.model", model);
    gguf_str toks[] = {{"<unk>", 5}, {"<s>", 3}, {"</s>", 4}, {"a", 1}, {"b", 1}, {"ab", 2}};
    if (with_tokens) gguf_w_set_arr_str(w, "tokenizer.ggml.tokens", toks, 6);
    float scores[6] = {0, 0, 0, -1, -2, -0.5f};
    if (n_scores > 0)
        gguf_w_set_arr(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, (uint64_t)n_scores);
    if (types_as_float)
        gguf_w_set_arr(w, "tokenizer.ggml.token_type", GGUF_TYPE_FLOAT32, scores, 6);
    gguf_str merges[] = {{"a b", 3}};
    if (with_merges) gguf_w_set_arr_str(w, "tokenizer.ggml.merges", merges, 1);
    char *path = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(path, "%s/%s", dir, name);
    cf_err err = {0};
    assert_int_equal(gguf_w_write(w, path, &err), 0);
    gguf_w_free(w);
    return path;
}

static void vocab_gguf_with_missing_or_mismatched_arrays_is_refused(void **st) {
    (void)st;
    char *dir = tu_tmpdir();
    struct {
        const char *name, *model;
        bool tokens;
        int n_scores;
        bool types_float, merges;
        const char *want; /* NULL: loads */
    } cases[] = {
        {"ok-spm", "llama", true, 6, false, false, NULL},
        {"ok-bpe", "gpt2", true, 0, false, true, NULL},
        {"no-model", NULL, true, 6, false, false, "tokenizer.ggml.model is missing"},
        {"no-tokens", "llama", false, 0, false, false, "tokenizer.ggml.tokens is missing"},
        {"short-scores", "llama", true, 4, false, false, "tokenizer.ggml.scores has 4 entries"},
        {"float-types", "llama", true, 6, true, false, "tokenizer.ggml.token_type holds float32"},
        {"no-merges", "gpt2", true, 0, false, false, "tokenizer.ggml.merges is missing"},
        {"unknown-model", "rwkv", true, 6, false, false, "unsupported tokenizer.ggml.model 'rwkv'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *p = write_vocab(dir, cases[i].name, cases[i].model, cases[i].tokens,
                              cases[i].n_scores, cases[i].types_float, cases[i].merges);
        cf_err err = {0};
        tok_tokenizer *t = tok_load(p, &err);
        if (!cases[i].want) {
            if (!t) print_message("# %s: %s\n", cases[i].name, err.msg);
            assert_non_null(t);
            tok_free(t);
        } else {
            assert_null(t);
            if (!strstr(err.msg, cases[i].want))
                print_message("# %s: '%s'\n", cases[i].name, err.msg);
            assert_non_null(strstr(err.msg, cases[i].want));
        }
        free(p);
    }
    /* The SPM file merges by score: "ab" (-0.5) is one token. The prefix
     * "▁" has no token and there are no byte tokens: each of its three
     * bytes becomes <unk>. */
    char *p = write_vocab(dir, "spm2", "llama", true, 6, false, false);
    cf_err err = {0};
    tok_tokenizer *t = tok_load(p, &err);
    assert_non_null(t);
    expect_ids(t, "ab", false, false, (const int32_t[]){0, 0, 0, 5}, 4);
    tok_free(t);
    free(p);

    /* An empty token is renamed as llama.cpp does, not refused. */
    gguf_writer *w = gguf_w_new();
    gguf_w_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_str toks[] = {{"<unk>", 5}, {"<s>", 3}, {"</s>", 4}, {"a", 1}, {"", 0}};
    gguf_w_set_arr_str(w, "tokenizer.ggml.tokens", toks, 5);
    p = malloc(strlen(dir) + 16);
    sprintf(p, "%s/empty", dir);
    assert_int_equal(gguf_w_write(w, p, &err), 0);
    gguf_w_free(w);
    t = tok_load(p, &err);
    assert_non_null(t);
    assert_int_equal(tok_find(t, "[EMPTY_4]", 9), 4);
    tok_free(t);
    free(p);
    tu_rmtree(dir);
    free(dir);
}

/* ------------------------------------------------------------------ CLI */

static void cli_tokenize_prints_json_array_of_ids(void **st) {
    (void)st;
    char *v = td_dup("vocab/ggml-vocab-llama-spm.gguf");
    if (!v) {
        td_path("vocab/ggml-vocab-llama-spm.gguf");
        return;
    }
    char cmd[1024];
    char *out = NULL;
    snprintf(cmd, sizeof cmd, "%s tokenize -m %s 'Hello world'", tu_confab_bin(), v);
    assert_int_equal(tu_run(cmd, &out), 0);
    assert_string_equal(out, "[1, 15043, 3186]\n");
    free(out);
    snprintf(cmd, sizeof cmd, "%s tokenize -m %s --no-bos --special '<s>Hello world'",
             tu_confab_bin(), v);
    assert_int_equal(tu_run(cmd, &out), 0);
    assert_string_equal(out, "[1, 15043, 3186]\n");
    free(out);
    snprintf(cmd, sizeof cmd, "printf 'Hello world' | %s tokenize -m %s --no-bos -",
             tu_confab_bin(), v);
    assert_int_equal(tu_run(cmd, &out), 0);
    assert_string_equal(out, "[15043, 3186]\n");
    free(out);
    snprintf(cmd, sizeof cmd, "%s tokenize -m %s 2>&1", tu_confab_bin(), v);
    assert_int_equal(tu_run(cmd, &out), 2);
    assert_non_null(strstr(out, "missing TEXT"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s tokenize -m /nonexistent.gguf hi 2>&1", tu_confab_bin());
    assert_int_equal(tu_run(cmd, &out), 1);
    assert_non_null(strstr(out, "nonexistent"));
    free(out);
    free(v);
}

static void cli_detokenize_prints_the_text(void **st) {
    (void)st;
    char *v = td_dup("vocab/ggml-vocab-gpt-2.gguf");
    if (!v) {
        td_path("vocab/ggml-vocab-gpt-2.gguf");
        return;
    }
    char cmd[1024];
    char *out = NULL;
    snprintf(cmd, sizeof cmd, "%s detokenize -m %s 15496 995", tu_confab_bin(), v);
    assert_int_equal(tu_run(cmd, &out), 0);
    assert_string_equal(out, "Hello world");
    free(out);
    snprintf(cmd, sizeof cmd, "%s detokenize -m %s '[15496, 995, 50256]'", tu_confab_bin(), v);
    assert_int_equal(tu_run(cmd, &out), 0);
    assert_string_equal(out, "Hello world");
    free(out);
    snprintf(cmd, sizeof cmd, "%s detokenize -m %s --special 15496 995 50256", tu_confab_bin(), v);
    assert_int_equal(tu_run(cmd, &out), 0);
    assert_string_equal(out, "Hello world<|endoftext|>");
    free(out);
    snprintf(cmd, sizeof cmd, "%s detokenize -m %s 15496 x 2>&1", tu_confab_bin(), v);
    assert_int_equal(tu_run(cmd, &out), 2);
    assert_non_null(strstr(out, "'x' is not a token id"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s detokenize -m %s 50257 2>&1", tu_confab_bin(), v);
    assert_int_equal(tu_run(cmd, &out), 1);
    assert_non_null(strstr(out, "outside the vocabulary"));
    free(out);
    free(v);
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
        cmocka_unit_test(every_present_vocab_matches_its_vectors),
        cmocka_unit_test(stories260k_matches_llamacpp_tokenize_reference),
        cmocka_unit_test(model_prompts_match_reference_tokens),
        cmocka_unit_test(spm_adds_bos_and_prefix_space_by_default),
        cmocka_unit_test(spm_falls_back_to_byte_tokens),
        cmocka_unit_test(control_tokens_are_parsed_only_when_allowed),
        cmocka_unit_test(bpe_gpt2_adds_no_bos),
        cmocka_unit_test(spm_decode_inverts_encode),
        cmocka_unit_test(bpe_decode_inverts_encode),
        cmocka_unit_test(decode_hides_control_tokens_unless_special),
        cmocka_unit_test(stream_emits_only_whole_utf8_characters),
        cmocka_unit_test(stream_flush_replaces_an_unfinished_character),
        cmocka_unit_test(invalid_utf8_is_read_as_replacement_characters),
        cmocka_unit_test(huge_single_word_tokenizes_in_linear_time),
        cmocka_unit_test(every_pre_tokenizer_handles_huge_runs),
        cmocka_unit_test(random_bytes_round_trip_and_stream_valid_utf8),
        cmocka_unit_test(concurrent_encodes_agree),
        cmocka_unit_test(phi3_special_tokens_eat_following_whitespace),
        cmocka_unit_test(special_tokens_are_cut_longest_first),
        cmocka_unit_test(bad_descriptions_are_refused_with_reasons),
        cmocka_unit_test(vocab_gguf_with_missing_or_mismatched_arrays_is_refused),
        cmocka_unit_test(cli_tokenize_prints_json_array_of_ids),
        cmocka_unit_test(cli_detokenize_prints_the_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
