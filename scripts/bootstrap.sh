#!/usr/bin/env bash
# Installs what the project needs on a fresh machine with Node.js >= 20.19 and npm: pnpm, then the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
PNPM_VERSION=$(node -p "require('./package.json').packageManager.split('@')[1]")

if ! command -v node >/dev/null 2>&1; then
  echo "Node.js >= 20.19 is required (apt-get install nodejs, or see https://nodejs.org)" >&2
  exit 1
fi
if ! command -v pnpm >/dev/null 2>&1 || [ "$(pnpm --version 2>/dev/null)" != "$PNPM_VERSION" ]; then
  # corepack first; its signature check can fail on older Node releases, so fall back to npm.
  if ! (command -v corepack >/dev/null 2>&1 && COREPACK_ENABLE_DOWNLOAD_PROMPT=0 corepack enable pnpm >/dev/null 2>&1 \
        && COREPACK_ENABLE_DOWNLOAD_PROMPT=0 pnpm --version >/dev/null 2>&1); then
    command -v corepack >/dev/null 2>&1 && corepack disable pnpm >/dev/null 2>&1 || true
    npm install -g "pnpm@${PNPM_VERSION}" --no-fund --no-audit >/dev/null
  fi
fi
echo "pnpm $(pnpm --version)"
CI=true pnpm install --frozen-lockfile --reporter=append-only
