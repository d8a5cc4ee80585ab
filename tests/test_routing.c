/* Tests for src/app/routing: config.yaml -> router, end to end against a
 * fake OpenAI-compatible upstream on 127.0.0.1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/config.h"
#include "app/routing.h"
#include "base/sb.h"
#include "fake_upstream.h"
#include "testutil.h"

typedef struct {
    sb_t text;
    int errors;
} got;

static void on_event(void *ud, const prov_event *ev) {
    got *g = ud;
    if (ev->kind == PROV_EV_DELTA) sb_appendn(&g->text, ev->text, ev->len);
    if (ev->kind == PROV_EV_ERROR) g->errors++;
}

static prov_request one_message(const prov_msg *m) {
    prov_request q = {.msgs = m, .n_msgs = 1, .stream = true};
    return q;
}

static cfg_t *load(const char *yaml) {
    cf_err err = {0};
    cfg_t *c = cfg_load_string(yaml, strlen(yaml), "t.yaml", &err);
    if (!c) fail_msg("%s", err.msg);
    return c;
}

static void configured_model_streams_from_its_base_url(void **st) {
    (void)st;
    fu_response ok = {.content_type = "text/event-stream", .body = FU_OPENAI_STREAM};
    fu_server *s = fu_start(&ok, 1);
    char url[128], yaml[1024];
    fu_url(s, "/v1", url);
    snprintf(yaml, sizeof yaml,
             "models:\n  fast:\n    backend: openai\n    model: gpt-4o-mini\n    base_url: %s\n"
             "    api_key: sk-test\n    price: {input: 1.0, output: 2.0}\n",
             url);
    cfg_t *c = load(yaml);
    cf_err err = {0};
    app_routing *a = app_routing_new(c, NULL, &err);
    assert_non_null(a);
    prov_msg m = {PROV_ROLE_USER, "Hi"};
    prov_request q = one_message(&m);
    got g = {0};
    route_result res;
    assert_int_equal(
        route_stream(app_routing_router(a), "fast", &q, NULL, NULL, on_event, &g, &res), 0);
    assert_true(g.text.len > 0);
    assert_string_equal(res.model, "fast");
    assert_string_equal(res.provider, "openai");
    assert_string_equal(res.upstream_model, "gpt-4o-mini");
    assert_true(res.cost.priced);
    /* The request went out with the configured key and upstream id. */
    char *last = fu_last(s);
    assert_non_null(strstr(last, "Bearer sk-test"));
    assert_non_null(strstr(last, "\"gpt-4o-mini\""));
    free(last);
    app_routing_free(a);
    cfg_free(c);
    sb_free(&g.text);
    fu_stop(s);
}

static void missing_key_variable_is_named_when_used(void **st) {
    (void)st;
    unsetenv("OPENAI_API_KEY");
    cfg_t *c =
        load("model:\n  backend: openai\n  name: gpt-4o-mini\n  api_key: \"${OPENAI_API_KEY}\"\n");
    cf_err err = {0};
    app_routing *a = app_routing_new(c, NULL, &err);
    assert_non_null(a);
    prov_msg m = {PROV_ROLE_USER, "Hi"};
    prov_request q = one_message(&m);
    got g = {0};
    route_result res;
    assert_int_not_equal(
        route_stream(app_routing_router(a), "gpt-4o-mini", &q, NULL, NULL, on_event, &g, &res), 0);
    assert_int_equal(res.err_kind, PROV_ERR_CONFIG);
    assert_non_null(strstr(res.error, "environment variable OPENAI_API_KEY is not set"));
    assert_int_equal(g.text.len, 0);
    app_routing_free(a);
    cfg_free(c);
    sb_free(&g.text);
}

static void disabled_model_falls_back_to_the_next(void **st) {
    (void)st;
    unsetenv("CONFAB_TEST_NOKEY");
    fu_response ok = {.content_type = "text/event-stream", .body = FU_OPENAI_STREAM};
    fu_server *s = fu_start(&ok, 1);
    char url[128], yaml[1024];
    fu_url(s, "/v1", url);
    snprintf(yaml, sizeof yaml,
             "models:\n  primary:\n    backend: anthropic\n    model: claude\n"
             "    api_key: \"${CONFAB_TEST_NOKEY}\"\n    fallback: [backup]\n"
             "  backup:\n    backend: openai\n    model: gpt-4o-mini\n    base_url: %s\n",
             url);
    cfg_t *c = load(yaml);
    assert_int_equal(c->n_warnings, 1);
    cf_err err = {0};
    app_routing *a = app_routing_new(c, NULL, &err);
    prov_msg m = {PROV_ROLE_USER, "Hi"};
    prov_request q = one_message(&m);
    got g = {0};
    route_result res;
    assert_int_equal(
        route_stream(app_routing_router(a), "primary", &q, NULL, NULL, on_event, &g, &res), 0);
    assert_string_equal(res.model, "backup");
    assert_true(res.fallbacks >= 1);
    assert_true(g.text.len > 0);
    app_routing_free(a);
    cfg_free(c);
    sb_free(&g.text);
    fu_stop(s);
}

static void ab_config_reaches_the_router(void **st) {
    (void)st;
    cfg_t *c = load("models:\n  a: {backend: openai, model: x, api_key: k}\n  b: {backend: openai, "
                    "model: y, api_key: k}\n"
                    "ab:\n  t:\n    variants: [{model: a, weight: 0}, {model: b, weight: 1}]\n");
    cf_err err = {0};
    app_routing *a = app_routing_new(c, NULL, &err);
    assert_non_null(a);
    /* Weight 0 is never chosen, whatever the session. */
    route_ab_cfg ab = {.name = "t", .n_variants = 2};
    ab.variants[0].model = "a";
    ab.variants[0].weight = 0;
    ab.variants[1].model = "b";
    ab.variants[1].weight = 1;
    for (int i = 0; i < 20; i++) {
        char sid[16];
        snprintf(sid, sizeof sid, "s%d", i);
        assert_int_equal(route_ab_pick(&ab, sid), 1);
    }
    assert_non_null(route_model(app_routing_router(a), "a"));
    assert_null(route_model(app_routing_router(a), "zzz"));
    app_routing_free(a);
    cfg_free(c);
}

static void too_many_fallbacks_are_rejected(void **st) {
    (void)st;
    cfg_t *c = load(
        "models:\n  m0: {backend: openai}\n  m1: {backend: openai}\n  x:\n    backend: openai\n"
        "    fallback: [m0, m1, m0, m1, m0, m1, m0, m1, m0]\n");
    cf_err err = {0};
    assert_null(app_routing_new(c, NULL, &err));
    assert_int_equal(err.code, CF_ERANGE);
    assert_non_null(strstr(err.msg, "model x: at most 8 fallbacks"));
    cfg_free(c);
}

int main(void) {
    cf_err err = {0};
    if (prov_global_init(&err)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(configured_model_streams_from_its_base_url),
        cmocka_unit_test(missing_key_variable_is_named_when_used),
        cmocka_unit_test(disabled_model_falls_back_to_the_next),
        cmocka_unit_test(ab_config_reaches_the_router),
        cmocka_unit_test(too_many_fallbacks_are_rejected),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    prov_global_cleanup();
    return rc;
}
