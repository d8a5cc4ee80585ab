/*
 * bench_kernels — single-thread throughput of every kernel family
 * (scalar reference, AVX2, AVX-512, AVX-512 VNNI) per weight type:
 *
 *   mv 2048x2048 / mv 8192x2048  matrix-vector products (token generation):
 *       "hot" = the same matrix every call (it sits in L2/L3),
 *       "cold" = rotating through copies totalling > 256 MiB, so weights
 *       come from DRAM as they do for a real model (mean over all calls);
 *   mm 2048x2048 x 64  matrix-matrix product with 64 activation rows
 *       (prompt processing), through tt_matmul_with (tiled where the
 *       kernel has tiles), and the plain per-pair loop for comparison.
 *
 * Also measures the machine's streaming read bandwidth (one thread, a
 * 512 MiB buffer, far larger than L3) to put the cold figures in context.
 *
 * Figures: GB/s of weight bytes read, GFLOP/s counting 2 per multiply-add.
 * Times are the thread's CPU time (CLOCK_THREAD_CPUTIME_ID), best of
 * several runs: the development machine is shared and oversubscribed, and
 * wall time there mostly measures the scheduler.
 * Usage: build/bench/bench_kernels [TYPE...]   (e.g. q4_K q8_0; default all)
 */
#include "base/cpu.h"
#include "engine/blocks.h"
#include "engine/quants.h"
#include "engine/quants_simd.h"
#include "engine/types.h"

#include <emmintrin.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define COLD_BYTES (256u << 20)
#define MIN_SECONDS 0.25

/* Nanoseconds of CPU time used by this thread. */
static uint64_t cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static float rndf(void) { return (float)((double)(rnd() >> 11) / 0x1p52 * 2.0 - 1.0); }

/* ---- memory bandwidth ---- */

static double bench_bandwidth(void) {
    const size_t bytes = (size_t)512 << 20;
    __m128i *buf = aligned_alloc(64, bytes);
    if (!buf) return 0;
    memset(buf, 1, bytes);
    const size_t nv = bytes / sizeof(__m128i);
    double best = 1e30;
    volatile int sink = 0;
    for (int rep = 0; rep < 5; rep++) {
        const uint64_t t0 = cpu_ns();
        __m128i a0 = _mm_setzero_si128(), a1 = a0, a2 = a0, a3 = a0;
        for (size_t i = 0; i < nv; i += 4) {
            a0 = _mm_add_epi64(a0, _mm_load_si128(buf + i));
            a1 = _mm_add_epi64(a1, _mm_load_si128(buf + i + 1));
            a2 = _mm_add_epi64(a2, _mm_load_si128(buf + i + 2));
            a3 = _mm_add_epi64(a3, _mm_load_si128(buf + i + 3));
        }
        const double s = (double)(cpu_ns() - t0) * 1e-9;
        a0 = _mm_add_epi64(_mm_add_epi64(a0, a1), _mm_add_epi64(a2, a3));
        sink += _mm_cvtsi128_si32(a0);
        if (s < best) best = s;
    }
    (void)sink;
    free(buf);
    return (double)bytes / best / 1e9;
}

/* ---- kernels ---- */

typedef struct {
    const char *name;
    int wtype;
    tt_vec_dot_fn fam[4]; /* scalar, avx2, avx512, avx512vnni */
} bcase;

static const char *fam_name[4] = {"scalar", "avx2", "avx512", "avx512vnni"};

static const bcase cases[] = {
    {"q4_K",
     TT_Q4_K,
     {tt_vec_dot_q4_K_q8_K_ref, tt_vec_dot_q4_K_q8_K_avx2, tt_vec_dot_q4_K_q8_K_avx512, NULL}},
    {"q6_K",
     TT_Q6_K,
     {tt_vec_dot_q6_K_q8_K_ref, tt_vec_dot_q6_K_q8_K_avx2, tt_vec_dot_q6_K_q8_K_avx512, NULL}},
    {"q8_0",
     TT_Q8_0,
     {tt_vec_dot_q8_0_q8_0_ref, tt_vec_dot_q8_0_q8_0_avx2, tt_vec_dot_q8_0_q8_0_avx512,
      tt_vec_dot_q8_0_q8_0_avx512vnni}},
    {"f16", TT_F16, {tt_vec_dot_f16_ref, tt_vec_dot_f16_avx2, tt_vec_dot_f16_avx512, NULL}},
    {"q4_0",
     TT_Q4_0,
     {tt_vec_dot_q4_0_q8_0_ref, tt_vec_dot_q4_0_q8_0_avx2, tt_vec_dot_q4_0_q8_0_avx512,
      tt_vec_dot_q4_0_q8_0_avx512vnni}},
    {"q5_K",
     TT_Q5_K,
     {tt_vec_dot_q5_K_q8_K_ref, tt_vec_dot_q5_K_q8_K_avx2, tt_vec_dot_q5_K_q8_K_avx512, NULL}},
    {"q5_0",
     TT_Q5_0,
     {tt_vec_dot_q5_0_q8_0_ref, tt_vec_dot_q5_0_q8_0_avx2, tt_vec_dot_q5_0_q8_0_avx512,
      tt_vec_dot_q5_0_q8_0_avx512vnni}},
    {"iq4_nl",
     TT_IQ4_NL,
     {tt_vec_dot_iq4_nl_q8_0_ref, tt_vec_dot_iq4_nl_q8_0_avx2, tt_vec_dot_iq4_nl_q8_0_avx512,
      tt_vec_dot_iq4_nl_q8_0_avx512vnni}},
    {"q4_1", TT_Q4_1, {tt_vec_dot_q4_1_q8_1_ref, tt_vec_dot_q4_1_q8_1_avx2, NULL, NULL}},
    {"q5_1", TT_Q5_1, {tt_vec_dot_q5_1_q8_1_ref, tt_vec_dot_q5_1_q8_1_avx2, NULL, NULL}},
    {"q2_K", TT_Q2_K, {tt_vec_dot_q2_K_q8_K_ref, tt_vec_dot_q2_K_q8_K_avx2, NULL, NULL}},
    {"q3_K", TT_Q3_K, {tt_vec_dot_q3_K_q8_K_ref, tt_vec_dot_q3_K_q8_K_avx2, NULL, NULL}},
    {"iq4_xs", TT_IQ4_XS, {tt_vec_dot_iq4_xs_q8_K_ref, tt_vec_dot_iq4_xs_q8_K_avx2, NULL, NULL}},
    {"bf16", TT_BF16, {tt_vec_dot_bf16_ref, tt_vec_dot_bf16_avx2, tt_vec_dot_bf16_avx512, NULL}},
    {"f32", TT_F32, {tt_vec_dot_f32_ref, tt_vec_dot_f32_avx2, tt_vec_dot_f32_avx512, NULL}},
};

static int fam_ok(int f) {
    if (f == 0) return 1;
    if (f == 1) return cpu_has_avx2();
    if (f == 2) return cpu_has_avx512();
    return cpu_has_avx512() && cpu_get()->avx512vnni;
}

/* A weight matrix of ROWS x N of TYPE: random blocks with sane scales for
 * quantized types (kernel speed does not depend on the values), random
 * floats converted for F32/F16/BF16. */
static void fix_d(char *blk, size_t off) {
    const cf_fp16 d = cf_fp32_to_fp16(0.01f);
    memcpy(blk + off, &d, sizeof d);
}

static void *make_weights(int type, int rows, int n) {
    const tt_traits *t = tt_get(type);
    const size_t rs = tt_row_size(type, n), total = rs * (size_t)rows;
    char *w = aligned_alloc(64, (total + 63) / 64 * 64);
    if (!t->quantized) {
        float *f = malloc(sizeof(float) * (size_t)n);
        for (int r = 0; r < rows; r++) {
            for (int i = 0; i < n; i++)
                f[i] = rndf();
            t->from_float(f, w + (size_t)r * rs, n);
        }
        free(f);
        return w;
    }
    for (size_t i = 0; i < total; i++)
        w[i] = (char)rnd();
    for (size_t b = 0; b < total / t->bytes; b++) {
        char *blk = w + b * t->bytes;
        if (type == TT_Q6_K) {
            fix_d(blk, offsetof(block_q6_K, d));
        } else if (type == TT_Q3_K) {
            fix_d(blk, offsetof(block_q3_K, d));
        } else if (type == TT_Q2_K) {
            fix_d(blk, offsetof(block_q2_K, d));
            fix_d(blk, offsetof(block_q2_K, dmin));
        } else {
            fix_d(blk, 0);
            if (type == TT_Q4_K || type == TT_Q5_K || type == TT_Q4_1 || type == TT_Q5_1)
                fix_d(blk, 2);
        }
        if (type == TT_Q8_0)
            for (int j = 0; j < QK8_0; j++)
                if (((block_q8_0 *)blk)->qs[j] == -128) ((block_q8_0 *)blk)->qs[j] = -127;
    }
    return w;
}

typedef struct {
    double best_s;
} timing;

/* Seconds per call of a matrix-vector product over COPIES matrices
 * (rotating) with kernel VD: the best call when COPIES is 1 (hot, the
 * matrix in cache), the mean over all calls otherwise (sustained, as a
 * model streaming its weights sees it). */
static double time_mv(tt_vec_dot_fn vd, char **mats, int copies, size_t rs, int rows, int n,
                      const void *x, float *y) {
    double best = 1e30, total = 0;
    int calls = 0, c = 0;
    while (total < MIN_SECONDS || calls < 3) {
        const uint64_t t0 = cpu_ns();
        const char *w = mats[c];
        for (int r = 0; r < rows; r++)
            vd(n, &y[r], w + (size_t)r * rs, x);
        const double s = (double)(cpu_ns() - t0) * 1e-9;
        if (s < best) best = s;
        total += s;
        calls++;
        c = (c + 1) % copies;
    }
    return copies > 1 ? total / calls : best;
}

static double time_mm(const tt_tile_kernel *k, tt_vec_dot_fn vd, const char *w, size_t rs, int rows,
                      int n, const char *x, size_t xs, int nx, float *y) {
    double best = 1e30, total = 0;
    int calls = 0;
    while (total < MIN_SECONDS || calls < 2) {
        const uint64_t t0 = cpu_ns();
        tt_matmul_with(k, vd, n, w, rs, 0, rows, x, xs, nx, y, (size_t)rows);
        const double s = (double)(cpu_ns() - t0) * 1e-9;
        if (s < best) best = s;
        total += s;
        calls++;
    }
    return best;
}

static void bench_case(const bcase *bc) {
    const int n = 2048, nx = 64;
    const tt_traits *t = tt_get(bc->wtype);
    const tt_traits *xt = tt_get(t->vec_dot_type);
    const size_t rs = tt_row_size(bc->wtype, n), xs = tt_row_size(t->vec_dot_type, n);
    char *x = aligned_alloc(64, (xs * nx + 63) / 64 * 64);
    float *f = malloc(sizeof(float) * n);
    for (int j = 0; j < nx; j++) {
        for (int i = 0; i < n; i++)
            f[i] = rndf();
        xt->from_float(f, x + (size_t)j * xs, n);
    }
    float *y = malloc(sizeof(float) * 8192 * nx);
    const int shapes[2] = {2048, 8192};
    char *mats[2][512];
    int copies[2];
    for (int s = 0; s < 2; s++) {
        const size_t mb = rs * (size_t)shapes[s];
        copies[s] = (int)(COLD_BYTES / mb) + 1;
        if (copies[s] > 512) copies[s] = 512;
        mats[s][0] = make_weights(bc->wtype, shapes[s], n);
        for (int c = 1; c < copies[s]; c++) {
            mats[s][c] = aligned_alloc(64, (mb + 63) / 64 * 64);
            memcpy(mats[s][c], mats[s][0], mb);
        }
    }
    for (int fi = 0; fi < 4; fi++) {
        const tt_vec_dot_fn vd = bc->fam[fi];
        if (!vd || !fam_ok(fi)) continue;
        for (int s = 0; s < 2; s++) {
            const int rows = shapes[s];
            const double bytes = (double)rs * rows, flops = 2.0 * rows * n;
            const double hot = time_mv(vd, mats[s], 1, rs, rows, n, x, y);
            const double cold = time_mv(vd, mats[s], copies[s], rs, rows, n, x, y);
            printf("%-7s %-11s mv %4dx%d   hot %7.2f GB/s %7.2f GFLOP/s | cold %7.2f GB/s %7.2f "
                   "GFLOP/s\n",
                   bc->name, fam_name[fi], rows, n, bytes / hot / 1e9, flops / hot / 1e9,
                   bytes / cold / 1e9, flops / cold / 1e9);
        }
        const double flops = 2.0 * 2048 * n * nx;
        const double pairs = time_mm(NULL, vd, mats[0][0], rs, 2048, n, x, xs, nx, y);
        printf("%-7s %-11s mm 2048x%dx%d per-pair        %7.2f GFLOP/s\n", bc->name, fam_name[fi],
               n, nx, flops / pairs / 1e9);
        int cnt = 0;
        const tt_tile_kernel *tk = fi == 0   ? NULL
                                   : fi == 1 ? tt_tiles_avx2(&cnt)
                                             : tt_tiles_avx512(&cnt);
        for (int e = 0; e < cnt; e++) {
            if (tk[e].type != bc->wtype || strcmp(tk[e].family, fam_name[fi])) continue;
            const double tiled = time_mm(&tk[e], NULL, mats[0][0], rs, 2048, n, x, xs, nx, y);
            printf("%-7s %-11s mm 2048x%dx%d tiled %dx%d%s %7.2f GFLOP/s\n", bc->name, fam_name[fi],
                   n, nx, tk[e].nr, tk[e].nc, tk[e].preferred ? "*" : " ", flops / tiled / 1e9);
        }
        fflush(stdout);
    }
    for (int s = 0; s < 2; s++)
        for (int c = 0; c < copies[s]; c++)
            free(mats[s][c]);
    free(x);
    free(f);
    free(y);
}

int main(int argc, char **argv) {
    printf("cpu: %s\n", cpu_describe());
    printf("kernel family in the table: %s\n", tt_kernel_family());
    printf("memory bandwidth (1 thread, streaming read of 512 MiB): %.2f GB/s\n",
           bench_bandwidth());
    fflush(stdout);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int want = argc < 2;
        for (int a = 1; a < argc; a++)
            if (!strcmp(argv[a], cases[i].name)) want = 1;
        if (want) bench_case(&cases[i]);
    }
    return 0;
}
