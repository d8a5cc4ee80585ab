/*
 * bench_store — the conversation store at size: 1,000 sessions of 100
 * messages (100,000 messages, ~5 MB of text), then
 *   - search: p50/p95 over 300 queries (common, medium and rare words, and
 *     two-word queries), first page of 20 hits with snippets; and common
 *     words ranked over every match (no candidate cap) and in one session;
 *   - listing: the newest 50 sessions, and a page deep in the list;
 *   - appending one message (its own transaction, WAL, synchronous=NORMAL);
 *   - a streamed reply of 500 tokens through store_stream, and one of 4,000
 *     tokens at 50 tokens/s on a simulated clock, timing each flush.
 * Text is synthetic: words drawn from a Zipf-distributed vocabulary of 5,000
 * made-up words, so common words match tens of thousands of messages and
 * rare ones a handful. Usage: bench_store [DIR] (default: a temp dir).
 */
#include "base/clock.h"
#include "base/sb.h"
#include "store/store.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N_SESSIONS 1000
#define PER_SESSION 100
#define VOCAB 5000

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static char words[VOCAB][16];
static double cdf[VOCAB];

static void make_vocab(void) {
    static const char *syl[] = {"ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo",
                                "zu", "pe", "da", "gi", "ho", "ba", "fe", "xi"};
    for (int i = 0; i < VOCAB; i++) {
        int n = 2 + (int)(next() % 3);
        words[i][0] = 0;
        for (int k = 0; k < n; k++)
            strcat(words[i], syl[next() % 16]);
        char suf[8];
        snprintf(suf, sizeof suf, "%c", 'a' + i % 26);
        strcat(words[i], suf);
    }
    double sum = 0;
    for (int i = 0; i < VOCAB; i++)
        sum += 1.0 / (i + 1);
    double acc = 0;
    for (int i = 0; i < VOCAB; i++) {
        acc += 1.0 / (i + 1) / sum;
        cdf[i] = acc;
    }
}

static int zipf_word(void) {
    double u = (double)(next() % 1000000000) / 1e9;
    int lo = 0, hi = VOCAB - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void sentence(sb_t *s, int nwords) {
    sb_clear(s);
    for (int i = 0; i < nwords; i++) {
        if (i) sb_putc(s, ' ');
        sb_append(s, words[zipf_word()]);
    }
}

static int64_t fake_now(void *ctx) { return *(int64_t *)ctx; }

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    printf("%-40s p50 %8.3f ms   p95 %8.3f ms   max %8.3f ms   (n=%d)\n", what, v[n / 2],
           v[n * 95 / 100], v[n - 1], n);
}

static void die(const char *what, const cf_err *err) {
    fprintf(stderr, "bench_store: %s: %s\n", what, err->msg);
    exit(1);
}

int main(int argc, char **argv) {
    char tmpl[] = "/tmp/confab-bench-XXXXXX";
    const char *dir = argc > 1 ? argv[1] : mkdtemp(tmpl);
    if (!dir) return 1;
    char path[4096];
    snprintf(path, sizeof path, "%s/bench.db", dir);
    unlink(path);
    make_vocab();
    cf_err err = {0};
    store *st = store_open(path, STORE_OPEN_CREATE, &err);
    if (!st) die("open", &err);

    /* ---- build */
    double t0 = clock_mono_ms();
    sb_t text = {0};
    int64_t base = 1700000000000;
    for (int s = 0; s < N_SESSIONS; s++) {
        if (store_begin(st, &err)) die("begin", &err);
        store_session in = {0};
        sentence(&text, 4);
        in.title = text.data;
        in.created_at = base + (int64_t)s * 60000;
        int64_t sid;
        if (store_session_create(st, &in, &sid, &err)) die("session", &err);
        int64_t parent = 0;
        for (int m = 0; m < PER_SESSION; m++) {
            store_message msg = {0};
            sentence(&text, 10 + (int)(next() % 60));
            msg.session_id = sid;
            msg.parent_id = parent;
            msg.role = m % 2 ? "assistant" : "user";
            msg.content = text.data;
            msg.status = STORE_COMPLETE;
            msg.created_at = in.created_at + m * 1000;
            if (store_msg_append(st, &msg, &parent, &err)) die("append", &err);
        }
        if (store_commit(st, &err)) die("commit", &err);
    }
    double build_ms = clock_mono_ms() - t0;
    printf("built %d sessions x %d messages in %.1f s\n", N_SESSIONS, PER_SESSION, build_ms / 1000);

    /* ---- search */
    enum { NQ = 300 };
    double lat[NQ], cls[4][NQ];
    int ncls[4] = {0};
    size_t total_hits = 0;
    for (int q = 0; q < NQ; q++) {
        char query[64];
        int kind = q % 4;
        if (kind == 0)
            snprintf(query, sizeof query, "%s", words[next() % 10]); /* common */
        else if (kind == 1)
            snprintf(query, sizeof query, "%s", words[100 + next() % 400]); /* medium */
        else if (kind == 2)
            snprintf(query, sizeof query, "%s", words[2000 + next() % 3000]); /* rare */
        else
            snprintf(query, sizeof query, "%s %s", words[next() % 50], words[50 + next() % 500]);
        store_search_opts o = {.query = query, .limit = 20};
        store_hit *h;
        size_t n;
        double a = clock_mono_ms();
        if (store_search(st, &o, &h, &n, &err)) die("search", &err);
        double d = clock_mono_ms() - a;
        total_hits += n;
        store_hits_free(h, n);
        lat[q] = d;
        cls[kind][ncls[kind]++] = d;
    }
    report("search (all queries)", lat, NQ);
    report("search: one common word (top 10)", cls[0], ncls[0]);
    report("search: one medium word (rank 100-500)", cls[1], ncls[1]);
    report("search: one rare word (rank 2000+)", cls[2], ncls[2]);
    report("search: two words", cls[3], ncls[3]);
    /* The same common words ranked over every match, and within a session. */
    enum { NF = 30 };
    double full[NF], sess[NF];
    for (int q = 0; q < NF; q++) {
        store_search_opts o = {.query = words[q % 10], .limit = 20, .max_candidates = -1};
        store_hit *h;
        size_t n;
        double a = clock_mono_ms();
        if (store_search(st, &o, &h, &n, &err)) die("search", &err);
        full[q] = clock_mono_ms() - a;
        store_hits_free(h, n);
        store_search_opts os = {
            .query = words[q % 10], .limit = 20, .session_id = 1 + (int64_t)(next() % N_SESSIONS)};
        a = clock_mono_ms();
        if (store_search(st, &os, &h, &n, &err)) die("search", &err);
        sess[q] = clock_mono_ms() - a;
        store_hits_free(h, n);
    }
    report("search: common word, every match ranked", full, NF);
    report("search: common word, one session", sess, NF);

    /* ---- listing */
    enum { NL = 300 };
    double ll[NL], ld[NL];
    for (int i = 0; i < NL; i++) {
        store_session *a;
        size_t n;
        store_list_opts o = {.limit = 50};
        double x = clock_mono_ms();
        if (store_session_list(st, &o, &a, &n, &err)) die("list", &err);
        ll[i] = clock_mono_ms() - x;
        store_sessions_free(a, n);
        o.offset = 900;
        x = clock_mono_ms();
        if (store_session_list(st, &o, &a, &n, &err)) die("list", &err);
        ld[i] = clock_mono_ms() - x;
        store_sessions_free(a, n);
    }
    report("list sessions: newest 50", ll, NL);
    report("list sessions: 50 at offset 900", ld, NL);

    /* ---- append */
    enum { NA = 1000 };
    double la[NA];
    for (int i = 0; i < NA; i++) {
        store_message msg = {0};
        sentence(&text, 30);
        msg.session_id = 1 + (int64_t)(next() % N_SESSIONS);
        msg.role = "user";
        msg.content = text.data;
        msg.status = STORE_COMPLETE;
        double x = clock_mono_ms();
        if (store_msg_append(st, &msg, NULL, &err)) die("append", &err);
        la[i] = clock_mono_ms() - x;
    }
    report("append one message (own transaction)", la, NA);

    /* ---- streaming: 500 tokens as fast as they come */
    store_stream_opts so = {.session_id = 1};
    store_stream *w = store_stream_begin(st, &so, &err);
    if (!w) die("stream", &err);
    double x = clock_mono_ms();
    for (int i = 0; i < 500; i++) {
        const char *wd = words[zipf_word()];
        if (store_stream_append(w, wd, strlen(wd), &err) || store_stream_append(w, " ", 1, &err))
            die("stream", &err);
    }
    int fl = store_stream_flushes(w);
    if (store_stream_finish(w, NULL, &err)) die("finish", &err);
    double sd = clock_mono_ms() - x;
    printf("%-40s %.3f ms for 1000 appends (%.2f us each), %d flushes before finish\n",
           "stream a reply (no pacing)", sd, sd * 1000 / 1000, fl);

    /* ---- streaming at 50 tokens/s on a simulated clock: 4,000 tokens
     * (80 s of reply, ~30 KB) flush every 5th token; time each flush. */
    int64_t fake = 0;
    store_stream_opts po = {.session_id = 2, .now_ms = fake_now, .now_ctx = &fake};
    w = store_stream_begin(st, &po, &err);
    if (!w) die("stream", &err);
    enum { NT = 4000 };
    static double fl_ms[NT];
    int nfl = 0;
    for (int i = 0; i < NT; i++) {
        const char *wd = words[zipf_word()];
        fake += 20;
        int before = store_stream_flushes(w);
        double a = clock_mono_ms();
        if (store_stream_append(w, wd, strlen(wd), &err) || store_stream_append(w, " ", 1, &err))
            die("stream", &err);
        double d = clock_mono_ms() - a;
        if (store_stream_flushes(w) > before) fl_ms[nfl++] = d;
    }
    if (store_stream_finish(w, NULL, &err)) die("finish", &err);
    report("stream flush (reply growing to ~30 KB)", fl_ms, nfl);
    printf("%-40s %d flushes for %d tokens\n", "", nfl, NT);

    printf("(search returned %zu hits in all)\n", total_hits);
    sb_free(&text);
    store_close(st);
    if (argc <= 1) {
        char side[4200];
        unlink(path);
        snprintf(side, sizeof side, "%s-lock", path);
        unlink(side);
        snprintf(side, sizeof side, "%s-wal", path);
        unlink(side);
        snprintf(side, sizeof side, "%s-shm", path);
        unlink(side);
        rmdir(dir);
    }
    return 0;
}
