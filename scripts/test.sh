#!/usr/bin/env bash
# The test command: install, build (ESM + CJS + types), check the packed packages, the README snippets and the
# API docs, lint, typecheck, type tests (tstyche), then every test with node's runner.
# Lint and typecheck failures fail the run too, but the tests still run so their summary is the last thing printed.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh || exit 1
source scripts/env.sh
bash test/security/setup-python.sh || exit 1
pnpm run build || exit 1
checks=0
node scripts/check-packages.mjs || checks=1   # packed tarballs: publint + Are The Types Wrong
node scripts/check-snippets.mjs || checks=1   # every ts block of the READMEs compiles against dist
node scripts/docs.mjs || checks=1   # API reference (TypeDoc): broken links, other warnings and undocumented exports fail
pnpm run lint || checks=1
node scripts/api-report.mjs || checks=1   # public API == packages/*/etc/*.api.md
pnpm run typecheck || checks=1
pnpm exec tstyche || checks=1   # type tests: test/types/*.tst.ts (before node's runner, whose summary ends the output)
node scripts/run-tests.mjs "$@"
tests=$?
if [ "$checks" -ne 0 ]; then echo "package checks, README snippets, API docs, lint, API report, typecheck or type tests failed (see above)" >&2; fi
[ "$tests" -eq 0 ] && [ "$checks" -eq 0 ]
