/* Tests for src/app/config: the seed example, the documented example, each
 * error kind with its location, env interpolation and the search order. */
#include "app/config.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char SEED[] =
    "model:\n"
    "  backend: \"local\"  # or \"openai\", \"anthropic\", \"cohere\"\n"
    "  name: \"mistralai/Mistral-7B-Instruct-v0.3\"\n"
    "  fallback:\n"
    "    backend: \"openai\"\n"
    "    name: \"gpt-4o-mini\"\n"
    "    api_key: \"${OPENAI_API_KEY}\"\n"
    "prompts:\n"
    "  code_review: \"Review this code for bugs and improvements:\\n{code}\"\n"
    "  summarize: \"Summarize the following in 3 bullet points:\\n{text}\"\n"
    "  explain: \"Explain this concept like I'm a {level} developer:\\n{concept}\"\n";

static cfg_t *load(const char *yaml, cf_err *err) {
    return cfg_load_string(yaml, strlen(yaml), "t.yaml", err);
}

static void seed_example_loads_as_written(void **st) {
    (void)st;
    setenv("OPENAI_API_KEY", "sk-test-123", 1);
    cf_err err = {0};
    cfg_t *c = load(SEED, &err);
    assert_non_null(c);
    assert_int_equal(c->n_models, 2);
    assert_string_equal(c->default_model, "mistralai/Mistral-7B-Instruct-v0.3");
    const cfg_model *m = cfg_find_model(c, "mistralai/Mistral-7B-Instruct-v0.3");
    assert_non_null(m);
    assert_string_equal(m->backend, "local");
    assert_int_equal(m->n_fallback, 1);
    assert_string_equal(m->fallback[0], "gpt-4o-mini");
    const cfg_model *f = cfg_find_model(c, "gpt-4o-mini");
    assert_non_null(f);
    assert_string_equal(f->backend, "openai");
    assert_string_equal(f->model, "gpt-4o-mini");
    assert_string_equal(f->api_key, "sk-test-123");
    assert_int_equal(c->n_prompts, 3);
    assert_string_equal(cfg_find_prompt(c, "summarize")->text,
                        "Summarize the following in 3 bullet points:\n{text}");
    assert_string_equal(c->prompts[2].name, "explain"); /* file order kept */
    assert_int_equal(c->n_warnings, 0);
    cfg_free(c);
}

static void seed_example_without_key_disables_only_the_fallback(void **st) {
    (void)st;
    unsetenv("OPENAI_API_KEY");
    cf_err err = {0};
    cfg_t *c = load(SEED, &err);
    assert_non_null(c);
    const cfg_model *f = cfg_find_model(c, "gpt-4o-mini");
    assert_null(f->api_key);
    assert_string_equal(f->api_key_env_missing, "OPENAI_API_KEY");
    assert_int_equal(c->n_warnings, 1);
    assert_non_null(strstr(c->warnings[0], "t.yaml:7:"));
    assert_non_null(strstr(c->warnings[0], "OPENAI_API_KEY is not set"));
    cfg_free(c);
}

static void example_file_loads_without_warnings(void **st) {
    (void)st;
    cf_err err = {0};
    cfg_t *c = cfg_load_file("confab.example.yaml", &err);
    if (!c) fail_msg("confab.example.yaml: %s", err.msg);
    assert_int_equal(c->n_warnings, 0);
    assert_string_equal(c->default_model, "local-smollm");
    const cfg_model *m = cfg_find_model(c, "gpt-4o-mini");
    assert_non_null(m);
    assert_true(m->price_input == 0.15 && m->price_output == 0.60 &&
                m->price_cached_input == 0.075);
    assert_int_equal(m->idle_timeout_ms, 30000);
    assert_int_equal(c->n_ab, 1);
    assert_int_equal(c->ab[0].n_variants, 2);
    assert_string_equal(c->budget.on_exceed, "refuse");
    assert_int_equal(c->server.port, 8080);
    assert_string_equal(c->streaming.granularity, "token");
    cfg_free(c);
}

static void syntax_error_names_line_and_column(void **st) {
    (void)st;
    cf_err err = {0};
    cfg_t *c = load("server:\n  port: 8080\n  host: [unclosed\n", &err);
    assert_null(c);
    assert_int_equal(err.code, CF_EINVAL);
    assert_non_null(strstr(err.msg, "t.yaml:"));
    assert_non_null(strstr(err.msg, "syntax error"));
    /* The location is a real line:column of the document. */
    int line = 0, col = 0;
    assert_int_equal(sscanf(err.msg, "t.yaml:%d:%d", &line, &col), 2);
    assert_true(line >= 3 && line <= 4);
    /* 1-based like every other location: an error on the first line is line 1. */
    assert_null(load("a: b: c\n", &err));
    assert_int_equal(sscanf(err.msg, "t.yaml:%d:%d", &line, &col), 2);
    assert_int_equal(line, 1);
}

static void wrong_type_is_an_error_with_location(void **st) {
    (void)st;
    cf_err err = {0};
    assert_null(load("server:\n  port: eighty\n", &err));
    assert_string_equal(err.msg, "t.yaml:2:9: server.port: expected an integer, found \"eighty\"");
    assert_null(load("server:\n  port: 70000\n", &err));
    assert_non_null(strstr(err.msg, "t.yaml:2:9: server.port: 70000 is out of range"));
    assert_null(load("cache:\n  enabled: maybe\n", &err));
    assert_string_equal(err.msg,
                        "t.yaml:2:12: cache.enabled: expected true or false, found \"maybe\"");
    assert_null(load("models:\n  x:\n    backend: telepathy\n", &err));
    assert_non_null(
        strstr(err.msg, "t.yaml:3:14: backend: \"telepathy\" is not one of: local, openai"));
    assert_null(load("prompts: [a, b]\n", &err));
    assert_non_null(strstr(err.msg, "prompts: expected a mapping, found a list"));
    assert_null(load("server:\n  host: {a: 1}\n", &err));
    assert_non_null(strstr(err.msg, "server.host: expected a scalar value, found a mapping"));
}

static void unknown_key_is_a_warning_with_location(void **st) {
    (void)st;
    cf_err err = {0};
    cfg_t *c = load("server:\n  prot: 9000\ncolour: blue\n", &err);
    assert_non_null(c);
    assert_int_equal(c->n_warnings, 2);
    assert_string_equal(c->warnings[0], "t.yaml:2:3: unknown key \"prot\" in server (ignored)");
    assert_string_equal(c->warnings[1],
                        "t.yaml:3:1: unknown key \"colour\" in the top level (ignored)");
    assert_int_equal(c->server.port, 8080); /* default kept */
    cfg_free(c);
}

static void missing_env_var_without_default_is_an_error(void **st) {
    (void)st;
    unsetenv("CONFAB_TEST_UNSET");
    cf_err err = {0};
    assert_null(load("server:\n  host: ${CONFAB_TEST_UNSET}\n", &err));
    assert_int_equal(err.code, CF_EINVAL);
    assert_non_null(strstr(
        err.msg, "t.yaml:2:9: server.host: environment variable CONFAB_TEST_UNSET is not set"));
}

static void env_vars_and_defaults_are_expanded(void **st) {
    (void)st;
    setenv("CONFAB_TEST_PORT", "9191", 1);
    unsetenv("CONFAB_TEST_UNSET");
    cf_err err = {0};
    cfg_t *c =
        load("server:\n  port: ${CONFAB_TEST_PORT}\n  host: \"${CONFAB_TEST_UNSET:-0.0.0.0}\"\n"
             "storage:\n  data_dir: /srv/$${literal}\n",
             &err);
    if (!c) fail_msg("%s", err.msg);
    assert_int_equal(c->server.port, 9191);
    assert_string_equal(c->server.host, "0.0.0.0");
    assert_string_equal(c->storage.data_dir, "/srv/${literal}");
    cfg_free(c);
    char *s = cfg_expand_env("a${CONFAB_TEST_UNSET:-}b", &err);
    assert_string_equal(s, "ab");
    free(s);
    assert_null(cfg_expand_env("x${unterminated", &err));
    assert_non_null(strstr(err.msg, "unterminated"));
    assert_null(cfg_expand_env("${BAD-NAME}", &err));
    assert_non_null(strstr(err.msg, "bad variable name"));
}

static void references_to_unknown_models_are_errors(void **st) {
    (void)st;
    cf_err err = {0};
    assert_null(load("models:\n  a:\n    backend: local\n    fallback: [nope]\n", &err));
    assert_string_equal(err.msg, "t.yaml: model \"a\" falls back to unknown model \"nope\"");
    assert_null(load("default_model: ghost\n", &err));
    assert_non_null(strstr(err.msg, "default_model \"ghost\" is not a configured model"));
    assert_null(
        load("models:\n  a: {backend: local}\nab:\n  t:\n    variants: [{model: a}, {model: b}]\n",
             &err));
    assert_non_null(strstr(err.msg, "ab \"t\" names unknown model \"b\""));
    assert_null(
        load("models:\n  a: {backend: local}\nab:\n  t:\n    variants: [{model: a}]\n", &err));
    assert_non_null(strstr(err.msg, "needs at least two variants"));
}

static void named_models_take_model_over_name(void **st) {
    (void)st;
    cf_err err = {0};
    cfg_t *c = load(
        "models:\n  fast:\n    backend: openai\n    name: ignored-alias\n    model: gpt-4o-mini\n"
        "    fallback: slow\n  slow:\n    backend: anthropic\n    model: claude\n"
        "    headers: {X-Team: \"${CONFAB_TEST_UNSET:-ops}\"}\n",
        &err);
    if (!c) fail_msg("%s", err.msg);
    const cfg_model *m = cfg_find_model(c, "fast");
    assert_string_equal(m->model, "gpt-4o-mini");
    assert_int_equal(m->n_fallback, 1);
    assert_string_equal(m->fallback[0], "slow");
    const cfg_model *s = cfg_find_model(c, "slow");
    assert_int_equal(s->n_headers, 1);
    assert_string_equal(s->header_names[0], "X-Team");
    assert_string_equal(s->header_values[0], "ops");
    cfg_free(c);
}

static void kv_dir_settles_inside_the_data_dir(void **st) {
    (void)st;
    cf_err err = {0};
    cfg_t *c = load("engine: {kv_dir: state}\n", &err);
    cfg_settle_kv_dir(c, "/srv/data");
    assert_string_equal(c->engine.kv_dir, "/srv/data/state");
    cfg_free(c);
    c = load("engine: {kv_dir: /abs/kv}\n", &err);
    cfg_settle_kv_dir(c, "/srv/data");
    assert_string_equal(c->engine.kv_dir, "/abs/kv");
    cfg_free(c);
    c = load("# defaults\n", &err);
    assert_null(c->engine.kv_dir);
    cfg_settle_kv_dir(c, "./d");
    assert_string_equal(c->engine.kv_dir, "./d/kv");
    cfg_free(c);
}

static void empty_document_gives_defaults(void **st) {
    (void)st;
    cf_err err = {0};
    cfg_t *c = load("# nothing here\n", &err);
    assert_non_null(c);
    assert_int_equal(c->n_models, 0);
    assert_string_equal(c->server.host, "127.0.0.1");
    assert_string_equal(c->storage.data_dir, "./data");
    cfg_free(c);
}

static void search_order_is_explicit_env_cwd_home(void **st) {
    (void)st;
    char *dir = tu_tmpdir();
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    char p[8400], home[4200];
    snprintf(home, sizeof home, "%s/home/.config/confab", dir);
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", home);
    assert_int_equal(system(cmd), 0);
    snprintf(p, sizeof p, "%s/config.yaml", home);
    tu_write_file(p, "server: {port: 1001}\n", 21);
    snprintf(p, sizeof p, "%s/confab.yaml", dir);
    tu_write_file(p, "server: {port: 1002}\n", 21);
    snprintf(p, sizeof p, "%s/env.yaml", dir);
    tu_write_file(p, "server: {port: 1003}\n", 21);
    snprintf(p, sizeof p, "%s/explicit.yaml", dir);
    tu_write_file(p, "server: {port: 1004}\n", 21);
    char *old_home = getenv("HOME") ? strdup(getenv("HOME")) : NULL;
    snprintf(home, sizeof home, "%s/home", dir);
    setenv("HOME", home, 1);
    assert_int_equal(chdir(dir), 0);
    cf_err err = {0};
    snprintf(p, sizeof p, "%s/env.yaml", dir);
    setenv("CONFAB_CONFIG", p, 1);
    cfg_t *c = cfg_load("explicit.yaml", &err);
    assert_int_equal(c->server.port, 1004);
    cfg_free(c);
    c = cfg_load(NULL, &err);
    assert_int_equal(c->server.port, 1003);
    cfg_free(c);
    unsetenv("CONFAB_CONFIG");
    c = cfg_load(NULL, &err);
    assert_int_equal(c->server.port, 1002);
    cfg_free(c);
    unlink("confab.yaml");
    c = cfg_load(NULL, &err);
    assert_int_equal(c->server.port, 1001);
    cfg_free(c);
    assert_null(cfg_load("missing.yaml", &err));
    assert_int_equal(err.code, CF_ENOTFOUND);
    assert_non_null(strstr(err.msg, "missing.yaml"));
    assert_int_equal(chdir(cwd), 0);
    if (old_home) setenv("HOME", old_home, 1);
    free(old_home);
    tu_rmtree(dir);
    free(dir);
}

static void show_masks_api_keys(void **st) {
    (void)st;
    setenv("OPENAI_API_KEY", "sk-secret-value", 1);
    cf_err err = {0};
    cfg_t *c = load(SEED, &err);
    char *j = cfg_to_json(c);
    assert_null(strstr(j, "sk-secret-value"));
    assert_non_null(strstr(j, "\"api_key\": \"***\""));
    free(j);
    cfg_free(c);
}

static void cli_reports_errors_and_usage(void **st) {
    (void)st;
    char *dir = tu_tmpdir();
    char p[4200], cmd[9000];
    snprintf(p, sizeof p, "%s/bad.yaml", dir);
    tu_write_file(p, "server:\n  port: x\n", 18);
    char *out = NULL;
    snprintf(cmd, sizeof cmd, "%s config check --config %s 2>&1", tu_confab_bin(), p);
    assert_int_equal(tu_run(cmd, &out), 1);
    assert_non_null(strstr(out, "bad.yaml:2:9: server.port: expected an integer"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s config frobnicate 2>&1", tu_confab_bin());
    assert_int_equal(tu_run(cmd, &out), 2);
    assert_non_null(strstr(out, "unknown action 'frobnicate'"));
    assert_non_null(strstr(out, "usage:"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s config check --bogus 2>&1", tu_confab_bin());
    assert_int_equal(tu_run(cmd, &out), 2);
    free(out);
    snprintf(cmd, sizeof cmd, "%s nosuchcommand 2>&1", tu_confab_bin());
    assert_int_equal(tu_run(cmd, &out), 2);
    assert_non_null(strstr(out, "unknown command 'nosuchcommand'"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s --log-level shouty version 2>&1", tu_confab_bin());
    assert_int_equal(tu_run(cmd, &out), 2);
    free(out);
    snprintf(cmd, sizeof cmd, "%s version", tu_confab_bin());
    assert_int_equal(tu_run(cmd, &out), 0);
    assert_non_null(strstr(out, "confab "));
    assert_non_null(strstr(out, "cpu: "));
    assert_non_null(strstr(out, "sqlite"));
    free(out);
    tu_rmtree(dir);
    free(dir);
}

static void sessions_cli_finds_the_database_through_the_config(void **st) {
    (void)st;
    char *dir = tu_tmpdir();
    char cfgp[4200], exp[4200], cmd[9000];
    snprintf(cfgp, sizeof cfgp, "%s/c.yaml", dir);
    snprintf(exp, sizeof exp, "%s/e.json", dir);
    char yaml[4300];
    int n = snprintf(yaml, sizeof yaml, "storage: {data_dir: %s/d, db: my.db}\n", dir);
    tu_write_file(cfgp, yaml, (size_t)n);
    const char *doc = "{\"format\":\"confab-export\",\"version\":1,\"sessions\":[]}";
    tu_write_file(exp, doc, strlen(doc));
    snprintf(cmd, sizeof cmd, "%s sessions import %s --config %s 2>&1", tu_confab_bin(), exp, cfgp);
    char *out = NULL;
    assert_int_equal(tu_run(cmd, &out), 0);
    free(out);
    char db[4300];
    snprintf(db, sizeof db, "%s/d/my.db", dir);
    assert_int_equal(access(db, F_OK), 0); /* created where the config says */
    snprintf(cmd, sizeof cmd, "%s sessions list --json --config %s", tu_confab_bin(), cfgp);
    assert_int_equal(tu_run(cmd, &out), 0);
    free(out);
    tu_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(seed_example_loads_as_written),
        cmocka_unit_test(seed_example_without_key_disables_only_the_fallback),
        cmocka_unit_test(example_file_loads_without_warnings),
        cmocka_unit_test(syntax_error_names_line_and_column),
        cmocka_unit_test(wrong_type_is_an_error_with_location),
        cmocka_unit_test(unknown_key_is_a_warning_with_location),
        cmocka_unit_test(missing_env_var_without_default_is_an_error),
        cmocka_unit_test(env_vars_and_defaults_are_expanded),
        cmocka_unit_test(references_to_unknown_models_are_errors),
        cmocka_unit_test(named_models_take_model_over_name),
        cmocka_unit_test(kv_dir_settles_inside_the_data_dir),
        cmocka_unit_test(empty_document_gives_defaults),
        cmocka_unit_test(search_order_is_explicit_env_cwd_home),
        cmocka_unit_test(show_masks_api_keys),
        cmocka_unit_test(cli_reports_errors_and_usage),
        cmocka_unit_test(sessions_cli_finds_the_database_through_the_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
