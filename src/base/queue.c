/*
 * queue — bounded MPMC queue over a ring buffer. One mutex guards the ring;
 * `not_empty` wakes consumers, `not_full` wakes producers. Timed waits use
 * CLOCK_MONOTONIC so wall-clock changes cannot stretch them.
 */
#include "base/queue.h"

#include "base/err.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

struct cf_queue {
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    void **items; /* (cap,) ring */
    size_t cap, head, len;
    bool closed;
};

cf_queue *queue_new(size_t capacity) {
    if (capacity == 0) return NULL;
    cf_queue *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->items = calloc(capacity, sizeof *q->items);
    if (!q->items) {
        free(q);
        return NULL;
    }
    q->cap = capacity;
    pthread_mutex_init(&q->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->not_empty, &ca);
    pthread_cond_init(&q->not_full, &ca);
    pthread_condattr_destroy(&ca);
    return q;
}

void queue_free(cf_queue *q) {
    if (!q) return;
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
    free(q->items);
    free(q);
}

static void deadline_after(struct timespec *ts, int ms) {
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Waits on COND until PRED is false, closed, or timeout. Returns 0 when PRED
 * became false (caller proceeds), else an error. Called with mu held. */
#define WAIT_WHILE(q, cond, pred, timeout_ms)                                                      \
    ({                                                                                             \
        int rc_ = 0;                                                                               \
        struct timespec dl_;                                                                       \
        if ((timeout_ms) > 0) deadline_after(&dl_, (timeout_ms));                                  \
        while ((pred) && !(q)->closed) {                                                           \
            if ((timeout_ms) == 0) {                                                               \
                rc_ = CF_ETIMEOUT;                                                                 \
                break;                                                                             \
            }                                                                                      \
            if ((timeout_ms) < 0)                                                                  \
                pthread_cond_wait(&(cond), &(q)->mu);                                              \
            else if (pthread_cond_timedwait(&(cond), &(q)->mu, &dl_) == ETIMEDOUT && (pred) &&     \
                     !(q)->closed) {                                                               \
                rc_ = CF_ETIMEOUT;                                                                 \
                break;                                                                             \
            }                                                                                      \
        }                                                                                          \
        rc_;                                                                                       \
    })

int queue_push(cf_queue *q, void *item, int timeout_ms) {
    pthread_mutex_lock(&q->mu);
    int rc = WAIT_WHILE(q, q->not_full, q->len == q->cap, timeout_ms);
    if (rc == 0 && q->closed) rc = CF_ECLOSED;
    if (rc == 0) {
        q->items[(q->head + q->len) % q->cap] = item;
        q->len++;
        pthread_cond_signal(&q->not_empty);
    }
    pthread_mutex_unlock(&q->mu);
    return rc;
}

int queue_pop(cf_queue *q, void **item, int timeout_ms) {
    pthread_mutex_lock(&q->mu);
    int rc = WAIT_WHILE(q, q->not_empty, q->len == 0, timeout_ms);
    if (rc == 0 && q->len == 0) rc = CF_ECLOSED; /* closed and drained */
    if (rc == 0) {
        *item = q->items[q->head];
        q->head = (q->head + 1) % q->cap;
        q->len--;
        pthread_cond_signal(&q->not_full);
    }
    pthread_mutex_unlock(&q->mu);
    return rc;
}

void queue_close(cf_queue *q) {
    pthread_mutex_lock(&q->mu);
    q->closed = true;
    pthread_cond_broadcast(&q->not_empty);
    pthread_cond_broadcast(&q->not_full);
    pthread_mutex_unlock(&q->mu);
}

size_t queue_len(cf_queue *q) {
    pthread_mutex_lock(&q->mu);
    size_t n = q->len;
    pthread_mutex_unlock(&q->mu);
    return n;
}
