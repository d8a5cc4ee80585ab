/*
 * jinja_parse — lexer and recursive-descent parser for Jinja2 templates.
 *
 * Lexing follows Jinja2's lexer with Hugging Face's settings:
 *   - newlines are normalised to \n and one trailing newline is dropped
 *     (keep_trailing_newline off);
 *   - `{%-`, `{{-`, `{#-` strip all whitespace before the tag, `-%}`, `-}}`,
 *     `-#}` all whitespace after it;
 *   - trim_blocks drops the first newline after a block or comment tag;
 *   - lstrip_blocks drops spaces and tabs between the start of a line and a
 *     block or comment tag (`{%+` opts out, as in Jinja);
 *   - while brackets are open inside a tag, `}}` and `%}` do not end it.
 * The whole template becomes one token array (text runs and the tokens of
 * each tag), which the parser walks. Operator precedence copies Jinja's
 * parser: conditional < or < and < not < comparisons < + - < ~ < * / // % <
 * ** < unary minus < postfix (. [] ()) and filters/tests.
 *
 * The tree is allocated in the template's arena. Nesting of the source is
 * bounded (JP_MAX_NEST) so deeply nested input gets an error rather than a
 * stack overflow.
 */
#include "base/utf8.h"
#include "engine/jinja_internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JP_MAX_NEST 200
#define JP_MAX_DEPTH 300 /* height of one expression tree: chains like a|f|f|f... or 1+1+1... */

typedef enum {
    T_EOF,
    T_TEXT,
    T_VBEGIN,
    T_VEND,
    T_BBEGIN,
    T_BEND,
    T_NAME,
    T_STR,
    T_INT,
    T_FLOAT,
    T_OP
} tok_type;

typedef struct {
    tok_type t;
    int line, col;
    const char *p; /* name / operator / text (arena, NUL-terminated) */
    size_t n;
    int64_t i;
    double f;
} tok;

typedef struct {
    jarena *ar;
    cf_err *err;
    const char *src; /* normalised source */
    size_t n;
    tok *toks;
    size_t ntok, cap;
    size_t pos; /* parser position */
    int nest;
} jp;

static int jp_fail(jp *p, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int jp_fail(jp *p, int line, int col, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cf_seterr(p->err, CF_EFORMAT, "line %d, column %d: %s", line, col, msg);
}

/* ------------------------------------------------------------------ lexer */

static void push_tok(jp *p, tok t) {
    if (p->ntok == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 256;
        tok *nt = realloc(p->toks, cap * sizeof *nt);
        if (!nt) abort();
        p->toks = nt;
        p->cap = cap;
    }
    p->toks[p->ntok++] = t;
}

/* Line and column (1-based, column in bytes) of offset OFF. */
typedef struct {
    const char *src;
    size_t off;
    int line, col;
} lc_cursor;

static void lc_at(lc_cursor *c, size_t off, int *line, int *col) {
    while (c->off < off) {
        if (c->src[c->off] == '\n') {
            c->line++;
            c->col = 1;
        } else
            c->col++;
        c->off++;
    }
    *line = c->line;
    *col = c->col;
}

/* Decodes a Python string literal body (unicode-escape semantics). */
static int lex_string(jp *p, const char *s, size_t n, char q, size_t *used, tok *t) {
    sb_t b = {0};
    size_t i = 1;
    for (; i < n && s[i] != q; i++) {
        char c = s[i];
        if (c != '\\') {
            sb_putc(&b, c);
            continue;
        }
        if (++i >= n) break;
        c = s[i];
        switch (c) {
        case 'n': sb_putc(&b, '\n'); break;
        case 't': sb_putc(&b, '\t'); break;
        case 'r': sb_putc(&b, '\r'); break;
        case '\\': sb_putc(&b, '\\'); break;
        case '\'': sb_putc(&b, '\''); break;
        case '"': sb_putc(&b, '"'); break;
        case 'a': sb_putc(&b, '\a'); break;
        case 'b': sb_putc(&b, '\b'); break;
        case 'f': sb_putc(&b, '\f'); break;
        case 'v': sb_putc(&b, '\v'); break;
        case '\n': break;
        case 'x':
        case 'u':
        case 'U': {
            int nd = c == 'x' ? 2 : c == 'u' ? 4 : 8;
            uint32_t cp = 0;
            int k;
            for (k = 0; k < nd && i + 1 < n && isxdigit((unsigned char)s[i + 1]); k++) {
                char h = s[++i];
                cp = cp * 16 +
                     (uint32_t)(isdigit((unsigned char)h) ? h - '0' : (tolower(h) - 'a' + 10));
            }
            char enc[4];
            int len = k == nd ? utf8_encode(cp, enc) : 0;
            if (!len) {
                sb_free(&b);
                return -1;
            }
            sb_appendn(&b, enc, (size_t)len);
            break;
        }
        default:
            if (c >= '0' && c <= '7') {
                uint32_t cp = (uint32_t)(c - '0');
                for (int k = 0; k < 2 && i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '7'; k++)
                    cp = cp * 8 + (uint32_t)(s[++i] - '0');
                char enc[4];
                int len = utf8_encode(cp, enc);
                sb_appendn(&b, enc, (size_t)len);
            } else {
                sb_putc(&b, '\\');
                sb_putc(&b, c);
            }
        }
    }
    if (i >= n) {
        sb_free(&b);
        return -2;
    }
    *used = i + 1;
    t->t = T_STR;
    t->p = ja_strndup(p->ar, b.data ? b.data : "", b.len);
    t->n = b.len;
    sb_free(&b);
    return 0;
}

static bool is_name_start(char c) { return isalpha((unsigned char)c) || c == '_'; }
static bool is_name_char(char c) { return isalnum((unsigned char)c) || c == '_'; }

/* Tokenises the inside of a {{ }} or {% %} tag starting at *I. Stops after
 * the closing delimiter; sets *strip_after when it was `-}}`/`-%}` and
 * *keep_after for `+%}`. */
static int lex_tag(jp *p, lc_cursor *lc, size_t *pi, bool block, bool *strip_after,
                   bool *keep_after, int open_line, int open_col) {
    const char *s = p->src;
    size_t n = p->n, i = *pi;
    int balance = 0;
    char close = block ? '%' : '}';
    for (;;) {
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
            i++;
        if (i >= n)
            return jp_fail(p, open_line, open_col, "unterminated %s tag (no closing '%s')",
                           block ? "block" : "variable", block ? "%}" : "}}");
        tok t = {0};
        lc_at(lc, i, &t.line, &t.col);
        if (balance == 0) {
            size_t j = i;
            bool minus = false, plus = false;
            if (s[j] == '-' || s[j] == '+') {
                minus = s[j] == '-';
                plus = s[j] == '+';
                j++;
            }
            if (j + 1 < n && s[j] == close && s[j + 1] == '}') {
                *strip_after = minus;
                *keep_after = plus;
                t.t = block ? T_BEND : T_VEND;
                push_tok(p, t);
                *pi = j + 2;
                return 0;
            }
        }
        char c = s[i];
        if (is_name_start(c)) {
            size_t j = i;
            while (j < n && is_name_char(s[j]))
                j++;
            t.t = T_NAME;
            t.p = ja_strndup(p->ar, s + i, j - i);
            t.n = j - i;
            i = j;
        } else if (isdigit((unsigned char)c)) {
            size_t j = i;
            bool isf = false;
            while (j < n && (isdigit((unsigned char)s[j]) || s[j] == '_'))
                j++;
            if (j + 1 < n && s[j] == '.' && isdigit((unsigned char)s[j + 1])) {
                isf = true;
                j++;
                while (j < n && (isdigit((unsigned char)s[j]) || s[j] == '_'))
                    j++;
            }
            if (j < n && (s[j] == 'e' || s[j] == 'E')) {
                size_t k = j + 1;
                if (k < n && (s[k] == '+' || s[k] == '-')) k++;
                if (k < n && isdigit((unsigned char)s[k])) {
                    isf = true;
                    j = k;
                    while (j < n && isdigit((unsigned char)s[j]))
                        j++;
                }
            }
            char buf[64];
            size_t bl = 0;
            for (size_t k = i; k < j && bl < sizeof buf - 1; k++)
                if (s[k] != '_') buf[bl++] = s[k];
            buf[bl] = 0;
            if (isf) {
                t.t = T_FLOAT;
                t.f = strtod(buf, NULL);
            } else {
                t.t = T_INT;
                errno = 0;
                t.i = strtoll(buf, NULL, 10);
                if (errno) return jp_fail(p, t.line, t.col, "integer literal too large");
            }
            i = j;
        } else if (c == '\'' || c == '"') {
            size_t used;
            int rc = lex_string(p, s + i, n - i, c, &used, &t);
            if (rc == -2) return jp_fail(p, t.line, t.col, "unterminated string literal");
            if (rc) return jp_fail(p, t.line, t.col, "bad escape in string literal");
            i += used;
        } else {
            static const char *ops2[] = {"//", "**", "==", "!=", "<=", ">=", NULL};
            size_t len = 0;
            for (int k = 0; ops2[k]; k++)
                if (i + 1 < n && s[i] == ops2[k][0] && s[i + 1] == ops2[k][1]) len = 2;
            if (!len) {
                if (!strchr("+-*/%~<>=()[]{},.:|", c) || c == 0)
                    return jp_fail(p, t.line, t.col, "unexpected character '%c' in tag", c);
                len = 1;
                if (c == '(' || c == '[' || c == '{') balance++;
                if ((c == ')' || c == ']' || c == '}') && balance > 0) balance--;
            }
            t.t = T_OP;
            t.p = ja_strndup(p->ar, s + i, len);
            t.n = len;
            i += len;
        }
        push_tok(p, t);
    }
}

static bool only_blank(const char *s, size_t a, size_t b) {
    for (size_t i = a; i < b; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\f' && s[i] != '\v') return false;
    return true;
}

/* Matches `WS* name WS* [-+]? %}` at S[*I]; on success *I moves past it and
 * *MOD gets the modifier before %} (0, '-' or '+'). */
static bool match_word_tag(const char *s, size_t n, size_t *pi, const char *name, char *mod) {
    size_t i = *pi, len = strlen(name);
    while (i < n && isspace((unsigned char)s[i]))
        i++;
    if (i + len > n || memcmp(s + i, name, len) || (i + len < n && is_name_char(s[i + len])))
        return false;
    i += len;
    while (i < n && isspace((unsigned char)s[i]))
        i++;
    *mod = 0;
    if (i < n && (s[i] == '-' || s[i] == '+')) *mod = s[i++];
    if (i + 1 >= n || s[i] != '%' || s[i + 1] != '}') return false;
    *pi = i + 2;
    return true;
}

/* {% raw %}...{% endraw %}: the body is text, not template. *I is just
 * past `{%` and its modifier. Returns 1 for a raw block, 0 when the tag is
 * something else, -1 (error set) when endraw is missing. */
static int match_raw(jp *p, lc_cursor *lc, size_t *pi, int oline, int ocol, bool *strip_next,
                     bool *trim_next) {
    const char *s = p->src;
    size_t n = p->n, i = *pi;
    char mod;
    if (!match_word_tag(s, n, &i, "raw", &mod) || mod == '+') return 0; /* Jinja: no `raw +%}` */
    size_t body = i;
    if (mod == '-')
        while (body < n && isspace((unsigned char)s[body]))
            body++;
    for (size_t k = body; k + 1 < n; k++) {
        if (s[k] != '{' || s[k + 1] != '%') continue;
        size_t j = k + 2;
        char open_mod = 0;
        if (j < n && (s[j] == '-' || s[j] == '+')) open_mod = s[j++];
        char end_mod;
        if (!match_word_tag(s, n, &j, "endraw", &end_mod)) continue;
        size_t bend = k;
        if (open_mod == '-') {
            while (bend > body && isspace((unsigned char)s[bend - 1]))
                bend--;
        } else if (open_mod != '+') { /* lstrip_blocks applies to endraw too */
            size_t lpos = bend;
            while (lpos > body && s[lpos - 1] != '\n')
                lpos--;
            bool starts_line = lpos > body || (mod == '-' && body > i && s[body - 1] == '\n');
            if (starts_line && only_blank(s, lpos, bend)) bend = lpos;
        }
        if (bend > body) {
            tok t = {.t = T_TEXT};
            lc_at(lc, body, &t.line, &t.col);
            t.p = ja_strndup(p->ar, s + body, bend - body);
            t.n = bend - body;
            push_tok(p, t);
        }
        *strip_next = end_mod == '-';
        *trim_next = end_mod == 0;
        *pi = j;
        return 1;
    }
    jp_fail(p, oline, ocol, "unterminated raw block (no '{%% endraw %%}')");
    return -1;
}

static int lex(jp *p) {
    const char *s = p->src;
    size_t n = p->n, i = 0;
    lc_cursor lc = {s, 0, 1, 1};
    bool strip_next = false, trim_next = false, line_starting = true;
    while (i <= n) {
        /* text run up to the next tag opener */
        size_t start = i, j = i;
        while (j + 1 < n &&
               !(s[j] == '{' && (s[j + 1] == '{' || s[j + 1] == '%' || s[j + 1] == '#')))
            j++;
        if (j + 1 >= n) j = n;
        size_t tstart = start, tend = j;
        if (strip_next)
            while (tstart < tend && isspace((unsigned char)s[tstart]))
                tstart++;
        else if (trim_next && tstart < tend && s[tstart] == '\n')
            tstart++;
        if (j < n) {
            char kind = s[j + 1];
            char mod = j + 2 < n ? s[j + 2] : 0;
            if (mod == '-') {
                while (tend > tstart && isspace((unsigned char)s[tend - 1]))
                    tend--;
            } else if (kind != '{' && mod != '+') {
                size_t lpos = tend;
                while (lpos > tstart && s[lpos - 1] != '\n')
                    lpos--;
                bool has_nl = lpos > tstart;
                if ((has_nl || line_starting) && only_blank(s, lpos, tend)) tend = lpos;
            }
        }
        if (tend > tstart) {
            tok t = {.t = T_TEXT};
            lc_at(&lc, tstart, &t.line, &t.col);
            t.p = ja_strndup(p->ar, s + tstart, tend - tstart);
            t.n = tend - tstart;
            push_tok(p, t);
        }
        if (j >= n) break;
        char kind = s[j + 1];
        tok t = {0};
        lc_at(&lc, j, &t.line, &t.col);
        int oline = t.line, ocol = t.col, raw;
        i = j + 2;
        if (i < n && (s[i] == '-' || s[i] == '+')) i++;
        strip_next = trim_next = false;
        if (kind == '#') {
            const char *e = NULL;
            for (size_t k = i; k + 1 < n; k++)
                if (s[k] == '#' && s[k + 1] == '}') {
                    e = s + k;
                    break;
                }
            if (!e) return jp_fail(p, oline, ocol, "unterminated comment (no closing '#}')");
            size_t k = (size_t)(e - s);
            if (k > i && s[k - 1] == '-')
                strip_next = true;
            else if (!(k > i && s[k - 1] == '+'))
                trim_next = true;
            i = k + 2;
        } else if (kind == '%' &&
                   (raw = match_raw(p, &lc, &i, oline, ocol, &strip_next, &trim_next)) != 0) {
            if (raw < 0) return -1;
        } else {
            bool block = kind == '%', sa = false, ka = false;
            t.t = block ? T_BBEGIN : T_VBEGIN;
            push_tok(p, t);
            if (lex_tag(p, &lc, &i, block, &sa, &ka, oline, ocol)) return -1;
            strip_next = sa;
            trim_next = block && !sa && !ka;
        }
        /* Jinja's line_starting: did the tag's end consume a newline? */
        line_starting = false;
        if (trim_next && i < n && s[i] == '\n') line_starting = true;
        if (strip_next) {
            size_t k = i;
            while (k < n && isspace((unsigned char)s[k]))
                k++;
            line_starting = k > i && s[k - 1] == '\n';
        }
    }
    tok e = {.t = T_EOF};
    lc_at(&lc, n, &e.line, &e.col);
    push_tok(p, e);
    return 0;
}

/* ------------------------------------------------------------------ parser helpers */

static tok *peek(jp *p) { return &p->toks[p->pos]; }
static tok *peek2(jp *p) { return &p->toks[p->pos + (p->toks[p->pos].t == T_EOF ? 0 : 1)]; }
static tok *next(jp *p) {
    tok *t = &p->toks[p->pos];
    if (t->t != T_EOF) p->pos++;
    return t;
}
static bool is_op(const tok *t, const char *op) { return t->t == T_OP && !strcmp(t->p, op); }
static bool is_name(const tok *t, const char *nm) { return t->t == T_NAME && !strcmp(t->p, nm); }

static const char *tok_desc(const tok *t, char *buf, size_t n) {
    switch (t->t) {
    case T_EOF: return "end of template";
    case T_TEXT: return "template text";
    case T_VBEGIN: return "'{{'";
    case T_VEND: return "'}}'";
    case T_BBEGIN: return "'{%'";
    case T_BEND: return "'%}'";
    case T_STR: return "a string";
    case T_INT:
    case T_FLOAT: return "a number";
    default: snprintf(buf, n, "'%s'", t->p); return buf;
    }
}

static int expect_fail(jp *p, const char *what) {
    char b[64];
    tok *t = peek(p);
    return jp_fail(p, t->line, t->col, "expected %s, got %s", what, tok_desc(t, b, sizeof b));
}

static int expect_op(jp *p, const char *op) {
    if (!is_op(peek(p), op)) {
        char w[16];
        snprintf(w, sizeof w, "'%s'", op);
        return expect_fail(p, w);
    }
    next(p);
    return 0;
}

static int expect_bend(jp *p) {
    if (peek(p)->t != T_BEND) return expect_fail(p, "'%}'");
    next(p);
    return 0;
}

static jnode *mk(jp *p, jnode_kind k, const tok *at) {
    jnode *nd = ja_alloc(p->ar, sizeof *nd);
    nd->kind = (uint8_t)k;
    nd->line = at->line;
    nd->col = at->col;
    return nd;
}

static int max_depth(const jnodes *l, int d) {
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i] && l->v[i]->depth > d) d = l->v[i]->depth;
    return d;
}

/* Sets ND's height from its children and refuses trees the evaluator could
 * not walk without risking its stack. Returns ND, or NULL with the error set. */
static jnode *deep(jp *p, jnode *nd) {
    if (!nd) return NULL;
    int d = 0;
    if (nd->a && nd->a->depth > d) d = nd->a->depth;
    if (nd->b && nd->b->depth > d) d = nd->b->depth;
    if (nd->c && nd->c->depth > d) d = nd->c->depth;
    d = max_depth(&nd->body, d);
    d = max_depth(&nd->orelse, d);
    d = max_depth(&nd->args.pos, d);
    d = max_depth(&nd->args.kwv, d);
    nd->depth = d + 1;
    if (nd->depth > JP_MAX_DEPTH) {
        jp_fail(p, nd->line, nd->col, "expression nested too deeply (over %d levels)",
                JP_MAX_DEPTH);
        return NULL;
    }
    return nd;
}

static void nodes_push(jp *p, jnodes *l, jnode *nd) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        jnode **nv = ja_alloc(p->ar, cap * sizeof *nv);
        if (l->n) memcpy(nv, l->v, l->n * sizeof *nv);
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = nd;
}

static void kw_push(jp *p, jargs *a, const char *name, jnode *val) {
    size_t n = a->kwv.n;
    const char **nk = ja_alloc(p->ar, (n + 1) * sizeof *nk);
    if (n) memcpy(nk, a->kwn, n * sizeof *nk);
    nk[n] = name;
    a->kwn = nk;
    nodes_push(p, &a->kwv, val);
}

/* ------------------------------------------------------------------ expressions */

static jnode *parse_expr(jp *p, bool with_cond);
static jnode *parse_unary(jp *p, bool with_filter);
static jnode *parse_or(jp *p);

static int parse_call_args(jp *p, jargs *a) {
    /* at '(' */
    next(p);
    while (!is_op(peek(p), ")")) {
        if (a->pos.n + a->kwv.n) {
            if (expect_op(p, ",")) return -1;
            if (is_op(peek(p), ")")) break;
        }
        if (is_op(peek(p), "*") || is_op(peek(p), "**")) {
            tok *t = peek(p);
            return jp_fail(p, t->line, t->col, "*args and **kwargs in calls are not supported");
        }
        if (peek(p)->t == T_NAME && is_op(peek2(p), "=")) {
            const char *nm = next(p)->p;
            next(p);
            jnode *v = parse_expr(p, true);
            if (!v) return -1;
            kw_push(p, a, nm, v);
        } else {
            if (a->kwv.n) {
                tok *t = peek(p);
                return jp_fail(p, t->line, t->col, "positional argument after keyword argument");
            }
            jnode *v = parse_expr(p, true);
            if (!v) return -1;
            nodes_push(p, &a->pos, v);
        }
    }
    next(p);
    return 0;
}

static jnode *parse_primary(jp *p) {
    tok *t = peek(p);
    jnode *nd;
    if (t->t == T_NAME) {
        next(p);
        nd = mk(p, N_LIT, t);
        if (!strcmp(t->p, "true") || !strcmp(t->p, "True"))
            nd->lit = jv_bool(true);
        else if (!strcmp(t->p, "false") || !strcmp(t->p, "False"))
            nd->lit = jv_bool(false);
        else if (!strcmp(t->p, "none") || !strcmp(t->p, "None"))
            nd->lit = jv_none();
        else {
            nd->kind = N_NAME;
            nd->name = t->p;
        }
        return nd;
    }
    if (t->t == T_STR) {
        /* adjacent string literals concatenate */
        sb_t b = {0};
        while (peek(p)->t == T_STR) {
            tok *s = next(p);
            sb_appendn(&b, s->p, s->n);
        }
        nd = mk(p, N_LIT, t);
        nd->lit = jv_strn(p->ar, b.data ? b.data : "", b.len);
        sb_free(&b);
        return nd;
    }
    if (t->t == T_INT || t->t == T_FLOAT) {
        next(p);
        nd = mk(p, N_LIT, t);
        nd->lit = t->t == T_INT ? jv_int(t->i) : jv_float(t->f);
        return nd;
    }
    if (is_op(t, "(")) {
        next(p);
        if (is_op(peek(p), ")")) {
            next(p);
            nd = mk(p, N_TUPLELIT, t);
            return nd;
        }
        jnode *e = parse_expr(p, true);
        if (!e) return NULL;
        if (is_op(peek(p), ",")) {
            nd = mk(p, N_TUPLELIT, t);
            nodes_push(p, &nd->body, e);
            while (is_op(peek(p), ",")) {
                next(p);
                if (is_op(peek(p), ")")) break;
                jnode *x = parse_expr(p, true);
                if (!x) return NULL;
                nodes_push(p, &nd->body, x);
            }
            e = deep(p, nd);
            if (!e) return NULL;
        }
        if (expect_op(p, ")")) return NULL;
        return e;
    }
    if (is_op(t, "[")) {
        next(p);
        nd = mk(p, N_LISTLIT, t);
        while (!is_op(peek(p), "]")) {
            if (nd->body.n && expect_op(p, ",")) return NULL;
            if (is_op(peek(p), "]")) break;
            jnode *x = parse_expr(p, true);
            if (!x) return NULL;
            nodes_push(p, &nd->body, x);
        }
        next(p);
        return deep(p, nd);
    }
    if (is_op(t, "{")) {
        next(p);
        nd = mk(p, N_DICTLIT, t);
        while (!is_op(peek(p), "}")) {
            if (nd->body.n && expect_op(p, ",")) return NULL;
            if (is_op(peek(p), "}")) break;
            jnode *k = parse_expr(p, true);
            if (!k || expect_op(p, ":")) return NULL;
            jnode *v = parse_expr(p, true);
            if (!v) return NULL;
            nodes_push(p, &nd->body, k);
            nodes_push(p, &nd->orelse, v);
        }
        next(p);
        return deep(p, nd);
    }
    expect_fail(p, "an expression");
    return NULL;
}

static jnode *parse_subscript(jp *p, jnode *obj, tok *at) {
    /* after '[' */
    jnode *parts[3] = {NULL, NULL, NULL};
    int idx = 0;
    bool slice = false;
    for (;;) {
        tok *t = peek(p);
        if (is_op(t, "]")) break;
        if (is_op(t, ":")) {
            slice = true;
            if (++idx > 2) {
                jp_fail(p, t->line, t->col, "too many ':' in slice");
                return NULL;
            }
            next(p);
            continue;
        }
        if (parts[idx]) {
            expect_fail(p, "']'");
            return NULL;
        }
        parts[idx] = parse_expr(p, true);
        if (!parts[idx]) return NULL;
    }
    next(p);
    jnode *nd = mk(p, slice ? N_SLICE : N_ITEM, at);
    nd->a = obj;
    if (slice) {
        nd->b = parts[0];
        nd->c = parts[1];
        nd->lit.t = JV_UNDEF;
        if (parts[2]) nodes_push(p, &nd->body, parts[2]);
    } else {
        if (!parts[0]) {
            jp_fail(p, at->line, at->col, "empty subscript");
            return NULL;
        }
        nd->b = parts[0];
    }
    return nd;
}

static jnode *parse_postfix(jp *p, jnode *nd) {
    for (;;) {
        tok *t = peek(p);
        if (is_op(t, ".")) {
            next(p);
            tok *a = next(p);
            if (a->t == T_NAME) {
                jnode *x = mk(p, N_ATTR, t);
                x->a = nd;
                x->name = a->p;
                if (!(nd = deep(p, x))) return NULL;
            } else if (a->t == T_INT) {
                jnode *x = mk(p, N_ITEM, t);
                x->a = nd;
                x->b = mk(p, N_LIT, a);
                x->b->lit = jv_int(a->i);
                if (!(nd = deep(p, x))) return NULL;
            } else {
                p->pos--;
                expect_fail(p, "an attribute name");
                return NULL;
            }
        } else if (is_op(t, "[")) {
            next(p);
            nd = deep(p, parse_subscript(p, nd, t));
            if (!nd) return NULL;
        } else if (is_op(t, "(")) {
            jnode *x = mk(p, N_CALL, t);
            x->line = nd->line; /* errors point at the callee, not '(' */
            x->col = nd->col;
            x->a = nd;
            if (parse_call_args(p, &x->args)) return NULL;
            if (!(nd = deep(p, x))) return NULL;
        } else
            return nd;
    }
}

static const char *const no_test_arg[] = {"else", "or", "and", "if", "in", "is", "not", NULL};

static jnode *parse_filter_expr(jp *p, jnode *nd) {
    for (;;) {
        tok *t = peek(p);
        if (is_op(t, "|")) {
            next(p);
            tok *nm = next(p);
            if (nm->t != T_NAME) {
                p->pos--;
                expect_fail(p, "a filter name");
                return NULL;
            }
            jnode *f = mk(p, N_FILTER, nm);
            f->a = nd;
            f->name = nm->p;
            if (is_op(peek(p), "(") && parse_call_args(p, &f->args)) return NULL;
            if (!(nd = deep(p, f))) return NULL;
        } else if (is_name(t, "is")) {
            next(p);
            jnode *x = mk(p, N_TEST, t);
            if (is_name(peek(p), "not")) {
                next(p);
                x->op = 1;
            }
            tok *nm = next(p);
            if (nm->t != T_NAME) {
                p->pos--;
                expect_fail(p, "a test name");
                return NULL;
            }
            x->a = nd;
            x->name = nm->p;
            tok *a = peek(p);
            if (is_op(a, "(")) {
                if (parse_call_args(p, &x->args)) return NULL;
            } else if (a->t == T_STR || a->t == T_INT || a->t == T_FLOAT || is_op(a, "[") ||
                       is_op(a, "{") || (a->t == T_NAME && !is_op(peek2(p), "="))) {
                bool skip = false;
                for (int k = 0; no_test_arg[k]; k++)
                    if (is_name(a, no_test_arg[k])) skip = true;
                if (!skip) {
                    jnode *arg = parse_primary(p);
                    if (!arg || !(arg = parse_postfix(p, arg))) return NULL;
                    nodes_push(p, &x->args.pos, arg);
                }
            }
            if (!(nd = deep(p, x))) return NULL;
        } else if (is_op(t, "(")) {
            jnode *x = mk(p, N_CALL, t);
            x->a = nd;
            if (parse_call_args(p, &x->args)) return NULL;
            if (!(nd = deep(p, x))) return NULL;
        } else
            return nd;
    }
}

static jnode *parse_unary(jp *p, bool with_filter) {
    tok *t = peek(p);
    jnode *nd;
    if (++p->nest > JP_MAX_NEST) {
        jp_fail(p, t->line, t->col, "expression nested too deeply (over %d levels)", JP_MAX_NEST);
        return NULL;
    }
    if (is_op(t, "-") || is_op(t, "+")) {
        next(p);
        nd = mk(p, t->p[0] == '-' ? N_NEG : N_POS, t);
        nd->a = parse_unary(p, false);
        if (!nd->a || !deep(p, nd)) return NULL;
    } else {
        nd = parse_primary(p);
        if (!nd || !(nd = parse_postfix(p, nd))) return NULL;
    }
    if (with_filter) nd = parse_filter_expr(p, nd);
    p->nest--;
    return nd;
}

static jnode *binop(jp *p, tok *t, int op, jnode *a, jnode *b) {
    if (!b) return NULL;
    jnode *nd = mk(p, N_BINOP, t);
    nd->op = op;
    nd->a = a;
    nd->b = b;
    return deep(p, nd);
}

static jnode *parse_pow(jp *p) {
    jnode *l = parse_unary(p, true);
    while (l && is_op(peek(p), "**")) {
        tok *t = next(p);
        l = binop(p, t, OP_POW, l, parse_unary(p, true));
    }
    return l;
}

static jnode *parse_math2(jp *p) {
    jnode *l = parse_pow(p);
    for (;;) {
        if (!l) return NULL;
        tok *t = peek(p);
        int op = is_op(t, "*")    ? OP_MUL
                 : is_op(t, "/")  ? OP_DIV
                 : is_op(t, "//") ? OP_FLOORDIV
                 : is_op(t, "%")  ? OP_MOD
                                  : 0;
        if (!op) return l;
        next(p);
        l = binop(p, t, op, l, parse_pow(p));
    }
}

static jnode *parse_concat(jp *p) {
    jnode *l = parse_math2(p);
    while (l && is_op(peek(p), "~")) {
        tok *t = next(p);
        l = binop(p, t, OP_CONCAT, l, parse_math2(p));
    }
    return l;
}

static jnode *parse_math1(jp *p) {
    jnode *l = parse_concat(p);
    for (;;) {
        if (!l) return NULL;
        tok *t = peek(p);
        int op = is_op(t, "+") ? OP_ADD : is_op(t, "-") ? OP_SUB : 0;
        if (!op) return l;
        next(p);
        l = binop(p, t, op, l, parse_concat(p));
    }
}

static jnode *parse_compare(jp *p) {
    jnode *l = parse_math1(p);
    for (;;) {
        if (!l) return NULL;
        tok *t = peek(p);
        int op = 0;
        if (is_op(t, "=="))
            op = OP_EQ;
        else if (is_op(t, "!="))
            op = OP_NE;
        else if (is_op(t, "<"))
            op = OP_LT;
        else if (is_op(t, "<="))
            op = OP_LE;
        else if (is_op(t, ">"))
            op = OP_GT;
        else if (is_op(t, ">="))
            op = OP_GE;
        else if (is_name(t, "in"))
            op = OP_IN;
        else if (is_name(t, "not") && is_name(peek2(p), "in")) {
            next(p);
            op = OP_NOTIN;
        }
        if (!op) return l;
        next(p);
        jnode *r = parse_math1(p);
        if (!r) return NULL;
        jnode *nd = mk(p, N_CMP, t);
        nd->op = op;
        nd->a = l;
        nd->b = r;
        l = deep(p, nd);
    }
}

static jnode *parse_not(jp *p) {
    tok *t = peek(p);
    if (is_name(t, "not")) {
        next(p);
        if (++p->nest > JP_MAX_NEST) {
            jp_fail(p, t->line, t->col, "expression nested too deeply (over %d levels)",
                    JP_MAX_NEST);
            return NULL;
        }
        jnode *nd = mk(p, N_NOT, t);
        nd->a = parse_not(p);
        p->nest--;
        return nd->a ? deep(p, nd) : NULL;
    }
    return parse_compare(p);
}

static jnode *parse_and(jp *p) {
    jnode *l = parse_not(p);
    while (l && is_name(peek(p), "and")) {
        tok *t = next(p);
        jnode *nd = mk(p, N_AND, t);
        nd->a = l;
        nd->b = parse_not(p);
        l = nd->b ? deep(p, nd) : NULL;
    }
    return l;
}

static jnode *parse_or(jp *p) {
    jnode *l = parse_and(p);
    while (l && is_name(peek(p), "or")) {
        tok *t = next(p);
        jnode *nd = mk(p, N_OR, t);
        nd->a = l;
        nd->b = parse_and(p);
        l = nd->b ? deep(p, nd) : NULL;
    }
    return l;
}

static jnode *parse_expr(jp *p, bool with_cond) {
    tok *t0 = peek(p);
    if (++p->nest > JP_MAX_NEST) {
        jp_fail(p, t0->line, t0->col, "expression nested too deeply (over %d levels)", JP_MAX_NEST);
        return NULL;
    }
    jnode *e = parse_or(p);
    while (e && with_cond && is_name(peek(p), "if")) {
        tok *t = next(p);
        jnode *nd = mk(p, N_COND, t);
        nd->b = e;
        nd->a = parse_or(p);
        if (!nd->a) return NULL;
        if (is_name(peek(p), "else")) {
            next(p);
            nd->c = parse_expr(p, true);
            if (!nd->c) return NULL;
        }
        e = deep(p, nd);
    }
    p->nest--;
    return e;
}

/* Expression or bare tuple (`a, b`), as Jinja allows in {{ }} and set. */
static jnode *parse_tuple(jp *p) {
    tok *t = peek(p);
    jnode *e = parse_expr(p, true);
    if (!e || !is_op(peek(p), ",")) return e;
    jnode *nd = mk(p, N_TUPLELIT, t);
    nodes_push(p, &nd->body, e);
    while (is_op(peek(p), ",")) {
        next(p);
        if (peek(p)->t == T_BEND || peek(p)->t == T_VEND) break;
        jnode *x = parse_expr(p, true);
        if (!x) return NULL;
        nodes_push(p, &nd->body, x);
    }
    return deep(p, nd);
}

/* ------------------------------------------------------------------ statements */

static int parse_body(jp *p, jnodes *body, const char *const *ends, const char **which);

static int parse_names(jp *p, const char ***out, size_t *n) {
    bool paren = false;
    if (is_op(peek(p), "(")) {
        next(p);
        paren = true;
    }
    const char *names[32];
    size_t k = 0;
    for (;;) {
        tok *t = peek(p);
        if (t->t != T_NAME) return expect_fail(p, "a variable name");
        if (k == 32) return jp_fail(p, t->line, t->col, "too many loop variables");
        names[k++] = next(p)->p;
        if (!is_op(peek(p), ",")) break;
        next(p);
    }
    if (paren && expect_op(p, ")")) return -1;
    *out = ja_alloc(p->ar, k * sizeof **out);
    memcpy(*out, names, k * sizeof **out);
    *n = k;
    return 0;
}

/* Macro / caller parameter list: (a, b=1, ...). */
static int parse_params(jp *p, jargs *a) {
    if (!is_op(peek(p), "(")) return 0;
    next(p);
    while (!is_op(peek(p), ")")) {
        if (a->kwv.n && expect_op(p, ",")) return -1;
        tok *t = peek(p);
        if (t->t != T_NAME) return expect_fail(p, "a parameter name");
        next(p);
        jnode *def = NULL;
        if (is_op(peek(p), "=")) {
            next(p);
            def = parse_expr(p, true);
            if (!def) return -1;
        }
        kw_push(p, a, t->p, def);
    }
    next(p);
    return 0;
}

static int parse_filter_chain(jp *p, jnodes *out) {
    bool first = true;
    while (first || is_op(peek(p), "|")) {
        if (!first) next(p);
        first = false;
        tok *nm = peek(p);
        if (nm->t != T_NAME) return expect_fail(p, "a filter name");
        next(p);
        jnode *f = mk(p, N_FILTER, nm);
        f->name = nm->p;
        if (is_op(peek(p), "(") && parse_call_args(p, &f->args)) return -1;
        nodes_push(p, out, f);
    }
    return 0;
}

static jnode *parse_statement(jp *p) {
    tok *kw = peek(p);
    if (kw->t != T_NAME) {
        expect_fail(p, "a tag name");
        return NULL;
    }
    next(p);
    const char *k = kw->p;
    const char *which = NULL;
    if (!strcmp(k, "if")) {
        jnode *nd = mk(p, N_IF, kw);
        nd->a = parse_expr(p, true);
        if (!nd->a || expect_bend(p)) return NULL;
        static const char *const ends[] = {"elif", "else", "endif", NULL};
        if (parse_body(p, &nd->body, ends, &which)) return NULL;
        jnode *cur = nd;
        while (!strcmp(which, "elif")) {
            tok *t = next(p);
            jnode *e = mk(p, N_IF, t);
            e->a = parse_expr(p, true);
            if (!e->a || expect_bend(p)) return NULL;
            nodes_push(p, &cur->orelse, e);
            cur = e;
            if (parse_body(p, &e->body, ends, &which)) return NULL;
        }
        if (!strcmp(which, "else")) {
            next(p);
            if (expect_bend(p)) return NULL;
            static const char *const ends2[] = {"endif", NULL};
            if (parse_body(p, &cur->orelse, ends2, &which)) return NULL;
        }
        next(p);
        if (expect_bend(p)) return NULL;
        return nd;
    }
    if (!strcmp(k, "for")) {
        jnode *nd = mk(p, N_FOR, kw);
        if (parse_names(p, &nd->targets, &nd->ntargets)) return NULL;
        if (!is_name(peek(p), "in")) {
            expect_fail(p, "'in'");
            return NULL;
        }
        next(p);
        nd->a = parse_expr(p, false);
        if (!nd->a) return NULL;
        if (is_name(peek(p), "if")) {
            next(p);
            nd->b = parse_expr(p, false);
            if (!nd->b) return NULL;
        }
        if (is_name(peek(p), "recursive")) {
            next(p);
            nd->op = 1;
        }
        if (expect_bend(p)) return NULL;
        static const char *const ends[] = {"else", "endfor", NULL};
        if (parse_body(p, &nd->body, ends, &which)) return NULL;
        if (!strcmp(which, "else")) {
            next(p);
            if (expect_bend(p)) return NULL;
            static const char *const ends2[] = {"endfor", NULL};
            if (parse_body(p, &nd->orelse, ends2, &which)) return NULL;
        }
        next(p);
        if (expect_bend(p)) return NULL;
        return nd;
    }
    if (!strcmp(k, "set")) {
        tok *t = peek(p);
        if (t->t != T_NAME) {
            expect_fail(p, "a variable name");
            return NULL;
        }
        jnode *nd = mk(p, N_SET, kw);
        if (is_op(peek2(p), ".")) {
            /* namespace attribute: set ns.attr = value */
            nd->name = next(p)->p;
            next(p);
            tok *a = next(p);
            if (a->t != T_NAME) {
                p->pos--;
                expect_fail(p, "an attribute name");
                return NULL;
            }
            nd->targets = ja_alloc(p->ar, sizeof *nd->targets);
            nd->targets[0] = a->p;
            nd->ntargets = 1;
            nd->op = 1;
        } else if (parse_names(p, &nd->targets, &nd->ntargets))
            return NULL;
        if (is_op(peek(p), "=")) {
            next(p);
            nd->a = parse_tuple(p);
            if (!nd->a || expect_bend(p)) return NULL;
            return nd;
        }
        if (nd->op || nd->ntargets != 1) {
            expect_fail(p, "'='");
            return NULL;
        }
        nd->kind = N_SETBLOCK;
        if (is_op(peek(p), "|")) {
            next(p);
            if (parse_filter_chain(p, &nd->filters)) return NULL;
        }
        if (expect_bend(p)) return NULL;
        static const char *const ends[] = {"endset", NULL};
        if (parse_body(p, &nd->body, ends, &which)) return NULL;
        next(p);
        if (expect_bend(p)) return NULL;
        return nd;
    }
    if (!strcmp(k, "macro")) {
        tok *t = peek(p);
        if (t->t != T_NAME) {
            expect_fail(p, "a macro name");
            return NULL;
        }
        next(p);
        jnode *nd = mk(p, N_MACRO, kw);
        nd->name = t->p;
        if (!is_op(peek(p), "(")) {
            expect_fail(p, "'('");
            return NULL;
        }
        if (parse_params(p, &nd->args) || expect_bend(p)) return NULL;
        static const char *const ends[] = {"endmacro", NULL};
        size_t body_start = p->pos;
        if (parse_body(p, &nd->body, ends, &which)) return NULL;
        /* like Jinja, a macro that mentions varargs/kwargs accepts extra arguments */
        for (size_t q = body_start; q < p->pos; q++) {
            if (is_name(&p->toks[q], "varargs")) nd->op |= 1;
            if (is_name(&p->toks[q], "kwargs")) nd->op |= 2;
        }
        next(p);
        if (peek(p)->t == T_NAME) next(p);
        if (expect_bend(p)) return NULL;
        return nd;
    }
    if (!strcmp(k, "call")) {
        jnode *nd = mk(p, N_CALLBLOCK, kw);
        if (is_op(peek(p), "(") && parse_params(p, &nd->args)) return NULL;
        nd->a = parse_expr(p, true);
        if (!nd->a) return NULL;
        if (nd->a->kind != N_CALL) {
            jp_fail(p, kw->line, kw->col, "{%% call %%} needs a macro call");
            return NULL;
        }
        if (expect_bend(p)) return NULL;
        static const char *const ends[] = {"endcall", NULL};
        if (parse_body(p, &nd->body, ends, &which)) return NULL;
        next(p);
        if (expect_bend(p)) return NULL;
        return nd;
    }
    if (!strcmp(k, "filter")) {
        jnode *nd = mk(p, N_FILTERBLOCK, kw);
        if (parse_filter_chain(p, &nd->filters) || expect_bend(p)) return NULL;
        static const char *const ends[] = {"endfilter", NULL};
        if (parse_body(p, &nd->body, ends, &which)) return NULL;
        next(p);
        if (expect_bend(p)) return NULL;
        return nd;
    }
    if (!strcmp(k, "generation")) {
        jnode *nd = mk(p, N_BODY, kw);
        if (expect_bend(p)) return NULL;
        static const char *const ends[] = {"endgeneration", NULL};
        if (parse_body(p, &nd->body, ends, &which)) return NULL;
        next(p);
        if (expect_bend(p)) return NULL;
        return nd;
    }
    if (!strcmp(k, "break") || !strcmp(k, "continue")) {
        jnode *nd = mk(p, k[0] == 'b' ? N_BREAK : N_CONTINUE, kw);
        if (expect_bend(p)) return NULL;
        return nd;
    }
    jp_fail(p, kw->line, kw->col, "unknown or unsupported tag '%s'", k);
    return NULL;
}

/* Parses statements until a {% NAME %} with NAME in ENDS (left unconsumed,
 * positioned on NAME, *WHICH = NAME); ENDS == NULL parses to the end. */
static int parse_body(jp *p, jnodes *body, const char *const *ends, const char **which) {
    tok *open = p->pos ? &p->toks[p->pos - 1] : peek(p);
    if (++p->nest > JP_MAX_NEST)
        return jp_fail(p, open->line, open->col, "blocks nested too deeply (over %d levels)",
                       JP_MAX_NEST);
    for (;;) {
        tok *t = peek(p);
        if (t->t == T_EOF) {
            if (!ends) break;
            return jp_fail(p, t->line, t->col, "unexpected end of template, expected '%s'",
                           ends[ends[1] ? 1 : 0]);
        }
        if (t->t == T_TEXT) {
            next(p);
            jnode *nd = mk(p, N_TEXT, t);
            nd->lit = jv_strn(p->ar, t->p, t->n);
            nodes_push(p, body, nd);
        } else if (t->t == T_VBEGIN) {
            next(p);
            jnode *nd = mk(p, N_OUTPUT, t);
            nd->a = parse_tuple(p);
            if (!nd->a) return -1;
            if (peek(p)->t != T_VEND) return expect_fail(p, "'}}'");
            next(p);
            nodes_push(p, body, nd);
        } else if (t->t == T_BBEGIN) {
            tok *nm = peek2(p);
            if (ends && nm->t == T_NAME)
                for (int i = 0; ends[i]; i++)
                    if (!strcmp(nm->p, ends[i])) {
                        next(p);
                        *which = ends[i];
                        p->nest--;
                        return 0;
                    }
            if (nm->t == T_NAME && !strncmp(nm->p, "end", 3))
                return jp_fail(p, nm->line, nm->col, "unexpected '%s'%s", nm->p,
                               ends ? "" : " (no block is open)");
            if (nm->t == T_NAME && (!strcmp(nm->p, "else") || !strcmp(nm->p, "elif")))
                return jp_fail(p, nm->line, nm->col, "unexpected '%s'", nm->p);
            next(p);
            jnode *nd = parse_statement(p);
            if (!nd) return -1;
            nodes_push(p, body, nd);
        } else {
            char b[64];
            return jp_fail(p, t->line, t->col, "unexpected %s", tok_desc(t, b, sizeof b));
        }
    }
    p->nest--;
    return 0;
}

int jinja_parse_into(jinja_template *t, const char *src, size_t n, cf_err *err) {
    /* Normalise newlines and drop one trailing newline, as Jinja does. */
    char *norm = malloc(n + 1);
    if (!norm) abort();
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (src[i] == '\r') {
            norm[m++] = '\n';
            if (i + 1 < n && src[i + 1] == '\n') i++;
        } else
            norm[m++] = src[i];
    }
    if (m && norm[m - 1] == '\n') m--;
    norm[m] = 0;
    jp p = {.ar = &t->ar, .err = err, .src = norm, .n = m};
    int rc = lex(&p);
    if (!rc) {
        const char *which = NULL;
        rc = parse_body(&p, &t->body, NULL, &which);
    }
    free(p.toks);
    free(norm);
    return rc ? CF_EFORMAT : 0;
}
