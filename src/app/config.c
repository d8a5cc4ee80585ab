/*
 * config — YAML configuration via libfyaml; see config.h for the contract.
 *
 * How it works: libfyaml builds a document tree (FYPCF_DEFAULT_PARSE, with a
 * diag object that collects errors instead of printing them, so syntax errors
 * come back as "file:line:col: message"). A hand-written walker then visits
 * each known section; every mapping is checked against its list of known
 * keys (unknown ones become warnings with their location), and every scalar
 * is env-expanded and converted with a type check that reports the
 * location of the offending value. Defaults are set first, so a partial file
 * only overrides what it names.
 *
 * Trade-off: the schema lives in code (one function per section) rather than
 * a table; sections differ enough (maps of models, lists of variants, the
 * seed's short form) that a table would need as much code to interpret.
 */
#include "app/config.h"

#include "base/path.h"
#include "base/sb.h"

#include <errno.h>
#include <jansson.h>
#include <libfyaml.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* ------------------------------------------------------------------ helpers */

typedef struct {
    cfg_t *cfg;
    const char *file; /* for locations */
    cf_err *err;
} walker;

static char *xstrdup(const char *s) {
    if (!s) return NULL;
    char *d = strdup(s);
    if (!d) abort();
    return d;
}

static void *xcalloc(size_t n, size_t sz) {
    void *p = calloc(n ? n : 1, sz);
    if (!p) abort();
    return p;
}

static void set_str(char **dst, const char *v) {
    free(*dst);
    *dst = xstrdup(v);
}

static void push_str(char ***arr, size_t *n, const char *v) {
    char **a = realloc(*arr, (*n + 1) * sizeof **arr);
    if (!a) abort();
    a[*n] = xstrdup(v);
    *arr = a;
    (*n)++;
}

/* Location of a node as "file:line:col" (1-based). */
static void node_loc(const walker *w, struct fy_node *n, char *buf, size_t cap) {
    int line = 0, col = 0;
    struct fy_token *t = n ? fy_node_get_scalar_token(n) : NULL;
    if (!t && n) {
        /* Non-scalar: use the key that names it, if any. */
        struct fy_node *parent = fy_node_get_parent(n);
        if (parent && fy_node_is_mapping(parent)) {
            void *it = NULL;
            struct fy_node_pair *p;
            while ((p = fy_node_mapping_iterate(parent, &it))) {
                if (fy_node_pair_value(p) == n) {
                    t = fy_node_get_scalar_token(fy_node_pair_key(p));
                    break;
                }
            }
        }
    }
    if (t) {
        const struct fy_mark *m = fy_token_start_mark(t);
        if (m) {
            line = m->line + 1;
            col = m->column + 1;
        }
    }
    if (line)
        snprintf(buf, cap, "%s:%d:%d", w->file, line, col);
    else
        snprintf(buf, cap, "%s", w->file);
}

__attribute__((format(printf, 3, 4))) static int fail(walker *w, struct fy_node *n, const char *fmt,
                                                      ...) {
    char loc[512], msg[400];
    node_loc(w, n, loc, sizeof loc);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cf_seterr(w->err, CF_EINVAL, "%s: %s", loc, msg);
}

__attribute__((format(printf, 3, 4))) static void warn(walker *w, struct fy_node *n,
                                                       const char *fmt, ...) {
    char loc[512], msg[400];
    node_loc(w, n, loc, sizeof loc);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sb_t s = {0};
    sb_printf(&s, "%s: %s", loc, msg);
    char *t = sb_take(&s);
    push_str(&w->cfg->warnings, &w->cfg->n_warnings, t);
    free(t);
}

static const char *node_kind(struct fy_node *n) {
    if (!n) return "nothing";
    if (fy_node_is_mapping(n)) return "a mapping";
    if (fy_node_is_sequence(n)) return "a list";
    return "a scalar";
}

/* ---------------------------------------------------------- env expansion */

char *cfg_expand_env(const char *in, cf_err *err) {
    sb_t out = {0};
    for (const char *p = in; *p;) {
        if (p[0] == '$' && p[1] == '$') {
            sb_putc(&out, '$');
            p += 2;
            continue;
        }
        if (p[0] != '$' || p[1] != '{') {
            sb_putc(&out, *p++);
            continue;
        }
        const char *start = p + 2, *end = strchr(start, '}');
        if (!end) {
            sb_free(&out);
            cf_seterr(err, CF_EINVAL, "unterminated ${ in \"%s\"", in);
            return NULL;
        }
        const char *dflt = NULL;
        size_t name_len = (size_t)(end - start);
        const char *colon = memchr(start, ':', name_len);
        if (colon) {
            if (colon + 1 >= end || colon[1] != '-') {
                sb_free(&out);
                cf_seterr(err, CF_EINVAL,
                          "bad variable syntax in \"%s\" (use ${VAR} or ${VAR:-default})", in);
                return NULL;
            }
            dflt = colon + 2;
            name_len = (size_t)(colon - start);
        }
        char name[256];
        if (name_len == 0 || name_len >= sizeof name) {
            sb_free(&out);
            cf_seterr(err, CF_EINVAL, "bad variable name in \"%s\"", in);
            return NULL;
        }
        memcpy(name, start, name_len);
        name[name_len] = 0;
        for (size_t i = 0; i < name_len; i++) {
            char c = name[i];
            if (!(c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                  (i && c >= '0' && c <= '9'))) {
                sb_free(&out);
                cf_seterr(err, CF_EINVAL, "bad variable name \"%s\"", name);
                return NULL;
            }
        }
        const char *val = getenv(name);
        if (val && (*val || !dflt))
            sb_append(&out, val);
        else if (dflt)
            sb_appendn(&out, dflt, (size_t)(end - dflt));
        else {
            sb_free(&out);
            cf_seterr(err, CF_ENOTFOUND,
                      "environment variable %s is not set (set it, or write ${%s:-default})", name,
                      name);
            return NULL;
        }
        p = end + 1;
    }
    return sb_take(&out);
}

/* --------------------------------------------------------- scalar readers */

/* Env-expanded scalar text (malloc'd) or NULL with the error set. A YAML
 * null (`~`, `null`, empty) gives "" only when ALLOW_NULL. */
static char *scalar(walker *w, struct fy_node *n, const char *key) {
    if (!n || !fy_node_is_scalar(n)) {
        fail(w, n, "%s: expected a scalar value, found %s", key, node_kind(n));
        return NULL;
    }
    const char *s = fy_node_get_scalar0(n);
    if (!s) s = "";
    cf_err e = {0};
    char *v = cfg_expand_env(s, &e);
    if (!v) fail(w, n, "%s: %s", key, e.msg);
    return v;
}

static bool is_plain_null(struct fy_node *n) {
    if (!n) return true;
    if (!fy_node_is_scalar(n) || fy_node_get_style(n) != FYNS_PLAIN) return false;
    const char *s = fy_node_get_scalar0(n);
    return !s || !*s || !strcmp(s, "~") || !strcasecmp(s, "null");
}

static int rd_str(walker *w, struct fy_node *n, const char *key, char **dst) {
    if (is_plain_null(n)) {
        set_str(dst, NULL);
        return 0;
    }
    char *v = scalar(w, n, key);
    if (!v) return -1;
    free(*dst);
    *dst = v;
    return 0;
}

static int rd_enum(walker *w, struct fy_node *n, const char *key, char **dst,
                   const char *const *allowed) {
    char *v = scalar(w, n, key);
    if (!v) return -1;
    for (const char *const *a = allowed; *a; a++) {
        if (!strcmp(v, *a)) {
            free(*dst);
            *dst = v;
            return 0;
        }
    }
    sb_t s = {0};
    for (const char *const *a = allowed; *a; a++)
        sb_printf(&s, "%s%s", a == allowed ? "" : ", ", *a);
    int rc = fail(w, n, "%s: \"%s\" is not one of: %s", key, v, sb_str(&s));
    sb_free(&s);
    free(v);
    return rc;
}

static int rd_i64(walker *w, struct fy_node *n, const char *key, int64_t *dst, int64_t lo,
                  int64_t hi) {
    char *v = scalar(w, n, key);
    if (!v) return -1;
    errno = 0;
    char *end;
    long long x = strtoll(v, &end, 10);
    int rc = 0;
    if (!*v || *end || errno)
        rc = fail(w, n, "%s: expected an integer, found \"%s\"", key, v);
    else if (x < lo || x > hi)
        rc = fail(w, n, "%s: %lld is out of range [%lld, %lld]", key, x, (long long)lo,
                  (long long)hi);
    else
        *dst = x;
    free(v);
    return rc;
}

static int rd_int(walker *w, struct fy_node *n, const char *key, int *dst, int lo, int hi) {
    int64_t x = *dst;
    if (rd_i64(w, n, key, &x, lo, hi)) return -1;
    *dst = (int)x;
    return 0;
}

static int rd_num(walker *w, struct fy_node *n, const char *key, double *dst, double lo,
                  double hi) {
    char *v = scalar(w, n, key);
    if (!v) return -1;
    errno = 0;
    char *end;
    double x = strtod(v, &end);
    int rc = 0;
    if (!*v || *end || errno || !isfinite(x))
        rc = fail(w, n, "%s: expected a number, found \"%s\"", key, v);
    else if (x < lo || x > hi)
        rc = fail(w, n, "%s: %g is out of range [%g, %g]", key, x, lo, hi);
    else
        *dst = x;
    free(v);
    return rc;
}

static int rd_bool(walker *w, struct fy_node *n, const char *key, bool *dst) {
    char *v = scalar(w, n, key);
    if (!v) return -1;
    int rc = 0;
    if (!strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on"))
        *dst = true;
    else if (!strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcasecmp(v, "off"))
        *dst = false;
    else
        rc = fail(w, n, "%s: expected true or false, found \"%s\"", key, v);
    free(v);
    return rc;
}

/* A list of strings; a single scalar counts as a one-element list. */
static int rd_str_list(walker *w, struct fy_node *n, const char *key, char ***arr, size_t *cnt) {
    if (is_plain_null(n)) return 0;
    if (fy_node_is_scalar(n)) {
        char *v = scalar(w, n, key);
        if (!v) return -1;
        push_str(arr, cnt, v);
        free(v);
        return 0;
    }
    if (!fy_node_is_sequence(n))
        return fail(w, n, "%s: expected a list, found %s", key, node_kind(n));
    void *it = NULL;
    struct fy_node *item;
    while ((item = fy_node_sequence_iterate(n, &it))) {
        char *v = scalar(w, item, key);
        if (!v) return -1;
        push_str(arr, cnt, v);
        free(v);
    }
    return 0;
}

/* Iterates a mapping: for each pair calls FN(w, key, keynode, value, ctx). */
typedef int (*pair_fn)(walker *w, const char *key, struct fy_node *knode, struct fy_node *v,
                       void *ctx);

static int each_pair(walker *w, struct fy_node *map, const char *what, pair_fn fn, void *ctx) {
    if (is_plain_null(map)) return 0;
    if (!fy_node_is_mapping(map))
        return fail(w, map, "%s: expected a mapping, found %s", what, node_kind(map));
    void *it = NULL;
    struct fy_node_pair *p;
    while ((p = fy_node_mapping_iterate(map, &it))) {
        struct fy_node *k = fy_node_pair_key(p);
        if (!k || !fy_node_is_scalar(k)) return fail(w, k, "%s: keys must be plain strings", what);
        const char *key = fy_node_get_scalar0(k);
        if (fn(w, key ? key : "", k, fy_node_pair_value(p), ctx)) return -1;
    }
    return 0;
}

#define UNKNOWN(section)                                                                           \
    do {                                                                                           \
        warn(w, kn, "unknown key \"%s\" in %s (ignored)", key, section);                           \
        return 0;                                                                                  \
    } while (0)

/* ----------------------------------------------------------------- models */

static cfg_model *add_model(cfg_t *c, const char *name) {
    for (size_t i = 0; i < c->n_models; i++)
        if (!strcmp(c->models[i].name, name)) return &c->models[i];
    cfg_model *m = realloc(c->models, (c->n_models + 1) * sizeof *m);
    if (!m) abort();
    c->models = m;
    cfg_model *x = &c->models[c->n_models++];
    memset(x, 0, sizeof *x);
    x->name = xstrdup(name);
    x->backend = xstrdup("local");
    x->price_input = x->price_output = x->price_cached_input = -1;
    x->connect_timeout_ms = 10000;
    x->first_byte_timeout_ms = 60000;
    x->idle_timeout_ms = 30000;
    return x;
}

static const char *const BACKENDS[] = {"local", "openai", "anthropic", "cohere", NULL};

static int model_fields(walker *w, const char *key, struct fy_node *kn, struct fy_node *v,
                        void *ctx);

static int price_pair(walker *w, const char *key, struct fy_node *kn, struct fy_node *v,
                      void *ctx) {
    cfg_model *m = ctx;
    if (!strcmp(key, "input")) return rd_num(w, v, "price.input", &m->price_input, 0, 1e6);
    if (!strcmp(key, "output")) return rd_num(w, v, "price.output", &m->price_output, 0, 1e6);
    if (!strcmp(key, "cached_input"))
        return rd_num(w, v, "price.cached_input", &m->price_cached_input, 0, 1e6);
    UNKNOWN("price");
}

static int timeout_pair(walker *w, const char *key, struct fy_node *kn, struct fy_node *v,
                        void *ctx) {
    cfg_model *m = ctx;
    if (!strcmp(key, "connect_ms"))
        return rd_int(w, v, "timeouts.connect_ms", &m->connect_timeout_ms, 1, 3600000);
    if (!strcmp(key, "first_byte_ms"))
        return rd_int(w, v, "timeouts.first_byte_ms", &m->first_byte_timeout_ms, 1, 3600000);
    if (!strcmp(key, "idle_ms"))
        return rd_int(w, v, "timeouts.idle_ms", &m->idle_timeout_ms, 1, 3600000);
    UNKNOWN("timeouts");
}

static int header_pair(walker *w, const char *key, struct fy_node *kn, struct fy_node *v,
                       void *ctx) {
    cfg_model *m = ctx;
    char *val = scalar(w, v, key);
    if (!val) return -1;
    size_t n = m->n_headers;
    push_str(&m->header_names, &n, key);
    push_str(&m->header_values, &m->n_headers, val);
    free(val);
    return 0;
}

/* An inline model mapping used as a fallback: named by its `name`. Returns
 * the new model's name in *OUT_NAME (owned by the config). */
static int inline_model(walker *w, struct fy_node *map, const char **out_name) {
    struct fy_node *nn = fy_node_mapping_lookup_by_string(map, "name", FY_NT);
    if (!nn) return fail(w, map, "fallback: an inline model needs a name");
    char *name = scalar(w, nn, "name");
    if (!name) return -1;
    cfg_model *m = add_model(w->cfg, name);
    free(name);
    size_t idx = (size_t)(m - w->cfg->models);
    if (each_pair(w, map, "fallback", model_fields, (void *)idx)) return -1;
    *out_name = w->cfg->models[idx].name;
    return 0;
}

static int add_fallbacks(walker *w, size_t idx, struct fy_node *v) {
    if (is_plain_null(v)) return 0;
    struct fy_node *items[64];
    size_t n = 0;
    if (fy_node_is_sequence(v)) {
        void *it = NULL;
        struct fy_node *item;
        while ((item = fy_node_sequence_iterate(v, &it))) {
            if (n == 64) return fail(w, v, "fallback: at most 64 entries");
            items[n++] = item;
        }
    } else {
        items[n++] = v;
    }
    for (size_t i = 0; i < n; i++) {
        const char *name = NULL;
        char *tmp = NULL;
        if (fy_node_is_mapping(items[i])) {
            if (inline_model(w, items[i], &name)) return -1;
        } else {
            tmp = scalar(w, items[i], "fallback");
            if (!tmp) return -1;
            name = tmp;
        }
        cfg_model *m = &w->cfg->models[idx]; /* re-fetch: inline_model may realloc */
        push_str(&m->fallback, &m->n_fallback, name);
        free(tmp);
    }
    return 0;
}

/* CTX carries the model's index (models may be reallocated while walking). */
static int model_fields(walker *w, const char *key, struct fy_node *kn, struct fy_node *v,
                        void *ctx) {
    size_t idx = (size_t)ctx;
#define M (&w->cfg->models[idx])
    if (!strcmp(key, "name")) {
        /* In models.NAME form `name` is the upstream id unless `model` is set. */
        char *val = NULL;
        if (rd_str(w, v, "name", &val)) return -1;
        if (!M->model)
            M->model = val;
        else
            free(val);
        return 0;
    }
    if (!strcmp(key, "backend")) return rd_enum(w, v, "backend", &M->backend, BACKENDS);
    if (!strcmp(key, "model") || !strcmp(key, "path")) return rd_str(w, v, key, &M->model);
    if (!strcmp(key, "base_url")) return rd_str(w, v, "base_url", &M->base_url);
    if (!strcmp(key, "api_key")) {
        if (is_plain_null(v) || !fy_node_is_scalar(v)) return rd_str(w, v, "api_key", &M->api_key);
        cf_err e = {0};
        char *val = cfg_expand_env(fy_node_get_scalar0(v), &e);
        if (!val && e.code == CF_ENOTFOUND) {
            /* Remember which variable; the model is unusable until it is set. */
            const char *s = strstr(fy_node_get_scalar0(v), "${");
            size_t n = s ? strcspn(s + 2, "}:") : 0;
            free(M->api_key_env_missing);
            M->api_key_env_missing = strndup(s ? s + 2 : "?", s ? n : 1);
            warn(w, v, "model \"%s\": api_key: %s; the model is disabled until it is set", M->name,
                 e.msg);
            return 0;
        }
        if (!val) return fail(w, v, "api_key: %s", e.msg);
        free(M->api_key);
        M->api_key = val;
        return 0;
    }
    if (!strcmp(key, "context_window"))
        return rd_i64(w, v, "context_window", &M->context_window, 0, 100000000);
    if (!strcmp(key, "price")) return each_pair(w, v, "price", price_pair, M);
    if (!strcmp(key, "timeouts")) return each_pair(w, v, "timeouts", timeout_pair, M);
    if (!strcmp(key, "headers")) return each_pair(w, v, "headers", header_pair, M);
    if (!strcmp(key, "fallback")) return add_fallbacks(w, idx, v);
    UNKNOWN("model");
#undef M
}

static int models_pair(walker *w, const char *key, struct fy_node *kn, struct fy_node *v,
                       void *ctx) {
    cfg_model *m = add_model(w->cfg, key);
    size_t idx = (size_t)(m - w->cfg->models);
    if (!fy_node_is_mapping(v))
        return fail(w, v, "models.%s: expected a mapping, found %s", key, node_kind(v));
    /* An explicit `model:` wins over `name:`; read it first. */
    struct fy_node *mn = fy_node_mapping_lookup_by_string(v, "model", FY_NT);
    if (mn && rd_str(w, mn, "model", &w->cfg->models[idx].model)) return -1;
    return each_pair(w, v, key, model_fields, (void *)idx);
}

/* The seed's short form: `model: {backend, name, fallback}`. */
static int seed_model(walker *w, struct fy_node *v) {
    if (!fy_node_is_mapping(v))
        return fail(w, v, "model: expected a mapping, found %s", node_kind(v));
    struct fy_node *nn = fy_node_mapping_lookup_by_string(v, "name", FY_NT);
    char *name = nn ? scalar(w, nn, "name") : xstrdup("default");
    if (!name) return -1;
    cfg_model *m = add_model(w->cfg, name);
    size_t idx = (size_t)(m - w->cfg->models);
    if (!w->cfg->default_model) w->cfg->default_model = xstrdup(name);
    free(name);
    return each_pair(w, v, "model", model_fields, (void *)idx);
}

/* --------------------------------------------------------- other sections */

static int prompts_pair(walker *w, const char *key, struct fy_node *kn, struct fy_node *v,
                        void *ctx) {
    char *text = scalar(w, v, key);
    if (!text) return -1;
    cfg_t *c = w->cfg;
    cfg_prompt *p = realloc(c->prompts, (c->n_prompts + 1) * sizeof *p);
    if (!p) abort();
    c->prompts = p;
    c->prompts[c->n_prompts].name = xstrdup(key);
    c->prompts[c->n_prompts].text = text;
    c->n_prompts++;
    return 0;
}

static int router_pair(walker *w, const char *key, struct fy_node *kn, struct fy_node *v,
                       void *ctx) {
    cfg_t *c = w->cfg;
    if (!strcmp(key, "max_retries"))
        return rd_int(w, v, "router.max_retries", &c->router.max_retries, 0, 100);
    if (!strcmp(key, "backoff_initial_ms"))
        return rd_int(w, v, "router.backoff_initial_ms", &c->router.backoff_initial_ms, 0, 600000);
    if (!strcmp(key, "backoff_max_ms"))
        return rd_int(w, v, "router.backoff_max_ms", &c->router.backoff_max_ms, 0, 3600000);
    if (!strcmp(key, "cooldown_ms"))
        return rd_int(w, v, "router.cooldown_ms", &c->router.cooldown_ms, 0, 86400000);
    if (!strcmp(key, "failure_threshold"))
        return rd_int(w, v, "router.failure_threshold", &c->router.failure_threshold, 1, 1000);
    UNKNOWN("router");
}

static int variant_pair(walker *w, const char *key, struct fy_node *kn, struct fy_node *v,
                        void *ctx) {
    cfg_ab_variant *var = ctx;
    if (!strcmp(key, "model")) return rd_str(w, v, "variants.model", &var->model);
    if (!strcmp(key, "weight")) return rd_num(w, v, "variants.weight", &var->weight, 0, 1e9);
    UNKNOWN("ab variant");
}

static int ab_fields(walker *w, const char *key, struct fy_node *kn, struct fy_node *v, void *ctx) {
    cfg_ab *ab = ctx;
    if (strcmp(key, "variants")) UNKNOWN("ab");
    if (!fy_node_is_sequence(v))
        return fail(w, v, "ab.%s.variants: expected a list, found %s", ab->name, node_kind(v));
    void *it = NULL;
    struct fy_node *item;
    while ((item = fy_node_sequence_iterate(v, &it))) {
        cfg_ab_variant *nv = realloc(ab->variants, (ab->n_variants + 1) * sizeof *nv);
        if (!nv) abort();
        ab->variants = nv;
        cfg_ab_variant *var = &ab->variants[ab->n_variants++];
        var->model = NULL;
        var->weight = 1;
        if (each_pair(w, item, "ab variant", variant_pair, var)) return -1;
        if (!var->model) return fail(w, item, "ab.%s: each variant needs a model", ab->name);
    }
    if (ab->n_variants < 2) return fail(w, v, "ab.%s: needs at least two variants", ab->name);
    return 0;
}

static int ab_pair(walker *w, const char *key, struct fy_node *kn, struct fy_node *v, void *ctx) {
    cfg_t *c = w->cfg;
    cfg_ab *a = realloc(c->ab, (c->n_ab + 1) * sizeof *a);
    if (!a) abort();
    c->ab = a;
    cfg_ab *ab = &c->ab[c->n_ab++];
    memset(ab, 0, sizeof *ab);
    ab->name = xstrdup(key);
    return each_pair(w, v, key, ab_fields, ab);
}

static int cache_pair(walker *w, const char *key, struct fy_node *kn, struct fy_node *v,
                      void *ctx) {
    cfg_t *c = w->cfg;
    if (!strcmp(key, "enabled")) return rd_bool(w, v, "cache.enabled", &c->cache.enabled);
    if (!strcmp(key, "always")) return rd_bool(w, v, "cache.always", &c->cache.always);
    if (!strcmp(key, "path")) return rd_str(w, v, "cache.path", &c->cache.path);
    if (!strcmp(key, "ttl_s"))
        return rd_i64(w, v, "cache.ttl_s", &c->cache.ttl_s, 0, INT64_MAX / 1000);
    if (!strcmp(key, "max_entries"))
        return rd_i64(w, v, "cache.max_entries", &c->cache.max_entries, 0, INT64_MAX);
    UNKNOWN("cache");
}

static int budget_pair(walker *w, const char *key, struct fy_node *kn, struct fy_node *v,
                       void *ctx) {
    cfg_t *c = w->cfg;
    static const char *const modes[] = {"refuse", "drop_oldest", NULL};
    if (!strcmp(key, "max_tokens_per_conversation"))
        return rd_i64(w, v, "budget.max_tokens_per_conversation",
                      &c->budget.max_tokens_per_conversation, 0, INT64_MAX);
    if (!strcmp(key, "warn_ratio"))
        return rd_num(w, v, "budget.warn_ratio", &c->budget.warn_ratio, 0, 1);
    if (!strcmp(key, "on_exceed"))
        return rd_enum(w, v, "budget.on_exceed", &c->budget.on_exceed, modes);
    UNKNOWN("budget");
}

static int server_pair(walker *w, const char *key, struct fy_node *kn, struct fy_node *v,
                       void *ctx) {
    cfg_t *c = w->cfg;
    if (!strcmp(key, "host")) return rd_str(w, v, "server.host", &c->server.host);
    if (!strcmp(key, "port")) return rd_int(w, v, "server.port", &c->server.port, 1, 65535);
    if (!strcmp(key, "threads")) return rd_int(w, v, "server.threads", &c->server.threads, 1, 4096);
    if (!strcmp(key, "rate_limit_rpm"))
        return rd_int(w, v, "server.rate_limit_rpm", &c->server.rate_limit_rpm, 0, 10000000);
    if (!strcmp(key, "max_body_bytes"))
        return rd_i64(w, v, "server.max_body_bytes", &c->server.max_body_bytes, 1024, INT64_MAX);
    if (!strcmp(key, "api_keys"))
        return rd_str_list(w, v, "server.api_keys", &c->server.api_keys, &c->server.n_api_keys);
    if (!strcmp(key, "cors_origins"))
        return rd_str_list(w, v, "server.cors_origins", &c->server.cors_origins,
                           &c->server.n_cors_origins);
    UNKNOWN("server");
}

static int storage_pair(walker *w, const char *key, struct fy_node *kn, struct fy_node *v,
                        void *ctx) {
    cfg_t *c = w->cfg;
    if (!strcmp(key, "data_dir")) return rd_str(w, v, "storage.data_dir", &c->storage.data_dir);
    if (!strcmp(key, "db")) return rd_str(w, v, "storage.db", &c->storage.db);
    if (!strcmp(key, "models_dir"))
        return rd_str(w, v, "storage.models_dir", &c->storage.models_dir);
    UNKNOWN("storage");
}

static int engine_pair(walker *w, const char *key, struct fy_node *kn, struct fy_node *v,
                       void *ctx) {
    cfg_t *c = w->cfg;
    static const char *const kv[] = {"f16", "f32", NULL};
    if (!strcmp(key, "threads")) return rd_int(w, v, "engine.threads", &c->engine.threads, 0, 1024);
    if (!strcmp(key, "ctx")) return rd_int(w, v, "engine.ctx", &c->engine.ctx, 0, 10000000);
    if (!strcmp(key, "batch_size"))
        return rd_int(w, v, "engine.batch_size", &c->engine.batch_size, 1, 65536);
    if (!strcmp(key, "kv_type")) return rd_enum(w, v, "engine.kv_type", &c->engine.kv_type, kv);
    if (!strcmp(key, "kv_dir")) return rd_str(w, v, "engine.kv_dir", &c->engine.kv_dir);
    if (!strcmp(key, "kv_budget_mb"))
        return rd_i64(w, v, "engine.kv_budget_mb", &c->engine.kv_budget_mb, 0,
                      INT64_MAX / (1 << 20));
    UNKNOWN("engine");
}

static int streaming_pair(walker *w, const char *key, struct fy_node *kn, struct fy_node *v,
                          void *ctx) {
    static const char *const g[] = {"token", "word", "sentence", NULL};
    if (!strcmp(key, "granularity"))
        return rd_enum(w, v, "streaming.granularity", &w->cfg->streaming.granularity, g);
    UNKNOWN("streaming");
}

static int top_pair(walker *w, const char *key, struct fy_node *kn, struct fy_node *v, void *ctx) {
    cfg_t *c = w->cfg;
    static const char *const levels[] = {"debug", "info", "warn", "error", "off", NULL};
    if (!strcmp(key, "model")) return seed_model(w, v);
    if (!strcmp(key, "models")) return each_pair(w, v, "models", models_pair, NULL);
    if (!strcmp(key, "default_model")) return rd_str(w, v, "default_model", &c->default_model);
    if (!strcmp(key, "prompts")) return each_pair(w, v, "prompts", prompts_pair, NULL);
    if (!strcmp(key, "router")) return each_pair(w, v, "router", router_pair, NULL);
    if (!strcmp(key, "ab")) return each_pair(w, v, "ab", ab_pair, NULL);
    if (!strcmp(key, "cache")) return each_pair(w, v, "cache", cache_pair, NULL);
    if (!strcmp(key, "budget")) return each_pair(w, v, "budget", budget_pair, NULL);
    if (!strcmp(key, "server")) return each_pair(w, v, "server", server_pair, NULL);
    if (!strcmp(key, "storage")) return each_pair(w, v, "storage", storage_pair, NULL);
    if (!strcmp(key, "engine")) return each_pair(w, v, "engine", engine_pair, NULL);
    if (!strcmp(key, "streaming")) return each_pair(w, v, "streaming", streaming_pair, NULL);
    if (!strcmp(key, "log_level")) return rd_enum(w, v, "log_level", &c->log_level, levels);
    UNKNOWN("the top level");
}

/* Cross-references: fallbacks, A/B variants and default_model must name
 * models that exist; server keys are hashed. */
static int check_refs(walker *w) {
    cfg_t *c = w->cfg;
    for (size_t i = 0; i < c->n_models; i++)
        for (size_t j = 0; j < c->models[i].n_fallback; j++)
            if (!cfg_find_model(c, c->models[i].fallback[j]))
                return cf_seterr(w->err, CF_EINVAL,
                                 "%s: model \"%s\" falls back to unknown model \"%s\"", w->file,
                                 c->models[i].name, c->models[i].fallback[j]);
    for (size_t i = 0; i < c->n_ab; i++)
        for (size_t j = 0; j < c->ab[i].n_variants; j++)
            if (!cfg_find_model(c, c->ab[i].variants[j].model))
                return cf_seterr(w->err, CF_EINVAL, "%s: ab \"%s\" names unknown model \"%s\"",
                                 w->file, c->ab[i].name, c->ab[i].variants[j].model);
    if (c->default_model && !cfg_find_model(c, c->default_model)) {
        bool is_ab = false;
        for (size_t i = 0; i < c->n_ab; i++)
            is_ab |= !strcmp(c->ab[i].name, c->default_model);
        if (!is_ab)
            return cf_seterr(w->err, CF_EINVAL,
                             "%s: default_model \"%s\" is not a configured model", w->file,
                             c->default_model);
    }
    return 0;
}

/* ------------------------------------------------------------ load / free */

cfg_t *cfg_defaults(void) {
    cfg_t *c = xcalloc(1, sizeof *c);
    c->router.max_retries = 2;
    c->router.backoff_initial_ms = 250;
    c->router.backoff_max_ms = 8000;
    c->router.cooldown_ms = 30000;
    c->router.failure_threshold = 3;
    c->cache.enabled = true;
    c->cache.path = xstrdup("cache.db");
    c->cache.ttl_s = 7 * 24 * 3600;
    c->cache.max_entries = 10000;
    c->budget.warn_ratio = 0.8;
    c->budget.on_exceed = xstrdup("refuse");
    c->server.host = xstrdup("127.0.0.1");
    c->server.port = 8080;
    c->server.threads = 96;
    c->server.rate_limit_rpm = 0;
    c->server.max_body_bytes = 8 << 20;
    c->storage.data_dir = xstrdup("./data");
    c->storage.db = xstrdup("confab.db");
    c->storage.models_dir = xstrdup("models");
    c->engine.kv_type = xstrdup("f16");
    c->engine.batch_size = 512;
    c->streaming.granularity = xstrdup("token");
    return c;
}

/* Collects libfyaml's diagnostics into a buffer instead of stderr. */
static void diag_out(struct fy_diag *d, void *user, const char *buf, size_t len) {
    (void)d;
    sb_appendn(user, buf, len);
}

/* True when TEXT holds nothing but blank lines and # comments. */
static bool only_comments(const char *text, size_t len) {
    bool in_comment = false;
    for (size_t i = 0; i < len; i++) {
        char ch = text[i];
        if (ch == '\n')
            in_comment = false;
        else if (ch == '#')
            in_comment = true;
        else if (!in_comment && ch != ' ' && ch != '\t' && ch != '\r')
            return false;
    }
    return true;
}

cfg_t *cfg_load_string(const char *yaml, size_t len, const char *name, cf_err *err) {
    sb_t diagbuf = {0};
    struct fy_diag_cfg dcfg;
    fy_diag_cfg_default(&dcfg);
    dcfg.fp = NULL;
    dcfg.output_fn = diag_out;
    dcfg.user = &diagbuf;
    dcfg.colorize = false;
    struct fy_diag *diag = fy_diag_create(&dcfg);
    if (diag) fy_diag_set_collect_errors(diag, true);
    struct fy_parse_cfg pcfg = {.flags = FYPCF_DEFAULT_PARSE, .diag = diag};
    struct fy_document *doc = fy_document_build_from_string(&pcfg, yaml, len);
    if (!doc) {
        /* First collected error, with its location. */
        struct fy_diag_error *de;
        void *it = NULL;
        de = diag ? fy_diag_errors_iterate(diag, &it) : NULL;
        if (!de && only_comments(yaml, len)) {
            /* libfyaml yields no document for an empty stream: defaults. */
            if (diag) fy_diag_destroy(diag);
            sb_free(&diagbuf);
            cfg_t *c = cfg_defaults();
            c->source = xstrdup(name);
            return c;
        }
        /* Collected diagnostics carry 1-based positions already. */
        if (de)
            cf_seterr(err, CF_EINVAL, "%s:%d:%d: YAML syntax error: %s", name, de->line, de->column,
                      de->msg);
        else
            cf_seterr(err, CF_EINVAL, "%s: YAML syntax error%s%s", name, diagbuf.len ? ": " : "",
                      sb_str(&diagbuf));
        if (diag) fy_diag_destroy(diag);
        sb_free(&diagbuf);
        return NULL;
    }
    cfg_t *c = cfg_defaults();
    c->source = xstrdup(name);
    walker w = {c, name, err};
    struct fy_node *root = fy_document_root(doc);
    int rc = 0;
    if (root && !is_plain_null(root)) rc = each_pair(&w, root, "config", top_pair, NULL);
    if (!rc) rc = check_refs(&w);
    fy_document_destroy(doc);
    if (diag) fy_diag_destroy(diag);
    sb_free(&diagbuf);
    if (rc) {
        cfg_free(c);
        return NULL;
    }
    return c;
}

cfg_t *cfg_load_file(const char *path, cf_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        cf_seterr(err, CF_ENOTFOUND, "cannot open config %s: %s", path, strerror(errno));
        return NULL;
    }
    sb_t s = {0};
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        sb_appendn(&s, buf, n);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        sb_free(&s);
        cf_seterr(err, CF_EIO, "cannot read config %s", path);
        return NULL;
    }
    cfg_t *c = cfg_load_string(sb_str(&s), s.len, path, err);
    sb_free(&s);
    return c;
}

static bool file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

cfg_t *cfg_load(const char *explicit_path, cf_err *err) {
    if (explicit_path) return cfg_load_file(explicit_path, err);
    const char *env = getenv("CONFAB_CONFIG");
    if (env && *env) return cfg_load_file(env, err);
    if (file_exists("confab.yaml")) return cfg_load_file("confab.yaml", err);
    const char *home = getenv("HOME");
    if (home && *home) {
        char p[4096];
        snprintf(p, sizeof p, "%s/.config/confab/config.yaml", home);
        if (file_exists(p)) return cfg_load_file(p, err);
    }
    return cfg_defaults();
}

static void free_strs(char **a, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(a[i]);
    free(a);
}

void cfg_free(cfg_t *c) {
    if (!c) return;
    for (size_t i = 0; i < c->n_models; i++) {
        cfg_model *m = &c->models[i];
        free(m->name);
        free(m->backend);
        free(m->model);
        free(m->base_url);
        free(m->api_key);
        free(m->api_key_env_missing);
        free_strs(m->fallback, m->n_fallback);
        free_strs(m->header_names, m->n_headers);
        free_strs(m->header_values, m->n_headers);
    }
    free(c->models);
    for (size_t i = 0; i < c->n_prompts; i++) {
        free(c->prompts[i].name);
        free(c->prompts[i].text);
    }
    free(c->prompts);
    for (size_t i = 0; i < c->n_ab; i++) {
        for (size_t j = 0; j < c->ab[i].n_variants; j++)
            free(c->ab[i].variants[j].model);
        free(c->ab[i].variants);
        free(c->ab[i].name);
    }
    free(c->ab);
    free(c->source);
    free(c->default_model);
    free(c->log_level);
    free(c->cache.path);
    free(c->budget.on_exceed);
    free(c->server.host);
    free_strs(c->server.api_keys, c->server.n_api_keys);
    free_strs(c->server.cors_origins, c->server.n_cors_origins);
    free(c->storage.data_dir);
    free(c->storage.db);
    free(c->storage.models_dir);
    free(c->engine.kv_type);
    free(c->engine.kv_dir);
    free(c->streaming.granularity);
    free_strs(c->warnings, c->n_warnings);
    free(c);
}

char *cfg_data_path(const cfg_t *c, const char *rel) { return path_join(c->storage.data_dir, rel); }

void cfg_settle_kv_dir(cfg_t *c, const char *data_dir) {
    char *p = path_join(data_dir, c->engine.kv_dir ? c->engine.kv_dir : "kv");
    free(c->engine.kv_dir);
    c->engine.kv_dir = p;
}

cfg_model *cfg_add_model(cfg_t *c, const char *name, const char *backend, const char *model) {
    cfg_model *m = add_model(c, name);
    set_str(&m->backend, backend);
    set_str(&m->model, model);
    return m;
}

const cfg_model *cfg_find_model(const cfg_t *c, const char *name) {
    for (size_t i = 0; name && i < c->n_models; i++)
        if (!strcmp(c->models[i].name, name)) return &c->models[i];
    return NULL;
}

const cfg_prompt *cfg_find_prompt(const cfg_t *c, const char *name) {
    for (size_t i = 0; name && i < c->n_prompts; i++)
        if (!strcmp(c->prompts[i].name, name)) return &c->prompts[i];
    return NULL;
}

/* --------------------------------------------------------------- to JSON */

static json_t *jstr(const char *s) { return s ? json_string(s) : json_null(); }

static json_t *jstrs(char **a, size_t n) {
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_string(a[i]));
    return arr;
}

char *cfg_to_json(const cfg_t *c) {
    json_t *o = json_object();
    json_object_set_new(o, "source", jstr(c->source));
    json_object_set_new(o, "default_model", jstr(c->default_model));
    json_t *models = json_object();
    for (size_t i = 0; i < c->n_models; i++) {
        const cfg_model *m = &c->models[i];
        json_t *jm = json_object();
        json_object_set_new(jm, "backend", jstr(m->backend));
        json_object_set_new(jm, "model", jstr(m->model));
        json_object_set_new(jm, "base_url", jstr(m->base_url));
        json_object_set_new(jm, "api_key",
                            m->api_key ? json_string(*m->api_key ? "***" : "") : json_null());
        if (m->api_key_env_missing)
            json_object_set_new(jm, "api_key_missing_env", json_string(m->api_key_env_missing));
        json_object_set_new(jm, "context_window", json_integer(m->context_window));
        json_t *price = json_object();
        if (m->price_input >= 0) json_object_set_new(price, "input", json_real(m->price_input));
        if (m->price_output >= 0) json_object_set_new(price, "output", json_real(m->price_output));
        if (m->price_cached_input >= 0)
            json_object_set_new(price, "cached_input", json_real(m->price_cached_input));
        json_object_set_new(jm, "price", price);
        json_object_set_new(jm, "fallback", jstrs(m->fallback, m->n_fallback));
        json_object_set_new(jm, "timeouts",
                            json_pack("{s:i,s:i,s:i}", "connect_ms", m->connect_timeout_ms,
                                      "first_byte_ms", m->first_byte_timeout_ms, "idle_ms",
                                      m->idle_timeout_ms));
        json_t *h = json_object();
        for (size_t k = 0; k < m->n_headers; k++)
            json_object_set_new(h, m->header_names[k], json_string("***"));
        json_object_set_new(jm, "headers", h);
        json_object_set_new(models, m->name, jm);
    }
    json_object_set_new(o, "models", models);
    json_t *prompts = json_object();
    for (size_t i = 0; i < c->n_prompts; i++)
        json_object_set_new(prompts, c->prompts[i].name, json_string(c->prompts[i].text));
    json_object_set_new(o, "prompts", prompts);
    json_t *ab = json_object();
    for (size_t i = 0; i < c->n_ab; i++) {
        json_t *vars = json_array();
        for (size_t j = 0; j < c->ab[i].n_variants; j++)
            json_array_append_new(vars, json_pack("{s:s,s:f}", "model", c->ab[i].variants[j].model,
                                                  "weight", c->ab[i].variants[j].weight));
        json_object_set_new(ab, c->ab[i].name, json_pack("{s:o}", "variants", vars));
    }
    json_object_set_new(o, "ab", ab);
    json_object_set_new(o, "router",
                        json_pack("{s:i,s:i,s:i,s:i,s:i}", "max_retries", c->router.max_retries,
                                  "backoff_initial_ms", c->router.backoff_initial_ms,
                                  "backoff_max_ms", c->router.backoff_max_ms, "cooldown_ms",
                                  c->router.cooldown_ms, "failure_threshold",
                                  c->router.failure_threshold));
    json_object_set_new(o, "cache",
                        json_pack("{s:b,s:b,s:s,s:I,s:I}", "enabled", c->cache.enabled, "always",
                                  c->cache.always, "path", c->cache.path, "ttl_s",
                                  (json_int_t)c->cache.ttl_s, "max_entries",
                                  (json_int_t)c->cache.max_entries));
    json_object_set_new(o, "budget",
                        json_pack("{s:I,s:f,s:s}", "max_tokens_per_conversation",
                                  (json_int_t)c->budget.max_tokens_per_conversation, "warn_ratio",
                                  c->budget.warn_ratio, "on_exceed", c->budget.on_exceed));
    json_t *keys = json_array();
    for (size_t i = 0; i < c->server.n_api_keys; i++)
        json_array_append_new(keys, json_string("***"));
    json_object_set_new(
        o, "server",
        json_pack("{s:s,s:i,s:i,s:i,s:I,s:o,s:o}", "host", c->server.host, "port", c->server.port,
                  "threads", c->server.threads, "rate_limit_rpm", c->server.rate_limit_rpm,
                  "max_body_bytes", (json_int_t)c->server.max_body_bytes, "api_keys", keys,
                  "cors_origins", jstrs(c->server.cors_origins, c->server.n_cors_origins)));
    json_object_set_new(o, "storage",
                        json_pack("{s:s,s:s,s:s}", "data_dir", c->storage.data_dir, "db",
                                  c->storage.db, "models_dir", c->storage.models_dir));
    json_object_set_new(o, "engine",
                        json_pack("{s:i,s:i,s:i,s:s,s:I}", "threads", c->engine.threads, "ctx",
                                  c->engine.ctx, "batch_size", c->engine.batch_size, "kv_type",
                                  c->engine.kv_type, "kv_budget_mb",
                                  (json_int_t)c->engine.kv_budget_mb));
    json_object_set_new(o, "streaming",
                        json_pack("{s:s}", "granularity", c->streaming.granularity));
    json_object_set_new(o, "log_level", jstr(c->log_level));
    json_object_set_new(o, "warnings", jstrs(c->warnings, c->n_warnings));
    char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
    json_decref(o);
    return s;
}
