/*
 * local — the engine as a provider backend; see local.h for the design.
 *
 * Threads: start() only validates and queues a job; the model's worker
 * thread renders, tokenizes, decodes and samples, and calls the event
 * callback from that thread (as the provider contract allows). The router
 * waits on its own mailbox, so a slow model never blocks other models.
 */
#include "providers/local.h"

#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/queue.h"
#include "base/sb.h"
#include "confab/engine.h"
#include "engine/chat_template.h"
#include "engine/gguf.h"
#include "engine/tokenizer.h"

typedef struct job {
    json_t *messages; /* [{role, content}] */
    prov_request req; /* scalar fields only; msgs/stop pointers cleared */
    char *stops[PROV_MAX_STOP];
    size_t n_stop;
    prov_cancel *cancel;
    prov_event_cb cb;
    void *ud;
    uint64_t queued_ns; /* when start() queued it (the slot wait counts from here) */
} job;

/* A sequence of the context and the tokens whose KV it holds. */
typedef struct {
    int32_t *toks; /* (n,) tokens in the KV of this sequence, in order */
    int n, cap;
    uint64_t used;      /* LRU tick of the last request that used it (0 = never) */
    struct active *own; /* the running request, or NULL when idle */
} slot;

/* A request being served: its prompt is fed in chunks, then one token per
 * step until it ends. */
typedef struct active {
    job *j;
    int seq;            /* its slot, -1 while waiting for one */
    tok_ids ids;        /* the prompt */
    int fed;            /* prompt tokens whose KV is in the slot */
    uint64_t queued_ns; /* when it started waiting for a slot */
    cf_sampler *smp;
    tok_stream *ts;
    cf_stop *stop;
    int32_t *gen; /* (max,) generated tokens */
    int produced, max;
    bool has_t, has_p;
    double temp, top_p;
    int32_t next; /* the token to feed next step (after the prompt) */
    int logit;    /* its row in the step's logits, or -1 */
    sb_t piece;
    struct active *nx;
} active;

typedef struct model {
    char *name, *path;
    cf_model *m;
    tok_tokenizer *tok;
    char *tmpl;      /* Jinja source */
    char *bos, *eos; /* token texts for the template ("" when none) */
    cf_ctx *ctx;     /* the context of this model's worker: n_slots sequences */
    slot *slots;     /* (n_slots,) */
    int n_slots;
    uint64_t tick; /* LRU clock */
    int n_vocab, n_ctx, eos_id, eot_id, n_batch, queue_wait_ms;
    char *state_dir; /* where slots are saved at shutdown and restored at load, or NULL */
    _Atomic int last_prompt, last_reused; /* for prov_local_last_prompt */
    _Atomic int peak_running;             /* most requests that shared one step */
    cf_queue *q;
    pthread_t th;
    bool started;
    struct model *next;
} model;

struct prov_local {
    prov_local_opts o;
    model *models;
};

/* ------------------------------------------------------------ events */

static void send_delta(job *j, const char *t, size_t n) {
    if (!n) return;
    prov_event ev = {.kind = PROV_EV_DELTA, .text = t, .len = n};
    j->cb(j->ud, &ev);
}

static void send_error_retry(job *j, prov_errkind k, int retry_after_ms, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void send_error_retry(job *j, prov_errkind k, int retry_after_ms, const char *fmt, ...) {
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    prov_event ev = {
        .kind = PROV_EV_ERROR, .err_kind = k, .retry_after_ms = retry_after_ms, .message = msg};
    j->cb(j->ud, &ev);
}
#define send_error(j, k, ...) send_error_retry(j, k, -1, __VA_ARGS__)

static void job_free(job *j) {
    if (!j) return;
    json_decref(j->messages);
    for (size_t i = 0; i < j->n_stop; i++)
        free(j->stops[i]);
    free(j);
}

/* ------------------------------------------------------------ slots */

static int slot_push(slot *s, const int32_t *ids, int n) {
    if (s->n + n > s->cap) {
        int cap = s->cap ? s->cap : 256;
        while (cap < s->n + n)
            cap *= 2;
        int32_t *c = realloc(s->toks, (size_t)cap * sizeof *c);
        if (!c) return -1;
        s->toks = c;
        s->cap = cap;
    }
    memcpy(s->toks + s->n, ids, (size_t)n * sizeof *ids);
    s->n += n;
    return 0;
}

static int common_prefix(const slot *s, const int32_t *ids, int n) {
    int k = 0;
    while (k < s->n && k < n && s->toks[k] == ids[k])
        k++;
    return k;
}

/* Gives A a sequence and fills it with the longest cached prefix of its
 * prompt (at most n - 1 tokens, so the last one is decoded for logits):
 *  - an idle slot whose whole content starts the prompt (the conversation's
 *    previous turn) is continued in place;
 *  - otherwise the least recently used idle slot is taken (never-used ones
 *    first) and, when another slot (busy or not) shares a longer prefix
 *    with the prompt (a common system prompt), those positions are copied
 *    from it (cf_ctx_seq_copy) instead of being decoded again.
 * Returns false when every slot is busy. */
static bool assign_slot(model *md, active *a) {
    const int32_t *ids = a->ids.v;
    const int n = (int)a->ids.n;
    int best = -1, best_k = 0, target = -1;
    for (int i = 0; i < md->n_slots; i++) {
        const slot *s = &md->slots[i];
        int k = common_prefix(s, ids, n);
        if (k > n - 1) k = n - 1;
        if (k > best_k) best = i, best_k = k;
        if (!s->own && k == s->n && s->n > 0 && (target < 0 || k > md->slots[target].n)) target = i;
    }
    if (target < 0)
        for (int i = 0; i < md->n_slots; i++)
            if (!md->slots[i].own && (target < 0 || md->slots[i].used < md->slots[target].used))
                target = i;
    if (target < 0) return false;
    slot *t = &md->slots[target];
    int keep = common_prefix(t, ids, n);
    if (keep > n - 1) keep = n - 1;
    if (best >= 0 && best != target && best_k > keep &&
        cf_ctx_seq_copy(md->ctx, best, target, best_k, NULL) == 0) {
        t->n = 0;
        slot_push(t, md->slots[best].toks, best_k);
        keep = best_k;
    }
    if (cf_ctx_seq_truncate(md->ctx, target, keep, NULL) < 0) {
        keep = 0;
        cf_ctx_seq_truncate(md->ctx, target, 0, NULL);
    }
    t->n = keep;
    t->own = a;
    t->used = ++md->tick;
    a->seq = target;
    a->fed = keep;
    md->last_prompt = n;
    md->last_reused = keep;
    log_debug("local", "%s: prompt %d tokens in sequence %d, %d reused from the cache", md->name, n,
              target, keep);
    return true;
}

/* ------------------------------------------------------------ one request */

static cf_sampler *make_sampler(const model *md, const job *j, bool has_t, double t, bool has_p,
                                double p, cf_err *err) {
    cf_samp_params sp = cf_samp_params_default();
    /* llama.cpp's defaults where the request says nothing. */
    sp.temp = has_t ? (float)t : 0.8f;
    sp.top_p = has_p ? (float)p : 0.95f;
    sp.top_k = 40;
    sp.min_p = 0.05f;
    if (j->req.has_presence_penalty) sp.presence_penalty = (float)j->req.presence_penalty;
    if (j->req.has_frequency_penalty) sp.freq_penalty = (float)j->req.frequency_penalty;
    sp.seed =
        j->req.has_seed ? (uint64_t)j->req.seed : (uint64_t)clock_mono_ns() ^ (uint64_t)time(NULL);
    return cf_samp_new(&sp, md->n_vocab, err);
}

/* Ends A: releases its slot (which keeps its KV for the next turn unless
 * DROP_KV) and frees it. The final event has been sent by the caller. */
static void active_end(model *md, active *a, bool drop_kv) {
    if (a->seq >= 0) {
        slot *s = &md->slots[a->seq];
        s->own = NULL;
        s->used = ++md->tick;
        if (drop_kv) {
            s->n = 0;
            cf_ctx_seq_truncate(md->ctx, a->seq, 0, NULL);
        }
    }
    cf_samp_free(a->smp);
    tok_stream_free(a->ts);
    cf_stop_free(a->stop);
    tok_ids_free(&a->ids);
    free(a->gen);
    sb_free(&a->piece);
    job_free(a->j);
    free(a);
}

/* Renders and tokenizes J's prompt and makes its sampler. NULL (the error
 * sent) when the request cannot be served. */
static active *active_new(model *md, job *j) {
    cf_err err = {0};
    /* 1. The prompt as the model was trained to see it. */
    sb_t prompt = {0};
    if (tmpl_render(md->tmpl, j->messages, true, md->bos, md->eos, NULL, &prompt, &err)) {
        send_error(j, PROV_ERR_CONFIG, "chat template of %s: %s", md->name, err.msg);
        sb_free(&prompt);
        job_free(j);
        return NULL;
    }
    active *a = calloc(1, sizeof *a);
    if (!a) {
        send_error(j, PROV_ERR_HTTP_5XX, "out of memory");
        sb_free(&prompt);
        job_free(j);
        return NULL;
    }
    a->j = j;
    a->seq = -1;
    a->logit = -1;
    a->queued_ns = j->queued_ns;
    bool has_bos = md->bos[0] && !strncmp(prompt.data ? prompt.data : "", md->bos, strlen(md->bos));
    int rc = tok_encode(md->tok, sb_str(&prompt), prompt.len, !has_bos, true, &a->ids, &err);
    sb_free(&prompt);
    if (rc < 0) {
        send_error(j, PROV_ERR_CONFIG, "tokenizing the prompt: %s", err.msg);
        active_end(md, a, false);
        return NULL;
    }
    int n = (int)a->ids.n;
    if (n == 0 || n >= md->n_ctx) {
        send_error(j, PROV_ERR_HTTP_4XX, "the prompt has %d tokens; the context holds %d", n,
                   md->n_ctx);
        active_end(md, a, false);
        return NULL;
    }
    a->has_t = j->req.has_temperature, a->has_p = j->req.has_top_p;
    a->temp = j->req.temperature, a->top_p = j->req.top_p;
    a->smp = make_sampler(md, j, a->has_t, a->temp, a->has_p, a->top_p, &err);
    a->ts = tok_stream_new(md->tok, 0);
    a->stop = j->n_stop ? cf_stop_new((const char *const *)j->stops, (int)j->n_stop) : NULL;
    a->max = j->req.max_tokens > 0 && j->req.max_tokens < md->n_ctx ? j->req.max_tokens : md->n_ctx;
    a->gen = malloc(sizeof *a->gen * (size_t)a->max);
    if (!a->smp || !a->ts || !a->gen) {
        send_error(j, PROV_ERR_CONFIG, "sampler: %s", err.msg[0] ? err.msg : "out of memory");
        active_end(md, a, false);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        cf_samp_accept(a->smp, a->ids.v[i]);
    return a;
}

/* Sends the rest of the reply and the final events of a finished request. */
static void active_finish(active *a, prov_finish finish, bool stopped) {
    job *j = a->j;
    if (!stopped) {
        sb_clear(&a->piece);
        tok_stream_flush(a->ts, &a->piece);
        const char *out = a->piece.data;
        size_t out_n = a->piece.len;
        if (a->stop) {
            if (!cf_stop_feed(a->stop, sb_str(&a->piece), a->piece.len, &out, &out_n)) {
                send_delta(j, out, out_n);
                cf_stop_flush(a->stop, &out, &out_n);
            }
        }
        send_delta(j, out, out_n);
    }
    prov_event u = {.kind = PROV_EV_USAGE,
                    .usage = {.prompt_tokens = (int)a->ids.n, .completion_tokens = a->produced}};
    j->cb(j->ud, &u);
    prov_event f = {.kind = PROV_EV_FINISH, .finish = finish};
    j->cb(j->ud, &f);
    prov_event d = {.kind = PROV_EV_DONE};
    j->cb(j->ud, &d);
}

/* Applies changed live sampling parameters (a new sampler that has seen
 * the same history). */
static void live_params(model *md, active *a) {
    job *j = a->j;
    if (!j->req.live_params) return;
    bool ht = a->has_t, hp = a->has_p;
    double t2 = a->temp, p2 = a->top_p;
    if (!j->req.live_params(j->req.live_ud, &ht, &t2, &hp, &p2) ||
        (ht == a->has_t && hp == a->has_p && t2 == a->temp && p2 == a->top_p))
        return;
    a->has_t = ht, a->has_p = hp, a->temp = t2, a->top_p = p2;
    cf_sampler *ns = make_sampler(md, j, a->has_t, a->temp, a->has_p, a->top_p, NULL);
    if (!ns) return;
    for (size_t i = 0; i < a->ids.n; i++)
        cf_samp_accept(ns, a->ids.v[i]);
    for (int i = 0; i < a->produced; i++)
        cf_samp_accept(ns, a->gen[i]);
    cf_samp_free(a->smp);
    a->smp = ns;
}

/* Samples A's next token from LOGITS and streams its text. Returns true
 * when A goes on (A->next is the token to feed), false when it ended (its
 * final events sent). */
static bool active_step(model *md, active *a, const float *logits) {
    live_params(md, a);
    if (a->produced >= a->max) {
        active_finish(a, PROV_FINISH_LENGTH, false);
        return false;
    }
    int32_t t = cf_samp_sample(a->smp, logits);
    if (t == md->eos_id || t == md->eot_id) {
        active_finish(a, PROV_FINISH_STOP, false);
        return false;
    }
    cf_samp_accept(a->smp, t);
    a->gen[a->produced++] = t;
    sb_clear(&a->piece);
    tok_stream_push(a->ts, t, &a->piece, NULL);
    const char *out = a->piece.data;
    size_t out_n = a->piece.len;
    bool stopped = a->stop && cf_stop_feed(a->stop, sb_str(&a->piece), a->piece.len, &out, &out_n);
    send_delta(a->j, out, out_n);
    if (stopped) {
        active_finish(a, PROV_FINISH_STOP, true);
        return false;
    }
    if (cf_ctx_seq_len(md->ctx, a->seq) >= md->n_ctx || a->produced >= a->max) {
        active_finish(a, PROV_FINISH_LENGTH, false); /* the context is full, or max_tokens */
        return false;
    }
    a->next = t;
    return true;
}

/* ------------------------------------------------------------ the worker */

/* Prompt tokens per step while other requests are generating. */
#define LOCAL_PREFILL_STEP 128

/* The scheduler of one model (continuous batching). Each step:
 *  1. takes new requests from the queue (waits only when idle) and
 *     tokenizes them; they wait in PENDING, in order, for a free slot;
 *  2. drops cancelled requests (running or waiting) and fails those that
 *     waited longer than queue_wait_ms (PROV_ERR_UNAVAILABLE, retry later);
 *  3. gives waiting requests free slots (prefix reuse, assign_slot);
 *  4. builds one batch: one token for every decoding request, then prompt
 *     tokens of prefilling ones (n_batch in all when nobody decodes, else
 *     LOCAL_PREFILL_STEP), so a long prompt goes in chunks between the
 *     decode steps of the others;
 *  5. decodes it (every weight matrix read once for the whole batch) and
 *     samples one token for each request whose logits came out.
 * Cancellation is seen at the start of every step. */
static void *worker(void *arg) {
    model *md = arg;
    active *run = NULL, *pend = NULL; /* running (in a slot) and waiting requests */
    const int B = md->n_batch;
    int32_t *tok = malloc(sizeof *tok * (size_t)B), *seq = malloc(sizeof *seq * (size_t)B);
    int8_t *want = malloc((size_t)B);
    active **owner = malloc(sizeof *owner * (size_t)B);
    bool closed = false;
    if (!tok || !seq || !want || !owner) closed = true;
    while (!closed || run || pend) {
        /* 1. new requests */
        void *item;
        int wait = run || pend ? 0 : -1;
        if (pend && !run) wait = 20; /* waiting for a slot: poll for timeouts */
        while (!closed) {
            int rc = queue_pop(md->q, &item, wait);
            if (rc == CF_ECLOSED) {
                closed = true;
                break;
            }
            if (rc) break;
            wait = 0;
            active *a = active_new(md, item);
            if (!a) continue;
            active **pp = &pend;
            while (*pp)
                pp = &(*pp)->nx;
            *pp = a;
        }
        if (closed) { /* shutting down: end everything */
            for (active *lists[2] = {run, pend}, **l = lists; l < lists + 2; l++)
                for (active *a = *l, *nx; a; a = nx) {
                    nx = a->nx;
                    send_error(a->j, PROV_ERR_UNAVAILABLE, "the server is shutting down");
                    active_end(md, a, false);
                }
            run = pend = NULL;
            break;
        }
        /* 2. cancelled and timed-out requests leave */
        const uint64_t now = clock_mono_ns();
        for (active **pp = &run; *pp;) {
            active *a = *pp;
            if (prov_cancel_fired(a->j->cancel)) {
                *pp = a->nx;
                send_error(a->j, PROV_ERR_CANCELLED, "cancelled");
                /* a prompt cut short leaves a consistent prefix; keep it */
                active_end(md, a, false);
            } else {
                pp = &a->nx;
            }
        }
        for (active **pp = &pend; *pp;) {
            active *a = *pp;
            bool late = now - a->queued_ns > (uint64_t)md->queue_wait_ms * 1000000u;
            if (prov_cancel_fired(a->j->cancel) || late) {
                *pp = a->nx;
                if (late)
                    send_error_retry(a->j, PROV_ERR_UNAVAILABLE, 1000,
                                     "local model %s is busy: all %d KV slots are in use; "
                                     "retry later",
                                     md->name, md->n_slots);
                else
                    send_error(a->j, PROV_ERR_CANCELLED, "cancelled");
                active_end(md, a, false);
            } else {
                pp = &a->nx;
            }
        }
        /* 3. waiting requests take free slots, in order */
        while (pend && assign_slot(md, pend)) {
            active *a = pend;
            pend = a->nx;
            active **pp = &run;
            while (*pp)
                pp = &(*pp)->nx;
            a->nx = NULL;
            *pp = a;
        }
        if (!run) continue;
        int n_run = 0;
        for (active *a = run; a; a = a->nx)
            n_run++;
        if (n_run > md->peak_running) md->peak_running = n_run;
        /* 4. the batch: decode tokens first, then prompt chunks */
        int n = 0;
        for (active *a = run; a; a = a->nx) {
            a->logit = -1;
            if (a->fed < (int)a->ids.n) continue;
            tok[n] = a->next, seq[n] = a->seq, want[n] = 1, owner[n] = a;
            n++;
        }
        /* while others decode, prompts advance by at most LOCAL_PREFILL_STEP
         * tokens a step, so a long prompt does not stall their tokens */
        const int cap = n ? (B < n + LOCAL_PREFILL_STEP ? B : n + LOCAL_PREFILL_STEP) : B;
        for (active *a = run; a && n < cap; a = a->nx) {
            int left = (int)a->ids.n - a->fed;
            if (left <= 0) continue;
            int take = left < cap - n ? left : cap - n;
            for (int i = 0; i < take; i++) {
                tok[n] = a->ids.v[a->fed + i], seq[n] = a->seq, owner[n] = a;
                want[n] = a->fed + i == (int)a->ids.n - 1;
                n++;
            }
        }
        /* 5. one forward step for all of them */
        cf_err err = {0};
        cf_batch b = {.n_tokens = n, .token = tok, .seq_id = seq, .logits = want};
        if (cf_ctx_decode(md->ctx, &b, &err) < 0) {
            for (active *a = run, *nx; a; a = nx) {
                nx = a->nx;
                send_error(a->j, PROV_ERR_HTTP_5XX, "decoding: %s", err.msg);
                active_end(md, a, true);
            }
            run = NULL;
            continue;
        }
        for (int i = 0, row = 0; i < n; i++) {
            active *a = owner[i];
            slot_push(&md->slots[a->seq], &tok[i], 1);
            if (a->fed < (int)a->ids.n) a->fed++;
            if (want[i]) a->logit = row++;
        }
        for (active **pp = &run; *pp;) {
            active *a = *pp;
            if (a->logit >= 0 && !active_step(md, a, cf_ctx_logits(md->ctx, a->logit))) {
                *pp = a->nx;
                active_end(md, a, false);
            } else {
                pp = &a->nx;
            }
        }
    }
    free(tok);
    free(seq);
    free(want);
    free(owner);
    return NULL;
}

/* ------------------------------------------------------------ backend */

static model *find(prov_local *l, const char *name) {
    for (model *m = l->models; m; m = m->next)
        if (!strcmp(m->name, name)) return m;
    return NULL;
}

static int local_start(void *self, const prov_request *req, const prov_model_cfg *cfg,
                       prov_cancel *cancel, prov_event_cb cb, void *ud, cf_err *err) {
    prov_local *l = self;
    model *md = find(l, cfg->name);
    if (!md) return cf_seterr(err, CF_ENOTFOUND, "local model %s is not loaded", cfg->name);
    job *j = calloc(1, sizeof *j);
    if (!j) return cf_seterr(err, CF_ENOMEM, "out of memory");
    j->req = *req;
    j->req.msgs = NULL;
    j->req.n_stop = 0;
    j->cancel = cancel;
    j->queued_ns = clock_mono_ns();
    j->cb = cb;
    j->ud = ud;
    j->messages = json_array();
    static const char *roles[] = {"system", "user", "assistant"};
    for (size_t i = 0; i < req->n_msgs; i++)
        json_array_append_new(j->messages,
                              json_pack("{s:s,s:s}", "role", roles[req->msgs[i].role], "content",
                                        req->msgs[i].content ? req->msgs[i].content : ""));
    for (size_t i = 0; i < req->n_stop && i < PROV_MAX_STOP; i++)
        j->stops[j->n_stop++] = strdup(req->stop[i]);
    if (queue_push(md->q, j, 0) != 0) {
        job_free(j);
        return cf_seterr(err, CF_EBUSY, "local model %s is busy (%zu requests queued)", md->name,
                         queue_len(md->q));
    }
    return 0;
}

prov_backend prov_local_backend(prov_local *l) {
    prov_backend b = {.name = "local", .self = l, .start = local_start};
    return b;
}

static int64_t count_tokens(void *ud, const char *text, size_t n) {
    model *md = ud;
    tok_ids ids = {0};
    int64_t c = tok_encode(md->tok, text, n, false, true, &ids, NULL) < 0 ? -1 : (int64_t)ids.n;
    tok_ids_free(&ids);
    return c;
}

bool prov_local_counter(prov_local *l, const char *name, prov_count_fn *fn, void **ud) {
    model *md = find(l, name);
    if (!md) return false;
    *fn = count_tokens;
    *ud = md;
    return true;
}

bool prov_local_last_prompt(prov_local *l, const char *name, int *prompt_tokens, int *reused) {
    model *md = find(l, name);
    if (!md) return false;
    *prompt_tokens = md->last_prompt;
    *reused = md->last_reused;
    return true;
}

int prov_local_n_seq(prov_local *l, const char *name) {
    model *md = find(l, name);
    return md ? md->n_slots : 0;
}

int prov_local_peak_running(prov_local *l, const char *name) {
    model *md = find(l, name);
    return md ? md->peak_running : 0;
}

int prov_local_n_ctx(prov_local *l, const char *name) {
    model *md = find(l, name);
    return md ? md->n_ctx : 0;
}

/* ------------------------------------------------------------ loading */

static char *token_str(const tok_tokenizer *t, int32_t id) {
    if (id < 0) return strdup("");
    tok_str s = tok_text(t, id);
    return strndup(s.p ? s.p : "", s.n);
}

/* The state file of slot I: STATE_DIR/NAME.I.kv (NAME with '/' made '_'). */
static void state_path(const model *md, int i, sb_t *out) {
    sb_clear(out);
    sb_printf(out, "%s/", md->state_dir);
    for (const char *p = md->name; *p; p++)
        sb_putc(out, *p == '/' ? '_' : *p);
    sb_printf(out, ".%d.kv", i);
}

/* Restores the slots saved at the last shutdown (a conversation then goes
 * on without decoding its history again). A file of another model or a
 * corrupt one is logged, removed and skipped. */
static void slots_restore(model *md) {
    sb_t p = {0};
    for (int i = 0; i < md->n_slots; i++) {
        state_path(md, i, &p);
        cf_err e = {0};
        int32_t *toks;
        int n;
        int rc = cf_ctx_seq_load(md->ctx, i, sb_str(&p), &toks, &n, &e);
        if (rc == CF_ENOTFOUND) continue;
        if (rc < 0) {
            log_warn("local", "%s: skipping saved KV state: %s", md->name, e.msg);
            remove(sb_str(&p));
            continue;
        }
        slot *s = &md->slots[i];
        s->n = 0;
        if (slot_push(s, toks, n) < 0) cf_ctx_seq_truncate(md->ctx, i, 0, NULL);
        s->used = ++md->tick;
        free(toks);
        log_info("local", "%s: restored %d positions of KV into sequence %d", md->name, n, i);
    }
    sb_free(&p);
}

/* Saves every slot that holds something (after the worker stopped). */
static void slots_save(model *md) {
    sb_t p = {0};
    for (int i = 0; i < md->n_slots; i++) {
        state_path(md, i, &p);
        const slot *s = &md->slots[i];
        cf_err e = {0};
        if (s->n == 0 || cf_ctx_seq_len(md->ctx, i) != s->n) {
            remove(sb_str(&p));
            continue;
        }
        if (cf_ctx_seq_save(md->ctx, i, s->toks, s->n, sb_str(&p), &e) < 0)
            log_warn("local", "%s: %s", md->name, e.msg);
    }
    sb_free(&p);
}

static void model_free(model *md) {
    if (!md) return;
    if (md->started) {
        queue_close(md->q);
        pthread_join(md->th, NULL);
        if (md->state_dir) slots_save(md);
    }
    if (md->q) {
        void *item;
        while (queue_pop(md->q, &item, 0) == 0) {
            job *j = item;
            send_error(j, PROV_ERR_UNAVAILABLE, "the server is shutting down");
            job_free(j);
        }
        queue_free(md->q);
    }
    cf_ctx_free(md->ctx);
    cf_model_free(md->m);
    tok_free(md->tok);
    free(md->tmpl);
    free(md->bos);
    free(md->eos);
    for (int i = 0; md->slots && i < md->n_slots; i++)
        free(md->slots[i].toks);
    free(md->slots);
    free(md->state_dir);
    free(md->name);
    free(md->path);
    free(md);
}

int prov_local_add(prov_local *l, const char *name, const char *path, cf_err *err) {
    if (find(l, name)) return cf_seterr(err, CF_EINVAL, "local model %s is already loaded", name);
    model *md = calloc(1, sizeof *md);
    if (!md) return cf_seterr(err, CF_ENOMEM, "out of memory");
    md->name = strdup(name);
    md->path = strdup(path);
    gguf_file *f = gguf_open(path, err);
    if (!f) goto fail;
    md->tok = tok_from_gguf(f, err);
    if (!md->tok) {
        gguf_close(f);
        goto fail;
    }
    const char *builtin;
    md->tmpl = tmpl_for_model(f, md->tok, &builtin);
    if (builtin) log_info("local", "%s has no chat template; using the built-in %s", path, builtin);
    gguf_close(f);
    md->bos = token_str(md->tok, tok_bos(md->tok));
    md->eos = token_str(md->tok, tok_eos(md->tok));
    cf_model_opts mo = cf_model_opts_default();
    mo.n_threads = l->o.n_threads;
    mo.n_ctx = l->o.n_ctx;
    mo.kv_type = l->o.kv_f32 ? CF_KV_F32 : CF_KV_F16;
    md->m = cf_model_load(path, &mo, err);
    if (!md->m) goto fail;
    cf_model_info info;
    cf_model_get_info(md->m, &info);
    md->n_vocab = info.n_vocab;
    md->eos_id = tok_eos(md->tok) >= 0 ? tok_eos(md->tok) : info.eos_id;
    md->eot_id = tok_eot(md->tok);
    /* Sequences: as many as the KV budget holds (each n_ctx positions). */
    const int n_ctx = info.n_ctx;
    const uint64_t slot_bytes = 2ull * (uint64_t)info.n_layer * (uint64_t)n_ctx *
                                (uint64_t)info.n_head_kv * (uint64_t)info.head_dim *
                                (l->o.kv_f32 ? 4u : 2u);
    md->n_batch = l->o.n_batch > 0 ? l->o.n_batch : 512;
    int n_seq = l->o.n_seq > 0 ? l->o.n_seq : PROV_LOCAL_DEFAULT_SEQ;
    if (l->o.kv_budget_mb > 0) {
        uint64_t fit = ((uint64_t)l->o.kv_budget_mb << 20) / slot_bytes;
        if (fit < 1) {
            cf_seterr(err, CF_EINVAL,
                      "engine.kv_budget_mb %lld is less than one sequence of %d positions needs "
                      "(%llu MiB)",
                      (long long)l->o.kv_budget_mb, n_ctx,
                      (unsigned long long)((slot_bytes + (1u << 20) - 1) >> 20));
            goto fail;
        }
        if (l->o.n_seq <= 0 || fit < (uint64_t)n_seq) n_seq = fit > 64 ? 64 : (int)fit;
    }
    if (n_seq > md->n_batch) n_seq = md->n_batch;
    md->queue_wait_ms = l->o.queue_wait_ms > 0 ? l->o.queue_wait_ms : 30000;
    cf_ctx_opts co = cf_ctx_opts_default();
    co.n_batch = l->o.n_batch;
    co.n_seq = n_seq;
    md->ctx = cf_ctx_new(md->m, &co, err);
    if (!md->ctx) goto fail;
    md->n_ctx = cf_ctx_n_ctx(md->ctx);
    md->n_slots = n_seq;
    md->slots = calloc((size_t)n_seq, sizeof *md->slots);
    if (!md->slots) {
        cf_seterr(err, CF_ENOMEM, "out of memory");
        goto fail;
    }
    if (l->o.state_dir && l->o.state_dir[0]) {
        md->state_dir = strdup(l->o.state_dir);
        mkdir(md->state_dir, 0755); /* may exist; a failure shows at save */
        slots_restore(md);
    }
    md->q = queue_new(64);
    if (!md->q || pthread_create(&md->th, NULL, worker, md)) {
        cf_seterr(err, CF_ENOMEM, "cannot start the worker of %s", name);
        goto fail;
    }
    md->started = true;
    md->next = l->models;
    l->models = md;
    return 0;
fail:
    cf_errctx(err, "local model %s (%s)", name, path);
    model_free(md);
    return err ? err->code : CF_EINVAL;
}

prov_local *prov_local_new(const prov_local_opts *o, cf_err *err) {
    prov_local *l = calloc(1, sizeof *l);
    if (!l) {
        cf_seterr(err, CF_ENOMEM, "out of memory");
        return NULL;
    }
    if (o) l->o = *o;
    return l;
}

void prov_local_free(prov_local *l) {
    if (!l) return;
    for (model *m = l->models, *next; m; m = next) {
        next = m->next;
        model_free(m);
    }
    free(l);
}
