#!/usr/bin/env bash
# The test command: install, build (ESM + CJS + types), lint, typecheck, then every test with node's runner.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
pnpm run build
pnpm run lint
pnpm run typecheck
node scripts/run-tests.mjs "$@"
