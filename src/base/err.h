/*
 * err — the error value every layer returns.
 *
 * Functions that can fail take a `cf_err *err` (may be NULL) and return an int
 * (0 = ok, negative = one of the CF_E* codes) or NULL. The message is written
 * for a person: it names what was wrong and where, so the caller can show it
 * as is. Nothing deep inside confab prints errors itself.
 */
#ifndef CONFAB_BASE_ERR_H
#define CONFAB_BASE_ERR_H

enum {
    CF_OK = 0,
    CF_EINVAL = -1,     /* bad argument or malformed input */
    CF_EIO = -2,        /* file or socket failure */
    CF_ENOMEM = -3,     /* allocation failed */
    CF_ENOTFOUND = -4,  /* the named thing does not exist */
    CF_EFORMAT = -5,    /* a file or message is corrupt or unsupported */
    CF_ERANGE = -6,     /* a value is out of bounds */
    CF_EBUSY = -7,      /* resource busy or over capacity */
    CF_ECANCEL = -8,    /* cancelled by the caller */
    CF_ETIMEOUT = -9,   /* deadline passed */
    CF_EAUTH = -10,     /* authentication or permission failure */
    CF_EUPSTREAM = -11, /* a remote provider failed */
    CF_ECLOSED = -12,   /* queue or stream closed */
};

typedef struct {
    int code;      /* one of CF_E*, 0 when no error */
    char msg[512]; /* human-readable, NUL-terminated */
} cf_err;

/* Records CODE and a printf-style message in ERR (if not NULL) and returns
 * CODE, so callers can write `return cf_seterr(err, CF_EINVAL, "...")`. */
int cf_seterr(cf_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Prefixes the existing message in ERR with printf-style context
 * ("loading x: " + old message). Returns err->code. */
int cf_errctx(cf_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Resets ERR to "no error". */
void cf_errclear(cf_err *err);

/* Short name of an error code ("invalid", "io", ...). */
const char *cf_strerror(int code);

#endif
