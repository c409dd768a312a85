#!/usr/bin/env bash
# Interoperability suite: builds (or reuses) SPIRE and the go-spiffe programs, then runs test/interop/*.test.ts
# with node's test runner. The SPIRE tests run once per SPIRE version build.sh built (SPIRE_VERSIONS, newest
# first). Needs Go and the Go module proxy; run `bash scripts/bootstrap.sh && pnpm build` first on a fresh
# checkout (scripts/test.sh does).
set -euo pipefail
cd "$(dirname "$0")/../.."
cache=$(bash test/interop/build.sh | tail -n 1)
export SPIFFE_TS_INTEROP_CACHE="$cache"
SPIRE_VERSIONS=$(cat "$cache/spire-versions")
export SPIRE_VERSIONS
exec node --conditions=source --import tsx --test --test-reporter=spec --test-concurrency=1 test/interop/*.test.ts
