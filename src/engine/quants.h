/*
 * quants — the scalar reference kernels of every tensor type: to_float
 * (dequantization), from_float (quantization) and vec_dot. types.c puts
 * them in the type table; SIMD kernels (quants_avx2.c, quants_avx512.c) are
 * tested against these, which define what "correct" means.
 *
 * Conventions (as types.h): N is the number of values, a multiple of the
 * type's block size; vec_dot(n, s, w, x) writes dot(row W, row X) into *S
 * where X is already in the weight type's vec_dot_type.
 * Dequantization is bit-exact with GGML's reference; dot products add in
 * the same order as GGML's scalar code (integer sums per block, then float).
 */
#ifndef CONFAB_ENGINE_QUANTS_H
#define CONFAB_ENGINE_QUANTS_H

#include <stdint.h>

/* ---- to_float ---- */
void tt_to_float_f32(const void *src, float *dst, int64_t n);
void tt_to_float_f16(const void *src, float *dst, int64_t n);
void tt_to_float_bf16(const void *src, float *dst, int64_t n);
void tt_to_float_q4_0(const void *src, float *dst, int64_t n);
void tt_to_float_q4_1(const void *src, float *dst, int64_t n);
void tt_to_float_q5_0(const void *src, float *dst, int64_t n);
void tt_to_float_q5_1(const void *src, float *dst, int64_t n);
void tt_to_float_q8_0(const void *src, float *dst, int64_t n);
void tt_to_float_q8_1(const void *src, float *dst, int64_t n);
void tt_to_float_q2_K(const void *src, float *dst, int64_t n);
void tt_to_float_q3_K(const void *src, float *dst, int64_t n);
void tt_to_float_q4_K(const void *src, float *dst, int64_t n);
void tt_to_float_q5_K(const void *src, float *dst, int64_t n);
void tt_to_float_q6_K(const void *src, float *dst, int64_t n);
void tt_to_float_q8_K(const void *src, float *dst, int64_t n);
void tt_to_float_iq4_nl(const void *src, float *dst, int64_t n);
void tt_to_float_iq4_xs(const void *src, float *dst, int64_t n);

/* ---- from_float: activations (round to nearest, as GGML) ---- */
void tt_from_float_f32(const float *src, void *dst, int64_t n);
void tt_from_float_f16(const float *src, void *dst, int64_t n);
void tt_from_float_bf16(const float *src, void *dst, int64_t n);
void tt_from_float_q8_0(const float *src, void *dst, int64_t n);
void tt_from_float_q8_1(const float *src, void *dst, int64_t n);
void tt_from_float_q8_K(const float *src, void *dst, int64_t n);

/* ---- from_float: weight quantizers (error-minimizing searches) ---- */
void tt_from_float_q4_0(const float *src, void *dst, int64_t n);
void tt_from_float_q4_1(const float *src, void *dst, int64_t n);
void tt_from_float_q5_0(const float *src, void *dst, int64_t n);
void tt_from_float_q5_1(const float *src, void *dst, int64_t n);
void tt_from_float_q2_K(const float *src, void *dst, int64_t n);
void tt_from_float_q3_K(const float *src, void *dst, int64_t n);
void tt_from_float_q4_K(const float *src, void *dst, int64_t n);
void tt_from_float_q5_K(const float *src, void *dst, int64_t n);
void tt_from_float_q6_K(const float *src, void *dst, int64_t n);
void tt_from_float_iq4_nl(const float *src, void *dst, int64_t n);
void tt_from_float_iq4_xs(const float *src, void *dst, int64_t n);

/* ---- F32 / F16 / BF16 dot products: the reference engine's two orders ----
 * Floating-point sums depend on their order, and the F16/BF16 rounding of
 * activations turns a last-bit difference into a visible one, so these
 * follow the orders of the reference engine (llama.cpp, AVX-512 build)
 * exactly, in every family (scalar, AVX2, AVX-512 give the same bits):
 *  - vector order (vec_dot; rows of one-token chunks, as ggml_vec_dot_*):
 *    F32/F16: four 16-lane FMA accumulators over 64-value steps, combined
 *    (a0+a2)+(a1+a3), then tt_reduce16; the rest one by one (F16: float
 *    products added in double; F32: products rounded and added to the
 *    float sum in order, except the last n % 8, which are FMAs into it:
 *    the reference's leftover loop as its compiler vectorised it).
 *    BF16: two 16-lane accumulators over 64-value steps (values 0-31 and
 *    32-63; lane l takes pair 2l+1 then 2l, as VDPBF16PS), each reduced and
 *    added in double, the rest one by one in double.
 *  - matrix order (mat_dot; rows of multi-token chunks, as tinyBLAS):
 *    one 16-lane FMA accumulator (value i in lane i mod 16; BF16 in pairs
 *    over 32-value steps), then tt_reduce16. Values past N act as zeros.
 * tt_reduce16 is the tree of _mm512_reduce_add_ps: lanes l and l+8, then
 * l and l+4, then (0+2) + (1+3). */
float tt_reduce16(const float *s);
/* Vector order where the reference pads the row with zeros (to a multiple
 * of 32): values [0, N_SIMD) go through the accumulators (those at or past
 * N_VALID are zeros, not read), [N_SIMD, N_VALID) one by one (F32: all
 * rounded products, the fused last n % 8 being padding). vec_dot(n) is
 * ex(n, n & ~63) but for that F32 tail. */
void tt_vec_dot_f32_ex_ref(int n_valid, int n_simd, float *s, const void *w, const void *x);
void tt_vec_dot_f16_ex_ref(int n_valid, int n_simd, float *s, const void *w, const void *x);
void tt_mat_dot_f32_ref(int n, float *s, const void *w, const void *x);
void tt_mat_dot_f16_ref(int n, float *s, const void *w, const void *x);
void tt_mat_dot_bf16_ref(int n, float *s, const void *w, const void *x);

/* ---- vec_dot: weights (first type) x activations (second type) ---- */
void tt_vec_dot_f32_ref(int n, float *s, const void *w, const void *x);
void tt_vec_dot_f16_ref(int n, float *s, const void *w, const void *x);
void tt_vec_dot_bf16_ref(int n, float *s, const void *w, const void *x);
void tt_vec_dot_q4_0_q8_0_ref(int n, float *s, const void *w, const void *x);
void tt_vec_dot_q4_1_q8_1_ref(int n, float *s, const void *w, const void *x);
void tt_vec_dot_q5_0_q8_0_ref(int n, float *s, const void *w, const void *x);
void tt_vec_dot_q5_1_q8_1_ref(int n, float *s, const void *w, const void *x);
void tt_vec_dot_q8_0_q8_0_ref(int n, float *s, const void *w, const void *x);
void tt_vec_dot_iq4_nl_q8_0_ref(int n, float *s, const void *w, const void *x);
void tt_vec_dot_q2_K_q8_K_ref(int n, float *s, const void *w, const void *x);
void tt_vec_dot_q3_K_q8_K_ref(int n, float *s, const void *w, const void *x);
void tt_vec_dot_q4_K_q8_K_ref(int n, float *s, const void *w, const void *x);
void tt_vec_dot_q5_K_q8_K_ref(int n, float *s, const void *w, const void *x);
void tt_vec_dot_q6_K_q8_K_ref(int n, float *s, const void *w, const void *x);
void tt_vec_dot_iq4_xs_q8_K_ref(int n, float *s, const void *w, const void *x);

#endif
