#!/bin/sh
# mxfsd's replay_command in the QEMU cluster (/bin/mxfs-replay in the guest): replays node $1's
# log by a recovery mount (kmod/patches 0022, DESIGN.md §5.5) and unmounts it. mxfsd runs it
# once the node is fenced, while the cluster is frozen for its recovery, with the node's id
# and name as arguments. Disks (qemu/cluster.sh): node J's log is the (4+J)th virtio disk
# (vde for node 1), and the shared volume is attached a second time as the disk the kernel
# command line names in mxfs.alias=. In production the alias is a second dm-linear device over
# the same LUN (qemu/README.md, "Journal replay").
#
# Safe to run again after a failure or a kill: a leftover mount of the same directory is
# unmounted first, and replaying a log that is already clean changes nothing.
set -eu
node=${1:?usage: mxfs-replay NODE-ID [NODE-NAME]}
case "$node" in *[!0-9]*|'') echo "mxfs-replay: bad node id '$node'" >&2; exit 2 ;; esac
alias=
for w in $(cat /proc/cmdline); do
    case "$w" in mxfs.alias=*) alias=/dev/${w#mxfs.alias=} ;; esac
done
[ -n "$alias" ] || { echo "mxfs-replay: no mxfs.alias= on the kernel command line" >&2; exit 2; }
letters=abcdefghijklmnopqrstuvwxyz
idx=$((4 + node))
[ "$idx" -le 26 ] || { echo "mxfs-replay: node id $node has no log disk" >&2; exit 2; }
log=/dev/vd$(echo "$letters" | cut -c"$idx")
[ -b "$log" ] || { echo "mxfs-replay: node $node's log $log is not a block device" >&2; exit 2; }
# One replay at a time on this node: mxfsd runs replay_command for several logs at once (the
# first mounter replays every log), and they all mount the same alias device; a second mount of
# a block device that is already mounted gets the first mount's super block (no recovery of
# its own log at all), so a concurrent replay would "succeed" without replaying anything (seen
# in the crash phase's first-mounter round: first_mounter_recovers, qemu/README.md). Busybox
# has no flock: a lock directory holding its owner's pid, taken over if that process is gone
# (mxfsd kills a replay that times out).
lock=/run/mxfs-replay.lock
until mkdir "$lock" 2>/dev/null; do
    owner=$(cat "$lock/pid" 2>/dev/null || true)
    if [ -n "$owner" ] && ! kill -0 "$owner" 2>/dev/null; then rm -rf "$lock"; continue; fi
    sleep 0.1
done
echo $$ >"$lock/pid"
trap 'rm -rf "$lock"' EXIT
dir=/run/mxfs-replay/$node
mkdir -p "$dir"
umount "$dir" 2>/dev/null || true
mount -t xfs -o "ro,mxfs,mxfs_recover=$node,nouuid,logdev=$log" "$alias" "$dir"
umount "$dir"
echo "mxfs-replay: node $node's log $log replayed through $alias"
