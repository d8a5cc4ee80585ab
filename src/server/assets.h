/*
 * assets — the web UI's files, embedded into the binary at build time by
 * tools/embed.sh (the generated table lives in build/gen/web_assets.c).
 */
#ifndef CONFAB_SERVER_ASSETS_H
#define CONFAB_SERVER_ASSETS_H

typedef struct {
    const char *path;          /* URL path, e.g. "/index.html" */
    const char *mime;          /* Content-Type */
    const char *etag;          /* strong ETag, quotes included */
    const unsigned char *data; /* (len,) */
    unsigned long len;
} srv_asset;

/* Terminated by a row with path == NULL. */
extern const srv_asset srv_assets[];
extern const unsigned long srv_n_assets;

#endif
