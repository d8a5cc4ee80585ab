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
