/*
 * test_kernels — every SIMD kernel (AVX2, AVX-512, AVX-512 VNNI) against the
 * scalar reference in quants.c, the tile variants against their vec_dot,
 * tt_matmul's tiled path against the per-pair loop, and the activation
 * quantizers byte for byte against the scalar ones.
 *
 * Dot products are compared with a tolerance relative to sum |w_i * x_i|
 * (computed from the dequantized rows): the integer parts are exact, so the
 * only difference is float summation order, which stays far below the
 * contribution of any single wrong element at the lengths tested. Families
 * the CPU lacks are skipped (and say so).
 */
#include "base/cpu.h"
#include "engine/blocks.h"
#include "engine/quants.h"
#include "engine/quants_simd.h"
#include "engine/types.h"
#include "engine/vexp.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- deterministic random numbers ---- */

static uint64_t rng_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}
/* Uniform in [-1, 1). */
static float rng_f(uint64_t *s) {
    return (float)((double)(rng_next(s) >> 11) / 0x1p52 * 2.0 - 1.0);
}

/* Activation-like floats: mostly small, a few outliers. */
static void rand_floats(uint64_t *s, float *x, int n) {
    for (int i = 0; i < n; i++) {
        x[i] = rng_f(s);
        if (rng_next(s) % 61 == 0) x[i] *= 9.0f;
    }
}

/* ---- the kernels under test ---- */

typedef void (*fill_fn)(uint64_t *s, void *w, int n);

typedef struct {
    const char *name;
    int wtype, xtype;
    fill_fn fill; /* random weight row of n values */
    tt_vec_dot_fn ref, avx2, avx512, vnni;
} kcase;

static void set_d(void *blk, size_t off, float d) {
    const cf_fp16 h = cf_fp32_to_fp16(d);
    memcpy((char *)blk + off, &h, sizeof h);
}

/* Random bytes for every block, then sane half-precision scales (random
 * bytes there could be NaN or infinite). */
static void fill_blocks(uint64_t *s, void *w, int n, int blck, size_t bytes, const size_t *doff,
                        int nd) {
    uint8_t *p = w;
    const int nb = n / blck;
    for (size_t i = 0; i < (size_t)nb * bytes; i++)
        p[i] = (uint8_t)rng_next(s);
    for (int b = 0; b < nb; b++)
        for (int k = 0; k < nd; k++)
            set_d(p + (size_t)b * bytes, doff[k], 0.001f + 0.05f * fabsf(rng_f(s)));
}

static void fill_q8_0(uint64_t *s, void *w, int n) {
    const size_t off[] = {0};
    /* all weight bytes, -128 included (only activations must avoid it) */
    fill_blocks(s, w, n, QK8_0, sizeof(block_q8_0), off, 1);
}
static void fill_q4_0(uint64_t *s, void *w, int n) {
    const size_t off[] = {0};
    fill_blocks(s, w, n, QK4_0, sizeof(block_q4_0), off, 1);
}
static void fill_q5_0(uint64_t *s, void *w, int n) {
    const size_t off[] = {0};
    fill_blocks(s, w, n, QK5_0, sizeof(block_q5_0), off, 1);
}
static void fill_iq4_nl(uint64_t *s, void *w, int n) {
    const size_t off[] = {0};
    fill_blocks(s, w, n, QK4_NL, sizeof(block_iq4_nl), off, 1);
}
static void fill_q4_1(uint64_t *s, void *w, int n) {
    const size_t off[] = {0, 2};
    fill_blocks(s, w, n, QK4_1, sizeof(block_q4_1), off, 2);
}
static void fill_q5_1(uint64_t *s, void *w, int n) {
    const size_t off[] = {0, 2};
    fill_blocks(s, w, n, QK5_1, sizeof(block_q5_1), off, 2);
}
static void fill_q2_K(uint64_t *s, void *w, int n) {
    const size_t off[] = {offsetof(block_q2_K, d), offsetof(block_q2_K, dmin)};
    fill_blocks(s, w, n, QK_K, sizeof(block_q2_K), off, 2);
}
static void fill_q3_K(uint64_t *s, void *w, int n) {
    const size_t off[] = {offsetof(block_q3_K, d)};
    fill_blocks(s, w, n, QK_K, sizeof(block_q3_K), off, 1);
}
static void fill_q4_K(uint64_t *s, void *w, int n) {
    const size_t off[] = {0, 2};
    fill_blocks(s, w, n, QK_K, sizeof(block_q4_K), off, 2);
}
static void fill_q5_K(uint64_t *s, void *w, int n) {
    const size_t off[] = {0, 2};
    fill_blocks(s, w, n, QK_K, sizeof(block_q5_K), off, 2);
}
static void fill_q6_K(uint64_t *s, void *w, int n) {
    const size_t off[] = {offsetof(block_q6_K, d)};
    fill_blocks(s, w, n, QK_K, sizeof(block_q6_K), off, 1);
}
static void fill_iq4_xs(uint64_t *s, void *w, int n) {
    const size_t off[] = {0};
    fill_blocks(s, w, n, QK_K, sizeof(block_iq4_xs), off, 1);
}
static void fill_f16(uint64_t *s, void *w, int n) {
    cf_fp16 *h = w;
    for (int i = 0; i < n; i++)
        h[i] = cf_fp32_to_fp16(rng_f(s));
}
static void fill_bf16(uint64_t *s, void *w, int n) {
    cf_bf16 *h = w;
    for (int i = 0; i < n; i++)
        h[i] = cf_fp32_to_bf16(rng_f(s));
}
static void fill_f32(uint64_t *s, void *w, int n) { rand_floats(s, w, n); }

static const kcase cases[] = {
    {"q8_0", TT_Q8_0, TT_Q8_0, fill_q8_0, tt_vec_dot_q8_0_q8_0_ref, tt_vec_dot_q8_0_q8_0_avx2,
     tt_vec_dot_q8_0_q8_0_avx512, tt_vec_dot_q8_0_q8_0_avx512vnni},
    {"q4_0", TT_Q4_0, TT_Q8_0, fill_q4_0, tt_vec_dot_q4_0_q8_0_ref, tt_vec_dot_q4_0_q8_0_avx2,
     tt_vec_dot_q4_0_q8_0_avx512, tt_vec_dot_q4_0_q8_0_avx512vnni},
    {"q5_0", TT_Q5_0, TT_Q8_0, fill_q5_0, tt_vec_dot_q5_0_q8_0_ref, tt_vec_dot_q5_0_q8_0_avx2,
     tt_vec_dot_q5_0_q8_0_avx512, tt_vec_dot_q5_0_q8_0_avx512vnni},
    {"iq4_nl", TT_IQ4_NL, TT_Q8_0, fill_iq4_nl, tt_vec_dot_iq4_nl_q8_0_ref,
     tt_vec_dot_iq4_nl_q8_0_avx2, tt_vec_dot_iq4_nl_q8_0_avx512, tt_vec_dot_iq4_nl_q8_0_avx512vnni},
    {"q4_1", TT_Q4_1, TT_Q8_1, fill_q4_1, tt_vec_dot_q4_1_q8_1_ref, tt_vec_dot_q4_1_q8_1_avx2, NULL,
     NULL},
    {"q5_1", TT_Q5_1, TT_Q8_1, fill_q5_1, tt_vec_dot_q5_1_q8_1_ref, tt_vec_dot_q5_1_q8_1_avx2, NULL,
     NULL},
    {"q2_K", TT_Q2_K, TT_Q8_K, fill_q2_K, tt_vec_dot_q2_K_q8_K_ref, tt_vec_dot_q2_K_q8_K_avx2, NULL,
     NULL},
    {"q3_K", TT_Q3_K, TT_Q8_K, fill_q3_K, tt_vec_dot_q3_K_q8_K_ref, tt_vec_dot_q3_K_q8_K_avx2, NULL,
     NULL},
    {"q4_K", TT_Q4_K, TT_Q8_K, fill_q4_K, tt_vec_dot_q4_K_q8_K_ref, tt_vec_dot_q4_K_q8_K_avx2,
     tt_vec_dot_q4_K_q8_K_avx512, NULL},
    {"q5_K", TT_Q5_K, TT_Q8_K, fill_q5_K, tt_vec_dot_q5_K_q8_K_ref, tt_vec_dot_q5_K_q8_K_avx2,
     tt_vec_dot_q5_K_q8_K_avx512, NULL},
    {"q6_K", TT_Q6_K, TT_Q8_K, fill_q6_K, tt_vec_dot_q6_K_q8_K_ref, tt_vec_dot_q6_K_q8_K_avx2,
     tt_vec_dot_q6_K_q8_K_avx512, NULL},
    {"iq4_xs", TT_IQ4_XS, TT_Q8_K, fill_iq4_xs, tt_vec_dot_iq4_xs_q8_K_ref,
     tt_vec_dot_iq4_xs_q8_K_avx2, NULL, NULL},
    {"f16", TT_F16, TT_F16, fill_f16, tt_vec_dot_f16_ref, tt_vec_dot_f16_avx2,
     tt_vec_dot_f16_avx512, NULL},
    {"bf16", TT_BF16, TT_BF16, fill_bf16, tt_vec_dot_bf16_ref, tt_vec_dot_bf16_avx2,
     tt_vec_dot_bf16_avx512, NULL},
    {"f32", TT_F32, TT_F32, fill_f32, tt_vec_dot_f32_ref, tt_vec_dot_f32_avx2,
     tt_vec_dot_f32_avx512, NULL},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

/* Lengths to test for a block size: one block, odd and even block counts,
 * and a long row. For unblocked types also lengths that leave tails. */
static int lengths(int blck, int *out) {
    if (blck == 1) {
        const int l[] = {1, 7, 8, 15, 16, 17, 31, 32, 33, 63, 100, 257, 4101};
        memcpy(out, l, sizeof l);
        return (int)(sizeof l / sizeof l[0]);
    }
    const int m[] = {1, 2, 3, 5, 8, 17};
    for (int i = 0; i < 6; i++)
        out[i] = m[i] * blck;
    out[6] = blck == 32 ? 4096 + 32 : 4096;
    return 7;
}

/* A weight row and an activation row of N values for case C, plus the
 * scale sum |w_i x_i| of their dequantized values. */
typedef struct {
    void *w, *x;
    double mag;
} pair_rows;

static pair_rows make_pair(const kcase *c, uint64_t *s, int n) {
    const tt_traits *wt = tt_get(c->wtype), *xt = tt_get(c->xtype);
    pair_rows p;
    p.w = calloc(1, tt_row_size(c->wtype, n) + 64);
    p.x = calloc(1, tt_row_size(c->xtype, n) + 64);
    float *xf = malloc(sizeof(float) * (size_t)n), *wf = malloc(sizeof(float) * (size_t)n);
    c->fill(s, p.w, n);
    rand_floats(s, xf, n);
    xt->from_float(xf, p.x, n);
    wt->to_float(p.w, wf, n);
    xt->to_float(p.x, xf, n);
    p.mag = 0;
    for (int i = 0; i < n; i++)
        p.mag += fabs((double)wf[i] * xf[i]);
    free(wf);
    free(xf);
    return p;
}

static void check_close(const char *what, int n, float got, float want, double mag) {
    const double tol = 2e-6 * mag + 1e-30;
    if (!(fabs((double)got - want) <= tol)) {
        print_message("%s n=%d: got %.9g want %.9g (|diff| %.3g > tol %.3g)\n", what, n, got, want,
                      fabs((double)got - want), tol);
        fail();
    }
}

static void check_family(int fam) {
    static const char *names[] = {"avx2", "avx512", "avx512vnni"};
    uint64_t s = 0x9E3779B97F4A7C15ull + (uint64_t)fam;
    int tested = 0;
    for (int k = 0; k < NCASES; k++) {
        const kcase *c = &cases[k];
        const tt_vec_dot_fn f = fam == 0 ? c->avx2 : fam == 1 ? c->avx512 : c->vnni;
        if (!f) continue;
        int lens[16];
        const int nl = lengths(tt_get(c->wtype)->blck, lens);
        for (int li = 0; li < nl; li++) {
            for (int rep = 0; rep < 3; rep++) {
                pair_rows p = make_pair(c, &s, lens[li]);
                float want = NAN, got = NAN;
                c->ref(lens[li], &want, p.w, p.x);
                f(lens[li], &got, p.w, p.x);
                char what[64];
                snprintf(what, sizeof what, "%s_%s", c->name, names[fam]);
                check_close(what, lens[li], got, want, p.mag);
                free(p.w);
                free(p.x);
            }
        }
        tested++;
    }
    assert_true(tested >= 4);
}

static void avx2_vec_dot_kernels_match_scalar_reference(void **state) {
    (void)state;
    if (!cpu_has_avx2()) {
        print_message("# SKIP: no AVX2 on this CPU\n");
        skip();
    }
    check_family(0);
}

static void avx512_vec_dot_kernels_match_scalar_reference(void **state) {
    (void)state;
    if (!cpu_has_avx512()) {
        print_message("# SKIP: no AVX-512 on this CPU\n");
        skip();
    }
    check_family(1);
}

static void avx512vnni_vec_dot_kernels_match_scalar_reference(void **state) {
    (void)state;
    if (!cpu_has_avx512() || !cpu_get()->avx512vnni) {
        print_message("# SKIP: no AVX512-VNNI on this CPU\n");
        skip();
    }
    check_family(2);
}

/* The sign trick breaks on -128 activations; Q8_K activations reach
 * -127 at most, the extremes of every weight type must still be exact. */
static void kernels_are_exact_at_extreme_quant_values(void **state) {
    (void)state;
    if (!cpu_has_avx2()) skip();
    const int n = 512;
    /* Q4_K weights all 15 with scales and mins 63, activations +-127. */
    block_q4_K w[2];
    block_q8_K x[2];
    memset(w, 0xFF, sizeof w);
    for (int b = 0; b < 2; b++) {
        w[b].d = cf_fp32_to_fp16(1.0f);
        w[b].dmin = cf_fp32_to_fp16(0.5f);
        x[b].d = 1.0f;
        for (int j = 0; j < QK_K; j++)
            x[b].qs[j] = (int8_t)(j % 3 == 0 ? -127 : 127);
        for (int j = 0; j < QK_K / 16; j++) {
            int sum = 0;
            for (int k = 0; k < 16; k++)
                sum += x[b].qs[16 * j + k];
            x[b].bsums[j] = (int16_t)sum;
        }
    }
    float want, got;
    tt_vec_dot_q4_K_q8_K_ref(n, &want, w, x);
    tt_vec_dot_q4_K_q8_K_avx2(n, &got, w, x);
    assert_float_equal(got, want, fabsf(want) * 1e-6f);
    if (cpu_has_avx512()) {
        tt_vec_dot_q4_K_q8_K_avx512(n, &got, w, x);
        assert_float_equal(got, want, fabsf(want) * 1e-6f);
    }
    /* Q6_K: all weights 63 (ql/qh all ones) and scales -128 and 127. */
    block_q6_K w6[2];
    memset(w6, 0xFF, sizeof w6);
    for (int b = 0; b < 2; b++) {
        for (int j = 0; j < QK_K / 16; j++)
            w6[b].scales[j] = (int8_t)(j % 2 ? 127 : -128);
        w6[b].d = cf_fp32_to_fp16(0.25f);
    }
    tt_vec_dot_q6_K_q8_K_ref(n, &want, w6, x);
    tt_vec_dot_q6_K_q8_K_avx2(n, &got, w6, x);
    assert_float_equal(got, want, fabsf(want) * 1e-6f);
    if (cpu_has_avx512()) {
        tt_vec_dot_q6_K_q8_K_avx512(n, &got, w6, x);
        assert_float_equal(got, want, fabsf(want) * 1e-6f);
    }
}

/* ---- tiles ---- */

/* Runs every tile shape of K over an R x C problem and checks each output
 * equals K's own 1 x 1 kernel on the same pair, bit for bit. */
static void check_tiles(const tt_tile_kernel *k, int cnt, const char *fam) {
    uint64_t s = 12345;
    for (int e = 0; e < cnt; e++) {
        const kcase *c = NULL;
        for (int i = 0; i < NCASES; i++)
            if (cases[i].wtype == k[e].type) c = &cases[i];
        assert_non_null(c);
        if (!strcmp(k[e].family, "avx512vnni") && !cpu_get()->avx512vnni) continue;
        /* the tile set's own 1 x 1 kernel agrees with the scalar reference */
        {
            uint64_t s2 = 99;
            pair_rows p = make_pair(c, &s2, tt_get(c->wtype)->blck == 1 ? 1000 : 1024);
            float want, got;
            c->ref(tt_get(c->wtype)->blck == 1 ? 1000 : 1024, &want, p.w, p.x);
            k[e].one(tt_get(c->wtype)->blck == 1 ? 1000 : 1024, &got, p.w, p.x);
            check_close(k[e].family, 1024, got, want, p.mag);
            free(p.w);
            free(p.x);
        }
        const int blck = tt_get(c->wtype)->blck;
        const int n = blck == 1 ? 80 : blck * 3;
        const size_t ws = tt_row_size(c->wtype, n), xs = tt_row_size(c->xtype, n);
        const int R = k[e].nr, C = k[e].nc;
        char *w = calloc((size_t)R, ws), *x = calloc((size_t)C, xs);
        float *xf = malloc(sizeof(float) * (size_t)n);
        for (int r = 0; r < R; r++)
            c->fill(&s, w + (size_t)r * ws, n);
        for (int j = 0; j < C; j++) {
            rand_floats(&s, xf, n);
            tt_get(c->xtype)->from_float(xf, x + (size_t)j * xs, n);
        }
        const size_t ys = (size_t)R + 3;
        float *y = malloc(sizeof(float) * ys * (size_t)C);
        for (int shape = 0; shape < 3; shape++) {
            for (size_t i = 0; i < ys * (size_t)C; i++)
                y[i] = NAN;
            tt_tile_fn f = shape == 0 ? k[e].full : shape == 1 ? k[e].row1 : k[e].col1;
            const int nr = shape == 1 ? 1 : R, nc = shape == 2 ? 1 : C;
            f(n, w, ws, x, xs, y, ys);
            for (int r = 0; r < nr; r++)
                for (int j = 0; j < nc; j++) {
                    float want;
                    k[e].one(n, &want, w + (size_t)r * ws, x + (size_t)j * xs);
                    if (memcmp(&want, &y[(size_t)j * ys + r], sizeof want)) {
                        print_message("%s %s tile shape %d (%d,%d): %.9g vs 1x1 %.9g\n", fam,
                                      c->name, shape, r, j, y[(size_t)j * ys + r], want);
                        fail();
                    }
                }
            /* nothing outside the tile was written */
            for (int j = 0; j < C; j++)
                for (int r = (j < nc ? nr : 0); r < (int)ys; r++)
                    assert_true(isnan(y[(size_t)j * ys + r]));
        }
        free(w);
        free(x);
        free(xf);
        free(y);
    }
}

static void avx2_tiles_equal_their_1x1_kernel_bit_for_bit(void **state) {
    (void)state;
    if (!cpu_has_avx2()) skip();
    int cnt;
    const tt_tile_kernel *k = tt_tiles_avx2(&cnt);
    assert_true(cnt >= 5);
    check_tiles(k, cnt, "avx2");
}

static void avx512_tiles_equal_their_1x1_kernel_bit_for_bit(void **state) {
    (void)state;
    if (!cpu_has_avx512()) skip();
    int cnt;
    const tt_tile_kernel *k = tt_tiles_avx512(&cnt);
    assert_true(cnt >= 5);
    check_tiles(k, cnt, "avx512");
}

/* tt_matmul with NX > 1 over several row splits (as threads make them)
 * gives bit-identical outputs, each equal to the chosen tile set's 1 x 1
 * kernel (or the table's vec_dot for types without tiles) and close to the
 * scalar reference; NX = 1 gives the same bits. */
static void matmul_outputs_do_not_depend_on_row_split(void **state) {
    (void)state;
    const int types[] = {TT_Q4_K,   TT_Q6_K,   TT_Q8_0, TT_F16,  TT_Q4_0, TT_Q5_K, TT_Q5_0,
                         TT_IQ4_NL, TT_IQ4_XS, TT_Q4_1, TT_Q5_1, TT_Q2_K, TT_Q3_K, TT_F32};
    uint64_t s = 777;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const kcase *c = NULL;
        for (int i = 0; i < NCASES; i++)
            if (cases[i].wtype == types[ti]) c = &cases[i];
        const tt_traits *t = tt_get(c->wtype);
        const tt_tile_kernel *k = tt_tile_lookup(c->wtype);
        const tt_vec_dot_fn one = k ? k->one : t->mat_dot ? t->mat_dot : t->vec_dot;
        const int n = t->blck == 1 ? 96 : t->blck * 2, R = 13, NX = 11;
        const size_t ws = tt_row_size(c->wtype, n), xs = tt_row_size(c->xtype, n);
        char *w = calloc((size_t)R, ws), *x = calloc((size_t)NX, xs);
        float *xf = malloc(sizeof(float) * (size_t)n);
        for (int r = 0; r < R; r++)
            c->fill(&s, w + (size_t)r * ws, n);
        for (int j = 0; j < NX; j++) {
            rand_floats(&s, xf, n);
            tt_quantize_act(c->wtype, xf, x + (size_t)j * xs, n);
        }
        const size_t ys = R + 2;
        float *y = calloc(ys * NX, sizeof(float)), *y2 = calloc(ys, sizeof(float));
        const int cuts[3][4] = {{0, 13, -1, -1}, {0, 5, 13, -1}, {0, 1, 7, 13}};
        for (int sp = 0; sp < 3; sp++) {
            for (size_t i = 0; i < ys * NX; i++)
                y[i] = NAN;
            for (int q = 0; q + 1 < 4 && cuts[sp][q + 1] >= 0; q++)
                tt_matmul(c->wtype, n, w, ws, cuts[sp][q], cuts[sp][q + 1], x, xs, NX, y, ys);
            for (int r = 0; r < R; r++)
                for (int j = 0; j < NX; j++) {
                    float want, ref;
                    one(n, &want, w + (size_t)r * ws, x + (size_t)j * xs);
                    c->ref(n, &ref, w + (size_t)r * ws, x + (size_t)j * xs);
                    const float got = y[(size_t)j * ys + r];
                    if (memcmp(&got, &want, sizeof got)) {
                        print_message("%s split %d (%d,%d): %.9g vs 1x1 %.9g\n", c->name, sp, r, j,
                                      got, want);
                        fail();
                    }
                    assert_float_equal(got, ref, 1e-4f * (fabsf(ref) + 1.0f));
                }
        }
        /* nx = 1 (token generation) gives the same bits as a row of a batch */
        for (int j = 0; j < NX; j++) {
            tt_matmul(c->wtype, n, w, ws, 0, R, x + (size_t)j * xs, xs, 1, y2, ys);
            for (int r = 0; r < R; r++) {
                float want;
                one(n, &want, w + (size_t)r * ws, x + (size_t)j * xs);
                assert_memory_equal(&y2[r], &want, sizeof want);
            }
        }
        free(w);
        free(x);
        free(xf);
        free(y);
        free(y2);
    }
}

/* ---- activation quantizers ---- */

typedef void (*q_fn)(const float *, void *, int64_t);

static void check_quantizer(const char *name, q_fn ref, q_fn fast, size_t blk_bytes, int blck,
                            const float *x, int n) {
    const size_t bytes = (size_t)(n / blck) * blk_bytes;
    unsigned char *a = calloc(1, bytes + 16), *b = calloc(1, bytes + 16);
    ref(x, a, n);
    fast(x, b, n);
    if (memcmp(a, b, bytes)) {
        for (size_t i = 0; i < bytes; i++)
            if (a[i] != b[i]) {
                print_message("%s n=%d: byte %zu differs (%02x vs ref %02x)\n", name, n, i, b[i],
                              a[i]);
                break;
            }
        fail();
    }
    free(a);
    free(b);
}

static void fill_quant_inputs(uint64_t *s, float *x, int n, int variant) {
    rand_floats(s, x, n);
    if (variant == 1) /* exact ties: block max 127 gives scale 1 */
        for (int i = 0; i < n; i++)
            x[i] = (i % 32 == 0) ? 127.0f : (float)((int)(rng_next(s) % 200) - 100) + 0.5f;
    if (variant == 2) /* Q8_K ties: max -127 gives iscale 1 */
        for (int i = 0; i < n; i++)
            x[i] = (i % 256 == 5) ? -127.0f : (float)((int)(rng_next(s) % 200) - 100) + 0.5f;
    if (variant == 3) { /* zero blocks and equal magnitudes of both signs */
        memset(x, 0, sizeof(float) * (size_t)(n / 2));
        for (int i = n / 2; i < n; i++)
            x[i] = (i % 7 == 0) ? ((i & 8) ? 3.0f : -3.0f) : 0.25f;
    }
    if (variant == 4) /* wide range for half precision: overflow, subnormals */
        for (int i = 0; i < n; i++)
            x[i] = rng_f(s) * ldexpf(1.0f, (int)(rng_next(s) % 60) - 36);
}

static void activation_quantizers_match_scalar_bytes(void **state) {
    (void)state;
    if (!cpu_has_avx2()) skip();
    const int avx512 = cpu_has_avx512();
    uint64_t s = 4242;
    const int lens[] = {256, 512, 4096, 2304};
    float *x = malloc(sizeof(float) * 4096);
    for (int li = 0; li < 4; li++) {
        const int n = lens[li];
        for (int v = 0; v < 5; v++) {
            fill_quant_inputs(&s, x, n, v);
            check_quantizer("q8_0_avx2", tt_from_float_q8_0, tt_from_float_q8_0_avx2,
                            sizeof(block_q8_0), QK8_0, x, n);
            check_quantizer("q8_K_avx2", tt_from_float_q8_K, tt_from_float_q8_K_avx2,
                            sizeof(block_q8_K), QK_K, x, n);
            check_quantizer("bf16_avx2", tt_from_float_bf16, tt_from_float_bf16_avx2, 2, 1, x,
                            n - 3);
            check_quantizer("f16_avx2", tt_from_float_f16, tt_from_float_f16_avx2, 2, 1, x, n - 5);
            if (avx512) {
                check_quantizer("q8_0_avx512", tt_from_float_q8_0, tt_from_float_q8_0_avx512,
                                sizeof(block_q8_0), QK8_0, x, n);
                check_quantizer("q8_K_avx512", tt_from_float_q8_K, tt_from_float_q8_K_avx512,
                                sizeof(block_q8_K), QK_K, x, n);
                check_quantizer("f16_avx512", tt_from_float_f16, tt_from_float_f16_avx512, 2, 1, x,
                                n - 7);
            }
        }
    }
    free(x);
}

/* Half precision: the documented difference is NaN payloads only; infinities,
 * overflow to infinity and NaN-ness itself agree. */
static void f16_quantizer_keeps_specials(void **state) {
    (void)state;
    if (!cpu_has_avx2()) skip();
    float x[16] = {INFINITY, -INFINITY, 65520.0f, -70000.0f, 1e-8f, -6e-8f, 65504.0f, 0.0f,
                   -0.0f,    NAN,       1.0f,     2.0f,      3.0f,  4.0f,   5.0f,     6.0f};
    cf_fp16 a[16], b[16];
    tt_from_float_f16(x, a, 16);
    tt_from_float_f16_avx2(x, b, 16);
    for (int i = 0; i < 16; i++) {
        if (isnan(x[i])) {
            assert_true((b[i] & 0x7C00) == 0x7C00 && (b[i] & 0x03FF));
            continue;
        }
        assert_int_equal(a[i], b[i]);
    }
    float bf[16];
    cf_bf16 c[16], d[16];
    for (int i = 0; i < 16; i++)
        bf[i] = x[i];
    tt_from_float_bf16(bf, c, 16);
    tt_from_float_bf16_avx2(bf, d, 16);
    assert_memory_equal(c, d, sizeof c);
}

/* The table holds the CPU's families (CONFAB_CPU caps them); tiles exist
 * exactly when a SIMD family is available. */
static void table_installs_the_cpu_family(void **state) {
    (void)state;
    const char *fam = tt_kernel_family();
    const tt_tile_kernel *k = tt_tile_lookup(TT_Q8_0);
    if (cpu_has_avx512()) {
        assert_string_equal(fam, "avx512");
        assert_ptr_equal(tt_get(TT_Q6_K)->vec_dot, tt_vec_dot_q6_K_q8_K_avx512);
        assert_ptr_equal(tt_get(TT_IQ4_XS)->vec_dot, tt_vec_dot_iq4_xs_q8_K_avx2);
        assert_ptr_equal(tt_get(TT_Q4_K)->vec_dot, tt_vec_dot_q4_K_q8_K_avx2);
        assert_ptr_equal(tt_get(TT_Q8_K)->from_float, tt_from_float_q8_K_avx512);
        /* Q4_K: tiles and vec_dot of one family, so batches match rows */
        assert_ptr_equal(tt_tile_lookup(TT_Q4_K)->one, tt_vec_dot_q4_K_q8_K_avx2);
        assert_non_null(k);
        assert_string_equal(k->family, cpu_get()->avx512vnni ? "avx512vnni" : "avx512");
    } else if (cpu_has_avx2()) {
        assert_string_equal(fam, "avx2");
        assert_ptr_equal(tt_get(TT_Q4_K)->vec_dot, tt_vec_dot_q4_K_q8_K_avx2);
        assert_non_null(k);
        assert_string_equal(k->family, "avx2");
    } else {
        assert_string_equal(fam, "scalar");
        assert_null(k);
    }
    assert_null(tt_tile_lookup(TT_F32));
    assert_null(tt_tile_lookup(TT_BF16));
}

/* The whole suite again in child processes with CONFAB_CPU=avx2 and
 * =scalar: on an AVX-512 machine this runs tt_matmul with AVX2-only
 * tables and tiles, and with the scalar table (per-pair loop, no tiles). */
static void capped_cpu_families_pass_the_same_tests(void **state) {
    (void)state;
    char self[4096];
    const ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    assert_true(len > 0);
    self[len] = 0;
    const char *caps[] = {"avx2", "scalar"};
    for (int i = 0; i < 2; i++) {
        char cmd[4300], *out = NULL;
        snprintf(cmd, sizeof cmd, "CONFAB_CPU=%s KT_CHILD=1 CMOCKA_MESSAGE_OUTPUT=STDOUT '%s' 2>&1",
                 caps[i], self);
        const int rc = tu_run(cmd, &out);
        if (rc != 0) print_message("CONFAB_CPU=%s run failed (%d):\n%s\n", caps[i], rc, out);
        assert_int_equal(rc, 0);
        assert_non_null(strstr(out, "PASSED"));
        free(out);
    }
}

/* ---- the reference summation orders (quants.h) ---- */

typedef void (*ex_fn)(int, int, float *, const void *, const void *);
typedef struct {
    const char *family;
    tt_vec_dot_fn vec[3], mat[3]; /* F32, F16, BF16 */
    ex_fn ex[2];                  /* F32, F16 */
} ord_family;

static void ord_check(const char *what, const char *fam, int n, float got, float want) {
    if (memcmp(&got, &want, sizeof got)) {
        print_message("%s %s n=%d: %.9g, scalar %.9g\n", what, fam, n, got, want);
        fail();
    }
}

/* F32 / F16 / BF16 dot products give the scalar reference's bits in every
 * family, in both orders and with zero padding, for lengths around the
 * 16-, 32- and 64-value steps. */
static void ordered_dots_are_bit_identical_across_families(void **state) {
    (void)state;
    ord_family fams[2];
    int nf = 0;
    if (cpu_has_avx2())
        fams[nf++] = (ord_family){"avx2",
                                  {tt_vec_dot_f32_avx2, tt_vec_dot_f16_avx2, tt_vec_dot_bf16_avx2},
                                  {tt_mat_dot_f32_avx2, tt_mat_dot_f16_avx2, tt_mat_dot_bf16_avx2},
                                  {tt_vec_dot_f32_ex_avx2, tt_vec_dot_f16_ex_avx2}};
    if (cpu_has_avx512())
        fams[nf++] =
            (ord_family){"avx512",
                         {tt_vec_dot_f32_avx512, tt_vec_dot_f16_avx512, tt_vec_dot_bf16_avx512},
                         {tt_mat_dot_f32_avx512, tt_mat_dot_f16_avx512, tt_mat_dot_bf16_avx512},
                         {tt_vec_dot_f32_ex_avx512, tt_vec_dot_f16_ex_avx512}};
    if (nf == 0) skip();
    const tt_vec_dot_fn vref[3] = {tt_vec_dot_f32_ref, tt_vec_dot_f16_ref, tt_vec_dot_bf16_ref};
    const tt_vec_dot_fn mref[3] = {tt_mat_dot_f32_ref, tt_mat_dot_f16_ref, tt_mat_dot_bf16_ref};
    const ex_fn eref[2] = {tt_vec_dot_f32_ex_ref, tt_vec_dot_f16_ex_ref};
    const int lens[] = {1, 8, 15, 16, 17, 31, 32, 33, 40, 63, 64, 65, 96, 100, 172, 200, 2048};
    uint64_t s = 4242;
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        const int n = lens[li];
        float *wf = malloc(sizeof(float) * (size_t)n), *xf = malloc(sizeof(float) * (size_t)n);
        rand_floats(&s, wf, n);
        rand_floats(&s, xf, n);
        cf_fp16 *wh = malloc(2 * (size_t)n), *xh = malloc(2 * (size_t)n);
        cf_bf16 *wb = malloc(2 * (size_t)n), *xb = malloc(2 * (size_t)n);
        tt_from_float_f16(wf, wh, n);
        tt_from_float_f16(xf, xh, n);
        tt_from_float_bf16(wf, wb, n);
        tt_from_float_bf16(xf, xb, n);
        const void *W[3] = {wf, wh, wb}, *X[3] = {xf, xh, xb};
        const int splits[3] = {n & ~63, ((n + 31) & ~31) & ~63, 0};
        for (int f = 0; f < nf; f++)
            for (int k = 0; k < 3; k++) {
                float got, want;
                fams[f].vec[k](n, &got, W[k], X[k]);
                vref[k](n, &want, W[k], X[k]);
                ord_check(k == 0   ? "vec f32"
                          : k == 1 ? "vec f16"
                                   : "vec bf16",
                          fams[f].family, n, got, want);
                fams[f].mat[k](n, &got, W[k], X[k]);
                mref[k](n, &want, W[k], X[k]);
                ord_check(k == 0   ? "mat f32"
                          : k == 1 ? "mat f16"
                                   : "mat bf16",
                          fams[f].family, n, got, want);
                if (k < 2)
                    for (int sp = 0; sp < 3; sp++) {
                        fams[f].ex[k](n, splits[sp], &got, W[k], X[k]);
                        eref[k](n, splits[sp], &want, W[k], X[k]);
                        ord_check(k == 0 ? "ex f32" : "ex f16", fams[f].family, n, got, want);
                    }
            }
        /* the orders are sums of the same products: close to the exact dot */
        double exact = 0, mag = 0;
        for (int i = 0; i < n; i++) {
            exact += (double)wf[i] * xf[i];
            mag += fabs((double)wf[i] * xf[i]);
        }
        float v, m;
        tt_vec_dot_f32_ref(n, &v, wf, xf);
        tt_mat_dot_f32_ref(n, &m, wf, xf);
        assert_true(fabs(v - exact) <= 1e-6 * mag + 1e-30);
        assert_true(fabs(m - exact) <= 1e-6 * mag + 1e-30);
        free(wf), free(xf), free(wh), free(xh), free(wb), free(xb);
    }
}

/* vx_exp_sub (AVX-512 where present) gives vx_expf's bits; vx_expf is
 * within 2 ulp of the C library's expf, 0 below -104 and infinite above
 * 88.8 as the reference's; SiLU rows take it for whole 16-value steps. */
static void vexp_matches_its_scalar_form_and_expf(void **state) {
    (void)state;
    enum { N = 20000 };
    float *x = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * N);
    for (int i = 0; i < N; i++)
        x[i] = -110.0f + 200.0f * (float)i / N;
    x[0] = -INFINITY, x[1] = INFINITY, x[2] = 0.0f, x[3] = -0.0f, x[4] = NAN;
    vx_exp_sub(y, x, 0.0f, N - 3); /* a partial 16-value step too */
    for (int i = 0; i < N - 3; i++) {
        const float want = vx_expf(x[i]);
        if (memcmp(&y[i], &want, sizeof want) && !(isnan(want) && isnan(y[i]))) {
            print_message("x=%.9g: %.9g vs scalar %.9g\n", x[i], y[i], want);
            fail();
        }
        if (x[i] > -87.0f && x[i] < 88.0f)
            assert_true(fabsf(want - expf(x[i])) <= 2.4e-7f * expf(x[i]));
    }
    assert_true(vx_expf(-INFINITY) == 0.0f && vx_expf(-105.0f) == 0.0f);
    assert_true(isinf(vx_expf(89.0f)) && isinf(vx_expf(INFINITY)) && isnan(vx_expf(NAN)));
    assert_true(vx_expf(0.0f) == 1.0f);
    float row[37];
    for (int i = 0; i < 37; i++)
        row[i] = x[1000 + 397 * i] / 10.0f;
    float want[37];
    for (int i = 0; i < 37; i++)
        want[i] =
            i < 32 ? row[i] / (1.0f + vx_expf(0.0f - row[i])) : row[i] / (1.0f + expf(-row[i]));
    vx_silu_row(row, 37);
    assert_memory_equal(row, want, sizeof want);
    free(x), free(y);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(avx2_vec_dot_kernels_match_scalar_reference),
        cmocka_unit_test(avx512_vec_dot_kernels_match_scalar_reference),
        cmocka_unit_test(avx512vnni_vec_dot_kernels_match_scalar_reference),
        cmocka_unit_test(kernels_are_exact_at_extreme_quant_values),
        cmocka_unit_test(avx2_tiles_equal_their_1x1_kernel_bit_for_bit),
        cmocka_unit_test(avx512_tiles_equal_their_1x1_kernel_bit_for_bit),
        cmocka_unit_test(matmul_outputs_do_not_depend_on_row_split),
        cmocka_unit_test(activation_quantizers_match_scalar_bytes),
        cmocka_unit_test(f16_quantizer_keeps_specials),
        cmocka_unit_test(table_installs_the_cpu_family),
        cmocka_unit_test(ordered_dots_are_bit_identical_across_families),
        cmocka_unit_test(vexp_matches_its_scalar_form_and_expf),
        cmocka_unit_test(capped_cpu_families_pass_the_same_tests),
    };
    /* a child run (see capped_cpu_...) skips the last test: no recursion */
    const size_t n = sizeof tests / sizeof tests[0] - (getenv("KT_CHILD") ? 1 : 0);
    return _cmocka_run_group_tests("test_kernels", tests, n, NULL, NULL);
}
