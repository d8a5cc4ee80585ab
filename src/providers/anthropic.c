/*
 * anthropic — the Anthropic Messages API.
 *
 * Request: POST {base_url}/messages (base_url like https://api.anthropic.com/v1)
 * with `x-api-key: KEY` and `anthropic-version: 2023-06-01`; body {model,
 * max_tokens (required: 4096 when the request leaves it 0), system (all
 * system messages joined by a blank line: the API has no system role),
 * messages[{role: user|assistant, content}] (consecutive turns of one role
 * joined, as the API requires alternation), stream, temperature, top_p,
 * stop_sequences}. The API has no seed nor presence/frequency penalties, so
 * those are not sent.
 * Reference: https://docs.anthropic.com/en/api/messages and
 * https://docs.anthropic.com/en/docs/build-with-claude/streaming
 *
 * Stream events (the SSE `event:` name equals the JSON `type`):
 *   message_start        message.usage {input_tokens, output_tokens,
 *                        cache_read_input_tokens, cache_creation_input_tokens}
 *   content_block_start  / content_block_stop: block boundaries
 *   content_block_delta  delta {type: text_delta, text}
 *   message_delta        delta.stop_reason, usage.output_tokens (cumulative)
 *   message_stop         end of the stream
 *   ping                 keep-alive
 *   error                error {type, message}: overloaded_error, api_error
 *                        (→ http_5xx), rate_limit_error (→ rate_limited) ...
 * Errors: https://docs.anthropic.com/en/api/errors (529 overloaded, and
 * errors may arrive inside a 200 stream).
 *
 * Usage is normalised: prompt_tokens = input + cache reads + cache writes
 * (Anthropic's input_tokens excludes them), cached_tokens = cache reads.
 */
#include "providers/wire.h"

#include <string.h>

static int an_build(const prov_request *req, const prov_model_cfg *cfg, const char *model,
                    sb_t *url, sb_t *body, sb_t *hdrs, cf_err *err) {
    wire_url(url, cfg->base_url, "/messages");
    json_t *o = json_object();
    json_object_set_new(o, "model", json_string(model));
    json_object_set_new(o, "max_tokens",
                        json_integer(req->max_tokens > 0 ? req->max_tokens : 4096));
    sb_t sys = {0};
    json_t *msgs = json_array();
    for (size_t i = 0; i < req->n_msgs; i++) {
        const char *content = req->msgs[i].content ? req->msgs[i].content : "";
        if (req->msgs[i].role == PROV_ROLE_SYSTEM) {
            if (sys.len) sb_append(&sys, "\n\n");
            sb_append(&sys, content);
            continue;
        }
        /* The API wants user and assistant turns to alternate: consecutive
         * turns of one role are joined into one message. */
        const char *role = wire_role(req->msgs[i].role);
        size_t n = json_array_size(msgs);
        json_t *prev = n ? json_array_get(msgs, n - 1) : NULL;
        if (prev && !strcmp(json_string_value(json_object_get(prev, "role")), role)) {
            sb_t joined = {0};
            sb_append(&joined, json_string_value(json_object_get(prev, "content")));
            sb_append(&joined, "\n\n");
            sb_append(&joined, content);
            json_object_set_new(prev, "content", json_string(joined.data));
            sb_free(&joined);
            continue;
        }
        json_t *m = json_object();
        json_object_set_new(m, "role", json_string(role));
        json_object_set_new(m, "content", json_string(content));
        json_array_append_new(msgs, m);
    }
    if (sys.len) json_object_set_new(o, "system", json_string(sys.data));
    sb_free(&sys);
    json_object_set_new(o, "messages", msgs);
    if (req->stream) json_object_set_new(o, "stream", json_true());
    wire_add_common(o, req, "top_p", false, false, "stop_sequences");
    wire_header(hdrs, "Content-Type", "application/json");
    wire_header(hdrs, "anthropic-version", "2023-06-01");
    if (cfg->api_key && *cfg->api_key) wire_header(hdrs, "x-api-key", cfg->api_key);
    wire_extra_headers(hdrs, cfg);
    return wire_dump(o, body, err);
}

static prov_finish an_finish(const char *s) {
    if (!s) return PROV_FINISH_NONE;
    if (!strcmp(s, "end_turn") || !strcmp(s, "stop_sequence")) return PROV_FINISH_STOP;
    if (!strcmp(s, "max_tokens")) return PROV_FINISH_LENGTH;
    if (!strcmp(s, "tool_use")) return PROV_FINISH_TOOL;
    if (!strcmp(s, "refusal")) return PROV_FINISH_FILTER;
    return PROV_FINISH_OTHER;
}

static json_int_t geti(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? json_integer_value(v) : -1;
}

/* Usage object of message_start / message_delta / a whole response. */
static void an_usage(wire_call *c, json_t *u) {
    if (!json_is_object(u)) return;
    json_int_t in = geti(u, "input_tokens"), out = geti(u, "output_tokens");
    json_int_t cr = geti(u, "cache_read_input_tokens"), cw = geti(u, "cache_creation_input_tokens");
    json_int_t prompt = -1;
    if (in >= 0) prompt = in + (cr > 0 ? cr : 0) + (cw > 0 ? cw : 0);
    wire_usage_part(c, prompt, out, in >= 0 ? (cr > 0 ? cr : 0) : -1);
}

static int an_error(wire_call *c, json_t *e) {
    const char *type = json_string_value(json_object_get(e, "type"));
    const char *msg = json_string_value(json_object_get(e, "message"));
    prov_errkind k = PROV_ERR_PROTOCOL;
    int st = 0;
    if (type && (!strcmp(type, "overloaded_error") || !strcmp(type, "api_error"))) {
        k = PROV_ERR_HTTP_5XX;
        st = !strcmp(type, "overloaded_error") ? 529 : 500;
    } else if (type && !strcmp(type, "rate_limit_error")) {
        k = PROV_ERR_RATE_LIMITED;
        st = 429;
    } else if (type &&
               (!strcmp(type, "authentication_error") || !strcmp(type, "permission_error"))) {
        k = PROV_ERR_AUTH;
    } else if (type && !strcmp(type, "invalid_request_error")) {
        k = PROV_ERR_HTTP_4XX;
    }
    return wire_fail(c, k, st, "error event in stream: %.64s: %.300s", type ? type : "?",
                     msg ? msg : "");
}

static int an_event(wire_call *c, const sse_event *ev) {
    json_t *o = wire_json(c, ev);
    if (!o) return PROV_ERR_PROTOCOL;
    const char *type = json_string_value(json_object_get(o, "type"));
    if (!type) type = ev->event;
    int k = 0;
    if (!strcmp(type, "message_start")) {
        an_usage(c, json_object_get(json_object_get(o, "message"), "usage"));
    } else if (!strcmp(type, "content_block_delta")) {
        json_t *d = json_object_get(o, "delta");
        json_t *t = json_object_get(d, "text");
        const char *dt = json_string_value(json_object_get(d, "type"));
        if (dt && !strcmp(dt, "text_delta") && json_is_string(t))
            wire_delta(c, json_string_value(t), json_string_length(t));
    } else if (!strcmp(type, "message_delta")) {
        prov_finish f = an_finish(
            json_string_value(json_object_get(json_object_get(o, "delta"), "stop_reason")));
        if (f) wire_finish(c, f);
        an_usage(c, json_object_get(o, "usage"));
    } else if (!strcmp(type, "message_stop")) {
        wire_complete(c);
    } else if (!strcmp(type, "error")) {
        k = an_error(c, json_object_get(o, "error"));
    }
    /* ping, content_block_start/stop and future event types: nothing to do. */
    json_decref(o);
    return k;
}

static int an_body(wire_call *c, json_t *root) {
    const char *type = json_string_value(json_object_get(root, "type"));
    if (type && !strcmp(type, "error")) return an_error(c, json_object_get(root, "error"));
    json_t *content = json_object_get(root, "content");
    if (!json_is_array(content))
        return wire_fail(c, PROV_ERR_PROTOCOL, 0, "response has no content array");
    size_t i;
    json_t *b;
    json_array_foreach(content, i, b) {
        const char *bt = json_string_value(json_object_get(b, "type"));
        json_t *t = json_object_get(b, "text");
        if (bt && !strcmp(bt, "text") && json_is_string(t))
            wire_delta(c, json_string_value(t), json_string_length(t));
    }
    wire_finish(c, an_finish(json_string_value(json_object_get(root, "stop_reason"))));
    an_usage(c, json_object_get(root, "usage"));
    return 0;
}

const prov_wire prov_wire_anthropic = {"anthropic", an_build, an_event, an_body, false};
