# shellcheck shell=bash
# Shared helpers for the qemu/ scripts. Source it; it defines no side effects by itself.

QEMU_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$QEMU_DIR/.." && pwd)
# Everything heavy (kernel tree, bindgen, busybox rootfs pieces) lives outside the clone.
MXFS_CACHE=${MXFS_CACHE:-$HOME/.cache/mxfs}
BINDGEN_VER=0.72.1
export LIBCLANG_PATH=/usr/lib/llvm-19/lib
export DEBIAN_FRONTEND=noninteractive

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Installs the named Debian packages that are missing. Waits (bounded) for another apt/dpkg to
# release its lock instead of failing, and runs `apt-get update` only when an install needs it.
apt_need() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    log "apt: installing ${missing[*]}"
    local apt=($sudo apt-get -o DPkg::Lock::Timeout=900 -y -q --no-install-recommends)
    if ! "${apt[@]}" install "${missing[@]}" >/tmp/mxfs-apt.$$.log 2>&1; then
        "${apt[@]}" update >/dev/null 2>&1 || true
        "${apt[@]}" install "${missing[@]}" >/tmp/mxfs-apt.$$.log 2>&1 ||
            { cat /tmp/mxfs-apt.$$.log >&2; die "apt-get install ${missing[*]} failed"; }
    fi
    rm -f /tmp/mxfs-apt.$$.log
}

pkg_version() { dpkg-query -W -f='${Version}' "$1"; }

# The kernel build toolchain: Debian's rustc-web (it has the matching rust-src; rustup's rustc
# does not), clang/lld/llvm 19, and bindgen-cli built once into the cache.
KERNEL_PKGS=(linux-source-6.12 rustc-web rust-web-src cargo-web clang-19 lld-19 llvm-19
    libclang-19-dev flex bison libelf-dev libssl-dev bc cpio xz-utils zstd kmod make gcc
    libc6-dev)
BINDGEN=$MXFS_CACHE/bindgen-$BINDGEN_VER/bin/bindgen

# make arguments shared by the kernel and the module build.
kmake_args() {
    echo "LLVM=-19 RUSTC=/usr/bin/rustc HOSTRUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc BINDGEN=$BINDGEN"
}

# Reads KDIR/KSRC/BZIMAGE written by kernel.sh for the current key.
load_kernel_env() {
    local env=$MXFS_CACHE/kernel.env
    [ -f "$env" ] || die "no kernel built yet: run qemu/kernel.sh (just kernel)"
    # shellcheck disable=SC1090
    . "$env"
    [ -f "$BZIMAGE" ] || die "kernel image $BZIMAGE missing: run qemu/kernel.sh (just kernel)"
}

QEMU_PKGS=(qemu-system-x86 xfsprogs)

# A new run directory qemu/run/<timestamp>/ for serial logs and disks.
new_run_dir() {
    local d
    d=$QEMU_DIR/run/$(date +%Y%m%d-%H%M%S)-$1
    mkdir -p "$d"
    echo "$d"
}

# Prints the result table from MXFS-RESULT lines of the given serial logs; returns 1 if any
# check failed or if none ran. Lines look like: MXFS-RESULT <name> PASS|FAIL <detail>.
result_table() {
    local expected=$1; shift
    python3 - "$expected" "$@" <<'PY'
import re, sys
expected = [e for e in sys.argv[1].split(",") if e]
rows = []
for path in sys.argv[2:]:
    node = path.rsplit("/", 1)[-1].replace(".log", "")
    for line in open(path, errors="replace"):
        m = re.match(r"\s*MXFS-RESULT (\S+) (PASS|FAIL) ?(.*)", line.rstrip("\r\n"))
        if m:
            rows.append((node, m.group(1), m.group(2), m.group(3)[:90]))
seen = {r[1] for r in rows}
for e in expected:
    if e not in seen:
        rows.append(("-", e, "FAIL", "never ran (guest hung or crashed?)"))
w = max([len(r[1]) for r in rows] + [5])
print(f"{'node':<8} {'check':<{w}} result  detail")
for r in rows:
    print(f"{r[0]:<8} {r[1]:<{w}} {r[2]:<6}  {r[3]}")
fails = sum(1 for r in rows if r[2] != "PASS")
passes = len(rows) - fails
print(f"{passes} passed, {fails} failed")
sys.exit(1 if fails or not rows else 0)
PY
}

# Kernel command-line arguments that give the guests a real-time clock: the host TSC frequency
# (see tsc-khz.c), so the guest uses the TSC instead of drifting jiffies.
guest_clock_args() {
    local bin=$QEMU_DIR/run/out/tsc-khz
    mkdir -p "$(dirname "$bin")"
    [ -x "$bin" ] && [ "$bin" -nt "$QEMU_DIR/tsc-khz.c" ] || gcc -O2 -o "$bin" "$QEMU_DIR/tsc-khz.c"
    echo "tsc_early_khz=$("$bin") tsc=reliable"
}
