/*
 * pricing — built-in price table, cost arithmetic and token estimation; see
 * pricing.h.
 *
 * The table is data (one row per model family), searched linearly: it has a
 * few dozen rows and is consulted once per result. Longest prefix wins so
 * that "gpt-4o-mini" is not billed as "gpt-4o" and "command-r-plus" not as
 * "command-r".
 */
#include "providers/pricing.h"

#include "base/utf8.h"

#include <string.h>

/* List prices in USD per million tokens: input, output, cached input (0 =
 * the provider bills no separate cached rate, or has none).
 * Source: the providers' public pricing pages — openai.com/api/pricing,
 * anthropic.com/pricing (cached = "cache hits & refreshes"),
 * cohere.com/pricing, mistral.ai/pricing — as of mid-2025. Prices change:
 * config.yaml's models.NAME.price overrides any row. */
static const struct {
    const char *prefix;
    double input, output, cached;
} PRICE_TABLE[] = {
    /* OpenAI */
    {"gpt-4o-mini", 0.15, 0.60, 0.075},
    {"gpt-4o", 2.50, 10.00, 1.25},
    {"gpt-4.1-nano", 0.10, 0.40, 0.025},
    {"gpt-4.1-mini", 0.40, 1.60, 0.10},
    {"gpt-4.1", 2.00, 8.00, 0.50},
    {"gpt-4-turbo", 10.00, 30.00, 0},
    {"gpt-3.5-turbo", 0.50, 1.50, 0},
    {"o1-mini", 1.10, 4.40, 0.55},
    {"o1", 15.00, 60.00, 7.50},
    {"o3-mini", 1.10, 4.40, 0.55},
    {"o3", 2.00, 8.00, 0.50},
    {"o4-mini", 1.10, 4.40, 0.275},
    /* Anthropic */
    {"claude-3-5-sonnet", 3.00, 15.00, 0.30},
    {"claude-3-7-sonnet", 3.00, 15.00, 0.30},
    {"claude-sonnet-4", 3.00, 15.00, 0.30},
    {"claude-3-5-haiku", 0.80, 4.00, 0.08},
    {"claude-3-haiku", 0.25, 1.25, 0.03},
    {"claude-3-opus", 15.00, 75.00, 1.50},
    {"claude-opus-4", 15.00, 75.00, 1.50},
    /* Cohere */
    {"command-r-plus", 2.50, 10.00, 0},
    {"command-r7b", 0.0375, 0.15, 0},
    {"command-r", 0.15, 0.60, 0},
    {"command-a", 2.50, 10.00, 0},
    /* Mistral */
    {"mistral-large", 2.00, 6.00, 0},
    {"mistral-medium", 0.40, 2.00, 0},
    {"mistral-small", 0.10, 0.30, 0},
    {"open-mistral-nemo", 0.15, 0.15, 0},
    {"codestral", 0.30, 0.90, 0},
};

bool prov_price_default(const char *model, prov_price *out) {
    if (!model) return false;
    const char *slash = strrchr(model, '/');
    if (slash) model = slash + 1;
    size_t best = 0;
    int best_i = -1;
    for (size_t i = 0; i < sizeof PRICE_TABLE / sizeof PRICE_TABLE[0]; i++) {
        size_t n = strlen(PRICE_TABLE[i].prefix);
        if (n > best && !strncmp(model, PRICE_TABLE[i].prefix, n)) {
            best = n;
            best_i = (int)i;
        }
    }
    if (best_i < 0) return false;
    out->set = true;
    out->input = PRICE_TABLE[best_i].input;
    out->output = PRICE_TABLE[best_i].output;
    out->cached_input = PRICE_TABLE[best_i].cached;
    return true;
}

prov_price prov_price_for(const prov_model_cfg *cfg) {
    prov_price p = {0};
    if (cfg->price.set) return cfg->price;
    prov_price_default(cfg->model, &p);
    return p;
}

prov_cost prov_cost_of(const prov_usage *u, const prov_price *p) {
    prov_cost c = {0};
    if (!p->set) return c;
    int64_t cached = u->cached_tokens < 0 ? 0 : u->cached_tokens;
    if (cached > u->prompt_tokens) cached = u->prompt_tokens;
    int64_t uncached = u->prompt_tokens - cached;
    double cached_rate = p->cached_input > 0 ? p->cached_input : p->input;
    c.input = (double)uncached * p->input / 1e6;
    c.cached_input = (double)cached * cached_rate / 1e6;
    c.output = (double)(u->completion_tokens < 0 ? 0 : u->completion_tokens) * p->output / 1e6;
    c.total = c.input + c.cached_input + c.output;
    c.priced = true;
    return c;
}

int64_t prov_estimate_tokens(const char *s, size_t n) {
    /* Quarter-tokens, to keep the arithmetic integral. */
    uint64_t q = 0;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        int len = utf8_decode(s + i, n - i, &cp);
        if (len <= 0) {
            q += 4;
            i++;
            continue;
        } /* invalid byte: one token */
        if (cp < 0x80)
            q += 1;
        else if (cp < 0x800)
            q += 2;
        else if (cp < 0x10000)
            q += 4;
        else
            q += 8;
        i += (size_t)len;
    }
    if (n && q < 4) return 1;
    return (int64_t)((q + 3) / 4);
}

int64_t prov_count_text(const prov_model_cfg *cfg, const char *s, size_t n, bool *estimated) {
    if (cfg && cfg->count_tokens) {
        int64_t t = cfg->count_tokens(cfg->count_ud, s, n);
        if (t >= 0) {
            if (estimated) *estimated = false;
            return t;
        }
    }
    if (estimated) *estimated = true;
    return prov_estimate_tokens(s, n);
}

int64_t prov_count_prompt(const prov_model_cfg *cfg, const prov_request *req, bool *estimated) {
    int64_t total = 0;
    bool est = false;
    for (size_t i = 0; i < req->n_msgs; i++) {
        const char *c = req->msgs[i].content ? req->msgs[i].content : "";
        bool e = false;
        total += prov_count_text(cfg, c, strlen(c), &e) + 4;
        est = est || e;
    }
    if (req->n_msgs == 0) est = !(cfg && cfg->count_tokens);
    if (estimated) *estimated = est;
    return total;
}
