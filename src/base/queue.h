/*
 * queue — a bounded, thread-safe FIFO of pointers (mutex + two condition
 * variables), with close.
 *
 * Threads in confab talk only through queues like this one: the HTTP thread
 * pushes requests to a model's scheduler, the scheduler pushes events back.
 * After queue_close(), pushes fail with CF_ECLOSED and pops drain what is
 * left, then fail with CF_ECLOSED: consumers see every item that was queued.
 * The queue never owns or frees the items.
 */
#ifndef CONFAB_BASE_QUEUE_H
#define CONFAB_BASE_QUEUE_H

#include <stddef.h>

typedef struct cf_queue cf_queue;

/* Creates a queue holding at most CAPACITY items (>= 1). NULL on failure. */
cf_queue *queue_new(size_t capacity);
/* Frees the queue (not its items). No thread may be using it. */
void queue_free(cf_queue *q);

/* Appends ITEM, waiting while the queue is full. TIMEOUT_MS < 0 waits
 * forever, 0 does not wait. Returns 0, CF_ETIMEOUT or CF_ECLOSED. */
int queue_push(cf_queue *q, void *item, int timeout_ms);
/* Removes the oldest item into *ITEM, waiting while empty. Returns 0,
 * CF_ETIMEOUT, or CF_ECLOSED once closed and drained. */
int queue_pop(cf_queue *q, void **item, int timeout_ms);
/* Closes the queue and wakes every waiter. Idempotent. */
void queue_close(cf_queue *q);
/* Items queued now (a snapshot). */
size_t queue_len(cf_queue *q);

#endif
