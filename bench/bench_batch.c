/*
 * bench_batch — what continuous batching and prefix reuse buy on one model.
 *
 *   build/bench/bench_batch MODEL.gguf [THREADS=2] [GEN=32] [HISTORY=2000]
 *
 * 1. Aggregate generation speed with 1, 2, 4 and 8 sequences decoded
 *    together (one context, n_seq = 8): each sequence gets a short prompt,
 *    then GEN steps each decode one token of every sequence in one batch,
 *    so every weight matrix is read once per step (tt_matmul, nx = N).
 *    Tokens are fixed ids (the weights are random): the work per token is
 *    what a real reply costs. Prints steps/s and tokens/s (all sequences),
 *    by wall time and by the process's CPU time (the work, less what the
 *    other jobs of a shared machine take).
 * 2. Time to first token of turn 10 of a conversation: a history of
 *    HISTORY tokens in one sequence (kept, as the local provider keeps a
 *    conversation's slot between turns); turn 10 then
 *    decodes only its new tokens (a user message of 40 tokens) and yields
 *    the first logits. Against a cold start: the same full prompt (history
 *    + new) decoded in an empty sequence. (The history's KV is what the
 *    cold run left, rewound to the history: the same cells a kept slot
 *    holds.)
 *
 * Figures are best of 3 runs (streams) or 2 (turn 10); the machine is
 * shared, so they are noisy.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/clock.h"
#include "confab/engine.h"

static double now_s(void) { return (double)clock_mono_ns() / 1e9; }

/* CPU seconds of the whole process (every pool thread): the work done,
 * whatever the other jobs on a shared machine take of the wall time. */
static double cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void die(const char *what, const cf_err *e) {
    fprintf(stderr, "bench_batch: %s: %s\n", what, e->msg);
    exit(1);
}

/* A fixed pseudo-random token sequence (ids in [1, n_vocab)). */
static int32_t tok_at(uint64_t i, int n_vocab) {
    uint64_t x = i * 0x9E3779B97F4A7C15ull + 12345;
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 32;
    return (int32_t)(1 + x % (uint64_t)(n_vocab - 1));
}

/* GEN decode steps of N sequences; returns wall seconds for the steps and
 * their process CPU seconds in *CPU. */
static double run_streams(cf_ctx *c, int n, int gen, int n_vocab, double *cpu) {
    cf_err e = {0};
    int32_t tok[64], seq[64];
    int8_t want[64];
    for (int s = 0; s < 8; s++)
        cf_ctx_seq_truncate(c, s, 0, NULL);
    /* prompts: 8 tokens each, all sequences in one batch */
    int k = 0;
    for (int s = 0; s < n; s++)
        for (int i = 0; i < 8; i++, k++) {
            tok[k] = tok_at((uint64_t)(s * 1000 + i), n_vocab);
            seq[k] = s;
            want[k] = i == 7;
        }
    cf_batch b = {.n_tokens = k, .token = tok, .seq_id = seq, .logits = want};
    if (cf_ctx_decode(c, &b, &e)) die("prompt", &e);
    double t0 = now_s(), c0 = cpu_s();
    for (int g = 0; g < gen; g++) {
        for (int s = 0; s < n; s++) {
            tok[s] = tok_at((uint64_t)(s * 1000 + 8 + g), n_vocab);
            seq[s] = s;
            want[s] = 1;
        }
        b = (cf_batch){.n_tokens = n, .token = tok, .seq_id = seq, .logits = want};
        if (cf_ctx_decode(c, &b, &e)) die("decode", &e);
    }
    *cpu = cpu_s() - c0;
    return now_s() - t0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_batch MODEL.gguf [THREADS=2] [GEN=32] [HISTORY=2000]\n");
        return 2;
    }
    const int threads = argc > 2 ? atoi(argv[2]) : 2;
    const int gen = argc > 3 ? atoi(argv[3]) : 32;
    const int history = argc > 4 ? atoi(argv[4]) : 2000;
    cf_err e = {0};
    cf_model_opts mo = cf_model_opts_default();
    mo.n_threads = threads;
    cf_model *m = cf_model_load(argv[1], &mo, &e);
    if (!m) die("load", &e);
    cf_model_info info;
    cf_model_get_info(m, &info);
    printf("model %s: %d layers, dim %d, vocab %d, %.2f GB of weights; %d threads\n", argv[1],
           info.n_layer, info.n_embd, info.n_vocab, (double)info.weight_bytes / 1e9,
           info.n_threads);

    /* 1. concurrent streams */
    cf_ctx_opts co = cf_ctx_opts_default();
    co.n_ctx = 8 + gen + 8;
    co.n_seq = 8;
    cf_ctx *c = cf_ctx_new(m, &co, &e);
    if (!c) die("context", &e);
    printf("\n| streams | steps/s | tokens/s (all streams) | vs 1 stream | tokens per CPU-s | vs 1 "
           "stream |\n|---:|---:|---:|---:|---:|---:|\n");
    double base = 0, cbase = 0;
    const int ns[] = {1, 2, 4, 8};
    for (int i = 0; i < 4; i++) {
        double best = 1e30, cbest = 1e30;
        for (int r = 0; r < 3; r++) {
            double cpu;
            double t = run_streams(c, ns[i], gen, info.n_vocab, &cpu);
            if (t < best) best = t;
            if (cpu < cbest) cbest = cpu;
        }
        const double tps = ns[i] * gen / best, cps = ns[i] * gen / cbest;
        if (i == 0) base = tps, cbase = cps;
        printf("| %d | %.2f | %.2f | %.2fx | %.2f | %.2fx |\n", ns[i], gen / best, tps, tps / base,
               cps, cps / cbase);
        fflush(stdout);
    }
    cf_ctx_free(c);

    /* 2. turn 10 with a kept history vs a cold start (HISTORY 0: skipped) */
    if (history <= 0) {
        cf_model_free(m);
        return 0;
    }
    const int turn_new = 40;
    co = cf_ctx_opts_default();
    co.n_ctx = history + turn_new + 64;
    co.n_seq = 1;
    c = cf_ctx_new(m, &co, &e);
    if (!c) die("context", &e);
    int32_t *all = malloc(sizeof *all * (size_t)(history + turn_new));
    for (int i = 0; i < history + turn_new; i++)
        all[i] = tok_at((uint64_t)i + 77, info.n_vocab);
    double warm = 1e30, cold = 1e30;
    for (int r = 0; r < 2; r++) {
        /* cold: the whole prompt in an empty sequence */
        cf_ctx_seq_truncate(c, 0, 0, NULL);
        double t0 = now_s();
        if (cf_ctx_eval(c, all, history + turn_new, false, &e)) die("cold", &e);
        double cd = now_s() - t0;
        if (cd < cold) cold = cd;
        /* warm: the history's KV kept (rewound to exactly the history, as
         * the slot holds it after turn 9), only the new tokens decoded */
        cf_ctx_seq_truncate(c, 0, history, NULL);
        t0 = now_s();
        if (cf_ctx_eval(c, all + history, turn_new, false, &e)) die("turn 10", &e);
        double w = now_s() - t0;
        if (w < warm) warm = w;
    }
    printf("\nturn 10 (%d tokens of history + %d new): first token after %.3f s with the kept KV, "
           "%.3f s cold (%.1f%%)\n",
           history, turn_new, warm, cold, 100.0 * warm / cold);
    free(all);
    cf_ctx_free(c);
    cf_model_free(m);
    return 0;
}
