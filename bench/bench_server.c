/*
 * bench_server — figures for the HTTP server, on 127.0.0.1, in process.
 *
 *   1. request overhead: GET /healthz and POST of a small JSON body to an
 *      echo route, over one keep-alive connection (p50 / p99 / mean);
 *   2. streaming fan-out: C concurrent SSE clients, each following its own
 *      generation of D deltas produced as fast as possible; reports errors,
 *      events delivered, wall time and events per second;
 *   3. the event log alone: appends per second with S subscribers.
 *
 * usage: bench_server [clients=64] [deltas=200] [requests=2000]
 * Prints figures only; nothing here is a pass/fail check.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/sb.h"
#include "server/server.h"

static int port;

static size_t sink(char *p, size_t sz, size_t n, void *u) {
    sb_t *b = u;
    if (b) sb_appendn(b, p, sz * n);
    return sz * n;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int h_echo(srv_req *r, void *ctx) {
    (void)ctx;
    json_t *j = srv_req_json(r);
    if (!j) return 0;
    srv_reply_json(r, 200, j);
    json_decref(j);
    return 0;
}

static void latency(const char *what, const char *path, const char *body, int n) {
    CURL *c = curl_easy_init();
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, NULL);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    if (body) curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    double *t = malloc((size_t)n * sizeof *t);
    int errors = 0;
    for (int i = 0; i < n + 50; i++) {
        double t0 = clock_mono_ms();
        long st = 0;
        if (curl_easy_perform(c) != CURLE_OK) errors++;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
        if (st != 200) errors++;
        if (i >= 50) t[i - 50] = clock_mono_ms() - t0; /* after warm-up */
    }
    qsort(t, (size_t)n, sizeof *t, cmp_d);
    double sum = 0;
    for (int i = 0; i < n; i++)
        sum += t[i];
    printf("%-28s n=%d  p50 %.3f ms  p99 %.3f ms  mean %.3f ms  errors %d\n", what, n, t[n / 2],
           t[(int)(n * 0.99)], sum / n, errors);
    free(t);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

typedef struct {
    srv_t *s;
    gen *g;
    int deltas;
    sb_t body;
    long status;
    int events;
} fan;

static void *producer(void *p) {
    fan *f = p;
    for (int i = 0; i < f->deltas; i++)
        gen_delta(f->g, "token ", 6);
    gen_done(f->g, "stop", "bench", "local", false);
    return NULL;
}

static void *client(void *p) {
    fan *f = p;
    CURL *c = curl_easy_init();
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/api/generations/%s/events", port, gen_id(f->g));
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &f->body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &f->status);
    curl_easy_cleanup(c);
    for (const char *q = f->body.data; q && (q = strstr(q, "\nid: ")); q++)
        f->events++;
    if (f->body.data && !strncmp(f->body.data, "id: ", 4)) f->events++;
    return NULL;
}

static void fanout(srv_t *s, int nc, int deltas) {
    fan *f = calloc((size_t)nc, sizeof *f);
    pthread_t *ct = calloc((size_t)nc, sizeof *ct), *pt = calloc((size_t)nc, sizeof *pt);
    for (int i = 0; i < nc; i++) {
        f[i].s = s;
        f[i].deltas = deltas;
        f[i].g = gen_start(srv_gens(s), "local", NULL, NULL);
    }
    double t0 = clock_mono_ms();
    for (int i = 0; i < nc; i++)
        pthread_create(&ct[i], NULL, client, &f[i]);
    for (int i = 0; i < nc; i++)
        pthread_create(&pt[i], NULL, producer, &f[i]);
    int errors = 0;
    long events = 0;
    for (int i = 0; i < nc; i++) {
        pthread_join(pt[i], NULL);
        pthread_join(ct[i], NULL);
        if (f[i].status != 200 || f[i].events != deltas + 1) errors++;
        events += f[i].events;
        sb_free(&f[i].body);
        gen_unref(f[i].g);
    }
    double ms = clock_mono_ms() - t0;
    printf("%-28s clients=%d deltas=%d  errors %d  events %ld  %.0f ms  %.0f events/s\n",
           "SSE fan-out", nc, deltas, errors, events, ms, events / (ms / 1000));
    free(f);
    free(ct);
    free(pt);
}

typedef struct {
    gen *g;
    long seen;
} sub;

static void *subscriber(void *p) {
    sub *s = p;
    uint64_t after = 0;
    for (;;) {
        const gen_event *evs[64];
        size_t n;
        int rc = gen_wait(s->g, after, 1000, evs, 64, &n);
        if (rc == CF_ECLOSED) break;
        if (rc) continue;
        after = evs[n - 1]->seq;
        s->seen += (long)n;
    }
    return NULL;
}

static void event_log(int nsub, int n) {
    gen_registry *r = gen_registry_new(0);
    gen *g = gen_start(r, NULL, NULL, NULL);
    sub *ss = calloc((size_t)nsub, sizeof *ss);
    pthread_t *t = calloc((size_t)nsub, sizeof *t);
    for (int i = 0; i < nsub; i++) {
        ss[i].g = g;
        pthread_create(&t[i], NULL, subscriber, &ss[i]);
    }
    double t0 = clock_mono_ms();
    for (int i = 0; i < n; i++)
        gen_delta(g, "tok", 3);
    gen_done(g, "stop", NULL, NULL, false);
    double ms = clock_mono_ms() - t0;
    for (int i = 0; i < nsub; i++)
        pthread_join(t[i], NULL);
    printf("%-28s subscribers=%d  %d appends in %.1f ms  %.2f us/append  each saw %ld\n",
           "event log", nsub, n, ms, ms * 1000 / n, nsub ? ss[0].seen : 0L);
    free(ss);
    free(t);
    gen_unref(g);
    gen_registry_free(r);
}

int main(int argc, char **argv) {
    int clients = argc > 1 ? atoi(argv[1]) : 64;
    int deltas = argc > 2 ? atoi(argv[2]) : 200;
    int requests = argc > 3 ? atoi(argv[3]) : 2000;
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    srv_options o = {.threads = clients + 32};
    cf_err err = {0};
    srv_t *s = srv_new(&o, &err);
    if (!s || srv_route_add(s, "POST", "/echo", h_echo, NULL) || srv_start(s, &err)) {
        fprintf(stderr, "bench_server: %s\n", err.msg);
        return 1;
    }
    port = srv_port(s);
    latency("GET /healthz", "/healthz", NULL, requests);
    latency("POST /echo (small JSON)", "/echo",
            "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}", requests);
    fanout(s, clients, deltas);
    event_log(0, 200000);
    event_log(4, 200000);
    srv_free(s);
    curl_global_cleanup();
    return 0;
}
