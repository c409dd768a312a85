#!/usr/bin/env bash
# Interoperability suite: builds (or reuses) SPIRE and the go-spiffe programs, then runs test/interop/*.test.ts
# with node's test runner. Needs Go and the Go module proxy; run `bash scripts/bootstrap.sh && pnpm build`
# first on a fresh checkout (scripts/test.sh does).
set -euo pipefail
cd "$(dirname "$0")/../.."
cache=$(bash test/interop/build.sh | tail -n 1)
export SPIFFE_TS_INTEROP_CACHE="$cache"
exec node --conditions=source --import tsx --test --test-reporter=spec --test-concurrency=1 test/interop/*.test.ts
