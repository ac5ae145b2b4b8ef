#!/usr/bin/env bash
# Builds the Rust-enabled MXFS guest kernel (Debian's linux-source-6.12, tinyconfig plus
# qemu/kernel.config, the XFS patch series kmod/patches/*.patch), or reuses a cached build.
#
# Cache: $MXFS_CACHE (default ~/.cache/mxfs), outside the clone. The key is the sha256 of the
# source package version, the rustc-web / clang-19 / bindgen versions, the config fragment, the
# patches and this script. A hit takes seconds; a miss about 8-12 min on 2 cores.
# Layout for key K:  src-K/      patched source (path is baked into kbuild-K/Makefile; the source
#                                is re-unpacked there when missing, e.g. when CI only caches kbuild)
#                    kbuild-K/   O= tree, objects pruned to what out-of-tree module builds need
#                    kernel.env  KDIR / KSRC / BZIMAGE of the current key, read by the other scripts
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

KVER=$(pkg_version linux-source-6.12)
KEY=$({
    echo "linux-source-6.12 $KVER"
    echo "rustc-web $(pkg_version rustc-web) rust-web-src $(pkg_version rust-web-src)"
    echo "clang-19 $(pkg_version clang-19) lld-19 $(pkg_version lld-19)"
    echo "bindgen $("$BINDGEN" --version)"
    cat "$FRAG" "$0"
    for p in "${patches[@]}"; do echo "patch $(basename "$p")"; cat "$p"; done
} | sha256sum | cut -c1-16)
KSRC=$MXFS_CACHE/src-$KEY/linux
KDIR=$MXFS_CACHE/kbuild-$KEY
BZIMAGE=$KDIR/arch/x86/boot/bzImage
log "kernel key $KEY (linux-source $KVER, ${#patches[@]} patch(es))"

# Source: unpack and patch once per key; the stamp is written last.
if [ ! -f "$KSRC/.mxfs-ready" ]; then
    log "unpacking linux-source-6.12 into $KSRC"
    rm -rf "$KSRC"
    mkdir -p "$KSRC"
    tar -C "$KSRC" --strip-components=1 -xf /usr/src/linux-source-6.12.tar.xz
    for p in "${patches[@]}"; do
        log "applying $(basename "$p")"
        patch -d "$KSRC" -p1 --forward --batch <"$p" >/dev/null || die "patch $p does not apply"
    done
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

cat >"$MXFS_CACHE/kernel.env.tmp" <<ENV
KEY=$KEY
KSRC=$KSRC
KDIR=$KDIR
BZIMAGE=$BZIMAGE
ENV
mv "$MXFS_CACHE/kernel.env.tmp" "$MXFS_CACHE/kernel.env"
echo "KDIR=$KDIR"
echo "BZIMAGE=$BZIMAGE"
