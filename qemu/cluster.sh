#!/usr/bin/env bash
# `just qemu-cluster N [--keep]`: boots N (3..8) TCG guests that share one raw XFS disk
# (share-rw, O_DIRECT, no image locking), each with its own log disk and config disk, plus a
# shared exclusion-witness disk; a private vde_switch in the run dir links them (10.77.0.<id>,
# never leaves this machine). Each guest loads mxfs.ko, starts mxfsd and runs the scenarios of
# qemu/cluster-node.sh; the host kills the last node once it holds a lock, confirms the fence,
# checks the recorded histories with mxfs-history-check, prints a result table and exits
# non-zero on any failure. --keep leaves the survivors up and prints how to reach their consoles.
# Serial logs and disks: qemu/run/<timestamp>-clusterN/.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

ARGS=("$@")
N=${1:-3}
shift || true
KEEP=0
for a in "$@"; do
    case "$a" in
    --keep) KEEP=1 ;;
    *) die "unknown flag '$a' (only --keep)" ;;
    esac
done
[[ "$N" =~ ^[0-9]+$ ]] && [ "$N" -ge 3 ] && [ "$N" -le 8 ] ||
    die "N='$N': want 3..8 nodes (losing one node must leave a majority)"
RUN_TIMEOUT_SECS=${MXFS_CLUSTER_TIMEOUT_SECS:-1500}

load_kernel_env
apt_need "${QEMU_PKGS[@]}" vde2 socat
OUT=$QEMU_DIR/run/out
[ -f "$OUT/initramfs.cpio.gz" ] || die "no initramfs: run qemu/initramfs.sh (just initramfs)"
cd "$REPO_DIR"
cargo build --release --locked -q -p mxfs-history-check
TARGET=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
CHECK=$TARGET/release/mxfs-history-check

RUN=$(new_run_dir "cluster$N")
CLOCK=$(guest_clock_args)
log "cluster of $N: run dir $RUN"
truncate -s 512M "$RUN/shared.img"
mkfs.xfs -q -f "$RUN/shared.img"
truncate -s 8M "$RUN/witness.img"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$RUN/cluster.key"
for i in $(seq 1 "$N"); do
    truncate -s 64M "$RUN/log-$i.img"
    d=$RUN/cfg-$i
    mkdir -p "$d"
    cp "$RUN/cluster.key" "$d/cluster.key"
    {
        echo "node_id = $i"
        echo 'cluster_key_file = "/etc/mxfs/cluster.key"'
        echo 'ctl_socket = "/run/mxfs/mxfsd.sock"'
        echo 'kernel = "netlink"'
        echo 'heartbeat_interval_ms = 300'
        echo 'heartbeat_timeout_ms = 4000'
        echo 'fence_timeout_ms = 15000'
        echo 'fence_command = ["/bin/mxfs-guest", "fence-wait", "--witness", "/dev/vdc", "--timeout-secs", "10"]'
        for j in $(seq 1 "$N"); do
            echo "[[peers]]"
            echo "id = $j"
            echo "address = \"10.77.0.$j:7100\""
            echo "name = \"node$j\""
        done
    } >"$d/mxfsd.toml"
    tar -cf "$RUN/cfg-$i.tar" -C "$d" mxfsd.toml cluster.key
done

PIDS=()
VDE_PID=
cleanup() {
    if [ "$KEEP" = 0 ]; then
        for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
        [ -n "$VDE_PID" ] && kill "$VDE_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

vde_switch -d -s "$RUN/switch" -p "$RUN/switch.pid" >/dev/null 2>&1 || die "vde_switch failed"
for _ in $(seq 50); do [ -s "$RUN/switch.pid" ] && break; sleep 0.1; done
VDE_PID=$(cat "$RUN/switch.pid")

start=$(date +%s)
for i in $(seq 1 "$N"); do
    extra=""
    [ "$KEEP" = 1 ] && extra=" mxfs.keep=1"
    qemu-system-x86_64 -accel tcg -m 512 -smp 1 -display none -no-reboot \
        -kernel "$BZIMAGE" -initrd "$OUT/initramfs.cpio.gz" \
        -chardev socket,id=s0,path="$RUN/node-$i.sock",server=on,wait=off,logfile="$RUN/node$i.log" \
        -serial chardev:s0 -monitor none \
        -drive file="$RUN/shared.img",format=raw,if=none,id=shared,cache.direct=on,file.locking=off \
        -device virtio-blk-pci,drive=shared,share-rw=on \
        -drive file="$RUN/log-$i.img",format=raw,if=none,id=log,cache.direct=on \
        -device virtio-blk-pci,drive=log \
        -drive file="$RUN/witness.img",format=raw,if=none,id=wit,cache.direct=on,file.locking=off \
        -device virtio-blk-pci,drive=wit,share-rw=on \
        -drive file="$RUN/cfg-$i.tar",format=raw,if=none,id=cfg,readonly=on \
        -device virtio-blk-pci,drive=cfg \
        -netdev vde,id=n0,sock="$RUN/switch" -device virtio-net-pci,netdev=n0,mac=52:54:00:77:00:0$i \
        -device virtio-rng-pci \
        -append "console=ttyS0 panic=-1 quiet $CLOCK mxfs.role=node mxfs.node=$i mxfs.nodes=$N$extra" \
        >"$RUN/qemu$i.err" 2>&1 &
    PIDS+=($!)
done
log "booted ${#PIDS[@]} guests (pids ${PIDS[*]}); waiting (timeout ${RUN_TIMEOUT_SECS}s)"

# Host side of the node-loss scenario: once the last node reports that it holds its lock
# (barrier phase 10 on the witness disk), kill it and mark it fenced for the fence agents.
witness_word() { # SECTOR
    python3 -c "import sys; f=open(sys.argv[1],'rb'); f.seek(int(sys.argv[2])*4096); print(int.from_bytes(f.read(8),'little'))" "$RUN/witness.img" "$1"
}
mark_fenced() { # NODE
    python3 -c "
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
os.pwrite(fd, (0xFE9CED0000000001).to_bytes(8, 'little').ljust(4096, b'\0'), (1024 + 128 + int(sys.argv[2])) * 4096)
os.fsync(fd); os.close(fd)" "$RUN/witness.img" "$1"
}
killed=0
hung=()
while :; do
    alive=0
    for i in $(seq 1 "$N"); do
        kill -0 "${PIDS[$((i - 1))]}" 2>/dev/null && alive=$((alive + 1))
    done
    # A guest whose virtual link never came up (see cluster-node.sh) is the host's fault, not
    # the product's: stop this attempt and boot a fresh cluster, once. A second such failure
    # fails the run like any other.
    if dead=$(grep -l "MXFS-RESULT network_up FAIL" "$RUN"/node*.log 2>/dev/null); then
        if [ "${MXFS_CLUSTER_RETRIED:-0}" = 0 ] && [ "$KEEP" = 0 ]; then
            log "network_up failed ($(echo $dead | xargs -n1 basename | tr '\n' ' ')): a guest's virtual link never came up; booting a fresh cluster once (this attempt: $RUN)"
            cleanup
            trap - EXIT
            MXFS_CLUSTER_RETRIED=1 exec "$0" "${ARGS[@]}"
        fi
        log "network_up failed again ($(echo $dead | xargs -n1 basename | tr '\n' ' ')); stopping the guests"
        for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
        break
    fi
    if [ "$killed" = 0 ] && [ "$(witness_word $((1024 + N)))" -ge 10 ]; then
        kill -9 "${PIDS[$((N - 1))]}" 2>/dev/null || true
        wait "${PIDS[$((N - 1))]}" 2>/dev/null || true
        mark_fenced "$N"
        killed=1
        echo "MXFS-RESULT node_killed PASS node $N killed at $(($(date +%s) - start)) s and marked fenced" >>"$RUN/host.log"
        log "killed node $N (holding a lock) and marked it fenced"
    fi
    if [ "$KEEP" = 1 ] && [ "$killed" = 1 ]; then
        done_nodes=$(cat "$RUN"/node*.log | grep -c "^MXFS-DONE" || true)
        [ "$done_nodes" -ge $((N - 1)) ] && break
    fi
    [ "$alive" = 0 ] && break
    if [ $(($(date +%s) - start)) -gt "$RUN_TIMEOUT_SECS" ]; then
        for i in $(seq 1 "$N"); do
            if kill -0 "${PIDS[$((i - 1))]}" 2>/dev/null; then hung+=("$i"); kill -9 "${PIDS[$((i - 1))]}"; fi
        done
        break
    fi
    sleep 1
done
elapsed=$(($(date +%s) - start))
log "guests finished in ${elapsed} s"
[ "$killed" = 1 ] || echo "MXFS-RESULT node_killed FAIL the last node never reported holding its lock" >>"$RUN/host.log"
for i in "${hung[@]}"; do
    echo "MXFS-RESULT node${i}_finished FAIL hung: killed after ${RUN_TIMEOUT_SECS} s" >>"$RUN/host.log"
    echo "---- node $i serial log (last 40 lines) ----" >&2
    tail -n 40 "$RUN/node$i.log" >&2
done

# Histories: what each node recorded, checked on the host from the witness observations.
for i in $(seq 1 "$N"); do
    sed -n 's/^\s*MXFS-HIST //p' "$RUN/node$i.log" | tr -d '\r' >"$RUN/history-$i.jsonl"
done
if "$CHECK" --lost-node "$N" --min-grants $((10 * N)) "$RUN"/history-*.jsonl >"$RUN/history-check.txt" 2>&1; then
    echo "MXFS-RESULT history_check PASS $(tail -n 1 "$RUN/history-check.txt"); $(head -n 1 "$RUN/history-check.txt")" >>"$RUN/host.log"
else
    echo "MXFS-RESULT history_check FAIL $(grep -m1 -E 'VIOLATION|FAIL' "$RUN/history-check.txt")" >>"$RUN/host.log"
fi
cat "$RUN/history-check.txt"

# One fence agent per lost node: only the fencer (the lowest-id survivor) runs it; the others
# wait for its word.
agents=$(cat "$RUN"/node*.log | grep -c "fence: node $N is fenced" || true)
if [ "$agents" = 1 ]; then
    echo "MXFS-RESULT one_fence_agent PASS the fence agent for node $N ran once in the cluster" >>"$RUN/host.log"
else
    echo "MXFS-RESULT one_fence_agent FAIL the fence agent for node $N ran $agents times (want 1)" >>"$RUN/host.log"
fi

EXPECTED=network_up,module_load,cluster_healthy,volume_registered,lock_exclusion,noqueue_deny,cache_inval,node_killed,recovery_seen,dead_node_lock_granted,daemon_stopped_enotconn,silent_daemon_etimedout,no_kernel_warnings,history_check,one_fence_agent
set +e
result_table "$EXPECTED" "$RUN"/node*.log "$RUN/host.log"
rc=$?
set -e
echo "run dir: $RUN (serial logs node<i>.log, histories history-<i>.jsonl); wall ${elapsed} s"
if [ "$KEEP" = 1 ]; then
    echo "cluster kept up. Console of node i: socat -,raw,echo=0 UNIX-CONNECT:$RUN/node-<i>.sock"
    echo "stop it: kill ${PIDS[*]} $VDE_PID"
fi
exit $rc
