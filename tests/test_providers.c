/* Tests for the remote providers (src/providers/{io,remote,openai,anthropic,
 * cohere}.c) against fake upstreams on 127.0.0.1 that speak each documented
 * wire format, with failure injection; plus pricing, token estimates and
 * secret redaction. */
#include "base/clock.h"
#include "base/log.h"
#include "base/sb.h"
#include "fake_upstream.h"
#include "providers/io.h"
#include "providers/pricing.h"
#include "providers/provider.h"
#include "providers/redact.h"
#include "providers/remote.h"
#include "testutil.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define KEY "sk-test-SECRET-0123456789abcdef"

/* ----------------------------------------------------------- collector */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sb_t text;
    int n_deltas, n_usage, n_finish, n_terminal;
    bool done, error;
    prov_usage usage;
    prov_finish finish;
    prov_errkind kind;
    int status, retry_after_ms;
    char message[512];
    double t_first_delta, t_end;
    prov_cancel *cancel_after_first; /* fire on the first delta */
} collector;

static void col_init(collector *c) {
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
}

static void col_free(collector *c) {
    sb_free(&c->text);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
}

static void col_cb(void *ud, const prov_event *ev) {
    collector *c = ud;
    pthread_mutex_lock(&c->mu);
    /* Nothing may follow a terminal event. */
    if (c->n_terminal) c->n_terminal += 100;
    switch (ev->kind) {
    case PROV_EV_DELTA:
        if (!c->n_deltas) c->t_first_delta = clock_mono_ms();
        c->n_deltas++;
        sb_appendn(&c->text, ev->text, ev->len);
        if (c->cancel_after_first) prov_cancel_fire(c->cancel_after_first);
        break;
    case PROV_EV_USAGE:
        c->n_usage++;
        c->usage = ev->usage;
        break;
    case PROV_EV_FINISH:
        c->n_finish++;
        c->finish = ev->finish;
        break;
    case PROV_EV_ERROR:
        c->n_terminal++;
        c->error = true;
        c->kind = ev->err_kind;
        c->status = ev->http_status;
        c->retry_after_ms = ev->retry_after_ms;
        snprintf(c->message, sizeof c->message, "%s", ev->message);
        c->t_end = clock_mono_ms();
        break;
    case PROV_EV_DONE:
        c->n_terminal++;
        c->done = true;
        c->t_end = clock_mono_ms();
        break;
    }
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void col_wait(collector *c) {
    pthread_mutex_lock(&c->mu);
    double start = clock_mono_ms();
    while (!c->n_terminal && clock_mono_ms() - start < 10000) {
        pthread_mutex_unlock(&c->mu);
        usleep(2000);
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    usleep(20000); /* anything after the terminal event would land now */
    assert_int_equal(c->n_terminal, 1);
}

/* ------------------------------------------------------------- fixture */

typedef struct {
    prov_io *io;
    prov_backend *openai, *anthropic, *cohere;
} fixture;

static int setup(void **st) {
    cf_err err = {0};
    fixture *f = calloc(1, sizeof *f);
    f->io = prov_io_new(&err);
    assert_non_null(f->io);
    f->openai = prov_remote_new(f->io, "openai", &err);
    f->anthropic = prov_remote_new(f->io, "anthropic", &err);
    f->cohere = prov_remote_new(f->io, "cohere", &err);
    assert_non_null(f->cohere);
    *st = f;
    return 0;
}

static int teardown(void **st) {
    fixture *f = *st;
    prov_remote_free(f->openai);
    prov_remote_free(f->anthropic);
    prov_remote_free(f->cohere);
    prov_io_free(f->io);
    free(f);
    return 0;
}

static const prov_msg MSGS[] = {{PROV_ROLE_SYSTEM, "Be brief."}, {PROV_ROLE_USER, "Say hello"}};

static prov_model_cfg model_cfg(const char *backend, const char *base_url) {
    prov_model_cfg m = {.name = "m",
                        .backend = backend,
                        .model = "gpt-4o-mini",
                        .base_url = base_url,
                        .api_key = KEY};
    m.timeouts.connect_ms = 500;
    m.timeouts.first_byte_ms = 400;
    m.timeouts.idle_ms = 300;
    return m;
}

static prov_request stream_req(void) {
    prov_request r = {.msgs = MSGS, .n_msgs = 2, .stream = true};
    return r;
}

/* Runs one request on B against CFG and waits for its end. */
static void run(prov_backend *b, const prov_request *req, const prov_model_cfg *cfg,
                prov_cancel *cancel, collector *c) {
    cf_err err = {0};
    int rc = b->start(b->self, req, cfg, cancel, col_cb, c, &err);
    if (rc) fail_msg("start failed: %s", err.msg);
    col_wait(c);
}

/* --------------------------------------------------------------- openai */

static void openai_streams_deltas_usage_and_finish(void **st) {
    fixture *f = *st;
    fu_response r = {
        .content_type = "text/event-stream", .body = FU_OPENAI_STREAM, .event_gap_ms = 2};
    fu_server *s = fu_start(&r, 1);
    char url[128];
    prov_model_cfg m = model_cfg("openai", fu_url(s, "/v1/", url));
    m.headers[0].name = "OpenAI-Organization";
    m.headers[0].value = "org-42";
    m.n_headers = 1;
    prov_request req = stream_req();
    req.has_temperature = true;
    req.temperature = 0.25;
    req.max_tokens = 64;
    req.stop[0] = "END";
    req.n_stop = 1;
    req.has_seed = true;
    req.seed = 7;
    collector c;
    col_init(&c);
    run(f->openai, &req, &m, NULL, &c);
    assert_true(c.done);
    assert_string_equal(sb_str(&c.text), "Hello, w\xC3\xB6rld");
    assert_int_equal(c.n_usage, 1);
    assert_int_equal(c.usage.prompt_tokens, 12);
    assert_int_equal(c.usage.completion_tokens, 4);
    assert_int_equal(c.usage.cached_tokens, 8);
    assert_false(c.usage.estimated);
    assert_int_equal(c.finish, PROV_FINISH_STOP);
    char *last = fu_last(s);
    assert_non_null(strstr(last, "POST /v1/chat/completions HTTP/1.1"));
    assert_non_null(strstr(last, "Authorization: Bearer " KEY));
    assert_non_null(strstr(last, "OpenAI-Organization: org-42"));
    assert_non_null(strstr(last, "\"stream_options\":{\"include_usage\":true}"));
    assert_non_null(strstr(last, "\"model\":\"gpt-4o-mini\""));
    assert_non_null(strstr(last, "\"temperature\":0.25"));
    assert_non_null(strstr(last, "\"max_tokens\":64"));
    assert_non_null(strstr(last, "\"stop\":[\"END\"]"));
    assert_non_null(strstr(last, "\"seed\":7"));
    assert_non_null(strstr(last, "{\"role\":\"system\",\"content\":\"Be brief.\"}"));
    free(last);
    fu_stop(s);
    col_free(&c);
}

static void openai_non_streamed_reply_is_one_delta(void **st) {
    fixture *f = *st;
    fu_response r = {.content_type = "application/json; charset=utf-8",
                     .body = FU_OPENAI_JSON,
                     .content_length = true};
    fu_server *s = fu_start(&r, 1);
    char url[128];
    prov_model_cfg m = model_cfg("openai", fu_url(s, "/v1", url));
    prov_request req = stream_req();
    req.stream = false;
    collector c;
    col_init(&c);
    run(f->openai, &req, &m, NULL, &c);
    assert_true(c.done);
    assert_int_equal(c.n_deltas, 1);
    assert_string_equal(sb_str(&c.text), "Hi there");
    assert_int_equal(c.finish, PROV_FINISH_LENGTH);
    assert_int_equal(c.usage.prompt_tokens, 9);
    assert_int_equal(c.usage.completion_tokens, 2);
    char *last = fu_last(s);
    assert_non_null(strstr(last, "\"stream\":false"));
    assert_null(strstr(last, "stream_options"));
    free(last);
    fu_stop(s);
    col_free(&c);
}

static void openai_stream_without_done_but_finished_is_complete(void **st) {
    fixture *f = *st;
    fu_response r = {
        .content_type = "text/event-stream",
        .body = "data: "
                "{\"choices\":[{\"delta\":{\"content\":\"ok\"},\"finish_reason\":\"stop\"}]}\n\n"};
    fu_server *s = fu_start(&r, 1);
    char url[128];
    prov_model_cfg m = model_cfg("openai", fu_url(s, "/v1", url));
    prov_request req = stream_req();
    collector c;
    col_init(&c);
    run(f->openai, &req, &m, NULL, &c);
    assert_true(c.done);
    assert_string_equal(sb_str(&c.text), "ok");
    assert_int_equal(c.n_usage, 0); /* nothing reported: the router estimates */
    fu_stop(s);
    col_free(&c);
}

/* ------------------------------------------------------------ anthropic */

static void anthropic_streams_message_events_with_cached_usage(void **st) {
    fixture *f = *st;
    fu_response r = {.content_type = "text/event-stream", .body = FU_ANTHROPIC_STREAM};
    fu_server *s = fu_start(&r, 1);
    char url[128];
    prov_model_cfg m = model_cfg("anthropic", fu_url(s, "/v1", url));
    m.model = "claude-3-5-haiku-20241022";
    prov_request req = stream_req();
    req.has_top_p = true;
    req.top_p = 0.5;
    collector c;
    col_init(&c);
    run(f->anthropic, &req, &m, NULL, &c);
    assert_true(c.done);
    assert_string_equal(sb_str(&c.text), "Bonjour !");
    assert_int_equal(c.usage.prompt_tokens, 125); /* 25 + 100 cache reads */
    assert_int_equal(c.usage.cached_tokens, 100);
    assert_int_equal(c.usage.completion_tokens, 15); /* message_delta's cumulative count */
    assert_int_equal(c.finish, PROV_FINISH_LENGTH);
    char *last = fu_last(s);
    assert_non_null(strstr(last, "POST /v1/messages HTTP/1.1"));
    assert_non_null(strstr(last, "x-api-key: " KEY));
    assert_non_null(strstr(last, "anthropic-version: 2023-06-01"));
    assert_non_null(strstr(last, "\"system\":\"Be brief.\""));
    assert_non_null(strstr(last, "\"messages\":[{\"role\":\"user\",\"content\":\"Say hello\"}]"));
    assert_non_null(strstr(last, "\"max_tokens\":4096"));
    assert_non_null(strstr(last, "\"top_p\":0.5"));
    assert_null(strstr(last, "Authorization"));
    free(last);
    fu_stop(s);
    col_free(&c);
}

static void anthropic_error_event_mid_stream_is_overloaded(void **st) {
    fixture *f = *st;
    fu_response r = {.content_type = "text/event-stream",
                     .body = "event: message_start\ndata: "
                             "{\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":"
                             "3,\"output_tokens\":1}}}\n\n"
                             "event: content_block_delta\ndata: "
                             "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
                             "\"text_delta\",\"text\":\"par\"}}\n\n"
                             "event: error\ndata: "
                             "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
                             "\"message\":\"Overloaded\"}}\n\n"};
    fu_server *s = fu_start(&r, 1);
    char url[128];
    prov_model_cfg m = model_cfg("anthropic", fu_url(s, "/v1", url));
    prov_request req = stream_req();
    collector c;
    col_init(&c);
    run(f->anthropic, &req, &m, NULL, &c);
    assert_true(c.error);
    assert_string_equal(sb_str(&c.text), "par");
    assert_int_equal(c.kind, PROV_ERR_HTTP_5XX);
    assert_int_equal(c.status, 529);
    assert_non_null(strstr(c.message, "overloaded_error"));
    fu_stop(s);
    col_free(&c);
}

/* --------------------------------------------------------------- cohere */

static void cohere_streams_v2_events_with_billed_usage(void **st) {
    fixture *f = *st;
    fu_response r = {
        .content_type = "text/event-stream", .body = FU_COHERE_STREAM, .event_gap_ms = 1};
    fu_server *s = fu_start(&r, 1);
    char url[128];
    prov_model_cfg m = model_cfg("cohere", fu_url(s, "/v2", url));
    m.model = "command-r-08-2024";
    prov_request req = stream_req();
    req.has_top_p = true;
    req.top_p = 0.75;
    collector c;
    col_init(&c);
    run(f->cohere, &req, &m, NULL, &c);
    assert_true(c.done);
    assert_string_equal(sb_str(&c.text), "Hola mundo");
    assert_int_equal(c.usage.prompt_tokens, 7); /* billed_units, not tokens */
    assert_int_equal(c.usage.completion_tokens, 3);
    assert_int_equal(c.finish, PROV_FINISH_STOP);
    char *last = fu_last(s);
    assert_non_null(strstr(last, "POST /v2/chat HTTP/1.1"));
    assert_non_null(strstr(last, "Authorization: Bearer " KEY));
    assert_non_null(strstr(last, "\"p\":0.75"));
    assert_non_null(strstr(last, "\"stream\":true"));
    free(last);
    fu_stop(s);
    col_free(&c);
}

static void cohere_finish_reason_error_is_a_failure(void **st) {
    fixture *f = *st;
    fu_response r = {.content_type = "text/event-stream",
                     .body =
                         "event: message-end\ndata: "
                         "{\"type\":\"message-end\",\"delta\":{\"finish_reason\":\"ERROR\"}}\n\n"};
    fu_server *s = fu_start(&r, 1);
    char url[128];
    prov_model_cfg m = model_cfg("cohere", fu_url(s, "/v2", url));
    prov_request req = stream_req();
    collector c;
    col_init(&c);
    run(f->cohere, &req, &m, NULL, &c);
    assert_true(c.error);
    assert_int_equal(c.kind, PROV_ERR_HTTP_5XX);
    fu_stop(s);
    col_free(&c);
}

/* ---------------------------------------------------- failure injection */

static void http_500_is_a_5xx_error_with_body_message(void **st) {
    fixture *f = *st;
    fu_response r = {
        .status = 500,
        .content_type = "application/json",
        .content_length = true,
        .body = "{\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\"}}"};
    fu_server *s = fu_start(&r, 1);
    char url[128];
    prov_model_cfg m = model_cfg("openai", fu_url(s, "/v1", url));
    prov_request req = stream_req();
    collector c;
    col_init(&c);
    run(f->openai, &req, &m, NULL, &c);
    assert_true(c.error);
    assert_int_equal(c.kind, PROV_ERR_HTTP_5XX);
    assert_int_equal(c.status, 500);
    assert_non_null(strstr(c.message, "The server had an error"));
    assert_int_equal(c.n_deltas, 0);
    fu_stop(s);
    col_free(&c);
}

static void http_429_reports_retry_after(void **st) {
    fixture *f = *st;
    fu_response r = {.status = 429,
                     .content_type = "application/json",
                     .content_length = true,
                     .headers = "Retry-After: 3\r\n",
                     .body = "{\"error\":{\"message\":\"slow down\"}}"};
    fu_server *s = fu_start(&r, 1);
    char url[128];
    prov_model_cfg m = model_cfg("openai", fu_url(s, "/v1", url));
    prov_request req = stream_req();
    collector c;
    col_init(&c);
    run(f->openai, &req, &m, NULL, &c);
    assert_true(c.error);
    assert_int_equal(c.kind, PROV_ERR_RATE_LIMITED);
    assert_int_equal(c.status, 429);
    assert_int_equal(c.retry_after_ms, 3000);
    fu_stop(s);
    col_free(&c);
}

static void retry_after_parses_seconds_and_http_dates(void **st) {
    (void)st;
    assert_int_equal(prov_parse_retry_after("120", 0), 120000);
    assert_int_equal(prov_parse_retry_after(" 0 ", 0), 0);
    /* Sun, 06 Nov 1994 08:49:37 GMT = 784111777 */
    assert_int_equal(prov_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111777 - 5), 5000);
    assert_int_equal(prov_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111777 + 50), 0);
    assert_int_equal(prov_parse_retry_after("soon", 0), -1);
    assert_int_equal(prov_parse_retry_after("12abc", 0), -1);
}

static void refused_connection_is_a_connect_error(void **st) {
    fixture *f = *st;
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", fu_dead_port());
    prov_model_cfg m = model_cfg("openai", url);
    prov_request req = stream_req();
    collector c;
    col_init(&c);
    run(f->openai, &req, &m, NULL, &c);
    assert_true(c.error);
    assert_int_equal(c.kind, PROV_ERR_CONNECT);
    assert_int_equal(c.status, 0);
    col_free(&c);
}

static void hang_past_first_byte_timeout_is_a_timeout(void **st) {
    fixture *f = *st;
    fu_response r = {
        .content_type = "text/event-stream", .body = FU_OPENAI_STREAM, .delay_ms = 5000};
    fu_server *s = fu_start(&r, 1);
    char url[128];
    prov_model_cfg m = model_cfg("openai", fu_url(s, "/v1", url));
    m.timeouts.first_byte_ms = 200;
    prov_request req = stream_req();
    collector c;
    col_init(&c);
    double t0 = clock_mono_ms();
    run(f->openai, &req, &m, NULL, &c);
    assert_true(c.error);
    assert_int_equal(c.kind, PROV_ERR_TIMEOUT);
    assert_true(c.t_end - t0 < 2000);
    assert_non_null(strstr(c.message, "first-byte"));
    fu_stop(s);
    col_free(&c);
}

static void stall_mid_stream_is_an_idle_timeout_after_text(void **st) {
    fixture *f = *st;
    fu_response r = {.content_type = "text/event-stream",
                     .body = "data: {\"choices\":[{\"delta\":{\"content\":\"partial\"}}]}\n\n",
                     .stall_ms = 5000};
    fu_server *s = fu_start(&r, 1);
    char url[128];
    prov_model_cfg m = model_cfg("openai", fu_url(s, "/v1", url));
    m.timeouts.idle_ms = 150;
    prov_request req = stream_req();
    collector c;
    col_init(&c);
    run(f->openai, &req, &m, NULL, &c);
    assert_true(c.error);
    assert_int_equal(c.kind, PROV_ERR_TIMEOUT);
    assert_string_equal(sb_str(&c.text), "partial");
    assert_non_null(strstr(c.message, "idle"));
    fu_stop(s);
    col_free(&c);
}

static void cut_mid_stream_is_a_protocol_error_not_success(void **st) {
    fixture *f = *st;
    fu_response r = {
        .content_type = "text/event-stream",
        .body = "data: {\"choices\":[{\"delta\":{\"content\":\"half\"}}]}\n\ndata: {\"choi"};
    fu_server *s = fu_start(&r, 1);
    char url[128];
    prov_model_cfg m = model_cfg("openai", fu_url(s, "/v1", url));
    prov_request req = stream_req();
    collector c;
    col_init(&c);
    run(f->openai, &req, &m, NULL, &c);
    assert_true(c.error);
    assert_int_equal(c.kind, PROV_ERR_PROTOCOL);
    assert_string_equal(sb_str(&c.text), "half");
    assert_non_null(strstr(c.message, "cut mid-stream"));
    fu_stop(s);
    col_free(&c);
}

static void connection_lost_before_declared_length_is_an_error(void **st) {
    fixture *f = *st;
    fu_response r = {
        .content_type = "application/json", .body = "{\"choices\":[", .declared_len = 500};
    fu_server *s = fu_start(&r, 1);
    char url[128];
    prov_model_cfg m = model_cfg("openai", fu_url(s, "/v1", url));
    prov_request req = stream_req();
    req.stream = false;
    collector c;
    col_init(&c);
    run(f->openai, &req, &m, NULL, &c);
    assert_true(c.error);
    assert_int_equal(c.kind, PROV_ERR_CONNECT);
    assert_non_null(strstr(c.message, "mid-response"));
    fu_stop(s);
    col_free(&c);
}

static void malformed_sse_json_is_a_protocol_error(void **st) {
    fixture *f = *st;
    fu_response r = {.content_type = "text/event-stream",
                     .body = "data: {not json\n\ndata: [DONE]\n\n"};
    fu_server *s = fu_start(&r, 1);
    char url[128];
    prov_model_cfg m = model_cfg("openai", fu_url(s, "/v1", url));
    prov_request req = stream_req();
    collector c;
    col_init(&c);
    run(f->openai, &req, &m, NULL, &c);
    assert_true(c.error);
    assert_int_equal(c.kind, PROV_ERR_PROTOCOL);
    assert_non_null(strstr(c.message, "malformed JSON"));
    fu_stop(s);
    col_free(&c);
}

static void oversized_sse_line_is_a_protocol_error(void **st) {
    fixture *f = *st;
    /* One data line of 2 MiB without a line end: over the parser's 1 MiB limit. */
    size_t n = (size_t)2 << 20;
    char *body = malloc(n + 1);
    memcpy(body, "data: ", 6);
    memset(body + 6, 'x', n - 6);
    body[n] = 0;
    fu_response r = {.content_type = "text/event-stream", .body = body};
    fu_server *s = fu_start(&r, 1);
    char url[128];
    prov_model_cfg m = model_cfg("openai", fu_url(s, "/v1", url));
    prov_request req = stream_req();
    collector c;
    col_init(&c);
    run(f->openai, &req, &m, NULL, &c);
    assert_true(c.error);
    assert_int_equal(c.kind, PROV_ERR_PROTOCOL);
    assert_non_null(strstr(c.message, "size limit"));
    fu_stop(s);
    free(body);
    col_free(&c);
}

static void wrong_content_type_is_a_protocol_error(void **st) {
    fixture *f = *st;
    fu_response r = {.content_type = "text/html", .body = "<html>proxy login</html>"};
    fu_server *s = fu_start(&r, 1);
    char url[128];
    prov_model_cfg m = model_cfg("cohere", fu_url(s, "/v2", url));
    prov_request req = stream_req();
    collector c;
    col_init(&c);
    run(f->cohere, &req, &m, NULL, &c);
    assert_true(c.error);
    assert_int_equal(c.kind, PROV_ERR_PROTOCOL);
    assert_non_null(strstr(c.message, "text/html"));
    assert_int_equal(c.n_deltas, 0);
    fu_stop(s);
    col_free(&c);
}

static void cancel_mid_stream_ends_promptly(void **st) {
    fixture *f = *st;
    fu_response r = {
        .content_type = "text/event-stream", .body = FU_OPENAI_STREAM, .event_gap_ms = 2000};
    fu_server *s = fu_start(&r, 1);
    char url[128];
    prov_model_cfg m = model_cfg("openai", fu_url(s, "/v1", url));
    m.timeouts.idle_ms = 5000;
    prov_request req = stream_req();
    prov_cancel *cancel = prov_cancel_new();
    collector c;
    col_init(&c);
    c.cancel_after_first = cancel;
    run(f->openai, &req, &m, cancel, &c);
    assert_true(c.error);
    assert_int_equal(c.kind, PROV_ERR_CANCELLED);
    /* The first chunk carries "" (no delta); "Hello" comes 2 s later. So the
     * cancel fires at the first real delta and the end follows at once. */
    assert_string_equal(sb_str(&c.text), "Hello");
    assert_true(c.t_end - c.t_first_delta < 500);
    prov_cancel_free(cancel);
    fu_stop(s);
    col_free(&c);
}

static void cancel_before_start_never_contacts_upstream_twice(void **st) {
    fixture *f = *st;
    fu_response r = {
        .content_type = "text/event-stream", .body = FU_OPENAI_STREAM, .delay_ms = 3000};
    fu_server *s = fu_start(&r, 1);
    char url[128];
    prov_model_cfg m = model_cfg("openai", fu_url(s, "/v1", url));
    prov_request req = stream_req();
    prov_cancel *cancel = prov_cancel_new();
    prov_cancel_fire(cancel);
    collector c;
    col_init(&c);
    double t0 = clock_mono_ms();
    run(f->openai, &req, &m, cancel, &c);
    assert_int_equal(c.kind, PROV_ERR_CANCELLED);
    assert_true(c.t_end - t0 < 500);
    prov_cancel_free(cancel);
    fu_stop(s);
    col_free(&c);
}

/* --------------------------------------------------------- more formats */

static void anthropic_non_streamed_joins_consecutive_turns(void **st) {
    fixture *f = *st;
    fu_response r = {
        .content_type = "application/json",
        .content_length = true,
        .body =
            "{\"id\":\"msg_2\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":"
            "\"text\",\"text\":\"Salut\"}],"
            "\"stop_reason\":\"end_turn\",\"usage\":{\"input_tokens\":11,\"output_tokens\":2}}"};
    fu_server *s = fu_start(&r, 1);
    char url[128];
    prov_model_cfg m = model_cfg("anthropic", fu_url(s, "/v1", url));
    const prov_msg msgs[] = {{PROV_ROLE_USER, "one"},
                             {PROV_ROLE_USER, "two"},
                             {PROV_ROLE_ASSISTANT, "ok"},
                             {PROV_ROLE_USER, "three"}};
    prov_request req = {.msgs = msgs, .n_msgs = 4, .max_tokens = 10};
    collector c;
    col_init(&c);
    run(f->anthropic, &req, &m, NULL, &c);
    assert_true(c.done);
    assert_string_equal(sb_str(&c.text), "Salut");
    assert_int_equal(c.finish, PROV_FINISH_STOP);
    assert_int_equal(c.usage.prompt_tokens, 11);
    assert_int_equal(c.usage.completion_tokens, 2);
    char *last = fu_last(s);
    assert_non_null(strstr(
        last,
        "\"messages\":[{\"role\":\"user\",\"content\":\"one\\n\\ntwo\"},"
        "{\"role\":\"assistant\",\"content\":\"ok\"},{\"role\":\"user\",\"content\":\"three\"}]"));
    assert_non_null(strstr(last, "\"max_tokens\":10"));
    assert_null(strstr(last, "\"stream\""));
    free(last);
    fu_stop(s);
    col_free(&c);
}

static void cohere_non_streamed_reply_with_usage(void **st) {
    fixture *f = *st;
    fu_response r = {.content_type = "application/json",
                     .content_length = true,
                     .body = "{\"id\":\"x\",\"finish_reason\":\"MAX_TOKENS\",\"message\":{\"role\":"
                             "\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"Ciao\"}]},"
                             "\"usage\":{\"billed_units\":{\"input_tokens\":5,\"output_tokens\":1},"
                             "\"tokens\":{\"input_tokens\":50,\"output_tokens\":1}}}"};
    fu_server *s = fu_start(&r, 1);
    char url[128];
    prov_model_cfg m = model_cfg("cohere", fu_url(s, "/v2", url));
    prov_request req = stream_req();
    req.stream = false;
    collector c;
    col_init(&c);
    run(f->cohere, &req, &m, NULL, &c);
    assert_true(c.done);
    assert_string_equal(sb_str(&c.text), "Ciao");
    assert_int_equal(c.finish, PROV_FINISH_LENGTH);
    assert_int_equal(c.usage.prompt_tokens, 5);
    fu_stop(s);
    col_free(&c);
}

static void openai_error_object_inside_stream_is_an_error(void **st) {
    fixture *f = *st;
    fu_response r = {
        .content_type = "text/event-stream",
        .body =
            "data: {\"error\":{\"message\":\"model overloaded\",\"type\":\"server_error\"}}\n\n"};
    fu_server *s = fu_start(&r, 1);
    char url[128];
    prov_model_cfg m = model_cfg("openai", fu_url(s, "/v1", url));
    prov_request req = stream_req();
    collector c;
    col_init(&c);
    run(f->openai, &req, &m, NULL, &c);
    assert_true(c.error);
    assert_int_equal(c.kind, PROV_ERR_HTTP_5XX);
    assert_non_null(strstr(c.message, "model overloaded"));
    fu_stop(s);
    col_free(&c);
}

static void openai_reasoning_model_gets_max_completion_tokens(void **st) {
    fixture *f = *st;
    fu_response r = {.content_type = "text/event-stream", .body = FU_OPENAI_STREAM};
    fu_server *s = fu_start(&r, 1);
    char url[128];
    prov_model_cfg m = model_cfg("openai", fu_url(s, "/v1", url));
    m.model = "o3-mini";
    prov_request req = stream_req();
    req.max_tokens = 99;
    collector c;
    col_init(&c);
    run(f->openai, &req, &m, NULL, &c);
    char *last = fu_last(s);
    assert_non_null(strstr(last, "\"max_completion_tokens\":99"));
    assert_null(strstr(last, "\"max_tokens\""));
    free(last);
    fu_stop(s);
    col_free(&c);
}

static void concurrent_streams_share_the_io_thread(void **st) {
    fixture *f = *st;
    enum { N = 8 };
    fu_response r = {
        .content_type = "text/event-stream", .body = FU_OPENAI_STREAM, .event_gap_ms = 30};
    fu_server *s[N];
    prov_model_cfg m[N];
    char url[N][128];
    collector c[N];
    prov_request req = stream_req();
    for (int i = 0; i < N; i++) {
        s[i] = fu_start(&r, 1);
        m[i] = model_cfg("openai", fu_url(s[i], "/v1", url[i]));
        col_init(&c[i]);
        cf_err err = {0};
        assert_int_equal(f->openai->start(f->openai->self, &req, &m[i], NULL, col_cb, &c[i], &err),
                         0);
    }
    double first_end = 1e18, last_first_delta = 0;
    for (int i = 0; i < N; i++) {
        col_wait(&c[i]);
        assert_true(c[i].done);
        assert_string_equal(sb_str(&c[i].text), "Hello, w\xC3\xB6rld");
        if (c[i].t_end < first_end) first_end = c[i].t_end;
        if (c[i].t_first_delta > last_first_delta) last_first_delta = c[i].t_first_delta;
    }
    /* Every stream had started before any finished: they ran side by side. */
    assert_true(last_first_delta < first_end);
    for (int i = 0; i < N; i++) {
        fu_stop(s[i]);
        col_free(&c[i]);
    }
}

static void io_shutdown_cancels_transfers_in_flight(void **st) {
    (void)st;
    cf_err err = {0};
    prov_io *io = prov_io_new(&err);
    prov_backend *b = prov_remote_new(io, "openai", &err);
    fu_response r = {
        .content_type = "text/event-stream", .body = FU_OPENAI_STREAM, .delay_ms = 5000};
    fu_server *s = fu_start(&r, 1);
    char url[128];
    prov_model_cfg m = model_cfg("openai", fu_url(s, "/v1", url));
    m.timeouts.first_byte_ms = 10000;
    prov_request req = stream_req();
    collector c;
    col_init(&c);
    assert_int_equal(b->start(b->self, &req, &m, NULL, col_cb, &c, &err), 0);
    usleep(50 * 1000);
    double t0 = clock_mono_ms();
    prov_io_free(io);
    assert_true(clock_mono_ms() - t0 < 1000);
    assert_int_equal(c.n_terminal, 1);
    assert_int_equal(c.kind, PROV_ERR_CANCELLED);
    prov_remote_free(b);
    fu_stop(s);
    col_free(&c);
}

static void extra_header_values_are_redacted_and_injection_refused(void **st) {
    fixture *f = *st;
    fu_response r = {.status = 403,
                     .content_type = "application/json",
                     .content_length = true,
                     .body =
                         "{\"error\":{\"message\":\"token tok-ORGSECRET-998877 not allowed\"}}"};
    fu_server *s = fu_start(&r, 1);
    char url[128];
    prov_model_cfg m = model_cfg("openai", fu_url(s, "/v1", url));
    m.headers[0].name = "X-Org-Token";
    m.headers[0].value = "tok-ORGSECRET-998877";
    m.headers[1].name = "X-Evil";
    m.headers[1].value = "a\r\nX-Injected: 1";
    m.n_headers = 2;
    prov_request req = stream_req();
    collector c;
    col_init(&c);
    run(f->openai, &req, &m, NULL, &c);
    assert_int_equal(c.kind, PROV_ERR_AUTH);
    assert_null(strstr(c.message, "ORGSECRET"));
    assert_non_null(strstr(c.message, "token " PROV_REDACTED " not allowed"));
    char *last = fu_last(s);
    assert_non_null(strstr(last, "X-Org-Token: tok-ORGSECRET-998877"));
    assert_null(strstr(last, "X-Injected"));
    free(last);
    fu_stop(s);
    col_free(&c);
}

static void invalid_utf8_message_is_rejected_before_sending(void **st) {
    fixture *f = *st;
    fu_server *s =
        fu_start(&(fu_response){.content_type = "text/event-stream", .body = FU_OPENAI_STREAM}, 1);
    char url[128];
    prov_model_cfg m = model_cfg("openai", fu_url(s, "/v1", url));
    const prov_msg bad[] = {{PROV_ROLE_USER, "caf\xC3"}};
    prov_request req = {.msgs = bad, .n_msgs = 1, .stream = true};
    cf_err err = {0};
    collector c;
    col_init(&c);
    assert_int_equal(f->openai->start(f->openai->self, &req, &m, NULL, col_cb, &c, &err),
                     CF_EINVAL);
    assert_int_equal(fu_requests(s), 0);
    fu_stop(s);
    col_free(&c);
}

/* -------------------------------------------------------------- secrets */

static void auth_error_never_echoes_the_api_key(void **st) {
    fixture *f = *st;
    /* The upstream quotes the key back, as OpenAI does for a wrong key. */
    fu_response r = {.status = 401,
                     .content_type = "application/json",
                     .content_length = true,
                     .body = "{\"error\":{\"message\":\"Incorrect API key provided: " KEY
                             ". You can find your API key at "
                             "https://x/?key=ABCDEFGH12345\",\"type\":\"invalid_request_error\"}}"};
    fu_server *s = fu_start(&r, 1);
    char url[128];
    prov_model_cfg m = model_cfg("openai", fu_url(s, "/v1", url));
    prov_request req = stream_req();
    collector c;
    col_init(&c);
    /* Capture stderr (debug logging on) to check log lines too. */
    char *dir = tu_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/log", dir);
    int saved = dup(2);
    int lf = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    dup2(lf, 2);
    log_level old = log_get_level();
    log_set_level(LOG_DEBUG);
    run(f->openai, &req, &m, NULL, &c);
    log_set_level(old);
    dup2(saved, 2);
    close(saved);
    close(lf);
    size_t n;
    char *logs = tu_read_file(path, &n);
    assert_non_null(logs);
    assert_non_null(strstr(logs, "Incorrect API key")); /* the error was logged ... */
    assert_null(strstr(logs, "SECRET"));                /* ... without the key */
    free(logs);
    tu_rmtree(dir);
    free(dir);
    assert_true(c.error);
    assert_int_equal(c.kind, PROV_ERR_AUTH);
    assert_int_equal(c.status, 401);
    assert_non_null(strstr(c.message, "Incorrect API key provided: " PROV_REDACTED));
    assert_null(strstr(c.message, "SECRET"));
    assert_null(strstr(c.message, "ABCDEFGH12345"));
    fu_stop(s);
    col_free(&c);
}

static void redact_scrubs_known_secrets_and_key_patterns(void **st) {
    (void)st;
    sb_t s = {0};
    sb_append(&s, "hdr Bearer abcdefghijklmnop, custom=my-own-secret-value, sk-proj-1234567890abc, "
                  "url https://h/p?api_key=zzzzzzzzzz&x=1, sk-no");
    const char *sec[] = {"my-own-secret-value", NULL, "abc"};
    prov_redact(&s, sec, 3);
    assert_string_equal(sb_str(&s), "hdr Bearer [REDACTED], custom=[REDACTED], [REDACTED], "
                                    "url https://h/p?api_key=[REDACTED]&x=1, sk-no");
    sb_free(&s);
}

static void url_with_credentials_is_refused_without_echo(void **st) {
    fixture *f = *st;
    prov_model_cfg m = model_cfg("openai", "http://user:hunter2hunter2@127.0.0.1:1/v1");
    prov_request req = stream_req();
    cf_err err = {0};
    collector c;
    col_init(&c);
    assert_int_equal(f->openai->start(f->openai->self, &req, &m, NULL, col_cb, &c, &err),
                     CF_EINVAL);
    assert_null(strstr(err.msg, "hunter2"));
    col_free(&c);
}

/* ------------------------------------------------------- pricing/tokens */

static void price_lookup_takes_longest_prefix(void **st) {
    (void)st;
    prov_price p;
    assert_true(prov_price_default("gpt-4o-mini-2024-07-18", &p));
    assert_true(p.input == 0.15 && p.output == 0.60);
    assert_true(prov_price_default("gpt-4o-2024-08-06", &p));
    assert_true(p.input == 2.50);
    assert_true(prov_price_default("command-r-plus-08-2024", &p));
    assert_true(p.input == 2.50);
    assert_true(prov_price_default("command-r-08-2024", &p));
    assert_true(p.input == 0.15);
    assert_true(prov_price_default("openrouter/anthropic/claude-sonnet-4-20250514", &p));
    assert_true(p.output == 15.0);
    assert_true(prov_price_default("o3-mini", &p));
    assert_true(p.input == 1.10);
    assert_false(prov_price_default("my-local-llama", &p));
}

static void config_price_overrides_the_table(void **st) {
    (void)st;
    prov_model_cfg m = {.model = "gpt-4o"};
    prov_price p = prov_price_for(&m);
    assert_true(p.set && p.input == 2.50);
    m.price = (prov_price){.set = true, .input = 1, .output = 2};
    p = prov_price_for(&m);
    assert_true(p.input == 1 && p.output == 2);
}

static void cost_bills_cached_input_at_cached_rate(void **st) {
    (void)st;
    prov_price p = {.set = true, .input = 2.50, .output = 10.00, .cached_input = 1.25};
    prov_usage u = {.prompt_tokens = 1000000, .completion_tokens = 500000, .cached_tokens = 400000};
    prov_cost c = prov_cost_of(&u, &p);
    assert_true(c.priced);
    assert_float_equal(c.input, 1.50, 1e-9);        /* 600k uncached */
    assert_float_equal(c.cached_input, 0.50, 1e-9); /* 400k cached */
    assert_float_equal(c.output, 5.00, 1e-9);
    assert_float_equal(c.total, 7.00, 1e-9);
    p.cached_input = 0; /* no cached rate: billed as input */
    c = prov_cost_of(&u, &p);
    assert_float_equal(c.cached_input, 1.00, 1e-9);
    prov_price none = {0};
    c = prov_cost_of(&u, &none);
    assert_false(c.priced);
    assert_float_equal(c.total, 0, 0);
}

static void token_estimate_is_utf8_aware(void **st) {
    (void)st;
    assert_int_equal(prov_estimate_tokens("", 0), 0);
    assert_int_equal(prov_estimate_tokens("a", 1), 1);
    assert_int_equal(prov_estimate_tokens("abcdefgh", 8), 2);
    /* 4 CJK characters (12 bytes) are about 4 tokens, not 3 (bytes/4). */
    assert_int_equal(prov_estimate_tokens("\xE4\xBD\xA0\xE5\xA5\xBD\xE4\xB8\x96\xE7\x95\x8C", 12),
                     4);
    /* Cyrillic: 2 letters per token. */
    assert_int_equal(prov_estimate_tokens("\xD0\xBF\xD1\x80\xD0\xB8\xD0\xB2", 8), 2);
    /* Emoji (astral): 2 tokens each. */
    assert_int_equal(prov_estimate_tokens("\xF0\x9F\x98\x80\xF0\x9F\x98\x80", 8), 4);
}

static int64_t count_words(void *ud, const char *s, size_t n) {
    (*(int *)ud)++;
    int64_t w = 0;
    bool in = false;
    for (size_t i = 0; i < n; i++) {
        bool sp = s[i] == ' ';
        if (!sp && !in) w++;
        in = !sp;
    }
    return w;
}

static void exact_counter_hook_replaces_the_estimate(void **st) {
    (void)st;
    int calls = 0;
    prov_model_cfg m = {.count_tokens = count_words, .count_ud = &calls};
    bool est = true;
    assert_int_equal(prov_count_text(&m, "one two three", 13, &est), 3);
    assert_false(est);
    prov_request req = {.msgs = MSGS, .n_msgs = 2};
    assert_int_equal(prov_count_prompt(&m, &req, &est), 2 + 2 + 8);
    assert_false(est);
    assert_int_equal(calls, 3);
    prov_model_cfg plain = {0};
    prov_count_prompt(&plain, &req, &est);
    assert_true(est);
}

int main(void) {
    cf_err err = {0};
    if (prov_global_init(&err)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(openai_streams_deltas_usage_and_finish),
        cmocka_unit_test(openai_non_streamed_reply_is_one_delta),
        cmocka_unit_test(openai_stream_without_done_but_finished_is_complete),
        cmocka_unit_test(anthropic_streams_message_events_with_cached_usage),
        cmocka_unit_test(anthropic_error_event_mid_stream_is_overloaded),
        cmocka_unit_test(cohere_streams_v2_events_with_billed_usage),
        cmocka_unit_test(cohere_finish_reason_error_is_a_failure),
        cmocka_unit_test(http_500_is_a_5xx_error_with_body_message),
        cmocka_unit_test(http_429_reports_retry_after),
        cmocka_unit_test(retry_after_parses_seconds_and_http_dates),
        cmocka_unit_test(refused_connection_is_a_connect_error),
        cmocka_unit_test(hang_past_first_byte_timeout_is_a_timeout),
        cmocka_unit_test(stall_mid_stream_is_an_idle_timeout_after_text),
        cmocka_unit_test(cut_mid_stream_is_a_protocol_error_not_success),
        cmocka_unit_test(connection_lost_before_declared_length_is_an_error),
        cmocka_unit_test(malformed_sse_json_is_a_protocol_error),
        cmocka_unit_test(oversized_sse_line_is_a_protocol_error),
        cmocka_unit_test(wrong_content_type_is_a_protocol_error),
        cmocka_unit_test(cancel_mid_stream_ends_promptly),
        cmocka_unit_test(cancel_before_start_never_contacts_upstream_twice),
        cmocka_unit_test(anthropic_non_streamed_joins_consecutive_turns),
        cmocka_unit_test(cohere_non_streamed_reply_with_usage),
        cmocka_unit_test(openai_error_object_inside_stream_is_an_error),
        cmocka_unit_test(openai_reasoning_model_gets_max_completion_tokens),
        cmocka_unit_test(concurrent_streams_share_the_io_thread),
        cmocka_unit_test(io_shutdown_cancels_transfers_in_flight),
        cmocka_unit_test(extra_header_values_are_redacted_and_injection_refused),
        cmocka_unit_test(invalid_utf8_message_is_rejected_before_sending),
        cmocka_unit_test(auth_error_never_echoes_the_api_key),
        cmocka_unit_test(redact_scrubs_known_secrets_and_key_patterns),
        cmocka_unit_test(url_with_credentials_is_refused_without_echo),
        cmocka_unit_test(price_lookup_takes_longest_prefix),
        cmocka_unit_test(config_price_overrides_the_table),
        cmocka_unit_test(cost_bills_cached_input_at_cached_rate),
        cmocka_unit_test(token_estimate_is_utf8_aware),
        cmocka_unit_test(exact_counter_hook_replaces_the_estimate),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    prov_global_cleanup();
    return rc;
}
