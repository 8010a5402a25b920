#!/usr/bin/env bash
# The OpenStack clients from PyPI, as users install them: the newest
# python-openstackclient and openstacksdk in a venv under target/
# (target/os-venv). Debian's python3-openstackclient is the other client
# the tests run (scripts/install-deps.sh installs it).
#
#   scripts/openstack-venv.sh            set the venv up if it is missing
#   scripts/openstack-venv.sh --upgrade  bring it to the newest releases
#
# Run it outside any network namespace: a test's namespace has no route to
# PyPI (tests/openstack_cli.rs runs it first). Prints the venv's `openstack`.
# Needs python3 with venv and pip (Debian: python3-venv, python3-pip).
# Exits 69 when the venv cannot be set up (no venv module, no pip, no PyPI).
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=${NUBIS_OS_VENV:-$PWD/target/os-venv}
PYTHON=${PYTHON:-python3}
PACKAGES=(python-openstackclient openstacksdk)

log() { echo "openstack-venv.sh: $*" >&2; }

upgrade=()
case "${1:-}" in
  --upgrade) upgrade=(--upgrade) ;;
  "") ;;
  *) log "usage: $0 [--upgrade]"; exit 2 ;;
esac

if [ ! -x "$VENV/bin/openstack" ] || [ ${#upgrade[@]} -gt 0 ]; then
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    "$PYTHON" -m venv "$VENV" || {
      log "'$PYTHON -m venv' failed: install python3-venv (scripts/install-deps.sh)"
      exit 69
    }
  fi
  log "installing the newest ${PACKAGES[*]}"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "${upgrade[@]}" "${PACKAGES[@]}" || {
    log "pip could not install ${PACKAGES[*]}"
    exit 69
  }
fi
"$VENV/bin/openstack" --version >&2 || {
  log "$VENV/bin/openstack does not run"
  exit 69
}
echo "$VENV/bin/openstack"
