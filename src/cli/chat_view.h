/*
 * chat_view — one chat turn run from a terminal front end: the turn on a
 * worker thread, the reply printed as it streams, SIGINT turned into a
 * cancel of the reply.
 *
 * Signals: the caller blocks SIGINT in every thread (chat_view_block_sigint
 * before any thread is created); while a turn runs, the calling thread takes
 * SIGINT synchronously with sigtimedwait() and fires the turn's prov_cancel,
 * so no work happens in a signal handler and no global flag is needed.
 *
 * On a terminal (TTY) the reply streams with a live status line on the last
 * row (a scroll region keeps the text above it): model, tokens so far,
 * tokens/s, elapsed time, the cost of the output so far when the price is
 * known; when the reply ends a dim summary line adds the
 * exact usage and cost where known. Without TTY nothing but the reply text
 * goes to OUT (errors and notices go to stderr).
 */
#ifndef CONFAB_CLI_CHAT_VIEW_H
#define CONFAB_CLI_CHAT_VIEW_H

#include <stdbool.h>
#include <stdio.h>

#include "app/chat.h"
#include "providers/provider.h"

/* Blocks SIGINT in the calling thread (threads created later inherit it). */
void chat_view_block_sigint(void);

typedef struct {
    FILE *out;         /* where the reply goes */
    bool tty;          /* colours and the live status line */
    int rows;          /* terminal rows; < 3 disables the live status line */
    bool quiet;        /* no summary line (one-shot use) */
    const char *label; /* model name for the status line; NULL: the request's */
    prov_price price;  /* the model's price (set = false: unknown), for the live cost */
} chat_view_opts;

/* Runs REQ through CS on a worker thread, printing the reply; returns when
 * the turn has ended (completed, cancelled by SIGINT, or failed). RES gets
 * the summary (res->status is chat_turn's result); *CANCELLED tells whether
 * SIGINT stopped it. Errors are printed (to OUT on a terminal, else to
 * stderr). Returns chat_turn's result, or CF_ENOMEM/CF_EIO when the worker
 * could not start. */
int chat_view_turn(chat_service *cs, const chat_request *req, const chat_view_opts *o,
                   chat_result *res, bool *cancelled);

#endif
