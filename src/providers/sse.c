/*
 * sse — incremental Server-Sent Events parser; see sse.h for the contract.
 *
 * The parser keeps the current partial line in `line` and the event being
 * assembled in `data`/`event`; each complete line is interpreted at once, so
 * memory is bounded by one line plus one event. CR, LF and CRLF all end a
 * line; a CR at the end of one chunk sets cr_pending so that an LF at the
 * start of the next chunk is not taken for an empty line (which would
 * dispatch an event early).
 */
#include "providers/sse.h"

#include "base/err.h"

#include <string.h>

void sse_init(sse_parser *p, size_t max_bytes) {
    memset(p, 0, sizeof *p);
    p->max_bytes = max_bytes ? max_bytes : (size_t)1 << 20;
}

void sse_free(sse_parser *p) {
    sb_free(&p->line);
    sb_free(&p->data);
    sb_free(&p->event);
    sb_free(&p->id);
}

bool sse_pending(const sse_parser *p) { return p->line.len > 0 || p->have_fields; }

static int dispatch(sse_parser *p, sse_event_fn fn, void *ud) {
    int rc = 0;
    if (p->data.len > 0) { /* each data line added one LF, so len > 0 iff a data line came */
        /* Strip the one trailing LF that the last data line added. */
        if (p->data.len && p->data.data[p->data.len - 1] == '\n')
            sb_truncate(&p->data, p->data.len - 1);
        sse_event ev = {sb_str(&p->event), sb_str(&p->data), p->data.len, sb_str(&p->id)};
        p->n_events++;
        rc = fn(ud, &ev);
    }
    sb_clear(&p->data);
    sb_clear(&p->event);
    p->have_fields = false;
    return rc;
}

static int process_line(sse_parser *p, const char *s, size_t n, sse_event_fn fn, void *ud) {
    if (n == 0) return dispatch(p, fn, ud);
    if (s[0] == ':') {
        p->n_comments++;
        return 0;
    }
    const char *colon = memchr(s, ':', n);
    size_t flen = colon ? (size_t)(colon - s) : n;
    const char *v = colon ? colon + 1 : s + n;
    size_t vlen = (size_t)(s + n - v);
    if (vlen && v[0] == ' ') {
        v++;
        vlen--;
    }
    p->have_fields = true;
    if (flen == 4 && !memcmp(s, "data", 4)) {
        if (p->data.len + vlen + 1 > p->max_bytes) return CF_EFORMAT;
        sb_appendn(&p->data, v, vlen);
        sb_putc(&p->data, '\n');
    } else if (flen == 5 && !memcmp(s, "event", 5)) {
        sb_clear(&p->event);
        sb_appendn(&p->event, v, vlen);
    } else if (flen == 2 && !memcmp(s, "id", 2)) {
        if (!memchr(v, '\0', vlen)) {
            sb_clear(&p->id);
            sb_appendn(&p->id, v, vlen);
        }
    }
    /* `retry:` and unknown fields are ignored, as the standard says. */
    return 0;
}

int sse_feed(sse_parser *p, const char *buf, size_t n, sse_event_fn fn, void *ud) {
    size_t i = 0;
    while (i < n) {
        if (!p->started) {
            /* Skip a UTF-8 BOM (EF BB BF), which may itself arrive split. */
            static const unsigned char bom[3] = {0xEF, 0xBB, 0xBF};
            size_t have = p->line.len;
            if ((unsigned char)buf[i] == bom[have]) {
                sb_putc(&p->line, buf[i++]);
                if (p->line.len == 3) {
                    sb_clear(&p->line);
                    p->started = true;
                }
                continue;
            }
            p->started = true; /* not a BOM: what we held is ordinary text */
        }
        char c = buf[i];
        if (p->cr_pending) {
            p->cr_pending = false;
            if (c == '\n') {
                i++;
                continue;
            }
        }
        if (c == '\r' || c == '\n') {
            i++;
            if (c == '\r') p->cr_pending = true;
            int rc = process_line(p, p->line.data ? p->line.data : "", p->line.len, fn, ud);
            sb_clear(&p->line);
            if (rc) return rc;
            continue;
        }
        /* Copy the run of ordinary bytes up to the next line end at once. */
        size_t j = i;
        while (j < n && buf[j] != '\r' && buf[j] != '\n')
            j++;
        if (p->line.len + (j - i) > p->max_bytes) return CF_EFORMAT;
        sb_appendn(&p->line, buf + i, j - i);
        i = j;
    }
    return 0;
}
