#!/usr/bin/env bash
# Builds (once, then cached) spiffe-helper at a pinned release, for the parity test of `spiffe-ts helper`
# (spiffe-helper.test.ts). Prints the binary's path on its last line.
#
# `go install github.com/spiffe/spiffe-helper/cmd/spiffe-helper@v0.11.0` is refused (its go.mod has replace
# directives), so: `go mod download` the module source and build from a writable copy of it.
set -euo pipefail
VERSION=${SPIFFE_HELPER_VERSION:-v0.11.0}
CACHE=${SPIFFE_TS_INTEROP_CACHE:-$HOME/.cache/spiffe-ts-interop}
export GOFLAGS=${GOFLAGS:--mod=mod}
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
command -v go >/dev/null || { echo "building spiffe-helper needs Go on PATH" >&2; exit 1; }
out="$CACHE/spiffe-helper-$VERSION/spiffe-helper"
if [ ! -x "$out" ]; then
  echo "building spiffe-helper $VERSION (first run only)..." >&2
  mkdir -p "$(dirname "$out")"
  go mod download "github.com/spiffe/spiffe-helper@$VERSION"
  src="$(go env GOMODCACHE)/github.com/spiffe/spiffe-helper@$VERSION"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  cp -r "$src" "$work/src" && chmod -R u+w "$work/src"
  (cd "$work/src" && go build -trimpath -o "$out.tmp" ./cmd/spiffe-helper)
  mv "$out.tmp" "$out"
fi
echo "$out"
