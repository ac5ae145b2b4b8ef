#!/usr/bin/env bash
# `just bench-fs`'s figures, from the serial logs of a `cluster.sh N --bench` run (RUN dir):
# the MXFS-BENCH lines of mxfs-guest bench-fs and the MXFS-BENCH-STATS lines (mxfs.ko's
# lock_stats before and after a phase). Guests run under TCG, so only ratios taken in the same
# run mean anything; absolute figures are printed for the record. Exits non-zero when a figure
# is missing (a workload failed).
set -euo pipefail
RUN=$1
cat "$RUN"/node*.log | tr -d '\r' | sed 's/^ *//' >"$RUN/bench.txt"

if grep -q '^MXFS-BENCH-FAIL\|^FAIL error' "$RUN/bench.txt"; then
    grep '^MXFS-BENCH-FAIL\|^FAIL error' "$RUN/bench.txt" >&2
fi

awk '
function stats_delta(node, phase, name,    b, a) {
    b = S[node, phase, "before", name]; a = S[node, phase, "after", name]
    if (b == "" || a == "") { missing = missing " " phase "/" name "@" node; return 0 }
    return a - b
}
function per(ns, n) { return n > 0 ? sprintf("%.1f", ns / n / 1000) : "-" }
function need(key) {
    if (!(key in B)) { missing = missing " " key; return 0 }
    return B[key]
}
/^MXFS-BENCH-STATS / {
    node = $2; phase = $3; when = $4
    for (i = 5; i < NF; i += 2) S[node, phase, when, $i] = $(i + 1)
    next
}
/^MXFS-BENCH k[0-9]+ creates_per_s / { split($2, kk, "k"); C[kk[2]] += $4; CN[kk[2]]++; next }
/^MXFS-BENCH pingpong_secs / { if ($3 > PP) PP = $3; next }
/^MXFS-BENCH pingpong_rounds / { if ($3 > PR) PR = $3; next }
/^MXFS-BENCH ratio_[a-z_]+ / { sub(/^ratio_/, "", $2); RM[$2] = $3; RL[$2] = $4; RH[$2] = $5; next }
/^MXFS-BENCH-CALLOUTS / { line = ""; for (i = 3; i + 2 <= NF; i += 3) line = line sprintf("%s%s %s %s", (i > 3 ? ", " : ""), $i, $(i + 1), $(i + 2)); CO[$2] = line; next }
/^MXFS-BENCH-PAIRS / { for (i = 2; i < NF; i += 2) P[$i] = $(i + 1); next }
/^MXFS-BENCH [a-z_]+ / { B[$2] = $3; next }
END {
    printf "bench-fs (TCG guests: compare ratios, not absolute figures)\n\n"
    printf "1. one node, lock cached, against plain XFS in the same guest (goal: at least 0.9)\n"
    printf "   (the mounts take turns in pairs of batches of %d operations, a b, b a, ...; ratio: the\n", need("single_batch_ops")
    printf "   median of the pairs\047 ratios, and their interquartile range)\n"
    printf "   %-28s %12s %12s %8s %13s %7s\n", "workload", "-o mxfs /s", "plain /s", "ratio", "IQR", "pairs"
    n = split("overwrite_ops_per_s create_unlink_per_s stat_per_s fstat_per_s", W, " ")
    for (i = 1; i <= n; i++) {
        m = need("mxfs_" W[i]); p = need("plain_" W[i])
        if (!(W[i] in RM)) missing = missing " ratio_" W[i]
        printf "   %-28s %12d %12d %8.2f %6.2f-%.2f %7d\n", W[i], m, p, RM[W[i]], RL[W[i]], RH[W[i]], need("single_pairs_" W[i])
    }
    printf "   callouts per operation on -o mxfs (KIND intent count):\n"
    for (i = 1; i <= n; i++) if (W[i] in CO) printf "     %-26s %s\n", W[i], CO[W[i]]
    printf "   speculations through the module (no hold taken): %d, of which retried: %d\n", stats_delta(1, "single", "speculations"), stats_delta(1, "single", "retries")
    printf "   (a speculation XFS checks itself against the module\047s ticket calls nothing and counts nowhere)\n"
    hits = stats_delta(1, "single", "begins"); ends = stats_delta(1, "single", "ends")
    fm = need("mxfs_fstat_per_s"); fp = need("plain_fstat_per_s")
    printf "\n2. the kernel lock cache, cached acquire and release (node 1, phase 1)\n"
    if ("pairs" in P) {
        printf "   in the kernel, %d pairs (mxfs.ko pair_bench), ns per op_begin + op_end:\n", P["pairs"]
        printf "     the whole pair %s; its parts alone: task table %s, gate %s; a clock read %s\n", P["pair_ns"], P["task_table_ns"], P["gate_ns"], P["clock_ns"]
        printf "     a speculation instead (getattr, an RCU walk\047s permission check): %s; checked by XFS with the ticket: %s\n", P["speculation_ns"], P["ticket_ns"]
    } else missing = missing " pair_bench"
    if (fm > 0 && fp > 0)
        printf "   seen from user space: fstat on -o mxfs minus fstat on plain XFS: %.0f ns\n", (1e9 / fm - 1e9 / fp)
    printf "   (fstat does nothing else that differs, but the VFS, XFS\047s callout and the glue count too)\n"
    printf "   op_begin calls: %d; op_end: %d; lock requests sent: %d (every other op_begin was served from the cache)\n", hits, ends, stats_delta(1, "single", "requests")

    printf "\n3. hand-off: nodes 1 and 2 alternately write one file\n"
    if (PP > 0) printf "   %d rounds in %.2f s: %.1f hand-offs per second\n", PR, PP, PR / PP
    else missing = missing " pingpong"
    printf "   %-6s %10s %14s %12s %16s %10s %16s %12s %14s\n", "node", "callbacks", "callback->ans", "clean pts", "clean point", "refreshes", "refresh", "requests", "request->grant"
    for (nd = 1; nd <= 2; nd++) {
        cb = stats_delta(nd, "pingpong", "callbacks"); an = stats_delta(nd, "pingpong", "answers")
        cp = stats_delta(nd, "pingpong", "clean_points"); rf = stats_delta(nd, "pingpong", "refreshes")
        rq = stats_delta(nd, "pingpong", "requests")
        printf "   %-6d %10d %11s us %12d %13s us %10d %13s us %12d %11s us\n", nd, cb,
            per(stats_delta(nd, "pingpong", "answer_wait_ns"), an), cp,
            per(stats_delta(nd, "pingpong", "clean_point_ns"), cp), rf,
            per(stats_delta(nd, "pingpong", "refresh_ns"), rf), rq,
            per(stats_delta(nd, "pingpong", "request_ns"), rq)
    }
    printf "   (callback->ans: from LOCK_CALLBACK to the start of its answer, i.e. waiting for the\n"
    printf "   holders; request->grant includes the other node giving the lock up)\n"

    printf "\n4. small-file creates, nodes working at once (level 0: one writer at a time)\n"
    for (k = 1; k in C; k++)
        printf "   %d node(s): %8.1f creates/s in all (%d reporting)\n", k, C[k], CN[k]
    if (!(1 in C)) missing = missing " creates"
    if (missing != "") { printf "\nMISSING:%s\n", missing; exit 1 }
}' "$RUN/bench.txt"
