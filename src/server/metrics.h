/*
 * metrics — a small registry of counters, gauges and histograms, rendered
 * in Prometheus' text exposition format (version 0.0.4) for GET /metrics.
 *
 * A family is named on first use (name, help, type, and for histograms its
 * bucket bounds); a series within it is picked by a label string that the
 * caller builds with met_labels() (`route="/healthz",status="200"`). All
 * calls take one mutex: updates are a short linear scan over a few dozen
 * series, far below the cost of the request they describe.
 */
#ifndef CONFAB_SERVER_METRICS_H
#define CONFAB_SERVER_METRICS_H

#include <stddef.h>

#include "base/sb.h"

typedef struct met_registry met_registry;

met_registry *met_new(void);
void met_free(met_registry *m);

/* Adds V (>= 0) to a counter. LABELS may be NULL or "" for none. */
void met_counter_add(met_registry *m, const char *name, const char *help, const char *labels,
                     double v);
/* Sets / adds to a gauge. */
void met_gauge_set(met_registry *m, const char *name, const char *help, const char *labels,
                   double v);
void met_gauge_add(met_registry *m, const char *name, const char *help, const char *labels,
                   double v);
/* Records V in a histogram whose upper bounds are BUCKETS (ascending, NB of
 * them; +Inf is implicit). The bounds given on first use win. */
void met_hist_observe(met_registry *m, const char *name, const char *help, const double *buckets,
                      size_t nb, const char *labels, double v);

/* Current value of a counter or gauge series (0 when absent); for tests. */
double met_value(met_registry *m, const char *name, const char *labels);

/* Appends the whole registry in Prometheus text format to OUT. */
void met_render(met_registry *m, sb_t *out);

/* Builds a label string from NULL-terminated key, value pairs into OUT,
 * escaping values as Prometheus requires (\\, \", \n). */
void met_labels(sb_t *out, ...);

/* Latency buckets in seconds, 1 ms .. 60 s. */
extern const double met_latency_buckets[];
extern const size_t met_n_latency_buckets;

#endif
