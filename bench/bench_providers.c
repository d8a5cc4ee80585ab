/*
 * bench_providers — figures for the providers layer:
 *   1. SSE parsing throughput on an OpenAI-style chunk stream fed in
 *      1460-byte pieces (one TCP segment), events per second and MB/s;
 *   2. routed request latency on loopback against the in-process fake
 *      upstream (tests/fake_upstream.h): time to first delta and to done,
 *      median and p99 over sequential streamed requests, which is the
 *      overhead confab adds on top of a provider (I/O thread hand-off,
 *      HTTP, SSE, JSON, router mailbox).
 * Run: make bench && build/bench/bench_providers
 */
#include "../tests/fake_upstream.h"
#include "base/clock.h"
#include "base/log.h"
#include "base/sb.h"
#include "providers/router.h"
#include "providers/sse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int count_ev(void *ud, const sse_event *ev) {
    (*(size_t *)ud) += ev->data_len > 0;
    return 0;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    double t0, first, done;
} lat;

static void lat_cb(void *ud, const prov_event *ev) {
    lat *l = ud;
    if (ev->kind == PROV_EV_DELTA && !l->first) l->first = clock_mono_ms() - l->t0;
    if (ev->kind == PROV_EV_DONE) l->done = clock_mono_ms() - l->t0;
}

int main(void) {
    /* 1. SSE */
    sb_t stream = {0};
    const char *chunk =
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,"
        "\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" token\"},"
        "\"finish_reason\":null}]}\n\n";
    while (stream.len < (size_t)16 << 20)
        sb_append(&stream, chunk);
    sse_parser p;
    size_t events = 0;
    double t0 = clock_mono_ms();
    for (int rep = 0; rep < 4; rep++) {
        sse_init(&p, 0);
        for (size_t i = 0; i < stream.len; i += 1460) {
            size_t n = stream.len - i < 1460 ? stream.len - i : 1460;
            sse_feed(&p, stream.data + i, n, count_ev, &events);
        }
        sse_free(&p);
    }
    double ms = clock_mono_ms() - t0;
    printf("sse: %zu events, %.1f MB in %.1f ms: %.0f MB/s, %.2f M events/s\n", events,
           4.0 * (double)stream.len / 1e6, ms, 4.0 * (double)stream.len / 1e6 / (ms / 1e3),
           (double)events / 1e6 / (ms / 1e3));
    sb_free(&stream);

    /* 2. routed latency on loopback */
    cf_err err = {0};
    prov_global_init(&err);
    log_set_level(LOG_ERROR);
    fu_response r = {.content_type = "text/event-stream", .body = FU_OPENAI_STREAM};
    fu_server *s = fu_start(&r, 1);
    char url[128];
    prov_model_cfg m = {.name = "b",
                        .backend = "openai",
                        .model = "gpt-4o-mini",
                        .base_url = fu_url(s, "/v1", url)};
    route_router *rt = route_new(NULL, &m, 1, NULL, 0, NULL, &err);
    if (!rt) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    prov_msg msg = {PROV_ROLE_USER, "hi"};
    prov_request q = {.msgs = &msg, .n_msgs = 1, .stream = true};
    enum { N = 300 };
    double first[N], done[N];
    for (int i = 0; i < N; i++) {
        lat l = {.t0 = clock_mono_ms()};
        if (route_stream(rt, "b", &q, NULL, NULL, lat_cb, &l, NULL)) {
            fprintf(stderr, "request failed\n");
            return 1;
        }
        first[i] = l.first;
        done[i] = l.done;
    }
    qsort(first, N, sizeof first[0], cmp_d);
    qsort(done, N, sizeof done[0], cmp_d);
    printf("routed stream on loopback (%d requests, new connection each): first delta median %.3f "
           "ms p99 %.3f ms; "
           "done median %.3f ms p99 %.3f ms\n",
           N, first[N / 2], first[N * 99 / 100], done[N / 2], done[N * 99 / 100]);
    route_free(rt);
    fu_stop(s);
    prov_global_cleanup();
    return 0;
}
