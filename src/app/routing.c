/*
 * routing — cfg_t -> route_router; see routing.h.
 *
 * Owns: the prov_model_cfg array (pointing into cfg_t's strings), the
 * route_ab_cfg array, the router, and the "unavailable" reason strings of
 * models disabled by a missing api_key variable.
 */
#include "app/routing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/models.h"
#include "base/log.h"
#include "providers/local.h"

struct app_routing {
    const cfg_t *cfg;
    prov_model_cfg *models; /* (n_models,) */
    char **reasons;         /* (n_models,) why a model is unavailable, or NULL */
    size_t n_models;
    route_ab_cfg *ab; /* (n_ab,) */
    size_t n_ab;
    route_router *router;
    prov_local *local; /* NULL when no local model is configured */
};

/* Loads the local models; a model that cannot be loaded is marked
 * unavailable with the reason (the server still starts). */
static int load_local(app_routing *a, cf_err *err) {
    const cfg_t *cfg = a->cfg;
    prov_local_opts lo = {.n_threads = cfg->engine.threads,
                          .n_ctx = cfg->engine.ctx,
                          .kv_f32 = cfg->engine.kv_type && !strcmp(cfg->engine.kv_type, "f32"),
                          .n_batch = cfg->engine.batch_size,
                          .kv_budget_mb = cfg->engine.kv_budget_mb,
                          .state_dir = cfg->engine.kv_dir};
    for (size_t i = 0; i < cfg->n_models; i++) {
        const cfg_model *m = &cfg->models[i];
        if (strcmp(m->backend, "local")) continue;
        if (!a->local && !(a->local = prov_local_new(&lo, err))) return -1;
        /* `model` is a path or a short name in the models directory. */
        char *dir = models_dir(cfg, NULL);
        cf_err le = {0};
        char *path = models_resolve(dir, m->model ? m->model : m->name, &le);
        free(dir);
        char reason[600] = "";
        if (!path)
            snprintf(reason, sizeof reason, "%s", le.msg);
        else if (prov_local_add(a->local, m->name, path, &le))
            snprintf(reason, sizeof reason, "%s", le.msg);
        free(path);
        if (reason[0]) {
            log_warn("routing", "model %s is unavailable: %s", m->name, reason);
            a->reasons[i] = strdup(reason);
            a->models[i].unavailable = a->reasons[i];
            continue;
        }
        prov_local_counter(a->local, m->name, &a->models[i].count_tokens, &a->models[i].count_ud);
        if (!a->models[i].context_window)
            a->models[i].context_window = prov_local_n_ctx(a->local, m->name);
    }
    return 0;
}

int app_model_to_prov(const cfg_model *m, prov_model_cfg *out, cf_err *err) {
    memset(out, 0, sizeof *out);
    out->name = m->name;
    out->backend = m->backend;
    out->model = m->model;
    out->base_url = m->base_url;
    out->api_key = m->api_key;
    out->context_window = m->context_window > 0x7fffffff ? 0x7fffffff : (int)m->context_window;
    if (m->price_input >= 0 || m->price_output >= 0 || m->price_cached_input >= 0) {
        out->price.set = true;
        out->price.input = m->price_input >= 0 ? m->price_input : 0;
        out->price.output = m->price_output >= 0 ? m->price_output : 0;
        out->price.cached_input = m->price_cached_input >= 0 ? m->price_cached_input : 0;
    }
    if (m->n_fallback > PROV_MAX_FALLBACK)
        return cf_seterr(err, CF_ERANGE, "model %s: at most %d fallbacks are supported", m->name,
                         PROV_MAX_FALLBACK);
    for (size_t i = 0; i < m->n_fallback; i++)
        out->fallback[i] = m->fallback[i];
    out->n_fallback = m->n_fallback;
    out->timeouts.connect_ms = m->connect_timeout_ms;
    out->timeouts.first_byte_ms = m->first_byte_timeout_ms;
    out->timeouts.idle_ms = m->idle_timeout_ms;
    if (m->n_headers > PROV_MAX_HEADERS)
        return cf_seterr(err, CF_ERANGE, "model %s: at most %d extra headers are supported",
                         m->name, PROV_MAX_HEADERS);
    for (size_t i = 0; i < m->n_headers; i++) {
        out->headers[i].name = m->header_names[i];
        out->headers[i].value = m->header_values[i];
    }
    out->n_headers = m->n_headers;
    return 0;
}

app_routing *app_routing_new(const cfg_t *cfg, prov_io *io, cf_err *err) {
    app_routing *a = calloc(1, sizeof *a);
    if (!a) {
        cf_seterr(err, CF_ENOMEM, "out of memory");
        return NULL;
    }
    a->cfg = cfg;
    a->models = calloc(cfg->n_models ? cfg->n_models : 1, sizeof *a->models);
    a->ab = calloc(cfg->n_ab ? cfg->n_ab : 1, sizeof *a->ab);
    if (!a->models || !a->ab) {
        cf_seterr(err, CF_ENOMEM, "out of memory");
        app_routing_free(a);
        return NULL;
    }
    a->reasons = calloc(cfg->n_models ? cfg->n_models : 1, sizeof *a->reasons);
    if (!a->reasons) {
        cf_seterr(err, CF_ENOMEM, "out of memory");
        app_routing_free(a);
        return NULL;
    }
    for (size_t i = 0; i < cfg->n_models; i++) {
        if (app_model_to_prov(&cfg->models[i], &a->models[i], err)) {
            app_routing_free(a);
            return NULL;
        }
        if (cfg->models[i].api_key_env_missing) {
            char buf[256];
            snprintf(buf, sizeof buf, "no API key: environment variable %s is not set",
                     cfg->models[i].api_key_env_missing);
            a->reasons[i] = strdup(buf);
            a->models[i].unavailable = a->reasons[i];
        }
        a->n_models++;
    }
    for (size_t i = 0; i < cfg->n_ab; i++) {
        const cfg_ab *src = &cfg->ab[i];
        if (src->n_variants > ROUTE_MAX_VARIANTS) {
            cf_seterr(err, CF_ERANGE, "ab %s: at most %d variants are supported", src->name,
                      ROUTE_MAX_VARIANTS);
            app_routing_free(a);
            return NULL;
        }
        a->ab[i].name = src->name;
        for (size_t j = 0; j < src->n_variants; j++) {
            a->ab[i].variants[j].model = src->variants[j].model;
            a->ab[i].variants[j].weight = src->variants[j].weight;
        }
        a->ab[i].n_variants = src->n_variants;
        a->n_ab++;
    }
    if (load_local(a, err)) {
        app_routing_free(a);
        return NULL;
    }
    route_cfg rc = route_cfg_default();
    rc.max_retries = cfg->router.max_retries;
    rc.backoff_initial_ms = cfg->router.backoff_initial_ms;
    rc.backoff_max_ms = cfg->router.backoff_max_ms;
    rc.cooldown_ms = cfg->router.cooldown_ms;
    rc.failure_threshold = cfg->router.failure_threshold;
    a->router = route_new(&rc, a->models, a->n_models, a->ab, a->n_ab, io, err);
    if (!a->router) {
        app_routing_free(a);
        return NULL;
    }
    if (a->local) {
        prov_backend lb = prov_local_backend(a->local);
        if (route_register_backend(a->router, "local", &lb)) {
            cf_seterr(err, CF_EINVAL, "cannot register the local backend");
            app_routing_free(a);
            return NULL;
        }
    }
    return a;
}

void app_routing_free(app_routing *a) {
    if (!a) return;
    route_free(a->router);
    prov_local_free(a->local);
    for (size_t i = 0; a->reasons && i < a->n_models; i++)
        free(a->reasons[i]);
    free(a->reasons);
    free(a->models);
    free(a->ab);
    free(a);
}

route_router *app_routing_router(app_routing *a) { return a->router; }

struct prov_local *app_routing_local(app_routing *a) {
    return a->local;
}
