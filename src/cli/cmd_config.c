/* cmd_config — `confab config check|show`: load the config the way every
 * command does and report what was found, warnings included. */
#include "app/config.h"
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_config(int argc, char **argv) {
    const char *path = NULL, *action = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config")) {
            if (++i >= argc) return cli_usage_error("config", "--config needs a file");
            path = argv[i];
        } else if (!strncmp(argv[i], "--config=", 9)) {
            path = argv[i] + 9;
        } else if (argv[i][0] == '-') {
            return cli_usage_error("config", "unknown option '%s'", argv[i]);
        } else if (!action) {
            action = argv[i];
        } else {
            return cli_usage_error("config", "unexpected argument '%s'", argv[i]);
        }
    }
    if (!action) return cli_usage_error("config", "missing action (check or show)");
    if (strcmp(action, "check") && strcmp(action, "show"))
        return cli_usage_error("config", "unknown action '%s' (check or show)", action);
    cf_err err = {0};
    cfg_t *c = cfg_load(path, &err);
    if (!c) {
        fprintf(stderr, "confab: config: %s\n", err.msg);
        return 1;
    }
    for (size_t i = 0; i < c->n_warnings; i++)
        fprintf(stderr, "warning: %s\n", c->warnings[i]);
    if (!strcmp(action, "show")) {
        char *j = cfg_to_json(c);
        printf("%s\n", j);
        free(j);
    } else {
        printf("%s: ok (%zu models, %zu prompts, %zu warnings)\n",
               c->source ? c->source : "(built-in defaults)", c->n_models, c->n_prompts,
               c->n_warnings);
    }
    cfg_free(c);
    return 0;
}
