/* err — error values with messages; see err.h. */
#include "base/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int cf_seterr(cf_err *err, int code, const char *fmt, ...) {
    if (!err) return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return code;
}

int cf_errctx(cf_err *err, const char *fmt, ...) {
    if (!err) return CF_EINVAL;
    char prefix[256], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t pl = strlen(prefix);
    if (pl > sizeof err->msg - 3) pl = sizeof err->msg - 3;
    memcpy(err->msg, prefix, pl);
    memcpy(err->msg + pl, ": ", 2);
    size_t room = sizeof err->msg - pl - 3, ol = strlen(old);
    if (ol > room) ol = room;
    memcpy(err->msg + pl + 2, old, ol);
    err->msg[pl + 2 + ol] = 0;
    return err->code;
}

void cf_errclear(cf_err *err) {
    if (!err) return;
    err->code = 0;
    err->msg[0] = 0;
}

const char *cf_strerror(int code) {
    switch (code) {
    case CF_OK: return "ok";
    case CF_EINVAL: return "invalid";
    case CF_EIO: return "io";
    case CF_ENOMEM: return "nomem";
    case CF_ENOTFOUND: return "not_found";
    case CF_EFORMAT: return "format";
    case CF_ERANGE: return "range";
    case CF_EBUSY: return "busy";
    case CF_ECANCEL: return "cancelled";
    case CF_ETIMEOUT: return "timeout";
    case CF_EAUTH: return "auth";
    case CF_EUPSTREAM: return "upstream";
    case CF_ECLOSED: return "closed";
    default: return "error";
    }
}
