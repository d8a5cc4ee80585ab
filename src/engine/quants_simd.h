/*
 * quants_simd — the AVX2 and AVX-512 kernel families, exported under stable
 * names so tests and benchmarks can call every family directly on a machine
 * that has them (the type table only ever holds one family per row).
 *
 * Calling contract: an *_avx2 function may be called only when
 * cpu_has_avx2() is true, an *_avx512 function only when cpu_has_avx512()
 * is true, an *_avx512vnni function only when in addition
 * cpu_get()->avx512vnni is true. Arguments are those of the type table's
 * function pointers (types.h): N is a multiple of the weight type's block
 * size, W and X point at whole blocks, unaligned pointers are fine.
 *
 * Kernels are integer-exact: every block's integer dot product equals the
 * scalar reference's; only the order in which the per-block float terms are
 * summed differs.
 *
 * Tiles. For matrix-matrix products each family has tile kernels that
 * compute an NR x NC block of outputs (NR weight rows x NC activation rows)
 * while decoding each weight block once. A tile kernel set comes with its
 * own 1 x 1 kernel ("one"), and every output of every tile shape is
 * computed by exactly the operation sequence of "one": whatever the tiling
 * or the row range a thread is given, an output is bit-identical. The tile
 * family of a type may differ from the family of its table vec_dot (each is
 * the fastest measured for its job), so a batched product (NX > 1) and a
 * matrix-vector product (NX = 1) of the same rows agree only up to float
 * summation order.
 */
#ifndef CONFAB_ENGINE_QUANTS_SIMD_H
#define CONFAB_ENGINE_QUANTS_SIMD_H

#include "engine/types.h"

#include <stddef.h>
#include <stdint.h>

/* Computes Y[c * Y_STRIDE + r] = dot(W row r, X row c) for r < nr, c < nc,
 * where (nr, nc) is the shape the function was made for (see
 * tt_tile_kernel). W rows are W_STRIDE bytes apart, X rows X_STRIDE bytes;
 * X is in the weight type's vec_dot_type. */
typedef void (*tt_tile_fn)(int n, const void *w, size_t w_stride, const void *x, size_t x_stride,
                           float *y, size_t y_stride);

/* One family's tile kernels for one weight type. */
typedef struct {
    int type;           /* weight type (tt_type) */
    const char *family; /* "avx2", "avx512", "avx512vnni" */
    int preferred;      /* 1: tt_tile_lookup may pick it (fastest measured) */
    int nr, nc;         /* full tile: nr weight rows x nc activation rows */
    tt_tile_fn full;    /* nr x nc */
    tt_tile_fn row1;    /* 1 x nc */
    tt_tile_fn col1;    /* nr x 1 */
    tt_vec_dot_fn one;  /* 1 x 1, the sequence every output follows */
} tt_tile_kernel;

/* All tile kernels of each family; *COUNT gets the number of entries. The
 * arrays are static and read-only; call only on CPUs with the family. */
const tt_tile_kernel *tt_tiles_avx2(int *count);
const tt_tile_kernel *tt_tiles_avx512(int *count);

/* The tile kernels tt_matmul uses for TYPE on this CPU (after the
 * CONFAB_CPU cap), or NULL when there are none (scalar CPUs, types
 * without tiles). */
const tt_tile_kernel *tt_tile_lookup(int type);

/* tt_matmul (types.h) with explicit kernels, for benchmarks and tests of
 * each family: K's tiles when K is not NULL, else one VD call per pair.
 * The kernels must be runnable on this CPU. */
void tt_matmul_with(const tt_tile_kernel *k, tt_vec_dot_fn vd, int n, const void *w,
                    size_t w_stride, int r0, int r1, const void *x, size_t x_stride, int nx,
                    float *y, size_t y_stride);

/* ---- AVX2 (+FMA, F16C) ---- */
/* F32 / F16 / BF16 in the reference summation orders (quants.h): the same
 * bits as the scalar *_ref and the AVX-512 functions of the same name. */
void tt_vec_dot_f32_avx2(int n, float *s, const void *w, const void *x);
void tt_vec_dot_f16_avx2(int n, float *s, const void *w, const void *x);
void tt_vec_dot_bf16_avx2(int n, float *s, const void *w, const void *x);
void tt_vec_dot_f32_ex_avx2(int n_valid, int n_simd, float *s, const void *w, const void *x);
void tt_vec_dot_f16_ex_avx2(int n_valid, int n_simd, float *s, const void *w, const void *x);
void tt_mat_dot_f32_avx2(int n, float *s, const void *w, const void *x);
void tt_mat_dot_f16_avx2(int n, float *s, const void *w, const void *x);
void tt_mat_dot_bf16_avx2(int n, float *s, const void *w, const void *x);
void tt_vec_dot_q8_0_q8_0_avx2(int n, float *s, const void *w, const void *x);
void tt_vec_dot_q4_0_q8_0_avx2(int n, float *s, const void *w, const void *x);
void tt_vec_dot_q5_0_q8_0_avx2(int n, float *s, const void *w, const void *x);
void tt_vec_dot_iq4_nl_q8_0_avx2(int n, float *s, const void *w, const void *x);
void tt_vec_dot_q4_1_q8_1_avx2(int n, float *s, const void *w, const void *x);
void tt_vec_dot_q5_1_q8_1_avx2(int n, float *s, const void *w, const void *x);
void tt_vec_dot_q4_K_q8_K_avx2(int n, float *s, const void *w, const void *x);
void tt_vec_dot_q5_K_q8_K_avx2(int n, float *s, const void *w, const void *x);
void tt_vec_dot_q6_K_q8_K_avx2(int n, float *s, const void *w, const void *x);
void tt_vec_dot_iq4_xs_q8_K_avx2(int n, float *s, const void *w, const void *x);
void tt_vec_dot_q2_K_q8_K_avx2(int n, float *s, const void *w, const void *x);
void tt_vec_dot_q3_K_q8_K_avx2(int n, float *s, const void *w, const void *x);
/* Activation quantizers: same bytes as the scalar tt_from_float_* for
 * finite input (F16: NaN payloads may differ; Q8_0/Q8_K: a NaN in a block
 * gives different, meaningless bytes than the scalar code, never a fault). */
void tt_from_float_q8_0_avx2(const float *src, void *dst, int64_t n);
void tt_from_float_q8_K_avx2(const float *src, void *dst, int64_t n);
void tt_from_float_f16_avx2(const float *src, void *dst, int64_t n);
void tt_from_float_bf16_avx2(const float *src, void *dst, int64_t n);

/* ---- AVX-512 (F+BW+VL+DQ) ---- */
void tt_vec_dot_f32_avx512(int n, float *s, const void *w, const void *x);
void tt_vec_dot_f16_avx512(int n, float *s, const void *w, const void *x);
/* 1 x 1 kernel of the F16 tiles: the matrix order, as tt_mat_dot_f16_*. */
void tt_vec_dot_f16t_avx512(int n, float *s, const void *w, const void *x);
void tt_vec_dot_bf16_avx512(int n, float *s, const void *w, const void *x);
void tt_vec_dot_f32_ex_avx512(int n_valid, int n_simd, float *s, const void *w, const void *x);
void tt_vec_dot_f16_ex_avx512(int n_valid, int n_simd, float *s, const void *w, const void *x);
void tt_mat_dot_f32_avx512(int n, float *s, const void *w, const void *x);
void tt_mat_dot_f16_avx512(int n, float *s, const void *w, const void *x);
void tt_mat_dot_bf16_avx512(int n, float *s, const void *w, const void *x);
void tt_vec_dot_q8_0_q8_0_avx512(int n, float *s, const void *w, const void *x);
void tt_vec_dot_q4_0_q8_0_avx512(int n, float *s, const void *w, const void *x);
void tt_vec_dot_q5_0_q8_0_avx512(int n, float *s, const void *w, const void *x);
void tt_vec_dot_iq4_nl_q8_0_avx512(int n, float *s, const void *w, const void *x);
void tt_vec_dot_q4_K_q8_K_avx512(int n, float *s, const void *w, const void *x);
void tt_vec_dot_q5_K_q8_K_avx512(int n, float *s, const void *w, const void *x);
void tt_vec_dot_q6_K_q8_K_avx512(int n, float *s, const void *w, const void *x);
/* The 32-value-block kernels with VPDPBUSD for the u8 x s8 dot products
 * (AVX512-VNNI); bit-identical to the ones above. */
void tt_vec_dot_q8_0_q8_0_avx512vnni(int n, float *s, const void *w, const void *x);
void tt_vec_dot_q4_0_q8_0_avx512vnni(int n, float *s, const void *w, const void *x);
void tt_vec_dot_q5_0_q8_0_avx512vnni(int n, float *s, const void *w, const void *x);
void tt_vec_dot_iq4_nl_q8_0_avx512vnni(int n, float *s, const void *w, const void *x);
void tt_from_float_q8_0_avx512(const float *src, void *dst, int64_t n);
void tt_from_float_q8_K_avx512(const float *src, void *dst, int64_t n);
void tt_from_float_f16_avx512(const float *src, void *dst, int64_t n);

/* Hooks called by tt_init() (types.c holds weak empty defaults): overwrite
 * the rows' vec_dot / from_float with this family's kernels. */
void tt_install_avx2(tt_traits *table);
void tt_install_avx512(tt_traits *table);

#endif
