/*
 * server — confab's HTTP server (civetweb): a route table, bearer auth,
 * per-key rate limits, body and JSON limits, OpenAI-shaped errors, CORS,
 * SSE and WebSocket streaming of generations, metrics, the embedded web UI
 * and graceful shutdown.
 *
 * Lifecycle: srv_new() builds the server and its built-in routes,
 * srv_route_add() / srv_set_chat_hook() plug in the chat service,
 * srv_start() binds and starts serving, srv_shutdown() drains and stops,
 * srv_free() releases it. Routes must be added before srv_start.
 *
 * Every request passes one dispatcher: draining check (503), CORS and
 * preflight, route match (404 / 405 with Allow), auth (401), rate limit
 * (429 + Retry-After), body size (413), then the handler. Handlers get a
 * srv_req with the owner id of the caller ("key:<12 hex>" for an API key,
 * "local" when no keys are configured) so stored data can belong to keys.
 * Errors use OpenAI's shape: {"error":{"message","type","param","code"}}.
 */
#ifndef CONFAB_SERVER_H
#define CONFAB_SERVER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "app/config.h"
#include "app/gen.h"
#include "base/err.h"
#include "base/sb.h"
#include "server/metrics.h"

typedef struct srv srv_t;
typedef struct srv_req srv_req;

typedef struct {
    const char *host;            /* default "127.0.0.1" */
    int port;                    /* 0 = an ephemeral port (see srv_port) */
    int threads;                 /* civetweb worker threads; <= 0 = 96 */
    int rate_limit_rpm;          /* per owner; 0 = unlimited */
    int64_t max_body_bytes;      /* <= 0 = 8 MiB */
    int max_json_depth;          /* <= 0 = 64 */
    const char *const *api_keys; /* (n_api_keys,) plaintext or "sha256:<hex>" */
    size_t n_api_keys;
    const char *const *cors_origins; /* (n_cors_origins,); "*" allows any */
    size_t n_cors_origins;
    bool insecure_no_auth;     /* allow a non-loopback bind without keys */
    int heartbeat_ms;          /* SSE comment / idle interval; <= 0 = 15000 */
    gen_registry *gens;        /* borrowed; NULL = the server makes its own */
    const char *default_model; /* passed through to the chat hook; may be NULL */
    const char *data_dir;      /* for the chat service (not used by the server); may be NULL */
} srv_options;

/* Fills O from the config's server section (strings borrowed from C). */
void srv_options_from_cfg(srv_options *o, const cfg_t *c);

/* Builds a server (not yet listening). Refuses (NULL, ERR set, CF_EAUTH)
 * a non-loopback host without API keys unless insecure_no_auth. */
srv_t *srv_new(const srv_options *o, cf_err *err);
/* Binds and starts serving. Returns 0 or a negative CF_E* with ERR set. */
int srv_start(srv_t *s, cf_err *err);
/* The port actually bound (after srv_start), e.g. when port was 0. */
int srv_port(const srv_t *s);
/* The generation registry used by streams and /ws. */
gen_registry *srv_gens(srv_t *s);
/* The metrics registry rendered by /metrics (other layers feed it through
 * the met_* functions or the srv_metrics_* helpers below). */
met_registry *srv_metrics(srv_t *s);
/* Stops the server: new requests get 503, streams may go on for GRACE_MS
 * while their generations finish, then every running generation is
 * cancelled, remaining streams end, and civetweb stops. Idempotent. */
void srv_shutdown(srv_t *s, int grace_ms);
/* Frees the server (shutting it down with no grace if still running). */
void srv_free(srv_t *s);
/* True once srv_shutdown began (long-running handlers poll this). */
bool srv_stopping(const srv_t *s);

/* ---- routes ---- */

/* A handler answers the request through the srv_reply* / srv_sse* calls
 * and returns 0 (its status is recorded by those calls). */
typedef int (*srv_handler)(srv_req *req, void *ctx);

enum {
    SRV_ROUTE_PUBLIC = 1,      /* no auth (only /healthz and the UI) */
    SRV_ROUTE_QUERY_TOKEN = 2, /* also accept ?access_token= (EventSource) */
};

/* Adds METHOD PATTERN -> H. PATTERN is a path whose segments may be
 * "{name}" (matches one non-empty segment, read with srv_req_param).
 * Returns 0, or CF_EINVAL for a bad pattern, CF_EBUSY after srv_start. */
int srv_route_add(srv_t *s, const char *method, const char *pattern, srv_handler h, void *ctx);
int srv_route_add_flags(srv_t *s, const char *method, const char *pattern, srv_handler h, void *ctx,
                        int flags);

/* ---- requests ---- */

struct srv_req {
    srv_t *srv;
    struct mg_connection *conn;
    const char *method;
    const char *path;  /* URL-decoded path */
    const char *query; /* raw query string, or NULL */
    const char *route; /* the matched pattern (metrics label) */
    const char *owner; /* "key:<12 hex>", "local" or "insecure" */
    char *body;        /* (body_len,) NUL-terminated; NULL when none */
    size_t body_len;
    int status; /* status sent so far (0 = nothing sent) */
    /* private to the server */
    const char *pnames[8], *pvals[8];
    size_t np;
    char pbuf[512];
    const char *cors_origin;
    bool streaming;
    bool sse_raw; /* HTTP/1.0 client: no chunked encoding, close at the end */
};

/* Value of the {NAME} segment, or NULL. */
const char *srv_req_param(const srv_req *r, const char *name);
/* Request header value, or NULL. */
const char *srv_req_header(const srv_req *r, const char *name);
/* Decoded query variable NAME into OUT (size N); returns its length or -1
 * when absent / too long. */
int srv_req_query(const srv_req *r, const char *name, char *out, size_t n);
/* Parses the body as JSON (an object or array) after checking nesting
 * depth. On failure sends 400 (invalid_request_error, naming the problem)
 * and returns NULL; the handler then just returns 0. Caller decrefs. */
json_t *srv_req_json(srv_req *r);

/* ---- replies (each sends a whole response) ---- */

/* Sends STATUS with BODY (LEN bytes) and CONTENT_TYPE. EXTRA_HEADERS is
 * NULL or "Name: value\r\n..." lines. Returns 0 or CF_EIO. */
int srv_reply(srv_req *r, int status, const char *content_type, const void *body, size_t len,
              const char *extra_headers);
/* Sends J (not consumed) as application/json. */
int srv_reply_json(srv_req *r, int status, const json_t *j);
/* Sends an error in OpenAI's shape. TYPE e.g. "invalid_request_error";
 * CODE and PARAM may be NULL (sent as null). */
int srv_reply_error(srv_req *r, int status, const char *type, const char *code, const char *param,
                    const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* As srv_reply_error, with EXTRA header lines (each ending in \r\n; may be
 * NULL), e.g. "Retry-After: 5\r\n". */
int srv_reply_error_hdr(srv_req *r, int status, const char *type, const char *code,
                        const char *param, const char *extra, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
/* Maps a cf_err code to a status and error type and sends ERR's message. */
int srv_reply_cf_err(srv_req *r, const cf_err *err);

/* ---- server-sent events ---- */

/* Starts a text/event-stream response (chunked, no caching). */
int srv_sse_start(srv_req *r);
/* Sends one event: "id: ID" (when ID > 0), "event: EVENT" (when not NULL),
 * and DATA split into "data:" lines. Returns 0, or CF_ECLOSED when the
 * client is gone (noticed on this write). */
int srv_sse_event(srv_req *r, uint64_t id, const char *event, const char *data, size_t len);
/* Sends a comment line (": TEXT"): a heartbeat that detects a gone client. */
int srv_sse_comment(srv_req *r, const char *text);
/* Sends "data: [DONE]", the end marker of OpenAI-style streams. */
int srv_sse_done(srv_req *r);
/* Ends the response (last chunk). */
int srv_sse_end(srv_req *r);

/* Formats one generation event for a stream: append what to send as
 * `data:` to OUT and return 1, or return 0 to skip the event. */
typedef int (*srv_sse_fmt)(void *ctx, gen *g, const gen_event *ev, sb_t *out);

/* Streams G's events after AFTER until the generation finishes: each event
 * becomes an SSE event with `id:` = its seq and data from FMT (NULL = the
 * standard frame, see srv_gen_frame). Sends a heartbeat after every
 * heartbeat_ms of silence. Returns 0 when the generation finished and its
 * last event went out, CF_ECLOSED when the client disconnected (the caller
 * decides whether to gen_cancel), CF_ECANCEL when the server is shutting
 * down past its grace period. Does not end the response. */
int srv_sse_follow(srv_req *r, gen *g, uint64_t after, srv_sse_fmt fmt, void *ctx);

/* The standard JSON frame for an event, used by SSE and /ws:
 * {"type":"delta","generation_id":"gen_..","seq":N, ...payload fields}. */
void srv_gen_frame(gen *g, const gen_event *ev, sb_t *out);

/* ---- OpenAI chat-completions rendering (for /v1/chat/completions) ---- */

/* Streams G as chat.completion.chunk events (MODEL until the done event
 * names the model that answered), a usage chunk when INCLUDE_USAGE, then
 * `data: [DONE]`; an error event is sent as {"error":{...}}. A client that
 * disconnects cancels G. Returns srv_sse_follow's result. */
int srv_openai_stream(srv_req *r, gen *g, const char *model, bool include_usage);
/* Waits for G to finish and answers one chat.completion (with usage), or
 * the error event mapped to a status by its kind: invalid_request, config,
 * budget_exceeded 400; not_found, model_not_found 404; rate_limited 429;
 * connect, http_4xx/5xx, protocol, auth 502; unavailable 503; timeout 504;
 * anything else (storage ...) 500. The error's code is its kind. */
int srv_openai_reply(srv_req *r, gen *g, const char *model);

/* ---- the chat service hook (wired by the app) ---- */

typedef struct {
    const char *owner;      /* who asks */
    const char *session_id; /* may be NULL (a new session) */
    const char *content;    /* the user's message; NULL for regenerate */
    const char *model;      /* may be NULL (the default model) */
    const json_t *params;   /* sampling params object, may be NULL (borrowed) */
    bool regenerate;        /* replace the session's last reply */
} srv_chat_request;

/* Starts a chat turn and returns its generation (a reference the server
 * releases), or NULL with ERR set (CF_EINVAL / CF_ENOTFOUND / CF_EBUSY ...).
 * The turn runs on its own threads and appends to the generation. */
typedef gen *(*srv_chat_hook)(void *ctx, const srv_chat_request *rq, cf_err *err);

/* Sets the hook /ws uses for `send` and `regenerate`. Before it is set,
 * those ops answer an error frame "no chat service configured". */
void srv_set_chat_hook(srv_t *s, srv_chat_hook fn, void *ctx);

/* ---- metrics helpers for other layers ---- */

/* Counts a response-cache lookup. */
void srv_metrics_cache(srv_t *s, bool hit);
/* Counts an error from PROVIDER. */
void srv_metrics_provider_error(srv_t *s, const char *provider);

#endif
