#!/usr/bin/env bash
# The demo: installs what it needs, builds, then runs examples/fastify-mtls end to end on the embedded
# local development Workload API (no SPIRE needed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh >/dev/null
source scripts/env.sh
pnpm run build >/dev/null
pnpm --silent --filter fastify-mtls-example run demo
