/*
 * io — the one thread that performs every remote provider request, with
 * libcurl's multi interface.
 *
 * Callers (the remote backends) submit a prepared HTTP POST with three
 * callbacks; the I/O thread runs all transfers concurrently and calls back
 * on itself: on_headers once the final response head is in, on_body for
 * each piece of body, and on_done exactly once at the end, whatever
 * happened. Submitting and cancelling wake the thread's curl_multi_poll()
 * with curl_multi_wakeup(), so neither waits for a poll timeout.
 *
 * Timeouts per request: connect (libcurl's own), first byte (from submit to
 * the first response byte) and idle (longest gap between received bytes once
 * the response started), enforced by the loop. TLS peer and host
 * verification are always on; only http and https are allowed; redirects are
 * not followed (an API that redirects a POST is misconfigured).
 */
#ifndef CONFAB_PROVIDERS_IO_H
#define CONFAB_PROVIDERS_IO_H

#include "base/err.h"
#include "providers/provider.h"

#include <stddef.h>

typedef struct prov_io prov_io;

typedef struct {
    prov_errkind kind; /* PROV_ERR_NONE: the exchange completed (any HTTP status) */
    long status;       /* HTTP status, 0 when no response head arrived */
    char message[256]; /* transport error text (no secrets: URL userinfo is refused) */
} prov_io_outcome;

/* Callbacks, all run on the I/O thread. on_headers and on_body return 0 to
 * go on, or a prov_errkind to abort the transfer with that kind (the handler
 * keeps its own explanation). on_done is always called exactly once, last. */
typedef struct {
    int (*on_headers)(void *ud, long status, const char *content_type, int retry_after_ms);
    int (*on_body)(void *ud, const char *p, size_t n);
    void (*on_done)(void *ud, const prov_io_outcome *o);
    void *ud;
} prov_io_handler;

typedef struct {
    const char *url;  /* http:// or https:// */
    const char *body; /* POST body (copied) */
    size_t body_len;
    const char *const *headers; /* "Name: value" lines (copied) */
    size_t n_headers;
    int connect_ms, first_byte_ms, idle_ms; /* > 0 */
    prov_cancel *cancel;                    /* may be NULL; must outlive the transfer */
    prov_io_handler h;
} prov_io_request;

/* Starts the I/O thread. prov_global_init() must have run. NULL on error. */
prov_io *prov_io_new(cf_err *err);
/* Cancels every transfer still running (their on_done sees
 * PROV_ERR_CANCELLED), stops and joins the thread, frees IO. */
void prov_io_free(prov_io *io);
/* Hands R to the I/O thread. On 0 the handler will be called (on_done
 * exactly once); on error (CF_EINVAL bad URL, CF_ECLOSED shutting down,
 * CF_ENOMEM) it never is. */
int prov_io_submit(prov_io *io, const prov_io_request *r, cf_err *err);
/* Parses a Retry-After value: delay-seconds or an HTTP date. Returns
 * milliseconds from NOW_UNIX (seconds since the epoch), >= 0, or -1 when the
 * value is neither. */
int prov_parse_retry_after(const char *v, long long now_unix);

#endif
