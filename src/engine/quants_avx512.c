/*
 * quants_avx512 — the AVX-512 (F+BW+VL+DQ) kernel family, with a VNNI
 * variant of the 32-value-block kernels chosen at install time when
 * cpu_get()->avx512vnni says so.
 *
 * Same scheme as quants_avx2.c, twice as wide, in natural element order:
 *  - 32-value blocks x Q8_0 (Q8_0, Q4_0, Q5_0, IQ4_NL): two blocks per zmm,
 *    sign trick, u8 x s8 dot by VPMADDUBSW+VPMADDWD or VPDPBUSD (the
 *    bodies live in quants_avx512_b32.inc, included once per variant, since
 *    a VNNI intrinsic may only appear in a function compiled for VNNI).
 *  - Q4_K / Q5_K / Q6_K x Q8_K: 64 values per zmm; sub-block scales
 *    applied by VPMADDWD on the i16 pair sums (no VNNI variant: a VPDPBUSD
 *    would still need a per-sub-block multiply, so it saves nothing).
 *  - F32 / F16 / BF16: the reference summation orders (quants_ord.inc);
 *    F16 tiles in the matrix order, VCVTPH2PS 16 at a time.
 * One float FMA per block (pair) or super-block; one horizontal sum per
 * output at the end. Integer results equal the scalar reference exactly.
 *
 * Tiles work as in quants_avx2.c (every tile output computed by exactly the
 * sequence of the tile set's 1 x 1 kernel); with 32 zmm registers the
 * shape is 4x4 (the K-quants' float accumulators are touched once per
 * super-block, so the compiler keeps only the integer sums in registers).
 *
 * Rows not overwritten here keep their AVX2 kernel (tt_install_avx2 runs
 * first); tt_install_avx512 says which and why. Everything here runs only
 * after cpu_has_avx512().
 */
#include "base/cpu.h"
#include "engine/blocks.h"
#include "engine/quants_simd.h"
#include "engine/vexp.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define AI static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 8")
#define TMAX 4
#define ROWB(base, stride, r, type, ib)                                                            \
    ((const type *)((const char *)(base) + (size_t)(r) * (stride)) + (ib))

enum { W_Q8_0, W_Q4_0, W_Q5_0, W_IQ4_NL };

AI float h2f(cf_fp16 h) { return _cvtsh_ss(h); }

/* 32 nibbles: bytes 0..15 = low nibbles of q[0..15], 16..31 = high nibbles. */
AI __m256i nib32(const uint8_t *q) {
    const __m128i t = _mm_loadu_si128((const __m128i *)q);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), _mm256_set1_epi8(0x0F));
}

/* ------------------------------------------------------------------ */
/* 32-value blocks: two instances                                       */
/* ------------------------------------------------------------------ */

AI __m512i dot_madd(__m512i u, __m512i s) {
    return _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1));
}

#define KN(name) name##_avx512
#define KATTR
#define KDOT(u, s) dot_madd(u, s)
#include "engine/quants_avx512_b32.inc"
#undef KN
#undef KATTR
#undef KDOT

#define KN(name) name##_avx512vnni
#define KATTR __attribute__((target("avx512vnni")))
#define KDOT(u, s) _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, s)
#include "engine/quants_avx512_b32.inc"
#undef KN
#undef KATTR
#undef KDOT

/* ------------------------------------------------------------------ */
/* K-quants x Q8_K                                                      */
/* ------------------------------------------------------------------ */

AI void kq_scales(const uint8_t *scales, uint32_t u[4]) {
    const uint32_t kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
    memcpy(u, scales, 12);
    u[3] = ((u[2] >> 4) & kmask2) | (((u[1] >> 6) & kmask3) << 4);
    const uint32_t uaux = u[1] & kmask1;
    u[1] = (u[2] & kmask2) | (((u[0] >> 6) & kmask3) << 4);
    u[2] = uaux;
    u[0] &= kmask1;
}

AI __m128i q8k_sums32(const block_q8_K *b) {
    const __m256i s = _mm256_loadu_si256((const __m256i *)b->bsums);
    return _mm_hadd_epi16(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
}

/* Q4_K (HB 0) / Q5_K (HB 1): the 64 unsigned weights of chunk J, in order. */
AI __m512i k45_chunk(int hb, const void *blk, int j) {
    const uint8_t *qs = hb ? ((const block_q5_K *)blk)->qs : ((const block_q4_K *)blk)->qs;
    const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * j));
    __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(q), _mm256_srli_epi16(q, 4), 1);
    v = _mm512_and_si512(v, _mm512_set1_epi8(0x0F));
    if (hb) {
        const __m256i h = _mm256_loadu_si256((const __m256i *)((const block_q5_K *)blk)->qh);
        const __mmask32 klo = _mm256_test_epi8_mask(h, _mm256_set1_epi8((char)(1 << (2 * j))));
        const __mmask32 khi = _mm256_test_epi8_mask(h, _mm256_set1_epi8((char)(2 << (2 * j))));
        const __mmask64 k = (__mmask64)klo | ((__mmask64)khi << 32);
        v = _mm512_mask_add_epi8(v, k, v, _mm512_set1_epi8(16));
    }
    return v;
}

AI void k_k45(int hb, int n, const void *w, size_t ws, const void *x, size_t xs, float *y,
              size_t ys, const int NR, const int NC) {
    const int nb = n / QK_K;
    const size_t bsz = hb ? sizeof(block_q5_K) : sizeof(block_q4_K);
    __m512 acc[TMAX][TMAX];
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int c = 0; c < NC; c++) acc[r][c] =
        _mm512_setzero_ps();
    for (int i = 0; i < nb; i++) {
        const void *bw[TMAX];
        __m128i mins[TMAX];
        __m512i scl[TMAX]; /* scales (i16 lanes 0..7), mins (8..15) */
        float dw[TMAX], dmw[TMAX];
        UNROLL for (int r = 0; r < NR; r++) {
            bw[r] = (const char *)w + (size_t)r * ws + (size_t)i * bsz;
            const block_q4_K *h = bw[r];
            dw[r] = h2f(h->d);
            dmw[r] = h2f(h->dmin);
            uint32_t sm[4];
            kq_scales(h->scales, sm);
            const __m256i ms = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)sm));
            mins[r] = _mm256_extracti128_si256(ms, 1);
            scl[r] = _mm512_castsi256_si512(ms);
        }
        __m512i sumi[TMAX][TMAX];
        UNROLL for (int r = 0; r < NR; r++) UNROLL for (int c = 0; c < NC; c++) sumi[r][c] =
            _mm512_setzero_si512();
        UNROLL for (int j = 0; j < QK_K / 64; j++) {
            __m512i q[TMAX], sc[TMAX];
            /* i16 lanes 0..15 take scale 2j, lanes 16..31 scale 2j+1 */
            const __m512i idx = _mm512_inserti64x4(_mm512_set1_epi16((short)(2 * j)),
                                                   _mm256_set1_epi16((short)(2 * j + 1)), 1);
            UNROLL for (int r = 0; r < NR; r++) {
                q[r] = k45_chunk(hb, bw[r], j);
                sc[r] = _mm512_permutexvar_epi16(idx, scl[r]);
            }
            UNROLL for (int c = 0; c < NC; c++) {
                const block_q8_K *bx = ROWB(x, xs, c, block_q8_K, i);
                const __m512i qx = _mm512_loadu_si512(bx->qs + 64 * j);
                UNROLL for (int r = 0; r < NR; r++) sumi[r][c] = _mm512_add_epi32(
                    sumi[r][c], _mm512_madd_epi16(sc[r], _mm512_maddubs_epi16(q[r], qx)));
            }
        }
        UNROLL for (int c = 0; c < NC; c++) {
            const block_q8_K *bx = ROWB(x, xs, c, block_q8_K, i);
            const __m128i s32 = q8k_sums32(bx);
            UNROLL for (int r = 0; r < NR; r++) {
                const __m512i pm = _mm512_zextsi128_si512(_mm_madd_epi16(mins[r], s32));
                acc[r][c] = _mm512_fmadd_ps(_mm512_set1_ps(bx->d * dw[r]),
                                            _mm512_cvtepi32_ps(sumi[r][c]), acc[r][c]);
                acc[r][c] = _mm512_fmadd_ps(_mm512_set1_ps(-(bx->d * dmw[r])),
                                            _mm512_cvtepi32_ps(pm), acc[r][c]);
            }
        }
    }
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int c = 0; c < NC; c++) y[(size_t)c * ys + r] =
        _mm512_reduce_add_ps(acc[r][c]);
}

AI void k_q4_K(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
               const int NR, const int NC) {
    k_k45(0, n, w, ws, x, xs, y, ys, NR, NC);
}
AI void k_q5_K(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
               const int NR, const int NC) {
    k_k45(1, n, w, ws, x, xs, y, ys, NR, NC);
}

/* Q6_K: the 64 unsigned 6-bit weights of quarter Q (0..3) of a super-block,
 * in order: quarter 2h covers q1|q2 of half h, quarter 2h+1 covers q3|q4. */
AI __m512i k6_quarter(const block_q6_K *b, int qt) {
    const int half = qt / 2, upper = qt % 2;
    __m512i l = _mm512_loadu_si512(b->ql + 64 * half);
    const __m256i h = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * half));
    __m512i hv;
    if (!upper) {
        hv = _mm512_inserti64x4(_mm512_castsi256_si512(h), _mm256_srli_epi16(h, 2), 1);
    } else {
        l = _mm512_srli_epi16(l, 4);
        hv = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_srli_epi16(h, 4)),
                                _mm256_srli_epi16(h, 6), 1);
    }
    l = _mm512_and_si512(l, _mm512_set1_epi8(0x0F));
    hv = _mm512_slli_epi16(_mm512_and_si512(hv, _mm512_set1_epi8(3)), 4);
    return _mm512_or_si512(l, hv);
}

AI void k_q6_K(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
               const int NR, const int NC) {
    const int nb = n / QK_K;
    const __m512i m32 = _mm512_set1_epi8(32);
    __m512 acc[TMAX][TMAX];
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int c = 0; c < NC; c++) acc[r][c] =
        _mm512_setzero_ps();
    for (int i = 0; i < nb; i++) {
        const block_q6_K *bw[TMAX];
        __m512i scw[TMAX];
        UNROLL for (int r = 0; r < NR; r++) {
            bw[r] = ROWB(w, ws, r, block_q6_K, i);
            scw[r] = _mm512_castsi256_si512(
                _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)bw[r]->scales)));
        }
        __m512i sumi[TMAX][TMAX];
        UNROLL for (int r = 0; r < NR; r++) UNROLL for (int c = 0; c < NC; c++) sumi[r][c] =
            _mm512_setzero_si512();
        UNROLL for (int qt = 0; qt < 4; qt++) {
            /* i16 lane l of this quarter belongs to sub-block 4*qt + l/8 */
            const __m512i idx = _mm512_add_epi16(
                _mm512_set1_epi16((short)(4 * qt)),
                _mm512_srli_epi16(_mm512_set_epi16(31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20,
                                                   19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7,
                                                   6, 5, 4, 3, 2, 1, 0),
                                  3));
            __m512i q[TMAX], sc[TMAX];
            UNROLL for (int r = 0; r < NR; r++) {
                q[r] = k6_quarter(bw[r], qt);
                sc[r] = _mm512_permutexvar_epi16(idx, scw[r]);
            }
            UNROLL for (int c = 0; c < NC; c++) {
                const block_q8_K *bx = ROWB(x, xs, c, block_q8_K, i);
                const __m512i qx = _mm512_loadu_si512(bx->qs + 64 * qt);
                const __m512i qx32 = _mm512_maddubs_epi16(m32, qx);
                UNROLL for (int r = 0; r < NR; r++) {
                    const __m512i p = _mm512_sub_epi16(_mm512_maddubs_epi16(q[r], qx), qx32);
                    sumi[r][c] = _mm512_add_epi32(sumi[r][c], _mm512_madd_epi16(sc[r], p));
                }
            }
        }
        UNROLL for (int c = 0; c < NC; c++) {
            const block_q8_K *bx = ROWB(x, xs, c, block_q8_K, i);
            UNROLL for (int r = 0; r < NR; r++) acc[r][c] = _mm512_fmadd_ps(
                _mm512_set1_ps(bx->d * h2f(bw[r]->d)), _mm512_cvtepi32_ps(sumi[r][c]), acc[r][c]);
        }
    }
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int c = 0; c < NC; c++) y[(size_t)c * ys + r] =
        _mm512_reduce_add_ps(acc[r][c]);
}

/* ------------------------------------------------------------------ */
/* F16 / BF16 / F32                                                     */
/* ------------------------------------------------------------------ */

/* A 16-lane float vector is one zmm, for the summation orders of
 * quants_ord.inc (_mm512_reduce_add_ps is tt_reduce16's tree). */
typedef __m512 V16;
AI V16 v16_zero(void) { return _mm512_setzero_ps(); }
AI V16 v16_add(V16 a, V16 b) { return _mm512_add_ps(a, b); }
AI V16 v16_fma(V16 a, V16 b, V16 c) { return _mm512_fmadd_ps(a, b, c); }
AI float v16_reduce(V16 v) { return _mm512_reduce_add_ps(v); }
AI V16 v16_ld_f32(const float *p) { return _mm512_loadu_ps(p); }
AI V16 v16_ld_f16(const uint16_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}
AI void v16_ld_bf16x2(const uint16_t *p, V16 *odd, V16 *even) {
    const __m512i v = _mm512_loadu_si512(p);
    *odd = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32((int)0xFFFF0000u)));
    *even = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}
#define ORD(name) name##_avx512
#include "engine/quants_ord.inc"
#undef ORD

/* F16 tiles in the matrix order (quants.h): one accumulator per output,
 * 16 values a step, the last partial step zero-padded; 4 x 4 outputs use
 * 16 of the 32 zmm registers. */
AI void k_f16t(int n, const void *w, size_t ws, const void *x, size_t xs, float *y, size_t ys,
               const int NR, const int NC) {
    __m512 acc[TMAX][TMAX];
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int c = 0; c < NC; c++) acc[r][c] =
        _mm512_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 wv[TMAX];
        UNROLL for (int r = 0; r < NR; r++) wv[r] =
            v16_ld_f16((const uint16_t *)((const char *)w + (size_t)r * ws) + i);
        UNROLL for (int c = 0; c < NC; c++) {
            const __m512 xv = v16_ld_f16((const uint16_t *)((const char *)x + (size_t)c * xs) + i);
            UNROLL for (int r = 0; r < NR; r++) acc[r][c] = _mm512_fmadd_ps(wv[r], xv, acc[r][c]);
        }
    }
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 wv[TMAX];
        UNROLL for (int r = 0; r < NR; r++) wv[r] = _mm512_cvtph_ps(
            _mm256_maskz_loadu_epi16(m, (const uint16_t *)((const char *)w + (size_t)r * ws) + i));
        UNROLL for (int c = 0; c < NC; c++) {
            const __m512 xv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(
                m, (const uint16_t *)((const char *)x + (size_t)c * xs) + i));
            UNROLL for (int r = 0; r < NR; r++) acc[r][c] = _mm512_fmadd_ps(wv[r], xv, acc[r][c]);
        }
    }
    UNROLL for (int r = 0; r < NR; r++) UNROLL for (int c = 0; c < NC; c++) y[(size_t)c * ys + r] =
        _mm512_reduce_add_ps(acc[r][c]);
}

/* ------------------------------------------------------------------ */
/* instances and tables                                                 */
/* ------------------------------------------------------------------ */

#define DEFINE_TILED(NAME, KERN, NR, NC)                                                           \
    void tt_vec_dot_##NAME##_avx512(int n, float *s, const void *w, const void *x) {               \
        KERN(n, w, 0, x, 0, s, 0, 1, 1);                                                           \
    }                                                                                              \
    static void tile_##NAME##_full_avx512(int n, const void *w, size_t ws, const void *x,          \
                                          size_t xs, float *y, size_t ys) {                        \
        KERN(n, w, ws, x, xs, y, ys, NR, NC);                                                      \
    }                                                                                              \
    static void tile_##NAME##_row1_avx512(int n, const void *w, size_t ws, const void *x,          \
                                          size_t xs, float *y, size_t ys) {                        \
        KERN(n, w, ws, x, xs, y, ys, 1, NC);                                                       \
    }                                                                                              \
    static void tile_##NAME##_col1_avx512(int n, const void *w, size_t ws, const void *x,          \
                                          size_t xs, float *y, size_t ys) {                        \
        KERN(n, w, ws, x, xs, y, ys, NR, 1);                                                       \
    }

DEFINE_TILED(q4_K_q8_K, k_q4_K, 4, 4)
DEFINE_TILED(q5_K_q8_K, k_q5_K, 4, 4)
DEFINE_TILED(q6_K_q8_K, k_q6_K, 4, 4)
DEFINE_TILED(f16t, k_f16t, 4, 4)

#define ENTRY(TYPE, PREF, NAME, SFX, NR, NC)                                                       \
    {                                                                                              \
        TYPE, #SFX + 1, PREF, NR, NC, tile_##NAME##_full##SFX, tile_##NAME##_row1##SFX,            \
            tile_##NAME##_col1##SFX, tt_vec_dot_##NAME##SFX                                        \
    }

/* preferred = 1 where these tiles measured faster than the AVX2 ones on
 * the development machine (bench/README.md). */
static const tt_tile_kernel avx512_tiles[] = {
    ENTRY(TT_Q8_0, 1, q8_0_q8_0, _avx512, 4, 4),
    ENTRY(TT_Q4_0, 1, q4_0_q8_0, _avx512, 4, 4),
    ENTRY(TT_Q5_0, 1, q5_0_q8_0, _avx512, 4, 4),
    ENTRY(TT_IQ4_NL, 1, iq4_nl_q8_0, _avx512, 4, 4),
    ENTRY(TT_Q8_0, 1, q8_0_q8_0, _avx512vnni, 4, 4),
    ENTRY(TT_Q4_0, 1, q4_0_q8_0, _avx512vnni, 4, 4),
    ENTRY(TT_Q5_0, 1, q5_0_q8_0, _avx512vnni, 4, 4),
    ENTRY(TT_IQ4_NL, 1, iq4_nl_q8_0, _avx512vnni, 4, 4),
    ENTRY(TT_Q4_K, 0, q4_K_q8_K, _avx512, 4, 4), /* ties AVX2's 3x4, which matches vec_dot */
    ENTRY(TT_Q5_K, 0, q5_K_q8_K, _avx512, 4, 4), /* ties AVX2's 3x4, which matches vec_dot */
    ENTRY(TT_Q6_K, 1, q6_K_q8_K, _avx512, 4, 4),
    ENTRY(TT_F16, 1, f16t, _avx512, 4, 4), /* the matrix order; AVX2 has no F16 tiles */
};

const tt_tile_kernel *tt_tiles_avx512(int *count) {
    *count = (int)(sizeof avx512_tiles / sizeof avx512_tiles[0]);
    return avx512_tiles;
}

/* ------------------------------------------------------------------ */
/* activation quantizers                                                */
/* ------------------------------------------------------------------ */

/* roundf() of 16 floats (half-way away from zero), exactly. */
AI __m512i round_away16(__m512 v) {
    const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m512 frac = _mm512_abs_ps(_mm512_sub_ps(v, t));
    const __mmask16 ge = _mm512_cmp_ps_mask(frac, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    const __m512 one = _mm512_or_ps(_mm512_set1_ps(1.0f), _mm512_and_ps(v, _mm512_set1_ps(-0.0f)));
    return _mm512_cvttps_epi32(_mm512_mask_add_ps(t, ge, t, one));
}

void tt_from_float_q8_0_avx512(const float *src, void *dst, int64_t n) {
    block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        const float *p = src + i * QK8_0;
        const __m512 v0 = _mm512_loadu_ps(p), v1 = _mm512_loadu_ps(p + 16);
        const float amax =
            _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = cf_fp32_to_fp16(d);
        const __m512 vid = _mm512_set1_ps(id);
        _mm_storeu_si128((__m128i *)y[i].qs,
                         _mm512_cvtepi32_epi8(round_away16(_mm512_mul_ps(v0, vid))));
        _mm_storeu_si128((__m128i *)(y[i].qs + 16),
                         _mm512_cvtepi32_epi8(round_away16(_mm512_mul_ps(v1, vid))));
    }
}

void tt_from_float_q8_K_avx512(const float *src, void *dst, int64_t n) {
    block_q8_K *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *p = src + i * QK_K;
        __m512 m = _mm512_setzero_ps();
        for (int k = 0; k < QK_K / 16; k++)
            m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(p + 16 * k)));
        const float amax = _mm512_reduce_max_ps(m);
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
        const __m512 vs = _mm512_set1_ps(iscale);
        for (int k = 0; k < QK_K / 16; k++) {
            const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(p + 16 * k), vs));
            _mm_storeu_si128((__m128i *)(y[i].qs + 16 * k), _mm512_cvtsepi32_epi8(q));
            y[i].bsums[k] = (int16_t)_mm512_reduce_add_epi32(q);
        }
        y[i].d = 1.0f / iscale;
    }
}

void tt_from_float_f16_avx512(const float *src, void *dst, int64_t n) {
    cf_fp16 *y = dst;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256((__m256i *)(y + i),
                            _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++)
        y[i] = cf_fp32_to_fp16(src[i]);
}

/* ------------------------------------------------------------------ */
/* e^x and SiLU (vexp.h): the same FMA sequence as vx_expf, 16 lanes     */
/* ------------------------------------------------------------------ */

AI __m512 vexp16(__m512 x) {
    const __m512 r = _mm512_set1_ps(0x1.8p23f);
    const __m512 z = _mm512_fmadd_ps(x, _mm512_set1_ps(0x1.715476p+0f), r);
    const __m512 n = _mm512_sub_ps(z, r);
    const __m512 b = _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.7f7d1cp-20f),
                                      _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.62e4p-1f), x));
    const __m512 u = _mm512_mul_ps(b, b);
    const __m512 p5 =
        _mm512_fmadd_ps(_mm512_set1_ps(0x1.0e4020p-7f), b, _mm512_set1_ps(0x1.573e2ep-5f));
    const __m512 p3 =
        _mm512_fmadd_ps(_mm512_set1_ps(0x1.555e66p-3f), b, _mm512_set1_ps(0x1.fffdb6p-2f));
    const __m512 p1 = _mm512_fmadd_ps(_mm512_set1_ps(0x1.ffffecp-1f), b, _mm512_set1_ps(1.0f));
    const __m512 j = _mm512_fmadd_ps(_mm512_fmadd_ps(p5, u, p3), u, p1);
    const __m512 res = _mm512_scalef_ps(j, n);
    const __mmask16 big = _mm512_cmp_ps_mask(_mm512_abs_ps(n), _mm512_set1_ps(192), _CMP_GT_OQ);
    if (!big) return res;
    const __m512 alt = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(n, _mm512_setzero_ps(), _CMP_LE_OQ),
                                            _mm512_set1_ps(INFINITY), _mm512_setzero_ps());
    return _mm512_mask_blend_ps(big, res, alt);
}

void vx_exp_sub_avx512(float *y, const float *x, float sub, int n) {
    const __m512 s = _mm512_set1_ps(sub);
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, vexp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), s)));
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, vexp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), s)));
    }
}

void vx_silu16_avx512(float *x, int n16) {
    for (int i = 0; i + 16 <= n16; i += 16) {
        const __m512 v = _mm512_loadu_ps(x + i);
        const __m512 e = vexp16(_mm512_sub_ps(_mm512_setzero_ps(), v));
        _mm512_storeu_ps(x + i, _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0f), e)));
    }
}

/* ------------------------------------------------------------------ */
/* install                                                              */
/* ------------------------------------------------------------------ */

/* Which rows take the AVX-512 vec_dot is decided by measurement
 * (bench/README.md): on the development machine (AMD Zen 4, which runs
 * 512-bit operations as two 256-bit halves) the zmm kernels of the
 * 32-value-block types, Q4_K and Q5_K lose to (or tie with) AVX2 for
 * matrix-vector products,
 * since the extra inserts and the wider final reduction cost more than the
 * halved instruction count saves, so those rows keep their AVX2 vec_dot;
 * their matrix-matrix tiles are the AVX-512 (VNNI) ones (tt_tile_lookup). */
void tt_install_avx512(tt_traits *t) {
    t[TT_F32].vec_dot = tt_vec_dot_f32_avx512;
    t[TT_F16].vec_dot = tt_vec_dot_f16_avx512;
    t[TT_F16].from_float = tt_from_float_f16_avx512;
    t[TT_BF16].vec_dot = tt_vec_dot_bf16_avx512;
    t[TT_F32].mat_dot = tt_mat_dot_f32_avx512;
    t[TT_F32].vec_dot_ex = tt_vec_dot_f32_ex_avx512;
    t[TT_F16].mat_dot = tt_mat_dot_f16_avx512;
    t[TT_F16].vec_dot_ex = tt_vec_dot_f16_ex_avx512;
    t[TT_BF16].mat_dot = tt_mat_dot_bf16_avx512;
    t[TT_Q8_0].from_float = tt_from_float_q8_0_avx512;
    t[TT_Q6_K].vec_dot = tt_vec_dot_q6_K_q8_K_avx512;
    t[TT_Q8_K].from_float = tt_from_float_q8_K_avx512;
}
