#!/usr/bin/env bash
# Builds (once, then cached) the real SPIFFE software the interoperability suite runs against:
# SPIRE server and agent at pinned releases from the Go module proxy, and the go-spiffe programs in ./go.
# Prints the cache directory on its last line.
#
# SPIRE versions: SPIRE_VERSIONS (space-separated, newest first; default below), or SPIRE_VERSION for just one.
# The newest is the newest release whose module source the proxy serves here (v1.15.3; v1.16.0 is listed but
# its zip is refused), the oldest is v1.13.3, the first release the suite was written against.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
SPIRE_VERSIONS=${SPIRE_VERSIONS:-${SPIRE_VERSION:-v1.15.3 v1.13.3}}
CACHE=${SPIFFE_TS_INTEROP_CACHE:-$HOME/.cache/spiffe-ts-interop}
export GOFLAGS=${GOFLAGS:--mod=mod}
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
mkdir -p "$CACHE"
command -v go >/dev/null || { echo "the interoperability suite needs Go (1.26 or newer) on PATH" >&2; exit 1; }

# Builds SPIRE $1 into $CACHE/spire-$1/bin unless it is there.
#
# `go install github.com/spiffe/spire/cmd/...@version` does not work: SPIRE's go.mod has replace directives,
# and the proxy refuses SPIRE's version list. So: `go mod download` the module source, build from a copy.
#
# The one patch: the EJBCA UpstreamAuthority plugin is left out of the server's plugin catalog. From SPIRE
# v1.15 it needs github.com/Keyfactor/ejbca-go-client-sdk v1.1.0, which the module proxy refuses to serve;
# without the plugin's import nothing needs that module. The suite does not use an UpstreamAuthority (the
# server is its own root CA), so nothing tested changes. The same patch is applied to every version, so all
# are built the same way.
build_spire() {
  local version=$1 spire_bin="$CACHE/spire-$1/bin"
  if [ -x "$spire_bin/spire-server" ] && [ -x "$spire_bin/spire-agent" ]; then return; fi
  echo "building SPIRE $version (first run only; several minutes)..." >&2
  local start src work catalog
  start=$(date +%s)
  go mod download "github.com/spiffe/spire@$version"
  src=$(go list -m -f '{{.Dir}}' "github.com/spiffe/spire@$version" 2>/dev/null || true)
  [ -n "$src" ] || src="$(go env GOMODCACHE)/github.com/spiffe/spire@$version"
  work=$(mktemp -d)
  cp -r "$src" "$work/spire" && chmod -R u+w "$work/spire"
  catalog="$work/spire/pkg/server/catalog/upstreamauthority.go"
  # Patch (see above): drop the ejbca import and its BuiltIn() entry from the UpstreamAuthority catalog.
  sed -i -e '\#"github.com/spiffe/spire/pkg/server/plugin/upstreamauthority/ejbca"#d' -e '/ejbca\.BuiltIn(),/d' "$catalog"
  if grep -q ejbca "$catalog"; then
    echo "SPIRE $version: could not take the EJBCA plugin out of $catalog" >&2
    exit 1
  fi
  rm -rf "$spire_bin.tmp" && mkdir -p "$spire_bin.tmp"
  (cd "$work/spire" && go build -trimpath -o "$spire_bin.tmp/" ./cmd/spire-server ./cmd/spire-agent)
  rm -rf "$spire_bin" && mv "$spire_bin.tmp" "$spire_bin" && rm -rf "$work"
  echo "built SPIRE $version in $(( $(date +%s) - start ))s" >&2
}

for v in $SPIRE_VERSIONS; do build_spire "$v"; done

# The Go programs are rebuilt whenever their sources change (the cache key is a hash of them).
programs=(mtls-server mtls-client fetch federation)
key=$(cat "$here"/go/go.mod "$here"/go/go.sum "$here"/go/*/*.go 2>/dev/null | sha256sum | cut -c1-16)
go_bin="$CACHE/go-bin/$key"
if [ ! -x "$go_bin/federation" ]; then
  echo "building go-spiffe programs..." >&2
  rm -rf "$go_bin.tmp" && mkdir -p "$go_bin.tmp"
  (cd "$here/go" && go build -trimpath -o "$go_bin.tmp/" "${programs[@]/#/./}")
  rm -rf "$go_bin" && mv "$go_bin.tmp" "$go_bin"
fi
# spire-bin: the newest version (the first listed), for tools that take one SPIRE.
set -- $SPIRE_VERSIONS
ln -sfn "$CACHE/spire-$1/bin" "$CACHE/spire-bin"
ln -sfn "$go_bin" "$CACHE/go-bin-current"
echo "$SPIRE_VERSIONS" > "$CACHE/spire-versions"
echo "$CACHE"
