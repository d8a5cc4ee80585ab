/*
 * mkmodel — random-weight GGUF models (see mkmodel.h).
 *
 * Every tensor gets its own PRNG stream seeded from (seed, tensor name), so
 * one tensor's values do not depend on which tensors came before. Matrices
 * are uniform in +-sqrt(3 / fan_in) (unit-variance outputs for unit-variance
 * inputs, so activations neither vanish nor explode through the layers);
 * norm weights are 1 plus a little noise; biases are small.
 *
 * Types: one type for every matrix, or the "_M" mix of common practice
 * (Q4_K_M: Q4_K everywhere, Q6_K for output.weight and for attn_v and
 * ffn_down in the first and last eighth of the layers and every third one
 * between). K-quants need rows that are multiples of 256; shorter rows fall
 * back as llama.cpp does (Q4_K -> Q5_0, Q5_K -> Q5_1... here Q4_K/Q5_K ->
 * Q5_0, Q6_K -> Q8_0). Norms, biases and rope factors stay F32.
 *
 * The vocabulary (every tokenizer.* key) is copied from a given GGUF so the
 * model pairs with a real tokenizer; n_vocab is its token count.
 */
#include "engine/mkmodel.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/hash.h"
#include "engine/gguf.h"
#include "engine/types.h"

typedef struct {
    uint64_t s;
} mk_rng;

static uint64_t mk_next(mk_rng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1). */
static float mk_unif(mk_rng *r) { return (float)((double)(mk_next(r) >> 11) * 0x1.0p-52 - 1.0); }

/* Copies every tokenizer.* key of SRC into W. */
static void mk_copy_vocab(gguf_writer *w, const gguf_file *src) {
    for (int64_t i = 0; i < gguf_n_kv(src); i++) {
        gguf_str k = gguf_kv_key(src, i);
        if (k.n < 10 || memcmp(k.p, "tokenizer.", 10)) continue;
        char *key = gguf_str_dup(k);
        if (!key) continue;
        switch (gguf_kv_type(src, i)) {
        case GGUF_TYPE_FLOAT32:
        case GGUF_TYPE_FLOAT64: {
            float f;
            if (gguf_get_f32(src, key, &f)) gguf_w_set_f32(w, key, f);
            break;
        }
        case GGUF_TYPE_BOOL: {
            bool b;
            if (gguf_get_bool(src, key, &b)) gguf_w_set_bool(w, key, b);
            break;
        }
        case GGUF_TYPE_STRING: {
            gguf_str s;
            if (gguf_get_str(src, key, &s)) {
                char *v = gguf_str_dup(s);
                if (v) gguf_w_set_str(w, key, v);
                free(v);
            }
            break;
        }
        case GGUF_TYPE_ARRAY: {
            gguf_vtype et;
            uint64_t n;
            if (!gguf_get_arr(src, key, &et, &n)) break;
            if (et == GGUF_TYPE_STRING) {
                gguf_str *ss = malloc((size_t)(n ? n : 1) * sizeof *ss);
                if (!ss) break;
                for (uint64_t j = 0; j < n; j++)
                    ss[j] = gguf_arr_str(src, key, j);
                gguf_w_set_arr_str(w, key, ss, n);
                free(ss);
            } else if (et != GGUF_TYPE_ARRAY) {
                gguf_w_set_arr(w, key, et, gguf_arr_data(src, key), n);
            }
            break;
        }
        case GGUF_TYPE_INT8:
        case GGUF_TYPE_INT16:
        case GGUF_TYPE_INT32:
        case GGUF_TYPE_INT64: {
            int64_t v;
            if (gguf_get_i64(src, key, &v) && v >= INT32_MIN && v <= INT32_MAX)
                gguf_w_set_i32(w, key, (int32_t)v);
            break;
        }
        default: {
            uint32_t v;
            if (gguf_get_u32(src, key, &v)) gguf_w_set_u32(w, key, v);
            break;
        }
        }
        free(key);
    }
}

/* Layers whose attn_v / ffn_down get more bits in the _M mixes. */
static int mk_more_bits(int i, int n) {
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

/* Falls back from K-quants when rows are not multiples of 256. */
static int mk_fit_type(int type, int64_t ne0) {
    const tt_traits *t = tt_get(type);
    if (ne0 % t->blck == 0) return type;
    if (type == TT_Q6_K) return TT_Q8_0;
    return TT_Q5_0;
}

static int mk_add(gguf_writer *w, const char *name, int type, int64_t ne0, int64_t ne1, float scale,
                  float offset, uint64_t seed, cf_err *err) {
    type = mk_fit_type(type, ne0);
    const tt_traits *tr = tt_get(type);
    if (!tr || (type != TT_F32 && !tr->from_float))
        return cf_seterr(err, CF_EINVAL, "no quantizer for type %s", tr ? tr->name : "?");
    mk_rng r = {seed ^ hash64(name, strlen(name), 0x6d6b6d6f64656cull)};
    const size_t rb = tt_row_size(type, ne0);
    const uint64_t nbytes = (uint64_t)rb * (uint64_t)ne1;
    float *row = malloc((size_t)ne0 * sizeof(float));
    char *data = malloc(nbytes ? nbytes : 1);
    if (!row || !data) {
        free(row);
        free(data);
        return cf_seterr(err, CF_ENOMEM, "out of memory for tensor %s", name);
    }
    for (int64_t j = 0; j < ne1; j++) {
        for (int64_t i = 0; i < ne0; i++)
            row[i] = offset + scale * mk_unif(&r);
        if (type == TT_F32)
            memcpy(data + (size_t)j * rb, row, rb);
        else
            tr->from_float(row, data + (size_t)j * rb, ne0);
    }
    int64_t ne[2] = {ne0, ne1};
    int rc = gguf_w_add_tensor(w, name, type, ne1 > 1 ? 2 : 1, ne, data, nbytes, err);
    free(row);
    free(data);
    return rc;
}

int mkmodel_write(const mkmodel_opts *o, const char *path, cf_err *err) {
    tt_init();
    const int is_llama = !strcmp(o->arch, "llama"), is_q2 = !strcmp(o->arch, "qwen2"),
              is_q3 = !strcmp(o->arch, "qwen3");
    if (!is_llama && !is_q2 && !is_q3)
        return cf_seterr(err, CF_EINVAL, "unknown architecture '%s' (llama, qwen2, qwen3)",
                         o->arch);
    const int kvh = o->kv_heads > 0 ? o->kv_heads : o->heads;
    if (o->dim <= 0 || o->layers <= 0 || o->heads <= 0 || o->ffn <= 0 || o->heads % kvh ||
        o->dim > 65536 || o->ffn > 262144 || o->layers > 1024)
        return cf_seterr(err, CF_EINVAL,
                         "bad shape: dim %d, layers %d, heads %d, kv-heads %d, ffn %d (all > 0, "
                         "heads a multiple of kv-heads)",
                         o->dim, o->layers, o->heads, kvh, o->ffn);
    const int hd = o->head_dim > 0 ? o->head_dim : o->dim / o->heads;
    if (hd <= 0 || hd % 2 || (o->head_dim == 0 && o->dim % o->heads))
        return cf_seterr(err, CF_EINVAL, "bad head dimension %d (dim %d / heads %d)", hd, o->dim,
                         o->heads);
    int mix = 0, type;
    const char *tn = o->type ? o->type : "F32";
    if (!strcasecmp(tn, "Q4_K_M")) {
        type = TT_Q4_K;
        mix = 1;
    } else if (!strcasecmp(tn, "Q5_K_M")) {
        type = TT_Q5_K;
        mix = 1;
    } else {
        type = tt_from_name(tn);
        if (type < 0 || (type != TT_F32 && !tt_get(type)->from_float))
            return cf_seterr(err, CF_EINVAL,
                             "unsupported type '%s' (F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, "
                             "Q4_K_M, Q5_K_M)",
                             tn);
    }
    int n_vocab = o->vocab;
    gguf_file *vf = NULL;
    if (o->vocab_from) {
        vf = gguf_open(o->vocab_from, err);
        if (!vf) return cf_errctx(err, "reading vocabulary");
        gguf_vtype et;
        uint64_t n;
        if (!gguf_get_arr(vf, "tokenizer.ggml.tokens", &et, &n) || et != GGUF_TYPE_STRING ||
            n == 0 || n > (1u << 24)) {
            gguf_close(vf);
            return cf_seterr(err, CF_EFORMAT, "%s has no tokenizer.ggml.tokens", o->vocab_from);
        }
        n_vocab = (int)n;
    }
    if (n_vocab <= 0) {
        gguf_close(vf);
        return cf_seterr(err, CF_EINVAL, "vocabulary size needed (--vocab N or --vocab-from FILE)");
    }
    gguf_writer *w = gguf_w_new();
    if (vf) mk_copy_vocab(w, vf);
    gguf_close(vf);
    const char *ar = o->arch;
    char key[128], nm[96];
#define KEY(suffix) (snprintf(key, sizeof key, "%s." suffix, ar), key)
    gguf_w_set_str(w, "general.architecture", ar);
    char name[96];
    snprintf(name, sizeof name, "random-%s-d%d-l%d-h%d-kv%d-%s-seed%llu", ar, o->dim, o->layers,
             o->heads, kvh, tn, (unsigned long long)o->seed);
    gguf_w_set_str(w, "general.name", name);
    gguf_w_set_u32(w, KEY("context_length"), (uint32_t)(o->ctx > 0 ? o->ctx : 2048));
    gguf_w_set_u32(w, KEY("embedding_length"), (uint32_t)o->dim);
    gguf_w_set_u32(w, KEY("block_count"), (uint32_t)o->layers);
    gguf_w_set_u32(w, KEY("feed_forward_length"), (uint32_t)o->ffn);
    gguf_w_set_u32(w, KEY("attention.head_count"), (uint32_t)o->heads);
    gguf_w_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)kvh);
    gguf_w_set_u32(w, KEY("rope.dimension_count"), (uint32_t)hd);
    if (o->head_dim > 0) {
        gguf_w_set_u32(w, KEY("attention.key_length"), (uint32_t)hd);
        gguf_w_set_u32(w, KEY("attention.value_length"), (uint32_t)hd);
    }
    gguf_w_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), is_llama ? 1e-5f : 1e-6f);
    gguf_w_set_f32(w, KEY("rope.freq_base"),
                   o->rope_base > 0 ? o->rope_base : (is_llama ? 10000.0f : 1000000.0f));
    gguf_w_set_u32(w, "general.file_type", 0);
    float llama3 = 0;
    if (o->rope_scaling) {
        float factor = 0;
        const char *colon = strchr(o->rope_scaling, ':');
        if (colon) factor = strtof(colon + 1, NULL);
        if (!colon || !(factor >= 1.0f)) {
            gguf_w_free(w);
            return cf_seterr(err, CF_EINVAL, "bad rope scaling '%s' (linear:F or llama3:F, F >= 1)",
                             o->rope_scaling);
        }
        if (!strncmp(o->rope_scaling, "linear:", 7)) {
            gguf_w_set_str(w, KEY("rope.scaling.type"), "linear");
            gguf_w_set_f32(w, KEY("rope.scaling.factor"), factor);
        } else if (!strncmp(o->rope_scaling, "llama3:", 7)) {
            llama3 = factor;
        } else {
            gguf_w_free(w);
            return cf_seterr(err, CF_EINVAL, "bad rope scaling '%s' (linear:F or llama3:F, F >= 1)",
                             o->rope_scaling);
        }
    }
#undef KEY
    const int64_t E = o->dim, F = o->ffn, QD = (int64_t)o->heads * hd, KVD = (int64_t)kvh * hd,
                  V = n_vocab;
    const uint64_t sd = o->seed;
    const int hi_type = mix ? TT_Q6_K : type;
    int rc = 0;
#define ADD(n, t, a, b, sc, off)                                                                   \
    if ((rc = mk_add(w, n, t, a, b, sc, off, sd, err)) < 0) goto out
    ADD("token_embd.weight", (o->tied ? hi_type : type), E, V, 1.0f, 0.0f);
    ADD("output_norm.weight", TT_F32, E, 1, 0.1f, 1.0f);
    if (!o->tied) ADD("output.weight", hi_type, E, V, sqrtf(3.0f / (float)E), 0.0f);
    if (llama3 > 0) { /* Llama 3.1 frequency factors: low 1, high 4, original context 8192 */
        float ff[512];
        const double base = o->rope_base > 0 ? o->rope_base : 10000.0, lo_wl = 8192.0,
                     hi_wl = 8192.0 / 4;
        for (int i = 0; i < hd / 2 && i < 512; i++) {
            const double wl = 2 * M_PI / pow(base, -2.0 * i / hd);
            if (wl < hi_wl)
                ff[i] = 1.0f;
            else if (wl > lo_wl)
                ff[i] = llama3;
            else {
                const double smooth = (8192.0 / wl - 1.0) / (4.0 - 1.0);
                ff[i] = (float)(1.0 / ((1 - smooth) / llama3 + smooth));
            }
        }
        int64_t ne[1] = {hd / 2};
        if ((rc = gguf_w_add_tensor(w, "rope_freqs.weight", TT_F32, 1, ne, ff,
                                    (uint64_t)(hd / 2) * 4, err)) < 0)
            goto out;
    }
    for (int l = 0; l < o->layers; l++) {
        const int vt = mix && mk_more_bits(l, o->layers) ? hi_type : type;
#define LN(suffix) (snprintf(nm, sizeof nm, "blk.%d." suffix, l), nm)
        ADD(LN("attn_norm.weight"), TT_F32, E, 1, 0.1f, 1.0f);
        ADD(LN("attn_q.weight"), type, E, QD, sqrtf(3.0f / (float)E), 0.0f);
        ADD(LN("attn_k.weight"), type, E, KVD, sqrtf(3.0f / (float)E), 0.0f);
        ADD(LN("attn_v.weight"), vt, E, KVD, sqrtf(3.0f / (float)E), 0.0f);
        if (is_q2) {
            ADD(LN("attn_q.bias"), TT_F32, QD, 1, 0.1f, 0.0f);
            ADD(LN("attn_k.bias"), TT_F32, KVD, 1, 0.1f, 0.0f);
            ADD(LN("attn_v.bias"), TT_F32, KVD, 1, 0.1f, 0.0f);
        }
        if (is_q3) {
            ADD(LN("attn_q_norm.weight"), TT_F32, hd, 1, 0.1f, 1.0f);
            ADD(LN("attn_k_norm.weight"), TT_F32, hd, 1, 0.1f, 1.0f);
        }
        ADD(LN("attn_output.weight"), type, QD, E, sqrtf(3.0f / (float)QD), 0.0f);
        ADD(LN("ffn_norm.weight"), TT_F32, E, 1, 0.1f, 1.0f);
        ADD(LN("ffn_gate.weight"), type, E, F, sqrtf(3.0f / (float)E), 0.0f);
        ADD(LN("ffn_up.weight"), type, E, F, sqrtf(3.0f / (float)E), 0.0f);
        ADD(LN("ffn_down.weight"), vt, F, E, sqrtf(3.0f / (float)F), 0.0f);
#undef LN
    }
#undef ADD
    rc = gguf_w_write(w, path, err);
out:
    gguf_w_free(w);
    return rc;
}
