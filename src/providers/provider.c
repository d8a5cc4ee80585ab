/*
 * provider — the shared pieces of the backend interface: names of error
 * kinds and finish reasons, the cancel handle, and libcurl's process-wide
 * initialisation.
 *
 * The cancel handle is a flag plus a small fixed table of watchers guarded by
 * a mutex, and a condition variable so prov_cancel_sleep() (the router's
 * backoff) wakes at once when the handle fires. A fixed table (16) keeps it
 * allocation-free after creation; a request rarely has more than two
 * watchers at a time (the router's attempt and the I/O thread's wake-up).
 */
#include "providers/provider.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

const char *prov_errkind_name(prov_errkind k) {
    switch (k) {
    case PROV_ERR_NONE: return "none";
    case PROV_ERR_CONNECT: return "connect";
    case PROV_ERR_TIMEOUT: return "timeout";
    case PROV_ERR_HTTP_4XX: return "http_4xx";
    case PROV_ERR_RATE_LIMITED: return "rate_limited";
    case PROV_ERR_HTTP_5XX: return "http_5xx";
    case PROV_ERR_PROTOCOL: return "protocol";
    case PROV_ERR_AUTH: return "auth";
    case PROV_ERR_CANCELLED: return "cancelled";
    case PROV_ERR_UNAVAILABLE: return "unavailable";
    case PROV_ERR_CONFIG: return "config";
    }
    return "unknown";
}

const char *prov_finish_name(prov_finish f) {
    switch (f) {
    case PROV_FINISH_NONE: return "none";
    case PROV_FINISH_STOP: return "stop";
    case PROV_FINISH_LENGTH: return "length";
    case PROV_FINISH_FILTER: return "content_filter";
    case PROV_FINISH_TOOL: return "tool_calls";
    case PROV_FINISH_OTHER: return "other";
    }
    return "other";
}

/* ------------------------------------------------------------- cancel */

#define CANCEL_WATCHERS 16

struct prov_cancel {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_bool fired;
    struct {
        void (*fn)(void *);
        void *ud;
    } w[CANCEL_WATCHERS];
};

prov_cancel *prov_cancel_new(void) {
    prov_cancel *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&c->fired, false);
    return c;
}

void prov_cancel_free(prov_cancel *c) {
    if (!c) return;
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

void prov_cancel_fire(prov_cancel *c) {
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    if (!atomic_exchange(&c->fired, true)) {
        for (int i = 0; i < CANCEL_WATCHERS; i++)
            if (c->w[i].fn) c->w[i].fn(c->w[i].ud);
    }
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

bool prov_cancel_fired(const prov_cancel *c) { return c && atomic_load(&c->fired); }

int prov_cancel_watch(prov_cancel *c, void (*fn)(void *ud), void *ud) {
    pthread_mutex_lock(&c->mu);
    int id = CF_EBUSY;
    for (int i = 0; i < CANCEL_WATCHERS; i++) {
        if (!c->w[i].fn) {
            c->w[i].fn = fn;
            c->w[i].ud = ud;
            id = i;
            break;
        }
    }
    bool already = atomic_load(&c->fired);
    if (id >= 0 && already) fn(ud);
    pthread_mutex_unlock(&c->mu);
    return id;
}

void prov_cancel_unwatch(prov_cancel *c, int id) {
    if (!c || id < 0 || id >= CANCEL_WATCHERS) return;
    pthread_mutex_lock(&c->mu);
    c->w[id].fn = NULL;
    c->w[id].ud = NULL;
    pthread_mutex_unlock(&c->mu);
}

bool prov_cancel_sleep(prov_cancel *c, int ms) {
    struct timespec ts;
    if (ms < 0) ms = 0;
    if (!c) {
        ts.tv_sec = ms / 1000;
        ts.tv_nsec = (long)(ms % 1000) * 1000000L;
        while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {}
        return false;
    }
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&c->mu);
    while (!atomic_load(&c->fired)) {
        if (pthread_cond_timedwait(&c->cv, &c->mu, &ts) == ETIMEDOUT) break;
    }
    bool fired = atomic_load(&c->fired);
    pthread_mutex_unlock(&c->mu);
    return fired;
}

/* ------------------------------------------------------------- global */

int prov_global_init(cf_err *err) {
    CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK)
        return cf_seterr(err, CF_EIO, "libcurl initialisation failed: %s", curl_easy_strerror(rc));
    return 0;
}

void prov_global_cleanup(void) { curl_global_cleanup(); }
