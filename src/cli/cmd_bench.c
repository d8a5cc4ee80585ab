/*
 * cmd_bench — `confab bench`: prompt-processing and generation speed,
 * measured the way llama.cpp's llama-bench does so figures compare one to
 * one:
 *   ppP: one decode of P tokens into an empty context (all in one batch),
 *        tokens/s = P / time;
 *   tgN: N single-token decodes after an empty context, tokens/s = N / time.
 * Tokens are pseudo-random ids (the content does not change the work).
 * One untimed warm-up run of each test (first touch of the mmapped weights,
 * page faults) precedes REPS timed runs; the median is reported.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "cli/cli.h"
#include "cli/engine_args.h"
#include "confab/engine.h"
#include "engine/types.h"

static int bench_cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One timed run; returns tokens/s or < 0 with ERR. */
static double bench_once(cf_model *m, int n_vocab, int pp, int tg, cf_err *err) {
    cf_ctx_opts co = cf_ctx_opts_default();
    co.n_ctx = pp > tg ? pp : tg;
    co.n_batch = pp > 0 ? pp : 1;
    cf_ctx *c = cf_ctx_new(m, &co, err);
    if (!c) return -1;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    double tps = -1;
    if (pp > 0) {
        int32_t *toks = malloc((size_t)pp * sizeof *toks);
        if (!toks) goto out;
        for (int i = 0; i < pp; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            toks[i] = (int32_t)((x >> 33) % (uint64_t)n_vocab);
        }
        double t0 = clock_mono_ms();
        int rc = cf_ctx_eval(c, toks, pp, false, err);
        double ms = clock_mono_ms() - t0;
        free(toks);
        if (rc < 0) goto out;
        tps = pp * 1000.0 / ms;
    } else {
        double t0 = clock_mono_ms();
        int32_t tok = 1 % n_vocab;
        for (int i = 0; i < tg; i++) {
            if (cf_ctx_eval(c, &tok, 1, false, err) < 0) goto out;
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            tok = (int32_t)((x >> 33) % (uint64_t)n_vocab);
        }
        double ms = clock_mono_ms() - t0;
        tps = tg * 1000.0 / ms;
    }
out:
    cf_ctx_free(c);
    return tps;
}

int cmd_bench(int argc, char **argv) {
    const char *model = NULL;
    long pp = 512, tg = 128, threads = 0, reps = 5;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = NULL;
        if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        }
        if (i + 1 >= argc) {
            if (!strcmp(a, "-m") || !strcmp(a, "-p") || !strcmp(a, "-n") || !strcmp(a, "-t") ||
                !strcmp(a, "-r"))
                return cli_usage_error("bench", "%s needs a value", a);
            return cli_usage_error("bench", "unknown option '%s'", a);
        }
        if (!strcmp(a, "-m"))
            model = argv[++i];
        else if (!strcmp(a, "-p")) {
            v = argv[++i];
            if (ea_long(v, 0, 1 << 16, &pp))
                return cli_usage_error("bench", "-p wants a count >= 0, got '%s'", v);
        } else if (!strcmp(a, "-n")) {
            v = argv[++i];
            if (ea_long(v, 0, 1 << 16, &tg))
                return cli_usage_error("bench", "-n wants a count >= 0, got '%s'", v);
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            v = argv[++i];
            if (ea_long(v, 1, 1024, &threads))
                return cli_usage_error("bench", "-t wants a count in [1, 1024], got '%s'", v);
        } else if (!strcmp(a, "-r")) {
            v = argv[++i];
            if (ea_long(v, 1, 1000, &reps))
                return cli_usage_error("bench", "-r wants a count in [1, 1000], got '%s'", v);
        } else
            return cli_usage_error("bench", "unknown option '%s'", a);
    }
    if (!model) return cli_usage_error("bench", "-m MODEL.gguf is required");
    if (pp == 0 && tg == 0)
        return cli_usage_error("bench", "nothing to measure: -p and -n are both 0");
    cf_err err = {0};
    cf_model_opts mo = cf_model_opts_default();
    mo.n_threads = (int)threads;
    cf_model *m = cf_model_load(model, &mo, &err);
    if (!m) {
        fprintf(stderr, "confab: %s\n", err.msg);
        return 1;
    }
    cf_model_info info;
    cf_model_get_info(m, &info);
    if (!json) {
        /* the columns of llama-bench's table, so rows can be set side by side */
        printf("| model | size | params | backend | threads | test | t/s (median of %ld) |\n",
               reps);
        printf("| --- | ---: | ---: | --- | ---: | ---: | ---: |\n");
    }
    double *t = malloc((size_t)reps * sizeof *t);
    if (!t) {
        cf_model_free(m);
        return 1;
    }
    struct {
        const char *kind;
        long n;
        double med;
    } tests[2] = {{"pp", pp, 0}, {"tg", tg, 0}};
    int rc = 0;
    for (int k = 0; k < 2 && rc == 0; k++) {
        if (tests[k].n == 0) continue;
        int p = k == 0 ? (int)pp : 0, g = k == 1 ? (int)tg : 0;
        if (bench_once(m, info.n_vocab, p, g, &err) < 0) { /* warm-up */
            fprintf(stderr, "confab: %s\n", err.msg);
            rc = 1;
            break;
        }
        for (long r = 0; r < reps; r++) {
            t[r] = bench_once(m, info.n_vocab, p, g, &err);
            if (t[r] < 0) {
                fprintf(stderr, "confab: %s\n", err.msg);
                rc = 1;
                break;
            }
        }
        if (rc) break;
        qsort(t, (size_t)reps, sizeof *t, bench_cmp);
        tests[k].med = reps % 2 ? t[reps / 2] : (t[reps / 2 - 1] + t[reps / 2]) / 2;
        if (!json)
            printf("| %s %s | %.2f MiB | %.2f %s | CPU (%s) | %d | %s%ld | %.2f (min %.2f, max "
                   "%.2f) |\n",
                   info.arch, info.name, (double)info.weight_bytes / (1u << 20),
                   (double)info.n_params / (info.n_params >= 1000000000u ? 1e9 : 1e6),
                   info.n_params >= 1000000000u ? "B" : "M", tt_kernel_family(), info.n_threads,
                   tests[k].kind, tests[k].n, tests[k].med, t[0], t[reps - 1]);
    }
    if (rc == 0 && json) {
        printf("{");
        int first = 1;
        for (int k = 0; k < 2; k++) {
            if (tests[k].n == 0) continue;
            printf("%s\"%s%ld\": %.2f", first ? "" : ", ", tests[k].kind, tests[k].n, tests[k].med);
            first = 0;
        }
        printf("}\n");
    }
    free(t);
    cf_model_free(m);
    return rc;
}
