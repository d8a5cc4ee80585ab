/* bench_quants — single-thread throughput of the type table's kernels:
 * dequantization (to_float), quantization (from_float) and vec_dot for every
 * weight type, plus GGUF open time of a real model when the test data is
 * at hand. Prints one line per type in millions of values per second.
 *
 * usage: build/bench/bench_quants [N_VALUES]   (default 1048576)
 * Kernels are the ones tt_init() picks; CONFAB_CPU=scalar forces the
 * scalar references. */
#include "base/clock.h"
#include "engine/gguf.h"
#include "engine/types.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const int bench_types[] = {TT_F32,  TT_F16,  TT_BF16, TT_Q4_0,   TT_Q4_1,
                                  TT_Q5_0, TT_Q5_1, TT_Q8_0, TT_Q2_K,   TT_Q3_K,
                                  TT_Q4_K, TT_Q5_K, TT_Q6_K, TT_IQ4_NL, TT_IQ4_XS};

/* Runs BODY REPS times, three trials, and returns the best trial's
 * Mvalues/s for N values per run (best of three: the machine is shared). */
#define TIME_MVS(reps, n, body)                                                                    \
    ({                                                                                             \
        double best__ = 0;                                                                         \
        for (int k__ = 0; k__ < 3; k__++) {                                                        \
            const double t0__ = clock_mono_ms();                                                   \
            for (int r__ = 0; r__ < (reps); r__++) {                                               \
                body;                                                                              \
            }                                                                                      \
            const double ms__ = clock_mono_ms() - t0__;                                            \
            const double v__ = (double)(reps) * (double)(n) / (ms__ > 0 ? ms__ : 1e-3) / 1000.0;   \
            if (v__ > best__) best__ = v__;                                                        \
        }                                                                                          \
        best__;                                                                                    \
    })

int main(int argc, char **argv) {
    const int64_t n = argc > 1 ? atoll(argv[1]) : 1 << 20;
    if (n <= 0 || n % 256) {
        fprintf(stderr, "N_VALUES must be a positive multiple of 256\n");
        return 2;
    }
    tt_init();
    printf("kernels: %s, %lld values per call, single thread\n", tt_kernel_family(), (long long)n);
    printf("%-7s %12s %12s %12s   (Mvalues/s)\n", "type", "to_float", "from_float", "vec_dot");
    float *x = malloc((size_t)n * sizeof(float)), *y = malloc((size_t)n * sizeof(float));
    uint64_t s = 88172645463325252ull;
    for (int64_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        x[i] = (float)((double)(s >> 11) / 9007199254740992.0) * 2 - 1;
    }
    void *w = malloc((size_t)n * 4), *a = malloc((size_t)n * 4 + 4096);
    float sink = 0;
    for (size_t k = 0; k < sizeof bench_types / sizeof bench_types[0]; k++) {
        const tt_traits *t = tt_get(bench_types[k]), *at = tt_get(t->vec_dot_type);
        double q = 0;
        if (t->from_float) {
            q = TIME_MVS(t->quantized && t->blck == 256 ? 2 : 5, n, t->from_float(x, w, n));
        } else {
            /* No quantizer for this type: time dequantization of arbitrary
             * bytes with the scale fields zeroed (any bytes are valid data). */
            memset(w, 0, tt_row_size(bench_types[k], n));
        }
        const double d = TIME_MVS(10, n, t->to_float(w, y, n); sink += y[n - 1]);
        at->from_float(x, a, n);
        float r = 0;
        const double v = TIME_MVS(10, n, t->vec_dot((int)n, &r, w, a); sink += r);
        if (q > 0)
            printf("%-7s %12.0f %12.1f %12.0f\n", t->name, d, q, v);
        else
            printf("%-7s %12.0f %12s %12.0f\n", t->name, d, "-", v);
    }
    const char *root = getenv("CONFAB_TESTDATA") ? getenv("CONFAB_TESTDATA") : "../shared/testdata";
    char path[1024];
    snprintf(path, sizeof path, "%s/models/tiny-llama-d256-Q4_K_M.gguf", root);
    cf_err err = {0};
    const double t0 = clock_mono_ms();
    int opened = 0;
    for (int i = 0; i < 20; i++) {
        gguf_file *f = gguf_open(path, &err);
        if (!f) break;
        opened++;
        gguf_close(f);
    }
    if (opened)
        printf("gguf_open %s: %.2f ms (32000-token vocabulary, 21 tensors)\n", path,
               (clock_mono_ms() - t0) / opened);
    free(x);
    free(y);
    free(w);
    free(a);
    return sink == 12345.678f;
}
