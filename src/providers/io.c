/*
 * io — one libcurl multi thread for every remote request; see io.h.
 *
 * Ownership: prov_io_submit() builds the easy handle on the caller's thread
 * (libcurl allows that as long as one thread uses a handle at a time), then
 * links a struct xfer into `pending` under the mutex and wakes the loop. From
 * then on only the I/O thread touches the xfer. The loop is:
 *
 *     adopt pending → curl_multi_perform → drain curl_multi_info_read →
 *     check cancels and first-byte/idle deadlines → curl_multi_poll
 *
 * (reading the finished transfers before polling, as libcurl's multi
 * documentation asks, so a completed transfer is never left waiting for the
 * poll timeout). Cancel handles get a watcher that calls curl_multi_wakeup,
 * which is thread-safe; the watcher is removed before the xfer is freed.
 */
#include "providers/io.h"

#include "base/clock.h"
#include "base/sb.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

typedef struct xfer {
    struct xfer *next;
    prov_io *io;
    CURL *easy;
    struct curl_slist *hdrs;
    prov_io_handler h;
    prov_cancel *cancel;
    int watch_id;
    uint64_t t_start, t_last_rx; /* monotonic ns */
    int first_byte_ms, idle_ms;
    bool got_byte, head_done;
    long status;
    int retry_after_ms;
    char content_type[128];
    int abort_kind; /* set when a callback or the loop aborted the transfer */
    char errbuf[CURL_ERROR_SIZE];
} xfer;

struct prov_io {
    CURLM *multi;
    pthread_t thread;
    pthread_mutex_t mu;
    xfer *pending; /* submitted, not yet adopted (guarded by mu) */
    bool stopping; /* guarded by mu */
    xfer *active;  /* I/O thread only */
};

/* ---------------------------------------------------------- helpers */

int prov_parse_retry_after(const char *v, long long now_unix) {
    if (!v) return -1;
    while (*v == ' ' || *v == '\t')
        v++;
    if (*v >= '0' && *v <= '9') {
        long long s = 0;
        const char *p = v;
        while (*p >= '0' && *p <= '9') {
            s = s * 10 + (*p - '0');
            if (s > 86400LL * 7) s = 86400LL * 7; /* clamp absurd values */
            p++;
        }
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
            p++;
        if (*p) return -1;
        return (int)(s * 1000);
    }
    char tmp[128];
    size_t n = strcspn(v, "\r\n");
    if (n == 0 || n >= sizeof tmp) return -1;
    memcpy(tmp, v, n);
    tmp[n] = 0;
    time_t t = curl_getdate(tmp, NULL);
    if (t == (time_t)-1) return -1;
    long long d = (long long)t - now_unix;
    if (d < 0) d = 0;
    if (d > 86400LL * 7) d = 86400LL * 7;
    return (int)(d * 1000);
}

static void wake(void *ud) { curl_multi_wakeup(((prov_io *)ud)->multi); }

static void deliver_head(xfer *x) {
    if (x->head_done) return;
    x->head_done = true;
    int k = x->h.on_headers
                ? x->h.on_headers(x->h.ud, x->status, x->content_type, x->retry_after_ms)
                : 0;
    if (k) x->abort_kind = k;
}

static size_t on_header_line(char *buf, size_t size, size_t nitems, void *ud) {
    xfer *x = ud;
    size_t n = size * nitems;
    x->got_byte = true;
    x->t_last_rx = clock_mono_ns();
    if (x->abort_kind) return 0;
    if (n >= 5 && !strncmp(buf, "HTTP/", 5)) {
        /* A new response head (after 1xx): forget the previous one. */
        x->content_type[0] = 0;
        x->retry_after_ms = -1;
        return n;
    }
    if (n <= 2 && (buf[0] == '\r' || buf[0] == '\n')) {
        long st = 0;
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &st);
        if (st >= 200) {
            x->status = st;
            deliver_head(x);
            if (x->abort_kind) return 0;
        }
        return n;
    }
    const char *colon = memchr(buf, ':', n);
    if (!colon) return n;
    size_t nlen = (size_t)(colon - buf);
    const char *v = colon + 1;
    size_t vlen = n - nlen - 1;
    while (vlen && (*v == ' ' || *v == '\t')) {
        v++;
        vlen--;
    }
    while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
        vlen--;
    if (nlen == 12 && !strncasecmp(buf, "content-type", 12)) {
        size_t c = vlen < sizeof x->content_type - 1 ? vlen : sizeof x->content_type - 1;
        memcpy(x->content_type, v, c);
        x->content_type[c] = 0;
    } else if (nlen == 11 && !strncasecmp(buf, "retry-after", 11)) {
        char tmp[128];
        size_t c = vlen < sizeof tmp - 1 ? vlen : sizeof tmp - 1;
        memcpy(tmp, v, c);
        tmp[c] = 0;
        x->retry_after_ms = prov_parse_retry_after(tmp, (long long)time(NULL));
    }
    return n;
}

static size_t on_write(char *p, size_t size, size_t nmemb, void *ud) {
    xfer *x = ud;
    size_t n = size * nmemb;
    x->got_byte = true;
    x->t_last_rx = clock_mono_ns();
    if (!x->head_done) {
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &x->status);
        deliver_head(x);
    }
    if (x->abort_kind) return 0;
    if (x->h.on_body) {
        int k = x->h.on_body(x->h.ud, p, n);
        if (k) {
            x->abort_kind = k;
            return 0;
        }
    }
    return n;
}

static void xfer_free(xfer *x) {
    if (!x) return;
    if (x->cancel && x->watch_id >= 0) prov_cancel_unwatch(x->cancel, x->watch_id);
    if (x->easy) curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->hdrs);
    free(x);
}

/* Ends X: removes it from the multi handle and the active list, calls
 * on_done, frees it. KIND overrides the outcome when non-zero. */
static void xfer_finish(prov_io *io, xfer *x, CURLcode rc, int kind, const char *why) {
    prov_io_outcome o = {0};
    if (x->status == 0) curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &x->status);
    o.status = x->status;
    if (!kind && x->abort_kind) kind = x->abort_kind;
    if (kind) {
        o.kind = (prov_errkind)kind;
        snprintf(o.message, sizeof o.message, "%.200s", why ? why : "aborted");
    } else if (rc != CURLE_OK) {
        switch (rc) {
        case CURLE_OPERATION_TIMEDOUT: o.kind = PROV_ERR_TIMEOUT; break;
        case CURLE_ABORTED_BY_CALLBACK: o.kind = PROV_ERR_CANCELLED; break;
        default: o.kind = PROV_ERR_CONNECT; break;
        }
        snprintf(o.message, sizeof o.message, "%.60s%s%.180s", curl_easy_strerror(rc),
                 x->errbuf[0] ? ": " : "", x->errbuf);
    } else if (!x->head_done) {
        deliver_head(x); /* a response with no body: give the head now */
        if (x->abort_kind) {
            o.kind = (prov_errkind)x->abort_kind;
            snprintf(o.message, sizeof o.message, "aborted");
        }
    }
    curl_multi_remove_handle(io->multi, x->easy);
    for (xfer **pp = &io->active; *pp; pp = &(*pp)->next) {
        if (*pp == x) {
            *pp = x->next;
            break;
        }
    }
    if (x->cancel && x->watch_id >= 0) {
        prov_cancel_unwatch(x->cancel, x->watch_id);
        x->watch_id = -1;
    }
    prov_io_handler h = x->h;
    xfer_free(x);
    if (h.on_done) h.on_done(h.ud, &o);
}

/* ------------------------------------------------------------- loop */

static void *io_main(void *arg) {
    prov_io *io = arg;
    for (;;) {
        pthread_mutex_lock(&io->mu);
        bool stopping = io->stopping;
        xfer *adopt = io->pending;
        io->pending = NULL;
        pthread_mutex_unlock(&io->mu);
        while (adopt) {
            xfer *x = adopt;
            adopt = x->next;
            x->next = io->active;
            io->active = x;
            x->t_start = x->t_last_rx = clock_mono_ns();
            curl_multi_add_handle(io->multi, x->easy);
        }
        if (stopping) {
            while (io->active)
                xfer_finish(io, io->active, CURLE_OK, PROV_ERR_CANCELLED, "shutting down");
            break;
        }
        int running = 0;
        curl_multi_perform(io->multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(io->multi, &left))) {
            if (m->msg != CURLMSG_DONE) continue;
            xfer *x = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
            CURLcode rc = m->data.result;
            if (x) xfer_finish(io, x, rc, 0, NULL);
        }
        /* Cancels and the deadlines libcurl does not know about. */
        uint64_t now = clock_mono_ns();
        long wait_ms = 1000;
        for (xfer *x = io->active, *nx; x; x = nx) {
            nx = x->next;
            if (prov_cancel_fired(x->cancel)) {
                xfer_finish(io, x, CURLE_OK, PROV_ERR_CANCELLED, "cancelled");
                continue;
            }
            uint64_t deadline;
            const char *what;
            if (!x->got_byte) {
                deadline = x->t_start + (uint64_t)x->first_byte_ms * 1000000ULL;
                what = "no response within the first-byte timeout";
            } else {
                deadline = x->t_last_rx + (uint64_t)x->idle_ms * 1000000ULL;
                what = "response stalled past the idle timeout";
            }
            if (now >= deadline) {
                char msg[96];
                snprintf(msg, sizeof msg, "%s (%d ms)", what,
                         x->got_byte ? x->idle_ms : x->first_byte_ms);
                xfer_finish(io, x, CURLE_OK, PROV_ERR_TIMEOUT, msg);
                continue;
            }
            long left_ms = (long)((deadline - now) / 1000000ULL) + 1;
            if (left_ms < wait_ms) wait_ms = left_ms;
        }
        long ct = -1;
        curl_multi_timeout(io->multi, &ct);
        if (ct >= 0 && ct < wait_ms) wait_ms = ct;
        curl_multi_poll(io->multi, NULL, 0, (int)wait_ms, NULL);
    }
    return NULL;
}

prov_io *prov_io_new(cf_err *err) {
    prov_io *io = calloc(1, sizeof *io);
    if (!io) {
        cf_seterr(err, CF_ENOMEM, "out of memory");
        return NULL;
    }
    io->multi = curl_multi_init();
    if (!io->multi) {
        free(io);
        cf_seterr(err, CF_EIO, "curl_multi_init failed");
        return NULL;
    }
    pthread_mutex_init(&io->mu, NULL);
    if (pthread_create(&io->thread, NULL, io_main, io) != 0) {
        curl_multi_cleanup(io->multi);
        pthread_mutex_destroy(&io->mu);
        free(io);
        cf_seterr(err, CF_EIO, "cannot start the provider I/O thread");
        return NULL;
    }
    return io;
}

void prov_io_free(prov_io *io) {
    if (!io) return;
    pthread_mutex_lock(&io->mu);
    io->stopping = true;
    pthread_mutex_unlock(&io->mu);
    curl_multi_wakeup(io->multi);
    pthread_join(io->thread, NULL);
    curl_multi_cleanup(io->multi);
    pthread_mutex_destroy(&io->mu);
    free(io);
}

int prov_io_submit(prov_io *io, const prov_io_request *r, cf_err *err) {
    if (!r->url || (strncmp(r->url, "http://", 7) && strncmp(r->url, "https://", 8)))
        return cf_seterr(err, CF_EINVAL, "provider URL must start with http:// or https://");
    /* A user:password@ in the URL would be a secret libcurl may echo. */
    const char *host = strstr(r->url, "://") + 3;
    size_t hl = strcspn(host, "/?#");
    if (memchr(host, '@', hl))
        return cf_seterr(err, CF_EINVAL, "provider URL must not carry credentials; use api_key");
    xfer *x = calloc(1, sizeof *x);
    if (!x) return cf_seterr(err, CF_ENOMEM, "out of memory");
    x->io = io;
    x->h = r->h;
    x->cancel = r->cancel;
    x->watch_id = -1;
    x->retry_after_ms = -1;
    x->first_byte_ms = r->first_byte_ms > 0 ? r->first_byte_ms : PROV_DEFAULT_FIRST_BYTE_MS;
    x->idle_ms = r->idle_ms > 0 ? r->idle_ms : PROV_DEFAULT_IDLE_MS;
    x->easy = curl_easy_init();
    if (!x->easy) {
        free(x);
        return cf_seterr(err, CF_ENOMEM, "curl_easy_init failed");
    }
    for (size_t i = 0; i < r->n_headers; i++) {
        struct curl_slist *n = curl_slist_append(x->hdrs, r->headers[i]);
        if (!n) {
            xfer_free(x);
            return cf_seterr(err, CF_ENOMEM, "out of memory");
        }
        x->hdrs = n;
    }
    CURL *e = x->easy;
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(r->connect_ms > 0 ? r->connect_ms : PROV_DEFAULT_CONNECT_MS));
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
    curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, r->body ? r->body : "");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header_line);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)x);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "confab/" CONFAB_VERSION);
    /* Watch before publishing: once queued, x belongs to the I/O thread. A
     * fire wakes the loop, which checks the flag of every active transfer
     * (a full watcher table only makes that check wait for the next round). */
    if (r->cancel) x->watch_id = prov_cancel_watch(r->cancel, wake, io);
    pthread_mutex_lock(&io->mu);
    if (io->stopping) {
        pthread_mutex_unlock(&io->mu);
        xfer_free(x);
        return cf_seterr(err, CF_ECLOSED, "provider I/O is shutting down");
    }
    x->next = io->pending;
    io->pending = x;
    pthread_mutex_unlock(&io->mu);
    curl_multi_wakeup(io->multi);
    return 0;
}
