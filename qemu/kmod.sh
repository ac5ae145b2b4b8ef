#!/usr/bin/env bash
# Builds kmod/mxfs.ko against the cached kernel tree (run qemu/kernel.sh first: `just kernel`).
# The sources are copied, with proto/src beside them, into qemu/run/kmod-build, so the build
# writes nothing into kmod/ and the module's #[path = "../proto/src/..."] includes resolve.
# Output: qemu/run/out/mxfs.ko. Any compiler warning in MXFS's own files fails the build.
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
if ! make -C "$KDIR" M="$B/kmod" $(kmake_args) modules >"$B/build.log" 2>&1; then
    cat "$B/build.log" >&2
    die "mxfs.ko build failed"
fi
if grep -E '(warning|error)(\[[A-Za-z0-9_:]+\])?:' "$B/build.log" >/dev/null; then
    cat "$B/build.log" >&2
    die "mxfs.ko built with warnings (see above)"
fi
cp "$B/kmod/mxfs.ko" "$OUT/mxfs.ko"
log "mxfs.ko built in $(($(date +%s) - start)) s: $OUT/mxfs.ko ($(stat -c %s "$OUT/mxfs.ko") bytes)"
