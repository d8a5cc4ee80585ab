/*
 * matmul — tt_matmul(), the loop every linear layer goes through.
 *
 * Token generation (NX = 1) is a matrix-vector product: one vec_dot per
 * weight row, each weight byte read once from memory; nothing to tile. It
 * is bound by how fast the weights arrive, so rows go one after another
 * through the 1 x 1 kernel, in one sequential stream that the hardware
 * prefetcher follows. (NR x 1 tiles interleave NR rows, streams of a few
 * KiB each, too short for the prefetcher to catch on: on the Q4_K_M 1B
 * shape, 2 threads, tg went from 19.7 to 45 t/s without them.) The same
 * holds for any NX smaller than a tile's NC.
 *
 * Prompt processing (NX > 1) is a matrix-matrix product. When the type has
 * tile kernels on this CPU (tt_tile_lookup, quants_simd.h) the output is
 * cut into tiles of NR weight rows x NC activation rows (3x4 AVX2, 4x4
 * AVX-512), and each tile decodes every weight block once for NC
 * activation rows while the NR x NC integer sums stay in registers. Edges
 * use the set's 1 x NC, NR x 1 and 1 x 1 shapes (callers splitting rows
 * into multiples of NR avoid the slower 1 x NC edge). Activation rows are walked in panels of about
 * 256 KiB, so a panel stays in L2 while the weight rows stream past it; weights are re-read once
 * per panel, which costs little next to the arithmetic.
 *
 * Every tile output is computed by the same operation sequence as the tile
 * set's own 1 x 1 kernel, and with NX > 1 every output goes through that
 * set, so a Y element does not depend on tiling or on the row range a
 * thread was given. The tile family is chosen per type by measurement
 * (tt_tile_lookup) and is used for NX = 1 too, so a row's result does not
 * depend on how many rows share the call (continuous batching relies on
 * it). Types without tiles (and the scalar family) use the per-pair
 * loop, weight-row major so each weight row is reused for all activation
 * rows while in cache.
 */
#include "base/cpu.h"
#include "engine/quants_simd.h"
#include "engine/types.h"

#include <string.h>

/* Activation panel size, in bytes, that should stay in L2. */
#define MM_PANEL_BYTES (256u * 1024u)

const tt_tile_kernel *tt_tile_lookup(int type) {
    if (cpu_has_avx512()) {
        const int vnni = cpu_get()->avx512vnni;
        int n;
        const tt_tile_kernel *k = tt_tiles_avx512(&n);
        const tt_tile_kernel *plain = NULL, *with_vnni = NULL;
        for (int i = 0; i < n; i++) {
            if (k[i].type != type || !k[i].preferred) continue;
            if (!strcmp(k[i].family, "avx512vnni"))
                with_vnni = &k[i];
            else
                plain = &k[i];
        }
        if (vnni && with_vnni) return with_vnni;
        if (plain) return plain;
    }
    if (cpu_has_avx2()) {
        int n;
        const tt_tile_kernel *k = tt_tiles_avx2(&n);
        for (int i = 0; i < n; i++)
            if (k[i].type == type && k[i].preferred) return &k[i];
    }
    return NULL;
}

static void mm_pairs(tt_vec_dot_fn vd, int n, const char *wb, size_t w_stride, int r0, int r1,
                     const char *xb, size_t x_stride, int nx, float *y, size_t y_stride) {
    for (int r = r0; r < r1; r++) {
        const void *wr = wb + (size_t)r * w_stride;
        for (int j = 0; j < nx; j++)
            vd(n, &y[(size_t)j * y_stride + (size_t)r], wr, xb + (size_t)j * x_stride);
    }
}

static void mm_tiled(const tt_tile_kernel *k, int n, const char *wb, size_t w_stride, int r0,
                     int r1, const char *xb, size_t x_stride, int nx, float *y, size_t y_stride) {
    const int nr = k->nr, nc = k->nc;
    if (nx < nc) {
        /* Too few activation rows to fill a tile: weight rows one after
         * another through the 1 x 1 kernel, one sequential stream (see
         * the top of this file). */
        mm_pairs(k->one, n, wb, w_stride, r0, r1, xb, x_stride, nx, y, y_stride);
        return;
    }
    int panel = (int)(MM_PANEL_BYTES / (x_stride ? x_stride : 1));
    panel = panel < nc ? nc : panel - panel % nc;
    for (int j0 = 0; j0 < nx; j0 += panel) {
        const int j1 = j0 + panel < nx ? j0 + panel : nx;
        int r = r0;
        for (; r + nr <= r1; r += nr) {
            const char *wr = wb + (size_t)r * w_stride;
            int j = j0;
            for (; j + nc <= j1; j += nc)
                k->full(n, wr, w_stride, xb + (size_t)j * x_stride, x_stride,
                        y + (size_t)j * y_stride + (size_t)r, y_stride);
            for (; j < j1; j++)
                k->col1(n, wr, w_stride, xb + (size_t)j * x_stride, x_stride,
                        y + (size_t)j * y_stride + (size_t)r, y_stride);
        }
        for (; r < r1; r++) {
            const char *wr = wb + (size_t)r * w_stride;
            int j = j0;
            for (; j + nc <= j1; j += nc)
                k->row1(n, wr, w_stride, xb + (size_t)j * x_stride, x_stride,
                        y + (size_t)j * y_stride + (size_t)r, y_stride);
            for (; j < j1; j++)
                k->one(n, y + (size_t)j * y_stride + (size_t)r, wr, xb + (size_t)j * x_stride);
        }
    }
}

void tt_matmul_with(const tt_tile_kernel *k, tt_vec_dot_fn vd, int n, const void *w,
                    size_t w_stride, int r0, int r1, const void *x, size_t x_stride, int nx,
                    float *y, size_t y_stride) {
    if (k)
        mm_tiled(k, n, w, w_stride, r0, r1, x, x_stride, nx, y, y_stride);
    else
        mm_pairs(vd, n, w, w_stride, r0, r1, x, x_stride, nx, y, y_stride);
}

void tt_matmul(int type, int n, const void *w, size_t w_stride, int r0, int r1, const void *x,
               size_t x_stride, int nx, float *y, size_t y_stride) {
    /* Every NX goes through the tile set when the type has one (below a
     * tile's NC, through its 1 x 1 kernel, which every tile output equals
     * bit for bit), so an output depends neither on the row range nor on
     * how many activation rows share the call: a sequence decoded in a
     * batch of N gets the same bits as decoded alone.
     * F32/F16/BF16 use their matrix order (quants.h) where the reference
     * engine does, the vector order otherwise; their tiles follow the
     * matrix order. */
    const tt_traits *t = tt_get(type);
    if (t->mat_dot && n % t->mat_blk) {
        mm_pairs(t->vec_dot, n, w, w_stride, r0, r1, x, x_stride, nx, y, y_stride);
        return;
    }
    const tt_tile_kernel *k = tt_tile_lookup(type);
    tt_matmul_with(k, t->mat_dot ? t->mat_dot : t->vec_dot, n, w, w_stride, r0, r1, x, x_stride, nx,
                   y, y_stride);
}

void tt_matmul_vec(int type, int n, const void *w, size_t w_stride, int r0, int r1, const void *x,
                   size_t x_stride, int nx, float *y, size_t y_stride) {
    const tt_traits *t = tt_get(type);
    if (!t->mat_dot) {
        tt_matmul(type, n, w, w_stride, r0, r1, x, x_stride, nx, y, y_stride);
        return;
    }
    mm_pairs(t->vec_dot, n, w, w_stride, r0, r1, x, x_stride, nx, y, y_stride);
}

void tt_quantize_act(int type, const float *x, void *out, int n) {
    const tt_traits *vt = tt_get(tt_get(type)->vec_dot_type);
    vt->from_float(x, out, n);
}
