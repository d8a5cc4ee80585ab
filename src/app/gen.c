/*
 * gen — the generation event log (see gen.h for the model).
 *
 * Each generation has one mutex and one condition variable. Appends take
 * the lock, push an immutable heap event onto a pointer array, and
 * broadcast; waiters copy event pointers out under the lock and format them
 * after releasing it. The pointer array may be reallocated by an append,
 * but the events it points to never move, which is why gen_wait hands out
 * `const gen_event *` rather than indexes.
 *
 * The registry is an array of references with a mutex. Finished
 * generations remember when they finished (monotonic ns); a sweep drops
 * the registry's reference to those older than expire_ms. The registry
 * never frees a generation that someone else still references.
 */
#include "app/gen.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "app/chunk.h"
#include "base/clock.h"
#include "base/sb.h"

struct gen {
    atomic_int refs;
    char id[32];
    char *owner, *session;
    uint64_t started_ns;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    gen_event **evs; /* (n_evs,) evs[i]->seq == i + 1 */
    size_t n_evs, cap_evs;
    gen_state state;
    uint64_t finished_ns; /* 0 while running */
    atomic_bool cancel;
    gen_params params;
    uint64_t wake_gen; /* bumped by gen_wake */
    bool had_delta;
    void (*cancel_fn)(void *ud); /* gen_on_cancel */
    void *cancel_ud;

    gen_registry *reg; /* for the observer; cleared when the registry goes */
};

struct gen_registry {
    pthread_mutex_t mu;
    gen **gens; /* (n,) each holds one reference */
    size_t n, cap;
    int64_t expire_ms;
    gen_observer observer;
    void *observer_ctx;
};

static const char *ev_names[] = {"delta", "usage", "info", "done", "error"};
static const char *state_names[] = {"running", "done", "cancelled", "error"};

const char *gen_ev_name(gen_ev_type t) { return (unsigned)t < 5 ? ev_names[t] : "unknown"; }
const char *gen_state_name(gen_state s) { return (unsigned)s < 4 ? state_names[s] : "unknown"; }

/* ------------------------------------------------------------------ */
/* Registry                                                            */
/* ------------------------------------------------------------------ */

gen_registry *gen_registry_new(int64_t expire_ms) {
    gen_registry *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    pthread_mutex_init(&r->mu, NULL);
    r->expire_ms = expire_ms < 0 ? 0 : expire_ms;
    return r;
}

void gen_registry_free(gen_registry *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n; i++) {
        pthread_mutex_lock(&r->gens[i]->mu);
        r->gens[i]->reg = NULL;
        pthread_mutex_unlock(&r->gens[i]->mu);
        gen_unref(r->gens[i]);
    }
    free(r->gens);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

void gen_registry_set_observer(gen_registry *r, gen_observer fn, void *ctx) {
    pthread_mutex_lock(&r->mu);
    r->observer = fn;
    r->observer_ctx = ctx;
    pthread_mutex_unlock(&r->mu);
}

/* Removes expired generations; caller holds r->mu. Their references are
 * collected into DROP (capacity r->n) and released after unlocking. */
static size_t sweep_locked(gen_registry *r, gen **drop) {
    uint64_t now = clock_mono_ns();
    uint64_t ttl = (uint64_t)r->expire_ms * 1000000ull;
    size_t kept = 0, dropped = 0;
    for (size_t i = 0; i < r->n; i++) {
        gen *g = r->gens[i];
        pthread_mutex_lock(&g->mu);
        bool expired = g->state != GEN_RUNNING && now - g->finished_ns >= ttl;
        if (expired) g->reg = NULL;
        pthread_mutex_unlock(&g->mu);
        if (expired)
            drop[dropped++] = g;
        else
            r->gens[kept++] = g;
    }
    r->n = kept;
    return dropped;
}

size_t gen_registry_sweep(gen_registry *r) {
    pthread_mutex_lock(&r->mu);
    gen **drop = malloc((r->n ? r->n : 1) * sizeof *drop);
    if (!drop) {
        pthread_mutex_unlock(&r->mu);
        return 0;
    }
    size_t nd = sweep_locked(r, drop);
    pthread_mutex_unlock(&r->mu);
    for (size_t i = 0; i < nd; i++)
        gen_unref(drop[i]);
    free(drop);
    return nd;
}

size_t gen_registry_cancel_all(gen_registry *r) {
    /* Take references under the lock, cancel outside it: cancel watchers
     * (gen_on_cancel) then run without the registry locked. */
    pthread_mutex_lock(&r->mu);
    size_t n = r->n;
    gen **all = malloc((n ? n : 1) * sizeof *all);
    if (!all) n = 0;
    for (size_t i = 0; i < n; i++) {
        all[i] = r->gens[i];
        gen_ref(all[i]);
    }
    pthread_mutex_unlock(&r->mu);
    size_t cancelled = 0;
    for (size_t i = 0; i < n; i++) {
        if (!gen_cancelled(all[i]) && gen_cancel(all[i]) == 0) cancelled++;
        gen_unref(all[i]);
    }
    free(all);
    return cancelled;
}

size_t gen_registry_running(gen_registry *r) {
    size_t n = 0;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n; i++)
        if (gen_get_state(r->gens[i]) == GEN_RUNNING) n++;
    pthread_mutex_unlock(&r->mu);
    return n;
}

size_t gen_registry_count(gen_registry *r) {
    pthread_mutex_lock(&r->mu);
    size_t n = r->n;
    pthread_mutex_unlock(&r->mu);
    return n;
}

static void make_id(char out[32]) {
    unsigned char b[12];
    size_t got = 0;
    while (got < sizeof b) {
        ssize_t k = getrandom(b + got, sizeof b - got, 0);
        if (k < 0) {
            if (errno == EINTR) continue;
            /* No entropy source: fall back to time and address bits; ids
             * need to be unique, not secret (access is checked by owner). */
            uint64_t t = clock_mono_ns() ^ (uint64_t)(uintptr_t)out;
            for (size_t i = got; i < sizeof b; i++, t = t * 6364136223846793005ull + 1)
                b[i] = (unsigned char)(t >> 56);
            break;
        }
        got += (size_t)k;
    }
    memcpy(out, "gen_", 4);
    for (size_t i = 0; i < sizeof b; i++)
        snprintf(out + 4 + 2 * i, 3, "%02x", b[i]);
}

gen *gen_start(gen_registry *r, const char *owner, const char *session_id, cf_err *err) {
    gen *g = calloc(1, sizeof *g);
    if (!g) {
        cf_seterr(err, CF_ENOMEM, "out of memory starting a generation");
        return NULL;
    }
    atomic_init(&g->refs, 2); /* the caller's and the registry's */
    make_id(g->id);
    g->owner = strdup(owner ? owner : "");
    g->session = strdup(session_id ? session_id : "");
    if (!g->owner || !g->session) {
        free(g->owner);
        free(g->session);
        free(g);
        cf_seterr(err, CF_ENOMEM, "out of memory starting a generation");
        return NULL;
    }
    g->started_ns = clock_mono_ns();
    pthread_mutex_init(&g->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g->cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&g->cancel, false);
    g->reg = r;

    pthread_mutex_lock(&r->mu);
    gen **drop = malloc((r->n + 1) * sizeof *drop);
    size_t nd = drop ? sweep_locked(r, drop) : 0;
    if (r->n == r->cap) {
        size_t nc = r->cap ? r->cap * 2 : 16;
        gen **ng = realloc(r->gens, nc * sizeof *ng);
        if (!ng) {
            pthread_mutex_unlock(&r->mu);
            for (size_t i = 0; i < nd; i++)
                gen_unref(drop[i]);
            free(drop);
            g->reg = NULL;
            atomic_store(&g->refs, 1);
            gen_unref(g);
            cf_seterr(err, CF_ENOMEM, "out of memory registering a generation");
            return NULL;
        }
        r->gens = ng;
        r->cap = nc;
    }
    r->gens[r->n++] = g;
    pthread_mutex_unlock(&r->mu);
    for (size_t i = 0; i < nd; i++)
        gen_unref(drop[i]);
    free(drop);
    return g;
}

gen *gen_get(gen_registry *r, const char *id) {
    if (!id) return NULL;
    gen *found = NULL;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n; i++) {
        if (!strcmp(r->gens[i]->id, id)) {
            found = r->gens[i];
            gen_ref(found);
            break;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return found;
}

gen *gen_for_session(gen_registry *r, const char *session_id) {
    if (!session_id || !*session_id) return NULL;
    gen *found = NULL;
    pthread_mutex_lock(&r->mu);
    /* Newest first: generations are appended in start order. */
    for (size_t i = r->n; i-- > 0;) {
        if (!strcmp(r->gens[i]->session, session_id)) {
            found = r->gens[i];
            gen_ref(found);
            break;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return found;
}

/* ------------------------------------------------------------------ */
/* Lifetime and accessors                                              */
/* ------------------------------------------------------------------ */

void gen_ref(gen *g) { atomic_fetch_add(&g->refs, 1); }

void gen_unref(gen *g) {
    if (!g) return;
    if (atomic_fetch_sub(&g->refs, 1) != 1) return;
    for (size_t i = 0; i < g->n_evs; i++)
        free(g->evs[i]);
    free(g->evs);
    free(g->owner);
    free(g->session);
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

const char *gen_id(const gen *g) { return g->id; }
const char *gen_owner(const gen *g) { return g->owner; }
const char *gen_session(const gen *g) { return g->session; }
uint64_t gen_started_ns(const gen *g) { return g->started_ns; }

gen_state gen_get_state(gen *g) {
    pthread_mutex_lock(&g->mu);
    gen_state s = g->state;
    pthread_mutex_unlock(&g->mu);
    return s;
}

uint64_t gen_last_seq(gen *g) {
    pthread_mutex_lock(&g->mu);
    uint64_t s = g->n_evs;
    pthread_mutex_unlock(&g->mu);
    return s;
}

/* ------------------------------------------------------------------ */
/* Producer                                                            */
/* ------------------------------------------------------------------ */

int64_t gen_append(gen *g, gen_ev_type type, const char *json) {
    if (!json || (unsigned)type > GEN_EV_ERROR) return CF_EINVAL;
    size_t jl = strlen(json);
    /* Payloads go to clients verbatim, so check them once here. */
    json_t *doc = json_loadb(json, jl, 0, NULL);
    if (!doc || !json_is_object(doc)) {
        json_decref(doc);
        return CF_EINVAL;
    }
    bool says_cancelled = false;
    if (type == GEN_EV_DONE) {
        const char *fr = json_string_value(json_object_get(doc, "finish_reason"));
        says_cancelled = fr && !strcmp(fr, "cancelled");
    }
    json_decref(doc);
    gen_event *ev = malloc(sizeof *ev + jl + 1);
    if (!ev) return CF_ENOMEM;
    char *copy = (char *)(ev + 1);
    memcpy(copy, json, jl + 1);
    ev->type = type;
    ev->json = copy;
    ev->json_len = jl;
    ev->t_ms = (int64_t)((clock_mono_ns() - g->started_ns) / 1000000ull);

    pthread_mutex_lock(&g->mu);
    if (g->state != GEN_RUNNING) {
        pthread_mutex_unlock(&g->mu);
        free(ev);
        return CF_ECLOSED;
    }
    if (g->n_evs == g->cap_evs) {
        size_t nc = g->cap_evs ? g->cap_evs * 2 : 32;
        gen_event **ne = realloc(g->evs, nc * sizeof *ne);
        if (!ne) {
            pthread_mutex_unlock(&g->mu);
            free(ev);
            return CF_ENOMEM;
        }
        g->evs = ne;
        g->cap_evs = nc;
    }
    ev->seq = g->n_evs + 1;
    ev->first_delta = type == GEN_EV_DELTA && !g->had_delta;
    if (type == GEN_EV_DELTA) g->had_delta = true;
    g->evs[g->n_evs++] = ev;
    if (type == GEN_EV_DONE) {
        g->state = says_cancelled ? GEN_CANCELLED : GEN_DONE;
    } else if (type == GEN_EV_ERROR) {
        g->state = GEN_ERROR;
    }
    if (g->state != GEN_RUNNING) g->finished_ns = clock_mono_ns();
    gen_registry *reg = g->reg;
    gen_observer obs = NULL;
    void *obs_ctx = NULL;
    if (reg) {
        /* Lock order is registry then generation everywhere else, so read
         * the observer without the registry lock: it is set before
         * producers start and never changes while they run. */
        obs = reg->observer;
        obs_ctx = reg->observer_ctx;
    }
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    if (obs) obs(obs_ctx, g, ev);
    return (int64_t)ev->seq;
}

int64_t gen_delta(gen *g, const char *text, size_t n) {
    sb_t s = {0};
    sb_append(&s, "{\"text\":");
    sb_append_json_str(&s, text, n);
    sb_putc(&s, '}');
    int64_t r = gen_append(g, GEN_EV_DELTA, s.data);
    sb_free(&s);
    return r;
}

int64_t gen_usage(gen *g, int64_t prompt_tokens, int64_t completion_tokens, double cost,
                  bool estimated) {
    sb_t s = {0};
    sb_printf(&s, "{\"prompt_tokens\":%lld,\"completion_tokens\":%lld,\"total_tokens\":%lld",
              (long long)prompt_tokens, (long long)completion_tokens,
              (long long)(prompt_tokens + completion_tokens));
    if (cost >= 0) sb_printf(&s, ",\"cost\":%.10g", cost);
    sb_printf(&s, ",\"estimated\":%s}", estimated ? "true" : "false");
    int64_t r = gen_append(g, GEN_EV_USAGE, s.data);
    sb_free(&s);
    return r;
}

static void kv_str(sb_t *s, const char *key, const char *val, bool comma) {
    if (comma) sb_putc(s, ',');
    sb_append_json_str(s, key, strlen(key));
    sb_putc(s, ':');
    if (val)
        sb_append_json_str(s, val, strlen(val));
    else
        sb_append(s, "null");
}

int64_t gen_info(gen *g, const char *kind, const char *message) {
    sb_t s = {0};
    sb_putc(&s, '{');
    kv_str(&s, "kind", kind, false);
    kv_str(&s, "message", message, true);
    sb_putc(&s, '}');
    int64_t r = gen_append(g, GEN_EV_INFO, s.data);
    sb_free(&s);
    return r;
}

int64_t gen_done(gen *g, const char *finish_reason, const char *model, const char *provider,
                 bool cached) {
    sb_t s = {0};
    sb_putc(&s, '{');
    kv_str(&s, "finish_reason", finish_reason, false);
    kv_str(&s, "model", model, true);
    kv_str(&s, "provider", provider, true);
    sb_printf(&s, ",\"cached\":%s}", cached ? "true" : "false");
    int64_t r = gen_append(g, GEN_EV_DONE, s.data);
    sb_free(&s);
    return r;
}

int64_t gen_error(gen *g, const char *kind, const char *message) {
    sb_t s = {0};
    sb_putc(&s, '{');
    kv_str(&s, "kind", kind, false);
    kv_str(&s, "message", message, true);
    sb_putc(&s, '}');
    int64_t r = gen_append(g, GEN_EV_ERROR, s.data);
    sb_free(&s);
    return r;
}

bool gen_cancelled(gen *g) { return atomic_load(&g->cancel); }

uint64_t gen_get_params(gen *g, gen_params *out) {
    pthread_mutex_lock(&g->mu);
    *out = g->params;
    pthread_mutex_unlock(&g->mu);
    return out->version;
}

/* ------------------------------------------------------------------ */
/* Control                                                             */
/* ------------------------------------------------------------------ */

int gen_cancel(gen *g) {
    void (*fn)(void *) = NULL;
    void *ud = NULL;
    pthread_mutex_lock(&g->mu);
    int rc = g->state == GEN_RUNNING ? 0 : CF_ECLOSED;
    if (rc == 0 && !atomic_exchange(&g->cancel, true)) {
        fn = g->cancel_fn; /* first cancel only */
        ud = g->cancel_ud;
    }
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    if (fn) fn(ud);
    return rc;
}

void gen_on_cancel(gen *g, void (*fn)(void *ud), void *ud) {
    pthread_mutex_lock(&g->mu);
    g->cancel_fn = fn;
    g->cancel_ud = ud;
    bool now = fn && atomic_load(&g->cancel);
    pthread_mutex_unlock(&g->mu);
    if (now) fn(ud);
}

int gen_set_params(gen *g, const gen_params *p, cf_err *err) {
    if (p->has_temperature && !(p->temperature >= 0.0 && p->temperature <= 2.0))
        return cf_seterr(err, CF_EINVAL, "temperature must be between 0 and 2");
    if (p->has_top_p && !(p->top_p > 0.0 && p->top_p <= 1.0))
        return cf_seterr(err, CF_EINVAL, "top_p must be greater than 0 and at most 1");
    if (p->granularity[0]) {
        chunk_mode m;
        if (chunk_mode_parse(p->granularity, &m) != 0)
            return cf_seterr(err, CF_EINVAL, "granularity must be token, word or sentence");
    }
    pthread_mutex_lock(&g->mu);
    if (g->state != GEN_RUNNING) {
        pthread_mutex_unlock(&g->mu);
        return cf_seterr(err, CF_ECLOSED, "generation %s has already finished", g->id);
    }
    if (p->has_temperature) {
        g->params.has_temperature = true;
        g->params.temperature = p->temperature;
    }
    if (p->has_top_p) {
        g->params.has_top_p = true;
        g->params.top_p = p->top_p;
    }
    if (p->granularity[0])
        snprintf(g->params.granularity, sizeof g->params.granularity, "%s", p->granularity);
    g->params.version++;
    pthread_mutex_unlock(&g->mu);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Subscribers                                                         */
/* ------------------------------------------------------------------ */

int gen_wait(gen *g, uint64_t after, int timeout_ms, const gen_event **evs, size_t max, size_t *n) {
    *n = 0;
    struct timespec dl;
    if (timeout_ms > 0) {
        clock_gettime(CLOCK_MONOTONIC, &dl);
        dl.tv_sec += timeout_ms / 1000;
        dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
    }
    pthread_mutex_lock(&g->mu);
    uint64_t wake0 = g->wake_gen;
    int rc = 0;
    while (g->n_evs <= after) {
        if (g->state != GEN_RUNNING) {
            rc = CF_ECLOSED;
            break;
        }
        if (timeout_ms == 0 || g->wake_gen != wake0) {
            rc = CF_ETIMEOUT;
            break;
        }
        if (timeout_ms < 0) {
            pthread_cond_wait(&g->cv, &g->mu);
        } else if (pthread_cond_timedwait(&g->cv, &g->mu, &dl) == ETIMEDOUT && g->n_evs <= after) {
            rc = g->state != GEN_RUNNING ? CF_ECLOSED : CF_ETIMEOUT;
            break;
        }
    }
    if (rc == 0) {
        size_t k = 0;
        for (uint64_t s = after; s < g->n_evs && k < max; s++)
            evs[k++] = g->evs[s];
        *n = k;
    }
    pthread_mutex_unlock(&g->mu);
    return rc;
}

void gen_wake(gen *g) {
    pthread_mutex_lock(&g->mu);
    g->wake_gen++;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}
