/* Tests for src/providers/local.c through the chat service: the engine as a
 * provider, on the real stories260K model from the shared test data. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/chat.h"
#include "app/routing.h"
#include "base/sb.h"
#include "providers/local.h"
#include "store/store.h"
#include "testutil.h"

typedef struct {
    sb_t text;
    int deltas, done, errors;
    char finish[32], error[400];
    prov_cancel *cancel_after3;
} rec;

static void rec_emit(void *ud, const chat_event *ev) {
    rec *r = ud;
    if (ev->type == CHAT_EV_DELTA) {
        sb_appendn(&r->text, ev->text, ev->len);
        if (++r->deltas == 3 && r->cancel_after3) prov_cancel_fire(r->cancel_after3);
    } else if (ev->type == CHAT_EV_DONE) {
        r->done++;
        snprintf(r->finish, sizeof r->finish, "%s", ev->finish_reason);
    } else if (ev->type == CHAT_EV_ERROR) {
        r->errors++;
        snprintf(r->error, sizeof r->error, "%s", ev->message);
    }
}

typedef struct {
    char *dir;
    cfg_t *cfg;
    app_routing *routing;
    chat_service *cs;
} fx;

static fx *fx_new(const char *model_path) {
    fx *f = calloc(1, sizeof *f);
    f->dir = tu_tmpdir();
    char yaml[8192];
    snprintf(
        yaml, sizeof yaml,
        "models:\n  stories:\n    backend: local\n    model: \"%s\"\n  missing:\n    backend: "
        "local\n"
        "    model: /nonexistent/nothing.gguf\nengine: {threads: 1}\ncache: {enabled: false}\n",
        model_path);
    cf_err err = {0};
    f->cfg = cfg_load_string(yaml, strlen(yaml), "t.yaml", &err);
    if (!f->cfg) fail_msg("%s", err.msg);
    f->routing = app_routing_new(f->cfg, NULL, &err);
    if (!f->routing) fail_msg("%s", err.msg);
    char db[4200];
    snprintf(db, sizeof db, "%s/c.db", f->dir);
    chat_service_opts o = {.cfg = f->cfg, .router = app_routing_router(f->routing), .db_path = db};
    f->cs = chat_service_new(&o, &err);
    assert_non_null(f->cs);
    return f;
}

static void fx_free(fx *f) {
    chat_service_free(f->cs);
    app_routing_free(f->routing);
    cfg_free(f->cfg);
    tu_rmtree(f->dir);
    free(f->dir);
    free(f);
}

static void greedy_reply_streams_with_exact_usage(void **st) {
    (void)st;
    fx *f = fx_new(td_path("models/stories260K.gguf"));
    rec r1 = {0}, r2 = {0};
    chat_sink s1 = {.emit = rec_emit, .ud = &r1}, s2 = {.emit = rec_emit, .ud = &r2};
    chat_request q = {
        .content = "Once upon a time", .has_temperature = true, .temperature = 0, .max_tokens = 24};
    chat_result res;
    cf_err e1 = {0};
    if (chat_turn(f->cs, &q, NULL, &s1, &res, &e1)) fail_msg("%s", e1.msg);
    assert_int_equal(r1.done, 1);
    assert_true(r1.text.len > 0);
    assert_true(r1.deltas > 1); /* streamed, not in one piece */
    assert_false(res.usage.estimated);
    assert_true(res.usage.prompt_tokens > 4);
    assert_true(res.usage.completion_tokens > 0 && res.usage.completion_tokens <= 24);
    assert_string_equal(res.provider, "local");
    /* Greedy is deterministic: the same request gives the same text. */
    assert_int_equal(chat_turn(f->cs, &q, NULL, &s2, &res, NULL), 0);
    assert_string_equal(r1.text.data, r2.text.data);
    sb_free(&r1.text);
    sb_free(&r2.text);
    fx_free(f);
}

static void next_turn_reuses_the_cached_prefix(void **st) {
    (void)st;
    fx *f = fx_new(td_path("models/stories260K.gguf"));
    prov_local *l = app_routing_local(f->routing);
    chat_request q = {.new_session = true,
                      .content = "Lily had a red ball.",
                      .has_temperature = true,
                      .temperature = 0,
                      .max_tokens = 12};
    chat_result res;
    assert_int_equal(chat_turn(f->cs, &q, NULL, NULL, &res, NULL), 0);
    int n1, reused1;
    assert_true(prov_local_last_prompt(l, "stories", &n1, &reused1));
    chat_request q2 = {.session_id = res.session_id,
                       .content = "Where did it go?",
                       .has_temperature = true,
                       .temperature = 0,
                       .max_tokens = 12};
    assert_int_equal(chat_turn(f->cs, &q2, NULL, NULL, &res, NULL), 0);
    int n2, reused2;
    assert_true(prov_local_last_prompt(l, "stories", &n2, &reused2));
    /* The second prompt holds the first turn: its tokens come from the
     * KV cache instead of being decoded again. */
    assert_true(n2 > n1);
    assert_true(reused2 >= n1 - 1);
    fx_free(f);
}

static void cancel_stops_within_a_step(void **st) {
    (void)st;
    fx *f = fx_new(td_path("models/stories260K.gguf"));
    prov_cancel *c = prov_cancel_new();
    rec r = {.cancel_after3 = c};
    chat_sink s = {.emit = rec_emit, .ud = &r};
    chat_request q = {.new_session = true, .content = "Tell a long story", .max_tokens = 200};
    chat_result res;
    assert_int_equal(chat_turn(f->cs, &q, c, &s, &res, NULL), CF_ECANCEL);
    assert_string_equal(r.finish, "cancelled");
    /* Deltas already produced may still be in flight; the reply stops far
     * short of its 200 tokens (the exact one-step bound is tested on the
     * backend directly below). */
    assert_true(r.deltas >= 3 && r.deltas < 150);
    prov_cancel_free(c);
    sb_free(&r.text);
    fx_free(f);
}

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    prov_cancel *cancel;
    int deltas;
    bool ended;
    prov_errkind kind;
} direct;

static void direct_cb(void *ud, const prov_event *ev) {
    direct *d = ud;
    pthread_mutex_lock(&d->mu);
    if (ev->kind == PROV_EV_DELTA && ++d->deltas == 1) prov_cancel_fire(d->cancel);
    if (ev->kind == PROV_EV_ERROR || ev->kind == PROV_EV_DONE) {
        d->ended = true;
        d->kind = ev->kind == PROV_EV_ERROR ? ev->err_kind : PROV_ERR_NONE;
        pthread_cond_signal(&d->cv);
    }
    pthread_mutex_unlock(&d->mu);
}

static void backend_cancel_takes_effect_at_the_next_step(void **st) {
    (void)st;
    cf_err err = {0};
    prov_local_opts o = {.n_threads = 1};
    prov_local *l = prov_local_new(&o, &err);
    assert_int_equal(prov_local_add(l, "s", td_path("models/stories260K.gguf"), &err), 0);
    prov_backend b = prov_local_backend(l);
    direct d = {.cancel = prov_cancel_new()};
    pthread_mutex_init(&d.mu, NULL);
    pthread_cond_init(&d.cv, NULL);
    prov_msg m = {PROV_ROLE_USER, "Tell a long story"};
    prov_request q = {.msgs = &m, .n_msgs = 1, .stream = true, .max_tokens = 300};
    prov_model_cfg mc = {.name = "s", .backend = "local"};
    assert_int_equal(b.start(b.self, &q, &mc, d.cancel, direct_cb, &d, &err), 0);
    pthread_mutex_lock(&d.mu);
    while (!d.ended)
        pthread_cond_wait(&d.cv, &d.mu);
    pthread_mutex_unlock(&d.mu);
    assert_int_equal(d.deltas, 1); /* cancelled during token 1: no token 2 */
    assert_int_equal(d.kind, PROV_ERR_CANCELLED);
    prov_local_free(l);
    prov_cancel_free(d.cancel);
    pthread_mutex_destroy(&d.mu);
    pthread_cond_destroy(&d.cv);
}

static void stop_string_ends_the_reply(void **st) {
    (void)st;
    fx *f = fx_new(td_path("models/stories260K.gguf"));
    /* Find what greedy says, then stop at its third character. */
    rec r = {0};
    chat_sink s = {.emit = rec_emit, .ud = &r};
    chat_request q = {
        .content = "Once upon a time", .has_temperature = true, .temperature = 0, .max_tokens = 24};
    assert_int_equal(chat_turn(f->cs, &q, NULL, &s, NULL, NULL), 0);
    assert_true(r.text.len > 6);
    char stop[4];
    memcpy(stop, r.text.data + 3, 3);
    stop[3] = 0;
    const char *stops[] = {stop};
    rec r2 = {0};
    chat_sink s2 = {.emit = rec_emit, .ud = &r2};
    q.stop = stops;
    q.n_stop = 1;
    chat_result res;
    assert_int_equal(chat_turn(f->cs, &q, NULL, &s2, &res, NULL), 0);
    assert_null(strstr(r2.text.data ? r2.text.data : "", stop));
    assert_true(r2.text.len <= 3);
    assert_string_equal(res.finish_reason, "stop");
    sb_free(&r.text);
    sb_free(&r2.text);
    fx_free(f);
}

static void missing_model_file_is_unavailable_with_reason(void **st) {
    (void)st;
    fx *f = fx_new(td_path("models/stories260K.gguf"));
    rec r = {0};
    chat_sink s = {.emit = rec_emit, .ud = &r};
    chat_request q = {.content = "hi", .model = "missing"};
    chat_result res;
    assert_int_not_equal(chat_turn(f->cs, &q, NULL, &s, &res, NULL), 0);
    assert_int_equal(r.errors, 1);
    assert_non_null(strstr(r.error, "nothing.gguf"));
    fx_free(f);
}

static void prompt_longer_than_context_is_refused(void **st) {
    (void)st;
    fx *f = fx_new(td_path("models/stories260K.gguf"));
    sb_t big = {0};
    for (int i = 0; i < 2000; i++)
        sb_append(&big, "The cat sat on the mat. ");
    rec r = {0};
    chat_sink s = {.emit = rec_emit, .ud = &r};
    chat_request q = {.content = big.data, .max_tokens = 4};
    chat_result res;
    assert_int_not_equal(chat_turn(f->cs, &q, NULL, &s, &res, NULL), 0);
    assert_int_equal(r.errors, 1);
    assert_non_null(strstr(r.error, "context"));
    sb_free(&big);
    fx_free(f);
}

/* ------------------------------------------------------------ several requests */

/* One request on the backend directly: its text, how it ended, and an
 * optional gate that holds the worker inside the first delta until the
 * test opens it (so other requests certainly arrive while it runs). */
typedef struct {
    pthread_mutex_t *mu;
    pthread_cond_t *cv;
    sb_t text;
    int deltas;
    bool ended, gated, in_gate, *open;
    int cancel_at; /* fire CANCEL at this delta (0 = never) */
    prov_cancel *cancel;
    prov_errkind kind;
    int retry_after_ms;
    char msg[400];
} req_rec;

static void req_cb(void *ud, const prov_event *ev) {
    req_rec *r = ud;
    pthread_mutex_lock(r->mu);
    if (ev->kind == PROV_EV_DELTA) {
        sb_appendn(&r->text, ev->text, ev->len);
        r->deltas++;
        if (r->cancel_at && r->deltas == r->cancel_at) prov_cancel_fire(r->cancel);
        if (r->gated && r->deltas == 1) {
            r->in_gate = true;
            pthread_cond_broadcast(r->cv);
            while (!*r->open)
                pthread_cond_wait(r->cv, r->mu);
        }
    }
    if (ev->kind == PROV_EV_ERROR || ev->kind == PROV_EV_DONE) {
        r->ended = true;
        r->kind = ev->kind == PROV_EV_ERROR ? ev->err_kind : PROV_ERR_NONE;
        r->retry_after_ms = ev->kind == PROV_EV_ERROR ? ev->retry_after_ms : 0;
        snprintf(r->msg, sizeof r->msg, "%s", ev->message ? ev->message : "");
        pthread_cond_broadcast(r->cv);
    }
    pthread_mutex_unlock(r->mu);
}

static const char *const prompts[] = {"Once upon a time", "Lily had a red ball.",
                                      "The dog ran to the park and", "Tom"};

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool open;
    prov_local *l;
    prov_backend b;
    prov_msg m[4];
    prov_request q[4];
    req_rec r[4];
} multi;

static void multi_init(multi *x, const prov_local_opts *o) {
    cf_err err = {0};
    memset(x, 0, sizeof *x);
    pthread_mutex_init(&x->mu, NULL);
    pthread_cond_init(&x->cv, NULL);
    x->l = prov_local_new(o, &err);
    if (prov_local_add(x->l, "s", td_path("models/stories260K.gguf"), &err))
        fail_msg("%s", err.msg);
    x->b = prov_local_backend(x->l);
    for (int i = 0; i < 4; i++) {
        x->m[i] = (prov_msg){PROV_ROLE_USER, prompts[i]};
        x->q[i] = (prov_request){.msgs = &x->m[i],
                                 .n_msgs = 1,
                                 .stream = true,
                                 .max_tokens = 40,
                                 .has_temperature = true,
                                 .temperature = 0};
        x->r[i] = (req_rec){.mu = &x->mu, .cv = &x->cv, .open = &x->open};
    }
}

static void multi_start(multi *x, int i) {
    cf_err err = {0};
    prov_model_cfg mc = {.name = "s", .backend = "local"};
    if (!x->r[i].cancel) x->r[i].cancel = prov_cancel_new();
    assert_int_equal(x->b.start(x->b.self, &x->q[i], &mc, x->r[i].cancel, req_cb, &x->r[i], &err),
                     0);
}

static void multi_wait(multi *x, int i) {
    pthread_mutex_lock(&x->mu);
    while (!x->r[i].ended)
        pthread_cond_wait(&x->cv, &x->mu);
    pthread_mutex_unlock(&x->mu);
}

static void multi_open(multi *x) {
    pthread_mutex_lock(&x->mu);
    x->open = true;
    pthread_cond_broadcast(&x->cv);
    pthread_mutex_unlock(&x->mu);
}

/* Starts request 0 gated, waits until it is inside its first delta, then
 * starts requests FIRST..N-1 (they queue behind the held worker). */
static void multi_start_overlapping(multi *x, int n) {
    x->r[0].gated = true;
    multi_start(x, 0);
    pthread_mutex_lock(&x->mu);
    while (!x->r[0].in_gate)
        pthread_cond_wait(&x->cv, &x->mu);
    pthread_mutex_unlock(&x->mu);
    for (int i = 1; i < n; i++)
        multi_start(x, i);
}

static void multi_free(multi *x) {
    prov_local_free(x->l);
    for (int i = 0; i < 4; i++) {
        sb_free(&x->r[i].text);
        prov_cancel_free(x->r[i].cancel);
    }
    pthread_mutex_destroy(&x->mu);
    pthread_cond_destroy(&x->cv);
}

/* The greedy text of each prompt served alone, one request at a time. */
static void texts_alone(char *out[4]) {
    multi x;
    prov_local_opts o = {.n_threads = 1, .n_seq = 1};
    multi_init(&x, &o);
    x.open = true;
    for (int i = 0; i < 4; i++) {
        multi_start(&x, i);
        multi_wait(&x, i);
        assert_int_equal(x.r[i].kind, PROV_ERR_NONE);
        out[i] = strdup(x.r[i].text.data ? x.r[i].text.data : "");
        assert_true(strlen(out[i]) > 0);
    }
    multi_free(&x);
}

static void concurrent_requests_give_the_text_they_give_alone(void **st) {
    (void)st;
    char *alone[4];
    texts_alone(alone);
    for (int threads = 1; threads <= 2; threads++) {
        multi x;
        prov_local_opts o = {.n_threads = threads, .n_seq = 4, .n_batch = 8};
        multi_init(&x, &o);
        multi_start_overlapping(&x, 4);
        multi_open(&x);
        for (int i = 0; i < 4; i++) {
            multi_wait(&x, i);
            assert_int_equal(x.r[i].kind, PROV_ERR_NONE);
            assert_string_equal(x.r[i].text.data, alone[i]);
        }
        /* they really shared forward steps */
        assert_true(prov_local_peak_running(x.l, "s") >= 2);
        multi_free(&x);
    }
    for (int i = 0; i < 4; i++)
        free(alone[i]);
}

static void cancelling_one_request_leaves_the_others_intact(void **st) {
    (void)st;
    char *alone[4];
    texts_alone(alone);
    multi x;
    prov_local_opts o = {.n_threads = 1, .n_seq = 4};
    multi_init(&x, &o);
    x.r[2].cancel_at = 2;
    multi_start_overlapping(&x, 4);
    multi_open(&x);
    for (int i = 0; i < 4; i++)
        multi_wait(&x, i);
    assert_int_equal(x.r[2].kind, PROV_ERR_CANCELLED);
    assert_int_equal(x.r[2].deltas, 2); /* cancelled within one step */
    for (int i = 0; i < 4; i++) {
        if (i == 2) continue;
        assert_int_equal(x.r[i].kind, PROV_ERR_NONE);
        assert_string_equal(x.r[i].text.data, alone[i]);
    }
    multi_free(&x);
    for (int i = 0; i < 4; i++)
        free(alone[i]);
}

/* One slot: a second request waits for it, and one that waits too long
 * fails as unavailable (503) with a retry delay. */
static void request_waits_for_a_slot_then_fails_unavailable(void **st) {
    (void)st;
    multi x;
    prov_local_opts o = {.n_threads = 1, .n_seq = 1, .queue_wait_ms = 50};
    multi_init(&x, &o);
    multi_start_overlapping(&x, 2); /* 0 holds the only slot, 1 waits */
    /* request 1's wait runs out while 0 is held; the worker is held too,
     * so it fails at 0's next step: open the gate after 1's deadline */
    struct timespec ts = {0, 120 * 1000000L};
    nanosleep(&ts, NULL);
    multi_open(&x);
    multi_wait(&x, 0);
    multi_wait(&x, 1);
    assert_int_equal(x.r[0].kind, PROV_ERR_NONE);
    assert_int_equal(x.r[1].kind, PROV_ERR_UNAVAILABLE);
    assert_true(x.r[1].retry_after_ms > 0);
    assert_non_null(strstr(x.r[1].msg, "busy"));
    multi_free(&x);
    /* with time to wait, the queued request is served after the first */
    prov_local_opts o2 = {.n_threads = 1, .n_seq = 1};
    multi_init(&x, &o2);
    multi_start_overlapping(&x, 3);
    multi_open(&x);
    for (int i = 0; i < 3; i++) {
        multi_wait(&x, i);
        assert_int_equal(x.r[i].kind, PROV_ERR_NONE);
    }
    assert_int_equal(prov_local_peak_running(x.l, "s"), 1);
    multi_free(&x);
}

/* Two slots, conversations kept LRU: a prompt seen before reuses its KV
 * until two newer ones have pushed it out. */
static void kv_slots_are_evicted_least_recently_used(void **st) {
    (void)st;
    multi x;
    prov_local_opts o = {.n_threads = 1, .n_seq = 2};
    multi_init(&x, &o);
    x.open = true;
    int order[] = {0, 1, 0, 2, 0, 1};
    int reused[6], n[6];
    for (int k = 0; k < 6; k++) {
        int i = order[k];
        x.r[i].ended = false;
        sb_clear(&x.r[i].text);
        multi_start(&x, i);
        multi_wait(&x, i);
        assert_int_equal(x.r[i].kind, PROV_ERR_NONE);
        assert_true(prov_local_last_prompt(x.l, "s", &n[k], &reused[k]));
    }
    assert_int_equal(reused[2], n[2] - 1); /* 0 again: still cached */
    assert_int_equal(reused[4], n[4] - 1); /* 0 after 2 took the other slot */
    assert_true(reused[5] < n[5] - 1);     /* 1 was evicted by 2 */
    multi_free(&x);
}

/* The KV budget decides how many slots a model gets; one too small for a
 * single sequence is refused with a reason. */
static void kv_budget_sets_the_number_of_slots(void **st) {
    (void)st;
    cf_err err = {0};
    /* stories260K: 5 layers, 4 KV heads of 8, 512 positions, F16: 320 KiB a sequence */
    prov_local_opts o = {.n_threads = 1, .kv_budget_mb = 1, .n_ctx = 512};
    prov_local *l = prov_local_new(&o, &err);
    if (prov_local_add(l, "s", td_path("models/stories260K.gguf"), &err)) fail_msg("%s", err.msg);
    assert_int_equal(prov_local_n_seq(l, "s"), 3);
    prov_local_free(l);
    prov_local_opts o2 = {.n_threads = 1, .kv_budget_mb = 1, .n_ctx = 4096};
    l = prov_local_new(&o2, &err);
    assert_int_not_equal(prov_local_add(l, "s", td_path("models/stories260K.gguf"), &err), 0);
    assert_non_null(strstr(err.msg, "kv_budget_mb"));
    prov_local_free(l);
}

/* With a state directory the slots outlive the provider: after a restart
 * the same conversation reuses its KV instead of decoding it again; a
 * state file that does not fit the model is skipped. */
static void kv_slots_are_restored_after_a_restart(void **st) {
    (void)st;
    char *dir = tu_tmpdir();
    multi x;
    prov_local_opts o = {.n_threads = 1, .n_seq = 2, .state_dir = dir};
    multi_init(&x, &o);
    x.open = true;
    multi_start(&x, 1);
    multi_wait(&x, 1);
    assert_int_equal(x.r[1].kind, PROV_ERR_NONE);
    char *first = strdup(x.r[1].text.data);
    int n, reused;
    assert_true(prov_local_last_prompt(x.l, "s", &n, &reused));
    assert_int_equal(reused, 0);
    multi_free(&x); /* saves the slot */
    /* a stray file of another shape in slot 1's place is skipped */
    char bad[4200];
    snprintf(bad, sizeof bad, "%s/s.1.kv", dir);
    FILE *f = fopen(bad, "wb");
    fputs("not a state file", f);
    fclose(f);
    multi_init(&x, &o);
    x.open = true;
    multi_start(&x, 1);
    multi_wait(&x, 1);
    assert_int_equal(x.r[1].kind, PROV_ERR_NONE);
    assert_string_equal(x.r[1].text.data, first); /* same greedy text from restored KV */
    assert_true(prov_local_last_prompt(x.l, "s", &n, &reused));
    assert_int_equal(reused, n - 1);
    multi_free(&x);
    free(first);
    tu_rmtree(dir);
    free(dir);
}

/* Two conversations with one system prompt: the second starts while the
 * first holds its slot, copies the shared prefix from it instead of
 * decoding it, and still gives the text it gives alone. */
static void shared_system_prompt_is_copied_between_slots(void **st) {
    (void)st;
    static const char *sys = "You are a storyteller. Tell short happy stories about animals "
                             "and children, with simple words.";
    char *alone = NULL;
    int n_alone = 0;
    for (int round = 0; round < 2; round++) {
        multi x;
        prov_local_opts o = {.n_threads = 1, .n_seq = round ? 2 : 1};
        multi_init(&x, &o);
        prov_msg m0[2] = {{PROV_ROLE_SYSTEM, sys}, {PROV_ROLE_USER, prompts[0]}};
        prov_msg m1[2] = {{PROV_ROLE_SYSTEM, sys}, {PROV_ROLE_USER, prompts[2]}};
        x.q[0].msgs = m0, x.q[0].n_msgs = 2;
        x.q[1].msgs = m1, x.q[1].n_msgs = 2;
        int n, reused;
        if (!round) {
            x.open = true;
            multi_start(&x, 1);
            multi_wait(&x, 1);
            alone = strdup(x.r[1].text.data);
            assert_true(prov_local_last_prompt(x.l, "s", &n_alone, &reused));
        } else {
            multi_start_overlapping(&x, 1); /* 0 is running, held in its first delta */
            multi_start(&x, 1);
            /* 1 is admitted at the next step, while 0 still holds slot 0 */
            multi_open(&x);
            multi_wait(&x, 0);
            multi_wait(&x, 1);
            assert_int_equal(x.r[1].kind, PROV_ERR_NONE);
            assert_string_equal(x.r[1].text.data, alone);
            assert_true(prov_local_last_prompt(x.l, "s", &n, &reused));
            assert_int_equal(n, n_alone);
            assert_true(reused > 20); /* the system prompt, and more */
        }
        multi_free(&x);
    }
    free(alone);
}

int main(void) {
    cf_err err = {0};
    if (prov_global_init(&err)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(greedy_reply_streams_with_exact_usage),
        cmocka_unit_test(next_turn_reuses_the_cached_prefix),
        cmocka_unit_test(cancel_stops_within_a_step),
        cmocka_unit_test(backend_cancel_takes_effect_at_the_next_step),
        cmocka_unit_test(stop_string_ends_the_reply),
        cmocka_unit_test(missing_model_file_is_unavailable_with_reason),
        cmocka_unit_test(prompt_longer_than_context_is_refused),
        cmocka_unit_test(concurrent_requests_give_the_text_they_give_alone),
        cmocka_unit_test(cancelling_one_request_leaves_the_others_intact),
        cmocka_unit_test(request_waits_for_a_slot_then_fails_unavailable),
        cmocka_unit_test(kv_slots_are_evicted_least_recently_used),
        cmocka_unit_test(kv_budget_sets_the_number_of_slots),
        cmocka_unit_test(kv_slots_are_restored_after_a_restart),
        cmocka_unit_test(shared_system_prompt_is_copied_between_slots),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    prov_global_cleanup();
    return rc;
}
