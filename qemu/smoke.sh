#!/usr/bin/env bash
# Single-node boot test of mxfs.ko (`just qemu-smoke`): boots one TCG guest from the cached
# kernel and qemu/run/out/initramfs.cpio.gz, loads the module and runs the checks of the `smoke`
# role in qemu/guest-init.sh; prints a result table and exits non-zero on any failure.
# A scratch XFS disk (made here with mkfs.xfs) serves the plain-XFS and CACHE_INVAL checks; two
# XFS images with external logs serve the -o mxfs checks (kmod/patches): vdc (reflink=0, log on
# vdd) is the one that mounts, vde (reflink=1, log on vdf) must be refused.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
load_kernel_env
apt_need "${QEMU_PKGS[@]}"
OUT=$QEMU_DIR/run/out
[ -f "$OUT/initramfs.cpio.gz" ] || die "no initramfs: run qemu/initramfs.sh (just initramfs)"
BOOT_TIMEOUT_SECS=${MXFS_SMOKE_TIMEOUT_SECS:-300}

RUN=$(new_run_dir smoke)
CLOCK=$(guest_clock_args)
truncate -s 320M "$RUN/scratch.img"
truncate -s 8M "$RUN/witness.img"
mkfs.xfs -q -f "$RUN/scratch.img"
truncate -s 320M "$RUN/mxfs.img" "$RUN/reflink.img"
truncate -s 64M "$RUN/mxfs-log.img" "$RUN/reflink-log.img"
mkfs.xfs -q -f -m reflink=0 -l logdev="$RUN/mxfs-log.img",size=64m "$RUN/mxfs.img"
mkfs.xfs -q -f -m reflink=1 -l logdev="$RUN/reflink-log.img",size=64m "$RUN/reflink.img"
log "smoke: booting one guest (serial log $RUN/smoke.log, timeout ${BOOT_TIMEOUT_SECS}s)"
start=$(date +%s)
set +e
timeout --kill-after=5 "$BOOT_TIMEOUT_SECS" qemu-system-x86_64 -accel tcg -m 512 -smp 2 \
    -nographic -no-reboot -kernel "$BZIMAGE" -initrd "$OUT/initramfs.cpio.gz" \
    -drive file="$RUN/scratch.img",format=raw,if=none,id=d0,cache=none \
    -device virtio-blk-pci,drive=d0 \
    -drive file="$RUN/witness.img",format=raw,if=none,id=d1,cache=none \
    -device virtio-blk-pci,drive=d1 \
    -drive file="$RUN/mxfs.img",format=raw,if=none,id=d2,cache=none,file.locking=off \
    -device virtio-blk-pci,drive=d2,share-rw=on \
    -drive file="$RUN/mxfs-log.img",format=raw,if=none,id=d3,cache=none \
    -device virtio-blk-pci,drive=d3 \
    -drive file="$RUN/reflink.img",format=raw,if=none,id=d4,cache=none \
    -device virtio-blk-pci,drive=d4 \
    -drive file="$RUN/reflink-log.img",format=raw,if=none,id=d5,cache=none \
    -device virtio-blk-pci,drive=d5 \
    -drive file="$RUN/mxfs.img",format=raw,if=none,id=d6,cache=none,file.locking=off \
    -device virtio-blk-pci,drive=d6,share-rw=on -device virtio-rng-pci \
    -append "console=ttyS0 panic=-1 quiet $CLOCK mxfs.role=smoke" >"$RUN/smoke.log" 2>&1
rc=$?
set -e
log "smoke: guest finished in $(($(date +%s) - start)) s (qemu exit $rc)"
if [ $rc -ne 0 ] || ! grep -q MXFS-DONE "$RUN/smoke.log"; then
    echo "---- serial log (last 60 lines) ----" >&2
    tail -n 60 "$RUN/smoke.log" >&2
fi
# The history checker must flag the overlap the guest provoked with a grant-everything daemon.
cd "$REPO_DIR"
cargo build --release --locked -q -p mxfs-history-check
TARGET=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
sed -n 's/^\s*MXFS-HIST //p' "$RUN/smoke.log" | tr -d '\r' >"$RUN/history-overlap.jsonl"
if "$TARGET/release/mxfs-history-check" "$RUN/history-overlap.jsonl" >"$RUN/history-check.txt" 2>&1; then
    echo "MXFS-RESULT checker_catches_overlap FAIL the checker passed a history with two EX holders" >"$RUN/host.log"
elif grep -qE "two holders at once|another holder wrote" "$RUN/history-check.txt"; then
    echo "MXFS-RESULT checker_catches_overlap PASS $(grep -m1 VIOLATION "$RUN/history-check.txt" | cut -c1-80)" >"$RUN/host.log"
else
    echo "MXFS-RESULT checker_catches_overlap FAIL $(tail -n 1 "$RUN/history-check.txt")" >"$RUN/host.log"
fi
MXFS_OPTION_CHECKS=xfs_module_load,plain_xfs_rw,plain_xfs_growfs,mxfs_remount_refused,mxfs_refuses_plain_mounted,mxfs_no_module,mxfs_callouts_registered,mxfs_needs_logdev,mxfs_refuses_rtdev,mxfs_refuses_dax,mxfs_refuses_quota,mxfs_refuses_discard,mxfs_refuses_norecovery,mxfs_refuses_reflink,mxfs_recover_needs_ro,mxfs_recover_needs_node,mxfs_mount_rw,mxfs_growfs_refused,mxfs_ops_like_xfs,mxfs_unload_refused_while_mounted,mxfs_umount,mxfs_no_module_after_unload,mxfs_mount_needs_daemon,single_mxfsd,mxfs_volume_lock_cached,mxfs_volume_lock_released,mxfs_withdraw_on_daemon_loss,mxfs_replay_by_proxy
CALLOUT_OPS=open,getattr,permission,lookup,read,write,fsync,dio_read,dio_write,fault,page_mkwrite,setattr_truncate,setattr_chmod,readdir,create,mknod,mkdir,symlink,readlink,link,rename,unlink,rmdir,fallocate,punch_hole,zero_range,collapse_range,insert_range,seek_data,fibmap,xattr_set,xattr_get,xattr_list,xattr_remove,ioctl_getflags,ioctl_setflags,fitrim_refused,noatime,speculation_inline
CALLOUT_CHECKS=$(echo "$CALLOUT_OPS" | sed 's/\([^,]*\)/callout_\1/g'),mxfs_fail_write_eio,mxfs_fail_read_eio,mxfs_fail_unchanged,plain_xfs_no_callouts
EXPECTED=$MXFS_OPTION_CHECKS,$CALLOUT_CHECKS,module_load,version_line,no_daemon_enotconn,unprivileged_eperm,non_daemon_grant_eperm,grant_path,other_sender_eperm,release_sent,daemon_gone_enotconn,deny_path,grant_timeout_etimedout,late_grant_released,inval_lock,cache_inval,recovery_freeze,module_unload,unload_line,no_kernel_warnings,checker_catches_overlap
result_table "$EXPECTED" "$RUN/smoke.log" "$RUN/host.log"
