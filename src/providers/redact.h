/*
 * redact — keeps secrets out of every text that leaves the providers layer
 * (error messages, log lines, results).
 *
 * Upstream error bodies sometimes quote the key they rejected ("Incorrect
 * API key provided: sk-abc..."); transport errors may quote a URL. Every such
 * text goes through prov_redact() with the model's known secrets (api_key
 * and the values of configured extra headers) and a few generic patterns
 * (Bearer tokens, sk-/key- style keys, key=/api_key= URL parameters).
 */
#ifndef CONFAB_PROVIDERS_REDACT_H
#define CONFAB_PROVIDERS_REDACT_H

#include "base/sb.h"
#include "providers/provider.h"

#include <stddef.h>

#define PROV_REDACTED "[REDACTED]"

/* Replaces, in place, every occurrence of each of the N SECRETS (those of 4
 * bytes or more; NULL entries skipped) and every generic key pattern in S
 * with PROV_REDACTED. */
void prov_redact(sb_t *s, const char *const *secrets, size_t n);
/* prov_redact with CFG's api_key and extra header values. CFG may be NULL. */
void prov_redact_cfg(sb_t *s, const prov_model_cfg *cfg);

#endif
