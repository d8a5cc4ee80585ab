/*
 * jinja — a Jinja2 interpreter for chat templates.
 *
 * Parses a template once (jinja_parse) and renders it any number of times
 * (jinja_render) against variables given as a jansson object. It follows
 * Hugging Face's chat-template environment: trim_blocks and lstrip_blocks on,
 * keep_trailing_newline off, loop controls (break/continue), `tojson` with
 * Python json.dumps formatting and ensure_ascii=False, `raise_exception`,
 * `strftime_now` and the `{% generation %}` block. Values follow Python
 * semantics where templates depend on them (truthiness, repr, int/float).
 *
 * Every error (syntax or run time) comes back as a cf_err whose message
 * starts with "line L, column C:". Rendering is bounded: nesting depth,
 * loop iterations, output size and memory all have limits, so a hostile
 * template gets an error, never a hang or a crash.
 */
#ifndef CONFAB_ENGINE_JINJA_H
#define CONFAB_ENGINE_JINJA_H

#include "base/err.h"
#include "base/sb.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct jinja_template jinja_template;

/* Limits and injectable inputs for one render. Zero fields take defaults. */
typedef struct {
    int64_t now_unix;        /* time for strftime_now (UTC); 0 = the real clock */
    int max_depth;           /* nested macro calls; default 100 */
    uint64_t max_iterations; /* loop iterations over the whole render; default 1e6 */
    size_t max_output;       /* bytes of output (also of any captured block); default 64 MiB */
    size_t max_memory;       /* bytes the evaluator may allocate; default 512 MiB */
    size_t max_stack;        /* bytes of C stack the evaluator may use; default 1 MiB
                                (the calling thread needs at least this much) */
} jinja_opts;

/* Parses N bytes of template source SRC. Returns the compiled template
 * (free with jinja_free) or NULL with ERR set ("line L, column C: ...").
 * SRC need not be NUL-terminated and is not referenced after return. */
jinja_template *jinja_parse(const char *src, size_t n, cf_err *err);

/* Renders TPL with the variables in VARS (a JSON object, may be NULL) and
 * appends the result to OUT. Extra global callables (range, namespace,
 * raise_exception, strftime_now, dict) are always present. OPTS may be NULL.
 * Returns 0, or a negative CF_E* with ERR set; on error OUT may hold a
 * partial rendering. A template may be rendered concurrently from several
 * threads (rendering does not modify it). */
int jinja_render(const jinja_template *tpl, json_t *vars, const jinja_opts *opts, sb_t *out,
                 cf_err *err);

void jinja_free(jinja_template *tpl);

#endif
