/*
 * internal — what the server's own files share: the server struct and the
 * helpers that sse.c, ws.c and assets.c call in server.c. Nothing outside
 * src/server includes this.
 */
#ifndef CONFAB_SERVER_INTERNAL_H
#define CONFAB_SERVER_INTERNAL_H

#include <civetweb.h>
#include <pthread.h>
#include <stdatomic.h>

#include "server/auth.h"
#include "server/server.h"

#define SRV_MAX_SEGS 16

typedef struct {
    char method[12];
    char *pattern;
    char *segs[SRV_MAX_SEGS]; /* (nseg,) pointers into a copy of pattern */
    char *segbuf;
    size_t nseg;
    srv_handler h;
    void *ctx;
    int flags;
} srv_route;

typedef struct ws_conn ws_conn;

struct srv {
    srv_options o;
    char *host;
    struct mg_context *mg;
    int port;
    uint64_t started_ns;

    srv_route *routes; /* (nroutes,) fixed once started */
    size_t nroutes, cap_routes;

    srv_keys *keys;         /* NULL when no keys configured */
    const char *anon_owner; /* owner id when no keys: "local" or "insecure" */
    srv_ratelimit *rl;      /* NULL = unlimited */

    gen_registry *gens;
    bool own_gens;
    met_registry *met;

    srv_chat_hook hook;
    void *hook_ctx;

    atomic_bool started, stopping, hard_stop;
    atomic_bool mg_stopped; /* set by the thread running mg_stop */
    atomic_int active_streams;

    pthread_mutex_t ws_mu; /* guards the list of live WebSocket connections */
    ws_conn *ws_list;
};

/* Checks "Authorization: Bearer ..." (and, when ALLOW_QUERY, the
 * access_token query variable). Returns true and fills OWNER (>= 20 bytes)
 * when the caller may proceed. */
bool srv_authenticate(srv_t *s, const struct mg_connection *conn, bool allow_query, char owner[20]);

/* Checks the rate limit for OWNER; false with *RETRY_S set when over. */
bool srv_rate_ok(srv_t *s, const char *owner, int *retry_s);

/* Scans JSON text (N bytes, strings skipped) and returns true when no
 * object/array nests deeper than MAX; runs before the parser sees it. */
bool srv_json_depth_ok(const char *s, size_t n, int max);

/* Adds the headers every response carries (nosniff, CORS when allowed). */
void srv_common_headers(srv_req *r);

/* Stream accounting (active streams gauge). */
void srv_stream_enter(srv_t *s);
void srv_stream_leave(srv_t *s);

/* Applies {temperature?, top_p?, granularity?} from BODY to G (shared by
 * the HTTP route and the WebSocket `set` op). 0, CF_EINVAL or CF_ECLOSED. */
int srv_set_params(gen *g, json_t *body, cf_err *err);
/* The current overrides of G as {"version", "temperature"?, ...}. */
json_t *srv_params_json(gen *g);

/* Registers the generation routes (sse.c) and the WebSocket (ws.c). */
void srv_sse_routes(srv_t *s);
void srv_ws_register(srv_t *s);
/* Ends every WebSocket follower (shutdown). */
void srv_ws_close_all(srv_t *s);

/* Routes for the embedded web UI (assets.c). */
void srv_asset_routes(srv_t *s);

#endif
