/*
 * tokenizer_gguf — builds a tok_tokenizer from a GGUF file's
 * tokenizer.ggml.* metadata.
 *
 * A thin layer over tok_new(): it checks that each array has the type and
 * length the format promises, converts them to plain arrays and reads the
 * flags. The GGUF reader has already bounded every string and array, so
 * the work here is about meaning, not memory safety. Numeric arrays in GGUF
 * metadata are not aligned, so they are copied with memcpy.
 *
 * Like llama.cpp, a special-token id outside the vocabulary is ignored with
 * a warning (the default is kept) and an empty token is renamed
 * "[EMPTY_<id>]" with a warning, rather than refusing a model the
 * reference engine loads; arrays that are shorter than the token list, of
 * the wrong type, or missing where required are errors naming the key.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/sb.h"
#include "engine/gguf.h"
#include "engine/tokenizer.h"

static const char *vtype_name(gguf_vtype t) {
    static const char *const names[] = {"uint8",  "int8",    "uint16", "int16",  "uint32",
                                        "int32",  "float32", "bool",   "string", "array",
                                        "uint64", "int64",   "float64"};
    return (unsigned)t < GGUF_TYPE_COUNT ? names[t] : "?";
}

/* Reads an optional numeric array KEY of element type WANT (or ALT) with at
 * least N elements into a malloc'd copy of N elements (*out NULL when the
 * key is absent). */
static int read_num_array(const gguf_file *f, const char *key, gguf_vtype want, gguf_vtype alt,
                          uint32_t n, void **out, gguf_vtype *got, cf_err *err) {
    *out = NULL;
    if (gguf_find_key(f, key) < 0) return 0;
    gguf_vtype elem;
    uint64_t cnt;
    if (!gguf_get_arr(f, key, &elem, &cnt))
        return cf_seterr(err, CF_EFORMAT, "%s is not an array", key);
    if (elem != want && elem != alt)
        return cf_seterr(err, CF_EFORMAT, "%s holds %s values, expected %s", key, vtype_name(elem),
                         vtype_name(want));
    if (cnt < n)
        return cf_seterr(err, CF_EFORMAT, "%s has %llu entries but tokenizer.ggml.tokens has %u",
                         key, (unsigned long long)cnt, n);
    const void *data = gguf_arr_data(f, key);
    if (!data && n) return cf_seterr(err, CF_EFORMAT, "%s has no data", key);
    *out = malloc((size_t)n * 4 + 1);
    if (!*out) return cf_seterr(err, CF_ENOMEM, "out of memory reading %s", key);
    if (n) memcpy(*out, data, (size_t)n * 4);
    *got = elem;
    return 0;
}

/* Reads an optional special-token id; out-of-range ids keep the default. */
static void read_id(const gguf_file *f, const char *key, uint32_t n, int32_t *id) {
    uint32_t v;
    if (!gguf_get_u32(f, key, &v)) return;
    if (v >= n) {
        log_warn("tok", "%s = %u is outside the vocabulary (%u tokens); using the default", key, v,
                 n);
        return;
    }
    *id = (int32_t)v;
}

static void read_flag(const gguf_file *f, const char *key, int *flag) {
    bool b;
    if (gguf_get_bool(f, key, &b)) *flag = b ? 1 : 0;
}

/* Reads a string array KEY into tok_str (pointing into the mapping). When
 * NAMES is not NULL, empty strings are replaced by "[EMPTY_<index>]" kept
 * in NAMES. */
static int read_str_array(const gguf_file *f, const char *key, tok_str **out, uint32_t *n_out,
                          sb_t *names, cf_err *err) {
    gguf_vtype elem;
    uint64_t cnt;
    if (!gguf_get_arr(f, key, &elem, &cnt)) {
        if (gguf_find_key(f, key) >= 0)
            return cf_seterr(err, CF_EFORMAT, "%s is not an array", key);
        return cf_seterr(err, CF_ENOTFOUND, "%s is missing", key);
    }
    if (elem != GGUF_TYPE_STRING)
        return cf_seterr(err, CF_EFORMAT, "%s holds %s values, expected strings", key,
                         vtype_name(elem));
    if (cnt > (1u << 30))
        return cf_seterr(err, CF_EFORMAT, "%s has too many entries (%llu)", key,
                         (unsigned long long)cnt);
    tok_str *v = malloc(((size_t)cnt + 1) * sizeof *v);
    if (!v) return cf_seterr(err, CF_ENOMEM, "out of memory reading %s", key);
    for (uint64_t i = 0; i < cnt; i++) {
        gguf_str s = gguf_arr_str(f, key, i);
        v[i] = (tok_str){s.p, (size_t)s.n};
        if (s.n == 0 && names) { /* llama.cpp's name for an empty token */
            log_warn("tok", "%s: entry %llu is empty; naming it [EMPTY_%llu]", key,
                     (unsigned long long)i, (unsigned long long)i);
            sb_printf(names, "[EMPTY_%llu]", (unsigned long long)i);
            sb_putc(names,
                    0); /* separator: NAMES may move while it grows, so point into it after */
        }
    }
    if (names && names->len) {
        size_t at = 0;
        for (uint64_t i = 0; i < cnt; i++) {
            if (v[i].n) continue;
            size_t l = strlen(names->data + at);
            v[i] = (tok_str){names->data + at, l};
            at += l + 1;
        }
    }
    *out = v;
    *n_out = (uint32_t)cnt;
    return 0;
}

tok_tokenizer *tok_from_gguf(const gguf_file *f, cf_err *err) {
    gguf_str model;
    if (!gguf_get_str(f, "tokenizer.ggml.model", &model)) {
        cf_seterr(err, CF_ENOTFOUND, "tokenizer.ggml.model is missing: the file has no vocabulary");
        return NULL;
    }
    tok_vocab_desc d;
    if (gguf_str_eq(model, "llama")) {
        tok_desc_init(&d, TOK_SPM);
    } else if (gguf_str_eq(model, "gpt2")) {
        tok_desc_init(&d, TOK_BPE);
    } else if (gguf_str_eq(model, "bert")) {
        cf_seterr(err, CF_EFORMAT,
                  "WordPiece vocabularies (tokenizer.ggml.model = \"bert\") are not supported");
        return NULL;
    } else {
        cf_seterr(err, CF_EFORMAT,
                  "unsupported tokenizer.ggml.model '%.*s' (supported: llama, gpt2)",
                  (int)(model.n > 40 ? 40 : model.n), model.p);
        return NULL;
    }

    tok_str *tokens = NULL, *merges = NULL;
    void *scores = NULL, *types = NULL;
    char *pre = NULL;
    sb_t names = {0};
    tok_tokenizer *t = NULL;
    uint32_t n = 0, nm = 0;
    gguf_vtype st = GGUF_TYPE_FLOAT32, tt = GGUF_TYPE_INT32;

    if (read_str_array(f, "tokenizer.ggml.tokens", &tokens, &n, &names, err)) goto done;
    if (read_num_array(f, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, GGUF_TYPE_INT32, n, &scores,
                       &st, err))
        goto done;
    if (read_num_array(f, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, GGUF_TYPE_INT32, n, &types,
                       &tt, err))
        goto done;
    if (scores && st == GGUF_TYPE_INT32) { /* integer scores: convert in place */
        int32_t *iv = scores;
        float *fv = scores;
        for (uint32_t i = 0; i < n; i++)
            fv[i] = (float)iv[i];
    }
    if (d.kind == TOK_BPE) {
        if (read_str_array(f, "tokenizer.ggml.merges", &merges, &nm, NULL, err)) goto done;
        gguf_str p;
        if (gguf_get_str(f, "tokenizer.ggml.pre", &p))
            pre = gguf_str_dup(p);
        else
            log_warn("tok", "tokenizer.ggml.pre is missing; using the 'default' pre-tokenizer");
    }
    d.pre = pre;
    d.n_tokens = n;
    d.tokens = tokens;
    d.scores = scores;
    d.types = types;
    d.n_merges = nm;
    d.merges = merges;
    read_id(f, "tokenizer.ggml.bos_token_id", n, &d.bos_id);
    read_id(f, "tokenizer.ggml.eos_token_id", n, &d.eos_id);
    read_id(f, "tokenizer.ggml.unknown_token_id", n, &d.unk_id);
    read_id(f, "tokenizer.ggml.eot_token_id", n, &d.eot_id);
    read_flag(f, "tokenizer.ggml.add_bos_token", &d.add_bos);
    read_flag(f, "tokenizer.ggml.add_eos_token", &d.add_eos);
    read_flag(f, "tokenizer.ggml.add_space_prefix", &d.add_space_prefix);

    /* Phi-3 eats the whitespace after its special tokens (llama.cpp keys
     * this on the model name). */
    gguf_str name;
    if (gguf_get_str(f, "general.name", &name)) {
        char low[128];
        size_t k = name.n < sizeof low - 1 ? (size_t)name.n : sizeof low - 1;
        for (size_t i = 0; i < k; i++)
            low[i] = (char)tolower((unsigned char)name.p[i]);
        low[k] = 0;
        d.rstrip_special = strstr(low, "phi-3") || strstr(low, "phi3");
    }

    t = tok_new(&d, err);
    if (!t) cf_errctx(err, "tokenizer");

done:
    free(tokens);
    free(merges);
    free(scores);
    free(types);
    free(pre);
    sb_free(&names);
    return t;
}

tok_tokenizer *tok_load(const char *path, cf_err *err) {
    gguf_file *f = gguf_open(path, err);
    if (!f) return NULL;
    tok_tokenizer *t = tok_from_gguf(f, err);
    if (!t) cf_errctx(err, "%s", path);
    gguf_close(f);
    return t;
}
