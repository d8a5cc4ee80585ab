/*
 * openai — a generation rendered in OpenAI's chat-completions shapes, for
 * the handler of POST /v1/chat/completions (written with the chat service).
 *
 * Streamed: one `chat.completion.chunk` per delta (the first carries
 * role "assistant"), a last chunk with the finish_reason, with
 * stream_options.include_usage a chunk with empty choices and the usage,
 * then `data: [DONE]`. An error event becomes `data: {"error":{...}}` (the
 * official clients raise it) and the stream ends without [DONE]. A client
 * that disconnects cancels the generation: such a request is not
 * resumable, so nobody else will read the reply.
 *
 * Not streamed: waits for the generation to finish and answers one
 * `chat.completion`, or the error mapped to a status (see oa_status).
 *
 * The chunk and completion id is "chatcmpl-" + the generation id without
 * its "gen_" prefix, so logs and the generation routes can be matched up.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/internal.h"

typedef struct {
    char id[48];
    const char *model;
    json_int_t created;
    bool include_usage, sent_role;
    json_t *usage; /* last usage event, as OpenAI's usage object */
    char done_model[128];
} oa_ctx;

static void oa_init(oa_ctx *c, gen *g, const char *model, bool include_usage) {
    memset(c, 0, sizeof *c);
    const char *gid = gen_id(g);
    snprintf(c->id, sizeof c->id, "chatcmpl-%s", strncmp(gid, "gen_", 4) ? gid : gid + 4);
    c->model = model ? model : "";
    c->created = (json_int_t)time(NULL);
    c->include_usage = include_usage;
}

static json_t *oa_usage(const json_t *payload) {
    json_int_t pt = json_integer_value(json_object_get(payload, "prompt_tokens"));
    json_int_t ct = json_integer_value(json_object_get(payload, "completion_tokens"));
    return json_pack("{s:I, s:I, s:I}", "prompt_tokens", pt, "completion_tokens", ct,
                     "total_tokens", pt + ct);
}

static json_t *oa_chunk(oa_ctx *c, json_t *choices) {
    json_t *j = json_pack("{s:s, s:s, s:I, s:s, s:o}", "id", c->id, "object",
                          "chat.completion.chunk", "created", c->created, "model",
                          c->done_model[0] ? c->done_model : c->model, "choices", choices);
    if (c->include_usage) json_object_set_new(j, "usage", json_null());
    return j;
}

static void dump_into(sb_t *out, json_t *j) {
    char *t = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(15));
    if (t) sb_append(out, t);
    free(t);
    json_decref(j);
}

/* Status and error type for an error event's kind. */
static int oa_status(const char *kind, const char **type) {
    *type = "server_error";
    if (!kind) return 500;
    if (!strcmp(kind, "config") || !strcmp(kind, "invalid_request") ||
        !strcmp(kind, "budget_exceeded") || !strcmp(kind, "context_length_exceeded")) {
        *type = "invalid_request_error";
        return 400;
    }
    if (!strcmp(kind, "not_found") || !strcmp(kind, "model_not_found")) {
        *type = "invalid_request_error";
        return 404;
    }
    if (!strcmp(kind, "rate_limited")) {
        *type = "rate_limit_error";
        return 429;
    }
    if (!strcmp(kind, "timeout")) return 504;
    if (!strcmp(kind, "unavailable") || !strcmp(kind, "cancelled")) return 503;
    if (!strcmp(kind, "connect") || !strcmp(kind, "http_4xx") || !strcmp(kind, "http_5xx") ||
        !strcmp(kind, "protocol") || !strcmp(kind, "auth") || !strcmp(kind, "upstream")) {
        *type = "upstream_error";
        return 502;
    }
    return 500;
}

static int oa_fmt(void *ctx, gen *g, const gen_event *ev, sb_t *out) {
    (void)g;
    oa_ctx *c = ctx;
    json_t *p = json_loads(ev->json, 0, NULL);
    int emit = 0;
    switch (ev->type) {
    case GEN_EV_DELTA: {
        json_t *delta = json_pack("{s:O}", "content", json_object_get(p, "text"));
        if (!c->sent_role) json_object_set_new(delta, "role", json_string("assistant"));
        c->sent_role = true;
        dump_into(out, oa_chunk(c, json_pack("[{s:i, s:o, s:n, s:n}]", "index", 0, "delta", delta,
                                             "logprobs", "finish_reason")));
        emit = 1;
        break;
    }
    case GEN_EV_USAGE:
        json_decref(c->usage);
        c->usage = oa_usage(p);
        break;
    case GEN_EV_DONE: {
        const char *m = json_string_value(json_object_get(p, "model"));
        if (m && *m) snprintf(c->done_model, sizeof c->done_model, "%s", m);
        const char *fr = json_string_value(json_object_get(p, "finish_reason"));
        json_t *delta = json_object();
        if (!c->sent_role) json_object_set_new(delta, "role", json_string("assistant"));
        dump_into(out, oa_chunk(c, json_pack("[{s:i, s:o, s:n, s:s}]", "index", 0, "delta", delta,
                                             "logprobs", "finish_reason", fr ? fr : "stop")));
        emit = 1;
        break;
    }
    case GEN_EV_ERROR: {
        const char *kind = json_string_value(json_object_get(p, "kind")), *type;
        oa_status(kind, &type);
        dump_into(out,
                  json_pack("{s:{s:O, s:s, s:n, s:s?}}", "error", "message",
                            json_object_get(p, "message"), "type", type, "param", "code", kind));
        emit = 1;
        break;
    }
    default: break; /* info events have no OpenAI counterpart */
    }
    json_decref(p);
    return emit;
}

int srv_openai_stream(srv_req *r, gen *g, const char *model, bool include_usage) {
    oa_ctx c;
    oa_init(&c, g, model, include_usage);
    int rc = srv_sse_start(r);
    if (rc == 0) rc = srv_sse_follow(r, g, 0, oa_fmt, &c);
    if (rc == CF_ECLOSED) {
        gen_cancel(g); /* nobody can resume a plain API stream */
    } else {
        if (rc == 0 && gen_get_state(g) != GEN_ERROR) {
            if (c.include_usage && c.usage) {
                sb_t b = {0};
                json_t *u = oa_chunk(&c, json_array());
                json_object_set(u, "usage", c.usage);
                dump_into(&b, u);
                srv_sse_event(r, 0, NULL, b.data, b.len);
                sb_free(&b);
            }
            srv_sse_done(r);
        }
        srv_sse_end(r);
    }
    json_decref(c.usage);
    return rc;
}

int srv_openai_reply(srv_req *r, gen *g, const char *model) {
    oa_ctx c;
    oa_init(&c, g, model, false);
    sb_t text = {0};
    json_t *usage = NULL, *done = NULL, *error = NULL;
    uint64_t after = 0;
    for (;;) {
        if (atomic_load(&r->srv->hard_stop)) break;
        const gen_event *evs[64];
        size_t n = 0;
        int w = gen_wait(g, after, 250, evs, 64, &n);
        if (w == CF_ECLOSED) break;
        for (size_t i = 0; i < n; i++) {
            after = evs[i]->seq;
            json_t *p = json_loads(evs[i]->json, 0, NULL);
            if (evs[i]->type == GEN_EV_DELTA) {
                sb_append(&text, json_string_value(json_object_get(p, "text")));
            } else if (evs[i]->type == GEN_EV_USAGE) {
                json_decref(usage);
                usage = oa_usage(p);
            } else if (evs[i]->type == GEN_EV_DONE) {
                json_decref(done);
                done = json_incref(p);
            } else if (evs[i]->type == GEN_EV_ERROR) {
                json_decref(error);
                error = json_incref(p);
            }
            json_decref(p);
        }
    }
    int rc;
    if (error || !done) {
        const char *kind = error ? json_string_value(json_object_get(error, "kind")) : "cancelled";
        const char *type;
        int status = oa_status(kind, &type);
        const char *msg = error ? json_string_value(json_object_get(error, "message"))
                                : "the server is shutting down";
        /* A busy or rate-limited upstream said when to come back. */
        json_int_t ra = error ? json_integer_value(json_object_get(error, "retry_after_ms")) : 0;
        char extra[64] = "";
        if (ra > 0 && (status == 429 || status == 503))
            snprintf(extra, sizeof extra, "Retry-After: %lld\r\n", (long long)((ra + 999) / 1000));
        rc = srv_reply_error_hdr(r, status, type, kind, NULL, extra[0] ? extra : NULL, "%s",
                                 msg ? msg : "generation failed");
    } else {
        const char *m = json_string_value(json_object_get(done, "model"));
        const char *fr = json_string_value(json_object_get(done, "finish_reason"));
        json_t *j =
            json_pack("{s:s, s:s, s:I, s:s, s:[{s:i, s:{s:s, s:s}, s:n, s:s}]}", "id", c.id,
                      "object", "chat.completion", "created", c.created, "model",
                      m && *m ? m : c.model, "choices", "index", 0, "message", "role", "assistant",
                      "content", sb_str(&text), "logprobs", "finish_reason", fr ? fr : "stop");
        json_object_set_new(j, "usage",
                            usage ? json_incref(usage)
                                  : json_pack("{s:i, s:i, s:i}", "prompt_tokens", 0,
                                              "completion_tokens", 0, "total_tokens", 0));
        rc = srv_reply_json(r, 200, j);
        json_decref(j);
    }
    json_decref(usage);
    json_decref(done);
    json_decref(error);
    sb_free(&text);
    return rc;
}
