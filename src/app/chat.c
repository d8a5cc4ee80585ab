/*
 * chat — the chat turn; see chat.h for the contract.
 *
 * Data flow of one turn:
 *   request -> session + history (store) -> template fill -> budget check
 *           -> cache lookup (hit: replay chunks, done)
 *           -> store user message, begin streaming reply row
 *           -> route_stream: each delta -> chunker -> emit + store append
 *                                                  + collect chunks for the cache
 *           -> finish reply row (status, usage, cost, latency, who answered)
 *           -> cache put (deterministic requests) -> USAGE, DONE
 *
 * Store and cache handles come from a small pool (one SQLite connection
 * each, used by one thread at a time), so concurrent turns never share a
 * connection and a cached reply costs no connection set-up.
 */
#include "app/chat.h"

#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/budget.h"
#include "app/cache.h"
#include "app/prompts.h"
#include "base/clock.h"
#include "base/sb.h"
#include "providers/pricing.h"
#include "store/store.h"

/* ------------------------------------------------------------ handle pool */

struct chat_handles {
    store *st;
    cache *ca; /* NULL when the cache is off */
    struct chat_handles *next;
};
typedef struct chat_handles handles;

struct chat_service {
    const cfg_t *cfg;
    route_router *router;
    char *db_path, *cache_path;
    pthread_mutex_t mu;
    handles *free_list;
};

static handles *handles_get(chat_service *cs, cf_err *err) {
    pthread_mutex_lock(&cs->mu);
    handles *h = cs->free_list;
    if (h) cs->free_list = h->next;
    pthread_mutex_unlock(&cs->mu);
    if (h) return h;
    h = calloc(1, sizeof *h);
    if (!h) {
        cf_seterr(err, CF_ENOMEM, "out of memory");
        return NULL;
    }
    /* Only the first handle of a process may recover crashed replies; the
     * store decides that itself (it recovers only when it is alone). */
    h->st = store_open(cs->db_path, STORE_OPEN_CREATE, err);
    if (!h->st) {
        free(h);
        return NULL;
    }
    if (cs->cache_path) {
        cache_opts co = {.ttl_s = cs->cfg->cache.ttl_s, .max_entries = cs->cfg->cache.max_entries};
        h->ca = cache_open(cs->cache_path, &co, err);
        if (!h->ca) {
            store_close(h->st);
            free(h);
            return NULL;
        }
    }
    return h;
}

static void handles_put(chat_service *cs, handles *h) {
    pthread_mutex_lock(&cs->mu);
    h->next = cs->free_list;
    cs->free_list = h;
    pthread_mutex_unlock(&cs->mu);
}

chat_service *chat_service_new(const chat_service_opts *o, cf_err *err) {
    chat_service *cs = calloc(1, sizeof *cs);
    if (!cs) {
        cf_seterr(err, CF_ENOMEM, "out of memory");
        return NULL;
    }
    cs->cfg = o->cfg;
    cs->router = o->router;
    cs->db_path = strdup(o->db_path);
    cs->cache_path =
        o->cache_path && *o->cache_path && o->cfg->cache.enabled ? strdup(o->cache_path) : NULL;
    pthread_mutex_init(&cs->mu, NULL);
    /* Open one set of handles now so a bad path fails at start, not at the
     * first message (and crashed replies are recovered at start). */
    handles *h = handles_get(cs, err);
    if (!h) {
        chat_service_free(cs);
        return NULL;
    }
    handles_put(cs, h);
    return cs;
}

void chat_service_free(chat_service *cs) {
    if (!cs) return;
    for (handles *h = cs->free_list, *next; h; h = next) {
        next = h->next;
        store_close(h->st);
        cache_close(h->ca);
        free(h);
    }
    pthread_mutex_destroy(&cs->mu);
    free(cs->db_path);
    free(cs->cache_path);
    free(cs);
}

chat_handles *chat_acquire(chat_service *cs, cf_err *err) { return handles_get(cs, err); }
void chat_release(chat_service *cs, chat_handles *h) {
    if (h) handles_put(cs, h);
}
struct store *chat_handles_store(chat_handles *h) {
    return h->st;
}
struct cache *chat_handles_cache(chat_handles *h) {
    return h->ca;
}
const cfg_t *chat_cfg(const chat_service *cs) { return cs->cfg; }

const char *chat_default_model(const chat_service *cs) {
    if (cs->cfg->default_model) return cs->cfg->default_model;
    return cs->cfg->n_models ? cs->cfg->models[0].name : NULL;
}

/* ------------------------------------------------------------ one turn */

typedef struct {
    chat_service *cs;
    const chat_request *req;
    const chat_sink *sink;
    chat_result *res;
    store_stream *w; /* the reply row, NULL when stateless */
    chunker ch;
    json_t *chunks; /* what was emitted, for the cache */
    int64_t t0_ms;
    bool got_delta;
    cf_err store_err; /* first failure writing the reply (reported at the end) */
} turn;

static void emit(const turn *t, const chat_event *ev) {
    if (t->sink && t->sink->emit) t->sink->emit(t->sink->ud, ev);
}

static void emit_info(const turn *t, const char *kind, const char *msg) {
    chat_event ev = {.type = CHAT_EV_INFO, .kind = kind, .message = msg};
    emit(t, &ev);
}

static void emit_chunk(void *ud, const char *text, size_t n) {
    turn *t = ud;
    chat_event ev = {.type = CHAT_EV_DELTA, .text = text, .len = n};
    emit(t, &ev);
    json_array_append_new(t->chunks, json_stringn(text, n));
}

static void on_provider_event(void *ud, const prov_event *ev) {
    turn *t = ud;
    if (ev->kind != PROV_EV_DELTA || ev->len == 0) return;
    if (!t->got_delta) {
        t->got_delta = true;
        t->res->ttft_ms = clock_wall_ms() - t->t0_ms;
    }
    chunk_mode m;
    if (t->sink && t->sink->granularity && t->sink->granularity(t->sink->ud, &m))
        chunk_set_mode(&t->ch, m);
    chunk_push(&t->ch, ev->text, ev->len);
    if (t->w && !t->store_err.code) store_stream_append(t->w, ev->text, ev->len, &t->store_err);
}

static bool live_params(void *ud, bool *ht, double *t, bool *hp, double *p) {
    turn *tn = ud;
    return tn->sink && tn->sink->sampling && tn->sink->sampling(tn->sink->ud, ht, t, hp, p);
}

static prov_role role_of(const char *r) {
    if (!strcmp(r, "system")) return PROV_ROLE_SYSTEM;
    if (!strcmp(r, "assistant")) return PROV_ROLE_ASSISTANT;
    return PROV_ROLE_USER;
}

/* The conversation as the model will see it. Strings are borrowed from the
 * request, the session and the stored messages, which live until the end
 * of the turn. */
typedef struct {
    prov_msg *m; /* (n,) */
    size_t n, cap;
} history;

static void hist_add(history *h, prov_role role, const char *content) {
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 16;
        h->m = realloc(h->m, h->cap * sizeof *h->m);
        if (!h->m) abort();
    }
    h->m[h->n++] = (prov_msg){role, content};
}

/* Finds NAME among the A/B tests and returns the variant this session gets. */
static const char *effective_model(const chat_service *cs, const char *name,
                                   const char *session_key) {
    for (size_t i = 0; i < cs->cfg->n_ab; i++) {
        const cfg_ab *ab = &cs->cfg->ab[i];
        if (strcmp(ab->name, name)) continue;
        route_ab_cfg r = {.name = ab->name, .n_variants = ab->n_variants};
        for (size_t j = 0; j < ab->n_variants && j < ROUTE_MAX_VARIANTS; j++) {
            r.variants[j].model = ab->variants[j].model;
            r.variants[j].weight = ab->variants[j].weight;
        }
        return ab->variants[route_ab_pick(&r, session_key)].model;
    }
    return name;
}

/* The canonical request for the cache key. */
static json_t *cache_request(const char *model, const history *h, const chat_request *req) {
    json_t *j = json_object();
    json_object_set_new(j, "model", json_string(model));
    json_t *msgs = json_array();
    static const char *names[] = {"system", "user", "assistant"};
    for (size_t i = 0; i < h->n; i++)
        json_array_append_new(
            msgs, json_pack("{s:s,s:s}", "role", names[h->m[i].role], "content", h->m[i].content));
    json_object_set_new(j, "messages", msgs);
    if (req->has_temperature) json_object_set_new(j, "temperature", json_real(req->temperature));
    if (req->has_top_p) json_object_set_new(j, "top_p", json_real(req->top_p));
    if (req->has_seed) json_object_set_new(j, "seed", json_integer(req->seed));
    if (req->max_tokens) json_object_set_new(j, "max_tokens", json_integer(req->max_tokens));
    if (req->has_presence_penalty)
        json_object_set_new(j, "presence_penalty", json_real(req->presence_penalty));
    if (req->has_frequency_penalty)
        json_object_set_new(j, "frequency_penalty", json_real(req->frequency_penalty));
    if (req->n_stop) {
        json_t *s = json_array();
        for (size_t i = 0; i < req->n_stop; i++)
            json_array_append_new(s, json_string(req->stop[i]));
        json_object_set_new(j, "stop", s);
    }
    if (req->no_cache) json_object_set_new(j, "cache", json_false());
    return j;
}

static int fail(turn *t, int code, const char *kind, cf_err *err, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int fail(turn *t, int code, const char *kind, cf_err *err, const char *fmt, ...) {
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cf_seterr(err, code, "%s", msg);
    t->res->status = code;
    snprintf(t->res->error, sizeof t->res->error, "%s", msg);
    chat_event ev = {.type = CHAT_EV_ERROR,
                     .kind = kind,
                     .message = msg,
                     .session_id = t->res->session_id,
                     .message_id = t->res->reply_message_id,
                     .retry_after_ms = t->res->retry_after_ms};
    emit(t, &ev);
    return code;
}

/* Replays a cached reply. */
static int replay(turn *t, handles *hd, const cache_entry *e, int64_t parent, const char *model,
                  cf_err *err) {
    const chat_request *req = t->req;
    const char *provider = json_string_value(json_object_get(e->meta, "provider"));
    const char *answered = json_string_value(json_object_get(e->meta, "model"));
    const char *finish = json_string_value(json_object_get(e->meta, "finish_reason"));
    store_stream *w = NULL;
    if (t->res->session_id) {
        store_stream_opts so = {.session_id = t->res->session_id,
                                .parent_id = parent,
                                .model = answered ? answered : model,
                                .provider = provider};
        w = store_stream_begin(hd->st, &so, err);
        if (!w) return fail(t, err->code, "storage", NULL, "%s", err->msg);
        t->res->reply_message_id = store_stream_id(w);
    }
    size_t i;
    json_t *c;
    t->res->ttft_ms = clock_wall_ms() - t->t0_ms;
    json_array_foreach(e->chunks, i, c) {
        const char *s = json_string_value(c);
        size_t n = json_string_length(c);
        if (!s || !n) continue;
        chat_event ev = {.type = CHAT_EV_DELTA, .text = s, .len = n};
        emit(t, &ev);
        if (w) store_stream_append(w, s, n, NULL);
    }
    t->res->usage.prompt_tokens = json_integer_value(json_object_get(e->meta, "prompt_tokens"));
    t->res->usage.completion_tokens =
        json_integer_value(json_object_get(e->meta, "completion_tokens"));
    t->res->usage.estimated = json_is_true(json_object_get(e->meta, "estimated"));
    t->res->cost = 0; /* a cache hit costs nothing */
    t->res->cached = true;
    snprintf(t->res->model, sizeof t->res->model, "%s", answered ? answered : model);
    snprintf(t->res->provider, sizeof t->res->provider, "%s", provider ? provider : "");
    snprintf(t->res->finish_reason, sizeof t->res->finish_reason, "%s", finish ? finish : "stop");
    t->res->latency_ms = clock_wall_ms() - t->t0_ms;
    if (w) {
        store_stream_end end = {.status = STORE_COMPLETE,
                                .prompt_tokens = t->res->usage.prompt_tokens,
                                .completion_tokens = t->res->usage.completion_tokens,
                                .latency_ms = t->res->latency_ms,
                                .finish_reason = t->res->finish_reason,
                                .cached = true};
        if (store_stream_finish(w, &end, err))
            return fail(t, err->code, "storage", NULL, "%s", err->msg);
    }
    chat_event u = {.type = CHAT_EV_USAGE,
                    .prompt_tokens = t->res->usage.prompt_tokens,
                    .completion_tokens = t->res->usage.completion_tokens,
                    .cost = 0,
                    .estimated = t->res->usage.estimated};
    emit(t, &u);
    chat_event d = {.type = CHAT_EV_DONE,
                    .finish_reason = t->res->finish_reason,
                    .model = t->res->model,
                    .provider = t->res->provider,
                    .cached = true,
                    .session_id = t->res->session_id,
                    .message_id = t->res->reply_message_id};
    emit(t, &d);
    (void)req;
    return 0;
}

int chat_turn(chat_service *cs, const chat_request *req, prov_cancel *cancel, const chat_sink *sink,
              chat_result *out, cf_err *err) {
    chat_result local_res = {0};
    chat_result *res = out ? out : &local_res;
    memset(res, 0, sizeof *res);
    res->cost = -1;
    turn t = {.cs = cs, .req = req, .sink = sink, .res = res, .t0_ms = clock_wall_ms()};
    cf_err e2 = {0};
    if (!err) err = &e2;

    int modes = (req->content != NULL) + (req->template_name != NULL) + req->regenerate +
                (req->n_messages > 0);
    if (modes != 1)
        return fail(&t, CF_EINVAL, "invalid_request", err,
                    "a turn needs exactly one of: content, template, regenerate, messages");
    if (req->regenerate && !req->session_id)
        return fail(&t, CF_EINVAL, "invalid_request", err, "regenerate needs a session");

    handles *hd = handles_get(cs, err);
    if (!hd) return fail(&t, err->code, "storage", NULL, "%s", err->msg);

    int rc = 0;
    store_session sess = {0};
    store_message *stored = NULL;
    size_t n_stored = 0;
    history h = {0};
    char *user_text = NULL;
    json_t *creq = NULL;
    t.chunks = json_array();
    chunk_init(&t.ch, req->granularity, emit_chunk, &t);

    /* 1. The session. */
    if (req->session_id > 0) {
        if (store_session_get(hd->st, req->session_id, &sess, err) ||
            (req->owner && sess.owner && strcmp(req->owner, sess.owner))) {
            rc = fail(&t, CF_ENOTFOUND, "not_found", err, "session %lld not found",
                      (long long)req->session_id);
            goto done;
        }
        res->session_id = sess.id;
    } else if (req->new_session) {
        store_session in = {.owner = (char *)req->owner,
                            .model = (char *)req->model,
                            .system_prompt = (char *)req->system_prompt};
        int64_t id;
        if (store_session_create(hd->st, &in, &id, err) ||
            store_session_get(hd->st, id, &sess, err)) {
            rc = fail(&t, err->code, "storage", NULL, "%s", err->msg);
            goto done;
        }
        res->session_id = id;
    }
    if (res->session_id) memcpy(res->session_uuid, sess.uuid, sizeof res->session_uuid);

    /* 2. The user's message. */
    if (req->template_name) {
        const cfg_prompt *p = cfg_find_prompt(cs->cfg, req->template_name);
        if (!p) {
            rc = fail(&t, CF_ENOTFOUND, "not_found", err, "no prompt template named \"%s\"",
                      req->template_name);
            goto done;
        }
        user_text = prompt_fill(p->text, req->template_keys, req->template_values,
                                req->n_template_vars, err);
        if (!user_text) {
            rc = fail(&t, CF_EINVAL, "invalid_request", NULL, "template %s: %s", req->template_name,
                      err->msg);
            goto done;
        }
    } else if (req->content) {
        user_text = strdup(req->content);
    }

    /* 3. The history. */
    const char *system = req->system_prompt ? req->system_prompt : sess.system_prompt;
    int64_t parent = 0;
    if (req->n_messages) {
        bool has_system = false;
        for (size_t i = 0; i < req->n_messages; i++)
            has_system |= !strcmp(req->messages[i].role, "system");
        if (system && !has_system) hist_add(&h, PROV_ROLE_SYSTEM, system);
        for (size_t i = 0; i < req->n_messages; i++) {
            if (!req->messages[i].content || !req->messages[i].role) {
                rc = fail(&t, CF_EINVAL, "invalid_request", err,
                          "messages[%zu] needs a role and content", i);
                goto done;
            }
            hist_add(&h, role_of(req->messages[i].role), req->messages[i].content);
        }
        if (h.m[h.n - 1].role != PROV_ROLE_USER) {
            rc = fail(&t, CF_EINVAL, "invalid_request", err,
                      "the last message must be from the user");
            goto done;
        }
        if (res->session_id) {
            /* Store the new user message after what the session holds. */
            store_message *all = NULL;
            size_t na = 0;
            if (!store_msg_list(hd->st, res->session_id, &all, &na, NULL) && na)
                parent = all[na - 1].id;
            store_messages_free(all, na);
            user_text = strdup(h.m[h.n - 1].content);
        }
    } else if (res->session_id) {
        store_message *all = NULL;
        size_t na = 0;
        if (store_msg_list(hd->st, res->session_id, &all, &na, err)) {
            rc = fail(&t, err->code, "storage", NULL, "%s", err->msg);
            goto done;
        }
        int64_t leaf = 0;
        if (req->regenerate) {
            for (size_t i = na; i-- > 0 && !leaf;)
                if (!strcmp(all[i].role, "user")) leaf = all[i].id;
            if (!leaf) {
                store_messages_free(all, na);
                rc = fail(&t, CF_EINVAL, "invalid_request", err,
                          "nothing to regenerate: the session has no user message");
                goto done;
            }
        } else if (na) {
            leaf = all[na - 1].id;
        }
        store_messages_free(all, na);
        if (leaf && store_msg_thread(hd->st, leaf, &stored, &n_stored, err)) {
            rc = fail(&t, err->code, "storage", NULL, "%s", err->msg);
            goto done;
        }
        if (system) hist_add(&h, PROV_ROLE_SYSTEM, system);
        for (size_t i = 0; i < n_stored; i++) {
            const store_message *m = &stored[i];
            if (!strcmp(m->role, "system") || !strcmp(m->role, "tool")) continue;
            if (!strcmp(m->role, "assistant") &&
                (m->status == STORE_ERROR || !m->content || !*m->content))
                continue;
            hist_add(&h, role_of(m->role), m->content ? m->content : "");
        }
        parent = leaf;
        if (!req->regenerate) hist_add(&h, PROV_ROLE_USER, user_text);
    } else {
        if (system) hist_add(&h, PROV_ROLE_SYSTEM, system);
        hist_add(&h, PROV_ROLE_USER, user_text);
    }

    /* 4. The model. */
    const char *model = req->model ? req->model : sess.model ? sess.model : chat_default_model(cs);
    if (!model) {
        rc = fail(&t, CF_ENOTFOUND, "not_found", err,
                  "no model configured (add one to config.yaml, or pass -m)");
        goto done;
    }
    const char *eff = effective_model(cs, model, res->session_uuid[0] ? res->session_uuid : "");
    const prov_model_cfg *mc = route_model(cs->router, eff);
    if (!mc) {
        rc =
            fail(&t, CF_ENOTFOUND, "model_not_found", err, "model \"%s\" is not configured", model);
        goto done;
    }
    snprintf(res->model, sizeof res->model, "%s", eff);

    /* 5. Budget and context window. */
    {
        budget_msg *bm = calloc(h.n, sizeof *bm);
        for (size_t i = 0; i < h.n; i++) {
            bool est;
            bm[i].is_system = h.m[i].role == PROV_ROLE_SYSTEM;
            bm[i].tokens = prov_count_text(mc, h.m[i].content, strlen(h.m[i].content), &est) + 4;
        }
        budget_cfg bc = {.max_tokens = cs->cfg->budget.max_tokens_per_conversation,
                         .warn_ratio = cs->cfg->budget.warn_ratio,
                         .drop_oldest = cs->cfg->budget.on_exceed &&
                                        !strcmp(cs->cfg->budget.on_exceed, "drop_oldest"),
                         .context_window = mc->context_window,
                         .reply_reserve = req->max_tokens > 0 ? req->max_tokens : 256};
        budget_result br;
        budget_check(&bc, bm, h.n, -1, &br);
        if (br.verdict == BUDGET_REFUSED) {
            free(bm);
            rc = fail(&t, CF_ERANGE, "budget_exceeded", err, "%s", br.message);
            goto done;
        }
        if (br.verdict == BUDGET_WARN) emit_info(&t, "budget_warning", br.message);
        if (br.verdict == BUDGET_TRIMMED) {
            emit_info(&t, "history_trimmed", br.message);
            size_t k = 0;
            for (size_t i = 0; i < h.n; i++)
                if (budget_keeps(bm, h.n, &br, i)) h.m[k++] = h.m[i];
            res->dropped = h.n - k;
            h.n = k;
        }
        free(bm);
    }

    /* 6. Store the user's message. */
    if (res->session_id && !req->regenerate) {
        store_message um = {.session_id = res->session_id,
                            .parent_id = parent,
                            .role = "user",
                            .content = user_text,
                            .status = STORE_COMPLETE};
        if (store_msg_append(hd->st, &um, &res->user_message_id, err)) {
            rc = fail(&t, err->code, "storage", NULL, "%s", err->msg);
            goto done;
        }
        parent = res->user_message_id;
    }

    /* 7. The response cache. */
    creq = cache_request(eff, &h, req);
    char key[33] = "";
    bool cacheable =
        hd->ca && cache_eligible(creq, cs->cfg->cache.always) && !cache_key(creq, key, NULL);
    if (cacheable) {
        cache_entry ce;
        if (cache_get(hd->ca, key, &ce, NULL) == 1) {
            rc = replay(&t, hd, &ce, parent, eff, err);
            cache_entry_free(&ce);
            goto done;
        }
    }

    /* 8. The reply, streamed through the router. */
    if (res->session_id) {
        store_stream_opts so = {.session_id = res->session_id,
                                .parent_id = parent,
                                .model = eff,
                                .provider = mc->backend};
        t.w = store_stream_begin(hd->st, &so, err);
        if (!t.w) {
            rc = fail(&t, err->code, "storage", NULL, "%s", err->msg);
            goto done;
        }
        res->reply_message_id = store_stream_id(t.w);
    }
    prov_request pr = {.msgs = h.m,
                       .n_msgs = h.n,
                       .stream = true,
                       .has_temperature = req->has_temperature,
                       .temperature = req->temperature,
                       .has_top_p = req->has_top_p,
                       .top_p = req->top_p,
                       .has_seed = req->has_seed,
                       .seed = req->seed,
                       .has_presence_penalty = req->has_presence_penalty,
                       .presence_penalty = req->presence_penalty,
                       .has_frequency_penalty = req->has_frequency_penalty,
                       .frequency_penalty = req->frequency_penalty,
                       .max_tokens = req->max_tokens,
                       .live_params = live_params,
                       .live_ud = &t};
    for (size_t i = 0; i < req->n_stop && i < PROV_MAX_STOP; i++)
        pr.stop[pr.n_stop++] = req->stop[i];
    route_result rr;
    int rrc = route_stream(cs->router, model, &pr, res->session_uuid[0] ? res->session_uuid : NULL,
                           cancel, on_provider_event, &t, &rr);
    chunk_finish(&t.ch);
    res->latency_ms = clock_wall_ms() - t.t0_ms;
    res->usage = rr.usage;
    res->cost = rr.cost.priced ? rr.cost.total : -1;
    snprintf(res->model, sizeof res->model, "%s", rr.model[0] ? rr.model : eff);
    snprintf(res->provider, sizeof res->provider, "%s", rr.provider);
    snprintf(res->variant, sizeof res->variant, "%s", rr.variant);
    bool cancelled = rrc == CF_ECANCEL || rr.err_kind == PROV_ERR_CANCELLED;
    snprintf(res->finish_reason, sizeof res->finish_reason, "%s",
             cancelled ? "cancelled"
             : rrc     ? "error"
                       : prov_finish_name(rr.finish));
    if (rrc == 0 && rr.fallbacks > 0) {
        char msg[256];
        snprintf(msg, sizeof msg, "answered by %s after %d fallback%s", res->model, rr.fallbacks,
                 rr.fallbacks == 1 ? "" : "s");
        emit_info(&t, "fallback", msg);
    }
    if (t.w) {
        store_stream_end end = {.status = rrc == 0    ? STORE_COMPLETE
                                          : cancelled ? STORE_CANCELLED
                                                      : STORE_ERROR,
                                .prompt_tokens = rr.usage.prompt_tokens,
                                .completion_tokens = rr.usage.completion_tokens,
                                .cost = res->cost > 0 ? res->cost : 0,
                                .latency_ms = res->latency_ms,
                                .finish_reason = res->finish_reason,
                                .error = rrc && !cancelled ? rr.error : NULL,
                                .model = res->model,
                                .provider = res->provider,
                                .variant = res->variant[0] ? res->variant : NULL};
        cf_err fe = {0};
        if (store_stream_finish(t.w, &end, &fe) && !t.store_err.code) t.store_err = fe;
        t.w = NULL;
    }
    if (rrc && !cancelled) {
        res->retry_after_ms = rr.retry_after_ms;
        rc = fail(&t, rrc, prov_errkind_name(rr.err_kind), err, "%s", rr.error);
        goto done;
    }
    if (t.store_err.code) {
        rc = fail(&t, t.store_err.code, "storage", err, "the reply could not be saved: %s",
                  t.store_err.msg);
        goto done;
    }
    if (rrc == 0 && cacheable) {
        json_t *meta =
            json_pack("{s:s,s:s,s:s,s:I,s:I,s:b}", "model", res->model, "provider", res->provider,
                      "finish_reason", res->finish_reason, "prompt_tokens",
                      (json_int_t)rr.usage.prompt_tokens, "completion_tokens",
                      (json_int_t)rr.usage.completion_tokens, "estimated", rr.usage.estimated);
        cache_put(hd->ca, key, t.chunks, meta, NULL);
        json_decref(meta);
    }
    chat_event u = {.type = CHAT_EV_USAGE,
                    .prompt_tokens = rr.usage.prompt_tokens,
                    .completion_tokens = rr.usage.completion_tokens,
                    .cost = res->cost,
                    .estimated = rr.usage.estimated};
    emit(&t, &u);
    chat_event d = {.type = CHAT_EV_DONE,
                    .finish_reason = res->finish_reason,
                    .model = res->model,
                    .provider = res->provider,
                    .session_id = res->session_id,
                    .message_id = res->reply_message_id};
    emit(&t, &d);
    rc = cancelled ? CF_ECANCEL : 0;
    res->status = rc;

done:
    if (t.w) store_stream_finish(t.w, NULL, NULL);
    chunk_free(&t.ch);
    json_decref(t.chunks);
    json_decref(creq);
    free(h.m);
    free(user_text);
    store_messages_free(stored, n_stored);
    store_session_clear(&sess);
    handles_put(cs, hd);
    return rc;
}
