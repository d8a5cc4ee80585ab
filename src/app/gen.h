/*
 * gen — the generation event log: one reply being produced, decoupled from
 * the connection that asked for it.
 *
 * A generation has an id ("gen_" + 24 hex digits), a state (running, done,
 * cancelled, error) and an append-only list of events numbered 1, 2, 3 ...
 * Each event has a type and a JSON object payload:
 *   delta {text}
 *   usage {prompt_tokens, completion_tokens, cost?, estimated?}
 *   info  {kind: budget_warning|history_trimmed|fallback|cached|..., message}
 *   done  {finish_reason, model, provider, cached}        (terminal)
 *   error {kind, message}                                  (terminal)
 * One producer (the chat turn) appends; any number of subscribers read from
 * any sequence number onwards and block, with a timeout, for more. A client
 * that reconnects with Last-Event-ID N reads from N and sees exactly what it
 * missed, then follows live. Events are immutable once appended and live as
 * long as the generation, so gen_wait() hands out pointers without copying.
 *
 * Control flows the other way through the same object: a cancel flag and a
 * sampling-parameter override (temperature, top_p, granularity, with a
 * version number) that the producer polls every decode step, so a stop or a
 * temperature change takes effect from the next token.
 *
 * The registry finds generations by id and by session (the session's
 * current generation), holds one reference to each, and drops finished ones
 * after `expire_ms` (sweeps run on gen_start and gen_registry_sweep). Objects
 * are reference counted: whoever gets a gen* from gen_start/gen_get/
 * gen_for_session owns one reference and releases it with gen_unref.
 *
 * Trade-offs: lookups are linear scans over the live generations (a few
 * hundred at most between sweeps; a scan is microseconds) rather than a
 * hash table; one mutex per generation plus one for the registry; events
 * are never dropped while the generation lives, so a very long reply costs
 * memory proportional to its length (the reply text itself, roughly twice).
 */
#ifndef CONFAB_APP_GEN_H
#define CONFAB_APP_GEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"

typedef enum { GEN_RUNNING = 0, GEN_DONE, GEN_CANCELLED, GEN_ERROR } gen_state;
typedef enum { GEN_EV_DELTA = 0, GEN_EV_USAGE, GEN_EV_INFO, GEN_EV_DONE, GEN_EV_ERROR } gen_ev_type;

typedef struct {
    uint64_t seq; /* 1, 2, 3 ... within the generation */
    gen_ev_type type;
    int64_t t_ms;     /* monotonic ms since the generation started */
    bool first_delta; /* the generation's first delta (time to first token) */
    const char *json; /* payload: a JSON object, NUL-terminated */
    size_t json_len;
} gen_event;

/* Sampling overrides a client may change while a reply streams. */
typedef struct {
    bool has_temperature, has_top_p;
    double temperature;   /* [0, 2] */
    double top_p;         /* (0, 1] */
    char granularity[16]; /* "token" | "word" | "sentence"; "" = unchanged */
    uint64_t version;     /* bumped by every successful gen_set_params */
} gen_params;

typedef struct gen gen;
typedef struct gen_registry gen_registry;

/* Called after each append (outside any lock) with the generation and the
 * new event; used to feed metrics. Must not call gen_append on G. */
typedef void (*gen_observer)(void *ctx, gen *g, const gen_event *ev);

/* Name of an event type ("delta", "usage", "info", "done", "error"). */
const char *gen_ev_name(gen_ev_type t);
/* Name of a state ("running", "done", "cancelled", "error"). */
const char *gen_state_name(gen_state s);

/* ---- registry ---- */

/* Creates a registry that keeps finished generations for EXPIRE_MS
 * (>= 0) before dropping them. NULL on allocation failure. */
gen_registry *gen_registry_new(int64_t expire_ms);
/* Drops the registry's references; generations still referenced elsewhere
 * live on until their last gen_unref. */
void gen_registry_free(gen_registry *r);
/* Sets the observer (NULL to clear). Call before producers start. */
void gen_registry_set_observer(gen_registry *r, gen_observer fn, void *ctx);
/* Drops finished generations older than expire_ms; returns how many. */
size_t gen_registry_sweep(gen_registry *r);
/* Sets the cancel flag of every running generation; returns how many. */
size_t gen_registry_cancel_all(gen_registry *r);
/* Number of running generations. */
size_t gen_registry_running(gen_registry *r);
/* Number of generations held (running and finished, not yet expired). */
size_t gen_registry_count(gen_registry *r);

/* Starts a generation owned by OWNER (may be NULL) for SESSION_ID (may be
 * NULL); it becomes the session's current generation. Returns a new
 * reference, or NULL with ERR set. */
gen *gen_start(gen_registry *r, const char *owner, const char *session_id, cf_err *err);
/* Looks a generation up by id: a new reference, or NULL when unknown or
 * expired. */
gen *gen_get(gen_registry *r, const char *id);
/* The session's most recent generation (a new reference), or NULL. */
gen *gen_for_session(gen_registry *r, const char *session_id);

void gen_ref(gen *g);
/* Releases one reference; the last one frees the generation. NULL is ok. */
void gen_unref(gen *g);

/* ---- accessors (immutable after gen_start; strings live as long as G) ---- */
const char *gen_id(const gen *g);
const char *gen_owner(const gen *g);   /* "" when none */
const char *gen_session(const gen *g); /* "" when none */
gen_state gen_get_state(gen *g);
/* Sequence number of the last event (0 when none yet). */
uint64_t gen_last_seq(gen *g);
/* Monotonic ns at gen_start. */
uint64_t gen_started_ns(const gen *g);

/* ---- producer side ---- */

/* Appends an event with payload JSON (a JSON object as text, copied).
 * DONE and ERROR finish the generation: state becomes done (cancelled
 * when the payload's finish_reason is "cancelled"), or error. The
 * payload is checked to be a JSON object. Returns the new sequence number (> 0), or
 * CF_ECLOSED when the generation is already finished, CF_EINVAL when JSON
 * is not an object. */
int64_t gen_append(gen *g, gen_ev_type type, const char *json);
/* Conveniences that build the payload. TEXT may hold any bytes that are
 * valid UTF-8; N is its length. COST < 0 leaves it out. */
int64_t gen_delta(gen *g, const char *text, size_t n);
int64_t gen_usage(gen *g, int64_t prompt_tokens, int64_t completion_tokens, double cost,
                  bool estimated);
int64_t gen_info(gen *g, const char *kind, const char *message);
int64_t gen_done(gen *g, const char *finish_reason, const char *model, const char *provider,
                 bool cached);
int64_t gen_error(gen *g, const char *kind, const char *message);

/* True once gen_cancel was called: the producer polls this every step and
 * then ends with gen_done(g, "cancelled", ...). */
bool gen_cancelled(gen *g);
/* Copies the current overrides into *OUT; returns their version, so a
 * producer can compare with the version it last applied. */
uint64_t gen_get_params(gen *g, gen_params *out);

/* Registers FN(UD) to run once when the generation is cancelled (at once,
 * on this thread, when it already was), on the thread that cancels, outside
 * any lock. One slot: a second call replaces the first; FN NULL clears it.
 * Lets a producer that blocks elsewhere (e.g. a provider's prov_cancel) be
 * woken at once instead of at its next poll. FN must be quick. */
void gen_on_cancel(gen *g, void (*fn)(void *ud), void *ud);

/* ---- control side ---- */

/* Requests cancellation (idempotent); wakes waiters. Returns 0, or
 * CF_ECLOSED when the generation already finished. */
int gen_cancel(gen *g);
/* Merges the fields of P that are set (has_temperature, has_top_p,
 * non-empty granularity) into the overrides, after validating ranges.
 * Returns 0, CF_EINVAL with ERR set for a bad value, or CF_ECLOSED. */
int gen_set_params(gen *g, const gen_params *p, cf_err *err);

/* ---- subscriber side ---- */

/* Waits up to TIMEOUT_MS (< 0 forever, 0 not at all) for events with
 * seq > AFTER and stores up to MAX of them in EVS (pointers valid while the
 * caller holds its reference), *N gets the count. Returns 0 when N > 0,
 * CF_ETIMEOUT when nothing came in time, CF_ECLOSED when the generation is
 * finished and there is nothing after AFTER (the stream is complete). */
int gen_wait(gen *g, uint64_t after, int timeout_ms, const gen_event **evs, size_t max, size_t *n);
/* Wakes every waiter of G (they return CF_ETIMEOUT early unless events
 * arrived) so a subscriber that wants to stop notices promptly. */
void gen_wake(gen *g);

#endif
