/*
 * bench_api — the chat service behind HTTP, measured end to end on
 * 127.0.0.1 (figures in bench/README.md):
 *   1. cached-reply latency: POST /v1/chat/completions answered from the
 *      response cache (temperature 0, asked once before), p50 / p99;
 *   2. API overhead over the engine: the same greedy 16-token reply from
 *      stories260K through chat_turn directly and through HTTP (no cache);
 *      the difference of the medians is what the API adds per request;
 *   3. 64 concurrent streaming clients against a fake upstream: errors and
 *      wall time.
 * Usage: build/bench/bench_api [PATH/TO/stories260K.gguf]
 */
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/chat.h"
#include "app/routing.h"
#include "base/clock.h"
#include "base/sb.h"
#include "../tests/fake_upstream.h"
#include "providers/provider.h"
#include "server/api.h"
#include "server/server.h"

static int g_port;

static size_t sink(char *p, size_t sz, size_t n, void *u) {
    sb_appendn(u, p, sz * n);
    return sz * n;
}

static long post(const char *path, const char *body, sb_t *out) {
    CURL *c = curl_easy_init();
    char url[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", g_port, path);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    long status = 0;
    if (curl_easy_perform(c) == CURLE_OK) curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p) {
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return v[(int)(p * (n - 1))];
}

typedef struct {
    int ok, errors;
} client_res;

static void *stream_client(void *p) {
    client_res *r = p;
    sb_t out = {0};
    long st = post("/v1/chat/completions",
                   "{\"model\":\"fake\",\"stream\":true,\"cache\":false,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                   &out);
    if (st == 200 && strstr(sb_str(&out), "[DONE]")) r->ok++;
    else r->errors++;
    sb_free(&out);
    return NULL;
}

int main(int argc, char **argv) {
    const char *model = argc > 1 ? argv[1] : "../shared/testdata/models/stories260K.gguf";
    cf_err err = {0};
    if (prov_global_init(&err)) return 1;
    fu_response ok = {.content_type = "text/event-stream", .body = FU_OPENAI_STREAM, .event_gap_ms = 20};
    fu_server *up = fu_start(&ok, 1);
    char url[128], yaml[4096];
    fu_url(up, "/v1", url);
    snprintf(yaml, sizeof yaml,
             "models:\n  fake:\n    backend: openai\n    model: x\n    base_url: %s\n    api_key: k\n"
             "  stories:\n    backend: local\n    model: \"%s\"\nengine: {threads: 1}\nserver: {threads: 128}\n",
             url, model);
    cfg_t *cfg = cfg_load_string(yaml, strlen(yaml), "bench.yaml", &err);
    char dir[] = "/tmp/confab-bench-api-XXXXXX";
    if (!cfg || !mkdtemp(dir)) {
        fprintf(stderr, "setup: %s\n", err.msg);
        return 1;
    }
    app_routing *routing = app_routing_new(cfg, NULL, &err);
    char db[256], cache[256];
    snprintf(db, sizeof db, "%s/c.db", dir);
    snprintf(cache, sizeof cache, "%s/cache.db", dir);
    chat_service_opts co = {.cfg = cfg, .router = app_routing_router(routing), .db_path = db, .cache_path = cache};
    chat_service *cs = chat_service_new(&co, &err);
    srv_options so = {.host = "127.0.0.1", .port = 0, .threads = 128};
    srv_t *s = srv_new(&so, &err);
    srv_api *api = s ? srv_api_new(s, cs, &err) : NULL;
    if (!cs || !api || srv_start(s, &err)) {
        fprintf(stderr, "setup: %s\n", err.msg);
        return 1;
    }
    g_port = srv_port(s);

    /* 1. Cached replies. */
    const char *cached = "{\"model\":\"fake\",\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":\"cache me\"}]}";
    sb_t out = {0};
    post("/v1/chat/completions", cached, &out);
    enum { N = 300 };
    double lat[N];
    for (int i = 0; i < N; i++) {
        sb_clear(&out);
        double t0 = clock_mono_ms();
        long st = post("/v1/chat/completions", cached, &out);
        lat[i] = clock_mono_ms() - t0;
        if (st != 200) fprintf(stderr, "cached request %d: HTTP %ld\n", i, st);
    }
    printf("cached reply over HTTP (non-streamed, %d requests): p50 %.3f ms, p99 %.3f ms\n", N, pct(lat, N, 0.5),
           pct(lat, N, 0.99));

    /* 2. API overhead over the engine. */
    enum { M = 40 };
    double direct[M], via[M];
    for (int i = 0; i < M; i++) {
        chat_request q = {.content = "Once upon a time", .model = "stories", .has_temperature = true,
                          .temperature = 0, .max_tokens = 16, .no_cache = true};
        double t0 = clock_mono_ms();
        chat_turn(cs, &q, NULL, NULL, NULL, NULL);
        direct[i] = clock_mono_ms() - t0;
        sb_clear(&out);
        t0 = clock_mono_ms();
        post("/v1/chat/completions",
             "{\"model\":\"stories\",\"temperature\":0,\"max_tokens\":16,\"cache\":false,"
             "\"messages\":[{\"role\":\"user\",\"content\":\"Once upon a time\"}]}",
             &out);
        via[i] = clock_mono_ms() - t0;
    }
    double d50 = pct(direct, M, 0.5), v50 = pct(via, M, 0.5);
    printf("stories260K 16 tokens: chat_turn p50 %.3f ms, via HTTP p50 %.3f ms: API overhead %.3f ms per request\n",
           d50, v50, v50 - d50);

    /* 3. 64 concurrent streaming clients. */
    enum { C = 64 };
    pthread_t th[C];
    client_res res[C];
    memset(res, 0, sizeof res);
    double t0 = clock_mono_ms();
    for (int i = 0; i < C; i++) pthread_create(&th[i], NULL, stream_client, &res[i]);
    int okc = 0, errc = 0;
    for (int i = 0; i < C; i++) {
        pthread_join(th[i], NULL);
        okc += res[i].ok;
        errc += res[i].errors;
    }
    printf("%d concurrent streaming clients (upstream 20 ms between events): %d complete, %d errors, %.0f ms wall\n", C,
           okc, errc, clock_mono_ms() - t0);

    sb_free(&out);
    srv_shutdown(s, 2000);
    srv_api_free(api);
    chat_service_free(cs);
    app_routing_free(routing);
    srv_free(s);
    cfg_free(cfg);
    fu_stop(up);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {
    }
    prov_global_cleanup();
    return errc ? 1 : 0;
}
