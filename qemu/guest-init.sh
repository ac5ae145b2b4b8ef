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

smoke() {
    if insmod /lib/modules/mxfs.ko debug=1; then result module_load PASS "insmod mxfs.ko debug=1"
    else result module_load FAIL "insmod failed"; return; fi
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
