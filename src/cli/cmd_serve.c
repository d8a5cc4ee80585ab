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

#include "app/config.h"
#include "base/log.h"
#include "cli/cli.h"
#include "server/server.h"

/* mkdir -p PATH. Returns 0 or -1 with errno set. */
static int mkdir_p(const char *path) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST) return -1;
        buf[i] = c;
    }
    struct stat st;
    if (stat(path, &st) != 0) return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

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
    bool insecure = false;
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
    srv_t *s = srv_new(&o, &err);
    if (!s) {
        fprintf(stderr, "confab: %s\n", err.msg);
        goto out;
    }
    if (mkdir_p(data) != 0) {
        fprintf(stderr, "confab: cannot create data directory %s: %s\n", data, strerror(errno));
        goto out;
    }

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
    printf("confab: stopped\n");
    fflush(stdout);
    rc = 0;
out:
    srv_free(s);
    cfg_free(cfg);
    return rc;
}
