/*
 * bench_sampler — microseconds per cf_samp_sample() for a Llama-3-sized
 * vocabulary (128256) of random logits, for the sampler settings people
 * use, on two distributions: "flat" (all logits within +-10: a worst case
 * where top-p needs a large part of the vocabulary) and "peaked" (the same
 * plus +12 on 20 tokens, as a trained model's next-token distribution). Tokens are generated at
 * tens per second, so anything under ~1 ms per sample is noise next to the forward pass.
 *   build/bench/bench_sampler
 */
#include <stdio.h>
#include <stdlib.h>

#include "base/clock.h"
#include "confab/engine.h"

int main(void) {
    enum { NV = 128256, REPS = 200 };
    float *l = malloc(NV * sizeof *l);
    if (!l) return 1;
    uint64_t x = 1;
    for (int i = 0; i < NV; i++) {
        float s = 0;
        for (int k = 0; k < 4; k++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            s += (float)((x >> 40) & 0xffff) / 65536.0f;
        }
        l[i] = (s - 2.0f) * 5.0f;
    }
    for (int dist = 0; dist < 2; dist++) {
        if (dist == 1)
            for (int i = 0; i < 20; i++)
                l[(i * 7919) % NV] += 12.0f;
        printf("%s logits:\n", dist ? "peaked" : "flat");
        struct {
            const char *name;
            float temp;
            int top_k;
            float top_p, min_p, rep;
        } cfg[] = {
            {"greedy", 0, 0, 1, 0, 1},
            {"temp 0.8", 0.8f, 0, 1, 0, 1},
            {"top-k 40, temp 0.8", 0.8f, 40, 1, 0, 1},
            {"top-p 0.95, temp 0.8", 0.8f, 0, 0.95f, 0, 1},
            {"min-p 0.05, temp 0.8", 0.8f, 0, 1, 0.05f, 1},
            {"top-k 40 top-p 0.95 min-p 0.05 rep 1.1", 0.8f, 40, 0.95f, 0.05f, 1.1f},
        };
        for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
            cf_samp_params p = cf_samp_params_default();
            p.temp = cfg[c].temp;
            p.top_k = cfg[c].top_k;
            p.top_p = cfg[c].top_p;
            p.min_p = cfg[c].min_p;
            p.repeat_penalty = cfg[c].rep;
            p.seed = 1;
            cf_sampler *s = cf_samp_new(&p, NV, NULL);
            for (int i = 0; i < 64; i++)
                cf_samp_accept(s, i * 7);
            double t0 = clock_mono_ms();
            int sink = 0;
            for (int r = 0; r < REPS; r++)
                sink += cf_samp_sample(s, l);
            double us = (clock_mono_ms() - t0) * 1000.0 / REPS;
            printf("  %-40s %8.1f us/sample (%d)\n", cfg[c].name, us, sink % 10);
            cf_samp_free(s);
        }
    }
    free(l);
    return 0;
}
