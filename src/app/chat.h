/*
 * chat — the chat turn: the one function the server, the WebSocket and the
 * terminal chat all call to answer a message.
 *
 * A turn: resolve the session (or run stateless on the caller's messages),
 * fill a prompt template, build the history (system prompt + the current
 * branch of the conversation), check the token budget and the model's
 * context window (warn / trim oldest / refuse — always reported), look up the
 * response cache (a hit replays the stored chunks), otherwise call the
 * router, re-chunk the reply at the requested granularity, persist it while
 * it streams (status "streaming" until it ends: complete, cancelled or
 * error), record tokens, cost, latency and the model that answered, store
 * the reply in the cache when the request is deterministic, and emit events.
 *
 * Events, in order: DELTA* then INFO* (fallback) then USAGE then DONE, or at
 * any point one ERROR after which nothing follows. INFO events about the
 * budget come before the first DELTA.
 *
 * Threads: chat_turn runs on the caller's thread and blocks until the reply
 * ends; many turns may run at once on different threads. The service keeps a
 * pool of store and cache handles (one SQLite connection each) so every
 * running turn has its own.
 */
#ifndef CONFAB_APP_CHAT_H
#define CONFAB_APP_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "app/chunk.h"
#include "app/config.h"
#include "base/err.h"
#include "providers/router.h"

typedef struct chat_service chat_service;

typedef struct {
    const cfg_t *cfg;       /* borrowed; outlives the service */
    route_router *router;   /* borrowed; outlives the service */
    const char *db_path;    /* sessions database, created when missing */
    const char *cache_path; /* response cache file; NULL or "" = no cache */
} chat_service_opts;

chat_service *chat_service_new(const chat_service_opts *o, cf_err *err);
void chat_service_free(chat_service *cs);

typedef struct {
    const char *role; /* system | user | assistant */
    const char *content;
} chat_msg;

typedef struct {
    /* Where the conversation lives. */
    int64_t session_id; /* > 0: continue this session */
    bool new_session;   /* create one for this turn (titled from the message) */
    const char *owner;  /* when set, the session must belong to it */
    /* What to answer. Exactly one of: content, template_name, regenerate, or
     * messages (stateless, OpenAI style: the whole conversation is given; with
     * a session its last user message and the reply are stored). */
    const char *content;
    const char *template_name;
    const char *const *template_keys, *const *template_values;
    size_t n_template_vars;
    bool regenerate; /* answer the session's last user message again */
    const chat_msg *messages;
    size_t n_messages;
    /* How. */
    const char *model;         /* NULL: the session's, else default_model, else the first */
    const char *system_prompt; /* NULL: the session's */
    bool has_temperature, has_top_p, has_seed, has_presence_penalty, has_frequency_penalty;
    double temperature, top_p, presence_penalty, frequency_penalty;
    int64_t seed;
    int max_tokens; /* 0 = provider default */
    const char *const *stop;
    size_t n_stop;
    chunk_mode granularity;
    bool no_cache; /* bypass the response cache */
} chat_request;

typedef enum {
    CHAT_EV_DELTA,
    CHAT_EV_USAGE,
    CHAT_EV_INFO,
    CHAT_EV_DONE,
    CHAT_EV_ERROR
} chat_ev_type;

typedef struct {
    chat_ev_type type;
    const char *text; /* DELTA (complete UTF-8) */
    size_t len;
    int64_t prompt_tokens, completion_tokens; /* USAGE */
    double cost;                              /* USAGE: US dollars, < 0 when unknown */
    bool estimated;                           /* USAGE */
    const char *kind;    /* INFO: budget_warning | history_trimmed | fallback; ERROR: error kind */
    const char *message; /* INFO, ERROR */
    const char *finish_reason, *model, *provider; /* DONE */
    bool cached;                                  /* DONE */
    int64_t session_id, message_id; /* DONE, ERROR: where the reply is stored (0: not stored) */
    int retry_after_ms;             /* ERROR: when a retry may succeed; <= 0 unknown */
} chat_event;

typedef struct {
    void (*emit)(void *ud, const chat_event *ev);
    /* Optional: the granularity to use from now on (it may change while a
     * reply streams). Returns false to keep the current one. */
    bool (*granularity)(void *ud, chunk_mode *mode);
    /* Optional: temperature / top_p changed while the reply streams (takes
     * effect from the next token on backends that sample themselves, i.e.
     * local models). Returns true and sets the has_* flags it fills. */
    bool (*sampling)(void *ud, bool *has_temperature, double *temperature, bool *has_top_p,
                     double *top_p);
    void *ud;
} chat_sink;

typedef struct {
    int status; /* 0 or the CF_E* chat_turn returned */
    int64_t session_id, user_message_id, reply_message_id;
    char session_uuid[37];
    char model[64], provider[32], variant[64];
    prov_usage usage;
    double cost; /* < 0 when unknown */
    bool cached;
    char finish_reason[32];
    char error[384];
    int64_t latency_ms, ttft_ms; /* total, and to the first delta */
    int retry_after_ms;          /* on failure: when a retry may succeed; <= 0 unknown */
    size_t dropped;              /* history messages left out (budget or context) */
} chat_result;

/* Runs one turn; see the top of this file. CANCEL (may be NULL) stops the
 * reply within one step of the provider: the reply is kept, marked
 * cancelled, and DONE says finish_reason "cancelled". Returns 0 or CF_E*:
 * CF_ENOTFOUND (session, template, model), CF_EINVAL (bad request),
 * CF_ERANGE (budget or context refused), CF_EUPSTREAM and others from the
 * router. OUT (may be NULL) gets the summary. */
int chat_turn(chat_service *cs, const chat_request *req, prov_cancel *cancel, const chat_sink *sink,
              chat_result *out, cf_err *err);

/* Borrowing the service's database handles outside a turn (the sessions API
 * lists, renames, exports ... with them). A handle set is used by one thread
 * until released. NULL with ERR set when a connection cannot be opened. */
typedef struct chat_handles chat_handles;
chat_handles *chat_acquire(chat_service *cs, cf_err *err);
void chat_release(chat_service *cs, chat_handles *h);
struct store *chat_handles_store(chat_handles *h);
struct cache *chat_handles_cache(chat_handles *h); /* NULL when the cache is off */

/* The configuration the service runs with. */
const cfg_t *chat_cfg(const chat_service *cs);

/* The model name a request without one uses: default_model, else the first
 * configured model; NULL when none is configured. */
const char *chat_default_model(const chat_service *cs);

#endif
