# confab — multi-stage image on Debian 12.
#
#   docker build -t confab .
#   docker run -p 8080:8080 -v confab-data:/data -v $PWD/models:/models \
#     -e CONFAB_API_KEY=... confab
#
# The build stage installs the toolchain and libraries with the project's
# own `make deps` and builds build/confab. The runtime stage has only the
# shared libraries the binary links against, runs as an unprivileged user,
# and keeps conversations in /data and GGUF files in /models (volumes).
# Listening on 0.0.0.0 requires API keys: mount a config that lists
# server.api_keys (plaintext or "sha256:<hex>"), e.g. with
#   -v $PWD/confab.yaml:/etc/confab/confab.yaml:ro
# (the CMD reads /etc/confab/confab.yaml; the image's default config takes
# its one key from $CONFAB_API_KEY).

FROM debian:12 AS build
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends make ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so editing sources does not reinstall them.
COPY tools/deps.sh tools/deps.sh
COPY Makefile VERSION ./
RUN make deps && rm -rf /var/lib/apt/lists/*
COPY . .
RUN make -j"$(nproc)" && strip build/confab && build/confab version

FROM debian:12-slim AS runtime
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends \
      libsqlite3-0 libjansson4 libfyaml0 libcurl4 libpcre2-8-0 libedit2 libxxhash0 \
      libcivetweb1 libssl3 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 confab \
 && useradd --system --uid 10001 --gid confab --home-dir /data --shell /usr/sbin/nologin confab \
 && mkdir -p /data /models /etc/confab \
 && chown confab:confab /data /models
COPY --from=build /src/build/confab /usr/local/bin/confab
COPY --from=build /src/confab.example.yaml /usr/share/doc/confab/confab.example.yaml
# A minimal default config: listen on all interfaces of the container with
# one API key from the environment; storage under /data, models in /models.
RUN printf '%s\n' \
      'server:' \
      '  host: 0.0.0.0' \
      '  port: 8080' \
      '  api_keys: ["${CONFAB_API_KEY}"]' \
      'storage:' \
      '  data_dir: /data' \
      '  models_dir: /models' \
      > /etc/confab/confab.yaml
USER confab
WORKDIR /data
VOLUME ["/data", "/models"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
STOPSIGNAL SIGTERM
CMD ["confab", "serve", "--config", "/etc/confab/confab.yaml", "--host", "0.0.0.0", "--port", "8080", "--data", "/data"]
