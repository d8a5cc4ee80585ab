/*
 * kv — the key/value cache of one context.
 *
 * Per layer the keys (after RoPE) as (n_ctx, dim), dim = n_head_kv *
 * head_dim, position-major, and the values transposed as (dim, n_ctx),
 * channel-major. Both products of attention then become dot products over
 * contiguous rows (scores: q . K[p] over head_dim; output: Vt[d] . weights
 * over positions), done by the type table's vec_dot kernels, as llama.cpp
 * lays its cache out. Elements are F16 (default: half the memory) or F32.
 * Cells are numbered 0..n_ctx-1 here; a multi-sequence context (model.c)
 * gives sequence s the cells [s * n_ctx_seq, (s + 1) * n_ctx_seq), so a
 * sequence's positions are contiguous cells in both K and Vt.
 */
#ifndef CONFAB_ENGINE_KV_H
#define CONFAB_ENGINE_KV_H

#include <stddef.h>

#include "base/err.h"

typedef struct {
    int f16; /* 1: elements are cf_fp16, 0: float */
    int n_layer;
    int n_ctx; /* cells */
    int dim;   /* n_head_kv * head_dim */
    void **k;  /* (n_layer,) each (n_ctx, dim) */
    void **v;  /* (n_layer,) each (dim, n_ctx), transposed */
} kv_cache;

/* Allocates the cache (zeroed). CF_ENOMEM / CF_EINVAL with ERR. */
int kv_init(kv_cache *kv, int f16, int n_layer, int n_ctx, int dim, cf_err *err);
void kv_free(kv_cache *kv);
/* Bytes the cache holds. */
size_t kv_bytes(const kv_cache *kv);
/* Element type id of the cache (TT_F16 or TT_F32). */
int kv_type(const kv_cache *kv);
/* Stores K and V (dim floats each) at cell POS of LAYER, converting to the
 * cache's element type (round to nearest even for F16). */
void kv_store(kv_cache *kv, int layer, int pos, const float *k, const float *v);

/* Copies cells [SRC, SRC+N) to [DST, DST+N) in every layer (K and V). */
void kv_copy(kv_cache *kv, int src, int dst, int n);

#endif
