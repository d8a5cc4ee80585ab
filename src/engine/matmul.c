/*
 * matmul — tt_matmul(), the loop every linear layer goes through.
 *
 * Token generation (NX = 1) is a matrix-vector product: one vec_dot per
 * weight row, each weight byte read once from memory; nothing to tile.
 *
 * Prompt processing (NX > 1) is a matrix-matrix product. When the type's
 * vec_dot kernel has tile variants (quants_simd.h) the output is cut into
 * tiles of NR weight rows x NC activation rows, and each tile decodes every
 * weight block once for NC activation rows while the NR x NC accumulators
 * stay in registers. Edges use the 1 x NC, NR x 1 and 1 x 1 (vec_dot)
 * shapes. Activation rows are walked in panels of about 256 KiB, so a panel
 * stays in L2 while the weight rows stream past it; weights are re-read
 * once per panel, which costs little next to the arithmetic.
 *
 * Every tile output is computed by the same operation sequence as vec_dot,
 * so tiled and per-pair results are bit-identical: a Y element does not
 * depend on tiling, on the row range a thread was given, or on NX. Types
 * without tiles (and the scalar family) use the per-pair loop, weight-row
 * major so each weight row is reused for all activation rows while in
 * cache.
 */
#include "engine/types.h"

#include "base/cpu.h"
#include "engine/quants_simd.h"

/* Activation panel size, in bytes, that should stay in L2. */
#define MM_PANEL_BYTES (256u * 1024u)

const tt_tile_kernel *tt_tile_lookup(tt_vec_dot_fn vd) {
    if (!vd) return NULL;
    /* Only families the CPU supports could have put VD in the table; the
     * feature checks merely skip tables that cannot match. */
    if (cpu_has_avx512()) {
        int n;
        const tt_tile_kernel *k = tt_tiles_avx512(&n);
        for (int i = 0; i < n; i++)
            if (k[i].vec_dot == vd) return &k[i];
    }
    if (cpu_has_avx2()) {
        int n;
        const tt_tile_kernel *k = tt_tiles_avx2(&n);
        for (int i = 0; i < n; i++)
            if (k[i].vec_dot == vd) return &k[i];
    }
    return NULL;
}

static void mm_pairs(const tt_traits *t, int n, const char *wb, size_t w_stride, int r0, int r1,
                     const char *xb, size_t x_stride, int nx, float *y, size_t y_stride) {
    for (int r = r0; r < r1; r++) {
        const void *wr = wb + (size_t)r * w_stride;
        for (int j = 0; j < nx; j++)
            t->vec_dot(n, &y[(size_t)j * y_stride + (size_t)r], wr, xb + (size_t)j * x_stride);
    }
}

static void mm_tiled(const tt_tile_kernel *k, int n, const char *wb, size_t w_stride, int r0,
                     int r1, const char *xb, size_t x_stride, int nx, float *y, size_t y_stride) {
    const int nr = k->nr, nc = k->nc;
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
                k->vec_dot(n, y + (size_t)j * y_stride + (size_t)r, wr, xb + (size_t)j * x_stride);
        }
    }
}

void tt_matmul(int type, int n, const void *w, size_t w_stride, int r0, int r1, const void *x,
               size_t x_stride, int nx, float *y, size_t y_stride) {
    const tt_traits *t = tt_get(type);
    const tt_tile_kernel *k = nx > 1 ? tt_tile_lookup(t->vec_dot) : NULL;
    if (k)
        mm_tiled(k, n, w, w_stride, r0, r1, x, x_stride, nx, y, y_stride);
    else
        mm_pairs(t, n, w, w_stride, r0, r1, x, x_stride, nx, y, y_stride);
}

void tt_quantize_act(int type, const float *x, void *out, int n) {
    const tt_traits *vt = tt_get(tt_get(type)->vec_dot_type);
    vt->from_float(x, out, n);
}
