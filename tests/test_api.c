/* Tests for src/server/api.c: the chat service behind HTTP — the
 * OpenAI-compatible API, the sessions API, templates, stats, compare and
 * votes, and their error paths — in-process on 127.0.0.1 against a fake
 * OpenAI-compatible upstream. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/chat.h"
#include "app/routing.h"
#include "fake_upstream.h"
#include "http_client.h"
#include "server/api.h"
#include "server/server.h"
#include "testutil.h"

typedef struct {
    char *dir;
    fu_server *up;
    cfg_t *cfg;
    app_routing *routing;
    chat_service *cs;
    srv_t *srv;
    srv_api *api;
} fx;

static const fu_response OK = {.content_type = "text/event-stream", .body = FU_OPENAI_STREAM};

/* UPSTREAM answers every request (NULL: a normal streamed reply). */
static fx *fx_new_up(const char *extra_yaml, bool keys, const fu_response *upstream) {
    fx *f = calloc(1, sizeof *f);
    f->dir = tu_tmpdir();
    f->up = fu_start(upstream ? upstream : &OK, 1);
    char url[128], yaml[4096];
    fu_url(f->up, "/v1", url);
    snprintf(yaml, sizeof yaml,
             "models:\n  m:\n    backend: openai\n    model: gpt-4o-mini\n    base_url: %s\n    "
             "api_key: sk-t\n"
             "    price: {input: 1.0, output: 2.0}\n  m2:\n    backend: openai\n    model: other\n"
             "    base_url: %s\n    api_key: sk-t\n"
             "router: {max_retries: 0}\nprompts:\n  explain: \"Explain {concept}\"\n%s",
             url, url, extra_yaml ? extra_yaml : "");
    cf_err err = {0};
    f->cfg = cfg_load_string(yaml, strlen(yaml), "t.yaml", &err);
    if (!f->cfg) fail_msg("%s", err.msg);
    f->routing = app_routing_new(f->cfg, NULL, &err);
    char db[4200], cache[4200];
    snprintf(db, sizeof db, "%s/confab.db", f->dir);
    snprintf(cache, sizeof cache, "%s/cache.db", f->dir);
    chat_service_opts co = {.cfg = f->cfg,
                            .router = app_routing_router(f->routing),
                            .db_path = db,
                            .cache_path = cache};
    f->cs = chat_service_new(&co, &err);
    assert_non_null(f->cs);
    srv_options o = {.host = "127.0.0.1", .port = 0};
    const char *k[] = {"key-alice", "key-bob"};
    if (keys) {
        o.api_keys = k;
        o.n_api_keys = 2;
    }
    f->srv = srv_new(&o, &err);
    assert_non_null(f->srv);
    f->api = srv_api_new(f->srv, f->cs, &err);
    assert_non_null(f->api);
    assert_int_equal(srv_start(f->srv, &err), 0);
    g_port = srv_port(f->srv);
    return f;
}

static fx *fx_new(const char *extra_yaml, bool keys) { return fx_new_up(extra_yaml, keys, NULL); }

static void fx_free(fx *f) {
    srv_shutdown(f->srv, 2000);
    srv_api_free(f->api);
    chat_service_free(f->cs);
    app_routing_free(f->routing);
    srv_free(f->srv);
    cfg_free(f->cfg);
    fu_stop(f->up);
    tu_rmtree(f->dir);
    free(f->dir);
    free(f);
}

static json_t *body_json(const resp *r) {
    json_error_t je;
    json_t *j = json_loads(r->body.data ? r->body.data : "", 0, &je);
    if (!j) fail_msg("not JSON (%ld): %s", r->status, r->body.data ? r->body.data : "");
    return j;
}

static resp post(const char *path, const char *body, const char *key) {
    return http((req_opts){.method = "POST", .path = path, .body = body, .key = key});
}

static const char *code_of(json_t *j) {
    return json_string_value(json_object_get(json_object_get(j, "error"), "code"));
}

static void openai_completion_non_streamed(void **st) {
    (void)st;
    fx *f = fx_new(NULL, false);
    resp r = post("/v1/chat/completions",
                  "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", NULL);
    assert_int_equal(r.status, 200);
    json_t *j = body_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "object")), "chat.completion");
    json_t *msg = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "message");
    assert_string_equal(json_string_value(json_object_get(msg, "content")), "Hello, wörld");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(j, "usage"), "completion_tokens")), 4);
    json_decref(j);
    resp_free(&r);
    fx_free(f);
}

static void openai_completion_streamed_with_usage(void **st) {
    (void)st;
    fx *f = fx_new(NULL, false);
    resp r = post(
        "/v1/chat/completions",
        "{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":true},"
        "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}]}",
        NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body.data, "chat.completion.chunk"));
    assert_non_null(strstr(r.body.data, "\"content\":\"Hello\""));
    assert_non_null(strstr(r.body.data, "\"finish_reason\":\"stop\""));
    assert_non_null(strstr(r.body.data, "\"prompt_tokens\":12"));
    assert_non_null(strstr(r.body.data, "data: [DONE]"));
    resp_free(&r);
    fx_free(f);
}

static void openai_errors_have_openai_shape(void **st) {
    (void)st;
    fx *f = fx_new(NULL, false);
    struct {
        const char *body;
        long status;
        const char *code;
    } cases[] = {
        {"{\"model\":\"nope\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", 404,
         "model_not_found"},
        {"{\"model\":\"m\"}", 400, "invalid_value"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"wizard\",\"content\":\"hi\"}]}", 400,
         "invalid_value"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"n\":2}", 400,
         "invalid_value"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":"
         "\"hot\"}",
         400, "invalid_value"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"session_id\":"
         "999}",
         404, "session_not_found"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"content\":\"hi\"}]}", 400,
         "invalid_value"},
        {"{not json", 400, "invalid_json"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        resp r = post("/v1/chat/completions", cases[i].body, NULL);
        json_t *j = body_json(&r);
        if (r.status != cases[i].status || !code_of(j) || strcmp(code_of(j), cases[i].code))
            fail_msg("case %zu: got %ld %s", i, r.status, r.body.data);
        json_decref(j);
        resp_free(&r);
    }
    assert_int_equal(fu_requests(f->up), 0);
    fx_free(f);
}

static void rate_limited_upstream_gives_429_with_retry_after(void **st) {
    (void)st;
    fu_response busy = {.status = 429,
                        .content_type = "application/json",
                        .content_length = true,
                        .headers = "Retry-After: 7\r\n",
                        .body = "{\"error\":{\"message\":\"slow down\"}}"};
    fx *f = fx_new_up(NULL, false, &busy);
    resp r = post("/v1/chat/completions",
                  "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", NULL);
    assert_int_equal(r.status, 429);
    assert_non_null(hdr(&r, "Retry-After"));
    assert_string_equal(hdr(&r, "Retry-After"), "7");
    json_t *j = body_json(&r);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "error"), "type")),
                        "rate_limit_error");
    json_decref(j);
    resp_free(&r);
    fx_free(f);
}

static void session_id_stores_the_exchange(void **st) {
    (void)st;
    fx *f = fx_new(NULL, false);
    resp c =
        post("/api/sessions", "{\"title\":\"From the API\",\"system_prompt\":\"Be brief.\"}", NULL);
    assert_int_equal(c.status, 201);
    json_t *s = body_json(&c);
    json_int_t id = json_integer_value(json_object_get(s, "id"));
    json_decref(s);
    resp_free(&c);
    char body[256];
    snprintf(body, sizeof body,
             "{\"model\":\"m\",\"session_id\":%lld,\"messages\":[{\"role\":\"user\",\"content\":"
             "\"hi there\"}]}",
             (long long)id);
    resp r = post("/v1/chat/completions", body, NULL);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    char *up = fu_last(f->up);
    assert_non_null(strstr(up, "Be brief.")); /* the session's system prompt */
    free(up);
    char path[64];
    snprintf(path, sizeof path, "/api/sessions/%lld", (long long)id);
    resp g = get(path, NULL);
    assert_int_equal(g.status, 200);
    json_t *j = body_json(&g);
    json_t *msgs = json_object_get(j, "messages");
    assert_int_equal(json_array_size(msgs), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 0), "content")),
                        "hi there");
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 1), "content")),
                        "Hello, wörld");
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 1), "status")),
                        "complete");
    assert_true(json_is_null(json_object_get(j, "generation_id")));
    json_decref(j);
    resp_free(&g);
    fx_free(f);
}

static void sessions_crud_search_export_import(void **st) {
    (void)st;
    fx *f = fx_new(NULL, false);
    resp c = post("/api/sessions", "{}", NULL);
    json_t *s = body_json(&c);
    json_int_t id = json_integer_value(json_object_get(s, "id"));
    json_decref(s);
    resp_free(&c);
    char path[128], body[256];
    snprintf(path, sizeof path, "/api/sessions/%lld/messages", (long long)id);
    resp m = post(path, "{\"content\":\"platypus facts please\"}", NULL);
    assert_int_equal(m.status, 202);
    json_t *mj = body_json(&m);
    const char *gid = json_string_value(json_object_get(mj, "generation_id"));
    assert_non_null(gid);
    /* Follow the generation's events to the end. */
    char evpath[128];
    snprintf(evpath, sizeof evpath, "/api/generations/%s/events", gid);
    resp ev = get(evpath, NULL);
    assert_int_equal(ev.status, 200);
    assert_non_null(strstr(ev.body.data, "\"type\":\"delta\""));
    assert_non_null(strstr(ev.body.data, "\"type\":\"done\""));
    resp_free(&ev);
    json_decref(mj);
    resp_free(&m);
    /* Rename, list, search. */
    snprintf(path, sizeof path, "/api/sessions/%lld", (long long)id);
    resp p =
        http((req_opts){.method = "PATCH", .path = path, .body = "{\"title\":\"Monotremes\"}"});
    assert_int_equal(p.status, 200);
    resp_free(&p);
    resp l = get("/api/sessions", NULL);
    assert_non_null(strstr(l.body.data, "Monotremes"));
    resp_free(&l);
    resp q = get("/api/search?q=platypus", NULL);
    assert_int_equal(q.status, 200);
    assert_non_null(strstr(q.body.data, "[platypus]"));
    resp_free(&q);
    resp q2 = get("/api/search?q=%22unbalanced", NULL);
    assert_int_equal(q2.status, 200); /* user text never breaks the query */
    resp_free(&q2);
    /* Export both ways; the JSON imports back without duplicates. */
    snprintf(path, sizeof path, "/api/sessions/%lld/export?format=markdown", (long long)id);
    resp md = get(path, NULL);
    assert_int_equal(md.status, 200);
    assert_non_null(strstr(md.body.data, "Monotremes"));
    assert_non_null(strstr(hdr(&md, "Content-Disposition"), "attachment"));
    resp_free(&md);
    snprintf(path, sizeof path, "/api/sessions/%lld/export?format=json", (long long)id);
    resp ex = get(path, NULL);
    assert_int_equal(ex.status, 200);
    resp im = post("/api/import", ex.body.data, NULL);
    assert_int_equal(im.status, 200);
    assert_non_null(strstr(im.body.data, "\"sessions_imported\":0"));
    resp_free(&im);
    resp bad =
        post("/api/import", "{\"format\":\"confab-export\",\"version\":99,\"sessions\":[]}", NULL);
    assert_int_equal(bad.status, 400);
    resp_free(&bad);
    resp_free(&ex);
    snprintf(path, sizeof path, "/api/sessions/%lld/export?format=pdf", (long long)id);
    resp pdf = get(path, NULL);
    assert_int_equal(pdf.status, 400);
    resp_free(&pdf);
    /* Delete: gone afterwards. */
    snprintf(path, sizeof path, "/api/sessions/%lld", (long long)id);
    resp d = http((req_opts){.method = "DELETE", .path = path});
    assert_int_equal(d.status, 204);
    resp_free(&d);
    resp g = get(path, NULL);
    assert_int_equal(g.status, 404);
    resp_free(&g);
    (void)body;
    fx_free(f);
}

static void sessions_belong_to_their_key(void **st) {
    (void)st;
    fx *f = fx_new(NULL, true);
    resp c = post("/api/sessions", "{\"title\":\"alice's\"}", "key-alice");
    assert_int_equal(c.status, 201);
    json_t *s = body_json(&c);
    json_int_t id = json_integer_value(json_object_get(s, "id"));
    json_decref(s);
    resp_free(&c);
    char path[64];
    snprintf(path, sizeof path, "/api/sessions/%lld", (long long)id);
    resp a = get(path, "key-alice");
    assert_int_equal(a.status, 200);
    resp_free(&a);
    resp b = get(path, "key-bob");
    assert_int_equal(b.status, 404);
    resp_free(&b);
    resp lb = get("/api/sessions", "key-bob");
    assert_null(strstr(lb.body.data, "alice's"));
    resp_free(&lb);
    char body[256];
    snprintf(body, sizeof body,
             "{\"model\":\"m\",\"session_id\":%lld,\"messages\":[{\"role\":\"user\",\"content\":"
             "\"x\"}]}",
             (long long)id);
    resp o = post("/v1/chat/completions", body, "key-bob");
    assert_int_equal(o.status, 404);
    resp_free(&o);
    resp n = get("/api/sessions", NULL);
    assert_int_equal(n.status, 401);
    resp_free(&n);
    fx_free(f);
}

static void bad_session_bodies_get_one_clear_400(void **st) {
    (void)st;
    fx *f = fx_new(NULL, false);
    resp c = post("/api/sessions", "{}", NULL);
    json_t *s = body_json(&c);
    char path[64];
    snprintf(path, sizeof path, "/api/sessions/%lld",
             (long long)json_integer_value(json_object_get(s, "id")));
    json_decref(s);
    resp_free(&c);
    struct {
        const char *body, *param;
    } cases[] = {{"{\"title\":5,\"archived\":true}", "title"},
                 {"{\"archived\":\"yes\"}", "archived"},
                 {"[1]", NULL}};
    for (size_t i = 0; i < 3; i++) {
        resp p = http((req_opts){.method = "PATCH", .path = path, .body = cases[i].body});
        assert_int_equal(p.status, 400);
        json_t *j = body_json(&p); /* one JSON document: a single answer */
        json_t *param = json_object_get(json_object_get(j, "error"), "param");
        if (cases[i].param) assert_string_equal(json_string_value(param), cases[i].param);
        json_decref(j);
        resp_free(&p);
    }
    resp m = post("/api/sessions", "{\"model\":\"ghost\"}", NULL);
    assert_int_equal(m.status, 404);
    resp_free(&m);
    fx_free(f);
}

static void templates_list_and_render(void **st) {
    (void)st;
    fx *f = fx_new(NULL, false);
    resp l = get("/api/templates", NULL);
    assert_non_null(strstr(l.body.data, "\"placeholders\":[\"concept\"]"));
    resp_free(&l);
    resp r =
        post("/api/templates/explain/render", "{\"values\":{\"concept\":\"recursion\"}}", NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body.data, "Explain recursion"));
    resp_free(&r);
    resp bad = post("/api/templates/explain/render", "{\"values\":{\"concpt\":\"x\"}}", NULL);
    assert_int_equal(bad.status, 400);
    assert_non_null(strstr(bad.body.data, "no placeholder {concpt}"));
    resp_free(&bad);
    resp nf = post("/api/templates/nope/render", "{}", NULL);
    assert_int_equal(nf.status, 404);
    resp_free(&nf);
    fx_free(f);
}

static void compare_vote_and_stats(void **st) {
    (void)st;
    fx *f = fx_new(NULL, false);
    resp c =
        post("/api/compare", "{\"content\":\"which is better?\",\"models\":[\"m\",\"m2\"]}", NULL);
    assert_int_equal(c.status, 202);
    json_t *j = body_json(&c);
    json_t *gens = json_object_get(j, "generations");
    assert_int_equal(json_array_size(gens), 2);
    json_int_t sid = json_integer_value(json_object_get(j, "session_id"));
    for (int i = 0; i < 2; i++) {
        char path[128];
        snprintf(path, sizeof path, "/api/generations/%s/events",
                 json_string_value(json_array_get(gens, (size_t)i)));
        resp ev = get(path, NULL);
        assert_non_null(strstr(ev.body.data, "\"type\":\"done\""));
        resp_free(&ev);
    }
    json_decref(j);
    resp_free(&c);
    char path[64];
    snprintf(path, sizeof path, "/api/sessions/%lld", (long long)sid);
    resp g = get(path, NULL);
    json_t *s = body_json(&g);
    json_t *msgs = json_object_get(s, "messages");
    assert_int_equal(json_array_size(msgs), 3); /* one question, two alternatives */
    json_int_t qid = json_integer_value(json_object_get(json_array_get(msgs, 0), "id"));
    json_int_t a = json_integer_value(json_object_get(json_array_get(msgs, 1), "id"));
    json_int_t b = json_integer_value(json_object_get(json_array_get(msgs, 2), "id"));
    assert_int_equal(json_integer_value(json_object_get(json_array_get(msgs, 1), "parent_id")),
                     qid);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(msgs, 2), "parent_id")),
                     qid);
    json_decref(s);
    resp_free(&g);
    char body[256];
    snprintf(body, sizeof body,
             "{\"session_id\":%lld,\"message_a\":%lld,\"message_b\":%lld,\"model_a\":\"m\",\"model_"
             "b\":\"m2\",\"winner\":\"b\"}",
             (long long)sid, (long long)a, (long long)b);
    resp v = post("/api/votes", body, NULL);
    assert_int_equal(v.status, 201);
    resp_free(&v);
    resp bv = post("/api/votes", "{\"winner\":\"c\"}", NULL);
    assert_int_equal(bv.status, 400);
    resp_free(&bv);
    resp stt = get("/api/stats", NULL);
    assert_int_equal(stt.status, 200);
    json_t *sj = body_json(&stt);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(sj, "tokens"), "replies")),
                     2);
    json_t *ab = json_array_get(json_object_get(sj, "ab"), 0);
    assert_int_equal(json_integer_value(json_object_get(ab, "wins_b")), 1);
    assert_true(json_is_object(json_object_get(sj, "cache")));
    json_decref(sj);
    resp_free(&stt);
    fx_free(f);
}

static void models_lists_configured_models(void **st) {
    (void)st;
    fx *f = fx_new(NULL, false);
    resp r = get("/v1/models", NULL);
    assert_int_equal(r.status, 200);
    json_t *j = body_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "object")), "list");
    assert_int_equal(json_array_size(json_object_get(j, "data")), 2);
    json_decref(j);
    resp_free(&r);
    fx_free(f);
}

int main(void) {
    cf_err err = {0};
    if (prov_global_init(&err)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(openai_completion_non_streamed),
        cmocka_unit_test(openai_completion_streamed_with_usage),
        cmocka_unit_test(openai_errors_have_openai_shape),
        cmocka_unit_test(rate_limited_upstream_gives_429_with_retry_after),
        cmocka_unit_test(session_id_stores_the_exchange),
        cmocka_unit_test(sessions_crud_search_export_import),
        cmocka_unit_test(sessions_belong_to_their_key),
        cmocka_unit_test(bad_session_bodies_get_one_clear_400),
        cmocka_unit_test(templates_list_and_render),
        cmocka_unit_test(compare_vote_and_stats),
        cmocka_unit_test(models_lists_configured_models),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    prov_global_cleanup();
    return rc;
}
