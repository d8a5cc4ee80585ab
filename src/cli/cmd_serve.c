/* cmd_serve — `confab serve`: load the config, start the HTTP server, wait
 * for SIGINT/SIGTERM, then shut down gracefully (streams get a grace
 * period to finish, the rest are cancelled).
 *
 * Signals are blocked in every thread before the server starts (civetweb's
 * threads inherit the mask) and taken synchronously with sigwait() here, so
 * no async-signal-safety rules apply and no global flag is needed. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "app/chat.h"
#include "app/config.h"
#include "app/models.h"
#include "app/pull.h"
#include "app/routing.h"
#include "base/log.h"
#include "base/path.h"
#include "cli/cli.h"
#include "providers/provider.h"
#include "server/api.h"
#include "server/server.h"

static int parse_int(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int cmd_serve(int argc, char **argv) {
    const char *host = NULL, *data = NULL, *cfg_path = NULL, *model = NULL;
    long port = -1, grace_s = 10;
    bool insecure = false, no_pull = false;
    char model_name[256];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **sval = NULL;
        long *ival = NULL;
        long lo = 0, hi = 0;
        if (!strcmp(a, "--host"))
            sval = &host;
        else if (!strcmp(a, "--data"))
            sval = &data;
        else if (!strcmp(a, "--config"))
            sval = &cfg_path;
        else if (!strcmp(a, "-m") || !strcmp(a, "--model"))
            sval = &model;
        else if (!strcmp(a, "--port"))
            ival = &port, lo = 0, hi = 65535;
        else if (!strcmp(a, "--shutdown-grace"))
            ival = &grace_s, lo = 0, hi = 3600;
        else if (!strcmp(a, "--insecure-no-auth")) {
            insecure = true;
            continue;
        } else if (!strcmp(a, "--no-pull")) {
            no_pull = true;
            continue;
        } else
            return cli_usage_error("serve", "unknown option '%s'", a);
        if (i + 1 >= argc) return cli_usage_error("serve", "%s needs a value", a);
        const char *v = argv[++i];
        if (sval)
            *sval = v;
        else if (parse_int(v, lo, hi, ival) != 0)
            return cli_usage_error("serve", "%s must be an integer from %ld to %ld", a, lo, hi);
    }

    cf_err err = {0};
    cfg_t *cfg = cfg_load(cfg_path, &err);
    if (!cfg) {
        fprintf(stderr, "confab: config: %s\n", err.msg);
        return 1;
    }
    for (size_t i = 0; i < cfg->n_warnings; i++)
        fprintf(stderr, "warning: %s\n", cfg->warnings[i]);

    srv_options o;
    srv_options_from_cfg(&o, cfg);
    if (host) o.host = host;
    if (port >= 0) o.port = (int)port;
    if (model) o.default_model = model;
    o.insecure_no_auth = insecure;
    if (!data)
        data = cfg->storage.data_dir && *cfg->storage.data_dir ? cfg->storage.data_dir : "./data";
    o.data_dir = data;

    int rc = 1;
    app_routing *routing = NULL;
    chat_service *cs = NULL;
    srv_api *api = NULL;
    char *db_path = NULL, *cache_path = NULL;
    if (model && !cfg_find_model(cfg, model)) {
        bool ab = false;
        for (size_t i = 0; i < cfg->n_ab; i++)
            ab |= !strcmp(cfg->ab[i].name, model);
        if (!ab) {
            /* Not a configured name: a GGUF path or short name in the models
             * directory becomes a local model of that name. */
            char *dir = models_dir(cfg, NULL);
            char *path = models_resolve(dir, model, &err);
            free(dir);
            if (!path) {
                fprintf(stderr, "confab: -m %s: not a configured model, and %s\n", model, err.msg);
                cfg_free(cfg);
                return 2;
            }
            /* Named like the file, without directory or .gguf. */
            const char *base = strrchr(model, '/') ? strrchr(model, '/') + 1 : model;
            size_t bl = strlen(base);
            if (bl > 5 && !strcmp(base + bl - 5, ".gguf")) bl -= 5;
            snprintf(model_name, sizeof model_name, "%.*s", (int)bl, base);
            cfg_add_model(cfg, model_name, "local", path);
            model = model_name;
            free(path);
        }
    }
    if (model) {
        free(cfg->default_model);
        cfg->default_model = strdup(model);
    }
    if (prov_global_init(&err)) {
        fprintf(stderr, "confab: %s\n", err.msg);
        cfg_free(cfg);
        return 1;
    }
    if (!cfg->n_models) {
        /* First run: a model in the models directory, or the default one
         * downloaded (unless --no-pull); without one, serve anyway. */
        pull_printer pp;
        pull_printer_init(&pp, stderr, 5);
        char *path = NULL;
        int st = models_ensure_default(cfg, !no_pull, pull_printer_cb, &pp, NULL, &path, &err);
        if (st == MODELS_DEFAULT_FOUND || st == MODELS_DEFAULT_PULLED) {
            const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
            char name[256];
            snprintf(name, sizeof name, "%.*s",
                     (int)(strlen(base) > 5 && !strcmp(base + strlen(base) - 5, ".gguf")
                               ? strlen(base) - 5
                               : strlen(base)),
                     base);
            cfg_add_model(cfg, name, "local", path);
            free(cfg->default_model);
            cfg->default_model = strdup(name);
            fprintf(stderr, "confab: using the local model %s (%s)\n", name, path);
        } else if (st < 0) {
            fprintf(stderr, "confab: %s\n", err.msg);
        }
        free(path);
    }
    srv_t *s = srv_new(&o, &err);
    if (!s) {
        fprintf(stderr, "confab: %s\n", err.msg);
        goto out;
    }
    if (path_mkdir_p(data) != 0) {
        fprintf(stderr, "confab: cannot create data directory %s: %s\n", data, strerror(errno));
        goto out;
    }
    cfg_settle_kv_dir(cfg, data); /* conversations' KV survives restarts */
    routing = app_routing_new(cfg, NULL, &err);
    if (!routing) {
        fprintf(stderr, "confab: %s\n", err.msg);
        goto out;
    }
    /* The database and cache live in the data directory (--data wins over
     * storage.data_dir). */
    db_path = path_join(data, cfg->storage.db);
    cache_path = path_join(data, cfg->cache.path);
    chat_service_opts co = {.cfg = cfg,
                            .router = app_routing_router(routing),
                            .db_path = db_path,
                            .cache_path = cfg->cache.enabled ? cache_path : NULL};
    cs = chat_service_new(&co, &err);
    if (!cs) {
        fprintf(stderr, "confab: %s\n", err.msg);
        goto out;
    }
    api = srv_api_new(s, cs, &err);
    if (!api) {
        fprintf(stderr, "confab: %s\n", err.msg);
        goto out;
    }
    if (!cfg->n_models)
        fprintf(stderr, "confab: no models configured: the UI and API are up, but chats will fail "
                        "until a model "
                        "is added to the config (see confab.example.yaml)\n");

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (srv_start(s, &err) != 0) {
        fprintf(stderr, "confab: %s\n", err.msg);
        goto out;
    }
    const char *h = o.host ? o.host : "127.0.0.1";
    printf("confab: listening on http://%s%s%s:%d (data %s)\n", strchr(h, ':') ? "[" : "", h,
           strchr(h, ':') ? "]" : "", srv_port(s), data);
    fflush(stdout);
    log_info("serve", "listening on %s:%d", h, srv_port(s));
    if (insecure && o.n_api_keys == 0)
        log_warn("serve", "--insecure-no-auth: anyone who can reach %s:%d can use this server", h,
                 srv_port(s));

    int sig = 0;
    while (sigwait(&set, &sig) != 0) {}
    printf("confab: %s received, shutting down (grace %ld s)\n",
           sig == SIGINT ? "SIGINT" : "SIGTERM", grace_s);
    fflush(stdout);
    srv_shutdown(s, (int)(grace_s * 1000));
    rc = 0;
out:
    /* Order: no new requests (shutdown), turn threads finished (api), then
     * the database handles and the router they used. */
    if (s && !rc) srv_api_free(api), api = NULL;
    if (api) {
        srv_shutdown(s, 0);
        srv_api_free(api);
    }
    chat_service_free(cs);
    app_routing_free(routing);
    srv_free(s);
    free(db_path);
    free(cache_path);
    if (!rc) {
        printf("confab: stopped\n");
        fflush(stdout);
    }
    cfg_free(cfg);
    return rc;
}
