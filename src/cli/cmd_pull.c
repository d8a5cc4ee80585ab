/*
 * cmd_pull — `confab pull SOURCE [--sha256 HEX] [-o NAME] [--models-dir D]`:
 * downloads a GGUF model into the models directory (src/app/pull.c does the
 * work and documents the rules: resume, digests, checks, atomic rename).
 *
 * Progress goes to stderr: a bar redrawn in place on a terminal, a plain
 * line every few seconds otherwise (logs, CI). Ctrl-C (or SIGTERM) sets a
 * flag the transfer polls, so the download stops within a second and leaves
 * FILE.gguf.part for the next pull to resume; the exit status is then 130.
 * The flag is the one piece of file-scope mutable state here: a signal
 * handler has nowhere else to write.
 */
#include "app/models.h"
#include "app/pull.h"
#include "cli/cli.h"
#include "providers/provider.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static volatile sig_atomic_t pull_interrupted;

static void on_signal(int sig) {
    (void)sig;
    pull_interrupted = 1;
}

int cmd_pull(int argc, char **argv) {
    const char *source = NULL, *sha = NULL, *out = NULL, *dir_opt = NULL, *config = NULL;
    static const char *const names[] = {"--sha256", "-o", "--output", "--models-dir", "--config"};
    const char **slots[] = {&sha, &out, &out, &dir_opt, &config};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *eq = a[0] == '-' && a[1] == '-' ? strchr(a, '=') : NULL;
        size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
        const char **slot = NULL;
        for (size_t k = 0; k < sizeof names / sizeof names[0]; k++)
            if (strlen(names[k]) == nlen && !strncmp(names[k], a, nlen)) slot = slots[k];
        if (slot) {
            if (eq)
                *slot = eq + 1;
            else if (i + 1 < argc)
                *slot = argv[++i];
            else
                return cli_usage_error("pull", "%.*s needs a value", (int)nlen, a);
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error("pull", "unknown option '%s'", a);
        } else if (!source) {
            source = a;
        } else {
            return cli_usage_error("pull", "unexpected argument '%s'", a);
        }
    }
    if (!source)
        return cli_usage_error("pull", "pull needs a SOURCE (hf:ORG/REPO/FILE.gguf or a URL)");

    cf_err err = {0};
    char *dir = models_dir_load(dir_opt, config, &err);
    if (!dir) {
        fprintf(stderr, "confab: pull: %s\n", err.msg);
        return 1;
    }
    if (prov_global_init(&err)) {
        fprintf(stderr, "confab: pull: %s\n", err.msg);
        free(dir);
        return 1;
    }
    char *url = NULL, *name = NULL;
    if (pull_parse_source(source, NULL, &url, &name, &err) == 0)
        fprintf(stderr, "pull: %s -> %s/%s%s\n", url, dir, out ? out : name,
                out && (strlen(out) < 5 || strcasecmp(out + strlen(out) - 5, ".gguf")) ? ".gguf"
                                                                                       : "");
    free(url);
    free(name);
    pull_printer pp;
    pull_printer_init(&pp, stderr, 5);
    pull_opts o = {.models_dir = dir,
                   .out_name = out,
                   .sha256 = sha,
                   .progress = pull_printer_cb,
                   .progress_ctx = &pp,
                   .cancel = &pull_interrupted};

    struct sigaction sa = {0}, old_int, old_term;
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    pull_result r;
    int rc = pull_model(source, &o, &r, &err);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);

    if (pp.tty && rc) fputc('\n', stderr);
    int status = 0;
    if (rc == CF_ECANCEL) {
        fprintf(stderr, "confab: pull: %s\n", err.msg);
        status = 130;
    } else if (rc) {
        fprintf(stderr, "confab: pull: %s\n", err.msg);
        status = 1;
    } else if (r.already_present) {
        printf("already present: %s%s\n", r.path,
               r.digest_source ? " (sha256 matches --sha256)" : "");
    } else {
        printf("pulled %s (%" PRIu64 " bytes%s), sha256 %s %s%s\n", r.path, r.size,
               r.resumed_from ? ", resumed"
               : r.restarted  ? ", from the start: the server could not resume"
                              : "",
               r.sha256, r.digest_source ? "verified against " : "(no published digest to check)",
               r.digest_source ? r.digest_source : "");
    }
    if (!rc) pull_result_free(&r);
    prov_global_cleanup();
    free(dir);
    return status;
}
