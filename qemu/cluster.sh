#!/usr/bin/env bash
# `just qemu-cluster N [--keep] [--fs-only]`: boots N (3..8) TCG guests that share one raw XFS
# volume made with an external log (share-rw, O_DIRECT, no image locking), one log image per
# node (every log attached to every guest), a plain XFS image for the debug-family scenarios, a
# shared exclusion-witness disk and a config disk each; a private vde_switch in the run dir
# links them (10.77.0.<id>, never leaves this machine). Each guest loads mxfs.ko, starts mxfsd
# and runs qemu/cluster-node.sh: the file-system phase on the -o mxfs volume, then the
# debug-family scenarios; the host kills the last node once it holds a lock, confirms the
# fence, checks the lock histories (mxfs-history-check) and the file-system histories
# (mxfs-fs-check), runs xfs_repair -n on the volume, prints a result table and exits non-zero on
# any failure. --keep leaves the survivors up and prints how to reach their consoles;
# --fs-only (or MXFS_CLUSTER_FS_ONLY=1) stops after the file-system phase. --bench (what
# `just bench-fs` runs) mounts the volume and runs the benchmark workloads instead of the
# checks, and qemu/bench-report.sh prints the figures.
# Then the crash phase (qemu/crash.sh, a second cluster on a fresh volume): nodes killed under
# an fsync-acknowledged storm and relaunched, one node's mxfsd killed, every node killed and a
# majority restarted; judged by crash_fsync_durable, crash_repair_clean, recovery_ms,
# daemon_death_withdraws and first_mounter_recovers. MXFS_CLUSTER_CRASH=0 skips it,
# MXFS_CLUSTER_CRASH_ONLY=1 runs only it; its knobs are in qemu/crash.sh.
# Sizes of the file-system workloads: MXFS_FS_DATA_OPS (per node, default 200), MXFS_FS_NS_OPS
# (per node, 120), MXFS_FS_FSX_OPS (2000), MXFS_FS_SEED (random; printed).
# Serial logs and disks: qemu/run/<timestamp>-clusterN/.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

ARGS=("$@")
N=${1:-3}
shift || true
KEEP=0
FS_ONLY=${MXFS_CLUSTER_FS_ONLY:-0}
BENCH=0
for a in "$@"; do
    case "$a" in
    --keep) KEEP=1 ;;
    --fs-only) FS_ONLY=1 ;;
    --bench) BENCH=1; FS_ONLY=1 ;;
    *) die "unknown flag '$a' (--keep, --fs-only, --bench)" ;;
    esac
done
DATA_OPS=${MXFS_FS_DATA_OPS:-200}
NS_OPS=${MXFS_FS_NS_OPS:-120}
FSX_OPS=${MXFS_FS_FSX_OPS:-2000}
FS_SEED=${MXFS_FS_SEED:-$((RANDOM * 32768 + RANDOM))}
for v in DATA_OPS NS_OPS FSX_OPS FS_SEED; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "MXFS_FS_$v='${!v}': want a number"
done
# A guest's TSC counts from its QEMU's start; the FS checkers measure the offsets (see
# qemu/README.md, "Guest clock").
KILL_PHASE=1010
# Disk names by position (1 = vda): vda..vdd fixed, then the logs (5..4+N), then node 1's scratch.
disk() { printf "vd\\$(printf %03o $((96 + $1)))"; }
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
# The -o mxfs volume: an external log of 64 MiB per node, every log formatted for the volume's
# UUID by a throwaway mkfs (all logs have the same geometry, as DESIGN.md 5.4 requires). The
# mxfs mount refuses reflink; rmapbt and finobt are left out to keep level 0's surface small.
# make_volume DIR REPLAY-COMMAND SMALL: the disks of one cluster in DIR (SMALL=1: no debug-family
# image or scratch disk, for the crash phase).
make_volume() {
    local D=$1 replay=$2 small=$3 i j d
    truncate -s 512M "$D/shared.img"
    for i in $(seq 1 "$N"); do truncate -s 64M "$D/log-$i.img"; done
    # The files of the file-system phase come with the image (mkfs -p), so no node writes before
    # all have mounted (cluster-node.sh's fs_phase says why): two data files of 8 zero blocks, the
    # attribute, mmap (4 zero pages) and fsx files, the namespace tree's root.
    head -c $((8 * 4096)) /dev/zero >"$D/zero-32k"
    head -c $((4 * 4096)) /dev/zero >"$D/zero-16k"
    : >"$D/empty"
    cat >"$D/shared.proto" <<PROTO
/dev/null
0 0
d--755 0 0
data0 ---644 0 0 $D/zero-32k
data1 ---644 0 0 $D/zero-32k
attr ---644 0 0 $D/empty
mmap ---644 0 0 $D/zero-16k
fsx ---644 0 0 $D/empty
ns d--755 0 0
\$
\$
PROTO
    mkfs.xfs "${MKFS_OPTS[@]}" -p "$D/shared.proto" -l logdev="$D/log-1.img",size=64m "$D/shared.img"
    UUID=$(blkid -p -s UUID -o value "$D/shared.img")
    [ -n "$UUID" ] || die "no UUID on $D/shared.img"
    for i in $(seq 2 "$N"); do
        truncate -s 512M "$D/log-format.img"
        mkfs.xfs "${MKFS_OPTS[@]}" -m uuid="$UUID" -l logdev="$D/log-$i.img",size=64m "$D/log-format.img"
        rm -f "$D/log-format.img"
    done
    # The debug-family scenarios' image (plain XFS, internal log) and node 1's scratch disk.
    if [ "$small" = 1 ]; then
        truncate -s 16M "$D/debug.img"
    else
        truncate -s 320M "$D/debug.img" "$D/scratch.img"
        mkfs.xfs -q -f "$D/debug.img"
        mkfs.xfs -q -f "$D/scratch.img"
    fi
    truncate -s 8M "$D/witness.img"
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$D/cluster.key"
    for i in $(seq 1 "$N"); do
        d=$D/cfg-$i
        mkdir -p "$d"
        cp "$D/cluster.key" "$d/cluster.key"
        {
            echo "node_id = $i"
            echo 'cluster_key_file = "/etc/mxfs/cluster.key"'
            echo 'ctl_socket = "/run/mxfs/mxfsd.sock"'
            echo 'kernel = "netlink"'
            echo 'heartbeat_interval_ms = 300'
            echo 'heartbeat_timeout_ms = 4000'
            echo 'fence_timeout_ms = 15000'
            echo 'fence_command = ["/bin/mxfs-guest", "fence-wait", "--witness", "/dev/vdc", "--timeout-secs", "10"]'
            # A dead node's log is replayed by a recovery mount (qemu/mxfs-replay.sh).
            echo "replay_command = [\"$replay\"]"
            for j in $(seq 1 "$N"); do
                echo "[[peers]]"
                echo "id = $j"
                echo "address = \"10.77.0.$j:7100\""
                echo "name = \"node$j\""
            done
        } >"$d/mxfsd.toml"
        tar -cf "$D/cfg-$i.tar" -C "$d" mxfsd.toml cluster.key
    done
}
MKFS_OPTS=(-q -f -m reflink=0,rmapbt=0,finobt=0)
make_volume "$RUN" /bin/mxfs-replay 0

# launch_guest DIR NODE EXTRA-ARGS SERIAL: starts node NODE's QEMU on the disks in DIR, serial log
# DIR/SERIAL.log, console socket DIR/SERIAL.sock; its pid in LAST_PID.
launch_guest() {
    local D=$1 i=$2 extra=$3 serial=$4 j logs alias scratch
    logs=()
    for j in $(seq 1 "$N"); do
        logs+=(-drive file="$D/log-$j.img",format=raw,if=none,id=log$j,cache.direct=on,file.locking=off
            -device virtio-blk-pci,drive=log$j,share-rw=on)
    done
    # The shared volume again, for recovery mounts (qemu/mxfs-replay.sh).
    alias=(-drive file="$D/shared.img",format=raw,if=none,id=alias,cache.direct=on,file.locking=off
        -device virtio-blk-pci,drive=alias,share-rw=on)
    extra="$extra mxfs.alias=$(disk $((5 + N)))"
    scratch=()
    if [ "$i" = 1 ] && [ -f "$D/scratch.img" ]; then
        scratch=(-drive file="$D/scratch.img",format=raw,if=none,id=scratch,cache.direct=on
            -device virtio-blk-pci,drive=scratch)
        extra="$extra mxfs.scratch=$(disk $((6 + N)))"
    fi
    qemu-system-x86_64 -accel tcg -m 512 -smp 1 -display none -no-reboot \
        -kernel "$BZIMAGE" -initrd "$OUT/initramfs.cpio.gz" \
        -chardev socket,id=s0,path="$D/$serial.sock",server=on,wait=off,logfile="$D/$serial.log" \
        -serial chardev:s0 -monitor none \
        -drive file="$D/shared.img",format=raw,if=none,id=shared,cache.direct=on,file.locking=off \
        -device virtio-blk-pci,drive=shared,share-rw=on \
        -drive file="$D/debug.img",format=raw,if=none,id=dbg,cache.direct=on,file.locking=off \
        -device virtio-blk-pci,drive=dbg,share-rw=on \
        -drive file="$D/witness.img",format=raw,if=none,id=wit,cache.direct=on,file.locking=off \
        -device virtio-blk-pci,drive=wit,share-rw=on \
        -drive file="$D/cfg-$i.tar",format=raw,if=none,id=cfg,readonly=on \
        -device virtio-blk-pci,drive=cfg \
        "${logs[@]}" "${alias[@]}" "${scratch[@]}" \
        -netdev vde,id=n0,sock="$RUN/switch" -device virtio-net-pci,netdev=n0,mac=52:54:00:77:00:0$i \
        -device virtio-rng-pci \
        -append "console=ttyS0 panic=-1 quiet $CLOCK mxfs.role=node mxfs.node=$i mxfs.nodes=$N$extra" \
        >"$D/qemu-$serial.err" 2>&1 &
    LAST_PID=$!
}

# Host side of the node-loss scenario: once the last node reports that it holds its lock
# (barrier phase KILL_PHASE on the witness disk), kill it and mark it fenced for the fence agents.
witness_word() { # SECTOR
    python3 -c "import sys; f=open(sys.argv[1],'rb'); f.seek(int(sys.argv[2])*4096); print(int.from_bytes(f.read(8),'little'))" "$WIT" "$1"
}
write_word() { # SECTOR VALUE
    python3 -c "
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
os.pwrite(fd, int(sys.argv[3]).to_bytes(8, 'little').ljust(4096, b'\0'), int(sys.argv[2]) * 4096)
os.fsync(fd); os.close(fd)" "$WIT" "$1" "$2"
}
mark_fenced() { # NODE
    python3 -c "
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
os.pwrite(fd, (0xFE9CED0000000001).to_bytes(8, 'little').ljust(4096, b'\0'), (1024 + 128 + int(sys.argv[2])) * 4096)
os.fsync(fd); os.close(fd)" "$WIT" "$1"
}
REPAIR_BENIGN='^Phase |^        - |^No modify flag|^Cannot get host filesystem geometry|^Repair may fail if there is a sector size mismatch|^the image and the host filesystem|^$'
REPAIR_LSN='^Maximum metadata LSN|^Would format log to cycle'
# repair_check NAME DIR: the verdict NAME on DIR/shared.img with each DIR/log-<i>.img.
repair_check() {
    local name=$1 D=$2 i rc found repair_bad="" repair_lsn="" repair_exit0=""
    for i in $(seq 1 "$N"); do
        set +e
        xfs_repair -n -l "$D/log-$i.img" "$D/shared.img" >"$D/repair-$i.txt" 2>&1
        rc=$?
        set -e
        [ "$rc" = 0 ] && { repair_exit0="$repair_exit0 $i"; continue; }
        found=$(grep -vE "$REPAIR_BENIGN" "$D/repair-$i.txt" | grep -vE "$REPAIR_LSN" | head -n 3 | tr '\n' ' ' | cut -c1-160 || true)
        if [ -n "$found" ]; then
            repair_bad="$repair_bad log $i: exit $rc: $found;"
        elif grep -qE "$REPAIR_LSN" "$D/repair-$i.txt"; then
            repair_lsn="$repair_lsn log $i: $(grep -m1 '^Maximum metadata LSN' "$D/repair-$i.txt" | sed 's/Maximum metadata //');"
        else
            repair_bad="$repair_bad log $i: exit $rc with no finding printed;"
        fi
    done
    if [ -n "$repair_bad" ]; then
        echo "MXFS-RESULT $name FAIL$repair_bad (repair-<i>.txt)" >>"$RUN/host.log"
    elif [ -z "$repair_exit0" ]; then
        echo "MXFS-RESULT $name FAIL no log gives exit 0 (the newest log head must cover every stamp):$repair_lsn" >>"$RUN/host.log"
    elif [ -n "$repair_lsn" ] && [ "${MXFS_REPAIR_STRICT_LSN:-0}" = 1 ]; then
        echo "MXFS-RESULT $name FAIL only metadata LSNs ahead of logs (MXFS_REPAIR_STRICT_LSN=1):$repair_lsn" >>"$RUN/host.log"
    elif [ -n "$repair_lsn" ]; then
        echo "MXFS-RESULT $name PASS xfs_repair -n exit 0 with log(s)$repair_exit0; the others only behind the newest metadata LSN (per-node logs):$repair_lsn" >>"$RUN/host.log"
    else
        echo "MXFS-RESULT $name PASS xfs_repair -n clean (exit 0) with each of the $N logs" >>"$RUN/host.log"
    fi
}
WIT=$RUN/witness.img
. "$QEMU_DIR/crash.sh"

PIDS=()
LAUNCH_NS=()
VDE_PID=
cleanup() {
    if [ "$KEEP" = 0 ]; then
        for p in "${PIDS[@]}" "${CPIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
        [ -n "$VDE_PID" ] && kill "$VDE_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

vde_switch -d -s "$RUN/switch" -p "$RUN/switch.pid" >/dev/null 2>&1 || die "vde_switch failed"
for _ in $(seq 50); do [ -s "$RUN/switch.pid" ] && break; sleep 0.1; done
VDE_PID=$(cat "$RUN/switch.pid")

# The crash phase (qemu/crash.sh) runs after the first cluster's guests are gone, unless
# --fs-only, --bench, --keep or MXFS_CLUSTER_CRASH=0; MXFS_CLUSTER_CRASH_ONLY=1 runs only it.
CRASH=${MXFS_CLUSTER_CRASH:-1}
[ "$FS_ONLY" = 1 ] || [ "$KEEP" = 1 ] && CRASH=0
crash_report() {
    [ -d "$RUN/crash" ] || return 0
    grep -hE "^(crash phase time|recovery round|crash finding)" "$RUN/crash/host.log" "$RUN/host.log" || true
}
if [ "${MXFS_CLUSTER_CRASH_ONLY:-0}" = 1 ]; then
    crash_stage
    crash_judge
    crash_report
    set +e
    result_table "network_up,module_load,cluster_healthy,$CRASH_CHECKS,no_kernel_warnings" "$RUN"/crash/crash*.log "$RUN/host.log"
    rc=$?
    echo "run dir: $RUN (crash phase: crash/)"
    exit $rc
fi

start=$(date +%s)
log "file-system phase: seed $FS_SEED, data $DATA_OPS ops/node, namespace $NS_OPS ops/node, fsx $FSX_OPS ops$([ "$FS_ONLY" = 1 ] && echo '; --fs-only')"
for i in $(seq 1 "$N"); do
    extra=" mxfs.log=$(disk $((4 + i))) mxfs.fsseed=$FS_SEED mxfs.dataops=$DATA_OPS mxfs.nsops=$NS_OPS mxfs.fsxops=$FSX_OPS"
    [ "$KEEP" = 1 ] && extra="$extra mxfs.keep=1"
    [ "$FS_ONLY" = 1 ] && extra="$extra mxfs.fsonly=1"
    [ "$BENCH" = 1 ] && extra="$extra mxfs.bench=1"
    LAUNCH_NS+=("$(date +%s%N)")
    launch_guest "$RUN" "$i" "$extra" "node$i"
    PIDS+=("$LAST_PID")
done
log "booted ${#PIDS[@]} guests (pids ${PIDS[*]}); waiting (timeout ${RUN_TIMEOUT_SECS}s)"

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
    if [ "$FS_ONLY" = 0 ] && [ "$killed" = 0 ] && [ "$(witness_word $((1024 + N)))" -ge $KILL_PHASE ]; then
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
[ "$FS_ONLY" = 1 ] || [ "$killed" = 1 ] || echo "MXFS-RESULT node_killed FAIL the last node never reported holding its lock" >>"$RUN/host.log"
for i in "${hung[@]}"; do
    echo "MXFS-RESULT node${i}_finished FAIL hung: killed after ${RUN_TIMEOUT_SECS} s" >>"$RUN/host.log"
    echo "---- node $i serial log (last 40 lines) ----" >&2
    tail -n 40 "$RUN/node$i.log" >&2
done

if [ "$CRASH" = 1 ]; then
    crash_stage
fi

if [ "$BENCH" = 1 ]; then
    "$(dirname "$0")/bench-report.sh" "$RUN"
    exit $?
fi

# The file-system phase, judged here from what the guests printed.
fs_lines() { # TAG FILE: the JSON after "TAG " in every serial log
    cat "$RUN"/node*.log | tr -d '\r' | sed -n "s/^\s*$1 //p" >"$RUN/$2"
}
fs_lines MXFS-CLOCK fs-clock.jsonl
fs_lines MXFS-DATA fs-data.jsonl
fs_lines MXFS-NS fs-ns.jsonl
fs_lines MXFS-NSLIST fs-nslist.jsonl
FSCHECK=$TARGET/release/mxfs-fs-check
TSC_KHZ=$(echo "$CLOCK" | sed -n 's/.*tsc_early_khz=\([0-9]*\).*/\1/p')
fs_verdict() { # NAME OUTPUT-FILE: the checker's last line is PASS/FAIL ...
    local last
    last=$(tail -n 1 "$2")
    case "$last" in
    PASS*) echo "MXFS-RESULT $1 PASS ${last#PASS }" >>"$RUN/host.log" ;;
    *) echo "MXFS-RESULT $1 FAIL ${last#FAIL }" >>"$RUN/host.log" ;;
    esac
}
"$FSCHECK" data --clock "$RUN/fs-clock.jsonl" --tsc-khz "${TSC_KHZ:-1000000}" \
    --min-ops $((N * 16)) "$RUN/fs-data.jsonl" >"$RUN/fs-data-check.txt" 2>&1 || true
fs_verdict data_linearizable "$RUN/fs-data-check.txt"
"$FSCHECK" ns --clock "$RUN/fs-clock.jsonl" --nodes "$N" "$RUN/fs-ns.jsonl" \
    "$RUN/fs-nslist.jsonl" >"$RUN/fs-ns-check.txt" 2>&1 || true
fs_verdict namespace_agree "$RUN/fs-ns-check.txt"
# repair_clean: every node but the last unmounted before the node-loss scenario, and the last
# one ran a clean point after its last change (last_node_clean_point) and then died with the
# volume mounted, so every log must be clean and the volume consistent without any replay:
# xfs_repair -n once per log. With per-node logs (DESIGN.md 5.4) a
# clean log whose head is behind the newest metadata LSN (written through another node's log)
# makes xfs_repair -n exit 1 with only "Maximum metadata LSN ... is ahead of log" and "Would
# format log to cycle N" (checked on a fresh volume with one AGF LSN raised by xfs_db). Every
# stamp comes from some node's log and is at most that log's head, so with the log whose head
# is newest xfs_repair -n must exit 0: the check requires that (at least one log clean with
# exit 0), lets the other logs fail only with that LSN finding (reported), unless
# MXFS_REPAIR_STRICT_LSN=1, and fails on any other finding.
repair_check repair_clean "$RUN"

if [ "$FS_ONLY" = 0 ]; then
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
fi

# The guests' TSCs differ by when each QEMU started (see qemu/README.md, "Guest clock"): the
# offsets the guests measured next to the host's launch times.
python3 - "$RUN/fs-clock.jsonl" "${TSC_KHZ:-0}" "${LAUNCH_NS[@]}" <<'PY' || true
import json, sys
path, khz, launch = sys.argv[1], int(sys.argv[2]), [int(x) for x in sys.argv[3:]]
rows = [json.loads(l) for l in open(path) if l.strip()]
for r in sorted(rows, key=lambda r: (r["n"], r["at"] != "start")):
    n = r["n"]
    if n == 1 or not khz or n > len(launch):
        continue
    print(f"clock: node {n} ({r['at']}): node 1's TSC minus node {n}'s = {r['off'] / khz:.3f} ms "
          f"(+-{r['err'] / khz:.3f}); its QEMU was launched {(launch[n - 1] - launch[0]) / 1e6:.3f} ms after node 1's")
PY
# Phase times of the file-system phase (node 1's uptime clock).
echo "file-system phase times (node 1):"
tr -d '\r' <"$RUN/node1.log" | sed -n 's/^\s*MXFS-TIME \([^ ]*\) \(.*\)/  \1 \2 s/p'
grep -h "MXFS-FS node" "$RUN"/node*.log | tr -d '\r' | grep -v unmounted || true
for f in fs-data-check.txt fs-ns-check.txt; do
    echo "$f: $(grep -c VIOLATION "$RUN/$f") violation(s); $(head -n 1 "$RUN/$f")"
    grep VIOLATION "$RUN/$f" | head -n 3 | cut -c1-300 || true
done

FS_CHECKS=mxfs_mount_needs_daemon,fs_mount_all,data_linearizable,attr_coherent,mmap_coherent,namespace_agree,cluster_fsx,last_node_clean_point,plain_xfs_unchanged,repair_clean
if [ "$FS_ONLY" = 1 ]; then
    EXPECTED=network_up,module_load,cluster_healthy,$FS_CHECKS,no_kernel_warnings
else
    EXPECTED=network_up,module_load,cluster_healthy,$FS_CHECKS,volume_registered,lock_exclusion,noqueue_deny,cache_inval,node_killed,recovery_seen,journal_replayed,dead_node_lock_granted,daemon_stopped_enotconn,silent_daemon_etimedout,no_kernel_warnings,history_check,one_fence_agent
fi
if [ "$CRASH" = 1 ]; then
    crash_judge
    crash_report
    EXPECTED=$EXPECTED,$CRASH_CHECKS
fi
set +e
crash_logs=()
[ "$CRASH" = 1 ] && crash_logs=("$RUN"/crash/crash*.log)
result_table "$EXPECTED" "$RUN"/node*.log "${crash_logs[@]}" "$RUN/host.log"
rc=$?
set -e
echo "run dir: $RUN (serial logs node<i>.log, histories history-<i>.jsonl, fs-*.jsonl, fs-*-check.txt, repair-<i>.txt); wall ${elapsed} s"
if [ "$KEEP" = 1 ]; then
    echo "cluster kept up. Console of node i: socat -,raw,echo=0 UNIX-CONNECT:$RUN/node<i>.sock"
    echo "stop it: kill ${PIDS[*]} $VDE_PID"
fi
exit $rc
