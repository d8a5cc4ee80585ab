/* Tests for the engine commands as a user runs them: `confab run` (text,
 * --json, --logits-out, bad flags), `confab bench --json`, and
 * `confab mkmodel` (deterministic output, vocabulary copy, bad input). */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "confab/engine.h"
#include "testutil.h"

static int run_cmd(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int run_cmd(char **out, const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(cmd, sizeof cmd, "%s ", tu_confab_bin());
    vsnprintf(cmd + n, sizeof cmd - (size_t)n, fmt, ap);
    va_end(ap);
    return tu_run(cmd, out); /* exit status, -1 when killed */
}

static void run_json_greedy_matches_reference_ids(void **st) {
    (void)st;
    const char *model = td_path("models/stories260K.gguf");
    char mpath[1024];
    snprintf(mpath, sizeof mpath, "%s", model);
    char *out = NULL;
    int rc = run_cmd(&out, "run -m %s --prompt-ids \"1 403 407 261 378\" -n 16 --temp 0 --json -t 2 2>/dev/null", mpath);
    assert_int_equal(rc, 0);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    if (!j) fail_msg("not JSON (%s): %s", je.text, out);
    json_t *ids = json_object_get(j, "ids");
    static const int want[16] = {432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338, 401, 396, 267, 337};
    assert_int_equal(json_array_size(ids), 16);
    for (int i = 0; i < 16; i++) assert_int_equal(json_integer_value(json_array_get(ids, (size_t)i)), want[i]);
    assert_int_equal(json_array_size(json_object_get(j, "prompt_ids")), 5);
    assert_string_equal(json_string_value(json_object_get(j, "text")),
                        ", there was a little girl named Lily. She loved to play");
    json_t *t = json_object_get(j, "timings");
    assert_int_equal(json_integer_value(json_object_get(t, "prompt_tokens")), 5);
    assert_int_equal(json_integer_value(json_object_get(t, "gen_tokens")), 16);
    assert_true(json_is_number(json_object_get(t, "prompt_ms")));
    assert_true(json_is_number(json_object_get(t, "gen_ms")));
    json_decref(j);
    free(out);

    /* plain mode streams the same text */
    rc = run_cmd(&out, "run -m %s --prompt-ids \"1 403 407 261 378\" -n 16 --temp 0 2>/dev/null", mpath);
    assert_int_equal(rc, 0);
    assert_string_equal(out, ", there was a little girl named Lily. She loved to play\n");
    free(out);
}

static void run_text_prompt_uses_the_model_tokenizer(void **st) {
    (void)st;
    char model[1024];
    snprintf(model, sizeof model, "%s", td_path("models/stories260K.gguf"));
    char *out = NULL;
    /* llama.cpp tokenizes 'Lily and Tom' as [1, 317, 269, 274, 287] */
    assert_int_equal(run_cmd(&out, "run -m %s -p 'Lily and Tom' -n 4 --temp 0 --json 2>/dev/null", model), 0);
    json_t *j = json_loads(out, 0, NULL);
    if (!j) fail_msg("not JSON: %s", out);
    static const int want[5] = {1, 317, 269, 274, 287};
    json_t *p = json_object_get(j, "prompt_ids");
    assert_int_equal(json_array_size(p), 5);
    for (int i = 0; i < 5; i++) assert_int_equal(json_integer_value(json_array_get(p, (size_t)i)), want[i]);
    assert_string_equal(json_string_value(json_object_get(j, "text")), " were playing");
    json_decref(j);
    free(out);
    /* a stop string ends the text just before it */
    assert_int_equal(run_cmd(&out, "run -m %s -p 'Once upon a time' -n 40 --temp 0 --stop 'Lily' --json 2>/dev/null", model), 0);
    j = json_loads(out, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "text")), ", there was a little girl named ");
    assert_true(json_array_size(json_object_get(j, "ids")) < 40);
    json_decref(j);
    free(out);
    assert_int_equal(run_cmd(&out, "run -m %s -p 'x' --prompt-ids '1 2' 2>&1", model), 2);
    assert_non_null(strstr(out, "not both"));
    free(out);
}

/* --chat wraps -p in the model's chat template (stories260K has none, so
 * the built-in llama2 one): the prompt ids equal the tokenization of the
 * rendered text, with BOS once. */
static void run_chat_applies_the_chat_template(void **st) {
    (void)st;
    const char *model = td_path("models/stories260K.gguf");
    char mpath[1024];
    snprintf(mpath, sizeof mpath, "%s", model);
    char *out = NULL;
    assert_int_equal(run_cmd(&out, "run -m %s -p \"Hi there\" --chat -n 2 --temp 0 --json 2>/dev/null", mpath), 0);
    json_t *j = json_loads(out, 0, NULL);
    assert_non_null(j);
    json_t *pids = json_object_get(j, "prompt_ids");
    free(out);
    /* The same text through `confab tokenize`, BOS included once. */
    assert_int_equal(run_cmd(&out, "tokenize -m %s \"[INST] Hi there [/INST]\"", mpath), 0);
    json_t *want = json_loads(out, 0, NULL);
    assert_non_null(want);
    assert_true(json_equal(pids, want));
    assert_int_equal(json_integer_value(json_array_get(pids, 0)), 1);
    assert_int_not_equal(json_integer_value(json_array_get(pids, 1)), 1);
    json_decref(want);
    json_decref(j);
    free(out);
    assert_int_equal(run_cmd(&out, "run -m %s --chat -n 2 2>&1", mpath), 2);
    free(out);
}

static void run_logits_out_writes_one_row_per_position(void **st) {
    (void)st;
    char model[1024];
    snprintf(model, sizeof model, "%s", td_path("models/stories260K.gguf"));
    char ref[1024];
    snprintf(ref, sizeof ref, "%s", td_path("reference/stories260K/p1-kvf32/logits.f32"));
    char *dir = tu_tmpdir();
    char lp[512];
    snprintf(lp, sizeof lp, "%s/l.f32", dir);
    int rc = run_cmd(NULL, "run -m %s --prompt-ids \"1 403 407 261 378\" -n 16 --temp 0 --kv-f32 --json --logits-out %s >/dev/null 2>&1",
                     model, lp);
    assert_int_equal(rc, 0);
    size_t n, rn;
    float *got = (float *)tu_read_file(lp, &n);
    float *want = (float *)tu_read_file(ref, &rn);
    assert_int_equal(n, (size_t)21 * 512 * sizeof(float));
    assert_int_equal(n, rn);
    for (size_t i = 0; i < n / sizeof(float); i++) assert_true(fabsf(got[i] - want[i]) < 1e-4f);
    free(got);
    free(want);
    tu_rmtree(dir);
    free(dir);
}

static void run_same_seed_same_text_with_sampling(void **st) {
    (void)st;
    char model[1024];
    snprintf(model, sizeof model, "%s", td_path("models/stories260K.gguf"));
    char *a = NULL, *b = NULL, *c = NULL;
    const char *args = "--prompt-ids \"1 403\" -n 40 --temp 1.0 --top-k 40 --top-p 0.95 --min-p 0.02";
    assert_int_equal(run_cmd(&a, "run -m %s %s --seed 7 --json 2>/dev/null", model, args), 0);
    assert_int_equal(run_cmd(&b, "run -m %s %s --seed 7 --json -t 1 2>/dev/null", model, args), 0);
    assert_int_equal(run_cmd(&c, "run -m %s %s --seed 8 --json 2>/dev/null", model, args), 0);
    json_t *ja = json_loads(a, 0, NULL), *jb = json_loads(b, 0, NULL), *jc = json_loads(c, 0, NULL);
    assert_non_null(ja);
    assert_non_null(jb);
    assert_non_null(jc);
    assert_true(json_equal(json_object_get(ja, "ids"), json_object_get(jb, "ids")));
    assert_false(json_equal(json_object_get(ja, "ids"), json_object_get(jc, "ids")));
    json_decref(ja);
    json_decref(jb);
    json_decref(jc);
    free(a);
    free(b);
    free(c);
}

static void run_rejects_bad_flags_with_exit_2(void **st) {
    (void)st;
    char *out = NULL;
    static const char *bad[] = {
        "run --prompt-ids \"1 2\"",                          /* no model */
        "run -m x.gguf",                                    /* no prompt */
        "run -m x.gguf --prompt-ids \"1 abc\"",              /* bad id */
        "run -m x.gguf --prompt-ids \"1\" -n -3",            /* negative count */
        "run -m x.gguf --prompt-ids \"1\" --temp hot",       /* not a number */
        "run -m x.gguf --prompt-ids \"1\" --top-p 1.5",      /* out of range */
        "run -m x.gguf --prompt-ids \"1\" --threads 0",
        "run -m x.gguf --prompt-ids \"1\" --bogus",
        "run -m x.gguf --prompt-ids",
        "bench",
        "bench -m x.gguf -p 12x",
        "bench -m x.gguf -r 0",
        "mkmodel --dim 64 --layers 1 --heads 4 --vocab 10",  /* no -o */
        "mkmodel --dim 64 --layers 1 --heads 4 --vocab 10 -o /tmp/x.gguf --arch gpt9",
        "mkmodel --dim 64 --layers 1 --heads 4 --vocab 10 -o /tmp/x.gguf --type Q9_9",
        "mkmodel --dim sixty --layers 1 --heads 4 --vocab 10 -o /tmp/x.gguf",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = run_cmd(&out, "%s 2>&1", bad[i]);
        if (rc != 2) fail_msg("'%s' exited %d, want 2: %s", bad[i], rc, out);
        assert_non_null(strstr(out, "confab: "));
        free(out);
    }
    /* a model that does not exist is a failure (1), not a usage error */
    assert_int_equal(run_cmd(&out, "run -m /nonexistent.gguf --prompt-ids \"1\" 2>&1"), 1);
    assert_non_null(strstr(out, "/nonexistent.gguf"));
    free(out);
}

static void bench_json_reports_pp_and_tg(void **st) {
    (void)st;
    char model[1024];
    snprintf(model, sizeof model, "%s", td_path("models/stories260K.gguf"));
    char *out = NULL;
    assert_int_equal(run_cmd(&out, "bench -m %s -p 32 -n 8 -r 2 -t 2 --json 2>/dev/null", model), 0);
    json_t *j = json_loads(out, 0, NULL);
    if (!j) fail_msg("not JSON: %s", out);
    assert_int_equal(json_object_size(j), 2);
    assert_true(json_real_value(json_object_get(j, "pp32")) > 0);
    assert_true(json_real_value(json_object_get(j, "tg8")) > 0);
    json_decref(j);
    free(out);
}

static void mkmodel_is_deterministic_and_copies_vocabulary(void **st) {
    (void)st;
    char vocab[1024];
    snprintf(vocab, sizeof vocab, "%s", td_path("vocab/ggml-vocab-llama-spm.gguf"));
    char *dir = tu_tmpdir();
    char a[512], b[512], c[512];
    snprintf(a, sizeof a, "%s/a.gguf", dir);
    snprintf(b, sizeof b, "%s/b.gguf", dir);
    snprintf(c, sizeof c, "%s/c.gguf", dir);
    const char *shape = "--arch llama --dim 256 --layers 2 --heads 4 --kv-heads 2 --ffn 512 --type Q4_K_M";
    assert_int_equal(run_cmd(NULL, "mkmodel %s --vocab-from %s --seed 1 -o %s", shape, vocab, a), 0);
    assert_int_equal(run_cmd(NULL, "mkmodel %s --vocab-from %s --seed 1 -o %s", shape, vocab, b), 0);
    assert_int_equal(run_cmd(NULL, "mkmodel %s --vocab-from %s --seed 2 -o %s", shape, vocab, c), 0);
    size_t na, nb, nc;
    char *da = tu_read_file(a, &na), *db = tu_read_file(b, &nb), *dc = tu_read_file(c, &nc);
    assert_int_equal(na, nb);
    assert_memory_equal(da, db, na);
    assert_int_equal(na, nc);
    assert_true(memcmp(da, dc, na) != 0);
    free(da);
    free(db);
    free(dc);

    cf_err e = {0};
    cf_model *m = cf_model_load(a, NULL, &e);
    if (!m) fail_msg("%s", e.msg);
    cf_model_info info;
    cf_model_get_info(m, &info);
    assert_int_equal(info.n_vocab, 32000);
    assert_int_equal(info.n_embd, 256);
    assert_int_equal(info.n_head_kv, 2);
    assert_int_equal(info.bos_id, 1);
    char piece[32];
    assert_true(cf_model_token_text(m, 15043, piece, sizeof piece) > 0); /* "▁Hello" */
    assert_string_equal(piece, " Hello");
    cf_model_free(m);
    tu_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(run_json_greedy_matches_reference_ids),
        cmocka_unit_test(run_text_prompt_uses_the_model_tokenizer),
        cmocka_unit_test(run_chat_applies_the_chat_template),
        cmocka_unit_test(run_logits_out_writes_one_row_per_position),
        cmocka_unit_test(run_same_seed_same_text_with_sampling),
        cmocka_unit_test(run_rejects_bad_flags_with_exit_2),
        cmocka_unit_test(bench_json_reports_pp_and_tg),
        cmocka_unit_test(mkmodel_is_deterministic_and_copies_vocabulary),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
