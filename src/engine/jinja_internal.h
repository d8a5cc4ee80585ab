/*
 * jinja_internal — the pieces shared by the interpreter's files: the arena,
 * the value model, the syntax tree and the evaluation context. Not a public
 * header: only src/engine/jinja*.c include it.
 *
 * Value model: `jv` is a small tagged value passed by copy. Strings, lists,
 * dicts and callables live in an arena (`jarena`) that is freed in one go
 * when a render (or a parse) ends, so the evaluator never counts references.
 * Lists and dicts are mutable in place (namespace attributes, list.append),
 * strings are immutable. Dict keys are strings and keep insertion order.
 */
#ifndef CONFAB_ENGINE_JINJA_INTERNAL_H
#define CONFAB_ENGINE_JINJA_INTERNAL_H

#include "base/err.h"
#include "base/sb.h"
#include "engine/jinja.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------ arena */

typedef struct jchunk jchunk;
typedef struct {
    jchunk *head;
    size_t total; /* bytes handed out so far */
} jarena;

/* Returns zeroed memory of N bytes that lives until ja_free(). Aborts when
 * the system is out of memory (like sb); callers bound sizes beforehand. */
void *ja_alloc(jarena *a, size_t n);
void ja_free(jarena *a);
char *ja_strndup(jarena *a, const char *s, size_t n);

/* ------------------------------------------------------------------ values */

typedef enum {
    JV_UNDEF,
    JV_NONE,
    JV_BOOL,
    JV_INT,
    JV_FLOAT,
    JV_STR,
    JV_LIST,
    JV_DICT,
    JV_MACRO, /* a {% macro %} or a {% call %} block's caller */
    JV_FUNC,  /* a built-in function or bound method */
    JV_LOOP,  /* the `loop` variable of a for loop */
} jv_type;

typedef struct jstr {
    size_t n;
    char p[]; /* (n + 1,) NUL-terminated */
} jstr;

typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct jmacro jmacro;
typedef struct jfunc jfunc;
typedef struct jloop jloop;

typedef struct jv {
    uint8_t t;    /* jv_type */
    uint8_t safe; /* JV_STR: a markupsafe.Markup (from |safe, |e); `+` escapes the other side */
    union {
        bool b;
        int64_t i;
        double f;
        jstr *s;
        jlist *l;
        jdict *d;
        jmacro *m;
        jfunc *fn;
        jloop *loop;
        const char *undef; /* JV_UNDEF: why ("'x' is undefined"), may be NULL */
    } u;
} jv;

struct jlist {
    size_t n, cap;
    jv *v;      /* (cap,) */
    bool tuple; /* repr as (a, b) */
};

struct jdict {
    size_t n, cap;
    jv *k;   /* (cap,) keys: strings, or numbers from dict literals */
    jv *v;   /* (cap,) */
    bool ns; /* a namespace() object: attributes may be assigned */
};

struct jloop {
    jlist *items;
    size_t i;
    int depth;                    /* 1 for the outermost pass of a recursive loop */
    const struct jnode *for_node; /* the N_FOR, for loop(...) in recursive loops */
    struct jscope *outer;         /* scope the loop ran in */
};

/* Builtin callables: a name looked up at call time plus the bound object. */
struct jfunc {
    const char *name;
    jv self; /* JV_UNDEF for global functions */
};

static inline jv jv_undef(const char *why) {
    jv v = {.t = JV_UNDEF};
    v.u.undef = why;
    return v;
}
static inline jv jv_none(void) {
    jv v = {.t = JV_NONE};
    return v;
}
static inline jv jv_bool(bool b) {
    jv v = {.t = JV_BOOL};
    v.u.b = b;
    return v;
}
static inline jv jv_int(int64_t i) {
    jv v = {.t = JV_INT};
    v.u.i = i;
    return v;
}
static inline jv jv_float(double f) {
    jv v = {.t = JV_FLOAT};
    v.u.f = f;
    return v;
}

jv jv_strn(jarena *a, const char *s, size_t n);
jv jv_str(jarena *a, const char *s);
jv jv_list(jarena *a, size_t cap);
jv jv_dict(jarena *a, size_t cap);
void jlist_push(jarena *a, jlist *l, jv v);
/* Value of KEY in D, or NULL. */
jv *jdict_get(const jdict *d, const char *key, size_t n);
void jdict_set(jarena *a, jdict *d, const char *key, size_t n, jv v);
/* Any-key variants (keys compared with Python equality). */
jv *jdict_getv(const jdict *d, jv key);
void jdict_setv(jarena *a, jdict *d, jv key, jv v);

/* Converts a jansson value (borrowed) into arena values. Containers nested
 * deeper than JV_MAX_JSON_DEPTH become None and set *TOO_DEEP. */
#define JV_MAX_JSON_DEPTH 512
jv jv_from_json(jarena *a, json_t *j, bool *too_deep);

bool jv_truthy(jv v);
/* Python equality (1 == 1.0 == True, lists and dicts deeply). */
bool jv_eq(jv a, jv b);
/* Python ordering for sort and < >: returns -1/0/1, or -2 when the two
 * types cannot be ordered. */
int jv_cmp(jv a, jv b);
/* Python type name as Jinja's messages show it ("str", "dict object"...). */
const char *jv_typename(jv v);

/* str(v): how {{ v }} renders. */
void jv_to_str(sb_t *out, jv v);
/* repr(v): strings quoted, as inside a rendered list. */
void jv_repr(sb_t *out, jv v);
/* Python repr of a float ("1.0", "0.1", "1e+16"). */
void jv_float_repr(sb_t *out, double f);

typedef struct {
    int indent; /* < 0: none */
    const char *item_sep, *key_sep;
    bool sort_keys;
    bool ensure_ascii;
} jv_json_opts;
/* json.dumps(v). Returns 0, or -1 for values JSON cannot hold (with the
 * offending type name in *bad). */
int jv_to_json(sb_t *out, jv v, const jv_json_opts *o, int level, const char **bad);

/* HTML-escapes a string (& < > " ') into a new safe string; a string that is
 * already safe is returned as is (markupsafe.escape). */
jv jv_html_escape(jarena *a, jv s);

/* Number of code points in S. */
size_t jstr_len(const jstr *s);

/* ------------------------------------------------------------------ syntax tree */

typedef enum {
    /* statements */
    N_TEXT,
    N_OUTPUT,
    N_IF,
    N_FOR,
    N_SET,
    N_SETBLOCK,
    N_MACRO,
    N_CALLBLOCK,
    N_FILTERBLOCK,
    N_BREAK,
    N_CONTINUE,
    N_BODY, /* generation block and plain bodies */
    /* expressions */
    N_LIT,
    N_NAME,
    N_ATTR,
    N_ITEM,
    N_SLICE,
    N_CALL,
    N_FILTER,
    N_TEST,
    N_NEG,
    N_POS,
    N_NOT,
    N_AND,
    N_OR,
    N_BINOP,
    N_CMP,
    N_COND,
    N_LISTLIT,
    N_TUPLELIT,
    N_DICTLIT,
} jnode_kind;

typedef struct jnode jnode;

typedef struct {
    jnode **v;
    size_t n, cap;
} jnodes;

typedef struct {
    jnodes pos;
    const char **kwn; /* (nkw,) keyword names */
    jnodes kwv;       /* (nkw,) keyword values */
} jargs;

struct jnode {
    uint8_t kind; /* jnode_kind */
    int op;       /* N_BINOP/N_CMP: operator token; N_TEST: negated; N_FOR: recursive;
                     N_MACRO: 1 = uses varargs, 2 = uses kwargs */
    int line, col;
    int depth;        /* expressions: height of the subtree (bounded by the parser) */
    jnode *a, *b, *c; /* operands: cond/then/else, object/key, iter/filter ... */
    jnodes body, orelse;
    jargs args;           /* calls, filters, tests; macro params (kwn + defaults) */
    const char *name;     /* variable, attribute, filter, test, macro name */
    const char **targets; /* for/set tuple targets */
    size_t ntargets;
    jnodes filters; /* filter block: N_FILTER nodes with a == NULL */
    jv lit;
};

struct jinja_template {
    jarena ar;
    jnodes body;
};

/* Parser entry (jinja_parse.c). */
int jinja_parse_into(jinja_template *t, const char *src, size_t n, cf_err *err);

/* Operator codes shared by parser and evaluator. */
enum {
    OP_ADD = 1,
    OP_SUB,
    OP_MUL,
    OP_DIV,
    OP_FLOORDIV,
    OP_MOD,
    OP_POW,
    OP_CONCAT,
    OP_EQ,
    OP_NE,
    OP_LT,
    OP_LE,
    OP_GT,
    OP_GE,
    OP_IN,
    OP_NOTIN,
};

#endif
