#!/usr/bin/env bash
# Property-based test of the REST API against its own OpenAPI document, with
# schemathesis (from PyPI, pinned, in a venv under target/).
#
#   scripts/schemathesis.sh BASE_URL [schemathesis run options...]
#   scripts/schemathesis.sh --install     (only set up the venv)
#
# Install first, outside any network namespace: a test's namespace has no
# route to PyPI (`make test` and tests/api_contract.rs both do).
#
# BASE_URL is a running Nubis (e.g. http://127.0.0.1:8780); the document is
# read from BASE_URL/v1/openapi.json. NUBIS_TOKEN, when set, is sent as the
# bearer token. SCHEMATHESIS_MAX_EXAMPLES bounds the examples generated per
# operation (default 20), so a run takes minutes, not hours.
#
# The venv is created on first use (target/schemathesis-venv) and re-created
# when the pinned version changes. It needs python3 with the venv module and
# pip (Debian: python3-venv, python3-pip; scripts/install-deps.sh installs them).
# Exits with schemathesis' status (non-zero on any failed check), or 69 when
# the venv cannot be set up (no python3-venv, no pip, no PyPI).
set -euo pipefail

SCHEMATHESIS_VERSION=4.32.5

cd "$(dirname "$0")/.."
VENV=${SCHEMATHESIS_VENV:-$PWD/target/schemathesis-venv}
PYTHON=${PYTHON:-python3}

log() { echo "schemathesis.sh: $*" >&2; }

if [ $# -lt 1 ]; then
  log "usage: $0 BASE_URL [schemathesis run options...] | $0 --install"
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
    exit 69
  }
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "schemathesis==$SCHEMATHESIS_VERSION" || {
    log "pip could not install schemathesis $SCHEMATHESIS_VERSION"
    exit 69
  }
  echo "$SCHEMATHESIS_VERSION" >"$stamp"
}

ensure_venv
[ "$base_url" != --install ] || exit 0

auth=()
if [ -n "${NUBIS_TOKEN:-}" ]; then
  auth=(--header "Authorization: Bearer $NUBIS_TOKEN")
fi

# No telemetry, no network beyond the API under test. The hooks drop bodies
# that break the cross-field rules JSON Schema cannot state.
export SCHEMATHESIS_TELEMETRY=false
export SCHEMATHESIS_HOOKS=$PWD/scripts/schemathesis_hooks.py
config=$PWD/scripts/schemathesis.toml

# Checks: no 5xx; every status, content type and body as documented; and no
# schema-valid request refused as malformed (see schemathesis.toml).
# Phases: explicit examples, the schema's boundary values (coverage) and
# random fuzzing, a bounded number of cases each. Not the stateful phase: it
# chains operations (create an image, upload bytes, boot a server from it),
# which boots VMs under TCG for minutes and tests QEMU, not the contract.
# Not DELETE /v1/tokens/current (logout): it would revoke the very token the
# run authenticates with, and every later request would get a 401.
# schemathesis keeps a cache (.schemathesis/) in its working directory.
repo=$PWD
mkdir -p "$repo/target/schemathesis-run"
cd "$repo/target/schemathesis-run"
exec "$VENV/bin/st" --config-file "$config" --no-color \
  run "$base_url/v1/openapi.json" \
  --url "$base_url" \
  "${auth[@]}" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,positive_data_acceptance \
  --phases examples,coverage,fuzzing \
  --exclude-path /v1/tokens/current \
  --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-20}" \
  --seed "${SCHEMATHESIS_SEED:-9}" \
  --workers 1 \
  "$@"
