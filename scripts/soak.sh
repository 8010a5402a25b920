#!/usr/bin/env bash
# Soak run of the fault-injection test (tests/fault_injection.rs): many rounds
# of random create/stop/start/reboot/delete bursts with SIGKILLs of `nubis up`,
# then of the controller or the agent (split, on a throwaway PostgreSQL).
#
#   scripts/soak.sh              # 300 rounds per mode
#   NUBIS_FAULT_ROUNDS=1000 NUBIS_FAULT_SEED=42 scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export NUBIS_FAULT_ROUNDS=${NUBIS_FAULT_ROUNDS:-300}
# One test at a time: both boot guests under TCG on the same cores.
exec scripts/with-postgres.sh "${CARGO:-cargo}" test --test fault_injection -- \
  --test-threads=1 --nocapture
