/*
 * jinja_eval — the tree-walking evaluator: scopes, statements, expressions,
 * macros and calls. Filters, tests, methods and global functions live in
 * jinja_builtins.c behind jinja_builtin_*().
 *
 * Scoping follows Jinja: the template body, each for loop and each macro
 * call get their own scope; `if` does not. A `set` writes into the current
 * scope, so assignments inside a loop do not leak out (templates use
 * namespace() for that). Macros close over the scope they were defined in.
 *
 * Attribute access `a.b` looks for a method first (dict.items, str.strip)
 * and then an item, `a['b']` the reverse, as Jinja's getattr/getitem do.
 * Missing attributes and variables are undefined values that render empty
 * and are falsy; using one further (attribute of undefined, arithmetic,
 * calling it) is an error naming the variable, like Jinja's UndefinedError.
 *
 * Limits (jinja_opts): call depth, total loop iterations, output size and
 * arena size are checked where they grow, so every render terminates.
 */
#include "engine/jinja_eval.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------ errors */

int jerr(jctx *c, const jnode *at, const char *fmt, ...) {
    if (c->failed) return -1; /* keep the first (innermost) message */
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->failed = true;
    cf_seterr(c->err, CF_EINVAL, "line %d, column %d: %s", at ? at->line : 0, at ? at->col : 0,
              msg);
    return -1;
}

int jerr_undef(jctx *c, const jnode *at, jv v) {
    return jerr(c, at, "%s", v.u.undef ? v.u.undef : "value is undefined");
}

static int check_limits(jctx *c, const jnode *at) {
    if (c->ar.total > c->max_memory)
        return jerr(c, at, "template used more than %zu bytes of memory", c->max_memory);
    if (c->out->len > c->max_output)
        return jerr(c, at, "template output exceeds %zu bytes", c->max_output);
    return 0;
}

/* ------------------------------------------------------------------ scopes */

static jscope *scope_new(jctx *c, jscope *parent) {
    jscope *s = ja_alloc(&c->ar, sizeof *s);
    s->parent = parent;
    s->vars = jv_dict(&c->ar, 0).u.d;
    return s;
}

static jv *scope_find(jscope *s, const char *name) {
    size_t n = strlen(name);
    for (; s; s = s->parent) {
        jv *v = jdict_get(s->vars, name, n);
        if (v) return v;
    }
    return NULL;
}

static void scope_set(jctx *c, jscope *s, const char *name, jv v) {
    jdict_set(&c->ar, s->vars, name, strlen(name), v);
}

/* ------------------------------------------------------------------ attribute and item access */

jv jv_undef_fmt(jctx *c, const char *fmt, ...) {
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return jv_undef(ja_strndup(&c->ar, msg, strlen(msg)));
}

static int get_attr(jctx *c, const jnode *at, jv obj, const char *name, jv *out) {
    if (obj.t == JV_UNDEF) return jerr_undef(c, at, obj);
    if (obj.t == JV_LOOP) return jinja_loop_attr(c, at, obj.u.loop, name, out);
    if (jinja_method_exists(obj, name)) {
        jfunc *f = ja_alloc(&c->ar, sizeof *f);
        f->name = name;
        f->self = obj;
        out->t = JV_FUNC;
        out->u.fn = f;
        return 0;
    }
    if (obj.t == JV_DICT) {
        jv *v = jdict_get(obj.u.d, name, strlen(name));
        if (v) {
            *out = *v;
            return 0;
        }
    }
    *out = jv_undef_fmt(c, "'%s object' has no attribute '%s'", jv_typename(obj), name);
    return 0;
}

/* Code point CP-th byte offset of S (CP may equal the length). */
static size_t cp_off(const jstr *s, size_t cp) {
    size_t off = 0;
    while (cp-- && off < s->n) {
        uint32_t d;
        int l = utf8_decode(s->p + off, s->n - off, &d);
        off += l > 0 ? (size_t)l : 1;
    }
    return off;
}

static int get_item(jctx *c, const jnode *at, jv obj, jv key, jv *out) {
    if (obj.t == JV_UNDEF) return jerr_undef(c, at, obj);
    if (obj.t == JV_DICT) {
        jv *v = jdict_getv(obj.u.d, key);
        if (v) {
            *out = *v;
            return 0;
        }
        if (key.t == JV_STR && !jinja_method_exists(obj, key.u.s->p)) {
            *out = jv_undef_fmt(c, "'dict object' has no attribute '%s'", key.u.s->p);
            return 0;
        }
    }
    if ((obj.t == JV_LIST || obj.t == JV_STR) && (key.t == JV_INT || key.t == JV_BOOL)) {
        int64_t i = key.t == JV_INT ? key.u.i : key.u.b;
        int64_t n = obj.t == JV_LIST ? (int64_t)obj.u.l->n : (int64_t)jstr_len(obj.u.s);
        if (i < 0) i += n;
        if (i < 0 || i >= n) {
            *out = jv_undef_fmt(c, "%s object has no element %lld", jv_typename(obj),
                                (long long)key.u.i);
            return 0;
        }
        if (obj.t == JV_LIST)
            *out = obj.u.l->v[i];
        else {
            size_t a = cp_off(obj.u.s, (size_t)i), b = cp_off(obj.u.s, (size_t)i + 1);
            *out = jv_strn(&c->ar, obj.u.s->p + a, b - a);
        }
        return 0;
    }
    if (key.t == JV_STR) return get_attr(c, at, obj, key.u.s->p, out);
    if (obj.t == JV_LOOP) return jerr(c, at, "loop object is not subscriptable");
    *out = jv_undef_fmt(c, "'%s object' has no attribute '%s'", jv_typename(obj), jv_typename(key));
    return 0;
}

static int slice_index(jctx *c, const jnode *at, jv v, int64_t *out, bool *given) {
    *given = false;
    if (v.t == JV_NONE || v.t == JV_UNDEF) return 0;
    if (v.t != JV_INT && v.t != JV_BOOL)
        return jerr(c, at, "slice indices must be integers or None");
    *out = v.t == JV_INT ? v.u.i : v.u.b;
    *given = true;
    return 0;
}

static int do_slice(jctx *c, const jnode *at, jv obj, jv jstart, jv jstop, jv jstep, jv *out) {
    if (obj.t == JV_UNDEF) return jerr_undef(c, at, obj);
    if (obj.t != JV_LIST && obj.t != JV_STR) { /* Jinja's getitem: a failed lookup is undefined */
        *out = jv_undef_fmt(c, "'%s object' is not subscriptable", jv_typename(obj));
        return 0;
    }
    int64_t n = obj.t == JV_LIST ? (int64_t)obj.u.l->n : (int64_t)jstr_len(obj.u.s);
    int64_t start = 0, stop = 0, step = 1;
    bool gs, ge, gt;
    if (slice_index(c, at, jstep, &step, &gt) || slice_index(c, at, jstart, &start, &gs) ||
        slice_index(c, at, jstop, &stop, &ge))
        return -1;
    if (step == 0) return jerr(c, at, "slice step cannot be zero");
    if (step == INT64_MIN) step = -INT64_MAX;
    /* Python's PySlice_AdjustIndices */
    if (!gs)
        start = step < 0 ? n - 1 : 0;
    else {
        if (start < 0)
            start = start < -n ? (step < 0 ? -1 : 0) : start + n;
        else if (start >= n)
            start = step < 0 ? n - 1 : n;
    }
    if (!ge)
        stop = step < 0 ? -1 : n;
    else {
        if (stop < 0)
            stop = stop < -n ? (step < 0 ? -1 : 0) : stop + n;
        else if (stop >= n)
            stop = step < 0 ? n - 1 : n;
    }
    size_t *offs = NULL;
    if (obj.t == JV_STR) {
        offs = malloc(((size_t)n + 1) * sizeof *offs);
        if (!offs) abort();
        size_t off = 0;
        for (int64_t i = 0; i <= n; i++) {
            offs[i] = off;
            if (off < obj.u.s->n) {
                uint32_t d;
                int l = utf8_decode(obj.u.s->p + off, obj.u.s->n - off, &d);
                off += l > 0 ? (size_t)l : 1;
            }
        }
    }
    jv res = obj.t == JV_LIST ? jv_list(&c->ar, 0) : jv_none();
    sb_t b = {0};
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
        if (obj.t == JV_LIST)
            jlist_push(&c->ar, res.u.l, obj.u.l->v[i]);
        else
            sb_appendn(&b, obj.u.s->p + offs[i], offs[i + 1] - offs[i]);
        if (step < 0 && i < INT64_MIN - step) break;
        if (step > 0 && i > INT64_MAX - step) break;
    }
    if (obj.t == JV_STR) {
        res = jv_strn(&c->ar, b.data ? b.data : "", b.len);
        sb_free(&b);
        free(offs);
    }
    *out = res;
    return 0;
}

/* ------------------------------------------------------------------ calls */

jv *jcall_arg(jcall *a, size_t i, const char *name) {
    if (i < a->npos) return &a->pos[i];
    for (size_t k = 0; name && k < a->nkw; k++)
        if (!strcmp(a->kwn[k], name)) return &a->kwv[k];
    return NULL;
}

int jeval_args(jctx *c, const jargs *src, jcall *out) {
    size_t np = src->pos.n, nk = src->kwv.n;
    out->npos = np;
    out->nkw = nk;
    out->pos = np ? ja_alloc(&c->ar, np * sizeof(jv)) : NULL;
    out->kwv = nk ? ja_alloc(&c->ar, nk * sizeof(jv)) : NULL;
    out->kwn = src->kwn;
    for (size_t i = 0; i < np; i++)
        if (jeval(c, src->pos.v[i], &out->pos[i])) return -1;
    for (size_t i = 0; i < nk; i++)
        if (jeval(c, src->kwv.v[i], &out->kwv[i])) return -1;
    return 0;
}

static int exec_body(jctx *c, const jnodes *body);

/* Defence in depth behind the parser's and the call-depth limits: refuse to
 * go deeper once this render has used max_stack bytes of C stack. */
static int check_stack(jctx *c, const jnode *at) {
    const char *here = __builtin_frame_address(0);
    size_t used = c->stack_base > here ? (size_t)(c->stack_base - here) : 0;
    if (used > c->max_stack) return jerr(c, at, "template nests too deeply (stack limit reached)");
    return 0;
}

int jcall_macro(jctx *c, const jnode *at, jmacro *m, jcall *a, jv caller, jv *out) {
    const jnode *def = m->def;
    size_t np = def->args.kwv.n;
    bool use_varargs = def->kind == N_MACRO && (def->op & 1),
         use_kwargs = def->kind == N_MACRO && (def->op & 2);
    if (a->npos > np && !use_varargs)
        return jerr(c, at, "macro '%s' takes not more than %zu argument(s)", m->name, np);
    jv varargs = jv_list(&c->ar, 0), kwargs = jv_dict(&c->ar, 0);
    varargs.u.l->tuple = true;
    for (size_t k = np; k < a->npos; k++)
        jlist_push(&c->ar, varargs.u.l, a->pos[k]);
    for (size_t k = 0; k < a->nkw; k++) {
        bool known = false;
        for (size_t i = 0; i < np; i++)
            if (!strcmp(def->args.kwn[i], a->kwn[k])) known = true;
        if (!known && !use_kwargs)
            return jerr(c, at, "macro '%s' takes no keyword argument '%s'", m->name, a->kwn[k]);
        if (!known) jdict_set(&c->ar, kwargs.u.d, a->kwn[k], strlen(a->kwn[k]), a->kwv[k]);
    }
    if (check_stack(c, at)) return -1;
    if (++c->depth > c->max_depth)
        return jerr(c, at, "macro calls nested deeper than %d (runaway recursion?)", c->max_depth);
    jscope *saved = c->scope;
    jscope *sc = scope_new(c, m->closure);
    c->scope = sc;
    int rc = 0;
    for (size_t i = 0; i < np && !rc; i++) {
        const char *pn = def->args.kwn[i];
        jv *v = jcall_arg(a, i, pn);
        jv val;
        if (v)
            val = *v;
        else if (def->args.kwv.v[i])
            rc = jeval(c, def->args.kwv.v[i], &val);
        else
            val = jv_undef_fmt(c, "parameter '%s' was not provided", pn);
        if (!rc) scope_set(c, sc, pn, val);
    }
    if (!rc && caller.t != JV_UNDEF) scope_set(c, sc, "caller", caller);
    if (!rc && use_varargs) scope_set(c, sc, "varargs", varargs);
    if (!rc && use_kwargs) scope_set(c, sc, "kwargs", kwargs);
    sb_t buf = {0};
    sb_t *saved_out = c->out;
    c->out = &buf;
    if (!rc) {
        rc = exec_body(c, &def->body);
        if (rc > 0) rc = jerr(c, at, "'break' or 'continue' outside a loop");
    }
    c->out = saved_out;
    c->scope = saved;
    c->depth--;
    if (rc) {
        sb_free(&buf);
        return -1;
    }
    *out = jv_strn(&c->ar, buf.data ? buf.data : "", buf.len);
    sb_free(&buf);
    return 0;
}

static int call_value(jctx *c, const jnode *at, jv fn, jcall *a, jv caller, jv *out) {
    switch (fn.t) {
    case JV_MACRO: return jcall_macro(c, at, fn.u.m, a, caller, out);
    case JV_FUNC: return jinja_call_builtin(c, at, fn.u.fn, a, out);
    case JV_LOOP: return jinja_call_loop(c, at, fn.u.loop, a, out);
    case JV_UNDEF: return jerr_undef(c, at, fn);
    default: return jerr(c, at, "'%s' object is not callable", jv_typename(fn));
    }
}

/* ------------------------------------------------------------------ operators */

static bool isnum(jv v) { return v.t == JV_INT || v.t == JV_FLOAT || v.t == JV_BOOL; }
static double fnum(jv v) {
    return v.t == JV_FLOAT ? v.u.f : v.t == JV_INT ? (double)v.u.i : (double)v.u.b;
}
static int64_t inum(jv v) { return v.t == JV_INT ? v.u.i : (int64_t)v.u.b; }

static const char *op_name(int op) {
    static const char *names[] = {"",   "+",  "-", "*",  "/", "//", "%",  "**",    "~",
                                  "==", "!=", "<", "<=", ">", ">=", "in", "not in"};
    return op > 0 && op <= OP_NOTIN ? names[op] : "?";
}

static int op_err(jctx *c, const jnode *at, int op, jv a, jv b) {
    if (a.t == JV_UNDEF) return jerr_undef(c, at, a);
    if (b.t == JV_UNDEF) return jerr_undef(c, at, b);
    return jerr(c, at, "unsupported operand type(s) for %s: '%s' and '%s'", op_name(op),
                jv_typename(a), jv_typename(b));
}

static int repeat(jctx *c, const jnode *at, jv seq, int64_t times, jv *out) {
    if (times < 0) times = 0;
    size_t unit = seq.t == JV_STR ? seq.u.s->n : seq.u.l->n * sizeof(jv);
    if (unit && (uint64_t)times > c->max_output / unit)
        return jerr(c, at, "sequence repetition result is too large");
    if (seq.t == JV_STR) {
        size_t n = seq.u.s->n * (size_t)times;
        jstr *s = ja_alloc(&c->ar, sizeof(jstr) + n + 1);
        s->n = n;
        for (int64_t i = 0; i < times; i++)
            memcpy(s->p + (size_t)i * seq.u.s->n, seq.u.s->p, seq.u.s->n);
        out->t = JV_STR;
        out->u.s = s;
    } else {
        *out = jv_list(&c->ar, seq.u.l->n * (size_t)times);
        for (int64_t i = 0; i < times; i++)
            for (size_t k = 0; k < seq.u.l->n; k++)
                jlist_push(&c->ar, out->u.l, seq.u.l->v[k]);
    }
    return 0;
}

static int binop(jctx *c, const jnode *at, int op, jv a, jv b, jv *out) {
    if (op == OP_CONCAT) {
        sb_t s = {0};
        jv_to_str(&s, a);
        jv_to_str(&s, b);
        *out = jv_strn(&c->ar, s.data ? s.data : "", s.len);
        sb_free(&s);
        return 0;
    }
    if (isnum(a) && isnum(b)) {
        bool fl = a.t == JV_FLOAT || b.t == JV_FLOAT;
        int64_t x = fl ? 0 : inum(a), y = fl ? 0 : inum(b), r;
        double fx = fnum(a), fy = fnum(b);
        switch (op) {
        case OP_ADD:
            if (fl)
                *out = jv_float(fx + fy);
            else if (__builtin_add_overflow(x, y, &r))
                return jerr(c, at, "integer overflow");
            else
                *out = jv_int(r);
            return 0;
        case OP_SUB:
            if (fl)
                *out = jv_float(fx - fy);
            else if (__builtin_sub_overflow(x, y, &r))
                return jerr(c, at, "integer overflow");
            else
                *out = jv_int(r);
            return 0;
        case OP_MUL:
            if (fl)
                *out = jv_float(fx * fy);
            else if (__builtin_mul_overflow(x, y, &r))
                return jerr(c, at, "integer overflow");
            else
                *out = jv_int(r);
            return 0;
        case OP_DIV:
            if (fy == 0) return jerr(c, at, "division by zero");
            *out = jv_float(fx / fy);
            return 0;
        case OP_FLOORDIV:
        case OP_MOD:
            if (fl ? fy == 0 : y == 0) return jerr(c, at, "integer division or modulo by zero");
            if (fl) {
                double m = fmod(fx, fy);
                if (m != 0 && ((m < 0) != (fy < 0))) m += fy;
                *out = op == OP_MOD ? jv_float(m) : jv_float(floor((fx - m) / fy + 0.5));
                if (op == OP_FLOORDIV) *out = jv_float(floor(fx / fy));
            } else {
                if (x == INT64_MIN && y == -1) return jerr(c, at, "integer overflow");
                int64_t q = x / y, m = x % y;
                if (m != 0 && ((m < 0) != (y < 0))) {
                    m += y;
                    q -= 1;
                }
                *out = jv_int(op == OP_MOD ? m : q);
            }
            return 0;
        case OP_POW:
            if (fl || y < 0)
                *out = jv_float(pow(fx, fy));
            else {
                int64_t acc = 1, base = x;
                for (int64_t e = y; e > 0; e >>= 1) {
                    if ((e & 1) && __builtin_mul_overflow(acc, base, &acc))
                        return jerr(c, at, "integer overflow");
                    if (e > 1 && __builtin_mul_overflow(base, base, &base))
                        return jerr(c, at, "integer overflow");
                }
                *out = jv_int(acc);
            }
            return 0;
        }
    }
    if (op == OP_ADD && a.t == JV_STR && b.t == JV_STR) {
        /* Markup + str escapes the plain side and stays Markup */
        bool safe = a.safe || b.safe;
        if (safe) {
            a = jv_html_escape(&c->ar, a);
            b = jv_html_escape(&c->ar, b);
        }
        size_t n = a.u.s->n + b.u.s->n;
        jstr *s = ja_alloc(&c->ar, sizeof(jstr) + n + 1);
        s->n = n;
        memcpy(s->p, a.u.s->p, a.u.s->n);
        memcpy(s->p + a.u.s->n, b.u.s->p, b.u.s->n);
        out->t = JV_STR;
        out->safe = safe;
        out->u.s = s;
        return 0;
    }
    if (op == OP_ADD && a.t == JV_LIST && b.t == JV_LIST) {
        *out = jv_list(&c->ar, a.u.l->n + b.u.l->n);
        for (size_t i = 0; i < a.u.l->n; i++)
            jlist_push(&c->ar, out->u.l, a.u.l->v[i]);
        for (size_t i = 0; i < b.u.l->n; i++)
            jlist_push(&c->ar, out->u.l, b.u.l->v[i]);
        out->u.l->tuple = a.u.l->tuple && b.u.l->tuple;
        return 0;
    }
    if (op == OP_MUL && (a.t == JV_STR || a.t == JV_LIST) && (b.t == JV_INT || b.t == JV_BOOL))
        return repeat(c, at, a, inum(b), out);
    if (op == OP_MUL && (b.t == JV_STR || b.t == JV_LIST) && (a.t == JV_INT || a.t == JV_BOOL))
        return repeat(c, at, b, inum(a), out);
    if (op == OP_MOD && a.t == JV_STR) return jinja_percent_format(c, at, a, b, out);
    return op_err(c, at, op, a, b);
}

int jinja_contains(jctx *c, const jnode *at, jv hay, jv needle, bool *out) {
    switch (hay.t) {
    case JV_STR:
        if (needle.t != JV_STR)
            return jerr(c, at, "'in <string>' requires string as left operand, not %s",
                        jv_typename(needle));
        *out = needle.u.s->n == 0 ||
               memmem(hay.u.s->p, hay.u.s->n, needle.u.s->p, needle.u.s->n) != NULL;
        return 0;
    case JV_LIST:
        *out = false;
        for (size_t i = 0; i < hay.u.l->n; i++)
            if (jv_eq(hay.u.l->v[i], needle)) *out = true;
        return 0;
    case JV_DICT: *out = jdict_getv(hay.u.d, needle) != NULL; return 0;
    case JV_UNDEF: *out = false; return 0;
    default: return jerr(c, at, "argument of type '%s' is not iterable", jv_typename(hay));
    }
}

static int compare(jctx *c, const jnode *at, int op, jv a, jv b, bool *out) {
    switch (op) {
    case OP_EQ: *out = jv_eq(a, b); return 0;
    case OP_NE: *out = !jv_eq(a, b); return 0;
    case OP_IN: return jinja_contains(c, at, b, a, out);
    case OP_NOTIN:
        if (jinja_contains(c, at, b, a, out)) return -1;
        *out = !*out;
        return 0;
    default: break;
    }
    int r = jv_cmp(a, b);
    if (r == -2) {
        if (a.t == JV_UNDEF) return jerr_undef(c, at, a);
        if (b.t == JV_UNDEF) return jerr_undef(c, at, b);
        return jerr(c, at, "'%s' not supported between instances of '%s' and '%s'", op_name(op),
                    jv_typename(a), jv_typename(b));
    }
    *out = op == OP_LT ? r < 0 : op == OP_LE ? r <= 0 : op == OP_GT ? r > 0 : r >= 0;
    return 0;
}

/* ------------------------------------------------------------------ expressions */

int jeval(jctx *c, const jnode *n, jv *out) {
    switch ((jnode_kind)n->kind) {
    case N_LIT: *out = n->lit; return 0;
    case N_NAME: {
        jv *v = scope_find(c->scope, n->name);
        if (v)
            *out = *v;
        else if (jinja_global_exists(n->name)) {
            jfunc *f = ja_alloc(&c->ar, sizeof *f);
            f->name = n->name;
            f->self = jv_undef(NULL);
            out->t = JV_FUNC;
            out->u.fn = f;
        } else
            *out = jv_undef_fmt(c, "'%s' is undefined", n->name);
        return 0;
    }
    case N_ATTR: {
        jv obj;
        if (jeval(c, n->a, &obj)) return -1;
        return get_attr(c, n, obj, n->name, out);
    }
    case N_ITEM: {
        jv obj, key;
        if (jeval(c, n->a, &obj) || jeval(c, n->b, &key)) return -1;
        return get_item(c, n, obj, key, out);
    }
    case N_SLICE: {
        jv obj, s = jv_none(), e = jv_none(), st = jv_none();
        if (jeval(c, n->a, &obj)) return -1;
        if (n->b && jeval(c, n->b, &s)) return -1;
        if (n->c && jeval(c, n->c, &e)) return -1;
        if (n->body.n && jeval(c, n->body.v[0], &st)) return -1;
        return do_slice(c, n, obj, s, e, st, out);
    }
    case N_CALL: {
        jv fn;
        jcall a;
        if (jeval(c, n->a, &fn) || jeval_args(c, &n->args, &a)) return -1;
        return call_value(c, n, fn, &a, jv_undef(NULL), out);
    }
    case N_FILTER: {
        jv v;
        jcall a;
        if (jeval(c, n->a, &v) || jeval_args(c, &n->args, &a)) return -1;
        return jinja_apply_filter(c, n, n->name, v, &a, out);
    }
    case N_TEST: {
        jv v;
        jcall a;
        bool r;
        if (jeval(c, n->a, &v) || jeval_args(c, &n->args, &a)) return -1;
        if (jinja_apply_test(c, n, n->name, v, &a, &r)) return -1;
        *out = jv_bool(n->op ? !r : r);
        return 0;
    }
    case N_NEG:
    case N_POS: {
        jv v;
        if (jeval(c, n->a, &v)) return -1;
        if (v.t == JV_FLOAT)
            *out = jv_float(n->kind == N_NEG ? -v.u.f : v.u.f);
        else if (v.t == JV_INT || v.t == JV_BOOL) {
            int64_t i = inum(v);
            if (n->kind == N_NEG && i == INT64_MIN) return jerr(c, n, "integer overflow");
            *out = jv_int(n->kind == N_NEG ? -i : i);
        } else if (v.t == JV_UNDEF)
            return jerr_undef(c, n, v);
        else
            return jerr(c, n, "bad operand type for unary %c: '%s'", n->kind == N_NEG ? '-' : '+',
                        jv_typename(v));
        return 0;
    }
    case N_NOT: {
        jv v;
        if (jeval(c, n->a, &v)) return -1;
        *out = jv_bool(!jv_truthy(v));
        return 0;
    }
    case N_AND:
    case N_OR: {
        jv l;
        if (jeval(c, n->a, &l)) return -1;
        bool t = jv_truthy(l);
        if (n->kind == N_AND ? !t : t) {
            *out = l;
            return 0;
        }
        return jeval(c, n->b, out);
    }
    case N_BINOP: {
        jv l, r;
        if (jeval(c, n->a, &l) || jeval(c, n->b, &r)) return -1;
        if (binop(c, n, n->op, l, r, out)) return -1;
        if (out->t == JV_STR && out->u.s->n > c->max_output)
            return jerr(c, n, "string result exceeds %zu bytes", c->max_output);
        return 0;
    }
    case N_CMP: {
        jv l, r;
        bool b;
        if (jeval(c, n->a, &l) || jeval(c, n->b, &r) || compare(c, n, n->op, l, r, &b)) return -1;
        *out = jv_bool(b);
        return 0;
    }
    case N_COND: {
        jv cond;
        if (jeval(c, n->a, &cond)) return -1;
        if (jv_truthy(cond)) return jeval(c, n->b, out);
        if (n->c) return jeval(c, n->c, out);
        *out = jv_undef(NULL);
        return 0;
    }
    case N_LISTLIT:
    case N_TUPLELIT: {
        *out = jv_list(&c->ar, n->body.n);
        out->u.l->tuple = n->kind == N_TUPLELIT;
        for (size_t i = 0; i < n->body.n; i++) {
            jv x;
            if (jeval(c, n->body.v[i], &x)) return -1;
            jlist_push(&c->ar, out->u.l, x);
        }
        return 0;
    }
    case N_DICTLIT: {
        *out = jv_dict(&c->ar, n->body.n);
        for (size_t i = 0; i < n->body.n; i++) {
            jv k, v;
            if (jeval(c, n->body.v[i], &k) || jeval(c, n->orelse.v[i], &v)) return -1;
            if (k.t == JV_LIST || k.t == JV_DICT || k.t == JV_UNDEF)
                return jerr(c, n->body.v[i], "unhashable dict key of type '%s'", jv_typename(k));
            jdict_setv(&c->ar, out->u.d, k, v);
        }
        return 0;
    }
    default: return jerr(c, n, "statement used as an expression");
    }
}

/* ------------------------------------------------------------------ statements */

static int emit(jctx *c, const jnode *at, jv v) {
    jv_to_str(c->out, v);
    return check_limits(c, at);
}

int jinja_iter_list(jctx *c, const jnode *at, jv v, jlist **out) {
    switch (v.t) {
    case JV_LIST: *out = v.u.l; return 0;
    case JV_UNDEF: *out = jv_list(&c->ar, 0).u.l; return 0;
    case JV_DICT: {
        jlist *l = jv_list(&c->ar, v.u.d->n).u.l;
        for (size_t i = 0; i < v.u.d->n; i++) {
            jlist_push(&c->ar, l, v.u.d->k[i]);
        }
        *out = l;
        return 0;
    }
    case JV_STR: {
        jlist *l = jv_list(&c->ar, 0).u.l;
        for (size_t off = 0; off < v.u.s->n;) {
            uint32_t d;
            int len = utf8_decode(v.u.s->p + off, v.u.s->n - off, &d);
            if (len <= 0) len = 1;
            jlist_push(&c->ar, l, jv_strn(&c->ar, v.u.s->p + off, (size_t)len));
            off += (size_t)len;
        }
        *out = l;
        return 0;
    }
    default: return jerr(c, at, "'%s' object is not iterable", jv_typename(v));
    }
}

static int unpack(jctx *c, const jnode *at, const char *const *targets, size_t nt, jv v) {
    if (nt == 1) {
        scope_set(c, c->scope, targets[0], v);
        return 0;
    }
    jlist *l;
    if (jinja_iter_list(c, at, v, &l)) return -1;
    if (l->n != nt) return jerr(c, at, "cannot unpack %zu value(s) into %zu variable(s)", l->n, nt);
    for (size_t i = 0; i < nt; i++)
        scope_set(c, c->scope, targets[i], l->v[i]);
    return 0;
}

/* Runs for-loop N over SEQV at recursion DEPTH (1 = the statement itself,
 * more for loop(...) calls in a recursive loop), in a scope below OUTER. */
static int run_for(jctx *c, const jnode *n, jv seqv, int depth, jscope *outer) {
    jlist *seq;
    if (jinja_iter_list(c, n->a, seqv, &seq)) return -1;
    jscope *saved = c->scope;
    c->scope = scope_new(c, outer);
    int rc = 0;
    if (n->b) { /* {% for x in xs if cond %}: filter before looping */
        jlist *kept = jv_list(&c->ar, 0).u.l;
        for (size_t i = 0; i < seq->n && !rc; i++) {
            jv cond;
            if (++c->iters > c->max_iters)
                rc = jerr(c, n, "more than %llu loop iterations", (unsigned long long)c->max_iters);
            else if (!(rc = unpack(c, n, n->targets, n->ntargets, seq->v[i])) &&
                     !(rc = jeval(c, n->b, &cond)) && jv_truthy(cond))
                jlist_push(&c->ar, kept, seq->v[i]);
        }
        seq = kept;
    }
    jloop *lp = ja_alloc(&c->ar, sizeof *lp);
    lp->items = seq;
    lp->depth = depth;
    lp->for_node = n;
    lp->outer = outer;
    jv lv = {.t = JV_LOOP};
    lv.u.loop = lp;
    size_t count = seq->n;
    for (size_t i = 0; i < count && !rc; i++) {
        if (++c->iters > c->max_iters) {
            rc = jerr(c, n, "more than %llu loop iterations", (unsigned long long)c->max_iters);
            break;
        }
        if ((rc = check_limits(c, n))) break;
        lp->i = i;
        c->scope->vars->n = 0; /* Jinja: each iteration starts from a fresh frame */
        scope_set(c, c->scope, "loop", lv);
        if ((rc = unpack(c, n, n->targets, n->ntargets, seq->v[i]))) break;
        rc = exec_body(c, &n->body);
        if (rc == 1) { /* break */
            rc = 0;
            break;
        }
        if (rc == 2) rc = 0; /* continue */
    }
    if (!rc && count == 0) rc = exec_body(c, &n->orelse);
    c->scope = saved;
    return rc;
}

static int exec_for(jctx *c, const jnode *n) {
    jv seqv;
    if (jeval(c, n->a, &seqv)) return -1;
    return run_for(c, n, seqv, 1, c->scope);
}

/* loop(items) inside a `recursive` for loop: renders the loop body over
 * ITEMS one level deeper and returns the text. */
int jinja_call_loop(jctx *c, const jnode *at, jloop *l, jcall *a, jv *out) {
    if (!l->for_node || !l->for_node->op)
        return jerr(c, at, "loop() can only be called in a loop marked 'recursive'");
    if (a->npos != 1 || a->nkw) return jerr(c, at, "loop() takes exactly one argument");
    if (check_stack(c, at)) return -1;
    if (++c->depth > c->max_depth)
        return jerr(c, at, "recursive loop nested deeper than %d", c->max_depth);
    sb_t buf = {0};
    sb_t *saved = c->out;
    c->out = &buf;
    int rc = run_for(c, l->for_node, a->pos[0], l->depth + 1, l->outer);
    c->out = saved;
    c->depth--;
    if (rc > 0) rc = jerr(c, at, "'break' or 'continue' outside a loop");
    if (!rc) *out = jv_strn(&c->ar, buf.data ? buf.data : "", buf.len);
    sb_free(&buf);
    return rc;
}

static int capture(jctx *c, const jnode *at, const jnodes *body, jv *out) {
    sb_t buf = {0};
    sb_t *saved = c->out;
    c->out = &buf;
    int rc = exec_body(c, body);
    c->out = saved;
    if (rc > 0) rc = jerr(c, at, "'break' or 'continue' outside a loop");
    if (!rc) *out = jv_strn(&c->ar, buf.data ? buf.data : "", buf.len);
    sb_free(&buf);
    return rc;
}

static int apply_filters(jctx *c, const jnodes *filters, jv v, jv *out) {
    for (size_t i = 0; i < filters->n; i++) {
        const jnode *f = filters->v[i];
        jcall a;
        if (jeval_args(c, &f->args, &a) || jinja_apply_filter(c, f, f->name, v, &a, &v)) return -1;
    }
    *out = v;
    return 0;
}

static int exec_stmt(jctx *c, const jnode *n) {
    switch ((jnode_kind)n->kind) {
    case N_TEXT: return emit(c, n, n->lit);
    case N_OUTPUT: {
        jv v;
        if (jeval(c, n->a, &v)) return -1;
        return emit(c, n, v);
    }
    case N_IF: {
        jv cond;
        if (jeval(c, n->a, &cond)) return -1;
        return exec_body(c, jv_truthy(cond) ? &n->body : &n->orelse);
    }
    case N_FOR: return exec_for(c, n);
    case N_SET: {
        jv v;
        if (jeval(c, n->a, &v)) return -1;
        if (n->op) { /* ns.attr = v */
            jv *ns = scope_find(c->scope, n->name);
            if (!ns) return jerr(c, n, "'%s' is undefined", n->name);
            if (ns->t != JV_DICT || !ns->u.d->ns)
                return jerr(c, n, "cannot assign attribute on non-namespace object '%s'", n->name);
            jdict_set(&c->ar, ns->u.d, n->targets[0], strlen(n->targets[0]), v);
            return 0;
        }
        return unpack(c, n, n->targets, n->ntargets, v);
    }
    case N_SETBLOCK: {
        jv v;
        if (capture(c, n, &n->body, &v) || apply_filters(c, &n->filters, v, &v)) return -1;
        scope_set(c, c->scope, n->targets[0], v);
        return 0;
    }
    case N_MACRO: {
        jmacro *m = ja_alloc(&c->ar, sizeof *m);
        m->def = n;
        m->closure = c->scope;
        m->name = n->name;
        jv v = {.t = JV_MACRO};
        v.u.m = m;
        scope_set(c, c->scope, n->name, v);
        return 0;
    }
    case N_CALLBLOCK: {
        jmacro *cm = ja_alloc(&c->ar, sizeof *cm);
        cm->def = n;
        cm->closure = c->scope;
        cm->name = "caller";
        jv caller = {.t = JV_MACRO};
        caller.u.m = cm;
        const jnode *call = n->a;
        jv fn, res;
        jcall a;
        if (jeval(c, call->a, &fn) || jeval_args(c, &call->args, &a)) return -1;
        if (fn.t != JV_MACRO)
            return jerr(c, call, "{%% call %%} needs a macro, got %s", jv_typename(fn));
        if (call_value(c, call, fn, &a, caller, &res)) return -1;
        return emit(c, n, res);
    }
    case N_FILTERBLOCK: {
        jv v;
        if (capture(c, n, &n->body, &v) || apply_filters(c, &n->filters, v, &v)) return -1;
        return emit(c, n, v);
    }
    case N_BREAK: return 1;
    case N_CONTINUE: return 2;
    case N_BODY: return exec_body(c, &n->body);
    default: return jerr(c, n, "expression used as a statement");
    }
}

/* Runs statements; returns 0, 1 (break), 2 (continue) or -1 (error). */
static int exec_body(jctx *c, const jnodes *body) {
    if (body->n && check_stack(c, body->v[0])) return -1;
    for (size_t i = 0; i < body->n; i++) {
        int rc = exec_stmt(c, body->v[i]);
        if (rc) return rc;
    }
    return 0;
}

/* ------------------------------------------------------------------ entry points */

jinja_template *jinja_parse(const char *src, size_t n, cf_err *err) {
    jinja_template *t = calloc(1, sizeof *t);
    if (!t) abort();
    if (jinja_parse_into(t, src, n, err)) {
        jinja_free(t);
        return NULL;
    }
    return t;
}

void jinja_free(jinja_template *t) {
    if (!t) return;
    ja_free(&t->ar);
    free(t);
}

int jinja_render(const jinja_template *tpl, json_t *vars, const jinja_opts *opts, sb_t *out,
                 cf_err *err) {
    jinja_opts o = opts ? *opts : (jinja_opts){0};
    jctx c = {.err = err, .out = out};
    c.max_depth = o.max_depth > 0 ? o.max_depth : 100;
    c.max_iters = o.max_iterations ? o.max_iterations : 1000000;
    c.max_output = out->len + (o.max_output ? o.max_output : (size_t)64 << 20);
    c.max_memory = o.max_memory ? o.max_memory : (size_t)512 << 20;
    c.max_stack = o.max_stack ? o.max_stack : (size_t)1 << 20;
    c.stack_base = __builtin_frame_address(0);
    c.now = o.now_unix ? (time_t)o.now_unix : time(NULL);
    c.scope = scope_new(&c, NULL);
    if (vars && json_is_object(vars)) {
        for (void *it = json_object_iter(vars); it; it = json_object_iter_next(vars, it)) {
            const char *k = json_object_iter_key(it);
            size_t klen = json_object_iter_key_len(it);
            json_t *v = json_object_iter_value(it);
            bool too_deep;
            jdict_set(&c.ar, c.scope->vars, k, klen, jv_from_json(&c.ar, v, &too_deep));
            if (too_deep) {
                ja_free(&c.ar);
                return cf_seterr(err, CF_EINVAL,
                                 "template variable '%s' is nested deeper than %d levels", k,
                                 JV_MAX_JSON_DEPTH);
            }
        }
    } else if (vars && !json_is_null(vars)) {
        ja_free(&c.ar);
        return cf_seterr(err, CF_EINVAL, "template variables must be a JSON object");
    }
    int rc = exec_body(&c, &tpl->body);
    if (rc > 0) rc = jerr(&c, NULL, "'break' or 'continue' outside a loop");
    ja_free(&c.ar);
    return rc ? (err && err->code ? err->code : CF_EINVAL) : 0;
}
