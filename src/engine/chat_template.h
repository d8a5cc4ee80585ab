/*
 * chat_template — turns a conversation into the exact prompt text a model was
 * trained on, by rendering its Jinja chat template (tokenizer.chat_template
 * in GGUF) the way Hugging Face's apply_chat_template does: variables
 * `messages`, `add_generation_prompt`, `bos_token`, `eos_token` and, when
 * given, `tools` (left undefined otherwise, which is how the reference
 * renderings were made: templates test `tools is defined`).
 *
 * Built-in fallback templates (chatml, llama2, llama3, mistral, gemma, phi3)
 * serve models that ship without one.
 */
#ifndef CONFAB_ENGINE_CHAT_TEMPLATE_H
#define CONFAB_ENGINE_CHAT_TEMPLATE_H

#include "base/err.h"
#include "base/sb.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* Renders TEMPLATE_SRC (NUL-terminated Jinja source) with MESSAGES (a JSON
 * array of {"role", "content", ...} objects, borrowed), ADD_GENERATION_PROMPT,
 * BOS/EOS token strings (NULL = "") and TOOLS (JSON array, or NULL to leave `tools` undefined).
 * Appends the prompt to OUT. Returns 0, or a negative CF_E* with ERR set:
 * CF_EFORMAT for a template that does not parse, CF_EINVAL for one that
 * raises (raise_exception, undefined use...) or bad MESSAGES. Messages carry
 * "line L, column C:" of the failing template spot. strftime_now uses the
 * real clock. */
int tmpl_render(const char *template_src, json_t *messages, bool add_generation_prompt,
                const char *bos, const char *eos, json_t *tools, sb_t *out, cf_err *err);

/* As tmpl_render, with strftime_now fixed to NOW_UNIX (seconds, UTC). */
int tmpl_render_at(const char *template_src, json_t *messages, bool add_generation_prompt,
                   const char *bos, const char *eos, json_t *tools, int64_t now_unix, sb_t *out,
                   cf_err *err);

/* Everything a render takes, for callers that need more than tmpl_render's
 * arguments (extra template variables such as `enable_thinking`). */
typedef struct {
    json_t *messages; /* required: JSON array of message objects (borrowed) */
    bool add_generation_prompt;
    const char *bos, *eos; /* NULL = "" */
    json_t *tools;         /* JSON array, or NULL to leave `tools` undefined */
    json_t *extra;         /* JSON object of more variables, or NULL; these cannot
                              replace messages/bos/eos/tools/add_generation_prompt */
    int64_t now_unix;      /* strftime_now's time (UTC); 0 = the real clock */
} tmpl_input;

/* Renders TEMPLATE_SRC with IN; same contract as tmpl_render. A key of
 * IN->extra that names one of the standard variables is refused (CF_EINVAL). */
int tmpl_render_ex(const char *template_src, const tmpl_input *in, sb_t *out, cf_err *err);

/* Jinja source of the built-in template NAME ("chatml", "llama2", "llama3",
 * "mistral", "gemma", "phi3"); static storage. NULL for an unknown name. */
const char *tmpl_builtin(const char *name);

struct gguf_file;
struct tok_tokenizer;
/* The chat template of a model: its GGUF's tokenizer.chat_template, or when
 * it has none a built-in chosen from its special tokens (chatml, llama3,
 * gemma, phi3; else llama2 for SentencePiece vocabularies and chatml for
 * BPE). Returns malloc'd Jinja source; *BUILTIN (may be NULL) gets the
 * built-in's name, or NULL when the file had its own. */
char *tmpl_for_model(const struct gguf_file *f, const struct tok_tokenizer *t, const char **builtin);

/* Names of the built-in templates, NULL-terminated; static storage. */
const char *const *tmpl_builtin_names(void);

#endif
