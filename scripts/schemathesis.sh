#!/usr/bin/env bash
# Property-based test of the REST API against its own OpenAPI document, with
# schemathesis (from PyPI, pinned, in a venv under target/).
#
#   scripts/schemathesis.sh BASE_URL [schemathesis run options...]
#
# BASE_URL is a running Nubis (e.g. http://127.0.0.1:8780); the document is
# read from BASE_URL/v1/openapi.json. NUBIS_TOKEN, when set, is sent as the
# bearer token. SCHEMATHESIS_MAX_EXAMPLES bounds the examples generated per
# operation (default 25), so a run takes minutes, not hours.
#
# The venv is created on first use (target/schemathesis-venv) and re-created
# when the pinned version changes. It needs python3 with the venv module and
# pip (Debian: python3-venv, python3-pip; scripts/install-deps.sh installs them).
# Exits with schemathesis' status: non-zero on any failed check.
set -euo pipefail

SCHEMATHESIS_VERSION=4.32.5

cd "$(dirname "$0")/.."
VENV=${SCHEMATHESIS_VENV:-$PWD/target/schemathesis-venv}
PYTHON=${PYTHON:-python3}

log() { echo "schemathesis.sh: $*" >&2; }

if [ $# -lt 1 ]; then
  log "usage: $0 BASE_URL [schemathesis run options...]"
  exit 2
fi
base_url=$1
shift

ensure_venv() {
  local stamp=$VENV/.nubis-schemathesis-version
  if [ -x "$VENV/bin/st" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$SCHEMATHESIS_VERSION" ]; then
    return
  fi
  log "creating $VENV with schemathesis $SCHEMATHESIS_VERSION"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV" || {
    log "'$PYTHON -m venv' failed: install python3-venv (scripts/install-deps.sh)"
    exit 3
  }
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "schemathesis==$SCHEMATHESIS_VERSION" || {
    log "pip could not install schemathesis $SCHEMATHESIS_VERSION"
    exit 3
  }
  echo "$SCHEMATHESIS_VERSION" >"$stamp"
}

ensure_venv

auth=()
if [ -n "${NUBIS_TOKEN:-}" ]; then
  auth=(--header "Authorization: Bearer $NUBIS_TOKEN")
fi

# No telemetry, no network beyond the API under test. The hooks drop bodies
# that break the cross-field rules JSON Schema cannot state.
export SCHEMATHESIS_TELEMETRY=false
export SCHEMATHESIS_HOOKS=$PWD/scripts/schemathesis_hooks.py

exec "$VENV/bin/st" --config-file "$PWD/scripts/schemathesis.toml" --no-color \
  run "$base_url/v1/openapi.json" \
  --url "$base_url" \
  "${auth[@]}" \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-25}" \
  --seed "${SCHEMATHESIS_SEED:-9}" \
  --workers 1 \
  "$@"
