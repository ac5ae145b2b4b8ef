# MXFS task runner. `just verify` runs every check; `just qemu-cluster 3` boots a cluster.
# Every recipe installs what it needs, so a fresh machine needs only `pip install rust-just`.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Bounded fuzz run per target (inputs and seconds, whichever comes first). The cap leaves room
# for the slowest target: daemon_config needs about 160 s for 1M inputs under ASan on 2 loaded
# cores; the netlink targets need 10-50 s.
fuzz_runs := env_var_or_default("MXFS_FUZZ_RUNS", "1000000")
fuzz_secs := env_var_or_default("MXFS_FUZZ_SECS", "300")

default:
    @just --list

# Every check: formatting, lints, tests, loom, model, fuzz smoke, and the QEMU runs (one guest,
# then a three-node cluster on real kernels). Prints each step's time and the total; stops at
# the first failing step.
verify_steps := "fmt-check clippy test loom model-bounded model-sim-bounded fuzz-smoke qemu-smoke qemu-cluster"

verify:
    #!/usr/bin/env bash
    set -euo pipefail
    all=$(date +%s)
    for step in {{verify_steps}}; do
        start=$(date +%s)
        args=(); [ "$step" = qemu-cluster ] && args=(3)
        if ! "{{just_executable()}}" "$step" "${args[@]}"; then
            echo "verify: $step FAILED after $(( $(date +%s) - start )) s" >&2
            exit 1
        fi
        echo "verify: $step took $(( $(date +%s) - start )) s"
    done
    echo "verify: every step passed in $(( $(date +%s) - all )) s"

# Rust components that the checks need (rustfmt, clippy) on the stable toolchain.
tools:
    rustup component add rustfmt clippy >/dev/null 2>&1 || true

fmt-check: tools
    cargo fmt --all -- --check

clippy: tools
    cargo clippy --workspace --all-targets --locked -- -D warnings

test:
    cargo test --workspace --locked

# cargo-fuzz from crates.io, once per machine.
fuzz-tools:
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

# Runs every fuzz target for a bounded time on nightly with AddressSanitizer, printing exec counts.
fuzz-smoke: fuzz-tools
    fuzz/smoke.sh {{fuzz_runs}} {{fuzz_secs}}

# Loom tests of the kernel module's pending table (kmod/pending.rs on loom::sync), release mode.
loom:
    LOOM_MAX_PREEMPTIONS=3 cargo test -p mxfs-kmod-loom --release --locked

# Rust-enabled guest kernel (Debian linux-source-6.12), cached in ~/.cache/mxfs by key.
kernel:
    qemu/kernel.sh

# mxfs.ko against the cached kernel tree -> qemu/run/out/mxfs.ko.
kmod: kernel
    qemu/kmod.sh

# Guest initramfs (busybox, mxfs.ko, mxfs-guest, mxfsd/mxfsctl) -> qemu/run/out/initramfs.cpio.gz.
initramfs: kmod
    qemu/initramfs.sh

# One guest: load mxfs.ko, check the version line, ENOTCONN/EPERM/ETIMEDOUT paths, CACHE_INVAL, unload.
qemu-smoke: initramfs
    qemu/smoke.sh

# N guests on a shared disk and a private network, mxfsd on each: the file-system phase on an
# -o mxfs volume (one log per node), then the lock scenarios. FLAGS: --keep, --fs-only (only the
# file-system checks; MXFS_FS_DATA_OPS, MXFS_FS_NS_OPS, MXFS_FS_FSX_OPS, MXFS_FS_SEED size them).
qemu-cluster N="3" *FLAGS: initramfs
    qemu/cluster.sh {{N}} {{FLAGS}}

# mxfsd integration tests: three real daemons on 127.0.0.1 (exclusion, handoff, kill -9, partition).
daemon-it:
    cargo test -p mxfs-daemon --locked --test cluster

# Remote grant latency between three mxfsd on loopback, next to the TCP round trip and etcd's lock
# API (Debian's etcd-server, installed here if missing; skipped if it cannot be) (prints figures).
bench-daemon:
    command -v etcd >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client >/dev/null) || echo "bench-daemon: etcd not installed; its comparison is skipped"
    cargo bench -p mxfs-daemon --locked --bench bench_daemon

# Three mxfsd on 127.0.0.1 (kernel = "none") for trying mxfsctl; `just cluster-local stop` stops them.
cluster-local CMD="start":
    daemon/scripts/cluster-local.sh {{CMD}}

# Exhaustive model check (stateright DFS, symmetry, per-pair FIFO channels): 3 nodes,
# 2 resources, 1 crash, 3 ops; prints states/s and its time. ARGS: e.g. `--reorder` for an
# unordered network.
model *ARGS:
    cargo build -q --release --locked -p mxfs-model
    time cargo run -q --release --locked -p mxfs-model -- check {{ARGS}}

# Random simulation of the model with 5 nodes, 3 resources, 2 crashes, every mode, timeouts,
# cancels and lost messages (SECS seconds). ARGS: `--reorder`.
model-sim SECS="30" SEED="1" *ARGS:
    cargo run -q --release --locked -p mxfs-model -- simulate {{SECS}} {{SEED}} {{ARGS}}

# Exhaustive model runs for `just verify` (crash, replay, six modes, queues, deadlock, refused
# inval, faults; see model/README.md); stop at the first violation and fail on it.
model-bounded:
    cargo run -q --release --locked -p mxfs-model -- bounded

# Bounded random simulation for `just verify`: three fixed seeds, 15 s each.
model-sim-bounded:
    cargo run -q --release --locked -p mxfs-model -- sim-bounded 15 1 2 3

# Mutation testing of the lock core (cargo-mutants, its tests plus the bounded model).
mutants:
    daemon/core/mutants.sh

# Lock core benchmark: uncontended acquire+release rate, recovery time for 10 000 locks.
bench-core:
    cargo run -q --release --locked -p mxfs-core --bin mxfs-core-bench

# File-system benchmark on three TCG guests (qemu/cluster.sh --bench, qemu/bench-report.sh):
# one node against plain XFS, the cached lock's cost, hand-offs split into callback, clean point,
# refresh and grant, and the create rate with 1, 2, 3 nodes. Prints ratios taken in one run.
bench-fs: initramfs
    qemu/cluster.sh 3 --bench

# Every benchmark; each prints its figures (goals are checked by reading them, never by timed tests).
bench: bench-core bench-daemon bench-fs
