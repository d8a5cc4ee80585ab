/*
 * kv — storage of the key/value cache (see kv.h). Kept apart from the
 * forward pass so the layout can change (paging, multi-sequence cells)
 * without touching the maths.
 */
#include "engine/kv.h"

#include <stdlib.h>
#include <string.h>

#include "engine/blocks.h"
#include "engine/types.h"

int kv_init(kv_cache *kv, int f16, int n_layer, int n_ctx, int dim, cf_err *err) {
    memset(kv, 0, sizeof *kv);
    if (n_layer <= 0 || n_ctx <= 0 || dim <= 0)
        return cf_seterr(err, CF_EINVAL, "kv cache: bad shape (%d layers, %d positions, dim %d)",
                         n_layer, n_ctx, dim);
    kv->f16 = f16 ? 1 : 0;
    kv->n_layer = n_layer;
    kv->n_ctx = n_ctx;
    kv->dim = dim;
    kv->k = calloc((size_t)n_layer, sizeof *kv->k);
    kv->v = calloc((size_t)n_layer, sizeof *kv->v);
    if (!kv->k || !kv->v) goto oom;
    size_t bytes = (size_t)n_ctx * (size_t)dim * (kv->f16 ? 2 : 4);
    for (int l = 0; l < n_layer; l++) {
        kv->k[l] = calloc(1, bytes);
        kv->v[l] = calloc(1, bytes);
        if (!kv->k[l] || !kv->v[l]) goto oom;
    }
    return 0;
oom:
    kv_free(kv);
    return cf_seterr(err, CF_ENOMEM, "kv cache: out of memory for %d positions", n_ctx);
}

void kv_free(kv_cache *kv) {
    for (int l = 0; l < kv->n_layer && kv->k; l++) {
        free(kv->k[l]);
        if (kv->v) free(kv->v[l]);
    }
    free(kv->k);
    free(kv->v);
    memset(kv, 0, sizeof *kv);
}

size_t kv_bytes(const kv_cache *kv) {
    return 2u * (size_t)kv->n_layer * (size_t)kv->n_ctx * (size_t)kv->dim * (kv->f16 ? 2 : 4);
}

int kv_type(const kv_cache *kv) { return kv->f16 ? TT_F16 : TT_F32; }

void kv_store(kv_cache *kv, int layer, int pos, const float *k, const float *v) {
    const size_t off = (size_t)pos * (size_t)kv->dim, nc = (size_t)kv->n_ctx;
    if (kv->f16) {
        cf_fp16 *kd = (cf_fp16 *)kv->k[layer] + off, *vt = (cf_fp16 *)kv->v[layer] + pos;
        for (int i = 0; i < kv->dim; i++) {
            kd[i] = cf_fp32_to_fp16(k[i]);
            vt[(size_t)i * nc] = cf_fp32_to_fp16(v[i]);
        }
    } else {
        float *vt = (float *)kv->v[layer] + pos;
        memcpy((float *)kv->k[layer] + off, k, (size_t)kv->dim * sizeof(float));
        for (int i = 0; i < kv->dim; i++)
            vt[(size_t)i * nc] = v[i];
    }
}

void kv_copy(kv_cache *kv, int src, int dst, int n) {
    const size_t esz = kv->f16 ? 2 : 4, dim = (size_t)kv->dim, nc = (size_t)kv->n_ctx;
    for (int l = 0; l < kv->n_layer; l++) {
        char *k = kv->k[l], *v = kv->v[l];
        memmove(k + (size_t)dst * dim * esz, k + (size_t)src * dim * esz, (size_t)n * dim * esz);
        for (size_t d = 0; d < dim; d++)
            memmove(v + (d * nc + (size_t)dst) * esz, v + (d * nc + (size_t)src) * esz,
                    (size_t)n * esz);
    }
}
