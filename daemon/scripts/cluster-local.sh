#!/usr/bin/env bash
# Starts (or stops) three mxfsd on 127.0.0.1 with kernel = "none", for trying mxfsctl.
#   daemon/scripts/cluster-local.sh start|stop|status
# State, configs and logs go to $MXFS_CLUSTER_DIR (default /tmp/mxfs-cluster).
set -euo pipefail
cmd=${1:-start}
dir=${MXFS_CLUSTER_DIR:-/tmp/mxfs-cluster}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin="$root/target/debug"

stop() {
    for i in 1 2 3; do
        if [ -f "$dir/n$i.pid" ]; then
            pid=$(cat "$dir/n$i.pid")
            kill "$pid" 2>/dev/null || true
            # Wait (at most 5 s) for a clean exit before anything reuses its ports and socket.
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            rm -f "$dir/n$i.pid"
        fi
    done
}

case "$cmd" in
stop)
    stop
    echo "cluster-local: stopped"
    ;;
status)
    for i in 1 2 3; do "$bin/mxfsctl" --socket "$dir/n$i.sock" status; echo; done
    ;;
start)
    (cd "$root" && cargo build -q -p mxfs-daemon --bins)
    stop
    mkdir -p "$dir"
    rm -f "$dir/fenced.log"
    [ -f "$dir/cluster.key" ] || head -c 32 /dev/urandom | base64 >"$dir/cluster.key"
    chmod 600 "$dir/cluster.key"
    cat >"$dir/fence.sh" <<FENCE
#!/bin/sh
# Test fence agent: records the node it was asked to fence.
echo "\$(date +%T) fenced node \$1 (\$2)" >> "$dir/fenced.log"
FENCE
    chmod +x "$dir/fence.sh"
    for i in 1 2 3; do
        cat >"$dir/n$i.toml" <<CFG
node_id = $i
peers = [
  { id = 1, address = "127.0.0.1:7401", name = "n1" },
  { id = 2, address = "127.0.0.1:7402", name = "n2" },
  { id = 3, address = "127.0.0.1:7403", name = "n3" },
]
cluster_key_file = "$dir/cluster.key"
heartbeat_interval_ms = 200
heartbeat_timeout_ms = 1000
fence_command = ["$dir/fence.sh"]
shared_journals = false
kernel = "none"
ctl_socket = "$dir/n$i.sock"
metrics_address = "127.0.0.1:947$i"
CFG
        RUST_LOG=${RUST_LOG:-info} nohup "$bin/mxfsd" --config "$dir/n$i.toml" >"$dir/n$i.log" 2>&1 &
        echo $! >"$dir/n$i.pid"
    done
    for _ in $(seq 1 100); do
        if "$bin/mxfsctl" --socket "$dir/n1.sock" --json status 2>/dev/null | grep -q '"members":\[1,2,3\]'; then
            break
        fi
        sleep 0.1
    done
    "$bin/mxfsctl" --socket "$dir/n1.sock" status
    echo
    echo "cluster-local: 3 daemons up; logs in $dir/n*.log. Try:"
    echo "  $bin/mxfsctl --socket $dir/n1.sock lock inode:1:42 EX"
    echo "  $bin/mxfsctl --socket $dir/n3.sock locks"
    echo "  daemon/scripts/cluster-local.sh stop"
    ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
