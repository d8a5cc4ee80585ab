/*
 * kv — the key/value cache of one context.
 *
 * Per layer the keys (after RoPE) as (n_ctx, dim), dim = n_head_kv *
 * head_dim, position-major, and the values transposed as (dim, n_ctx),
 * channel-major. Both products of attention then become dot products over
 * contiguous rows (scores: q . K[p] over head_dim; output: Vt[d] . weights
 * over positions), done by the type table's vec_dot kernels, as llama.cpp
 * lays its cache out. Elements are F16 (default: half the memory) or F32.
 * Multi-sequence caches (continuous batching) will add a cell -> sequence
 * map; today positions are cells.
 */
#ifndef CONFAB_ENGINE_KV_H
#define CONFAB_ENGINE_KV_H

#include <stddef.h>

#include "base/err.h"

typedef struct {
    int f16;      /* 1: elements are cf_fp16, 0: float */
    int n_layer;
    int n_ctx;
    int dim;      /* n_head_kv * head_dim */
    void **k;     /* (n_layer,) each (n_ctx, dim) */
    void **v;     /* (n_layer,) each (dim, n_ctx), transposed */
} kv_cache;

/* Allocates the cache (zeroed). CF_ENOMEM / CF_EINVAL with ERR. */
int kv_init(kv_cache *kv, int f16, int n_layer, int n_ctx, int dim, cf_err *err);
void kv_free(kv_cache *kv);
/* Bytes the cache holds. */
size_t kv_bytes(const kv_cache *kv);
/* Stores K and V (dim floats each) at POS of LAYER, converting to the
 * cache's element type (round to nearest even for F16). */
/* Element type id of the cache (TT_F16 or TT_F32). */
int kv_type(const kv_cache *kv);
void kv_store(kv_cache *kv, int layer, int pos, const float *k, const float *v);

#endif
