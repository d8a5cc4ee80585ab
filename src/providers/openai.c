/*
 * openai — the OpenAI chat completions wire format, spoken by OpenAI and by
 * most self-hosted servers (Ollama, vLLM, llama.cpp's server, Mistral, Groq,
 * OpenRouter, confab itself).
 *
 * Request: POST {base_url}/chat/completions, `Authorization: Bearer KEY`,
 * body {model, messages[{role, content}], stream, temperature, top_p,
 * max_tokens (max_completion_tokens for the o1/o3/o4/gpt-5 reasoning
 * models, which reject max_tokens), stop[], seed, presence_penalty,
 * frequency_penalty}; when
 * streaming, `stream_options: {"include_usage": true}` asks for a last chunk
 * carrying usage with an empty `choices` array, before `data: [DONE]`.
 * Reference: https://platform.openai.com/docs/api-reference/chat/create and
 * https://platform.openai.com/docs/api-reference/chat/streaming
 * (ChatCompletionStreamOptions in the OpenAPI spec: "If set, an additional
 * chunk will be streamed before the data: [DONE] message ... If the stream
 * is interrupted, you may not receive the final usage chunk").
 *
 * Streamed chunks: choices[0].delta.content (text), choices[0].finish_reason
 * (stop | length | content_filter | tool_calls), usage {prompt_tokens,
 * completion_tokens, prompt_tokens_details.cached_tokens}. The stream is
 * complete at `[DONE]`; servers that omit [DONE] but sent a finish_reason
 * before a clean end of stream are accepted too (several self-hosted ones do).
 */
#include "providers/wire.h"

#include <string.h>

static int oa_build(const prov_request *req, const prov_model_cfg *cfg, const char *model,
                    sb_t *url, sb_t *body, sb_t *hdrs, cf_err *err) {
    wire_url(url, cfg->base_url, "/chat/completions");
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
    if (req->stream) {
        json_t *so = json_object();
        json_object_set_new(so, "include_usage", json_true());
        json_object_set_new(o, "stream_options", so);
    }
    if (req->max_tokens > 0) {
        /* OpenAI's reasoning models reject max_tokens and take
         * max_completion_tokens; other servers mostly know only max_tokens. */
        bool reasoning =
            (model[0] == 'o' && model[1] >= '1' && model[1] <= '9') || !strncmp(model, "gpt-5", 5);
        json_object_set_new(o, reasoning ? "max_completion_tokens" : "max_tokens",
                            json_integer(req->max_tokens));
    }
    wire_add_common(o, req, "top_p", true, true, "stop");
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

static prov_finish oa_finish(const char *s) {
    if (!s) return PROV_FINISH_NONE;
    if (!strcmp(s, "stop")) return PROV_FINISH_STOP;
    if (!strcmp(s, "length")) return PROV_FINISH_LENGTH;
    if (!strcmp(s, "content_filter")) return PROV_FINISH_FILTER;
    if (!strcmp(s, "tool_calls") || !strcmp(s, "function_call")) return PROV_FINISH_TOOL;
    return PROV_FINISH_OTHER;
}

static void oa_usage(wire_call *c, json_t *u) {
    if (!json_is_object(u)) return;
    json_int_t p = json_integer_value(json_object_get(u, "prompt_tokens"));
    json_int_t q = json_integer_value(json_object_get(u, "completion_tokens"));
    json_int_t cached = json_integer_value(
        json_object_get(json_object_get(u, "prompt_tokens_details"), "cached_tokens"));
    wire_usage(c, p, q, cached);
}

/* An {"error": {...}} object some servers send inside a 200 stream. */
static int oa_inline_error(wire_call *c, json_t *o) {
    json_t *e = json_object_get(o, "error");
    if (!e || json_is_null(e)) return 0;
    const char *m =
        json_is_object(e) ? json_string_value(json_object_get(e, "message")) : json_string_value(e);
    return wire_fail(c, PROV_ERR_HTTP_5XX, 0, "error event in stream: %.300s",
                     m ? m : "(no message)");
}

static int oa_event(wire_call *c, const sse_event *ev) {
    if (ev->data_len == 6 && !memcmp(ev->data, "[DONE]", 6)) {
        wire_complete(c);
        return 0;
    }
    json_t *o = wire_json(c, ev);
    if (!o) return PROV_ERR_PROTOCOL;
    int k = oa_inline_error(c, o);
    if (!k) {
        json_t *ch = json_array_get(json_object_get(o, "choices"), 0);
        if (json_is_object(ch)) {
            json_t *content = json_object_get(json_object_get(ch, "delta"), "content");
            if (json_is_string(content))
                wire_delta(c, json_string_value(content), json_string_length(content));
            prov_finish f = oa_finish(json_string_value(json_object_get(ch, "finish_reason")));
            if (f) wire_finish(c, f);
        }
        oa_usage(c, json_object_get(o, "usage"));
    }
    json_decref(o);
    return k;
}

static int oa_body(wire_call *c, json_t *root) {
    int k = oa_inline_error(c, root);
    if (k) return k;
    json_t *ch = json_array_get(json_object_get(root, "choices"), 0);
    if (!json_is_object(ch)) return wire_fail(c, PROV_ERR_PROTOCOL, 0, "response has no choices");
    json_t *content = json_object_get(json_object_get(ch, "message"), "content");
    if (json_is_string(content))
        wire_delta(c, json_string_value(content), json_string_length(content));
    wire_finish(c, oa_finish(json_string_value(json_object_get(ch, "finish_reason"))));
    oa_usage(c, json_object_get(root, "usage"));
    return 0;
}

const prov_wire prov_wire_openai = {"openai", oa_build, oa_event, oa_body, true};
