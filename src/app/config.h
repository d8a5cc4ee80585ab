/*
 * config — confab's configuration: one YAML file (libfyaml) read into one
 * plain struct that the rest of the program reads and never writes.
 *
 * Search order: an explicit path (--config), $CONFAB_CONFIG, ./confab.yaml,
 * ~/.config/confab/config.yaml; none found means built-in defaults. Every
 * scalar may use ${VAR} or ${VAR:-default}; a variable that is unset and has
 * no default is an error — except in a model's api_key, where it only
 * disables that model (with a warning, and an error naming the variable when
 * the model is used), so a fallback whose key is not set does not stop
 * confab from starting, as the seed's example config needs. Errors name file:line:column; wrong
 * types are errors; unknown keys are warnings (collected in cfg->warnings) so a typo never passes
 * silently and an older confab can still read a newer file.
 *
 * The full schema with every key is documented in confab.example.yaml. The
 * seed's short form (`model: {backend, name, fallback: {...}}`) is accepted
 * and becomes named models plus default_model.
 */
#ifndef CONFAB_APP_CONFIG_H
#define CONFAB_APP_CONFIG_H

#include "base/err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *name;                /* key under models: (or the seed form's name) */
    char *backend;             /* "local" | "openai" | "anthropic" | "cohere" */
    char *model;               /* upstream model id, or for local a GGUF path / short name */
    char *base_url;            /* NULL = backend default */
    char *api_key;             /* NULL when none; never printed */
    char *api_key_env_missing; /* api_key named an unset ${VAR}: its name, else NULL */
    int64_t context_window;    /* 0 = unknown / from model */
    double price_input, price_output,
        price_cached_input; /* USD per 1M tokens; -1 = default table */
    char **fallback;        /* (n_fallback,) names of other models, tried in order */
    size_t n_fallback;
    int connect_timeout_ms, first_byte_timeout_ms, idle_timeout_ms;
    char **header_names, **header_values; /* (n_headers,) extra HTTP headers */
    size_t n_headers;
} cfg_model;

typedef struct {
    char *name;
    char *text; /* with {placeholders} */
} cfg_prompt;

typedef struct {
    char *model;
    double weight;
} cfg_ab_variant;

typedef struct {
    char *name;
    cfg_ab_variant *variants; /* (n_variants,) */
    size_t n_variants;
} cfg_ab;

typedef struct {
    char *source;        /* file the config came from; NULL = defaults */
    char *default_model; /* NULL = first model, or a local model found on disk */
    char *log_level;     /* NULL = leave as is */

    cfg_model *models; /* (n_models,) */
    size_t n_models;
    cfg_prompt *prompts; /* (n_prompts,) in file order */
    size_t n_prompts;
    cfg_ab *ab; /* (n_ab,) */
    size_t n_ab;

    struct {
        int max_retries, backoff_initial_ms, backoff_max_ms, cooldown_ms, failure_threshold;
    } router;
    struct {
        bool enabled, always;
        char *path; /* relative to storage.data_dir unless absolute */
        int64_t ttl_s, max_entries;
    } cache;
    struct {
        int64_t max_tokens_per_conversation; /* 0 = no budget */
        double warn_ratio;                   /* 0.8 */
        char *on_exceed;                     /* "refuse" | "drop_oldest" */
    } budget;
    struct {
        char *host;
        int port, threads, rate_limit_rpm;
        int64_t max_body_bytes;
        char **api_keys; /* (n_api_keys,) plaintext or "sha256:<hex>" as written */
        size_t n_api_keys;
        char **cors_origins; /* (n_cors_origins,) */
        size_t n_cors_origins;
    } server;
    struct {
        char *data_dir, *db, *models_dir;
    } storage;
    struct {
        int threads, ctx, batch_size;
        char *kv_type; /* "f16" | "f32" */
        int64_t kv_budget_mb;
        char *kv_dir; /* where local models' KV state is kept across restarts; NULL = off
                         (confab serve and chat default it to DATA/kv) */
    } engine;
    struct {
        char *granularity; /* "token" | "word" | "sentence" */
    } streaming;

    char **warnings; /* (n_warnings,) e.g. unknown keys, with file:line:col */
    size_t n_warnings;
} cfg_t;

/* Finds the config file by the search order (EXPLICIT may be NULL) and loads
 * it, or returns defaults when none exists. An explicit path that does not
 * exist is an error. Returns NULL with ERR set on failure. Free with cfg_free. */
cfg_t *cfg_load(const char *explicit_path, cf_err *err);

/* Loads from a file path (must exist). */
cfg_t *cfg_load_file(const char *path, cf_err *err);

/* Loads from YAML text; NAME is used in error locations. */
cfg_t *cfg_load_string(const char *yaml, size_t len, const char *name, cf_err *err);

/* Built-in defaults only. */
cfg_t *cfg_defaults(void);

void cfg_free(cfg_t *c);

/* REL resolved against storage.data_dir (REL itself when absolute), as a
 * malloc'd string: e.g. cfg_data_path(c, c->storage.db). */
char *cfg_data_path(const cfg_t *c, const char *rel);

/* Points engine.kv_dir at DATA_DIR/kv when unset, or resolves a relative
 * kv_dir against DATA_DIR (the data directory a command actually uses,
 * which --data may have changed). */
void cfg_settle_kv_dir(cfg_t *c, const char *data_dir);

/* Adds (or replaces the backend and upstream of) model NAME, e.g. for
 * `confab serve -m FILE.gguf`. Returns the model (owned by C). */
cfg_model *cfg_add_model(cfg_t *c, const char *name, const char *backend, const char *model);

/* Model by name, or NULL. */
const cfg_model *cfg_find_model(const cfg_t *c, const char *name);
/* Prompt template by name, or NULL. */
const cfg_prompt *cfg_find_prompt(const cfg_t *c, const char *name);

/* Expands ${VAR} and ${VAR:-default} in IN. Returns a malloc'd string, or
 * NULL with ERR set naming the variable when one is unset without default
 * or the syntax is broken. `$$` gives a literal `$`. */
char *cfg_expand_env(const char *in, cf_err *err);

/* The effective config as JSON text (malloc'd), API keys masked. */
char *cfg_to_json(const cfg_t *c);

#endif
