/*
 * sse — an incremental parser for Server-Sent Events (text/event-stream), as
 * the WHATWG HTML standard defines them:
 * https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation
 *
 * Bytes are fed as they arrive, split anywhere (even inside a CRLF or a UTF-8
 * character); complete events are handed to a callback. Lines end in CRLF,
 * LF or CR; lines starting with ':' are comments; `data:` lines accumulate
 * (joined by LF); `event:` and `id:` are kept; one space after the colon is
 * stripped; a blank line dispatches the event; an event with no data is not
 * dispatched. A leading UTF-8 BOM is skipped. A line or event longer than the
 * configured limit is an error (a hostile upstream cannot make us buffer
 * without bound).
 */
#ifndef CONFAB_PROVIDERS_SSE_H
#define CONFAB_PROVIDERS_SSE_H

#include "base/sb.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    const char *event; /* the `event:` field, "" when absent */
    const char *data;  /* data lines joined by LF, NUL-terminated */
    size_t data_len;
    const char *id; /* the last `id:` seen on the stream, "" when none */
} sse_event;

/* Returns 0 to continue, anything else to stop parsing (sse_feed returns it). */
typedef int (*sse_event_fn)(void *ud, const sse_event *ev);

typedef struct {
    sb_t line, data, event, id; /* partial line; the event being built */
    size_t max_bytes;           /* limit on one line and one event's data */
    size_t n_events;            /* events dispatched so far */
    size_t n_comments;          /* comment lines seen (keep-alives) */
    bool cr_pending;            /* the last byte fed was CR: skip a following LF */
    bool started;               /* past the optional BOM */
    bool have_fields;           /* some field seen since the last dispatch */
} sse_parser;

/* Initialises P; MAX_BYTES 0 means 1 MiB. */
void sse_init(sse_parser *p, size_t max_bytes);
/* Frees P's buffers (P can be initialised again). */
void sse_free(sse_parser *p);
/* Feeds N bytes. Returns 0, CF_EFORMAT when a line or event exceeds the
 * limit, or the callback's non-zero value. */
int sse_feed(sse_parser *p, const char *buf, size_t n, sse_event_fn fn, void *ud);
/* True when bytes of an undispatched event are buffered (a stream that ends
 * now was cut in the middle of an event). */
bool sse_pending(const sse_parser *p);

#endif
