/*
 * jinja_builtins — what a chat template can call: Jinja filters and tests,
 * Python methods of str/dict/list, the `loop` object, and the globals
 * (range, namespace, dict, raise_exception, strftime_now).
 *
 * Filters and tests are looked up by name in tables, so adding one is one
 * function and one row. Methods dispatch on the receiver's type. Argument
 * conventions copy Jinja's signatures, including keyword names
 * (`default(value, boolean=true)`, `map(attribute=...)`), and Hugging Face's
 * `tojson(ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
 *
 * Text is UTF-8. Lengths, indexes and slices count code points like Python;
 * case mapping covers ASCII and Latin-1 letters (the rest pass unchanged) —
 * a deliberate limit, since templates case-map role names and keywords.
 */
#include "engine/jinja_eval.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------ helpers */

static jv sb_to_jv(jctx *c, sb_t *b) {
    jv v = jv_strn(&c->ar, b->data ? b->data : "", b->len);
    sb_free(b);
    return v;
}

static jv str_of(jctx *c, jv v) {
    if (v.t == JV_STR) return v;
    sb_t b = {0};
    jv_to_str(&b, v);
    return sb_to_jv(c, &b);
}

static jv argv_or(jcall *a, size_t i, const char *name, jv dflt) {
    jv *v = jcall_arg(a, i, name);
    return v ? *v : dflt;
}

static int need_str(jctx *c, const jnode *at, jv v, const char *what) {
    if (v.t == JV_STR) return 0;
    if (v.t == JV_UNDEF) return jerr_undef(c, at, v);
    return jerr(c, at, "%s expects a string, got %s", what, jv_typename(v));
}

static int need_int(jctx *c, const jnode *at, jv v, const char *what, int64_t *out) {
    *out = 0;
    if (v.t == JV_INT)
        *out = v.u.i;
    else if (v.t == JV_BOOL)
        *out = v.u.b;
    else if (v.t == JV_UNDEF)
        return jerr_undef(c, at, v);
    else
        return jerr(c, at, "%s expects an integer, got %s", what, jv_typename(v));
    return 0;
}

static bool cp_space(uint32_t cp) {
    return cp == ' ' || (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x1f) || cp == 0x85 ||
           cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

static size_t cp_at(const char *s, size_t n, uint32_t *cp) {
    int l = utf8_decode(s, n, cp);
    if (l <= 0) {
        *cp = (unsigned char)s[0];
        return 1;
    }
    return (size_t)l;
}

/* Start of the code point that ends at END (END > 0). */
static size_t cp_back(const char *s, size_t end) {
    size_t i = end - 1;
    while (i > 0 && end - i < 4 && ((unsigned char)s[i] & 0xc0) == 0x80)
        i--;
    return i;
}

static bool in_chars(const jstr *chars, const char *s, size_t l) {
    return memmem(chars->p, chars->n, s, l) != NULL;
}

static jv do_strip(jctx *c, const jstr *s, const jstr *chars, bool left, bool right) {
    size_t a = 0, b = s->n;
    while (left && a < b) {
        uint32_t cp;
        size_t l = cp_at(s->p + a, b - a, &cp);
        if (chars ? !in_chars(chars, s->p + a, l) : !cp_space(cp)) break;
        a += l;
    }
    while (right && b > a) {
        size_t st = cp_back(s->p, b);
        if (st < a) st = a;
        uint32_t cp;
        size_t l = cp_at(s->p + st, b - st, &cp);
        if (st + l != b) l = b - st;
        if (chars ? !in_chars(chars, s->p + st, l) : !cp_space(cp)) break;
        b = st;
    }
    return jv_strn(&c->ar, s->p + a, b - a);
}

static uint32_t cp_upper(uint32_t cp) {
    if (cp >= 'a' && cp <= 'z') return cp - 32;
    if (cp >= 0xe0 && cp <= 0xfe && cp != 0xf7) return cp - 32;
    return cp;
}
static uint32_t cp_lower(uint32_t cp) {
    if (cp >= 'A' && cp <= 'Z') return cp + 32;
    if (cp >= 0xc0 && cp <= 0xde && cp != 0xd7) return cp + 32;
    return cp;
}
static bool cp_cased(uint32_t cp) { return cp_upper(cp) != cp || cp_lower(cp) != cp; }

static void put_cp(sb_t *b, uint32_t cp) {
    char e[4];
    int l = utf8_encode(cp, e);
    if (l > 0) sb_appendn(b, e, (size_t)l);
}

enum { CASE_UPPER, CASE_LOWER, CASE_TITLE_PY, CASE_CAPITALIZE, CASE_TITLE_JINJA };

static jv map_case(jctx *c, const jstr *s, int mode) {
    sb_t b = {0};
    bool prev_cased = false, first = true, word_start = true;
    for (size_t i = 0; i < s->n;) {
        uint32_t cp;
        size_t l = cp_at(s->p + i, s->n - i, &cp);
        uint32_t r = cp;
        switch (mode) {
        case CASE_UPPER: r = cp_upper(cp); break;
        case CASE_LOWER: r = cp_lower(cp); break;
        case CASE_TITLE_PY:
            r = prev_cased ? cp_lower(cp) : cp_upper(cp);
            prev_cased = cp_cased(cp);
            break;
        case CASE_CAPITALIZE: r = first ? cp_upper(cp) : cp_lower(cp); break;
        case CASE_TITLE_JINJA: {
            bool sep =
                cp_space(cp) || cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<';
            r = sep ? cp : word_start ? cp_upper(cp) : cp_lower(cp);
            word_start = sep;
            break;
        }
        }
        first = false;
        if (r == cp)
            sb_appendn(&b, s->p + i, l);
        else
            put_cp(&b, r);
        i += l;
    }
    return sb_to_jv(c, &b);
}

/* str.replace; the result is capped at c->max_output bytes (*too_big set). */
static jv do_replace(jctx *c, const jstr *s, const jstr *old, const jstr *new, int64_t count,
                     bool *too_big) {
    *too_big = false;
    sb_t b = {0};
    size_t i = 0;
    int64_t done = 0;
    if (old->n == 0) {
        /* Python inserts NEW between every character and at both ends */
        for (;;) {
            if (count >= 0 && done >= count) break;
            sb_appendn(&b, new->p, new->n);
            done++;
            if (b.len > c->max_output) break;
            if (i >= s->n) break;
            uint32_t cp;
            size_t l = cp_at(s->p + i, s->n - i, &cp);
            sb_appendn(&b, s->p + i, l);
            i += l;
        }
        if (b.len > c->max_output) {
            *too_big = true;
            sb_free(&b);
            return jv_strn(&c->ar, "", 0);
        }
        sb_appendn(&b, s->p + i, s->n - i);
        return sb_to_jv(c, &b);
    }
    while (i < s->n && (count < 0 || done < count)) {
        const char *f = memmem(s->p + i, s->n - i, old->p, old->n);
        if (!f) break;
        size_t at = (size_t)(f - s->p);
        sb_appendn(&b, s->p + i, at - i);
        sb_appendn(&b, new->p, new->n);
        i = at + old->n;
        done++;
        if (b.len > c->max_output) break;
    }
    if (b.len > c->max_output) {
        *too_big = true;
        sb_free(&b);
        return jv_strn(&c->ar, "", 0);
    }
    sb_appendn(&b, s->p + i, s->n - i);
    return sb_to_jv(c, &b);
}

static int do_split(jctx *c, const jnode *at, const jstr *s, jv sep, int64_t maxsplit, bool right,
                    jv *out) {
    jv l = jv_list(&c->ar, 0);
    if (sep.t == JV_NONE || sep.t == JV_UNDEF) {
        /* whitespace split: runs of whitespace, no empty strings */
        size_t n = s->n;
        if (!right) {
            size_t i = 0;
            int64_t done = 0;
            for (;;) {
                while (i < n) {
                    uint32_t cp;
                    size_t k = cp_at(s->p + i, n - i, &cp);
                    if (!cp_space(cp)) break;
                    i += k;
                }
                if (i >= n) break;
                if (maxsplit >= 0 && done >= maxsplit) { /* the rest, trailing space kept */
                    jlist_push(&c->ar, l.u.l, jv_strn(&c->ar, s->p + i, n - i));
                    break;
                }
                size_t j = i;
                while (j < n) {
                    uint32_t cp;
                    size_t k = cp_at(s->p + j, n - j, &cp);
                    if (cp_space(cp)) break;
                    j += k;
                }
                jlist_push(&c->ar, l.u.l, jv_strn(&c->ar, s->p + i, j - i));
                done++;
                i = j;
            }
        } else {
            size_t e = n;
            int64_t done = 0;
            jlist *tmp = jv_list(&c->ar, 0).u.l;
            for (;;) {
                while (e > 0) {
                    size_t st = cp_back(s->p, e);
                    uint32_t cp;
                    cp_at(s->p + st, e - st, &cp);
                    if (!cp_space(cp)) break;
                    e = st;
                }
                if (e == 0) break;
                size_t b = e;
                if (maxsplit >= 0 && done >= maxsplit) { /* the rest, leading space kept */
                    jlist_push(&c->ar, tmp, jv_strn(&c->ar, s->p, e));
                    break;
                }
                while (b > 0) {
                    size_t st = cp_back(s->p, b);
                    uint32_t cp;
                    cp_at(s->p + st, b - st, &cp);
                    if (cp_space(cp)) break;
                    b = st;
                }
                jlist_push(&c->ar, tmp, jv_strn(&c->ar, s->p + b, e - b));
                done++;
                e = b;
            }
            for (size_t k = tmp->n; k-- > 0;)
                jlist_push(&c->ar, l.u.l, tmp->v[k]);
        }
        *out = l;
        return 0;
    }
    if (need_str(c, at, sep, "split")) return -1;
    const jstr *p = sep.u.s;
    if (p->n == 0) return jerr(c, at, "empty separator");
    if (!right) {
        size_t i = 0;
        int64_t done = 0;
        for (;;) {
            const char *f =
                (maxsplit < 0 || done < maxsplit) ? memmem(s->p + i, s->n - i, p->p, p->n) : NULL;
            if (!f) {
                jlist_push(&c->ar, l.u.l, jv_strn(&c->ar, s->p + i, s->n - i));
                break;
            }
            size_t at2 = (size_t)(f - s->p);
            jlist_push(&c->ar, l.u.l, jv_strn(&c->ar, s->p + i, at2 - i));
            i = at2 + p->n;
            done++;
        }
    } else {
        jlist *tmp = jv_list(&c->ar, 0).u.l;
        size_t e = s->n;
        int64_t done = 0;
        for (;;) {
            size_t found = (size_t)-1;
            if (maxsplit < 0 || done < maxsplit)
                for (size_t k = e; k >= p->n; k--)
                    if (!memcmp(s->p + k - p->n, p->p, p->n)) {
                        found = k - p->n;
                        break;
                    }
            if (found == (size_t)-1) {
                jlist_push(&c->ar, tmp, jv_strn(&c->ar, s->p, e));
                break;
            }
            jlist_push(&c->ar, tmp, jv_strn(&c->ar, s->p + found + p->n, e - found - p->n));
            e = found;
            done++;
        }
        for (size_t k = tmp->n; k-- > 0;)
            jlist_push(&c->ar, l.u.l, tmp->v[k]);
    }
    *out = l;
    return 0;
}

static int do_join(jctx *c, const jnode *at, jv seq, jv sep, jv attr, jv *out) {
    jlist *l;
    if (jinja_iter_list(c, at, seq, &l)) return -1;
    sb_t b = {0};
    for (size_t i = 0; i < l->n; i++) {
        if (i && sep.t != JV_UNDEF) jv_to_str(&b, sep);
        jv item = l->v[i];
        if (attr.t == JV_STR && item.t == JV_DICT) {
            jv *v = jdict_get(item.u.d, attr.u.s->p, attr.u.s->n);
            item = v ? *v : jv_undef(NULL);
        }
        jv_to_str(&b, item);
        if (b.len > c->max_output) {
            sb_free(&b);
            return jerr(c, at, "join result exceeds %zu bytes", c->max_output);
        }
    }
    *out = sb_to_jv(c, &b);
    return 0;
}

static int64_t length_of(jv v, bool *ok) {
    *ok = true;
    switch (v.t) {
    case JV_STR: return (int64_t)jstr_len(v.u.s);
    case JV_LIST: return (int64_t)v.u.l->n;
    case JV_DICT: return (int64_t)v.u.d->n;
    case JV_UNDEF: return 0;
    case JV_LOOP: return (int64_t)v.u.loop->items->n;
    default: *ok = false; return 0;
    }
}

/* Attribute lookup for filters (dotted paths like "function.name" allowed). */
static jv attr_path(jctx *c, jv item, const jstr *path) {
    const char *p = path->p, *end = path->p + path->n;
    while (p <= end) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        size_t len = dot ? (size_t)(dot - p) : (size_t)(end - p);
        if (item.t == JV_DICT) {
            jv *v = jdict_get(item.u.d, p, len);
            item = v ? *v : jv_undef_fmt(c, "'dict object' has no attribute '%.*s'", (int)len, p);
        } else if (item.t == JV_LIST && len && isdigit((unsigned char)p[0])) {
            size_t idx = (size_t)strtoull(p, NULL, 10);
            item = idx < item.u.l->n ? item.u.l->v[idx] : jv_undef(NULL);
        } else
            item = jv_undef_fmt(c, "'%s object' has no attribute '%.*s'", jv_typename(item),
                                (int)len, p);
        if (!dot) break;
        p = dot + 1;
    }
    return item;
}

/* Sort key comparison honouring case_sensitive=False for strings (Jinja
 * lower-cases both sides, code point by code point). */
static int cmp_ci(jv a, jv b, bool ci) {
    if (ci && a.t == JV_STR && b.t == JV_STR) {
        size_t i = 0, j = 0;
        while (i < a.u.s->n && j < b.u.s->n) {
            uint32_t x, y;
            i += cp_at(a.u.s->p + i, a.u.s->n - i, &x);
            j += cp_at(b.u.s->p + j, b.u.s->n - j, &y);
            x = cp_lower(x);
            y = cp_lower(y);
            if (x != y) return x < y ? -1 : 1;
        }
        return i < a.u.s->n ? 1 : j < b.u.s->n ? -1 : 0;
    }
    return jv_cmp(a, b);
}

/* Stable merge sort of KEYS/VALS by KEYS; *BAD set on incomparable keys. */
static void msort(jv *keys, jv *vals, size_t n, bool ci, bool rev, bool *bad, jv *tk, jv *tv) {
    if (n < 2) return;
    size_t h = n / 2;
    msort(keys, vals, h, ci, rev, bad, tk, tv);
    msort(keys + h, vals + h, n - h, ci, rev, bad, tk, tv);
    size_t i = 0, j = h, k = 0;
    while (i < h || j < n) {
        bool take_left;
        if (i >= h)
            take_left = false;
        else if (j >= n)
            take_left = true;
        else {
            int r = cmp_ci(keys[j], keys[i], ci);
            if (r == -2) {
                *bad = true;
                r = 0;
            }
            take_left = rev ? !(r > 0) : !(r < 0);
        }
        if (take_left) {
            tk[k] = keys[i];
            tv[k++] = vals[i++];
        } else {
            tk[k] = keys[j];
            tv[k++] = vals[j++];
        }
    }
    memcpy(keys, tk, n * sizeof(jv));
    memcpy(vals, tv, n * sizeof(jv));
}

static int sort_list(jctx *c, const jnode *at, jlist *in, jv *keys, bool ci, bool rev, jv *out) {
    size_t n = in->n;
    jv *vals = ja_alloc(&c->ar, (n + 1) * sizeof(jv));
    memcpy(vals, in->v, n * sizeof(jv));
    jv *tk = ja_alloc(&c->ar, (n + 1) * sizeof(jv)), *tv = ja_alloc(&c->ar, (n + 1) * sizeof(jv));
    bool bad = false;
    msort(keys, vals, n, ci, rev, &bad, tk, tv);
    if (bad) return jerr(c, at, "cannot sort: values of different types are not comparable");
    *out = jv_list(&c->ar, 0);
    out->u.l->v = vals;
    out->u.l->n = n;
    out->u.l->cap = n + 1;
    return 0;
}

/* ------------------------------------------------------------------ tests */

typedef int (*test_fn)(jctx *c, const jnode *at, jv v, jcall *a, bool *out);

static int t_defined(jctx *c, const jnode *at, jv v, jcall *a, bool *out) {
    *out = v.t != JV_UNDEF;
    return 0;
}
static int t_undefined(jctx *c, const jnode *at, jv v, jcall *a, bool *out) {
    *out = v.t == JV_UNDEF;
    return 0;
}
static int t_none(jctx *c, const jnode *at, jv v, jcall *a, bool *out) {
    *out = v.t == JV_NONE;
    return 0;
}
static int t_boolean(jctx *c, const jnode *at, jv v, jcall *a, bool *out) {
    *out = v.t == JV_BOOL;
    return 0;
}
static int t_true(jctx *c, const jnode *at, jv v, jcall *a, bool *out) {
    *out = v.t == JV_BOOL && v.u.b;
    return 0;
}
static int t_false(jctx *c, const jnode *at, jv v, jcall *a, bool *out) {
    *out = v.t == JV_BOOL && !v.u.b;
    return 0;
}
static int t_integer(jctx *c, const jnode *at, jv v, jcall *a, bool *out) {
    *out = v.t == JV_INT;
    return 0;
}
static int t_float(jctx *c, const jnode *at, jv v, jcall *a, bool *out) {
    *out = v.t == JV_FLOAT;
    return 0;
}
static int t_number(jctx *c, const jnode *at, jv v, jcall *a, bool *out) {
    *out = v.t == JV_INT || v.t == JV_FLOAT || v.t == JV_BOOL;
    return 0;
}
static int t_string(jctx *c, const jnode *at, jv v, jcall *a, bool *out) {
    *out = v.t == JV_STR;
    return 0;
}
static int t_mapping(jctx *c, const jnode *at, jv v, jcall *a, bool *out) {
    *out = v.t == JV_DICT;
    return 0;
}
static int t_iterable(jctx *c, const jnode *at, jv v, jcall *a, bool *out) {
    *out = v.t == JV_STR || v.t == JV_LIST || v.t == JV_DICT || v.t == JV_UNDEF || v.t == JV_LOOP;
    return 0;
}
static int t_sequence(jctx *c, const jnode *at, jv v, jcall *a, bool *out) {
    *out = v.t == JV_STR || v.t == JV_LIST || v.t == JV_DICT || v.t == JV_UNDEF;
    return 0;
}
static int t_callable(jctx *c, const jnode *at, jv v, jcall *a, bool *out) {
    *out =
        v.t == JV_MACRO || v.t == JV_FUNC || v.t == JV_UNDEF; /* Jinja's Undefined has __call__ */
    return 0;
}
static int t_arg(jctx *c, const jnode *at, jcall *a, jv *out) {
    jv *x = jcall_arg(a, 0, "other");
    if (!x) x = jcall_arg(a, 0, "value");
    if (!x) return jerr(c, at, "test needs an argument");
    *out = *x;
    return 0;
}
static int t_eq(jctx *c, const jnode *at, jv v, jcall *a, bool *out) {
    jv o;
    if (t_arg(c, at, a, &o)) return -1;
    *out = jv_eq(v, o);
    return 0;
}
static int t_ne(jctx *c, const jnode *at, jv v, jcall *a, bool *out) {
    if (t_eq(c, at, v, a, out)) return -1;
    *out = !*out;
    return 0;
}
static int t_order(jctx *c, const jnode *at, jv v, jcall *a, bool *out, int want) {
    jv o;
    if (t_arg(c, at, a, &o)) return -1;
    int r = jv_cmp(v, o);
    if (r == -2) return jerr(c, at, "cannot compare %s with %s", jv_typename(v), jv_typename(o));
    *out = want == 0 ? r < 0 : want == 1 ? r <= 0 : want == 2 ? r > 0 : r >= 0;
    return 0;
}
static int t_lt(jctx *c, const jnode *at, jv v, jcall *a, bool *out) {
    return t_order(c, at, v, a, out, 0);
}
static int t_le(jctx *c, const jnode *at, jv v, jcall *a, bool *out) {
    return t_order(c, at, v, a, out, 1);
}
static int t_gt(jctx *c, const jnode *at, jv v, jcall *a, bool *out) {
    return t_order(c, at, v, a, out, 2);
}
static int t_ge(jctx *c, const jnode *at, jv v, jcall *a, bool *out) {
    return t_order(c, at, v, a, out, 3);
}
static int t_in(jctx *c, const jnode *at, jv v, jcall *a, bool *out) {
    jv *seq = jcall_arg(a, 0, "seq");
    if (!seq) return jerr(c, at, "test 'in' needs a sequence");
    return jinja_contains(c, at, *seq, v, out);
}
static int t_odd(jctx *c, const jnode *at, jv v, jcall *a, bool *out) {
    if (v.t == JV_FLOAT) { /* Python: value % 2 == 1 */
        double r = fmod(v.u.f, 2.0);
        if (r < 0) r += 2.0;
        *out = r == 1.0;
        return 0;
    }
    int64_t i = 0;
    if (need_int(c, at, v, "odd", &i)) return -1;
    *out = i % 2 != 0;
    return 0;
}
static int t_even(jctx *c, const jnode *at, jv v, jcall *a, bool *out) {
    if (v.t == JV_FLOAT) { /* Python: value % 2 == 1 */
        double r = fmod(v.u.f, 2.0);
        if (r < 0) r += 2.0;
        *out = r == 0.0;
        return 0;
    }
    int64_t i = 0;
    if (need_int(c, at, v, "even", &i)) return -1;
    *out = i % 2 == 0;
    return 0;
}
static int t_divisibleby(jctx *c, const jnode *at, jv v, jcall *a, bool *out) {
    int64_t i = 0, d = 0;
    jv *x = jcall_arg(a, 0, "num");
    if (!x) return jerr(c, at, "divisibleby needs a number");
    if (need_int(c, at, v, "divisibleby", &i) || need_int(c, at, *x, "divisibleby", &d)) return -1;
    if (d == 0) return jerr(c, at, "integer division or modulo by zero");
    *out = d == -1 || i % d == 0;
    return 0;
}
static int t_sameas(jctx *c, const jnode *at, jv v, jcall *a, bool *out) {
    jv o;
    if (t_arg(c, at, a, &o)) return -1;
    if (v.t != o.t)
        *out = false;
    else if (v.t == JV_NONE || v.t == JV_UNDEF)
        *out = true;
    else if (v.t == JV_BOOL)
        *out = v.u.b == o.u.b;
    else if (v.t == JV_INT)
        *out = v.u.i == o.u.i && v.u.i >= -5 && v.u.i <= 256;
    else
        *out = memcmp(&v.u, &o.u, sizeof v.u) == 0;
    return 0;
}
static int t_lower(jctx *c, const jnode *at, jv v, jcall *a, bool *out) {
    jv str = str_of(c, v); /* Jinja: str(value).islower() */
    jv m = map_case(c, str.u.s, CASE_LOWER);
    bool cased = false;
    for (size_t i = 0; i < str.u.s->n && !cased;) {
        uint32_t cp;
        i += cp_at(str.u.s->p + i, str.u.s->n - i, &cp);
        cased = cp_cased(cp);
    }
    *out = cased && jv_eq(m, str);
    return 0;
}
static int t_upper(jctx *c, const jnode *at, jv v, jcall *a, bool *out) {
    jv str = str_of(c, v); /* Jinja: str(value).isupper() */
    jv m = map_case(c, str.u.s, CASE_UPPER);
    bool cased = false;
    for (size_t i = 0; i < str.u.s->n && !cased;) {
        uint32_t cp;
        i += cp_at(str.u.s->p + i, str.u.s->n - i, &cp);
        cased = cp_cased(cp);
    }
    *out = cased && jv_eq(m, str);
    return 0;
}

static const struct {
    const char *name;
    test_fn fn;
} tests[] = {
    {"defined", t_defined},
    {"undefined", t_undefined},
    {"none", t_none},
    {"boolean", t_boolean},
    {"true", t_true},
    {"false", t_false},
    {"integer", t_integer},
    {"float", t_float},
    {"number", t_number},
    {"string", t_string},
    {"mapping", t_mapping},
    {"iterable", t_iterable},
    {"sequence", t_sequence},
    {"callable", t_callable},
    {"eq", t_eq},
    {"equalto", t_eq},
    {"==", t_eq},
    {"ne", t_ne},
    {"!=", t_ne},
    {"lt", t_lt},
    {"lessthan", t_lt},
    {"<", t_lt},
    {"le", t_le},
    {"<=", t_le},
    {"gt", t_gt},
    {"greaterthan", t_gt},
    {">", t_gt},
    {"ge", t_ge},
    {">=", t_ge},
    {"in", t_in},
    {"odd", t_odd},
    {"even", t_even},
    {"divisibleby", t_divisibleby},
    {"sameas", t_sameas},
    {"lower", t_lower},
    {"upper", t_upper},
    {"escaped", t_false},
};

int jinja_apply_test(jctx *c, const jnode *at, const char *name, jv v, jcall *a, bool *out) {
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (!strcmp(tests[i].name, name)) return tests[i].fn(c, at, v, a, out);
    return jerr(c, at, "no test named '%s'", name);
}

/* ------------------------------------------------------------------ filters */

typedef int (*filter_fn)(jctx *c, const jnode *at, jv v, jcall *a, jv *out);

static int f_tojson(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    jv_json_opts o = {.indent = -1, .item_sep = ", ", .key_sep = ": "};
    jv ea = argv_or(a, 0, "ensure_ascii", jv_bool(false));
    jv ind = argv_or(a, 1, "indent", jv_none());
    jv seps = argv_or(a, 2, "separators", jv_none());
    jv sk = argv_or(a, 3, "sort_keys", jv_bool(false));
    o.ensure_ascii = jv_truthy(ea);
    o.sort_keys = jv_truthy(sk);
    if (ind.t == JV_INT) {
        o.indent = ind.u.i < 0 ? 0 : ind.u.i > 64 ? 64 : (int)ind.u.i;
        o.item_sep = ",";
    } else if (ind.t != JV_NONE && ind.t != JV_UNDEF)
        return jerr(c, at, "tojson indent must be an integer");
    if (seps.t == JV_LIST && seps.u.l->n == 2 && seps.u.l->v[0].t == JV_STR &&
        seps.u.l->v[1].t == JV_STR) {
        o.item_sep = seps.u.l->v[0].u.s->p;
        o.key_sep = seps.u.l->v[1].u.s->p;
    } else if (seps.t != JV_NONE && seps.t != JV_UNDEF)
        return jerr(c, at, "tojson separators must be two strings");
    sb_t b = {0};
    const char *bad = NULL;
    if (jv_to_json(&b, v, &o, 0, &bad)) {
        sb_free(&b);
        if (v.t == JV_UNDEF) return jerr_undef(c, at, v);
        return jerr(c, at, "Object of type %s is not JSON serializable", bad);
    }
    *out = sb_to_jv(c, &b);
    return 0;
}

static int f_trim(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    jv s = str_of(c, v);
    jv *chars = jcall_arg(a, 0, "chars");
    *out = do_strip(c, s.u.s, chars && chars->t == JV_STR ? chars->u.s : NULL, true, true);
    out->safe = s.safe; /* Markup.strip() stays Markup */
    return 0;
}

static int f_length(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    bool ok;
    int64_t n = length_of(v, &ok);
    if (!ok) return jerr(c, at, "object of type '%s' has no len()", jv_typename(v));
    *out = jv_int(n);
    return 0;
}

static int f_upper(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    *out = map_case(c, str_of(c, v).u.s, CASE_UPPER);
    return 0;
}
static int f_lower(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    *out = map_case(c, str_of(c, v).u.s, CASE_LOWER);
    return 0;
}
static int f_title(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    *out = map_case(c, str_of(c, v).u.s, CASE_TITLE_JINJA);
    return 0;
}
static int f_capitalize(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    *out = map_case(c, str_of(c, v).u.s, CASE_CAPITALIZE);
    return 0;
}

static int f_replace(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    jv s = str_of(c, v);
    jv *old = jcall_arg(a, 0, "old"), *new = jcall_arg(a, 1, "new"),
       *cnt = jcall_arg(a, 2, "count");
    if (!old || !new) return jerr(c, at, "replace needs old and new strings");
    jv o = str_of(c, *old), nw = str_of(c, *new);
    int64_t count = -1;
    if (cnt && cnt->t != JV_NONE && need_int(c, at, *cnt, "replace count", &count)) return -1;
    bool too_big;
    *out = do_replace(c, s.u.s, o.u.s, nw.u.s, count, &too_big);
    if (too_big || out->u.s->n > c->max_output)
        return jerr(c, at, "replace result exceeds %zu bytes", c->max_output);
    return 0;
}

static int f_join(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    return do_join(c, at, v, argv_or(a, 0, "d", jv_strn(&c->ar, "", 0)),
                   argv_or(a, 1, "attribute", jv_none()), out);
}

static int f_default(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    jv d = argv_or(a, 0, "default_value", jv_strn(&c->ar, "", 0));
    bool boolean = jv_truthy(argv_or(a, 1, "boolean", jv_bool(false)));
    *out = (v.t == JV_UNDEF || (boolean && !jv_truthy(v))) ? d : v;
    return 0;
}

static int f_items(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    if (v.t == JV_UNDEF) {
        *out = jv_list(&c->ar, 0);
        return 0;
    }
    if (v.t != JV_DICT)
        return jerr(c, at, "items filter expects a mapping, got %s", jv_typename(v));
    *out = jv_list(&c->ar, v.u.d->n);
    for (size_t i = 0; i < v.u.d->n; i++) {
        jv pair = jv_list(&c->ar, 2);
        pair.u.l->tuple = true;
        jlist_push(&c->ar, pair.u.l, v.u.d->k[i]);
        jlist_push(&c->ar, pair.u.l, v.u.d->v[i]);
        jlist_push(&c->ar, out->u.l, pair);
    }
    return 0;
}

static int f_dictsort(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    bool ci = !jv_truthy(argv_or(a, 0, "case_sensitive", jv_bool(false)));
    jv by = argv_or(a, 1, "by", jv_none());
    bool rev = jv_truthy(argv_or(a, 2, "reverse", jv_bool(false)));
    bool by_value = by.t == JV_STR && !strcmp(by.u.s->p, "value");
    jv items;
    if (f_items(c, at, v, a, &items)) return -1;
    size_t n = items.u.l->n;
    jv *keys = ja_alloc(&c->ar, (n + 1) * sizeof(jv));
    for (size_t i = 0; i < n; i++)
        keys[i] = items.u.l->v[i].u.l->v[by_value ? 1 : 0];
    return sort_list(c, at, items.u.l, keys, ci, rev, out);
}

static int select_common(jctx *c, const jnode *at, jv v, jcall *a, jv *out, bool attr_mode,
                         bool keep) {
    jlist *l;
    if (!jv_truthy(v)) { /* Jinja: `if value:` before iterating */
        *out = jv_list(&c->ar, 0);
        return 0;
    }
    if (jinja_iter_list(c, at, v, &l)) return -1;
    size_t first = 0;
    jv attr = jv_none();
    if (attr_mode) {
        if (a->npos < 1 || a->pos[0].t != JV_STR)
            return jerr(c, at, "selectattr/rejectattr need an attribute name");
        attr = a->pos[0];
        first = 1;
    }
    const char *test = NULL;
    if (a->npos > first) {
        if (a->pos[first].t != JV_STR) return jerr(c, at, "test name must be a string");
        test = a->pos[first].u.s->p;
    }
    jcall ta = {.pos = a->npos > first + 1 ? a->pos + first + 1 : NULL,
                .npos = a->npos > first + 1 ? a->npos - first - 1 : 0};
    *out = jv_list(&c->ar, 0);
    for (size_t i = 0; i < l->n; i++) {
        jv item = attr_mode ? attr_path(c, l->v[i], attr.u.s) : l->v[i];
        bool r;
        if (test) {
            if (jinja_apply_test(c, at, test, item, &ta, &r)) return -1;
        } else
            r = jv_truthy(item);
        if (r == keep) jlist_push(&c->ar, out->u.l, l->v[i]);
    }
    return 0;
}
static int f_selectattr(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    return select_common(c, at, v, a, out, true, true);
}
static int f_rejectattr(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    return select_common(c, at, v, a, out, true, false);
}
static int f_select(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    return select_common(c, at, v, a, out, false, true);
}
static int f_reject(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    return select_common(c, at, v, a, out, false, false);
}

static int f_map(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    jlist *l;
    if (!jv_truthy(v)) { /* Jinja: `if value:` before iterating */
        *out = jv_list(&c->ar, 0);
        return 0;
    }
    if (jinja_iter_list(c, at, v, &l)) return -1;
    jv *attr = jcall_arg(a, (size_t)-1, "attribute");
    *out = jv_list(&c->ar, l->n);
    if (attr) {
        if (attr->t != JV_STR) return jerr(c, at, "map attribute must be a string");
        jv *dflt = jcall_arg(a, (size_t)-1, "default");
        for (size_t i = 0; i < l->n; i++) {
            jv x = attr_path(c, l->v[i], attr->u.s);
            if (x.t == JV_UNDEF && dflt) x = *dflt;
            jlist_push(&c->ar, out->u.l, x);
        }
        return 0;
    }
    if (a->npos < 1 || a->pos[0].t != JV_STR)
        return jerr(c, at, "map needs a filter name or attribute=");
    jcall fa = {
        .pos = a->pos + 1, .npos = a->npos - 1, .kwn = a->kwn, .kwv = a->kwv, .nkw = a->nkw};
    for (size_t i = 0; i < l->n; i++) {
        jv x;
        if (jinja_apply_filter(c, at, a->pos[0].u.s->p, l->v[i], &fa, &x)) return -1;
        jlist_push(&c->ar, out->u.l, x);
    }
    return 0;
}

static int f_first(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    jlist *l;
    if (jinja_iter_list(c, at, v, &l)) return -1;
    *out = l->n ? l->v[0] : jv_undef("No first item, sequence was empty.");
    return 0;
}
static int f_last(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    jlist *l;
    if (jinja_iter_list(c, at, v, &l)) return -1;
    *out = l->n ? l->v[l->n - 1] : jv_undef("No last item, sequence was empty.");
    return 0;
}
static int f_list(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    jlist *l;
    if (jinja_iter_list(c, at, v, &l)) return -1;
    *out = jv_list(&c->ar, l->n);
    for (size_t i = 0; i < l->n; i++)
        jlist_push(&c->ar, out->u.l, l->v[i]);
    return 0;
}
static int f_string(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    *out = str_of(c, v);
    return 0;
}

static int f_int(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    jv d = argv_or(a, 0, "default", jv_int(0));
    int64_t base = 10;
    jv *b = jcall_arg(a, 1, "base");
    if (b && need_int(c, at, *b, "int base", &base)) return -1;
    if (v.t == JV_INT)
        *out = v;
    else if (v.t == JV_BOOL)
        *out = jv_int(v.u.b);
    else if (v.t == JV_FLOAT) {
        if (!isfinite(v.u.f) || fabs(v.u.f) > 9.2e18)
            *out = d;
        else
            *out = jv_int((int64_t)v.u.f);
    } else if (v.t == JV_STR) {
        jv s = do_strip(c, v.u.s, NULL, true, true);
        char *end;
        errno = 0;
        long long x = strtoll(s.u.s->p, &end, (int)base);
        if (s.u.s->n && !*end && !errno)
            *out = jv_int(x);
        else {
            double f = strtod(s.u.s->p, &end);
            *out = (s.u.s->n && !*end && isfinite(f) && fabs(f) < 9.2e18) ? jv_int((int64_t)f) : d;
        }
    } else
        *out = d;
    return 0;
}

static int f_float(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    jv d = argv_or(a, 0, "default", jv_float(0.0));
    if (v.t == JV_FLOAT)
        *out = v;
    else if (v.t == JV_INT || v.t == JV_BOOL)
        *out = jv_float(v.t == JV_INT ? (double)v.u.i : v.u.b);
    else if (v.t == JV_STR) {
        jv s = do_strip(c, v.u.s, NULL, true, true);
        char *end;
        double f = strtod(s.u.s->p, &end);
        *out = s.u.s->n && !*end ? jv_float(f) : d;
    } else
        *out = d;
    return 0;
}

static int f_abs(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    if (v.t == JV_INT) {
        if (v.u.i == INT64_MIN) return jerr(c, at, "integer overflow");
        *out = jv_int(v.u.i < 0 ? -v.u.i : v.u.i);
    } else if (v.t == JV_FLOAT)
        *out = jv_float(fabs(v.u.f));
    else if (v.t == JV_BOOL)
        *out = jv_int(v.u.b);
    else
        return jerr(c, at, "bad operand type for abs(): '%s'", jv_typename(v));
    return 0;
}

static int f_round(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    int64_t prec = 0;
    jv *p = jcall_arg(a, 0, "precision");
    if (p && need_int(c, at, *p, "round precision", &prec)) return -1;
    jv m = argv_or(a, 1, "method", jv_none());
    const char *method = m.t == JV_STR ? m.u.s->p : "common";
    double x;
    if ((v.t == JV_INT || v.t == JV_BOOL) && prec >= 0 && !strcmp(method, "common")) {
        *out = jv_int(v.t == JV_INT ? v.u.i : v.u.b); /* Python: round(int, n) is the int */
        return 0;
    }
    if (v.t == JV_INT || v.t == JV_BOOL)
        x = v.t == JV_INT ? (double)v.u.i : v.u.b;
    else if (v.t == JV_FLOAT)
        x = v.u.f;
    else
        return jerr(c, at, "round expects a number, got %s", jv_typename(v));
    if (prec > 15) prec = 15;
    if (prec < -15) prec = -15;
    double scale = pow(10.0, (double)prec);
    double y = x * scale;
    if (!strcmp(method, "common"))
        y = rint(y); /* Python rounds halves to even */
    else if (!strcmp(method, "ceil"))
        y = ceil(y);
    else if (!strcmp(method, "floor"))
        y = floor(y);
    else
        return jerr(c, at, "round method must be 'common', 'ceil' or 'floor'");
    *out = jv_float(y / scale);
    return 0;
}

static int f_unique(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    jlist *l;
    if (jinja_iter_list(c, at, v, &l)) return -1;
    bool ci = !jv_truthy(argv_or(a, 0, "case_sensitive", jv_bool(false)));
    jv attr = argv_or(a, 1, "attribute", jv_none());
    *out = jv_list(&c->ar, 0);
    jlist *seen = jv_list(&c->ar, 0).u.l;
    for (size_t i = 0; i < l->n; i++) {
        jv key = attr.t == JV_STR ? attr_path(c, l->v[i], attr.u.s) : l->v[i];
        if (ci && key.t == JV_STR) key = map_case(c, key.u.s, CASE_LOWER);
        bool dup = false;
        for (size_t k = 0; k < seen->n && !dup; k++)
            dup = jv_eq(seen->v[k], key);
        if (dup) continue;
        jlist_push(&c->ar, seen, key);
        jlist_push(&c->ar, out->u.l, l->v[i]);
    }
    return 0;
}

static int f_reverse(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    if (v.t == JV_STR) {
        jlist *l;
        if (jinja_iter_list(c, at, v, &l)) return -1;
        sb_t b = {0};
        for (size_t i = l->n; i-- > 0;)
            sb_appendn(&b, l->v[i].u.s->p, l->v[i].u.s->n);
        *out = sb_to_jv(c, &b);
        return 0;
    }
    jlist *l;
    if (jinja_iter_list(c, at, v, &l)) return -1;
    *out = jv_list(&c->ar, l->n);
    for (size_t i = l->n; i-- > 0;)
        jlist_push(&c->ar, out->u.l, l->v[i]);
    return 0;
}

static int f_sort(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    jlist *l;
    if (jinja_iter_list(c, at, v, &l)) return -1;
    bool rev = jv_truthy(argv_or(a, 0, "reverse", jv_bool(false)));
    bool ci = !jv_truthy(argv_or(a, 1, "case_sensitive", jv_bool(false)));
    jv attr = argv_or(a, 2, "attribute", jv_none());
    jv *keys = ja_alloc(&c->ar, (l->n + 1) * sizeof(jv));
    for (size_t i = 0; i < l->n; i++)
        keys[i] = attr.t == JV_STR ? attr_path(c, l->v[i], attr.u.s) : l->v[i];
    return sort_list(c, at, l, keys, ci, rev, out);
}

static int f_indent(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    jv w = argv_or(a, 0, "width", jv_int(4));
    bool first = jv_truthy(argv_or(a, 1, "first", jv_bool(false)));
    bool blank = jv_truthy(argv_or(a, 2, "blank", jv_bool(false)));
    sb_t pad = {0};
    if (w.t == JV_STR)
        sb_appendn(&pad, w.u.s->p, w.u.s->n);
    else {
        int64_t n;
        if (need_int(c, at, w, "indent width", &n)) return -1;
        for (int64_t i = 0; i < n && i < 1024; i++)
            sb_putc(&pad, ' ');
    }
    jv s = str_of(c, v);
    sb_t b = {0};
    const char *p = s.u.s->p, *end = p + s.u.s->n;
    bool line1 = true;
    while (p <= end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        bool empty = len == 0;
        if (line1 ? first : (blank || !empty)) sb_appendn(&b, sb_str(&pad), pad.len);
        if (!line1 && !blank && empty) { /* Jinja: blank lines keep no indent */
        }
        sb_appendn(&b, p, len);
        line1 = false;
        if (b.len > c->max_output) {
            sb_free(&b);
            sb_free(&pad);
            return jerr(c, at, "indent result exceeds %zu bytes", c->max_output);
        }
        if (!nl) break;
        sb_putc(&b, '\n');
        p = nl + 1;
    }
    sb_free(&pad);
    *out = sb_to_jv(c, &b);
    return 0;
}

static int f_safe(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    *out = str_of(c, v);
    out->safe = 1;
    return 0;
}

static int f_escape(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    *out = jv_html_escape(&c->ar, v);
    return 0;
}

static int f_forceescape(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    v.safe = 0;
    *out = jv_html_escape(&c->ar, v);
    return 0;
}

static int f_batch(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    jlist *l;
    int64_t size;
    jv *n = jcall_arg(a, 0, "linecount");
    if (!n) return jerr(c, at, "batch needs a size");
    if (need_int(c, at, *n, "batch size", &size) || jinja_iter_list(c, at, v, &l)) return -1;
    if (size <= 0) return jerr(c, at, "batch size must be positive");
    jv *fill = jcall_arg(a, 1, "fill_with");
    *out = jv_list(&c->ar, 0);
    jv cur = jv_none();
    for (size_t i = 0; i < l->n; i++) {
        if (cur.t == JV_NONE || (int64_t)cur.u.l->n == size) {
            cur = jv_list(&c->ar, (size_t)(size < 64 ? size : 64));
            jlist_push(&c->ar, out->u.l, cur);
        }
        jlist_push(&c->ar, cur.u.l, l->v[i]);
    }
    if (fill && fill->t != JV_NONE && cur.t == JV_LIST)
        while ((int64_t)cur.u.l->n < size)
            jlist_push(&c->ar, cur.u.l, *fill);
    return 0;
}

static int minmax(jctx *c, const jnode *at, jv v, jcall *a, jv *out, bool want_max) {
    jlist *l;
    if (jinja_iter_list(c, at, v, &l)) return -1;
    bool ci = !jv_truthy(argv_or(a, 0, "case_sensitive", jv_bool(false)));
    jv attr = argv_or(a, 1, "attribute", jv_none());
    if (!l->n) {
        *out = jv_undef("No aggregated item, sequence was empty.");
        return 0;
    }
    size_t best = 0;
    jv bk = attr.t == JV_STR ? attr_path(c, l->v[0], attr.u.s) : l->v[0];
    for (size_t i = 1; i < l->n; i++) {
        jv k = attr.t == JV_STR ? attr_path(c, l->v[i], attr.u.s) : l->v[i];
        int r = cmp_ci(k, bk, ci);
        if (r == -2)
            return jerr(c, at, "cannot compare %s with %s", jv_typename(k), jv_typename(bk));
        if (want_max ? r > 0 : r < 0) {
            best = i;
            bk = k;
        }
    }
    *out = l->v[best];
    return 0;
}
static int f_min(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    return minmax(c, at, v, a, out, false);
}
static int f_max(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    return minmax(c, at, v, a, out, true);
}

static int f_sum(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    jlist *l;
    if (jinja_iter_list(c, at, v, &l)) return -1;
    jv attr = argv_or(a, 0, "attribute", jv_none());
    jv acc = argv_or(a, 1, "start", jv_int(0));
    for (size_t i = 0; i < l->n; i++) {
        jv x = attr.t == JV_STR ? attr_path(c, l->v[i], attr.u.s) : l->v[i];
        if (acc.t == JV_INT && x.t == JV_INT) {
            if (__builtin_add_overflow(acc.u.i, x.u.i, &acc.u.i))
                return jerr(c, at, "integer overflow");
        } else if ((acc.t == JV_INT || acc.t == JV_FLOAT) &&
                   (x.t == JV_INT || x.t == JV_FLOAT || x.t == JV_BOOL)) {
            double fa = acc.t == JV_INT ? (double)acc.u.i : acc.u.f;
            double fx = x.t == JV_INT ? (double)x.u.i : x.t == JV_FLOAT ? x.u.f : x.u.b;
            if (acc.t == JV_INT && x.t == JV_BOOL)
                acc = jv_int(acc.u.i + x.u.b);
            else
                acc = jv_float(fa + fx);
        } else
            return jerr(c, at, "unsupported operand type(s) for +: '%s' and '%s'", jv_typename(acc),
                        jv_typename(x));
    }
    *out = acc;
    return 0;
}

static int f_wordcount(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    jv s = str_of(c, v), parts;
    if (do_split(c, at, s.u.s, jv_none(), -1, false, &parts)) return -1;
    *out = jv_int((int64_t)parts.u.l->n);
    return 0;
}

static int f_format(jctx *c, const jnode *at, jv v, jcall *a, jv *out) {
    jv args = jv_list(&c->ar, a->npos);
    args.u.l->tuple = true;
    for (size_t i = 0; i < a->npos; i++)
        jlist_push(&c->ar, args.u.l, a->pos[i]);
    return jinja_percent_format(c, at, str_of(c, v), args, out);
}

static const struct {
    const char *name;
    filter_fn fn;
} filters[] = {
    {"tojson", f_tojson},
    {"trim", f_trim},
    {"length", f_length},
    {"count", f_length},
    {"upper", f_upper},
    {"lower", f_lower},
    {"title", f_title},
    {"capitalize", f_capitalize},
    {"replace", f_replace},
    {"join", f_join},
    {"default", f_default},
    {"d", f_default},
    {"items", f_items},
    {"dictsort", f_dictsort},
    {"selectattr", f_selectattr},
    {"rejectattr", f_rejectattr},
    {"select", f_select},
    {"reject", f_reject},
    {"map", f_map},
    {"first", f_first},
    {"last", f_last},
    {"list", f_list},
    {"string", f_string},
    {"int", f_int},
    {"float", f_float},
    {"abs", f_abs},
    {"round", f_round},
    {"unique", f_unique},
    {"reverse", f_reverse},
    {"sort", f_sort},
    {"indent", f_indent},
    {"safe", f_safe},
    {"escape", f_escape},
    {"e", f_escape},
    {"forceescape", f_forceescape},
    {"batch", f_batch},
    {"min", f_min},
    {"max", f_max},
    {"sum", f_sum},
    {"wordcount", f_wordcount},
    {"format", f_format},
};

int jinja_apply_filter(jctx *c, const jnode *at, const char *name, jv v, jcall *a, jv *out) {
    for (size_t i = 0; i < sizeof filters / sizeof filters[0]; i++)
        if (!strcmp(filters[i].name, name)) return filters[i].fn(c, at, v, a, out);
    return jerr(c, at, "no filter named '%s'", name);
}

/* ------------------------------------------------------------------ % formatting */

int jinja_percent_format(jctx *c, const jnode *at, jv fmt, jv args, jv *out) {
    jlist one = {.n = 1, .cap = 1, .v = &args};
    jlist *l = args.t == JV_LIST && args.u.l->tuple ? args.u.l : &one;
    size_t k = 0;
    sb_t b = {0};
    const char *p = fmt.u.s->p, *end = p + fmt.u.s->n;
    for (; p < end; p++) {
        if (*p != '%') {
            sb_putc(&b, *p);
            continue;
        }
        /* %[flags][width][.precision]conv, as Python's printf-style formatting */
        char spec[32] = "%";
        size_t sl = 1;
        for (p++; p < end && *p && strchr("-+ #0", *p) && sl < 8; p++)
            spec[sl++] = *p;
        size_t wd = 0, pd = 0; /* width and precision digits, capped to bound the output */
        for (; p < end && isdigit((unsigned char)*p) && wd < 5; p++, wd++)
            spec[sl++] = *p;
        if (p < end && *p == '.')
            for (spec[sl++] = *p++; p < end && isdigit((unsigned char)*p) && pd < 4; p++, pd++)
                spec[sl++] = *p;
        if (wd > 4 || pd > 3 || (p < end && isdigit((unsigned char)*p))) {
            sb_free(&b);
            return jerr(c, at, "format width or precision too large");
        }
        if (p >= end) {
            sb_free(&b);
            return jerr(c, at, "incomplete format");
        }
        char conv = *p;
        if (conv == '%') {
            sb_putc(&b, '%');
            continue;
        }
        if (k >= l->n) {
            sb_free(&b);
            return jerr(c, at, "not enough arguments for format string");
        }
        jv x = l->v[k++];
        bool num = x.t == JV_INT || x.t == JV_FLOAT || x.t == JV_BOOL;
        double fx = x.t == JV_FLOAT  ? x.u.f
                    : x.t == JV_INT  ? (double)x.u.i
                    : x.t == JV_BOOL ? x.u.b
                                     : 0;
        long long ix = x.t == JV_INT ? x.u.i : x.t == JV_BOOL ? x.u.b : (long long)fx;
        if (x.t == JV_FLOAT && (!isfinite(fx) || fabs(fx) > 9.2e18)) ix = 0;
        if (conv == 's' || conv == 'r') {
            sb_t t = {0};
            if (conv == 's')
                jv_to_str(&t, x);
            else
                jv_repr(&t, x);
            spec[sl++] = 's';
            spec[sl] = 0;
            sb_printf(&b, spec, sb_str(&t));
            sb_free(&t);
        } else if (num && strchr("dioxXc", conv)) {
            spec[sl++] = 'l';
            spec[sl++] = 'l';
            spec[sl++] = conv == 'i' ? 'd' : conv == 'c' ? 'c' : conv;
            spec[sl] = 0;
            if (conv == 'c')
                sb_printf(&b, "%c", (int)ix);
            else
                sb_printf(&b, spec, ix);
        } else if (num && strchr("eEfFgG", conv)) {
            spec[sl++] = conv;
            spec[sl] = 0;
            sb_printf(&b, spec, fx);
        } else {
            sb_free(&b);
            return jerr(c, at, "unsupported format character '%c' for %s", conv, jv_typename(x));
        }
    }
    if (k < l->n) {
        sb_free(&b);
        return jerr(c, at, "not all arguments converted during string formatting");
    }
    *out = sb_to_jv(c, &b);
    return 0;
}

/* ------------------------------------------------------------------ methods */

static const char *const str_methods[] = {
    "startswith", "endswith", "strip",      "lstrip",  "rstrip",     "split",   "rsplit",
    "upper",      "lower",    "replace",    "title",   "capitalize", "find",    "rfind",
    "index",      "count",    "splitlines", "join",    "format",     "isdigit", "isalpha",
    "isalnum",    "isspace",  "isupper",    "islower", NULL};
static const char *const dict_methods[] = {"items", "keys",       "values", "get", "update",
                                           "pop",   "setdefault", "copy",   NULL};
static const char *const list_methods[] = {"append", "index",  "count", "pop",
                                           "insert", "extend", "copy",  NULL};

static bool in_names(const char *const *names, const char *n) {
    for (; *names; names++)
        if (!strcmp(*names, n)) return true;
    return false;
}

bool jinja_method_exists(jv obj, const char *name) {
    switch (obj.t) {
    case JV_STR: return in_names(str_methods, name);
    case JV_DICT: return !obj.u.d->ns && in_names(dict_methods, name);
    case JV_LIST: return in_names(list_methods, name);
    default: return false;
    }
}

static int affix_test(jctx *c, const jnode *at, const jstr *s, jv arg, bool suffix, bool *out) {
    jlist one = {.n = 1, .cap = 1, .v = &arg};
    jlist *l = arg.t == JV_LIST ? arg.u.l : &one;
    *out = false;
    for (size_t i = 0; i < l->n; i++) {
        if (need_str(c, at, l->v[i], suffix ? "endswith" : "startswith")) return -1;
        const jstr *x = l->v[i].u.s;
        if (x->n <= s->n && !memcmp(suffix ? s->p + s->n - x->n : s->p, x->p, x->n)) *out = true;
    }
    return 0;
}

static int64_t cp_index(const jstr *s, size_t byte_off) {
    return (int64_t)utf8_count(s->p, byte_off);
}

static int str_method(jctx *c, const jnode *at, const jstr *s, const char *m, jcall *a, jv *out) {
    jv a0 = argv_or(a, 0, NULL, jv_undef(NULL)), a1 = argv_or(a, 1, NULL, jv_undef(NULL));
    if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
        bool r;
        if (affix_test(c, at, s, a0, m[0] == 'e', &r)) return -1;
        *out = jv_bool(r);
        return 0;
    }
    if (!strcmp(m, "strip") || !strcmp(m, "lstrip") || !strcmp(m, "rstrip")) {
        const jstr *chars = NULL;
        if (a0.t == JV_STR)
            chars = a0.u.s;
        else if (a0.t != JV_UNDEF && a0.t != JV_NONE)
            return jerr(c, at, "%s arg must be None or str", m);
        *out = do_strip(c, s, chars, m[0] != 'r', m[0] != 'l');
        return 0;
    }
    if (!strcmp(m, "split") || !strcmp(m, "rsplit")) {
        jv sep = argv_or(a, 0, "sep", jv_none());
        jv ms = argv_or(a, 1, "maxsplit", jv_int(-1));
        int64_t maxsplit;
        if (need_int(c, at, ms, "maxsplit", &maxsplit)) return -1;
        return do_split(c, at, s, sep, maxsplit, m[0] == 'r', out);
    }
    if (!strcmp(m, "upper")) {
        *out = map_case(c, s, CASE_UPPER);
        return 0;
    }
    if (!strcmp(m, "lower")) {
        *out = map_case(c, s, CASE_LOWER);
        return 0;
    }
    if (!strcmp(m, "title")) {
        *out = map_case(c, s, CASE_TITLE_PY);
        return 0;
    }
    if (!strcmp(m, "capitalize")) {
        *out = map_case(c, s, CASE_CAPITALIZE);
        return 0;
    }
    if (!strcmp(m, "replace")) {
        int64_t cnt = -1;
        jv *cv = jcall_arg(a, 2, "count");
        if (need_str(c, at, a0, "replace") || need_str(c, at, a1, "replace")) return -1;
        if (cv && need_int(c, at, *cv, "replace count", &cnt)) return -1;
        bool too_big;
        *out = do_replace(c, s, a0.u.s, a1.u.s, cnt, &too_big);
        if (too_big || out->u.s->n > c->max_output)
            return jerr(c, at, "replace result exceeds %zu bytes", c->max_output);
        return 0;
    }
    if (!strcmp(m, "find") || !strcmp(m, "rfind") || !strcmp(m, "index") || !strcmp(m, "count")) {
        if (need_str(c, at, a0, m)) return -1;
        const jstr *x = a0.u.s;
        if (!strcmp(m, "count")) {
            int64_t n = 0;
            if (x->n == 0)
                n = (int64_t)jstr_len(s) + 1;
            else
                for (const char *p = s->p; (p = memmem(p, (size_t)(s->p + s->n - p), x->p, x->n));
                     p += x->n)
                    n++;
            *out = jv_int(n);
            return 0;
        }
        int64_t r = -1;
        if (m[0] == 'r') {
            for (size_t k = s->n + 1; k-- > 0;)
                if (k + x->n <= s->n && !memcmp(s->p + k, x->p, x->n)) {
                    r = cp_index(s, k);
                    break;
                }
        } else {
            const char *f = x->n ? memmem(s->p, s->n, x->p, x->n) : s->p;
            if (f) r = cp_index(s, (size_t)(f - s->p));
        }
        if (r < 0 && !strcmp(m, "index")) return jerr(c, at, "substring not found");
        *out = jv_int(r);
        return 0;
    }
    if (!strcmp(m, "splitlines")) {
        bool keep = jv_truthy(argv_or(a, 0, "keepends", jv_bool(false)));
        *out = jv_list(&c->ar, 0);
        size_t i = 0, st = 0;
        while (i < s->n) {
            char ch = s->p[i];
            if (ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f' ||
                (ch >= 0x1c && ch <= 0x1e)) {
                size_t e = i + 1;
                if (ch == '\r' && e < s->n && s->p[e] == '\n') e++;
                jlist_push(&c->ar, out->u.l, jv_strn(&c->ar, s->p + st, (keep ? e : i) - st));
                i = st = e;
            } else
                i++;
        }
        if (st < s->n) jlist_push(&c->ar, out->u.l, jv_strn(&c->ar, s->p + st, s->n - st));
        return 0;
    }
    if (!strcmp(m, "join")) {
        jv sep = {.t = JV_STR};
        sep.u.s = (jstr *)s;
        return do_join(c, at, a0, sep, jv_none(), out);
    }
    if (!strcmp(m, "format")) {
        sb_t b = {0};
        size_t auto_i = 0;
        for (size_t i = 0; i < s->n; i++) {
            char ch = s->p[i];
            if ((ch == '{' || ch == '}') && i + 1 < s->n && s->p[i + 1] == ch) {
                sb_putc(&b, ch);
                i++;
                continue;
            }
            if (ch != '{') {
                sb_putc(&b, ch);
                continue;
            }
            const char *close = memchr(s->p + i, '}', s->n - i);
            if (!close) {
                sb_free(&b);
                return jerr(c, at, "single '{' encountered in format string");
            }
            size_t fl = (size_t)(close - (s->p + i + 1));
            const char *field = s->p + i + 1;
            const char *colon = memchr(field, ':', fl);
            size_t nl = colon ? (size_t)(colon - field) : fl;
            jv *val;
            if (nl == 0)
                val = jcall_arg(a, auto_i++, NULL);
            else if (isdigit((unsigned char)field[0]))
                val = jcall_arg(a, (size_t)strtoul(field, NULL, 10), NULL);
            else {
                char name[64];
                snprintf(name, sizeof name, "%.*s", (int)(nl < 63 ? nl : 63), field);
                val = jcall_arg(a, (size_t)-1, name);
            }
            if (!val) {
                sb_free(&b);
                return jerr(c, at, "format field '%.*s' has no argument", (int)fl, field);
            }
            jv_to_str(&b, *val);
            i += fl + 1;
        }
        *out = sb_to_jv(c, &b);
        return 0;
    }
    if (!strncmp(m, "is", 2)) {
        bool r = s->n > 0, any_cased = false;
        for (size_t i = 0; i < s->n;) {
            uint32_t cp;
            i += cp_at(s->p + i, s->n - i, &cp);
            if (!strcmp(m, "isdigit"))
                r = r && cp >= '0' && cp <= '9';
            else if (!strcmp(m, "isalpha"))
                r = r && (cp < 128 ? isalpha((int)cp) : cp_cased(cp));
            else if (!strcmp(m, "isalnum"))
                r = r && (cp < 128 ? isalnum((int)cp) : cp_cased(cp));
            else if (!strcmp(m, "isspace"))
                r = r && cp_space(cp);
            else if (!strcmp(m, "isupper")) {
                if (cp_lower(cp) != cp) any_cased = true;
                if (cp_upper(cp) != cp) r = false;
            } else if (!strcmp(m, "islower")) {
                if (cp_upper(cp) != cp) any_cased = true;
                if (cp_lower(cp) != cp) r = false;
            }
        }
        if (!strcmp(m, "isupper") || !strcmp(m, "islower")) r = r && any_cased;
        *out = jv_bool(r);
        return 0;
    }
    return jerr(c, at, "str has no method '%s'", m);
}

static int dict_method(jctx *c, const jnode *at, jdict *d, const char *m, jcall *a, jv *out) {
    if (!strcmp(m, "items")) {
        jv self = {.t = JV_DICT};
        self.u.d = d;
        return f_items(c, at, self, a, out);
    }
    if (!strcmp(m, "keys") || !strcmp(m, "values")) {
        *out = jv_list(&c->ar, d->n);
        for (size_t i = 0; i < d->n; i++) {
            jlist_push(&c->ar, out->u.l, m[0] == 'k' ? d->k[i] : d->v[i]);
        }
        return 0;
    }
    if (!strcmp(m, "copy")) {
        *out = jv_dict(&c->ar, d->n);
        for (size_t i = 0; i < d->n; i++)
            jdict_setv(&c->ar, out->u.d, d->k[i], d->v[i]);
        return 0;
    }
    if (!strcmp(m, "update")) {
        jv *o = jcall_arg(a, 0, NULL);
        if (o && o->t == JV_DICT)
            for (size_t i = 0; i < o->u.d->n; i++)
                jdict_setv(&c->ar, d, o->u.d->k[i], o->u.d->v[i]);
        for (size_t i = 0; i < a->nkw; i++)
            jdict_set(&c->ar, d, a->kwn[i], strlen(a->kwn[i]), a->kwv[i]);
        *out = jv_none();
        return 0;
    }
    jv *key = jcall_arg(a, 0, "key");
    if (!key) return jerr(c, at, "dict.%s needs a key", m);
    jv dflt = argv_or(a, 1, "default", jv_none());
    jv *v = jdict_getv(d, *key);
    if (!strcmp(m, "get")) {
        *out = v ? *v : dflt;
        return 0;
    }
    if (!strcmp(m, "setdefault")) {
        if (!v) {
            jdict_setv(&c->ar, d, *key, dflt);
            *out = dflt;
        } else
            *out = *v;
        return 0;
    }
    /* pop */
    if (!v) {
        if (jcall_arg(a, 1, "default")) {
            *out = dflt;
            return 0;
        }
        return jerr(c, at, "KeyError: key not found in dict.pop");
    }
    *out = *v;
    size_t idx = (size_t)(v - d->v);
    memmove(d->k + idx, d->k + idx + 1, (d->n - idx - 1) * sizeof *d->k);
    memmove(d->v + idx, d->v + idx + 1, (d->n - idx - 1) * sizeof *d->v);
    d->n--;
    return 0;
}

static int list_method(jctx *c, const jnode *at, jlist *l, const char *m, jcall *a, jv *out) {
    jv *x = jcall_arg(a, 0, NULL);
    *out = jv_none();
    if (!strcmp(m, "append")) {
        if (!x) return jerr(c, at, "append takes exactly one argument");
        jlist_push(&c->ar, l, *x);
        return 0;
    }
    if (!strcmp(m, "extend")) {
        jlist *o;
        if (!x) return jerr(c, at, "extend takes exactly one argument");
        if (jinja_iter_list(c, at, *x, &o)) return -1;
        size_t n = o->n;
        for (size_t i = 0; i < n; i++)
            jlist_push(&c->ar, l, o->v[i]);
        return 0;
    }
    if (!strcmp(m, "copy")) {
        *out = jv_list(&c->ar, l->n);
        for (size_t i = 0; i < l->n; i++)
            jlist_push(&c->ar, out->u.l, l->v[i]);
        return 0;
    }
    if (!strcmp(m, "index") || !strcmp(m, "count")) {
        if (!x) return jerr(c, at, "%s takes exactly one argument", m);
        int64_t n = 0;
        for (size_t i = 0; i < l->n; i++)
            if (jv_eq(l->v[i], *x)) {
                if (m[0] == 'i') {
                    *out = jv_int((int64_t)i);
                    return 0;
                }
                n++;
            }
        if (m[0] == 'i') return jerr(c, at, "value is not in list");
        *out = jv_int(n);
        return 0;
    }
    if (!strcmp(m, "pop") || !strcmp(m, "insert")) {
        int64_t i = m[0] == 'p' ? -1 : 0;
        if (x && need_int(c, at, *x, m, &i)) return -1;
        int64_t n = (int64_t)l->n;
        if (m[0] == 'i') {
            jv *val = jcall_arg(a, 1, NULL);
            if (!val) return jerr(c, at, "insert expected 2 arguments");
            if (i < 0) i = i + n < 0 ? 0 : i + n;
            if (i > n) i = n;
            jlist_push(&c->ar, l, *val);
            memmove(l->v + i + 1, l->v + i, (size_t)(n - i) * sizeof(jv));
            l->v[i] = *val;
            return 0;
        }
        if (i < 0) i += n;
        if (i < 0 || i >= n) return jerr(c, at, "pop index out of range");
        *out = l->v[i];
        memmove(l->v + i, l->v + i + 1, (size_t)(n - i - 1) * sizeof(jv));
        l->n--;
        return 0;
    }
    return jerr(c, at, "list has no method '%s'", m);
}

/* ------------------------------------------------------------------ loop */

int jinja_loop_attr(jctx *c, const jnode *at, jloop *l, const char *name, jv *out) {
    int64_t i = (int64_t)l->i, n = (int64_t)l->items->n;
    if (!strcmp(name, "index"))
        *out = jv_int(i + 1);
    else if (!strcmp(name, "index0"))
        *out = jv_int(i);
    else if (!strcmp(name, "revindex"))
        *out = jv_int(n - i);
    else if (!strcmp(name, "revindex0"))
        *out = jv_int(n - i - 1);
    else if (!strcmp(name, "first"))
        *out = jv_bool(i == 0);
    else if (!strcmp(name, "last"))
        *out = jv_bool(i == n - 1);
    else if (!strcmp(name, "length"))
        *out = jv_int(n);
    else if (!strcmp(name, "depth"))
        *out = jv_int(l->depth);
    else if (!strcmp(name, "depth0"))
        *out = jv_int(l->depth - 1);
    else if (!strcmp(name, "previtem"))
        *out = i > 0 ? l->items->v[i - 1] : jv_undef("there is no previous item");
    else if (!strcmp(name, "nextitem"))
        *out = i + 1 < n ? l->items->v[i + 1] : jv_undef("there is no next item");
    else if (!strcmp(name, "cycle")) {
        jfunc *f = ja_alloc(&c->ar, sizeof *f);
        f->name = "cycle";
        f->self.t = JV_LOOP;
        f->self.u.loop = l;
        out->t = JV_FUNC;
        out->u.fn = f;
    } else
        *out = jv_undef_fmt(c, "'LoopContext object' has no attribute '%s'", name);
    return 0;
}

/* ------------------------------------------------------------------ globals */

static const char *const globals[] = {"range",           "namespace",    "dict",
                                      "raise_exception", "strftime_now", NULL};

bool jinja_global_exists(const char *name) { return in_names(globals, name); }

static int g_range(jctx *c, const jnode *at, jcall *a, jv *out) {
    int64_t v[3] = {0, 0, 1};
    if (a->npos < 1 || a->npos > 3)
        return jerr(c, at, "range expected 1 to 3 arguments, got %zu", a->npos);
    for (size_t i = 0; i < a->npos; i++)
        if (need_int(c, at, a->pos[i], "range", &v[i])) return -1;
    int64_t start = 0, stop = v[0], step = 1;
    if (a->npos >= 2) {
        start = v[0];
        stop = v[1];
    }
    if (a->npos == 3) step = v[2];
    if (step == 0) return jerr(c, at, "range() arg 3 must not be zero");
    double count = step > 0 ? ceil(((double)stop - (double)start) / (double)step)
                            : ceil(((double)start - (double)stop) / (double)-step);
    if (count < 0) count = 0;
    if (count > (double)c->max_iters)
        return jerr(c, at, "range of %.0f items exceeds the limit of %llu", count,
                    (unsigned long long)c->max_iters);
    *out = jv_list(&c->ar, (size_t)count);
    for (int64_t k = 0; k < (int64_t)count; k++)
        jlist_push(&c->ar, out->u.l, jv_int(start + k * step));
    return 0;
}

int jinja_call_builtin(jctx *c, const jnode *at, jfunc *f, jcall *a, jv *out) {
    const char *m = f->name;
    switch (f->self.t) {
    case JV_STR: return str_method(c, at, f->self.u.s, m, a, out);
    case JV_DICT: return dict_method(c, at, f->self.u.d, m, a, out);
    case JV_LIST: return list_method(c, at, f->self.u.l, m, a, out);
    case JV_LOOP: {
        if (!a->npos) return jerr(c, at, "loop.cycle needs at least one value");
        *out = a->pos[f->self.u.loop->i % a->npos];
        return 0;
    }
    default: break;
    }
    if (!strcmp(m, "range")) return g_range(c, at, a, out);
    if (!strcmp(m, "namespace") || !strcmp(m, "dict")) {
        *out = jv_dict(&c->ar, a->nkw);
        out->u.d->ns = m[0] == 'n';
        for (size_t i = 0; i < a->npos; i++) {
            if (a->pos[i].t != JV_DICT)
                return jerr(c, at, "%s() positional argument must be a mapping", m);
            jdict *d = a->pos[i].u.d;
            for (size_t k = 0; k < d->n; k++)
                jdict_setv(&c->ar, out->u.d, d->k[k], d->v[k]);
        }
        for (size_t i = 0; i < a->nkw; i++)
            jdict_set(&c->ar, out->u.d, a->kwn[i], strlen(a->kwn[i]), a->kwv[i]);
        return 0;
    }
    if (!strcmp(m, "raise_exception")) {
        jv msg = argv_or(a, 0, "message", jv_str(&c->ar, "template raised an exception"));
        jv s = str_of(c, msg);
        return jerr(c, at, "%s", s.u.s->p);
    }
    if (!strcmp(m, "strftime_now")) {
        jv *fmt = jcall_arg(a, 0, "format");
        if (!fmt || need_str(c, at, *fmt, "strftime_now"))
            return fmt ? -1 : jerr(c, at, "strftime_now needs a format");
        struct tm tm;
        gmtime_r(&c->now, &tm);
        char buf[512];
        size_t n = fmt->u.s->n ? strftime(buf, sizeof buf, fmt->u.s->p, &tm) : 0;
        if (fmt->u.s->n && n == 0)
            return jerr(c, at, "strftime_now format too long or empty result");
        *out = jv_strn(&c->ar, buf, n);
        return 0;
    }
    return jerr(c, at, "unknown function '%s'", m);
}
