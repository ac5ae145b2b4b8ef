# Sourced by /init (qemu/guest-init.sh) for mxfs.role=node: one node of `just qemu-cluster N`.
# Disks: vda the shared -o mxfs volume (external logs), vdb the shared image of the debug-family
# scenarios (plain XFS, internal log), vdc the shared exclusion witness, vdd this node's config
# (a tar with mxfsd.toml and cluster.key), then every node's log in node order (vde is node 1's;
# mxfs.log names this node's), the shared volume again for recovery mounts (mxfs.alias,
# qemu/mxfs-replay.sh), and on node 1 a plain XFS scratch disk last (mxfs.scratch).
# Nodes are 1..N at 10.77.0.<id> on a private switch; they meet at barriers on the witness
# disk. First the file-system phase (fs_phase: every node mounts vda -o mxfs read-write, runs
# the workloads, unmounts); then the debug-family scenarios; the last node is killed by the host
# while it holds a lock; the others check recovery and that its lock is granted afterwards.
# mxfs.fsonly=1 stops after the file-system phase.
N=$(arg nodes)
VOL=
W=/dev/vdc
DBG=/dev/vdb
LOGDEV=/dev/$(arg log)
SCRATCH=$(arg scratch)
FSONLY=$(arg fsonly)
# Barrier phases: 1 healthy, 100.. the file-system phase, 1002.. the debug-family scenarios;
# KILL_PHASE from the last node tells the host to kill it (cluster.sh watches for it).
KILL_PHASE=1010
ALL=$(seq -s, 1 "$N")
# mxfs.live=<ids>: the nodes that are up (the crash phase's first-mounter restart boots only a
# majority): barriers and the health check count those.
[ -n "$(arg live)" ] && ALL=$(arg live)
HEALTHY_N=$(echo "$ALL" | tr ',' '\n' | wc -l)
SURV=$(seq -s, 1 $((N - 1)))
LAST=$N
CFG=/etc/mxfs/mxfsd.toml
HIST=/tmp/hist.jsonl
T0=$(cut -d' ' -f1 /proc/uptime)

barrier() { # NODES PHASE
    mxfs-guest barrier --witness $W --node "$NODE" --nodes "$1" --phase "$2" --timeout-secs 240 ||
        { result "barrier_$2" FAIL "nodes did not meet"; }
}
dump_history() {
    [ -f $HIST ] && sed 's/^/MXFS-HIST /' $HIST && : >$HIST
}
no_warnings() {
    if dmesg | grep -qE "BUG:|Oops|WARNING:|Kernel panic"; then
        result no_kernel_warnings FAIL "$(dmesg | grep -E 'BUG:|Oops|WARNING:' | head -n 1)"
    else result no_kernel_warnings PASS "node $NODE dmesg clean"; fi
}
healthy() { mxfsctl --config $CFG status 2>/dev/null | grep -q "quorum yes ($1 of"; }
# mount_volume DIR: mounts vda -o mxfs with this node's log on DIR (errors in /tmp/mount.err).
# While mxfsd replays this node's own log (a cold start replays every log, DESIGN.md §5.5) the
# recovery mount holds the log device and the mount fails with EBUSY: it is tried again, up to
# MOUNT_BUSY_TRIES times, MOUNT_BUSY_WAIT_S apart (a replay takes well under a second).
MOUNT_BUSY_TRIES=20
MOUNT_BUSY_WAIT_S=0.5
mount_volume() {
    local t=0
    until mount -t xfs -o "mxfs,logdev=$LOGDEV" /dev/vda "$1" 2>/tmp/mount.err; do
        t=$((t + 1))
        grep -q "Device or resource busy" /tmp/mount.err && [ $t -lt $MOUNT_BUSY_TRIES ] || return 1
        sleep $MOUNT_BUSY_WAIT_S
    done
}
wait_dmesg() { # PATTERN SECONDS
    i=0; while ! dmesg | grep -q "$1"; do i=$((i + 1)); [ $i -gt $(($2 * 5)) ] && return 1; sleep 0.2; done
}

# ---- The file-system phase (issue 10 item 4; checks judged on the host by cluster.sh) ----
# Every node mounts vda -o mxfs read-write with its own log, the workloads run, every node
# unmounts (before the node-loss scenario, so every log is clean for repair_clean). Sizes come
# from the kernel command line (cluster.sh's MXFS_FS_* knobs).
M=/mnt/mxfs
FSP=100
# unlink_handoff: rounds, and how long node 1 keeps each unlinked file open (below the clean
# point's XFS_MXFS_UNLINKED_WAIT_MS of 200 ms, above a callback's round trip).
UNLINK_ROUNDS=6
UNLINK_HOLD_S=0.1
fsb() { FSP=$((FSP + 1)); barrier "$ALL" $FSP; }
up() { cut -d' ' -f1 /proc/uptime; }
# phase_time NAME START: node 1 reports how long a phase took (cluster.sh prints these).
phase_time() { [ "$NODE" = 1 ] && echo "MXFS-TIME $1 $(awk -v a="$2" -v b="$(up)" 'BEGIN{printf "%.1f", b - a}')"; }
# turns NAME SETCMD CHECKCMD FILE: node t runs SETCMD FILE t, then every other node CHECKCMD
# FILE t, for every t; one result line per node with what it saw.
turns() {
    name=$1; bad=""; seen=0
    for t in $(seq 1 "$N"); do
        if [ "$NODE" = "$t" ]; then
            out=$(mxfs-guest "$2" "$4" "$t" 2>&1) || bad="$bad; set $t: $out"
            echo "  [$name] $out"
        fi
        fsb
        if [ "$NODE" != "$t" ]; then
            out=$(mxfs-guest "$3" "$4" "$t" 2>&1) || bad="$bad; $out"
            echo "  [$name] $out"
            seen=$((seen + 1))
        fi
        fsb
    done
    bad=$(printf "%s" "$bad" | tr "\n" " ")
    if [ -z "$bad" ]; then result "$name" PASS "node $NODE saw all $seen other nodes' changes at once"
    else result "$name" FAIL "node $NODE:${bad#;}"; fi
}
fs_phase() {
    seed=$(arg fsseed); data_ops=$(arg dataops); ns_ops=$(arg nsops); fsx_ops=$(arg fsxops)
    t=$(up); t_all=$t
    [ "$NODE" = 1 ] && { mxfs-guest clock-serve --secs 30 >/tmp/clock-serve.log 2>&1 & }
    fsb
    mxfs-guest clock-sync --node "$NODE" --at start 2>&1
    # The shared files (data0, data1, attr, mmap, fsx, ns/) are in the image from mkfs (a
    # prototype file, cluster.sh), so every check starts from files every node finds on disk,
    # and no node writes before all have mounted: a node that takes no cluster lock then shows
    # stale data and attributes, not only missing names (namespace_agree covers creation).
    fsb
    n=$(dmesg | wc -l)
    if mount_volume $M; then mounted=1
    else
        mounted=0
        echo "MXFS-FS node $NODE: mount failed: $(cat /tmp/mount.err) | $(dmesg | tail -n +$((n + 1)) | tr '\n' ' ')"
        # The workloads must not run on the initramfs directory under the mount point.
        mount -t tmpfs -o ro,size=4k none $M
    fi
    fsb
    line=$(grep " $M " /proc/mounts)
    fsb
    case "$mounted $line" in
    "1 "*" rw,"*,mxfs,* | "1 "*" rw,"*,mxfs" "*) result fs_mount_all PASS "node $NODE: $line (checked after all $N mounted)" ;;
    1*) result fs_mount_all FAIL "node $NODE: /proc/mounts: $line" ;;
    *) result fs_mount_all FAIL "node $NODE: $(head -n 1 /tmp/mount.err)" ;;
    esac
    phase_time mount "$t"

    # data_linearizable: stamped whole-block reads and writes, judged on the host.
    t=$(up)
    mxfs-guest data $M --node "$NODE" --ops "$data_ops" --secs 150 --seed "$seed" >/tmp/data.out 2>&1
    fsb
    mxfs-guest data $M --node "$NODE" --final >>/tmp/data.out 2>&1
    fsb
    cat /tmp/data.out
    phase_time data "$t"

    t=$(up)
    turns attr_coherent attr-set attr-check $M/attr
    phase_time attr "$t"

    t=$(up)
    turns mmap_coherent mmap-set mmap-check $M/mmap
    phase_time mmap "$t"

    # namespace_agree: concurrent operations, then every node's listing; judged on the host.
    t=$(up)
    mxfs-guest ns $M/ns --node "$NODE" --ops "$ns_ops" --secs 150 --seed "$seed" >/tmp/ns.out 2>&1
    fsb
    mxfs-guest ns-list $M/ns --node "$NODE" >>/tmp/ns.out 2>&1
    fsb
    cat /tmp/ns.out
    phase_time namespace "$t"

    # cluster_fsx: one file, each op on the node a shared seeded schedule names.
    t=$(up)
    mxfs-guest fsx $M/fsx --node "$NODE" --nodes "$N" --ops "$fsx_ops" --seed "$seed" \
        --witness $W --sector 1300 --name cluster_fsx
    rc=$?
    if [ $rc -gt 1 ]; then
        # Died (a signal, or an I/O error on the witness): stop the others waiting for it.
        mxfs-guest fsx-abort --witness $W --sector 1300
        result cluster_fsx FAIL "node $NODE: mxfs-guest fsx died (exit $rc)"
    fi
    fsb
    phase_time fsx "$t"

    # unlink_handoff (a workload for repair_clean): the freeing of an inode unlinked under the
    # lock must run under the lock, although the VFS drops the inode's last reference after
    # the operation (kmod/patches 0024). Node 1 creates and opens a file, unlinks it, and
    # closes it UNLINK_HOLD_S later; right after the unlink node 2 creates a file, so node 1's
    # clean point runs while the unlinked file is still open. Without the clean point's wait
    # the free ran once the lock had gone to node 2, from node 1's cached inode btree, and
    # undid node 2's allocations (qemu/README.md, "A free lost after a clean point").
    t=$(up)
    [ "$NODE" = 1 ] && mkdir -p $M/unlink
    fsb
    for i in $(seq 1 $UNLINK_ROUNDS); do
        if [ "$NODE" = 1 ]; then
            exec 7>$M/unlink/held$i
            echo "held $i" >&7
            rm $M/unlink/held$i
        fi
        fsb
        case "$NODE" in
        1) sleep $UNLINK_HOLD_S; exec 7>&- ;;
        2) echo "node 2 file $i" >$M/unlink/made$i ;;
        esac
        fsb
    done
    [ "$NODE" = 1 ] && echo "MXFS-FS node 1: unlink_handoff ran $UNLINK_ROUNDS rounds; $(ls $M/unlink | wc -l) files left (want $UNLINK_ROUNDS)"
    phase_time unlink_handoff "$t"

    # last_node_clean_point: the last node dirties the volume under EX, node 1 lists what it
    # wrote (PR: mxfsd calls node N's lock back, node N runs its clean point and keeps PR), and
    # node N then keeps the volume mounted until it dies: it is killed in scenario 6, or reboots
    # without unmounting after --fs-only. Its log must need no replay (the clean point moved
    # its tail past everything, kmod/patches 0018): repair_clean runs xfs_repair -n with every
    # log, and a log that holds changes to replay fails it.
    t=$(up)
    if [ "$NODE" = "$N" ]; then
        before=$(grep -E '^(callbacks|clean_points) ' /sys/module/mxfs/parameters/lock_stats | tr '\n' ' ')
        mkdir -p $M/lastnode && for i in $(seq 1 20); do echo "node $NODE file $i" >$M/lastnode/f$i; done
    fi
    fsb
    [ "$NODE" = 1 ] && echo "MXFS-FS node 1 lists $(ls $M/lastnode 2>&1 | wc -l) files the last node wrote"
    fsb
    if [ "$NODE" = "$N" ]; then
        after=$(grep -E '^(callbacks|clean_points) ' /sys/module/mxfs/parameters/lock_stats | tr '\n' ' ')
        cp0=$(echo "$before" | sed -n 's/.*clean_points \([0-9]*\).*/\1/p')
        cp1=$(echo "$after" | sed -n 's/.*clean_points \([0-9]*\).*/\1/p')
        if [ "${cp1:-0}" -gt "${cp0:-0}" ]; then
            result last_node_clean_point PASS "node $NODE ran its clean point when node 1 read ($before-> $after); keeps $M mounted until it dies"
        else result last_node_clean_point FAIL "no clean point on node $NODE ($before-> $after)"; fi
    fi
    phase_time last_node "$t"

    t=$(up)
    [ "$NODE" = 1 ] && { mxfs-guest clock-serve --secs 30 >/tmp/clock-serve.log 2>&1 & }
    fsb
    mxfs-guest clock-sync --node "$NODE" --at end 2>&1
    n=$(dmesg | wc -l)
    if [ "$NODE" = "$N" ]; then echo "MXFS-FS node $NODE: keeps $M mounted (last_node_clean_point)"
    elif umount $M 2>/tmp/umount.err; then echo "MXFS-FS node $NODE: unmounted $M"
    else echo "MXFS-FS node $NODE: umount failed: $(cat /tmp/umount.err)"; umount -l $M; fi
    dmesg | tail -n +$((n + 1)) | sed 's/^/MXFS-FS-DMESG: /'
    fsb
    phase_time umount "$t"

    # plain_xfs_unchanged: the same fsx, single node, on plain XFS (node 1's scratch disk).
    t=$(up)
    if [ "$NODE" = 1 ]; then
        if mount -t xfs "/dev/$SCRATCH" /mnt/scratch; then
            : >/mnt/scratch/fsx
            mxfs-guest fsx /mnt/scratch/fsx --node 1 --nodes 1 --ops "$fsx_ops" --seed "$seed" \
                --witness $W --sector 1301 --name plain_xfs_unchanged ||
                [ $? = 1 ] || result plain_xfs_unchanged FAIL "mxfs-guest fsx died"
            umount /mnt/scratch
        else result plain_xfs_unchanged FAIL "mount -t xfs /dev/$SCRATCH failed"; fi
    fi
    fsb
    phase_time plain_fsx "$t"
    phase_time fs_total "$t_all"
    dmesg | grep -iE "xfs|mxfs" | grep -iE "corrupt|error|shutdown|metadata|LSN|fail|withdraw|refused" | head -n 20 | sed 's/^/MXFS-FS-DMESG: /'
}

# `just bench-fs` (cluster.sh --bench): the workloads of qemu/guest/src/bench.rs, each followed
# by this node's lock_stats (mxfs.ko), so the host can split the time; printed as MXFS-BENCH
# lines and turned into figures by qemu/bench-report.sh. Phases, all between barriers:
# 1. node 1 alone on the -o mxfs volume (the others mounted and idle: the lock stays cached on
#    node 1) against plain XFS on its scratch disk in the same guest, the two taking turns;
# 2. nodes 1 and 2 alternately write one file (each round hands the volume lock over);
# 3. small-file creates for BENCH_CREATE_SECS on 1, then 2, ..., N nodes at once.
BENCH_SINGLE_SECS=8
BENCH_PINGPONG_ROUNDS=30
BENCH_PAIRS=200000
BENCH_CREATE_SECS=5
bench_stats() { # PHASE WHEN
    echo "MXFS-BENCH-STATS $NODE $1 $2 $(tr '\n' ' ' </sys/module/mxfs/parameters/lock_stats)"
}
bench_phase() {
    fsb
    if ! mount_volume $M; then
        echo "MXFS-BENCH-FAIL node $NODE: mount: $(cat /tmp/mount.err)"
    fi
    fsb
    [ "$NODE" = 1 ] && { printf '\0\0\0\0\0\0\0\0' >$M/pingpong; mkdir -p $M/creates; }
    fsb
    if [ "$NODE" = 1 ]; then
        if mount -t xfs "/dev/$SCRATCH" /mnt/scratch; then
            bench_stats single before
            mxfs-guest bench-fs single $M /mnt/scratch --secs $BENCH_SINGLE_SECS | sed 's/^/  /'
            bench_stats single after
            umount /mnt/scratch
            # The cached pair alone, in the kernel (mxfs.ko's pair_bench parameter).
            if echo $BENCH_PAIRS >/sys/module/mxfs/parameters/pair_bench; then
                echo "MXFS-BENCH-PAIRS $(tr '\n' ' ' </sys/module/mxfs/parameters/pair_bench)"
            else echo "MXFS-BENCH-FAIL node 1: pair_bench failed"; fi
        else echo "MXFS-BENCH-FAIL node 1: mount -t xfs /dev/$SCRATCH failed"; fi
    fi
    fsb
    if [ "$NODE" -le 2 ]; then
        bench_stats pingpong before
        mxfs-guest bench-fs pingpong $M/pingpong --me $((NODE % 2)) \
            --rounds $BENCH_PINGPONG_ROUNDS | sed 's/^/  /'
        bench_stats pingpong after
    fi
    fsb
    for k in $(seq 1 "$N"); do
        fsb
        if [ "$NODE" -le "$k" ]; then
            mxfs-guest bench-fs creates $M/creates/k$k-n$NODE --secs $BENCH_CREATE_SECS |
                sed "s/^MXFS-BENCH creates/MXFS-BENCH k$k creates/; s/^/  /"
        fi
        fsb
    done
    umount $M || umount -l $M
    fsb
    no_warnings
}

# ---- The crash phase (cluster.sh's second cluster, mxfs.crash=1; issue 11 item 5) ----
# Every node mounts a fresh -o mxfs volume and runs the fsync-acknowledged storm on its own
# directory (mxfs-guest crash-storm) until the host stops it. The host steers the kills through
# control words on the witness disk (crash.rs): it picks a victim, the others pause, the victim
# acknowledges one more write and reports ready, the host kills its QEMU, marks it fenced, lets
# the survivors go on, and relaunches the victim with mxfs.inc=<round> (it rejoins here, mounts
# and storms again). After each recovery node 1's crash-watch lists the dead node's directory
# when the host asks (MXFS-CRASH-SNAP); after the first-mounter restart each node lists its own
# before it storms. At the end node 1 lists every node's directory (MXFS-CRASH-FINAL) and
# prints mxfsd's recovery history; the host judges (crash_fsync_durable, recovery_ms).
crash_phase() {
    inc=$(arg inc); inc=${inc:-0}
    n=$(dmesg | wc -l)
    if ! mount_volume $M; then
        result "crash_mount_${NODE}_$inc" FAIL "node $NODE inc $inc: $(cat /tmp/mount.err) | $(dmesg | tail -n +$((n + 1)) | tr '\n' ' ' | cut -c1-300)"
        return
    fi
    if [ "$NODE" = 1 ]; then
        # (It also lists a dead node's directory when the host asks, after each recovery.)
        mxfs-guest crash-watch --witness $W --root $M &
        # mxfsd's recovery history whenever another recovery finished (the host takes the last
        # one printed by each incarnation of node 1: it may die in the first-mounter round).
        echo "MXFS-CRASH-MXFSD-UP $MXFSD_UP"
        # The kernel's recovery lines too (RECOVERY_*, the recovery mounts and what XFS found
        # in each log), as they come.
        (
            last=0; dn=0
            while :; do
                st=$(mxfsctl --config $CFG --json status 2>/dev/null)
                k=$(echo "$st" | grep -o '"remaster_ms":[0-9]' | wc -l)
                [ "$k" != "$last" ] && { echo "MXFS-CRASH-STATUS $st"; last=$k; }
                dmesg | grep -E "RECOVERY_(START|DONE)|replaying node|Starting recovery|Ending recovery|Ending clean" >/tmp/crash-dmesg
                tail -n +$((dn + 1)) /tmp/crash-dmesg | sed 's/^/MXFS-CRASH-DMESG /'
                dn=$(wc -l </tmp/crash-dmesg)
                [ -f /tmp/crash-stopped ] && break
                sleep 1
            done
        ) &
        STATUS_LOOP=$!
    fi
    # The first-mounter restart (mxfs.live=): before this node writes anything, its own
    # directory as the restart's replays left it, and on node 1 those of the nodes not booted
    # again, as this round's snapshots (MXFS-CRASH-SNAP; crash_fsync_durable, judged on the host).
    if [ -n "$(arg live)" ]; then
        only=$NODE
        if [ "$NODE" = 1 ]; then
            for j in $(seq 1 "$N"); do case ",$ALL," in *",$j,"*) ;; *) only="$only,$j" ;; esac; done
        fi
        mxfs-guest crash-list $M --nodes "$N" --only "$only" --snap "$inc" 2>&1
    fi
    mxfs-guest crash-storm $M/c$NODE --node "$NODE" --nodes "$N" --inc "$inc" --seed "$(arg fsseed)" --witness $W 2>&1
    rc=$?
    echo "MXFS-CRASH storm ended on node $NODE (exit $rc)"
    if [ $rc = 3 ]; then
        # The host asked for this node's mxfsd to die while it holds EX with a dirty log
        # (daemon_death_withdraws): the module must withdraw the mount, so operations fail
        # with EIO; the others fence this node and replay its log; the host then powers it off
        # and boots it again.
        n=$(dmesg | wc -l)
        kill -9 "$MXFSD"
        # (Until the module notices mxfsd is gone, the lock it caches still covers a write.)
        i=0; got=; ok_tries=0
        while [ $i -lt 50 ]; do
            if (echo after >"$M/c$NODE/after-daemon-death") 2>/tmp/w.err; then ok_tries=$((ok_tries + 1)); got="write succeeded"
            else got="write: $(head -n 1 /tmp/w.err | sed 's/.*: //') after $ok_tries successful tries"; case "$got" in *"Input/output error"*) break ;; esac; fi
            i=$((i + 1)); sleep 0.2
        done
        st=$(stat "$M/c$NODE/d0" 2>&1 >/dev/null | head -n 1)
        echo "MXFS-CRASH-WITHDRAWN node $NODE: $got; stat: ${st:-succeeded}; $(dmesg | tail -n +$((n + 1)) | grep -m1 withdraw | sed 's/^\[[^]]*\] //')"
        while :; do sleep 600; done
    fi
    : >/tmp/crash-stopped
    # Every node that is up now stopped its storm (a rejoined node joins the same barriers: the
    # phases below are above any it skipped).
    barrier "$ALL" 2001
    if [ "$NODE" = 1 ]; then
        wait "$STATUS_LOOP"
        mxfs-guest crash-list $M --nodes "$N"
        echo "MXFS-CRASH-STATUS $(mxfsctl --config $CFG --json status)"
        grep -iE "recovery done|replay|first mounter" /tmp/mxfsd.log | tail -n 30 | sed 's/^/MXFS-MXFSD /'
    fi
    # The others' recovery mounts (after the first-mounter restart each member replays its own
    # log).
    [ "$NODE" != 1 ] && dmesg | grep -E "replaying node|Starting recovery|Ending recovery|Ending clean" |
        sed 's/^/MXFS-CRASH-DMESG /'
    barrier "$ALL" 2002
    umount $M || { echo "MXFS-CRASH node $NODE: umount failed"; umount -l $M; }
    barrier "$ALL" 2003
    no_warnings
}

ip addr add "10.77.0.$NODE/24" dev eth0
ip link set eth0 up
# Every peer must answer a ping before mxfsd starts (peers boot at different times under TCG;
# NET_WAIT_SECS bounds the wait per peer). A dead link is named here rather than showing up
# later as a cluster that never becomes healthy.
# Seen twice in about 30 runs on this host: a guest's virtio-net receive side stays silent
# (its ARP requests reach the peers, their replies never arrive). Taking the link down and up
# makes the driver repost its receive buffers and notify QEMU again, so every
# NET_BOUNCE_SECS without an answer the link is bounced.
NET_WAIT_SECS=90
NET_BOUNCE_SECS=15
unreachable=
for j in $(echo "$ALL" | tr ',' ' '); do
    [ "$j" = "$NODE" ] && continue
    k=0
    until ping -c 1 -W 1 "10.77.0.$j" >/dev/null 2>&1; do
        k=$((k + 1)); [ $k -ge $NET_WAIT_SECS ] && { unreachable="$unreachable 10.77.0.$j"; break; }
        if [ $((k % NET_BOUNCE_SECS)) = 0 ]; then
            echo "MXFS-NET node $NODE: no answer from 10.77.0.$j for $k s; bouncing eth0"
            ip link set eth0 down; ip link set eth0 up
        fi
    done
done
if [ -z "$unreachable" ]; then result network_up PASS "node $NODE reaches every peer"
else result network_up FAIL "node $NODE cannot reach:$unreachable"; ip link show eth0; ip neigh; fi
mkdir -p /etc/mxfs /run/mxfs
tar -xf /dev/vdd -C /etc/mxfs || result config FAIL "no config disk"
if insmod /lib/modules/mxfs.ko debug=1; then result module_load PASS "node $NODE"; else result module_load FAIL "node $NODE"; fi
mkdir -p /mnt/mxfs /mnt/scratch
# A mount while mxfsd is not running fails with ENOTCONN, not a hang (node 1 only: nobody else
# touches vda before barrier 1; a mount that succeeds is unmounted at once).
if [ "$NODE" = 1 ]; then
    n=$(dmesg | wc -l)
    if timeout 60 mount -t xfs -o "mxfs,logdev=$LOGDEV" /dev/vda /mnt/mxfs 2>/tmp/mount.err; then
        umount /mnt/mxfs
        result mxfs_mount_needs_daemon FAIL "mount -o mxfs,logdev=$LOGDEV succeeded with no mxfsd running"
    elif grep -q "Transport endpoint is not connected" /tmp/mount.err; then
        result mxfs_mount_needs_daemon PASS "$(head -n 1 /tmp/mount.err)"
    else
        result mxfs_mount_needs_daemon FAIL "want ENOTCONN: $(head -n 1 /tmp/mount.err) | $(dmesg | tail -n +$((n + 1)) | tail -n 2 | tr '\n' ' ')"
    fi
fi

if [ ! -x /bin/mxfsd ]; then
    result mxfsd_present FAIL "the initramfs has no mxfsd (daemon crate did not build)"
    return 0 2>/dev/null || exit 0
fi
MXFSD_UP=$(cut -d' ' -f1 /proc/uptime)
RUST_LOG=info mxfsd --config $CFG >/tmp/mxfsd.log 2>&1 &
MXFSD=$!
i=0
while ! healthy "$HEALTHY_N"; do
    i=$((i + 1))
    if [ $i -gt 600 ]; then break; fi
    sleep 0.2
done
if healthy "$HEALTHY_N"; then result cluster_healthy PASS "$(mxfsctl --config $CFG status | head -n 1)"
else result cluster_healthy FAIL "$(mxfsctl --config $CFG status 2>&1 | head -n 1)"; tail -n 20 /tmp/mxfsd.log; fi
barrier "$ALL" 1

if [ "$(arg crash)" = 1 ]; then
    crash_phase
    return 0 2>/dev/null || exit 0
fi
if [ "$(arg bench)" = 1 ]; then
    bench_phase
    return 0 2>/dev/null || exit 0
fi
fs_phase
if [ "$FSONLY" = 1 ]; then
    no_warnings
    return 0 2>/dev/null || exit 0
fi

# The debug-family scenarios' volume (vdb, not the -o mxfs volume: DBG_VOLUME_ADD pins the
# super block of a plain mount until mxfs.ko unloads, and an -o mxfs mount of a device mounted
# plain is refused). Node 1 writes a file while nobody else has it mounted, then every node
# mounts it read-only (stock XFS must not be mounted read-write twice) and registers it.
if [ "$NODE" = 1 ]; then
    mount -t xfs $DBG /mnt && dd if=/dev/urandom of=/mnt/f bs=4096 count=64 2>/dev/null && sync && umount /mnt
fi
barrier "$ALL" 1002
mount -t xfs -o ro,norecovery $DBG /mnt
VOL=$(mxfs-guest volume-add /mnt)
INO=$(stat -c %i /mnt/f)
if [ -n "$VOL" ]; then result volume_registered PASS "volume $VOL ino $INO"; else result volume_registered FAIL "DBG_VOLUME_ADD"; fi
barrier "$ALL" 1003

# Mutual exclusion under contention: every node takes EX on one inode 10 times.
run lock_exclusion mxfs-guest lock "inode:$VOL:100" EX --iterations 10 --hold-ms 30 \
    --witness $W --history $HIST --node "$NODE"
dump_history
barrier "$ALL" 1004

# NOQUEUE: node 1 holds EX; node 2's try-lock is denied at once.
if [ "$NODE" = 1 ]; then
    mxfs-guest lock "inode:$VOL:200" EX --hold-ms 20000 --witness $W --history $HIST --node 1 >/tmp/hold.log 2>&1 &
    HOLD=$!
    i=0; while ! grep -q '"granted"' $HIST 2>/dev/null; do i=$((i + 1)); [ $i -gt 300 ] && break; sleep 0.1; done
fi
barrier "$ALL" 1005
if [ "$NODE" = 2 ]; then
    run noqueue_deny mxfs-guest lock "inode:$VOL:200" EX --noqueue --expect EAGAIN --history $HIST --node 2
fi
barrier "$ALL" 1006
[ "$NODE" = 1 ] && { wait $HOLD; cat /tmp/hold.log; }
dump_history

# CACHE_INVAL: node 2 caches the file; node 1 writes under EX; node 2's next lock is stale, so
# the daemon invalidates before granting.
if [ "$NODE" = 2 ]; then cat /mnt/f >/dev/null; BEFORE=$(mxfs-guest resident /mnt/f); fi
barrier "$ALL" 1007
if [ "$NODE" = 1 ]; then
    run inval_writer mxfs-guest lock "inode:$VOL:$INO" EX --hold-ms 10 --history $HIST --node 1
fi
barrier "$ALL" 1008
if [ "$NODE" = 2 ]; then
    run inval_reader mxfs-guest lock "inode:$VOL:$INO" PR --history $HIST --node 2
    AFTER=$(mxfs-guest resident /mnt/f)
    if [ "$BEFORE" = "64/64" ] && [ "${AFTER%%/*}" = 0 ]; then
        result cache_inval PASS "resident $BEFORE -> $AFTER"
    else result cache_inval FAIL "resident $BEFORE -> $AFTER"; fi
fi
dump_history
barrier "$ALL" 1009

# Node loss: the last node takes EX on inode 300 and holds it; the host kills it.
if [ "$NODE" = "$LAST" ]; then
    mxfs-guest lock "inode:$VOL:300" EX --hold-ms 600000 --witness $W --history $HIST --node "$NODE" &
    i=0; while ! grep -q '"granted"' $HIST 2>/dev/null; do i=$((i + 1)); [ $i -gt 300 ] && break; sleep 0.1; done
    dump_history
    echo "MXFS-KILL-ME node $NODE"
    # Phase KILL_PHASE from the last node tells the host to kill it (cluster.sh watches its sector).
    mxfs-guest barrier --witness $W --node "$NODE" --nodes "$NODE" --phase $KILL_PHASE --timeout-secs 5
    sleep 600
fi
barrier "$LAST" $KILL_PHASE
if wait_dmesg "RECOVERY_DONE" 120; then
    result recovery_seen PASS "$(dmesg | grep -E 'RECOVERY_(START|DONE)' | sed 's/^\[[^]]*\] //' | tr '\n' ';')"
else result recovery_seen FAIL "no RECOVERY_DONE within 120 s: $(dmesg | grep RECOVERY | tr '\n' ';')"; fi
if dmesg | grep -q RECOVERY_START; then :; else result recovery_start FAIL "no RECOVERY_START"; fi
# The fencer (node 1) replayed the dead node's log through a recovery mount (mxfsd's
# replay_command, qemu/mxfs-replay.sh) before the recovery finished. (At the cluster's cold
# start, node 1 replayed every node's log, its own too: the first mounter's rule.)
if [ "$NODE" = 1 ]; then
    # (The cold start replayed every log once already: look for the dead node's, after it.)
    if line=$(dmesg | grep "XFS recovery mount of.*replaying node $LAST's log" | tail -n 1); then
        ended=$(dmesg | grep -A8 "replaying node $LAST's log" | tail -n 8 | grep -m1 -o "Ending [a-z]* *[a-z]*")
        result journal_replayed PASS "${line#*] }; XFS: ${ended:-no Ending line}"
    else result journal_replayed FAIL "no recovery mount on the fencer: $(grep -i replay /tmp/mxfsd.log | tail -n 3 | tr '\n' ' ')"; fi
fi
barrier "$SURV" 1011
if [ "$NODE" = 1 ]; then
    run dead_node_lock_granted mxfs-guest lock "inode:$VOL:300" EX --hold-ms 10 --witness $W --history $HIST --node 1
fi
dump_history
barrier "$SURV" 1012

# Daemon stopped: requests fail at once with ENOTCONN. Then a daemon that never answers:
# ETIMEDOUT after GRANT_TIMEOUT_MS.
if [ "$NODE" = 2 ]; then
    kill $MXFSD; wait $MXFSD 2>/dev/null
    run daemon_stopped_enotconn mxfs-guest lock "inode:$VOL:400" EX --expect ENOTCONN
    mxfs-guest fake-daemon --answer ignore --count 1 --deadline-secs 40 >/tmp/fd.log 2>&1 &
    FD=$!
    wait_for /tmp/fd.log registered 10
    run silent_daemon_etimedout mxfs-guest lock "inode:$VOL:401" EX --expect ETIMEDOUT
    kill $FD 2>/dev/null
fi
barrier "$SURV" 1013
no_warnings
sed 's/^/MXFS-MXFSD /' /tmp/mxfsd.log | tail -n 40
