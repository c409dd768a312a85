# Sourced by the project's scripts after bootstrap.sh: the project's own pnpm (.cache/bin) comes first on PATH.
export PATH="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.cache/bin:$PATH"
