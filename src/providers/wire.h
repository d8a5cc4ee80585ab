/*
 * wire — the contract between remote.c (HTTP, SSE, event delivery, error
 * classification, redaction) and each provider's wire format (openai.c,
 * anthropic.c, cohere.c): building the request and turning the provider's
 * JSON into prov_events. Internal to src/providers.
 */
#ifndef CONFAB_PROVIDERS_WIRE_H
#define CONFAB_PROVIDERS_WIRE_H

#include "base/sb.h"
#include "providers/provider.h"
#include "providers/sse.h"

#include <jansson.h>

typedef struct wire_call wire_call;

typedef struct {
    const char *name;
    /* Fills URL, BODY and HDRS (header lines, each ending in "\n") for REQ
     * against CFG with upstream model MODEL. Returns 0 or a CF_E* code. */
    int (*build)(const prov_request *req, const prov_model_cfg *cfg, const char *model, sb_t *url,
                 sb_t *body, sb_t *hdrs, cf_err *err);
    /* One streamed SSE event. Returns 0 or a prov_errkind (after wire_fail). */
    int (*on_event)(wire_call *c, const sse_event *ev);
    /* The whole non-streamed JSON response. Returns 0 or a prov_errkind. */
    int (*on_body)(wire_call *c, json_t *root);
    /* A clean end of stream after a finish reason counts as complete even
     * without the end marker (OpenAI-compatible servers that omit [DONE]). */
    bool finish_completes;
} prov_wire;

extern const prov_wire prov_wire_openai, prov_wire_anthropic, prov_wire_cohere;

/* Helpers the wire formats call (remote.c). */
void wire_delta(wire_call *c, const char *text, size_t len);
void wire_usage(wire_call *c, int64_t prompt, int64_t completion, int64_t cached);
/* Updates only the fields given as >= 0. */
void wire_usage_part(wire_call *c, int64_t prompt, int64_t completion, int64_t cached);
void wire_finish(wire_call *c, prov_finish f);
/* The stream reached its documented end marker. */
void wire_complete(wire_call *c);
/* Records an error (message printf-style, redacted later) and returns KIND. */
int wire_fail(wire_call *c, prov_errkind kind, int http_status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Parses an SSE data payload as a JSON object; on failure records a
 * protocol error and returns NULL. The caller json_decref()s. */
json_t *wire_json(wire_call *c, const sse_event *ev);

/* Request-building helpers shared by the formats. */
void wire_add_common(json_t *o, const prov_request *req, const char *top_p_key, bool penalties,
                     bool seed, const char *stop_key);
void wire_header(sb_t *hdrs, const char *name, const char *value);
void wire_extra_headers(sb_t *hdrs, const prov_model_cfg *cfg);
void wire_url(sb_t *url, const char *base, const char *path);
const char *wire_role(prov_role r);
/* Dumps O into BODY (compact, REAL precision 15) and frees O. */
int wire_dump(json_t *o, sb_t *body, cf_err *err);

#endif
