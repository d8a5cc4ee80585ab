/*
 * routing — builds the providers' router from the configuration.
 *
 * The router (src/providers/router.h) borrows plain prov_model_cfg structs;
 * this module makes them from cfg_t's models and keeps them alive as long as
 * the router. A model whose api_key named an unset environment variable is
 * marked unavailable with a reason naming the variable, so using it fails
 * with that message (and falls back) instead of an upstream 401.
 */
#ifndef CONFAB_APP_ROUTING_H
#define CONFAB_APP_ROUTING_H

#include "app/config.h"
#include "base/err.h"
#include "providers/io.h"
#include "providers/router.h"

typedef struct app_routing app_routing;

/* Builds the router for CFG (which must outlive the result). IO may be NULL
 * (the router then owns its I/O thread). NULL with ERR set on failure. */
app_routing *app_routing_new(const cfg_t *cfg, prov_io *io, cf_err *err);
void app_routing_free(app_routing *a);

/* The router (owned by A). */
route_router *app_routing_router(app_routing *a);

/* Converts one configured model into the providers' struct. Strings are
 * borrowed from M. Returns CF_ERANGE when a list exceeds the providers'
 * fixed limits (fallbacks, headers). */
int app_model_to_prov(const cfg_model *m, prov_model_cfg *out, cf_err *err);

#endif
