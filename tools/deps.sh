#!/usr/bin/env bash
# Installs every package confab needs to build, test and run, from Debian's
# archive (and npm for the browser/API test clients). Idempotent: packages
# already present are not touched and `apt-get update` runs at most once.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential pkg-config git ca-certificates curl
      libsqlite3-dev libjansson-dev libfyaml-dev libcurl4-openssl-dev
      libcivetweb-dev libssl-dev libpcre2-dev libedit-dev libcmocka-dev libxxhash-dev
      clang-format cppcheck)
# Node.js (with npm) only when absent: some machines carry a newer build
# that bundles npm, which Debian's separate npm package would conflict with.
command -v node >/dev/null 2>&1 || PKGS+=(nodejs)
command -v npm  >/dev/null 2>&1 || PKGS+=(npm)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "deps: all Debian packages present"
fi

# npm packages for tests (real OpenAI/WebSocket clients, browser driver),
# pinned by tests/js/package-lock.json when that folder exists.
if [ -f tests/js/package.json ]; then
  if command -v npm >/dev/null 2>&1; then
    (cd tests/js && if [ -f package-lock.json ]; then npm ci --no-audit --no-fund --silent; else npm install --no-audit --no-fund --silent; fi)
  else
    echo "deps: npm not found; JavaScript client tests will be skipped" >&2
  fi
fi
