/*
 * provider — the one interface every chat backend implements: "stream this
 * chat request".
 *
 * A request (prov_request) goes in; a stream of events (prov_event) comes out
 * through a callback: text deltas, then usage and a finish reason, and
 * exactly one terminal event, PROV_EV_DONE (success) or PROV_EV_ERROR (with a
 * kind the router uses to decide about retries and fallbacks). After the
 * terminal event the backend never calls back again.
 *
 * Backends are a small vtable (prov_backend) so the remote ones (OpenAI-
 * compatible, Anthropic, Cohere: remote.c over one libcurl multi thread) and
 * the local engine (written by the app layer against the same vtable) are
 * interchangeable in the router.
 *
 * Cancellation: a prov_cancel handle is shared between the caller and the
 * backend. prov_cancel_fire() sets a flag and runs the watchers that backends
 * registered (the I/O thread registers one that wakes curl_multi_poll), so a
 * cancel is honoured within one poll round, not at the next timeout.
 *
 * Configuration structs (prov_model_cfg) mirror config.yaml's
 * `models.NAME.*` keys; the app layer fills them, tests build them directly.
 * Nothing here parses YAML, serves HTTP or touches SQL.
 */
#ifndef CONFAB_PROVIDERS_PROVIDER_H
#define CONFAB_PROVIDERS_PROVIDER_H

#include "base/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------ request */

typedef enum { PROV_ROLE_SYSTEM, PROV_ROLE_USER, PROV_ROLE_ASSISTANT } prov_role;

typedef struct {
    prov_role role;
    const char *content; /* UTF-8, NUL-terminated; borrowed */
} prov_msg;

#define PROV_MAX_STOP 8

/* A chat request. Everything is borrowed from the caller for the duration of
 * the start call only (backends serialise what they need before returning).
 * Optional numeric fields are "unset" when their has_ flag is false. */
typedef struct {
    const prov_msg *msgs; /* (n_msgs,) in conversation order */
    size_t n_msgs;
    const char *model; /* upstream model id; NULL = take it from the model config */
    bool stream;       /* true: deltas as they come; false: one delta at the end */
    bool has_temperature, has_top_p, has_seed, has_presence_penalty, has_frequency_penalty;
    double temperature, top_p, presence_penalty, frequency_penalty;
    int64_t seed;
    int max_tokens; /* 0 = provider default (Anthropic requires one: 4096 is used) */
    const char *stop[PROV_MAX_STOP];
    size_t n_stop;
    /* Optional: sampling changes while the reply streams. Backends that
     * sample themselves (local) call it before each token; it returns true
     * and fills the fields it changes (has_* set) when something changed.
     * Remote backends cannot change a request in flight and ignore it. */
    bool (*live_params)(void *ud, bool *has_temperature, double *temperature, bool *has_top_p,
                        double *top_p);
    void *live_ud;
} prov_request;

/* ------------------------------------------------------------- events */

typedef enum {
    PROV_EV_DELTA,  /* text, len: a piece of the reply (complete UTF-8 characters) */
    PROV_EV_USAGE,  /* usage: token counts (may come more than once; last wins) */
    PROV_EV_FINISH, /* finish: why generation stopped */
    PROV_EV_ERROR,  /* terminal: err_kind, http_status, retry_after_ms, message */
    PROV_EV_DONE,   /* terminal: success */
} prov_event_kind;

typedef enum {
    PROV_ERR_NONE = 0,
    PROV_ERR_CONNECT,      /* refused, DNS, TLS handshake, reset before a response */
    PROV_ERR_TIMEOUT,      /* connect, first-byte or idle timeout */
    PROV_ERR_HTTP_4XX,     /* the upstream rejected the request (not auth, not 429) */
    PROV_ERR_RATE_LIMITED, /* HTTP 429 (retry_after_ms when the upstream said) */
    PROV_ERR_HTTP_5XX,     /* HTTP 5xx, or an "overloaded"/"api_error" stream event */
    PROV_ERR_PROTOCOL,     /* malformed SSE/JSON, wrong content type, stream cut short */
    PROV_ERR_AUTH,         /* HTTP 401/403 */
    PROV_ERR_CANCELLED,    /* the caller fired the cancel handle */
    PROV_ERR_UNAVAILABLE,  /* router: every upstream in the chain is in cooldown */
    PROV_ERR_CONFIG,       /* unknown model/backend, bad configuration */
} prov_errkind;

typedef enum {
    PROV_FINISH_NONE = 0,
    PROV_FINISH_STOP,   /* natural end or a stop sequence */
    PROV_FINISH_LENGTH, /* max_tokens reached */
    PROV_FINISH_FILTER, /* content filter / refusal */
    PROV_FINISH_TOOL,   /* tool call requested */
    PROV_FINISH_OTHER,
} prov_finish;

/* Token counts. prompt_tokens counts every input token including cached
 * ones; cached_tokens is the subset read from the provider's prompt cache
 * (billed at the cached-input price). estimated: counted by our heuristic,
 * not reported by the provider or an exact tokenizer. */
typedef struct {
    int64_t prompt_tokens, completion_tokens, cached_tokens;
    bool estimated;
} prov_usage;

typedef struct {
    prov_event_kind kind;
    const char *text; /* DELTA: bytes (not NUL-terminated in general) */
    size_t len;
    prov_usage usage;      /* USAGE */
    prov_finish finish;    /* FINISH */
    prov_errkind err_kind; /* ERROR */
    int http_status;       /* ERROR: the HTTP status when there was one, else 0 */
    int retry_after_ms;    /* ERROR: from Retry-After; -1 when absent */
    const char *message;   /* ERROR: for a person, secrets redacted */
} prov_event;

/* Called for each event, on a thread of the backend's choosing (the I/O
 * thread for remote backends). Pointers in EV are valid during the call only. */
typedef void (*prov_event_cb)(void *ud, const prov_event *ev);

const char *prov_errkind_name(prov_errkind k);
const char *prov_finish_name(prov_finish f);

/* ------------------------------------------------------------- cancel */

typedef struct prov_cancel prov_cancel;

/* A new, unfired cancel handle (NULL when out of memory). */
prov_cancel *prov_cancel_new(void);
void prov_cancel_free(prov_cancel *c);
/* Fires the handle: sets the flag (forever) and runs each watcher once.
 * Thread-safe, idempotent. */
void prov_cancel_fire(prov_cancel *c);
bool prov_cancel_fired(const prov_cancel *c);
/* Registers FN(UD), run once when the handle fires (at once when it already
 * has). Returns a watcher id >= 0, or CF_EBUSY when the small fixed table
 * (16) is full. FN must be quick and must not call back into this handle. */
int prov_cancel_watch(prov_cancel *c, void (*fn)(void *ud), void *ud);
void prov_cancel_unwatch(prov_cancel *c, int id);
/* Sleeps up to MS milliseconds or until the handle fires. Returns true when
 * fired. C may be NULL (then it just sleeps). */
bool prov_cancel_sleep(prov_cancel *c, int ms);

/* ------------------------------------------------------------- config */

/* Prices in US dollars per million tokens. */
typedef struct {
    bool set;                           /* false: fall back to the built-in table */
    double input, output, cached_input; /* cached_input 0 = same as input */
} prov_price;

/* An exact token counter (the local engine's tokenizer). Returns the token
 * count of TEXT, or a negative value when it cannot count. */
typedef int64_t (*prov_count_fn)(void *ud, const char *text, size_t n);

#define PROV_MAX_FALLBACK 8
#define PROV_MAX_HEADERS 16

/* One named model of config.yaml (models.NAME). Strings are borrowed from the
 * app's config and must outlive the router that uses them. */
typedef struct {
    const char *name;     /* the config key, e.g. "fast" */
    const char *backend;  /* "openai" | "anthropic" | "cohere" | "local" | registered */
    const char *model;    /* upstream model id, e.g. "gpt-4o-mini" */
    const char *base_url; /* e.g. "https://api.openai.com/v1" (no trailing slash needed) */
    const char *api_key;  /* secret: never logged nor echoed; NULL/"" = none */
    int context_window;   /* tokens; 0 = unknown */
    prov_price price;     /* overrides the default table when set */
    const char *fallback[PROV_MAX_FALLBACK]; /* names of other models, in order */
    size_t n_fallback;
    struct {
        int connect_ms, first_byte_ms, idle_ms;
    } timeouts; /* 0 = defaults. first_byte counts from the request's start to the
                 * first response byte; idle is the longest silence after it, so it
                 * must exceed the longest silent "thinking" of reasoning models
                 * (OpenAI sends nothing meanwhile; Anthropic sends pings). */
    struct {
        const char *name, *value;
    } headers[PROV_MAX_HEADERS]; /* extra headers */
    size_t n_headers;
    const char *unavailable;    /* non-NULL: the model cannot be used, and this says why
                                   (e.g. its API key's variable is unset); requests fail
                                   with PROV_ERR_CONFIG and move down the fallback chain */
    prov_count_fn count_tokens; /* optional exact counter (local models) */
    void *count_ud;
} prov_model_cfg;

/* Default timeouts used where a prov_model_cfg leaves 0. */
enum {
    PROV_DEFAULT_CONNECT_MS = 10000,
    PROV_DEFAULT_FIRST_BYTE_MS = 60000,
    PROV_DEFAULT_IDLE_MS = 60000
};

/* ------------------------------------------------------------ backend */

/* A backend. start() begins one request and returns at once; events then
 * arrive through CB until a terminal event. On a non-zero return no event is
 * ever delivered. CANCEL may be NULL. REQ and CFG are borrowed for the call
 * only. SELF is the backend's own state. */
typedef struct prov_backend {
    const char *name;
    void *self;
    int (*start)(void *self, const prov_request *req, const prov_model_cfg *cfg,
                 prov_cancel *cancel, prov_event_cb cb, void *ud, cf_err *err);
} prov_backend;

/* Process-wide libcurl initialisation; call once from main (or a test's
 * setup) before any other thread exists. Returns 0 or CF_EIO. */
int prov_global_init(cf_err *err);
void prov_global_cleanup(void);

#endif
