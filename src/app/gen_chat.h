/*
 * gen_chat — the bridge between a chat turn (app/chat.h) and a generation
 * (app/gen.h): the turn's events go into the generation's log, and the
 * generation's controls go back to the turn.
 *
 *   chat_event DELTA/USAGE/INFO  -> gen_delta / gen_usage / gen_info
 *   chat_event DONE              -> done {finish_reason, model, provider,
 *                                         cached, session_id, message_id}
 *   chat_event ERROR             -> error {kind, message, session_id?, ...}
 *   gen_cancel (stop, disconnect, shutdown) -> prov_cancel_fire, at once
 *   gen_set_params granularity   -> the sink's granularity callback
 *
 * chat_turn blocks, so the caller runs it on a thread of its own:
 *
 *   gen *g = gen_start(gens, owner, session, &err);
 *   prov_cancel *pc = prov_cancel_new();
 *   gen_chat_bridge b; gen_chat_bridge_init(&b, g, pc);
 *   chat_sink sink = gen_chat_bridge_sink(&b);
 *   int rc = chat_turn(cs, &req, pc, &sink, &res, &err);
 *   gen_chat_bridge_finish(&b, rc, &err);   // the log always ends
 *   prov_cancel_free(pc); gen_unref(g);
 */
#ifndef CONFAB_APP_GEN_CHAT_H
#define CONFAB_APP_GEN_CHAT_H

#include <stdint.h>

#include "app/chat.h"
#include "app/gen.h"

typedef struct {
    gen *g;               /* borrowed: the caller holds a reference */
    prov_cancel *cancel;  /* borrowed; may be NULL */
    uint64_t params_seen; /* gen_params version last applied */
} gen_chat_bridge;

/* Binds B to G and CANCEL: cancelling G fires CANCEL immediately. */
void gen_chat_bridge_init(gen_chat_bridge *b, gen *g, prov_cancel *cancel);
/* A sink that appends the turn's events to the generation; valid while B
 * lives. */
chat_sink gen_chat_bridge_sink(gen_chat_bridge *b);
/* Call after chat_turn returned RC: when the turn ended without a terminal
 * event, appends an error (RC != 0, ERR's message) or a done (RC == 0), so
 * subscribers always see the end. Unbinds the cancel watcher. */
void gen_chat_bridge_finish(gen_chat_bridge *b, int rc, const cf_err *err);

#endif
