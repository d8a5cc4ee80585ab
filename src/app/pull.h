/*
 * pull — downloads a GGUF model into the models directory (`confab pull`).
 *
 * Sources: `hf:ORG/REPO/PATH/FILE.gguf` (Hugging Face: fetched from
 * ENDPOINT/ORG/REPO/resolve/main/PATH/FILE.gguf, ENDPOINT being
 * $CONFAB_HF_ENDPOINT or https://huggingface.co) or an http(s) URL whose
 * last path segment is the file name. The download goes to FILE.gguf.part
 * beside the final name, resumes from there with an HTTP Range request, is
 * checked (size, sha256 when known, GGUF header) and only then renamed to
 * FILE.gguf. The rules are written out at the top of pull.c.
 */
#ifndef CONFAB_APP_PULL_H
#define CONFAB_APP_PULL_H

#include "base/err.h"
#include "base/sb.h"

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* One progress report. */
typedef struct {
    const char *file;      /* file name being downloaded */
    uint64_t done;         /* bytes in the .part file so far (resumed ones included) */
    int64_t total;         /* full size, or -1 while unknown */
    uint64_t resumed_from; /* bytes that were already there when this attempt began */
    double rate;           /* bytes per second over this attempt, 0 while unknown */
    double eta_s;          /* seconds left, or -1 while unknown */
    bool finished;         /* last report of a successful transfer */
} pull_progress;

/* Called from the downloading thread, at most a few times a second and once
 * with finished = true. */
typedef void (*pull_progress_fn)(void *ctx, const pull_progress *p);

typedef struct {
    const char *models_dir; /* destination directory, created when missing (required) */
    /* -o NAME: the final file name (".gguf" added when missing); NULL = from the source */
    const char *out_name;
    /* expected digest, 64 hex digits; NULL = only what the server publishes */
    const char *sha256;
    const char *hf_endpoint;   /* NULL = $CONFAB_HF_ENDPOINT, else https://huggingface.co */
    long connect_timeout_ms;   /* 0 = 15000 */
    long low_speed_time_s;     /* abort when under 1 KiB/s for this long; 0 = 30 */
    pull_progress_fn progress; /* may be NULL */
    void *progress_ctx;
    /* non-zero stops the transfer (the .part stays); may be NULL */
    const volatile sig_atomic_t *cancel;
} pull_opts;

typedef struct {
    char *path;      /* final path (malloc'd) */
    char *url;       /* URL fetched (malloc'd) */
    uint64_t size;   /* bytes */
    char sha256[65]; /* lowercase hex of the file */
    /* what the file was checked against: "--sha256", "X-Linked-Etag", "Digest",
     * "Repr-Digest", "ETag", or NULL when nothing was published */
    const char *digest_source;
    uint64_t resumed_from; /* bytes reused from an earlier .part (0 = fresh) */
    bool restarted;        /* a .part was there but the server could not resume it,
                              so the file was fetched from the start */
    bool already_present;  /* the final file existed; nothing was downloaded */
} pull_result;

/* Turns SOURCE into the URL to fetch and the file name it is saved as.
 * HF_ENDPOINT as in pull_opts. *URL and *NAME are malloc'd. Errors
 * (CF_EINVAL): unknown scheme, a malformed hf: reference, a name that is
 * not a plain file name ending in .gguf. */
int pull_parse_source(const char *source, const char *hf_endpoint, char **url, char **name,
                      cf_err *err);

/* Downloads SOURCE by the rules in pull.c. Returns 0 with *RES filled (free
 * with pull_result_free), or a negative CF_E* with ERR set:
 *   CF_ENOTFOUND  HTTP 404 ("not found: URL")
 *   CF_EUPSTREAM  another HTTP error status
 *   CF_EIO        network or file error (named); the .part is kept for resume
 *   CF_ETIMEOUT   connect or low-speed timeout; the .part is kept
 *   CF_EFORMAT    sha256 mismatch or not a GGUF file; the .part is deleted
 *   CF_ECANCEL    *opts->cancel became non-zero; the .part is kept
 *   CF_EBUSY      another pull of the same file is running
 *   CF_EINVAL     bad source, name or digest
 * Nothing is ever left under the final name unless every check passed.
 * Needs curl_global_init (prov_global_init) to have run once in the process. */
int pull_model(const char *source, const pull_opts *opts, pull_result *res, cf_err *err);
void pull_result_free(pull_result *res);

/* Appends a one-line rendering of P to OUT: for a terminal (TTY) a bar
 * "[#####.....]  45.2 MiB / 138.0 MiB  12.3 MiB/s  ETA 0:08", otherwise
 * "45.2 MiB of 138.0 MiB (33%), 12.3 MiB/s, ETA 0:08". */
void pull_progress_render(const pull_progress *p, bool tty, sb_t *out);

/* A ready-made progress printer: on a terminal it redraws one line in
 * place up to 10 times a second; otherwise it writes a plain line at most
 * every INTERVAL_S seconds (and the last one). Init, then pass
 * pull_printer_cb with &printer as the progress context. */
typedef struct {
    FILE *f;
    bool tty;
    double interval_s;
    double last_ms;
    size_t last_len;
} pull_printer;
void pull_printer_init(pull_printer *pp, FILE *f, double interval_s);
void pull_printer_cb(void *ctx, const pull_progress *p);

#endif
