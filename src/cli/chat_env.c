/* chat_env — config, router and chat service for the terminal front ends;
 * see chat_env.h. The resolution of MODEL follows `confab serve -m`. */
#include "cli/chat_env.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "app/models.h"
#include "base/path.h"
#include "base/sb.h"
#include "providers/provider.h"

/* NAME without directory and without ".gguf" into OUT. */
static void env_model_name(const char *path, char *out, size_t n) {
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    size_t bl = strlen(base);
    if (bl > 5 && !strcmp(base + bl - 5, ".gguf")) bl -= 5;
    snprintf(out, n, "%.*s", (int)bl, base);
}

char *chat_env_model_names(const cfg_t *cfg) {
    sb_t sb = {0};
    for (size_t i = 0; i < cfg->n_models; i++)
        sb_printf(&sb, "%s%s", i ? ", " : "", cfg->models[i].name);
    for (size_t i = 0; i < cfg->n_ab; i++)
        sb_printf(&sb, ", %s", cfg->ab[i].name);
    char *s = strdup(sb_str(&sb));
    sb_free(&sb);
    return s;
}

static bool env_is_configured(const cfg_t *cfg, const char *name) {
    if (cfg_find_model(cfg, name)) return true;
    for (size_t i = 0; i < cfg->n_ab; i++)
        if (!strcmp(cfg->ab[i].name, name)) return true;
    return false;
}

int chat_env_open(chat_env *e, const chat_env_opts *o) {
    cf_err err = {0};
    e->cfg = cfg_load(o->config_path, &err);
    if (!e->cfg) {
        fprintf(stderr, "confab: config: %s\n", err.msg);
        return 1;
    }
    cfg_t *cfg = e->cfg;
    for (size_t i = 0; i < cfg->n_warnings; i++)
        fprintf(stderr, "warning: %s\n", cfg->warnings[i]);
    if (o->model && !env_is_configured(cfg, o->model)) {
        /* Not a configured name: a GGUF path or short name becomes a local
         * model named like the file. */
        char *dir = models_dir(cfg, NULL);
        char *path = models_resolve(dir, o->model, &err);
        free(dir);
        if (!path) {
            char *names = chat_env_model_names(cfg);
            fprintf(stderr,
                    "confab: %s: unknown model '%s': not a configured model%s%s%s, and %s\n",
                    o->cmd, o->model, *names ? " (configured: " : "", names, *names ? ")" : "",
                    err.msg);
            free(names);
            return 2;
        }
        env_model_name(o->model, e->model, sizeof e->model);
        if (cfg_find_model(cfg, e->model)) {
            /* The file's name is taken by a configured model: keep both. */
            size_t l = strlen(e->model);
            snprintf(e->model + l, sizeof e->model - l, "-local");
        }
        cfg_add_model(cfg, e->model, "local", path);
        free(path);
    } else if (o->model) {
        snprintf(e->model, sizeof e->model, "%s", o->model);
    }
    if (e->model[0]) {
        free(cfg->default_model);
        cfg->default_model = strdup(e->model);
    }
    if (!cfg->n_models) {
        /* No model configured: a GGUF already in the models directory (never
         * downloaded from here; `confab pull` or `confab serve` do that). */
        char *path = NULL;
        int st = models_ensure_default(cfg, false, NULL, NULL, NULL, &path, &err);
        if (st == MODELS_DEFAULT_FOUND) {
            env_model_name(path, e->model, sizeof e->model);
            cfg_add_model(cfg, e->model, "local", path);
            free(cfg->default_model);
            cfg->default_model = strdup(e->model);
        }
        free(path);
        if (!cfg->n_models) {
            fprintf(
                stderr,
                "confab: %s: no model configured or found in the models directory; add one to the "
                "config, give -m PATH.gguf, or run `confab pull %s`\n",
                o->cmd, MODELS_DEFAULT_SOURCE);
            return 1;
        }
    }
    if (prov_global_init(&err)) {
        fprintf(stderr, "confab: %s\n", err.msg);
        return 1;
    }
    e->prov_inited = true;
    const char *data = o->data_dir;
    if (!data)
        data = cfg->storage.data_dir && *cfg->storage.data_dir ? cfg->storage.data_dir : "./data";
    e->data_dir = strdup(data);
    if (path_mkdir_p(data) != 0) {
        fprintf(stderr, "confab: cannot create data directory %s: %s\n", data, strerror(errno));
        return 1;
    }
    cfg_settle_kv_dir(cfg, data); /* conversations' KV survives restarts */
    e->routing = app_routing_new(cfg, NULL, &err);
    if (!e->routing) {
        fprintf(stderr, "confab: %s\n", err.msg);
        return 1;
    }
    e->db_path = path_join(data, cfg->storage.db);
    e->cache_path = path_join(data, cfg->cache.path);
    chat_service_opts co = {.cfg = cfg,
                            .router = app_routing_router(e->routing),
                            .db_path = e->db_path,
                            .cache_path = cfg->cache.enabled ? e->cache_path : NULL};
    e->cs = chat_service_new(&co, &err);
    if (!e->cs) {
        fprintf(stderr, "confab: %s\n", err.msg);
        return 1;
    }
    return 0;
}

void chat_env_close(chat_env *e) {
    chat_service_free(e->cs);
    app_routing_free(e->routing);
    if (e->prov_inited) prov_global_cleanup();
    cfg_free(e->cfg);
    free(e->data_dir);
    free(e->db_path);
    free(e->cache_path);
    memset(e, 0, sizeof *e);
}
