/* Tests for src/engine/chat_template: every rendering in the shared
 * templates/expected.jsonl (real model templates rendered by Python Jinja2
 * with Hugging Face's settings), the built-in fallback templates, and the
 * `confab template render` command. */
#include "base/sb.h"
#include "engine/chat_template.h"
#include "engine/gguf.h"
#include "testutil.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOW_2024_07_26_NOON 1721995200 /* what the expected renderings used */

/* Records that do not match yet, as "template|case". Checked both ways: a
 * listed record that now passes fails the test too, so the list only
 * shrinks. */
static const char *const known_failures[] = {
    NULL,
};

static bool is_known_failure(const char *tmpl, const char *cas) {
    char key[512];
    snprintf(key, sizeof key, "%s|%s", tmpl, cas);
    for (const char *const *k = known_failures; *k; k++)
        if (!strcmp(*k, key)) return true;
    return false;
}

static size_t first_diff(const char *a, size_t na, const char *b, size_t nb) {
    size_t i = 0;
    while (i < na && i < nb && a[i] == b[i])
        i++;
    return i;
}

/* Renders one record; returns true when it matches, printing why not. */
static bool check_record(json_t *rec, const char *dir) {
    const char *tname = json_string_value(json_object_get(rec, "template"));
    const char *cas = json_string_value(json_object_get(rec, "case"));
    char path[2200];
    snprintf(path, sizeof path, "%s/%s", dir, tname);
    size_t len;
    char *src = tu_read_file(path, &len);
    if (!src) {
        print_message("# %s|%s: cannot read %s\n", tname, cas, path);
        return false;
    }
    sb_t out = {0};
    cf_err err = {0};
    int rc = tmpl_render_at(src, json_object_get(rec, "messages"),
                            json_is_true(json_object_get(rec, "add_generation_prompt")),
                            json_string_value(json_object_get(rec, "bos_token")),
                            json_string_value(json_object_get(rec, "eos_token")), NULL,
                            NOW_2024_07_26_NOON, &out, &err);
    free(src);
    bool ok;
    json_t *exp = json_object_get(rec, "expected");
    if (exp) {
        const char *e = json_string_value(exp);
        size_t en = json_string_length(exp);
        if (rc) {
            print_message("# %s|%s: render failed: %s\n", tname, cas, err.msg);
            ok = false;
        } else if (out.len != en || memcmp(out.data ? out.data : "", e, en)) {
            size_t d = first_diff(sb_str(&out), out.len, e, en);
            size_t from = d > 30 ? d - 30 : 0;
            print_message("# %s|%s: differs at byte %zu (got %zu bytes, want %zu)\n#   got:  "
                          "%.*s\n#   want: %.*s\n",
                          tname, cas, d, out.len, en,
                          (int)(out.len - from < 80 ? out.len - from : 80), sb_str(&out) + from,
                          (int)(en - from < 80 ? en - from : 80), e + from);
            ok = false;
        } else
            ok = true;
    } else {
        /* The record's error is "Kind: message"; our message must carry it. */
        const char *want = json_string_value(json_object_get(rec, "error"));
        const char *colon = strstr(want, ": ");
        const char *msg = colon ? colon + 2 : want;
        if (rc == 0) {
            print_message("# %s|%s: rendered but should raise \"%s\"\n", tname, cas, want);
            ok = false;
        } else if (!strstr(err.msg, msg)) {
            print_message("# %s|%s: raised \"%s\", want \"%s\"\n", tname, cas, err.msg, msg);
            ok = false;
        } else
            ok = true;
    }
    sb_free(&out);
    return ok;
}

static void expected_jsonl_renders_byte_exact(void **st) {
    (void)st;
    const char *p = td_path("templates/expected.jsonl");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", p);
    *strrchr(dir, '/') = 0;
    size_t len;
    char *all = tu_read_file(p, &len);
    assert_non_null(all);
    int total = 0, passed = 0, unexpected = 0;
    for (char *line = strtok(all, "\n"); line; line = strtok(NULL, "\n")) {
        json_error_t je;
        json_t *rec = json_loads(line, JSON_ALLOW_NUL, &je);
        assert_non_null(rec);
        total++;
        bool ok = check_record(rec, dir);
        bool known = is_known_failure(json_string_value(json_object_get(rec, "template")),
                                      json_string_value(json_object_get(rec, "case")));
        if (ok) passed++;
        if (ok && known) {
            print_message("# %s|%s now passes: remove it from known_failures\n",
                          json_string_value(json_object_get(rec, "template")),
                          json_string_value(json_object_get(rec, "case")));
            unexpected++;
        }
        if (!ok && !known) unexpected++;
        json_decref(rec);
    }
    free(all);
    print_message("# expected.jsonl: %d of %d records match\n", passed, total);
    assert_true(total >= 200);
    assert_int_equal(unexpected, 0);
}

/* ------------------------------------------------------------------ built-in templates */

#define CONVO                                                                                      \
    "[{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": "      \
    "\"Hi\"}, "                                                                                    \
    "{\"role\": \"assistant\", \"content\": \"Hello.\"}, {\"role\": \"user\", \"content\": "       \
    "\"2+2?\"}]"

/* Expected strings: the same template sources rendered by Python Jinja2. */
static const struct {
    const char *name, *want;
} builtin_cases[] = {
    {"chatml", "<|im_start|>system\nBe "
               "brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
               "Hello.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"},
    {"llama2",
     "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello. </s><s>[INST] 2+2? [/INST]"},
    {"llama3",
     "<s><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user"
     "<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello.<|"
     "eot_id|>"
     "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|><|start_header_id|>assistant"
     "<|end_header_id|>\n\n"},
    {"mistral", "<s>[INST] Be brief.\n\nHi [/INST]Hello.</s>[INST] 2+2? [/INST]"},
    {"gemma", "<s><start_of_turn>user\nBe "
              "brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n"
              "<start_of_turn>user\n2+2?<end_of_turn>\n<start_of_turn>model\n"},
    {"phi3",
     "<|system|>\nBe "
     "brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello.<|end|>\n<|user|>\n2+2?<|end|>\n"
     "<|assistant|>\n"},
};

static void builtin_templates_render_known_prompts(void **st) {
    (void)st;
    json_t *msgs = json_loads(CONVO, 0, NULL);
    assert_non_null(msgs);
    size_t n = 0;
    for (const char *const *nm = tmpl_builtin_names(); *nm; nm++)
        n++;
    assert_int_equal(n, sizeof builtin_cases / sizeof builtin_cases[0]);
    for (size_t i = 0; i < n; i++) {
        const char *src = tmpl_builtin(builtin_cases[i].name);
        assert_non_null(src);
        sb_t out = {0};
        cf_err err = {0};
        int rc = tmpl_render(src, msgs, true, "<s>", "</s>", NULL, &out, &err);
        if (rc) fail_msg("%s: %s", builtin_cases[i].name, err.msg);
        assert_string_equal(sb_str(&out), builtin_cases[i].want);
        sb_free(&out);
    }
    json_decref(msgs);
    assert_null(tmpl_builtin("nonesuch"));
    assert_null(tmpl_builtin(NULL));
}

static void builtin_templates_reject_non_alternating_roles(void **st) {
    (void)st;
    json_t *msgs = json_loads(
        "[{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"user\", \"content\": \"b\"}]", 0,
        NULL);
    sb_t out = {0};
    cf_err err = {0};
    assert_int_equal(
        tmpl_render(tmpl_builtin("llama2"), msgs, false, "<s>", "</s>", NULL, &out, &err),
        CF_EINVAL);
    assert_non_null(strstr(err.msg, "Conversation roles must alternate"));
    sb_free(&out);
    json_decref(msgs);
}

static void render_rejects_bad_inputs_with_clear_errors(void **st) {
    (void)st;
    sb_t out = {0};
    cf_err err = {0};
    json_t *obj = json_object();
    assert_int_equal(tmpl_render("x", obj, false, NULL, NULL, NULL, &out, &err), CF_EINVAL);
    assert_non_null(strstr(err.msg, "messages must be a JSON array"));
    json_t *arr = json_loads("[1]", 0, NULL);
    assert_int_equal(tmpl_render("x", arr, false, NULL, NULL, NULL, &out, &err), CF_EINVAL);
    assert_non_null(strstr(err.msg, "message 0 is not a JSON object"));
    json_t *ok = json_array();
    assert_int_equal(tmpl_render("{% for %}", ok, false, NULL, NULL, NULL, &out, &err), CF_EFORMAT);
    assert_non_null(strstr(err.msg, "line 1, column 8"));
    /* tools, when given, are visible to the template */
    json_t *tools = json_loads("[{\"name\": \"f\"}]", 0, NULL);
    assert_int_equal(tmpl_render("{{ tools | map(attribute='name') | join }}|{{ bos_token }}", ok,
                                 false, NULL, NULL, tools, &out, &err),
                     0);
    assert_string_equal(sb_str(&out), "f|");
    sb_free(&out);
    /* extra variables reach the template; a non-UTF-8 token string is refused */
    json_t *extra = json_pack("{s:b}", "enable_thinking", 0);
    tmpl_input in = {.messages = ok, .bos = "<s>", .extra = extra};
    sb_clear(&out);
    assert_int_equal(tmpl_render_ex("{{ bos_token }}{{ enable_thinking }}", &in, &out, &err), 0);
    assert_string_equal(sb_str(&out), "<s>False");
    in.bos = "\xff";
    assert_int_equal(tmpl_render_ex("x", &in, &out, &err), CF_EINVAL);
    assert_non_null(strstr(err.msg, "BOS token string is not valid UTF-8"));
    sb_free(&out);
    json_decref(extra);
    json_decref(obj);
    json_decref(arr);
    json_decref(ok);
    json_decref(tools);
}

/* ------------------------------------------------------------------ confab template render */

static char *write_tmp(const char *dir, const char *name, const char *text) {
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", dir, name);
    assert_int_equal(tu_write_file(p, text, strlen(text)), 0);
    return p;
}

static int run_cli(const char *args, char **out) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s template render %s", tu_confab_bin(), args);
    return tu_run(cmd, out);
}

static void cli_renders_builtin_byte_exact_to_stdout(void **st) {
    (void)st;
    char *dir = tu_tmpdir();
    char *msgs = write_tmp(dir, "m.json", CONVO);
    char args[2048], *out = NULL;
    snprintf(args, sizeof args, "--builtin chatml --messages %s --add-generation-prompt", msgs);
    assert_int_equal(run_cli(args, &out), 0);
    assert_string_equal(out, builtin_cases[0].want);
    free(out);
    /* --template with --bos/--eos; no trailing newline is added */
    char *tpl = write_tmp(
        dir, "t.jinja",
        "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}{{ eos_token }}\n");
    snprintf(args, sizeof args, "--template %s --messages %s --bos '[B]' --eos '[E]'", tpl, msgs);
    assert_int_equal(run_cli(args, &out), 0);
    assert_string_equal(out, "[B]Be brief.HiHello.2+2?[E]");
    free(out);
    /* --messages - reads stdin */
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s template render --template %s --messages - < %s", tu_confab_bin(),
             tpl, msgs);
    assert_int_equal(tu_run(cmd, &out), 0);
    assert_string_equal(out, "Be brief.HiHello.2+2?");
    free(out);
    /* --tools defines `tools` */
    char *tools = write_tmp(dir, "tools.json", "[{\"name\": \"get_time\"}]");
    char *tt = write_tmp(dir, "tt.jinja",
                         "{{ tools is defined }}:{{ tools | map(attribute='name') | join }}");
    snprintf(args, sizeof args, "--template %s --messages %s", tt, msgs);
    assert_int_equal(run_cli(args, &out), 0);
    assert_string_equal(out, "False:");
    free(out);
    snprintf(args, sizeof args, "--template %s --messages %s --tools %s", tt, msgs, tools);
    assert_int_equal(run_cli(args, &out), 0);
    assert_string_equal(out, "True:get_time");
    free(out);
    /* --var passes extra variables, JSON or plain strings */
    char *tv =
        write_tmp(dir, "tv.jinja", "{{ enable_thinking is false }} {{ effort }} {{ n + 1 }}");
    snprintf(args, sizeof args,
             "--template %s --messages %s --var enable_thinking=false --var effort=high --var n=41",
             tv, msgs);
    assert_int_equal(run_cli(args, &out), 0);
    assert_string_equal(out, "True high 42");
    free(out);
    snprintf(args, sizeof args, "--template %s --messages %s --var messages=[] 2>&1", tv, msgs);
    assert_int_equal(run_cli(args, &out), 1);
    assert_non_null(strstr(out, "extra variable 'messages' would replace a standard one"));
    free(out);
    free(tv);
    free(tools);
    free(tt);
    tu_rmtree(dir);
    free(dir);
    free(msgs);
    free(tpl);
}

static void cli_reports_bad_json_and_bad_usage(void **st) {
    (void)st;
    char *dir = tu_tmpdir();
    char *bad = write_tmp(dir, "bad.json", "[{\"role\": \"user\", ");
    char *notarr = write_tmp(dir, "obj.json", "{\"role\": \"user\"}");
    char *tpl = write_tmp(dir, "t.jinja", "{{ raise_exception('nope') }}");
    char *good = write_tmp(dir, "m.json", "[]");
    char args[2048], *out = NULL;
    snprintf(args, sizeof args, "--builtin chatml --messages %s 2>&1", bad);
    assert_int_equal(run_cli(args, &out), 1);
    assert_non_null(strstr(out, "invalid JSON at line 1"));
    free(out);
    snprintf(args, sizeof args, "--builtin chatml --messages %s 2>&1", notarr);
    assert_int_equal(run_cli(args, &out), 1);
    assert_non_null(strstr(out, "expected a JSON array"));
    free(out);
    snprintf(args, sizeof args, "--template %s --messages %s 2>&1", tpl, good);
    assert_int_equal(run_cli(args, &out), 1);
    assert_non_null(strstr(out, "line 1, column 4: nope"));
    free(out);
    snprintf(args, sizeof args, "--messages %s 2>&1", good);
    assert_int_equal(run_cli(args, &out), 2);
    assert_non_null(strstr(out, "exactly one of"));
    free(out);
    snprintf(args, sizeof args, "--builtin nope --messages %s 2>&1", good);
    assert_int_equal(run_cli(args, &out), 2);
    assert_non_null(strstr(out, "unknown built-in template 'nope'"));
    free(out);
    assert_int_equal(run_cli("--builtin chatml 2>&1", &out), 2);
    assert_non_null(strstr(out, "--messages FILE.json is required"));
    free(out);
    tu_rmtree(dir);
    free(dir);
    free(bad);
    free(notarr);
    free(tpl);
    free(good);
}

static void cli_reads_template_and_tokens_from_gguf(void **st) {
    (void)st;
    char *dir = tu_tmpdir();
    char path[1024];
    snprintf(path, sizeof path, "%s/chat.gguf", dir);
    gguf_writer *w = gguf_w_new();
    gguf_w_set_str(w, "general.architecture", "llama");
    gguf_w_set_str(w, "tokenizer.chat_template",
                   "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{{ "
                   "eos_token }}{% endfor %}");
    gguf_str toks[3] = {{"<unk>", 5}, {"<|bos|>", 7}, {"<|eos|>", 7}};
    gguf_w_set_arr_str(w, "tokenizer.ggml.tokens", toks, 3);
    gguf_w_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    gguf_w_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    cf_err err = {0};
    assert_int_equal(gguf_w_write(w, path, &err), 0);
    gguf_w_free(w);
    char *msgs = write_tmp(dir, "m.json", "[{\"role\": \"user\", \"content\": \"Hi\"}]");
    char args[2048], *out = NULL;
    snprintf(args, sizeof args, "-m %s --messages %s", path, msgs);
    assert_int_equal(run_cli(args, &out), 0);
    assert_string_equal(out, "<|bos|><user>Hi<|eos|>");
    free(out);
    /* a model without a template points at --builtin */
    w = gguf_w_new();
    gguf_w_set_str(w, "general.architecture", "llama");
    snprintf(path, sizeof path, "%s/plain.gguf", dir);
    assert_int_equal(gguf_w_write(w, path, &err), 0);
    gguf_w_free(w);
    snprintf(args, sizeof args, "-m %s --messages %s 2>&1", path, msgs);
    assert_int_equal(run_cli(args, &out), 1);
    assert_non_null(strstr(out, "no tokenizer.chat_template; use --builtin"));
    free(out);
    tu_rmtree(dir);
    free(dir);
    free(msgs);
}

static void cli_renders_real_phi3_vocab_template(void **st) {
    (void)st;
    const char *model = td_path("vocab/ggml-vocab-phi-3.gguf");
    char mpath[1024];
    snprintf(mpath, sizeof mpath, "%s", model);
    char *dir = tu_tmpdir();
    char *msgs = write_tmp(dir, "m.json", "[{\"role\": \"user\", \"content\": \"Hi\"}]");
    char args[2048], *out = NULL;
    snprintf(args, sizeof args, "-m %s --messages %s --add-generation-prompt", mpath, msgs);
    assert_int_equal(run_cli(args, &out), 0);
    assert_string_equal(out, "<s><|user|>\nHi<|end|>\n<|assistant|>\n");
    free(out);
    tu_rmtree(dir);
    free(dir);
    free(msgs);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(expected_jsonl_renders_byte_exact),
        cmocka_unit_test(builtin_templates_render_known_prompts),
        cmocka_unit_test(builtin_templates_reject_non_alternating_roles),
        cmocka_unit_test(render_rejects_bad_inputs_with_clear_errors),
        cmocka_unit_test(cli_renders_builtin_byte_exact_to_stdout),
        cmocka_unit_test(cli_reports_bad_json_and_bad_usage),
        cmocka_unit_test(cli_reads_template_and_tokens_from_gguf),
        cmocka_unit_test(cli_renders_real_phi3_vocab_template),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
