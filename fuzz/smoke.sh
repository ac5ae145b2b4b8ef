#!/usr/bin/env bash
# Bounded run of every cargo-fuzz target: fuzz/smoke.sh RUNS SECS
#
# First runs the harness's unit tests (stable `cargo test` in fuzz/). Then each target listed
# by `cargo +nightly fuzz list` runs for RUNS inputs or SECS seconds, whichever comes first, on a
# scratch copy of its committed corpus (fuzz/corpus/<target>/), so the committed corpus is never
# polluted. Prints one table line per target with the executions and seconds libFuzzer reports
# (wall_s also counts loading), and exits non-zero if any target crashed, leaked, ran out of
# memory or hung (one input taking more than MXFS_FUZZ_INPUT_TIMEOUT_S seconds). Crashing inputs
# are left in fuzz/artifacts/<target>/.
#
# Sanitizer: AddressSanitizer (cargo fuzz's default) unless MXFS_FUZZ_SANITIZER says otherwise;
# if the ASan build fails on this toolchain, the script says so and falls back to `-s none`.
set -euo pipefail

runs=${1:?usage: fuzz/smoke.sh RUNS SECS}
secs=${2:?usage: fuzz/smoke.sh RUNS SECS}
input_timeout_s=${MXFS_FUZZ_INPUT_TIMEOUT_S:-10}
sanitizer=${MXFS_FUZZ_SANITIZER:-address}

cd "$(dirname "$0")"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
build_log="$scratch/build.log"

# The harness's own checks (fuzz/src) on stable first, so an oracle that never fires is caught.
cargo test --quiet --locked >"$build_log" 2>&1 || { cat "$build_log" >&2; exit 1; }

if ! cargo +nightly fuzz build -s "$sanitizer" >/dev/null 2>"$build_log"; then
    if [ "$sanitizer" != none ]; then
        echo "fuzz-smoke: build with -s $sanitizer failed (see below); retrying with -s none" >&2
        tail -n 20 "$build_log" >&2
        sanitizer=none
        cargo +nightly fuzz build -s none >/dev/null 2>"$build_log" || { cat "$build_log" >&2; exit 1; }
    else
        cat "$build_log" >&2
        exit 1
    fi
fi

mapfile -t targets < <(cargo +nightly fuzz list)
if [ "${#targets[@]}" -eq 0 ]; then
    echo "fuzz-smoke: no fuzz targets found" >&2
    exit 1
fi

printf '%-28s %12s %8s %8s  %s\n' target executions fuzz_s wall_s result
failed=0
for t in "${targets[@]}"; do
    corpus="$scratch/corpus-$t"
    mkdir -p "$corpus"
    if [ -d "corpus/$t" ]; then
        cp -R "corpus/$t/." "$corpus/"
    fi
    log="$scratch/$t.log"
    start_s=$(date +%s)
    rc=0
    cargo +nightly fuzz run -s "$sanitizer" "$t" "$corpus" -- \
        -runs="$runs" -max_total_time="$secs" -timeout="$input_timeout_s" \
        -print_final_stats=1 >"$log" 2>&1 || rc=$?
    elapsed_s=$(( $(date +%s) - start_s ))

    # "Done N runs in S second(s)" on a clean finish; otherwise the last "#N" status line.
    execs=$(sed -n 's/^Done \([0-9][0-9]*\) runs in .*/\1/p' "$log" | tail -n 1)
    if [ -z "$execs" ]; then
        execs=$(grep -oE '^#[0-9]+' "$log" | tail -n 1 | tr -d '#' || true)
    fi
    execs=${execs:-0}
    fuzz_s=$(sed -n 's/^Done [0-9][0-9]* runs in \([0-9][0-9]*\) second.*/\1/p' "$log" | tail -n 1)
    fuzz_s=${fuzz_s:--}

    if [ "$rc" -ne 0 ]; then
        result="FAILED (exit $rc)"
        failed=1
    elif [ "$execs" -lt "$runs" ]; then
        result="ok (time cap reached before $runs runs)"
    else
        result=ok
    fi
    printf '%-28s %12s %8s %8s  %s\n' "$t" "$execs" "$fuzz_s" "$elapsed_s" "$result"
    if [ "$rc" -ne 0 ]; then
        echo "---- $t: last lines of libFuzzer output ----" >&2
        grep -E 'panicked|ERROR|SUMMARY|Test unit written|Base64' "$log" >&2 || true
        tail -n 30 "$log" >&2
    fi
done

if [ "$failed" -ne 0 ]; then
    echo "fuzz-smoke: a target failed; crashing inputs are in fuzz/artifacts/" >&2
    exit 1
fi
echo "fuzz-smoke: ${#targets[@]} targets ok (sanitizer: $sanitizer)"
