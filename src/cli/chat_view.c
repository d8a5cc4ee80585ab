/*
 * chat_view — a chat turn on a worker thread with its reply streamed to a
 * terminal or a pipe; see chat_view.h.
 *
 * All printing happens on the worker (inside the sink's emit), so the text
 * and the status line never interleave; the calling thread only waits for
 * SIGINT or the end of the turn. The status line lives on the terminal's
 * last row, outside a scroll region (DECSTBM) that holds the reply text, so
 * redrawing it never disturbs the text; the region is reset when the reply
 * ends, whatever way it ends.
 */
#include "cli/chat_view.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"

#define DIM "\x1b[2m"
#define RED "\x1b[31m"
#define YELLOW "\x1b[33m"
#define RESET "\x1b[0m"

void chat_view_block_sigint(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

/* ------------------------------------------------------------ the view */

typedef struct {
    const chat_view_opts *o;
    chunk_mode mode;
    prov_cancel *cancel;
    const char *model; /* requested model for the status line (may be NULL) */
    double t0, t_first, last_draw;
    int64_t n_deltas;
    size_t bytes;
    bool region; /* the scroll region is set */
    bool at_bol; /* the last character printed ended a line */
    bool any_text;
    bool write_failed;
    char error[384];
} view;

static bool view_live(const view *v) { return v->o->tty && v->o->rows >= 3; }

/* Tokens so far: deltas are tokens at token granularity, otherwise an
 * estimate from the bytes (about 4 per token). */
static int64_t view_tokens(const view *v, bool *approx) {
    *approx = v->mode != CHUNK_TOKEN;
    return *approx ? (int64_t)(v->bytes + 3) / 4 : v->n_deltas;
}

static void view_draw_status(view *v) {
    double now = clock_mono_ms();
    bool approx;
    int64_t n = view_tokens(v, &approx);
    double gen_s = v->t_first > 0 ? (now - v->t_first) / 1000.0 : 0;
    char rate[32] = "", cost[48] = "";
    if (gen_s > 0.05) snprintf(rate, sizeof rate, " · %.1f tok/s", (double)n / gen_s);
    if (v->o->price.set && v->o->price.output > 0)
        snprintf(cost, sizeof cost, " · output $%.5f", (double)n * v->o->price.output / 1e6);
    /* Save the cursor, draw on the last row, restore. */
    fprintf(v->o->out,
            "\x1b"
            "7\x1b[%d;1H\x1b[2K" DIM "%s%s%s%" PRId64 " tok%s%s · %.1f s · Ctrl-C stops" RESET
            "\x1b"
            "8",
            v->o->rows, v->model ? v->model : "", v->model ? " · " : "", approx ? "~" : "", n, rate,
            cost, (now - v->t0) / 1000.0);
    v->last_draw = now;
}

static void view_region_begin(view *v) {
    FILE *f = v->o->out;
    /* Make sure a row is free below the cursor, then keep the last row out
     * of the scrolling text. DECSTBM homes the cursor: save and restore. */
    fprintf(f,
            "\n\x1b[A\x1b"
            "7\x1b[1;%dr\x1b"
            "8",
            v->o->rows - 1);
    v->region = true;
    view_draw_status(v);
}

static void view_region_end(view *v) {
    if (!v->region) return;
    fprintf(v->o->out,
            "\x1b"
            "7\x1b[%d;1H\x1b[2K\x1b[r\x1b"
            "8",
            v->o->rows);
    v->region = false;
}

static void view_text(view *v, const char *s, size_t n) {
    if (!n) return;
    if (fwrite(s, 1, n, v->o->out) != n) v->write_failed = true;
    v->at_bol = s[n - 1] == '\n';
    v->any_text = true;
}

static void view_emit(void *ud, const chat_event *ev) {
    view *v = ud;
    FILE *f = v->o->out;
    switch (ev->type) {
    case CHAT_EV_DELTA:
        if (!v->n_deltas) v->t_first = v->last_draw = clock_mono_ms();
        v->n_deltas++;
        v->bytes += ev->len;
        view_text(v, ev->text, ev->len);
        if (v->region && clock_mono_ms() - v->last_draw >= 100) view_draw_status(v);
        if (fflush(f) != 0) v->write_failed = true;
        /* A closed pipe (`confab run ... | head`): stop generating. */
        if (v->write_failed) prov_cancel_fire(v->cancel);
        break;
    case CHAT_EV_INFO:
        if (v->o->tty) {
            if (!v->at_bol) fputc('\n', f);
            fprintf(f, YELLOW "[%s] %s" RESET "\n", ev->kind ? ev->kind : "info",
                    ev->message ? ev->message : "");
            v->at_bol = true;
            fflush(f);
        } else {
            fprintf(stderr, "confab: %s: %s\n", ev->kind ? ev->kind : "info",
                    ev->message ? ev->message : "");
        }
        break;
    case CHAT_EV_ERROR:
        snprintf(v->error, sizeof v->error, "%s", ev->message ? ev->message : "error");
        break;
    case CHAT_EV_USAGE:
    case CHAT_EV_DONE: break;
    }
}

/* ------------------------------------------------------------ the worker */

typedef struct {
    chat_service *cs;
    const chat_request *req;
    prov_cancel *cancel;
    chat_sink sink;
    chat_result *res;
    cf_err err;
    int rc;
    atomic_bool done;
} worker;

static void *worker_main(void *p) {
    worker *w = p;
    w->rc = chat_turn(w->cs, w->req, w->cancel, &w->sink, w->res, &w->err);
    atomic_store(&w->done, true);
    return NULL;
}

/* Takes pending SIGINTs without acting on them (one sent while no reply
 * ran must not cancel the next reply). */
static void drain_sigint(const sigset_t *set) {
    struct timespec zero = {0, 0};
    while (sigtimedwait(set, NULL, &zero) == SIGINT) {}
}

/* The summary line after a reply on a terminal. */
static void view_summary(view *v, const chat_result *res, bool cancelled) {
    FILE *f = v->o->out;
    double secs =
        res->latency_ms > 0 ? (double)res->latency_ms / 1000.0 : (clock_mono_ms() - v->t0) / 1000.0;
    double gen_s = v->t_first > 0 ? (clock_mono_ms() - v->t_first) / 1000.0 : 0;
    int64_t n = res->usage.completion_tokens;
    fprintf(f, DIM "[%s", res->model[0] ? res->model : "?");
    if (n > 0 || !cancelled) fprintf(f, " · %" PRId64 " tokens", n);
    if (gen_s > 0.001 && n > 0) fprintf(f, " · %.1f tok/s", (double)n / gen_s);
    fprintf(f, " · %.2f s", secs);
    if (res->cost > 0)
        fprintf(f, " · $%.6f", res->cost);
    else if (res->cost == 0)
        fprintf(f, " · $0");
    if (res->cached) fprintf(f, " · cached");
    if (cancelled) fprintf(f, " · cancelled");
    fprintf(f, "]" RESET "\n");
}

int chat_view_turn(chat_service *cs, const chat_request *req, const chat_view_opts *o,
                   chat_result *res, bool *cancelled) {
    view v = {.o = o,
              .mode = req->granularity,
              .at_bol = true,
              .model = o->label ? o->label : req->model};
    v.t0 = clock_mono_ms();
    *cancelled = false;
    memset(res, 0, sizeof *res);
    worker w = {.cs = cs, .req = req, .res = res, .sink = {.emit = view_emit, .ud = &v}};
    w.cancel = v.cancel = prov_cancel_new();
    if (!w.cancel) return CF_ENOMEM;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    drain_sigint(&set);
    if (view_live(&v)) {
        view_region_begin(&v);
        fflush(o->out);
    }
    pthread_t th;
    if (pthread_create(&th, NULL, worker_main, &w) != 0) {
        view_region_end(&v);
        prov_cancel_free(w.cancel);
        fprintf(stderr, "confab: cannot start a thread: %s\n", strerror(errno));
        return CF_EIO;
    }
    while (!atomic_load(&w.done)) {
        struct timespec tick = {0, 20 * 1000 * 1000};
        if (sigtimedwait(&set, NULL, &tick) == SIGINT && !*cancelled) {
            *cancelled = true;
            prov_cancel_fire(w.cancel);
        }
    }
    pthread_join(th, NULL);
    prov_cancel_free(w.cancel);
    /* A cancelled turn is not a failure: the partial reply is stored. */
    if (w.rc == CF_ECANCEL && !v.write_failed) *cancelled = true;

    FILE *f = o->out;
    view_region_end(&v);
    if (v.any_text && !v.at_bol) fputc('\n', f);
    const char *msg = v.error[0] ? v.error : res->error[0] ? res->error : w.err.msg;
    if (w.rc != 0 && !*cancelled) {
        if (o->tty)
            fprintf(f, RED "error: %s" RESET "\n", msg[0] ? msg : "the turn failed");
        else
            fprintf(stderr, "confab: %s\n", msg[0] ? msg : "the turn failed");
    } else if (o->tty && !o->quiet) {
        view_summary(&v, res, *cancelled);
    } else if (o->tty && *cancelled) {
        fprintf(f, DIM "[cancelled]" RESET "\n");
    }
    fflush(f);
    return w.rc;
}
