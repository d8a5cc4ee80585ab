/*
 * budget — token budget and context-window decisions; see budget.h.
 * Dropping walks from the oldest non-system message forward, one message at
 * a time, so what remains is always a suffix of the history plus the
 * system prompts.
 */
#include "app/budget.h"

#include <stdio.h>
#include <string.h>

bool budget_keeps(const budget_msg *msgs, size_t n, const budget_result *r, size_t i) {
    if (i >= n) return false;
    if (msgs[i].is_system || i == n - 1) return true;
    size_t rank = 0; /* position among droppable messages */
    for (size_t k = 0; k < i; k++)
        if (!msgs[k].is_system) rank++;
    return rank >= r->n_dropped;
}

/* Tokens of the prompt when the first DROP droppable messages are left out. */
static int64_t prompt_with(const budget_msg *msgs, size_t n, size_t drop) {
    int64_t t = 0;
    size_t seen = 0;
    for (size_t i = 0; i < n; i++) {
        if (!msgs[i].is_system && i != n - 1 && seen++ < drop) continue;
        t += msgs[i].tokens;
    }
    return t;
}

void budget_check(const budget_cfg *cfg, const budget_msg *msgs, size_t n, int64_t used_so_far,
                  budget_result *out) {
    memset(out, 0, sizeof *out);
    size_t droppable = 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (!msgs[i].is_system) droppable++;
    int64_t new_tokens = n ? msgs[n - 1].tokens : 0;
    int64_t history = used_so_far >= 0 ? used_so_far : prompt_with(msgs, n, 0) - new_tokens;
    out->used = history + new_tokens;
    out->prompt_tokens = prompt_with(msgs, n, 0);
    char note[128] = "";

    /* 1. The conversation budget. */
    if (cfg->max_tokens > 0) {
        out->ratio = (double)out->used / (double)cfg->max_tokens;
        if (out->used >= cfg->max_tokens) {
            if (!cfg->drop_oldest) {
                out->verdict = BUDGET_REFUSED;
                snprintf(
                    out->message, sizeof out->message,
                    "token budget exhausted: %lld of %lld tokens used; start a new conversation",
                    (long long)out->used, (long long)cfg->max_tokens);
                return;
            }
            /* Drop oldest messages until what remains fits the budget. */
            size_t d = 0;
            while (d < droppable && prompt_with(msgs, n, d) >= cfg->max_tokens)
                d++;
            if (prompt_with(msgs, n, d) >= cfg->max_tokens) {
                out->verdict = BUDGET_REFUSED;
                snprintf(out->message, sizeof out->message,
                         "token budget exhausted: even without history the message needs %lld of "
                         "%lld tokens",
                         (long long)prompt_with(msgs, n, d), (long long)cfg->max_tokens);
                return;
            }
            out->n_dropped = d;
            out->verdict = BUDGET_TRIMMED;
            snprintf(note, sizeof note,
                     "token budget reached (%lld of %lld): dropped the %zu oldest messages",
                     (long long)out->used, (long long)cfg->max_tokens, d);
        } else if (out->ratio >= cfg->warn_ratio) {
            out->warn = true;
            out->verdict = BUDGET_WARN;
            snprintf(note, sizeof note,
                     "%.0f%% of the conversation's token budget used (%lld of %lld)",
                     out->ratio * 100.0, (long long)out->used, (long long)cfg->max_tokens);
        }
    }

    /* 2. The context window. */
    if (cfg->context_window > 0) {
        int64_t room = cfg->context_window - cfg->reply_reserve;
        size_t d = out->n_dropped;
        while (d < droppable && prompt_with(msgs, n, d) > room)
            d++;
        if (prompt_with(msgs, n, d) > room) {
            out->verdict = BUDGET_REFUSED;
            out->n_dropped = 0;
            snprintf(out->message, sizeof out->message,
                     "the message does not fit the model's context window (%lld tokens needed, "
                     "%lld available)",
                     (long long)prompt_with(msgs, n, d), (long long)room);
            return;
        }
        if (d > out->n_dropped) {
            size_t extra = d - out->n_dropped;
            out->n_dropped = d;
            out->verdict = BUDGET_TRIMMED;
            char ctx[128];
            snprintf(
                ctx, sizeof ctx,
                "history exceeds the context window (%lld tokens): dropped the %zu oldest messages",
                (long long)cfg->context_window, extra);
            if (note[0]) {
                snprintf(out->message, sizeof out->message, "%s; %s", note, ctx);
                out->prompt_tokens = prompt_with(msgs, n, d);
                return;
            }
            snprintf(note, sizeof note, "%s", ctx);
        }
    }
    out->prompt_tokens = prompt_with(msgs, n, out->n_dropped);
    snprintf(out->message, sizeof out->message, "%s", note);
}
