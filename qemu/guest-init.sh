#!/bin/busybox sh
# /init of the MXFS guests. The kernel command line picks the role:
#   mxfs.role=smoke   single-node checks of mxfs.ko (qemu/smoke.sh)
#   mxfs.role=node    one cluster node (qemu/cluster.sh): mxfs.node=N mxfs.nodes=M
# Every check prints one line "MXFS-RESULT <name> PASS|FAIL <detail>"; the host script reads
# them from the serial log. The guest ends with `reboot -f` (QEMU runs with -no-reboot).
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs tmp /tmp
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
ip link set lo up

arg() { sed -n "s/.*mxfs\.$1=\([^ ]*\).*/\1/p" /proc/cmdline; }
ROLE=$(arg role)
NODE=$(arg node)
echo "MXFS-INIT role=$ROLE node=$NODE uptime=$(cut -d' ' -f1 /proc/uptime)s"
# XFS is a module built from the patched source (kmod/patches); mxfs.ko needs its symbols.
XFS_LOAD=$(insmod /lib/modules/xfs.ko 2>&1) && XFS_LOADED=1 || XFS_LOADED=0
[ $XFS_LOADED = 1 ] || echo "MXFS-INIT: insmod xfs.ko failed: $XFS_LOAD"

result() { echo "MXFS-RESULT $1 $2 $3"; }
# run NAME CMD...: runs a check whose last output line is PASS/FAIL from mxfs-guest.
run() {
    name=$1; shift
    out=$("$@" 2>&1); rc=$?
    echo "$out" | sed "s/^/  [$name] /"
    last=$(echo "$out" | tail -n 1)
    if [ $rc -eq 0 ]; then result "$name" PASS "$last"; else result "$name" FAIL "$last"; fi
}
# wait_for FILE PATTERN SECONDS
wait_for() {
    i=0
    while ! grep -q "$2" "$1" 2>/dev/null; do
        i=$((i + 1)); [ $i -gt $(($3 * 10)) ] && return 1; sleep 0.1
    done
}
# fake_daemon LOG ARGS...: starts the scripted daemon and waits until it is registered.
fake_daemon() {
    log=$1; shift
    mxfs-guest fake-daemon "$@" >"$log" 2>&1 &
    FD_PID=$!
    wait_for "$log" registered 10 || { cat "$log"; return 1; }
}
check_dmesg() { # NAME PATTERN
    if dmesg | grep -q "$2"; then result "$1" PASS "$(dmesg | grep "$2" | tail -n 1)"
    else result "$1" FAIL "no '$2' in dmesg"; fi
}
# new_dmesg N: kernel log lines after the first N (N from `dmesg | wc -l` taken earlier).
new_dmesg() { dmesg | tail -n +$(($1 + 1)); }
# mount_refused NAME PATTERN MOUNT-ARGS...: the mount must fail, and the kernel log lines it
# produced must contain PATTERN (the message that names the culprit).
mount_refused() {
    name=$1; pat=$2; shift 2
    n=$(dmesg | wc -l)
    if mount "$@" 2>/tmp/mount.err; then
        umount /mnt2
        result "$name" FAIL "mount $* succeeded"
        return
    fi
    msg=$(new_dmesg "$n" | grep -m1 -e "$pat")
    if [ -n "$msg" ]; then result "$name" PASS "$(head -n 1 /tmp/mount.err) | ${msg#*] }"
    else result "$name" FAIL "$(head -n 1 /tmp/mount.err); no '$pat' in the kernel log: $(new_dmesg "$n" | tail -n 2 | tr '\n' ' ')"; fi
}

# The -o mxfs mount option (kmod/patches 0002). Disks: vdc an XFS made with -m reflink=0 and its
# external log on vdd; vde a reflink=1 XFS with its external log on vdf. Called before mxfs.ko
# is loaded (phase "unloaded"), while it is loaded ("loaded"), and after rmmod ("after-unload").
MXFS_MOUNT="-t xfs -o mxfs,logdev=/dev/vdd /dev/vdc /mnt2"
mxfs_option_checks() {
    mkdir -p /mnt2
    case "$1" in
    unloaded)
        mount_refused mxfs_no_module "mxfs: no cluster lock module is registered" $MXFS_MOUNT
        ;;
    after-unload)
        mount_refused mxfs_no_module_after_unload "mxfs: no cluster lock module is registered" $MXFS_MOUNT
        ;;
    loaded)
        check_dmesg mxfs_callouts_registered "XFS: mxfs callouts registered by mxfs"
        mount_refused mxfs_needs_logdev "mxfs: mount needs an external log" -t xfs -o mxfs /dev/vdc /mnt2
        mount_refused mxfs_refuses_rtdev "mxfs: rtdev (realtime) is not supported" \
            -t xfs -o mxfs,logdev=/dev/vdd,rtdev=/dev/vdb /dev/vdc /mnt2
        # This kernel has no CONFIG_FS_DAX, so XFS itself rejects the option by name first.
        mount_refused mxfs_refuses_dax "mxfs: dax is not supported\|unknown mount option \[dax\]" \
            -t xfs -o mxfs,logdev=/dev/vdd,dax /dev/vdc /mnt2
        mount_refused mxfs_refuses_quota "mxfs: quota is not supported" \
            -t xfs -o mxfs,logdev=/dev/vdd,usrquota /dev/vdc /mnt2
        mount_refused mxfs_refuses_discard "mxfs: discard is not supported" \
            -t xfs -o mxfs,logdev=/dev/vdd,discard /dev/vdc /mnt2
        mount_refused mxfs_refuses_norecovery "mxfs: norecovery is not supported" \
            -t xfs -o mxfs,logdev=/dev/vdd,norecovery,ro /dev/vdc /mnt2
        mount_refused mxfs_refuses_reflink "mxfs: reflink is not supported" \
            -t xfs -o mxfs,logdev=/dev/vdf /dev/vde /mnt2
        mount_refused mxfs_recover_needs_ro "mxfs: an mxfs_recover mount must be read-only" \
            -t xfs -o mxfs,mxfs_recover=1,nouuid,logdev=/dev/vdd /dev/vdg /mnt2
        mount_refused mxfs_recover_needs_node "mxfs: mxfs_recover needs the id of the node" \
            -t xfs -o ro,mxfs_recover=0,nouuid,logdev=/dev/vdd /dev/vdg /mnt2
        n=$(dmesg | wc -l)
        if mount $MXFS_MOUNT 2>/tmp/mount.err; then
            line=$(grep ' /mnt2 ' /proc/mounts)
            echo "mxfs rw" >/mnt2/probe && sync && got=$(cat /mnt2/probe)
            accepted=$(new_dmesg "$n" | grep -m1 "mxfs: XFS mount of vdc accepted")
            case "$line" in
            *" rw,"*mxfs*) if [ "$got" = "mxfs rw" ] && [ -n "$accepted" ]; then
                    result mxfs_mount_rw PASS "$line | ${accepted#*] }"
                else result mxfs_mount_rw FAIL "write/read back '$got', module log '$accepted'"; fi ;;
            *) result mxfs_mount_rw FAIL "/proc/mounts: $line" ;;
            esac
            # The mount took the volume lock in EX from the real mxfsd and keeps it cached.
            locks=$(mxfsctl --config /etc/mxfs/mxfsd.toml locks 2>&1)
            # (mxfsctl locks: a kernel request is a Holder of the node's lock.)
            if echo "$locks" | sed -n '/Locks used by this node/,$p' | grep -q "Holder.*EX"; then
                result mxfs_volume_lock_cached PASS "$(echo "$locks" | sed -n '/Locks used by this node/,$p' | tr '\n' ' ')"
            else result mxfs_volume_lock_cached FAIL "mxfsctl locks: $(echo "$locks" | tr '\n' ' ')"; fi
            run mxfs_growfs_refused mxfs-guest growfs /mnt2 --expect EOPNOTSUPP
            # The mxfs operation tables (kmod/patches 0003) are copies of XFS's for now.
            fs_workload /mnt2 >/tmp/workload-mxfs.txt 2>&1
            if [ -s /tmp/workload-plain.txt ] && cmp -s /tmp/workload-plain.txt /tmp/workload-mxfs.txt; then
                result mxfs_ops_like_xfs PASS "$(wc -l </tmp/workload-mxfs.txt) lines of results equal to plain XFS's"
            else
                result mxfs_ops_like_xfs FAIL "workload results differ from plain XFS's"
                diff /tmp/workload-plain.txt /tmp/workload-mxfs.txt | head -n 20
            fi
            if rmmod mxfs 2>/dev/null; then
                result mxfs_unload_refused_while_mounted FAIL "rmmod mxfs succeeded under a mount"
                insmod /lib/modules/mxfs.ko debug=1
            else result mxfs_unload_refused_while_mounted PASS "rmmod mxfs refused: module in use"; fi
            n=$(dmesg | wc -l)
            if umount /mnt2 && new_dmesg "$n" | grep -q "mxfs: XFS unmount of vdc"; then
                result mxfs_umount PASS "$(new_dmesg "$n" | grep -m1 'XFS unmount of vdc' | sed 's/.*] //')"
            else result mxfs_umount FAIL "umount or its module callout missing"; fi
            # The unmount gave the lock back.
            locks=$(mxfsctl --config /etc/mxfs/mxfsd.toml locks 2>&1)
            if echo "$locks" | sed -n '/Locks used by this node/,$p' | grep -q "Holder"; then
                result mxfs_volume_lock_released FAIL "mxfsctl locks: $(echo "$locks" | tr '\n' ' ')"
            else result mxfs_volume_lock_released PASS "no kernel holder left: $(echo "$locks" | sed -n '/Locks used by this node/,$p' | tr '\n' ' ')"; fi
        else
            result mxfs_mount_rw FAIL "$(cat /tmp/mount.err) | $(new_dmesg "$n" | tail -n 2 | tr '\n' ' ')"
        fi
        ;;
    esac
}

# fs_workload DIR: namespace, data and attribute operations under DIR, then prints what they
# left (names, types, sizes, link counts, modes, contents; no times or inode numbers), so a plain
# and an mxfs mount can be compared.
fs_workload() {
    d=$1/workload
    rm -rf "$d"; mkdir -p "$d/sub" || return 1
    echo hello >"$d/a"; echo world >>"$d/a"
    dd if=/dev/zero of="$d/big" bs=4096 count=16 2>/dev/null
    printf 'overwritten' | dd of="$d/big" bs=1 seek=5000 conv=notrunc 2>/dev/null
    truncate -s 10000 "$d/big"
    ln "$d/a" "$d/a-link"; ln -s a "$d/a-sym"
    mv "$d/a-link" "$d/sub/moved"
    mkdir "$d/gone"; rmdir "$d/gone"
    touch "$d/x"; rm "$d/x"
    chmod 640 "$d/a"; mknod "$d/fifo" p
    sync; echo 3 >/proc/sys/vm/drop_caches
    (cd "$d" && find . | sort | while read -r f; do stat -c '%n %F %s %h %a' "$f"; done
        cat a; readlink a-sym; md5sum big)
}

# Plain XFS must behave as before: mount read-write, write, read back, growfs accepted.
plain_xfs_checks() {
    mkdir -p /mnt2
    if mount -t xfs /dev/vda /mnt; then
        line=$(grep ' /mnt ' /proc/mounts)
        echo "plain rw" >/mnt/probe && sync && got=$(cat /mnt/probe)
        case "$line" in
        *mxfs*) result plain_xfs_rw FAIL "plain mount shows mxfs: $line" ;;
        *" rw,"*) if [ "$got" = "plain rw" ]; then result plain_xfs_rw PASS "$line"
            else result plain_xfs_rw FAIL "read back '$got'"; fi ;;
        *) result plain_xfs_rw FAIL "/proc/mounts: $line" ;;
        esac
        run plain_xfs_growfs mxfs-guest growfs /mnt --expect OK
        fs_workload /mnt >/tmp/workload-plain.txt 2>&1
        rm -rf /mnt/workload
        mount_refused mxfs_remount_refused "mxfs: cannot be enabled by remount" -o remount,mxfs /mnt
        mount_refused mxfs_refuses_plain_mounted "mxfs: the device is already mounted without mxfs" \
            -t xfs -o mxfs /dev/vda /mnt2
        rm -f /mnt/probe
        umount /mnt
    else
        result plain_xfs_rw FAIL "mount -t xfs /dev/vda /mnt failed"
    fi
}

# The operation callouts (kmod/patches 0005-0007), counted by mxfs.ko in op_counts: every
# operation on an -o mxfs mount produces its own kind and intent; with op_fail_eio set, a write
# and a read fail with EIO and change nothing; a plain XFS mount (mxfs.ko loaded) produces none.
callout_checks() {
    if mount -t xfs /dev/vda /mnt; then
        mxfs-guest callouts /mnt --plain
        rm -rf /mnt/callouts; umount /mnt
    else result plain_xfs_no_callouts FAIL "mount -t xfs /dev/vda /mnt failed"; fi
    if mount $MXFS_MOUNT 2>/tmp/mount.err; then
        mxfs-guest callouts /mnt2
        mxfs-guest callouts-fail /mnt2
        umount /mnt2
    else result callout_open FAIL "mount $MXFS_MOUNT: $(cat /tmp/mount.err)"; fi
}

# A one-node cluster (a real mxfsd on 127.0.0.1) for the -o mxfs mounts of the smoke run: the
# volume lock is granted at once and never called back. Stopped before the scripted daemons
# (only one process can be the kernel's daemon).
single_mxfsd_start() { # [RESULT-NAME]
    mkdir -p /etc/mxfs /run/mxfs
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >/etc/mxfs/cluster.key
    cat >/etc/mxfs/mxfsd.toml <<EOF
node_id = 1
cluster_key_file = "/etc/mxfs/cluster.key"
ctl_socket = "/run/mxfs/mxfsd.sock"
kernel = "netlink"
fence_command = ["/bin/true"]
shared_journals = false
[[peers]]
id = 1
address = "127.0.0.1:7100"
name = "node1"
EOF
    ip link set lo up
    mxfsd --config /etc/mxfs/mxfsd.toml >/tmp/mxfsd.log 2>&1 &
    MXFSD_PID=$!
    i=0
    until mxfsctl --config /etc/mxfs/mxfsd.toml status 2>/dev/null | grep -q "quorum yes"; do
        i=$((i + 1)); [ $i -gt 100 ] && break; sleep 0.2
    done
    if mxfsctl --config /etc/mxfs/mxfsd.toml status 2>/dev/null | grep -q "quorum yes"; then
        result "${1:-single_mxfsd}" PASS "one-node mxfsd up"
    else result "${1:-single_mxfsd}" FAIL "mxfsd did not come up: $(tail -n 3 /tmp/mxfsd.log | tr '\n' ' ')"; fi
}
single_mxfsd_stop() {
    kill "$MXFSD_PID" 2>/dev/null; wait "$MXFSD_PID" 2>/dev/null
    sleep 0.5
}

# What a file of the mxfs volume holds at its home location: a read-only norecovery mount reads
# the volume as it is, whatever the log holds.
at_home() { # FILE
    mount -t xfs -o ro,norecovery,logdev=/dev/vdd /dev/vdc /mnt2 2>/dev/null || { echo "no mount"; return; }
    cat "/mnt2/$1" 2>/dev/null || echo "absent"
    umount /mnt2 2>/dev/null
}

# mxfsd dies while a volume is mounted: the mount withdraws (DESIGN.md §5.2): the module says
# so, operations fail with EIO, nothing more reaches the disk, and the unmount still works.
# Stops the one-node mxfsd (its kill is the test).
withdraw_check() {
    if ! mount $MXFS_MOUNT 2>/tmp/mount.err; then
        result mxfs_withdraw_on_daemon_loss FAIL "mount: $(cat /tmp/mount.err)"; single_mxfsd_stop; return
    fi
    echo before >/mnt2/withdraw-probe && sync
    n=$(dmesg | wc -l)
    single_mxfsd_stop
    # (In a subshell, so the failed open's message lands in w.err.)
    if (echo after >/mnt2/withdraw-probe) 2>/tmp/w.err; then got="write succeeded"
    else got="write: $(head -n 1 /tmp/w.err)"; fi
    said=$(new_dmesg "$n" | grep -m1 "withdrawing")
    umount /mnt2 2>/tmp/umount.err || got="$got; umount: $(cat /tmp/umount.err)"
    # The withdrawn mount left its log dirty: the synced create is only there. A recovery mount
    # (kmod/patches 0022) on vdg, the same image attached again, replays it as a survivor would
    # for a dead node; read-only norecovery mounts show what is at home before and after.
    home_before=$(at_home withdraw-probe)
    n=$(dmesg | wc -l)
    if mount -t xfs -o ro,mxfs,mxfs_recover=1,nouuid,logdev=/dev/vdd /dev/vdg /mnt2 \
        2>/tmp/mount.err; then
        proxy=$(new_dmesg "$n" | grep -c "Starting recovery\|Ending recovery\|recovery mount of vdg")
        umount /mnt2 2>/tmp/umount.err || proxy="$proxy; umount: $(cat /tmp/umount.err)"
    else proxy="mount: $(cat /tmp/mount.err)"; fi
    on_disk=$(at_home withdraw-probe)
    if [ "$proxy" = 3 ] && [ "$home_before" != before ] && [ "$on_disk" = before ]; then
        result mxfs_replay_by_proxy PASS "recovery mount replayed node 1's log: at home before '$home_before', after '$on_disk'; $(new_dmesg "$n" | grep -m1 'recovery mount of vdg' | sed 's/.*] //')"
    else result mxfs_replay_by_proxy FAIL "dmesg lines $proxy (want 3: recovery mount, Starting, Ending) | at home before '$home_before' (want not 'before'), after '$on_disk'"; fi
    case "$got" in
    *"Input/output error"*) if [ -n "$said" ] && [ "$on_disk" = before ]; then
            result mxfs_withdraw_on_daemon_loss PASS "$got | ${said#*] } | on disk: $on_disk"
        else result mxfs_withdraw_on_daemon_loss FAIL "$got | module: '$said' | on disk: '$on_disk'"; fi ;;
    *) result mxfs_withdraw_on_daemon_loss FAIL "$got (want EIO) | module: '$said'" ;;
    esac
}

smoke() {
    if [ $XFS_LOADED = 1 ]; then result xfs_module_load PASS "insmod xfs.ko (patched)"
    else result xfs_module_load FAIL "insmod xfs.ko: $XFS_LOAD"; return; fi
    plain_xfs_checks
    mxfs_option_checks unloaded
    if insmod /lib/modules/mxfs.ko debug=1; then result module_load PASS "insmod mxfs.ko debug=1"
    else result module_load FAIL "insmod failed"; return; fi
    # -o mxfs mounts take the volume lock through mxfsd: none is running yet.
    mkdir -p /mnt2
    mount_refused mxfs_mount_needs_daemon "mxfsd is not running" $MXFS_MOUNT
    single_mxfsd_start
    mxfs_option_checks loaded
    callout_checks
    withdraw_check
    check_dmesg version_line "mxfs: version 0.4.0 loaded"
    run no_daemon_enotconn mxfs-guest lock inode:0x1:5 EX --expect ENOTCONN
    run unprivileged_eperm mxfs-guest status --as-uid 1000 --expect EPERM
    run non_daemon_grant_eperm mxfs-guest send-grant inode:0x1:5 --expect EPERM

    fake_daemon /tmp/fd1.log --answer grant --count 1
    run grant_path mxfs-guest lock inode:0x1:5 EX --hold-ms 20 --expect OK
    run other_sender_eperm mxfs-guest send-grant inode:0x1:5 --req-id 99 --expect EPERM
    wait $FD_PID
    if grep -q "LOCK_RELEASE req_id .* mode Some(Ex)" /tmp/fd1.log; then
        result release_sent PASS "$(grep LOCK_RELEASE /tmp/fd1.log | tail -n 1)"
    else result release_sent FAIL "no LOCK_RELEASE seen by the daemon"; cat /tmp/fd1.log; fi
    run daemon_gone_enotconn mxfs-guest lock inode:0x1:6 EX --expect ENOTCONN

    fake_daemon /tmp/fd2.log --answer deny --count 1
    run deny_path mxfs-guest lock ag:0x1:3 EX --noqueue --expect EAGAIN
    wait $FD_PID

    # A daemon that answers only after GRANT_TIMEOUT_MS: the waiter gets ETIMEDOUT at 30 s and
    # the late grant is handed back with LOCK_RELEASE (no mode).
    fake_daemon /tmp/fd3.log --answer late --late-ms 31000 --count 1 --deadline-secs 60
    run grant_timeout_etimedout mxfs-guest lock inode:0x1:7 EX --expect ETIMEDOUT
    wait $FD_PID
    if grep -q "LOCK_RELEASE req_id .* mode None" /tmp/fd3.log; then
        result late_grant_released PASS "$(grep LOCK_RELEASE /tmp/fd3.log | tail -n 1)"
    else result late_grant_released FAIL "late grant not handed back"; cat /tmp/fd3.log; fi

    # CACHE_INVAL drops cached pages: read a file on XFS, then let the daemon invalidate it.
    if mount -t xfs /dev/vda /mnt; then
        dd if=/dev/zero of=/mnt/f bs=4096 count=64 2>/dev/null; sync
        cat /mnt/f >/dev/null
        before=$(mxfs-guest resident /mnt/f)
        vol=$(mxfs-guest volume-add /mnt)
        ino=$(stat -c %i /mnt/f)
        fake_daemon /tmp/fd4.log --answer grant --count 1 --inval "$vol:$ino"
        run inval_lock mxfs-guest lock "inode:$vol:$ino" PR --expect OK
        wait $FD_PID
        after=$(mxfs-guest resident /mnt/f)
        if [ "$before" = "64/64" ] && [ "${after%%/*}" = 0 ]; then
            result cache_inval PASS "resident pages $before -> $after (volume $vol ino $ino)"
        else result cache_inval FAIL "resident pages $before -> $after"; cat /tmp/fd4.log; fi
    else
        result cache_inval FAIL "cannot mount /dev/vda"
    fi

    # A lock call waits while its volume is recovering: the scripted daemon freezes volume 0x1
    # for 3 s; no LOCK_REQ may reach it before RECOVERY_DONE, and the lock is granted after.
    fake_daemon /tmp/fd6.log --answer grant --count 1 --recover 0x1:3000
    wait_for /tmp/fd6.log "recovering volume" 10
    out=$(mxfs-guest lock inode:0x1:11 EX 2>&1); rc=$?
    wait $FD_PID; fd_rc=$?
    ms=$(echo "$out" | sed -n 's/.*granted after \([0-9]*\) ms.*/\1/p')
    if [ $rc -eq 0 ] && [ $fd_rc -eq 0 ] && [ "${ms:-0}" -ge 1500 ]; then
        result recovery_freeze PASS "lock waited ${ms} ms, until RECOVERY_DONE"
    else result recovery_freeze FAIL "lock rc=$rc daemon rc=$fd_rc waited ${ms:-?} ms"; cat /tmp/fd6.log; fi

    # The exclusion witness must be able to fail: a daemon that grants everything lets two
    # holders overlap, and the host's history checker has to flag it (smoke.sh).
    fake_daemon /tmp/fd5.log --answer grant --count 2
    for i in 1 2; do
        mxfs-guest lock inode:0x1:9 EX --hold-ms 500 --witness /dev/vdb --history /tmp/neg.jsonl --node 1 >/dev/null &
    done
    wait
    sed 's/^/MXFS-HIST /' /tmp/neg.jsonl

    if rmmod mxfs; then result module_unload PASS "rmmod mxfs"; else result module_unload FAIL "rmmod"; fi
    check_dmesg unload_line "mxfs: version 0.4.0 unloaded"
    mxfs_option_checks after-unload
    umount /mnt 2>/dev/null
    if dmesg | grep -qE "BUG:|Oops|WARNING:|Kernel panic|refcount_t"; then
        result no_kernel_warnings FAIL "$(dmesg | grep -E 'BUG:|Oops|WARNING:' | head -n 1)"
    else result no_kernel_warnings PASS "dmesg clean"; fi
}

case "$ROLE" in
smoke) smoke ;;
node) [ -x /bin/cluster-node.sh ] && . /bin/cluster-node.sh ;;
*) echo "MXFS-INIT: no role; shell on the console"; setsid cttyhack sh ;;
esac
echo "MXFS-DONE uptime=$(cut -d' ' -f1 /proc/uptime)s"
dmesg | grep -E "mxfs|tsc:|clocksource" | sed 's/^/MXFS-DMESG: /'
sync
if [ "$(arg keep)" = 1 ]; then
    echo "MXFS-KEEP: node $NODE stays up; shell on the console"
    while :; do setsid cttyhack sh; done
fi
reboot -f
