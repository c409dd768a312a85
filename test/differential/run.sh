#!/usr/bin/env bash
# Differential suite against go-spiffe: builds (once, then cached) the go-spiffe verdict program in ./go from
# the Go module proxy, then runs run.ts, which generates the cases, compares both verdicts and prints
# `differential: N passed, N failed`. Needs Go and `pnpm install` (no build: @spiffe-ts/core is loaded from
# source through the `source` export condition).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
CACHE=${SPIFFE_TS_INTEROP_CACHE:-$HOME/.cache/spiffe-ts-interop}
export GOFLAGS=${GOFLAGS:--mod=mod}
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
command -v go >/dev/null || { echo "the differential suite needs Go (1.24 or newer) on PATH" >&2; exit 1; }

# Rebuilt whenever the program or its module pins change (the cache key is a hash of them).
key=$(cat "$here"/go/go.mod "$here"/go/go.sum "$here"/go/*.go | sha256sum | cut -c1-16)
bin="$CACHE/differential-bin/$key/verdict"
if [ ! -x "$bin" ]; then
  echo "building the go-spiffe verdict program..." >&2
  mkdir -p "$(dirname "$bin").tmp"
  (cd "$here/go" && go build -trimpath -o "$(dirname "$bin").tmp/verdict" .)
  rm -rf "$(dirname "$bin")" && mv "$(dirname "$bin").tmp" "$(dirname "$bin")"
fi
exec node --conditions=source --import tsx "$here/run.ts" "$bin"
