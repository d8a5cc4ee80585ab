/* Tests for src/engine/quantize.c and `confab quantize`: the per-tensor type
 * rules, byte-for-byte agreement with the reference engine's quantized
 * files, every preset on a real model (types and closeness to the
 * originals), and bad input. */
#include "base/err.h"
#include "engine/gguf.h"
#include "engine/quantize.h"
#include "engine/types.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static gguf_tensor mk_tensor(int64_t ne0, int64_t ne1, uint32_t n_dims) {
    gguf_tensor t;
    memset(&t, 0, sizeof t);
    t.n_dims = n_dims;
    t.ne[0] = ne0;
    t.ne[1] = ne1;
    t.ne[2] = t.ne[3] = 1;
    t.type = TT_F32;
    return t;
}

/* ------------------------------------------------------------------ rules */

static void presets_parse_case_insensitively(void **st) {
    (void)st;
    assert_int_equal(quant_preset_from_name("q4_k_m"), QUANT_Q4_K_M);
    assert_int_equal(quant_preset_from_name("F16"), QUANT_F16);
    assert_int_equal(quant_preset_from_name("bf16"), QUANT_BF16);
    assert_int_equal(quant_preset_from_name("Q6_K"), QUANT_Q6_K);
    assert_int_equal(quant_preset_from_name("Q4_K"), -1);
    assert_int_equal(quant_preset_from_name("q3_k_m"), QUANT_Q3_K_M);
    assert_int_equal(quant_preset_from_name("q3_k_s"), -1);
    assert_int_equal(quant_preset_from_name(NULL), -1);
    assert_string_equal(quant_preset_name(QUANT_Q5_K_M), "Q5_K_M");
}

static void km_mix_gives_more_bits_to_chosen_layers(void **st) {
    (void)st;
    gguf_tensor t = mk_tensor(4096, 1024, 2);
    quant_ctx c = {0, 32, 1, 1};
    /* n = 32: layers 0..3 and 28..31, and 4 + 3k + 2 = 6, 9, ... get Q6_K. */
    const int more[] = {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31};
    for (int i = 0; i < 32; i++) {
        int want = TT_Q4_K;
        for (size_t k = 0; k < sizeof more / sizeof more[0]; k++)
            if (more[k] == i) want = TT_Q6_K;
        c.i_layer = i;
        assert_int_equal(quant_tensor_type(QUANT_Q4_K_M, "blk.x.attn_v.weight", &t, c), want);
        assert_int_equal(quant_tensor_type(QUANT_Q4_K_M, "blk.x.ffn_down.weight", &t, c), want);
        assert_int_equal(quant_tensor_type(QUANT_Q5_K_M, "blk.x.ffn_down.weight", &t, c),
                         want == TT_Q4_K ? TT_Q5_K : TT_Q6_K);
        assert_int_equal(quant_tensor_type(QUANT_Q4_K_M, "blk.x.attn_q.weight", &t, c), TT_Q4_K);
        assert_int_equal(quant_tensor_type(QUANT_Q4_0, "blk.x.ffn_down.weight", &t, c), TT_Q4_0);
    }
    assert_int_equal(quant_tensor_type(QUANT_Q4_K_M, "blk.0.attn_qkv.weight", &t, c), TT_Q5_K);
    /* Q3_K_M: first two attn_v Q5_K; ffn_down Q5_K below n/16; attn_output Q4_K. */
    c = (quant_ctx){1, 32, 1, 1};
    assert_int_equal(quant_tensor_type(QUANT_Q3_K_M, "blk.1.attn_v.weight", &t, c), TT_Q5_K);
    assert_int_equal(quant_tensor_type(QUANT_Q3_K_M, "blk.1.ffn_down.weight", &t, c), TT_Q5_K);
    c.i_layer = 2;
    assert_int_equal(quant_tensor_type(QUANT_Q3_K_M, "blk.2.attn_v.weight", &t, c), TT_Q4_K);
    assert_int_equal(quant_tensor_type(QUANT_Q3_K_M, "blk.2.ffn_down.weight", &t, c), TT_Q4_K);
    assert_int_equal(quant_tensor_type(QUANT_Q3_K_M, "blk.2.attn_output.weight", &t, c), TT_Q4_K);
    assert_int_equal(quant_tensor_type(QUANT_Q3_K_M, "blk.2.ffn_up.weight", &t, c), TT_Q3_K);
    /* Q2_K: attn_v Q3_K, or Q4_K with >= 4 heads per KV head. */
    assert_int_equal(quant_tensor_type(QUANT_Q2_K, "blk.2.attn_v.weight", &t, c), TT_Q3_K);
    c.n_gqa = 4;
    assert_int_equal(quant_tensor_type(QUANT_Q2_K, "blk.2.attn_v.weight", &t, c), TT_Q4_K);
    assert_int_equal(quant_tensor_type(QUANT_Q2_K, "blk.2.ffn_down.weight", &t, c), TT_Q3_K);
    assert_int_equal(quant_tensor_type(QUANT_Q2_K, "blk.2.attn_output.weight", &t, c), TT_Q3_K);
    assert_int_equal(quant_tensor_type(QUANT_Q2_K, "blk.2.ffn_gate.weight", &t, c), TT_Q2_K);
    assert_int_equal(quant_tensor_type(QUANT_Q2_K, "output.weight", &t, c), TT_Q6_K);
    assert_int_equal(quant_tensor_type(QUANT_Q5_K_M, "blk.0.attn_qkv.weight", &t, c), TT_Q6_K);
}

static void output_matrix_and_fallbacks_follow_rules(void **st) {
    (void)st;
    gguf_tensor t = mk_tensor(4096, 32000, 2);
    quant_ctx c = {0, 1, 1, 1};
    assert_int_equal(quant_tensor_type(QUANT_Q4_K_M, "output.weight", &t, c), TT_Q6_K);
    assert_int_equal(quant_tensor_type(QUANT_Q4_0, "output.weight", &t, c), TT_Q6_K);
    assert_int_equal(quant_tensor_type(QUANT_Q8_0, "output.weight", &t, c), TT_Q8_0);
    assert_int_equal(quant_tensor_type(QUANT_F16, "output.weight", &t, c), TT_F16);
    assert_int_equal(quant_tensor_type(QUANT_Q4_K_M, "token_embd.weight", &t, c), TT_Q4_K);
    c.has_output = 0; /* tied embeddings: token_embd is the output matrix */
    assert_int_equal(quant_tensor_type(QUANT_Q4_K_M, "token_embd.weight", &t, c), TT_Q6_K);
    /* Rows not a multiple of 256. */
    gguf_tensor s = mk_tensor(64, 64, 2);
    c.has_output = 1;
    assert_int_equal(quant_tensor_type(QUANT_Q4_K_M, "output.weight", &s, c), TT_Q8_0);
    assert_int_equal(quant_tensor_type(QUANT_Q4_K_M, "blk.0.attn_q.weight", &s, c), TT_Q5_0);
    assert_int_equal(quant_tensor_type(QUANT_Q5_K_M, "blk.0.attn_q.weight", &s, c), TT_Q5_1);
    assert_int_equal(quant_tensor_type(QUANT_Q6_K, "blk.0.attn_q.weight", &s, c), TT_Q8_0);
    /* Not a multiple of 32 either: F16. */
    gguf_tensor odd = mk_tensor(172, 64, 2);
    assert_int_equal(quant_tensor_type(QUANT_Q4_0, "blk.0.ffn_down.weight", &odd, c), TT_F16);
    /* Left alone: 1-D tensors, routers, non-weights. */
    gguf_tensor norm = mk_tensor(4096, 1, 1);
    assert_int_equal(quant_tensor_type(QUANT_Q4_K_M, "blk.0.attn_norm.weight", &norm, c), TT_F32);
    assert_int_equal(quant_tensor_type(QUANT_Q4_K_M, "blk.0.ffn_gate_inp.weight", &t, c), TT_F32);
    assert_int_equal(quant_tensor_type(QUANT_Q4_K_M, "rope_freqs", &t, c), TT_F32);
}

/* ------------------------------------------------------------------ files */

/* Asserts that every tensor and metadata value of REF is in GOT, equal. */
static void assert_same_model(const char *got_path, const char *ref_path) {
    cf_err err = {0};
    gguf_file *got = gguf_open(got_path, &err), *ref = gguf_open(ref_path, &err);
    assert_non_null(got);
    assert_non_null(ref);
    assert_int_equal(gguf_n_tensors(got), gguf_n_tensors(ref));
    assert_int_equal(gguf_n_kv(got), gguf_n_kv(ref));
    for (int64_t i = 0; i < gguf_n_tensors(ref); i++) {
        const gguf_tensor *r = gguf_tensor_at(ref, i);
        char *name = gguf_str_dup(r->name);
        const gguf_tensor *g = gguf_find_tensor(got, name);
        if (!g) fail_msg("%s: tensor %s missing", got_path, name);
        if (g->type != r->type)
            fail_msg("%s: %s is %s, reference %s", got_path, name, tt_get(g->type)->name,
                     tt_get(r->type)->name);
        assert_memory_equal(g->ne, r->ne, sizeof g->ne);
        assert_int_equal(g->nbytes, r->nbytes);
        if (memcmp(g->data, r->data, r->nbytes))
            fail_msg("%s: %s bytes differ from the reference", got_path, name);
        free(name);
    }
    uint32_t a, b;
    assert_true(gguf_get_u32(got, "general.file_type", &a));
    assert_true(gguf_get_u32(ref, "general.file_type", &b));
    assert_int_equal(a, b);
    assert_true(gguf_get_u32(got, "general.quantization_version", &a));
    assert_int_equal(a, 2);
    gguf_close(got);
    gguf_close(ref);
}

static void quantizes_like_reference_engine_byte_for_byte(void **st) {
    (void)st;
    char src[1024], dir_ref[1024];
    snprintf(src, sizeof src, "%s", td_path("models/tiny-llama-d64-f32.gguf"));
    snprintf(dir_ref, sizeof dir_ref, "%s", td_path("models/tiny-llama-d64-Q4_K_M.gguf"));
    *strrchr(dir_ref, '/') = 0;
    char *dir = tu_tmpdir();
    static const char *const presets[] = {"Q4_K_M", "Q4_0", "Q8_0"};
    for (size_t k = 0; k < 3; k++) {
        char out[512], ref[1200];
        snprintf(out, sizeof out, "%s/out-%s.gguf", dir, presets[k]);
        snprintf(ref, sizeof ref, "%s/tiny-llama-d64-%s.gguf", dir_ref, presets[k]);
        cf_err err = {0};
        quant_stats qs;
        if (quant_file(src, out, presets[k], 2, &qs, &err)) fail_msg("%s: %s", presets[k], err.msg);
        assert_int_equal(qs.n_tensors, 21);
        assert_int_equal(qs.count[TT_F32], 5);
        assert_same_model(out, ref);
    }
    /* stories260K: its rows of 64 and 172 exercise the fallbacks. The
     * reference files were made with these presets: Q6_K -> "Q8_0mix",
     * Q4_K_M -> "Q5_0mix", Q5_K_M -> "Q5_1mix", Q2_K -> "IQ4_NLmix". */
    static const char *const pairs[][2] = {
        {"Q6_K", "stories260K-Q8_0mix.gguf"},   {"Q4_K_M", "stories260K-Q5_0mix.gguf"},
        {"Q5_K_M", "stories260K-Q5_1mix.gguf"}, {"F16", "stories260K-F16.gguf"},
        {"BF16", "stories260K-BF16.gguf"},      {"Q2_K", "stories260K-IQ4_NLmix.gguf"}};
    char stories[1024];
    snprintf(stories, sizeof stories, "%s", td_path("models/stories260K.gguf"));
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
        char out[512], ref[1200];
        snprintf(out, sizeof out, "%s/stories-%s.gguf", dir, pairs[k][0]);
        snprintf(ref, sizeof ref, "%s/%s", dir_ref, pairs[k][1]);
        cf_err err = {0};
        if (quant_file(stories, out, pairs[k][0], 1, NULL, &err)) fail_msg("%s", err.msg);
        assert_same_model(out, ref);
    }
    tu_rmtree(dir);
    free(dir);
}

/* Relative RMS error allowed per output type for dequantized vs original. */
static double type_tolerance(int type) {
    switch (type) {
    case TT_F32: return 0;
    case TT_F16: return 1e-3;
    case TT_BF16: return 8e-3;
    case TT_Q8_0: return 0.01;
    case TT_Q6_K: return 0.03;
    case TT_Q5_0:
    case TT_Q5_1:
    case TT_Q5_K: return 0.06;
    default: return 0.15; /* 4-bit */
    }
}

static void quantizes_stories260K_to_every_preset(void **st) {
    (void)st;
    char src_path[1024];
    snprintf(src_path, sizeof src_path, "%s", td_path("models/stories260K.gguf"));
    cf_err err = {0};
    gguf_file *src = gguf_open(src_path, &err);
    assert_non_null(src);
    char *dir = tu_tmpdir();
    for (int p = 0; p < QUANT_PRESET_COUNT; p++) {
        char out[512];
        snprintf(out, sizeof out, "%s/%s.gguf", dir, quant_preset_name((quant_preset)p));
        quant_stats qs;
        if (quant_file(src_path, out, quant_preset_name((quant_preset)p), 1, &qs, &err))
            fail_msg("%s: %s", quant_preset_name((quant_preset)p), err.msg);
        assert_true(qs.bytes_out < qs.bytes_in);
        gguf_file *q = gguf_open(out, &err);
        if (!q) fail_msg("%s: %s", out, err.msg);
        assert_int_equal(gguf_n_tensors(q), gguf_n_tensors(src));
        for (int64_t i = 0; i < gguf_n_kv(src); i++) {
            char *key = gguf_str_dup(gguf_kv_key(src, i));
            assert_true(gguf_find_key(q, key) >= 0);
            free(key);
        }
        for (int64_t i = 0; i < gguf_n_tensors(src); i++) {
            const gguf_tensor *a = gguf_tensor_at(src, i);
            char *name = gguf_str_dup(a->name);
            const gguf_tensor *b = gguf_find_tensor(q, name);
            assert_non_null(b);
            if (a->n_dims == 1) {
                assert_int_equal(b->type, TT_F32);
                assert_memory_equal(a->data, b->data, a->nbytes);
            } else if (p == QUANT_BF16) {
                assert_int_equal(b->type, TT_BF16);
            } else if (p == QUANT_F16 || strstr(name, "ffn_down")) {
                assert_int_equal(b->type, TT_F16); /* F16 preset, or rows of 172 */
            } else if (!strcmp(name, "output.weight")) {
                assert_int_equal(b->type, TT_Q8_0);
            } else if (p == QUANT_Q4_0) {
                assert_int_equal(b->type, TT_Q4_0);
            } else if (p == QUANT_Q2_K) {
                assert_int_equal(b->type, TT_IQ4_NL); /* Q2_K/Q3_K fall back for rows of 64 */
            } else if (p == QUANT_Q3_K_M) {
                /* attn_v of the first two layers Q5_K (-> Q5_1), the rest Q4_K (-> Q5_0);
                 * other matrices Q3_K -> IQ4_NL. */
                const int v = strstr(name, "attn_v") != NULL;
                const int early = !strncmp(name, "blk.0.", 6) || !strncmp(name, "blk.1.", 6);
                const int q4 = strstr(name, "attn_output") != NULL;
                assert_int_equal(b->type, v    ? (early ? TT_Q5_1 : TT_Q5_0)
                                          : q4 ? TT_Q5_0
                                               : TT_IQ4_NL);
            } else if (p == QUANT_Q4_K_M || p == QUANT_Q5_K_M) {
                /* 5 layers: attn_v of layers 2 and 4 get more bits (Q6_K -> Q8_0). */
                const int more = strstr(name, "attn_v") &&
                                 (!strncmp(name, "blk.2.", 6) || !strncmp(name, "blk.4.", 6));
                assert_int_equal(b->type, more ? TT_Q8_0 : p == QUANT_Q4_K_M ? TT_Q5_0 : TT_Q5_1);
            } else {
                assert_int_equal(b->type, TT_Q8_0);
            }
            /* Dequantized values stay close to the originals. */
            const int64_t n = a->ne[0] * a->ne[1];
            float *x = malloc((size_t)n * sizeof(float)), *y = malloc((size_t)n * sizeof(float));
            tt_get(a->type)->to_float(a->data, x, n);
            tt_get(b->type)->to_float(b->data, y, n);
            double e = 0, m = 0;
            for (int64_t j = 0; j < n; j++) {
                e += ((double)x[j] - y[j]) * ((double)x[j] - y[j]);
                m += (double)x[j] * x[j];
            }
            const double rel = sqrt(e / (m ? m : 1));
            if (rel > type_tolerance(b->type))
                fail_msg("%s %s as %s: relative error %.4g", quant_preset_name((quant_preset)p),
                         name, tt_get(b->type)->name, rel);
            free(x);
            free(y);
            free(name);
        }
        uint32_t ft, qv;
        assert_true(gguf_get_u32(q, "general.file_type", &ft));
        static const uint32_t ftypes[QUANT_PRESET_COUNT] = {1, 32, 7, 2, 15, 17, 18, 10, 12};
        assert_int_equal(ft, ftypes[p]);
        assert_true(gguf_get_u32(q, "general.quantization_version", &qv));
        assert_int_equal(qv, 2);
        gguf_close(q);
    }
    gguf_close(src);
    tu_rmtree(dir);
    free(dir);
}

static void requantizes_already_quantized_input(void **st) {
    (void)st;
    char *dir = tu_tmpdir();
    char out[512];
    snprintf(out, sizeof out, "%s/requant.gguf", dir);
    cf_err err = {0};
    quant_stats qs;
    assert_int_equal(
        quant_file(td_path("models/stories260K-Q5_1mix.gguf"), out, "Q8_0", 0, &qs, &err), 0);
    gguf_file *q = gguf_open(out, &err);
    assert_non_null(q);
    assert_int_equal(gguf_find_tensor(q, "blk.0.attn_q.weight")->type, TT_Q8_0);
    assert_int_equal(gguf_find_tensor(q, "blk.0.ffn_down.weight")->type,
                     TT_F16); /* already F16: copied */
    assert_int_equal(qs.count[TT_F16], 5);
    gguf_close(q);
    tu_rmtree(dir);
    free(dir);
}

/* The reference "IQ4_NLmix" file came from a Q2_K run whose rows of 64
 * fell back to IQ4_NL: its IQ4_NL tensors must be our IQ4_NL quantization
 * of the F32 originals, byte for byte. */
static void iq4_nl_tensors_match_reference_model(void **st) {
    (void)st;
    cf_err err = {0};
    gguf_file *src = gguf_open(td_path("models/stories260K.gguf"), &err);
    gguf_file *ref = gguf_open(td_path("models/stories260K-IQ4_NLmix.gguf"), &err);
    assert_non_null(src);
    assert_non_null(ref);
    int checked = 0;
    for (int64_t i = 0; i < gguf_n_tensors(ref); i++) {
        const gguf_tensor *r = gguf_tensor_at(ref, i);
        if (r->type != TT_IQ4_NL) continue;
        char *name = gguf_str_dup(r->name);
        const gguf_tensor *s = gguf_find_tensor(src, name);
        assert_non_null(s);
        assert_int_equal(s->type, TT_F32);
        uint8_t *q = malloc(r->nbytes);
        const int64_t rows = s->ne[1] * s->ne[2] * s->ne[3];
        const size_t row_out = tt_row_size(TT_IQ4_NL, s->ne[0]);
        for (int64_t j = 0; j < rows; j++)
            tt_get(TT_IQ4_NL)->from_float((const float *)s->data + j * s->ne[0], q + j * row_out,
                                          s->ne[0]);
        if (memcmp(q, r->data, r->nbytes)) fail_msg("%s: IQ4_NL bytes differ", name);
        free(q);
        free(name);
        checked++;
    }
    assert_int_equal(checked, 31); /* token_embd + 6 matrices in each of 5 layers */
    gguf_close(src);
    gguf_close(ref);
}

static void output_does_not_depend_on_thread_count(void **st) {
    (void)st;
    char src[1024];
    snprintf(src, sizeof src, "%s", td_path("models/tiny-llama-d64-f32.gguf"));
    char *dir = tu_tmpdir();
    char a[512], b[512];
    snprintf(a, sizeof a, "%s/t1.gguf", dir);
    snprintf(b, sizeof b, "%s/t3.gguf", dir);
    cf_err err = {0};
    assert_int_equal(quant_file(src, a, "Q4_K_M", 1, NULL, &err), 0);
    assert_int_equal(quant_file(src, b, "Q4_K_M", 3, NULL, &err), 0);
    size_t la, lb;
    char *da = tu_read_file(a, &la), *db = tu_read_file(b, &lb);
    assert_non_null(da);
    assert_non_null(db);
    assert_int_equal(la, lb);
    assert_memory_equal(da, db, la);
    free(da);
    free(db);
    tu_rmtree(dir);
    free(dir);
}

static void rejects_bad_input(void **st) {
    (void)st;
    char *dir = tu_tmpdir();
    char path[512], out[512];
    snprintf(out, sizeof out, "%s/out.gguf", dir);
    cf_err err = {0};
    assert_int_equal(quant_file("x.gguf", out, "Q3_K_S", 1, NULL, &err), CF_EINVAL);
    assert_non_null(strstr(err.msg, "unknown quantization type 'Q3_K_S'"));
    assert_int_equal(quant_file("/nonexistent/x.gguf", out, "Q8_0", 1, NULL, &err), CF_ENOTFOUND);
    /* A corrupt file. */
    snprintf(path, sizeof path, "%s/bad.gguf", dir);
    assert_int_equal(tu_write_file(path, "GGUF\x03\0\0\0garbage-garbage-garbage", 31), 0);
    assert_int_equal(quant_file(path, out, "Q8_0", 1, NULL, &err), CF_EFORMAT);
    assert_non_null(strstr(err.msg, "bad.gguf: metadata count"));
    /* A tensor type confab cannot dequantize (IQ2_XXS, layout only). */
    gguf_writer *w = gguf_w_new();
    gguf_w_set_str(w, "general.architecture", "llama");
    uint8_t blk[66] = {0};
    int64_t ne[2] = {256, 1};
    assert_int_equal(gguf_w_add_tensor(w, "blk.0.attn_q.weight", 16, 2, ne, blk, sizeof blk, &err),
                     0);
    snprintf(path, sizeof path, "%s/iq2.gguf", dir);
    assert_int_equal(gguf_w_write(w, path, &err), 0);
    gguf_w_free(w);
    assert_int_equal(quant_file(path, out, "Q8_0", 1, NULL, &err), CF_EFORMAT);
    assert_non_null(strstr(err.msg, "cannot convert IQ2_XXS to Q8_0"));
    /* Nothing is left behind: no output, no temp file. */
    char *ls = NULL;
    snprintf(path, sizeof path, "ls -A '%s'", dir);
    assert_int_equal(tu_run(path, &ls), 0);
    assert_null(strstr(ls, "out.gguf"));
    free(ls);
    tu_rmtree(dir);
    free(dir);
}

/* ------------------------------------------------------------------ CLI */

static void cli_quantize_writes_file_and_reports_usage_errors(void **st) {
    (void)st;
    char src[1024];
    snprintf(src, sizeof src, "%s", td_path("models/stories260K.gguf"));
    char *dir = tu_tmpdir();
    char cmd[3000];
    char *out = NULL;
    snprintf(cmd, sizeof cmd, "%s quantize '%s' '%s/q.gguf' q8_0 2>&1", tu_confab_bin(), src, dir);
    assert_int_equal(tu_run(cmd, &out), 0);
    assert_non_null(strstr(out, "Q8_0"));
    assert_non_null(strstr(out, "48 tensors (37 converted)"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s/q.gguf", dir);
    cf_err err = {0};
    gguf_file *f = gguf_open(cmd, &err);
    assert_non_null(f);
    gguf_close(f);
    snprintf(cmd, sizeof cmd, "%s quantize -t 2 '%s' '%s/q2.gguf' Q4_0 2>&1", tu_confab_bin(), src,
             dir);
    assert_int_equal(tu_run(cmd, &out), 0);
    assert_non_null(strstr(out, "Q4_0"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s quantize -t x '%s' '%s/q2.gguf' Q4_0 2>&1", tu_confab_bin(), src,
             dir);
    assert_int_equal(tu_run(cmd, &out), 2);
    assert_non_null(strstr(out, "--threads needs a positive number"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s quantize '%s' 2>&1", tu_confab_bin(), src);
    assert_int_equal(tu_run(cmd, &out), 2);
    assert_non_null(strstr(out, "usage: confab quantize"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s quantize '%s' '%s/q.gguf' iq2_xxs 2>&1", tu_confab_bin(), src,
             dir);
    assert_int_equal(tu_run(cmd, &out), 2);
    assert_non_null(strstr(out, "unknown type 'iq2_xxs'"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s quantize /nonexistent.gguf '%s/q.gguf' q8_0 2>&1",
             tu_confab_bin(), dir);
    assert_int_equal(tu_run(cmd, &out), 1);
    assert_non_null(strstr(out, "/nonexistent.gguf"));
    free(out);
    tu_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(presets_parse_case_insensitively),
        cmocka_unit_test(km_mix_gives_more_bits_to_chosen_layers),
        cmocka_unit_test(output_matrix_and_fallbacks_follow_rules),
        cmocka_unit_test(quantizes_like_reference_engine_byte_for_byte),
        cmocka_unit_test(quantizes_stories260K_to_every_preset),
        cmocka_unit_test(requantizes_already_quantized_input),
        cmocka_unit_test(iq4_nl_tensors_match_reference_model),
        cmocka_unit_test(output_does_not_depend_on_thread_count),
        cmocka_unit_test(rejects_bad_input),
        cmocka_unit_test(cli_quantize_writes_file_and_reports_usage_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
