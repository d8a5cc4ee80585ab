/*
 * router — retries, fallbacks, circuit breaker, A/B and compare; see
 * router.h and docs/ROUTING.md for the policy.
 *
 * One routed request runs on the caller's thread as a loop over the chain
 * [requested model, its fallbacks...]; each model gets up to 1+max_retries
 * attempts. An attempt starts the backend with a callback that copies each
 * event into a per-attempt mailbox; the caller's thread pops them, forwards
 * deltas to the caller at once, and keeps usage/finish for the end. So the
 * caller's callback always runs on the caller's thread, and a slow caller
 * never blocks the shared I/O thread: the mailbox is an unbounded list
 * (rather than base's bounded queue, whose full state would stall every
 * other stream on the I/O thread; its size is bounded by what one upstream
 * sends, which the I/O layer already limits per event).
 *
 * Circuit breaker per model: failure_threshold consecutive failures (of the
 * kinds that say the upstream is unwell: connect, timeout, 5xx, 429,
 * protocol, auth) open it for cooldown_ms; after that one request at a time
 * may probe it (half-open); a success closes it, a failure re-opens it.
 * A Retry-After longer than backoff_max_ms also opens it for that long.
 *
 * The only mutable shared state is the breaker table and the jitter PRNG,
 * both under the router's mutex.
 */
#include "providers/router.h"

#include "base/clock.h"
#include "base/hash.h"
#include "base/log.h"
#include "base/sb.h"
#include "providers/redact.h"
#include "providers/remote.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BACKENDS 8

typedef struct {
    int consecutive;
    uint64_t open_until_ns; /* 0 = closed */
    bool probing;           /* half-open probe in flight */
} breaker;

struct route_router {
    route_cfg cfg;
    const prov_model_cfg *models;
    size_t n_models;
    const route_ab_cfg *ab;
    size_t n_ab;
    prov_io *io;
    bool own_io;
    struct {
        char name[32];
        prov_backend b;
        prov_backend *owned;
    } backends[MAX_BACKENDS];
    size_t n_backends;
    pthread_mutex_t mu;
    breaker *br;  /* (n_models,) guarded by mu */
    uint64_t rng; /* xorshift64 state for jitter, guarded by mu */
};

/* ------------------------------------------------------------ setup */

static int find_model(const route_router *r, const char *name) {
    for (size_t i = 0; name && i < r->n_models; i++)
        if (r->models[i].name && !strcmp(r->models[i].name, name)) return (int)i;
    return -1;
}

const prov_model_cfg *route_model(const route_router *r, const char *name) {
    int i = find_model(r, name);
    return i < 0 ? NULL : &r->models[i];
}

static const prov_backend *find_backend(const route_router *r, const char *name) {
    for (size_t i = 0; name && i < r->n_backends; i++)
        if (!strcmp(r->backends[i].name, name)) return &r->backends[i].b;
    return NULL;
}

int route_register_backend(route_router *r, const char *name, const prov_backend *b) {
    if (!name || !b || !b->start || strlen(name) >= sizeof r->backends[0].name) return CF_EINVAL;
    for (size_t i = 0; i < r->n_backends; i++) {
        if (!strcmp(r->backends[i].name, name)) {
            r->backends[i].b = *b;
            return 0;
        }
    }
    if (r->n_backends == MAX_BACKENDS) return CF_EINVAL;
    snprintf(r->backends[r->n_backends].name, sizeof r->backends[0].name, "%s", name);
    r->backends[r->n_backends++].b = *b;
    return 0;
}

route_cfg route_cfg_default(void) {
    return (route_cfg){.max_retries = 2,
                       .backoff_initial_ms = 250,
                       .backoff_max_ms = 8000,
                       .cooldown_ms = 30000,
                       .failure_threshold = 3};
}

route_router *route_new(const route_cfg *cfg, const prov_model_cfg *models, size_t n_models,
                        const route_ab_cfg *ab, size_t n_ab, prov_io *io, cf_err *err) {
    route_router *r = calloc(1, sizeof *r);
    if (!r) {
        cf_seterr(err, CF_ENOMEM, "out of memory");
        return NULL;
    }
    r->cfg = cfg ? *cfg : route_cfg_default();
    if (r->cfg.max_retries < 0) r->cfg.max_retries = 0;
    if (r->cfg.backoff_initial_ms <= 0) r->cfg.backoff_initial_ms = 250;
    if (r->cfg.backoff_max_ms <= 0) r->cfg.backoff_max_ms = 8000;
    if (r->cfg.cooldown_ms <= 0) r->cfg.cooldown_ms = 30000;
    if (r->cfg.failure_threshold <= 0) r->cfg.failure_threshold = 3;
    r->models = models;
    r->n_models = n_models;
    r->ab = ab;
    r->n_ab = n_ab;
    pthread_mutex_init(&r->mu, NULL);
    r->rng = clock_mono_ns() | 1;
    r->br = calloc(n_models ? n_models : 1, sizeof *r->br);
    if (!r->br) {
        cf_seterr(err, CF_ENOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n_models; i++) {
        const prov_model_cfg *m = &models[i];
        if (!m->name || !*m->name) {
            cf_seterr(err, CF_EINVAL, "model #%zu has no name", i + 1);
            goto fail;
        }
        if (find_model(r, m->name) != (int)i) {
            cf_seterr(err, CF_EINVAL, "model %s is defined twice", m->name);
            goto fail;
        }
        if (!m->backend || (!prov_remote_known(m->backend) && strcmp(m->backend, "local"))) {
            cf_seterr(err, CF_EINVAL,
                      "model %s: unknown backend \"%s\" (openai, anthropic, cohere, local)",
                      m->name, m->backend ? m->backend : "");
            goto fail;
        }
        for (size_t j = 0; j < m->n_fallback; j++) {
            if (find_model(r, m->fallback[j]) < 0) {
                cf_seterr(err, CF_EINVAL, "model %s: fallback \"%s\" is not a defined model",
                          m->name, m->fallback[j] ? m->fallback[j] : "");
                goto fail;
            }
        }
    }
    for (size_t i = 0; i < n_ab; i++) {
        if (!ab[i].name || find_model(r, ab[i].name) >= 0) {
            cf_seterr(err, CF_EINVAL, "A/B test \"%s\" needs a name distinct from every model",
                      ab[i].name ? ab[i].name : "");
            goto fail;
        }
        double total = 0;
        for (size_t j = 0; j < ab[i].n_variants; j++) {
            if (find_model(r, ab[i].variants[j].model) < 0) {
                cf_seterr(err, CF_EINVAL, "A/B test %s: variant \"%s\" is not a defined model",
                          ab[i].name, ab[i].variants[j].model ? ab[i].variants[j].model : "");
                goto fail;
            }
            if (ab[i].variants[j].weight > 0) total += ab[i].variants[j].weight;
        }
        if (total <= 0) {
            cf_seterr(err, CF_EINVAL, "A/B test %s has no variant with a positive weight",
                      ab[i].name);
            goto fail;
        }
    }
    if (!io) {
        io = prov_io_new(err);
        if (!io) goto fail;
        r->own_io = true;
    }
    r->io = io;
    static const char *const kinds[] = {"openai", "anthropic", "cohere"};
    for (size_t i = 0; i < 3; i++) {
        prov_backend *b = prov_remote_new(io, kinds[i], err);
        if (!b) goto fail;
        snprintf(r->backends[r->n_backends].name, sizeof r->backends[0].name, "%s", kinds[i]);
        r->backends[r->n_backends].b = *b;
        r->backends[r->n_backends++].owned = b;
    }
    return r;
fail:
    route_free(r);
    return NULL;
}

void route_free(route_router *r) {
    if (!r) return;
    /* The I/O thread first: no transfer may call into a backend we free. */
    if (r->own_io) prov_io_free(r->io);
    for (size_t i = 0; i < r->n_backends; i++)
        prov_remote_free(r->backends[i].owned);
    free(r->br);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

/* ---------------------------------------------------------- breaker */

static bool breaker_allow(route_router *r, int m, bool *probe) {
    pthread_mutex_lock(&r->mu);
    breaker *b = &r->br[m];
    bool ok = true;
    *probe = false;
    if (b->open_until_ns) {
        if (clock_mono_ns() < b->open_until_ns || b->probing)
            ok = false;
        else {
            b->probing = true;
            *probe = true;
        }
    }
    pthread_mutex_unlock(&r->mu);
    return ok;
}

static void breaker_success(route_router *r, int m) {
    pthread_mutex_lock(&r->mu);
    r->br[m] = (breaker){0};
    pthread_mutex_unlock(&r->mu);
}

/* Records a failure; COUNTED says whether it reflects the upstream's health.
 * HOLD_MS > 0 (a long Retry-After) opens the circuit at least that long.
 * Returns true when the circuit is open afterwards. */
static bool breaker_failure(route_router *r, int m, bool counted, int hold_ms) {
    pthread_mutex_lock(&r->mu);
    breaker *b = &r->br[m];
    uint64_t now = clock_mono_ns();
    bool was_probe = b->probing;
    b->probing = false;
    if (counted) {
        b->consecutive++;
        if (was_probe || b->consecutive >= r->cfg.failure_threshold)
            b->open_until_ns = now + (uint64_t)r->cfg.cooldown_ms * 1000000ULL;
    }
    if (hold_ms > 0) {
        uint64_t until = now + (uint64_t)hold_ms * 1000000ULL;
        if (until > b->open_until_ns) b->open_until_ns = until;
    }
    bool open = b->open_until_ns > now;
    pthread_mutex_unlock(&r->mu);
    return open;
}

static void breaker_release(route_router *r, int m) {
    pthread_mutex_lock(&r->mu);
    r->br[m].probing = false;
    pthread_mutex_unlock(&r->mu);
}

int route_breaker(route_router *r, const char *name, int *consecutive, bool *open) {
    int m = find_model(r, name);
    if (m < 0) return CF_ENOTFOUND;
    pthread_mutex_lock(&r->mu);
    if (consecutive) *consecutive = r->br[m].consecutive;
    if (open) *open = r->br[m].open_until_ns > clock_mono_ns();
    pthread_mutex_unlock(&r->mu);
    return 0;
}

/* Backoff before retry number ATTEMPT (0-based): initial * 2^attempt capped
 * at max, with "equal jitter" (uniform in [d/2, d]) so clients that failed
 * together do not retry together. */
static int backoff_ms(route_router *r, int attempt) {
    double d = r->cfg.backoff_initial_ms;
    for (int i = 0; i < attempt && d < r->cfg.backoff_max_ms; i++)
        d *= 2;
    if (d > r->cfg.backoff_max_ms) d = r->cfg.backoff_max_ms;
    pthread_mutex_lock(&r->mu);
    uint64_t x = r->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    r->rng = x;
    pthread_mutex_unlock(&r->mu);
    double u = (double)(x >> 11) * (1.0 / 9007199254740992.0);
    return (int)(d / 2 + u * d / 2);
}

/* ---------------------------------------------------------- mailbox */

typedef struct item {
    struct item *next;
    prov_event ev;
    char *buf; /* owned copy of ev.text or ev.message */
} item;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    item *head, *tail;
} mailbox;

static void mb_cb(void *ud, const prov_event *ev) {
    mailbox *mb = ud;
    item *it = calloc(1, sizeof *it);
    if (!it) abort(); /* as sb does: out of memory while streaming is fatal */
    it->ev = *ev;
    if (ev->kind == PROV_EV_DELTA) {
        it->buf = malloc(ev->len + 1);
        if (!it->buf) abort();
        memcpy(it->buf, ev->text, ev->len);
        it->buf[ev->len] = 0;
        it->ev.text = it->buf;
    } else if (ev->kind == PROV_EV_ERROR) {
        it->buf = strdup(ev->message ? ev->message : "");
        if (!it->buf) abort();
        it->ev.message = it->buf;
    }
    pthread_mutex_lock(&mb->mu);
    if (mb->tail)
        mb->tail->next = it;
    else
        mb->head = it;
    mb->tail = it;
    pthread_cond_signal(&mb->cv);
    pthread_mutex_unlock(&mb->mu);
}

static item *mb_pop(mailbox *mb) {
    pthread_mutex_lock(&mb->mu);
    while (!mb->head)
        pthread_cond_wait(&mb->cv, &mb->mu);
    item *it = mb->head;
    mb->head = it->next;
    if (!mb->head) mb->tail = NULL;
    pthread_mutex_unlock(&mb->mu);
    return it;
}

/* ---------------------------------------------------------- routing */

typedef struct {
    prov_event_cb cb;
    void *ud;
    sb_t text; /* reply so far (for estimating completion tokens) */
    bool have_usage;
    prov_usage usage;
    prov_finish finish;
    /* last attempt's failure */
    prov_errkind kind;
    int http_status, retry_after_ms;
    char msg[384];
} turn;

/* One attempt on model M. Returns true on success. */
static bool attempt(route_router *r, const prov_model_cfg *m, const prov_request *req,
                    prov_cancel *cancel, turn *t) {
    if (m->unavailable) {
        t->kind = PROV_ERR_CONFIG;
        t->http_status = 0;
        t->retry_after_ms = -1;
        snprintf(t->msg, sizeof t->msg, "model %s: %s", m->name, m->unavailable);
        return false;
    }
    const prov_backend *b = find_backend(r, m->backend);
    if (!b) {
        t->kind = PROV_ERR_CONFIG;
        t->http_status = 0;
        t->retry_after_ms = -1;
        snprintf(t->msg, sizeof t->msg, "model %s: backend \"%s\" is not available", m->name,
                 m->backend);
        return false;
    }
    mailbox mb = {.head = NULL};
    pthread_mutex_init(&mb.mu, NULL);
    pthread_cond_init(&mb.cv, NULL);
    cf_err err = {0};
    bool ok = false;
    int rc = b->start(b->self, req, m, cancel, mb_cb, &mb, &err);
    if (rc) {
        t->kind = rc == CF_ECANCEL ? PROV_ERR_CANCELLED : PROV_ERR_CONFIG;
        t->http_status = 0;
        t->retry_after_ms = -1;
        sb_t s = {0};
        sb_printf(&s, "model %s: %s", m->name, err.msg);
        prov_redact_cfg(&s, m);
        snprintf(t->msg, sizeof t->msg, "%s", sb_str(&s));
        sb_free(&s);
    } else {
        t->have_usage = false;
        t->finish = PROV_FINISH_NONE;
        for (bool end = false; !end;) {
            item *it = mb_pop(&mb);
            const prov_event *ev = &it->ev;
            switch (ev->kind) {
            case PROV_EV_DELTA:
                sb_appendn(&t->text, ev->text, ev->len);
                t->cb(t->ud, ev);
                break;
            case PROV_EV_USAGE:
                t->have_usage = true;
                t->usage = ev->usage;
                break;
            case PROV_EV_FINISH: t->finish = ev->finish; break;
            case PROV_EV_DONE:
                ok = true;
                end = true;
                break;
            case PROV_EV_ERROR:
                t->kind = ev->err_kind;
                t->http_status = ev->http_status;
                t->retry_after_ms = ev->retry_after_ms;
                snprintf(t->msg, sizeof t->msg, "model %s: %s", m->name, ev->message);
                end = true;
                break;
            }
            free(it->buf);
            free(it);
        }
    }
    pthread_mutex_destroy(&mb.mu);
    pthread_cond_destroy(&mb.cv);
    return ok;
}

static bool retryable(prov_errkind k) {
    return k == PROV_ERR_CONNECT || k == PROV_ERR_TIMEOUT || k == PROV_ERR_HTTP_5XX ||
           k == PROV_ERR_RATE_LIMITED;
}

/* Kinds that say something about the upstream's health (not the request's). */
static bool counts_against_upstream(prov_errkind k) {
    return retryable(k) || k == PROV_ERR_PROTOCOL || k == PROV_ERR_AUTH;
}

static int errkind_code(prov_errkind k) {
    switch (k) {
    case PROV_ERR_CANCELLED: return CF_ECANCEL;
    case PROV_ERR_AUTH: return CF_EAUTH;
    case PROV_ERR_TIMEOUT: return CF_ETIMEOUT;
    case PROV_ERR_UNAVAILABLE: return CF_EBUSY;
    case PROV_ERR_CONFIG: return CF_EINVAL;
    default: return CF_EUPSTREAM;
    }
}

/* Emits the final USAGE (reported, counted or estimated) and fills OUT. */
static void finish_usage(const prov_model_cfg *m, const prov_request *req, turn *t,
                         route_result *out) {
    prov_usage u = t->usage;
    if (!t->have_usage) {
        bool e1 = true, e2 = true;
        u.prompt_tokens = prov_count_prompt(m, req, &e1);
        u.completion_tokens =
            prov_count_text(m, t->text.data ? t->text.data : "", t->text.len, &e2);
        u.cached_tokens = 0;
        u.estimated = e1 || e2;
    }
    prov_event ev = {.kind = PROV_EV_USAGE, .usage = u};
    t->cb(t->ud, &ev);
    out->usage = u;
    prov_price p = prov_price_for(m);
    out->cost = prov_cost_of(&u, &p);
}

static void set_model(route_result *out, const prov_model_cfg *m, const prov_request *req) {
    snprintf(out->model, sizeof out->model, "%s", m->name);
    snprintf(out->provider, sizeof out->provider, "%s", m->backend);
    snprintf(out->upstream_model, sizeof out->upstream_model, "%s",
             req->model && *req->model ? req->model : (m->model ? m->model : ""));
}

static int fail_turn(turn *t, route_result *out, prov_errkind kind, int status, const char *msg) {
    out->err_kind = kind;
    out->http_status = status;
    out->retry_after_ms = t->retry_after_ms;
    snprintf(out->error, sizeof out->error, "%s", msg);
    out->status = errkind_code(kind);
    prov_event ev = {.kind = PROV_EV_ERROR,
                     .err_kind = kind,
                     .http_status = status,
                     .retry_after_ms = -1,
                     .message = out->error};
    t->cb(t->ud, &ev);
    return out->status;
}

int route_stream(route_router *r, const char *name, const prov_request *req_in,
                 const char *session_id, prov_cancel *cancel, prov_event_cb cb, void *ud,
                 route_result *out) {
    /* Each model of the chain runs its own upstream id: a caller's override
     * would send one provider's model name to another. */
    prov_request req_copy = *req_in;
    req_copy.model = NULL;
    const prov_request *req = &req_copy;
    route_result local;
    if (!out) out = &local;
    memset(out, 0, sizeof *out);
    out->retry_after_ms = -1;
    turn t = {.cb = cb, .ud = ud, .retry_after_ms = -1};
    /* A/B test: pick the variant for this session. */
    for (size_t i = 0; i < r->n_ab; i++) {
        if (name && !strcmp(r->ab[i].name, name)) {
            size_t v = route_ab_pick(&r->ab[i], session_id);
            snprintf(out->ab_name, sizeof out->ab_name, "%s", name);
            snprintf(out->variant, sizeof out->variant, "%s", r->ab[i].variants[v].model);
            name = r->ab[i].variants[v].model;
            break;
        }
    }
    int first = find_model(r, name);
    if (first < 0) {
        char msg[160];
        snprintf(msg, sizeof msg, "unknown model \"%.100s\"", name ? name : "");
        fail_turn(&t, out, PROV_ERR_CONFIG, 0, msg);
        return out->status = CF_ENOTFOUND;
    }
    int chain[1 + PROV_MAX_FALLBACK];
    size_t n_chain = 0;
    chain[n_chain++] = first;
    for (size_t j = 0; j < r->models[first].n_fallback && n_chain < 1 + PROV_MAX_FALLBACK; j++) {
        int m = find_model(r, r->models[first].fallback[j]);
        bool dup = false;
        for (size_t k = 0; k < n_chain; k++)
            dup = dup || chain[k] == m;
        if (m >= 0 && !dup) chain[n_chain++] = m;
    }
    set_model(out, &r->models[first], req);
    bool tried_any = false;
    for (size_t ci = 0; ci < n_chain; ci++) {
        const prov_model_cfg *m = &r->models[chain[ci]];
        bool probe;
        if (!breaker_allow(r, chain[ci], &probe)) {
            log_info("router", "%s is in cooldown; skipping it", m->name);
            if (!tried_any) {
                t.kind = PROV_ERR_UNAVAILABLE;
                t.http_status = 0;
                snprintf(t.msg, sizeof t.msg, "model %s is in cooldown after repeated failures",
                         m->name);
            }
            continue;
        }
        if (ci > 0) out->fallbacks = (int)ci;
        set_model(out, m, req);
        for (int a = 0; a <= r->cfg.max_retries; a++) {
            if (prov_cancel_fired(cancel)) {
                if (probe) breaker_release(r, chain[ci]);
                return fail_turn(&t, out, PROV_ERR_CANCELLED, 0, "cancelled");
            }
            tried_any = true;
            out->attempts++;
            if (attempt(r, m, req, cancel, &t)) {
                breaker_success(r, chain[ci]);
                out->finish = t.finish ? t.finish : PROV_FINISH_STOP;
                out->text_bytes = t.text.len;
                finish_usage(m, req, &t, out);
                prov_event fe = {.kind = PROV_EV_FINISH, .finish = out->finish};
                cb(ud, &fe);
                prov_event de = {.kind = PROV_EV_DONE};
                cb(ud, &de);
                sb_free(&t.text);
                return 0;
            }
            if (t.kind == PROV_ERR_CANCELLED) {
                if (probe) breaker_release(r, chain[ci]);
                if (t.text.len) {
                    out->partial = true;
                    out->text_bytes = t.text.len;
                    finish_usage(m, req, &t, out);
                }
                sb_free(&t.text);
                return fail_turn(&t, out, PROV_ERR_CANCELLED, 0, "cancelled");
            }
            int hold = t.retry_after_ms > r->cfg.backoff_max_ms ? t.retry_after_ms : 0;
            bool open = breaker_failure(r, chain[ci], counts_against_upstream(t.kind), hold);
            probe = false;
            if (t.text.len) {
                /* Text already reached the caller: retrying or falling back
                 * would duplicate or splice replies. End explicitly. */
                log_warn("router", "%s failed after %zu bytes of reply: %s", m->name, t.text.len,
                         t.msg);
                out->partial = true;
                out->text_bytes = t.text.len;
                out->finish = PROV_FINISH_NONE;
                finish_usage(m, req, &t, out);
                sb_free(&t.text);
                return fail_turn(&t, out, t.kind, t.http_status, t.msg);
            }
            log_info("router", "%s attempt %d failed (%s): %s", m->name, a + 1,
                     prov_errkind_name(t.kind), t.msg);
            if (!retryable(t.kind) || open || a == r->cfg.max_retries || hold) break;
            int d = backoff_ms(r, a);
            if (t.retry_after_ms > d) d = t.retry_after_ms;
            if (prov_cancel_sleep(cancel, d))
                return fail_turn(&t, out, PROV_ERR_CANCELLED, 0, "cancelled");
        }
        if (ci + 1 < n_chain) log_info("router", "falling back from %s", m->name);
    }
    sb_free(&t.text);
    return fail_turn(&t, out, t.kind ? t.kind : PROV_ERR_UNAVAILABLE, t.http_status,
                     t.msg[0] ? t.msg : "no upstream available");
}

/* --------------------------------------------------------------- A/B */

size_t route_ab_pick(const route_ab_cfg *ab, const char *session_id) {
    double total = 0;
    for (size_t i = 0; i < ab->n_variants; i++)
        if (ab->variants[i].weight > 0) total += ab->variants[i].weight;
    const char *sid = session_id ? session_id : "";
    /* Seeded by the test's name, so one session lands independently in
     * different tests. */
    uint64_t h = hash64(sid, strlen(sid), hash64(ab->name, strlen(ab->name), 0));
    double x = (double)(h >> 11) * (1.0 / 9007199254740992.0) * total;
    size_t last = 0;
    for (size_t i = 0; i < ab->n_variants; i++) {
        if (ab->variants[i].weight <= 0) continue;
        last = i;
        if (x < ab->variants[i].weight) return i;
        x -= ab->variants[i].weight;
    }
    return last;
}

/* ----------------------------------------------------------- compare */

typedef struct {
    route_router *r;
    const char *name;
    const prov_request *req;
    const char *session_id;
    prov_cancel *cancel;
    route_compare_cb cb;
    void *ud;
    pthread_mutex_t *mu;
    int side;
    route_result *out;
    int rc;
} cmp_arm;

static void cmp_cb(void *ud, const prov_event *ev) {
    cmp_arm *a = ud;
    pthread_mutex_lock(a->mu);
    a->cb(a->ud, a->side, ev);
    pthread_mutex_unlock(a->mu);
}

static void *cmp_main(void *arg) {
    cmp_arm *a = arg;
    a->rc = route_stream(a->r, a->name, a->req, a->session_id, a->cancel, cmp_cb, a, a->out);
    return NULL;
}

int route_compare(route_router *r, const char *a, const char *b, const prov_request *req,
                  const char *session_id, prov_cancel *cancel, route_compare_cb cb, void *ud,
                  route_result out[2]) {
    pthread_mutex_t mu;
    pthread_mutex_init(&mu, NULL);
    cmp_arm arms[2] = {
        {r, a, req, session_id, cancel, cb, ud, &mu, 0, &out[0], 0},
        {r, b, req, session_id, cancel, cb, ud, &mu, 1, &out[1], 0},
    };
    pthread_t th;
    bool threaded = pthread_create(&th, NULL, cmp_main, &arms[1]) == 0;
    cmp_main(&arms[0]);
    if (threaded)
        pthread_join(th, NULL);
    else
        cmp_main(&arms[1]); /* no thread: still answer, one after the other */
    pthread_mutex_destroy(&mu);
    return arms[0].rc ? arms[0].rc : arms[1].rc;
}
