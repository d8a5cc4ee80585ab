/* Tests for src/engine/gguf.c: opening every real GGUF file in the shared
 * test data, the writer's round trip, and hostile input (truncation at many
 * offsets, byte flips, absurd counts and lengths, bad magic/version, bad
 * offsets and alignment, duplicates), each asserting the error it gets. */
#include "base/err.h"
#include "base/sb.h"
#include "engine/gguf.h"
#include "engine/types.h"
#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ helpers */

static void b_u32(sb_t *s, uint32_t v) { sb_appendn(s, &v, 4); }
static void b_u64(sb_t *s, uint64_t v) { sb_appendn(s, &v, 8); }
static void b_str(sb_t *s, const char *p) {
    b_u64(s, strlen(p));
    sb_appendn(s, p, strlen(p));
}

/* A hand-built GGUF image whose every field a test can spoil. */
typedef struct {
    const char *magic;
    uint32_t version;
    uint32_t ttype; /* tensor type of "a" */
    uint32_t n_dims;
    uint64_t ne0, ne1;
    uint64_t toff;       /* offset of "a" */
    const char *key2;    /* a second metadata key (NULL: none) */
    const char *tname2;  /* a second tensor (NULL: none) */
    int64_t align;       /* general.alignment value, -1: absent */
    uint32_t align_type; /* its value type */
} spec;

static spec spec_ok(void) { return (spec){"GGUF", 3, TT_F32, 2, 8, 2, 0, NULL, NULL, -1, 4}; }

/* Builds the image described by SP into S (S must start empty). */
static void build(sb_t *s, spec sp) {
    sb_appendn(s, sp.magic, 4);
    b_u32(s, sp.version);
    b_u64(s, sp.tname2 ? 2 : 1);
    b_u64(s, 1 + (sp.key2 != NULL) + (sp.align >= 0));
    b_str(s, "general.architecture");
    b_u32(s, 8);
    b_str(s, "llama");
    if (sp.key2) {
        b_str(s, sp.key2);
        b_u32(s, 4);
        b_u32(s, 7);
    }
    uint64_t align = 32;
    if (sp.align >= 0) {
        b_str(s, "general.alignment");
        b_u32(s, sp.align_type);
        b_u32(s, (uint32_t)sp.align);
        if (sp.align_type == 4 && sp.align > 0 && !(sp.align & (sp.align - 1)))
            align = (uint64_t)sp.align;
    }
    b_str(s, "a");
    b_u32(s, sp.n_dims);
    b_u64(s, sp.ne0);
    for (uint32_t d = 1; d < sp.n_dims && d < 8; d++)
        b_u64(s, sp.ne1);
    b_u32(s, sp.ttype);
    b_u64(s, sp.toff);
    if (sp.tname2) {
        b_str(s, sp.tname2);
        b_u32(s, 1);
        b_u64(s, 8);
        b_u32(s, TT_F32);
        b_u64(s, 64);
    }
    while (s->len % align)
        sb_putc(s, 0);
    for (int i = 0; i < 128; i++)
        sb_putc(s, (char)i);
}

/* Opens SP's image; returns the file or NULL with ERR filled. The image is
 * copied into an exact-size heap block so ASan sees any overread. */
static gguf_file *open_spec(spec sp, cf_err *err, void **mem) {
    sb_t s = {0};
    build(&s, sp);
    *mem = malloc(s.len);
    memcpy(*mem, s.data, s.len);
    gguf_file *f = gguf_open_mem(*mem, s.len, err);
    sb_free(&s);
    return f;
}

/* Asserts that SP's image is rejected with an error message containing WANT. */
static void expect_reject(spec sp, const char *want) {
    cf_err err = {0};
    void *mem;
    gguf_file *f = open_spec(sp, &err, &mem);
    if (f || !strstr(err.msg, want))
        fail_msg("expected error containing '%s', got %s '%s'", want, f ? "success" : "error",
                 err.msg);
    assert_int_equal(err.code, CF_EFORMAT);
    free(mem);
}

/* Touches everything an opened file exposes, so a sanitizer sees any read
 * outside the image. Returns a checksum so the reads are not optimized out. */
static uint64_t walk(const gguf_file *f) {
    uint64_t sum = 0;
    for (int64_t i = 0; i < gguf_n_kv(f); i++) {
        gguf_str k = gguf_kv_key(f, i);
        char *key = gguf_str_dup(k);
        assert_int_equal(gguf_find_key(f, key), i);
        uint32_t u;
        int64_t v;
        float fl;
        bool b;
        gguf_str s;
        gguf_vtype et;
        uint64_t n;
        if (gguf_get_u32(f, key, &u)) sum += u;
        if (gguf_get_i64(f, key, &v)) sum += (uint64_t)v;
        if (gguf_get_f32(f, key, &fl)) sum += (uint64_t)(fl == fl);
        if (gguf_get_bool(f, key, &b)) sum += b;
        if (gguf_get_str(f, key, &s) && s.n) sum += (uint8_t)s.p[s.n - 1];
        if (gguf_get_arr(f, key, &et, &n)) {
            const uint8_t *d = gguf_arr_data(f, key);
            if (d && n) sum += d[0];
            if (et == GGUF_TYPE_STRING)
                for (uint64_t j = 0; j < n; j++) {
                    gguf_str e = gguf_arr_str(f, key, j);
                    assert_non_null(e.p);
                    if (e.n) sum += (uint8_t)e.p[0] + (uint8_t)e.p[e.n - 1];
                }
        }
        free(key);
    }
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        char *name = gguf_str_dup(t->name);
        assert_ptr_equal(gguf_find_tensor(f, name), t);
        free(name);
        assert_int_equal(t->nbytes, tt_row_size(t->type, t->ne[0]) *
                                        (uint64_t)(t->ne[1] * t->ne[2] * t->ne[3]));
        if (t->nbytes)
            sum += ((const uint8_t *)t->data)[0] + ((const uint8_t *)t->data)[t->nbytes - 1];
    }
    return sum;
}

/* A small but complete file made by the writer: every kind of metadata value
 * and three tensors of different types. */
static void make_sample(gguf_writer *w) {
    gguf_w_set_str(w, "general.architecture", "llama");
    gguf_w_set_u32(w, "llama.block_count", 5);
    gguf_w_set_i32(w, "test.neg", -3);
    gguf_w_set_f32(w, "llama.rope.freq_base", 10000.0f);
    gguf_w_set_bool(w, "test.flag", true);
    int32_t ids[4] = {1, -2, 3, 4};
    gguf_w_set_arr(w, "test.ids", GGUF_TYPE_INT32, ids, 4);
    gguf_str toks[3] = {{"<s>", 3}, {"a\0b", 3}, {"", 0}};
    gguf_w_set_arr_str(w, "tokenizer.ggml.tokens", toks, 3);
    float f[64];
    for (int i = 0; i < 64; i++)
        f[i] = (float)i * 0.5f - 3.0f;
    int64_t ne[2] = {32, 2};
    assert_int_equal(gguf_w_add_tensor(w, "token_embd.weight", TT_F32, 2, ne, f, sizeof f, NULL),
                     0);
    uint8_t q[2 * 34];
    for (size_t i = 0; i < sizeof q; i++)
        q[i] = (uint8_t)(i * 7);
    assert_int_equal(gguf_w_add_tensor(w, "blk.0.attn_q.weight", TT_Q8_0, 2, ne, q, sizeof q, NULL),
                     0);
    int64_t ne1[1] = {32};
    assert_int_equal(gguf_w_add_tensor(w, "output_norm.weight", TT_F32, 1, ne1, f, 128, NULL), 0);
}

static char *sample_file(char *dir, size_t *len) {
    gguf_writer *w = gguf_w_new();
    make_sample(w);
    char path[512];
    snprintf(path, sizeof path, "%s/sample.gguf", dir);
    cf_err err = {0};
    assert_int_equal(gguf_w_write(w, path, &err), 0);
    gguf_w_free(w);
    char *data = tu_read_file(path, len);
    assert_non_null(data);
    return data;
}

/* ------------------------------------------------------------------ real files */

static int open_dir_files(const char *dir, int want_tensors) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *nm = e->d_name;
        size_t l = strlen(nm);
        if (!(l > 5 && !strcmp(nm + l - 5, ".gguf")) &&
            !(l > 9 && !strcmp(nm + l - 9, ".gguf.old")))
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, nm);
        cf_err err = {0};
        gguf_file *f = gguf_open(path, &err);
        if (!f) fail_msg("%s: %s", path, err.msg);
        gguf_str arch;
        assert_true(gguf_get_str(f, "general.architecture", &arch));
        assert_true(arch.n > 0);
        if (want_tensors) assert_true(gguf_n_tensors(f) > 0);
        gguf_vtype et;
        uint64_t nt;
        assert_true(gguf_get_arr(f, "tokenizer.ggml.tokens", &et, &nt));
        assert_int_equal(et, GGUF_TYPE_STRING);
        assert_true(nt >= 256);
        walk(f);
        gguf_close(f);
        n++;
    }
    closedir(d);
    return n;
}

static void opens_every_model_and_vocab_file(void **st) {
    (void)st;
    char models[1024], vocab[1024];
    snprintf(models, sizeof models, "%s", td_path("models/stories260K.gguf"));
    *strrchr(models, '/') = 0;
    snprintf(vocab, sizeof vocab, "%s", td_path("vocab/ggml-vocab-gpt-2.gguf"));
    *strrchr(vocab, '/') = 0;
    assert_true(open_dir_files(models, 1) >= 14);
    assert_true(open_dir_files(vocab, 0) >= 12);
}

static void reads_stories260K_metadata_and_tensors(void **st) {
    (void)st;
    cf_err err = {0};
    gguf_file *f = gguf_open(td_path("models/stories260K.gguf"), &err);
    assert_non_null(f);
    uint32_t u;
    assert_true(gguf_get_u32(f, "llama.embedding_length", &u));
    assert_int_equal(u, 64);
    assert_true(gguf_get_u32(f, "llama.block_count", &u));
    assert_int_equal(u, 5);
    assert_true(gguf_get_u32(f, "llama.attention.head_count", &u));
    assert_int_equal(u, 8);
    const gguf_tensor *t = gguf_find_tensor(f, "token_embd.weight");
    assert_non_null(t);
    assert_int_equal(t->type, TT_F32);
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->ne[0], 64);
    assert_int_equal(t->ne[1], 512);
    assert_int_equal(t->nbytes, 64 * 512 * 4);
    assert_null(gguf_find_tensor(f, "no.such.tensor"));
    assert_int_equal(gguf_find_key(f, "no.such.key"), -1);
    uint64_t n;
    assert_true(gguf_get_arr(f, "tokenizer.ggml.tokens", NULL, &n));
    assert_int_equal(n, 512);
    assert_true(gguf_str_eq(gguf_arr_str(f, "tokenizer.ggml.tokens", 0), "<unk>"));
    assert_null(gguf_arr_str(f, "tokenizer.ggml.tokens", 512).p);
    gguf_close(f);

    f = gguf_open(td_path("models/tiny-llama-d256-Q4_K_M.gguf"), &err);
    assert_non_null(f);
    int seen_q4k = 0, seen_q6k = 0;
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        seen_q4k |= gguf_tensor_at(f, i)->type == TT_Q4_K;
        seen_q6k |= gguf_tensor_at(f, i)->type == TT_Q6_K;
    }
    assert_true(seen_q4k && seen_q6k);
    gguf_close(f);
}

static void open_reports_missing_file_and_directory(void **st) {
    (void)st;
    cf_err err = {0};
    assert_null(gguf_open("/nonexistent/x.gguf", &err));
    assert_int_equal(err.code, CF_ENOTFOUND);
    assert_null(gguf_open("/tmp", &err));
    assert_non_null(strstr(err.msg, "not a regular file"));
}

/* ------------------------------------------------------------------ writer */

static void writer_round_trips_metadata_and_tensors(void **st) {
    (void)st;
    char *dir = tu_tmpdir();
    size_t len;
    char *img = sample_file(dir, &len);
    cf_err err = {0};
    gguf_file *f = gguf_open_mem(img, len, &err);
    if (!f) fail_msg("%s", err.msg);
    assert_int_equal(gguf_version(f), 3);
    assert_int_equal(gguf_alignment(f), 32);
    assert_int_equal(gguf_n_kv(f), 7);
    gguf_str s;
    assert_true(gguf_get_str(f, "general.architecture", &s));
    assert_true(gguf_str_eq(s, "llama"));
    uint32_t u;
    int64_t v;
    float fl;
    bool b;
    assert_true(gguf_get_u32(f, "llama.block_count", &u));
    assert_int_equal(u, 5);
    assert_false(gguf_get_u32(f, "test.neg", &u)); /* negative does not fit */
    assert_true(gguf_get_i64(f, "test.neg", &v));
    assert_int_equal(v, -3);
    assert_false(gguf_get_u32(f, "general.architecture", &u));
    assert_true(gguf_get_f32(f, "llama.rope.freq_base", &fl));
    assert_true(fl == 10000.0f);
    assert_true(gguf_get_bool(f, "test.flag", &b) && b);
    gguf_vtype et;
    uint64_t n;
    assert_true(gguf_get_arr(f, "test.ids", &et, &n));
    assert_int_equal(et, GGUF_TYPE_INT32);
    assert_int_equal(n, 4);
    int32_t ids[4];
    memcpy(ids, gguf_arr_data(f, "test.ids"), sizeof ids);
    assert_int_equal(ids[1], -2);
    gguf_str t1 = gguf_arr_str(f, "tokenizer.ggml.tokens", 1);
    assert_int_equal(t1.n, 3);
    assert_memory_equal(t1.p, "a\0b", 3);
    assert_int_equal(gguf_arr_str(f, "tokenizer.ggml.tokens", 2).n, 0);
    assert_null(gguf_arr_data(f, "tokenizer.ggml.tokens"));
    assert_int_equal(gguf_n_tensors(f), 3);
    const gguf_tensor *t = gguf_find_tensor(f, "blk.0.attn_q.weight");
    assert_non_null(t);
    assert_int_equal(t->type, TT_Q8_0);
    assert_int_equal(t->nbytes, 68);
    assert_int_equal(t->offset % 32, 0);
    assert_int_equal(((const uint8_t *)t->data)[5], 35);
    t = gguf_find_tensor(f, "token_embd.weight");
    assert_int_equal(((const float *)t->data)[63], 63 * 0.5f - 3.0f);
    gguf_close(f);
    free(img);
    tu_rmtree(dir);
    free(dir);
}

static void writer_copies_real_model_bit_for_bit(void **st) {
    (void)st;
    cf_err err = {0};
    gguf_file *src = gguf_open(td_path("models/stories260K.gguf"), &err);
    assert_non_null(src);
    gguf_writer *w = gguf_w_new();
    gguf_w_copy_kv(w, src);
    for (int64_t i = 0; i < gguf_n_tensors(src); i++) {
        const gguf_tensor *t = gguf_tensor_at(src, i);
        char *name = gguf_str_dup(t->name);
        assert_int_equal(
            gguf_w_add_tensor(w, name, t->type, t->n_dims, t->ne, t->data, t->nbytes, &err), 0);
        free(name);
    }
    gguf_w_set_u32(w, "llama.block_count", 5); /* replacing keeps one entry */
    char *dir = tu_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/copy.gguf", dir);
    assert_int_equal(gguf_w_write(w, path, &err), 0);
    gguf_w_free(w);
    gguf_file *dst = gguf_open(path, &err);
    if (!dst) fail_msg("%s", err.msg);
    assert_int_equal(gguf_n_kv(dst), gguf_n_kv(src));
    assert_int_equal(gguf_n_tensors(dst), gguf_n_tensors(src));
    for (int64_t i = 0; i < gguf_n_kv(src); i++) {
        char *key = gguf_str_dup(gguf_kv_key(src, i));
        int64_t j = gguf_find_key(dst, key);
        assert_true(j >= 0);
        assert_int_equal(gguf_kv_type(dst, j), gguf_kv_type(src, i));
        free(key);
    }
    for (int64_t i = 0; i < gguf_n_tensors(src); i++) {
        const gguf_tensor *a = gguf_tensor_at(src, i), *b = gguf_tensor_at(dst, i);
        assert_int_equal(a->name.n, b->name.n);
        assert_memory_equal(a->name.p, b->name.p, a->name.n);
        assert_int_equal(a->type, b->type);
        assert_int_equal(a->nbytes, b->nbytes);
        assert_memory_equal(a->data, b->data, a->nbytes);
    }
    uint64_t n;
    assert_true(gguf_get_arr(dst, "tokenizer.ggml.tokens", NULL, &n));
    assert_int_equal(n, 512);
    gguf_close(dst);
    gguf_close(src);
    tu_rmtree(dir);
    free(dir);
}

static int fill_ramp(void *ctx, void *dst, uint64_t nbytes, cf_err *err) {
    (void)err;
    int *calls = ctx;
    (*calls)++;
    for (uint64_t i = 0; i < nbytes; i++)
        ((uint8_t *)dst)[i] = (uint8_t)(i * 3);
    return 0;
}

static int fill_fail(void *ctx, void *dst, uint64_t nbytes, cf_err *err) {
    (void)ctx, (void)dst, (void)nbytes;
    return cf_seterr(err, CF_ERANGE, "fill refused");
}

static void writer_fills_lazy_tensors_at_write_time(void **st) {
    (void)st;
    char *dir = tu_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/lazy.gguf", dir);
    gguf_writer *w = gguf_w_new();
    cf_err err = {0};
    int calls = 0;
    int64_t ne[2] = {64, 3};
    assert_int_equal(gguf_w_add_tensor_lazy(w, "a", TT_Q8_0, 2, ne, fill_ramp, &calls, &err), 0);
    assert_int_equal(gguf_w_add_tensor_lazy(w, "a", TT_Q8_0, 2, ne, fill_ramp, &calls, &err),
                     CF_EINVAL); /* duplicate */
    float f[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    int64_t ne1[1] = {8};
    assert_int_equal(gguf_w_add_tensor(w, "b", TT_F32, 1, ne1, f, sizeof f, &err), 0);
    assert_int_equal(calls, 0);
    assert_int_equal(gguf_w_write(w, path, &err), 0);
    assert_int_equal(calls, 1);
    gguf_w_free(w);
    gguf_file *g = gguf_open(path, &err);
    assert_non_null(g);
    const gguf_tensor *t = gguf_find_tensor(g, "a");
    assert_int_equal(t->nbytes, 3 * 2 * 34);
    assert_int_equal(((const uint8_t *)t->data)[100], (uint8_t)300);
    assert_memory_equal(gguf_find_tensor(g, "b")->data, f, sizeof f);
    gguf_close(g);
    /* A failing fill aborts the write with its own error and leaves nothing. */
    w = gguf_w_new();
    assert_int_equal(gguf_w_add_tensor_lazy(w, "a", TT_F32, 2, ne, fill_fail, NULL, &err), 0);
    snprintf(path, sizeof path, "%s/fail.gguf", dir);
    assert_int_equal(gguf_w_write(w, path, &err), CF_ERANGE);
    assert_string_equal(err.msg, "fill refused");
    gguf_w_free(w);
    char *ls = NULL;
    snprintf(path, sizeof path, "ls -A '%s'", dir);
    assert_int_equal(tu_run(path, &ls), 0);
    assert_string_equal(ls, "lazy.gguf\n");
    free(ls);
    tu_rmtree(dir);
    free(dir);
}

static void writer_rejects_bad_tensors(void **st) {
    (void)st;
    gguf_writer *w = gguf_w_new();
    cf_err err = {0};
    float f[64] = {0};
    int64_t ne[2] = {32, 2};
    assert_int_equal(gguf_w_add_tensor(w, "x", TT_F32, 2, ne, f, 100, &err), CF_EINVAL);
    assert_non_null(strstr(err.msg, "need 256"));
    int64_t ne_bad[1] = {33};
    assert_int_equal(gguf_w_add_tensor(w, "y", TT_Q8_0, 1, ne_bad, f, 34, &err), CF_EINVAL);
    assert_non_null(strstr(err.msg, "not a multiple"));
    assert_int_equal(gguf_w_add_tensor(w, "x", TT_F32, 2, ne, f, 256, &err), 0);
    assert_int_equal(gguf_w_add_tensor(w, "x", TT_F32, 2, ne, f, 256, &err), CF_EINVAL);
    assert_non_null(strstr(err.msg, "duplicate"));
    assert_int_equal(gguf_w_add_tensor(w, "z", 4, 2, ne, f, 256, &err), CF_EINVAL);
    assert_int_equal(gguf_w_write(w, "/nonexistent-dir/x.gguf", &err), CF_EIO);
    gguf_w_free(w);
}

/* ------------------------------------------------------------------ hostile input */

static void rejects_truncation_at_every_offset(void **st) {
    (void)st;
    char *dir = tu_tmpdir();
    size_t len;
    char *img = sample_file(dir, &len);
    cf_err err = {0};
    gguf_file *f = gguf_open_mem(img, len, &err);
    assert_non_null(f);
    /* The image is valid down to the end of the last tensor's data. */
    uint64_t need = 0;
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        uint64_t end = (uint64_t)((const char *)t->data - img) + t->nbytes;
        if (end > need) need = end;
    }
    gguf_close(f);
    for (size_t cut = 0; cut < need; cut++) {
        char *p = malloc(cut ? cut : 1);
        memcpy(p, img, cut);
        cf_errclear(&err);
        f = gguf_open_mem(p, cut, &err);
        if (f) fail_msg("truncated at %zu of %zu bytes but opened", cut, len);
        assert_int_equal(err.code, CF_EFORMAT);
        assert_true(strstr(err.msg, "truncated") || strstr(err.msg, "outside the data section") ||
                    strstr(err.msg, "bytes are left") || strstr(err.msg, "impossible"));
        free(p);
    }
    free(img);

    /* And a real model cut at many points inside its metadata and data. */
    img = tu_read_file(td_path("models/stories260K-Q8_0mix.gguf"), &len);
    assert_non_null(img);
    for (size_t cut = 0; cut < len; cut += cut < 20000 ? 7 : 9973) {
        char *p = malloc(cut ? cut : 1);
        memcpy(p, img, cut);
        f = gguf_open_mem(p, cut, &err);
        assert_null(f);
        assert_int_equal(err.code, CF_EFORMAT);
        free(p);
    }
    free(img);
    tu_rmtree(dir);
    free(dir);
}

static uint64_t rng_next(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Flips random bytes of IMG ITERS times; every variant either opens and
 * can be walked safely, or is rejected with a format error. */
static void fuzz_image(const char *img, size_t len, size_t span, int iters, uint64_t seed) {
    char *p = malloc(len);
    int opened = 0;
    for (int it = 0; it < iters; it++) {
        memcpy(p, img, len);
        int flips = 1 + (int)(rng_next(&seed) % 4);
        for (int k = 0; k < flips; k++) {
            size_t at = (size_t)(rng_next(&seed) % span);
            uint64_t r = rng_next(&seed);
            p[at] = (r & 1) ? (char)(p[at] ^ (1 << (r >> 1) % 8)) : (char)(r >> 8);
        }
        cf_err err = {0};
        gguf_file *f = gguf_open_mem(p, len, &err);
        if (f) {
            walk(f);
            gguf_close(f);
            opened++;
        } else {
            assert_true(err.code == CF_EFORMAT);
            assert_true(err.msg[0] != 0);
        }
    }
    print_message("# fuzz: %d of %d variants still opened\n", opened, iters);
    free(p);
}

static void survives_byte_flips(void **st) {
    (void)st;
    char *dir = tu_tmpdir();
    size_t len;
    char *img = sample_file(dir, &len);
    fuzz_image(img, len, len, 20000, 0x9E3779B97F4A7C15ull);
    free(img);
    /* A real vocabulary: flips within its metadata. */
    img = tu_read_file(td_path("vocab/ggml-vocab-llama-spm.gguf"), &len);
    assert_non_null(img);
    fuzz_image(img, len, 4096, 150, 42);
    free(img);
    /* A real quantized model: flips within its metadata and tensor infos. */
    img = tu_read_file(td_path("models/stories260K-Q8_0mix.gguf"), &len);
    assert_non_null(img);
    cf_err err = {0};
    gguf_file *f = gguf_open_mem(img, len, &err);
    assert_non_null(f);
    const gguf_tensor *t0 = gguf_tensor_at(f, 0);
    const size_t data_off = (size_t)((const char *)t0->data - img) - (size_t)t0->offset;
    gguf_close(f);
    fuzz_image(img, len, data_off, 400, 7);
    free(img);
    tu_rmtree(dir);
    free(dir);
}

static void rejects_bad_magic_and_version(void **st) {
    (void)st;
    spec s = spec_ok();
    s.magic = "GGUG";
    expect_reject(s, "bad magic");
    s = spec_ok();
    s.version = 1;
    expect_reject(s, "unsupported GGUF version 1");
    s.version = 4;
    expect_reject(s, "unsupported GGUF version 4");
    s.version = 0x03000000u;
    expect_reject(s, "big-endian");
    s = spec_ok();
    s.version = 2;
    cf_err err = {0};
    void *mem;
    gguf_file *f = open_spec(s, &err, &mem);
    if (!f) fail_msg("v2: %s", err.msg);
    assert_int_equal(gguf_version(f), 2);
    gguf_close(f);
    free(mem);
}

static void rejects_absurd_counts_and_lengths(void **st) {
    (void)st;
    sb_t s = {0};
    build(&s, spec_ok());
    const size_t len = s.len;
    char *p = malloc(len);
    cf_err err = {0};
    /* n_kv = 2^60 */
    memcpy(p, s.data, len);
    uint64_t big = 1ull << 60;
    memcpy(p + 16, &big, 8);
    assert_null(gguf_open_mem(p, len, &err));
    assert_non_null(strstr(err.msg, "metadata count"));
    /* n_tensors = 2^60 */
    memcpy(p, s.data, len);
    memcpy(p + 8, &big, 8);
    assert_null(gguf_open_mem(p, len, &err));
    assert_non_null(strstr(err.msg, "tensor count"));
    /* key length 2^60 */
    memcpy(p, s.data, len);
    memcpy(p + 24, &big, 8);
    assert_null(gguf_open_mem(p, len, &err));
    assert_non_null(strstr(err.msg, "metadata key at byte 24 has length"));
    /* string value length 2^63 */
    memcpy(p, s.data, len);
    uint64_t huge = 1ull << 63;
    memcpy(p + 24 + 8 + 20 + 4, &huge, 8);
    assert_null(gguf_open_mem(p, len, &err));
    assert_non_null(strstr(err.msg, "string value at byte 56"));
    free(p);
    sb_free(&s);

    /* An array that claims 2^61 elements, and an unknown value type. */
    sb_t a = {0};
    sb_appendn(&a, "GGUF", 4);
    b_u32(&a, 3);
    b_u64(&a, 0);
    b_u64(&a, 1);
    b_str(&a, "k");
    b_u32(&a, 9);
    b_u32(&a, 4);
    b_u64(&a, 1ull << 61);
    for (int i = 0; i < 64; i++)
        sb_putc(&a, 0);
    assert_null(gguf_open_mem(a.data, a.len, &err));
    assert_non_null(strstr(err.msg, "claims 2305843009213693952 elements"));
    memcpy(a.data + 24 + 9, "\x0d\0\0\0", 4); /* value type 13 */
    assert_null(gguf_open_mem(a.data, a.len, &err));
    assert_non_null(strstr(err.msg, "unknown value type 13 at byte 33"));
    sb_free(&a);

    /* Arrays nested five deep. */
    sb_t nest = {0};
    sb_appendn(&nest, "GGUF", 4);
    b_u32(&nest, 3);
    b_u64(&nest, 0);
    b_u64(&nest, 1);
    b_str(&nest, "k");
    b_u32(&nest, 9);
    for (int d = 0; d < 5; d++) {
        b_u32(&nest, 9);
        b_u64(&nest, 1);
    }
    b_u32(&nest, 4);
    b_u64(&nest, 0);
    assert_null(gguf_open_mem(nest.data, nest.len, &err));
    assert_non_null(strstr(err.msg, "nested deeper"));
    sb_free(&nest);

    /* A bool that is neither 0 nor 1. */
    sb_t bo = {0};
    sb_appendn(&bo, "GGUF", 4);
    b_u32(&bo, 3);
    b_u64(&bo, 0);
    b_u64(&bo, 1);
    b_str(&bo, "k");
    b_u32(&bo, 7);
    sb_putc(&bo, 2);
    assert_null(gguf_open_mem(bo.data, bo.len, &err));
    assert_non_null(strstr(err.msg, "bool value 2"));
    sb_free(&bo);
}

static void rejects_bad_tensor_infos(void **st) {
    (void)st;
    spec s = spec_ok();
    s.toff = 1;
    expect_reject(s, "not a multiple of the alignment 32");
    s.toff = 4096;
    expect_reject(s, "outside the data section");
    s = spec_ok();
    s.ttype = 4; /* a removed GGML type */
    expect_reject(s, "unknown tensor type 4 at byte");
    s.ttype = 1000;
    expect_reject(s, "unknown tensor type 1000");
    s = spec_ok();
    s.n_dims = 5;
    expect_reject(s, "n_dims 5");
    s.n_dims = 0;
    expect_reject(s, "n_dims 0");
    s = spec_ok();
    s.ttype = TT_Q8_0;
    s.ne0 = 48;
    expect_reject(s, "not a multiple of Q8_0's block size 32");
    s = spec_ok();
    s.n_dims = 4;
    s.ne1 = 1ull << 40;
    expect_reject(s, "overflows the element count");
    s = spec_ok();
    s.ne0 = 8;
    s.ne1 = 1ull << 30;
    expect_reject(s, "outside the data section");
}

static void rejects_duplicates_and_bad_alignment(void **st) {
    (void)st;
    spec s = spec_ok();
    s.key2 = "general.architecture";
    expect_reject(s, "duplicate metadata key 'general.architecture'");
    /* The same key repeated with the same value (as old converters wrote
     * general.file_type) is kept once. */
    sb_t d = {0};
    sb_appendn(&d, "GGUF", 4);
    b_u32(&d, 3);
    b_u64(&d, 0);
    b_u64(&d, 3);
    for (int i = 0; i < 2; i++) {
        b_str(&d, "general.file_type");
        b_u32(&d, 4);
        b_u32(&d, 1);
    }
    b_str(&d, "k");
    b_u32(&d, 4);
    b_u32(&d, 2);
    cf_err e1 = {0};
    gguf_file *g = gguf_open_mem(d.data, d.len, &e1);
    if (!g) fail_msg("%s", e1.msg);
    assert_int_equal(gguf_n_kv(g), 2);
    assert_int_equal(gguf_find_key(g, "k"), 1);
    gguf_close(g);
    memcpy(d.data + 24 + 8 + 17 + 4 + 4 + 8 + 17 + 4, "\x02", 1); /* second value differs */
    assert_null(gguf_open_mem(d.data, d.len, &e1));
    assert_non_null(
        strstr(e1.msg, "conflicting duplicate metadata key 'general.file_type' at byte 57"));
    sb_free(&d);
    s = spec_ok();
    s.tname2 = "a";
    expect_reject(s, "duplicate tensor name 'a'");
    s = spec_ok();
    s.align = 3;
    expect_reject(s, "general.alignment 3");
    s.align = 0;
    expect_reject(s, "not a power of two");
    s.align = 64;
    s.align_type = 5; /* int32 */
    expect_reject(s, "expected uint32");
    /* A valid non-default alignment is honoured. */
    s = spec_ok();
    s.align = 64;
    cf_err err = {0};
    void *mem;
    gguf_file *f = open_spec(s, &err, &mem);
    if (!f) fail_msg("%s", err.msg);
    assert_int_equal(gguf_alignment(f), 64);
    gguf_close(f);
    free(mem);
    s.toff = 32; /* aligned to 32 but not to 64 */
    expect_reject(s, "not a multiple of the alignment 64");
}

/* ------------------------------------------------------------------ listing */

static void describes_values_for_people(void **st) {
    (void)st;
    char *dir = tu_tmpdir();
    size_t len;
    char *img = sample_file(dir, &len);
    cf_err err = {0};
    gguf_file *f = gguf_open_mem(img, len, &err);
    assert_non_null(f);
    sb_t s = {0};
    gguf_kv_describe(f, gguf_find_key(f, "test.ids"), 2, &s);
    assert_string_equal(sb_str(&s), "[int32 x 4] 1, -2, ...");
    sb_clear(&s);
    gguf_kv_describe(f, gguf_find_key(f, "tokenizer.ggml.tokens"), 8, &s);
    assert_string_equal(sb_str(&s), "[string x 3] \"<s>\", \"a\\x00b\", \"\"");
    sb_clear(&s);
    gguf_kv_describe(f, gguf_find_key(f, "test.flag"), 8, &s);
    gguf_kv_describe(f, gguf_find_key(f, "test.neg"), 8, &s);
    gguf_kv_describe(f, gguf_find_key(f, "llama.rope.freq_base"), 8, &s);
    assert_string_equal(sb_str(&s), "true-310000");
    assert_string_equal(gguf_vtype_name(GGUF_TYPE_FLOAT64), "float64");
    sb_free(&s);
    gguf_close(f);
    free(img);
    tu_rmtree(dir);
    free(dir);
}

static void cli_gguf_lists_metadata_and_tensors(void **st) {
    (void)st;
    char cmd[2048];
    char *out = NULL;
    snprintf(cmd, sizeof cmd, "%s gguf '%s' 2>&1", tu_confab_bin(),
             td_path("models/stories260K.gguf"));
    assert_int_equal(tu_run(cmd, &out), 0);
    assert_non_null(strstr(out, "GGUF v3"));
    assert_non_null(strstr(out, "48 tensors"));
    assert_non_null(strstr(out, "llama.embedding_length"));
    assert_non_null(strstr(out, "[string x 512] \"<unk>\""));
    assert_non_null(strstr(out, "[64, 512]"));
    free(out);
    char *dir = tu_tmpdir();
    snprintf(cmd, sizeof cmd, "%s/bad.gguf", dir);
    assert_int_equal(tu_write_file(cmd, "GGUF\x01\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 24), 0);
    snprintf(cmd, sizeof cmd, "%s gguf %s/bad.gguf 2>&1", tu_confab_bin(), dir);
    assert_int_equal(tu_run(cmd, &out), 1);
    assert_non_null(strstr(out, "unsupported GGUF version 1"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s gguf 2>&1", tu_confab_bin());
    assert_int_equal(tu_run(cmd, &out), 2);
    assert_non_null(strstr(out, "usage: confab gguf FILE"));
    free(out);
    tu_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(opens_every_model_and_vocab_file),
        cmocka_unit_test(reads_stories260K_metadata_and_tensors),
        cmocka_unit_test(open_reports_missing_file_and_directory),
        cmocka_unit_test(writer_round_trips_metadata_and_tensors),
        cmocka_unit_test(writer_copies_real_model_bit_for_bit),
        cmocka_unit_test(writer_fills_lazy_tensors_at_write_time),
        cmocka_unit_test(writer_rejects_bad_tensors),
        cmocka_unit_test(rejects_truncation_at_every_offset),
        cmocka_unit_test(survives_byte_flips),
        cmocka_unit_test(rejects_bad_magic_and_version),
        cmocka_unit_test(rejects_absurd_counts_and_lengths),
        cmocka_unit_test(rejects_bad_tensor_infos),
        cmocka_unit_test(rejects_duplicates_and_bad_alignment),
        cmocka_unit_test(describes_values_for_people),
        cmocka_unit_test(cli_gguf_lists_metadata_and_tensors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
