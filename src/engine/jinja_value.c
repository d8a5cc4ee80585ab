/*
 * jinja_value — the interpreter's value model: an arena allocator, value
 * constructors, and the Python behaviour templates observe: truthiness,
 * equality and ordering, str()/repr() of every type, float repr (shortest
 * round-trip digits, like Python), and json.dumps with its separators,
 * indent and sort_keys.
 *
 * Trade-off: the arena never frees single values, so memory grows with the
 * work a render does; the evaluator checks the arena's total against a limit
 * at every loop iteration and call, which bounds it.
 */
#include "base/utf8.h"
#include "engine/jinja_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ arena */

struct jchunk {
    jchunk *next;
    size_t cap, used;
    _Alignas(16) unsigned char data[];
};

#define JA_CHUNK (64 * 1024)

void *ja_alloc(jarena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    jchunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > JA_CHUNK / 4 ? n : JA_CHUNK;
        jchunk *nc = malloc(sizeof *nc + cap);
        if (!nc) abort();
        nc->cap = cap;
        nc->used = 0;
        if (cap == n && c) { /* big block: keep filling the current chunk */
            nc->next = c->next;
            c->next = nc;
        } else {
            nc->next = c;
            a->head = nc;
        }
        c = nc;
    }
    void *p = c->data + c->used;
    c->used += n;
    a->total += n;
    memset(p, 0, n);
    return p;
}

void ja_free(jarena *a) {
    jchunk *c = a->head;
    while (c) {
        jchunk *nx = c->next;
        free(c);
        c = nx;
    }
    a->head = NULL;
    a->total = 0;
}

char *ja_strndup(jarena *a, const char *s, size_t n) {
    char *p = ja_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* ------------------------------------------------------------------ constructors */

jv jv_strn(jarena *a, const char *s, size_t n) {
    jstr *js = ja_alloc(a, sizeof(jstr) + n + 1);
    js->n = n;
    if (n) memcpy(js->p, s, n);
    js->p[n] = 0;
    jv v = {.t = JV_STR};
    v.u.s = js;
    return v;
}

jv jv_str(jarena *a, const char *s) { return jv_strn(a, s, strlen(s)); }

jv jv_list(jarena *a, size_t cap) {
    jlist *l = ja_alloc(a, sizeof *l);
    if (cap) {
        l->v = ja_alloc(a, cap * sizeof(jv));
        l->cap = cap;
    }
    jv v = {.t = JV_LIST};
    v.u.l = l;
    return v;
}

jv jv_dict(jarena *a, size_t cap) {
    jdict *d = ja_alloc(a, sizeof *d);
    if (cap) {
        d->k = ja_alloc(a, cap * sizeof(jv));
        d->v = ja_alloc(a, cap * sizeof(jv));
        d->cap = cap;
    }
    jv v = {.t = JV_DICT};
    v.u.d = d;
    return v;
}

void jlist_push(jarena *a, jlist *l, jv v) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        jv *nv = ja_alloc(a, cap * sizeof(jv));
        if (l->n) memcpy(nv, l->v, l->n * sizeof(jv));
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = v;
}

jv *jdict_get(const jdict *d, const char *key, size_t n) {
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i].t == JV_STR && d->k[i].u.s->n == n && !memcmp(d->k[i].u.s->p, key, n))
            return &d->v[i];
    return NULL;
}

jv *jdict_getv(const jdict *d, jv key) {
    if (key.t == JV_STR) return jdict_get(d, key.u.s->p, key.u.s->n);
    for (size_t i = 0; i < d->n; i++)
        if (jv_eq(d->k[i], key)) return &d->v[i];
    return NULL;
}

void jdict_set(jarena *a, jdict *d, const char *key, size_t n, jv v) {
    jv *old = jdict_get(d, key, n);
    if (old) {
        *old = v;
        return;
    }
    jdict_setv(a, d, jv_strn(a, key, n), v);
}

void jdict_setv(jarena *a, jdict *d, jv key, jv v) {
    jv *old = jdict_getv(d, key);
    if (old) {
        *old = v;
        return;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        jv *nk = ja_alloc(a, cap * sizeof(jv));
        jv *nv = ja_alloc(a, cap * sizeof(jv));
        if (d->n) {
            memcpy(nk, d->k, d->n * sizeof(jv));
            memcpy(nv, d->v, d->n * sizeof(jv));
        }
        d->k = nk;
        d->v = nv;
        d->cap = cap;
    }
    d->k[d->n] = key;
    d->v[d->n] = v;
    d->n++;
}

/* Appends KEY -> V to D without looking for an existing KEY (JSON objects
 * from jansson already have unique keys; checking would make loading an
 * object of n keys cost n^2). */
static void jdict_append(jarena *a, jdict *d, const char *key, size_t n, jv v) {
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        jv *nk = ja_alloc(a, cap * sizeof(jv));
        jv *nv = ja_alloc(a, cap * sizeof(jv));
        if (d->n) {
            memcpy(nk, d->k, d->n * sizeof(jv));
            memcpy(nv, d->v, d->n * sizeof(jv));
        }
        d->k = nk;
        d->v = nv;
        d->cap = cap;
    }
    d->k[d->n] = jv_strn(a, key, n);
    d->v[d->n] = v;
    d->n++;
}

static jv from_json_d(jarena *a, json_t *j, int depth, bool *too_deep) {
    if (!j) return jv_undef(NULL);
    if (depth > JV_MAX_JSON_DEPTH) {
        *too_deep = true;
        return jv_none();
    }
    switch (json_typeof(j)) {
    case JSON_NULL: return jv_none();
    case JSON_TRUE: return jv_bool(true);
    case JSON_FALSE: return jv_bool(false);
    case JSON_INTEGER: return jv_int((int64_t)json_integer_value(j));
    case JSON_REAL: return jv_float(json_real_value(j));
    case JSON_STRING: return jv_strn(a, json_string_value(j), json_string_length(j));
    case JSON_ARRAY: {
        size_t n = json_array_size(j);
        jv l = jv_list(a, n);
        for (size_t i = 0; i < n; i++)
            jlist_push(a, l.u.l, from_json_d(a, json_array_get(j, i), depth + 1, too_deep));
        return l;
    }
    case JSON_OBJECT: {
        jv d = jv_dict(a, json_object_size(j));
        for (void *it = json_object_iter(j); it; it = json_object_iter_next(j, it))
            jdict_append(a, d.u.d, json_object_iter_key(it), json_object_iter_key_len(it),
                         from_json_d(a, json_object_iter_value(it), depth + 1, too_deep));
        return d;
    }
    }
    return jv_none();
}

jv jv_from_json(jarena *a, json_t *j, bool *too_deep) {
    *too_deep = false;
    return from_json_d(a, j, 0, too_deep);
}

/* ------------------------------------------------------------------ semantics */

bool jv_truthy(jv v) {
    switch (v.t) {
    case JV_UNDEF:
    case JV_NONE: return false;
    case JV_BOOL: return v.u.b;
    case JV_INT: return v.u.i != 0;
    case JV_FLOAT: return v.u.f != 0.0;
    case JV_STR: return v.u.s->n != 0;
    case JV_LIST: return v.u.l->n != 0;
    case JV_DICT: return v.u.d->n != 0;
    default: return true;
    }
}

static bool is_num(jv v) { return v.t == JV_INT || v.t == JV_FLOAT || v.t == JV_BOOL; }
static double num_f(jv v) {
    return v.t == JV_FLOAT ? v.u.f : v.t == JV_INT ? (double)v.u.i : (double)v.u.b;
}
static int64_t num_i(jv v) { return v.t == JV_INT ? v.u.i : (int64_t)v.u.b; }

/* Containers can hold themselves (l.append(l), ns.self = ns): recursive
 * walks stop at JV_MAX_WALK levels instead of overflowing the stack. */
#define JV_MAX_WALK 100

static bool eq_d(jv a, jv b, int depth);
bool jv_eq(jv a, jv b) { return eq_d(a, b, 0); }

static bool eq_d(jv a, jv b, int depth) {
    if (depth > JV_MAX_WALK) return false;
    if (is_num(a) && is_num(b)) {
        if (a.t == JV_FLOAT || b.t == JV_FLOAT) return num_f(a) == num_f(b);
        return num_i(a) == num_i(b);
    }
    if (a.t != b.t) return false;
    switch (a.t) {
    case JV_UNDEF:
    case JV_NONE: return true;
    case JV_STR: return a.u.s->n == b.u.s->n && !memcmp(a.u.s->p, b.u.s->p, a.u.s->n);
    case JV_LIST:
        if (a.u.l->n != b.u.l->n) return false;
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!eq_d(a.u.l->v[i], b.u.l->v[i], depth + 1)) return false;
        return true;
    case JV_DICT:
        if (a.u.d->n != b.u.d->n) return false;
        for (size_t i = 0; i < a.u.d->n; i++) {
            jv *o = jdict_getv(b.u.d, a.u.d->k[i]);
            if (!o || !eq_d(a.u.d->v[i], *o, depth + 1)) return false;
        }
        return true;
    case JV_MACRO: return a.u.m == b.u.m;
    case JV_FUNC: return a.u.fn == b.u.fn;
    case JV_LOOP: return a.u.loop == b.u.loop;
    default: return false;
    }
}

static int cmp_d(jv a, jv b, int depth);
int jv_cmp(jv a, jv b) { return cmp_d(a, b, 0); }

static int cmp_d(jv a, jv b, int depth) {
    if (depth > JV_MAX_WALK) return -2;
    if (is_num(a) && is_num(b)) {
        if (a.t == JV_FLOAT || b.t == JV_FLOAT) {
            double x = num_f(a), y = num_f(b);
            return x < y ? -1 : x > y ? 1 : 0;
        }
        int64_t x = num_i(a), y = num_i(b);
        return x < y ? -1 : x > y ? 1 : 0;
    }
    if (a.t == JV_STR && b.t == JV_STR) {
        size_t n = a.u.s->n < b.u.s->n ? a.u.s->n : b.u.s->n;
        int c = memcmp(a.u.s->p, b.u.s->p, n);
        if (c) return c < 0 ? -1 : 1;
        return a.u.s->n < b.u.s->n ? -1 : a.u.s->n > b.u.s->n ? 1 : 0;
    }
    if (a.t == JV_LIST && b.t == JV_LIST) {
        size_t n = a.u.l->n < b.u.l->n ? a.u.l->n : b.u.l->n;
        for (size_t i = 0; i < n; i++) {
            if (eq_d(a.u.l->v[i], b.u.l->v[i], depth + 1)) continue;
            return cmp_d(a.u.l->v[i], b.u.l->v[i], depth + 1);
        }
        return a.u.l->n < b.u.l->n ? -1 : a.u.l->n > b.u.l->n ? 1 : 0;
    }
    return -2;
}

const char *jv_typename(jv v) {
    switch (v.t) {
    case JV_UNDEF: return "Undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: return "int";
    case JV_FLOAT: return "float";
    case JV_STR: return "str";
    case JV_LIST: return v.u.l->tuple ? "tuple" : "list";
    case JV_DICT: return v.u.d->ns ? "Namespace" : "dict";
    case JV_MACRO: return "Macro";
    case JV_FUNC: return "function";
    case JV_LOOP: return "LoopContext";
    default: return "object";
    }
}

size_t jstr_len(const jstr *s) { return utf8_count(s->p, s->n); }

jv jv_html_escape(jarena *a, jv s) {
    if (s.t == JV_STR && s.safe) return s;
    sb_t b = {0};
    sb_t tmp = {0};
    if (s.t != JV_STR) jv_to_str(&tmp, s);
    const char *p = s.t == JV_STR ? s.u.s->p : sb_str(&tmp);
    size_t n = s.t == JV_STR ? s.u.s->n : tmp.len;
    for (size_t i = 0; i < n; i++) {
        switch (p[i]) {
        case '&': sb_append(&b, "&amp;"); break;
        case '<': sb_append(&b, "&lt;"); break;
        case '>': sb_append(&b, "&gt;"); break;
        case '"': sb_append(&b, "&#34;"); break;
        case '\'': sb_append(&b, "&#39;"); break;
        default: sb_putc(&b, p[i]);
        }
    }
    jv r = jv_strn(a, b.data ? b.data : "", b.len);
    r.safe = 1;
    sb_free(&b);
    sb_free(&tmp);
    return r;
}

/* ------------------------------------------------------------------ str / repr */

void jv_float_repr(sb_t *out, double f) {
    if (isnan(f)) {
        sb_append(out, "nan");
        return;
    }
    if (isinf(f)) {
        sb_append(out, f < 0 ? "-inf" : "inf");
        return;
    }
    /* Shortest %.Ne that reads back as F, like Python's repr. */
    char buf[64];
    int prec;
    for (prec = 0; prec < 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec, f);
        if (strtod(buf, NULL) == f) break;
    }
    snprintf(buf, sizeof buf, "%.*e", prec, f);
    /* buf: [-]d[.ddd]e[+-]XX */
    char digits[32];
    int nd = 0;
    bool neg = buf[0] == '-';
    const char *p = buf + (neg ? 1 : 0);
    for (; *p && *p != 'e'; p++)
        if (*p != '.') digits[nd++] = *p;
    int exp = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    if (neg) sb_putc(out, '-');
    if (exp >= -5 + 1 && exp < 16) {
        if (exp >= 0) {
            for (int i = 0; i <= exp; i++)
                sb_putc(out, i < nd ? digits[i] : '0');
            sb_putc(out, '.');
            if (nd > exp + 1)
                sb_appendn(out, digits + exp + 1, (size_t)(nd - exp - 1));
            else
                sb_putc(out, '0');
        } else {
            sb_append(out, "0.");
            for (int i = 0; i < -exp - 1; i++)
                sb_putc(out, '0');
            sb_appendn(out, digits, (size_t)nd);
        }
    } else {
        sb_putc(out, digits[0]);
        if (nd > 1) {
            sb_putc(out, '.');
            sb_appendn(out, digits + 1, (size_t)(nd - 1));
        }
        sb_printf(out, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
}

static void repr_str(sb_t *out, const char *s, size_t n) {
    bool has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    sb_putc(out, q);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == (unsigned char)q || c == '\\') {
            sb_putc(out, '\\');
            sb_putc(out, (char)c);
        } else if (c == '\n')
            sb_append(out, "\\n");
        else if (c == '\r')
            sb_append(out, "\\r");
        else if (c == '\t')
            sb_append(out, "\\t");
        else if (c < 0x20 || c == 0x7f)
            sb_printf(out, "\\x%02x", c);
        else
            sb_putc(out, (char)c);
    }
    sb_putc(out, q);
}

static void repr_d(sb_t *out, jv v, int depth);
void jv_repr(sb_t *out, jv v) { repr_d(out, v, 0); }

static void repr_d(sb_t *out, jv v, int depth) {
    if (depth > JV_MAX_WALK && (v.t == JV_LIST || v.t == JV_DICT)) {
        sb_append(out, "...");
        return;
    }
    switch (v.t) {
    case JV_STR: repr_str(out, v.u.s->p, v.u.s->n); return;
    case JV_LIST: {
        sb_putc(out, v.u.l->tuple ? '(' : '[');
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i) sb_append(out, ", ");
            repr_d(out, v.u.l->v[i], depth + 1);
        }
        if (v.u.l->tuple && v.u.l->n == 1) sb_putc(out, ',');
        sb_putc(out, v.u.l->tuple ? ')' : ']');
        return;
    }
    case JV_DICT:
        if (v.u.d->ns) {
            sb_append(out, "<Namespace {");
        } else
            sb_putc(out, '{');
        for (size_t i = 0; i < v.u.d->n; i++) {
            if (i) sb_append(out, ", ");
            repr_d(out, v.u.d->k[i], depth + 1);
            sb_append(out, ": ");
            repr_d(out, v.u.d->v[i], depth + 1);
        }
        sb_append(out, v.u.d->ns ? "}>" : "}");
        return;
    default: jv_to_str(out, v);
    }
}

void jv_to_str(sb_t *out, jv v) {
    switch (v.t) {
    case JV_UNDEF: return;
    case JV_NONE: sb_append(out, "None"); return;
    case JV_BOOL: sb_append(out, v.u.b ? "True" : "False"); return;
    case JV_INT: sb_printf(out, "%lld", (long long)v.u.i); return;
    case JV_FLOAT: jv_float_repr(out, v.u.f); return;
    case JV_STR: sb_appendn(out, v.u.s->p, v.u.s->n); return;
    case JV_LIST:
    case JV_DICT: jv_repr(out, v); return;
    case JV_MACRO: sb_append(out, "<Macro>"); return;
    case JV_FUNC: sb_printf(out, "<built-in method %s>", v.u.fn->name); return;
    case JV_LOOP: sb_append(out, "<LoopContext>"); return;
    }
}

/* ------------------------------------------------------------------ json */

static void json_str(sb_t *out, const char *s, size_t n, bool ascii) {
    sb_putc(out, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': sb_append(out, "\\\""); continue;
        case '\\': sb_append(out, "\\\\"); continue;
        case '\n': sb_append(out, "\\n"); continue;
        case '\r': sb_append(out, "\\r"); continue;
        case '\t': sb_append(out, "\\t"); continue;
        case '\b': sb_append(out, "\\b"); continue;
        case '\f': sb_append(out, "\\f"); continue;
        default: break;
        }
        if (c < 0x20) {
            sb_printf(out, "\\u%04x", c);
        } else if (c >= 0x80 && ascii) {
            uint32_t cp;
            int len = utf8_decode(s + i, n - i, &cp);
            if (len <= 0) len = 1;
            if (cp >= 0x10000) {
                cp -= 0x10000;
                sb_printf(out, "\\u%04x\\u%04x", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
            } else
                sb_printf(out, "\\u%04x", cp);
            i += (size_t)len - 1;
        } else
            sb_putc(out, (char)c);
    }
    sb_putc(out, '"');
}

static void json_nl(sb_t *out, const jv_json_opts *o, int level) {
    sb_putc(out, '\n');
    for (int i = 0; i < o->indent * level; i++)
        sb_putc(out, ' ');
}

int jv_to_json(sb_t *out, jv v, const jv_json_opts *o, int level, const char **bad) {
    if (level > 256) {
        *bad = "nesting deeper than 256";
        return -1;
    }
    switch (v.t) {
    case JV_NONE: sb_append(out, "null"); return 0;
    case JV_BOOL: sb_append(out, v.u.b ? "true" : "false"); return 0;
    case JV_INT: sb_printf(out, "%lld", (long long)v.u.i); return 0;
    case JV_FLOAT:
        if (isnan(v.u.f))
            sb_append(out, "NaN");
        else if (isinf(v.u.f))
            sb_append(out, v.u.f < 0 ? "-Infinity" : "Infinity");
        else
            jv_float_repr(out, v.u.f);
        return 0;
    case JV_STR: json_str(out, v.u.s->p, v.u.s->n, o->ensure_ascii); return 0;
    case JV_LIST: {
        if (!v.u.l->n) {
            sb_append(out, "[]");
            return 0;
        }
        sb_putc(out, '[');
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i) sb_append(out, o->item_sep);
            if (o->indent >= 0) json_nl(out, o, level + 1);
            if (jv_to_json(out, v.u.l->v[i], o, level + 1, bad)) return -1;
        }
        if (o->indent >= 0) json_nl(out, o, level);
        sb_putc(out, ']');
        return 0;
    }
    case JV_DICT: {
        jdict *d = v.u.d;
        if (!d->n) {
            sb_append(out, "{}");
            return 0;
        }
        size_t *order = malloc(d->n * sizeof *order);
        if (!order) abort();
        for (size_t i = 0; i < d->n; i++)
            order[i] = i;
        if (o->sort_keys) {
            /* insertion sort by key (dicts in templates are small) */
            for (size_t i = 1; i < d->n; i++)
                for (size_t j = i; j > 0 && jv_cmp(d->k[order[j - 1]], d->k[order[j]]) > 0; j--) {
                    size_t t = order[j];
                    order[j] = order[j - 1];
                    order[j - 1] = t;
                }
        }
        sb_putc(out, '{');
        int rc = 0;
        for (size_t i = 0; i < d->n && !rc; i++) {
            if (i) sb_append(out, o->item_sep);
            if (o->indent >= 0) json_nl(out, o, level + 1);
            jv k = d->k[order[i]];
            if (k.t == JV_STR)
                json_str(out, k.u.s->p, k.u.s->n, o->ensure_ascii);
            else if (k.t == JV_NONE)
                sb_append(out, "\"null\"");
            else {
                sb_putc(out, '"');
                if (k.t == JV_BOOL)
                    sb_append(out, k.u.b ? "true" : "false");
                else
                    jv_to_str(out, k);
                sb_putc(out, '"');
            }
            sb_append(out, o->key_sep);
            rc = jv_to_json(out, d->v[order[i]], o, level + 1, bad);
        }
        free(order);
        if (rc) return -1;
        if (o->indent >= 0) json_nl(out, o, level);
        sb_putc(out, '}');
        return 0;
    }
    default: *bad = jv_typename(v); return -1;
    }
}
