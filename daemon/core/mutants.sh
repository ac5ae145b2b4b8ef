#!/usr/bin/env bash
# Mutation testing of the lock core: every mutant of mxfs-core's logic must be caught by the
# core's own tests (scenarios, regressions, proptest against the reference table, insta
# traces, serde) or by the model's tests (small exhaustive stateright runs over real cores).
# The harness code (src/sim.rs, the bench binary) is not mutated.
#
# Usage: daemon/core/mutants.sh [extra cargo-mutants args], e.g. `--shard 0/4` to run a
# quarter; MXFS_MUTANTS_JOBS=2 runs two mutants at once. Prints the score: caught / (caught +
# missed), timeouts counted as caught. A test run gets at least 120 s before it counts as a
# timeout: on a loaded 2-core machine the core and model tests take 15-20 s, and a 20 s limit
# (3x the idle baseline) counted slow survivors as caught.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v cargo-mutants >/dev/null || cargo install cargo-mutants --locked
out=target/mutants-core
mkdir -p "$out"
set +e
cargo mutants -p mxfs-core --test-package mxfs-core --test-package mxfs-model \
    --features serde -j"${MXFS_MUTANTS_JOBS:-1}" --timeout-multiplier 3 --minimum-test-timeout 120 \
    -e daemon/core/src/sim.rs -e daemon/core/src/bin/bench.rs \
    -o "$out" "$@"
status=$?
set -e
dir="$out/mutants.out"
count() { if [ -s "$dir/$1.txt" ]; then grep -c . "$dir/$1.txt"; else echo 0; fi; }
caught=$(count caught); missed=$(count missed); timeout=$(count timeout); unviable=$(count unviable)
viable=$((caught + missed + timeout))
if [ "$viable" -gt 0 ]; then
    score=$(( (caught + timeout) * 1000 / viable ))
    printf 'mutants: %d caught, %d timeout, %d missed, %d unviable; score %d.%d%% of viable\n' \
        "$caught" "$timeout" "$missed" "$unviable" $((score / 10)) $((score % 10))
fi
if [ "$missed" -gt 0 ]; then
    echo "missed mutants:"; cat "$dir/missed.txt"
fi
exit "$status"
