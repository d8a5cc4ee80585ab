/*
 * budget — per-conversation token budgets and context-window fitting.
 *
 * Pure decisions, no I/O: given the conversation as a list of turns with
 * their token counts, the budget from config and the model's context window,
 * decide whether the next turn may go ahead, which oldest turns to drop, and
 * what to tell the client. Nothing is ever dropped or refused silently: the
 * result carries a message for every action.
 *
 *   budget (max_tokens_per_conversation > 0): tokens used so far (prompt and
 *     completion of every earlier turn, plus the new message) against the
 *     limit. At warn_ratio (0.8): a warning. At 100%: `refuse`, or
 *     `drop_oldest` — drop the oldest non-system messages until the
 *     conversation fits again.
 *   context window (> 0): the prompt (system + kept history + new message)
 *     plus the room reserved for the reply must fit; otherwise the oldest
 *     non-system messages are dropped (the system prompt and the new message
 *     always stay) and that is reported. If even that cannot fit, refuse.
 */
#ifndef CONFAB_APP_BUDGET_H
#define CONFAB_APP_BUDGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    bool is_system; /* system prompts are never dropped */
    int64_t tokens; /* tokens of this message as the model sees it */
} budget_msg;

typedef struct {
    int64_t max_tokens;     /* per conversation; 0 = no budget */
    double warn_ratio;      /* e.g. 0.8 */
    bool drop_oldest;       /* at 100%: drop (true) or refuse (false) */
    int64_t context_window; /* 0 = unknown, not checked */
    int64_t reply_reserve;  /* tokens kept free for the reply (max_tokens of the request) */
} budget_cfg;

typedef enum {
    BUDGET_OK = 0,
    BUDGET_WARN = 1,
    BUDGET_TRIMMED = 2,
    BUDGET_REFUSED = 3
} budget_verdict;

typedef struct {
    budget_verdict verdict;
    size_t n_dropped;      /* the first n_dropped non-system messages are left out */
    int64_t used;          /* tokens counted against the budget, new message included */
    int64_t prompt_tokens; /* tokens of the prompt that will be sent */
    double ratio;          /* used / max_tokens (0 when no budget) */
    bool warn;             /* at or past warn_ratio */
    char message[256];     /* for the client; empty when verdict is OK and no warning */
} budget_result;

/* Decides for a conversation MSGS[0..n) whose last element is the new user
 * message. USED_SO_FAR is the conversation's tokens from earlier turns
 * (prompt + completion, as recorded); when < 0 the sum of MSGS is used. */
void budget_check(const budget_cfg *cfg, const budget_msg *msgs, size_t n, int64_t used_so_far,
                  budget_result *out);

/* Index mapping helper: true when message I is kept under result R. */
bool budget_keeps(const budget_msg *msgs, size_t n, const budget_result *r, size_t i);

#endif
