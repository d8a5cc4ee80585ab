/*
 * metrics — counters, gauges and histograms with Prometheus text output
 * (see metrics.h). Families and series are kept in insertion order so the
 * output is stable from one scrape to the next.
 */
#include "server/metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { MET_COUNTER, MET_GAUGE, MET_HIST } met_type;

typedef struct {
    char *labels;
    double value;   /* counter / gauge */
    double sum;     /* histogram */
    uint64_t count; /* histogram */
    uint64_t *le;   /* (nb,) histogram: per-bucket (non-cumulative) counts */
} met_series;

typedef struct {
    char *name, *help;
    met_type type;
    double *bounds; /* (nb,) */
    size_t nb;
    met_series *s; /* (ns,) */
    size_t ns, cap;
} met_family;

struct met_registry {
    pthread_mutex_t mu;
    met_family *f; /* (nf,) */
    size_t nf, cap;
};

const double met_latency_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                      0.5,   1,      2.5,   5,    10,    30,   60};
const size_t met_n_latency_buckets = sizeof met_latency_buckets / sizeof met_latency_buckets[0];

met_registry *met_new(void) {
    met_registry *m = calloc(1, sizeof *m);
    if (m) pthread_mutex_init(&m->mu, NULL);
    return m;
}

void met_free(met_registry *m) {
    if (!m) return;
    for (size_t i = 0; i < m->nf; i++) {
        met_family *f = &m->f[i];
        for (size_t j = 0; j < f->ns; j++) {
            free(f->s[j].labels);
            free(f->s[j].le);
        }
        free(f->s);
        free(f->name);
        free(f->help);
        free(f->bounds);
    }
    free(m->f);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static void *xcalloc(size_t n, size_t sz) {
    void *p = calloc(n ? n : 1, sz);
    if (!p) abort(); /* as sb does: running out of memory here is fatal */
    return p;
}

static char *xstrdup(const char *s) {
    char *p = strdup(s ? s : "");
    if (!p) abort();
    return p;
}

/* Finds or creates the family and series; caller holds m->mu. Returns NULL
 * when NAME exists with another type. */
static met_series *series_in(met_registry *m, const char *name, const char *help, met_type t,
                             const double *bounds, size_t nb, const char *labels,
                             met_family **fout) {
    if (!labels) labels = "";
    met_family *f = NULL;
    for (size_t i = 0; i < m->nf; i++)
        if (!strcmp(m->f[i].name, name)) {
            f = &m->f[i];
            break;
        }
    if (!f) {
        if (m->nf == m->cap) {
            m->cap = m->cap ? m->cap * 2 : 16;
            m->f = realloc(m->f, m->cap * sizeof *m->f);
            if (!m->f) abort();
        }
        f = &m->f[m->nf++];
        memset(f, 0, sizeof *f);
        f->name = xstrdup(name);
        f->help = xstrdup(help);
        f->type = t;
        if (t == MET_HIST) {
            f->bounds = xcalloc(nb, sizeof *f->bounds);
            memcpy(f->bounds, bounds, nb * sizeof *bounds);
            f->nb = nb;
        }
    }
    if (f->type != t) return NULL;
    if (fout) *fout = f;
    for (size_t j = 0; j < f->ns; j++)
        if (!strcmp(f->s[j].labels, labels)) return &f->s[j];
    if (f->ns == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 8;
        f->s = realloc(f->s, f->cap * sizeof *f->s);
        if (!f->s) abort();
    }
    met_series *s = &f->s[f->ns++];
    memset(s, 0, sizeof *s);
    s->labels = xstrdup(labels);
    if (t == MET_HIST) s->le = xcalloc(f->nb, sizeof *s->le);
    return s;
}

static met_series *series(met_registry *m, const char *name, const char *help, met_type t,
                          const double *bounds, size_t nb, const char *labels) {
    return series_in(m, name, help, t, bounds, nb, labels, NULL);
}

void met_counter_add(met_registry *m, const char *name, const char *help, const char *labels,
                     double v) {
    if (!m || v < 0) return;
    pthread_mutex_lock(&m->mu);
    met_series *s = series(m, name, help, MET_COUNTER, NULL, 0, labels);
    if (s) s->value += v;
    pthread_mutex_unlock(&m->mu);
}

void met_gauge_set(met_registry *m, const char *name, const char *help, const char *labels,
                   double v) {
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    met_series *s = series(m, name, help, MET_GAUGE, NULL, 0, labels);
    if (s) s->value = v;
    pthread_mutex_unlock(&m->mu);
}

void met_gauge_add(met_registry *m, const char *name, const char *help, const char *labels,
                   double v) {
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    met_series *s = series(m, name, help, MET_GAUGE, NULL, 0, labels);
    if (s) s->value += v;
    pthread_mutex_unlock(&m->mu);
}

void met_hist_observe(met_registry *m, const char *name, const char *help, const double *buckets,
                      size_t nb, const char *labels, double v) {
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    met_family *f = NULL;
    met_series *s = series_in(m, name, help, MET_HIST, buckets, nb, labels, &f);
    if (s) {
        s->sum += v;
        s->count++;
        for (size_t b = 0; b < f->nb; b++)
            if (v <= f->bounds[b]) {
                s->le[b]++;
                break;
            }
    }
    pthread_mutex_unlock(&m->mu);
}

double met_value(met_registry *m, const char *name, const char *labels) {
    if (!labels) labels = "";
    double v = 0;
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->nf; i++) {
        if (strcmp(m->f[i].name, name)) continue;
        for (size_t j = 0; j < m->f[i].ns; j++)
            if (!strcmp(m->f[i].s[j].labels, labels))
                v = m->f[i].type == MET_HIST ? (double)m->f[i].s[j].count : m->f[i].s[j].value;
    }
    pthread_mutex_unlock(&m->mu);
    return v;
}

static void with_labels(sb_t *out, const char *name, const char *suffix, const char *labels,
                        const char *extra) {
    sb_append(out, name);
    sb_append(out, suffix);
    bool any = labels && *labels;
    if (any || extra) {
        sb_putc(out, '{');
        if (any) sb_append(out, labels);
        if (extra) {
            if (any) sb_putc(out, ',');
            sb_append(out, extra);
        }
        sb_putc(out, '}');
    }
}

void met_render(met_registry *m, sb_t *out) {
    static const char *types[] = {"counter", "gauge", "histogram"};
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->nf; i++) {
        met_family *f = &m->f[i];
        sb_printf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, types[f->type]);
        for (size_t j = 0; j < f->ns; j++) {
            met_series *s = &f->s[j];
            if (f->type != MET_HIST) {
                with_labels(out, f->name, "", s->labels, NULL);
                sb_printf(out, " %.17g\n", s->value);
                continue;
            }
            uint64_t cum = 0;
            char le[64];
            for (size_t b = 0; b < f->nb; b++) {
                cum += s->le[b];
                snprintf(le, sizeof le, "le=\"%g\"", f->bounds[b]);
                with_labels(out, f->name, "_bucket", s->labels, le);
                sb_printf(out, " %llu\n", (unsigned long long)cum);
            }
            with_labels(out, f->name, "_bucket", s->labels, "le=\"+Inf\"");
            sb_printf(out, " %llu\n", (unsigned long long)s->count);
            with_labels(out, f->name, "_sum", s->labels, NULL);
            sb_printf(out, " %.17g\n", s->sum);
            with_labels(out, f->name, "_count", s->labels, NULL);
            sb_printf(out, " %llu\n", (unsigned long long)s->count);
        }
    }
    pthread_mutex_unlock(&m->mu);
}

void met_labels(sb_t *out, ...) {
    va_list ap;
    va_start(ap, out);
    bool first = true;
    for (;;) {
        const char *k = va_arg(ap, const char *);
        if (!k) break;
        const char *v = va_arg(ap, const char *);
        if (!first) sb_putc(out, ',');
        first = false;
        sb_append(out, k);
        sb_append(out, "=\"");
        for (const char *p = v ? v : ""; *p; p++) {
            if (*p == '\\')
                sb_append(out, "\\\\");
            else if (*p == '"')
                sb_append(out, "\\\"");
            else if (*p == '\n')
                sb_append(out, "\\n");
            else
                sb_putc(out, *p);
        }
        sb_putc(out, '"');
    }
    va_end(ap);
}
