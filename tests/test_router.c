/* Tests for src/providers/router.c: retries, Retry-After, fallbacks, the
 * circuit breaker, the before/after-first-text rule, usage and cost, A/B
 * assignment, compare mode and cancellation, against fake upstreams on
 * 127.0.0.1 that count the requests they get. */
#include "base/clock.h"
#include "base/log.h"
#include "base/sb.h"
#include "fake_upstream.h"
#include "providers/provider.h"
#include "providers/router.h"
#include "testutil.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KEY "sk-router-SECRET-abcdef0123456789"

/* ------------------------------------------------------------ recorder */

typedef struct {
    sb_t text, log; /* log: one letter per event: d u f E D */
    int n_error, n_done, n_usage;
    prov_usage usage;
    prov_errkind kind;
    char message[512];
    sb_t side_text[2];
    int side_done[2], side_deltas[2];
    bool both_streamed_before_first_done;
} rec;

static void rec_cb(void *ud, const prov_event *ev) {
    rec *r = ud;
    switch (ev->kind) {
    case PROV_EV_DELTA:
        sb_appendn(&r->text, ev->text, ev->len);
        sb_putc(&r->log, 'd');
        break;
    case PROV_EV_USAGE:
        r->n_usage++;
        r->usage = ev->usage;
        sb_putc(&r->log, 'u');
        break;
    case PROV_EV_FINISH: sb_putc(&r->log, 'f'); break;
    case PROV_EV_ERROR:
        r->n_error++;
        r->kind = ev->err_kind;
        snprintf(r->message, sizeof r->message, "%s", ev->message);
        sb_putc(&r->log, 'E');
        break;
    case PROV_EV_DONE:
        r->n_done++;
        sb_putc(&r->log, 'D');
        break;
    }
}

static void rec_free(rec *r) {
    sb_free(&r->text);
    sb_free(&r->log);
    sb_free(&r->side_text[0]);
    sb_free(&r->side_text[1]);
}

/* Compresses runs of 'd' to one, so logs compare independent of chunking. */
static const char *squash(rec *r) {
    static char out[256];
    size_t j = 0;
    const char *s = sb_str(&r->log);
    for (size_t i = 0; s[i] && j < sizeof out - 1; i++)
        if (!(s[i] == 'd' && j && out[j - 1] == 'd')) out[j++] = s[i];
    out[j] = 0;
    return out;
}

/* --------------------------------------------------------------- setup */

static const prov_msg MSGS[] = {{PROV_ROLE_USER, "Hello there"}};

static prov_request req_stream(void) {
    prov_request q = {.msgs = MSGS, .n_msgs = 1, .stream = true};
    return q;
}

static char urls[8][128];

static prov_model_cfg mk(const char *name, const char *backend, const char *model, fu_server *s,
                         int slot) {
    prov_model_cfg m = {.name = name, .backend = backend, .model = model, .api_key = KEY};
    if (s)
        m.base_url = fu_url(s, "/v1", urls[slot]);
    else {
        snprintf(urls[slot], sizeof urls[slot], "http://127.0.0.1:%d/v1", fu_dead_port());
        m.base_url = urls[slot];
    }
    m.timeouts.connect_ms = 300;
    m.timeouts.first_byte_ms = 300;
    m.timeouts.idle_ms = 300;
    return m;
}

static const route_cfg FAST = {.max_retries = 2,
                               .backoff_initial_ms = 5,
                               .backoff_max_ms = 1000,
                               .cooldown_ms = 60000,
                               .failure_threshold = 100};

static const fu_response OK_OPENAI = {.content_type = "text/event-stream",
                                      .body = FU_OPENAI_STREAM};
static const fu_response OK_ANTHROPIC = {.content_type = "text/event-stream",
                                         .body = FU_ANTHROPIC_STREAM};
static const fu_response E500 = {.status = 500,
                                 .content_type = "application/json",
                                 .content_length = true,
                                 .body = "{\"error\":{\"message\":\"boom\"}}"};

static route_router *mkrouter(const route_cfg *cfg, const prov_model_cfg *m, size_t n) {
    cf_err err = {0};
    route_router *r = route_new(cfg, m, n, NULL, 0, NULL, &err);
    if (!r) fail_msg("route_new: %s", err.msg);
    return r;
}

/* --------------------------------------------------------------- tests */

static void retries_5xx_then_succeeds_on_same_upstream(void **st) {
    (void)st;
    fu_response script[] = {E500, E500, OK_OPENAI};
    fu_server *s = fu_start(script, 3);
    prov_model_cfg m[] = {mk("a", "openai", "gpt-4o", s, 0)};
    route_router *r = mkrouter(&FAST, m, 1);
    prov_request q = req_stream();
    rec rc = {0};
    route_result res;
    assert_int_equal(route_stream(r, "a", &q, NULL, NULL, rec_cb, &rc, &res), 0);
    assert_int_equal(fu_requests(s), 3);
    assert_int_equal(res.attempts, 3);
    assert_int_equal(res.fallbacks, 0);
    assert_string_equal(sb_str(&rc.text), "Hello, w\xC3\xB6rld");
    assert_string_equal(squash(&rc), "dufD");
    assert_string_equal(res.model, "a");
    assert_string_equal(res.provider, "openai");
    assert_string_equal(res.upstream_model, "gpt-4o");
    route_free(r);
    fu_stop(s);
    rec_free(&rc);
}

static void exhausted_retries_move_down_the_fallback_chain(void **st) {
    (void)st;
    fu_server *a = fu_start(&E500, 1);
    fu_server *b = fu_start(&OK_ANTHROPIC, 1);
    prov_model_cfg m[] = {mk("a", "openai", "gpt-4o", a, 0),
                          mk("b", "anthropic", "claude-3-5-haiku-20241022", b, 1)};
    m[0].fallback[0] = "b";
    m[0].n_fallback = 1;
    route_cfg cfg = FAST;
    cfg.max_retries = 1;
    route_router *r = mkrouter(&cfg, m, 2);
    prov_request q = req_stream();
    rec rc = {0};
    route_result res;
    assert_int_equal(route_stream(r, "a", &q, NULL, NULL, rec_cb, &rc, &res), 0);
    assert_int_equal(fu_requests(a), 2); /* first attempt + 1 retry */
    assert_int_equal(fu_requests(b), 1);
    assert_int_equal(res.attempts, 3);
    assert_int_equal(res.fallbacks, 1);
    assert_string_equal(res.model, "b");
    assert_string_equal(res.provider, "anthropic");
    assert_string_equal(sb_str(&rc.text), "Bonjour !");
    assert_int_equal(rc.n_error, 0); /* the caller never saw the failures */
    route_free(r);
    fu_stop(a);
    fu_stop(b);
    rec_free(&rc);
}

static void rate_limit_waits_for_retry_after(void **st) {
    (void)st;
    fu_response script[] = {{.status = 429,
                             .content_type = "application/json",
                             .content_length = true,
                             .headers = "Retry-After: 1\r\n",
                             .body = "{}"},
                            OK_OPENAI};
    fu_server *s = fu_start(script, 2);
    prov_model_cfg m[] = {mk("a", "openai", "gpt-4o", s, 0)};
    route_router *r = mkrouter(&FAST, m, 1);
    prov_request q = req_stream();
    rec rc = {0};
    route_result res;
    double t0 = clock_mono_ms();
    assert_int_equal(route_stream(r, "a", &q, NULL, NULL, rec_cb, &rc, &res), 0);
    double took = clock_mono_ms() - t0;
    assert_int_equal(fu_requests(s), 2);
    assert_true(took >= 950); /* backoff alone would be ~5 ms */
    route_free(r);
    fu_stop(s);
    rec_free(&rc);
}

static void long_retry_after_falls_back_and_opens_circuit(void **st) {
    (void)st;
    fu_response lim = {.status = 429,
                       .content_type = "application/json",
                       .content_length = true,
                       .headers = "Retry-After: 120\r\n",
                       .body = "{}"};
    fu_server *a = fu_start(&lim, 1);
    fu_server *b = fu_start(&OK_OPENAI, 1);
    prov_model_cfg m[] = {mk("a", "openai", "gpt-4o", a, 0),
                          mk("b", "openai", "gpt-4o-mini", b, 1)};
    m[0].fallback[0] = "b";
    m[0].n_fallback = 1;
    route_router *r = mkrouter(&FAST, m, 2);
    prov_request q = req_stream();
    rec rc = {0};
    route_result res;
    double t0 = clock_mono_ms();
    assert_int_equal(route_stream(r, "a", &q, NULL, NULL, rec_cb, &rc, &res), 0);
    assert_true(clock_mono_ms() - t0 < 1000);
    assert_int_equal(fu_requests(a), 1);
    assert_string_equal(res.model, "b");
    bool open;
    route_breaker(r, "a", NULL, &open);
    assert_true(open);
    /* The next request skips a entirely. */
    rec rc2 = {0};
    assert_int_equal(route_stream(r, "a", &q, NULL, NULL, rec_cb, &rc2, &res), 0);
    assert_int_equal(fu_requests(a), 1);
    assert_int_equal(fu_requests(b), 2);
    route_free(r);
    fu_stop(a);
    fu_stop(b);
    rec_free(&rc);
    rec_free(&rc2);
}

static void refused_connection_is_retried_then_falls_back(void **st) {
    (void)st;
    fu_server *b = fu_start(&OK_OPENAI, 1);
    prov_model_cfg m[] = {mk("a", "openai", "gpt-4o", NULL, 0),
                          mk("b", "openai", "gpt-4o-mini", b, 1)};
    m[0].fallback[0] = "b";
    m[0].n_fallback = 1;
    route_router *r = mkrouter(&FAST, m, 2);
    prov_request q = req_stream();
    rec rc = {0};
    route_result res;
    assert_int_equal(route_stream(r, "a", &q, NULL, NULL, rec_cb, &rc, &res), 0);
    assert_int_equal(res.attempts, 4); /* 3 refused + 1 fallback */
    assert_string_equal(res.model, "b");
    assert_string_equal(res.upstream_model, "gpt-4o-mini");
    route_free(r);
    fu_stop(b);
    rec_free(&rc);
}

static void hang_past_timeout_falls_back(void **st) {
    (void)st;
    fu_response hang = OK_OPENAI;
    hang.delay_ms = 5000;
    fu_server *a = fu_start(&hang, 1);
    fu_server *b = fu_start(&OK_OPENAI, 1);
    prov_model_cfg m[] = {mk("a", "openai", "gpt-4o", a, 0),
                          mk("b", "openai", "gpt-4o-mini", b, 1)};
    m[0].fallback[0] = "b";
    m[0].n_fallback = 1;
    m[0].timeouts.first_byte_ms = 150;
    route_cfg cfg = FAST;
    cfg.max_retries = 0; /* no retries: straight to the fallback */
    route_router *r = mkrouter(&cfg, m, 2);
    prov_request q = req_stream();
    rec rc = {0};
    route_result res;
    double t0 = clock_mono_ms();
    assert_int_equal(route_stream(r, "a", &q, NULL, NULL, rec_cb, &rc, &res), 0);
    assert_true(clock_mono_ms() - t0 < 2000);
    assert_int_equal(res.attempts, 2);
    assert_string_equal(res.model, "b");
    route_free(r);
    fu_stop(a);
    fu_stop(b);
    rec_free(&rc);
}

static void failure_before_text_falls_back_transparently(void **st) {
    (void)st;
    fu_response bad = {.content_type = "text/event-stream", .body = "data: {oops\n\n"};
    fu_server *a = fu_start(&bad, 1);
    fu_server *b = fu_start(&OK_ANTHROPIC, 1);
    prov_model_cfg m[] = {mk("a", "openai", "gpt-4o", a, 0),
                          mk("b", "anthropic", "claude-3-5-haiku", b, 1)};
    m[0].fallback[0] = "b";
    m[0].n_fallback = 1;
    route_router *r = mkrouter(&FAST, m, 2);
    prov_request q = req_stream();
    rec rc = {0};
    route_result res;
    assert_int_equal(route_stream(r, "a", &q, NULL, NULL, rec_cb, &rc, &res), 0);
    assert_int_equal(fu_requests(a), 1); /* protocol errors are not retried on the same upstream */
    assert_string_equal(sb_str(&rc.text), "Bonjour !");
    assert_string_equal(squash(&rc), "dufD");
    assert_false(res.partial);
    route_free(r);
    fu_stop(a);
    fu_stop(b);
    rec_free(&rc);
}

static void failure_after_text_ends_with_explicit_error(void **st) {
    (void)st;
    fu_response cut = {.content_type = "text/event-stream",
                       .body = "data: {\"choices\":[{\"delta\":{\"content\":\"Once upon\"}}]}\n\n"};
    fu_server *a = fu_start(&cut, 1);
    fu_server *b = fu_start(&OK_OPENAI, 1);
    prov_model_cfg m[] = {mk("a", "openai", "gpt-4o", a, 0),
                          mk("b", "openai", "gpt-4o-mini", b, 1)};
    m[0].fallback[0] = "b";
    m[0].n_fallback = 1;
    route_router *r = mkrouter(&FAST, m, 2);
    prov_request q = req_stream();
    rec rc = {0};
    route_result res;
    assert_int_equal(route_stream(r, "a", &q, NULL, NULL, rec_cb, &rc, &res), CF_EUPSTREAM);
    assert_int_equal(fu_requests(a), 1);
    assert_int_equal(fu_requests(b), 0); /* no silent splice of another model's reply */
    assert_string_equal(sb_str(&rc.text), "Once upon");
    assert_string_equal(squash(&rc), "duE"); /* usage for what was produced, then the error */
    assert_int_equal(rc.kind, PROV_ERR_PROTOCOL);
    assert_true(res.partial);
    assert_int_equal(res.err_kind, PROV_ERR_PROTOCOL);
    assert_true(rc.usage.estimated);
    assert_int_equal(rc.usage.completion_tokens, 3); /* "Once upon": 9 ASCII chars */
    assert_string_equal(res.model, "a");
    route_free(r);
    fu_stop(a);
    fu_stop(b);
    rec_free(&rc);
}

static void auth_error_is_not_retried_and_never_leaks_the_key(void **st) {
    (void)st;
    fu_response unauth = {.status = 401,
                          .content_type = "application/json",
                          .content_length = true,
                          .body = "{\"error\":{\"message\":\"Invalid key " KEY "\"}}"};
    fu_server *a = fu_start(&unauth, 1);
    prov_model_cfg m[] = {mk("a", "openai", "gpt-4o", a, 0)};
    route_router *r = mkrouter(&FAST, m, 1);
    prov_request q = req_stream();
    rec rc = {0};
    route_result res;
    assert_int_equal(route_stream(r, "a", &q, NULL, NULL, rec_cb, &rc, &res), CF_EAUTH);
    assert_int_equal(fu_requests(a), 1);
    assert_int_equal(rc.kind, PROV_ERR_AUTH);
    assert_int_equal(res.http_status, 401);
    assert_non_null(strstr(res.error, "Invalid key"));
    assert_null(strstr(res.error, "SECRET"));
    assert_null(strstr(rc.message, "SECRET"));
    route_free(r);
    fu_stop(a);
    rec_free(&rc);
}

static void circuit_opens_after_threshold_and_half_open_probe_closes_it(void **st) {
    (void)st;
    fu_response script[] = {E500, E500, OK_OPENAI};
    fu_server *a = fu_start(script, 3);
    fu_server *b = fu_start(&OK_ANTHROPIC, 1);
    prov_model_cfg m[] = {mk("a", "openai", "gpt-4o", a, 0),
                          mk("b", "anthropic", "claude-3-5-haiku", b, 1)};
    m[0].fallback[0] = "b";
    m[0].n_fallback = 1;
    route_cfg cfg = {
        .max_retries = 0, .backoff_initial_ms = 5, .cooldown_ms = 300, .failure_threshold = 2};
    route_router *r = mkrouter(&cfg, m, 2);
    prov_request q = req_stream();
    route_result res;
    int cons;
    bool open;
    for (int i = 0; i < 2; i++) {
        rec rc = {0};
        assert_int_equal(route_stream(r, "a", &q, NULL, NULL, rec_cb, &rc, &res), 0);
        assert_string_equal(res.model, "b");
        rec_free(&rc);
    }
    route_breaker(r, "a", &cons, &open);
    assert_int_equal(cons, 2);
    assert_true(open);
    /* Open: a is not contacted. */
    rec rc = {0};
    assert_int_equal(route_stream(r, "a", &q, NULL, NULL, rec_cb, &rc, &res), 0);
    assert_int_equal(fu_requests(a), 2);
    assert_string_equal(res.model, "b");
    rec_free(&rc);
    /* After the cooldown one probe goes through; it succeeds and closes the circuit. */
    usleep(350 * 1000);
    rec rc2 = {0};
    assert_int_equal(route_stream(r, "a", &q, NULL, NULL, rec_cb, &rc2, &res), 0);
    assert_int_equal(fu_requests(a), 3);
    assert_string_equal(res.model, "a");
    route_breaker(r, "a", &cons, &open);
    assert_int_equal(cons, 0);
    assert_false(open);
    rec_free(&rc2);
    route_free(r);
    fu_stop(a);
    fu_stop(b);
}

static void all_upstreams_in_cooldown_is_unavailable_without_contact(void **st) {
    (void)st;
    fu_server *a = fu_start(&E500, 1);
    prov_model_cfg m[] = {mk("a", "openai", "gpt-4o", a, 0)};
    route_cfg cfg = {.max_retries = 0, .cooldown_ms = 60000, .failure_threshold = 1};
    route_router *r = mkrouter(&cfg, m, 1);
    prov_request q = req_stream();
    rec rc = {0}, rc2 = {0};
    route_result res;
    assert_int_equal(route_stream(r, "a", &q, NULL, NULL, rec_cb, &rc, &res), CF_EUPSTREAM);
    assert_int_equal(res.err_kind, PROV_ERR_HTTP_5XX);
    assert_int_equal(route_stream(r, "a", &q, NULL, NULL, rec_cb, &rc2, &res), CF_EBUSY);
    assert_int_equal(res.err_kind, PROV_ERR_UNAVAILABLE);
    assert_int_equal(rc2.n_error, 1);
    assert_int_equal(fu_requests(a), 1);
    route_free(r);
    fu_stop(a);
    rec_free(&rc);
    rec_free(&rc2);
}

static void reported_usage_is_priced_with_cached_input(void **st) {
    (void)st;
    fu_server *a = fu_start(&OK_OPENAI, 1);
    prov_model_cfg m[] = {mk("a", "openai", "gpt-4o-2024-08-06", a, 0)};
    route_router *r = mkrouter(&FAST, m, 1);
    prov_request q = req_stream();
    rec rc = {0};
    route_result res;
    assert_int_equal(route_stream(r, "a", &q, NULL, NULL, rec_cb, &rc, &res), 0);
    assert_int_equal(rc.n_usage, 1);
    assert_false(res.usage.estimated);
    assert_int_equal(res.usage.prompt_tokens, 12);
    assert_int_equal(res.usage.cached_tokens, 8);
    assert_int_equal(res.usage.completion_tokens, 4);
    /* gpt-4o: $2.50 in, $1.25 cached, $10 out per million. */
    assert_true(res.cost.priced);
    assert_float_equal(res.cost.input, 4 * 2.50e-6, 1e-12);
    assert_float_equal(res.cost.cached_input, 8 * 1.25e-6, 1e-12);
    assert_float_equal(res.cost.output, 4 * 10e-6, 1e-12);
    assert_float_equal(res.cost.total, 6e-5, 1e-12);
    route_free(r);
    fu_stop(a);
    rec_free(&rc);
}

static void missing_usage_is_estimated_and_flagged(void **st) {
    (void)st;
    fu_response nousage = {.content_type = "text/event-stream",
                           .body = "data: "
                                   "{\"choices\":[{\"delta\":{\"content\":\"abcdefgh\"},\"finish_"
                                   "reason\":\"stop\"}]}\n\ndata: [DONE]\n\n"};
    fu_server *a = fu_start(&nousage, 1);
    prov_model_cfg m[] = {mk("a", "openai", "llama-3-8b", a, 0)};
    m[0].price = (prov_price){.set = true, .input = 1.0, .output = 2.0};
    route_router *r = mkrouter(&FAST, m, 1);
    prov_request q = req_stream();
    rec rc = {0};
    route_result res;
    assert_int_equal(route_stream(r, "a", &q, NULL, NULL, rec_cb, &rc, &res), 0);
    assert_true(res.usage.estimated);
    assert_int_equal(res.usage.completion_tokens, 2); /* 8 ASCII chars */
    assert_int_equal(res.usage.prompt_tokens, 3 + 4); /* "Hello there" + per-message overhead */
    assert_float_equal(res.cost.total, (7 * 1.0 + 2 * 2.0) / 1e6, 1e-12);
    route_free(r);
    fu_stop(a);
    rec_free(&rc);
}

/* A stand-in for the local engine, plugged through the same vtable. */
static int local_start(void *self, const prov_request *req, const prov_model_cfg *cfg,
                       prov_cancel *cancel, prov_event_cb cb, void *ud, cf_err *err) {
    (*(int *)self)++;
    prov_event d = {.kind = PROV_EV_DELTA, .text = "local words here", .len = 16};
    cb(ud, &d);
    prov_event f = {.kind = PROV_EV_FINISH, .finish = PROV_FINISH_STOP};
    cb(ud, &f);
    prov_event done = {.kind = PROV_EV_DONE};
    cb(ud, &done);
    return 0;
}

static int64_t word_count(void *ud, const char *s, size_t n) {
    int64_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && (i == 0 || s[i - 1] == ' ')) w++;
    return w;
}

static void local_backend_slot_uses_exact_token_counter(void **st) {
    (void)st;
    prov_model_cfg m[] = {
        {.name = "loc", .backend = "local", .model = "qwen2.5-0.5b", .count_tokens = word_count}};
    route_router *r = mkrouter(&FAST, m, 1);
    prov_request q = req_stream();
    rec rc = {0};
    route_result res;
    /* Not registered yet: a configuration error, not a crash. */
    assert_int_equal(route_stream(r, "loc", &q, NULL, NULL, rec_cb, &rc, &res), CF_EINVAL);
    assert_int_equal(res.err_kind, PROV_ERR_CONFIG);
    int calls = 0;
    prov_backend local = {.name = "local", .self = &calls, .start = local_start};
    assert_int_equal(route_register_backend(r, "local", &local), 0);
    rec rc2 = {0};
    assert_int_equal(route_stream(r, "loc", &q, NULL, NULL, rec_cb, &rc2, &res), 0);
    assert_int_equal(calls, 1);
    assert_string_equal(sb_str(&rc2.text), "local words here");
    assert_false(res.usage.estimated);
    assert_int_equal(res.usage.completion_tokens, 3);
    assert_int_equal(res.usage.prompt_tokens, 2 + 4);
    assert_string_equal(res.provider, "local");
    assert_false(res.cost.priced); /* no price for a local model */
    route_free(r);
    rec_free(&rc);
    rec_free(&rc2);
}

static void ab_split_is_sticky_per_session_and_follows_weights(void **st) {
    (void)st;
    route_ab_cfg ab = {.name = "exp", .n_variants = 2};
    ab.variants[0].model = "a";
    ab.variants[0].weight = 1;
    ab.variants[1].model = "b";
    ab.variants[1].weight = 3;
    int count[2] = {0};
    for (int i = 0; i < 4000; i++) {
        char sid[32];
        snprintf(sid, sizeof sid, "session-%d", i);
        size_t v = route_ab_pick(&ab, sid);
        assert_true(v < 2);
        assert_int_equal(route_ab_pick(&ab, sid), v); /* sticky */
        count[v]++;
    }
    assert_in_range(count[0], 800, 1200); /* 25% of 4000 = 1000 */
    ab.variants[0].weight = 0;            /* weight 0: never chosen */
    for (int i = 0; i < 100; i++) {
        char sid[32];
        snprintf(sid, sizeof sid, "s%d", i);
        assert_int_equal(route_ab_pick(&ab, sid), 1);
    }
}

static void ab_request_records_variant_and_model(void **st) {
    (void)st;
    fu_server *a = fu_start(&OK_OPENAI, 1);
    fu_server *b = fu_start(&OK_ANTHROPIC, 1);
    prov_model_cfg m[] = {mk("a", "openai", "gpt-4o", a, 0),
                          mk("b", "anthropic", "claude-sonnet-4", b, 1)};
    route_ab_cfg ab = {.name = "exp", .n_variants = 2};
    ab.variants[0].model = "a";
    ab.variants[0].weight = 1;
    ab.variants[1].model = "b";
    ab.variants[1].weight = 1;
    cf_err err = {0};
    route_router *r = route_new(&FAST, m, 2, &ab, 1, NULL, &err);
    assert_non_null(r);
    prov_request q = req_stream();
    for (int i = 0; i < 6; i++) {
        char sid[16];
        snprintf(sid, sizeof sid, "u%d", i);
        rec rc = {0};
        route_result res;
        assert_int_equal(route_stream(r, "exp", &q, sid, NULL, rec_cb, &rc, &res), 0);
        const char *want = ab.variants[route_ab_pick(&ab, sid)].model;
        assert_string_equal(res.ab_name, "exp");
        assert_string_equal(res.variant, want);
        assert_string_equal(res.model, want);
        rec_free(&rc);
    }
    assert_int_equal(fu_requests(a) + fu_requests(b), 6);
    route_free(r);
    fu_stop(a);
    fu_stop(b);
}

static void cmp_cb(void *ud, int side, const prov_event *ev) {
    rec *r = ud;
    if (ev->kind == PROV_EV_DELTA) {
        sb_appendn(&r->side_text[side], ev->text, ev->len);
        r->side_deltas[side]++;
    }
    if (ev->kind == PROV_EV_DONE) {
        if (!r->side_done[0] && !r->side_done[1])
            r->both_streamed_before_first_done = r->side_deltas[0] > 0 && r->side_deltas[1] > 0;
        r->side_done[side]++;
    }
}

static void compare_streams_two_models_concurrently(void **st) {
    (void)st;
    fu_response sa = OK_OPENAI, sb2 = OK_ANTHROPIC;
    sa.event_gap_ms = 40;
    sb2.event_gap_ms = 40;
    fu_server *a = fu_start(&sa, 1);
    fu_server *b = fu_start(&sb2, 1);
    prov_model_cfg m[] = {mk("a", "openai", "gpt-4o", a, 0),
                          mk("b", "anthropic", "claude-sonnet-4", b, 1)};
    route_router *r = mkrouter(&FAST, m, 2);
    prov_request q = req_stream();
    rec rc = {0};
    route_result res[2];
    assert_int_equal(route_compare(r, "a", "b", &q, "s1", NULL, cmp_cb, &rc, res), 0);
    assert_string_equal(sb_str(&rc.side_text[0]), "Hello, w\xC3\xB6rld");
    assert_string_equal(sb_str(&rc.side_text[1]), "Bonjour !");
    assert_int_equal(rc.side_done[0], 1);
    assert_int_equal(rc.side_done[1], 1);
    assert_true(rc.both_streamed_before_first_done);
    assert_string_equal(res[0].model, "a");
    assert_string_equal(res[1].model, "b");
    route_free(r);
    fu_stop(a);
    fu_stop(b);
    rec_free(&rc);
}

static void *fire_later(void *arg) {
    usleep(100 * 1000);
    prov_cancel_fire(arg);
    return NULL;
}

static void cancel_during_backoff_returns_promptly(void **st) {
    (void)st;
    fu_server *a = fu_start(&E500, 1);
    prov_model_cfg m[] = {mk("a", "openai", "gpt-4o", a, 0)};
    route_cfg cfg = {.max_retries = 3, .backoff_initial_ms = 10000, .backoff_max_ms = 20000};
    route_router *r = mkrouter(&cfg, m, 1);
    prov_request q = req_stream();
    prov_cancel *c = prov_cancel_new();
    pthread_t th;
    pthread_create(&th, NULL, fire_later, c);
    rec rc = {0};
    route_result res;
    double t0 = clock_mono_ms();
    assert_int_equal(route_stream(r, "a", &q, NULL, c, rec_cb, &rc, &res), CF_ECANCEL);
    assert_true(clock_mono_ms() - t0 < 1500);
    assert_int_equal(rc.kind, PROV_ERR_CANCELLED);
    assert_int_equal(fu_requests(a), 1);
    pthread_join(th, NULL);
    prov_cancel_free(c);
    route_free(r);
    fu_stop(a);
    rec_free(&rc);
}

typedef struct {
    rec r;
    prov_cancel *c;
} cancel_rec;

static void cancel_on_first_delta(void *ud, const prov_event *ev) {
    cancel_rec *cr = ud;
    rec_cb(&cr->r, ev);
    if (ev->kind == PROV_EV_DELTA) prov_cancel_fire(cr->c);
}

static void cancel_mid_stream_reports_partial_usage_and_no_fallback(void **st) {
    (void)st;
    fu_response slow = OK_OPENAI;
    slow.event_gap_ms = 1000;
    fu_server *a = fu_start(&slow, 1);
    fu_server *b = fu_start(&OK_OPENAI, 1);
    prov_model_cfg m[] = {mk("a", "openai", "gpt-4o", a, 0),
                          mk("b", "openai", "gpt-4o-mini", b, 1)};
    m[0].fallback[0] = "b";
    m[0].n_fallback = 1;
    m[0].timeouts.idle_ms = 5000;
    route_router *r = mkrouter(&FAST, m, 2);
    prov_request q = req_stream();
    cancel_rec cr = {.c = prov_cancel_new()};
    route_result res;
    double t0 = clock_mono_ms();
    assert_int_equal(route_stream(r, "a", &q, NULL, cr.c, cancel_on_first_delta, &cr, &res),
                     CF_ECANCEL);
    assert_true(clock_mono_ms() - t0 < 2500); /* the stream would take ~5 s */
    assert_string_equal(sb_str(&cr.r.text), "Hello");
    assert_string_equal(squash(&cr.r), "duE");
    assert_int_equal(cr.r.kind, PROV_ERR_CANCELLED);
    assert_true(res.partial);
    assert_int_equal(fu_requests(b), 0);
    int cons;
    route_breaker(r, "a", &cons, NULL);
    assert_int_equal(cons, 0); /* a cancel says nothing about the upstream */
    prov_cancel_free(cr.c);
    route_free(r);
    fu_stop(a);
    fu_stop(b);
    rec_free(&cr.r);
}

static void bad_configuration_is_rejected_with_a_reason(void **st) {
    (void)st;
    route_cfg d = route_cfg_default();
    assert_int_equal(d.max_retries, 2);
    assert_int_equal(d.failure_threshold, 3);
    cf_err err = {0};
    prov_model_cfg m[] = {
        {.name = "a", .backend = "openai", .model = "x", .base_url = "http://127.0.0.1:1"},
        {.name = "b", .backend = "bogus", .model = "y", .base_url = "http://127.0.0.1:1"}};
    assert_null(route_new(NULL, m, 2, NULL, 0, NULL, &err));
    assert_non_null(strstr(err.msg, "unknown backend \"bogus\""));
    m[1].backend = "openai";
    m[0].fallback[0] = "nope";
    m[0].n_fallback = 1;
    assert_null(route_new(NULL, m, 2, NULL, 0, NULL, &err));
    assert_non_null(strstr(err.msg, "fallback \"nope\""));
    m[0].n_fallback = 0;
    m[1].name = "a";
    assert_null(route_new(NULL, m, 2, NULL, 0, NULL, &err));
    assert_non_null(strstr(err.msg, "defined twice"));
    m[1].name = "b";
    route_router *r = route_new(NULL, m, 2, NULL, 0, NULL, &err);
    assert_non_null(r);
    prov_request q = req_stream();
    rec rc = {0};
    route_result res;
    assert_int_equal(route_stream(r, "missing", &q, NULL, NULL, rec_cb, &rc, &res), CF_ENOTFOUND);
    assert_int_equal(rc.n_error, 1);
    route_free(r);
    rec_free(&rc);
}

int main(void) {
    cf_err err = {0};
    if (prov_global_init(&err)) return 1;
    log_set_level(LOG_ERROR); /* retries and fallbacks log at info/warn */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(retries_5xx_then_succeeds_on_same_upstream),
        cmocka_unit_test(exhausted_retries_move_down_the_fallback_chain),
        cmocka_unit_test(rate_limit_waits_for_retry_after),
        cmocka_unit_test(long_retry_after_falls_back_and_opens_circuit),
        cmocka_unit_test(refused_connection_is_retried_then_falls_back),
        cmocka_unit_test(hang_past_timeout_falls_back),
        cmocka_unit_test(failure_before_text_falls_back_transparently),
        cmocka_unit_test(failure_after_text_ends_with_explicit_error),
        cmocka_unit_test(auth_error_is_not_retried_and_never_leaks_the_key),
        cmocka_unit_test(circuit_opens_after_threshold_and_half_open_probe_closes_it),
        cmocka_unit_test(all_upstreams_in_cooldown_is_unavailable_without_contact),
        cmocka_unit_test(reported_usage_is_priced_with_cached_input),
        cmocka_unit_test(missing_usage_is_estimated_and_flagged),
        cmocka_unit_test(local_backend_slot_uses_exact_token_counter),
        cmocka_unit_test(ab_split_is_sticky_per_session_and_follows_weights),
        cmocka_unit_test(ab_request_records_variant_and_model),
        cmocka_unit_test(compare_streams_two_models_concurrently),
        cmocka_unit_test(cancel_during_backoff_returns_promptly),
        cmocka_unit_test(cancel_mid_stream_reports_partial_usage_and_no_fallback),
        cmocka_unit_test(bad_configuration_is_rejected_with_a_reason),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    prov_global_cleanup();
    return rc;
}
