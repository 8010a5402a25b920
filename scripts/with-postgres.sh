#!/usr/bin/env bash
# Runs a command beside a throwaway PostgreSQL 15 server.
#
#   scripts/with-postgres.sh CMD ARGS...
#
# Starts a fresh cluster in a temporary directory, listening on 127.0.0.1 (on a
# free port) and on a unix socket inside that directory, and runs CMD with
#
#   NUBIS_TEST_DATABASE_URL=postgres://nubis:nubis@127.0.0.1:PORT/nubis_test
#
# exported. The role `nubis` may create databases (the store tests make one per
# test). On exit, also on failure or Ctrl-C, the server is stopped and its
# directory removed; the script exits with CMD's status. Clusters left behind
# by a run that was killed outright (SIGKILL) are cleaned up by the next run.
#
# The cluster trades durability for speed (fsync off): it is for tests only.
# PostgreSQL refuses to run as root, so as root the server runs as `postgres`.
set -euo pipefail

PG_VERSION=15
PG_BIN=${PG_BIN:-/usr/lib/postgresql/$PG_VERSION/bin}
DB_USER=nubis
DB_PASSWORD=nubis
DB_NAME=nubis_test
DIR_PREFIX=nubis-pg.
TMP_ROOT=/tmp

log() { echo "with-postgres: $*" >&2; }
die() {
  log "$*"
  exit 1
}

[[ $# -ge 1 ]] || die "usage: $0 CMD [ARGS...]"

# --- PostgreSQL binaries ----------------------------------------------------

if [[ ! -x $PG_BIN/initdb ]]; then
  [[ $EUID -eq 0 ]] || die "$PG_BIN/initdb is missing; install postgresql-$PG_VERSION (needs root)"
  log "installing postgresql"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -q postgresql >&2; then
    apt-get update -q >&2
    apt-get install -y -q postgresql >&2
  fi
  [[ -x $PG_BIN/initdb ]] || die "postgresql is installed but $PG_BIN/initdb is missing"
fi

# As root, everything touching the cluster runs as `postgres`; otherwise as
# the caller. Commands run from the cluster directory, which that user can read.
if [[ $EUID -eq 0 ]]; then
  id -u postgres >/dev/null 2>&1 || die "user 'postgres' does not exist (reinstall postgresql)"
  PG_OWNER=postgres
else
  PG_OWNER=$(id -un)
fi
as_pg() {
  if [[ $EUID -eq 0 ]]; then
    (cd "$WORK" && runuser -u postgres -- "$@")
  else
    (cd "$WORK" && "$@")
  fi
}

# --- Leftovers of killed runs --------------------------------------------------

# "PID STARTTIME" of a live (not zombie) process, or nothing. The start time
# (field 22 of /proc/PID/stat) tells a reused pid from the original process.
process_identity() {
  local stat rest fields
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  rest=${stat##*) } # fields from 3 on; the command name may contain spaces
  read -r -a fields <<<"$rest"
  [[ ${fields[0]} != Z && ${fields[0]} != X ]] || return 0
  echo "$1 ${fields[19]}"
}

# Each cluster directory holds owner, the identity of the script that made it.
# When that process is gone, stop whatever server still runs there and remove it.
cleanup_stale() {
  local d owner pid pm
  for d in "$TMP_ROOT/$DIR_PREFIX"*; do
    [[ -d $d ]] || continue
    owner=$(cat "$d/owner" 2>/dev/null || true)
    pid=${owner%% *}
    if [[ $pid =~ ^[0-9]+$ && "$(process_identity "$pid")" == "$owner" ]]; then
      continue # another run in progress
    fi
    if [[ -z $owner && -n $(find "$d" -maxdepth 0 -mmin -1 2>/dev/null) ]]; then
      continue # just made by another run that has not written its owner yet
    fi
    if [[ -f $d/data/postmaster.pid ]]; then
      pm=$(head -n1 "$d/data/postmaster.pid" 2>/dev/null || true)
      if [[ $pm =~ ^[0-9]+$ ]] && kill -0 "$pm" 2>/dev/null; then
        log "stopping the leftover server of a killed run in $d"
        WORK=$d as_pg "$PG_BIN/pg_ctl" -D "$d/data" -m immediate -w -t 10 stop >/dev/null 2>&1 ||
          kill -KILL "$pm" 2>/dev/null || true
      fi
    fi
    rm -rf -- "$d" 2>/dev/null || log "cannot remove leftover $d"
  done
}
cleanup_stale

# --- The cluster ---------------------------------------------------------------

WORK=$(mktemp -d "$TMP_ROOT/${DIR_PREFIX}XXXXXX")
process_identity $$ >"$WORK/owner"
chmod 755 "$WORK"
DATA=$WORK/data
STARTED=0

# shellcheck disable=SC2317 # only reached through the traps below
cleanup() {
  local status=$?
  trap - EXIT INT TERM HUP
  if [[ $STARTED -eq 1 ]]; then
    as_pg "$PG_BIN/pg_ctl" -D "$DATA" -m fast -w -t 20 stop >/dev/null 2>&1 ||
      as_pg "$PG_BIN/pg_ctl" -D "$DATA" -m immediate -w -t 10 stop >/dev/null 2>&1 ||
      log "could not stop the server in $WORK"
  fi
  rm -rf -- "$WORK"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

[[ $PG_OWNER == "$(id -un)" ]] || chown "$PG_OWNER": "$WORK"

PWFILE=$WORK/pwfile
echo "$DB_PASSWORD" >"$PWFILE"
[[ $PG_OWNER == "$(id -un)" ]] || chown "$PG_OWNER": "$PWFILE"
as_pg "$PG_BIN/initdb" -D "$DATA" -U postgres --pwfile="$PWFILE" -E UTF8 --locale=C \
  --auth-local=trust --auth-host=scram-sha-256 --no-sync >"$WORK/initdb.log" 2>&1 ||
  {
    cat "$WORK/initdb.log" >&2
    die "initdb failed"
  }
rm -f "$PWFILE"

# Only this machine, only over the socket in $WORK or 127.0.0.1 with a password.
cat >"$DATA/pg_hba.conf" <<'EOF'
local all all                trust
host  all all 127.0.0.1/32   scram-sha-256
EOF

cat >>"$DATA/postgresql.conf" <<EOF

# with-postgres.sh: a throwaway test cluster
listen_addresses = '127.0.0.1'
unix_socket_directories = '$WORK'
max_connections = 300
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = minimal
max_wal_senders = 0
checkpoint_timeout = 30min
max_wal_size = 4GB
autovacuum = off
log_min_messages = warning
log_min_error_statement = panic
EOF

# A free port: ask the kernel for one, else probe upward from 55432. Another
# process may take it before the server binds, so a failed start tries again.
free_port() {
  local p
  if command -v python3 >/dev/null 2>&1 &&
    p=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null); then
    echo "$p"
    return
  fi
  for ((p = 55432 + RANDOM % 1000; p < 65000; p++)); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return
    fi
  done
  die "no free port"
}

PORT=
for attempt in 1 2 3 4 5; do
  port=$(free_port)
  STARTED=1
  if as_pg "$PG_BIN/pg_ctl" -D "$DATA" -l "$WORK/server.log" -o "-p $port" -w -t 30 start >/dev/null 2>&1; then
    PORT=$port
    break
  fi
  STARTED=0
  log "server did not start on port $port (attempt $attempt)"
  as_pg "$PG_BIN/pg_ctl" -D "$DATA" -m immediate -w -t 10 stop >/dev/null 2>&1 || true
done
if [[ -z $PORT ]]; then
  cat "$WORK/server.log" >&2 || true
  die "could not start PostgreSQL"
fi

as_pg "$PG_BIN/psql" -X -q -h "$WORK" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 \
  -c "CREATE ROLE $DB_USER LOGIN CREATEDB PASSWORD '$DB_PASSWORD'" \
  -c "CREATE DATABASE $DB_NAME OWNER $DB_USER" >/dev/null

export NUBIS_TEST_DATABASE_URL="postgres://$DB_USER:$DB_PASSWORD@127.0.0.1:$PORT/$DB_NAME"
# The same server through its unix socket, for processes inside network
# namespaces (a socket file is reachable from every namespace).
export NUBIS_TEST_DATABASE_SOCKET="$WORK"
export NUBIS_TEST_DATABASE_PORT="$PORT"
log "PostgreSQL $PG_VERSION on 127.0.0.1:$PORT ($WORK); NUBIS_TEST_DATABASE_URL=$NUBIS_TEST_DATABASE_URL"

# Run the command; the EXIT trap stops the server and exits with its status.
set +e
"$@"
status=$?
set -e
exit "$status"
