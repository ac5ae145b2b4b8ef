#!/usr/bin/env bash
# Builds qemu/run/out/initramfs.cpio.gz for the guests: busybox-static, /init
# (qemu/guest-init.sh), the patched xfs.ko, mxfs.ko, the guest test driver mxfs-guest, and mxfsd/mxfsctl when the
# daemon crate provides them. Rust binaries are dynamically linked against glibc, so the shared
# libraries ldd names and the dynamic loader are copied too. The archive is written with the
# kernel tree's gen_init_cpio from a list, so /dev/console is a real device node without root.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
load_kernel_env
apt_need busybox-static cpio gzip

OUT=$QEMU_DIR/run/out
[ -f "$OUT/mxfs.ko" ] || die "no $OUT/mxfs.ko: run qemu/kmod.sh (just kmod) first"
cd "$REPO_DIR"
TARGET=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

log "building the guest binaries (cargo --release)"
cargo build --release --locked -q -p mxfs-guest-tool
bins=("$TARGET/release/mxfs-guest")
if cargo metadata --format-version 1 --no-deps | grep -q '"name":"mxfsd"'; then
    if cargo build --release --locked -q -p mxfs-daemon --bins; then
        for b in mxfsd mxfsctl; do [ -x "$TARGET/release/$b" ] && bins+=("$TARGET/release/$b"); done
    else
        log "warning: mxfs-daemon does not build; the initramfs has no mxfsd"
    fi
fi

GEN=$KDIR/usr/gen_init_cpio
if [ ! -x "$GEN" ]; then
    GEN=$OUT/gen_init_cpio
    gcc -O2 -o "$GEN" "$KSRC/usr/gen_init_cpio.c"
fi

list=$OUT/initramfs.list
declare -A dirs=()
adddir() {
    local d=$1
    [ "$d" = / ] && return
    [ -n "${dirs[$d]:-}" ] && return
    adddir "$(dirname "$d")"
    dirs[$d]=1
    echo "dir $d 0755 0 0" >>"$list"
}
addfile() { # guest-path host-path mode
    adddir "$(dirname "$1")"
    echo "file $1 $(readlink -f "$2") $3 0 0" >>"$list"
}
: >"$list"
for d in /bin /sbin /dev /proc /sys /tmp /mnt /run /lib/modules /etc /root; do adddir $d; done
echo "nod /dev/console 0600 0 0 c 5 1" >>"$list"
echo "nod /dev/null 0666 0 0 c 1 3" >>"$list"
addfile /bin/busybox /bin/busybox 0755
echo "slink /bin/sh busybox 0777 0 0" >>"$list"
addfile /init "$QEMU_DIR/guest-init.sh" 0755
addfile /bin/cluster-node.sh "$QEMU_DIR/cluster-node.sh" 0755
addfile /bin/mxfs-replay "$QEMU_DIR/mxfs-replay.sh" 0755
addfile /lib/modules/mxfs.ko "$OUT/mxfs.ko" 0644
# XFS is a module (kernel.config); /init loads it with a plain insmod, so it must need no other.
deps=$(modinfo -F depends "$XFS_KO") || die "modinfo $XFS_KO failed"
[ -z "$deps" ] || die "xfs.ko depends on modules the initramfs does not ship: $deps" \
    "(build them in: qemu/kernel.config)"
addfile /lib/modules/xfs.ko "$XFS_KO" 0644
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:1000:1000:nobody:/:/bin/sh\n' >"$OUT/passwd"
addfile /etc/passwd "$OUT/passwd" 0644
declare -A libs=()
mkdir -p "$OUT/bin"
for b in "${bins[@]}"; do
    # Debug info makes mxfsctl alone ~50 MB; the guests do not need it.
    strip -o "$OUT/bin/$(basename "$b")" "$b"
    addfile "/bin/$(basename "$b")" "$OUT/bin/$(basename "$b")" 0755
    while read -r lib; do
        [ -n "$lib" ] && libs[$lib]=1
    done < <(ldd "$b" | awk '/=> \//{print $3} /^[ \t]*\/lib/{print $1}')
done
for lib in "${!libs[@]}"; do addfile "$lib" "$lib" 0755; done

"$GEN" "$list" | gzip -1 >"$OUT/initramfs.cpio.gz.tmp"
mv "$OUT/initramfs.cpio.gz.tmp" "$OUT/initramfs.cpio.gz"
log "initramfs: $OUT/initramfs.cpio.gz ($(stat -c %s "$OUT/initramfs.cpio.gz") bytes;" \
    "binaries: $(for b in "${bins[@]}"; do basename "$b"; done | tr '\n' ' '))"
