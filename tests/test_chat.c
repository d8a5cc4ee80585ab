/* Tests for src/app/chat: the chat turn end to end — store, cache, budget,
 * templates, cancellation, regeneration — against a fake OpenAI-compatible
 * upstream on 127.0.0.1. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/chat.h"
#include "app/routing.h"
#include "base/clock.h"
#include "base/sb.h"
#include "fake_upstream.h"
#include "store/store.h"
#include "testutil.h"

typedef struct {
    sb_t text;
    int deltas, usage, done, errors, infos;
    char last_info_kind[64], error_kind[64], error_msg[400], finish[32];
    bool cached;
    prov_cancel *cancel_on_first; /* fire after the first delta */
} rec;

static void rec_emit(void *ud, const chat_event *ev) {
    rec *r = ud;
    switch (ev->type) {
    case CHAT_EV_DELTA:
        r->deltas++;
        sb_appendn(&r->text, ev->text, ev->len);
        if (r->cancel_on_first) prov_cancel_fire(r->cancel_on_first);
        break;
    case CHAT_EV_USAGE: r->usage++; break;
    case CHAT_EV_INFO:
        r->infos++;
        snprintf(r->last_info_kind, sizeof r->last_info_kind, "%s", ev->kind);
        break;
    case CHAT_EV_DONE:
        r->done++;
        r->cached = ev->cached;
        snprintf(r->finish, sizeof r->finish, "%s", ev->finish_reason);
        break;
    case CHAT_EV_ERROR:
        r->errors++;
        snprintf(r->error_kind, sizeof r->error_kind, "%s", ev->kind);
        snprintf(r->error_msg, sizeof r->error_msg, "%s", ev->message);
        break;
    }
}

typedef struct {
    char *dir;
    fu_server *up;
    cfg_t *cfg;
    app_routing *routing;
    chat_service *cs;
    store *st; /* a reader of our own */
} fx;

static const fu_response OK = {.content_type = "text/event-stream", .body = FU_OPENAI_STREAM};

static fx *fx_new(const fu_response *script, int n, const char *extra_yaml) {
    fx *f = calloc(1, sizeof *f);
    f->dir = tu_tmpdir();
    f->up = fu_start(script, n);
    char url[128], yaml[4096];
    fu_url(f->up, "/v1", url);
    snprintf(yaml, sizeof yaml,
             "models:\n  m:\n    backend: openai\n    model: gpt-4o-mini\n    base_url: %s\n    "
             "api_key: sk-t\n"
             "    price: {input: 1.0, output: 2.0}\n    timeouts: {idle_ms: 2000}\n"
             "router: {max_retries: 0}\n"
             "prompts:\n  explain: \"Explain {concept} to a {level} developer\"\n%s",
             url, extra_yaml ? extra_yaml : "");
    cf_err err = {0};
    f->cfg = cfg_load_string(yaml, strlen(yaml), "t.yaml", &err);
    if (!f->cfg) fail_msg("%s", err.msg);
    f->routing = app_routing_new(f->cfg, NULL, &err);
    assert_non_null(f->routing);
    char db[4200], cache[4200];
    snprintf(db, sizeof db, "%s/confab.db", f->dir);
    snprintf(cache, sizeof cache, "%s/cache.db", f->dir);
    chat_service_opts o = {.cfg = f->cfg,
                           .router = app_routing_router(f->routing),
                           .db_path = db,
                           .cache_path = cache};
    f->cs = chat_service_new(&o, &err);
    if (!f->cs) fail_msg("%s", err.msg);
    f->st = store_open(db, 0, &err);
    assert_non_null(f->st);
    return f;
}

static void fx_free(fx *f) {
    store_close(f->st);
    chat_service_free(f->cs);
    app_routing_free(f->routing);
    cfg_free(f->cfg);
    fu_stop(f->up);
    tu_rmtree(f->dir);
    free(f->dir);
    free(f);
}

static void new_session_turn_streams_and_persists(void **st) {
    (void)st;
    fx *f = fx_new(&OK, 1, NULL);
    rec r = {0};
    chat_sink sink = {.emit = rec_emit, .ud = &r};
    chat_request q = {.new_session = true, .content = "Say hello to the world please"};
    chat_result res;
    cf_err err = {0};
    assert_int_equal(chat_turn(f->cs, &q, NULL, &sink, &res, &err), 0);
    assert_string_equal(r.text.data, "Hello, wörld");
    assert_int_equal(r.done, 1);
    assert_int_equal(r.usage, 1);
    assert_int_equal(r.errors, 0);
    assert_string_equal(r.finish, "stop");
    assert_true(res.session_id > 0);
    assert_string_equal(res.model, "m");
    assert_string_equal(res.provider, "openai");
    assert_int_equal(res.usage.prompt_tokens, 12);
    assert_int_equal(res.usage.completion_tokens, 4);
    assert_true(res.cost > 0);
    store_message *msgs;
    size_t n;
    assert_int_equal(store_msg_list(f->st, res.session_id, &msgs, &n, NULL), 0);
    assert_int_equal(n, 2);
    assert_string_equal(msgs[0].role, "user");
    assert_string_equal(msgs[0].content, "Say hello to the world please");
    assert_string_equal(msgs[1].role, "assistant");
    assert_string_equal(msgs[1].content, "Hello, wörld");
    assert_int_equal(msgs[1].status, STORE_COMPLETE);
    assert_int_equal(msgs[1].parent_id, msgs[0].id);
    assert_string_equal(msgs[1].model, "m");
    assert_string_equal(msgs[1].provider, "openai");
    assert_int_equal(msgs[1].completion_tokens, 4);
    assert_true(msgs[1].cost > 0);
    store_messages_free(msgs, n);
    store_session s;
    assert_int_equal(store_session_get(f->st, res.session_id, &s, NULL), 0);
    assert_string_equal(s.title, "Say hello to the world please");
    store_session_clear(&s);
    sb_free(&r.text);
    fx_free(f);
}

static void next_turn_sends_the_history(void **st) {
    (void)st;
    fx *f = fx_new(&OK, 1, NULL);
    chat_request q = {
        .new_session = true, .content = "first question", .system_prompt = "Be terse."};
    chat_result res;
    assert_int_equal(chat_turn(f->cs, &q, NULL, NULL, &res, NULL), 0);
    chat_request q2 = {.session_id = res.session_id, .content = "second question"};
    chat_result res2;
    assert_int_equal(chat_turn(f->cs, &q2, NULL, NULL, &res2, NULL), 0);
    char *last = fu_last(f->up);
    char *a = strstr(last, "Be terse."), *b = strstr(last, "first question"),
         *c = strstr(last, "Hello, w"), *d = strstr(last, "second question");
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    assert_non_null(d);
    assert_true(a < b && b < c && c < d);
    free(last);
    fx_free(f);
}

static void deterministic_repeat_is_served_from_cache(void **st) {
    (void)st;
    fx *f = fx_new(&OK, 1, NULL);
    chat_request q = {.content = "what is 2+2?",
                      .has_temperature = true,
                      .temperature = 0,
                      .granularity = CHUNK_WORD};
    rec r1 = {0}, r2 = {0};
    chat_sink s1 = {.emit = rec_emit, .ud = &r1}, s2 = {.emit = rec_emit, .ud = &r2};
    chat_result res;
    assert_int_equal(chat_turn(f->cs, &q, NULL, &s1, &res, NULL), 0);
    assert_false(r1.cached);
    assert_int_equal(fu_requests(f->up), 1);
    q.new_session = true; /* stored this time: the cached reply is saved too */
    assert_int_equal(chat_turn(f->cs, &q, NULL, &s2, &res, NULL), 0);
    assert_int_equal(fu_requests(f->up), 1); /* no new upstream request */
    assert_true(r2.cached);
    assert_true(res.cached);
    assert_string_equal(r2.text.data, r1.text.data);
    assert_int_equal(r2.deltas, r1.deltas); /* same chunking */
    store_message m;
    assert_int_equal(store_msg_get(f->st, res.reply_message_id, &m, NULL), 0);
    assert_true(m.cached);
    assert_string_equal(m.content, "Hello, wörld");
    store_message_clear(&m);
    /* A bypass and a non-deterministic request go upstream. */
    q.new_session = false;
    q.no_cache = true;
    assert_int_equal(chat_turn(f->cs, &q, NULL, NULL, &res, NULL), 0);
    assert_int_equal(fu_requests(f->up), 2);
    q.no_cache = false;
    q.temperature = 0.8;
    assert_int_equal(chat_turn(f->cs, &q, NULL, NULL, &res, NULL), 0);
    assert_int_equal(fu_requests(f->up), 3);
    sb_free(&r1.text);
    sb_free(&r2.text);
    fx_free(f);
}

static void word_granularity_emits_words(void **st) {
    (void)st;
    fx *f = fx_new(&OK, 1, NULL);
    rec r = {0};
    chat_sink sink = {.emit = rec_emit, .ud = &r};
    chat_request q = {.content = "hi", .granularity = CHUNK_WORD};
    assert_int_equal(chat_turn(f->cs, &q, NULL, &sink, NULL, NULL), 0);
    /* "Hello," + " wörld" arrive as 2 deltas; words: "Hello, " and "wörld". */
    assert_int_equal(r.deltas, 2);
    assert_string_equal(r.text.data, "Hello, wörld");
    sb_free(&r.text);
    fx_free(f);
}

static void template_is_filled_into_the_user_message(void **st) {
    (void)st;
    fx *f = fx_new(&OK, 1, NULL);
    const char *keys[] = {"concept", "level"}, *vals[] = {"closures", "junior"};
    chat_request q = {.new_session = true,
                      .template_name = "explain",
                      .template_keys = keys,
                      .template_values = vals,
                      .n_template_vars = 2};
    chat_result res;
    assert_int_equal(chat_turn(f->cs, &q, NULL, NULL, &res, NULL), 0);
    store_message m;
    assert_int_equal(store_msg_get(f->st, res.user_message_id, &m, NULL), 0);
    assert_string_equal(m.content, "Explain closures to a junior developer");
    store_message_clear(&m);
    /* A missing value is an error before anything is sent or stored. */
    rec r = {0};
    chat_sink sink = {.emit = rec_emit, .ud = &r};
    q.n_template_vars = 1;
    cf_err err = {0};
    assert_int_equal(chat_turn(f->cs, &q, NULL, &sink, &res, &err), CF_EINVAL);
    assert_int_equal(r.errors, 1);
    assert_non_null(strstr(r.error_msg, "missing a value for {level}"));
    assert_int_equal(fu_requests(f->up), 1);
    q.template_name = "nope";
    assert_int_equal(chat_turn(f->cs, &q, NULL, &sink, &res, &err), CF_ENOTFOUND);
    fx_free(f);
}

static void exhausted_budget_refuses_without_storing(void **st) {
    (void)st;
    fx *f = fx_new(&OK, 1, "budget: {max_tokens_per_conversation: 10, on_exceed: refuse}\n");
    rec r = {0};
    chat_sink sink = {.emit = rec_emit, .ud = &r};
    chat_request q = {
        .new_session = true,
        .content = "a rather long message that certainly costs more than ten tokens to send"};
    chat_result res;
    assert_int_equal(chat_turn(f->cs, &q, NULL, &sink, &res, NULL), CF_ERANGE);
    assert_int_equal(r.errors, 1);
    assert_string_equal(r.error_kind, "budget_exceeded");
    assert_int_equal(fu_requests(f->up), 0);
    store_message *msgs;
    size_t n;
    store_msg_list(f->st, res.session_id, &msgs, &n, NULL);
    assert_int_equal(n, 0);
    store_messages_free(msgs, n);
    fx_free(f);
}

static void budget_warning_comes_before_the_reply(void **st) {
    (void)st;
    fx *f = fx_new(&OK, 1, "budget: {max_tokens_per_conversation: 30, warn_ratio: 0.5}\n");
    rec r = {0};
    chat_sink sink = {.emit = rec_emit, .ud = &r};
    chat_request q = {.content = "twenty characters or so of text here, about"};
    assert_int_equal(chat_turn(f->cs, &q, NULL, &sink, NULL, NULL), 0);
    assert_int_equal(r.infos, 1);
    assert_string_equal(r.last_info_kind, "budget_warning");
    assert_int_equal(r.done, 1);
    sb_free(&r.text);
    fx_free(f);
}

static void upstream_failure_is_an_error_event_and_an_error_row(void **st) {
    (void)st;
    fu_response e500 = {.status = 500,
                        .content_type = "application/json",
                        .content_length = true,
                        .body = "{\"error\":{\"message\":\"boom\"}}"};
    fx *f = fx_new(&e500, 1, NULL);
    rec r = {0};
    chat_sink sink = {.emit = rec_emit, .ud = &r};
    chat_request q = {.new_session = true, .content = "hi"};
    chat_result res;
    assert_int_not_equal(chat_turn(f->cs, &q, NULL, &sink, &res, NULL), 0);
    assert_int_equal(r.errors, 1);
    assert_int_equal(r.done, 0);
    assert_string_equal(r.error_kind, "http_5xx");
    store_message m;
    assert_int_equal(store_msg_get(f->st, res.reply_message_id, &m, NULL), 0);
    assert_int_equal(m.status, STORE_ERROR);
    assert_non_null(m.error);
    store_message_clear(&m);
    fx_free(f);
}

static void cancel_keeps_the_partial_reply(void **st) {
    (void)st;
    fu_response slow = {
        .content_type = "text/event-stream", .body = FU_OPENAI_STREAM, .event_gap_ms = 150};
    fx *f = fx_new(&slow, 1, NULL);
    prov_cancel *c = prov_cancel_new();
    rec r = {.cancel_on_first = c};
    chat_sink sink = {.emit = rec_emit, .ud = &r};
    chat_request q = {.new_session = true, .content = "hi"};
    chat_result res;
    uint64_t t0 = clock_mono_ns();
    assert_int_equal(chat_turn(f->cs, &q, c, &sink, &res, NULL), CF_ECANCEL);
    assert_true(clock_mono_ns() - t0 < 2000000000ull);
    assert_int_equal(r.done, 1);
    assert_string_equal(r.finish, "cancelled");
    store_message m;
    assert_int_equal(store_msg_get(f->st, res.reply_message_id, &m, NULL), 0);
    assert_int_equal(m.status, STORE_CANCELLED);
    assert_string_equal(m.content, r.text.data);
    assert_true(strlen(m.content) > 0);
    store_message_clear(&m);
    prov_cancel_free(c);
    sb_free(&r.text);
    fx_free(f);
}

static void regenerate_adds_an_alternative(void **st) {
    (void)st;
    fx *f = fx_new(&OK, 1, NULL);
    chat_request q = {.new_session = true, .content = "tell me a joke"};
    chat_result res;
    assert_int_equal(chat_turn(f->cs, &q, NULL, NULL, &res, NULL), 0);
    chat_request g = {.session_id = res.session_id, .regenerate = true};
    chat_result res2;
    assert_int_equal(chat_turn(f->cs, &g, NULL, NULL, &res2, NULL), 0);
    assert_int_equal(res2.user_message_id, 0);
    store_message *msgs;
    size_t n;
    store_msg_list(f->st, res.session_id, &msgs, &n, NULL);
    assert_int_equal(n, 3);
    assert_int_equal(msgs[1].parent_id, msgs[0].id);
    assert_int_equal(msgs[2].parent_id, msgs[0].id); /* same parent: an alternative */
    store_messages_free(msgs, n);
    /* The regenerated request did not include the first answer. */
    char *last = fu_last(f->up);
    assert_null(strstr(last, "Hello, w"));
    free(last);
    fx_free(f);
}

static void other_owners_session_is_not_found(void **st) {
    (void)st;
    fx *f = fx_new(&OK, 1, NULL);
    chat_request q = {.new_session = true, .content = "mine", .owner = "alice"};
    chat_result res;
    assert_int_equal(chat_turn(f->cs, &q, NULL, NULL, &res, NULL), 0);
    chat_request q2 = {.session_id = res.session_id, .content = "let me in", .owner = "mallory"};
    cf_err err = {0};
    assert_int_equal(chat_turn(f->cs, &q2, NULL, NULL, NULL, &err), CF_ENOTFOUND);
    assert_int_equal(fu_requests(f->up), 1);
    fx_free(f);
}

static void stateless_messages_are_sent_as_given(void **st) {
    (void)st;
    fx *f = fx_new(&OK, 1, NULL);
    chat_msg msgs[] = {{"system", "sys text"}, {"user", "u1"}, {"assistant", "a1"}, {"user", "u2"}};
    chat_request q = {.messages = msgs, .n_messages = 4};
    chat_result res;
    assert_int_equal(chat_turn(f->cs, &q, NULL, NULL, &res, NULL), 0);
    assert_int_equal(res.session_id, 0);
    char *last = fu_last(f->up);
    assert_non_null(strstr(last, "sys text"));
    assert_non_null(strstr(last, "a1"));
    free(last);
    chat_msg bad[] = {{"user", "u1"}, {"assistant", "a1"}};
    q.messages = bad;
    q.n_messages = 2;
    assert_int_equal(chat_turn(f->cs, &q, NULL, NULL, &res, NULL), CF_EINVAL);
    assert_non_null(strstr(res.error, "last message must be from the user"));
    fx_free(f);
}

static void unknown_model_and_bad_requests_are_refused(void **st) {
    (void)st;
    fx *f = fx_new(&OK, 1, NULL);
    chat_request q = {.content = "hi", .model = "gpt-9"};
    chat_result res;
    assert_int_equal(chat_turn(f->cs, &q, NULL, NULL, &res, NULL), CF_ENOTFOUND);
    assert_non_null(strstr(res.error, "model \"gpt-9\" is not configured"));
    chat_request none = {0};
    assert_int_equal(chat_turn(f->cs, &none, NULL, NULL, &res, NULL), CF_EINVAL);
    chat_request regen = {.regenerate = true};
    assert_int_equal(chat_turn(f->cs, &regen, NULL, NULL, &res, NULL), CF_EINVAL);
    chat_request missing = {.session_id = 999, .content = "x"};
    assert_int_equal(chat_turn(f->cs, &missing, NULL, NULL, &res, NULL), CF_ENOTFOUND);
    assert_int_equal(fu_requests(f->up), 0);
    fx_free(f);
}

typedef struct {
    chat_service *cs;
    int ok;
} par_arg;

static void *par_turn(void *p) {
    par_arg *a = p;
    for (int i = 0; i < 5; i++) {
        chat_request q = {.new_session = true, .content = "parallel"};
        if (chat_turn(a->cs, &q, NULL, NULL, NULL, NULL) == 0) a->ok++;
    }
    return NULL;
}

static void concurrent_turns_each_get_their_own_connection(void **st) {
    (void)st;
    fx *f = fx_new(&OK, 1, NULL);
    pthread_t th[4];
    par_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (par_arg){f->cs, 0};
        pthread_create(&th[i], NULL, par_turn, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].ok, 5);
    }
    store_session *ss;
    size_t n;
    store_list_opts lo = {.limit = 100};
    assert_int_equal(store_session_list(f->st, &lo, &ss, &n, NULL), 0);
    assert_int_equal(n, 20);
    store_sessions_free(ss, n);
    fx_free(f);
}

int main(void) {
    cf_err err = {0};
    if (prov_global_init(&err)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(new_session_turn_streams_and_persists),
        cmocka_unit_test(next_turn_sends_the_history),
        cmocka_unit_test(deterministic_repeat_is_served_from_cache),
        cmocka_unit_test(word_granularity_emits_words),
        cmocka_unit_test(template_is_filled_into_the_user_message),
        cmocka_unit_test(exhausted_budget_refuses_without_storing),
        cmocka_unit_test(budget_warning_comes_before_the_reply),
        cmocka_unit_test(upstream_failure_is_an_error_event_and_an_error_row),
        cmocka_unit_test(cancel_keeps_the_partial_reply),
        cmocka_unit_test(regenerate_adds_an_alternative),
        cmocka_unit_test(other_owners_session_is_not_found),
        cmocka_unit_test(stateless_messages_are_sent_as_given),
        cmocka_unit_test(unknown_model_and_bad_requests_are_refused),
        cmocka_unit_test(concurrent_turns_each_get_their_own_connection),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    prov_global_cleanup();
    return rc;
}
