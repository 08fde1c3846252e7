#!/usr/bin/env bash
# Off-machine copies with Litestream, for real (docs/operations.md): a covoit service
# under a payment load, Litestream replicating its database to a replica folder (the
# stand-in for the SFTP server or bucket), then
#   1. a restore taken while the load runs passes `covoit audit`, and the live ledger
#      still contains its checkpoint;
#   2. once the replica has caught up, the desk's machine is lost (service and
#      Litestream killed with SIGKILL, the database deleted);
#   3. on a "new machine", a restore from the replica's URL alone passes the audit, is
#      consistent with the last checkpoint the old service published, holds every
#      command it acknowledged, and serves again: new payments are accepted.
# Installs Litestream into the build folder from PyPI (pinned by hash). About 30 seconds.
#
#   tests/litestream/run.sh                          # target/debug/covoit (built if missing)
#   COVOIT=target/release/covoit tests/litestream/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

LITESTREAM_VERSION=0.5.17

target=$(cargo metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
tools="$target/litestream-$LITESTREAM_VERSION"
litestream="$tools/bin/litestream"
if [ ! -x "$litestream" ]; then
    python3 -m pip install --quiet --disable-pip-version-check --target "$tools" \
        --require-hashes -r tests/litestream/requirements.txt
fi
if [ "$("$litestream" version)" != "$LITESTREAM_VERSION" ]; then
    echo "$litestream is not Litestream $LITESTREAM_VERSION" >&2
    exit 1
fi

covoit=${COVOIT:-target/debug/covoit}
if [ ! -x "$covoit" ]; then
    if [ -n "${COVOIT:-}" ]; then
        echo "COVOIT=$covoit is not an executable" >&2
        exit 1
    fi
    cargo build --locked --bin covoit
fi
covoit=$(realpath "$covoit")

work=$(mktemp -d)
desk="$work/desk"       # the desk's machine
replica="$work/replica" # the other machine's storage
new="$work/new"         # the machine it is restored on
mkdir -p "$desk" "$new"
pids=()
stop() {
    {
        for pid in "${pids[@]}"; do
            kill -KILL "$pid" 2>/dev/null || true
        done
        wait
    } 2>/dev/null || true
    rm -rf "$work"
}
trap stop EXIT
fail() {
    echo "litestream drill: $*" >&2
    for log in "$work"/*.log; do
        echo "--- $(basename "$log") (last lines)" >&2
        tail -n 20 "$log" >&2
    done
    exit 1
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# The ledger size a database file holds (read only; the service may be running).
size_of() {
    python3 -c 'import sqlite3, sys
c = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
print(c.execute("SELECT size FROM ledger WHERE id = 1").fetchone()[0])' "$1"
}
# The signed checkpoint a database file holds, as GET /v1/checkpoint gives it.
checkpoint_of() {
    python3 -c 'import sqlite3, sys
c = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
sys.stdout.write(c.execute("SELECT checkpoint FROM ledger WHERE id = 1").fetchone()[0])' "$1"
}
# Starts covoit serve on a database folder; sets $base and $server.
serve() {
    local folder=$1 log=$2 port
    port=$(free_port)
    base="http://127.0.0.1:$port"
    "$covoit" serve --listen "127.0.0.1:$port" --db "$folder/covoit.db" --keys "$folder/keys" \
        --rate-per-client 0 >"$work/$log" 2>&1 &
    server=$!
    pids+=("$server")
    for _ in $(seq 1 300); do
        if curl -fsS "$base/healthz" >/dev/null 2>&1; then return 0; fi
        kill -0 "$server" 2>/dev/null || fail "covoit serve stopped before answering /healthz"
        sleep 0.1
    done
    fail "covoit serve did not answer /healthz"
}

cat >"$work/litestream.yml" <<YAML
dbs:
  - path: $desk/covoit.db
    replicas:
      - type: file
        path: $replica
YAML

serve "$desk" desk.log
desk_base=$base
desk_server=$server
"$litestream" replicate -config "$work/litestream.yml" >"$work/litestream.log" 2>&1 &
litestream_pid=$!
pids+=("$litestream_pid")

"$covoit" load --server "$desk_base" --operator-key "$desk/keys/operator-demo.key" \
    --accounts 64 --clients 8 --seconds 8 >"$work/load.log" 2>&1 &
load=$!

# 1. A restore while the load runs, once the payments (not only the accounts' set-up)
# are flowing.
size=0
for _ in $(seq 1 300); do
    size=$(curl -fsS "$desk_base/healthz" | python3 -c 'import json, sys; print(json.load(sys.stdin)["size"])')
    [ "$size" -gt 1000 ] && break
    sleep 0.1
done
[ "$size" -gt 1000 ] || fail "the load did not get going within 30 s"
sleep 1
kill -0 "$load" 2>/dev/null || fail "the load ended before the restore under load"
"$litestream" restore -config "$work/litestream.yml" -o "$work/during.db" "$desk/covoit.db" \
    >"$work/restore-during.log" 2>&1 || fail "litestream restore under load failed"
"$covoit" audit --db "$work/during.db" >"$work/audit-during.log" 2>&1 ||
    fail "the restore taken under load does not pass the audit"
checkpoint_of "$work/during.db" >"$work/during.checkpoint"
during=$(size_of "$work/during.db")
wait "$load" || fail "the load failed"
grep -q "payments" "$work/load.log" || fail "the load printed no result"
"$covoit" audit --server "$desk_base" --since "$work/during.checkpoint" >"$work/audit-live.log" 2>&1 ||
    fail "the live ledger does not contain the checkpoint of the restore taken under load"
echo "restored under load: $during leaves, audit passed; the live ledger contains its checkpoint"

# 2. Everything acknowledged is replicated within seconds; then the machine is lost.
curl -fsS "$desk_base/v1/checkpoint" >"$work/last.checkpoint"
last=$(sed -n 2p "$work/last.checkpoint")
caught_up=
for _ in $(seq 1 60); do
    rm -f "$work/probe.db" "$work/probe.db-wal" "$work/probe.db-shm"
    if "$litestream" restore -o "$work/probe.db" "file://$replica" >"$work/probe.log" 2>&1 &&
        [ "$(size_of "$work/probe.db")" = "$last" ]; then
        caught_up=yes
        break
    fi
    sleep 0.5
done
[ -n "$caught_up" ] || fail "the replica did not reach the live size $last within 30 s"
cp -a "$desk/keys" "$work/keys-backup" # the ledger key's one-time backup
{
    kill -KILL "$desk_server" "$litestream_pid"
    wait "$desk_server" "$litestream_pid"
} 2>/dev/null || true
rm -rf "$desk"
echo "replica caught up with the live ledger ($last leaves); desk machine lost"

# 3. A new machine: the replica's URL, the ledger key, nothing else.
"$litestream" restore -o "$new/covoit.db" "file://$replica" >"$work/restore-new.log" 2>&1 ||
    fail "litestream restore on the new machine failed"
cp -a "$work/keys-backup" "$new/keys"
"$covoit" audit --db "$new/covoit.db" --since "$work/last.checkpoint" >"$work/audit-new.log" 2>&1 ||
    fail "the restored database does not pass the audit against the last published checkpoint"
[ "$(size_of "$new/covoit.db")" = "$last" ] || fail "the restored ledger does not hold all $last leaves"
serve "$new" new.log
"$covoit" audit --server "$base" --since "$work/last.checkpoint" >"$work/audit-served.log" 2>&1 ||
    fail "the restored service's ledger does not pass the audit"
"$covoit" load --server "$base" --operator-key "$new/keys/operator-demo.key" \
    --accounts 4 --clients 2 --seconds 1 >"$work/load-new.log" 2>&1 || fail "payments on the restored service failed"
after=$(curl -fsS "$base/v1/checkpoint" | sed -n 2p)
[ "$after" -gt "$last" ] || fail "the restored service accepted no new command"
echo "restored on a new machine: $last leaves, audit passed against the last checkpoint; serving again ($after leaves)"
