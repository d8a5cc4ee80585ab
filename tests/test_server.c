/* Tests for src/server: an in-process server on 127.0.0.1 (ephemeral port)
 * driven with libcurl and civetweb's WebSocket client, plus the real
 * binary for start-up refusal and SIGTERM shutdown. */
#include "base/clock.h"
#include "base/queue.h"
#include "base/sb.h"
#include "server/auth.h"
#include "server/server.h"
#include "testutil.h"

#include <civetweb.h>
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "http_client.h"

/* Parses an OpenAI-shaped error body; returns its code (static copy). */
static const char *err_code(const resp *r) {
    static char code[64];
    json_t *j = json_loads(sb_str(&r->body), 0, NULL);
    json_t *e = json_object_get(j, "error");
    assert_non_null(e);
    assert_true(json_is_string(json_object_get(e, "message")));
    assert_true(json_is_string(json_object_get(e, "type")));
    assert_non_null(json_object_get(e, "param")); /* present, may be null */
    snprintf(code, sizeof code, "%s", json_string_value(json_object_get(e, "code")));
    json_decref(j);
    return code;
}

/* ------------------------------------------------------------------ */
/* Server fixture                                                      */
/* ------------------------------------------------------------------ */

static const char *KEY_A = "sk-test-alpha-0123456789";
static const char *KEY_B = "sk-test-bravo-9876543210";

static int h_echo(srv_req *r, void *ctx) {
    (void)ctx;
    json_t *j = srv_req_json(r);
    if (!j) return 0;
    json_t *out = json_pack("{s:O, s:s}", "got", j, "owner", r->owner);
    srv_reply_json(r, 200, out);
    json_decref(out);
    json_decref(j);
    return 0;
}

typedef struct {
    gen_registry *gens;
    gen *g;
    int rc;
} stream_ctx;

/* A route that streams a fresh generation and cancels it when the client
 * disconnects, as an OpenAI-style non-resumable stream does. */
static int h_stream_and_cancel(srv_req *r, void *ctx) {
    stream_ctx *sc = ctx;
    srv_sse_start(r);
    sc->rc = srv_sse_follow(r, sc->g, 0, NULL, NULL);
    if (sc->rc == CF_ECLOSED)
        gen_cancel(sc->g);
    else
        srv_sse_end(r);
    return 0;
}

/* OpenAI-style chunks: only deltas, as chat.completion.chunk objects. */
static int openai_fmt(void *ctx, gen *g, const gen_event *ev, sb_t *out) {
    (void)ctx;
    if (ev->type != GEN_EV_DELTA) return 0;
    json_t *p = json_loads(ev->json, 0, NULL);
    json_t *c = json_pack("{s:s, s:s, s:[{s:i, s:{s:O}}]}", "id", gen_id(g), "object",
                          "chat.completion.chunk", "choices", "index", 0, "delta", "content",
                          json_object_get(p, "text"));
    char *t = json_dumps(c, JSON_COMPACT);
    sb_append(out, t);
    free(t);
    json_decref(c);
    json_decref(p);
    return 1;
}

static int h_openai_stream(srv_req *r, void *ctx) {
    stream_ctx *sc = ctx;
    srv_sse_start(r);
    sc->rc = srv_sse_follow(r, sc->g, 0, openai_fmt, NULL);
    if (sc->rc == 0) srv_sse_done(r);
    srv_sse_end(r);
    return 0;
}

/* A stand-in chat service for the OpenAI rendering tests: the reply is
 * "You said: <last message>" in word deltas; model "boom" fails upstream. */
typedef struct {
    gen *g;
    char text[256];
    bool fail;
} echo_prod;

static void *echo_producer(void *p) {
    echo_prod *e = p;
    if (e->fail) {
        gen_delta(e->g, "partial ", 8);
        gen_append(
            e->g, GEN_EV_ERROR,
            "{\"kind\":\"http_5xx\",\"message\":\"upstream failed\",\"provider\":\"openai\"}");
        return NULL;
    }
    char buf[300];
    snprintf(buf, sizeof buf, "You said: %s", e->text);
    int words = 0;
    for (char *w = buf; *w;) {
        if (gen_cancelled(e->g)) {
            gen_done(e->g, "cancelled", "echo-1", "test", false);
            return NULL;
        }
        char *sp = strchr(w, ' ');
        size_t n = sp ? (size_t)(sp - w + 1) : strlen(w);
        gen_delta(e->g, w, n);
        w += n;
        words++;
        clock_sleep_ms(1);
    }
    gen_usage(e->g, 12, words, -1, false);
    gen_done(e->g, "stop", "echo-1", "test", false);
    return NULL;
}

static int h_chat_completions(srv_req *r, void *ctx) {
    (void)ctx;
    json_t *req = srv_req_json(r);
    if (!req) return 0;
    json_t *msgs = json_object_get(req, "messages");
    const char *model = json_string_value(json_object_get(req, "model"));
    const char *content = json_string_value(
        json_object_get(json_array_get(msgs, json_array_size(msgs) - 1), "content"));
    if (!content) {
        json_decref(req);
        return srv_reply_error(r, 400, "invalid_request_error", NULL, "messages",
                               "messages required");
    }
    echo_prod e = {.fail = model && !strcmp(model, "boom")};
    snprintf(e.text, sizeof e.text, "%s", content);
    e.g = gen_start(srv_gens(r->srv), r->owner, NULL, NULL);
    pthread_t t;
    pthread_create(&t, NULL, echo_producer, &e);
    if (json_is_true(json_object_get(req, "stream")))
        srv_openai_stream(
            r, e.g, model,
            json_is_true(json_object_get(json_object_get(req, "stream_options"), "include_usage")));
    else
        srv_openai_reply(r, e.g, model);
    pthread_join(t, NULL);
    gen_unref(e.g);
    json_decref(req);
    return 0;
}

static srv_t *start(srv_options o, stream_ctx *sc) {
    cf_err err = {0};
    if (!o.heartbeat_ms) o.heartbeat_ms = 200;
    srv_t *s = srv_new(&o, &err);
    if (!s) fail_msg("srv_new: %s", err.msg);
    assert_int_equal(srv_route_add(s, "POST", "/test/echo", h_echo, NULL), 0);
    assert_int_equal(srv_route_add(s, "POST", "/v1/chat/completions", h_chat_completions, NULL), 0);
    if (sc) assert_int_equal(srv_route_add(s, "GET", "/test/stream", h_stream_and_cancel, sc), 0);
    if (sc) assert_int_equal(srv_route_add(s, "GET", "/test/openai", h_openai_stream, sc), 0);
    assert_int_equal(srv_start(s, &err), 0);
    g_port = srv_port(s);
    assert_true(g_port > 0);
    assert_int_equal(srv_route_add(s, "GET", "/late", h_echo, NULL), CF_EBUSY);
    return s;
}

static srv_options keyed(void) {
    static const char *keys[2];
    keys[0] = KEY_A;
    static char hashed[80];
    char hex[65];
    srv_sha256_hex(KEY_B, strlen(KEY_B), hex);
    snprintf(hashed, sizeof hashed, "sha256:%s", hex);
    keys[1] = hashed;
    return (srv_options){.api_keys = keys, .n_api_keys = 2};
}

/* ------------------------------------------------------------------ */
/* Auth, limits, errors                                                */
/* ------------------------------------------------------------------ */

static void healthz_needs_no_key_and_reports_status_version_uptime(void **st) {
    (void)st;
    srv_t *s = start(keyed(), NULL);
    resp r = get("/healthz", NULL);
    assert_int_equal(r.status, 200);
    json_t *j = json_loads(sb_str(&r.body), 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "ok");
    assert_true(json_is_string(json_object_get(j, "version")));
    assert_true(json_number_value(json_object_get(j, "uptime_s")) >= 0);
    json_decref(j);
    assert_string_equal(hdr(&r, "Content-Type"), "application/json");
    /* Exactly one Date header, ours (civetweb's own uses gmtime(), which
     * races between threads: found with ThreadSanitizer). */
    int dates = 0;
    for (const char *p = sb_str(&r.headers); (p = strstr(p, "\r\nDate: ")); p++)
        dates++;
    assert_int_equal(dates, 1);
    assert_non_null(strstr(hdr(&r, "Date"), " GMT"));
    /* Permissive CORS must be off by default. */
    assert_null(hdr(&r, "Access-Control-Allow-Origin"));
    resp_free(&r);
    srv_free(s);
}

static void missing_or_wrong_key_gets_401_and_right_keys_pass(void **st) {
    (void)st;
    srv_t *s = start(keyed(), NULL);
    resp r = get("/metrics", NULL);
    assert_int_equal(r.status, 401);
    assert_string_equal(err_code(&r), "invalid_api_key");
    assert_non_null(strstr(sb_str(&r.body), "missing API key"));
    resp_free(&r);
    r = get("/metrics", "sk-wrong");
    assert_int_equal(r.status, 401);
    assert_non_null(strstr(sb_str(&r.body), "incorrect API key"));
    assert_null(strstr(sb_str(&r.body), "sk-wrong")); /* never echoed */
    resp_free(&r);
    /* Without a key, unknown routes are 401 too: nothing to probe. */
    r = get("/v1/secret-route", NULL);
    assert_int_equal(r.status, 401);
    resp_free(&r);
    r = http((req_opts){.path = "/metrics", .h1 = "Authorization: Basic Zm9vOmJhcg=="});
    assert_int_equal(r.status, 401);
    resp_free(&r);
    r = get("/metrics", KEY_A);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    /* The second key was configured as its SHA-256 only. */
    r = get("/metrics", KEY_B);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    /* The owner id handlers get is the key's hash prefix, not the key. */
    r = http((req_opts){.method = "POST", .path = "/test/echo", .key = KEY_A, .body = "{}"});
    assert_int_equal(r.status, 200);
    char hex[65], want[32];
    srv_sha256_hex(KEY_A, strlen(KEY_A), hex);
    snprintf(want, sizeof want, "\"owner\":\"key:%.12s\"", hex);
    assert_non_null(strstr(sb_str(&r.body), want));
    resp_free(&r);
    srv_free(s);
}

static void unauthenticated_loopback_requests_are_owned_by_local(void **st) {
    (void)st;
    srv_t *s = start((srv_options){0}, NULL);
    resp r = http((req_opts){.method = "POST", .path = "/test/echo", .body = "[1]"});
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(sb_str(&r.body), "\"owner\":\"local\""));
    resp_free(&r);
    srv_free(s);
}

static void non_loopback_bind_without_keys_is_refused(void **st) {
    (void)st;
    cf_err err = {0};
    srv_options o = {.host = "0.0.0.0"};
    assert_null(srv_new(&o, &err));
    assert_int_equal(err.code, CF_EAUTH);
    assert_non_null(strstr(err.msg, "--insecure-no-auth"));
    o.insecure_no_auth = true;
    srv_t *s = srv_new(&o, &err);
    assert_non_null(s);
    srv_free(s);
    /* A malformed hashed key is an error, not silently ignored. */
    const char *bad[] = {"sha256:abc"};
    o = (srv_options){.api_keys = bad, .n_api_keys = 1};
    assert_null(srv_new(&o, &err));
    assert_non_null(strstr(err.msg, "64 hex"));
    /* The binary says so and exits 1. */
    char cmd[512], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s serve --host 0.0.0.0 --port 0 2>&1", tu_confab_bin());
    int rc = tu_run(cmd, &out);
    assert_int_equal(rc, 1);
    assert_non_null(strstr(out, "refusing to listen on 0.0.0.0 without API keys"));
    free(out);
}

static void rate_limit_returns_429_with_retry_after(void **st) {
    (void)st;
    srv_options o = keyed();
    o.rate_limit_rpm = 3;
    srv_t *s = start(o, NULL);
    for (int i = 0; i < 3; i++) {
        resp r = get("/metrics", KEY_A);
        assert_int_equal(r.status, 200);
        resp_free(&r);
    }
    resp r = get("/metrics", KEY_A);
    assert_int_equal(r.status, 429);
    assert_string_equal(err_code(&r), "rate_limit_exceeded");
    const char *ra = hdr(&r, "Retry-After");
    assert_non_null(ra);
    int secs = atoi(ra);
    assert_true(secs >= 1 && secs <= 20); /* 3/min: one token per 20 s */
    resp_free(&r);
    /* Limits are per key: the other key still passes. */
    r = get("/metrics", KEY_B);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    /* /healthz is not limited. */
    r = get("/healthz", NULL);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    srv_free(s);
}

static void oversized_body_gets_413(void **st) {
    (void)st;
    srv_t *s = start((srv_options){.max_body_bytes = 1024}, NULL);
    char *big = malloc(4000);
    memset(big, ' ', 3999);
    big[0] = '[';
    big[3998] = ']';
    big[3999] = 0;
    resp r = http((req_opts){.method = "POST", .path = "/test/echo", .body = big});
    assert_int_equal(r.status, 413);
    assert_string_equal(err_code(&r), "request_too_large");
    resp_free(&r);
    /* Without Content-Length (chunked), the limit applies while reading. */
    r = http((req_opts){.method = "POST", .path = "/test/echo", .body = big, .chunked = true});
    assert_int_equal(r.status, 413);
    resp_free(&r);
    /* At the limit it passes. */
    big[1000] = ']';
    big[1001] = 0;
    big[999] = ' ';
    r = http((req_opts){.method = "POST", .path = "/test/echo", .body = big});
    assert_int_equal(r.status, 200);
    resp_free(&r);
    free(big);
    srv_free(s);
}

static void bad_and_too_deep_json_get_400_with_a_clear_message(void **st) {
    (void)st;
    srv_t *s = start((srv_options){0}, NULL);
    resp r = http((req_opts){.method = "POST", .path = "/test/echo", .body = "{\"a\": [1, 2"});
    assert_int_equal(r.status, 400);
    assert_string_equal(err_code(&r), "invalid_json");
    assert_non_null(strstr(sb_str(&r.body), "not valid JSON"));
    resp_free(&r);
    sb_t deep = {0};
    for (int i = 0; i < 100; i++)
        sb_append(&deep, "[");
    for (int i = 0; i < 100; i++)
        sb_append(&deep, "]");
    r = http((req_opts){.method = "POST", .path = "/test/echo", .body = deep.data});
    assert_int_equal(r.status, 400);
    assert_string_equal(err_code(&r), "json_too_deep");
    assert_non_null(strstr(sb_str(&r.body), "deeper than 64"));
    resp_free(&r);
    /* Brackets inside strings do not count. */
    r = http((req_opts){.method = "POST",
                        .path = "/test/echo",
                        .body = "{\"s\":\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
                                "[[[[[[[[[[[[\\\"\"}"});
    assert_int_equal(r.status, 200);
    resp_free(&r);
    r = http((req_opts){.method = "POST", .path = "/test/echo", .body = ""});
    assert_int_equal(r.status, 400);
    resp_free(&r);
    /* Duplicate keys are ambiguous: refused. */
    r = http((req_opts){.method = "POST", .path = "/test/echo", .body = "{\"a\":1,\"a\":2}"});
    assert_int_equal(r.status, 400);
    resp_free(&r);
    sb_free(&deep);
    srv_free(s);
}

static void unknown_route_is_404_and_wrong_method_is_405_with_allow(void **st) {
    (void)st;
    srv_t *s = start((srv_options){0}, NULL);
    resp r = get("/v1/nothing-here", NULL);
    assert_int_equal(r.status, 404);
    assert_string_equal(err_code(&r), "unknown_url");
    resp_free(&r);
    r = http((req_opts){.method = "DELETE", .path = "/test/echo"});
    assert_int_equal(r.status, 405);
    assert_string_equal(hdr(&r, "Allow"), "POST");
    resp_free(&r);
    /* Headers over civetweb's 16 KiB limit: its parser refuses them, and
     * the answer still has our JSON error shape. */
    char *big = malloc(20100);
    memcpy(big, "X-Big: ", 7);
    memset(big + 7, 'a', 20000);
    big[20007] = 0;
    r = http((req_opts){.path = "/healthz", .h1 = big});
    free(big);
    assert_int_equal(r.status, 400);
    assert_string_equal(err_code(&r), "malformed_request");
    resp_free(&r);
    /* Traversal-looking paths do not escape the route table. */
    r = get("/../../etc/passwd", NULL);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    srv_free(s);
}

static void static_ui_is_served_with_type_etag_and_304(void **st) {
    (void)st;
    srv_t *s = start(keyed(), NULL);
    resp r = get("/", NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(hdr(&r, "Content-Type"), "text/html; charset=utf-8");
    assert_non_null(strstr(sb_str(&r.body), "<title>confab</title>"));
    char etag[64];
    snprintf(etag, sizeof etag, "%s", hdr(&r, "ETag"));
    assert_int_equal(etag[0], '"');
    assert_string_equal(hdr(&r, "Cache-Control"), "no-cache");
    resp_free(&r);
    char inm[96];
    snprintf(inm, sizeof inm, "If-None-Match: %s", etag);
    r = http((req_opts){.path = "/index.html", .h1 = inm});
    assert_int_equal(r.status, 304);
    assert_int_equal(r.body.len, 0);
    resp_free(&r);
    srv_free(s);
}

static void cors_is_off_by_default_and_answers_preflight_when_configured(void **st) {
    (void)st;
    srv_t *s = start((srv_options){0}, NULL);
    resp r = http((req_opts){.method = "OPTIONS",
                             .path = "/test/echo",
                             .h1 = "Origin: https://evil.example",
                             .h2 = "Access-Control-Request-Method: POST"});
    assert_null(hdr(&r, "Access-Control-Allow-Origin"));
    assert_int_equal(r.status, 405);
    resp_free(&r);
    srv_free(s);

    const char *origins[] = {"https://app.example"};
    s = start((srv_options){.cors_origins = origins, .n_cors_origins = 1}, NULL);
    r = http((req_opts){.method = "OPTIONS",
                        .path = "/test/echo",
                        .h1 = "Origin: https://app.example",
                        .h2 = "Access-Control-Request-Method: POST"});
    assert_int_equal(r.status, 204);
    assert_string_equal(hdr(&r, "Access-Control-Allow-Origin"), "https://app.example");
    assert_non_null(strstr(hdr(&r, "Access-Control-Allow-Headers"), "Authorization"));
    resp_free(&r);
    r = http((req_opts){.method = "OPTIONS",
                        .path = "/test/echo",
                        .h1 = "Origin: https://evil.example",
                        .h2 = "Access-Control-Request-Method: POST"});
    assert_int_equal(r.status, 403);
    assert_null(hdr(&r, "Access-Control-Allow-Origin"));
    resp_free(&r);
    r = http((req_opts){
        .method = "POST", .path = "/test/echo", .body = "{}", .h1 = "Origin: https://app.example"});
    assert_int_equal(r.status, 200);
    assert_string_equal(hdr(&r, "Access-Control-Allow-Origin"), "https://app.example");
    resp_free(&r);
    srv_free(s);
}

/* ------------------------------------------------------------------ */
/* Metrics                                                             */
/* ------------------------------------------------------------------ */

/* True when every line is a comment (# HELP / # TYPE) or a sample
 * `name{labels} value` with a metric name and a number. */
static bool prometheus_text_ok(const char *t) {
    char line[1024];
    while (*t) {
        const char *eol = strchr(t, '\n');
        if (!eol) return false; /* must end with a newline */
        size_t n = (size_t)(eol - t);
        if (n >= sizeof line) return false;
        memcpy(line, t, n);
        line[n] = 0;
        t = eol + 1;
        if (!strncmp(line, "# HELP ", 7) || !strncmp(line, "# TYPE ", 7)) continue;
        char *sp = strrchr(line, ' ');
        if (!sp) return false;
        char *end;
        strtod(sp + 1, &end);
        if (*end || end == sp + 1) return false;
        if (!(line[0] == '_' || (line[0] >= 'a' && line[0] <= 'z'))) return false;
        char *br = strchr(line, '{');
        if (br && (sp[-1] != '}')) return false;
    }
    return true;
}

static void metrics_are_prometheus_text_and_count_requests_tokens_and_ttft(void **st) {
    (void)st;
    srv_t *s = start((srv_options){0}, NULL);
    resp r = get("/healthz", NULL);
    resp_free(&r);
    r = get("/nope", NULL);
    resp_free(&r);
    gen *g = gen_start(srv_gens(s), "local", NULL, NULL);
    clock_sleep_ms(5);
    gen_delta(g, "hi", 2);
    gen_usage(g, 10, 7, -1, false);
    gen_error(g, "upstream", "boom");
    gen_unref(g);
    srv_metrics_cache(s, true);
    srv_metrics_cache(s, false);
    srv_metrics_cache(s, false);
    srv_metrics_provider_error(s, "openai");
    r = get("/metrics", NULL);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(hdr(&r, "Content-Type"), "text/plain; version=0.0.4"));
    const char *t = sb_str(&r.body);
    assert_true(prometheus_text_ok(t));
    assert_non_null(strstr(t, "# TYPE confab_http_requests_total counter"));
    assert_non_null(strstr(
        t, "confab_http_requests_total{route=\"/healthz\",method=\"GET\",status=\"200\"} 1\n"));
    assert_non_null(strstr(
        t, "confab_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1\n"));
    assert_non_null(strstr(t, "# TYPE confab_http_request_duration_seconds histogram"));
    assert_non_null(strstr(
        t, "confab_http_request_duration_seconds_bucket{route=\"/healthz\",le=\"+Inf\"} 1\n"));
    assert_non_null(strstr(t, "confab_tokens_total{kind=\"completion\"} 7\n"));
    assert_non_null(strstr(t, "confab_time_to_first_token_seconds_count 1\n"));
    assert_non_null(strstr(t, "confab_cache_requests_total{result=\"miss\"} 2\n"));
    assert_non_null(strstr(t, "confab_provider_errors_total{provider=\"openai\"} 1\n"));
    assert_non_null(strstr(t, "confab_generations_total{state=\"error\"} 1\n"));
    assert_non_null(strstr(t, "confab_active_streams"));
    resp_free(&r);
    srv_free(s);
}

/* ------------------------------------------------------------------ */
/* SSE                                                                 */
/* ------------------------------------------------------------------ */

typedef struct {
    req_opts o;
    resp r;
} bg_req;

static void *bg_http(void *p) {
    bg_req *b = p;
    b->r = http(b->o);
    return NULL;
}

/* Sequence ids of the SSE events in BODY, in order. */
static int sse_ids(const char *body, uint64_t *ids, int max) {
    int n = 0;
    for (const char *p = body; (p = strstr(p, "id: ")) && n < max; p += 4)
        ids[n++] = strtoull(p + 4, NULL, 10);
    return n;
}

static void sse_resumes_after_last_event_id_and_follows_live(void **st) {
    (void)st;
    srv_t *s = start(keyed(), NULL);
    char hex[65], owner[20];
    srv_sha256_hex(KEY_A, strlen(KEY_A), hex);
    snprintf(owner, sizeof owner, "key:%.12s", hex);
    gen *g = gen_start(srv_gens(s), owner, "sess-1", NULL);
    for (int i = 1; i <= 5; i++) {
        char t[8];
        snprintf(t, sizeof t, "t%d ", i);
        gen_delta(g, t, strlen(t));
    }
    char path[128];
    snprintf(path, sizeof path, "/api/generations/%s/events", gen_id(g));
    bg_req b = {.o = {.path = path, .key = KEY_A, .h1 = "Last-Event-ID: 2"}};
    pthread_t t;
    pthread_create(&t, NULL, bg_http, &b);
    clock_sleep_ms(150); /* the client is now following live */
    gen_delta(g, "t6 ", 3);
    gen_usage(g, 3, 6, -1, true);
    gen_done(g, "stop", "m", "local", false);
    pthread_join(t, NULL);
    assert_int_equal(b.r.status, 200);
    assert_non_null(strstr(hdr(&b.r, "Content-Type"), "text/event-stream"));
    uint64_t ids[16];
    int n = sse_ids(sb_str(&b.r.body), ids, 16);
    assert_int_equal(n, 6);
    for (int i = 0; i < n; i++)
        assert_int_equal(ids[i], (uint64_t)(3 + i));
    const char *body = sb_str(&b.r.body);
    assert_null(strstr(body, "t2 "));
    assert_non_null(strstr(body, "\"type\":\"delta\""));
    assert_non_null(strstr(body, "\"text\":\"t3 \""));
    assert_non_null(strstr(body, "\"text\":\"t6 \""));
    assert_non_null(strstr(body, "\"type\":\"done\""));
    char want[64];
    snprintf(want, sizeof want, "\"generation_id\":\"%s\",\"seq\":8", gen_id(g));
    assert_non_null(strstr(body, want));
    resp_free(&b.r);

    /* ?after= works as well, and the status route reports the state. */
    char p2[160];
    snprintf(p2, sizeof p2, "%s?after=6", path);
    resp r = get(p2, KEY_A);
    n = sse_ids(sb_str(&r.body), ids, 16);
    assert_int_equal(n, 2);
    assert_int_equal(ids[0], 7);
    resp_free(&r);
    /* An HTTP/1.0 client gets the same events without chunked encoding. */
    r = http((req_opts){.path = p2, .key = KEY_A, .http10 = true});
    assert_int_equal(r.status, 200);
    assert_null(hdr(&r, "Transfer-Encoding"));
    n = sse_ids(sb_str(&r.body), ids, 16);
    assert_int_equal(n, 2);
    assert_null(strstr(sb_str(&r.body), "\r\n0\r\n"));
    resp_free(&r);
    /* Nothing after the end of a finished generation: 204 (EventSource
     * stops reconnecting). */
    r = http((req_opts){.path = path, .key = KEY_A, .h1 = "Last-Event-ID: 8"});
    assert_int_equal(r.status, 204);
    resp_free(&r);
    r = http((req_opts){.path = path, .key = KEY_A, .h1 = "Last-Event-ID: banana"});
    assert_int_equal(r.status, 400);
    assert_string_equal(err_code(&r), "invalid_last_event_id");
    resp_free(&r);
    snprintf(p2, sizeof p2, "/api/generations/%s", gen_id(g));
    r = get(p2, KEY_A);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(sb_str(&r.body), "\"state\":\"done\""));
    assert_non_null(strstr(sb_str(&r.body), "\"last_seq\":8"));
    resp_free(&r);
    /* Params of a finished generation cannot change. */
    char p4[160];
    snprintf(p4, sizeof p4, "/api/generations/%s/params", gen_id(g));
    r = http((req_opts){.method = "POST", .path = p4, .key = KEY_A, .body = "{\"top_p\":0.5}"});
    assert_int_equal(r.status, 409);
    resp_free(&r);
    /* Another key cannot see it. */
    r = get(p2, KEY_B);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    r = get(path, KEY_B);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    /* EventSource cannot send headers: the key may come as access_token. */
    char p3[300];
    snprintf(p3, sizeof p3, "%s?after=7&access_token=%s", path, KEY_A);
    r = get(p3, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(sse_ids(sb_str(&r.body), ids, 16), 1);
    resp_free(&r);
    gen_unref(g);
    srv_free(s);
}

static void params_route_validates_and_applies_overrides(void **st) {
    (void)st;
    srv_t *s = start((srv_options){0}, NULL);
    gen *g = gen_start(srv_gens(s), "local", NULL, NULL);
    char path[128];
    snprintf(path, sizeof path, "/api/generations/%s/params", gen_id(g));
    resp r = http((req_opts){.method = "POST", .path = path, .body = "{\"temperature\":\"hot\"}"});
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(sb_str(&r.body), "temperature must be a number"));
    resp_free(&r);
    r = http((req_opts){.method = "POST", .path = path, .body = "{\"top_p\":1.5}"});
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(sb_str(&r.body), "top_p"));
    resp_free(&r);
    r = http((req_opts){.method = "POST", .path = path, .body = "[]"});
    assert_int_equal(r.status, 400);
    resp_free(&r);
    r = http((req_opts){.method = "POST",
                        .path = path,
                        .body = "{\"temperature\":0.3,\"granularity\":\"sentence\"}"});
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(sb_str(&r.body), "\"granularity\":\"sentence\""));
    resp_free(&r);
    gen_params p;
    assert_int_equal(gen_get_params(g, &p), 1);
    assert_true(p.has_temperature && p.temperature == 0.3 && !p.has_top_p);
    assert_string_equal(p.granularity, "sentence");
    gen_error(g, "test", "end");
    gen_unref(g);
    srv_free(s);
}

static void sse_sends_heartbeats_while_the_generation_is_quiet(void **st) {
    (void)st;
    srv_t *s = start((srv_options){.heartbeat_ms = 100}, NULL);
    gen *g = gen_start(srv_gens(s), "local", NULL, NULL);
    char path[128];
    snprintf(path, sizeof path, "/api/generations/%s/events", gen_id(g));
    bg_req b = {.o = {.path = path}};
    pthread_t t;
    pthread_create(&t, NULL, bg_http, &b);
    clock_sleep_ms(450);
    gen_done(g, "stop", NULL, NULL, false);
    pthread_join(t, NULL);
    int beats = 0;
    for (const char *p = sb_str(&b.r.body); (p = strstr(p, ": keep-alive\n")); p++)
        beats++;
    assert_true(beats >= 2);
    resp_free(&b.r);
    gen_unref(g);
    srv_free(s);
}

typedef struct {
    gen *g;
    int produced;
} slow_prod;

static void *slow_producer(void *p) {
    slow_prod *sp = p;
    for (int i = 0; i < 2000; i++) {
        if (gen_cancelled(sp->g)) {
            gen_done(sp->g, "cancelled", "m", "local", false);
            return NULL;
        }
        gen_delta(sp->g, "x", 1);
        sp->produced++;
        clock_sleep_ms(2);
    }
    gen_done(sp->g, "stop", "m", "local", false);
    return NULL;
}

static void client_disconnect_is_reported_to_the_handler_which_cancels(void **st) {
    (void)st;
    stream_ctx sc = {0};
    srv_t *s = start((srv_options){0}, &sc);
    sc.g = gen_start(srv_gens(s), "local", NULL, NULL);
    slow_prod sp = {.g = sc.g};
    pthread_t pt;
    pthread_create(&pt, NULL, slow_producer, &sp);
    resp r = http((req_opts){.path = "/test/stream", .abort_after_events = 3});
    resp_free(&r);
    pthread_join(pt, NULL); /* ends because the handler cancelled */
    assert_int_equal(sc.rc, CF_ECLOSED);
    assert_int_equal(gen_get_state(sc.g), GEN_CANCELLED);
    assert_true(sp.produced < 2000);
    gen_unref(sc.g);
    srv_free(s);
}

static void sse_follow_with_a_custom_format_ends_with_done_marker(void **st) {
    (void)st;
    stream_ctx sc = {0};
    srv_t *s = start((srv_options){0}, &sc);
    sc.g = gen_start(srv_gens(s), "local", NULL, NULL);
    gen_info(sc.g, "cached", "served from the response cache");
    gen_delta(sc.g, "Hel", 3);
    gen_delta(sc.g, "lo", 2);
    gen_done(sc.g, "stop", "m", "local", true);
    resp r = get("/test/openai", NULL);
    assert_int_equal(r.status, 200);
    const char *b = sb_str(&r.body);
    assert_non_null(strstr(b, "data: {\"id\":"));
    assert_non_null(strstr(b, "\"object\":\"chat.completion.chunk\""));
    assert_non_null(strstr(b, "\"delta\":{\"content\":\"lo\"}"));
    assert_null(strstr(b, "cached")); /* skipped by the format */
    size_t n = strlen(b);
    assert_true(n > 14);
    assert_string_equal(b + n - 14, "data: [DONE]\n\n");
    resp_free(&r);
    gen_unref(sc.g);
    srv_free(s);
}

static void openai_rendering_streams_chunks_usage_and_done(void **st) {
    (void)st;
    srv_t *s = start((srv_options){0}, NULL);
    resp r = http((req_opts){.method = "POST",
                             .path = "/v1/chat/completions",
                             .body = "{\"model\":\"m\",\"stream\":true,\"stream_options\":{"
                                     "\"include_usage\":true},\"messages\":[{\"role\":\"user\","
                                     "\"content\":\"hi there\"}]}"});
    assert_int_equal(r.status, 200);
    const char *b = sb_str(&r.body);
    assert_non_null(strstr(b, "\"object\":\"chat.completion.chunk\""));
    assert_non_null(strstr(b, "\"delta\":{\"content\":\"You \",\"role\":\"assistant\"}"));
    assert_non_null(strstr(b, "\"delta\":{\"content\":\"there\"}"));
    assert_non_null(strstr(b, "\"finish_reason\":\"stop\""));
    assert_non_null(strstr(b, "\"choices\":[],"));
    assert_non_null(
        strstr(b, "\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":4,\"total_tokens\":16}"));
    size_t n = strlen(b);
    assert_string_equal(b + n - 14, "data: [DONE]\n\n");
    resp_free(&r);

    r = http((req_opts){
        .method = "POST",
        .path = "/v1/chat/completions",
        .body = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"yo\"}]}"});
    assert_int_equal(r.status, 200);
    json_t *j = json_loads(sb_str(&r.body), 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "object")), "chat.completion");
    assert_string_equal(json_string_value(json_object_get(j, "model")), "echo-1");
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(c0, "message"), "content")),
        "You said: yo");
    assert_string_equal(json_string_value(json_object_get(c0, "finish_reason")), "stop");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(j, "usage"), "total_tokens")), 15);
    json_decref(j);
    resp_free(&r);

    /* A streaming client that hangs up cancels its generation. */
    sb_t body = {0};
    sb_append(&body,
              "{\"model\":\"m\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"");
    for (int i = 0; i < 40; i++)
        sb_append(&body, "word ");
    sb_append(&body, "\"}]}");
    r = http((req_opts){.method = "POST",
                        .path = "/v1/chat/completions",
                        .body = body.data,
                        .abort_after_events = 2});
    resp_free(&r);
    sb_free(&body);
    for (int i = 0; i < 100 && met_value(srv_metrics(s), "confab_generations_total",
                                         "state=\"cancelled\"") < 1;
         i++)
        clock_sleep_ms(20);
    assert_true(met_value(srv_metrics(s), "confab_generations_total", "state=\"cancelled\"") == 1);

    /* An upstream failure: 502 in OpenAI's shape, or an error event. */
    r = http((req_opts){
        .method = "POST",
        .path = "/v1/chat/completions",
        .body = "{\"model\":\"boom\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}"});
    assert_int_equal(r.status, 502);
    assert_string_equal(err_code(&r), "http_5xx");
    resp_free(&r);
    r = http((req_opts){.method = "POST",
                        .path = "/v1/chat/completions",
                        .body = "{\"model\":\"boom\",\"stream\":true,\"messages\":[{\"role\":"
                                "\"user\",\"content\":\"x\"}]}"});
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(sb_str(&r.body), "data: {\"error\":{\"message\":\"upstream failed\""));
    assert_null(strstr(sb_str(&r.body), "[DONE]"));
    resp_free(&r);
    srv_free(s);
}

/* ------------------------------------------------------------------ */
/* WebSocket                                                           */
/* ------------------------------------------------------------------ */

typedef struct {
    cf_queue *frames; /* malloc'd strings */
    atomic_int closed;
} ws_client;

static int ws_on_data(struct mg_connection *c, int bits, char *data, size_t len, void *u) {
    (void)c;
    ws_client *w = u;
    if ((bits & 0x0f) == MG_WEBSOCKET_OPCODE_TEXT) queue_push(w->frames, strndup(data, len), 1000);
    if ((bits & 0x0f) == MG_WEBSOCKET_OPCODE_CONNECTION_CLOSE) return 0;
    return 1;
}

static void ws_on_close(const struct mg_connection *c, void *u) {
    (void)c;
    ws_client *w = u;
    atomic_store(&w->closed, 1);
}

static struct mg_connection *ws_open(ws_client *w, const char *key) {
    w->frames = queue_new(1024);
    atomic_init(&w->closed, 0);
    char path[256], ebuf[256];
    if (key)
        snprintf(path, sizeof path, "/ws?access_token=%s", key);
    else
        snprintf(path, sizeof path, "/ws");
    struct mg_connection *c = mg_connect_websocket_client("127.0.0.1", g_port, 0, ebuf, sizeof ebuf,
                                                          path, NULL, ws_on_data, ws_on_close, w);
    if (!c) fail_msg("websocket connect: %s", ebuf);
    return c;
}

/* Next frame as JSON (caller decrefs); fails the test after 5 s. */
static json_t *ws_next(ws_client *w) {
    void *item = NULL;
    if (queue_pop(w->frames, &item, 5000) != 0) fail_msg("no WebSocket frame within 5 s");
    json_t *j = json_loads(item, 0, NULL);
    if (!j) fail_msg("frame is not JSON: %s", (char *)item);
    free(item);
    return j;
}

/* Next frame whose "type" is TYPE, skipping others (up to 500). */
static json_t *ws_next_type(ws_client *w, const char *type) {
    for (int i = 0; i < 500; i++) {
        json_t *j = ws_next(w);
        const char *t = json_string_value(json_object_get(j, "type"));
        if (t && !strcmp(t, type)) return j;
        json_decref(j);
    }
    fail_msg("no %s frame", type);
    return NULL;
}

static void ws_say(struct mg_connection *c, const char *txt) {
    mg_websocket_client_write(c, MG_WEBSOCKET_OPCODE_TEXT, txt, strlen(txt));
}

static void ws_close_client(struct mg_connection *c, ws_client *w) {
    mg_close_connection(c);
    void *item;
    while (queue_pop(w->frames, &item, 0) == 0)
        free(item);
    queue_free(w->frames);
}

static const char *jstr(json_t *j, const char *k) {
    return json_string_value(json_object_get(j, k));
}

/* A chat hook for tests: starts a generation and a producer thread that
 * writes N deltas, reporting parameter changes as info events and
 * honouring cancellation. */
typedef struct {
    srv_t *s;
    pthread_t th[8];
    gen *g[8];
    int n;
    int deltas, delay_ms;
} test_chat;

typedef struct {
    gen *g;
    int deltas, delay_ms;
} prod_arg;

static void *chat_producer(void *p) {
    prod_arg *a = p;
    uint64_t seen = 0;
    for (int i = 0; i < a->deltas; i++) {
        if (gen_cancelled(a->g)) {
            gen_done(a->g, "cancelled", "test-model", "test", false);
            free(a);
            return NULL;
        }
        gen_params gp;
        if (gen_get_params(a->g, &gp) != seen) {
            seen = gp.version;
            char m[64];
            snprintf(m, sizeof m, "temperature=%.2f", gp.temperature);
            gen_info(a->g, "params", m);
        }
        char t[16];
        snprintf(t, sizeof t, "w%d ", i);
        gen_delta(a->g, t, strlen(t));
        clock_sleep_ms((uint64_t)a->delay_ms);
    }
    gen_usage(a->g, 4, a->deltas, -1, false);
    gen_done(a->g, "stop", "test-model", "test", false);
    free(a);
    return NULL;
}

static gen *test_hook(void *ctx, const srv_chat_request *rq, cf_err *err) {
    test_chat *tc = ctx;
    if (rq->model && !strcmp(rq->model, "missing")) {
        cf_seterr(err, CF_ENOTFOUND, "unknown model 'missing'");
        return NULL;
    }
    gen *g = gen_start(srv_gens(tc->s), rq->owner, rq->session_id ? rq->session_id : "s-new", err);
    prod_arg *a = malloc(sizeof *a);
    *a = (prod_arg){.g = g, .deltas = tc->deltas, .delay_ms = tc->delay_ms};
    gen_ref(g);
    tc->g[tc->n] = g;
    pthread_create(&tc->th[tc->n++], NULL, chat_producer, a);
    return g;
}

static void test_chat_join(test_chat *tc) {
    for (int i = 0; i < tc->n; i++) {
        gen_cancel(tc->g[i]);
        pthread_join(tc->th[i], NULL);
        gen_unref(tc->g[i]);
    }
}

static void ws_bad_messages_get_error_frames_and_the_connection_stays(void **st) {
    (void)st;
    srv_t *s = start((srv_options){0}, NULL);
    ws_client w;
    struct mg_connection *c = ws_open(&w, NULL);
    json_t *j = ws_next(&w);
    assert_string_equal(jstr(j, "type"), "hello");
    json_decref(j);

    ws_say(c, "{not json");
    j = ws_next(&w);
    assert_string_equal(jstr(j, "type"), "error");
    assert_string_equal(jstr(j, "kind"), "bad_json");
    json_decref(j);
    ws_say(c, "[1,2]");
    j = ws_next(&w);
    assert_string_equal(jstr(j, "kind"), "bad_request");
    json_decref(j);
    ws_say(c, "{\"op\":\"dance\",\"id\":7}");
    j = ws_next(&w);
    assert_string_equal(jstr(j, "kind"), "unknown_op");
    assert_int_equal(json_integer_value(json_object_get(j, "ref")), 7);
    json_decref(j);
    ws_say(c, "{\"op\":\"stop\"}");
    j = ws_next(&w);
    assert_non_null(strstr(jstr(j, "message"), "generation_id"));
    json_decref(j);
    ws_say(c, "{\"op\":\"stop\",\"generation_id\":\"gen_000\"}");
    j = ws_next(&w);
    assert_string_equal(jstr(j, "kind"), "not_found");
    json_decref(j);
    ws_say(c, "{\"op\":\"send\"}");
    j = ws_next(&w);
    assert_non_null(strstr(jstr(j, "message"), "content"));
    json_decref(j);
    /* No chat service wired: an honest error, not a fake reply. */
    ws_say(c, "{\"op\":\"send\",\"content\":\"hello\"}");
    j = ws_next(&w);
    assert_string_equal(jstr(j, "kind"), "unavailable");
    assert_string_equal(jstr(j, "message"), "no chat service configured");
    json_decref(j);
    sb_t deep = {0};
    for (int i = 0; i < 80; i++)
        sb_append(&deep, "{\"a\":");
    sb_append(&deep, "1");
    for (int i = 0; i < 80; i++)
        sb_append(&deep, "}");
    ws_say(c, deep.data);
    sb_free(&deep);
    j = ws_next(&w);
    assert_non_null(strstr(jstr(j, "message"), "deeper than"));
    json_decref(j);
    /* Still open and answering. */
    ws_say(c, "{\"op\":\"ping\",\"id\":\"p1\"}");
    j = ws_next(&w);
    assert_string_equal(jstr(j, "type"), "pong");
    assert_string_equal(jstr(j, "ref"), "p1");
    json_decref(j);
    ws_close_client(c, &w);
    srv_free(s);
}

static void ws_refuses_a_missing_key_with_an_error_frame_and_close(void **st) {
    (void)st;
    srv_t *s = start(keyed(), NULL);
    ws_client w;
    struct mg_connection *c = ws_open(&w, NULL);
    json_t *j = ws_next(&w);
    assert_string_equal(jstr(j, "type"), "error");
    assert_string_equal(jstr(j, "kind"), "auth");
    json_decref(j);
    for (int i = 0; i < 100 && !atomic_load(&w.closed); i++)
        clock_sleep_ms(20);
    assert_true(atomic_load(&w.closed));
    ws_close_client(c, &w);
    c = ws_open(&w, KEY_A);
    j = ws_next(&w);
    assert_string_equal(jstr(j, "type"), "hello");
    json_decref(j);
    ws_close_client(c, &w);
    srv_free(s);
}

static void ws_send_streams_a_reply_and_stop_cancels_it(void **st) {
    (void)st;
    srv_t *s = start((srv_options){0}, NULL);
    test_chat tc = {.s = s, .deltas = 5, .delay_ms = 5};
    srv_set_chat_hook(s, test_hook, &tc);
    ws_client w;
    struct mg_connection *c = ws_open(&w, NULL);
    json_decref(ws_next(&w)); /* hello */

    ws_say(c, "{\"op\":\"send\",\"session_id\":\"s1\",\"content\":\"hi\",\"id\":1}");
    json_t *j = ws_next_type(&w, "started");
    assert_string_equal(jstr(j, "session_id"), "s1");
    char gid[64];
    snprintf(gid, sizeof gid, "%s", jstr(j, "generation_id"));
    json_decref(j);
    sb_t text = {0};
    uint64_t last = 0;
    for (;;) {
        j = ws_next(&w);
        const char *t = jstr(j, "type");
        assert_string_equal(jstr(j, "generation_id"), gid);
        uint64_t seq = (uint64_t)json_integer_value(json_object_get(j, "seq"));
        assert_int_equal(seq, last + 1);
        last = seq;
        if (!strcmp(t, "delta")) sb_append(&text, jstr(j, "text"));
        bool done = !strcmp(t, "done");
        if (done) assert_string_equal(jstr(j, "finish_reason"), "stop");
        json_decref(j);
        if (done) break;
    }
    assert_string_equal(text.data, "w0 w1 w2 w3 w4 ");
    sb_free(&text);

    /* A hook error becomes an error frame with the right kind. */
    ws_say(c, "{\"op\":\"send\",\"content\":\"hi\",\"model\":\"missing\"}");
    j = ws_next_type(&w, "error");
    assert_string_equal(jstr(j, "kind"), "not_found");
    json_decref(j);

    /* A long reply, stopped. */
    tc.deltas = 5000;
    ws_say(c, "{\"op\":\"send\",\"content\":\"long\"}");
    j = ws_next_type(&w, "started");
    snprintf(gid, sizeof gid, "%s", jstr(j, "generation_id"));
    json_decref(j);
    json_decref(ws_next_type(&w, "delta"));
    char msg[160];
    snprintf(msg, sizeof msg, "{\"op\":\"stop\",\"generation_id\":\"%s\"}", gid);
    ws_say(c, msg);
    j = ws_next_type(&w, "ack");
    assert_string_equal(jstr(j, "op"), "stop");
    json_decref(j);
    j = ws_next_type(&w, "done");
    assert_string_equal(jstr(j, "finish_reason"), "cancelled");
    json_decref(j);
    /* Stopping again says it is finished. */
    ws_say(c, msg);
    j = ws_next_type(&w, "error");
    assert_string_equal(jstr(j, "kind"), "finished");
    json_decref(j);
    ws_close_client(c, &w);
    srv_free(s);
    test_chat_join(&tc);
}

static void ws_set_changes_params_mid_stream_and_resume_replays_from_after(void **st) {
    (void)st;
    srv_t *s = start((srv_options){0}, NULL);
    test_chat tc = {.s = s, .deltas = 60, .delay_ms = 10};
    srv_set_chat_hook(s, test_hook, &tc);
    ws_client w;
    struct mg_connection *c = ws_open(&w, NULL);
    json_decref(ws_next(&w));
    ws_say(c, "{\"op\":\"send\",\"content\":\"hi\"}");
    json_t *j = ws_next_type(&w, "started");
    char gid[64], msg[200];
    snprintf(gid, sizeof gid, "%s", jstr(j, "generation_id"));
    json_decref(j);
    json_decref(ws_next_type(&w, "delta"));

    snprintf(msg, sizeof msg, "{\"op\":\"set\",\"generation_id\":\"%s\",\"temperature\":5}", gid);
    ws_say(c, msg);
    j = ws_next_type(&w, "error");
    assert_non_null(strstr(jstr(j, "message"), "temperature"));
    json_decref(j);
    snprintf(
        msg, sizeof msg,
        "{\"op\":\"set\",\"generation_id\":\"%s\",\"temperature\":0.25,\"granularity\":\"word\"}",
        gid);
    ws_say(c, msg);
    j = ws_next_type(&w, "ack");
    json_t *p = json_object_get(j, "params");
    assert_true(json_real_value(json_object_get(p, "temperature")) == 0.25);
    assert_string_equal(json_string_value(json_object_get(p, "granularity")), "word");
    json_decref(j);
    /* The producer saw it from its next step. */
    j = ws_next_type(&w, "info");
    assert_string_equal(jstr(j, "kind"), "params");
    assert_string_equal(jstr(j, "message"), "temperature=0.25");
    json_decref(j);
    j = ws_next_type(&w, "done");
    uint64_t last = (uint64_t)json_integer_value(json_object_get(j, "seq"));
    json_decref(j);
    ws_close_client(c, &w);

    /* A new connection resumes after event 50 and gets 51..last. */
    c = ws_open(&w, NULL);
    json_decref(ws_next(&w));
    snprintf(msg, sizeof msg, "{\"op\":\"resume\",\"generation_id\":\"%s\",\"after\":50}", gid);
    ws_say(c, msg);
    j = ws_next_type(&w, "ack");
    assert_string_equal(jstr(j, "state"), "done");
    json_decref(j);
    for (uint64_t want = 51; want <= last; want++) {
        j = ws_next(&w);
        assert_int_equal(json_integer_value(json_object_get(j, "seq")), want);
        json_decref(j);
    }
    /* By session: the session's current generation. */
    ws_say(c, "{\"op\":\"resume\",\"session_id\":\"s-new\",\"after\":1000000}");
    j = ws_next_type(&w, "error"); /* past the end of the finished one */
    assert_non_null(strstr(jstr(j, "message"), "past the last event"));
    json_decref(j);
    snprintf(msg, sizeof msg, "{\"op\":\"resume\",\"session_id\":\"s-new\",\"after\":%llu}",
             (unsigned long long)(last - 1));
    ws_say(c, msg);
    j = ws_next_type(&w, "ack");
    assert_string_equal(jstr(j, "generation_id"), gid);
    json_decref(j);
    j = ws_next(&w);
    assert_string_equal(jstr(j, "type"), "done");
    json_decref(j);
    ws_say(c, "{\"op\":\"resume\",\"session_id\":\"nobody\"}");
    j = ws_next_type(&w, "error");
    assert_string_equal(jstr(j, "kind"), "not_found");
    json_decref(j);
    snprintf(msg, sizeof msg, "{\"op\":\"resume\",\"generation_id\":\"%s\",\"after\":-1}", gid);
    ws_say(c, msg);
    j = ws_next_type(&w, "error");
    assert_string_equal(jstr(j, "kind"), "bad_request");
    json_decref(j);
    ws_close_client(c, &w);
    srv_free(s);
    test_chat_join(&tc);
}

/* The protocol seen by independent clients: the `ws` npm package and the
 * official `openai` package (tests/js; installed by `make deps`). */
static void js_clients_see_the_ws_protocol_and_openai_error_shapes(void **st) {
    (void)st;
    if (access("tests/js/node_modules/ws", F_OK) != 0 ||
        access("tests/js/node_modules/openai", F_OK) != 0) {
        print_message("# SKIP: tests/js/node_modules absent (run make deps)\n");
        skip();
    }
    if (tu_run("node --version >/dev/null 2>&1", NULL) != 0) {
        print_message("# SKIP: node not found\n");
        skip();
    }
    srv_t *s = start(keyed(), NULL);
    char cmd[512], *out = NULL;
    snprintf(cmd, sizeof cmd, "node tests/js/ws_protocol.mjs %d %s 2>&1", g_port, KEY_A);
    int rc = tu_run(cmd, &out);
    print_message("%s", out ? out : "");
    assert_int_equal(rc, 0);
    assert_null(strstr(out, "FAIL"));
    assert_non_null(strstr(out, "ok - wrong key raises AuthenticationError"));
    free(out);
    srv_free(s);
}

/* ------------------------------------------------------------------ */
/* Shutdown                                                            */
/* ------------------------------------------------------------------ */

typedef struct {
    srv_t *s;
    int grace_ms;
    double took_ms;
} shut_arg;

static void *do_shutdown(void *p) {
    shut_arg *a = p;
    double t0 = clock_mono_ms();
    srv_shutdown(a->s, a->grace_ms);
    a->took_ms = clock_mono_ms() - t0;
    return NULL;
}

static void shutdown_lets_streams_finish_then_cancels_the_rest(void **st) {
    (void)st;
    srv_t *s = start((srv_options){0}, NULL);
    gen *quick = gen_start(srv_gens(s), "local", NULL, NULL);
    gen *slow = gen_start(srv_gens(s), "local", NULL, NULL);
    char p1[128], p2[128];
    snprintf(p1, sizeof p1, "/api/generations/%s/events", gen_id(quick));
    snprintf(p2, sizeof p2, "/api/generations/%s/events", gen_id(slow));
    bg_req b1 = {.o = {.path = p1}}, b2 = {.o = {.path = p2}};
    pthread_t t1, t2, ts;
    pthread_create(&t1, NULL, bg_http, &b1);
    pthread_create(&t2, NULL, bg_http, &b2);
    slow_prod sp = {.g = slow};
    pthread_t pt;
    pthread_create(&pt, NULL, slow_producer, &sp);
    clock_sleep_ms(150);
    shut_arg sa = {.s = s, .grace_ms = 400};
    pthread_create(&ts, NULL, do_shutdown, &sa);
    clock_sleep_ms(50);
    /* Draining: new requests are refused. */
    resp r = get("/healthz", NULL);
    assert_int_equal(r.status, 503);
    resp_free(&r);
    /* The quick one finishes inside the grace period. */
    gen_delta(quick, "bye", 3);
    gen_done(quick, "stop", NULL, NULL, false);
    pthread_join(ts, NULL);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    pthread_join(pt, NULL);
    assert_true(sa.took_ms >= 350);
    assert_true(sa.took_ms < 5000);
    assert_non_null(strstr(sb_str(&b1.r.body), "\"finish_reason\":\"stop\""));
    /* The slow one was cancelled at the deadline and its client told. */
    assert_int_equal(gen_get_state(slow), GEN_CANCELLED);
    assert_non_null(strstr(sb_str(&b2.r.body), "\"finish_reason\":\"cancelled\""));
    resp_free(&b1.r);
    resp_free(&b2.r);
    gen_unref(quick);
    gen_unref(slow);
    srv_free(s);
}

static void binary_serves_and_exits_cleanly_on_sigterm(void **st) {
    (void)st;
    char *dir = tu_tmpdir();
    char bin[4096];
    assert_non_null(realpath(tu_confab_bin(), bin));
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 1);
        close(pfd[0]);
        char data[600];
        snprintf(data, sizeof data, "%s/data", dir);
        if (chdir(dir) != 0) _exit(99);
        execl(bin, "confab", "serve", "--port", "0", "--data", data, "--shutdown-grace", "1",
              (char *)NULL);
        _exit(98);
    }
    close(pfd[1]);
    FILE *f = fdopen(pfd[0], "r");
    char line[512] = {0};
    assert_non_null(fgets(line, sizeof line, f));
    const char *p = strstr(line, "127.0.0.1:");
    assert_non_null(p);
    g_port = atoi(p + 10);
    assert_true(g_port > 0);
    resp r = get("/healthz", NULL);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    char data[600];
    snprintf(data, sizeof data, "%s/data", dir);
    assert_int_equal(access(data, F_OK), 0); /* created */
    double t0 = clock_mono_ms();
    kill(pid, SIGTERM);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(clock_mono_ms() - t0 < 8000);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    sb_t rest = {0};
    while (fgets(line, sizeof line, f))
        sb_append(&rest, line);
    fclose(f);
    assert_non_null(strstr(sb_str(&rest), "SIGTERM received"));
    assert_non_null(strstr(sb_str(&rest), "stopped"));
    sb_free(&rest);
    /* Nothing listens any more. */
    r = http((req_opts){.path = "/healthz", .timeout_ms = 1000});
    assert_int_equal(r.status, 0);
    resp_free(&r);
    tu_rmtree(dir);
    free(dir);
}

static void serve_rejects_bad_flags_with_usage(void **st) {
    (void)st;
    char cmd[512], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s serve --port 70000 2>&1", tu_confab_bin());
    assert_int_equal(tu_run(cmd, &out), 2);
    assert_non_null(strstr(out, "--port must be an integer"));
    free(out);
    snprintf(cmd, sizeof cmd, "%s serve --bogus 2>&1", tu_confab_bin());
    assert_int_equal(tu_run(cmd, &out), 2);
    assert_non_null(strstr(out, "unknown option"));
    free(out);
}

/* ------------------------------------------------------------------ */
/* Units                                                               */
/* ------------------------------------------------------------------ */

static void key_check_matches_plain_and_hashed_keys_only(void **st) {
    (void)st;
    char hex[65], cfg[80];
    srv_sha256_hex("second", 6, hex);
    /* Known vector: SHA-256("abc"). */
    char abc[65];
    srv_sha256_hex("abc", 3, abc);
    assert_string_equal(abc, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    snprintf(cfg, sizeof cfg, "sha256:%s", hex);
    const char *keys[] = {"first", cfg};
    srv_keys *k = srv_keys_new(keys, 2, NULL);
    char owner[20];
    assert_true(srv_keys_check(k, "first", 5, owner));
    assert_true(srv_keys_check(k, "second", 6, owner));
    assert_int_equal(strncmp(owner, "key:", 4), 0);
    assert_int_equal(strncmp(owner + 4, hex, 12), 0);
    assert_false(srv_keys_check(k, "firs", 4, owner));
    assert_false(srv_keys_check(k, cfg, strlen(cfg), owner)); /* the hash is not the key */
    assert_false(srv_keys_check(k, "", 0, owner));
    srv_keys_free(k);
}

static void rate_limiter_refills_at_the_configured_rate(void **st) {
    (void)st;
    srv_ratelimit *r = srv_ratelimit_new(60); /* one per second */
    int retry = 0;
    uint64_t t = 1000000000ull;
    for (int i = 0; i < 60; i++)
        assert_true(srv_ratelimit_take(r, "a", t, &retry));
    assert_false(srv_ratelimit_take(r, "a", t, &retry));
    assert_int_equal(retry, 1);
    assert_true(srv_ratelimit_take(r, "b", t, &retry));
    assert_false(srv_ratelimit_take(r, "a", t + 500000000ull, &retry));
    assert_true(srv_ratelimit_take(r, "a", t + 1000000000ull, &retry));
    srv_ratelimit_free(r);
}

static int setup(void **st) {
    (void)st;
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return 0;
}

static int teardown(void **st) {
    (void)st;
    curl_global_cleanup();
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(key_check_matches_plain_and_hashed_keys_only),
        cmocka_unit_test(rate_limiter_refills_at_the_configured_rate),
        cmocka_unit_test(healthz_needs_no_key_and_reports_status_version_uptime),
        cmocka_unit_test(missing_or_wrong_key_gets_401_and_right_keys_pass),
        cmocka_unit_test(unauthenticated_loopback_requests_are_owned_by_local),
        cmocka_unit_test(non_loopback_bind_without_keys_is_refused),
        cmocka_unit_test(rate_limit_returns_429_with_retry_after),
        cmocka_unit_test(oversized_body_gets_413),
        cmocka_unit_test(bad_and_too_deep_json_get_400_with_a_clear_message),
        cmocka_unit_test(unknown_route_is_404_and_wrong_method_is_405_with_allow),
        cmocka_unit_test(static_ui_is_served_with_type_etag_and_304),
        cmocka_unit_test(cors_is_off_by_default_and_answers_preflight_when_configured),
        cmocka_unit_test(metrics_are_prometheus_text_and_count_requests_tokens_and_ttft),
        cmocka_unit_test(sse_resumes_after_last_event_id_and_follows_live),
        cmocka_unit_test(params_route_validates_and_applies_overrides),
        cmocka_unit_test(sse_sends_heartbeats_while_the_generation_is_quiet),
        cmocka_unit_test(client_disconnect_is_reported_to_the_handler_which_cancels),
        cmocka_unit_test(sse_follow_with_a_custom_format_ends_with_done_marker),
        cmocka_unit_test(openai_rendering_streams_chunks_usage_and_done),
        cmocka_unit_test(ws_bad_messages_get_error_frames_and_the_connection_stays),
        cmocka_unit_test(ws_refuses_a_missing_key_with_an_error_frame_and_close),
        cmocka_unit_test(ws_send_streams_a_reply_and_stop_cancels_it),
        cmocka_unit_test(ws_set_changes_params_mid_stream_and_resume_replays_from_after),
        cmocka_unit_test(js_clients_see_the_ws_protocol_and_openai_error_shapes),
        cmocka_unit_test(shutdown_lets_streams_finish_then_cancels_the_rest),
        cmocka_unit_test(binary_serves_and_exits_cleanly_on_sigterm),
        cmocka_unit_test(serve_rejects_bad_flags_with_usage),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
