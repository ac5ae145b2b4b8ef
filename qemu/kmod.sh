#!/usr/bin/env bash
# Builds kmod/mxfs.ko against the cached kernel tree (run qemu/kernel.sh first: `just kernel`).
# The sources are copied, with proto/src beside them, into qemu/run/kmod-build, so the build
# writes nothing into kmod/ and the module's #[path = "../proto/src/..."] includes resolve.
# Output: qemu/run/out/mxfs.ko. Any compiler warning in MXFS's own files fails the build.
# glue.c includes <linux/xfs_mxfs.h> from the patched XFS tree and calls xfs_mxfs_register, so
# the build sees that tree's include/ (KCPPFLAGS) and its Module.symvers (KBUILD_EXTRA_SYMBOLS).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
load_kernel_env

B=$QEMU_DIR/run/kmod-build
OUT=$QEMU_DIR/run/out
mkdir -p "$B/kmod" "$B/proto/src" "$OUT"
# -p keeps source mtimes so make rebuilds only what changed.
cp -p "$REPO_DIR"/kmod/Kbuild "$REPO_DIR"/kmod/*.rs "$REPO_DIR"/kmod/*.c "$REPO_DIR"/kmod/*.h "$B/kmod/"
cp -p "$REPO_DIR"/proto/src/*.rs "$B/proto/src/"
start=$(date +%s)
[ -n "${XFS_INCLUDE:-}" ] && [ -f "${XFS_SYMVERS:-}" ] ||
    die "kernel.env names no patched XFS tree: run qemu/kernel.sh (just kernel)"
if ! make -C "$KDIR" M="$B/kmod" $(kmake_args) KCPPFLAGS="-I$XFS_INCLUDE" \
    KBUILD_EXTRA_SYMBOLS="$XFS_SYMVERS" modules >"$B/build.log" 2>&1; then
    cat "$B/build.log" >&2
    die "mxfs.ko build failed"
fi
if grep -E '(warning|error)(\[[A-Za-z0-9_:]+\])?:' "$B/build.log" >/dev/null; then
    cat "$B/build.log" >&2
    die "mxfs.ko built with warnings (see above)"
fi
cp "$B/kmod/mxfs.ko" "$OUT/mxfs.ko"
log "mxfs.ko built in $(($(date +%s) - start)) s: $OUT/mxfs.ko ($(stat -c %s "$OUT/mxfs.ko") bytes)"
