/*
 * cmd_stats — `confab stats`: tokens and cost of the stored replies, by
 * model, day or session; `confab stats ab`: A/B win rates from the votes
 * with their counts, and usage per variant. Reads the sessions database
 * named by the config (storage.data_dir/storage.db) or --db.
 */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/config.h"
#include "cli/cli.h"
#include "store/store.h"

static void print_rows(const char *title, store_usage_row *r, size_t n) {
    printf("%-32s %8s %12s %12s %8s %10s\n", title, "replies", "prompt", "completion", "cached",
           "cost $");
    for (size_t i = 0; i < n; i++)
        printf("%-32.32s %8lld %12lld %12lld %8lld %10.4f\n", r[i].key, (long long)r[i].replies,
               (long long)r[i].prompt_tokens, (long long)r[i].completion_tokens,
               (long long)r[i].cached, r[i].cost);
}

static json_t *rows_json(store_usage_row *r, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:f}", "key", r[i].key,
                                           "replies", (json_int_t)r[i].replies, "prompt_tokens",
                                           (json_int_t)r[i].prompt_tokens, "completion_tokens",
                                           (json_int_t)r[i].completion_tokens, "cached",
                                           (json_int_t)r[i].cached, "errors",
                                           (json_int_t)r[i].errors, "cost", r[i].cost));
    return a;
}

int cmd_stats(int argc, char **argv) {
    const char *db = NULL, *by = "model", *since = NULL, *config = NULL;
    bool json = false;
    static const struct option opts[] = {
        {"db", required_argument, 0, 'd'},     {"by", required_argument, 0, 'b'},
        {"since", required_argument, 0, 's'},  {"json", no_argument, 0, 'j'},
        {"config", required_argument, 0, 'c'}, {0, 0, 0, 0}};
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd': db = optarg; break;
        case 'b': by = optarg; break;
        case 's': since = optarg; break;
        case 'j': json = true; break;
        case 'c': config = optarg; break;
        default: return cli_usage_error("stats", "unknown option '%s'", argv[optind - 1]);
        }
    }
    bool ab = false;
    if (optind < argc) {
        if (strcmp(argv[optind], "ab"))
            return cli_usage_error("stats", "unknown argument '%s'", argv[optind]);
        ab = true;
        if (optind + 1 < argc)
            return cli_usage_error("stats", "unexpected argument '%s'", argv[optind + 1]);
    }
    store_usage_by g;
    if (!strcmp(by, "model"))
        g = STORE_USAGE_BY_MODEL;
    else if (!strcmp(by, "day"))
        g = STORE_USAGE_BY_DAY;
    else if (!strcmp(by, "session"))
        g = STORE_USAGE_BY_SESSION;
    else
        return cli_usage_error("stats", "--by takes model, day or session, not '%s'", by);
    cf_err err = {0};
    int64_t since_ms = 0;
    if (since && store_time_parse(since, &since_ms))
        return cli_usage_error("stats", "--since: '%s' is not a date (YYYY-MM-DD or ISO 8601)",
                               since);
    char *path = NULL;
    if (!db) {
        cfg_t *cfg = cfg_load(config, &err);
        if (!cfg) {
            fprintf(stderr, "confab: config: %s\n", err.msg);
            return 1;
        }
        path = cfg_data_path(cfg, cfg->storage.db);
        cfg_free(cfg);
        db = path;
    }
    store *st = store_open(db, STORE_OPEN_NO_RECOVER, &err);
    if (!st) {
        fprintf(stderr, "confab: %s\n", err.msg);
        free(path);
        return 1;
    }
    int rc = 0;
    store_usage_row *tot = NULL, *rows = NULL;
    size_t nt = 0, nr = 0;
    store_pair_stats *ps = NULL;
    size_t np = 0;
    if (store_usage(st, STORE_USAGE_TOTAL, since_ms, NULL, &tot, &nt, &err) ||
        store_usage(st, ab ? STORE_USAGE_BY_VARIANT : g, since_ms, NULL, &rows, &nr, &err) ||
        (ab && store_vote_stats(st, &ps, &np, &err))) {
        fprintf(stderr, "confab: %s\n", err.msg);
        rc = 1;
        goto out;
    }
    if (json) {
        json_t *o = json_object();
        json_t *ta = rows_json(tot, nt);
        json_object_set(o, "total", nt ? json_array_get(ta, 0) : json_null());
        json_decref(ta);
        json_object_set_new(o, ab ? "variants" : by, rows_json(rows, nr));
        if (ab) {
            json_t *pairs = json_array();
            for (size_t i = 0; i < np; i++)
                json_array_append_new(
                    pairs,
                    json_pack("{s:s,s:s,s:I,s:I,s:I,s:I,s:f}", "model_a", ps[i].model_a, "model_b",
                              ps[i].model_b, "votes", (json_int_t)ps[i].total, "wins_a",
                              (json_int_t)ps[i].wins_a, "wins_b", (json_int_t)ps[i].wins_b, "ties",
                              (json_int_t)ps[i].ties, "win_rate_a", ps[i].rate_a));
            json_object_set_new(o, "votes", pairs);
        }
        char *t = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
        printf("%s\n", t);
        free(t);
        json_decref(o);
    } else if (ab) {
        print_rows("variant", rows, nr);
        printf("\n%-24s %-24s %6s %6s %6s %6s %8s\n", "model a", "model b", "votes", "a", "b",
               "ties", "a wins");
        for (size_t i = 0; i < np; i++)
            printf("%-24.24s %-24.24s %6lld %6lld %6lld %6lld %7.1f%%\n", ps[i].model_a,
                   ps[i].model_b, (long long)ps[i].total, (long long)ps[i].wins_a,
                   (long long)ps[i].wins_b, (long long)ps[i].ties, ps[i].rate_a * 100.0);
        if (!np) printf("(no votes yet)\n");
    } else {
        print_rows(by, rows, nr);
        if (nt) print_rows("", tot, nt);
    }
out:
    store_usage_free(tot, nt);
    store_usage_free(rows, nr);
    store_pair_stats_free(ps, np);
    store_close(st);
    free(path);
    return rc;
}
