/*
 * prompts — the prompt-template library: config.yaml's `prompts:` texts with
 * {placeholders}, listed, inspected and filled.
 *
 * Syntax: `{name}` is a placeholder (name: letters, digits, _ and -);
 * `{{` and `}}` are literal braces; any other brace is kept as is, so JSON
 * or code in a template needs no escaping unless it looks like `{name}`.
 * Filling checks both ways: every placeholder needs a value, and a value for
 * a name the template lacks is an error (a typo must not pass silently).
 */
#ifndef CONFAB_APP_PROMPTS_H
#define CONFAB_APP_PROMPTS_H

#include <stddef.h>

#include "base/err.h"

/* The distinct placeholder names of TEXT in order of first appearance:
 * *NAMES gets a malloc'd array of malloc'd strings (free with
 * prompt_names_free), *N their count. Returns 0. */
int prompt_placeholders(const char *text, char ***names, size_t *n);
void prompt_names_free(char **names, size_t n);

/* Fills TEXT's placeholders from KEYS/VALUES (N pairs). Returns a malloc'd
 * string, or NULL with ERR naming the missing or unknown placeholder. */
char *prompt_fill(const char *text, const char *const *keys, const char *const *values, size_t n,
                  cf_err *err);

#endif
