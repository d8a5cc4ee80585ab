/*
 * matmul — tt_matmul(), the loop every linear layer goes through.
 *
 * This is the portable version: one vec_dot per (weight row, activation row)
 * pair, weight-row-major so each weight row is read once from memory and
 * reused for all NX activation rows while it is in cache. Fast paths (tiles
 * of several weight rows x several activation rows with SIMD kernels) plug
 * in through the type table; results must equal this loop's bit for bit
 * whenever the fast path uses the same kernel.
 */
#include "engine/types.h"

void tt_matmul(int type, int n, const void *w, size_t w_stride, int r0, int r1, const void *x,
               size_t x_stride, int nx, float *y, size_t y_stride) {
    const tt_traits *t = tt_get(type);
    const char *wb = w;
    const char *xb = x;
    for (int r = r0; r < r1; r++) {
        const void *wr = wb + (size_t)r * w_stride;
        for (int j = 0; j < nx; j++) t->vec_dot(n, &y[(size_t)j * y_stride + (size_t)r], wr, xb + (size_t)j * x_stride);
    }
}

void tt_quantize_act(int type, const float *x, void *out, int n) {
    const tt_traits *vt = tt_get(tt_get(type)->vec_dot_type);
    vt->from_float(x, out, n);
}
