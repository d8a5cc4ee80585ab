/*
 * pricing — prices, costs and token estimates.
 *
 * A built-in table gives list prices (USD per million tokens) for
 * well-known cloud models, looked up by the longest matching prefix of the
 * upstream model id ("gpt-4o-mini-2024-07-18" → "gpt-4o-mini"), after
 * dropping a router prefix like "openai/". config.yaml's price{} on a model
 * overrides it. Unknown models cost nothing and are reported as unpriced.
 *
 * When a provider reports no usage, tokens are counted with the model's
 * exact counter (prov_model_cfg.count_tokens, e.g. the local engine's
 * tokenizer) or estimated with a UTF-8 aware heuristic and flagged as an
 * estimate.
 */
#ifndef CONFAB_PROVIDERS_PRICING_H
#define CONFAB_PROVIDERS_PRICING_H

#include "providers/provider.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Cost of one result in US dollars. */
typedef struct {
    double input;        /* uncached prompt tokens */
    double cached_input; /* prompt tokens served from the provider's cache */
    double output;       /* completion tokens */
    double total;
    bool priced; /* false: no price known for the model (all zero) */
} prov_cost;

/* Looks MODEL up in the built-in table. Returns true and fills *OUT (with
 * set = true) when found. */
bool prov_price_default(const char *model, prov_price *out);
/* The price that applies to CFG: its own price{} when set, else the table's
 * for cfg->model; out.set is false when neither exists. */
prov_price prov_price_for(const prov_model_cfg *cfg);
/* Cost of U at price P. */
prov_cost prov_cost_of(const prov_usage *u, const prov_price *p);

/* Heuristic token count of N bytes of UTF-8: about 4 ASCII characters per
 * token, 2 per token for other alphabetic scripts (2-byte UTF-8), one token
 * per CJK/other BMP character, two per astral character (emoji). Always
 * >= 1 for non-empty text. */
int64_t prov_estimate_tokens(const char *s, size_t n);
/* Tokens of TEXT for CFG: its exact counter when it has one and it works
 * (then *ESTIMATED = false), else the heuristic (*ESTIMATED = true). */
int64_t prov_count_text(const prov_model_cfg *cfg, const char *s, size_t n, bool *estimated);
/* Prompt tokens of REQ for CFG, with a per-message overhead of 4 tokens for
 * the role markers that chat formats add. */
int64_t prov_count_prompt(const prov_model_cfg *cfg, const prov_request *req, bool *estimated);

#endif
