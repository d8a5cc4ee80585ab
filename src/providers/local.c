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
} job;

typedef struct model {
    char *name, *path;
    cf_model *m;
    tok_tokenizer *tok;
    char *tmpl;      /* Jinja source */
    char *bos, *eos; /* token texts for the template ("" when none) */
    cf_ctx *ctx;     /* the one context of this model's worker */
    int32_t *cached; /* (n_cached,) tokens whose KV is in ctx, in order */
    int n_cached, cap_cached;
    int n_vocab, n_ctx, eos_id, eot_id;
    _Atomic int last_prompt, last_reused; /* for prov_local_last_prompt */
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

static void send_error(job *j, prov_errkind k, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void send_error(job *j, prov_errkind k, const char *fmt, ...) {
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    prov_event ev = {.kind = PROV_EV_ERROR, .err_kind = k, .retry_after_ms = -1, .message = msg};
    j->cb(j->ud, &ev);
}

static void job_free(job *j) {
    if (!j) return;
    json_decref(j->messages);
    for (size_t i = 0; i < j->n_stop; i++)
        free(j->stops[i]);
    free(j);
}

/* ------------------------------------------------------------ one request */

static bool cancelled_cb(void *ud) { return prov_cancel_fired(ud); }

static int remember(model *md, const int32_t *ids, int n) {
    if (md->n_cached + n > md->cap_cached) {
        int cap = md->cap_cached ? md->cap_cached : 256;
        while (cap < md->n_cached + n)
            cap *= 2;
        int32_t *c = realloc(md->cached, (size_t)cap * sizeof *c);
        if (!c) return -1;
        md->cached = c;
        md->cap_cached = cap;
    }
    memcpy(md->cached + md->n_cached, ids, (size_t)n * sizeof *ids);
    md->n_cached += n;
    return 0;
}

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

static void run_job(model *md, job *j) {
    cf_err err = {0};
    /* 1. The prompt as the model was trained to see it. */
    sb_t prompt = {0};
    if (tmpl_render(md->tmpl, j->messages, true, md->bos, md->eos, NULL, &prompt, &err)) {
        send_error(j, PROV_ERR_CONFIG, "chat template of %s: %s", md->name, err.msg);
        sb_free(&prompt);
        return;
    }
    bool has_bos = md->bos[0] && !strncmp(prompt.data ? prompt.data : "", md->bos, strlen(md->bos));
    tok_ids ids = {0};
    if (tok_encode(md->tok, sb_str(&prompt), prompt.len, !has_bos, true, &ids, &err) < 0) {
        send_error(j, PROV_ERR_CONFIG, "tokenizing the prompt: %s", err.msg);
        sb_free(&prompt);
        tok_ids_free(&ids);
        return;
    }
    sb_free(&prompt);
    int n = (int)ids.n;
    if (n == 0 || n >= md->n_ctx) {
        send_error(j, PROV_ERR_HTTP_4XX, "the prompt has %d tokens; the context holds %d", n,
                   md->n_ctx);
        tok_ids_free(&ids);
        return;
    }
    /* 2. Reuse the KV of the longest common prefix; decode the rest (at
     * least one token, for fresh logits). */
    int keep = 0;
    while (keep < md->n_cached && keep < n && md->cached[keep] == ids.v[keep])
        keep++;
    if (keep == n) keep = n - 1;
    if (cf_ctx_seq_truncate(md->ctx, 0, keep, &err))
        keep = 0, cf_ctx_seq_truncate(md->ctx, 0, 0, NULL);
    md->n_cached = keep;
    cf_ctx_set_abort(md->ctx, cancelled_cb, j->cancel);
    int rc = cf_ctx_eval(md->ctx, ids.v + keep, n - keep, false, &err);
    if (rc < 0) {
        md->n_cached = 0;
        cf_ctx_seq_truncate(md->ctx, 0, 0, NULL);
        if (rc == CF_ECANCEL || prov_cancel_fired(j->cancel))
            send_error(j, PROV_ERR_CANCELLED, "cancelled");
        else
            send_error(j, PROV_ERR_HTTP_5XX, "decoding the prompt: %s", err.msg);
        tok_ids_free(&ids);
        return;
    }
    remember(md, ids.v + keep, n - keep);
    md->last_prompt = n;
    md->last_reused = keep;
    log_debug("local", "%s: prompt %d tokens, %d reused from the cache", md->name, n, keep);

    /* 3. Sample, stream, stop. */
    bool has_t = j->req.has_temperature, has_p = j->req.has_top_p;
    double temp = j->req.temperature, top_p = j->req.top_p;
    cf_sampler *smp = make_sampler(md, j, has_t, temp, has_p, top_p, &err);
    tok_stream *ts = tok_stream_new(md->tok, 0);
    cf_stop *stop = j->n_stop ? cf_stop_new((const char *const *)j->stops, (int)j->n_stop) : NULL;
    if (!smp || !ts) {
        send_error(j, PROV_ERR_CONFIG, "sampler: %s", err.msg);
        goto out;
    }
    for (int i = 0; i < n; i++)
        cf_samp_accept(smp, ids.v[i]);
    int max = j->req.max_tokens > 0 ? j->req.max_tokens : md->n_ctx;
    int produced = 0;
    prov_finish finish = PROV_FINISH_LENGTH;
    sb_t piece = {0};
    bool stopped = false;
    int32_t *gen = malloc(sizeof *gen * (size_t)(max < md->n_ctx ? max : md->n_ctx));
    for (;;) {
        if (prov_cancel_fired(j->cancel)) {
            sb_free(&piece);
            free(gen);
            send_error(j, PROV_ERR_CANCELLED, "cancelled");
            goto out;
        }
        if (j->req.live_params) {
            bool ht = has_t, hp = has_p;
            double t2 = temp, p2 = top_p;
            if (j->req.live_params(j->req.live_ud, &ht, &t2, &hp, &p2) &&
                (ht != has_t || hp != has_p || t2 != temp || p2 != top_p)) {
                has_t = ht, has_p = hp, temp = t2, top_p = p2;
                cf_sampler *ns = make_sampler(md, j, has_t, temp, has_p, top_p, &err);
                if (ns) {
                    for (int i = 0; i < n; i++)
                        cf_samp_accept(ns, ids.v[i]);
                    for (int i = 0; i < produced; i++)
                        cf_samp_accept(ns, gen[i]);
                    cf_samp_free(smp);
                    smp = ns;
                }
            }
        }
        if (produced >= max) break;
        int32_t t = cf_samp_sample(smp, cf_ctx_logits(md->ctx, -1));
        if (t == md->eos_id || t == md->eot_id) {
            finish = PROV_FINISH_STOP;
            break;
        }
        cf_samp_accept(smp, t);
        gen[produced++] = t;
        sb_clear(&piece);
        tok_stream_push(ts, t, &piece, NULL);
        const char *out = piece.data;
        size_t out_n = piece.len;
        if (stop && cf_stop_feed(stop, sb_str(&piece), piece.len, &out, &out_n)) stopped = true;
        send_delta(j, out, out_n);
        if (stopped) {
            finish = PROV_FINISH_STOP;
            break;
        }
        if (cf_ctx_seq_len(md->ctx, 0) >= md->n_ctx) break; /* the context is full */
        if (cf_ctx_eval(md->ctx, &t, 1, false, &err) < 0) {
            md->n_cached = 0;
            cf_ctx_seq_truncate(md->ctx, 0, 0, NULL);
            sb_free(&piece);
            free(gen);
            if (prov_cancel_fired(j->cancel))
                send_error(j, PROV_ERR_CANCELLED, "cancelled");
            else
                send_error(j, PROV_ERR_HTTP_5XX, "decoding: %s", err.msg);
            goto out;
        }
        remember(md, &t, 1);
    }
    if (!stopped) {
        sb_clear(&piece);
        tok_stream_flush(ts, &piece);
        const char *out = piece.data;
        size_t out_n = piece.len;
        if (stop) {
            if (!cf_stop_feed(stop, sb_str(&piece), piece.len, &out, &out_n)) {
                send_delta(j, out, out_n);
                cf_stop_flush(stop, &out, &out_n);
            }
        }
        send_delta(j, out, out_n);
    }
    sb_free(&piece);
    free(gen);
    prov_event u = {.kind = PROV_EV_USAGE,
                    .usage = {.prompt_tokens = n, .completion_tokens = produced}};
    j->cb(j->ud, &u);
    prov_event f = {.kind = PROV_EV_FINISH, .finish = finish};
    j->cb(j->ud, &f);
    prov_event d = {.kind = PROV_EV_DONE};
    j->cb(j->ud, &d);
out:
    cf_ctx_set_abort(md->ctx, NULL, NULL);
    cf_samp_free(smp);
    tok_stream_free(ts);
    cf_stop_free(stop);
    tok_ids_free(&ids);
}

static void *worker(void *arg) {
    model *md = arg;
    void *item;
    while (queue_pop(md->q, &item, -1) == 0) {
        job *j = item;
        run_job(md, j);
        job_free(j);
    }
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

static void model_free(model *md) {
    if (!md) return;
    if (md->started) {
        queue_close(md->q);
        pthread_join(md->th, NULL);
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
    free(md->cached);
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
    cf_ctx_opts co = cf_ctx_opts_default();
    co.n_batch = l->o.n_batch;
    md->ctx = cf_ctx_new(md->m, &co, err);
    if (!md->ctx) goto fail;
    md->n_ctx = cf_ctx_n_ctx(md->ctx);
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
