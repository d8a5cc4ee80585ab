/*
 * chat_env — what the terminal front ends (`confab chat`, `confab run MODEL
 * PROMPT`) need before they can answer anything: the config, the router with
 * its local models, and the chat service on the same data directory as
 * `confab serve`, so sessions written here show up in the web UI and the
 * response cache is shared.
 *
 * MODEL may be a configured model (or A/B) name, or a GGUF path or short
 * name of a file in the models directory, which then becomes a local model
 * named like the file (the rules of `serve -m`).
 */
#ifndef CONFAB_CLI_CHAT_ENV_H
#define CONFAB_CLI_CHAT_ENV_H

#include "app/chat.h"
#include "app/config.h"
#include "app/routing.h"

typedef struct {
    cfg_t *cfg;           /* owned */
    app_routing *routing; /* owned */
    chat_service *cs;     /* owned */
    char *data_dir;       /* owned; created when missing */
    char *db_path, *cache_path;
    char model[256];  /* the model MODEL resolved to ("" when none was given) */
    bool prov_inited; /* prov_global_init ran */
} chat_env;

typedef struct {
    const char *config_path; /* NULL: the usual search order */
    const char *data_dir;    /* NULL: storage.data_dir, else ./data */
    const char *model;       /* NULL: the config's default */
    const char *cmd;         /* command name for messages ("chat", "run") */
} chat_env_opts;

/* Loads everything into *E (zeroed by the caller). Prints its own errors
 * (to stderr, prefixed "confab: ") and returns the exit code to use: 0 on
 * success, 2 when MODEL names nothing (a usage error), 1 otherwise. On a
 * non-zero return E holds nothing that needs freeing beyond chat_env_close,
 * which is always safe to call. */
int chat_env_open(chat_env *e, const chat_env_opts *o);
void chat_env_close(chat_env *e);

/* "a, b, c": the configured model names, malloc'd ("" when none). */
char *chat_env_model_names(const cfg_t *cfg);

#endif
