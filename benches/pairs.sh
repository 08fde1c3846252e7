#!/usr/bin/env bash
# Two builds of covoit side by side, in alternating runs: the way to tell a change of
# a few per cent from the noise of a shared machine, where the same binary's rate
# moves by a fifth from one hour to the next (docs/performance.md).
#
#     benches/pairs.sh BEFORE AFTER [PAIRS]
#
# BEFORE and AFTER are covoit binaries (copy target/release/covoit aside before and
# after the change). Each run starts `covoit serve` on a fresh folder, drives it
# with `covoit load` at CLIENTS clients (64) for SECONDS_PER_RUN seconds (12), and
# prints the rate with its p50 / p99, then the CPU time each thread of the service
# and the load generator spent per payment (from /proc, over the middle of the run),
# the cores' idle share and the service's peak memory. The CPU per payment varies
# less than the rate and says which thread a change helped. Talks to 127.0.0.1 only.
set -euo pipefail

if [ $# -lt 2 ]; then
    sed -n '2,14p' "$0"
    exit 2
fi
before=$(realpath "$1")
after=$(realpath "$2")
pairs=${3:-3}
clients=${CLIENTS:-64}
seconds=${SECONDS_PER_RUN:-12}
[ "$seconds" -ge 8 ] || { echo "SECONDS_PER_RUN must be at least 8" >&2; exit 2; }

work=""
server=""
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    if [ -n "$work" ]; then rm -rf "$work"; fi
}
trap cleanup EXIT

size() { curl -fs "$1/healthz" | python3 -c 'import json, sys; print(json.load(sys.stdin)["size"])'; }

# CPU ticks per thread name, summed over the threads of that name.
threads() {
    for task in /proc/"$1"/task/*; do
        echo "$(tr ' ' _ <"$task/comm") $(awk '{ print $14 + $15 }' "$task/stat")"
    done | awk '{ ticks[$1] += $2 } END { for (name in ticks) print name, ticks[name] }' | sort
}

# run <label> <binary>
run() {
    local label=$1 binary=$2 port url load_pid
    work=$(mktemp -d)
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    url="http://127.0.0.1:$port"
    (cd "$work" && exec "$binary" serve --listen "127.0.0.1:$port" --rate-per-client 0 >serve.log 2>&1) &
    server=$!
    until curl -fs "$url/healthz" >/dev/null 2>&1; do sleep 0.02; done
    "$binary" load --server "$url" --operator-key "$work/keys/operator-demo.key" --accounts 1000 \
        --clients "$clients" --seconds "$seconds" 2>/dev/null >"$work/load.out" &
    load_pid=$!
    # The window: from a second after the payments start to three seconds before the end.
    until [ "$(size "$url")" -gt 5000 ]; do sleep 0.05; done
    sleep 1
    local cpu1 cpu2 service1 service2 load1 load2 leaves1 leaves2
    cpu1=$(head -1 /proc/stat)
    service1=$(threads "$server")
    load1=$(awk '{ print $14 + $15 }' "/proc/$load_pid/stat")
    leaves1=$(size "$url")
    sleep $((seconds - 4))
    cpu2=$(head -1 /proc/stat)
    service2=$(threads "$server")
    load2=$(awk '{ print $14 + $15 }' "/proc/$load_pid/stat")
    leaves2=$(size "$url")
    wait "$load_pid"
    local payments=$((leaves2 - leaves1)) hz
    hz=$(getconf CLK_TCK)
    echo "== $label: $(grep -v '^$' "$work/load.out")"
    join <(echo "$service1") <(echo "$service2") |
        awk -v n="$payments" -v hz="$hz" '{ us = ($3 - $2) * 1e6 / hz / n; total += us
                                           if (us >= 0.5) printf "   %-18s %6.1f µs/payment\n", $1, us }
                                         END { printf "   %-18s %6.1f µs/payment\n", "service, in all", total }'
    awk -v a="$load1" -v b="$load2" -v n="$payments" -v hz="$hz" \
        'BEGIN { printf "   %-18s %6.1f µs/payment\n", "load generator", (b - a) * 1e6 / hz / n }'
    # /proc/stat's first line: cpu user nice system idle iowait irq softirq steal ...
    echo "$cpu1 $cpu2" |
        awk '{ for (i = 2; i <= 9; i++) all += $(i + 11) - $i; idle = $16 + $17 - $5 - $6
               printf "   cores idle         %6.1f %%\n", 100 * idle / all }'
    awk '/VmHWM/ { printf "   peak memory        %6.1f MB\n", $2 / 1024 }' "/proc/$server/status"
    kill "$server"
    wait "$server" 2>/dev/null || true
    server=""
    rm -rf "$work"
    work=""
}

for pair in $(seq 1 "$pairs"); do
    echo "# pair $pair of $pairs"
    run before "$before"
    run after "$after"
done
