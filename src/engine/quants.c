/*
 * quants — scalar reference kernels for every tensor type (see quants.h).
 *
 * Three families, one section each:
 *
 *  - to_float: dequantization, written to give GGML's results bit for bit
 *    (same expressions in the same order: `d * sc * q` is not `d * (sc*q)`
 *    in float). Tested against the reference engine's bytes.
 *  - from_float: activations are rounded to 8 bits the way GGML's reference
 *    code does (Q8_0/Q8_1: scale amax/127, roundf; Q8_K: -127/max and
 *    round-half-even with bsums per 16 values), so dot products see the same
 *    integers as the reference engine. (GGML's AVX2 Q8_0/Q8_1 path uses
 *    127/amax and round-half-even instead; it differs only at exact ties.)
 *    Weight quantizers port the search algorithms of GGML's reference
 *    quantizers (no importance matrix) and reproduce its bytes exactly:
 *    Q4_0/Q5_0 take the scale from the signed maximum, Q4_1/Q5_1 from the
 *    range; Q2_K/Q4_K/Q5_K fit a scale and a minimum per 16/32 values with a
 *    weighted least-squares search (kq_make_qkx2) and quantize the sub-block
 *    scales to 4/6 bits; Q3_K (kq_make_q3) and Q6_K (kq_make_qx) fit signed
 *    scales per 16 values; IQ4_NL/IQ4_XS fit a scale per 32 values to the
 *    non-linear codebook (iq4_quantize_block).
 *  - vec_dot: weights x activations. Each block's products are summed in
 *    integers and scaled once in float; K-quants sum a whole super-block in
 *    integers (exact) before one float multiply. F32/F16/BF16 accumulate in
 *    double. The SIMD kernels must agree with these within float rounding.
 *
 * Every function takes N values, a multiple of the block size (the caller's
 * contract, checked by the table's users: gguf.c validates row lengths).
 */
#include "engine/quants.h"

#include "engine/blocks.h"

#include <math.h>
#include <string.h>

#define KQ_GROUP_MAX_EPS 1e-15f

static inline float h2f(cf_fp16 h) { return cf_fp16_to_fp32(h); }
static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int imax(int a, int b) { return a > b ? a : b; }

/* Round half to even via the float adder (as GGML's nearest_int); valid for
 * |v| <= 4194303, which every caller guarantees for finite input. */
static inline int nearest_int(float v) {
    float f = v + 12582912.f;
    int32_t i;
    memcpy(&i, &f, 4);
    return (i & 0x007fffff) - 0x00400000;
}

/* 6-bit scale and min J of a Q4_K/Q5_K super-block, packed in 12 bytes. */
static inline void get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}

/* Unpacks Q3_K's sixteen 6-bit scales (biased by 32) from 12 bytes. */
static inline void q3k_scales(const uint8_t *packed, int8_t out[16]) {
    const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
    uint32_t aux[4];
    memcpy(aux, packed, 12);
    uint32_t tmp = aux[2];
    aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
    aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
    aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
    aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
    memcpy(out, aux, 16);
}

/* ================================================================== to_float */

void tt_to_float_f32(const void *src, float *dst, int64_t n) { memcpy(dst, src, (size_t)n * 4); }

void tt_to_float_f16(const void *src, float *dst, int64_t n) {
    const cf_fp16 *x = src;
    for (int64_t i = 0; i < n; i++)
        dst[i] = cf_fp16_to_fp32(x[i]);
}

void tt_to_float_bf16(const void *src, float *dst, int64_t n) {
    const cf_bf16 *x = src;
    for (int64_t i = 0; i < n; i++)
        dst[i] = cf_bf16_to_fp32(x[i]);
}

void tt_to_float_q4_0(const void *src, float *y, int64_t n) {
    const block_q4_0 *x = src;
    for (int64_t i = 0; i < n / QK4_0; i++, y += QK4_0) {
        const float d = h2f(x[i].d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            y[j] = (float)((x[i].qs[j] & 0x0F) - 8) * d;
            y[j + QK4_0 / 2] = (float)((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

void tt_to_float_q4_1(const void *src, float *y, int64_t n) {
    const block_q4_1 *x = src;
    for (int64_t i = 0; i < n / QK4_1; i++, y += QK4_1) {
        const float d = h2f(x[i].d), m = h2f(x[i].m);
        for (int j = 0; j < QK4_1 / 2; j++) {
            y[j] = (float)(x[i].qs[j] & 0x0F) * d + m;
            y[j + QK4_1 / 2] = (float)(x[i].qs[j] >> 4) * d + m;
        }
    }
}

void tt_to_float_q5_0(const void *src, float *y, int64_t n) {
    const block_q5_0 *x = src;
    for (int64_t i = 0; i < n / QK5_0; i++, y += QK5_0) {
        const float d = h2f(x[i].d);
        uint32_t qh;
        memcpy(&qh, x[i].qh, 4);
        for (int j = 0; j < QK5_0 / 2; j++) {
            const uint8_t xh0 = (uint8_t)(((qh >> (j + 0)) << 4) & 0x10);
            const uint8_t xh1 = (uint8_t)((qh >> (j + 12)) & 0x10);
            y[j] = (float)(((x[i].qs[j] & 0x0F) | xh0) - 16) * d;
            y[j + QK5_0 / 2] = (float)(((x[i].qs[j] >> 4) | xh1) - 16) * d;
        }
    }
}

void tt_to_float_q5_1(const void *src, float *y, int64_t n) {
    const block_q5_1 *x = src;
    for (int64_t i = 0; i < n / QK5_1; i++, y += QK5_1) {
        const float d = h2f(x[i].d), m = h2f(x[i].m);
        uint32_t qh;
        memcpy(&qh, x[i].qh, 4);
        for (int j = 0; j < QK5_1 / 2; j++) {
            const uint8_t xh0 = (uint8_t)(((qh >> (j + 0)) << 4) & 0x10);
            const uint8_t xh1 = (uint8_t)((qh >> (j + 12)) & 0x10);
            y[j] = (float)((x[i].qs[j] & 0x0F) | xh0) * d + m;
            y[j + QK5_1 / 2] = (float)((x[i].qs[j] >> 4) | xh1) * d + m;
        }
    }
}

void tt_to_float_q8_0(const void *src, float *y, int64_t n) {
    const block_q8_0 *x = src;
    for (int64_t i = 0; i < n / QK8_0; i++, y += QK8_0) {
        const float d = h2f(x[i].d);
        for (int j = 0; j < QK8_0; j++)
            y[j] = (float)x[i].qs[j] * d;
    }
}

void tt_to_float_q8_1(const void *src, float *y, int64_t n) {
    const block_q8_1 *x = src;
    for (int64_t i = 0; i < n / QK8_1; i++, y += QK8_1) {
        const float d = h2f(x[i].d);
        for (int j = 0; j < QK8_1; j++)
            y[j] = (float)x[i].qs[j] * d;
    }
}

void tt_to_float_q2_K(const void *src, float *y, int64_t n) {
    const block_q2_K *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = h2f(x[i].d), min = h2f(x[i].dmin);
        const uint8_t *q = x[i].qs;
        int is = 0;
        for (int k = 0; k < QK_K; k += 128) {
            int shift = 0;
            for (int j = 0; j < 4; j++) {
                uint8_t sc = x[i].scales[is++];
                float dl = d * (float)(sc & 0xF), ml = min * (float)(sc >> 4);
                for (int l = 0; l < 16; l++)
                    *y++ = dl * (float)((int8_t)((q[l] >> shift) & 3)) - ml;
                sc = x[i].scales[is++];
                dl = d * (float)(sc & 0xF);
                ml = min * (float)(sc >> 4);
                for (int l = 0; l < 16; l++)
                    *y++ = dl * (float)((int8_t)((q[l + 16] >> shift) & 3)) - ml;
                shift += 2;
            }
            q += 32;
        }
    }
}

void tt_to_float_q3_K(const void *src, float *y, int64_t n) {
    const block_q3_K *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d_all = h2f(x[i].d);
        const uint8_t *q = x[i].qs, *hm = x[i].hmask;
        int8_t scales[16];
        q3k_scales(x[i].scales, scales);
        uint8_t m = 1;
        int is = 0;
        for (int k = 0; k < QK_K; k += 128) {
            int shift = 0;
            for (int j = 0; j < 4; j++) {
                float dl = d_all * (float)(scales[is++] - 32);
                for (int l = 0; l < 16; l++)
                    *y++ =
                        dl * (float)((int8_t)((q[l + 0] >> shift) & 3) - ((hm[l + 0] & m) ? 0 : 4));
                dl = d_all * (float)(scales[is++] - 32);
                for (int l = 0; l < 16; l++)
                    *y++ = dl *
                           (float)((int8_t)((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4));
                shift += 2;
                m = (uint8_t)(m << 1);
            }
            q += 32;
        }
    }
}

void tt_to_float_q4_K(const void *src, float *y, int64_t n) {
    const block_q4_K *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const uint8_t *q = x[i].qs;
        const float d = h2f(x[i].d), min = h2f(x[i].dmin);
        int is = 0;
        uint8_t sc, m;
        for (int j = 0; j < QK_K; j += 64) {
            get_scale_min_k4(is + 0, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            get_scale_min_k4(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; l++)
                *y++ = d1 * (float)(q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++)
                *y++ = d2 * (float)(q[l] >> 4) - m2;
            q += 32;
            is += 2;
        }
    }
}

void tt_to_float_q5_K(const void *src, float *y, int64_t n) {
    const block_q5_K *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const uint8_t *ql = x[i].qs, *qh = x[i].qh;
        const float d = h2f(x[i].d), min = h2f(x[i].dmin);
        int is = 0;
        uint8_t sc, m, u1 = 1, u2 = 2;
        for (int j = 0; j < QK_K; j += 64) {
            get_scale_min_k4(is + 0, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            get_scale_min_k4(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; l++)
                *y++ = d1 * (float)((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++)
                *y++ = d2 * (float)((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
            ql += 32;
            is += 2;
            u1 = (uint8_t)(u1 << 2);
            u2 = (uint8_t)(u2 << 2);
        }
    }
}

void tt_to_float_q6_K(const void *src, float *y, int64_t n) {
    const block_q6_K *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = h2f(x[i].d);
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        for (int k = 0; k < QK_K; k += 128) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int8_t q1 = (int8_t)(((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
                const int8_t q2 = (int8_t)(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
                const int8_t q3 = (int8_t)(((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                const int8_t q4 = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
                y[l + 0] = d * sc[is + 0] * q1;
                y[l + 32] = d * sc[is + 2] * q2;
                y[l + 64] = d * sc[is + 4] * q3;
                y[l + 96] = d * sc[is + 6] * q4;
            }
            y += 128;
            ql += 64;
            qh += 32;
            sc += 8;
        }
    }
}

void tt_to_float_q8_K(const void *src, float *y, int64_t n) {
    const block_q8_K *x = src;
    for (int64_t i = 0; i < n / QK_K; i++)
        for (int j = 0; j < QK_K; j++)
            *y++ = x[i].d * (float)x[i].qs[j];
}

void tt_to_float_iq4_nl(const void *src, float *y, int64_t n) {
    const block_iq4_nl *x = src;
    for (int64_t i = 0; i < n / QK4_NL; i++, y += QK4_NL) {
        const float d = h2f(x[i].d);
        for (int j = 0; j < QK4_NL / 2; j++) {
            y[j] = d * (float)kvalues_iq4nl[x[i].qs[j] & 0xf];
            y[j + QK4_NL / 2] = d * (float)kvalues_iq4nl[x[i].qs[j] >> 4];
        }
    }
}

/* IQ4_XS: 6-bit scale per 32 values: 4 low bits in scales_l, 2 high in scales_h. */
static inline int iq4xs_scale(const block_iq4_xs *b, int ib) {
    return ((b->scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((b->scales_h >> 2 * ib) & 3) << 4);
}

void tt_to_float_iq4_xs(const void *src, float *y, int64_t n) {
    const block_iq4_xs *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const uint8_t *qs = x[i].qs;
        const float d = h2f(x[i].d);
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const float dl = d * (float)(iq4xs_scale(&x[i], ib) - 32);
            for (int j = 0; j < 16; j++) {
                y[j + 0] = dl * (float)kvalues_iq4nl[qs[j] & 0xf];
                y[j + 16] = dl * (float)kvalues_iq4nl[qs[j] >> 4];
            }
            y += 32;
            qs += 16;
        }
    }
}

/* ================================================================== from_float: activations */

void tt_from_float_f32(const float *src, void *dst, int64_t n) { memcpy(dst, src, (size_t)n * 4); }

void tt_from_float_f16(const float *src, void *dst, int64_t n) {
    cf_fp16 *y = dst;
    for (int64_t i = 0; i < n; i++)
        y[i] = cf_fp32_to_fp16(src[i]);
}

void tt_from_float_bf16(const float *src, void *dst, int64_t n) {
    cf_bf16 *y = dst;
    for (int64_t i = 0; i < n; i++)
        y[i] = cf_fp32_to_bf16(src[i]);
}

void tt_from_float_q8_0(const float *x, void *dst, int64_t n) {
    block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / QK8_0; i++, x += QK8_0) {
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = cf_fp32_to_fp16(d);
        for (int j = 0; j < QK8_0; j++)
            y[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

void tt_from_float_q8_1(const float *x, void *dst, int64_t n) {
    block_q8_1 *y = dst;
    for (int64_t i = 0; i < n / QK8_1; i++, x += QK8_1) {
        float amax = 0.0f;
        for (int j = 0; j < QK8_1; j++)
            amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = cf_fp32_to_fp16(d);
        int sum = 0;
        for (int j = 0; j < QK8_1 / 2; j++) {
            y[i].qs[j] = (int8_t)roundf(x[j] * id);
            y[i].qs[QK8_1 / 2 + j] = (int8_t)roundf(x[QK8_1 / 2 + j] * id);
            sum += y[i].qs[j] + y[i].qs[QK8_1 / 2 + j];
        }
        y[i].s = cf_fp32_to_fp16((float)sum * d);
    }
}

void tt_from_float_q8_K(const float *x, void *dst, int64_t n) {
    block_q8_K *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float max = 0, amax = 0;
        for (int j = 0; j < QK_K; j++) {
            const float ax = fabsf(x[j]);
            if (ax > amax) {
                amax = ax;
                max = x[j];
            }
        }
        if (!amax) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < QK_K; j++)
            y[i].qs[j] = (int8_t)imin(127, nearest_int(iscale * x[j]));
        for (int j = 0; j < QK_K / 16; j++) {
            int sum = 0;
            for (int k = 0; k < 16; k++)
                sum += y[i].qs[j * 16 + k];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

/* ================================================================== from_float: weights */

/* Q4_1 / Q5_1: an offset (the block minimum) and a scale spanning the range. */
void tt_from_float_q4_1(const float *x, void *dst, int64_t n) {
    block_q4_1 *y = dst;
    for (int64_t i = 0; i < n / QK4_1; i++, x += QK4_1) {
        float min = x[0], max = x[0];
        for (int j = 1; j < QK4_1; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 15;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = cf_fp32_to_fp16(d);
        y[i].m = cf_fp32_to_fp16(min);
        for (int j = 0; j < QK4_1 / 2; j++) {
            const int xi0 = imax(0, imin(15, (int)((x[j] - min) * id + 0.5f)));
            const int xi1 = imax(0, imin(15, (int)((x[QK4_1 / 2 + j] - min) * id + 0.5f)));
            y[i].qs[j] = (uint8_t)(xi0 | (xi1 << 4));
        }
    }
}

void tt_from_float_q5_1(const float *x, void *dst, int64_t n) {
    block_q5_1 *y = dst;
    for (int64_t i = 0; i < n / QK5_1; i++, x += QK5_1) {
        float min = x[0], max = x[0];
        for (int j = 1; j < QK5_1; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 31;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = cf_fp32_to_fp16(d);
        y[i].m = cf_fp32_to_fp16(min);
        uint32_t qh = 0;
        for (int j = 0; j < QK5_1 / 2; j++) {
            const int xi0 = imax(0, imin(31, (int)((x[j] - min) * id + 0.5f)));
            const int xi1 = imax(0, imin(31, (int)((x[QK5_1 / 2 + j] - min) * id + 0.5f)));
            y[i].qs[j] = (uint8_t)((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
            qh |= ((uint32_t)(xi0 & 0x10) >> 4) << (j + 0);
            qh |= ((uint32_t)(xi1 & 0x10) >> 4) << (j + QK5_1 / 2);
        }
        memcpy(y[i].qh, &qh, 4);
    }
}

/* Q4_0 / Q5_0: the scale maps the signed extreme to -8 (-16), so the value
 * of largest magnitude is exact and the grid extends one step further on
 * the other side. */
void tt_from_float_q4_0(const float *x, void *dst, int64_t n) {
    block_q4_0 *y = dst;
    for (int64_t i = 0; i < n / QK4_0; i++, x += QK4_0) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK4_0; j++)
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        const float d = max / -8;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = cf_fp32_to_fp16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            const int xi0 = imax(0, imin(15, (int)(x[j] * id + 8.5f)));
            const int xi1 = imax(0, imin(15, (int)(x[QK4_0 / 2 + j] * id + 8.5f)));
            y[i].qs[j] = (uint8_t)(xi0 | (xi1 << 4));
        }
    }
}

void tt_from_float_q5_0(const float *x, void *dst, int64_t n) {
    block_q5_0 *y = dst;
    for (int64_t i = 0; i < n / QK5_0; i++, x += QK5_0) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK5_0; j++)
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        const float d = max / -16;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = cf_fp32_to_fp16(d);
        uint32_t qh = 0;
        for (int j = 0; j < QK5_0 / 2; j++) {
            const int xi0 = imax(0, imin(31, (int)(x[j] * id + 16.5f)));
            const int xi1 = imax(0, imin(31, (int)(x[QK5_0 / 2 + j] * id + 16.5f)));
            y[i].qs[j] = (uint8_t)((xi0 & 0x0F) | ((xi1 & 0x0F) << 4));
            qh |= ((uint32_t)(xi0 & 0x10) >> 4) << (j + 0);
            qh |= ((uint32_t)(xi1 & 0x10) >> 4) << (j + QK5_0 / 2);
        }
        memcpy(y[i].qh, &qh, 4);
    }
}

/* Fits x ~ scale * L + min (L in 0..nmax, min <= 0) minimizing the weighted
 * squared error (USE_MAD: absolute error): a first guess from the range,
 * then NSTEP+1 trial grids around it, each solved in closed form by
 * weighted least squares.
 * Returns the scale; *the_min = -min. L: (n,) levels, Laux: (n,) scratch. */
static float kq_make_qkx2(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                          float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                          int use_mad) {
    float min = x[0], max = x[0];
    float sum_w = weights[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.f;
    }
    float iscale = (float)nmax / (max - min);
    float scale = 1 / iscale;
    float best_mad = 0;
    for (int i = 0; i < n; i++) {
        const int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)imax(0, imin(nmax, l));
        const float diff = scale * L[i] + min - x[i];
        best_mad += weights[i] * (use_mad ? fabsf(diff) : diff * diff);
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            const int l = imax(0, imin(nmax, nearest_int(iscale * (x[i] - min))));
            Laux[i] = (uint8_t)l;
            const float w = weights[i];
            sum_l += w * (float)l;
            sum_l2 += w * (float)l * (float)l;
            sum_xl += w * (float)l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float mad = 0;
            for (int i = 0; i < n; i++) {
                const float diff = this_scale * Laux[i] + this_min - x[i];
                mad += weights[i] * (use_mad ? fabsf(diff) : diff * diff);
            }
            if (mad < best_mad) {
                memcpy(L, Laux, (size_t)n);
                best_mad = mad;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* Symmetric fit x ~ scale * (L - nmax), L in 0..2*nmax-1, weights x^2:
 * tries 19 grids around -nmax/max and keeps the best least-squares scale. */
static float kq_make_qx(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < KQ_GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = -(float)nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        const int l = imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i])));
        L[i] = (int8_t)(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -((float)nmax + 0.1f * (float)is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            const int l = imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i])));
            const float w = x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++)
                L[i] = (int8_t)(nmax + imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i]))));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Shared by Q4_K and Q5_K: fits 8 (scale, min) pairs per super-block, packs
 * them as 6-bit values into SCALES (12 bytes) with super-scales *D and *DMIN,
 * and requantizes L (256 levels in 0..nmax) against the packed values. */
static void kq_fit_k4(const float *x, int nmax, float rmin, int nstep, uint8_t *scales, cf_fp16 *d,
                      cf_fp16 *dmin, uint8_t *L) {
    float mins[QK_K / 32], sc[QK_K / 32], weights[32];
    uint8_t Laux[32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < QK_K / 32; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++)
            sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++)
            weights[l] = av_x + fabsf(x[32 * j + l]);
        sc[j] = kq_make_qkx2(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f,
                             nstep, 0);
        if (sc[j] > max_scale) max_scale = sc[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    memset(scales, 0, K_SCALE_SIZE);
    for (int j = 0; j < QK_K / 32; j++) {
        const int ls = imin(63, nearest_int(inv_scale * sc[j]));
        const int lm = imin(63, nearest_int(inv_min * mins[j]));
        if (j < 4) {
            scales[j] = (uint8_t)ls;
            scales[j + 4] = (uint8_t)lm;
        } else {
            scales[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
            scales[j - 4] |= (uint8_t)((ls >> 4) << 6);
            scales[j - 0] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    *d = cf_fp32_to_fp16(max_scale / 63.f);
    *dmin = cf_fp32_to_fp16(max_min / 63.f);
    for (int j = 0; j < QK_K / 32; j++) {
        uint8_t s, m;
        get_scale_min_k4(j, scales, &s, &m);
        const float dd = h2f(*d) * s;
        if (!dd) continue;
        const float dm = h2f(*dmin) * m;
        for (int ii = 0; ii < 32; ii++)
            L[32 * j + ii] = (uint8_t)imax(0, imin(nmax, nearest_int((x[32 * j + ii] + dm) / dd)));
    }
}

/* Symmetric fit for Q3_K: x ~ scale * L, L in -nmax..nmax-1, starting from
 * -nmax/max and then moving single values to other levels while that
 * improves the x^2-weighted least-squares fit (up to 5 passes).
 * L: (n,) levels stored + nmax. */
static float kq_make_q3(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    if (amax < KQ_GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    const float iscale = -(float)nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        const int l = imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i])));
        L[i] = (int8_t)l;
        const float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * (float)L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * (float)L[i] * (float)L[i];
                const int new_l = imax(-nmax, imin(nmax - 1, nearest_int(x[i] * sl2 / slx)));
                if (new_l != L[i]) {
                    slx += w * x[i] * (float)new_l;
                    sl2 += w * (float)new_l * (float)new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; i++)
        L[i] = (int8_t)(L[i] + nmax);
    return sumlx / suml2;
}

/* Q2_K: (scale, min) per 16 values fitted with absolute-error weights |x|,
 * both quantized to 4 bits against fp16 super-scales. */
void tt_from_float_q2_K(const float *x, void *dst, int64_t n) {
    block_q2_K *y = dst;
    const float q4scale = 15.f;
    uint8_t L[QK_K], Laux[16];
    float weights[16], mins[QK_K / 16], scales[QK_K / 16];
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < QK_K / 16; j++) {
            for (int l = 0; l < 16; l++)
                weights[l] = fabsf(x[16 * j + l]);
            scales[j] = kq_make_qkx2(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f,
                                     0.1f, 15, 1);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0) {
            const float iscale = q4scale / max_scale;
            for (int j = 0; j < QK_K / 16; j++)
                y[i].scales[j] = (uint8_t)nearest_int(iscale * scales[j]);
            y[i].d = cf_fp32_to_fp16(max_scale / q4scale);
        } else {
            memset(y[i].scales, 0, sizeof y[i].scales);
            y[i].d = cf_fp32_to_fp16(0.f);
        }
        if (max_min > 0) {
            const float iscale = q4scale / max_min;
            for (int j = 0; j < QK_K / 16; j++)
                y[i].scales[j] |= (uint8_t)(nearest_int(iscale * mins[j]) << 4);
            y[i].dmin = cf_fp32_to_fp16(max_min / q4scale);
        } else {
            y[i].dmin = cf_fp32_to_fp16(0.f);
        }
        for (int j = 0; j < QK_K / 16; j++) {
            const float d = h2f(y[i].d) * (float)(y[i].scales[j] & 0xF);
            if (!d) continue;
            const float dm = h2f(y[i].dmin) * (float)(y[i].scales[j] >> 4);
            for (int ii = 0; ii < 16; ii++)
                L[16 * j + ii] = (uint8_t)imax(0, imin(3, nearest_int((x[16 * j + ii] + dm) / d)));
        }
        for (int j = 0; j < QK_K; j += 128)
            for (int l = 0; l < 32; l++)
                y[i].qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) |
                                               (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
    }
}

/* Q3_K: a signed scale per 16 values (kq_make_q3), quantized to 6 bits
 * against an fp16 super-scale; values 3 bits (2 low + 1 in hmask). */
void tt_from_float_q3_K(const float *x, void *dst, int64_t n) {
    block_q3_K *y = dst;
    int8_t L[QK_K];
    float scales[QK_K / 16];
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float max_scale = 0, amax = 0;
        for (int j = 0; j < QK_K / 16; j++) {
            scales[j] = kq_make_q3(16, 4, x + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        memset(y[i].scales, 0, sizeof y[i].scales);
        if (max_scale) {
            const float iscale = -32.f / max_scale;
            for (int j = 0; j < QK_K / 16; j++) {
                int l = imax(-32, imin(31, nearest_int(iscale * scales[j]))) + 32;
                if (j < 8)
                    y[i].scales[j] = (uint8_t)(l & 0xF);
                else
                    y[i].scales[j - 8] |= (uint8_t)((l & 0xF) << 4);
                l >>= 4;
                y[i].scales[j % 4 + 8] |= (uint8_t)(l << (2 * (j / 4)));
            }
            y[i].d = cf_fp32_to_fp16(1 / iscale);
        } else {
            y[i].d = cf_fp32_to_fp16(0.f);
        }
        for (int j = 0; j < QK_K / 16; j++) {
            int sc = j < 8 ? y[i].scales[j] & 0xF : y[i].scales[j - 8] >> 4;
            sc = (sc | (((y[i].scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
            const float d = h2f(y[i].d) * (float)sc;
            if (!d) continue;
            for (int ii = 0; ii < 16; ii++)
                L[16 * j + ii] = (int8_t)(imax(-4, imin(3, nearest_int(x[16 * j + ii] / d))) + 4);
        }
        memset(y[i].hmask, 0, sizeof y[i].hmask);
        int m = 0;
        uint8_t hm = 1;
        for (int j = 0; j < QK_K; j++) {
            if (L[j] > 3) {
                y[i].hmask[m] |= hm;
                L[j] = (int8_t)(L[j] - 4);
            }
            if (++m == QK_K / 8) {
                m = 0;
                hm = (uint8_t)(hm << 1);
            }
        }
        for (int j = 0; j < QK_K; j += 128)
            for (int l = 0; l < 32; l++)
                y[i].qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) |
                                               (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
    }
}

void tt_from_float_q4_K(const float *x, void *dst, int64_t n) {
    block_q4_K *y = dst;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        kq_fit_k4(x, 15, -1.f, 20, y[i].scales, &y[i].d, &y[i].dmin, L);
        uint8_t *q = y[i].qs;
        for (int j = 0; j < QK_K; j += 64, q += 32)
            for (int l = 0; l < 32; l++)
                q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    }
}

void tt_from_float_q5_K(const float *x, void *dst, int64_t n) {
    block_q5_K *y = dst;
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        kq_fit_k4(x, 31, -0.5f, 15, y[i].scales, &y[i].d, &y[i].dmin, L);
        uint8_t *qh = y[i].qh, *ql = y[i].qs;
        memset(qh, 0, QK_K / 8);
        uint8_t m1 = 1, m2 = 2;
        for (int k = 0; k < QK_K; k += 64) {
            for (int j = 0; j < 32; j++) {
                int l1 = L[k + j], l2 = L[k + j + 32];
                if (l1 > 15) {
                    l1 -= 16;
                    qh[j] |= m1;
                }
                if (l2 > 15) {
                    l2 -= 16;
                    qh[j] |= m2;
                }
                ql[j] = (uint8_t)(l1 | (l2 << 4));
            }
            m1 = (uint8_t)(m1 << 2);
            m2 = (uint8_t)(m2 << 2);
            ql += 32;
        }
    }
}

void tt_from_float_q6_K(const float *x, void *dst, int64_t n) {
    block_q6_K *y = dst;
    int8_t L[QK_K];
    float scales[QK_K / 16];
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < QK_K / 16; ib++) {
            const float scale = kq_make_qx(16, 32, x + 16 * ib, L + 16 * ib);
            scales[ib] = scale;
            if (fabsf(scale) > max_abs_scale) {
                max_abs_scale = fabsf(scale);
                max_scale = scale;
            }
        }
        if (max_abs_scale < KQ_GROUP_MAX_EPS) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -128.f / max_scale;
        y[i].d = cf_fp32_to_fp16(1 / iscale);
        for (int ib = 0; ib < QK_K / 16; ib++)
            y[i].scales[ib] = (int8_t)imin(127, nearest_int(iscale * scales[ib]));
        for (int j = 0; j < QK_K / 16; j++) {
            const float d = h2f(y[i].d) * y[i].scales[j];
            if (!d) continue;
            for (int ii = 0; ii < 16; ii++)
                L[16 * j + ii] =
                    (int8_t)(imax(-32, imin(31, nearest_int(x[16 * j + ii] / d))) + 32);
        }
        uint8_t *ql = y[i].ql, *qh = y[i].qh;
        for (int j = 0; j < QK_K; j += 128) {
            for (int l = 0; l < 32; l++) {
                const uint8_t q1 = L[j + l + 0] & 0xF, q2 = L[j + l + 32] & 0xF;
                const uint8_t q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
                ql[l + 0] = (uint8_t)(q1 | (q3 << 4));
                ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
                qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                                  ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
            }
            ql += 64;
            qh += 32;
        }
    }
}

/* Index of the codebook value nearest to X in the sorted VAL[0..n). */
static inline int best_index_int8(int n, const int8_t *val, float x) {
    if (x <= val[0]) return 0;
    if (x >= val[n - 1]) return n - 1;
    int ml = 0, mu = n - 1;
    while (mu - ml > 1) {
        const int mav = (ml + mu) / 2;
        if (x < val[mav])
            mu = mav;
        else
            ml = mav;
    }
    return x - val[mu - 1] < val[mu] - x ? mu - 1 : mu;
}

/* IQ4_NL / IQ4_XS: per 32 values, pick the scale that best fits x to the
 * non-linear codebook (weights x^2, 15 trial scales around -max/127); for
 * IQ4_XS the 8 block scales are then quantized to 6 bits against one fp16
 * super-scale and the values re-fit. SB = super-block size (32 or 256).
 * DH, Q4, SCALES_H, SCALES_L: the block's fields (scales unused when SB = 32). */
static void iq4_quantize_block(int sb, const float *x, cf_fp16 *dh, uint8_t *q4, uint16_t *scales_h,
                               uint8_t *scales_l) {
    const int ntry = 7;
    const int8_t *values = kvalues_iq4nl;
    float scales[QK_K / 32], weight[32];
    uint8_t L[QK_K];
    memset(q4, 0, (size_t)sb / 2);
    memset(L, 0, sizeof L);
    *dh = cf_fp32_to_fp16(0.f);
    float max_scale = 0, amax_scale = 0;
    for (int ib = 0; ib < sb / 32; ib++) {
        const float *xb = x + ib * 32;
        uint8_t *Lb = L + ib * 32;
        for (int j = 0; j < 32; j++)
            weight[j] = xb[j] * xb[j];
        float amax = 0, max = 0;
        for (int j = 0; j < 32; j++)
            if (fabsf(xb[j]) > amax) {
                amax = fabsf(xb[j]);
                max = xb[j];
            }
        if (amax < KQ_GROUP_MAX_EPS) {
            scales[ib] = 0;
            continue;
        }
        float d = -max / values[0];
        float id = 1 / d;
        float sumqx = 0, sumq2 = 0;
        for (int j = 0; j < 32; j++) {
            const int l = best_index_int8(16, values, id * xb[j]);
            Lb[j] = (uint8_t)l;
            const float q = values[l], w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        d = sumqx / sumq2;
        float best = d * sumqx;
        for (int itry = -ntry; itry <= ntry; itry++) {
            id = (float)(itry + values[0]) / max;
            sumqx = sumq2 = 0;
            for (int j = 0; j < 32; j++) {
                const int l = best_index_int8(16, values, id * xb[j]);
                const float q = values[l], w = weight[j];
                sumqx += w * q * xb[j];
                sumq2 += w * q * q;
            }
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        scales[ib] = d;
        if (fabsf(d) > amax_scale) {
            amax_scale = fabsf(d);
            max_scale = d;
        }
    }
    if (sb > 32) {
        *scales_h = 0;
        const float d = -max_scale / 32;
        *dh = cf_fp32_to_fp16(d);
        const float id = d ? 1 / d : 0.f;
        for (int ib = 0; ib < sb / 32; ib++) {
            int l = imax(-32, imin(31, nearest_int(id * scales[ib])));
            const float dl = d * (float)l;
            const float idl = dl ? 1 / dl : 0.f;
            for (int j = 0; j < 32; j++)
                L[ib * 32 + j] = (uint8_t)best_index_int8(16, values, idl * x[ib * 32 + j]);
            l += 32;
            if (ib % 2 == 0)
                scales_l[ib / 2] = (uint8_t)(l & 0xf);
            else
                scales_l[ib / 2] |= (uint8_t)((l & 0xf) << 4);
            *scales_h |= (uint16_t)((l >> 4) << 2 * (ib % 16));
        }
    } else {
        *dh = cf_fp32_to_fp16(scales[0]);
        const float id = scales[0] ? 1 / scales[0] : 0;
        for (int j = 0; j < sb; j++)
            L[j] = (uint8_t)best_index_int8(16, values, id * x[j]);
    }
    for (int i = 0; i < sb / 32; i++)
        for (int j = 0; j < 16; j++)
            q4[16 * i + j] = (uint8_t)(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

void tt_from_float_iq4_nl(const float *x, void *dst, int64_t n) {
    block_iq4_nl *y = dst;
    uint16_t unused_h;
    uint8_t unused_l[4];
    for (int64_t i = 0; i < n / QK4_NL; i++)
        iq4_quantize_block(QK4_NL, x + i * QK4_NL, &y[i].d, y[i].qs, &unused_h, unused_l);
}

void tt_from_float_iq4_xs(const float *x, void *dst, int64_t n) {
    block_iq4_xs *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++)
        iq4_quantize_block(QK_K, x + i * QK_K, &y[i].d, y[i].qs, &y[i].scales_h, y[i].scales_l);
}

/* ================================================================== vec_dot */

/* ---- F32 / F16 / BF16: the two summation orders (quants.h) ----
 * Written with fmaf so that every family gets the same bits: an FMA
 * chain per lane, then tt_reduce16. */

float tt_reduce16(const float *s) {
    float t8[8], t4[4];
    for (int j = 0; j < 8; j++)
        t8[j] = s[j] + s[j + 8];
    for (int j = 0; j < 4; j++)
        t4[j] = t8[j] + t8[j + 4];
    return (t4[0] + t4[2]) + (t4[1] + t4[3]);
}

typedef float (*ord_load_fn)(const void *p, int i);
static float ord_f32(const void *p, int i) { return ((const float *)p)[i]; }
static float ord_f16(const void *p, int i) { return cf_fp16_to_fp32(((const cf_fp16 *)p)[i]); }
static float ord_bf16(const void *p, int i) { return cf_bf16_to_fp32(((const cf_bf16 *)p)[i]); }

/* Vector order over [0, n_simd): four 16-lane accumulators over 64-value
 * steps, values at or past N_VALID counted as zero (not read). */
static float ord_vec_lanes(ord_load_fn ld, int n_valid, int n_simd, const void *w, const void *x) {
    float acc[4][16] = {{0}};
    for (int i = 0; i < n_simd; i += 64)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < 16; l++) {
                const int k = i + 16 * j + l;
                if (k < n_valid) acc[j][l] = fmaf(ld(w, k), ld(x, k), acc[j][l]);
            }
    float r[16];
    for (int l = 0; l < 16; l++)
        r[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
    return tt_reduce16(r);
}

/* The F32 vector order's values [I, N) one by one: products rounded and
 * added in order, except values from FMA_FROM on, which are fused. */
static float ord_tail_f32(float sum, const float *a, const float *b, int i, int n, int fma_from) {
    for (; i < n && i < fma_from; i++) {
        const float p = a[i] * b[i];
        sum += p;
    }
    for (; i < n; i++)
        sum = fmaf(a[i], b[i], sum);
    return sum;
}

void tt_vec_dot_f32_ex_ref(int n_valid, int n_simd, float *s, const void *w, const void *xv) {
    const float sum = ord_vec_lanes(ord_f32, n_valid, n_simd, w, xv);
    *s = ord_tail_f32(sum, w, xv, n_simd, n_valid, n_valid);
}

void tt_vec_dot_f16_ex_ref(int n_valid, int n_simd, float *s, const void *w, const void *xv) {
    double sum = ord_vec_lanes(ord_f16, n_valid, n_simd, w, xv);
    for (int i = n_simd; i < n_valid; i++)
        sum += (double)(ord_f16(w, i) * ord_f16(xv, i));
    *s = (float)sum;
}

void tt_vec_dot_f32_ref(int n, float *s, const void *w, const void *x) {
    const float sum = ord_vec_lanes(ord_f32, n, n & ~63, w, x);
    *s = ord_tail_f32(sum, w, x, n & ~63, n, n & ~7);
}

void tt_vec_dot_f16_ref(int n, float *s, const void *w, const void *x) {
    tt_vec_dot_f16_ex_ref(n, n & ~63, s, w, x);
}

/* BF16 pair step of the reference's dot instruction: lane l of a 32-value
 * step takes value 2l+1, then 2l (each product exact in float). */
static void ord_bf16_pairs(const void *w, const void *x, int o, int n, float acc[16]) {
    for (int l = 0; l < 16; l++) {
        const int k0 = o + 2 * l, k1 = k0 + 1;
        if (k1 < n) acc[l] = fmaf(ord_bf16(w, k1), ord_bf16(x, k1), acc[l]);
        if (k0 < n) acc[l] = fmaf(ord_bf16(w, k0), ord_bf16(x, k0), acc[l]);
    }
}

void tt_vec_dot_bf16_ref(int n, float *s, const void *w, const void *xv) {
    float c1[16] = {0}, c2[16] = {0};
    int i = 0;
    for (; i + 64 <= n; i += 64) {
        ord_bf16_pairs(w, xv, i, n, c1);
        ord_bf16_pairs(w, xv, i + 32, n, c2);
    }
    double sum = 0;
    sum += tt_reduce16(c1);
    sum += tt_reduce16(c2);
    for (; i < n; i++)
        sum += (double)(ord_bf16(w, i) * ord_bf16(xv, i));
    *s = (float)sum;
}

static float ord_mat(ord_load_fn ld, int n, const void *w, const void *x) {
    float acc[16] = {0};
    for (int i = 0; i < n; i++)
        acc[i % 16] = fmaf(ld(w, i), ld(x, i), acc[i % 16]);
    return tt_reduce16(acc);
}

void tt_mat_dot_f32_ref(int n, float *s, const void *w, const void *x) {
    *s = ord_mat(ord_f32, n, w, x);
}

void tt_mat_dot_f16_ref(int n, float *s, const void *w, const void *x) {
    *s = ord_mat(ord_f16, n, w, x);
}

void tt_mat_dot_bf16_ref(int n, float *s, const void *w, const void *x) {
    float acc[16] = {0};
    for (int o = 0; o < n; o += 32)
        ord_bf16_pairs(w, x, o, n, acc);
    *s = tt_reduce16(acc);
}

void tt_vec_dot_q4_0_q8_0_ref(int n, float *s, const void *w, const void *xv) {
    const block_q4_0 *x = w;
    const block_q8_0 *y = xv;
    float sumf = 0;
    for (int ib = 0; ib < n / QK8_0; ib++) {
        int sumi0 = 0, sumi1 = 0;
        for (int j = 0; j < QK8_0 / 2; j++) {
            sumi0 += ((x[ib].qs[j] & 0x0F) - 8) * y[ib].qs[j];
            sumi1 += ((x[ib].qs[j] >> 4) - 8) * y[ib].qs[j + QK8_0 / 2];
        }
        sumf += (float)(sumi0 + sumi1) * h2f(x[ib].d) * h2f(y[ib].d);
    }
    *s = sumf;
}

void tt_vec_dot_q4_1_q8_1_ref(int n, float *s, const void *w, const void *xv) {
    const block_q4_1 *x = w;
    const block_q8_1 *y = xv;
    float sumf = 0;
    for (int ib = 0; ib < n / QK8_1; ib++) {
        int sumi0 = 0, sumi1 = 0;
        for (int j = 0; j < QK8_1 / 2; j++) {
            sumi0 += (x[ib].qs[j] & 0x0F) * y[ib].qs[j];
            sumi1 += (x[ib].qs[j] >> 4) * y[ib].qs[j + QK8_1 / 2];
        }
        sumf +=
            (h2f(x[ib].d) * h2f(y[ib].d)) * (float)(sumi0 + sumi1) + h2f(x[ib].m) * h2f(y[ib].s);
    }
    *s = sumf;
}

void tt_vec_dot_q5_0_q8_0_ref(int n, float *s, const void *w, const void *xv) {
    const block_q5_0 *x = w;
    const block_q8_0 *y = xv;
    float sumf = 0;
    for (int ib = 0; ib < n / QK8_0; ib++) {
        uint32_t qh;
        memcpy(&qh, x[ib].qh, 4);
        int sumi0 = 0, sumi1 = 0;
        for (int j = 0; j < QK8_0 / 2; j++) {
            const int xh0 = (int)(((qh >> j) & 1) << 4), xh1 = (int)(((qh >> (j + 16)) & 1) << 4);
            sumi0 += (((x[ib].qs[j] & 0x0F) | xh0) - 16) * y[ib].qs[j];
            sumi1 += (((x[ib].qs[j] >> 4) | xh1) - 16) * y[ib].qs[j + QK8_0 / 2];
        }
        sumf += (h2f(x[ib].d) * h2f(y[ib].d)) * (float)(sumi0 + sumi1);
    }
    *s = sumf;
}

void tt_vec_dot_q5_1_q8_1_ref(int n, float *s, const void *w, const void *xv) {
    const block_q5_1 *x = w;
    const block_q8_1 *y = xv;
    float sumf = 0;
    for (int ib = 0; ib < n / QK8_1; ib++) {
        uint32_t qh;
        memcpy(&qh, x[ib].qh, 4);
        int sumi0 = 0, sumi1 = 0;
        for (int j = 0; j < QK8_1 / 2; j++) {
            const int xh0 = (int)(((qh >> j) & 1) << 4), xh1 = (int)(((qh >> (j + 16)) & 1) << 4);
            sumi0 += ((x[ib].qs[j] & 0x0F) | xh0) * y[ib].qs[j];
            sumi1 += ((x[ib].qs[j] >> 4) | xh1) * y[ib].qs[j + QK8_1 / 2];
        }
        sumf +=
            (h2f(x[ib].d) * h2f(y[ib].d)) * (float)(sumi0 + sumi1) + h2f(x[ib].m) * h2f(y[ib].s);
    }
    *s = sumf;
}

void tt_vec_dot_q8_0_q8_0_ref(int n, float *s, const void *w, const void *xv) {
    const block_q8_0 *x = w;
    const block_q8_0 *y = xv;
    float sumf = 0;
    for (int ib = 0; ib < n / QK8_0; ib++) {
        int sumi = 0;
        for (int j = 0; j < QK8_0; j++)
            sumi += x[ib].qs[j] * y[ib].qs[j];
        sumf += (float)sumi * (h2f(x[ib].d) * h2f(y[ib].d));
    }
    *s = sumf;
}

void tt_vec_dot_iq4_nl_q8_0_ref(int n, float *s, const void *w, const void *xv) {
    const block_iq4_nl *x = w;
    const block_q8_0 *y = xv;
    float sumf = 0;
    for (int ib = 0; ib < n / QK4_NL; ib++) {
        const float d = h2f(y[ib].d) * h2f(x[ib].d);
        int sumi1 = 0, sumi2 = 0;
        for (int j = 0; j < QK4_NL / 2; j++) {
            sumi1 += y[ib].qs[j] * kvalues_iq4nl[x[ib].qs[j] & 0xf];
            sumi2 += y[ib].qs[j + QK4_NL / 2] * kvalues_iq4nl[x[ib].qs[j] >> 4];
        }
        sumf += d * (float)(sumi1 + sumi2);
    }
    *s = sumf;
}

void tt_vec_dot_q2_K_q8_K_ref(int n, float *s, const void *w, const void *xv) {
    const block_q2_K *x = w;
    const block_q8_K *y = xv;
    float sumf = 0;
    for (int i = 0; i < n / QK_K; i++) {
        const uint8_t *q2 = x[i].qs, *sc = x[i].scales;
        const int8_t *q8 = y[i].qs;
        int summs = 0;
        for (int j = 0; j < 16; j++)
            summs += y[i].bsums[j] * (sc[j] >> 4);
        const float dall = y[i].d * h2f(x[i].d), dmin = y[i].d * h2f(x[i].dmin);
        int isum = 0, is = 0;
        for (int k = 0; k < QK_K / 128; k++) {
            int shift = 0;
            for (int j = 0; j < 4; j++) {
                int isuml = 0;
                for (int l = 0; l < 16; l++)
                    isuml += q8[l] * ((q2[l] >> shift) & 3);
                isum += (sc[is++] & 0xF) * isuml;
                isuml = 0;
                for (int l = 16; l < 32; l++)
                    isuml += q8[l] * ((q2[l] >> shift) & 3);
                isum += (sc[is++] & 0xF) * isuml;
                shift += 2;
                q8 += 32;
            }
            q2 += 32;
        }
        sumf += dall * (float)isum - dmin * (float)summs;
    }
    *s = sumf;
}

void tt_vec_dot_q3_K_q8_K_ref(int n, float *s, const void *w, const void *xv) {
    const block_q3_K *x = w;
    const block_q8_K *y = xv;
    float sumf = 0;
    for (int i = 0; i < n / QK_K; i++) {
        int8_t scales[16];
        q3k_scales(x[i].scales, scales);
        const uint8_t *q3 = x[i].qs, *hm = x[i].hmask;
        const int8_t *q8 = y[i].qs;
        int isum = 0, is = 0;
        uint8_t m = 1;
        for (int k = 0; k < QK_K / 128; k++) {
            int shift = 0;
            for (int j = 0; j < 4; j++) {
                for (int half = 0; half < 2; half++) {
                    int isuml = 0;
                    for (int l = 16 * half; l < 16 * half + 16; l++)
                        isuml += q8[l] * (((q3[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
                    isum += (scales[is++] - 32) * isuml;
                }
                shift += 2;
                m = (uint8_t)(m << 1);
                q8 += 32;
            }
            q3 += 32;
        }
        sumf += h2f(x[i].d) * y[i].d * (float)isum;
    }
    *s = sumf;
}

void tt_vec_dot_q4_K_q8_K_ref(int n, float *s, const void *w, const void *xv) {
    const block_q4_K *x = w;
    const block_q8_K *y = xv;
    float sumf = 0;
    for (int i = 0; i < n / QK_K; i++) {
        const uint8_t *q4 = x[i].qs;
        const int8_t *q8 = y[i].qs;
        int isum = 0, summs = 0;
        for (int j = 0; j < QK_K / 64; j++) {
            uint8_t sc1, m1, sc2, m2;
            get_scale_min_k4(2 * j, x[i].scales, &sc1, &m1);
            get_scale_min_k4(2 * j + 1, x[i].scales, &sc2, &m2);
            int s1 = 0, s2 = 0;
            for (int l = 0; l < 32; l++) {
                s1 += (q4[l] & 0xF) * q8[l];
                s2 += (q4[l] >> 4) * q8[l + 32];
            }
            isum += sc1 * s1 + sc2 * s2;
            summs += m1 * (y[i].bsums[4 * j] + y[i].bsums[4 * j + 1]) +
                     m2 * (y[i].bsums[4 * j + 2] + y[i].bsums[4 * j + 3]);
            q4 += 32;
            q8 += 64;
        }
        const float d = y[i].d * h2f(x[i].d), dmin = y[i].d * h2f(x[i].dmin);
        sumf += d * (float)isum - dmin * (float)summs;
    }
    *s = sumf;
}

void tt_vec_dot_q5_K_q8_K_ref(int n, float *s, const void *w, const void *xv) {
    const block_q5_K *x = w;
    const block_q8_K *y = xv;
    float sumf = 0;
    for (int i = 0; i < n / QK_K; i++) {
        const uint8_t *ql = x[i].qs, *qh = x[i].qh;
        const int8_t *q8 = y[i].qs;
        int isum = 0, summs = 0;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0; j < QK_K / 64; j++) {
            uint8_t sc1, m1, sc2, m2;
            get_scale_min_k4(2 * j, x[i].scales, &sc1, &m1);
            get_scale_min_k4(2 * j + 1, x[i].scales, &sc2, &m2);
            int s1 = 0, s2 = 0;
            for (int l = 0; l < 32; l++) {
                s1 += ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) * q8[l];
                s2 += ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) * q8[l + 32];
            }
            isum += sc1 * s1 + sc2 * s2;
            summs += m1 * (y[i].bsums[4 * j] + y[i].bsums[4 * j + 1]) +
                     m2 * (y[i].bsums[4 * j + 2] + y[i].bsums[4 * j + 3]);
            ql += 32;
            q8 += 64;
            u1 = (uint8_t)(u1 << 2);
            u2 = (uint8_t)(u2 << 2);
        }
        const float d = y[i].d * h2f(x[i].d), dmin = y[i].d * h2f(x[i].dmin);
        sumf += d * (float)isum - dmin * (float)summs;
    }
    *s = sumf;
}

void tt_vec_dot_q6_K_q8_K_ref(int n, float *s, const void *w, const void *xv) {
    const block_q6_K *x = w;
    const block_q8_K *y = xv;
    float sumf = 0;
    for (int i = 0; i < n / QK_K; i++) {
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        const int8_t *sc = x[i].scales, *q8 = y[i].qs;
        int isum = 0;
        for (int k = 0; k < QK_K; k += 128) {
            /* Four 32-value quarters; each has two 16-value scales. */
            for (int h = 0; h < 2; h++) {
                int p1 = 0, p2 = 0, p3 = 0, p4 = 0;
                for (int l = 16 * h; l < 16 * h + 16; l++) {
                    p1 += (((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32) * q8[l + 0];
                    p2 += (((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32) * q8[l + 32];
                    p3 += (((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32) * q8[l + 64];
                    p4 += (((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32) * q8[l + 96];
                }
                isum += sc[h + 0] * p1 + sc[h + 2] * p2 + sc[h + 4] * p3 + sc[h + 6] * p4;
            }
            ql += 64;
            qh += 32;
            sc += 8;
            q8 += 128;
        }
        sumf += h2f(x[i].d) * y[i].d * (float)isum;
    }
    *s = sumf;
}

void tt_vec_dot_iq4_xs_q8_K_ref(int n, float *s, const void *w, const void *xv) {
    const block_iq4_xs *x = w;
    const block_q8_K *y = xv;
    float sumf = 0;
    for (int i = 0; i < n / QK_K; i++) {
        const uint8_t *qs = x[i].qs;
        const int8_t *q8 = y[i].qs;
        int isum = 0;
        for (int ib = 0; ib < QK_K / 32; ib++) {
            int s1 = 0;
            for (int j = 0; j < 16; j++)
                s1 += q8[j] * kvalues_iq4nl[qs[j] & 0xf] + q8[j + 16] * kvalues_iq4nl[qs[j] >> 4];
            isum += (iq4xs_scale(&x[i], ib) - 32) * s1;
            qs += 16;
            q8 += 32;
        }
        sumf += h2f(x[i].d) * y[i].d * (float)isum;
    }
    *s = sumf;
}
