/*
 * models — the local model catalogue (see models.h for the directory and
 * the name-resolution rules).
 *
 * Listing opens every *.gguf with gguf_open(), which maps the file and
 * validates its header and tables but never touches tensor data, so a
 * listing of a few multi-gigabyte models costs milliseconds. A file the
 * reader rejects is still listed, marked invalid with the reader's message;
 * nothing in a directory can make the listing fail except the directory
 * itself being unreadable.
 *
 * Resolution deliberately looks at names only. It is what `-m NAME` in
 * serve/chat/run goes through, so it must be cheap and must not depend on
 * whether a file parses; the loader reports a corrupt file when it opens it.
 * Tiers (exact, prefix, substring) make the common short names work
 * ("smollm2" → SmolLM2-135M-Instruct-Q8_0.gguf) while keeping an exact
 * name unambiguous even when it is also a prefix of another file
 * ("m" and "m-2" both present: "m" means m.gguf).
 *
 * Parameter count is the sum of tensor element counts (what people quote,
 * embeddings included). Quantization is the name of general.file_type
 * (llama.cpp's LLAMA_FTYPE numbering, table below), or when a file lacks
 * it, the type holding the most elements among its matrices.
 */
#include "app/models.h"

#include "base/sb.h"
#include "engine/gguf.h"
#include "engine/types.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------ the dir */

char *models_dir(const cfg_t *cfg, const char *override) {
    if (override && *override) return strdup(override);
    const char *env = getenv("CONFAB_MODELS_DIR");
    if (env && *env) return strdup(env);
    const char *data = cfg && cfg->storage.data_dir ? cfg->storage.data_dir : "./data";
    const char *sub = cfg && cfg->storage.models_dir ? cfg->storage.models_dir : "models";
    if (sub[0] == '/') return strdup(sub);
    sb_t s = {0};
    size_t n = strlen(data);
    while (n > 1 && data[n - 1] == '/')
        n--;
    sb_appendn(&s, data, n);
    sb_putc(&s, '/');
    sb_append(&s, sub);
    return sb_take(&s);
}

char *models_dir_load(const char *override, const char *config_path, cf_err *err) {
    const char *env = getenv("CONFAB_MODELS_DIR");
    if ((override && *override) || (env && *env)) return models_dir(NULL, override);
    cfg_t *c = cfg_load(config_path, err);
    if (!c) return NULL;
    char *d = models_dir(c, NULL);
    cfg_free(c);
    return d;
}

/* ------------------------------------------------------------ entries */

/* llama.cpp's LLAMA_FTYPE_* values (llama.h), as written to general.file_type. */
static const char *const file_types[] = {
    [0] = "F32",      [1] = "F16",      [2] = "Q4_0",       [3] = "Q4_1",    [7] = "Q8_0",
    [8] = "Q5_0",     [9] = "Q5_1",     [10] = "Q2_K",      [11] = "Q3_K_S", [12] = "Q3_K_M",
    [13] = "Q3_K_L",  [14] = "Q4_K_S",  [15] = "Q4_K_M",    [16] = "Q5_K_S", [17] = "Q5_K_M",
    [18] = "Q6_K",    [19] = "IQ2_XXS", [20] = "IQ2_XS",    [21] = "Q2_K_S", [22] = "IQ3_XS",
    [23] = "IQ3_XXS", [24] = "IQ1_S",   [25] = "IQ4_NL",    [26] = "IQ3_S",  [27] = "IQ3_M",
    [28] = "IQ2_S",   [29] = "IQ2_M",   [30] = "IQ4_XS",    [31] = "IQ1_M",  [32] = "BF16",
    [36] = "TQ1_0",   [37] = "TQ2_0",   [38] = "MXFP4_MOE",
};

const char *models_file_type_name(uint32_t ft) {
    ft &= ~1024u; /* LLAMA_FTYPE_GUESSED */
    return ft < sizeof file_types / sizeof file_types[0] ? file_types[ft] : NULL;
}

static bool has_suffix_ci(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !strcasecmp(s + n - m, suf);
}

static char *stem_of(const char *file) {
    size_t n = strlen(file);
    if (has_suffix_ci(file, ".gguf")) n -= 5;
    return strndup(file, n);
}

static void describe_gguf(gguf_file *g, models_entry *e) {
    gguf_str s;
    if (gguf_get_str(g, "general.architecture", &s)) e->arch = gguf_str_dup(s);
    if (e->arch) {
        sb_t k = {0};
        sb_printf(&k, "%s.context_length", e->arch);
        int64_t v;
        if (gguf_get_i64(g, k.data, &v) && v > 0) e->ctx_len = v;
        sb_free(&k);
    }
    e->chat_template = gguf_find_key(g, "tokenizer.chat_template") >= 0;
    uint64_t by_type[TT_COUNT] = {0};
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        uint64_t ne = 1;
        for (uint32_t d = 0; d < t->n_dims; d++)
            ne *= (uint64_t)t->ne[d];
        e->n_params += ne;
        if (t->n_dims >= 2 && t->type >= 0 && t->type < TT_COUNT) by_type[t->type] += ne;
    }
    uint32_t ft;
    const char *q = gguf_get_u32(g, "general.file_type", &ft) ? models_file_type_name(ft) : NULL;
    if (!q) {
        int best = -1;
        for (int t = 0; t < TT_COUNT; t++)
            if (by_type[t] && (best < 0 || by_type[t] > by_type[best])) best = t;
        const tt_traits *tr = best >= 0 ? tt_get(best) : NULL;
        q = tr && tr->name ? tr->name : "?";
    }
    e->quant = strdup(q);
}

int models_describe(const char *path, models_entry *e, cf_err *err) {
    struct stat st;
    if (stat(path, &st) != 0)
        return cf_seterr(err, errno == ENOENT ? CF_ENOTFOUND : CF_EIO, "%s: %s", path,
                         strerror(errno));
    memset(e, 0, sizeof *e);
    const char *slash = strrchr(path, '/');
    e->file = strdup(slash ? slash + 1 : path);
    e->name = stem_of(e->file);
    e->path = strdup(path);
    e->size = (uint64_t)st.st_size;
    e->mtime = (int64_t)st.st_mtime;
    if (!S_ISREG(st.st_mode)) {
        e->error = strdup("not a regular file");
        return 0;
    }
    cf_err ge = {0};
    gguf_file *g = gguf_open(path, &ge);
    if (!g) {
        /* The reader's message starts with the path; the entry has it already. */
        const char *m = ge.msg[0] ? ge.msg : "cannot be read as GGUF";
        size_t pl = strlen(path);
        if (!strncmp(m, path, pl) && !strncmp(m + pl, ": ", 2)) m += pl + 2;
        e->error = strdup(m);
        return 0;
    }
    e->valid = true;
    describe_gguf(g, e);
    gguf_close(g);
    return 0;
}

void models_entry_free(models_entry *e) {
    if (!e) return;
    free(e->name);
    free(e->file);
    free(e->path);
    free(e->error);
    free(e->arch);
    free(e->quant);
    memset(e, 0, sizeof *e);
}

/* ------------------------------------------------------------ listing */

static int cmp_ci(const void *a, const void *b) {
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    int c = strcasecmp(x, y);
    return c ? c : strcmp(x, y);
}

/* Names of the files in DIR ending in SUFFIX (case-insensitive; hidden
 * files skipped), sorted, into *NAMES (n entries, each malloc'd). A missing
 * DIR gives zero names. */
static int scan_suffix(const char *dir, const char *suffix, char ***names, size_t *n, cf_err *err) {
    *names = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) return 0;
        return cf_seterr(err, CF_EIO, "cannot read models directory %s: %s", dir, strerror(errno));
    }
    size_t cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' || !has_suffix_ci(de->d_name, suffix)) continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            char **nv = realloc(*names, cap * sizeof *nv);
            if (!nv) break;
            *names = nv;
        }
        (*names)[(*n)++] = strdup(de->d_name);
    }
    closedir(d);
    if (*n) qsort(*names, *n, sizeof **names, cmp_ci);
    return 0;
}

/* Model file names in DIR: *.gguf. */
static int scan_dir(const char *dir, char ***names, size_t *n, cf_err *err) {
    return scan_suffix(dir, ".gguf", names, n, err);
}

static void free_names(char **names, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

int models_list(const char *dir, models_list_t *out, cf_err *err) {
    memset(out, 0, sizeof *out);
    char **names;
    size_t n;
    int rc = scan_dir(dir, &names, &n, err);
    if (rc) return rc;
    out->dir = strdup(dir);
    out->v = n ? calloc(n, sizeof *out->v) : NULL;
    sb_t p = {0};
    for (size_t i = 0; i < n; i++) {
        sb_clear(&p);
        sb_printf(&p, "%s/%s", dir, names[i]);
        /* A file that vanished between readdir and stat is simply skipped. */
        if (models_describe(p.data, &out->v[out->n], NULL) == 0) out->n++;
    }
    free_names(names, n);
    if (scan_suffix(dir, ".gguf.part", &names, &n, NULL) == 0 && n) {
        out->partial = calloc(n, sizeof *out->partial);
        for (size_t i = 0; i < n; i++) {
            struct stat st;
            sb_clear(&p);
            sb_printf(&p, "%s/%s", dir, names[i]);
            if (stat(p.data, &st) != 0 || !S_ISREG(st.st_mode)) continue;
            out->partial[out->n_partial].file = strdup(names[i]);
            out->partial[out->n_partial++].size = (uint64_t)st.st_size;
        }
        free_names(names, n);
    }
    sb_free(&p);
    return 0;
}

void models_list_free(models_list_t *l) {
    if (!l) return;
    for (size_t i = 0; i < l->n; i++)
        models_entry_free(&l->v[i]);
    free(l->v);
    for (size_t i = 0; i < l->n_partial; i++)
        free(l->partial[i].file);
    free(l->partial);
    free(l->dir);
    memset(l, 0, sizeof *l);
}

/* --------------------------------------------------------- resolution */

static bool contains_ci(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (const char *p = hay; *p; p++)
        if (!strncasecmp(p, needle, n)) return true;
    return !*needle;
}

static void list_names(sb_t *s, char **names, const size_t *idx, size_t n) {
    for (size_t i = 0; i < n; i++)
        sb_printf(s, "%s%s", i ? ", " : "", names[idx ? idx[i] : i]);
}

/* Rules 2 and 4 (names in DIR). Returns the path or NULL with ERR set. */
static char *resolve_in_dir(const char *dir, const char *name, bool allow_cwd, cf_err *err) {
    char **names;
    size_t n;
    if (scan_dir(dir, &names, &n, err)) return NULL;
    char *found = NULL;
    sb_t s = {0};
    /* Rule 2: exact file name, with or without .gguf. */
    for (size_t i = 0; i < n && !found; i++) {
        const char *f = names[i];
        size_t ln = strlen(name);
        if (!strcmp(f, name) || (!strncmp(f, name, ln) && !strcasecmp(f + ln, ".gguf"))) {
            sb_printf(&s, "%s/%s", dir, f);
            found = sb_take(&s);
        }
    }
    /* Rule 3: a .gguf file in the current directory. */
    struct stat st;
    if (!found && allow_cwd && has_suffix_ci(name, ".gguf") && stat(name, &st) == 0 &&
        S_ISREG(st.st_mode))
        found = strdup(name);
    /* Rule 4: case-insensitive exact stem, prefix, substring. */
    size_t *hit = n ? calloc(n, sizeof *hit) : NULL;
    const char *want = name;
    char *wstem = has_suffix_ci(name, ".gguf") ? stem_of(name) : NULL;
    if (wstem) want = wstem;
    for (int tier = 0; tier < 3 && !found && *want; tier++) {
        size_t nh = 0;
        for (size_t i = 0; i < n; i++) {
            char *st_ = stem_of(names[i]);
            bool m = tier == 0   ? !strcasecmp(st_, want)
                     : tier == 1 ? !strncasecmp(st_, want, strlen(want))
                                 : contains_ci(st_, want);
            free(st_);
            if (m) hit[nh++] = i;
        }
        if (nh == 1) {
            sb_printf(&s, "%s/%s", dir, names[hit[0]]);
            found = sb_take(&s);
        } else if (nh > 1) {
            sb_printf(&s, "model name '%s' is ambiguous in %s: ", name, dir);
            list_names(&s, names, hit, nh);
            cf_seterr(err, CF_EINVAL, "%s; give more of the name", s.data);
            goto done;
        }
    }
    if (!found) {
        if (n) {
            sb_printf(&s, "no model matches '%s' in %s; available: ", name, dir);
            list_names(&s, names, NULL, n);
            cf_seterr(err, CF_ENOTFOUND, "%s", s.data);
        } else {
            cf_seterr(err, CF_ENOTFOUND,
                      "no model matches '%s': %s holds no .gguf files (get one with `confab pull "
                      "hf:ORG/REPO/FILE.gguf`)",
                      name, dir);
        }
    }
done:
    sb_free(&s);
    free(wstem);
    free(hit);
    free_names(names, n);
    return found;
}

char *models_resolve(const char *dir, const char *name, cf_err *err) {
    if (!name || !*name) {
        cf_seterr(err, CF_EINVAL, "no model name given");
        return NULL;
    }
    if (strchr(name, '/')) {
        struct stat st;
        if (stat(name, &st) != 0) {
            cf_seterr(err, CF_ENOTFOUND, "model file %s: %s", name, strerror(errno));
            return NULL;
        }
        if (!S_ISREG(st.st_mode)) {
            cf_seterr(err, CF_EINVAL, "model file %s is not a regular file", name);
            return NULL;
        }
        return strdup(name);
    }
    return resolve_in_dir(dir, name, true, err);
}

int models_remove(const char *dir, const char *name, char **removed, cf_err *err) {
    if (removed) *removed = NULL;
    if (!name || !*name) return cf_seterr(err, CF_EINVAL, "no model name given");
    if (strchr(name, '/'))
        return cf_seterr(err, CF_EINVAL, "models rm takes a model name from %s, not a path ('%s')",
                         dir, name);
    char *path = resolve_in_dir(dir, name, false, err);
    if (!path) return err ? err->code : CF_ENOTFOUND;
    if (unlink(path) != 0) {
        int rc = cf_seterr(err, CF_EIO, "cannot remove %s: %s", path, strerror(errno));
        free(path);
        return rc;
    }
    if (removed)
        *removed = path;
    else
        free(path);
    return 0;
}

/* ---------------------------------------------------------- first run */

int models_ensure_default(const cfg_t *cfg, bool allow_pull, pull_progress_fn progress, void *pctx,
                          const volatile sig_atomic_t *cancel, char **path, cf_err *err) {
    *path = NULL;
    if (cfg && cfg->n_models > 0) return MODELS_DEFAULT_CONFIGURED;
    char *dir = models_dir(cfg, NULL);
    models_list_t l;
    int rc = models_list(dir, &l, err);
    if (rc) {
        free(dir);
        return rc;
    }
    /* Prefer a model that can chat (has a template), else any valid one. */
    const models_entry *pick = NULL;
    for (size_t i = 0; i < l.n; i++)
        if (l.v[i].valid && (!pick || (!pick->chat_template && l.v[i].chat_template)))
            pick = &l.v[i];
    if (pick) {
        *path = strdup(pick->path);
        models_list_free(&l);
        free(dir);
        return MODELS_DEFAULT_FOUND;
    }
    models_list_free(&l);
    if (!allow_pull) {
        rc = cf_seterr(err, CF_ENOTFOUND,
                       "no local model: none is configured and %s holds none, and pulling is "
                       "disabled; get one with `confab pull %s` (remote models still work)",
                       dir, MODELS_DEFAULT_SOURCE);
        free(dir);
        return rc;
    }
    pull_opts o = {.models_dir = dir, .progress = progress, .progress_ctx = pctx, .cancel = cancel};
    pull_result r;
    cf_err pe = {0};
    rc = pull_model(MODELS_DEFAULT_SOURCE, &o, &r, &pe);
    if (rc) {
        cf_seterr(err, rc,
                  "no local model: none is configured and %s holds none, and the default model "
                  "could not be downloaded: %s; the server runs without a local model (remote "
                  "models still work; retry with `confab pull %s`)",
                  dir, pe.msg, MODELS_DEFAULT_SOURCE);
        free(dir);
        return rc;
    }
    *path = r.path;
    r.path = NULL;
    pull_result_free(&r);
    free(dir);
    return MODELS_DEFAULT_PULLED;
}
