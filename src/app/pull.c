/*
 * pull — downloading a model file, safely and resumably (see pull.h).
 *
 * One libcurl easy transfer per attempt, on the caller's thread: a download
 * is one long sequential stream, so the multi interface of the providers'
 * I/O thread would add nothing. The rules:
 *
 * Where bytes go. Everything is written to DIR/NAME.part, which is locked
 * with flock() for the duration (a second pull of the same file is refused
 * with CF_EBUSY rather than interleaving writes). Only after every check has
 * passed is it fsync'ed and renamed to DIR/NAME, and the directory fsync'ed,
 * so the final name either does not exist or holds a complete, checked file.
 *
 * Resume. A .part left by an earlier attempt (network failure, timeout,
 * Ctrl-C) is continued with `Range: bytes=N-`; its bytes are hashed first so
 * the digest still covers the whole file. The reply must prove it honoured
 * the range: 206 with `Content-Range: bytes N-END/TOTAL`. A 200 means the
 * server ignored the range: the .part is truncated and the body written from
 * zero. A 206 starting anywhere else is abandoned and the file fetched again
 * from zero. A 416 whose Content-Range says `bytes * /N` (the .part is
 * already complete, e.g. a pull killed between the last byte and the rename)
 * goes straight to the checks; any other 416 restarts from zero.
 *
 * Checks, in order: the size (the total announced by Content-Length or
 * Content-Range must be what we have, else the transfer was cut: CF_EIO,
 * .part kept); the sha256 when one is known (mismatch: CF_EFORMAT, .part
 * deleted, since resuming corrupt bytes can never succeed); the GGUF header
 * and tables, with gguf_open() on the .part (failure: CF_EFORMAT, .part
 * deleted).
 *
 * Digests accepted, all describing the whole file:
 *   --sha256 HEX (pull_opts.sha256), always checked when given;
 *   X-Linked-Etag: "<64 hex>" — Hugging Face's sha256 of an LFS file, sent
 *     on its resolve/ redirect;
 *   Repr-Digest: sha-256=:<base64>: (RFC 9530) and Digest: sha-256=<base64>
 *     (RFC 3230, an instance digest, i.e. of the whole file even in a 206);
 *   ETag: "<64 hex>" only for hf: sources and only on the first response
 *     (Hugging Face's own answer, which for LFS files is the sha256;
 *     huggingface_hub reads X-Linked-Etag or ETag there too). A CDN's ETag
 *     after the redirect, or any other server's, is an opaque value that
 *     may happen to be 64 hex digits, so it is never taken for a digest.
 * Content-Digest (of the body of one response, so of a range) is not used.
 * When a server digest and --sha256 are both known, both must match.
 *
 * Network. http and https only; TLS peer and host verification on; redirects
 * followed (at most 10; Hugging Face answers resolve/ with a redirect to its
 * CDN), only to https when the source was https. Connect timeout 15 s;
 * a transfer slower than 1 KiB/s for 30 s is abandoned (both settable).
 * $HF_TOKEN, when set, is sent as a bearer token to hf: sources (gated
 * repositories); libcurl drops it on a redirect to another host.
 *
 * Cancel. The transfer callback polls *opts->cancel (set by a SIGINT
 * handler in the CLI) several times a second, so Ctrl-C ends the transfer
 * within a second and leaves the .part for the next pull.
 *
 * Not done: the .part does not remember which URL or ETag it came from, so
 * resuming against a file that changed upstream is caught only by the
 * digest (when published) or the GGUF check.
 */
#include "app/pull.h"

#include "base/clock.h"
#include "engine/gguf.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define PULL_DEFAULT_HF "https://huggingface.co"
#define PULL_MAX_NAME 200

/* ------------------------------------------------------------ helpers */

static bool is_hex64(const char *s, size_t n) {
    if (n != 64) return false;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i])) return false;
    return true;
}

static void hex_lower(const unsigned char *b, size_t n, char *out) {
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[b[i] >> 4];
        out[2 * i + 1] = d[b[i] & 15];
    }
    out[2 * n] = 0;
}

/* A plain file name we are willing to create: letters, digits, . _ + -,
 * not starting with a dot, ending in .gguf (case-insensitive). */
static bool name_ok(const char *s) {
    size_t n = strlen(s);
    if (n < 6 || n > PULL_MAX_NAME || s[0] == '.') return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '.' && c != '_' && c != '-' && c != '+') return false;
    }
    return !strcasecmp(s + n - 5, ".gguf");
}

static bool path_chars_ok(const char *s, bool allow_slash) {
    if (!*s) return false;
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (!isalnum(c) && c != '.' && c != '_' && c != '-' && c != '+' &&
            !(allow_slash && c == '/'))
            return false;
    }
    return true;
}

int pull_parse_source(const char *source, const char *hf_endpoint, char **url, char **name,
                      cf_err *err) {
    *url = *name = NULL;
    if (!source || !*source) return cf_seterr(err, CF_EINVAL, "no model source given");
    sb_t u = {0};
    const char *last;
    if (!strncmp(source, "hf:", 3)) {
        const char *ref = source + 3;
        const char *s1 = strchr(ref, '/');
        const char *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
        if (!s1 || !s2 || s1 == ref || s2 == s1 + 1 || !s2[1])
            return cf_seterr(err, CF_EINVAL,
                             "bad hf: reference '%s' (expected hf:ORG/REPO/FILE.gguf)", source);
        char org[256], repo[256];
        if ((size_t)(s1 - ref) >= sizeof org || (size_t)(s2 - s1 - 1) >= sizeof repo)
            return cf_seterr(err, CF_EINVAL, "bad hf: reference '%s': name too long", source);
        memcpy(org, ref, (size_t)(s1 - ref));
        org[s1 - ref] = 0;
        memcpy(repo, s1 + 1, (size_t)(s2 - s1 - 1));
        repo[s2 - s1 - 1] = 0;
        const char *file = s2 + 1;
        if (!path_chars_ok(org, false) || !path_chars_ok(repo, false) ||
            !path_chars_ok(file, true) || strstr(file, "..") || strstr(file, "//") ||
            file[strlen(file) - 1] == '/')
            return cf_seterr(err, CF_EINVAL,
                             "bad hf: reference '%s': organisation, repository and file may use "
                             "only letters, digits and . _ + - (and / between folders)",
                             source);
        const char *ep = hf_endpoint ? hf_endpoint : getenv("CONFAB_HF_ENDPOINT");
        if (!ep || !*ep) ep = PULL_DEFAULT_HF;
        size_t epn = strlen(ep);
        while (epn && ep[epn - 1] == '/')
            epn--;
        sb_appendn(&u, ep, epn);
        sb_printf(&u, "/%s/%s/resolve/main/%s", org, repo, file);
        last = strrchr(file, '/');
        last = last ? last + 1 : file;
    } else if (!strncasecmp(source, "https://", 8) || !strncasecmp(source, "http://", 7)) {
        for (const char *p = source; *p; p++)
            if ((unsigned char)*p <= ' ' || *p == 0x7f)
                return cf_seterr(err, CF_EINVAL, "bad URL '%s': contains spaces or control bytes",
                                 source);
        const char *host = strstr(source, "://") + 3;
        const char *path = strchr(host, '/');
        const char *at = strchr(host, '@');
        if (at && (!path || at < path))
            return cf_seterr(err, CF_EINVAL, "URLs with credentials are refused: '%s'", source);
        if (!path || path == host)
            return cf_seterr(err, CF_EINVAL, "bad URL '%s': no file path", source);
        sb_append(&u, source);
        /* The file name is the last segment of the path, query and fragment cut. */
        size_t plen = strcspn(path, "?#");
        const char *e = path + plen;
        const char *b = e;
        while (b > path && b[-1] != '/')
            b--;
        char *seg = strndup(b, (size_t)(e - b));
        *url = sb_take(&u);
        *name = seg;
        if (!name_ok(seg)) {
            int rc = cf_seterr(err, CF_EINVAL,
                               "cannot take a file name from '%s' (need NAME.gguf of letters, "
                               "digits and . _ + -); give one with -o NAME",
                               source);
            free(*url);
            free(*name);
            *url = *name = NULL;
            return rc;
        }
        return 0;
    } else {
        return cf_seterr(err, CF_EINVAL,
                         "unknown model source '%s' (expected hf:ORG/REPO/FILE.gguf or an "
                         "http(s):// URL)",
                         source);
    }
    if (!name_ok(last)) {
        sb_free(&u);
        return cf_seterr(err, CF_EINVAL, "'%s' does not name a .gguf file", source);
    }
    *url = sb_take(&u);
    *name = strdup(last);
    return 0;
}

/* ---------------------------------------------------------- transfer */

/* Per-response header state (reset at every status line, since libcurl
 * reports the headers of each redirect hop) and digests (kept across the
 * hops of one attempt). */
typedef struct {
    int status;
    int n_responses;                    /* status lines seen (redirect hops + 1) */
    int64_t clen;                       /* Content-Length, -1 = none */
    int64_t cr_start, cr_end, cr_total; /* Content-Range; -1 = none / '*' */
    bool cr_present;
    char linked_etag[65], etag[65], repr_digest[65], digest[65];
} hdr_state;

typedef struct {
    const pull_opts *o;
    const char *file;
    int fd;
    uint64_t offset; /* bytes in the .part when the request was sent */
    uint64_t done;   /* bytes in the .part now */
    int64_t total;   /* expected full size, -1 unknown */
    EVP_MD_CTX *md;
    hdr_state h;
    bool decided;   /* first body byte seen and handled */
    bool writing;   /* the body is file content (200/206) */
    bool restart;   /* abandon this attempt and start from zero */
    bool restarted; /* a resume was abandoned for a fresh start */
    bool write_failed;
    int write_errno;
    bool cancelled;
    double t0_ms, last_report_ms;
    uint64_t attempt_start; /* done when the attempt's body began */
} xfer;

static void hdr_reset_response(hdr_state *h) {
    h->status = 0;
    h->clen = -1;
    h->cr_start = h->cr_end = h->cr_total = -1;
    h->cr_present = false;
}

/* Trims spaces and one pair of quotes (and a W/ prefix, which marks a weak
 * validator: returned as empty so it is never taken for a digest). */
static void header_value(const char *v, size_t n, const char **out, size_t *outn) {
    while (n && (*v == ' ' || *v == '\t'))
        v++, n--;
    while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    if (n >= 2 && v[0] == 'W' && v[1] == '/') {
        *out = v;
        *outn = 0;
        return;
    }
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"') v++, n -= 2;
    *out = v;
    *outn = n;
}

static void keep_hex(char dst[65], const char *v, size_t n) {
    if (!is_hex64(v, n)) return;
    for (size_t i = 0; i < 64; i++)
        dst[i] = (char)tolower((unsigned char)v[i]);
    dst[64] = 0;
}

/* Finds "sha-256=" in a Digest / Repr-Digest value, decodes the base64
 * (colons of RFC 9530's byte sequence syntax stripped) into hex. */
static void keep_b64_sha256(char dst[65], const char *v, size_t n) {
    const char *p = NULL;
    for (size_t i = 0; i + 8 <= n; i++)
        if (!strncasecmp(v + i, "sha-256=", 8)) {
            p = v + i + 8;
            break;
        }
    if (!p) return;
    const char *e = v + n;
    if (p < e && *p == ':') p++;
    const char *q = p;
    while (q < e && *q != ':' && *q != ',' && *q != ';' && *q != ' ')
        q++;
    size_t len = (size_t)(q - p);
    if (len != 44 || p[43] != '=' || p[42] == '=') return; /* 32 bytes = 43 chars + one '=' */
    unsigned char raw[48];
    int got = EVP_DecodeBlock(raw, (const unsigned char *)p, (int)len);
    if (got != 33) return; /* EVP_DecodeBlock counts the padding byte */
    hex_lower(raw, 32, dst);
}

static size_t on_header(char *buf, size_t sz, size_t nitems, void *ud) {
    xfer *x = ud;
    size_t n = sz * nitems;
    hdr_state *h = &x->h;
    if (n >= 5 && !strncmp(buf, "HTTP/", 5)) {
        hdr_reset_response(h);
        h->n_responses++;
        const char *sp = memchr(buf, ' ', n);
        if (sp) h->status = atoi(sp + 1);
        return n;
    }
    const char *colon = memchr(buf, ':', n);
    if (!colon) return n;
    size_t kn = (size_t)(colon - buf);
    const char *v;
    size_t vn;
    header_value(colon + 1, n - kn - 1, &v, &vn);
    char tmp[128];
    if (kn == 14 && !strncasecmp(buf, "content-length", kn)) {
        if (vn && vn < 24) {
            memcpy(tmp, v, vn);
            tmp[vn] = 0;
            char *end;
            long long L = strtoll(tmp, &end, 10);
            if (!*end && L >= 0) h->clen = L;
        }
    } else if (kn == 13 && !strncasecmp(buf, "content-range", kn)) {
        h->cr_present = true;
        if (vn < sizeof tmp) {
            memcpy(tmp, v, vn);
            tmp[vn] = 0;
            long long a, b, t;
            char star[2];
            if (sscanf(tmp, "bytes %lld-%lld/%lld", &a, &b, &t) == 3 && a >= 0 && b >= a && t > b) {
                h->cr_start = a;
                h->cr_end = b;
                h->cr_total = t;
            } else if (sscanf(tmp, "bytes %1[*]/%lld", star, &t) == 2 && t >= 0) {
                h->cr_total = t;
            }
        }
    } else if (kn == 13 && !strncasecmp(buf, "x-linked-etag", kn)) {
        keep_hex(h->linked_etag, v, vn);
    } else if (kn == 4 && !strncasecmp(buf, "etag", kn) && h->n_responses == 1) {
        keep_hex(h->etag, v, vn);
    } else if (kn == 11 && !strncasecmp(buf, "repr-digest", kn)) {
        keep_b64_sha256(h->repr_digest, v, vn);
    } else if (kn == 6 && !strncasecmp(buf, "digest", kn)) {
        keep_b64_sha256(h->digest, v, vn);
    }
    return n;
}

static void report(xfer *x, bool finished) {
    if (!x->o->progress) return;
    double now = clock_mono_ms();
    if (!finished && now - x->last_report_ms < 100) return;
    x->last_report_ms = now;
    pull_progress p = {.file = x->file,
                       .done = x->done,
                       .total = x->total,
                       .resumed_from = x->attempt_start,
                       .rate = 0,
                       .eta_s = -1,
                       .finished = finished};
    double secs = (now - x->t0_ms) / 1000.0;
    if (secs > 0.2 && x->done > x->attempt_start) {
        p.rate = (double)(x->done - x->attempt_start) / secs;
        if (x->total >= 0 && p.rate > 0)
            p.eta_s =
                (double)((uint64_t)x->total > x->done ? (uint64_t)x->total - x->done : 0) / p.rate;
    }
    x->o->progress(x->o->progress_ctx, &p);
}

/* The first body byte of the final response: decide what the body is. */
static bool decide(xfer *x) {
    x->decided = true;
    hdr_state *h = &x->h;
    if (h->status == 206) {
        if (!h->cr_present || h->cr_start != (int64_t)x->offset) {
            x->restart = true; /* not the range we asked for */
            return false;
        }
        x->total = h->cr_total;
    } else if (h->status == 200) {
        if (x->offset > 0) { /* range ignored: start over */
            x->restarted = true;
            if (ftruncate(x->fd, 0) != 0) {
                x->write_failed = true;
                x->write_errno = errno;
                return false;
            }
            x->offset = x->done = 0;
            EVP_DigestInit_ex(x->md, EVP_sha256(), NULL);
        }
        x->total = h->clen;
    } else {
        return true; /* an error page: read and dropped */
    }
    x->writing = true;
    x->attempt_start = x->done;
    x->t0_ms = clock_mono_ms();
    return true;
}

static size_t on_body(char *buf, size_t sz, size_t nitems, void *ud) {
    xfer *x = ud;
    size_t n = sz * nitems;
    if (!x->decided && !decide(x)) return 0;
    if (!x->writing) return n;
    size_t off = 0;
    while (off < n) {
        ssize_t w = pwrite(x->fd, buf + off, n - off, (off_t)(x->done + off));
        if (w < 0) {
            if (errno == EINTR) continue;
            x->write_failed = true;
            x->write_errno = errno;
            return 0;
        }
        off += (size_t)w;
    }
    EVP_DigestUpdate(x->md, buf, n);
    x->done += n;
    report(x, false);
    return n;
}

static int on_xferinfo(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un) {
    xfer *x = ud;
    if (x->o->cancel && *x->o->cancel) {
        x->cancelled = true;
        return 1;
    }
    if (x->writing) report(x, false);
    return 0;
}

/* Hashes the first N bytes already in FD into MD. */
static int hash_existing(int fd, uint64_t n, EVP_MD_CTX *md, const char *part, cf_err *err) {
    enum { CHUNK = 1 << 20 };
    char *buf = malloc(CHUNK);
    if (!buf) return cf_seterr(err, CF_ENOMEM, "out of memory");
    uint64_t off = 0;
    while (off < n) {
        size_t want = n - off < CHUNK ? (size_t)(n - off) : CHUNK;
        ssize_t r = pread(fd, buf, want, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            free(buf);
            return cf_seterr(err, CF_EIO, "reading %s: %s", part,
                             r < 0 ? strerror(errno) : "file shrank");
        }
        EVP_DigestUpdate(md, buf, (size_t)r);
        off += (uint64_t)r;
    }
    free(buf);
    return 0;
}

static int hash_file(const char *path, char out[65], cf_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cf_seterr(err, CF_EIO, "opening %s: %s", path, strerror(errno));
    struct stat st;
    int rc = fstat(fd, &st) ? cf_seterr(err, CF_EIO, "%s: %s", path, strerror(errno)) : 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!rc && !md) rc = cf_seterr(err, CF_ENOMEM, "out of memory");
    if (!rc) {
        EVP_DigestInit_ex(md, EVP_sha256(), NULL);
        rc = hash_existing(fd, (uint64_t)st.st_size, md, path, err);
    }
    if (!rc) {
        unsigned char d[32];
        unsigned int dn = 0;
        EVP_DigestFinal_ex(md, d, &dn);
        hex_lower(d, 32, out);
    }
    EVP_MD_CTX_free(md);
    close(fd);
    return rc;
}

static int mkdirs(const char *dir, cf_err *err) {
    char *p = strdup(dir);
    if (!p) return cf_seterr(err, CF_ENOMEM, "out of memory");
    for (char *s = p + 1;; s++) {
        if (*s == '/' || !*s) {
            char c = *s;
            *s = 0;
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                int e = errno;
                free(p);
                return cf_seterr(err, CF_EIO, "cannot create %s: %s", dir, strerror(e));
            }
            *s = c;
            if (!c) break;
        }
    }
    free(p);
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return cf_seterr(err, CF_EIO, "%s is not a directory", dir);
    return 0;
}

static int fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* Maps a failed transfer to an error. */
static int curl_failure(xfer *x, CURLcode cc, const char *url, const char *ebuf, const char *part,
                        cf_err *err) {
    const char *detail = ebuf[0] ? ebuf : curl_easy_strerror(cc);
    if (x->cancelled)
        return cf_seterr(err, CF_ECANCEL,
                         "download cancelled after %" PRIu64 " bytes; run the same pull again to "
                         "resume from %s",
                         x->done, part);
    if (x->write_failed)
        return cf_seterr(err, CF_EIO, "writing %s: %s", part, strerror(x->write_errno));
    switch (cc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return cf_seterr(err, CF_EIO, "network error: cannot resolve host of %s (%s)", url, detail);
    case CURLE_COULDNT_CONNECT:
        return cf_seterr(err, CF_EIO, "network error: cannot connect to %s (%s)", url, detail);
    case CURLE_OPERATION_TIMEDOUT:
        return cf_seterr(err, CF_ETIMEOUT,
                         "network timeout fetching %s after %" PRIu64 " bytes (%s); run the same "
                         "pull again to resume",
                         url, x->done, detail);
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
        return cf_seterr(err, CF_EIO, "TLS error with %s: %s", url, detail);
    case CURLE_TOO_MANY_REDIRECTS:
        return cf_seterr(err, CF_EUPSTREAM, "too many redirects fetching %s", url);
    case CURLE_UNSUPPORTED_PROTOCOL:
        return cf_seterr(err, CF_EUPSTREAM, "refused redirect or protocol for %s: %s", url, detail);
    default:
        return cf_seterr(err, CF_EIO,
                         "network error fetching %s after %" PRIu64 " bytes: %s; run the same pull "
                         "again to resume",
                         url, x->done, detail);
    }
}

typedef enum { ATTEMPT_DONE, ATTEMPT_RESTART } attempt_result;

/* One request. Returns <0 (error), or ATTEMPT_DONE / ATTEMPT_RESTART. */
static int attempt(xfer *x, const char *url, bool is_hf, const char *part, cf_err *err) {
    CURL *e = curl_easy_init();
    if (!e) return cf_seterr(err, CF_ENOMEM, "libcurl: cannot create a transfer");
    char ebuf[CURL_ERROR_SIZE] = {0};
    char range[64];
    struct curl_slist *hdrs = NULL;
    const pull_opts *o = x->o;
    memset(&x->h, 0, sizeof x->h);
    hdr_reset_response(&x->h);
    x->decided = x->writing = x->restart = false;
    x->total = -1;

    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR,
                     strncasecmp(url, "https:", 6) ? "http,https" : "https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 15000L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME,
                     o->low_speed_time_s > 0 ? o->low_speed_time_s : 30L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "confab/" CONFAB_VERSION);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, ebuf);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_xferinfo);
    curl_easy_setopt(e, CURLOPT_XFERINFODATA, x);
    curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    /* Identity encoding: a compressed body would break ranges and sizes. */
    hdrs = curl_slist_append(hdrs, "Accept-Encoding: identity");
    const char *tok = is_hf ? getenv("HF_TOKEN") : NULL;
    sb_t auth = {0};
    if (tok && *tok) {
        sb_printf(&auth, "Authorization: Bearer %s", tok);
        hdrs = curl_slist_append(hdrs, auth.data);
    }
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
    if (x->offset > 0) {
        snprintf(range, sizeof range, "%" PRIu64 "-", x->offset);
        curl_easy_setopt(e, CURLOPT_RANGE, range);
    }

    CURLcode cc = curl_easy_perform(e);
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(e);
    curl_slist_free_all(hdrs);
    sb_free(&auth);

    if (x->restart) return ATTEMPT_RESTART;
    if (cc != CURLE_OK) return curl_failure(x, cc, url, ebuf, part, err);
    if (status == 416) {
        /* Our .part may already hold the whole file. */
        if (x->h.cr_total >= 0 && (uint64_t)x->h.cr_total == x->offset && x->offset > 0) {
            x->total = x->h.cr_total;
            return ATTEMPT_DONE;
        }
        return ATTEMPT_RESTART;
    }
    if (status == 404) return cf_seterr(err, CF_ENOTFOUND, "not found: %s", url);
    if (status == 401 || status == 403)
        return cf_seterr(err, CF_EAUTH, "access denied (HTTP %ld) to %s%s", status, url,
                         is_hf ? "; a gated repository needs $HF_TOKEN with access to it" : "");
    if (status != 200 && status != 206)
        return cf_seterr(err, CF_EUPSTREAM, "HTTP %ld from %s", status, url);
    if (!x->decided) {
        /* An empty body: decide now so a 200 to a range request still truncates. */
        if (!decide(x)) {
            if (x->restart) return ATTEMPT_RESTART;
            return cf_seterr(err, CF_EIO, "writing %s: %s", part, strerror(x->write_errno));
        }
    }
    if (x->total >= 0 && x->done != (uint64_t)x->total)
        return cf_seterr(err, CF_EIO,
                         "network error: transfer of %s ended after %" PRIu64 " of %" PRId64
                         " bytes; run the same pull again to resume",
                         url, x->done, x->total);
    return ATTEMPT_DONE;
}

static int fail_corrupt(const char *part, int rc) {
    unlink(part);
    return rc;
}

int pull_model(const char *source, const pull_opts *o, pull_result *res, cf_err *err) {
    memset(res, 0, sizeof *res);
    if (!o || !o->models_dir || !*o->models_dir)
        return cf_seterr(err, CF_EINVAL, "pull: no models directory given");
    char *url = NULL, *name = NULL;
    int rc = pull_parse_source(source, o->hf_endpoint, &url, &name, err);
    if (rc) return rc;
    bool is_hf = !strncmp(source, "hf:", 3);
    if (o->out_name) {
        free(name);
        sb_t nb = {0};
        sb_append(&nb, o->out_name);
        size_t n = strlen(o->out_name);
        if (n < 5 || strcasecmp(o->out_name + n - 5, ".gguf")) sb_append(&nb, ".gguf");
        name = sb_take(&nb);
        if (!name_ok(name)) {
            rc = cf_seterr(err, CF_EINVAL,
                           "bad output name '%s': use letters, digits and . _ + -, not starting "
                           "with a dot",
                           o->out_name);
            free(url);
            free(name);
            return rc;
        }
    }
    char want[65] = {0};
    if (o->sha256) {
        if (!is_hex64(o->sha256, strlen(o->sha256))) {
            free(url);
            free(name);
            return cf_seterr(err, CF_EINVAL, "--sha256 needs 64 hex digits, got '%s'", o->sha256);
        }
        keep_hex(want, o->sha256, 64);
    }
    if ((rc = mkdirs(o->models_dir, err))) {
        free(url);
        free(name);
        return rc;
    }

    sb_t fin = {0}, part = {0};
    sb_printf(&fin, "%s/%s", o->models_dir, name);
    sb_printf(&part, "%s.part", fin.data);
    res->path = strdup(fin.data);
    res->url = url;
    url = NULL;

    int fd = -1;
    bool locked = false;
    EVP_MD_CTX *md = NULL;
    struct stat st;
    if (stat(fin.data, &st) == 0) {
        /* Already here: check it against the digest we were given, if any. */
        if (want[0]) {
            if ((rc = hash_file(fin.data, res->sha256, err))) goto out;
            if (strcmp(res->sha256, want)) {
                rc = cf_seterr(err, CF_EINVAL,
                               "%s already exists with a different sha256 (%s); remove it first "
                               "(confab models rm %s)",
                               fin.data, res->sha256, name);
                goto out;
            }
            res->digest_source = "--sha256";
        }
        res->already_present = true;
        res->size = (uint64_t)st.st_size;
        goto out;
    }

    fd = open(part.data, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = cf_seterr(err, CF_EIO, "cannot create %s: %s", part.data, strerror(errno));
        goto out;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        rc = cf_seterr(err, CF_EBUSY, "another pull is writing %s", part.data);
        goto out;
    }
    locked = true;
    if (fstat(fd, &st) != 0) {
        rc = cf_seterr(err, CF_EIO, "%s: %s", part.data, strerror(errno));
        goto out;
    }
    md = EVP_MD_CTX_new();
    if (!md) {
        rc = cf_seterr(err, CF_ENOMEM, "out of memory");
        goto out;
    }
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    xfer x = {.o = o, .file = name, .fd = fd, .md = md, .total = -1};
    x.offset = x.done = (uint64_t)st.st_size;
    res->resumed_from = x.offset;
    if (x.offset && (rc = hash_existing(fd, x.offset, md, part.data, err))) goto out;

    for (int tries = 0;; tries++) {
        rc = attempt(&x, res->url, is_hf, part.data, err);
        if (rc < 0) goto out;
        if (rc == ATTEMPT_DONE) break;
        /* Restart from zero, once. */
        if (tries >= 1) {
            rc = cf_seterr(err, CF_EUPSTREAM,
                           "%s did not honour a range request nor send the whole file", res->url);
            goto out;
        }
        if (ftruncate(fd, 0) != 0) {
            rc = cf_seterr(err, CF_EIO, "truncating %s: %s", part.data, strerror(errno));
            goto out;
        }
        x.offset = x.done = 0;
        x.restarted = true;
        res->resumed_from = 0;
        EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    }
    res->resumed_from = x.writing ? x.attempt_start : x.offset;
    res->restarted = x.restarted;
    report(&x, true);
    res->size = x.done;
    {
        unsigned char d[32];
        unsigned int dn = 0;
        EVP_DigestFinal_ex(md, d, &dn);
        hex_lower(d, 32, res->sha256);
    }

    /* Digest checks: the one given, then what the server published. */
    if (want[0] && strcmp(want, res->sha256)) {
        rc = fail_corrupt(part.data, cf_seterr(err, CF_EFORMAT,
                                               "sha256 mismatch for %s: expected %s (--sha256), "
                                               "got %s; the download was deleted",
                                               res->url, want, res->sha256));
        goto out;
    }
    if (want[0]) res->digest_source = "--sha256";
    struct {
        const char *what, *hex;
    } pub[] = {{"X-Linked-Etag", x.h.linked_etag},
               {"Repr-Digest", x.h.repr_digest},
               {"Digest", x.h.digest},
               {"ETag", is_hf ? x.h.etag : ""}};
    for (size_t i = 0; i < sizeof pub / sizeof pub[0]; i++) {
        if (!pub[i].hex[0]) continue;
        if (strcmp(pub[i].hex, res->sha256)) {
            rc = fail_corrupt(part.data,
                              cf_seterr(err, CF_EFORMAT,
                                        "sha256 mismatch for %s: the server published %s (%s), "
                                        "got %s; the download was deleted",
                                        res->url, pub[i].hex, pub[i].what, res->sha256));
            goto out;
        }
        if (!res->digest_source) res->digest_source = pub[i].what;
    }

    /* The GGUF check: the whole header and tables must parse. */
    {
        cf_err ge = {0};
        gguf_file *g = gguf_open(part.data, &ge);
        if (!g) {
            rc = fail_corrupt(part.data, cf_seterr(err, CF_EFORMAT,
                                                   "%s is not a valid GGUF file (%s); the "
                                                   "download was deleted",
                                                   res->url, ge.msg));
            goto out;
        }
        gguf_close(g);
    }
    if (fsync(fd) != 0) {
        rc = cf_seterr(err, CF_EIO, "syncing %s: %s", part.data, strerror(errno));
        goto out;
    }
    if (rename(part.data, fin.data) != 0) {
        rc = cf_seterr(err, CF_EIO, "renaming %s to %s: %s", part.data, fin.data, strerror(errno));
        goto out;
    }
    fsync_dir(o->models_dir);
    rc = 0;
out:
    /* A failure before any byte arrived leaves no empty .part behind. */
    if (rc && locked && fstat(fd, &st) == 0 && st.st_size == 0) unlink(part.data);
    if (fd >= 0) close(fd); /* drops the lock */
    EVP_MD_CTX_free(md);
    sb_free(&fin);
    sb_free(&part);
    free(url);
    free(name);
    if (rc) pull_result_free(res);
    return rc;
}

void pull_result_free(pull_result *res) {
    if (!res) return;
    free(res->path);
    free(res->url);
    memset(res, 0, sizeof *res);
}

/* ---------------------------------------------------------- progress */

static void human_bytes(double b, sb_t *out) {
    static const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (b >= 1024 && i < 4)
        b /= 1024, i++;
    if (i == 0)
        sb_printf(out, "%.0f %s", b, u[i]);
    else
        sb_printf(out, "%.1f %s", b, u[i]);
}

static void human_eta(double s, sb_t *out) {
    if (s < 0) {
        sb_append(out, "--:--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        sb_printf(out, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else
        sb_printf(out, "%ld:%02ld", t / 60, t % 60);
}

void pull_progress_render(const pull_progress *p, bool tty, sb_t *out) {
    if (tty) {
        const int W = 24;
        int fill = p->total > 0 ? (int)((double)p->done * W / (double)p->total) : 0;
        if (fill > W) fill = W;
        sb_putc(out, '[');
        for (int i = 0; i < W; i++)
            sb_putc(out, i < fill ? '#' : '.');
        sb_append(out, "]  ");
        human_bytes((double)p->done, out);
        if (p->total >= 0) {
            sb_append(out, " / ");
            human_bytes((double)p->total, out);
        }
        sb_append(out, "  ");
        human_bytes(p->rate, out);
        sb_append(out, "/s  ETA ");
        human_eta(p->finished ? 0 : p->eta_s, out);
    } else {
        human_bytes((double)p->done, out);
        if (p->total >= 0) {
            sb_append(out, " of ");
            human_bytes((double)p->total, out);
            sb_printf(out, " (%d%%)",
                      p->total > 0 ? (int)((double)p->done * 100.0 / (double)p->total) : 100);
        }
        sb_append(out, ", ");
        human_bytes(p->rate, out);
        sb_append(out, "/s, ETA ");
        human_eta(p->finished ? 0 : p->eta_s, out);
    }
}

void pull_printer_init(pull_printer *pp, FILE *f, double interval_s) {
    memset(pp, 0, sizeof *pp);
    pp->f = f;
    pp->tty = isatty(fileno(f));
    pp->interval_s = interval_s > 0 ? interval_s : 5;
    pp->last_ms = -1e18;
}

void pull_printer_cb(void *ctx, const pull_progress *p) {
    pull_printer *pp = ctx;
    double now = clock_mono_ms();
    double gap = pp->tty ? 100 : pp->interval_s * 1000;
    if (!p->finished && now - pp->last_ms < gap) return;
    pp->last_ms = now;
    sb_t s = {0};
    if (pp->tty) {
        sb_printf(&s, "\r%s ", p->file);
        pull_progress_render(p, true, &s);
        sb_append(&s, "\033[K");
        if (p->finished) sb_putc(&s, '\n');
    } else {
        sb_printf(&s, "pull: %s: ", p->file);
        pull_progress_render(p, false, &s);
        sb_putc(&s, '\n');
    }
    fwrite(s.data, 1, s.len, pp->f);
    fflush(pp->f);
    sb_free(&s);
}
