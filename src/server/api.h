/*
 * api — the routes that need the chat service: the OpenAI-compatible chat
 * API, the sessions API, templates, stats, compare and votes, and the
 * WebSocket chat hook. Documented in docs/API.md.
 *
 * Every chat turn runs on its own thread as a generation (src/app/gen.h):
 * the HTTP or WebSocket connection only follows the generation's events,
 * so a client that disconnects and comes back (Last-Event-ID / resume)
 * finds the reply still growing or done. A plain OpenAI-API stream is the
 * exception: its disconnect cancels the generation within one step.
 */
#ifndef CONFAB_SERVER_API_H
#define CONFAB_SERVER_API_H

#include "app/chat.h"
#include "server/server.h"

typedef struct srv_api srv_api;

/* Registers the routes on S and sets its chat hook. CS must outlive the
 * result. NULL with ERR set on failure. */
srv_api *srv_api_new(srv_t *s, chat_service *cs, cf_err *err);
/* Cancels nothing by itself (srv_shutdown does that); waits until every
 * turn thread has finished, then frees. Call after srv_shutdown. */
void srv_api_free(srv_api *a);

#endif
