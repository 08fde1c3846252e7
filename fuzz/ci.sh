#!/usr/bin/env bash
# Every fuzz target for a short time (FUZZ_SECONDS each, 15 by default), starting from
# the committed seeds: a smoke test of the hostile-input paths, for CI. Fails on the
# first crash or broken property, and prints the input's path and the panic.
# Installs cargo-fuzz if it is missing. See README.md for longer runs.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${FUZZ_SECONDS:-15}
# cargo-fuzz passes nightly-only flags (-Zsanitizer=address); this lets stable take them.
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
# cargo fuzz has no --locked: refuse a Cargo.lock that is out of date before building.
cargo metadata --locked --format-version 1 >/dev/null
cargo fuzz build

mkdir -p target/ci-logs
for target in $(cargo fuzz list); do
    mkdir -p "corpus/$target"
    seeds=()
    if [ -d "seeds/$target" ]; then seeds=("seeds/$target"); fi
    log="target/ci-logs/$target.log"
    if cargo fuzz run "$target" "corpus/$target" "${seeds[@]}" -- \
        -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
        echo "fuzz $target: ${runs:-?} runs in ${seconds}s (${rate:-?}/s), no crash"
    else
        echo "fuzz $target FAILED; the end of its log ($log):" >&2
        tail -n 60 "$log" >&2
        exit 1
    fi
done
