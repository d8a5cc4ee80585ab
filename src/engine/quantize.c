/*
 * quantize — model quantization presets and the file converter (see
 * quantize.h).
 *
 * Which tensors are converted: 2-D (or higher) tensors whose name ends in
 * ".weight", except MoE routers (ffn_gate_inp). Everything else — 1-D norms
 * and biases, F32 by convention — is copied unchanged.
 *
 * Type of a converted tensor under each preset (the rules of llama.cpp's
 * llama_tensor_get_type for these presets, so confab's files match the
 * reference engine's; checked against its Q4_0 / Q8_0 / Q4_K_M files):
 *
 *   F16     every converted tensor F16 (BF16: BF16).
 *   Q8_0    every converted tensor Q8_0.
 *   Q6_K    every converted tensor Q6_K.
 *   Q4_0    Q4_0, except the output matrix (output.weight, or
 *           token_embd.weight when the model ties them): Q6_K.
 *   Q4_K_M  Q4_K (Q5_K_M: Q5_K), except
 *           - the output matrix: Q6_K;
 *           - attn_v.weight and ffn_down.weight of layers that
 *             use_more_bits(i, n): Q6_K, where with n layers
 *             use_more_bits(i, n) = i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2
 *             (integer division: the first and last eighth of the layers
 *             and every third layer in between);
 *           - attn_qkv.weight (fused): Q5_K (Q5_K_M: Q6_K).
 *   Q3_K_M  Q3_K, except the output matrix: Q6_K; attn_v.weight: Q5_K for
 *           the first two, then Q4_K; ffn_down: Q5_K for layers i < n/16,
 *           then Q4_K; attn_output and attn_qkv: Q4_K.
 *   Q2_K    Q2_K, except the output matrix: Q6_K; attn_v.weight: Q3_K (Q4_K
 *           when there are >= 4 attention heads per KV head); ffn_down and
 *           attn_output: Q3_K.
 *   Not ported: llama.cpp's special cases for MoE (8 experts), 70B models
 *           and the Falcon architecture.
 *   Output matrix, all quantized presets: Q8_0 when its rows are not a
 *           multiple of 256, and never lowered (Q8_0 stays Q8_0).
 *
 * Fallbacks, applied last: a K-quant needs rows that are a multiple of 256;
 * otherwise Q2_K/Q3_K -> IQ4_NL, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0
 * (as llama.cpp). If the
 * row length is still not a multiple of the type's block (e.g. FFN 172
 * with 32-value blocks), the tensor becomes F16.
 *
 * Conversion goes through float32 row by row (source to_float, target
 * from_float), so any readable source type can be requantized; a tensor
 * already of the target type is copied byte for byte. Tensors are added to
 * the writer lazily and converted while the file is written, one at a time
 * (rows split over threads), so memory holds one output tensor, not the
 * model; the input is only mapped.
 */
#include "engine/quantize.h"

#include "base/cpu.h"
#include "engine/blocks.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define QUANT_MAX_THREADS 64

static const struct {
    const char *name;
    int base;       /* main tensor type */
    uint32_t ftype; /* general.file_type (llama.cpp's LLAMA_FTYPE_MOSTLY_*) */
} quant_presets[QUANT_PRESET_COUNT] = {
    [QUANT_F16] = {"F16", TT_F16, 1},         [QUANT_BF16] = {"BF16", TT_BF16, 32},
    [QUANT_Q8_0] = {"Q8_0", TT_Q8_0, 7},      [QUANT_Q4_0] = {"Q4_0", TT_Q4_0, 2},
    [QUANT_Q4_K_M] = {"Q4_K_M", TT_Q4_K, 15}, [QUANT_Q5_K_M] = {"Q5_K_M", TT_Q5_K, 17},
    [QUANT_Q6_K] = {"Q6_K", TT_Q6_K, 18},     [QUANT_Q2_K] = {"Q2_K", TT_Q2_K, 10},
    [QUANT_Q3_K_M] = {"Q3_K_M", TT_Q3_K, 12},
};

int quant_preset_from_name(const char *name) {
    for (int i = 0; i < QUANT_PRESET_COUNT; i++)
        if (name && !strcasecmp(name, quant_presets[i].name)) return i;
    return -1;
}

const char *quant_preset_name(quant_preset p) {
    return (unsigned)p < QUANT_PRESET_COUNT ? quant_presets[p].name : "?";
}

const char *quant_preset_list(void) {
    return "F16, BF16, Q8_0, Q6_K, Q5_K_M, Q4_K_M, Q4_0, Q3_K_M, Q2_K";
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

static int use_more_bits(int i, int n) {
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

/* Whether tensor NAME is converted at all. */
static int quant_wanted(const char *name, const gguf_tensor *t) {
    return t->n_dims >= 2 && ends_with(name, ".weight") && !strstr(name, "ffn_gate_inp.weight");
}

int quant_tensor_type(quant_preset p, const char *name, const gguf_tensor *t, quant_ctx ctx) {
    if ((unsigned)p >= QUANT_PRESET_COUNT || !quant_wanted(name, t)) return t->type;
    int type = quant_presets[p].base;
    const int64_t nx = t->ne[0];
    const int is_output =
        !strcmp(name, "output.weight") || (!ctx.has_output && !strcmp(name, "token_embd.weight"));
    if (tt_get(type)->quantized) {
        if (is_output) {
            if (nx % QK_K)
                type = TT_Q8_0;
            else if (type != TT_Q8_0)
                type = TT_Q6_K;
        } else {
            const int attn_v = strstr(name, "attn_v.weight") != NULL;
            const int ffn_down = strstr(name, "ffn_down") != NULL;
            const int attn_out = strstr(name, "attn_output.weight") != NULL;
            const int qkv = strstr(name, "attn_qkv.weight") != NULL;
            if (p == QUANT_Q4_K_M || p == QUANT_Q5_K_M) {
                if ((attn_v || ffn_down) && use_more_bits(ctx.i_layer, ctx.n_layer))
                    type = TT_Q6_K;
                else if (qkv)
                    type = p == QUANT_Q4_K_M ? TT_Q5_K : TT_Q6_K;
            } else if (p == QUANT_Q3_K_M) {
                if (attn_v)
                    type = ctx.i_layer < 2 ? TT_Q5_K : TT_Q4_K;
                else if (ffn_down)
                    type = ctx.i_layer < ctx.n_layer / 16 ? TT_Q5_K : TT_Q4_K;
                else if (attn_out || qkv)
                    type = TT_Q4_K;
            } else if (p == QUANT_Q2_K) {
                if (attn_v)
                    type = ctx.n_gqa >= 4 ? TT_Q4_K : TT_Q3_K;
                else if (ffn_down || attn_out)
                    type = TT_Q3_K;
            }
        }
    }
    if (nx % QK_K) {
        if (type == TT_Q2_K || type == TT_Q3_K)
            type = TT_IQ4_NL;
        else if (type == TT_Q4_K)
            type = TT_Q5_0;
        else if (type == TT_Q5_K)
            type = TT_Q5_1;
        else if (type == TT_Q6_K)
            type = TT_Q8_0;
    }
    if (nx % tt_get(type)->blck) type = TT_F16;
    return type;
}

/* One tensor to write: where its data comes from and what it becomes. */
typedef struct {
    const gguf_tensor *t;
    char *name;
    int type;
    int n_threads;
} quant_job;

/* Rows [r0, r1) of job J converted into DST (the whole output tensor). */
typedef struct {
    const quant_job *j;
    void *dst;
    int64_t r0, r1;
    int rc; /* CF_ENOMEM when the row buffer could not be allocated */
} quant_part;

static void *quant_rows(void *arg) {
    quant_part *p = arg;
    const gguf_tensor *t = p->j->t;
    const tt_traits *src = tt_get(t->type), *dst = tt_get(p->j->type);
    const int64_t nx = t->ne[0];
    const size_t row_in = tt_row_size(t->type, nx), row_out = tt_row_size(p->j->type, nx);
    float *row = malloc((size_t)(nx ? nx : 1) * sizeof(float));
    if (!row) {
        p->rc = CF_ENOMEM;
        return NULL;
    }
    for (int64_t r = p->r0; r < p->r1; r++) {
        src->to_float((const char *)t->data + (size_t)r * row_in, row, nx);
        dst->from_float(row, (char *)p->dst + (size_t)r * row_out, nx);
    }
    free(row);
    return NULL;
}

/* gguf_w_fill_fn: converts a job's tensor, rows split over threads. Rows
 * are independent, so the bytes do not depend on the thread count. */
static int quant_fill(void *ctx, void *out, uint64_t nbytes, cf_err *err) {
    const quant_job *j = ctx;
    const gguf_tensor *t = j->t;
    if (j->type == t->type) {
        memcpy(out, t->data, (size_t)nbytes);
        return 0;
    }
    const int64_t rows = t->ne[1] * t->ne[2] * t->ne[3];
    int nt = j->n_threads;
    if (rows * t->ne[0] < (1 << 16)) nt = 1; /* not worth a thread */
    if (nt > rows) nt = rows > 0 ? (int)rows : 1;
    if (nt < 1) nt = 1;
    quant_part parts[QUANT_MAX_THREADS] = {{0}};
    pthread_t tid[QUANT_MAX_THREADS];
    int started[QUANT_MAX_THREADS] = {0};
    for (int i = 0; i < nt; i++) {
        parts[i] = (quant_part){j, out, rows * i / nt, rows * (i + 1) / nt, 0};
        if (i > 0) started[i] = pthread_create(&tid[i], NULL, quant_rows, &parts[i]) == 0;
    }
    quant_rows(&parts[0]);
    for (int i = 1; i < nt; i++) {
        if (started[i])
            pthread_join(tid[i], NULL);
        else
            quant_rows(&parts[i]); /* no thread: do its share here */
    }
    for (int i = 0; i < nt; i++)
        if (parts[i].rc) return cf_seterr(err, parts[i].rc, "tensor '%s': out of memory", j->name);
    return 0;
}

/* Attention heads per KV head from <arch>.attention.head_count(_kv); 1 when
 * absent or given per layer (arrays). */
static int quant_gqa(const gguf_file *f) {
    gguf_str arch;
    if (!gguf_get_str(f, "general.architecture", &arch) || arch.n > 64) return 1;
    char key[128];
    uint32_t hc, kv;
    snprintf(key, sizeof key, "%.*s.attention.head_count", (int)arch.n, arch.p);
    if (!gguf_get_u32(f, key, &hc)) return 1;
    snprintf(key, sizeof key, "%.*s.attention.head_count_kv", (int)arch.n, arch.p);
    if (!gguf_get_u32(f, key, &kv) || kv == 0) return 1;
    return (int)(hc / kv);
}

int quant_file(const char *in, const char *out, const char *preset, int n_threads,
               quant_stats *stats, cf_err *err) {
    const int p = quant_preset_from_name(preset);
    if (p < 0)
        return cf_seterr(err, CF_EINVAL, "unknown quantization type '%s' (one of %s)",
                         preset ? preset : "", quant_preset_list());
    if (n_threads <= 0) n_threads = cpu_count();
    if (n_threads > QUANT_MAX_THREADS) n_threads = QUANT_MAX_THREADS;
    gguf_file *f = gguf_open(in, err);
    if (!f) return err ? err->code : CF_EFORMAT;
    const int64_t n = gguf_n_tensors(f);
    quant_job *jobs = calloc((size_t)(n ? n : 1), sizeof *jobs);
    if (!jobs) {
        gguf_close(f);
        return cf_seterr(err, CF_ENOMEM, "out of memory");
    }
    int rc = 0;
    for (int64_t i = 0; i < n && !rc; i++) {
        jobs[i].t = gguf_tensor_at(f, i);
        jobs[i].name = gguf_str_dup(jobs[i].t->name);
        jobs[i].n_threads = n_threads;
        if (!jobs[i].name) rc = cf_seterr(err, CF_ENOMEM, "out of memory");
    }
    /* Plan: counts for the _M mixes, then every tensor's type, checked to be
     * convertible before anything is written. */
    quant_stats st;
    memset(&st, 0, sizeof st);
    quant_ctx ctx = {0, 0, gguf_find_tensor(f, "output.weight") != NULL, quant_gqa(f)};
    int n_attn_v = 0, n_ffn_down = 0, i_attn_v = 0, i_ffn_down = 0;
    for (int64_t i = 0; i < n && !rc; i++)
        if (quant_wanted(jobs[i].name, jobs[i].t)) {
            n_attn_v += strstr(jobs[i].name, "attn_v.weight") != NULL;
            n_ffn_down += strstr(jobs[i].name, "ffn_down") != NULL;
        }
    gguf_writer *w = gguf_w_new();
    gguf_w_copy_kv(w, f);
    gguf_w_set_u32(w, "general.quantization_version", 2);
    gguf_w_set_u32(w, "general.file_type", quant_presets[p].ftype);
    for (int64_t i = 0; i < n && !rc; i++) {
        quant_job *j = &jobs[i];
        if (quant_wanted(j->name, j->t) && strstr(j->name, "attn_v.weight"))
            ctx = (quant_ctx){i_attn_v++, n_attn_v, ctx.has_output, ctx.n_gqa};
        else if (quant_wanted(j->name, j->t) && strstr(j->name, "ffn_down"))
            ctx = (quant_ctx){i_ffn_down++, n_ffn_down, ctx.has_output, ctx.n_gqa};
        j->type = quant_tensor_type((quant_preset)p, j->name, j->t, ctx);
        const tt_traits *src = tt_get(j->t->type), *dst = tt_get(j->type);
        if (j->type != j->t->type && (!src->to_float || !dst->from_float)) {
            rc = cf_seterr(err, CF_EFORMAT, "tensor '%s': cannot convert %s to %s", j->name,
                           src->name, dst->name);
            break;
        }
        rc =
            gguf_w_add_tensor_lazy(w, j->name, j->type, j->t->n_dims, j->t->ne, quant_fill, j, err);
        if (rc) break;
        st.n_tensors++;
        st.n_converted += j->type != j->t->type;
        st.bytes_in += j->t->nbytes;
        st.bytes_out +=
            tt_row_size(j->type, j->t->ne[0]) * (uint64_t)(j->t->ne[1] * j->t->ne[2] * j->t->ne[3]);
        st.count[j->type]++;
    }
    if (!rc) rc = gguf_w_write(w, out, err);
    gguf_w_free(w);
    for (int64_t i = 0; i < n; i++)
        free(jobs[i].name);
    free(jobs);
    gguf_close(f);
    if (rc) return rc;
    if (stats) *stats = st;
    return 0;
}
