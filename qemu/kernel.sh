#!/usr/bin/env bash
# Builds the Rust-enabled MXFS guest kernel (Debian's linux-source-6.12, tinyconfig plus
# qemu/kernel.config) and the patched XFS module (the series kmod/patches/*.patch), or reuses
# cached builds.
#
# Two stages, so that a patch edit rebuilds only XFS (about 3 min instead of 12):
# 1. The base kernel: XFS is a module (CONFIG_XFS_FS=m) and the source is unpatched. Key B: the
#    sha256 of the source package version, the rustc-web / clang-19 / bindgen versions, the
#    config fragment and this script. A miss costs about 8-12 min on 2 cores.
# 2. The patched xfs.ko: fs/xfs and include/linux/xfs_mxfs.h copied out of the base source,
#    patched, and built as an external module against the base tree (as Lustre builds ldiskfs).
#    Key X: B plus the patches. The series may touch only fs/xfs/ and include/linux/xfs_*.h;
#    this script refuses anything else, since the base kernel would not contain it.
# Cache: $MXFS_CACHE (default ~/.cache/mxfs), outside the clone. A hit takes seconds.
# Layout:            src-B/      unpatched source (path is baked into kbuild-B/Makefile; the source
#                                is re-unpacked there when missing, e.g. when CI only caches kbuild)
#                    kbuild-B/   O= tree, objects pruned to what out-of-tree module builds need
#                    xfs-X/      patched fs/xfs + include/linux, with xfs.ko and Module.symvers
#                    kernel.env  KDIR / KSRC / BZIMAGE / XFS_KO / XFS_INCLUDE / XFS_SYMVERS of the
#                                current keys, read by the other scripts
set -euo pipefail
. "$(dirname "$0")/lib.sh"

FRAG=$QEMU_DIR/kernel.config
PATCH_DIR=$REPO_DIR/kmod/patches

apt_need "${KERNEL_PKGS[@]}"
[ -f /usr/src/linux-source-6.12.tar.xz ] || die "/usr/src/linux-source-6.12.tar.xz missing"
[ -x /usr/bin/rustc ] || die "Debian's /usr/bin/rustc (rustc-web) missing"

mkdir -p "$MXFS_CACHE"
if [ ! -x "$BINDGEN" ]; then
    log "bindgen-cli $BINDGEN_VER: cargo install (about 3 min, once)"
    cargo install bindgen-cli --version "$BINDGEN_VER" --locked \
        --root "$MXFS_CACHE/bindgen-$BINDGEN_VER" >/dev/null 2>&1 ||
        die "cargo install bindgen-cli $BINDGEN_VER failed"
fi

shopt -s nullglob
patches=("$PATCH_DIR"/*.patch)
shopt -u nullglob

# The series may change only what the external xfs.ko build sees (see the header).
for p in "${patches[@]}"; do
    bad=$(sed -n 's|^+++ b/||p; s|^--- a/||p' "$p" | cut -f1 |
        grep -vE '^(fs/xfs/|include/linux/xfs_[a-z0-9_]+\.h$)' | sort -u || true)
    [ -z "$bad" ] || die "$(basename "$p") touches files outside fs/xfs/ and include/linux/xfs_*.h:" \
        "$bad (the base kernel is built without the patches; see kernel.sh's header)"
done

KVER=$(pkg_version linux-source-6.12)
KEY=$({
    echo "linux-source-6.12 $KVER"
    echo "rustc-web $(pkg_version rustc-web) rust-web-src $(pkg_version rust-web-src)"
    echo "clang-19 $(pkg_version clang-19) lld-19 $(pkg_version lld-19)"
    echo "bindgen $("$BINDGEN" --version)"
    cat "$FRAG" "$0"
} | sha256sum | cut -c1-16)
XKEY=$({
    echo "base $KEY"
    for p in "${patches[@]}"; do echo "patch $(basename "$p")"; cat "$p"; done
} | sha256sum | cut -c1-16)
KSRC=$MXFS_CACHE/src-$KEY/linux
KDIR=$MXFS_CACHE/kbuild-$KEY
BZIMAGE=$KDIR/arch/x86/boot/bzImage
XDIR=$MXFS_CACHE/xfs-$XKEY
log "kernel key $KEY (linux-source $KVER), xfs key $XKEY (${#patches[@]} patch(es))"

# Source: unpack once per key; the stamp is written last.
if [ ! -f "$KSRC/.mxfs-ready" ]; then
    log "unpacking linux-source-6.12 into $KSRC"
    rm -rf "$KSRC"
    mkdir -p "$KSRC"
    tar -C "$KSRC" --strip-components=1 -xf /usr/src/linux-source-6.12.tar.xz
    touch "$KSRC/.mxfs-ready"
fi

MK=(make -C "$KSRC" O="$KDIR" $(kmake_args))
if [ ! -f "$KDIR/.mxfs-done" ]; then
    start=$(date +%s)
    rm -rf "$KDIR"
    mkdir -p "$KDIR"
    "${MK[@]}" rustavailable >/dev/null || die "make rustavailable failed: Rust toolchain not usable"
    "${MK[@]}" tinyconfig >/dev/null
    "$KSRC/scripts/kconfig/merge_config.sh" -m -O "$KDIR" "$KDIR/.config" "$FRAG" >/dev/null
    "${MK[@]}" olddefconfig >/dev/null
    lost=0
    while read -r line; do
        grep -qxF "$line" "$KDIR/.config" || { echo "config line lost after olddefconfig: $line" >&2; lost=1; }
    done < <(grep -E '^(CONFIG_|# CONFIG_)' "$FRAG")
    [ $lost -eq 0 ] || die "qemu/kernel.config has lines whose dependencies are unmet"
    log "building bzImage + modules (cold: about 8 min on 2 cores); log: $KDIR/build.log"
    if ! "${MK[@]}" -j"$(nproc)" bzImage modules >"$KDIR/build.log" 2>&1; then
        tail -40 "$KDIR/build.log" >&2
        die "kernel build failed (full log: $KDIR/build.log)"
    fi
    # Prune objects that out-of-tree module builds do not need (keeps rust/, scripts/, tools/,
    # headers, Module.symvers, usr/gen_init_cpio and bzImage): about 120 MB instead of 1+ GB.
    (cd "$KDIR" && find . \( -path ./rust -o -path ./scripts -o -path ./tools \) -prune -o \
        \( -name '*.o' -o -name '*.a' -o -name '.*.cmd' \) -type f -print0 | xargs -0 rm -f &&
        rm -f vmlinux vmlinux.o vmlinux.a .tmp_vmlinux*)
    [ -f "$BZIMAGE" ] || die "no bzImage after build"
    touch "$KDIR/.mxfs-done"
    log "kernel built in $(($(date +%s) - start)) s"
    # Older keys are dead weight (about 1.8 GB each with their sources).
    for d in "$MXFS_CACHE"/kbuild-* "$MXFS_CACHE"/src-*; do
        case "$d" in *"-$KEY") ;; *) rm -rf "$d" ;; esac
    done
else
    log "kernel cache hit: $KDIR"
fi

# Stage 2: the patched xfs.ko, an external module build of a patched copy of fs/xfs. The new
# public header goes in through KCPPFLAGS (the base tree's include/ does not have it).
if [ ! -f "$XDIR/.mxfs-done" ]; then
    start=$(date +%s)
    rm -rf "$XDIR"
    mkdir -p "$XDIR/fs" "$XDIR/include/linux"
    cp -a "$KSRC/fs/xfs" "$XDIR/fs/"
    for p in "${patches[@]}"; do
        log "applying $(basename "$p")"
        patch -d "$XDIR" -p1 --forward --batch <"$p" >/dev/null || die "patch $p does not apply"
    done
    log "building the patched xfs.ko (about 3 min on 2 cores); log: $XDIR/build.log"
    if ! make -C "$KDIR" M="$XDIR/fs/xfs" $(kmake_args) KCPPFLAGS="-I$XDIR/include" \
        -j"$(nproc)" modules >"$XDIR/build.log" 2>&1; then
        tail -40 "$XDIR/build.log" >&2
        die "xfs.ko build failed (full log: $XDIR/build.log)"
    fi
    if grep -E '(warning|error):' "$XDIR/build.log" >/dev/null; then
        grep -E -B2 -A6 '(warning|error):' "$XDIR/build.log" >&2
        die "xfs.ko built with warnings (see above; full log: $XDIR/build.log)"
    fi
    [ -f "$XDIR/fs/xfs/xfs.ko" ] || die "no xfs.ko after build"
    (cd "$XDIR" && find . \( -name '*.o' -o -name '.*.cmd' \) -type f -print0 | xargs -0 rm -f)
    touch "$XDIR/.mxfs-done"
    log "xfs.ko built in $(($(date +%s) - start)) s"
    for d in "$MXFS_CACHE"/xfs-*; do
        case "$d" in *"-$XKEY") ;; *) rm -rf "$d" ;; esac
    done
else
    log "xfs.ko cache hit: $XDIR"
fi

cat >"$MXFS_CACHE/kernel.env.tmp" <<ENV
KEY=$KEY
KSRC=$KSRC
KDIR=$KDIR
BZIMAGE=$BZIMAGE
XFS_KO=$XDIR/fs/xfs/xfs.ko
XFS_INCLUDE=$XDIR/include
XFS_SYMVERS=$XDIR/fs/xfs/Module.symvers
ENV
mv "$MXFS_CACHE/kernel.env.tmp" "$MXFS_CACHE/kernel.env"
echo "KDIR=$KDIR"
echo "BZIMAGE=$BZIMAGE"
echo "XFS_KO=$XDIR/fs/xfs/xfs.ko"
