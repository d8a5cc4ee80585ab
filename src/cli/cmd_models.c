/*
 * cmd_models — `confab models [list] | which NAME | rm NAME`: the local model
 * catalogue from the command line (src/app/models.c does the work).
 *
 * The directory comes from --models-dir, $CONFAB_MODELS_DIR or the config
 * (--config FILE or the usual search); the config is read only when needed.
 * `list` prints an aligned table for people or, with --json, one JSON
 * object for scripts; corrupt files are listed with the reason. `rm` asks
 * nothing: it resolves the short name (never a path, never outside the
 * directory), refuses ambiguity, deletes and says what it deleted.
 */
#include "app/models.h"
#include "base/sb.h"
#include "cli/cli.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fmt_params(uint64_t n, char *out, size_t cap) {
    if (n >= 1000000000ull)
        snprintf(out, cap, "%.1fB", (double)n / 1e9);
    else if (n >= 1000000ull)
        snprintf(out, cap, "%.1fM", (double)n / 1e6);
    else if (n >= 1000ull)
        snprintf(out, cap, "%.1fK", (double)n / 1e3);
    else
        snprintf(out, cap, "%" PRIu64, n);
}

static void fmt_size(uint64_t b, char *out, size_t cap) {
    static const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int i = 0;
    while (v >= 1024 && i < 4)
        v /= 1024, i++;
    if (i == 0)
        snprintf(out, cap, "%" PRIu64 " B", b);
    else
        snprintf(out, cap, "%.1f %s", v, u[i]);
}

static json_t *jstr_or_null(const char *s) { return s ? json_string(s) : json_null(); }

static int list_json(const models_list_t *l) {
    json_t *arr = json_array();
    for (size_t i = 0; i < l->n; i++) {
        const models_entry *e = &l->v[i];
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(e->name));
        json_object_set_new(o, "file", json_string(e->file));
        json_object_set_new(o, "path", json_string(e->path));
        json_object_set_new(o, "size", json_integer((json_int_t)e->size));
        json_object_set_new(o, "valid", json_boolean(e->valid));
        json_object_set_new(o, "error", jstr_or_null(e->error));
        json_object_set_new(o, "architecture", jstr_or_null(e->arch));
        json_object_set_new(o, "parameters",
                            e->valid ? json_integer((json_int_t)e->n_params) : json_null());
        json_object_set_new(o, "quantization", jstr_or_null(e->quant));
        json_object_set_new(o, "context_length",
                            e->valid && e->ctx_len ? json_integer(e->ctx_len) : json_null());
        json_object_set_new(o, "chat_template", json_boolean(e->chat_template));
        json_object_set_new(o, "modified", json_integer(e->mtime));
        json_array_append_new(arr, o);
    }
    json_t *parts = json_array();
    for (size_t i = 0; i < l->n_partial; i++)
        json_array_append_new(parts, json_pack("{s:s,s:I}", "file", l->partial[i].file, "size",
                                               (json_int_t)l->partial[i].size));
    json_t *root =
        json_pack("{s:s,s:o,s:o}", "dir", l->dir, "models", arr, "incomplete_downloads", parts);
    char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    printf("%s\n", s);
    free(s);
    json_decref(root);
    return 0;
}

static void list_partial(const models_list_t *l) {
    for (size_t i = 0; i < l->n_partial; i++) {
        char sz[32];
        fmt_size(l->partial[i].size, sz, sizeof sz);
        printf("incomplete download: %s (%s); run the same `confab pull` again to resume\n",
               l->partial[i].file, sz);
    }
}

static int list_table(const models_list_t *l) {
    if (!l->n) {
        printf("no models in %s (get one with `confab pull %s`)\n", l->dir, MODELS_DEFAULT_SOURCE);
        list_partial(l);
        return 0;
    }
    enum { C_NAME, C_ARCH, C_PARAMS, C_QUANT, C_SIZE, C_CTX, C_CHAT, NC };
    static const char *head[NC] = {"NAME", "ARCH", "PARAMS", "QUANT", "SIZE", "CTX", "CHAT"};
    char(*cell)[NC][64] = calloc(l->n, sizeof *cell);
    int w[NC];
    for (int c = 0; c < NC; c++)
        w[c] = (int)strlen(head[c]);
    for (size_t i = 0; i < l->n; i++) {
        const models_entry *e = &l->v[i];
        snprintf(cell[i][C_NAME], 64, "%s", e->name);
        fmt_size(e->size, cell[i][C_SIZE], 64);
        if (e->valid) {
            snprintf(cell[i][C_ARCH], 64, "%s", e->arch ? e->arch : "?");
            fmt_params(e->n_params, cell[i][C_PARAMS], 64);
            snprintf(cell[i][C_QUANT], 64, "%s", e->quant ? e->quant : "?");
            if (e->ctx_len)
                snprintf(cell[i][C_CTX], 64, "%" PRId64, e->ctx_len);
            else
                snprintf(cell[i][C_CTX], 64, "?");
            snprintf(cell[i][C_CHAT], 64, "%s", e->chat_template ? "yes" : "no");
        }
        for (int c = 0; c < NC; c++) {
            int n = (int)strlen(cell[i][c]);
            if (n > w[c] && (c != C_NAME || n < 60)) w[c] = n;
        }
    }
    const char *dash = "-";
    printf("%s\n", l->dir);
    for (int c = 0; c < NC; c++)
        printf(c ? "  %-*s" : "%-*s", w[c], head[c]);
    printf("\n");
    size_t n_bad = 0;
    for (size_t i = 0; i < l->n; i++) {
        const models_entry *e = &l->v[i];
        if (!e->valid) {
            n_bad++;
            printf("%-*s  INVALID: %s\n", w[C_NAME], cell[i][C_NAME], e->error);
            continue;
        }
        for (int c = 0; c < NC; c++) {
            const char *v = cell[i][c][0] ? cell[i][c] : dash;
            /* numbers right-aligned, words left */
            bool right = c == C_PARAMS || c == C_SIZE || c == C_CTX;
            if (c == NC - 1)
                printf("  %s", v); /* no trailing padding */
            else
                printf(c ? (right ? "  %*s" : "  %-*s") : "%-*s", w[c], v);
        }
        printf("\n");
    }
    free(cell);
    if (n_bad) printf("%zu of %zu files are not valid GGUF models\n", n_bad, l->n);
    list_partial(l);
    return 0;
}

int cmd_models(int argc, char **argv) {
    const char *dir_opt = NULL, *config = NULL, *action = NULL, *name = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "--models-dir") || !strcmp(a, "--config")) {
            if (i + 1 >= argc) return cli_usage_error("models", "%s needs a value", a);
            *(a[2] == 'm' ? &dir_opt : &config) = argv[++i];
        } else if (!strncmp(a, "--models-dir=", 13)) {
            dir_opt = a + 13;
        } else if (!strncmp(a, "--config=", 9)) {
            config = a + 9;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error("models", "unknown option '%s'", a);
        } else if (!action) {
            action = a;
        } else if (!name) {
            name = a;
        } else {
            return cli_usage_error("models", "unexpected argument '%s'", a);
        }
    }
    if (!action) action = "list";
    bool is_list = !strcmp(action, "list"), is_rm = !strcmp(action, "rm"),
         is_which = !strcmp(action, "which");
    if (!is_list && !is_rm && !is_which)
        return cli_usage_error("models", "unknown action '%s' (list, which or rm)", action);
    if (is_list && name) return cli_usage_error("models", "unexpected argument '%s'", name);
    if (!is_list && !name) return cli_usage_error("models", "models %s needs a NAME", action);
    if (!is_list && json) return cli_usage_error("models", "--json goes with models list");

    cf_err err = {0};
    char *dir = models_dir_load(dir_opt, config, &err);
    if (!dir) {
        fprintf(stderr, "confab: models: %s\n", err.msg);
        return 1;
    }
    int rc = 0;
    if (is_list) {
        models_list_t l;
        if (models_list(dir, &l, &err)) {
            fprintf(stderr, "confab: models: %s\n", err.msg);
            rc = 1;
        } else {
            rc = json ? list_json(&l) : list_table(&l);
            models_list_free(&l);
        }
    } else if (is_which) {
        char *p = models_resolve(dir, name, &err);
        if (!p) {
            fprintf(stderr, "confab: models: %s\n", err.msg);
            rc = 1;
        } else {
            printf("%s\n", p);
            free(p);
        }
    } else {
        char *removed = NULL;
        if (models_remove(dir, name, &removed, &err)) {
            fprintf(stderr, "confab: models rm: %s\n", err.msg);
            rc = 1;
        } else {
            printf("removed %s\n", removed);
            free(removed);
        }
    }
    free(dir);
    return rc;
}
