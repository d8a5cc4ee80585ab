/*
 * vexp — e^x and SiLU the way the reference engine computes them, so that
 * softmax weights and SwiGLU activations match it to the last bit.
 *
 * llama.cpp's CPU backend evaluates e^x in softmax and SiLU with a 16-lane
 * polynomial approximation (ARM optimized-routines' expf as ggml adapted
 * it, about 1.5 ulp from e^x), not with the C library's expf; its SiLU uses
 * it for whole 16-value steps of a row and expf for the rest. The
 * polynomial is evaluated with FMAs, so the scalar version here (fmaf) and
 * the AVX-512 one give the same bits; vx_* pick the fastest at run time.
 */
#ifndef CONFAB_ENGINE_VEXP_H
#define CONFAB_ENGINE_VEXP_H

/* The approximation for one value (scalar reference). */
float vx_expf(float x);
/* Y[i] = vx_expf(X[i] - SUB) for i < N. Y may be X. */
void vx_exp_sub(float *y, const float *x, float sub, int n);
/* In place over one row of N values: x / (1 + e^-x), with vx_expf for
 * whole 16-value steps from the row start and the C library's expf for
 * the last N % 16 values. */
void vx_silu_row(float *x, int n);

/* The AVX-512 versions (quants_avx512.c): call only when cpu_has_avx512(). */
void vx_exp_sub_avx512(float *y, const float *x, float sub, int n);
void vx_silu16_avx512(float *x, int n16);

#endif
