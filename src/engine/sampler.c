/*
 * sampler — from a row of logits to one token id, and stop strings.
 *
 * The chain runs in a fixed order, as common practice (llama.cpp) does:
 *
 *   logit bias -> repetition / frequency / presence penalties
 *     -> greedy? argmax (lowest id wins ties), done
 *     -> top-k -> softmax -> top-p -> min-p -> temperature -> softmax -> draw
 *
 * Candidates are (id, logit) pairs in a scratch array owned by the sampler;
 * the caller's logits are never modified. Ordering uses a total order
 * (logit descending, then id ascending) so results never depend on qsort's
 * instability. Cost matters with 128k-token vocabularies: top-k selects the
 * k best with a quickselect and sorts only those; top-p / min-p first drop
 * tokens 40 nats below the best (weights < 4e-18, which cannot change the
 * outcome); plain temperature sampling does not sort at all. Temperature is applied after the
 * truncations, as llama.cpp does, so top-p and min-p compare temperature-1 probabilities and the
 * temperature only reshapes the survivors.
 *
 * Randomness: xoshiro256** seeded through splitmix64 from the user's seed.
 * No global rand(): the same seed and the same logits give the same tokens.
 *
 * Penalties look at the last repeat_last_n accepted tokens (a ring buffer);
 * counts are rebuilt for each sample over that window (n is small).
 *
 * Stop strings: the matcher keeps a pending buffer. After each feed it looks
 * for the earliest complete stop string; if none, it holds back the longest
 * suffix that is a prefix of some stop string and releases the rest.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/sb.h"
#include "confab/engine.h"

/* ------------------------------------------------------------------ PRNG */

static uint64_t samp_splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t samp_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t samp_next(uint64_t s[4]) {
    const uint64_t result = samp_rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = samp_rotl(s[3], 45);
    return result;
}

/* Uniform double in [0, 1) from the top 53 bits. */
static double samp_uniform(uint64_t s[4]) { return (double)(samp_next(s) >> 11) * 0x1.0p-53; }

/* --------------------------------------------------------------- sampler */

typedef struct {
    int32_t id;
    float logit;
    float p;
} samp_cand;

struct cf_sampler {
    cf_samp_params p;
    int n_vocab;
    cf_logit_bias *bias; /* (n_bias,) */
    samp_cand *cand;     /* (n_vocab,) scratch */
    int32_t *hist;       /* (repeat_last_n,) ring of accepted tokens */
    int n_hist, hist_at;
    int32_t *count; /* (n_vocab,) scratch counts for penalties */
    uint64_t rng[4];
};

cf_samp_params cf_samp_params_default(void) {
    cf_samp_params p = {0};
    p.temp = 0.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    p.repeat_last_n = 64;
    p.seed = 0;
    return p;
}

static void samp_seed(cf_sampler *s) {
    uint64_t x = s->p.seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = samp_splitmix64(&x);
}

cf_sampler *cf_samp_new(const cf_samp_params *p, int n_vocab, cf_err *err) {
    cf_samp_params d = cf_samp_params_default();
    if (!p) p = &d;
    if (n_vocab <= 0) {
        cf_seterr(err, CF_EINVAL, "sampler: vocabulary size %d must be positive", n_vocab);
        return NULL;
    }
    if (!(p->top_p >= 0.0f) || !(p->min_p >= 0.0f && p->min_p <= 1.0f) || isnan(p->temp)) {
        cf_seterr(err, CF_EINVAL, "sampler: top_p %g must be >= 0 and min_p %g in [0, 1]", p->top_p,
                  p->min_p);
        return NULL;
    }
    if (!(p->repeat_penalty > 0.0f)) {
        cf_seterr(err, CF_EINVAL, "sampler: repeat_penalty %g must be > 0", p->repeat_penalty);
        return NULL;
    }
    if (p->repeat_last_n < 0 || p->n_bias < 0) {
        cf_seterr(err, CF_EINVAL, "sampler: repeat_last_n and n_bias must be >= 0");
        return NULL;
    }
    for (int i = 0; i < p->n_bias; i++) {
        if (p->bias[i].token < 0 || p->bias[i].token >= n_vocab) {
            cf_seterr(err, CF_EINVAL, "sampler: logit bias token %d out of range [0, %d)",
                      p->bias[i].token, n_vocab);
            return NULL;
        }
    }
    cf_sampler *s = calloc(1, sizeof *s);
    if (!s) goto oom;
    s->p = *p;
    s->n_vocab = n_vocab;
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    s->count = calloc((size_t)n_vocab, sizeof *s->count);
    s->hist = malloc((size_t)(p->repeat_last_n + 1) * sizeof *s->hist);
    s->bias = malloc((size_t)(p->n_bias + 1) * sizeof *s->bias);
    if (!s->cand || !s->count || !s->hist || !s->bias) goto oom;
    if (p->n_bias) memcpy(s->bias, p->bias, (size_t)p->n_bias * sizeof *s->bias);
    s->p.bias = s->bias;
    samp_seed(s);
    return s;
oom:
    cf_samp_free(s);
    cf_seterr(err, CF_ENOMEM, "sampler: out of memory");
    return NULL;
}

void cf_samp_free(cf_sampler *s) {
    if (!s) return;
    free(s->cand);
    free(s->count);
    free(s->hist);
    free(s->bias);
    free(s);
}

void cf_samp_reset(cf_sampler *s) {
    s->n_hist = 0;
    s->hist_at = 0;
    samp_seed(s);
}

void cf_samp_accept(cf_sampler *s, int32_t token) {
    if (s->p.repeat_last_n <= 0) return;
    s->hist[s->hist_at] = token;
    s->hist_at = (s->hist_at + 1) % s->p.repeat_last_n;
    if (s->n_hist < s->p.repeat_last_n) s->n_hist++;
}

/* Descending logit, ascending id: a total order. */
static int samp_cmp(const void *a, const void *b) {
    const samp_cand *x = a, *y = b;
    if (x->logit > y->logit) return -1;
    if (x->logit < y->logit) return 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Moves the K best of c[0..n) (by samp_cmp) to the front, in any order:
 * quickselect with a median-of-three pivot, O(n) on average. */
static void samp_select(samp_cand *c, int n, int k) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (samp_cmp(&c[mid], &c[lo]) < 0) {
            samp_cand t = c[mid];
            c[mid] = c[lo];
            c[lo] = t;
        }
        if (samp_cmp(&c[hi], &c[lo]) < 0) {
            samp_cand t = c[hi];
            c[hi] = c[lo];
            c[lo] = t;
        }
        if (samp_cmp(&c[hi], &c[mid]) < 0) {
            samp_cand t = c[hi];
            c[hi] = c[mid];
            c[mid] = t;
        }
        const samp_cand pivot = c[mid];
        int i = lo, j = hi;
        while (i <= j) {
            while (samp_cmp(&c[i], &pivot) < 0)
                i++;
            while (samp_cmp(&c[j], &pivot) > 0)
                j--;
            if (i <= j) {
                samp_cand t = c[i];
                c[i] = c[j];
                c[j] = t;
                i++;
                j--;
            }
        }
        if (k - 1 <= j)
            hi = j;
        else if (k - 1 >= i)
            lo = i;
        else
            break;
    }
}

/* Softmax of cand[0..n) into .p. */
static void samp_softmax(samp_cand *c, int n) {
    double sum = 0;
    float max = -INFINITY;
    for (int i = 0; i < n; i++)
        if (c[i].logit > max) max = c[i].logit;
    for (int i = 0; i < n; i++) {
        c[i].p = expf(c[i].logit - max);
        sum += c[i].p;
    }
    for (int i = 0; i < n; i++)
        c[i].p = (float)(c[i].p / sum);
}

static void samp_penalize(cf_sampler *s) {
    const cf_samp_params *p = &s->p;
    if (s->n_hist == 0) return;
    if (p->repeat_penalty == 1.0f && p->freq_penalty == 0.0f && p->presence_penalty == 0.0f) return;
    for (int i = 0; i < s->n_hist; i++) {
        int32_t t = s->hist[i];
        if (t >= 0 && t < s->n_vocab) s->count[t]++;
    }
    for (int i = 0; i < s->n_hist; i++) {
        int32_t t = s->hist[i];
        if (t < 0 || t >= s->n_vocab || s->count[t] == 0) continue;
        float *l = &s->cand[t].logit; /* cand is still indexed by id here */
        if (*l > 0)
            *l /= p->repeat_penalty;
        else
            *l *= p->repeat_penalty;
        *l -= (float)s->count[t] * p->freq_penalty + p->presence_penalty;
        s->count[t] = 0; /* apply once per distinct token */
    }
}

int32_t cf_samp_sample(cf_sampler *s, const float *logits) {
    const cf_samp_params *p = &s->p;
    const int nv = s->n_vocab;
    samp_cand *c = s->cand;
    for (int i = 0; i < nv; i++)
        c[i] = (samp_cand){i, logits[i], 0.0f};
    for (int i = 0; i < p->n_bias; i++)
        c[p->bias[i].token].logit += p->bias[i].bias;
    samp_penalize(s);

    if (p->temp <= 0.0f) {
        int best = 0;
        for (int i = 1; i < nv; i++)
            if (c[i].logit > c[best].logit) best = i;
        return c[best].id;
    }

    /* Drop banned tokens (-inf) so they can never be drawn, and find the
     * best logit. */
    int n = 0;
    float max = -INFINITY;
    for (int i = 0; i < nv; i++) {
        if (!(c[i].logit > -INFINITY)) continue;
        if (c[i].logit > max) max = c[i].logit;
        c[n++] = c[i];
    }
    if (n == 0) return 0;

    if (p->top_k > 0 && p->top_k < n) {
        /* top-k: move the k best (total order) to the front */
        samp_select(c, n, p->top_k);
        n = p->top_k;
    }
    if (p->top_p < 1.0f) {
        /* The smallest prefix, in sorted order, whose mass reaches top_p.
         * Sort only the best k, growing k until the prefix fits in it:
         * real distributions reach the mass within a few hundred tokens. */
        double total = 0;
        for (int i = 0; i < n; i++)
            total += expf(c[i].logit - max);
        const double want = (double)p->top_p * total;
        for (int k = n < 64 ? n : 64;; k = k * 4 < n ? k * 4 : n) {
            if (k < n) samp_select(c, n, k);
            qsort(c, (size_t)k, sizeof *c, samp_cmp);
            double cum = 0;
            int keep = 0;
            for (int i = 0; i < k && !keep; i++) {
                cum += expf(c[i].logit - max);
                if (cum >= want) keep = i + 1;
            }
            if (keep) {
                n = keep;
                break;
            }
            if (k == n) break; /* rounding: keep everything */
        }
    }
    if (p->min_p > 0.0f) {
        /* p_i >= min_p * p_best  <=>  logit_i >= best + log(min_p) */
        const float thr = max + logf(p->min_p);
        int m = 0;
        for (int i = 0; i < n; i++)
            if (c[i].logit >= thr) c[m++] = c[i];
        n = m;
    }
    /* Order of the draw: sorted when a truncation sorted, else by id; both
     * are fixed by the inputs, so the seed decides the rest. */

    for (int i = 0; i < n; i++)
        c[i].logit /= p->temp;
    samp_softmax(c, n);
    double r = samp_uniform(s->rng), cum = 0;
    for (int i = 0; i < n; i++) {
        cum += c[i].p;
        if (r < cum) return c[i].id;
    }
    return c[n - 1].id;
}

/* ------------------------------------------------------------ stop strings */

struct cf_stop {
    char **stops; /* (n,) NUL-terminated copies */
    size_t *lens; /* (n,) */
    int n;
    sb_t pending; /* held-back text */
    sb_t out;     /* returned to the caller */
    int done;
};

cf_stop *cf_stop_new(const char *const *stops, int n) {
    cf_stop *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->stops = calloc((size_t)(n > 0 ? n : 1), sizeof *s->stops);
    s->lens = calloc((size_t)(n > 0 ? n : 1), sizeof *s->lens);
    if (!s->stops || !s->lens) {
        cf_stop_free(s);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        if (!stops[i] || !stops[i][0]) continue;
        s->stops[s->n] = strdup(stops[i]);
        if (!s->stops[s->n]) {
            cf_stop_free(s);
            return NULL;
        }
        s->lens[s->n] = strlen(stops[i]);
        s->n++;
    }
    return s;
}

void cf_stop_free(cf_stop *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++)
        free(s->stops[i]);
    free(s->stops);
    free(s->lens);
    sb_free(&s->pending);
    sb_free(&s->out);
    free(s);
}

/* Length of the longest suffix of BUF[0..N) that is a proper prefix of
 * some stop string. */
static size_t stop_held_len(const cf_stop *s, const char *buf, size_t n) {
    size_t best = 0;
    for (int i = 0; i < s->n; i++) {
        size_t maxl = s->lens[i] - 1 < n ? s->lens[i] - 1 : n;
        for (size_t l = maxl; l > best; l--) {
            if (!memcmp(buf + n - l, s->stops[i], l)) {
                best = l;
                break;
            }
        }
    }
    return best;
}

int cf_stop_feed(cf_stop *s, const char *text, size_t n, const char **out, size_t *out_n) {
    sb_clear(&s->out);
    if (s->done) {
        *out = sb_str(&s->out);
        *out_n = 0;
        return 1;
    }
    sb_appendn(&s->pending, text, n);
    const char *buf = s->pending.data ? s->pending.data : "";
    size_t len = s->pending.len;
    /* Earliest complete stop string. */
    size_t first = len;
    for (int i = 0; i < s->n; i++) {
        const char *hit = memmem(buf, len, s->stops[i], s->lens[i]);
        if (hit && (size_t)(hit - buf) < first) first = (size_t)(hit - buf);
    }
    if (first < len) {
        sb_appendn(&s->out, buf, first);
        sb_clear(&s->pending);
        s->done = 1;
        *out = sb_str(&s->out);
        *out_n = s->out.len;
        return 1;
    }
    size_t held = stop_held_len(s, buf, len);
    sb_appendn(&s->out, buf, len - held);
    memmove(s->pending.data, buf + len - held, held);
    sb_truncate(&s->pending, held);
    *out = sb_str(&s->out);
    *out_n = s->out.len;
    return 0;
}

void cf_stop_flush(cf_stop *s, const char **out, size_t *out_n) {
    sb_clear(&s->out);
    if (!s->done) sb_appendn(&s->out, s->pending.data ? s->pending.data : "", s->pending.len);
    sb_clear(&s->pending);
    *out = sb_str(&s->out);
    *out_n = s->out.len;
}
