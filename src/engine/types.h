/*
 * types — the tensor-type table. One row per GGML tensor type describes its
 * block layout and points at its conversion and dot-product kernels; every
 * other file looks a type up here instead of switching on it.
 *
 * Type ids are GGML's (they appear in GGUF files). Kernels are chosen once,
 * by tt_init(), from the CPU features (scalar reference, AVX2, AVX-512);
 * CONFAB_CPU=scalar|avx2 caps the choice. Every fast kernel is tested
 * against the scalar one.
 */
#ifndef CONFAB_ENGINE_TYPES_H
#define CONFAB_ENGINE_TYPES_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    TT_F32 = 0,
    TT_F16 = 1,
    TT_Q4_0 = 2,
    TT_Q4_1 = 3,
    TT_Q5_0 = 6,
    TT_Q5_1 = 7,
    TT_Q8_0 = 8,
    TT_Q8_1 = 9,
    TT_Q2_K = 10,
    TT_Q3_K = 11,
    TT_Q4_K = 12,
    TT_Q5_K = 13,
    TT_Q6_K = 14,
    TT_Q8_K = 15,
    TT_IQ4_NL = 20,
    TT_IQ4_XS = 23,
    TT_BF16 = 30,
    TT_COUNT = 40
} tt_type;

/* Converts N values (a multiple of blck) from a type to float32 and back. */
typedef void (*tt_to_float_fn)(const void *src, float *dst, int64_t n);
typedef void (*tt_from_float_fn)(const float *src, void *dst, int64_t n);
/* Dot product of N values: a row of weights W (this type) with activations
 * X already converted to this row's vec_dot_type. Result into *S. */
typedef void (*tt_vec_dot_fn)(int n, float *s, const void *w, const void *x);
/* vec_dot over N_VALID values, as if zero-padded: see quants.h. */
typedef void (*tt_vec_dot_ex_fn)(int n_valid, int n_simd, float *s, const void *w, const void *x);

typedef struct {
    const char *name;            /* "Q4_K" */
    int blck;                    /* values per block (1 for F32/F16/BF16) */
    size_t bytes;                /* bytes per block */
    int quantized;               /* 1 for block-quantized types */
    tt_to_float_fn to_float;     /* NULL when unsupported */
    tt_from_float_fn from_float; /* quantizer; NULL when unsupported */
    tt_type vec_dot_type;        /* type the activations are converted to */
    tt_vec_dot_fn vec_dot;       /* NULL when unsupported */
    /* F32/F16/BF16 only (NULL otherwise): the matrix summation order, used
     * for rows of multi-token chunks when N % mat_blk == 0 (quants.h), and
     * the vector order with zero padding (attention). */
    tt_vec_dot_fn mat_dot;
    int mat_blk;
    tt_vec_dot_ex_fn vec_dot_ex;
} tt_traits;

/* Chooses kernels for this CPU. Idempotent and thread-safe; tt_get() calls it. */
void tt_init(void);
/* Row of the table for TYPE, or NULL for unknown ids. */
const tt_traits *tt_get(int type);
/* Looks a type up by name ("q4_k" case-insensitive); -1 when unknown. */
int tt_from_name(const char *name);
/* Bytes for N values of TYPE (N a multiple of the block size); 0 on error. */
size_t tt_row_size(int type, int64_t n);
/* Matrix product over a range of weight rows, the engine's one hot loop:
 *   Y[j][r] = dot(W row r, X row j)   for r in [r0, r1), j in [0, nx)
 * W: rows of TYPE, each W_STRIDE bytes, n values per row.
 * X: nx activation rows already converted to tt_get(TYPE)->vec_dot_type
 *    (see tt_quantize_act), each X_STRIDE bytes.
 * Y: float, row j starts at Y + j * Y_STRIDE (in floats).
 * Threads split work by row ranges; the result of each Y element does not
 * depend on how rows are split. Implemented in matmul.c with tiled fast paths. */
void tt_matmul(int type, int n, const void *w, size_t w_stride, int r0, int r1, const void *x,
               size_t x_stride, int nx, float *y, size_t y_stride);
/* tt_matmul in the vector order (vec_dot) for every row: the rows of
 * one-token chunks. Same as tt_matmul for types with one order. */
void tt_matmul_vec(int type, int n, const void *w, size_t w_stride, int r0, int r1, const void *x,
                   size_t x_stride, int nx, float *y, size_t y_stride);

/* Converts N floats of one activation row to the vec_dot_type of weight
 * TYPE into OUT (tt_row_size(vec_dot_type, n) bytes). */
void tt_quantize_act(int type, const float *x, void *out, int n);

/* Name of the kernel family in use: "scalar", "avx2" or "avx512". */
const char *tt_kernel_family(void);

#endif
