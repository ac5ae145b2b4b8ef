# Sourced by /init (qemu/guest-init.sh) for mxfs.role=node: one node of `just qemu-cluster N`.
# Disks: vda shared XFS, vdb this node's log disk, vdc the shared exclusion witness, vdd this
# node's config (a tar with mxfsd.toml and cluster.key). Nodes are 1..N at 10.77.0.<id> on a
# private switch; they meet at barriers on the witness disk. The last node is killed by the host
# while it holds a lock; the others check recovery and that its lock is granted afterwards.
N=$(arg nodes)
VOL=
W=/dev/vdc
ALL=$(seq -s, 1 "$N")
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
healthy() { mxfsctl --config $CFG status 2>/dev/null | grep -q "quorum yes ($1 of"; }
wait_dmesg() { # PATTERN SECONDS
    i=0; while ! dmesg | grep -q "$1"; do i=$((i + 1)); [ $i -gt $(($2 * 5)) ] && return 1; sleep 0.2; done
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
for j in $(seq 1 "$N"); do
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

if [ ! -x /bin/mxfsd ]; then
    result mxfsd_present FAIL "the initramfs has no mxfsd (daemon crate did not build)"
    return 0 2>/dev/null || exit 0
fi
RUST_LOG=info mxfsd --config $CFG >/tmp/mxfsd.log 2>&1 &
MXFSD=$!
i=0
while ! healthy "$N"; do
    i=$((i + 1))
    if [ $i -gt 600 ]; then break; fi
    sleep 0.2
done
if healthy "$N"; then result cluster_healthy PASS "$(mxfsctl --config $CFG status | head -n 1)"
else result cluster_healthy FAIL "$(mxfsctl --config $CFG status 2>&1 | head -n 1)"; tail -n 20 /tmp/mxfsd.log; fi
barrier "$ALL" 1

# The shared volume: node 1 writes a file while nobody else has it mounted, then every node
# mounts it read-only (stock XFS must not be mounted read-write twice) and registers it.
if [ "$NODE" = 1 ]; then
    mount -t xfs /dev/vda /mnt && dd if=/dev/urandom of=/mnt/f bs=4096 count=64 2>/dev/null && sync && umount /mnt
fi
barrier "$ALL" 2
mount -t xfs -o ro,norecovery /dev/vda /mnt
VOL=$(mxfs-guest volume-add /mnt)
INO=$(stat -c %i /mnt/f)
if [ -n "$VOL" ]; then result volume_registered PASS "volume $VOL ino $INO"; else result volume_registered FAIL "DBG_VOLUME_ADD"; fi
barrier "$ALL" 3

# Mutual exclusion under contention: every node takes EX on one inode 10 times.
run lock_exclusion mxfs-guest lock "inode:$VOL:100" EX --iterations 10 --hold-ms 30 \
    --witness $W --history $HIST --node "$NODE"
dump_history
barrier "$ALL" 4

# NOQUEUE: node 1 holds EX; node 2's try-lock is denied at once.
if [ "$NODE" = 1 ]; then
    mxfs-guest lock "inode:$VOL:200" EX --hold-ms 20000 --witness $W --history $HIST --node 1 >/tmp/hold.log 2>&1 &
    HOLD=$!
    i=0; while ! grep -q '"granted"' $HIST 2>/dev/null; do i=$((i + 1)); [ $i -gt 300 ] && break; sleep 0.1; done
fi
barrier "$ALL" 5
if [ "$NODE" = 2 ]; then
    run noqueue_deny mxfs-guest lock "inode:$VOL:200" EX --noqueue --expect EAGAIN --history $HIST --node 2
fi
barrier "$ALL" 6
[ "$NODE" = 1 ] && { wait $HOLD; cat /tmp/hold.log; }
dump_history

# CACHE_INVAL: node 2 caches the file; node 1 writes under EX; node 2's next lock is stale, so
# the daemon invalidates before granting.
if [ "$NODE" = 2 ]; then cat /mnt/f >/dev/null; BEFORE=$(mxfs-guest resident /mnt/f); fi
barrier "$ALL" 7
if [ "$NODE" = 1 ]; then
    run inval_writer mxfs-guest lock "inode:$VOL:$INO" EX --hold-ms 10 --history $HIST --node 1
fi
barrier "$ALL" 8
if [ "$NODE" = 2 ]; then
    run inval_reader mxfs-guest lock "inode:$VOL:$INO" PR --history $HIST --node 2
    AFTER=$(mxfs-guest resident /mnt/f)
    if [ "$BEFORE" = "64/64" ] && [ "${AFTER%%/*}" = 0 ]; then
        result cache_inval PASS "resident $BEFORE -> $AFTER"
    else result cache_inval FAIL "resident $BEFORE -> $AFTER"; fi
fi
dump_history
barrier "$ALL" 9

# Node loss: the last node takes EX on inode 300 and holds it; the host kills it.
if [ "$NODE" = "$LAST" ]; then
    mxfs-guest lock "inode:$VOL:300" EX --hold-ms 600000 --witness $W --history $HIST --node "$NODE" &
    i=0; while ! grep -q '"granted"' $HIST 2>/dev/null; do i=$((i + 1)); [ $i -gt 300 ] && break; sleep 0.1; done
    dump_history
    echo "MXFS-KILL-ME node $NODE"
    # Phase 10 from the last node tells the host to kill it (cluster.sh watches its sector).
    mxfs-guest barrier --witness $W --node "$NODE" --nodes "$NODE" --phase 10 --timeout-secs 5
    sleep 600
fi
barrier "$LAST" 10
if wait_dmesg "RECOVERY_DONE" 120; then
    result recovery_seen PASS "$(dmesg | grep -E 'RECOVERY_(START|DONE)' | sed 's/^\[[^]]*\] //' | tr '\n' ';')"
else result recovery_seen FAIL "no RECOVERY_DONE within 120 s: $(dmesg | grep RECOVERY | tr '\n' ';')"; fi
if dmesg | grep -q RECOVERY_START; then :; else result recovery_start FAIL "no RECOVERY_START"; fi
barrier "$SURV" 11
if [ "$NODE" = 1 ]; then
    run dead_node_lock_granted mxfs-guest lock "inode:$VOL:300" EX --hold-ms 10 --witness $W --history $HIST --node 1
fi
dump_history
barrier "$SURV" 12

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
barrier "$SURV" 13
if dmesg | grep -qE "BUG:|Oops|WARNING:|Kernel panic"; then
    result no_kernel_warnings FAIL "$(dmesg | grep -E 'BUG:|Oops|WARNING:' | head -n 1)"
else result no_kernel_warnings PASS "node $NODE dmesg clean"; fi
sed 's/^/MXFS-MXFSD /' /tmp/mxfsd.log | tail -n 40
