/*
 * model — loading a llama-family GGUF model and its forward pass.
 *
 * Loading: the file is mmapped by gguf.c and stays mapped; a weight is a
 * pointer into the mapping plus its type and shape (never copied). Only the
 * small vectors (norm weights, biases, RoPE frequency factors) are converted
 * to owned float arrays. Hyper-parameters come from the `<arch>.*` keys.
 *
 * Architectures are rows of a table: what differs between llama, qwen2 and
 * qwen3 (RoPE pairing, q/k/v biases, per-head q/k RMS norms) is data in
 * model_hparams, read by the one forward pass:
 *
 *   x = embed(tokens)                                     (T, n_embd)
 *   for each layer:
 *     h  = rmsnorm(x) * attn_norm
 *     q, k, v = h Wq (+bq), h Wk (+bk), h Wv (+bv)        (T, n_head*hd), (T, n_kv*hd) x2
 *     [qwen3] q, k = rmsnorm per head * q_norm, k_norm
 *     q, k = rope(q, pos), rope(k, pos)
 *     cache k, v at pos; a = causal_attention(q, cache)   (T, n_head*hd)
 *     x += a Wo
 *     h  = rmsnorm(x) * ffn_norm
 *     x += (silu(h Wgate) * (h Wup)) Wdown                (T, n_ff) -> (T, n_embd)
 *   logits = (rmsnorm(x) * output_norm) Wout              (T_out, n_vocab)
 *
 * Batching: the T tokens of a chunk (up to n_batch = 512) go through each
 * layer together, so every weight matrix is streamed from memory once per
 * chunk (tt_matmul with nx = T). Single-token decode is the T = 1 case.
 *
 * Numerics follow the reference engine (llama.cpp) where it matters for
 * agreement: RMSNorm sums squares in double; activations are converted to
 * each weight type's vec_dot_type (8-bit blocks for quantized weights, F16
 * for F16); with an F16 KV cache the query and the softmax weights are
 * rounded to F16 before their dot products, as ggml's F16 matmul does.
 * Since such roundings magnify any last-bit difference, F32/F16/BF16
 * products follow the reference's summation orders (quants.h): the vector
 * order for the rows of a sequence's one-token chunks, the matrix order
 * for multi-token chunks (model_mark_rows); softmax and SiLU use its
 * e^x approximation (vexp.h). In the last layer only the rows that want
 * logits go through the feed-forward block (none when no row does).
 *
 * Threads: matrix products are cut into chunks of 64 weight rows,
 * attention into (token, KV head) units; pool threads claim chunks, and
 * every output element is computed by one chunk with the same kernel, so
 * results do not depend on the thread count. The small element-wise steps
 * (norms, RoPE, residual adds, SwiGLU, activation conversion: a few % of
 * the time) run on the caller's thread.
 */
#include <assert.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cpu.h"
#include "base/hash.h"
#include "base/sb.h"
#include "confab/engine.h"
#include "engine/blocks.h"
#include "engine/gguf.h"
#include "engine/kv.h"
#include "engine/pool.h"
#include "engine/quants.h"
#include "engine/types.h"
#include "engine/vexp.h"

/* ------------------------------------------------------------ hparams */

typedef enum { ROPE_NORM = 0, ROPE_NEOX = 2 } model_rope_kind;

typedef struct {
    const char *name;
    model_rope_kind rope; /* llama: adjacent pairs (Q/K stored permuted); qwen: NeoX halves */
    int need_qkv_bias;    /* qwen2 */
    int need_qk_norm;     /* qwen3 */
} model_arch;

static const model_arch model_archs[] = {
    {"llama", ROPE_NORM, 0, 0},
    {"qwen2", ROPE_NEOX, 1, 0},
    {"qwen3", ROPE_NEOX, 0, 1},
};

typedef struct {
    const model_arch *arch;
    int n_vocab;
    int n_ctx_train;
    int n_embd;
    int n_layer;
    int n_head;
    int n_head_kv;
    int head_dim; /* key/value length per head */
    int n_ff;
    int n_rot; /* dimensions RoPE rotates (<= head_dim) */
    float rms_eps;
    float rope_base;
    float rope_freq_scale; /* 1 / linear scaling factor */
} model_hparams;

/* A weight matrix (ne0 = row length = inputs, ne1 = rows = outputs) or
 * vector, pointing into the mapping. */
typedef struct {
    const void *data;
    int type;
    int64_t ne0, ne1;
    size_t row_bytes;
} model_w;

typedef struct {
    float *attn_norm;       /* (n_embd,) */
    model_w wq, wk, wv;     /* (n_embd) -> (n_head*hd), (n_kv*hd), (n_kv*hd) */
    float *bq, *bk, *bv;    /* biases or NULL */
    float *q_norm, *k_norm; /* (hd,) or NULL */
    model_w wo;             /* (n_head*hd) -> (n_embd) */
    float *ffn_norm;        /* (n_embd,) */
    model_w w_gate, w_up;   /* (n_embd) -> (n_ff) */
    model_w w_down;         /* (n_ff) -> (n_embd) */
} model_layer;

struct cf_model {
    gguf_file *f;
    model_hparams hp;
    model_w tok_embd;    /* (n_embd) x n_vocab rows */
    float *out_norm;     /* (n_embd,) */
    model_w output;      /* (n_embd) -> (n_vocab); token_embd when tied */
    float *rope_ff;      /* (n_rot/2,) llama3 frequency factors or NULL */
    model_layer *layers; /* (n_layer,) */
    pool *pool;
    cf_model_opts opts;
    char arch[32];
    char *name;
    int bos_id, eos_id;
    int vocab_gpt2;           /* byte-level BPE vocabulary (Ġ for space) */
    const int32_t *tok_types; /* (n_vocab,) or NULL */
    uint64_t vocab_n;
    uint64_t n_params, weight_bytes;
    uint64_t ident; /* identity for state files: see model_identity */
};

/* ------------------------------------------------------------ loading */

static int model_get_u32(const gguf_file *f, const char *arch, const char *key, uint32_t *out,
                         int required, cf_err *err) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    if (gguf_get_u32(f, full, out)) return 0;
    if (required) return cf_seterr(err, CF_EFORMAT, "missing or invalid metadata key %s", full);
    return 1;
}

static int model_get_f32(const gguf_file *f, const char *arch, const char *key, float *out) {
    char full[128];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    return gguf_get_f32(f, full, out) ? 0 : 1;
}

static int model_hparams_load(cf_model *m, cf_err *err) {
    const gguf_file *f = m->f;
    model_hparams *hp = &m->hp;
    gguf_str a;
    if (!gguf_get_str(f, "general.architecture", &a))
        return cf_seterr(err, CF_EFORMAT, "missing general.architecture");
    for (size_t i = 0; i < sizeof model_archs / sizeof model_archs[0]; i++)
        if (gguf_str_eq(a, model_archs[i].name)) hp->arch = &model_archs[i];
    if (!hp->arch)
        return cf_seterr(err, CF_EFORMAT, "unsupported architecture '%.*s' (llama, qwen2, qwen3)",
                         (int)(a.n > 64 ? 64 : a.n), a.p);
    snprintf(m->arch, sizeof m->arch, "%s", hp->arch->name);
    const char *ar = m->arch;
    uint32_t v;
    int rc;
    if ((rc = model_get_u32(f, ar, "embedding_length", &v, 1, err)) < 0) return rc;
    hp->n_embd = (int)v;
    if ((rc = model_get_u32(f, ar, "block_count", &v, 1, err)) < 0) return rc;
    hp->n_layer = (int)v;
    if ((rc = model_get_u32(f, ar, "feed_forward_length", &v, 1, err)) < 0) return rc;
    hp->n_ff = (int)v;
    if ((rc = model_get_u32(f, ar, "attention.head_count", &v, 1, err)) < 0) return rc;
    hp->n_head = (int)v;
    hp->n_head_kv = hp->n_head;
    if (model_get_u32(f, ar, "attention.head_count_kv", &v, 0, err) == 0) hp->n_head_kv = (int)v;
    hp->n_ctx_train = 2048;
    if (model_get_u32(f, ar, "context_length", &v, 0, err) == 0) hp->n_ctx_train = (int)v;
    if (model_get_u32(f, ar, "expert_count", &v, 0, err) == 0 && v > 0)
        return cf_seterr(err, CF_EFORMAT,
                         "mixture-of-experts models (%s.expert_count = %u) are not supported", ar,
                         v);
    if (hp->n_embd <= 0 || hp->n_layer <= 0 || hp->n_head <= 0 || hp->n_head_kv <= 0 ||
        hp->n_ff <= 0 || hp->n_embd > (1 << 20) || hp->n_ff > (1 << 22) || hp->n_layer > 4096 ||
        hp->n_head > 4096 || hp->n_ctx_train <= 0)
        return cf_seterr(err, CF_EFORMAT,
                         "bad hyper-parameters: n_embd %d, n_layer %d, n_head %d, n_head_kv %d, "
                         "n_ff %d, context %d",
                         hp->n_embd, hp->n_layer, hp->n_head, hp->n_head_kv, hp->n_ff,
                         hp->n_ctx_train);
    if (hp->n_head % hp->n_head_kv)
        return cf_seterr(err, CF_EFORMAT, "head_count %d is not a multiple of head_count_kv %d",
                         hp->n_head, hp->n_head_kv);
    hp->head_dim = hp->n_embd / hp->n_head;
    if (model_get_u32(f, ar, "attention.key_length", &v, 0, err) == 0) hp->head_dim = (int)v;
    uint32_t vl;
    if (model_get_u32(f, ar, "attention.value_length", &vl, 0, err) == 0 && (int)vl != hp->head_dim)
        return cf_seterr(err, CF_EFORMAT,
                         "value_length %u differs from key_length %d (unsupported)", vl,
                         hp->head_dim);
    if (hp->head_dim <= 0 || hp->head_dim % 2 || hp->head_dim > 1024)
        return cf_seterr(err, CF_EFORMAT, "bad head dimension %d", hp->head_dim);
    hp->n_rot = hp->head_dim;
    if (model_get_u32(f, ar, "rope.dimension_count", &v, 0, err) == 0) hp->n_rot = (int)v;
    if (hp->n_rot <= 0 || hp->n_rot > hp->head_dim || hp->n_rot % 2)
        return cf_seterr(err, CF_EFORMAT, "bad rope.dimension_count %d (head dim %d)", hp->n_rot,
                         hp->head_dim);
    hp->rms_eps = 1e-5f;
    model_get_f32(f, ar, "attention.layer_norm_rms_epsilon", &hp->rms_eps);
    hp->rope_base = 10000.0f;
    model_get_f32(f, ar, "rope.freq_base", &hp->rope_base);
    hp->rope_freq_scale = 1.0f;
    char key[128];
    gguf_str st;
    snprintf(key, sizeof key, "%s.rope.scaling.type", ar);
    if (gguf_get_str(f, key, &st) && !gguf_str_eq(st, "none")) {
        if (gguf_str_eq(st, "linear")) {
            float factor = 1.0f;
            if (model_get_f32(f, ar, "rope.scaling.factor", &factor) == 0 && factor > 0)
                hp->rope_freq_scale = 1.0f / factor;
        } else if (!gguf_str_eq(st, "llama3")) {
            return cf_seterr(err, CF_EFORMAT, "unsupported rope scaling '%.*s' (linear, llama3)",
                             (int)(st.n > 32 ? 32 : st.n), st.p);
        }
    } else {
        float fs;
        if (model_get_f32(f, ar, "rope.scale_linear", &fs) == 0 && fs > 0)
            hp->rope_freq_scale = 1.0f / fs;
    }
    return 0;
}

/* Looks NAME up, checks its shape (ne0, ne1; ne1 = 1 for vectors) and that
 * the engine has kernels for its type. Absent + optional -> 1. */
static int model_w_get(cf_model *m, const char *name, int64_t ne0, int64_t ne1, int matrix,
                       int optional, model_w *out, cf_err *err) {
    memset(out, 0, sizeof *out);
    const gguf_tensor *t = gguf_find_tensor(m->f, name);
    if (!t) {
        if (optional) return 1;
        return cf_seterr(err, CF_EFORMAT, "missing tensor %s", name);
    }
    int64_t n1 = t->ne[1] * t->ne[2] * t->ne[3];
    if (t->ne[0] != ne0 || n1 != ne1)
        return cf_seterr(err, CF_EFORMAT, "tensor %s has shape [%lld, %lld], expected [%lld, %lld]",
                         name, (long long)t->ne[0], (long long)n1, (long long)ne0, (long long)ne1);
    const tt_traits *tr = tt_get(t->type);
    if (!tr || !tr->to_float)
        return cf_seterr(err, CF_EFORMAT, "tensor %s has unsupported type %d", name, t->type);
    if (matrix) {
        const tt_traits *vt = tt_get(tr->vec_dot_type);
        if (!tr->vec_dot || !vt || !vt->from_float)
            return cf_seterr(err, CF_EFORMAT, "tensor %s: no matrix kernel for type %s", name,
                             tr->name);
        if (ne0 % tr->blck || ne0 % vt->blck)
            return cf_seterr(err, CF_EFORMAT, "tensor %s: rows of %lld do not fit %s blocks", name,
                             (long long)ne0, tr->name);
    }
    out->data = t->data;
    out->type = t->type;
    out->ne0 = ne0;
    out->ne1 = ne1;
    out->row_bytes = tt_row_size(t->type, ne0);
    if (out->row_bytes == 0 || out->row_bytes * (uint64_t)ne1 > t->nbytes)
        return cf_seterr(err, CF_EFORMAT, "tensor %s: data size does not match its shape", name);
    m->n_params += (uint64_t)(ne0 * ne1);
    m->weight_bytes += out->row_bytes * (uint64_t)ne1;
    return 0;
}

/* A small vector converted to an owned float array (*OUT NULL if optional
 * and absent). */
static int model_vec_get(cf_model *m, const char *name, int64_t n, int optional, float **out,
                         cf_err *err) {
    model_w w;
    *out = NULL;
    int rc = model_w_get(m, name, n, 1, 0, optional, &w, err);
    if (rc) return rc < 0 ? rc : 0;
    const tt_traits *tr = tt_get(w.type);
    if (n % tr->blck)
        return cf_seterr(err, CF_EFORMAT, "tensor %s: bad length %lld", name, (long long)n);
    *out = malloc((size_t)n * sizeof(float));
    if (!*out) return cf_seterr(err, CF_ENOMEM, "out of memory");
    tr->to_float(w.data, *out, n);
    return 0;
}

cf_model_opts cf_model_opts_default(void) {
    cf_model_opts o = {0};
    o.kv_type = CF_KV_F16;
    return o;
}

static int model_load_tensors(cf_model *m, cf_err *err) {
    const model_hparams *hp = &m->hp;
    const int64_t E = hp->n_embd, hd = hp->head_dim, qd = (int64_t)hp->n_head * hd,
                  kvd = (int64_t)hp->n_head_kv * hd, F = hp->n_ff;
    /* Vocabulary size: the embedding's row count is the truth. */
    const gguf_tensor *te = gguf_find_tensor(m->f, "token_embd.weight");
    if (!te) return cf_seterr(err, CF_EFORMAT, "missing tensor token_embd.weight");
    if (te->ne[1] <= 0 || te->ne[1] > (1 << 24))
        return cf_seterr(err, CF_EFORMAT, "token_embd.weight: bad vocabulary size %lld",
                         (long long)te->ne[1]);
    m->hp.n_vocab = (int)te->ne[1];
    const int64_t V = m->hp.n_vocab;
    int rc;
    if ((rc = model_w_get(m, "token_embd.weight", E, V, 0, 0, &m->tok_embd, err))) return rc;
    if ((rc = model_vec_get(m, "output_norm.weight", E, 0, &m->out_norm, err))) return rc;
    rc = model_w_get(m, "output.weight", E, V, 1, 1, &m->output, err);
    if (rc < 0) return rc;
    if (rc == 1) { /* tied: the embedding doubles as output matrix */
        m->output = m->tok_embd;
        const tt_traits *tr = tt_get(m->output.type);
        if (!tr->vec_dot || E % tt_get(tr->vec_dot_type)->blck)
            return cf_seterr(err, CF_EFORMAT, "tied output: no matrix kernel for type %s",
                             tr->name);
    }
    if ((rc = model_vec_get(m, "rope_freqs.weight", hp->n_rot / 2, 1, &m->rope_ff, err))) return rc;
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) return cf_seterr(err, CF_ENOMEM, "out of memory");
    char nm[96];
#define W(field, suffix, n0, n1)                                                                   \
    snprintf(nm, sizeof nm, "blk.%d." suffix ".weight", l);                                        \
    if ((rc = model_w_get(m, nm, n0, n1, 1, 0, &L->field, err))) return rc
#define VEC(field, suffix, kind, n, opt)                                                           \
    snprintf(nm, sizeof nm, "blk.%d." suffix "." kind, l);                                         \
    if ((rc = model_vec_get(m, nm, n, opt, &L->field, err))) return rc
    for (int l = 0; l < hp->n_layer; l++) {
        model_layer *L = &m->layers[l];
        VEC(attn_norm, "attn_norm", "weight", E, 0);
        W(wq, "attn_q", E, qd);
        W(wk, "attn_k", E, kvd);
        W(wv, "attn_v", E, kvd);
        W(wo, "attn_output", qd, E);
        const int nb = !hp->arch->need_qkv_bias;
        VEC(bq, "attn_q", "bias", qd, nb);
        VEC(bk, "attn_k", "bias", kvd, nb);
        VEC(bv, "attn_v", "bias", kvd, nb);
        const int nn = !hp->arch->need_qk_norm;
        VEC(q_norm, "attn_q_norm", "weight", hd, nn);
        VEC(k_norm, "attn_k_norm", "weight", hd, nn);
        VEC(ffn_norm, "ffn_norm", "weight", E, 0);
        W(w_gate, "ffn_gate", E, F);
        W(w_up, "ffn_up", E, F);
        W(w_down, "ffn_down", F, E);
    }
#undef W
#undef VEC
    return 0;
}

static void model_load_vocab(cf_model *m) {
    gguf_vtype et;
    uint64_t n;
    m->bos_id = m->eos_id = -1;
    uint32_t v;
    if (gguf_get_u32(m->f, "tokenizer.ggml.bos_token_id", &v) && v < (uint32_t)m->hp.n_vocab)
        m->bos_id = (int)v;
    if (gguf_get_u32(m->f, "tokenizer.ggml.eos_token_id", &v) && v < (uint32_t)m->hp.n_vocab)
        m->eos_id = (int)v;
    if (gguf_get_arr(m->f, "tokenizer.ggml.tokens", &et, &n) && et == GGUF_TYPE_STRING)
        m->vocab_n = n;
    if (gguf_get_arr(m->f, "tokenizer.ggml.token_type", &et, &n) && et == GGUF_TYPE_INT32 &&
        n == m->vocab_n)
        m->tok_types = gguf_arr_data(m->f, "tokenizer.ggml.token_type");
    gguf_str tm;
    if (gguf_get_str(m->f, "tokenizer.ggml.model", &tm) && gguf_str_eq(tm, "gpt2"))
        m->vocab_gpt2 = 1;
}

/* A 64-bit identity of the weights, for state files: the hyper-parameters
 * and, for every tensor, its name, type, shape and the first and last 64
 * bytes of its data (so two files of one shape with different weights
 * differ) — cheap at load, unlike hashing gigabytes. */
static uint64_t model_identity(const cf_model *m) {
    hash_state *h = hash_new(0x636f6e666162ull);
    if (!h) return 0;
    hash_update(h, m->arch, strlen(m->arch));
    hash_update(h, &m->hp.n_vocab, sizeof m->hp - offsetof(model_hparams, n_vocab));
    for (int64_t i = 0; i < gguf_n_tensors(m->f); i++) {
        const gguf_tensor *t = gguf_tensor_at(m->f, i);
        hash_update(h, t->name.p, (size_t)t->name.n);
        hash_update(h, &t->type, sizeof t->type);
        hash_update(h, t->ne, sizeof t->ne);
        const size_t k = t->nbytes < 64 ? (size_t)t->nbytes : 64;
        hash_update(h, t->data, k);
        hash_update(h, (const char *)t->data + t->nbytes - k, k);
    }
    uint64_t d = hash_digest(h);
    hash_free(h);
    return d;
}

cf_model *cf_model_load(const char *path, const cf_model_opts *opts, cf_err *err) {
    tt_init();
    cf_model *m = calloc(1, sizeof *m);
    if (!m) {
        cf_seterr(err, CF_ENOMEM, "out of memory");
        return NULL;
    }
    m->opts = opts ? *opts : cf_model_opts_default();
    if (m->opts.n_threads <= 0) m->opts.n_threads = cpu_count();
    if (m->opts.n_ctx < 0 || (m->opts.kv_type != CF_KV_F16 && m->opts.kv_type != CF_KV_F32)) {
        cf_seterr(err, CF_EINVAL, "bad model options (context %d, kv type %d)", m->opts.n_ctx,
                  (int)m->opts.kv_type);
        goto fail;
    }
    m->f = gguf_open(path, err);
    if (!m->f) goto fail;
    if (model_hparams_load(m, err) < 0) goto fail;
    if (model_load_tensors(m, err) < 0) goto fail;
    model_load_vocab(m);
    m->ident = model_identity(m);
    gguf_str nm;
    m->name = gguf_get_str(m->f, "general.name", &nm) ? gguf_str_dup(nm) : strdup("");
    m->pool = pool_new(m->opts.n_threads, err);
    if (!m->pool) goto fail;
    return m;
fail:
    cf_errctx(err, "loading %s", path);
    cf_model_free(m);
    return NULL;
}

void cf_model_free(cf_model *m) {
    if (!m) return;
    if (m->layers) {
        for (int l = 0; l < m->hp.n_layer; l++) {
            model_layer *L = &m->layers[l];
            free(L->attn_norm);
            free(L->ffn_norm);
            free(L->bq);
            free(L->bk);
            free(L->bv);
            free(L->q_norm);
            free(L->k_norm);
        }
        free(m->layers);
    }
    free(m->out_norm);
    free(m->rope_ff);
    free(m->name);
    pool_free(m->pool);
    gguf_close(m->f);
    free(m);
}

void cf_model_get_info(const cf_model *m, cf_model_info *info) {
    const model_hparams *hp = &m->hp;
    memset(info, 0, sizeof *info);
    info->arch = m->arch;
    info->name = m->name ? m->name : "";
    info->n_vocab = hp->n_vocab;
    info->n_ctx_train = hp->n_ctx_train;
    info->n_ctx = m->opts.n_ctx > 0 ? m->opts.n_ctx : hp->n_ctx_train;
    info->n_embd = hp->n_embd;
    info->n_layer = hp->n_layer;
    info->n_head = hp->n_head;
    info->n_head_kv = hp->n_head_kv;
    info->head_dim = hp->head_dim;
    info->n_ff = hp->n_ff;
    info->rope_freq_base = hp->rope_base;
    info->rms_eps = hp->rms_eps;
    info->bos_id = m->bos_id;
    info->eos_id = m->eos_id;
    info->n_threads = pool_size(m->pool);
    info->n_params = m->n_params;
    info->weight_bytes = m->weight_bytes;
}

/* ------------------------------------------------------------ vocabulary */

const char *cf_model_token_raw(const cf_model *m, int32_t id, size_t *len) {
    if (id < 0 || (uint64_t)id >= m->vocab_n) return NULL;
    gguf_str s = gguf_arr_str(m->f, "tokenizer.ggml.tokens", (uint64_t)id);
    *len = (size_t)s.n;
    return s.p;
}

static int model_hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Inverse of GPT-2's bytes_to_unicode(): code point -> byte, or -1. */
static int model_gpt2_byte(uint32_t cp) {
    if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255))
        return (int)cp;
    if (cp < 256 || cp >= 256 + 68) return -1;
    int k = (int)cp - 256, seen = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        if (printable) continue;
        if (seen++ == k) return b;
    }
    return -1;
}

int cf_model_token_text(const cf_model *m, int32_t id, char *buf, size_t cap) {
    size_t n;
    const char *s = cf_model_token_raw(m, id, &n);
    if (!s) return -1;
    sb_t out = {0};
    if (m->tok_types && m->tok_types[id] == 3) {
        /* control token: no text */
    } else if (n == 6 && !memcmp(s, "<0x", 3) && s[5] == '>' && model_hexval(s[3]) >= 0 &&
               model_hexval(s[4]) >= 0) {
        sb_putc(&out, (char)(model_hexval(s[3]) * 16 + model_hexval(s[4])));
    } else if (m->vocab_gpt2) {
        for (size_t i = 0; i < n;) {
            unsigned c = (unsigned char)s[i];
            uint32_t cp;
            int l = 1;
            if (c < 0x80)
                cp = c;
            else if ((c & 0xE0) == 0xC0 && i + 1 < n) {
                cp = ((c & 0x1F) << 6) | ((unsigned char)s[i + 1] & 0x3F);
                l = 2;
            } else {
                cp = 0xFFFFFFFF;
            }
            int b = model_gpt2_byte(cp);
            if (b >= 0)
                sb_putc(&out, (char)b);
            else
                sb_appendn(&out, s + i, (size_t)l);
            i += (size_t)l;
        }
    } else {
        for (size_t i = 0; i < n;) {
            if (i + 3 <= n && !memcmp(s + i, "\xE2\x96\x81", 3)) {
                sb_putc(&out, ' ');
                i += 3;
            } else {
                sb_putc(&out, s[i++]);
            }
        }
    }
    int len = (int)out.len;
    if (cap > 0) {
        size_t c = out.len < cap - 1 ? out.len : cap - 1;
        memcpy(buf, sb_str(&out), c);
        buf[c] = 0;
    }
    sb_free(&out);
    return len;
}

/* ------------------------------------------------------------ context */

struct cf_ctx {
    cf_model *m;
    int n_ctx, n_batch;
    int n_seq;   /* sequences (slots) the cache holds */
    kv_cache kv; /* n_seq * n_ctx cells: sequence s owns [s*n_ctx, (s+1)*n_ctx) */
    int *len;    /* (n_seq,) positions filled per sequence */
    int *blen;   /* (n_seq,) scratch: length of each sequence while checking a batch */
    /* scratch for one chunk of T <= n_batch tokens */
    float *x;            /* (n_batch, n_embd) residual stream */
    float *h;            /* (n_batch, n_embd) normed input of a block */
    float *q;            /* (n_batch, n_head*hd) */
    float *k, *v;        /* (n_batch, n_kv*hd) */
    float *a;            /* (n_batch, n_head*hd) attention output */
    float *g, *u;        /* (n_batch, n_ff) gate and up */
    float *o;            /* (n_batch, n_embd) block output */
    float *rope_cs;      /* (n_batch, n_rot) cos, sin interleaved */
    float *att;          /* (n_threads, n_ctx) attention weights per thread */
    float *att_x;        /* (n_threads, n_ctx) the weights in the cache's type */
    float *qh;           /* (n_threads, hd) a query head in the cache's type */
    void *act[TT_COUNT]; /* quantized activations per vec_dot_type, (n_batch, max_row) */
    size_t act_cap[TT_COUNT];
    float *logits; /* (n_logits_cap, n_vocab) */
    int n_logits, n_logits_cap;
    int32_t *pos;  /* (n_batch,) position of each token of the chunk */
    int32_t *seq;  /* (n_batch,) its sequence */
    uint8_t *rvec; /* (n_batch,) 1: the row's sequence has one row here (vector order) */
    bool (*abort_fn)(void *);
    void *abort_user;
};

cf_ctx_opts cf_ctx_opts_default(void) {
    cf_ctx_opts o = {0};
    o.kv_type = -1;
    return o;
}

cf_ctx *cf_ctx_new(cf_model *m, const cf_ctx_opts *opts, cf_err *err) {
    cf_ctx_opts o = opts ? *opts : cf_ctx_opts_default();
    const model_hparams *hp = &m->hp;
    int n_ctx = o.n_ctx > 0 ? o.n_ctx : (m->opts.n_ctx > 0 ? m->opts.n_ctx : hp->n_ctx_train);
    int kvt = o.kv_type >= 0 ? o.kv_type : (int)m->opts.kv_type;
    int n_batch = o.n_batch > 0 ? o.n_batch : 512;
    int n_seq = o.n_seq > 0 ? o.n_seq : 1;
    if (o.n_ctx < 0 || n_ctx > (1 << 24) || (kvt != CF_KV_F16 && kvt != CF_KV_F32) ||
        n_batch > 8192 || n_seq > 256 || (int64_t)n_seq * n_ctx > (1 << 26)) {
        cf_seterr(err, CF_EINVAL,
                  "bad context options (context %d, kv type %d, batch %d, %d sequences)", o.n_ctx,
                  kvt, o.n_batch, n_seq);
        return NULL;
    }
    if (n_batch > n_ctx) n_batch = n_ctx;
    cf_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        cf_seterr(err, CF_ENOMEM, "out of memory");
        return NULL;
    }
    c->m = m;
    c->n_ctx = n_ctx;
    c->n_batch = n_batch;
    c->n_seq = n_seq;
    c->len = calloc((size_t)n_seq, sizeof *c->len);
    c->blen = calloc((size_t)n_seq, sizeof *c->blen);
    const size_t B = (size_t)n_batch, E = (size_t)hp->n_embd, hd = (size_t)hp->head_dim,
                 QD = (size_t)hp->n_head * hd, KVD = (size_t)hp->n_head_kv * hd,
                 F = (size_t)hp->n_ff;
    const size_t nth = (size_t)pool_size(m->pool);
    if (kv_init(&c->kv, kvt == CF_KV_F16, hp->n_layer, n_seq * n_ctx, (int)KVD, err) < 0) {
        cf_ctx_free(c);
        return NULL;
    }
    c->x = malloc(B * E * sizeof(float));
    c->h = malloc(B * E * sizeof(float));
    c->o = malloc(B * E * sizeof(float));
    c->q = malloc(B * QD * sizeof(float));
    c->a = malloc(B * QD * sizeof(float));
    c->k = malloc(B * KVD * sizeof(float));
    c->v = malloc(B * KVD * sizeof(float));
    c->g = malloc(B * F * sizeof(float));
    c->u = malloc(B * F * sizeof(float));
    c->rope_cs = malloc(B * (size_t)hp->n_rot * sizeof(float));
    /* attention rows are read zero-padded to a multiple of 64 */
    c->att = malloc(nth * ((size_t)n_ctx + 64) * sizeof(float));
    c->att_x = malloc(nth * ((size_t)n_ctx + 64) * sizeof(float));
    c->qh = malloc(nth * hd * sizeof(float));
    c->pos = malloc(B * sizeof(int32_t));
    c->seq = malloc(B * sizeof(int32_t));
    c->rvec = malloc(B);
    /* activation buffers: one per vec_dot_type any weight uses, sized for
     * n_batch rows of the longest input row of that type */
    int oom = 0;
    for (int l = -1; l < hp->n_layer && !oom; l++) {
        const model_layer *L = l >= 0 ? &m->layers[l] : NULL;
        const model_w *ws[7] = {&m->output};
        if (L) {
            const model_w *lw[7] = {&L->wq,     &L->wk,   &L->wv,    &L->wo,
                                    &L->w_gate, &L->w_up, &L->w_down};
            memcpy(ws, lw, sizeof ws);
        }
        for (int i = 0; i < 7 && ws[i]; i++) {
            const int vdt = tt_get(ws[i]->type)->vec_dot_type;
            const size_t need = tt_row_size(vdt, ws[i]->ne0) * B;
            if (need <= c->act_cap[vdt]) continue;
            free(c->act[vdt]);
            c->act[vdt] = malloc(need);
            c->act_cap[vdt] = need;
            if (!c->act[vdt]) oom = 1;
        }
    }
    if (oom || !c->x || !c->h || !c->o || !c->q || !c->a || !c->k || !c->v || !c->g || !c->u ||
        !c->rope_cs || !c->att || !c->att_x || !c->qh || !c->pos || !c->seq || !c->rvec ||
        !c->len || !c->blen) {
        cf_ctx_free(c);
        cf_seterr(err, CF_ENOMEM, "out of memory for a context of %d positions", n_ctx);
        return NULL;
    }
    return c;
}

void cf_ctx_free(cf_ctx *c) {
    if (!c) return;
    kv_free(&c->kv);
    free(c->x);
    free(c->h);
    free(c->o);
    free(c->q);
    free(c->a);
    free(c->k);
    free(c->v);
    free(c->g);
    free(c->u);
    free(c->rope_cs);
    free(c->att);
    free(c->att_x);
    free(c->qh);
    free(c->rvec);
    free(c->pos);
    free(c->seq);
    free(c->len);
    free(c->blen);
    free(c->logits);
    for (int i = 0; i < TT_COUNT; i++)
        free(c->act[i]);
    free(c);
}

int cf_ctx_n_ctx(const cf_ctx *c) { return c->n_ctx; }
int cf_ctx_n_seq(const cf_ctx *c) { return c->n_seq; }
int cf_ctx_seq_len(const cf_ctx *c, int seq) {
    return seq >= 0 && seq < c->n_seq ? c->len[seq] : 0;
}

static int model_bad_seq(const cf_ctx *c, int seq, cf_err *err) {
    return cf_seterr(err, CF_EINVAL, "sequence %d does not exist (this context holds 0..%d)", seq,
                     c->n_seq - 1);
}

int cf_ctx_seq_truncate(cf_ctx *c, int seq, int n, cf_err *err) {
    if (seq < 0 || seq >= c->n_seq) return model_bad_seq(c, seq, err);
    if (n < 0 || n > c->len[seq])
        return cf_seterr(err, CF_ERANGE, "cannot truncate sequence of %d positions to %d",
                         c->len[seq], n);
    c->len[seq] = n;
    return 0;
}

int cf_ctx_seq_copy(cf_ctx *c, int src, int dst, int n, cf_err *err) {
    if (src < 0 || src >= c->n_seq) return model_bad_seq(c, src, err);
    if (dst < 0 || dst >= c->n_seq) return model_bad_seq(c, dst, err);
    if (n < 0 || n > c->len[src])
        return cf_seterr(err, CF_ERANGE, "cannot copy %d positions of a sequence of %d", n,
                         c->len[src]);
    if (src != dst) kv_copy(&c->kv, src * c->n_ctx, dst * c->n_ctx, n);
    c->len[dst] = n;
    return 0;
}

void cf_ctx_set_abort(cf_ctx *c, bool (*fn)(void *), void *user) {
    c->abort_fn = fn;
    c->abort_user = user;
}

const float *cf_ctx_logits(const cf_ctx *c, int i) {
    if (i == -1) i = c->n_logits - 1;
    if (i < 0 || i >= c->n_logits) return NULL;
    return c->logits + (size_t)i * (size_t)c->m->hp.n_vocab;
}

int cf_ctx_n_logits(const cf_ctx *c) { return c->n_logits; }

/* ------------------------------------------------------------ state files */

/* A sequence's state on disk (little-endian, as the machine writes it):
 *   u32 magic "CFKV", u32 version 1, u64 model identity,
 *   u32 kv element type (TT_F16 / TT_F32), u32 n_layer, u32 dim, u32 n,
 *   i32 tokens[n],
 *   per layer: K rows (n, dim), then V (dim, n) channel-major,
 *   u64 xxh3 of everything before it.
 * Written to PATH.tmp and renamed, so a crash never leaves half a file. */
#define STATE_MAGIC 0x564b4643u /* "CFKV" */
#define STATE_VERSION 1u

typedef struct {
    uint32_t magic, version;
    uint64_t ident;
    uint32_t kv_type, n_layer, dim, n;
} state_hdr;

static int state_write(FILE *f, hash_state *h, const void *p, size_t n) {
    hash_update(h, p, n);
    return fwrite(p, 1, n, f) == n ? 0 : -1;
}

int cf_ctx_seq_save(const cf_ctx *c, int seq, const int32_t *tokens, int n_tokens, const char *path,
                    cf_err *err) {
    if (seq < 0 || seq >= c->n_seq) return model_bad_seq(c, seq, err);
    if (n_tokens != c->len[seq] || (n_tokens > 0 && !tokens))
        return cf_seterr(err, CF_EINVAL, "save: %d tokens given, sequence %d holds %d", n_tokens,
                         seq, c->len[seq]);
    const kv_cache *kv = &c->kv;
    const size_t esz = kv->f16 ? 2 : 4, dim = (size_t)kv->dim, nc = (size_t)kv->n_ctx,
                 n = (size_t)n_tokens, cell0 = (size_t)seq * (size_t)c->n_ctx;
    sb_t tmp = {0};
    sb_printf(&tmp, "%s.tmp", path);
    FILE *f = fopen(sb_str(&tmp), "wb");
    if (!f) {
        int rc = cf_seterr(err, CF_EIO, "save: cannot create %s", sb_str(&tmp));
        sb_free(&tmp);
        return rc;
    }
    hash_state *h = hash_new(0);
    state_hdr hd = {STATE_MAGIC,           STATE_VERSION,         c->m->ident,
                    (uint32_t)kv_type(kv), (uint32_t)kv->n_layer, (uint32_t)kv->dim,
                    (uint32_t)n_tokens};
    int bad = !h || state_write(f, h, &hd, sizeof hd) || state_write(f, h, tokens, n * 4);
    for (int l = 0; l < kv->n_layer && !bad; l++) {
        const char *k = (const char *)kv->k[l], *v = (const char *)kv->v[l];
        bad = state_write(f, h, k + cell0 * dim * esz, n * dim * esz);
        for (size_t d = 0; d < dim && !bad; d++)
            bad = state_write(f, h, v + (d * nc + cell0) * esz, n * esz);
    }
    if (!bad) {
        uint64_t sum = hash_digest(h);
        bad = fwrite(&sum, 1, sizeof sum, f) != sizeof sum;
    }
    hash_free(h);
    bad |= fclose(f) != 0;
    if (!bad) bad = rename(sb_str(&tmp), path) != 0;
    if (bad) remove(sb_str(&tmp));
    sb_free(&tmp);
    return bad ? cf_seterr(err, CF_EIO, "save: cannot write %s", path) : 0;
}

static int state_read(FILE *f, hash_state *h, void *p, size_t n) {
    if (fread(p, 1, n, f) != n) return -1;
    hash_update(h, p, n);
    return 0;
}

int cf_ctx_seq_load(cf_ctx *c, int seq, const char *path, int32_t **tokens, int *n_tokens,
                    cf_err *err) {
    *tokens = NULL;
    *n_tokens = 0;
    if (seq < 0 || seq >= c->n_seq) return model_bad_seq(c, seq, err);
    kv_cache *kv = &c->kv;
    FILE *f = fopen(path, "rb");
    if (!f) return cf_seterr(err, CF_ENOTFOUND, "load state: cannot open %s", path);
    hash_state *h = hash_new(0);
    state_hdr hd;
    int rc = 0;
    int32_t *tok = NULL;
    if (!h) {
        rc = cf_seterr(err, CF_ENOMEM, "out of memory");
        goto out;
    }
    if (state_read(f, h, &hd, sizeof hd) || hd.magic != STATE_MAGIC) {
        rc = cf_seterr(err, CF_EFORMAT, "load state: %s is not a confab KV state file", path);
        goto out;
    }
    if (hd.version != STATE_VERSION) {
        rc = cf_seterr(err, CF_EFORMAT, "load state: %s has version %u (this build reads %u)", path,
                       hd.version, STATE_VERSION);
        goto out;
    }
    if (hd.ident != c->m->ident || hd.n_layer != (uint32_t)kv->n_layer ||
        hd.dim != (uint32_t)kv->dim) {
        rc = cf_seterr(err, CF_EINVAL, "load state: %s was saved by a different model", path);
        goto out;
    }
    if (hd.kv_type != (uint32_t)kv_type(kv)) {
        rc = cf_seterr(err, CF_EINVAL, "load state: %s holds a %s KV cache, this context %s", path,
                       hd.kv_type == TT_F16 ? "F16" : "F32", kv->f16 ? "F16" : "F32");
        goto out;
    }
    if (hd.n > (uint32_t)c->n_ctx) {
        rc = cf_seterr(err, CF_ERANGE, "load state: %s holds %u positions, the context %d", path,
                       hd.n, c->n_ctx);
        goto out;
    }
    const size_t esz = kv->f16 ? 2 : 4, dim = (size_t)kv->dim, nc = (size_t)kv->n_ctx, n = hd.n,
                 cell0 = (size_t)seq * (size_t)c->n_ctx;
    tok = malloc(n ? n * 4 : 1);
    if (!tok) {
        rc = cf_seterr(err, CF_ENOMEM, "out of memory");
        goto out;
    }
    c->len[seq] = 0; /* the sequence is being overwritten: empty until it is whole */
    int bad = state_read(f, h, tok, n * 4);
    for (size_t i = 0; i < n && !bad; i++)
        bad = tok[i] < 0 || tok[i] >= c->m->hp.n_vocab;
    for (int l = 0; l < kv->n_layer && !bad; l++) {
        char *k = kv->k[l], *v = kv->v[l];
        bad = state_read(f, h, k + cell0 * dim * esz, n * dim * esz);
        for (size_t d = 0; d < dim && !bad; d++)
            bad = state_read(f, h, v + (d * nc + cell0) * esz, n * esz);
    }
    uint64_t sum;
    char extra;
    if (bad || fread(&sum, 1, sizeof sum, f) != sizeof sum || sum != hash_digest(h) ||
        fread(&extra, 1, 1, f) != 0) {
        rc = cf_seterr(err, CF_EFORMAT,
                       "load state: %s is corrupt (truncated or checksum mismatch)", path);
        goto out;
    }
    c->len[seq] = (int)n;
    *tokens = tok;
    *n_tokens = (int)n;
    tok = NULL;
out:
    free(tok);
    hash_free(h);
    fclose(f);
    return rc;
}

/* ------------------------------------------------------------ blocks */

/* out = x / rms(x) * w, per row. x, out: (T, n); w: (n,) */
static void model_rmsnorm(float *out, const float *x, const float *w, int T, int n, float eps) {
    for (int t = 0; t < T; t++) {
        const float *xr = x + (size_t)t * (size_t)n;
        float *o = out + (size_t)t * (size_t)n;
        double sum = 0;
        for (int i = 0; i < n; i++)
            sum += (double)(xr[i] * xr[i]);
        const float scale = 1.0f / sqrtf((float)(sum / n) + eps);
        for (int i = 0; i < n; i++)
            o[i] = xr[i] * scale * w[i];
    }
}

/* cos/sin table for the T positions of the chunk: cs (T, n_rot), pairs
 * (cos, sin) for each rotated pair i, as llama.cpp's rope cache. */
static void model_rope_table(const cf_model *m, float *cs, const int32_t *pos, int T) {
    const model_hparams *hp = &m->hp;
    const float theta_scale = powf(hp->rope_base, -2.0f / (float)hp->n_rot);
    for (int t = 0; t < T; t++) {
        float theta = (float)pos[t];
        float *r = cs + (size_t)t * (size_t)hp->n_rot;
        for (int i = 0; i < hp->n_rot / 2; i++) {
            const float ff = m->rope_ff ? m->rope_ff[i] : 1.0f;
            const float th = hp->rope_freq_scale * (theta / ff);
            r[2 * i] = cosf(th);
            r[2 * i + 1] = sinf(th);
            theta *= theta_scale;
        }
    }
}

/* Rotates each head of x (T, n_heads*hd) in place. NORM rotates adjacent
 * pairs (x[2i], x[2i+1]); NEOX rotates (x[i], x[i + n_rot/2]). */
static void model_rope(const cf_model *m, float *x, const float *cs, int T, int n_heads) {
    const model_hparams *hp = &m->hp;
    const int hd = hp->head_dim, nr = hp->n_rot, half = nr / 2;
    for (int t = 0; t < T; t++) {
        const float *r = cs + (size_t)t * (size_t)nr;
        for (int h = 0; h < n_heads; h++) {
            float *v = x + ((size_t)t * (size_t)n_heads + (size_t)h) * (size_t)hd;
            for (int i = 0; i < half; i++) {
                const float c = r[2 * i], s = r[2 * i + 1];
                const int i0 = hp->arch->rope == ROPE_NEOX ? i : 2 * i;
                const int i1 = hp->arch->rope == ROPE_NEOX ? i + half : 2 * i + 1;
                const float x0 = v[i0], x1 = v[i1];
                /* the reference's x0*c - x1*s and x0*s + x1*c as its
                 * compiler contracts them: the first product fused */
                v[i0] = fmaf(x0, c, -(x1 * s));
                v[i1] = fmaf(x0, s, x1 * c);
            }
        }
    }
}

/* x (T, n) += b (n,) per row */
static void model_add_bias(float *x, const float *b, int T, int n) {
    if (!b) return;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < n; i++)
            x[(size_t)t * (size_t)n + (size_t)i] += b[i];
}

/* ---- matrix products on the pool ---- */

typedef struct {
    const model_w *w;
    const void *x; /* (T, row of vec_dot_type) */
    size_t x_stride;
    float *y; /* (T, w->ne1) */
} model_mm_out;

typedef struct {
    model_mm_out out[3];
    int n_out;
    int T;
    const uint8_t *rvec; /* (T,) 1: vector order for that row (c->rvec) */
    int first[4];        /* first chunk of each output; first[n_out] = total */
} model_mm_job;

/* Weight rows per chunk: small enough that threads share work evenly (and
 * a descheduled thread holds little), large enough to keep tt_matmul's
 * tiles whole and the claim overhead negligible. */
#define MODEL_ROW_CHUNK 64

static void model_mm_chunk(void *arg, int chunk, int ith) {
    (void)ith;
    model_mm_job *j = arg;
    int o = 0;
    while (chunk >= j->first[o + 1])
        o++;
    const model_mm_out *mo = &j->out[o];
    const int r0 = (chunk - j->first[o]) * MODEL_ROW_CHUNK;
    const int r1 = r0 + MODEL_ROW_CHUNK < (int)mo->w->ne1 ? r0 + MODEL_ROW_CHUNK : (int)mo->w->ne1;
    /* runs of rows with the same summation order */
    for (int a = 0, b; a < j->T; a = b) {
        for (b = a + 1; b < j->T && j->rvec[b] == j->rvec[a]; b++)
            ;
        (j->rvec[a] ? tt_matmul_vec
                    : tt_matmul)(mo->w->type, (int)mo->w->ne0, mo->w->data, mo->w->row_bytes, r0,
                                 r1, (const char *)mo->x + (size_t)a * mo->x_stride, mo->x_stride,
                                 b - a, mo->y + (size_t)a * (size_t)mo->w->ne1, (size_t)mo->w->ne1);
    }
}

/* c->rvec for T rows of sequences SEQ: 1 where the row is its sequence's
 * only row. The reference engine multiplies a one-token batch in the
 * vector order and a longer one in the matrix order (quants.h); deciding
 * per sequence keeps a sequence's results independent of what else shares
 * the batch. */
static void model_mark_rows(cf_ctx *c, const int32_t *seq, int T) {
    int cnt[256] = {0}; /* n_seq <= 256 (cf_ctx_new) */
    for (int t = 0; t < T; t++)
        cnt[seq[t]]++;
    for (int t = 0; t < T; t++)
        c->rvec[t] = cnt[seq[t]] == 1;
}

/* Converts X (T, n) to the activation type of weight W, into the context's
 * buffer for that type; returns it and its row stride. */
static const void *model_act(cf_ctx *c, const model_w *w, const float *x, int T, size_t *stride) {
    const int vdt = tt_get(w->type)->vec_dot_type;
    const int n = (int)w->ne0;
    const size_t rs = tt_row_size(vdt, n);
    const size_t need = rs * (size_t)T;
    assert(c->act[vdt] && c->act_cap[vdt] >= need); /* sized by cf_ctx_new */
    (void)need;
    char *dst = c->act[vdt];
    for (int t = 0; t < T; t++)
        tt_quantize_act(w->type, x + (size_t)t * (size_t)n, dst + (size_t)t * rs, n);
    *stride = rs;
    return dst;
}

/* y_i = x W_i for up to three weights sharing the input x (T, ne0). */
static void model_matmul(cf_ctx *c, const float *x, int T, const model_w *w0, float *y0,
                         const model_w *w1, float *y1, const model_w *w2, float *y2) {
    model_mm_job j = {.T = T, .rvec = c->rvec};
    const model_w *ws[3] = {w0, w1, w2};
    float *ys[3] = {y0, y1, y2};
    int prepared[TT_COUNT] = {0};
    for (int i = 0; i < 3 && ws[i]; i++) {
        const int vdt = tt_get(ws[i]->type)->vec_dot_type;
        size_t stride = tt_row_size(vdt, ws[i]->ne0);
        const void *xa = prepared[vdt] ? c->act[vdt] : model_act(c, ws[i], x, T, &stride);
        prepared[vdt] = 1;
        j.out[j.n_out] = (model_mm_out){ws[i], xa, stride, ys[i]};
        j.first[j.n_out + 1] =
            j.first[j.n_out] + (int)((ws[i]->ne1 + MODEL_ROW_CHUNK - 1) / MODEL_ROW_CHUNK);
        j.n_out++;
    }
    pool_run(c->m->pool, j.first[j.n_out], model_mm_chunk, &j);
}

/* ---- attention on the pool ---- */

typedef struct {
    cf_ctx *c;
    int layer, T;
} model_att_job;

/* Softmax of ATT[0..n) in place, as the reference engine: e^(x - max) by
 * vx_exp_sub, summed per 16 values (tt_reduce16) in double, then scaled by
 * the float reciprocal. (Its rows are zero-padded to a multiple of 32, so
 * it never takes the scalar tail; padding adds zeros here.) */
static void model_softmax(float *att, int n) {
    float max = -INFINITY;
    for (int p = 0; p < n; p++)
        if (att[p] > max) max = att[p];
    vx_exp_sub(att, att, max, n);
    const int n16 = (n + 15) & ~15;
    for (int p = n; p < n16; p++)
        att[p] = 0.0f;
    double sum = 0;
    for (int p = 0; p < n16; p += 16)
        sum += tt_reduce16(att + p);
    const float inv = (float)(1.0 / sum);
    for (int p = 0; p < n; p++)
        att[p] *= inv;
}

/* Causal attention for one unit U = t * n_head_kv + g: the query heads of
 * token t that share KV head g (grouped-query attention). For each:
 *   a[t][h] = softmax(q[t][h] . K_s[0..pos_t] / sqrt(hd)) V_s[0..pos_t]
 * where K_s, V_s are the cells of token t's sequence s: the mask between
 * sequences is the cell layout itself (a token never sees another
 * sequence's cells), and a token's result depends only on its own
 * sequence, never on what else is in the batch.
 * Both products are dot products in the cache's type: the query and the
 * softmax weights are converted to it first (F16 rounding, as the
 * reference engine's F16 matmul does), and both follow the reference's
 * summation order for the row's batch kind (quants.h): the matrix order
 * for tokens of multi-token chunks, the vector order for one-token chunks,
 * where the reference's zero padding of the cache view (to a multiple of
 * 32 cells) decides which weights go through its accumulators and which
 * one by one. q.k takes the matrix order only with an F16 cache and hd a
 * multiple of 16: with an F32 cache the reference multiplies the
 * (non-contiguous) query rows as they are, by its vector dot product. */
static void model_att_unit(void *arg, int u, int ith) {
    model_att_job *j = arg;
    cf_ctx *c = j->c;
    const model_hparams *hp = &c->m->hp;
    const kv_cache *kv = &c->kv;
    const int hd = hp->head_dim, nh = hp->n_head, nkv = hp->n_head_kv, group = nh / nkv;
    const int kvt = kv_type(kv);
    const tt_traits *tr = tt_get(kvt);
    const size_t esz = kv->f16 ? 2 : 4;
    const float scale = 1.0f / sqrtf((float)hd);
    const size_t row = (size_t)c->n_ctx + 64;
    float *att = c->att + (size_t)ith * row;
    char *att_x = (char *)(c->att_x + (size_t)ith * row);
    char *q_x = (char *)(c->qh + (size_t)ith * (size_t)hd);
    const int t = u / nkv, g = u % nkv;
    const int vec = c->rvec[t];
    const int n_pos = c->pos[t] + 1;
    const int n_simd = ((n_pos + 31) & ~31) & ~63; /* vector order: see above */
    const tt_vec_dot_fn qk_dot =
        !vec && kv->f16 && hd % tr->mat_blk == 0 ? tr->mat_dot : tr->vec_dot;
    const size_t cell0 = (size_t)c->seq[t] * (size_t)c->n_ctx; /* first cell of the sequence */
    const size_t k_stride = (size_t)kv->dim * esz;
    const char *K = (const char *)kv->k[j->layer] + (size_t)g * (size_t)hd * esz + cell0 * k_stride;
    const char *Vt =
        (const char *)kv->v[j->layer] + ((size_t)g * (size_t)hd * (size_t)kv->n_ctx + cell0) * esz;
    const size_t v_stride = (size_t)kv->n_ctx * esz;
    for (int h = g * group; h < (g + 1) * group; h++) {
        const float *q = c->q + ((size_t)t * (size_t)nh + (size_t)h) * (size_t)hd;
        tr->from_float(q, q_x, hd);
        for (int p = 0; p < n_pos; p++) {
            qk_dot(hd, &att[p], K + (size_t)p * k_stride, q_x);
            att[p] *= scale;
        }
        model_softmax(att, n_pos);
        tr->from_float(att, att_x, n_pos);
        float *out = c->a + ((size_t)t * (size_t)nh + (size_t)h) * (size_t)hd;
        for (int d = 0; d < hd; d++) {
            const char *vr = Vt + (size_t)d * v_stride;
            if (vec)
                tr->vec_dot_ex(n_pos, n_simd, &out[d], vr, att_x);
            else
                tr->mat_dot(n_pos, &out[d], vr, att_x);
        }
    }
}

/* ---- one chunk through the network ---- */

static bool model_aborted(const cf_ctx *c) { return c->abort_fn && c->abort_fn(c->abort_user); }

/* Runs T tokens (token t of sequence seq[t] at position pos[t], checked by
 * cf_ctx_decode) through every layer; appends logits rows for tokens with
 * want[t]. The tokens of different sequences share every matrix product
 * (one tt_matmul with nx = T). */
static int model_forward_chunk(cf_ctx *c, const int32_t *tok, const int32_t *pos,
                               const int32_t *seq, int T, const int8_t *want, cf_err *err) {
    cf_model *m = c->m;
    const model_hparams *hp = &m->hp;
    const int E = hp->n_embd, hd = hp->head_dim, QD = hp->n_head * hd, KVD = hp->n_head_kv * hd,
              F = hp->n_ff;
    const tt_traits *et = tt_get(m->tok_embd.type);
    for (int t = 0; t < T; t++) {
        c->pos[t] = pos[t];
        c->seq[t] = seq[t];
        et->to_float((const char *)m->tok_embd.data + (size_t)tok[t] * m->tok_embd.row_bytes,
                     c->x + (size_t)t * (size_t)E, E);
    }
    model_rope_table(m, c->rope_cs, c->pos, T);
    model_mark_rows(c, c->seq, T);
    int n_out = 0; /* rows that want logits */
    for (int t = 0; t < T; t++)
        n_out += want[t] != 0;

    for (int l = 0; l < hp->n_layer; l++) {
        if (model_aborted(c)) return cf_seterr(err, CF_ECANCEL, "decode cancelled");
        const model_layer *L = &m->layers[l];
        /* attention block */
        model_rmsnorm(c->h, c->x, L->attn_norm, T, E, hp->rms_eps);
        model_matmul(c, c->h, T, &L->wq, c->q, &L->wk, c->k, &L->wv, c->v);
        model_add_bias(c->q, L->bq, T, QD);
        model_add_bias(c->k, L->bk, T, KVD);
        model_add_bias(c->v, L->bv, T, KVD);
        if (L->q_norm) model_rmsnorm(c->q, c->q, L->q_norm, T * hp->n_head, hd, hp->rms_eps);
        if (L->k_norm) model_rmsnorm(c->k, c->k, L->k_norm, T * hp->n_head_kv, hd, hp->rms_eps);
        model_rope(m, c->q, c->rope_cs, T, hp->n_head);
        model_rope(m, c->k, c->rope_cs, T, hp->n_head_kv);
        for (int t = 0; t < T; t++)
            kv_store(&c->kv, l, c->seq[t] * c->n_ctx + c->pos[t], c->k + (size_t)t * (size_t)KVD,
                     c->v + (size_t)t * (size_t)KVD);
        model_att_job aj = {c, l, T};
        pool_run(m->pool, T * hp->n_head_kv, model_att_unit, &aj);
        model_matmul(c, c->a, T, &L->wo, c->o, NULL, NULL, NULL, NULL);
        for (size_t i = 0; i < (size_t)T * (size_t)E; i++)
            c->x[i] += c->o[i];

        if (l == hp->n_layer - 1) {
            /* Only the rows that want logits go on (the cache is written):
             * keep those rows of x, in order, and mark them again, as the
             * reference engine does before its last feed-forward block. */
            for (int t = 0; t < T; t++)
                if (c->pos[t] + 1 > c->len[c->seq[t]]) c->len[c->seq[t]] = c->pos[t] + 1;
            int o = 0;
            for (int t = 0; t < T; t++) {
                if (!want[t]) continue;
                if (o != t)
                    memmove(c->x + (size_t)o * (size_t)E, c->x + (size_t)t * (size_t)E,
                            (size_t)E * sizeof(float));
                c->seq[o++] = c->seq[t];
            }
            T = n_out;
            if (T == 0) return 0;
            model_mark_rows(c, c->seq, T);
        }

        /* feed-forward block (SwiGLU) */
        model_rmsnorm(c->h, c->x, L->ffn_norm, T, E, hp->rms_eps);
        model_matmul(c, c->h, T, &L->w_gate, c->g, &L->w_up, c->u, NULL, NULL);
        for (int t = 0; t < T; t++)
            vx_silu_row(c->g + (size_t)t * (size_t)F, F);
        for (size_t i = 0; i < (size_t)T * (size_t)F; i++)
            c->g[i] *= c->u[i];
        model_matmul(c, c->g, T, &L->w_down, c->o, NULL, NULL, NULL, NULL);
        for (size_t i = 0; i < (size_t)T * (size_t)E; i++)
            c->x[i] += c->o[i];
    }
    /* logits for the rows that want them (x holds only those now) */
    model_rmsnorm(c->h, c->x, m->out_norm, n_out, E, hp->rms_eps);
    const size_t V = (size_t)hp->n_vocab;
    if (c->n_logits + n_out > c->n_logits_cap) {
        int cap = c->n_logits + n_out;
        float *nl = realloc(c->logits, (size_t)cap * V * sizeof(float));
        if (!nl) return cf_seterr(err, CF_ENOMEM, "out of memory for %d rows of logits", cap);
        c->logits = nl;
        c->n_logits_cap = cap;
    }
    model_matmul(c, c->h, n_out, &m->output, c->logits + (size_t)c->n_logits * V, NULL, NULL, NULL,
                 NULL);
    c->n_logits += n_out;
    return 0;
}

int cf_ctx_decode(cf_ctx *c, const cf_batch *b, cf_err *err) {
    const model_hparams *hp = &c->m->hp;
    c->n_logits = 0;
    if (!b || b->n_tokens <= 0 || !b->token)
        return cf_seterr(err, CF_EINVAL, "decode: empty batch");
    /* Every sequence's tokens must continue it in order: check the whole
     * batch before running any of it, so a bad batch changes nothing. */
    memcpy(c->blen, c->len, (size_t)c->n_seq * sizeof *c->blen);
    for (int i = 0; i < b->n_tokens; i++) {
        if (b->token[i] < 0 || b->token[i] >= hp->n_vocab)
            return cf_seterr(err, CF_EINVAL, "decode: token id %d at %d out of range [0, %d)",
                             b->token[i], i, hp->n_vocab);
        const int s = b->seq_id ? b->seq_id[i] : 0;
        if (s < 0 || s >= c->n_seq)
            return cf_seterr(err, CF_EINVAL,
                             "decode: sequence id %d at %d (this context holds 0..%d)", s, i,
                             c->n_seq - 1);
        if (b->pos && b->pos[i] != c->blen[s])
            return cf_seterr(
                err, CF_EINVAL,
                "decode: position %d at %d, expected %d (positions must continue the sequence)",
                b->pos[i], i, c->blen[s]);
        if (c->blen[s] >= c->n_ctx)
            return cf_seterr(err, CF_ERANGE,
                             "decode: context full (sequence %d: %d positions, %d more asked)", s,
                             c->n_ctx, b->n_tokens - i);
        c->blen[s]++;
    }
    int32_t *pos = malloc((size_t)b->n_tokens * 2 * sizeof *pos);
    if (!pos) return cf_seterr(err, CF_ENOMEM, "out of memory");
    int32_t *seq = pos + b->n_tokens;
    memcpy(c->blen, c->len, (size_t)c->n_seq * sizeof *c->blen);
    for (int i = 0; i < b->n_tokens; i++) {
        seq[i] = b->seq_id ? b->seq_id[i] : 0;
        pos[i] = c->blen[seq[i]]++;
    }
    int8_t want[8192];
    int rc = 0;
    for (int s = 0; s < b->n_tokens && rc == 0; s += c->n_batch) {
        const int T = b->n_tokens - s < c->n_batch ? b->n_tokens - s : c->n_batch;
        for (int t = 0; t < T; t++)
            want[t] = b->logits ? (b->logits[s + t] != 0) : (s + t == b->n_tokens - 1);
        rc = model_forward_chunk(c, b->token + s, pos + s, seq + s, T, want, err);
    }
    free(pos);
    return rc < 0 ? rc : 0;
}

int cf_ctx_eval(cf_ctx *c, const int32_t *tokens, int n, bool all_logits, cf_err *err) {
    int8_t *want = NULL;
    if (all_logits && n > 0) {
        want = malloc((size_t)n);
        if (!want) return cf_seterr(err, CF_ENOMEM, "out of memory");
        memset(want, 1, (size_t)n);
    }
    cf_batch b = {.n_tokens = n, .token = tokens, .logits = want};
    int rc = cf_ctx_decode(c, &b, err);
    free(want);
    return rc;
}
