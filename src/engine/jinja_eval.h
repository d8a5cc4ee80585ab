/*
 * jinja_eval — evaluation context shared by jinja_eval.c (statements and
 * expressions) and jinja_builtins.c (filters, tests, methods, globals).
 * Internal to the interpreter.
 */
#ifndef CONFAB_ENGINE_JINJA_EVAL_H
#define CONFAB_ENGINE_JINJA_EVAL_H

#include "base/utf8.h"
#include "engine/jinja_internal.h"

#include <time.h>

typedef struct jscope jscope;
struct jscope {
    jscope *parent;
    jdict *vars;
};

struct jmacro {
    const jnode *def; /* N_MACRO or N_CALLBLOCK: params in args, body in body */
    jscope *closure;
    const char *name;
};

/* Evaluated call arguments. */
typedef struct {
    jv *pos;
    size_t npos;
    const char **kwn;
    jv *kwv;
    size_t nkw;
} jcall;

typedef struct {
    jarena ar;
    cf_err *err;
    bool failed;
    sb_t *out; /* where output goes now (captures swap it) */
    jscope *scope;
    int depth, max_depth;
    uint64_t iters, max_iters;
    size_t max_output, max_memory;
    const char *stack_base; /* frame address at jinja_render's entry */
    size_t max_stack;
    time_t now;
} jctx;

/* Records a run-time error at node AT ("line L, column C: ..."); returns -1. */
int jerr(jctx *c, const jnode *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Error for using undefined value V. */
int jerr_undef(jctx *c, const jnode *at, jv v);
/* An undefined value carrying a formatted reason. */
jv jv_undef_fmt(jctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

int jeval(jctx *c, const jnode *n, jv *out);
int jeval_args(jctx *c, const jargs *src, jcall *out);
/* Argument I (positional) or NAME (keyword); NULL when absent. */
jv *jcall_arg(jcall *a, size_t i, const char *name);
/* loop(items) in a recursive for loop. */
int jinja_call_loop(jctx *c, const jnode *at, jloop *l, jcall *a, jv *out);
int jcall_macro(jctx *c, const jnode *at, jmacro *m, jcall *a, jv caller, jv *out);
/* Items of an iterable (list; dict keys; string characters; undefined = empty). */
int jinja_iter_list(jctx *c, const jnode *at, jv v, jlist **out);
int jinja_contains(jctx *c, const jnode *at, jv hay, jv needle, bool *out);

/* jinja_builtins.c */
bool jinja_method_exists(jv obj, const char *name);
bool jinja_global_exists(const char *name);
int jinja_call_builtin(jctx *c, const jnode *at, jfunc *f, jcall *a, jv *out);
int jinja_apply_filter(jctx *c, const jnode *at, const char *name, jv v, jcall *a, jv *out);
int jinja_apply_test(jctx *c, const jnode *at, const char *name, jv v, jcall *a, bool *out);
int jinja_loop_attr(jctx *c, const jnode *at, jloop *l, const char *name, jv *out);
int jinja_percent_format(jctx *c, const jnode *at, jv fmt, jv args, jv *out);

#endif
