/*
 * assets — serves the embedded web UI (see assets.h). "/" is index.html.
 * Every response carries the asset's ETag; a matching If-None-Match gets
 * 304 without a body. HTML must be revalidated on every load (no-cache) so
 * a new binary's UI shows at once; other files may be cached for an hour
 * (they are revalidated by ETag after that).
 */
#include <string.h>

#include "server/assets.h"
#include "server/internal.h"

static int h_asset(srv_req *r, void *ctx) {
    const srv_asset *a = ctx;
    bool html = !strncmp(a->mime, "text/html", 9);
    char hdr[160];
    snprintf(hdr, sizeof hdr, "ETag: %s\r\nCache-Control: %s\r\n", a->etag,
             html ? "no-cache" : "public, max-age=3600");
    const char *inm = srv_req_header(r, "If-None-Match");
    if (inm && strstr(inm, a->etag)) return srv_reply(r, 304, NULL, NULL, 0, hdr);
    return srv_reply(r, 200, a->mime, a->data, a->len, hdr);
}

void srv_asset_routes(srv_t *s) {
    for (const srv_asset *a = srv_assets; a->path; a++) {
        srv_route_add_flags(s, "GET", a->path, h_asset, (void *)a, SRV_ROUTE_PUBLIC);
        if (!strcmp(a->path, "/index.html"))
            srv_route_add_flags(s, "GET", "/", h_asset, (void *)a, SRV_ROUTE_PUBLIC);
    }
}
