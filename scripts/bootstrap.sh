#!/usr/bin/env bash
# Installs what the project needs on a fresh machine with Node.js >= 20.19 and npm: pnpm (the version in
# package.json's packageManager), then the workspace. Nothing is installed globally: pnpm comes from the
# machine (if it is that version), from corepack (cached in the user's cache), or from the npm registry into
# .cache/pnpm in this checkout. .cache/bin/pnpm then runs it; scripts/env.sh puts .cache/bin on PATH.
# Safe to run twice at once (a lock in .cache) and as a normal user.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if ! command -v node >/dev/null 2>&1; then
  echo "Node.js >= 20.19 is required and was not found (apt-get install nodejs, or https://nodejs.org)" >&2
  exit 1
fi
if ! node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>20||(a===20&&b>=19)?0:1)'; then
  echo "Node.js >= 20.19 is required; this is $(node --version) (install a newer Node.js, e.g. from https://nodejs.org)" >&2
  exit 1
fi
PNPM_VERSION=$(node -p "require('./package.json').packageManager.split('@')[1]")

mkdir -p .cache/bin
exec 9>.cache/bootstrap.lock
command -v flock >/dev/null 2>&1 && flock 9

shim=.cache/bin/pnpm
write_shim() { printf '#!/usr/bin/env bash\nexec %s "$@"\n' "$1" >"$shim.tmp" && chmod +x "$shim.tmp" && mv "$shim.tmp" "$shim"; }
if [ ! -x "$shim" ] || [ "$("$shim" --version 2>/dev/null)" != "$PNPM_VERSION" ]; then
  system=$(PATH=$(echo "$PATH" | tr ':' '\n' | grep -vx "$root/.cache/bin" | paste -sd:) command -v pnpm || true)
  if [ -n "$system" ] && [ "$("$system" --version 2>/dev/null)" = "$PNPM_VERSION" ]; then
    write_shim "'$system'"
  elif command -v corepack >/dev/null 2>&1 &&
    COREPACK_ENABLE_DOWNLOAD_PROMPT=0 corepack "pnpm@$PNPM_VERSION" --version >/dev/null 2>&1; then
    write_shim "env COREPACK_ENABLE_DOWNLOAD_PROMPT=0 '$(command -v corepack)' pnpm@$PNPM_VERSION"
  else
    # corepack's signature check fails on some Node releases: a project-local pnpm from the npm registry.
    npm install --prefix "$root/.cache/pnpm" --no-save --no-fund --no-audit --loglevel=error "pnpm@$PNPM_VERSION" >/dev/null
    write_shim "'$root/.cache/pnpm/node_modules/.bin/pnpm'"
  fi
fi
echo "pnpm $("$shim" --version)"
CI=true "$shim" install --frozen-lockfile --reporter=append-only
