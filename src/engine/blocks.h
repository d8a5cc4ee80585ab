/*
 * blocks — the byte layouts of GGML's quantized blocks, exactly as they lie in
 * GGUF files, and the half-precision conversions they use.
 *
 * A row of a quantized tensor is a sequence of blocks; each block holds `QK`
 * values as small integers plus one or two half-precision scales. K-quants
 * group 256 values in a super-block with 6-bit (or 4/8-bit) sub-block
 * scales. Layouts are fixed by the file format: never reorder fields.
 */
#ifndef CONFAB_ENGINE_BLOCKS_H
#define CONFAB_ENGINE_BLOCKS_H

#include <stdint.h>
#include <string.h>

typedef uint16_t cf_fp16; /* IEEE 754 binary16 bits */
typedef uint16_t cf_bf16; /* bfloat16 bits */

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK8_1 32
#define QK4_NL 32
#define QK_K 256
#define K_SCALE_SIZE 12

typedef struct {
    cf_fp16 d;
    uint8_t qs[QK4_0 / 2];
} block_q4_0;
typedef struct {
    cf_fp16 d, m;
    uint8_t qs[QK4_1 / 2];
} block_q4_1;
typedef struct {
    cf_fp16 d;
    uint8_t qh[4];
    uint8_t qs[QK5_0 / 2];
} block_q5_0;
typedef struct {
    cf_fp16 d, m;
    uint8_t qh[4];
    uint8_t qs[QK5_1 / 2];
} block_q5_1;
typedef struct {
    cf_fp16 d;
    int8_t qs[QK8_0];
} block_q8_0;
typedef struct {
    cf_fp16 d, s;
    int8_t qs[QK8_1];
} block_q8_1; /* s = d * sum(qs) */

typedef struct {
    uint8_t scales[QK_K / 16];
    uint8_t qs[QK_K / 4];
    cf_fp16 d, dmin;
} block_q2_K;
typedef struct {
    uint8_t hmask[QK_K / 8];
    uint8_t qs[QK_K / 4];
    uint8_t scales[12];
    cf_fp16 d;
} block_q3_K;
typedef struct {
    cf_fp16 d, dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qs[QK_K / 2];
} block_q4_K;
typedef struct {
    cf_fp16 d, dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} block_q5_K;
typedef struct {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    cf_fp16 d;
} block_q6_K;
typedef struct {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];
} block_q8_K;

typedef struct {
    cf_fp16 d;
    uint8_t qs[QK4_NL / 2];
} block_iq4_nl;
typedef struct {
    cf_fp16 d;
    uint16_t scales_h;
    uint8_t scales_l[QK_K / 64];
    uint8_t qs[QK_K / 2];
} block_iq4_xs;

_Static_assert(sizeof(block_q4_0) == 18, "block_q4_0 layout");
_Static_assert(sizeof(block_q4_1) == 20, "block_q4_1 layout");
_Static_assert(sizeof(block_q5_0) == 22, "block_q5_0 layout");
_Static_assert(sizeof(block_q5_1) == 24, "block_q5_1 layout");
_Static_assert(sizeof(block_q8_0) == 34, "block_q8_0 layout");
_Static_assert(sizeof(block_q8_1) == 36, "block_q8_1 layout");
_Static_assert(sizeof(block_q2_K) == 84, "block_q2_K layout");
_Static_assert(sizeof(block_q3_K) == 110, "block_q3_K layout");
_Static_assert(sizeof(block_q4_K) == 144, "block_q4_K layout");
_Static_assert(sizeof(block_q5_K) == 176, "block_q5_K layout");
_Static_assert(sizeof(block_q6_K) == 210, "block_q6_K layout");
_Static_assert(sizeof(block_q8_K) == 292, "block_q8_K layout");
_Static_assert(sizeof(block_iq4_nl) == 18, "block_iq4_nl layout");
_Static_assert(sizeof(block_iq4_xs) == 136, "block_iq4_xs layout");

/* The non-linear 4-bit codebook of IQ4_NL / IQ4_XS. */
static const int8_t kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                         1,    13,   25,  38,  53,  69,  89,  113};

/* ---- half precision ---- */

static inline float cf_fp32_from_bits(uint32_t w) {
    float f;
    memcpy(&f, &w, 4);
    return f;
}
static inline uint32_t cf_fp32_to_bits(float f) {
    uint32_t w;
    memcpy(&w, &f, 4);
    return w;
}

/* binary16 -> float, exact for every input (subnormals, inf, NaN). */
static inline float cf_fp16_to_fp32(cf_fp16 h) {
    const uint32_t w = (uint32_t)h << 16;
    const uint32_t sign = w & 0x80000000u;
    const uint32_t two_w = w + w;
    const uint32_t exp_offset = 0xE0u << 23;
    const float exp_scale = 0x1.0p-112f;
    const float normalized = cf_fp32_from_bits((two_w >> 4) + exp_offset) * exp_scale;
    const uint32_t magic_mask = 126u << 23;
    const float magic_bias = 0.5f;
    const float denormalized = cf_fp32_from_bits((two_w >> 17) | magic_mask) - magic_bias;
    const uint32_t denormalized_cutoff = 1u << 27;
    const uint32_t result = sign | (two_w < denormalized_cutoff ? cf_fp32_to_bits(denormalized)
                                                                : cf_fp32_to_bits(normalized));
    return cf_fp32_from_bits(result);
}

/* float -> binary16, round to nearest even (matches F16C's rounding). */
static inline cf_fp16 cf_fp32_to_fp16(float f) {
    const float scale_to_inf = 0x1.0p+112f;
    const float scale_to_zero = 0x1.0p-110f;
    float base = (f < 0 ? -f : f) * scale_to_inf * scale_to_zero;
    const uint32_t w = cf_fp32_to_bits(f);
    const uint32_t shl1_w = w + w;
    const uint32_t sign = w & 0x80000000u;
    uint32_t bias = shl1_w & 0xFF000000u;
    if (bias < 0x71000000u) bias = 0x71000000u;
    base = cf_fp32_from_bits((bias >> 1) + 0x07800000u) + base;
    const uint32_t bits = cf_fp32_to_bits(base);
    const uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
    const uint32_t mantissa_bits = bits & 0x00000FFFu;
    const uint32_t nonsign = exp_bits + mantissa_bits;
    return (cf_fp16)((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

static inline float cf_bf16_to_fp32(cf_bf16 h) { return cf_fp32_from_bits((uint32_t)h << 16); }

/* float -> bfloat16, round to nearest even; NaN stays NaN. */
static inline cf_bf16 cf_fp32_to_bf16(float f) {
    uint32_t u = cf_fp32_to_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (cf_bf16)((u >> 16) | 64);
    return (cf_bf16)((u + (0x7fffu + ((u >> 16) & 1))) >> 16);
}

#endif
