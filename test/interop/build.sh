#!/usr/bin/env bash
# Builds (once, then cached) the real SPIFFE software the interoperability suite runs against:
# SPIRE server and agent at a pinned release from the Go module proxy, and the go-spiffe programs in ./go.
# Prints the cache directory on its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
SPIRE_VERSION=${SPIRE_VERSION:-v1.13.3}
CACHE=${SPIFFE_TS_INTEROP_CACHE:-$HOME/.cache/spiffe-ts-interop}
export GOFLAGS=${GOFLAGS:--mod=mod}
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
mkdir -p "$CACHE"
command -v go >/dev/null || { echo "the interoperability suite needs Go (1.24 or newer) on PATH" >&2; exit 1; }

spire_bin="$CACHE/spire-$SPIRE_VERSION/bin"
if [ ! -x "$spire_bin/spire-server" ] || [ ! -x "$spire_bin/spire-agent" ]; then
  echo "building SPIRE $SPIRE_VERSION (first run only; several minutes)..." >&2
  start=$(date +%s)
  go mod download "github.com/spiffe/spire@$SPIRE_VERSION"
  src=$(go list -m -f '{{.Dir}}' "github.com/spiffe/spire@$SPIRE_VERSION" 2>/dev/null || true)
  [ -n "$src" ] || src="$(go env GOMODCACHE)/github.com/spiffe/spire@$SPIRE_VERSION"
  # SPIRE's go.mod has replace directives, so `go install pkg@version` refuses it: build from a copy.
  work=$(mktemp -d)
  cp -r "$src" "$work/spire" && chmod -R u+w "$work/spire"
  mkdir -p "$spire_bin.tmp"
  (cd "$work/spire" && go build -trimpath -o "$spire_bin.tmp/" ./cmd/spire-server ./cmd/spire-agent)
  rm -rf "$spire_bin" && mv "$spire_bin.tmp" "$spire_bin" && rm -rf "$work"
  echo "built SPIRE $SPIRE_VERSION in $(( $(date +%s) - start ))s" >&2
fi

# The Go programs are rebuilt whenever their sources change (the cache key is a hash of them).
key=$(cat "$here"/go/go.mod "$here"/go/go.sum "$here"/go/*/*.go 2>/dev/null | sha256sum | cut -c1-16)
go_bin="$CACHE/go-bin/$key"
if [ ! -x "$go_bin/fetch" ]; then
  echo "building go-spiffe programs..." >&2
  mkdir -p "$go_bin.tmp"
  (cd "$here/go" && go build -trimpath -o "$go_bin.tmp/" ./mtls-server ./mtls-client ./fetch)
  rm -rf "$go_bin" && mv "$go_bin.tmp" "$go_bin"
fi
ln -sfn "$spire_bin" "$CACHE/spire-bin"
ln -sfn "$go_bin" "$CACHE/go-bin-current"
echo "$CACHE"
