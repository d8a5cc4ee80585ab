/* Tests for the model catalogue: listing a directory of valid and corrupt
 * GGUF files, what each entry reports, the short-name resolution rules with
 * their ambiguity and not-found messages, `models rm`, the models directory
 * precedence, `confab models` itself, and the first-run default model
 * (against a local server and a dead port). */
#include "testutil.h"

#include "app/config.h"
#include "app/models.h"
#include "engine/gguf.h"
#include "engine/types.h"
#include "providers/provider.h"
#include "range_server.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    char *dir;
    char models[4200];
} fx;

static int setup(void **state) {
    fx *f = calloc(1, sizeof *f);
    f->dir = tu_tmpdir();
    snprintf(f->models, sizeof f->models, "%s/models", f->dir);
    mkdir(f->models, 0755);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fx *f = *state;
    tu_rmtree(f->dir);
    free(f->dir);
    free(f);
    unsetenv("CONFAB_MODELS_DIR");
    unsetenv("CONFAB_HF_ENDPOINT");
    return 0;
}

static void put(fx *f, const char *name, const void *data, size_t n) {
    char p[4400];
    snprintf(p, sizeof p, "%s/%s", f->models, name);
    assert_int_equal(tu_write_file(p, data, n), 0);
}

static bool exists(fx *f, const char *name) {
    char p[4400];
    snprintf(p, sizeof p, "%s/%s", f->models, name);
    struct stat st;
    return stat(p, &st) == 0;
}

/* A small chat model made here: qwen2, 32768 context, a chat template,
 * file_type Q8_0, tensors of 32 F32 and 64 Q8_0 elements (96 parameters). */
static void put_chat_model(fx *f, const char *name) {
    gguf_writer *w = gguf_w_new();
    gguf_w_set_str(w, "general.architecture", "qwen2");
    gguf_w_set_u32(w, "qwen2.context_length", 32768);
    gguf_w_set_u32(w, "general.file_type", 7);
    gguf_w_set_str(w, "tokenizer.chat_template",
                   "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}");
    float a[32] = {0};
    int64_t ne_a[2] = {4, 8};
    cf_err err = {0};
    assert_int_equal(gguf_w_add_tensor(w, "a.weight", TT_F32, 2, ne_a, a, sizeof a, &err), 0);
    unsigned char b[68] = {0};
    int64_t ne_b[2] = {32, 2};
    assert_int_equal(gguf_w_add_tensor(w, "b.weight", TT_Q8_0, 2, ne_b, b, sizeof b, &err), 0);
    char p[4400];
    snprintf(p, sizeof p, "%s/%s", f->models, name);
    assert_int_equal(gguf_w_write(w, p, &err), 0);
    gguf_w_free(w);
}

static void put_copy_of(fx *f, const char *rel, const char *name) {
    const char *src = td_path(rel);
    size_t n;
    char *d = tu_read_file(src, &n);
    assert_non_null(d);
    put(f, name, d, n);
    free(d);
}

static const models_entry *entry(const models_list_t *l, const char *file) {
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->v[i].file, file)) return &l->v[i];
    return NULL;
}

/* ------------------------------------------------------------- listing */

static void test_list_describes_valid_and_marks_corrupt_files(void **state) {
    fx *f = *state;
    put_chat_model(f, "Chat-Q8_0.gguf");
    put_copy_of(f, "models/stories260K.gguf", "stories260K.gguf");
    put(f, "empty.gguf", "", 0);
    static const char text[] = "hello, this is a text file and not a model at all\n";
    put(f, "text.gguf", text, sizeof text - 1);
    put(f, "notes.txt", "x", 1);            /* not *.gguf: ignored */
    put(f, ".hidden.gguf", "x", 1);         /* hidden: ignored */
    put(f, "Partial.gguf.part", "GGUF", 4); /* download in progress: ignored */
    models_list_t l;
    cf_err err = {0};
    assert_int_equal(models_list(f->models, &l, &err), 0);
    assert_int_equal(l.n, 4);
    /* sorted case-insensitively */
    assert_string_equal(l.v[0].file, "Chat-Q8_0.gguf");
    assert_string_equal(l.v[1].file, "empty.gguf");
    assert_string_equal(l.v[2].file, "stories260K.gguf");
    assert_string_equal(l.v[3].file, "text.gguf");
    assert_int_equal(l.n_partial, 1);
    assert_string_equal(l.partial[0].file, "Partial.gguf.part");
    assert_int_equal(l.partial[0].size, 4);

    const models_entry *c = entry(&l, "Chat-Q8_0.gguf");
    assert_true(c->valid);
    assert_null(c->error);
    assert_string_equal(c->name, "Chat-Q8_0");
    assert_string_equal(c->arch, "qwen2");
    assert_int_equal(c->n_params, 96);
    assert_string_equal(c->quant, "Q8_0");
    assert_int_equal(c->ctx_len, 32768);
    assert_true(c->chat_template);

    const models_entry *s = entry(&l, "stories260K.gguf");
    assert_true(s->valid);
    assert_string_equal(s->arch, "llama");
    assert_string_equal(s->quant, "F32"); /* no general.file_type: the dominant tensor type */
    assert_int_equal(s->ctx_len, 2048);
    assert_false(s->chat_template);
    assert_int_equal(s->size, 1185376);
    /* dim 64, vocab 512, 5 layers, FFN 172, 4 KV heads of 8: embeddings + output +
     * per layer (q 64x64, k,v 64x32, o 64x64, 3 FFN 64x172, 2 norms) + final norm */
    assert_int_equal(s->n_params,
                     512 * 64 * 2 + 5 * (64 * 64 * 2 + 64 * 32 * 2 + 3 * 64 * 172 + 2 * 64) + 64);

    const models_entry *e = entry(&l, "empty.gguf");
    assert_false(e->valid);
    assert_non_null(e->error);
    assert_null(e->quant);
    const models_entry *t = entry(&l, "text.gguf");
    assert_false(t->valid);
    assert_non_null(strstr(t->error, "bad magic"));
    assert_non_null(strstr(e->error, "shorter than a GGUF header"));
    models_list_free(&l);
}

static void test_list_of_truncated_real_model_reports_reason(void **state) {
    fx *f = *state;
    const char *src = td_path("models/stories260K-Q8_0mix.gguf");
    size_t n;
    char *d = tu_read_file(src, &n);
    put(f, "cut.gguf", d, n / 2);
    free(d);
    models_list_t l;
    cf_err err = {0};
    assert_int_equal(models_list(f->models, &l, &err), 0);
    assert_int_equal(l.n, 1);
    assert_false(l.v[0].valid);
    assert_true(strlen(l.v[0].error) > 10);
    assert_null(strstr(l.v[0].error, f->models)); /* the path is not repeated in the reason */
    models_list_free(&l);
}

static void test_missing_dir_lists_empty_and_file_as_dir_fails(void **state) {
    fx *f = *state;
    models_list_t l;
    cf_err err = {0};
    char p[4400];
    snprintf(p, sizeof p, "%s/nope", f->dir);
    assert_int_equal(models_list(p, &l, &err), 0);
    assert_int_equal(l.n, 0);
    models_list_free(&l);
    put(f, "plain", "x", 1);
    snprintf(p, sizeof p, "%s/plain", f->models);
    assert_int_equal(models_list(p, &l, &err), CF_EIO);
    assert_non_null(strstr(err.msg, "cannot read models directory"));
}

static void test_file_type_names_follow_llama_cpp(void **state) {
    (void)state;
    assert_string_equal(models_file_type_name(15), "Q4_K_M");
    assert_string_equal(models_file_type_name(1), "F16");
    assert_string_equal(models_file_type_name(32), "BF16");
    assert_string_equal(models_file_type_name(7 | 1024), "Q8_0"); /* "guessed" flag ignored */
    assert_null(models_file_type_name(4));                        /* retired value */
    assert_null(models_file_type_name(999));
}

/* ---------------------------------------------------------- resolution */

static void put_names(fx *f, const char *const *names) {
    for (; *names; names++)
        put(f, *names, "GGUF", 4);
}

static void expect_resolves(fx *f, const char *name, const char *file) {
    cf_err err = {0};
    char *p = models_resolve(f->models, name, &err);
    if (!p) fail_msg("'%s' did not resolve: %s", name, err.msg);
    char want[4400];
    snprintf(want, sizeof want, "%s/%s", f->models, file);
    assert_string_equal(p, want);
    free(p);
}

static void test_short_names_resolve_by_exact_prefix_substring(void **state) {
    fx *f = *state;
    static const char *const names[] = {"SmolLM2-135M-Instruct-Q8_0.gguf",
                                        "qwen2.5-0.5b-instruct-q4_k_m.gguf", "m.gguf", "m-2.gguf",
                                        NULL};
    put_names(f, names);
    expect_resolves(f, "smollm2", "SmolLM2-135M-Instruct-Q8_0.gguf"); /* prefix, any case */
    expect_resolves(f, "SmolLM2-135M-Instruct-Q8_0",
                    "SmolLM2-135M-Instruct-Q8_0.gguf"); /* exact stem */
    expect_resolves(f, "SmolLM2-135M-Instruct-Q8_0.gguf", "SmolLM2-135M-Instruct-Q8_0.gguf");
    expect_resolves(f, "0.5b", "qwen2.5-0.5b-instruct-q4_k_m.gguf"); /* substring */
    expect_resolves(f, "Q4_K_M", "qwen2.5-0.5b-instruct-q4_k_m.gguf");
    expect_resolves(f, "m", "m.gguf"); /* exact beats the prefix of m-2 */
    expect_resolves(f, "M", "m.gguf");
    expect_resolves(f, "m-2", "m-2.gguf");
}

static void test_path_names_resolve_as_paths(void **state) {
    fx *f = *state;
    put(f, "x.gguf", "GGUF", 4);
    char p[4400];
    snprintf(p, sizeof p, "%s/x.gguf", f->models);
    cf_err err = {0};
    char *r = models_resolve("/elsewhere", p, &err);
    assert_string_equal(r, p);
    free(r);
    snprintf(p, sizeof p, "%s/absent.gguf", f->models);
    assert_null(models_resolve(f->models, p, &err));
    assert_int_equal(err.code, CF_ENOTFOUND);
    assert_non_null(strstr(err.msg, "absent.gguf"));
    assert_null(models_resolve(f->models, f->models, &err)); /* a directory */
    assert_int_equal(err.code, CF_EINVAL);
}

static void test_ambiguous_name_lists_candidates(void **state) {
    fx *f = *state;
    static const char *const names[] = {"llama-7b-q4.gguf", "llama-7b-q8.gguf", "tinyllama.gguf",
                                        NULL};
    put_names(f, names);
    cf_err err = {0};
    assert_null(models_resolve(f->models, "llama-7b", &err));
    assert_int_equal(err.code, CF_EINVAL);
    assert_non_null(strstr(err.msg, "ambiguous"));
    assert_non_null(strstr(err.msg, "llama-7b-q4.gguf, llama-7b-q8.gguf"));
    assert_null(strstr(err.msg, "tinyllama")); /* not a prefix match: not a candidate */
    /* a prefix tier match wins over substring matches */
    expect_resolves(f, "tiny", "tinyllama.gguf");
    expect_resolves(f, "Q8", "llama-7b-q8.gguf");
}

static void test_unknown_name_lists_what_is_there(void **state) {
    fx *f = *state;
    cf_err err = {0};
    assert_null(models_resolve(f->models, "phi3", &err));
    assert_int_equal(err.code, CF_ENOTFOUND);
    assert_non_null(strstr(err.msg, "holds no .gguf files"));
    assert_non_null(strstr(err.msg, "confab pull"));
    static const char *const names[] = {"a.gguf", "b.gguf", NULL};
    put_names(f, names);
    assert_null(models_resolve(f->models, "phi3", &err));
    assert_int_equal(err.code, CF_ENOTFOUND);
    assert_non_null(strstr(err.msg, "no model matches 'phi3'"));
    assert_non_null(strstr(err.msg, "available: a.gguf, b.gguf"));
    assert_null(models_resolve(f->models, "", &err));
    assert_int_equal(err.code, CF_EINVAL);
}

static void test_remove_deletes_resolved_file_only(void **state) {
    fx *f = *state;
    static const char *const names[] = {"alpha-q4.gguf", "alpha-q8.gguf", "beta.gguf", NULL};
    put_names(f, names);
    cf_err err = {0};
    char *removed = NULL;
    assert_int_equal(models_remove(f->models, "alpha", &removed, &err), CF_EINVAL);
    assert_non_null(strstr(err.msg, "ambiguous"));
    assert_true(exists(f, "alpha-q4.gguf") && exists(f, "alpha-q8.gguf"));
    assert_int_equal(models_remove(f->models, "BET", &removed, &err), 0);
    assert_non_null(strstr(removed, "/beta.gguf"));
    free(removed);
    assert_false(exists(f, "beta.gguf"));
    assert_int_equal(models_remove(f->models, "beta", &removed, &err), CF_ENOTFOUND);
    char p[4400];
    snprintf(p, sizeof p, "%s/alpha-q4.gguf", f->models);
    assert_int_equal(models_remove(f->models, p, &removed, &err), CF_EINVAL);
    assert_non_null(strstr(err.msg, "not a path"));
    assert_true(exists(f, "alpha-q4.gguf"));
}

/* ------------------------------------------------------ the directory */

static void test_models_dir_precedence(void **state) {
    (void)state;
    unsetenv("CONFAB_MODELS_DIR");
    char *d = models_dir(NULL, NULL);
    assert_string_equal(d, "./data/models");
    free(d);
    cf_err err = {0};
    const char *y = "storage:\n  data_dir: /srv/confab/\n  models_dir: gguf\n";
    cfg_t *c = cfg_load_string(y, strlen(y), "t.yaml", &err);
    assert_non_null(c);
    d = models_dir(c, NULL);
    assert_string_equal(d, "/srv/confab/gguf");
    free(d);
    setenv("CONFAB_MODELS_DIR", "/from/env", 1);
    d = models_dir(c, NULL);
    assert_string_equal(d, "/from/env");
    free(d);
    d = models_dir(c, "/from/flag");
    assert_string_equal(d, "/from/flag");
    free(d);
    unsetenv("CONFAB_MODELS_DIR");
    cfg_free(c);
    y = "storage:\n  models_dir: /abs/models\n";
    c = cfg_load_string(y, strlen(y), "t.yaml", &err);
    d = models_dir(c, NULL);
    assert_string_equal(d, "/abs/models");
    free(d);
    cfg_free(c);
}

/* ------------------------------------------------------------- the CLI */

static int run_cli(fx *f, char **out, const char *args) {
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' models %s --models-dir '%s' 2>&1", f->dir,
             tu_confab_bin(), args, f->models);
    return tu_run(cmd, out);
}

static void test_cli_lists_table_and_json(void **state) {
    fx *f = *state;
    put_chat_model(f, "Chat-Q8_0.gguf");
    put(f, "bad.gguf", "nope", 4);
    put(f, "next.gguf.part", "GGUF", 4);
    char *out = NULL;
    assert_int_equal(run_cli(f, &out, ""), 0);
    assert_non_null(strstr(out, "incomplete download: next.gguf.part (4 B)"));
    assert_non_null(strstr(out, "NAME"));
    assert_non_null(strstr(out, "Chat-Q8_0  qwen2"));
    assert_non_null(strstr(out, "Q8_0"));
    assert_non_null(strstr(out, "32768  yes"));
    assert_non_null(strstr(out, "bad        INVALID: "));
    assert_non_null(strstr(out, "1 of 2 files are not valid"));
    free(out);
    assert_int_equal(run_cli(f, &out, "list --json"), 0);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    assert_non_null(j);
    json_t *m = json_object_get(j, "models");
    assert_int_equal(json_array_size(m), 2);
    json_t *inc = json_object_get(j, "incomplete_downloads");
    assert_int_equal(json_array_size(inc), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(inc, 0), "file")),
                        "next.gguf.part");
    json_t *bad = json_array_get(m, 0), *chat = json_array_get(m, 1);
    assert_false(json_boolean_value(json_object_get(bad, "valid")));
    assert_true(json_is_string(json_object_get(bad, "error")));
    assert_string_equal(json_string_value(json_object_get(chat, "architecture")), "qwen2");
    assert_int_equal(json_integer_value(json_object_get(chat, "parameters")), 96);
    assert_int_equal(json_integer_value(json_object_get(chat, "context_length")), 32768);
    assert_true(json_boolean_value(json_object_get(chat, "chat_template")));
    assert_string_equal(json_string_value(json_object_get(chat, "quantization")), "Q8_0");
    json_decref(j);
    free(out);
}

static void test_cli_rm_and_which(void **state) {
    fx *f = *state;
    static const char *const names[] = {"Qwen-A.gguf", "Qwen-B.gguf", "Solo.gguf", NULL};
    put_names(f, names);
    char *out = NULL;
    assert_int_equal(run_cli(f, &out, "which solo"), 0);
    assert_non_null(strstr(out, "/Solo.gguf"));
    free(out);
    assert_int_equal(run_cli(f, &out, "rm qwen"), 1);
    assert_non_null(strstr(out, "ambiguous"));
    free(out);
    assert_true(exists(f, "Qwen-A.gguf") && exists(f, "Qwen-B.gguf"));
    assert_int_equal(run_cli(f, &out, "rm qwen-b"), 0);
    assert_non_null(strstr(out, "removed "));
    assert_non_null(strstr(out, "/Qwen-B.gguf"));
    free(out);
    assert_false(exists(f, "Qwen-B.gguf"));
    assert_int_equal(run_cli(f, &out, "rm"), 2);
    assert_non_null(strstr(out, "needs a NAME"));
    free(out);
    assert_int_equal(run_cli(f, &out, "frobnicate"), 2);
    free(out);
}

/* ------------------------------------------------------------ first run */

static cfg_t *cfg_for(fx *f, const char *extra) {
    char y[8000];
    snprintf(y, sizeof y, "storage:\n  data_dir: %s\n  models_dir: models\n%s", f->dir,
             extra ? extra : "");
    cf_err err = {0};
    cfg_t *c = cfg_load_string(y, strlen(y), "t.yaml", &err);
    if (!c) fail_msg("config: %s", err.msg);
    return c;
}

static void test_default_is_not_pulled_when_models_are_configured(void **state) {
    fx *f = *state;
    cfg_t *c = cfg_for(f, "models:\n  gpt:\n    backend: openai\n    model: gpt-4o-mini\n");
    char *path = NULL;
    cf_err err = {0};
    assert_int_equal(models_ensure_default(c, true, NULL, NULL, NULL, &path, &err),
                     MODELS_DEFAULT_CONFIGURED);
    assert_null(path);
    cfg_free(c);
}

static void test_default_uses_a_model_already_present(void **state) {
    fx *f = *state;
    put(f, "aaa-broken.gguf", "junk", 4);
    put_copy_of(f, "models/stories260K.gguf", "bbb-stories.gguf");
    put_chat_model(f, "ccc-chat.gguf");
    cfg_t *c = cfg_for(f, NULL);
    char *path = NULL;
    cf_err err = {0};
    assert_int_equal(models_ensure_default(c, false, NULL, NULL, NULL, &path, &err),
                     MODELS_DEFAULT_FOUND);
    assert_non_null(strstr(path, "/ccc-chat.gguf")); /* a model with a chat template first */
    free(path);
    cfg_free(c);
}

static void test_default_with_pull_disabled_says_so(void **state) {
    fx *f = *state;
    put(f, "broken.gguf", "junk", 4); /* invalid files do not count */
    cfg_t *c = cfg_for(f, NULL);
    char *path = NULL;
    cf_err err = {0};
    assert_int_equal(models_ensure_default(c, false, NULL, NULL, NULL, &path, &err), CF_ENOTFOUND);
    assert_null(path);
    assert_non_null(strstr(err.msg, "pulling is disabled"));
    assert_non_null(strstr(err.msg, MODELS_DEFAULT_SOURCE));
    cfg_free(c);
}

static void test_default_without_network_says_so(void **state) {
    fx *f = *state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(fd, (struct sockaddr *)&a, sizeof a);
    socklen_t al = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &al);
    close(fd);
    char ep[64];
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d", ntohs(a.sin_port));
    setenv("CONFAB_HF_ENDPOINT", ep, 1);
    cfg_t *c = cfg_for(f, NULL);
    char *path = NULL;
    cf_err err = {0};
    assert_true(models_ensure_default(c, true, NULL, NULL, NULL, &path, &err) < 0);
    assert_null(path);
    assert_non_null(strstr(err.msg, "could not be downloaded"));
    assert_non_null(strstr(err.msg, "cannot connect"));
    assert_non_null(strstr(err.msg, "remote models still work"));
    assert_false(exists(f, "SmolLM2-135M-Instruct-Q8_0.gguf"));
    cfg_free(c);
}

typedef struct {
    int calls, finished;
} plog;

static void on_progress(void *ctx, const pull_progress *p) {
    plog *l = ctx;
    l->calls++;
    l->finished += p->finished;
}

static void test_default_is_pulled_from_hf_endpoint(void **state) {
    fx *f = *state;
    const char *src = td_path("models/stories260K.gguf");
    size_t n;
    char *body = tu_read_file(src, &n);
    rs_server srv = {.body = body, .len = n};
    rs_start(&srv);
    char ep[64];
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d/", srv.port);
    setenv("CONFAB_HF_ENDPOINT", ep, 1);
    cfg_t *c = cfg_for(f, NULL);
    char *path = NULL;
    cf_err err = {0};
    plog pl = {0};
    int rc = models_ensure_default(c, true, on_progress, &pl, NULL, &path, &err);
    rs_stop(&srv);
    if (rc != MODELS_DEFAULT_PULLED) fail_msg("rc %d: %s", rc, err.msg);
    assert_string_equal(srv.paths[0], "/bartowski/SmolLM2-135M-Instruct-GGUF/resolve/main/"
                                      "SmolLM2-135M-Instruct-Q8_0.gguf");
    assert_true(exists(f, "SmolLM2-135M-Instruct-Q8_0.gguf"));
    assert_int_equal(pl.finished, 1);
    /* and the short name from the README finds it */
    char *r = models_resolve(f->models, "smollm2", &err);
    assert_string_equal(r, path);
    free(r);
    free(path);
    free(body);
    cfg_free(c);
}

int main(void) {
    unsetenv("CONFAB_MODELS_DIR");
    unsetenv("CONFAB_HF_ENDPOINT");
    cf_err err = {0};
    if (prov_global_init(&err)) return 1;
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_list_describes_valid_and_marks_corrupt_files),
        T(test_list_of_truncated_real_model_reports_reason),
        T(test_missing_dir_lists_empty_and_file_as_dir_fails),
        cmocka_unit_test(test_file_type_names_follow_llama_cpp),
        T(test_short_names_resolve_by_exact_prefix_substring),
        T(test_path_names_resolve_as_paths),
        T(test_ambiguous_name_lists_candidates),
        T(test_unknown_name_lists_what_is_there),
        T(test_remove_deletes_resolved_file_only),
        cmocka_unit_test(test_models_dir_precedence),
        T(test_cli_lists_table_and_json),
        T(test_cli_rm_and_which),
        T(test_default_is_not_pulled_when_models_are_configured),
        T(test_default_uses_a_model_already_present),
        T(test_default_with_pull_disabled_says_so),
        T(test_default_without_network_says_so),
        T(test_default_is_pulled_from_hf_endpoint),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    prov_global_cleanup();
    return rc;
}
