/*
 * router — picks the upstream for a chat request and survives its failures:
 * retries with exponential backoff and jitter, Retry-After, a fallback chain,
 * a circuit breaker per model, A/B splits sticky per session, and a compare
 * mode that streams one prompt from two models at once. It also finalises
 * token usage (provider-reported, exact counter, or estimate) and cost.
 *
 * The policy is documented in docs/ROUTING.md. In short: a failure before
 * any text reached the caller is retried/fallen back transparently; a
 * failure after text was delivered ends the stream with an explicit ERROR
 * event (never a silent cut, never a duplicated reply).
 *
 * route_stream() blocks the calling thread (the app's chat turn) and calls
 * the event callback on that same thread; the network I/O runs on the shared
 * prov_io thread. One router serves many threads at once.
 */
#ifndef CONFAB_PROVIDERS_ROUTER_H
#define CONFAB_PROVIDERS_ROUTER_H

#include "providers/io.h"
#include "providers/pricing.h"
#include "providers/provider.h"

#include <stdbool.h>
#include <stddef.h>

/* config.yaml's router{} block. Start from route_cfg_default() and override
 * what the config sets. route_new() replaces values <= 0 of the other fields
 * by their defaults (in brackets); max_retries 0 means no retries. */
typedef struct {
    int max_retries;        /* retries of one upstream after its first attempt [2] */
    int backoff_initial_ms; /* first backoff [250] */
    int backoff_max_ms;     /* backoff cap; a longer Retry-After moves on instead [8000] */
    int cooldown_ms;        /* how long an open circuit stays open [30000] */
    int failure_threshold;  /* consecutive failures that open the circuit [3] */
} route_cfg;

#define ROUTE_MAX_VARIANTS 8

/* config.yaml's ab.NAME: requests for model NAME go to one of the variants. */
typedef struct {
    const char *name; /* the name clients ask for */
    struct {
        const char *model;
        double weight;
    } variants[ROUTE_MAX_VARIANTS]; /* model = a models.NAME */
    size_t n_variants;
} route_ab_cfg;

typedef struct route_router route_router;

/* The defaults: {2, 250, 8000, 30000, 3}. */
route_cfg route_cfg_default(void);

/* What happened to one routed request. Strings never hold secrets. */
typedef struct {
    int status;               /* 0, or the CF_E* route_stream returned */
    prov_errkind err_kind;    /* PROV_ERR_NONE on success */
    int http_status;          /* of the last failure, 0 when none */
    int retry_after_ms;       /* the last failure's retry delay (Retry-After, or a busy
                                 local model's estimate); -1 when none */
    char error[384];          /* last failure, for a person (redacted) */
    char model[64];           /* config name of the model that answered (or was tried last) */
    char provider[32];        /* its backend: "openai", "anthropic", "cohere", "local" ... */
    char upstream_model[128]; /* the upstream id it ran */
    char ab_name[64];         /* A/B test the request went through, "" if none */
    char variant[64];         /* the variant (a model name) it was assigned */
    prov_usage usage;         /* final counts (estimated flag when not reported) */
    prov_cost cost;
    prov_finish finish;
    int attempts;      /* upstream requests made, retries included */
    int fallbacks;     /* how many models down the chain it went */
    bool partial;      /* text reached the caller before the failure */
    size_t text_bytes; /* bytes of reply text delivered */
} route_result;

/* Creates a router over N_MODELS models and N_AB A/B tests (CFG NULL = the
 * defaults; both arrays and
 * their strings are borrowed and must outlive the router). IO may be NULL:
 * then the router starts and owns its own I/O thread. Checks that names are
 * unique, backends known ("openai", "anthropic", "cohere", or "local" and
 * others registered later), fallbacks and variants name existing models.
 * NULL on error. */
route_router *route_new(const route_cfg *cfg, const prov_model_cfg *models, size_t n_models,
                        const route_ab_cfg *ab, size_t n_ab, prov_io *io, cf_err *err);
void route_free(route_router *r);

/* Plugs in a backend for models whose `backend` is NAME (e.g. the local
 * engine as "local"). B is copied; B->self must outlive the router. Call
 * before serving requests. Returns 0 or CF_EINVAL. */
int route_register_backend(route_router *r, const char *name, const prov_backend *b);

/* Runs REQ on model NAME (or A/B test NAME), with retries and fallbacks.
 * REQ->model is ignored: each model config names its own upstream id.
 * CB gets, on this thread: DELTA*, then one USAGE and one FINISH, then DONE;
 * or on failure (possibly after some DELTAs, and a USAGE for what was
 * produced) one ERROR. OUT (may be NULL) gets the summary. SESSION_ID
 * (may be NULL) makes A/B assignment sticky. CANCEL may be NULL.
 * Returns 0 or a CF_E* code: CF_ENOTFOUND unknown name, CF_ECANCEL,
 * CF_EAUTH, CF_ETIMEOUT, CF_EBUSY (all in cooldown), CF_EUPSTREAM. */
int route_stream(route_router *r, const char *name, const prov_request *req, const char *session_id,
                 prov_cancel *cancel, prov_event_cb cb, void *ud, route_result *out);

/* Compare mode: runs REQ on models A and B concurrently (each with its own
 * retries and fallbacks). CB gets every event tagged with SIDE 0 (A) or 1
 * (B), one call at a time. OUT[2] get both summaries. Returns 0 when both
 * succeeded, else the first failure's code. */
typedef void (*route_compare_cb)(void *ud, int side, const prov_event *ev);
int route_compare(route_router *r, const char *a, const char *b, const prov_request *req,
                  const char *session_id, prov_cancel *cancel, route_compare_cb cb, void *ud,
                  route_result out[2]);

/* The variant index that SESSION_ID is assigned to in AB (weights <= 0
 * never chosen). Deterministic: the same session always gets the same one. */
size_t route_ab_pick(const route_ab_cfg *ab, const char *session_id);

/* The config of model NAME, or NULL. */
const prov_model_cfg *route_model(const route_router *r, const char *name);

/* Circuit state of model NAME: consecutive failures and whether it is open
 * (in cooldown) now. Returns CF_ENOTFOUND for an unknown name. */
int route_breaker(route_router *r, const char *name, int *consecutive, bool *open);

#endif
