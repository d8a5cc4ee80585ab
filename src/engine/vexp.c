/*
 * vexp — see vexp.h. The algorithm: n = round(x / ln 2) by the 1.5 * 2^23
 * shift trick, b = x - n ln 2 in two parts, e^b by a degree-5 polynomial
 * in FMA form, scaled by 2^n; |n| > 192 gives 0 or infinity. The
 * constants are those of the approximation (they define its bits).
 */
#include "engine/vexp.h"

#include "base/cpu.h"

#include <math.h>

float vx_expf(float x) {
    const float r = 0x1.8p23f;
    const float z = fmaf(x, 0x1.715476p+0f, r);
    const float n = z - r;
    const float b = fmaf(-n, 0x1.7f7d1cp-20f, fmaf(-n, 0x1.62e4p-1f, x));
    const float u = b * b;
    const float j = fmaf(
        fmaf(fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
        u, fmaf(0x1.ffffecp-1f, b, 1.0f));
    if (fabsf(n) > 192.0f) return n <= 0.0f ? 0.0f : INFINITY;
    if (isnan(n)) return n;
    return scalbnf(j, (int)n);
}

void vx_exp_sub(float *y, const float *x, float sub, int n) {
    if (cpu_has_avx512()) {
        vx_exp_sub_avx512(y, x, sub, n);
        return;
    }
    for (int i = 0; i < n; i++)
        y[i] = vx_expf(x[i] - sub);
}

void vx_silu_row(float *x, int n) {
    const int n16 = n & ~15;
    if (cpu_has_avx512())
        vx_silu16_avx512(x, n16);
    else
        for (int i = 0; i < n16; i++)
            x[i] = x[i] / (1.0f + vx_expf(0.0f - x[i]));
    for (int i = n16; i < n; i++)
        x[i] = x[i] / (1.0f + expf(-x[i]));
}
