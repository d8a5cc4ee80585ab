/*
 * cohere — Cohere's v2 chat API.
 *
 * Request: POST {base_url}/chat (base_url like https://api.cohere.com/v2),
 * `Authorization: Bearer KEY`; body {model, messages[{role: system|user|
 * assistant, content}], stream, temperature, p (top_p), max_tokens,
 * stop_sequences, seed, presence_penalty, frequency_penalty}.
 * Reference: https://docs.cohere.com/reference/chat and
 * https://docs.cohere.com/v2/docs/streaming
 *
 * The stream is SSE; each event's JSON has a `type`:
 *   message-start   id, delta.message.role
 *   content-start   / content-end: block boundaries
 *   content-delta   delta.message.content.text
 *   message-end     delta.finish_reason (COMPLETE | STOP_SEQUENCE | MAX_TOKENS |
 *                   TOOL_CALL | ERROR | ERROR_TOXIC | ...), delta.usage
 *                   {billed_units{input_tokens, output_tokens}, tokens{...}}
 *   tool-*, citation-*, debug: ignored here.
 * Cost uses billed_units (what Cohere charges) when present, else tokens.
 * A finish_reason of ERROR means generation failed upstream: an http_5xx
 * error, not a success.
 */
#include "providers/wire.h"

#include <string.h>

static int co_build(const prov_request *req, const prov_model_cfg *cfg, const char *model,
                    sb_t *url, sb_t *body, sb_t *hdrs, cf_err *err) {
    wire_url(url, cfg->base_url, "/chat");
    json_t *o = json_object();
    json_object_set_new(o, "model", json_string(model));
    json_t *msgs = json_array();
    for (size_t i = 0; i < req->n_msgs; i++) {
        json_t *m = json_object();
        json_object_set_new(m, "role", json_string(wire_role(req->msgs[i].role)));
        json_object_set_new(m, "content",
                            json_string(req->msgs[i].content ? req->msgs[i].content : ""));
        json_array_append_new(msgs, m);
    }
    json_object_set_new(o, "messages", msgs);
    json_object_set_new(o, "stream", json_boolean(req->stream));
    if (req->max_tokens > 0) json_object_set_new(o, "max_tokens", json_integer(req->max_tokens));
    wire_add_common(o, req, "p", true, true, "stop_sequences");
    wire_header(hdrs, "Content-Type", "application/json");
    wire_header(hdrs, "Accept", req->stream ? "text/event-stream" : "application/json");
    if (cfg->api_key && *cfg->api_key) {
        sb_t v = {0};
        sb_printf(&v, "Bearer %s", cfg->api_key);
        wire_header(hdrs, "Authorization", v.data);
        sb_free(&v);
    }
    wire_extra_headers(hdrs, cfg);
    return wire_dump(o, body, err);
}

/* Returns the finish reason, or -1 for ERROR (a failed generation). */
static int co_finish(const char *s) {
    if (!s) return PROV_FINISH_NONE;
    if (!strcmp(s, "COMPLETE") || !strcmp(s, "STOP_SEQUENCE")) return PROV_FINISH_STOP;
    if (!strcmp(s, "MAX_TOKENS")) return PROV_FINISH_LENGTH;
    if (!strcmp(s, "TOOL_CALL")) return PROV_FINISH_TOOL;
    if (!strcmp(s, "ERROR_TOXIC")) return PROV_FINISH_FILTER;
    if (!strcmp(s, "ERROR")) return -1;
    return PROV_FINISH_OTHER;
}

static void co_usage(wire_call *c, json_t *u) {
    if (!json_is_object(u)) return;
    json_t *b = json_object_get(u, "billed_units");
    if (!json_is_object(b)) b = json_object_get(u, "tokens");
    if (!json_is_object(b)) return;
    wire_usage(c, json_integer_value(json_object_get(b, "input_tokens")),
               json_integer_value(json_object_get(b, "output_tokens")), 0);
}

static int co_end(wire_call *c, const char *finish, json_t *usage) {
    int f = co_finish(finish);
    if (f < 0)
        return wire_fail(c, PROV_ERR_HTTP_5XX, 0,
                         "cohere ended the generation with finish_reason ERROR");
    wire_finish(c, (prov_finish)f);
    co_usage(c, usage);
    return 0;
}

static int co_event(wire_call *c, const sse_event *ev) {
    json_t *o = wire_json(c, ev);
    if (!o) return PROV_ERR_PROTOCOL;
    const char *type = json_string_value(json_object_get(o, "type"));
    if (!type) type = ev->event;
    int k = 0;
    json_t *d = json_object_get(o, "delta");
    if (!strcmp(type, "content-delta")) {
        json_t *t =
            json_object_get(json_object_get(json_object_get(d, "message"), "content"), "text");
        if (json_is_string(t)) wire_delta(c, json_string_value(t), json_string_length(t));
    } else if (!strcmp(type, "message-end")) {
        k = co_end(c, json_string_value(json_object_get(d, "finish_reason")),
                   json_object_get(d, "usage"));
        if (!k) wire_complete(c);
    }
    json_decref(o);
    return k;
}

static int co_body(wire_call *c, json_t *root) {
    json_t *content = json_object_get(json_object_get(root, "message"), "content");
    if (!json_is_array(content))
        return wire_fail(c, PROV_ERR_PROTOCOL, 0, "response has no message.content");
    size_t i;
    json_t *b;
    json_array_foreach(content, i, b) {
        json_t *t = json_object_get(b, "text");
        if (json_is_string(t)) wire_delta(c, json_string_value(t), json_string_length(t));
    }
    return co_end(c, json_string_value(json_object_get(root, "finish_reason")),
                  json_object_get(root, "usage"));
}

const prov_wire prov_wire_cohere = {"cohere", co_build, co_event, co_body, false};
