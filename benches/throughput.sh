#!/usr/bin/env bash
# Signed, durable payments per second over HTTP, side by side, in one run:
#   1. the ceilings on this machine (Ed25519 verify_strict, SQLite durable commits, fdatasync);
#   2. covoit as it runs (group commit) at 1, 16 and 64 clients, then its peak memory,
#      and the same with its writer thread at normal priority rather than real-time;
#   3. the same service committing each command in its own transaction (--batch-max 1);
#   4. PostgreSQL doing the same double-entry payment under pgbench (benches/postgres/run.sh);
#   5. start-up time on a ledger of STARTUP_LEAVES leaves (default 1,000,000; 0 skips it).
# Every covoit ledger is audited afterwards with `covoit audit --db`.
#
#     benches/throughput.sh            # about 8 minutes with the start-up step
#
# Settings: SECONDS_PER_RUN (10), CLIENTS ("1,16,64"), ACCOUNTS (1000), POSTGRES (1),
# STARTUP_LEAVES (1000000). Everything talks to 127.0.0.1 and stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${SECONDS_PER_RUN:-10}
clients=${CLIENTS:-1,16,64}
accounts=${ACCOUNTS:-1000}
startup_leaves=${STARTUP_LEAVES:-1000000}

cargo build --release --locked --quiet
target=$(cargo metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
covoit="$target/release/covoit"
work=$(mktemp -d)
server=""
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start <folder> [serve flags…]: starts covoit serve, waits for /healthz, sets $server and $url.
start() {
    local folder=$1
    shift
    local port
    port=$(free_port)
    url="http://127.0.0.1:$port"
    (cd "$folder" && exec "$covoit" serve --listen "127.0.0.1:$port" --rate-per-client 0 "$@" >>serve.log 2>&1) &
    server=$!
    until curl -fs "$url/healthz" >/dev/null 2>&1; do sleep 0.02; done
}

stop() {
    kill -TERM "$server"
    wait "$server" || true
    server=""
}

peak_memory() { awk '/VmHWM/ { printf "%.1f MB", $2 / 1024 }' "/proc/$server/status"; }

echo "== ceilings"
cargo bench --locked --quiet --bench ceilings 2>/dev/null | grep -v '^$'

for mode in group normal single; do
    folder="$work/$mode"
    mkdir -p "$folder"
    case $mode in
        group)
            echo "== covoit, group commit (as it runs)"
            start "$folder"
            # Whether the writer got real-time priority (root, CAP_SYS_NICE or LimitRTPRIO).
            sleep 0.2
            grep -o 'the writer runs at [a-z-]* priority' "$folder/serve.log" || true
            ;;
        normal)
            echo "== covoit, group commit, the writer at normal priority (--writer-priority normal)"
            start "$folder" --writer-priority normal
            ;;
        single)
            echo "== covoit, one transaction per command (--batch-max 1)"
            start "$folder" --batch-max 1
            ;;
    esac
    "$covoit" load --server "$url" --operator-key "$folder/keys/operator-demo.key" \
        --accounts "$accounts" --clients "$clients" --seconds "$seconds" 2>/dev/null
    echo "peak memory of the service: $(peak_memory)"
    stop
    "$covoit" audit --db "$folder/covoit.db" | tail -1
done

if [ "${POSTGRES:-1}" = 1 ]; then
    echo "== PostgreSQL, the same payment as a stored function, pgbench"
    SECONDS_PER_RUN=$seconds CLIENTS="${clients//,/ }" ASYNC_REFERENCE=0 bash benches/postgres/run.sh
fi

if [ "$startup_leaves" -gt 0 ]; then
    echo "== start-up on a ledger of about $startup_leaves leaves"
    folder="$work/startup"
    mkdir -p "$folder"
    start "$folder"
    # 64 clients until the log is long enough.
    "$covoit" load --server "$url" --operator-key "$folder/keys/operator-demo.key" --accounts 1000 \
        --clients 64 --seconds 3600 --stop-at-leaves "$startup_leaves" 2>/dev/null | sed 's/^/filling: /'
    stop
    for attempt in 1 2 3; do
        started=$(date +%s%N)
        start "$folder"
        ready=$(date +%s%N)
        size=$(curl -fs "$url/healthz" | python3 -c 'import json, sys; print(json.load(sys.stdin)["size"])')
        echo "start-up $attempt: $(( (ready - started) / 1000000 )) ms to answer /healthz on $size leaves"
        stop
    done
fi
