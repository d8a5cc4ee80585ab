/* Tests for src/engine/types.c and quants.c: the type table, bit-exact
 * dequantization against the reference engine's bytes, dot products against
 * the dequantized math, activation rounding, and the weight quantizers'
 * error against the reference engine's quantizations. */
#include "engine/blocks.h"
#include "engine/quants.h"
#include "base/cpu.h"
#include "engine/types.h"
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QR_ROWS 4
#define QR_COLS 512

static const char *const qr_types[] = {"f16",  "bf16", "q4_0", "q4_1", "q5_0", "q5_1",   "q8_0",
                                       "q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "iq4_nl", "iq4_xs"};
#define N_QR (sizeof qr_types / sizeof qr_types[0])

/* Reads quant-ref/NAME.SUFFIX; checks its size is WANT bytes. */
static void *qr_read(const char *name, const char *suffix, size_t want) {
    char rel[128];
    snprintf(rel, sizeof rel, "quant-ref/%s.%s", name, suffix);
    size_t len;
    void *p = tu_read_file(td_path(rel), &len);
    assert_non_null(p);
    if (len != want) fail_msg("%s: %zu bytes, expected %zu", rel, len, want);
    return p;
}

static float *qr_input(void) {
    size_t len;
    float *p = (float *)tu_read_file(td_path("quant-ref/input_f32.bin"), &len);
    assert_non_null(p);
    assert_int_equal(len, QR_ROWS * QR_COLS * sizeof(float));
    return p;
}

static double rmse(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return sqrt(s / (double)n);
}

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static float rng_float(uint64_t *s) {
    return (float)((double)(rng_next(s) >> 11) / 9007199254740992.0) * 2 - 1;
}

/* ------------------------------------------------------------------ table */

static void table_describes_block_layouts(void **st) {
    (void)st;
    tt_init();
    const tt_traits *t = tt_get(TT_Q4_K);
    assert_non_null(t);
    assert_string_equal(t->name, "Q4_K");
    assert_int_equal(t->blck, 256);
    assert_int_equal(t->bytes, 144);
    assert_int_equal(t->quantized, 1);
    assert_int_equal(tt_get(TT_F16)->bytes, 2);
    assert_int_equal(tt_get(TT_F16)->quantized, 0);
    assert_int_equal(tt_row_size(TT_Q4_0, 64), 36);
    assert_int_equal(tt_row_size(TT_Q6_K, 512), 420);
    assert_int_equal(tt_row_size(TT_BF16, 3), 6);
    assert_int_equal(tt_row_size(TT_Q4_0, 33), 0); /* not a whole block */
    assert_int_equal(tt_row_size(TT_Q8_0, -32), 0);
    assert_int_equal(tt_row_size(99, 32), 0);
    assert_null(tt_get(4)); /* removed GGML ids stay unknown */
    assert_null(tt_get(-1));
    assert_null(tt_get(TT_COUNT));
    /* Types confab cannot compute with still have their layout. */
    assert_int_equal(tt_get(16)->bytes, 66); /* IQ2_XXS */
    assert_null(tt_get(16)->to_float);
}

/* A program that uses only the type table (not tt_matmul) must still get
 * the SIMD kernels: the install hooks are linked in by tt_init itself. */
static void simd_kernels_are_installed_on_capable_cpus(void **st) {
    (void)st;
    tt_init();
    if (cpu_has_avx2() && !getenv("CONFAB_CPU")) assert_string_not_equal(tt_kernel_family(), "scalar");
    else if (!cpu_has_avx2()) assert_string_equal(tt_kernel_family(), "scalar");
}

static void table_looks_types_up_by_name(void **st) {
    (void)st;
    assert_int_equal(tt_from_name("q4_k"), TT_Q4_K);
    assert_int_equal(tt_from_name("Q8_0"), TT_Q8_0);
    assert_int_equal(tt_from_name("IQ4_nl"), TT_IQ4_NL);
    assert_int_equal(tt_from_name("bf16"), TT_BF16);
    assert_int_equal(tt_from_name("q4_k_m"), -1);
    assert_int_equal(tt_from_name(""), -1);
    assert_int_equal(tt_from_name(NULL), -1);
    const char *fam = tt_kernel_family();
    assert_true(!strcmp(fam, "scalar") || !strcmp(fam, "avx2") || !strcmp(fam, "avx512"));
}

static void table_pairs_weights_with_activation_types(void **st) {
    (void)st;
    const struct {
        int w, act;
    } want[] = {{TT_F32, TT_F32},   {TT_F16, TT_F16},   {TT_BF16, TT_BF16},   {TT_Q4_0, TT_Q8_0},
                {TT_Q5_0, TT_Q8_0}, {TT_Q8_0, TT_Q8_0}, {TT_IQ4_NL, TT_Q8_0}, {TT_Q4_1, TT_Q8_1},
                {TT_Q5_1, TT_Q8_1}, {TT_Q2_K, TT_Q8_K}, {TT_Q3_K, TT_Q8_K},   {TT_Q4_K, TT_Q8_K},
                {TT_Q5_K, TT_Q8_K}, {TT_Q6_K, TT_Q8_K}, {TT_IQ4_XS, TT_Q8_K}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const tt_traits *t = tt_get(want[i].w);
        assert_int_equal(t->vec_dot_type, want[i].act);
        assert_non_null(t->vec_dot);
        assert_non_null(t->to_float);
        assert_non_null(tt_get(t->vec_dot_type)->from_float); /* activations can be converted */
    }
}

/* ------------------------------------------------------------------ dequantization */

static void dequantizes_reference_bytes_bit_exact(void **st) {
    (void)st;
    for (size_t k = 0; k < N_QR; k++) {
        const int type = tt_from_name(qr_types[k]);
        assert_true(type >= 0);
        const size_t row = tt_row_size(type, QR_COLS);
        uint8_t *q = qr_read(qr_types[k], "quant.bin", QR_ROWS * row);
        float *want = qr_read(qr_types[k], "dequant_f32.bin", QR_ROWS * QR_COLS * sizeof(float));
        float got[QR_ROWS * QR_COLS];
        for (int r = 0; r < QR_ROWS; r++)
            tt_get(type)->to_float(q + r * row, got + r * QR_COLS, QR_COLS);
        for (int i = 0; i < QR_ROWS * QR_COLS; i++)
            if (memcmp(&got[i], &want[i], 4))
                fail_msg("%s: value %d is %.9g, reference %.9g", qr_types[k], i, got[i], want[i]);
        free(q);
        free(want);
    }
}

/* ------------------------------------------------------------------ dot products */

/* For every weight type: vec_dot(W, act(x)) equals dot(dequant W, dequant
 * act(x)) up to float rounding, and is close to the exact dot(dequant W, x). */
static void vec_dot_matches_dequantized_math(void **st) {
    (void)st;
    uint64_t seed = 12345;
    float x[QR_COLS];
    for (int i = 0; i < QR_COLS; i++)
        x[i] = rng_float(&seed);
    for (size_t k = 0; k < N_QR; k++) {
        const int type = tt_from_name(qr_types[k]);
        const tt_traits *t = tt_get(type);
        const tt_traits *a = tt_get(t->vec_dot_type);
        const size_t row = tt_row_size(type, QR_COLS);
        uint8_t *q = qr_read(qr_types[k], "quant.bin", QR_ROWS * row);
        uint8_t act[QR_COLS * 4 + 64];
        assert_true(tt_row_size(t->vec_dot_type, QR_COLS) <= sizeof act);
        tt_quantize_act(type, x, act, QR_COLS);
        float xa[QR_COLS], wf[QR_COLS];
        a->to_float(act, xa, QR_COLS);
        for (int r = 0; r < QR_ROWS; r++) {
            t->to_float(q + r * row, wf, QR_COLS);
            double same = 0, exact = 0, mag = 0;
            for (int i = 0; i < QR_COLS; i++) {
                same += (double)wf[i] * xa[i];
                exact += (double)wf[i] * x[i];
                mag += fabs((double)wf[i] * x[i]);
            }
            if (t->vec_dot_type == TT_Q8_1) {
                /* Q8_1 carries s = d * sum(qs) rounded to fp16, which the dot
                 * product uses for the weights' offset m: account for it. */
                const block_q8_1 *ab = (const block_q8_1 *)act;
                for (int b = 0; b < QR_COLS / 32; b++) {
                    cf_fp16 m;
                    memcpy(&m, q + r * row + b * t->bytes + 2, 2); /* Q4_1/Q5_1: d, m first */
                    int sum = 0;
                    for (int i = 0; i < 32; i++)
                        sum += ab[b].qs[i];
                    same += (double)cf_fp16_to_fp32(m) * ((double)cf_fp16_to_fp32(ab[b].s) -
                                                          (double)cf_fp16_to_fp32(ab[b].d) * sum);
                }
            }
            float s;
            t->vec_dot(QR_COLS, &s, q + r * row, act);
            if (fabs(s - same) > 1e-5 * mag + 1e-6)
                fail_msg("%s row %d: vec_dot %.7g, dequantized dot %.7g", qr_types[k], r, s, same);
            if (fabs(s - exact) > 0.02 * mag)
                fail_msg("%s row %d: vec_dot %.7g, float dot %.7g (|w||x| %.3g)", qr_types[k], r, s,
                         exact, mag);
        }
        free(q);
    }
}

static void vec_dot_f32_and_tt_matmul_agree(void **st) {
    (void)st;
    float w[3][64], x[2][64], y[2][3];
    uint64_t seed = 7;
    for (int r = 0; r < 3; r++)
        for (int i = 0; i < 64; i++)
            w[r][i] = rng_float(&seed);
    for (int j = 0; j < 2; j++)
        for (int i = 0; i < 64; i++)
            x[j][i] = rng_float(&seed);
    tt_matmul(TT_F32, 64, w, sizeof w[0], 0, 3, x, sizeof x[0], 2, &y[0][0], 3);
    for (int j = 0; j < 2; j++)
        for (int r = 0; r < 3; r++) {
            double d = 0;
            for (int i = 0; i < 64; i++)
                d += (double)w[r][i] * x[j][i];
            assert_float_equal(y[j][r], d, 1e-5);
        }
}

/* ------------------------------------------------------------------ activation rounding */

static void activation_quantizers_round_to_8_bits(void **st) {
    (void)st;
    uint64_t seed = 99;
    float x[QK_K], back[QK_K];
    for (int i = 0; i < QK_K; i++)
        x[i] = rng_float(&seed) * 3;
    x[17] = -3.5f; /* the signed extreme */

    block_q8_K qk;
    tt_from_float_q8_K(x, &qk, QK_K);
    assert_int_equal(qk.qs[17], -127); /* the extreme maps to exactly -127 * d */
    assert_true(qk.d > 0);
    for (int j = 0; j < QK_K / 16; j++) {
        int sum = 0;
        for (int i = 0; i < 16; i++)
            sum += qk.qs[16 * j + i];
        assert_int_equal(qk.bsums[j], sum);
    }
    tt_to_float_q8_K(&qk, back, QK_K);
    for (int i = 0; i < QK_K; i++)
        assert_true(fabsf(back[i] - x[i]) <= fabsf(qk.d) * 0.5f + 1e-6f);

    block_q8_0 q0[QK_K / 32];
    tt_from_float_q8_0(x, q0, QK_K);
    tt_to_float_q8_0(q0, back, QK_K);
    /* Half a step, plus 127 times the fp16 rounding of the scale. */
    for (int i = 0; i < QK_K; i++)
        assert_true(fabsf(back[i] - x[i]) <= cf_fp16_to_fp32(q0[i / 32].d) * 0.57f + 1e-6f);

    block_q8_1 q1[QK_K / 32];
    tt_from_float_q8_1(x, q1, QK_K);
    for (int b = 0; b < QK_K / 32; b++) {
        int sum = 0;
        for (int i = 0; i < 32; i++)
            sum += q1[b].qs[i];
        assert_float_equal(cf_fp16_to_fp32(q1[b].s), cf_fp16_to_fp32(q1[b].d) * (float)sum,
                           fabsf(cf_fp16_to_fp32(q1[b].s)) * 1e-3f + 1e-6f);
    }

    /* All-zero input gives zero scales and no NaN. */
    float z[QK_K] = {0};
    tt_from_float_q8_K(z, &qk, QK_K);
    assert_true(qk.d == 0.0f);
    tt_from_float_q8_0(z, q0, QK_K);
    tt_to_float_q8_0(q0, back, QK_K);
    for (int i = 0; i < QK_K; i++)
        assert_true(back[i] == 0.0f);
}

/* ------------------------------------------------------------------ weight quantizers */

/* Our quantizer's round-trip RMSE on the reference input must be no worse
 * than 1.1x that of the reference engine's quantization; since the
 * algorithms are ported exactly, the bytes must even be identical. */
static void quantizers_match_reference_error(void **st) {
    (void)st;
    static const char *const names[] = {"f16",  "bf16", "q8_0", "q4_0", "q4_1", "q5_0",   "q5_1",
                                        "q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "iq4_nl", "iq4_xs"};
    float *in = qr_input();
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        const int type = tt_from_name(names[k]);
        const tt_traits *t = tt_get(type);
        assert_non_null(t->from_float);
        const size_t row = tt_row_size(type, QR_COLS);
        uint8_t *ref = qr_read(names[k], "quant.bin", QR_ROWS * row);
        uint8_t *mine = malloc(QR_ROWS * row);
        float back_ref[QR_ROWS * QR_COLS], back[QR_ROWS * QR_COLS];
        int same_bytes = 1;
        for (int r = 0; r < QR_ROWS; r++) {
            t->from_float(in + r * QR_COLS, mine + r * row, QR_COLS);
            t->to_float(mine + r * row, back + r * QR_COLS, QR_COLS);
            t->to_float(ref + r * row, back_ref + r * QR_COLS, QR_COLS);
        }
        same_bytes = !memcmp(mine, ref, QR_ROWS * row);
        const double e_ref = rmse(back_ref, in, QR_ROWS * QR_COLS),
                     e = rmse(back, in, QR_ROWS * QR_COLS);
        print_message("# %-5s rmse %.6g (reference %.6g)%s\n", names[k], e, e_ref,
                      same_bytes ? ", bytes identical" : "");
        if (e > 1.1 * e_ref)
            fail_msg("%s: rmse %.6g is worse than 1.1 x reference %.6g", names[k], e, e_ref);
        /* Same algorithm, same float operations: the very same bytes. */
        if (!same_bytes)
            fail_msg("%s: quantized bytes differ from the reference engine's", names[k]);
        free(ref);
        free(mine);
    }
    free(in);
}

static void quantizers_handle_zero_and_constant_rows(void **st) {
    (void)st;
    static const int types[] = {TT_Q8_0, TT_Q4_0, TT_Q4_1, TT_Q5_0, TT_Q5_1,   TT_Q2_K,
                                TT_Q3_K, TT_Q4_K, TT_Q5_K, TT_Q6_K, TT_IQ4_NL, TT_IQ4_XS};
    float z[QK_K], back[QK_K];
    uint8_t buf[512];
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        const tt_traits *t = tt_get(types[k]);
        memset(z, 0, sizeof z);
        t->from_float(z, buf, QK_K);
        t->to_float(buf, back, QK_K);
        for (int i = 0; i < QK_K; i++)
            if (back[i] != 0.0f) fail_msg("%s: zero row gives %g at %d", t->name, back[i], i);
        for (int i = 0; i < QK_K; i++)
            z[i] = 0.75f;
        t->from_float(z, buf, QK_K);
        t->to_float(buf, back, QK_K);
        for (int i = 0; i < QK_K; i++)
            if (fabsf(back[i] - 0.75f) > 0.05f)
                fail_msg("%s: constant row gives %g at %d", t->name, back[i], i);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(table_describes_block_layouts),
        cmocka_unit_test(simd_kernels_are_installed_on_capable_cpus),
        cmocka_unit_test(table_looks_types_up_by_name),
        cmocka_unit_test(table_pairs_weights_with_activation_types),
        cmocka_unit_test(dequantizes_reference_bytes_bit_exact),
        cmocka_unit_test(vec_dot_matches_dequantized_math),
        cmocka_unit_test(vec_dot_f32_and_tt_matmul_agree),
        cmocka_unit_test(activation_quantizers_round_to_8_bits),
        cmocka_unit_test(quantizers_match_reference_error),
        cmocka_unit_test(quantizers_handle_zero_and_constant_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
