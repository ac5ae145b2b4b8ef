# shellcheck shell=bash
# Sourced by qemu/cluster.sh: the crash phase (issue 11 item 5; qemu/README.md, "Crash
# recovery"), a second cluster of N guests on a fresh -o mxfs volume in $RUN/crash, booted after
# the first cluster's guests are gone. Every node runs the fsync-acknowledged storm of
# qemu/guest/src/crash.rs on its own directory; CRASH_ROUNDS times the host picks a victim
# (N, N-1, ..., 2, N, ...), waits until the others paused and the victim acknowledged one more
# write while holding the volume lock in EX, kills its QEMU (kill -9), marks it fenced for the
# fence agents, lets the survivors go on, and once node 1 acknowledged again (the recovery is
# done) has node 1 list the dead victim's directory (crash_snap: MXFS-CRASH-SNAP <round>), then
# relaunches the victim on the same disks (mxfs.inc=<round>: it rejoins and storms again) before
# the next round. The daemon-death round is listed the same way before its victim is powered
# off; after the first-mounter round's restart each restarted node lists its own directory
# before it writes, and node 1 those of the nodes not booted again. Then the host stops the
# storm, node 1 lists every node's directory (MXFS-CRASH-FINAL) and prints mxfsd's recovery
# history, everyone unmounts, and crash_judge checks:
#   crash_fsync_durable  after each recovery (every snapshot) and at the end (the final
#                        listing), every write, create, rename and unlink the node acknowledged
#                        (up to its death, for a snapshot) is there, no block is torn, and
#                        nothing unacknowledged is there either (the victims stop before they
#                        die, so each listing must match exactly); every round needs its
#                        snapshots;
#   crash_repair_clean   xfs_repair -n with every log (repair_check, as repair_clean);
#   recovery_ms          each kill's recovery on the fencer (node 1): detection (the kill mark
#                        seen by node 1 to mxfsd's recovery start), fence, replay, remaster.
# MXFS_CRASH_ROUNDS (default 5), MXFS_CRASH_STORM_SECS (storm time before each kill, default 3);
# MXFS_CRASH_NO_REPLAY=1 configures replay_command = ["/bin/true"] (the negative run of
# qemu/README.md: the checks must fail).
# Uses cluster.sh's N, RUN, FS_SEED, launch_guest, make_volume, write_word, witness_word,
# mark_fenced, disk; sets CPIDS (killed by cluster.sh's cleanup).

CRASH_ROUNDS=${MXFS_CRASH_ROUNDS:-5}
CRASH_STORM_SECS=${MXFS_CRASH_STORM_SECS:-3}
CRASH_NO_REPLAY=${MXFS_CRASH_NO_REPLAY:-0}
CRASH_FIRST_MOUNTER=${MXFS_CRASH_FIRST_MOUNTER:-1}
CRASH_DAEMON_DEATH=${MXFS_CRASH_DAEMON_DEATH:-1}
# Control words on the witness disk (qemu/guest/src/crash.rs; sectors 1400-1431, the guest's
# PAUSED_SECTOR + node is 1421-1429): the control word, READY + node, the kill mark, and the
# snapshot request (round << 8 | node) with node 1's done word (the round it listed).
CRASH_CTL_SECTOR=1400
CRASH_READY_SECTOR=1400
CRASH_KILLED_SECTOR=1411
CRASH_SNAP_SECTOR=1430
CRASH_SNAP_DONE_SECTOR=1431
CRASH_STOP=$((0xFFFFFFFF))
# Bounds: a guest's boot to a running storm, a victim's ready report, node 1's listing of a
# dead node's directory, the final listing.
CRASH_BOOT_SECS=240
CRASH_READY_SECS=60
CRASH_SNAP_SECS=60
CRASH_END_SECS=240
CRASH_CHECKS=crash_fsync_durable,crash_repair_clean,recovery_ms
[ "$CRASH_FIRST_MOUNTER" = 1 ] && CRASH_CHECKS=$CRASH_CHECKS,first_mounter_recovers
[ "$CRASH_DAEMON_DEATH" = 1 ] && CRASH_CHECKS=$CRASH_CHECKS,daemon_death_withdraws
CPIDS=()
CSERIAL=()

# wait_line FILE PATTERN SECS: waits until FILE has a line matching PATTERN.
wait_line() {
    local i=0
    until [ -f "$1" ] && tr -d '\r' <"$1" | grep -q "$2"; do
        i=$((i + 1)); [ $i -gt $(($3 * 5)) ] && return 1; sleep 0.2
    done
}

# crash_victim ROUND: the node a round acts on (never node 1, which judges the run).
crash_victim() { echo $((N - ($1 - 1) % (N - 1))); }

# crash_arm DIR ROUND VICTIM RESULT: tells VICTIM to act in ROUND (the others pause) and waits
# up to CRASH_READY_SECS for its ready word; on a timeout writes RESULT's FAIL line to
# DIR/host.log and returns 1.
crash_arm() {
    write_word $CRASH_CTL_SECTOR $((($2 << 8) | $3))
    await_word $((CRASH_READY_SECTOR + $3)) "$2" $CRASH_READY_SECS ||
        { echo "MXFS-RESULT $4 FAIL node $3 never reported ready" >>"$1/host.log"; return 1; }
}

# await_word SECTOR VALUE SECS: waits up to SECS for the witness word at SECTOR to read VALUE
# (polled every 0.1 s); returns 1 on a timeout.
await_word() {
    local i=0
    until [ "$(witness_word "$1")" = "$2" ]; do
        i=$((i + 1))
        [ $i -gt $(($3 * 10)) ] && return 1
        sleep 0.1
    done
}

# crash_snap DIR ROUND VICTIM: after ROUND's recovery (node 1 went on) and before VICTIM is
# booted again, asks node 1's crash-watch to list VICTIM's directory (MXFS-CRASH-SNAP: it is
# dead, so the listing must equal every write, create, rename and unlink it acknowledged) and
# waits up to CRASH_SNAP_SECS for node 1's done word; on a timeout writes a FAIL line naming the
# round to DIR/host.log and returns 1.
crash_snap() {
    local t=$(date +%s)
    write_word $CRASH_SNAP_SECTOR $((($2 << 8) | $3))
    if ! await_word $CRASH_SNAP_DONE_SECTOR "$2" $CRASH_SNAP_SECS; then
        echo "MXFS-RESULT crash_snapshot_$2 FAIL node 1 did not list node $3's directory within ${CRASH_SNAP_SECS}s after round $2's recovery" >>"$1/host.log"
        return 1
    fi
    echo "crash phase time round $2: node 1 listed node $3's directory in $(($(date +%s) - t)) s" >>"$1/host.log"
}

crash_stage() {
    local C=$RUN/crash r v i t0 t_phase replay=/bin/mxfs-replay ok=1
    mkdir -p "$C"
    [ "$CRASH_NO_REPLAY" = 1 ] && replay=/bin/true
    t0=$(date +%s)
    make_volume "$C" "$replay" 1
    WIT=$C/witness.img
    : >"$C/host.log"
    log "crash phase: $CRASH_ROUNDS kills, ${CRASH_STORM_SECS}s of storm before each; replay_command $replay"
    for i in $(seq 1 "$N"); do
        launch_guest "$C" "$i" " mxfs.crash=1 mxfs.log=$(disk $((4 + i))) mxfs.fsseed=$FS_SEED" "crash$i"
        CPIDS+=("$LAST_PID")
        CSERIAL[i]=crash$i
    done
    for i in $(seq 1 "$N"); do
        wait_line "$C/crash$i.log" "^MXFS-CRASH-STORM" $CRASH_BOOT_SECS ||
            { echo "MXFS-RESULT crash_boot FAIL node $i never started its storm" >>"$C/host.log"; ok=0; }
    done
    echo "crash phase time boot $(($(date +%s) - t0)) s" >>"$C/host.log"
    for r in $(seq 1 "$CRASH_ROUNDS"); do
        [ "$ok" = 1 ] || break
        t_phase=$(date +%s)
        sleep "$CRASH_STORM_SECS"
        v=$(crash_victim "$r")
        crash_arm "$C" "$r" "$v" "crash_round_$r" || { ok=0; break; }
        { kill -9 "${CPIDS[$((v - 1))]}"; wait "${CPIDS[$((v - 1))]}"; } 2>/dev/null || true
        acks1=$(grep -c "MXFS-CRASH-ACK" "$C/crash1.log" || true)
        echo "MXFS-CRASH-KILL $r $v $(date +%s%N)" >>"$C/host.log"
        write_word $CRASH_KILLED_SECTOR "$r"
        mark_fenced "$v"
        write_word $CRASH_CTL_SECTOR $((r << 8))
        # The survivors go on once the recovery is done (the victim held the volume lock in EX,
        # so node 1's next acknowledgement comes after it). Only then is the victim relaunched: a
        # node that comes back before the others noticed its death is excluded by the next epoch
        # and grants nothing until its mxfsd restarts (daemon/README.md, Quorum).
        i=0
        until [ "$(grep -c "MXFS-CRASH-ACK" "$C/crash1.log" || true)" -gt "$acks1" ]; do
            i=$((i + 1))
            if [ $i -gt $((CRASH_BOOT_SECS * 5)) ]; then
                echo "MXFS-RESULT crash_survivors_$r FAIL node 1 made no progress after node $v's kill" >>"$C/host.log"; ok=0; break
            fi
            sleep 0.2
        done
        [ "$ok" = 1 ] || break
        echo "crash phase time round $r: node 1 went on $(($(date +%s) - t_phase)) s into the round" >>"$C/host.log"
        crash_snap "$C" "$r" "$v" || { ok=0; break; }
        log "crash round $r: killed node $v right after its acknowledged write; survivors went on; relaunching it"
        launch_guest "$C" "$v" " mxfs.crash=1 mxfs.inc=$r mxfs.log=$(disk $((4 + v))) mxfs.fsseed=$FS_SEED" "crash$v-r$r"
        CPIDS[$((v - 1))]=$LAST_PID
        CSERIAL[v]=crash$v-r$r
        wait_line "$C/crash$v-r$r.log" "^MXFS-CRASH-STORM" $CRASH_BOOT_SECS ||
            { echo "MXFS-RESULT crash_rejoin_$r FAIL node $v did not rejoin and storm again" >>"$C/host.log"; ok=0; }
        echo "crash phase time round $r (node $v killed, rejoined) $(($(date +%s) - t_phase)) s" >>"$C/host.log"
    done
    [ "$ok" = 1 ] && [ "$CRASH_DAEMON_DEATH" = 1 ] && crash_daemon_death "$C"
    [ "$ok" = 1 ] && [ "$CRASH_FIRST_MOUNTER" = 1 ] && crash_first_mounter "$C"
    sleep "$CRASH_STORM_SECS"
    write_word $CRASH_CTL_SECTOR $CRASH_STOP
    t_phase=$(date +%s)
    while :; do
        local alive=0 p
        for p in "${CPIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
        [ "$alive" = 0 ] && break
        if [ $(($(date +%s) - t_phase)) -gt $CRASH_END_SECS ]; then
            echo "MXFS-RESULT crash_finished FAIL $alive guest(s) still up ${CRASH_END_SECS}s after the stop" >>"$C/host.log"
            for p in "${CPIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
            break
        fi
        sleep 1
    done
    echo "crash phase time end (stop, listing, unmount) $(($(date +%s) - t_phase)) s" >>"$C/host.log"
    echo "crash phase time total $(($(date +%s) - t0)) s" >>"$C/host.log"
    WIT=$RUN/witness.img
}

# crash_daemon_death DIR: round CRASH_ROUNDS+1 kills node v's mxfsd instead of its QEMU, right
# after v acknowledged a write and a create under EX (the guest kills it: mxfs-guest crash-storm
# exits 3). v's mount must withdraw (its write fails with EIO); the host then marks v fenced,
# the survivors fence it, replay its log and go on; node 1 lists v's directory (crash_snap);
# then the host powers v off (kill -9 of its QEMU) and boots it again to rejoin, as after a kill.
crash_daemon_death() {
    local C=$1 D=$((CRASH_ROUNDS + 1)) v i acks1 got t_phase=$(date +%s) why=""
    sleep "$CRASH_STORM_SECS"
    v=$(crash_victim "$D")
    write_word $CRASH_CTL_SECTOR $(((D << 8) | 0x80 | v))
    if ! wait_line "$C/${CSERIAL[v]}.log" "^MXFS-CRASH-WITHDRAWN" $CRASH_READY_SECS; then
        echo "MXFS-RESULT daemon_death_withdraws FAIL node $v never reported its mount's state after its mxfsd died" >>"$C/host.log"
        ok=0; return
    fi
    got=$(tr -d '\r' <"$C/${CSERIAL[v]}.log" | grep -m1 "^MXFS-CRASH-WITHDRAWN" | sed 's/^MXFS-CRASH-WITHDRAWN //')
    case "$got" in *"write: "*"Input/output error"*) ;; *) why="$why operations did not fail with EIO ($got);" ;; esac
    echo "MXFS-CRASH-DAEMONKILL $D $v $(date +%s%N)" >>"$C/host.log"
    acks1=$(grep -c "MXFS-CRASH-ACK" "$C/crash1.log" || true)
    mark_fenced "$v"
    write_word $CRASH_CTL_SECTOR $((D << 8))
    i=0
    until [ "$(grep -c "MXFS-CRASH-ACK" "$C/crash1.log" || true)" -gt "$acks1" ]; do
        i=$((i + 1))
        [ $i -gt $((CRASH_BOOT_SECS * 5)) ] && { why="$why node 1 made no progress after node $v's mxfsd died;"; break; }
        sleep 0.2
    done
    local went=$(($(date +%s) - t_phase))
    crash_snap "$C" "$D" "$v" || ok=0
    { kill -9 "${CPIDS[$((v - 1))]}"; wait "${CPIDS[$((v - 1))]}"; } 2>/dev/null || true
    launch_guest "$C" "$v" " mxfs.crash=1 mxfs.inc=$D mxfs.log=$(disk $((4 + v))) mxfs.fsseed=$FS_SEED" "crash$v-r$D"
    CPIDS[$((v - 1))]=$LAST_PID
    CSERIAL[v]=crash$v-r$D
    wait_line "$C/crash$v-r$D.log" "^MXFS-CRASH-STORM" $CRASH_BOOT_SECS ||
        { why="$why node $v did not rejoin after its reboot;"; ok=0; }
    if [ -z "$why" ]; then
        echo "MXFS-RESULT daemon_death_withdraws PASS node $v's write and stat failed with EIO after its mxfsd died; survivors went on after ${went}s; node $v rebooted and rejoined ($(echo "$got" | grep -o 'mxfs: mxfsd went away.*' || echo "$got"))" >>"$C/host.log"
    else
        echo "MXFS-RESULT daemon_death_withdraws FAIL$why" >>"$C/host.log"
    fi
    echo "crash phase time round $D (node $v's mxfsd killed, node rebooted, rejoined) $(($(date +%s) - t_phase)) s" >>"$C/host.log"
}

# crash_first_mounter DIR: the last round kills every node right after the victim's
# acknowledged write (it holds EX, its log dirty), then boots only a majority (nodes 1..N/2+1;
# a lone node of three never forms a membership): their first membership fences the absent
# nodes and the fencer replays every log before any grant (daemon/README.md, First mounter).
# Before they storm again, each lists its own directory and node 1 those of the absent nodes
# (cluster-node.sh): this round's snapshots must hold everything acknowledged before.
crash_first_mounter() {
    local C=$1 T=$((CRASH_ROUNDS + 1 + CRASH_DAEMON_DEATH)) v i m live t_phase=$(date +%s)
    sleep "$CRASH_STORM_SECS"
    v=$(crash_victim "$T")
    crash_arm "$C" "$T" "$v" first_mounter_recovers || return
    { kill -9 "${CPIDS[$((v - 1))]}"; for i in "${CPIDS[@]}"; do kill -9 "$i"; wait "$i"; done; } 2>/dev/null || true
    echo "MXFS-CRASH-TOTALKILL $T $v $(date +%s%N)" >>"$C/host.log"
    for i in $(seq 1 "$N"); do mark_fenced "$i"; done
    write_word $CRASH_KILLED_SECTOR "$T"
    write_word $CRASH_CTL_SECTOR $((T << 8))
    m=$((N / 2 + 1))
    live=$(seq -s, 1 "$m")
    log "crash round $T: killed every node right after node $v's acknowledged write; booting nodes $live (a majority)"
    for i in $(seq 1 "$m"); do
        launch_guest "$C" "$i" " mxfs.crash=1 mxfs.inc=$T mxfs.live=$live mxfs.log=$(disk $((4 + i))) mxfs.fsseed=$FS_SEED" "crash$i-r$T"
        CPIDS[$((i - 1))]=$LAST_PID
    done
    for i in $(seq 1 "$m"); do
        wait_line "$C/crash$i-r$T.log" "^MXFS-CRASH-STORM" $CRASH_BOOT_SECS ||
            echo "MXFS-RESULT first_mounter_recovers FAIL node $i did not mount and storm after the restart" >>"$C/host.log"
    done
    echo "crash phase time round $T (every node killed, nodes $live booted) $(($(date +%s) - t_phase)) s" >>"$C/host.log"
}

# crash_judge: the crash phase's verdicts, appended to $RUN/host.log.
crash_judge() {
    local C=$RUN/crash
    [ -d "$C" ] || return 0
    grep -h "^MXFS-RESULT" "$C/host.log" >>"$RUN/host.log" || true
    python3 - "$C" "$N" >>"$RUN/host.log" <<'PY' || echo "MXFS-RESULT crash_judge FAIL the judge script failed (see above)" >>"$RUN/host.log"
import glob, json, os, re, sys
C, N = sys.argv[1], int(sys.argv[2])
# Per serial log (one per incarnation: crash<n>.log, crash<n>-r<round>.log): what it printed.
# snaps: (round, node) -> the listing of node's directory after round's recovery.
acks, final, snaps, files = [], {}, {}, {}
for path in sorted(glob.glob(os.path.join(C, "crash*.log"))):
    base = os.path.basename(path)[:-4]
    f = files[base] = {"status": None, "seen": {}, "up": None, "dmesg": [], "mxfsd": []}
    for line in open(path, errors="replace"):
        line = line.rstrip("\r\n")
        m = re.match(r"\s*(MXFS-CRASH-[A-Z-]+|MXFS-MXFSD) (.*)", line)
        if not m:
            continue
        tag, rest = m.groups()
        try:
            if tag == "MXFS-CRASH-ACK":
                acks.append(json.loads(rest))
            elif tag == "MXFS-CRASH-FINAL":
                j = json.loads(rest); final[j["n"]] = j
            elif tag == "MXFS-CRASH-SNAP":
                r, j = rest.split(" ", 1); j = json.loads(j); snaps[(int(r), j["n"])] = j
            elif tag == "MXFS-CRASH-STATUS":
                f["status"] = json.loads(rest)
            elif tag == "MXFS-CRASH-KILLSEEN":
                r, up = rest.split(); f["seen"][int(r)] = float(up)
            elif tag == "MXFS-CRASH-DMESG":
                f["dmesg"].append(rest)
            elif tag == "MXFS-MXFSD":
                f["mxfsd"].append(rest)
            elif tag == "MXFS-CRASH-MXFSD-UP":
                f["up"] = float(rest)
        except (ValueError, KeyError):
            print(f"MXFS-RESULT crash_log_parse FAIL {base}: {line[:80]}")
kills, total, daemon_kills = [], None, []
for line in open(os.path.join(C, "host.log")):
    if line.startswith("MXFS-CRASH-KILL "):
        _, r, v, ns = line.split(); kills.append((int(r), int(v)))
    elif line.startswith("MXFS-CRASH-DAEMONKILL "):
        _, r, v, ns = line.split(); daemon_kills.append((int(r), int(v)))
    elif line.startswith("MXFS-CRASH-TOTALKILL "):
        _, r, v, ns = line.split(); total = (int(r), int(v))

# crash_fsync_durable: replay a node's acknowledged operations in order (incarnation, op
# counter) into a model of its directory, then compare the model with a listing: node 1's
# final listing against all of them, and each snapshot SNAP(round, node) (listed after the
# round's recovery, while node was dead and before anything of its next incarnation ran)
# against those of its incarnations that started before that round (incarnation k started
# after round k; 0 is the first boot), which are all it acknowledged before it died.
def model(n, before=None):
    """Node n's directory as its acks (of incarnations < before, if given) left it: block
    values by (file, block), name values, and acks the model cannot place."""
    ops = sorted((a for a in acks if a["n"] == n and (before is None or a["k"] < before)),
                 key=lambda a: (a["k"], a["i"]))
    blocks, names, odd = {}, {}, []
    for a in ops:
        if a["op"] == "write":
            blocks[(a["f"], a["b"])] = a["v"]
        elif a["op"] == "create":
            names[a["name"]] = a["v"]
        elif a["op"] == "rename":
            if a["from"] not in names:
                odd.append(f"node {n}: rename of unknown {a['from']}"); continue
            names[a["to"]] = names.pop(a["from"])
        elif a["op"] == "unlink":
            if names.pop(a["name"], None) is None:
                odd.append(f"node {n}: unlink of unknown {a['name']}")
    return blocks, names, odd, len(ops)

def compare(where, n, got, blocks, names):
    """Findings of listing got of node n's directory against the model (blocks, names)."""
    out = []
    for fno, vals in enumerate(got["blocks"]):
        for b, v in enumerate(vals):
            want = blocks.get((fno, b), "init")
            if v.startswith("torn") or v.startswith("error"):
                out.append(f"node {n} d{fno} block {b}: {v} (want {want})")
            elif v != want:
                out.append(f"node {n} d{fno} block {b}: holds {v}, acknowledged {want}")
    for name, want in names.items():
        v = got["names"].get(name)
        if v is None:
            out.append(f"node {n}: acknowledged {name} missing")
        elif v != want:
            out.append(f"node {n}: {name} holds {v}, acknowledged {want}")
    for name in got["names"]:
        # The daemon-death round's probe is written after mxfsd died, never acknowledged: a try
        # that succeeded before the module withdrew may or may not be on disk.
        if name not in names and name != "after-daemon-death":
            out.append(f"node {n}: {name} present, never acknowledged (or renamed away)")
    return [f"{where}: {x}" for x in out]

bad, counts = [], {"write": 0, "create": 0, "rename": 0, "unlink": 0}
for a in acks:
    counts[a["op"]] += 1
nodes = sorted({a["n"] for a in acks} | set(final))
for n in nodes:
    blocks, names, odd, _ = model(n)
    bad += odd
    fin = final.get(n)
    if fin is None:
        bad.append(f"node {n}: no final listing"); continue
    bad += compare("final listing", n, fin, blocks, names)
# Every kill round (and the daemon-death round) lists its victim; the first-mounter round
# lists every node (its restarted nodes their own directories before they write, node 1 the
# others').
snap_bad, snap_acks, round_acks = {}, 0, {}
for (r, n), got in sorted(snaps.items()):
    blocks, names, _, k = model(n, before=r)
    snap_acks += k
    round_acks[r] = round_acks.get(r, 0) + k
    snap_bad[r] = snap_bad.get(r, []) + compare(f"after round {r}'s recovery", n, got, blocks, names)
want_snaps = set(kills + daemon_kills) | ({(total[0], n) for n in range(1, N + 1)} if total else set())
for r, n in sorted(want_snaps - set(snaps), reverse=True):
    snap_bad[r] = [f"after round {r}'s recovery: no snapshot of node {n}'s directory"] + snap_bad.get(r, [])
# The earliest round's findings first: a loss shows there before later rounds build on it.
bad = [x for r in sorted(snap_bad) for x in snap_bad[r]] + bad
snap_rounds = sorted({r for r, _ in snaps})
# Incarnations that were killed: node v's incarnation k (the round it rejoined after, 0 = first
# boot) ended with its next kill; in the first-mounter round every incarnation up then ended.
killed_inc = set()
for r, v in kills + daemon_kills:
    killed_inc.add((v, max([rr for rr, vv in kills + daemon_kills if vv == v and rr < r], default=0)))
if total:
    for n in nodes:
        ks = [k for (nn, k) in {(a["n"], a["k"]) for a in acks} if nn == n and k < total[0]]
        if ks:
            killed_inc.add((n, max(ks)))
dead_acked = sum(1 for a in acks if (a["n"], a["k"]) in killed_inc)

# The fencer's recovery mounts after kills (node 1's first incarnation): how many found the
# dead node's log dirty (XFS "Starting recovery"); a victim killed as planned always does.
def dirty_replays(f, after):
    replays, dirty, cur = 0, 0, None
    for d in f["dmesg"]:
        m = re.match(r"\[\s*([0-9.]+)\]", d)
        if not m or after is None or float(m.group(1)) < after:
            continue
        if "replaying node" in d:
            replays += 1; cur = d
        elif "Starting recovery" in d and cur is not None:
            dirty += 1; cur = None
    return replays, dirty
f1 = files.get("crash1", {"seen": {}, "dmesg": [], "status": None, "up": None, "mxfsd": []})
replays, dirty = dirty_replays(f1, min(f1["seen"].values(), default=None))
if kills and dirty == 0:
    bad.append(f"no replay after a kill found a dirty log ({replays} replays): nothing was tested")
summary = (f"{dirty} of {replays} replays after kills found the log dirty; {len(acks)} "
           f"fsync-acknowledged ops ({counts['write']} writes, {counts['create']} creates, "
           f"{counts['rename']} renames, {counts['unlink']} unlinks; {dead_acked} by incarnations "
           f"later killed), {len(kills)} kills{' + every node once' if total else ''}")
summary = (f"{len(snaps)} snapshots after {len(snap_rounds)} recoveries (rounds "
           f"{','.join(map(str, snap_rounds)) or 'none'}; their models replay {snap_acks} acks) + final "
           f"listing; {summary}")
if not kills:
    print(f"MXFS-RESULT crash_fsync_durable FAIL no kill happened; {summary}")
elif bad:
    print(f"MXFS-RESULT crash_fsync_durable FAIL {len(bad)} finding(s): {bad[0]}; {summary}")
    for b in bad[:20]:
        print(f"crash finding: {b}")
else:
    print(f"MXFS-RESULT crash_fsync_durable PASS all present, none torn: {summary}")

# recovery_ms: per incarnation of node 1 (the fencer, never the victim of a single kill), match
# each kill it saw with the first recovery of that node that started after it.
rows, missing = [], []
for r, v in kills:
    f = next((f for f in files.values() if r in f["seen"] and f["status"]), None)
    if f is None:
        missing.append(r); continue
    t_seen = f["seen"][r]
    recs = [x for x in f["status"].get("recoveries", []) if v in x.get("lost", [])
            and f["up"] is not None and f["up"] + x["started_ms"] / 1000 >= t_seen - 1.0]
    if not recs:
        missing.append(r); continue
    x = min(recs, key=lambda x: x["started_ms"])
    det = round((f["up"] + x["started_ms"] / 1000 - t_seen) * 1000)
    rows.append((r, v, det, x.get("fence_ms"), x.get("replay_ms"), x.get("remaster_ms"), x.get("duration_ms")))
for row in rows:
    print("recovery round %d node %d: detection %s ms, fence %s ms, replay %s ms, remaster %s ms (mxfsd total %s ms)" % row)
if not rows:
    print("MXFS-RESULT recovery_ms FAIL no recovery of a killed node recorded on node 1")
else:
    def med(i):
        xs = sorted(r[i] for r in rows if r[i] is not None)
        return xs[len(xs) // 2] if xs else "?"
    verdict = "FAIL" if missing else "PASS"
    extra = f"; no record for round(s) {missing}" if missing else ""
    print(f"MXFS-RESULT recovery_ms {verdict} {len(rows)} recoveries, median ms: detect {med(2)} fence {med(3)} replay {med(4)} remaster {med(5)}{extra}")

# first_mounter_recovers: after every node was killed, the restarted majority's fencer (node 1)
# replayed every node's log before any grant (mxfsd: first mounter), at least one of them dirty,
# and everything acknowledged before (crash_fsync_durable's model) is in the final listing.
if total:
    T, v = total
    f = files.get(f"crash1-r{T}")
    why = []
    if f is None:
        why.append(f"node 1 did not boot again (no crash1-r{T}.log)")
    else:
        log = "\n".join(f["mxfsd"])
        if "first mounter" not in log:
            why.append("node 1's mxfsd did not act as first mounter")
        missing_replay = [n for n in nodes if f"journal replayed node={n}" not in re.sub(r"\x1b\[[0-9;]*m", "", log)]
        if missing_replay:
            why.append(f"no replay of log(s) {missing_replay}")
        rp = dr = 0
        for name, g in files.items():
            if name.endswith(f"-r{T}"):
                a, b = dirty_replays(g, 0.0); rp += a; dr += b
        if dr == 0:
            why.append(f"none of the {rp} recovery mounts of the restart found a dirty log")
    # The round's snapshots: every node's directory after the restart's replays, before any
    # restarted node wrote (crash_fsync_durable judged them).
    if snap_bad.get(T):
        why.append(f"acknowledged state lost: {snap_bad[T][0]}")
    if why:
        print(f"MXFS-RESULT first_mounter_recovers FAIL {'; '.join(why)}")
    else:
        print(f"MXFS-RESULT first_mounter_recovers PASS every node killed after node {v}'s ack; nodes restarted as a majority, logs {nodes} replayed first ({dr} of {rp} recovery mounts found a dirty log); the round's {len([1 for r, _ in snaps if r == T])} snapshots (every directory, listed before any restarted node wrote) hold all {round_acks.get(T, 0)} acks of the incarnations before")
PY
    repair_check crash_repair_clean "$C"
}
