/*
 * remote — the backends that talk to cloud (or self-hosted) HTTP APIs:
 * "openai" (any OpenAI-compatible server by base_url), "anthropic" (the
 * Messages API) and "cohere" (the v2 chat API). All three run on one shared
 * prov_io thread and implement the prov_backend vtable.
 */
#ifndef CONFAB_PROVIDERS_REMOTE_H
#define CONFAB_PROVIDERS_REMOTE_H

#include "providers/io.h"
#include "providers/provider.h"

/* A backend speaking wire format KIND ("openai", "anthropic" or "cohere")
 * through IO, which must outlive it. Free with prov_remote_free(). NULL with
 * CF_ENOTFOUND for an unknown kind. */
prov_backend *prov_remote_new(prov_io *io, const char *kind, cf_err *err);
void prov_remote_free(prov_backend *b);
/* True when KIND names a remote wire format. */
bool prov_remote_known(const char *kind);

#endif
