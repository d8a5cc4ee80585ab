/*
 * models — the local model catalogue: where GGUF files live, what each one
 * is, how a short name like "smollm2" becomes a file, and the first-run
 * default model.
 *
 * The models directory is, first found: an explicit override (--models-dir),
 * $CONFAB_MODELS_DIR, or storage.models_dir of the config (relative to
 * storage.data_dir unless absolute; ./data/models by default). Every
 * `*.gguf` file directly inside it is a model; hidden files and downloads in
 * progress (`*.gguf.part`) are not.
 *
 * Name resolution (models_resolve), first rule that matches wins:
 *   1. NAME containing '/' is a path and must name an existing file;
 *   2. a file in the directory called NAME or NAME.gguf (exact case);
 *   3. a file NAME in the current directory (only when NAME ends in .gguf);
 *   4. case-insensitive: the file name without .gguf equals NAME, then starts
 *      with NAME, then contains NAME; within the first of these tiers that
 *      matches anything, more than one match is an error listing them.
 * Nothing found is an error listing what the directory holds. Resolution
 * looks at file names only (it never parses a file), so a corrupt file can
 * still be named, e.g. to remove it.
 */
#ifndef CONFAB_APP_MODELS_H
#define CONFAB_APP_MODELS_H

#include "app/config.h"
#include "app/pull.h"
#include "base/err.h"

#include <stdbool.h>
#include <stdint.h>

/* The documented first-run default: a small instruction-tuned chat model
 * (SmolLM2 135M Instruct, Q8_0, about 145 MB). */
#define MODELS_DEFAULT_SOURCE                                                                      \
    "hf:bartowski/SmolLM2-135M-Instruct-GGUF/SmolLM2-135M-Instruct-Q8_0.gguf"

typedef struct {
    char *name;    /* file name without ".gguf" */
    char *file;    /* file name */
    char *path;    /* directory + "/" + file */
    uint64_t size; /* bytes on disk */
    int64_t mtime; /* modification time, seconds since the epoch */
    bool valid;    /* gguf_open() accepted it */
    char *error;   /* why not valid (NULL when valid) */
    /* The fields below are meaningful only when valid. */
    char *arch;         /* general.architecture; NULL when absent */
    uint64_t n_params;  /* sum of the element counts of all tensors */
    char *quant;        /* general.file_type's name ("Q4_K_M"), else the dominant tensor type */
    int64_t ctx_len;    /* <arch>.context_length; 0 when absent */
    bool chat_template; /* tokenizer.chat_template present */
} models_entry;

typedef struct {
    char *file;    /* "NAME.gguf.part" */
    uint64_t size; /* bytes downloaded so far */
} models_partial;

typedef struct {
    char *dir;       /* the directory listed */
    models_entry *v; /* (n,) sorted by file name, case-insensitive */
    size_t n;
    models_partial *partial; /* (n_partial,) interrupted downloads (*.gguf.part), sorted */
    size_t n_partial;
} models_list_t;

/* The models directory: OVERRIDE when not NULL, else $CONFAB_MODELS_DIR when
 * set and not empty, else CFG's storage.models_dir joined to
 * storage.data_dir (CFG may be NULL: ./data/models). Malloc'd; never NULL. */
char *models_dir(const cfg_t *cfg, const char *override);

/* Like models_dir(NULL-config), but loads the config (CONFIG_PATH, or the
 * usual search order when NULL) only when neither OVERRIDE nor
 * $CONFAB_MODELS_DIR decides, so a broken config file does not stop
 * `--models-dir D`. NULL with ERR set when the config fails to load. */
char *models_dir_load(const char *override, const char *config_path, cf_err *err);

/* Describes the GGUF file at PATH into *E (all fields filled; a file that
 * cannot be opened or parsed gives valid = false and the reason in error).
 * Returns 0, or CF_ENOTFOUND/CF_EIO when PATH cannot be stat'ed (E then
 * untouched). Free with models_entry_free. */
int models_describe(const char *path, models_entry *e, cf_err *err);
void models_entry_free(models_entry *e);

/* Lists every model in DIR into *OUT (corrupt files included with
 * valid = false). A missing directory is an empty list, not an error; a
 * path that is not a readable directory is CF_EIO. Free with
 * models_list_free (also safe on a zeroed list). */
int models_list(const char *dir, models_list_t *out, cf_err *err);
void models_list_free(models_list_t *l);

/* Resolves NAME by the rules at the top of this file. Returns the path
 * (malloc'd), or NULL with ERR set: CF_ENOTFOUND ("no model matches 'x' in
 * DIR; available: ...") or CF_EINVAL for ambiguity ("'x' is ambiguous in
 * DIR: a.gguf, b.gguf"). */
char *models_resolve(const char *dir, const char *name, cf_err *err);

/* Deletes the model NAME from DIR. NAME is resolved by rules 2 and 4 only
 * (never a path, never outside DIR); ambiguity is refused. *REMOVED gets
 * the deleted path (malloc'd; may be NULL when not wanted). Returns 0 or a
 * negative CF_E* with ERR set. */
int models_remove(const char *dir, const char *name, char **removed, cf_err *err);

/* Name of llama.cpp's general.file_type value FT ("Q4_K_M", "F16", ...),
 * or NULL for unknown values. */
const char *models_file_type_name(uint32_t ft);

/* Outcome of models_ensure_default. */
typedef enum {
    MODELS_DEFAULT_CONFIGURED = 1, /* the config names models: nothing done, *path NULL */
    MODELS_DEFAULT_FOUND = 2,      /* a valid GGUF already in the models dir: *path */
    MODELS_DEFAULT_PULLED = 3,     /* the default model was downloaded: *path */
} models_default_status;

/* First run. When CFG configures no model and the models directory holds
 * no valid GGUF, downloads MODELS_DEFAULT_SOURCE into that directory
 * (reporting through PROGRESS/PCTX, which may be NULL), provided ALLOW_PULL.
 * CANCEL (may be NULL) stops the download when it becomes non-zero.
 * On success returns one of models_default_status and sets *PATH as
 * described there (malloc'd). Otherwise returns a negative CF_E* with a
 * message for the operator saying that no local model is available and why
 * (pulling disabled, or the download failed and how), and what to run;
 * the caller keeps serving remote models and the UI. */
int models_ensure_default(const cfg_t *cfg, bool allow_pull, pull_progress_fn progress, void *pctx,
                          const volatile sig_atomic_t *cancel, char **path, cf_err *err);

#endif
