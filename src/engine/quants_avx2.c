/*
 * quants_avx2 — the AVX2 (+FMA, F16C) kernel family: dot products of weight
 * rows with activation rows, their NR x NC tile variants for matrix-matrix
 * products, and the activation quantizers (F32 -> Q8_0 / Q8_K / F16 / BF16).
 *
 * How the integer kernels work (the ggml way): weights are unpacked to
 * bytes in registers, multiplied with the int8 activations by VPMADDUBSW
 * (u8 x s8 -> pairs summed into i16; every weight type here keeps those
 * pair sums far from i16 saturation), widened by VPMADDWD, and summed in
 * i32 lanes. Signed x signed blocks (Q8_0, Q4_0 after -8, Q5_0, IQ4_NL) use
 * the sign trick |w| x sign(x, w), which is exact for any weight byte and
 * any activation but -128 (the activation quantizers never produce it:
 * Q8_0 and Q8_K both map the block maximum to +-127). One float FMA per
 * block (K-quants: per super-block) folds the integer sum into a vector
 * accumulator; the only horizontal sum is the final one. The integer part equals the scalar
 * reference exactly; only float summation order differs.
 *
 * Tiles: each kernel body is written once as an always-inline function over
 * an NR x NC tile (NR weight rows, NC activation rows) with one accumulator
 * per output. A weight block is decoded once per tile and reused for NC
 * activation rows. The tile set's 1 x 1 instance is vec_dot itself, so
 * every tile output is computed by exactly
 * the same operations as that kernel: results do not depend on tiling.
 * Tiles are 3x4 for every type: measured best on Zen 4 (1.1-1.5x the 2x2
 * and 2x4 shapes); the K-quants' float accumulators are touched once per
 * super-block and may live on the stack, the integer sums stay in registers.
 *
 * F32 / F16 / BF16 follow the reference engine's summation orders
 * (quants.h, quants_ord.inc) and have no tiles here: two ymm halves per
 * 16-lane accumulator leave too few registers for a tile.
 *
 * Everything here runs only after cpu_has_avx2() (the Makefile compiles
 * this file alone with -mavx2 -mfma -mf16c -mbmi2).
 */
#include "engine/blocks.h"
#include "engine/quants_simd.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define AI static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 8")

/* ------------------------------------------------------------------ */
/* helpers                                                             */
/* ------------------------------------------------------------------ */

AI float hsum8(__m256 x) {
    __m128 r = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

AI float h2f(cf_fp16 h) { return _cvtsh_ss(h); }

/* u8 x s8 -> i32 lanes (sums of 4 products). */
AI __m256i dot_us8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* 32 nibbles: bytes 0..15 = low nibbles of q[0..15], 16..31 = high nibbles. */
AI __m256i nibbles32(const uint8_t *q) {
    const __m128i t = _mm_loadu_si128((const __m128i *)q);
    const __m256i b = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x0F));
}

/* 32 bits -> 32 bytes of 0xFF (bit set) or 0x00. */
AI __m256i bits32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                           0x0101010101010101, 0x0000000000000000);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)v), shuf);
    b = _mm256_or_si256(b, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    return _mm256_cmpeq_epi8(b, _mm256_set1_epi64x(-1));
}

#define TMAX 4 /* largest tile side used below */

/* Pointer to block IB of row R of a strided matrix. */
#define ROWB(base, stride, r, type, ib)                                                            \
    ((const type *)((const char *)(base) + (size_t)(r) * (stride)) + (ib))

/* ------------------------------------------------------------------ */
/* 32-value blocks x Q8_0: Q8_0, Q4_0, Q5_0, IQ4_NL                     */
/* ------------------------------------------------------------------ */

enum { W_Q8_0, W_Q4_0, W_Q5_0, W_IQ4_NL };

/* Decodes block IB of a weight row to 32 signed bytes and its scale. */
AI __m256i dec32(int wt, const void *row, int ib, float *d) {
    switch (wt) {
    case W_Q8_0: {
        const block_q8_0 *b = (const block_q8_0 *)row + ib;
        *d = h2f(b->d);
        return _mm256_loadu_si256((const __m256i *)b->qs);
    }
    case W_Q4_0: {
        const block_q4_0 *b = (const block_q4_0 *)row + ib;
        *d = h2f(b->d);
        return _mm256_sub_epi8(nibbles32(b->qs), _mm256_set1_epi8(8));
    }
    case W_Q5_0: {
        const block_q5_0 *b = (const block_q5_0 *)row + ib;
        *d = h2f(b->d);
        const __m256i hi = _mm256_andnot_si256(bits32(b->qh), _mm256_set1_epi8((char)0xF0));
        return _mm256_or_si256(nibbles32(b->qs), hi);
    }
    default: { /* W_IQ4_NL */
        const block_iq4_nl *b = (const block_iq4_nl *)row + ib;
        *d = h2f(b->d);
        const __m128i v = _mm_loadu_si128((const __m128i *)kvalues_iq4nl);
        const __m256i lut = _mm256_set_m128i(v, v);
        return _mm256_shuffle_epi8(lut, nibbles32(b->qs));
    }
    }
}

AI void k_b32(int wt, int n, const void *w, size_t ws, const void *x, size_t xs, float *y,
              size_t ys, const int NR, const int NC) {
    const int nb = n / 32;
    __m256 acc[TMAX][TMAX];
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int c = 0; c < NC; c++) acc[r][c] =
        _mm256_setzero_ps();
    for (int ib = 0; ib < nb; ib++) {
        __m256i qw[TMAX], aw[TMAX];
        float dw[TMAX];
        UNROLL for (int r = 0; r < NR; r++) {
            qw[r] = dec32(wt, (const char *)w + (size_t)r * ws, ib, &dw[r]);
            aw[r] = _mm256_sign_epi8(qw[r], qw[r]);
        }
        UNROLL for (int c = 0; c < NC; c++) {
            const block_q8_0 *bx = ROWB(x, xs, c, block_q8_0, ib);
            const __m256i qx = _mm256_loadu_si256((const __m256i *)bx->qs);
            const float dx = h2f(bx->d);
            UNROLL for (int r = 0; r < NR; r++) {
                const __m256i p = dot_us8(aw[r], _mm256_sign_epi8(qx, qw[r]));
                acc[r][c] =
                    _mm256_fmadd_ps(_mm256_set1_ps(dw[r] * dx), _mm256_cvtepi32_ps(p), acc[r][c]);
            }
        }
    }
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int c = 0; c < NC; c++) y[(size_t)c * ys + r] =
        hsum8(acc[r][c]);
}

AI void k_q8_0(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
               const int NR, const int NC) {
    k_b32(W_Q8_0, n, w, ws, x, xs, y, ys, NR, NC);
}
AI void k_q4_0(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
               const int NR, const int NC) {
    k_b32(W_Q4_0, n, w, ws, x, xs, y, ys, NR, NC);
}
AI void k_q5_0(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
               const int NR, const int NC) {
    k_b32(W_Q5_0, n, w, ws, x, xs, y, ys, NR, NC);
}
AI void k_iq4_nl(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
                 const int NR, const int NC) {
    k_b32(W_IQ4_NL, n, w, ws, x, xs, y, ys, NR, NC);
}

/* Q4_1 / Q5_1 x Q8_1: unsigned weights with an offset, so no sign trick:
 * dot = d_w d_x sum(q_w q_x) + m_w s_x, with s_x = d_x sum(q_x) stored in
 * the activation block. The offset terms go into a scalar per output. */
AI void k_b32u(int q5, int n, const void *w, size_t ws, const void *x, size_t xs, float *y,
               size_t ys, const int NR, const int NC) {
    const int nb = n / 32;
    __m256 acc[TMAX][TMAX];
    float off[TMAX][TMAX];
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int c = 0; c < NC; c++) {
        acc[r][c] = _mm256_setzero_ps();
        off[r][c] = 0.0f;
    }
    for (int ib = 0; ib < nb; ib++) {
        __m256i qw[TMAX];
        float dw[TMAX], mw[TMAX];
        UNROLL for (int r = 0; r < NR; r++) {
            const char *row = (const char *)w + (size_t)r * ws;
            if (q5) {
                const block_q5_1 *b = (const block_q5_1 *)row + ib;
                dw[r] = h2f(b->d);
                mw[r] = h2f(b->m);
                qw[r] = _mm256_or_si256(nibbles32(b->qs),
                                        _mm256_and_si256(bits32(b->qh), _mm256_set1_epi8(0x10)));
            } else {
                const block_q4_1 *b = (const block_q4_1 *)row + ib;
                dw[r] = h2f(b->d);
                mw[r] = h2f(b->m);
                qw[r] = nibbles32(b->qs);
            }
        }
        UNROLL for (int c = 0; c < NC; c++) {
            const block_q8_1 *bx = ROWB(x, xs, c, block_q8_1, ib);
            const __m256i qx = _mm256_loadu_si256((const __m256i *)bx->qs);
            const float dx = h2f(bx->d), sx = h2f(bx->s);
            UNROLL for (int r = 0; r < NR; r++) {
                const __m256i p = dot_us8(qw[r], qx);
                acc[r][c] =
                    _mm256_fmadd_ps(_mm256_set1_ps(dw[r] * dx), _mm256_cvtepi32_ps(p), acc[r][c]);
                off[r][c] += mw[r] * sx;
            }
        }
    }
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int c = 0; c < NC; c++) y[(size_t)c * ys + r] =
        hsum8(acc[r][c]) + off[r][c];
}

AI void k_q4_1(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
               const int NR, const int NC) {
    k_b32u(0, n, w, ws, x, xs, y, ys, NR, NC);
}
AI void k_q5_1(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
               const int NR, const int NC) {
    k_b32u(1, n, w, ws, x, xs, y, ys, NR, NC);
}

/* ------------------------------------------------------------------ */
/* K-quants x Q8_K                                                      */
/* ------------------------------------------------------------------ */

/* Unpacks the 12 bytes of 6-bit scales and mins of Q4_K / Q5_K into
 * out[0..7] = scales, out[8..15] = mins. */
AI void kq_scales(const uint8_t *scales, uint32_t u[4]) {
    const uint32_t kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
    memcpy(u, scales, 12);
    u[3] = ((u[2] >> 4) & kmask2) | (((u[1] >> 6) & kmask3) << 4);
    const uint32_t uaux = u[1] & kmask1;
    u[1] = (u[2] & kmask2) | (((u[0] >> 6) & kmask3) << 4);
    u[2] = uaux;
    u[0] &= kmask1;
}

/* The 8 sums of 32 consecutive activations of a Q8_K block, as i16. */
AI __m128i q8k_sums32(const block_q8_K *b) {
    const __m256i s = _mm256_loadu_si256((const __m256i *)b->bsums);
    return _mm_hadd_epi16(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
}

/* Q4_K (HB = 0) and Q5_K (HB = 1): the weights of 64-value chunk J of a
 * super-block as two vectors of 32 unsigned bytes (lo, hi half). */
AI void k45_chunk(int hb, const void *blk, int j, __m256i *lo, __m256i *hi) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    if (!hb) {
        const block_q4_K *b = blk;
        const __m256i q = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * j));
        *lo = _mm256_and_si256(q, m4);
        *hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
    } else {
        const block_q5_K *b = blk;
        const __m256i q = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * j));
        const __m256i h = _mm256_loadu_si256((const __m256i *)b->qh);
        const __m256i m1 = _mm256_set1_epi8((char)(1 << (2 * j)));
        const __m256i m2 = _mm256_set1_epi8((char)(2 << (2 * j)));
        const __m256i s16 = _mm256_set1_epi8(16);
        const __m256i h1 = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(h, m1), m1), s16);
        const __m256i h2 = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(h, m2), m2), s16);
        *lo = _mm256_or_si256(_mm256_and_si256(q, m4), h1);
        *hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), h2);
    }
}

/* Shuffles broadcasting i16 element T of a 128-bit lane to the whole lane. */
static const uint8_t kq_shuf[8][32] = {
#define KQ(t)                                                                                      \
    {                                                                                              \
        2 * t, 2 * t + 1, 2 * t, 2 * t + 1, 2 * t, 2 * t + 1, 2 * t, 2 * t + 1, 2 * t, 2 * t + 1,  \
            2 * t, 2 * t + 1, 2 * t, 2 * t + 1, 2 * t, 2 * t + 1, 2 * t, 2 * t + 1, 2 * t,         \
            2 * t + 1, 2 * t, 2 * t + 1, 2 * t, 2 * t + 1, 2 * t, 2 * t + 1, 2 * t, 2 * t + 1,     \
            2 * t, 2 * t + 1, 2 * t, 2 * t + 1                                                     \
    }
    KQ(0), KQ(1), KQ(2), KQ(3), KQ(4), KQ(5), KQ(6), KQ(7),
#undef KQ
};

AI void k_k45(int hb, int n, const void *w, size_t ws, const void *x, size_t xs, float *y,
              size_t ys, const int NR, const int NC) {
    const int nb = n / QK_K;
    const size_t bsz = hb ? sizeof(block_q5_K) : sizeof(block_q4_K);
    __m256 acc[TMAX][TMAX];
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int c = 0; c < NC; c++) acc[r][c] =
        _mm256_setzero_ps();
    for (int i = 0; i < nb; i++) {
        const void *bw[TMAX];
        __m128i mins[TMAX];
        __m256i scl[TMAX]; /* the 8 scales as i16, in both 128-bit lanes */
        float dw[TMAX], dmw[TMAX];
        UNROLL for (int r = 0; r < NR; r++) {
            bw[r] = (const char *)w + (size_t)r * ws + (size_t)i * bsz;
            const block_q4_K *h = bw[r]; /* d, dmin, scales lie alike in Q4_K and Q5_K */
            dw[r] = h2f(h->d);
            dmw[r] = h2f(h->dmin);
            uint32_t sm[4];
            kq_scales(h->scales, sm);
            const __m256i ms = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)sm));
            mins[r] = _mm256_extracti128_si256(ms, 1);
            scl[r] = _mm256_permute2x128_si256(ms, ms, 0x00);
        }
        __m256i sumi[TMAX][TMAX];
        UNROLL for (int r = 0; r < NR; r++) UNROLL for (int c = 0; c < NC; c++) sumi[r][c] =
            _mm256_setzero_si256();
        UNROLL for (int j = 0; j < QK_K / 64; j++) {
            __m256i lo[TMAX], hi[TMAX], sl[TMAX], sh[TMAX];
            UNROLL for (int r = 0; r < NR; r++) {
                k45_chunk(hb, bw[r], j, &lo[r], &hi[r]);
                sl[r] = _mm256_shuffle_epi8(scl[r],
                                            _mm256_loadu_si256((const __m256i *)kq_shuf[2 * j]));
                sh[r] = _mm256_shuffle_epi8(
                    scl[r], _mm256_loadu_si256((const __m256i *)kq_shuf[2 * j + 1]));
            }
            UNROLL for (int c = 0; c < NC; c++) {
                const block_q8_K *bx = ROWB(x, xs, c, block_q8_K, i);
                const __m256i ql = _mm256_loadu_si256((const __m256i *)(bx->qs + 64 * j));
                const __m256i qh = _mm256_loadu_si256((const __m256i *)(bx->qs + 64 * j + 32));
                UNROLL for (int r = 0; r < NR; r++) {
                    const __m256i pl = _mm256_madd_epi16(sl[r], _mm256_maddubs_epi16(lo[r], ql));
                    const __m256i ph = _mm256_madd_epi16(sh[r], _mm256_maddubs_epi16(hi[r], qh));
                    sumi[r][c] = _mm256_add_epi32(sumi[r][c], _mm256_add_epi32(pl, ph));
                }
            }
        }
        UNROLL for (int c = 0; c < NC; c++) {
            const block_q8_K *bx = ROWB(x, xs, c, block_q8_K, i);
            const __m128i s32 = q8k_sums32(bx);
            UNROLL for (int r = 0; r < NR; r++) {
                const __m256i pm = _mm256_zextsi128_si256(_mm_madd_epi16(mins[r], s32));
                acc[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(bx->d * dw[r]),
                                            _mm256_cvtepi32_ps(sumi[r][c]), acc[r][c]);
                acc[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(-(bx->d * dmw[r])),
                                            _mm256_cvtepi32_ps(pm), acc[r][c]);
            }
        }
    }
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int c = 0; c < NC; c++) y[(size_t)c * ys + r] =
        hsum8(acc[r][c]);
}

AI void k_q4_K(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
               const int NR, const int NC) {
    k_k45(0, n, w, ws, x, xs, y, ys, NR, NC);
}
AI void k_q5_K(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
               const int NR, const int NC) {
    k_k45(1, n, w, ws, x, xs, y, ys, NR, NC);
}

/* Shuffles broadcasting scale byte 2k to bytes 0..7 and 2k+1 to 8..15. */
static const uint8_t k6_shuf[8][16] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1},
    {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
    {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5},
    {6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7},
    {8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9},
    {10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 11, 11, 11},
    {12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13, 13},
    {14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15},
};

/* Q6_K: the 32 unsigned 6-bit weights of sub-block pair K (0..7) of a
 * super-block; values 32*K .. 32*K+31. */
AI __m256i k6_quants(const block_q6_K *b, int k) {
    const int half = k / 4, part = k % 4;
    const uint8_t *ql = b->ql + 64 * half + 32 * (part & 1);
    const uint8_t *qh = b->qh + 32 * half;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
    __m256i lo = _mm256_loadu_si256((const __m256i *)ql);
    if (part >= 2) lo = _mm256_srli_epi16(lo, 4);
    lo = _mm256_and_si256(lo, m4);
    __m256i h = _mm256_loadu_si256((const __m256i *)qh);
    switch (part) {
    case 1: h = _mm256_srli_epi16(h, 2); break;
    case 2: h = _mm256_srli_epi16(h, 4); break;
    case 3: h = _mm256_srli_epi16(h, 6); break;
    default: break;
    }
    h = _mm256_slli_epi16(_mm256_and_si256(h, m2), 4);
    return _mm256_or_si256(lo, h);
}

AI void k_q6_K(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
               const int NR, const int NC) {
    const int nb = n / QK_K;
    const __m256i m32 = _mm256_set1_epi8(32);
    __m256 acc[TMAX][TMAX];
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int c = 0; c < NC; c++) acc[r][c] =
        _mm256_setzero_ps();
    for (int i = 0; i < nb; i++) {
        const block_q6_K *bw[TMAX];
        __m128i scv[TMAX];
        UNROLL for (int r = 0; r < NR; r++) {
            bw[r] = ROWB(w, ws, r, block_q6_K, i);
            scv[r] = _mm_loadu_si128((const __m128i *)bw[r]->scales);
        }
        __m256i sumi[TMAX][TMAX];
        UNROLL for (int r = 0; r < NR; r++) UNROLL for (int c = 0; c < NC; c++) sumi[r][c] =
            _mm256_setzero_si256();
        UNROLL for (int k = 0; k < 8; k++) {
            __m256i q[TMAX], sc[TMAX];
            const __m128i shuf = _mm_loadu_si128((const __m128i *)k6_shuf[k]);
            UNROLL for (int r = 0; r < NR; r++) {
                q[r] = k6_quants(bw[r], k);
                sc[r] = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scv[r], shuf));
            }
            UNROLL for (int c = 0; c < NC; c++) {
                const block_q8_K *bx = ROWB(x, xs, c, block_q8_K, i);
                const __m256i qx = _mm256_loadu_si256((const __m256i *)(bx->qs + 32 * k));
                const __m256i qx32 = _mm256_maddubs_epi16(m32, qx);
                UNROLL for (int r = 0; r < NR; r++) {
                    const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(q[r], qx), qx32);
                    sumi[r][c] = _mm256_add_epi32(sumi[r][c], _mm256_madd_epi16(sc[r], p));
                }
            }
        }
        UNROLL for (int c = 0; c < NC; c++) {
            const block_q8_K *bx = ROWB(x, xs, c, block_q8_K, i);
            UNROLL for (int r = 0; r < NR; r++) acc[r][c] = _mm256_fmadd_ps(
                _mm256_set1_ps(bx->d * h2f(bw[r]->d)), _mm256_cvtepi32_ps(sumi[r][c]), acc[r][c]);
        }
    }
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int c = 0; c < NC; c++) y[(size_t)c * ys + r] =
        hsum8(acc[r][c]);
}

/* Q2_K and Q3_K: 16 sub-blocks of 16 values. Chunk K (0..7) = 32 values
 * 32K..32K+31 = bits 2(K%4) of qs[32(K/4) ..]; its i16 pair sums split
 * into sub-blocks 2K (lanes 0..7) and 2K+1 (lanes 8..15), so k6_shuf[K]
 * spreads the two scales the same way. Mins (Q2_K) and Q3_K's -4 offset
 * are applied through the activation block sums (bsums, per 16 values). */
AI __m256i k23_bits(const uint8_t *qs, int k) {
    __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * (k / 4)));
    switch (k % 4) {
    case 1: q = _mm256_srli_epi16(q, 2); break;
    case 2: q = _mm256_srli_epi16(q, 4); break;
    case 3: q = _mm256_srli_epi16(q, 6); break;
    default: break;
    }
    return _mm256_and_si256(q, _mm256_set1_epi8(3));
}

/* Q3_K's 16 signed 6-bit scales (-32..31) as bytes. */
AI __m128i q3k_scales(const uint8_t *sc12) {
    const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
    uint32_t a[4];
    memcpy(a, sc12, 12);
    const uint32_t tmp = a[2];
    a[2] = ((a[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
    a[3] = ((a[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
    a[0] = (a[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
    a[1] = (a[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
    return _mm_sub_epi8(_mm_loadu_si128((const __m128i *)a), _mm_set1_epi8(32));
}

AI void k_k23(int q3, int n, const void *w, size_t ws, const void *x, size_t xs, float *y,
              size_t ys, const int NR, const int NC) {
    const int nb = n / QK_K;
    const size_t bsz = q3 ? sizeof(block_q3_K) : sizeof(block_q2_K);
    __m256 acc[TMAX][TMAX];
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int c = 0; c < NC; c++) acc[r][c] =
        _mm256_setzero_ps();
    for (int i = 0; i < nb; i++) {
        const uint8_t *qs[TMAX];
        __m128i scb[TMAX];   /* 16 scales as bytes */
        __m256i off16[TMAX]; /* per 16 values: Q2_K mins, Q3_K 4 * scale */
        __m256i hm[TMAX];
        float dw[TMAX], dmw[TMAX];
        UNROLL for (int r = 0; r < NR; r++) {
            const char *blk = (const char *)w + (size_t)r * ws + (size_t)i * bsz;
            if (q3) {
                const block_q3_K *b = (const block_q3_K *)blk;
                qs[r] = b->qs;
                dw[r] = h2f(b->d);
                dmw[r] = 0.0f;
                scb[r] = q3k_scales(b->scales);
                off16[r] = _mm256_slli_epi16(_mm256_cvtepi8_epi16(scb[r]), 2);
                hm[r] = _mm256_loadu_si256((const __m256i *)b->hmask);
            } else {
                const block_q2_K *b = (const block_q2_K *)blk;
                qs[r] = b->qs;
                dw[r] = h2f(b->d);
                dmw[r] = h2f(b->dmin);
                const __m128i sc = _mm_loadu_si128((const __m128i *)b->scales);
                scb[r] = _mm_and_si128(sc, _mm_set1_epi8(0x0F));
                off16[r] =
                    _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc, 4), _mm_set1_epi8(0x0F)));
                hm[r] = _mm256_setzero_si256();
            }
        }
        __m256i sumi[TMAX][TMAX];
        UNROLL for (int r = 0; r < NR; r++) UNROLL for (int c = 0; c < NC; c++) sumi[r][c] =
            _mm256_setzero_si256();
        UNROLL for (int k = 0; k < 8; k++) {
            __m256i q[TMAX], sc[TMAX];
            const __m128i shuf = _mm_loadu_si128((const __m128i *)k6_shuf[k]);
            UNROLL for (int r = 0; r < NR; r++) {
                q[r] = k23_bits(qs[r], k);
                if (q3) {
                    const __m256i m = _mm256_set1_epi8((char)(1 << k));
                    const __m256i h = _mm256_cmpeq_epi8(_mm256_and_si256(hm[r], m), m);
                    q[r] = _mm256_or_si256(q[r], _mm256_and_si256(h, _mm256_set1_epi8(4)));
                }
                sc[r] = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scb[r], shuf));
            }
            UNROLL for (int c = 0; c < NC; c++) {
                const block_q8_K *bx = ROWB(x, xs, c, block_q8_K, i);
                const __m256i qx = _mm256_loadu_si256((const __m256i *)(bx->qs + 32 * k));
                UNROLL for (int r = 0; r < NR; r++) sumi[r][c] = _mm256_add_epi32(
                    sumi[r][c], _mm256_madd_epi16(sc[r], _mm256_maddubs_epi16(q[r], qx)));
            }
        }
        UNROLL for (int c = 0; c < NC; c++) {
            const block_q8_K *bx = ROWB(x, xs, c, block_q8_K, i);
            const __m256i bs = _mm256_loadu_si256((const __m256i *)bx->bsums);
            UNROLL for (int r = 0; r < NR; r++) {
                const __m256i o = _mm256_madd_epi16(off16[r], bs);
                if (q3) {
                    /* sum sc * (q - 4) * x = sum sc * q * x - sum 4 sc * bsum */
                    acc[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(bx->d * dw[r]),
                                                _mm256_cvtepi32_ps(_mm256_sub_epi32(sumi[r][c], o)),
                                                acc[r][c]);
                } else {
                    acc[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(bx->d * dw[r]),
                                                _mm256_cvtepi32_ps(sumi[r][c]), acc[r][c]);
                    acc[r][c] = _mm256_fmadd_ps(_mm256_set1_ps(-(bx->d * dmw[r])),
                                                _mm256_cvtepi32_ps(o), acc[r][c]);
                }
            }
        }
    }
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int c = 0; c < NC; c++) y[(size_t)c * ys + r] =
        hsum8(acc[r][c]);
}

AI void k_q2_K(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
               const int NR, const int NC) {
    k_k23(0, n, w, ws, x, xs, y, ys, NR, NC);
}
AI void k_q3_K(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
               const int NR, const int NC) {
    k_k23(1, n, w, ws, x, xs, y, ys, NR, NC);
}

/* IQ4_XS x Q8_K: 8 sub-blocks of 32 with 6-bit scales (stored +32). */
AI void k_iq4_xs(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
                 const int NR, const int NC) {
    const int nb = n / QK_K;
    const __m128i v = _mm_loadu_si128((const __m128i *)kvalues_iq4nl);
    const __m256i lut = _mm256_set_m128i(v, v);
    __m256 acc[TMAX][TMAX];
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int c = 0; c < NC; c++) acc[r][c] =
        _mm256_setzero_ps();
    for (int i = 0; i < nb; i++) {
        const block_iq4_xs *bw[TMAX];
        UNROLL for (int r = 0; r < NR; r++) bw[r] = ROWB(w, ws, r, block_iq4_xs, i);
        __m256i sumi[TMAX][TMAX];
        UNROLL for (int r = 0; r < NR; r++) UNROLL for (int c = 0; c < NC; c++) sumi[r][c] =
            _mm256_setzero_si256();
        for (int ib = 0; ib < QK_K / 32; ib++) {
            __m256i qw[TMAX], aw[TMAX], ls[TMAX];
            UNROLL for (int r = 0; r < NR; r++) {
                const block_iq4_xs *b = bw[r];
                qw[r] = _mm256_shuffle_epi8(lut, nibbles32(b->qs + 16 * ib));
                aw[r] = _mm256_sign_epi8(qw[r], qw[r]);
                const int l = ((b->scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) |
                              (((b->scales_h >> 2 * ib) & 3) << 4);
                ls[r] = _mm256_set1_epi32(l - 32);
            }
            UNROLL for (int c = 0; c < NC; c++) {
                const block_q8_K *bx = ROWB(x, xs, c, block_q8_K, i);
                const __m256i qx = _mm256_loadu_si256((const __m256i *)(bx->qs + 32 * ib));
                UNROLL for (int r = 0; r < NR; r++) {
                    const __m256i p = dot_us8(aw[r], _mm256_sign_epi8(qx, qw[r]));
                    sumi[r][c] = _mm256_add_epi32(sumi[r][c], _mm256_mullo_epi32(p, ls[r]));
                }
            }
        }
        UNROLL for (int c = 0; c < NC; c++) {
            const block_q8_K *bx = ROWB(x, xs, c, block_q8_K, i);
            UNROLL for (int r = 0; r < NR; r++) acc[r][c] = _mm256_fmadd_ps(
                _mm256_set1_ps(bx->d * h2f(bw[r]->d)), _mm256_cvtepi32_ps(sumi[r][c]), acc[r][c]);
        }
    }
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int c = 0; c < NC; c++) y[(size_t)c * ys + r] =
        hsum8(acc[r][c]);
}

/* ------------------------------------------------------------------ */
/* F16 / BF16 / F32                                                     */
/* ------------------------------------------------------------------ */

/* A 16-lane float vector as two ymm halves (lanes 0-7, 8-15), for the
 * summation orders of quants_ord.inc. */
typedef struct {
    __m256 lo, hi;
} V16;
AI V16 v16_zero(void) { return (V16){_mm256_setzero_ps(), _mm256_setzero_ps()}; }
AI V16 v16_add(V16 a, V16 b) { return (V16){_mm256_add_ps(a.lo, b.lo), _mm256_add_ps(a.hi, b.hi)}; }
AI V16 v16_fma(V16 a, V16 b, V16 c) {
    return (V16){_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)};
}
AI float v16_reduce(V16 v) {
    const __m256 t8 = _mm256_add_ps(v.lo, v.hi);
    const __m128 t4 = _mm_add_ps(_mm256_castps256_ps128(t8), _mm256_extractf128_ps(t8, 1));
    const __m128 t2 = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));
    return _mm_cvtss_f32(_mm_add_ss(t2, _mm_shuffle_ps(t2, t2, 1)));
}
AI V16 v16_ld_f32(const float *p) { return (V16){_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
AI V16 v16_ld_f16(const uint16_t *p) {
    return (V16){_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)),
                 _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 8)))};
}
AI void v16_ld_bf16x2(const uint16_t *p, V16 *odd, V16 *even) {
    const __m256i hi = _mm256_set1_epi32((int)0xFFFF0000u);
    const __m256i a = _mm256_loadu_si256((const __m256i *)p),
                  b = _mm256_loadu_si256((const __m256i *)(p + 16));
    *odd = (V16){_mm256_castsi256_ps(_mm256_and_si256(a, hi)),
                 _mm256_castsi256_ps(_mm256_and_si256(b, hi))};
    *even = (V16){_mm256_castsi256_ps(_mm256_slli_epi32(a, 16)),
                  _mm256_castsi256_ps(_mm256_slli_epi32(b, 16))};
}
#define ORD(name) name##_avx2
#include "engine/quants_ord.inc"
#undef ORD

/* ------------------------------------------------------------------ */
/* instances: vec_dot (1 x 1) and the tiles                             */
/* ------------------------------------------------------------------ */

#define DEFINE_TILED(NAME, KERN, NR, NC)                                                           \
    void tt_vec_dot_##NAME##_avx2(int n, float *s, const void *w, const void *x) {                 \
        KERN(n, w, 0, x, 0, s, 0, 1, 1);                                                           \
    }                                                                                              \
    static void tile_##NAME##_full(int n, const void *w, size_t ws, const void *x, size_t xs,      \
                                   float *y, size_t ys) {                                          \
        KERN(n, w, ws, x, xs, y, ys, NR, NC);                                                      \
    }                                                                                              \
    static void tile_##NAME##_row1(int n, const void *w, size_t ws, const void *x, size_t xs,      \
                                   float *y, size_t ys) {                                          \
        KERN(n, w, ws, x, xs, y, ys, 1, NC);                                                       \
    }                                                                                              \
    static void tile_##NAME##_col1(int n, const void *w, size_t ws, const void *x, size_t xs,      \
                                   float *y, size_t ys) {                                          \
        KERN(n, w, ws, x, xs, y, ys, NR, 1);                                                       \
    }
#define TILE_ENTRY(TYPE, PREF, NAME, NR, NC)                                                       \
    {                                                                                              \
        TYPE, "avx2", PREF, NR, NC, tile_##NAME##_full, tile_##NAME##_row1, tile_##NAME##_col1,    \
            tt_vec_dot_##NAME##_avx2                                                               \
    }

DEFINE_TILED(q8_0_q8_0, k_q8_0, 3, 4)
DEFINE_TILED(q4_0_q8_0, k_q4_0, 3, 4)
DEFINE_TILED(q5_0_q8_0, k_q5_0, 3, 4)
DEFINE_TILED(iq4_nl_q8_0, k_iq4_nl, 3, 4)
DEFINE_TILED(q4_1_q8_1, k_q4_1, 3, 4)
DEFINE_TILED(q5_1_q8_1, k_q5_1, 3, 4)
DEFINE_TILED(q4_K_q8_K, k_q4_K, 3, 4)
DEFINE_TILED(q5_K_q8_K, k_q5_K, 3, 4)
DEFINE_TILED(q6_K_q8_K, k_q6_K, 3, 4)
DEFINE_TILED(iq4_xs_q8_K, k_iq4_xs, 3, 4)
DEFINE_TILED(q2_K_q8_K, k_q2_K, 3, 4)
DEFINE_TILED(q3_K_q8_K, k_q3_K, 3, 4)

static const tt_tile_kernel avx2_tiles[] = {
    TILE_ENTRY(TT_Q8_0, 1, q8_0_q8_0, 3, 4), TILE_ENTRY(TT_Q4_0, 1, q4_0_q8_0, 3, 4),
    TILE_ENTRY(TT_Q5_0, 1, q5_0_q8_0, 3, 4), TILE_ENTRY(TT_IQ4_NL, 1, iq4_nl_q8_0, 3, 4),
    TILE_ENTRY(TT_Q4_K, 1, q4_K_q8_K, 3, 4), TILE_ENTRY(TT_Q5_K, 1, q5_K_q8_K, 3, 4),
    TILE_ENTRY(TT_Q6_K, 1, q6_K_q8_K, 3, 4), TILE_ENTRY(TT_IQ4_XS, 1, iq4_xs_q8_K, 3, 4),
    TILE_ENTRY(TT_Q4_1, 1, q4_1_q8_1, 3, 4), TILE_ENTRY(TT_Q5_1, 1, q5_1_q8_1, 3, 4),
    TILE_ENTRY(TT_Q2_K, 1, q2_K_q8_K, 3, 4), TILE_ENTRY(TT_Q3_K, 1, q3_K_q8_K, 3, 4),
};

const tt_tile_kernel *tt_tiles_avx2(int *count) {
    *count = (int)(sizeof avx2_tiles / sizeof avx2_tiles[0]);
    return avx2_tiles;
}

/* ------------------------------------------------------------------ */
/* activation quantizers                                                */
/* ------------------------------------------------------------------ */

/* roundf() of 8 floats: half-way cases away from zero, as the scalar
 * quantizer rounds. trunc(v) + sign(v) where |v - trunc(v)| >= 0.5; the
 * difference is exact in float. */
AI __m256i round_away8(__m256 v) {
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));
    const __m256 ge = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    const __m256 one = _mm256_or_ps(_mm256_set1_ps(1.0f), _mm256_and_ps(v, sign));
    return _mm256_cvttps_epi32(_mm256_add_ps(t, _mm256_and_ps(ge, one)));
}

/* Packs 32 i32 (four vectors, in order) into 32 bytes with saturation. */
AI __m256i pack32(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    const __m256i p = _mm256_packs_epi16(ab, cd);
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

void tt_from_float_q8_0_avx2(const float *src, void *dst, int64_t n) {
    block_q8_0 *y = dst;
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t i = 0; i < n / QK8_0; i++) {
        const float *p = src + i * QK8_0;
        __m256 v[4];
        __m256 m = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(p + 8 * k);
            m = _mm256_max_ps(m, _mm256_and_ps(v[k], absmask));
        }
        __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = cf_fp32_to_fp16(d);
        const __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int k = 0; k < 4; k++)
            q[k] = round_away8(_mm256_mul_ps(v[k], vid));
        _mm256_storeu_si256((__m256i *)y[i].qs, pack32(q[0], q[1], q[2], q[3]));
    }
}

void tt_from_float_q8_K_avx2(const float *src, void *dst, int64_t n) {
    block_q8_K *y = dst;
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *p = src + i * QK_K;
        __m256 m = _mm256_setzero_ps();
        for (int k = 0; k < QK_K / 8; k++)
            m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(p + 8 * k), absmask));
        __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        /* The scalar quantizer keeps the first value of largest magnitude. */
        float max = 0.0f;
        for (int j = 0; j < QK_K; j++)
            if (fabsf(p[j]) == amax) {
                max = p[j];
                break;
            }
        const float iscale = -127.0f / max;
        const __m256 vs = _mm256_set1_ps(iscale);
        for (int k = 0; k < QK_K / 32; k++) {
            __m256i q[4];
            for (int t = 0; t < 4; t++)
                q[t] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(p + 32 * k + 8 * t), vs));
            _mm256_storeu_si256((__m256i *)(y[i].qs + 32 * k), pack32(q[0], q[1], q[2], q[3]));
        }
        for (int j = 0; j < QK_K / 16; j++) {
            const __m128i b = _mm_loadu_si128((const __m128i *)(y[i].qs + 16 * j));
            const __m256i w = _mm256_cvtepi8_epi16(b);
            const __m256i s = _mm256_madd_epi16(w, _mm256_set1_epi16(1));
            __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
            s4 = _mm_hadd_epi32(s4, s4);
            s4 = _mm_hadd_epi32(s4, s4);
            y[i].bsums[j] = (int16_t)_mm_cvtsi128_si32(s4);
        }
        y[i].d = 1.0f / iscale;
    }
}

void tt_from_float_f16_avx2(const float *src, void *dst, int64_t n) {
    cf_fp16 *y = dst;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++)
        y[i] = cf_fp32_to_fp16(src[i]);
}

void tt_from_float_bf16_avx2(const float *src, void *dst, int64_t n) {
    cf_bf16 *y = dst;
    int64_t i = 0;
    const __m256i absm = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
    for (; i + 16 <= n; i += 16) {
        __m256i h[2];
        for (int k = 0; k < 2; k++) {
            const __m256i u = _mm256_castps_si256(_mm256_loadu_ps(src + i + 8 * k));
            const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, absm), inf);
            const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
            const __m256i r = _mm256_srli_epi32(
                _mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), odd)), 16);
            const __m256i q = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(64));
            h[k] = _mm256_blendv_epi8(r, q, nan);
        }
        const __m256i p = _mm256_packus_epi32(h[0], h[1]);
        _mm256_storeu_si256((__m256i *)(y + i), _mm256_permute4x64_epi64(p, 0xD8));
    }
    for (; i < n; i++)
        y[i] = cf_fp32_to_bf16(src[i]);
}

/* ------------------------------------------------------------------ */
/* install                                                              */
/* ------------------------------------------------------------------ */

void tt_install_avx2(tt_traits *t) {
    t[TT_F32].vec_dot = tt_vec_dot_f32_avx2;
    t[TT_F16].vec_dot = tt_vec_dot_f16_avx2;
    t[TT_F16].from_float = tt_from_float_f16_avx2;
    t[TT_BF16].vec_dot = tt_vec_dot_bf16_avx2;
    t[TT_BF16].from_float = tt_from_float_bf16_avx2;
    t[TT_F32].mat_dot = tt_mat_dot_f32_avx2;
    t[TT_F32].vec_dot_ex = tt_vec_dot_f32_ex_avx2;
    t[TT_F16].mat_dot = tt_mat_dot_f16_avx2;
    t[TT_F16].vec_dot_ex = tt_vec_dot_f16_ex_avx2;
    t[TT_BF16].mat_dot = tt_mat_dot_bf16_avx2;
    t[TT_Q8_0].vec_dot = tt_vec_dot_q8_0_q8_0_avx2;
    t[TT_Q8_0].from_float = tt_from_float_q8_0_avx2;
    t[TT_Q4_0].vec_dot = tt_vec_dot_q4_0_q8_0_avx2;
    t[TT_Q5_0].vec_dot = tt_vec_dot_q5_0_q8_0_avx2;
    t[TT_IQ4_NL].vec_dot = tt_vec_dot_iq4_nl_q8_0_avx2;
    t[TT_Q4_1].vec_dot = tt_vec_dot_q4_1_q8_1_avx2;
    t[TT_Q5_1].vec_dot = tt_vec_dot_q5_1_q8_1_avx2;
    t[TT_Q4_K].vec_dot = tt_vec_dot_q4_K_q8_K_avx2;
    t[TT_Q5_K].vec_dot = tt_vec_dot_q5_K_q8_K_avx2;
    t[TT_Q6_K].vec_dot = tt_vec_dot_q6_K_q8_K_avx2;
    t[TT_IQ4_XS].vec_dot = tt_vec_dot_iq4_xs_q8_K_avx2;
    t[TT_Q2_K].vec_dot = tt_vec_dot_q2_K_q8_K_avx2;
    t[TT_Q3_K].vec_dot = tt_vec_dot_q3_K_q8_K_avx2;
    t[TT_Q8_K].from_float = tt_from_float_q8_K_avx2;
}
