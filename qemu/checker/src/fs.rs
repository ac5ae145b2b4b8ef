//! File-system checkers for the QEMU cluster's `-o mxfs` phase (DESIGN.md §5.6), judged on the
//! host from what the guests recorded, never from a node's own verdict.
//!
//! Times are guest TSC ticks converted to node 1's TSC with the offsets each node measured
//! against node 1 (`mxfs-guest clock-sync`): a node's tick plus its offset. The measurement's
//! error bound is `eps`: one event precedes another only if it ended more than `eps` ticks
//! before the other began. That keeps the checks sound (no false alarm from clock error) at the
//! price of missing reorderings shorter than `eps`.
//!
//! - [`check_registers`]: each 4 KiB block of the shared files is a register; each written value
//!   is unique (node, sequence), so linearizability is decidable in polynomial time
//!   (Gibbons and Korach's zones): a value's *cluster* is its write and the reads that returned
//!   it; `f` is the earliest end and `s` the latest start in the cluster. The history is
//!   linearizable iff no read ends before its value's write began, and no two clusters `u`, `v`
//!   have `f(u) < s(v)` and `f(v) < s(u)` (each has an operation that wholly precedes one of the
//!   other, so neither can come first). The initial value's write is at minus infinity. The
//!   final reads, taken after every node finished, make a lost acknowledged write visible as
//!   such a pair.
//! - [`check_namespace`]: every node's final listing must be equal, self-consistent (link
//!   counts match the names), and, per path, the acknowledged operations must have an order,
//!   consistent with real time, in which each result is possible and that ends in the listing
//!   (a Wing-Gong search on one boolean per path: present or absent).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::Deserialize;

/// Nothing earlier: the initial value's write.
const MINUS_INF: i128 = i128::MIN / 4;
/// Never ended: a write that failed may or may not have taken effect.
const PLUS_INF: i128 = i128::MAX / 4;

/// A clock measurement of one node against node 1 (`MXFS-CLOCK` lines).
#[derive(Clone, Debug, Deserialize)]
pub struct ClockLine {
    /// Node id.
    pub n: u32,
    /// Node 1's TSC minus this node's TSC, ticks.
    pub off: i64,
    /// Error bound of `off` (half the best round trip), ticks.
    pub err: u64,
    /// `start` or `end` of the file-system phase.
    #[serde(default)]
    pub at: String,
}

/// Offsets per node from the `start` measurements, and the error bound to use: twice the worst
/// node's error (two nodes' times are compared), plus any drift between start and end.
pub fn clock_offsets(lines: &[ClockLine]) -> Result<(HashMap<u32, i64>, i128, String), String> {
    let mut start: HashMap<u32, &ClockLine> = HashMap::new();
    let mut end: HashMap<u32, &ClockLine> = HashMap::new();
    for l in lines {
        if l.at == "end" {
            end.insert(l.n, l);
        } else {
            start.insert(l.n, l);
        }
    }
    if start.is_empty() {
        return Err("no clock measurements (MXFS-CLOCK lines)".into());
    }
    let mut worst_err: i128 = 0;
    let mut worst_drift: i128 = 0;
    for (n, s) in &start {
        worst_err = worst_err.max(s.err as i128);
        if let Some(e) = end.get(n) {
            worst_drift = worst_drift.max((e.off as i128 - s.off as i128).abs());
        }
    }
    let eps = 2 * worst_err + worst_drift;
    let mut offs: Vec<_> = start.iter().map(|(n, s)| (*n, s.off)).collect();
    offs.sort();
    let desc = format!(
        "offsets to node 1 {:?} ticks, error <= {worst_err}, drift start->end {worst_drift}",
        offs
    );
    Ok((offs.into_iter().collect(), eps, desc))
}

/// One data operation (`MXFS-DATA` lines).
#[derive(Clone, Debug, Deserialize)]
pub struct DataLine {
    /// Node id.
    pub n: u32,
    /// File index.
    pub f: u32,
    /// Block index.
    pub b: u32,
    /// `w` or `r`.
    pub op: String,
    /// `init`, `NODE:SEQ`, or `torn:...` (a read that was no whole stamp).
    pub v: String,
    /// Invocation, own TSC ticks.
    pub s: u64,
    /// Response, own TSC ticks.
    pub e: u64,
    /// errno name if the call failed.
    #[serde(default)]
    pub err: Option<String>,
    /// A final read, taken after every node finished writing.
    #[serde(default)]
    pub fin: bool,
}

/// A data operation on the common clock.
#[derive(Clone, Debug)]
pub struct DataOp {
    /// Node id.
    pub node: u32,
    /// (file, block): the register.
    pub reg: (u32, u32),
    /// A write (else a read).
    pub write: bool,
    /// Value written or read.
    pub value: String,
    /// Invocation on the common clock.
    pub start: i128,
    /// Response on the common clock ([`PLUS_INF`] for a write that failed).
    pub end: i128,
    /// errno name if it failed.
    pub err: Option<String>,
    /// A final read.
    pub fin: bool,
}

/// Converts the lines to the common clock; a node without a clock measurement is an error.
pub fn data_ops(lines: &[DataLine], offs: &HashMap<u32, i64>) -> Result<Vec<DataOp>, String> {
    lines
        .iter()
        .map(|l| {
            let off = *offs
                .get(&l.n)
                .ok_or_else(|| format!("node {} has data operations but no clock offset", l.n))?
                as i128;
            let write = l.op == "w";
            let end = if write && l.err.is_some() {
                PLUS_INF
            } else {
                l.e as i128 + off
            };
            Ok(DataOp {
                node: l.n,
                reg: (l.f, l.b),
                write,
                value: l.v.clone(),
                start: l.s as i128 + off,
                end,
                err: l.err.clone(),
                fin: l.fin,
            })
        })
        .collect()
}

fn op_str(o: &DataOp, t0: i128, ticks_per_ms: f64) -> String {
    let ms = |t: i128| {
        if t >= PLUS_INF {
            "never".to_string()
        } else if t <= MINUS_INF {
            "-inf".to_string()
        } else {
            format!("{:.3}", (t - t0) as f64 / ticks_per_ms)
        }
    };
    format!(
        "{}{} {} by node {} [{} .. {} ms]",
        if o.fin { "final " } else { "" },
        if o.write { "write" } else { "read" },
        o.value,
        o.node,
        ms(o.start),
        ms(o.end)
    )
}

/// A value's cluster: the value, its earliest end and latest start with their operations.
type Zone<'a> = (&'a str, (i128, &'a DataOp), (i128, &'a DataOp));

/// What [`check_registers`] found.
#[derive(Debug, Default)]
pub struct DataReport {
    /// Registers (blocks) seen.
    pub registers: usize,
    /// Writes and reads checked.
    pub writes: usize,
    /// Reads checked (final reads included).
    pub reads: usize,
    /// Final reads.
    pub final_reads: usize,
    /// Violations, in words naming the operations.
    pub violations: Vec<String>,
}

/// Judges every block's history as a linearizable register (see the module docs). `eps` is the
/// clock error bound in ticks; `ticks_per_ms` only formats the messages.
pub fn check_registers(ops: &[DataOp], eps: i128, ticks_per_ms: f64) -> DataReport {
    let mut r = DataReport::default();
    let t0 = ops
        .iter()
        .map(|o| o.start)
        .min()
        .unwrap_or(0)
        .max(MINUS_INF + 1);
    let mut regs: BTreeMap<(u32, u32), Vec<&DataOp>> = BTreeMap::new();
    for o in ops {
        regs.entry(o.reg).or_default().push(o);
    }
    r.registers = regs.len();
    let init = DataOp {
        node: 0,
        reg: (0, 0),
        write: true,
        value: "init".into(),
        start: MINUS_INF,
        end: MINUS_INF,
        err: None,
        fin: false,
    };
    for ((file, block), rops) in regs {
        let name = format!("file {file} block {block}");
        // value -> (write, reads)
        let mut clusters: BTreeMap<&str, (Option<&DataOp>, Vec<&DataOp>)> = BTreeMap::new();
        clusters.insert("init", (Some(&init), Vec::new()));
        for o in &rops {
            if let Some(e) = &o.err {
                r.violations.push(format!(
                    "{name}: {} failed with {e}",
                    op_str(o, t0, ticks_per_ms)
                ));
            }
            if o.write {
                r.writes += 1;
                let c = clusters.entry(o.value.as_str()).or_default();
                if c.0.is_some() {
                    r.violations.push(format!(
                        "{name}: value {} written twice (values must be unique)",
                        o.value
                    ));
                }
                c.0 = Some(o);
            } else {
                r.reads += 1;
                if o.fin {
                    r.final_reads += 1;
                }
                if o.err.is_some() {
                    continue;
                }
                if o.value.starts_with("torn") {
                    r.violations.push(format!(
                        "{name}: {} saw a block that is no single write's stamp",
                        op_str(o, t0, ticks_per_ms)
                    ));
                    continue;
                }
                clusters.entry(o.value.as_str()).or_default().1.push(o);
            }
        }
        // Each read's value must have been written, and not only after the read ended.
        let mut zones: Vec<Zone> = Vec::new();
        for (v, (w, reads)) in &clusters {
            let Some(w) = w else {
                for rd in reads {
                    r.violations.push(format!(
                        "{name}: {} returned a value nobody wrote",
                        op_str(rd, t0, ticks_per_ms)
                    ));
                }
                continue;
            };
            for rd in reads {
                if rd.end + eps < w.start {
                    r.violations.push(format!(
                        "{name}: {} ended before its value's {} began",
                        op_str(rd, t0, ticks_per_ms),
                        op_str(w, t0, ticks_per_ms)
                    ));
                }
            }
            let all = std::iter::once(*w).chain(reads.iter().copied());
            let f = all
                .clone()
                .min_by_key(|o| o.end)
                .map(|o| (o.end, o))
                .unwrap();
            let s = all.max_by_key(|o| o.start).map(|o| (o.start, o)).unwrap();
            zones.push((v, f, s));
        }
        // No two clusters that must each come before the other.
        for i in 0..zones.len() {
            for j in i + 1..zones.len() {
                let (u, (fu, fu_op), (su, su_op)) = zones[i];
                let (v, (fv, fv_op), (sv, sv_op)) = zones[j];
                if fu + eps < sv && fv + eps < su {
                    let lost = su_op.fin || sv_op.fin;
                    r.violations.push(format!(
                        "{name}: values {u} and {v} cannot be ordered{}: {} ended before {} began, \
                         and {} ended before {} began",
                        if lost {
                            " (an acknowledged write is lost: a final read returned an older value)"
                        } else {
                            " (stale read)"
                        },
                        op_str(fu_op, t0, ticks_per_ms),
                        op_str(sv_op, t0, ticks_per_ms),
                        op_str(fv_op, t0, ticks_per_ms),
                        op_str(su_op, t0, ticks_per_ms)
                    ));
                }
            }
        }
    }
    r
}

/// One namespace operation (`MXFS-NS` lines): `op` is create, link, unlink, rename, mkdir or
/// rmdir; `a` (and `b` for link and rename) are paths relative to the shared tree; `r` is `ok`
/// or the errno name.
#[derive(Clone, Debug, Deserialize)]
pub struct NsLine {
    /// Node id.
    pub n: u32,
    /// Operation.
    pub op: String,
    /// First path.
    pub a: String,
    /// Second path (link, rename).
    #[serde(default)]
    pub b: Option<String>,
    /// `ok` or errno name.
    pub r: String,
    /// Invocation, own ticks.
    pub s: u64,
    /// Response, own ticks.
    pub e: u64,
}

/// One node's final listing (`MXFS-NSLIST` lines): entries (path, inode, link count, type
/// `f`/`d`/`o`), or the error that stopped the walk.
#[derive(Clone, Debug, Deserialize)]
pub struct NsListing {
    /// Node id.
    pub n: u32,
    /// Entries, sorted by path.
    #[serde(default)]
    pub entries: Vec<(String, u64, u64, String)>,
    /// Why the listing is incomplete.
    #[serde(default)]
    pub error: Option<String>,
    /// Every path the workload can name (the guest's pools of names).
    #[serde(default)]
    pub universe: Vec<String>,
}

/// What one operation means for one path's existence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Was absent, now present (create, mkdir, link target).
    Make,
    /// Was present, now absent (unlink, rmdir, rename source).
    Remove,
    /// Present afterwards, whatever before (rename target).
    Set,
    /// Present at that moment (EEXIST, ENOTEMPTY, a link source).
    Present,
    /// Absent at that moment (ENOENT, the children of a removed directory).
    Absent,
}

/// One operation's effect on one path, on the common clock.
#[derive(Clone, Debug)]
pub struct PathOp {
    /// Invocation.
    pub start: i128,
    /// Response.
    pub end: i128,
    /// Effect.
    pub eff: Effect,
    /// The operation in words.
    pub desc: String,
}

fn apply(state: bool, eff: Effect) -> Option<bool> {
    match (eff, state) {
        (Effect::Make, false) => Some(true),
        (Effect::Remove, true) => Some(false),
        (Effect::Set, _) => Some(true),
        (Effect::Present, true) => Some(true),
        (Effect::Absent, false) => Some(false),
        _ => None,
    }
}

/// Steps the search may take per path before it gives up (reported as a failure).
pub const SEARCH_STEPS_MAX: usize = 2_000_000;

/// Whether some order of `ops` consistent with real time (an op may go next unless another
/// remaining op ended more than `eps` before it began) takes `initial` to `fin`, with every
/// effect's precondition met. `Err` says the search was cut off.
pub fn path_linearizable(
    ops: &[PathOp],
    initial: bool,
    fin: bool,
    eps: i128,
) -> Result<bool, String> {
    let n = ops.len();
    let words = n.div_ceil(64).max(1);
    let mut seen: HashSet<(Vec<u64>, bool)> = HashSet::new();
    let mut stack = vec![(vec![0u64; words], initial, 0usize)];
    let mut steps = 0usize;
    while let Some((done, state, count)) = stack.pop() {
        if count == n {
            if state == fin {
                return Ok(true);
            }
            continue;
        }
        if !seen.insert((done.clone(), state)) {
            continue;
        }
        steps += 1;
        if steps > SEARCH_STEPS_MAX {
            return Err(format!("search gave up after {SEARCH_STEPS_MAX} steps"));
        }
        let is_done = |i: usize| done[i / 64] >> (i % 64) & 1 == 1;
        let min_end = (0..n)
            .filter(|i| !is_done(*i))
            .map(|i| ops[i].end)
            .min()
            .unwrap_or(PLUS_INF);
        for i in 0..n {
            if is_done(i) || ops[i].start > min_end + eps {
                continue;
            }
            if let Some(next) = apply(state, ops[i].eff) {
                let mut d = done.clone();
                d[i / 64] |= 1 << (i % 64);
                stack.push((d, next, count + 1));
            }
        }
    }
    Ok(false)
}

/// What [`check_namespace`] found.
#[derive(Debug, Default)]
pub struct NsReport {
    /// Operations per kind and result, e.g. `create ok` -> 12.
    pub counts: BTreeMap<String, usize>,
    /// Paths judged.
    pub paths: usize,
    /// Entries in node 1's (the first) listing.
    pub entries: usize,
    /// Violations.
    pub violations: Vec<String>,
}

fn parent(p: &str) -> Option<&str> {
    p.rsplit_once('/').map(|(d, _)| d)
}

/// Per-path effects of one operation, or `Err` for a result no correct file system gives here.
fn effects(
    l: &NsLine,
    children: &dyn Fn(&str) -> Vec<String>,
) -> Result<Vec<(String, Effect)>, ()> {
    use Effect::*;
    let a = l.a.clone();
    let b = l.b.clone().unwrap_or_default();
    let r = l.r.as_str();
    let e = match (l.op.as_str(), r) {
        ("create", "ok") | ("mkdir", "ok") => vec![(a, Make)],
        ("create", "EEXIST") | ("mkdir", "EEXIST") => vec![(a, Present)],
        ("create", "ENOENT") => {
            // The parent directory was missing, so the name was too.
            let mut v = vec![(a.clone(), Absent)];
            if let Some(p) = parent(&a) {
                v.push((p.to_string(), Absent));
            }
            v
        }
        ("unlink", "ok") => vec![(a, Remove)],
        ("unlink", "ENOENT") | ("rmdir", "ENOENT") => vec![(a, Absent)],
        ("rmdir", "ok") => {
            let mut v: Vec<_> = children(&a).into_iter().map(|c| (c, Absent)).collect();
            v.push((a, Remove));
            v
        }
        ("rmdir", "ENOTEMPTY") => vec![(a, Present)],
        ("link", "ok") => vec![(a, Present), (b, Make)],
        ("link", "EEXIST") => vec![(b, Present)],
        // Source or target directory missing: either may be the cause.
        ("link", "ENOENT") | ("rename", "ENOENT") => vec![],
        ("rename", "ok") => vec![(a, Remove), (b, Set)],
        _ => return Err(()),
    };
    Ok(e)
}

/// Judges the namespace run (see the module docs). `universe` lists every path the workload
/// can name (directories and files, relative to the shared tree); all start absent.
pub fn check_namespace(
    ops: &[NsLine],
    listings: &[NsListing],
    offs: &HashMap<u32, i64>,
    eps: i128,
    universe: &[String],
    nodes: u32,
) -> NsReport {
    let mut r = NsReport::default();
    for l in ops {
        *r.counts.entry(format!("{} {}", l.op, l.r)).or_default() += 1;
    }
    // Listings: one per node, complete, equal.
    let mut by_node: BTreeMap<u32, &NsListing> = BTreeMap::new();
    for l in listings {
        by_node.insert(l.n, l);
    }
    for n in 1..=nodes {
        match by_node.get(&n) {
            None => r.violations.push(format!("node {n} printed no listing")),
            Some(l) => {
                if let Some(e) = &l.error {
                    r.violations.push(format!("node {n}: listing failed: {e}"));
                }
            }
        }
    }
    let Some(first) = by_node.values().next().copied() else {
        return r;
    };
    r.entries = first.entries.len();
    for l in by_node.values() {
        if l.n == first.n {
            continue;
        }
        let a: BTreeSet<_> = first.entries.iter().collect();
        let b: BTreeSet<_> = l.entries.iter().collect();
        if a != b {
            let only_a: Vec<_> = a.difference(&b).take(3).collect();
            let only_b: Vec<_> = b.difference(&a).take(3).collect();
            r.violations.push(format!(
                "listings differ: node {} has {:?} that node {} lacks; node {} has {:?} that node \
                 {} lacks",
                first.n, only_a, l.n, l.n, only_b, first.n
            ));
        }
    }
    // Link counts must match the names in the listing.
    for l in by_node.values() {
        let mut names: HashMap<u64, usize> = HashMap::new();
        let mut subdirs: HashMap<&str, usize> = HashMap::new();
        for (p, ino, _, t) in &l.entries {
            if t == "d" {
                *subdirs.entry(parent(p).unwrap_or("")).or_default() += 1;
            } else {
                *names.entry(*ino).or_default() += 1;
            }
        }
        for (p, ino, nlink, t) in &l.entries {
            let want = if t == "d" {
                2 + subdirs.get(p.as_str()).copied().unwrap_or(0) as u64
            } else {
                names[ino] as u64
            };
            if *nlink != want {
                r.violations.push(format!(
                    "node {}: {p} (inode {ino}) has link count {nlink}, but the listing implies \
                     {want}",
                    l.n
                ));
            }
        }
        for (p, _, _, _) in &l.entries {
            if !universe.contains(p) {
                r.violations
                    .push(format!("node {}: {p} is a name no operation makes", l.n));
            }
        }
    }
    // Per path: an order of the acknowledged operations that ends in the first listing.
    let present: HashSet<&str> = first.entries.iter().map(|e| e.0.as_str()).collect();
    let children = |d: &str| -> Vec<String> {
        universe
            .iter()
            .filter(|p| parent(p) == Some(d))
            .cloned()
            .collect()
    };
    let mut per_path: BTreeMap<String, Vec<PathOp>> = BTreeMap::new();
    for l in ops {
        let Some(off) = offs.get(&l.n) else {
            r.violations.push(format!(
                "node {} has namespace operations but no clock offset",
                l.n
            ));
            continue;
        };
        let desc = format!(
            "node {} {} {}{} -> {}",
            l.n,
            l.op,
            l.a,
            l.b.as_ref().map(|b| format!(" {b}")).unwrap_or_default(),
            l.r
        );
        match effects(l, &children) {
            Err(()) => r.violations.push(format!("unexpected result: {desc}")),
            Ok(effs) => {
                for (p, eff) in effs {
                    per_path.entry(p).or_default().push(PathOp {
                        start: l.s as i128 + *off as i128,
                        end: l.e as i128 + *off as i128,
                        eff,
                        desc: desc.clone(),
                    });
                }
            }
        }
    }
    r.paths = per_path.len();
    for (p, mut pops) in per_path {
        pops.sort_by_key(|o| o.start);
        let fin = present.contains(p.as_str());
        // The plain cases first, for a message that names the operation.
        let changes: Vec<&PathOp> = pops
            .iter()
            .filter(|o| matches!(o.eff, Effect::Make | Effect::Remove | Effect::Set))
            .collect();
        let last: Vec<&&PathOp> = changes
            .iter()
            .filter(|o| !changes.iter().any(|x| x.start > o.end + eps))
            .collect();
        let makes = last.iter().filter(|o| o.eff != Effect::Remove).count();
        if !last.is_empty() && makes == last.len() && !fin {
            r.violations.push(format!(
                "{p} is missing from the listing, but the last operation on it was: {}",
                last[0].desc
            ));
            continue;
        }
        if !last.is_empty() && makes == 0 && fin {
            r.violations.push(format!(
                "{p} is in the listing, but the last operation on it was: {}",
                last[0].desc
            ));
            continue;
        }
        match path_linearizable(&pops, false, fin, eps) {
            Ok(true) => {}
            Ok(false) => {
                let list: Vec<_> = pops.iter().take(8).map(|o| o.desc.as_str()).collect();
                r.violations.push(format!(
                    "{p}: no order of its {} operations consistent with their times explains \
                     the results and the final {} (first: {})",
                    pops.len(),
                    if fin { "presence" } else { "absence" },
                    list.join("; ")
                ));
            }
            Err(e) => r.violations.push(format!("{p}: {e}")),
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(node: u32, v: &str, s: i128, e: i128) -> DataOp {
        DataOp {
            node,
            reg: (0, 0),
            write: true,
            value: v.into(),
            start: s,
            end: e,
            err: None,
            fin: false,
        }
    }

    fn rd(node: u32, v: &str, s: i128, e: i128) -> DataOp {
        DataOp {
            write: false,
            ..w(node, v, s, e)
        }
    }

    fn fin(mut o: DataOp) -> DataOp {
        o.fin = true;
        o
    }

    fn violations(ops: &[DataOp]) -> Vec<String> {
        check_registers(ops, 0, 1.0).violations
    }

    #[test]
    fn sequential_and_concurrent_histories_pass() {
        // Sequential: init read, write a, read a, write b, read b.
        let h = [
            rd(1, "init", 0, 1),
            w(1, "1:1", 2, 3),
            rd(2, "1:1", 4, 5),
            w(2, "2:1", 6, 7),
            rd(3, "2:1", 8, 9),
            fin(rd(1, "2:1", 20, 21)),
        ];
        assert!(violations(&h).is_empty(), "{:?}", violations(&h));
        // A read concurrent with a write may see either value.
        for v in ["1:1", "2:1"] {
            let h = [w(1, "1:1", 0, 1), w(2, "2:1", 2, 10), rd(3, v, 3, 4)];
            assert!(violations(&h).is_empty(), "{v}: {:?}", violations(&h));
        }
        // Two concurrent writes: the final value may be either.
        for v in ["1:1", "2:1"] {
            let h = [w(1, "1:1", 0, 10), w(2, "2:1", 1, 9), fin(rd(3, v, 20, 21))];
            assert!(violations(&h).is_empty(), "{v}: {:?}", violations(&h));
        }
    }

    #[test]
    fn stale_read_is_rejected() {
        // b's write wholly follows a's and wholly precedes the read of a.
        let h = [w(1, "1:1", 0, 1), w(2, "2:1", 2, 3), rd(3, "1:1", 4, 5)];
        let v = violations(&h);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("stale read"), "{v:?}");
        // Reading the initial value after a completed write.
        let h = [w(1, "1:1", 0, 1), rd(3, "init", 4, 5)];
        assert!(violations(&h)[0].contains("cannot be ordered"));
    }

    #[test]
    fn new_old_inversion_is_rejected() {
        // Write b is still running; one reader sees b, a later reader sees the older a. No
        // write lies wholly between a's write and the second read, so only the zones catch it.
        let h = [
            w(1, "1:1", 0, 1),
            w(2, "2:1", 2, 100),
            rd(3, "2:1", 3, 4),
            rd(1, "1:1", 5, 6),
        ];
        assert!(!violations(&h).is_empty());
    }

    #[test]
    fn lost_write_read_before_write_torn_and_unknown_are_rejected() {
        let h = [
            w(1, "1:1", 0, 1),
            w(2, "2:1", 2, 3),
            fin(rd(1, "1:1", 10, 11)),
        ];
        let v = violations(&h);
        assert!(v[0].contains("acknowledged write is lost"), "{v:?}");
        let h = [rd(1, "2:1", 0, 1), w(2, "2:1", 5, 6)];
        assert!(violations(&h)[0].contains("ended before its value's"));
        let h = [rd(1, "torn:1:1x64,2:1x64", 0, 1)];
        assert!(violations(&h)[0].contains("no single write's stamp"));
        let h = [rd(1, "9:9", 0, 1)];
        assert!(violations(&h)[0].contains("nobody wrote"));
    }

    #[test]
    fn clock_error_bound_forgives_only_short_reorderings() {
        // The stale read by 1 tick is forgiven with eps 5, not with eps 0; by 50 ticks never.
        let h = [w(1, "1:1", 0, 1), w(2, "2:1", 2, 3), rd(3, "1:1", 4, 5)];
        assert!(check_registers(&h, 5, 1.0).violations.is_empty());
        let h = [w(1, "1:1", 0, 1), w(2, "2:1", 20, 30), rd(3, "1:1", 80, 90)];
        assert!(!check_registers(&h, 5, 1.0).violations.is_empty());
    }

    #[test]
    fn failed_write_may_or_may_not_have_happened_but_is_reported() {
        let mut f = w(2, "2:1", 2, 3);
        f.end = PLUS_INF;
        f.err = Some("EIO".into());
        let h = [w(1, "1:1", 0, 1), f, rd(3, "1:1", 4, 5)];
        let v = violations(&h);
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains("failed with EIO"));
    }

    #[test]
    fn clock_offsets_use_start_and_widen_by_drift() {
        let lines: Vec<ClockLine> = serde_json::from_str(
            r#"[{"n":1,"off":0,"err":0,"at":"start"},{"n":2,"off":1000,"err":7,"at":"start"},
                {"n":2,"off":1003,"err":9,"at":"end"}]"#,
        )
        .unwrap();
        let (offs, eps, _) = clock_offsets(&lines).unwrap();
        assert_eq!(offs[&2], 1000);
        assert_eq!(eps, 2 * 7 + 3);
    }

    fn ns(n: u32, op: &str, a: &str, b: Option<&str>, r: &str, s: u64, e: u64) -> NsLine {
        NsLine {
            n,
            op: op.into(),
            a: a.into(),
            b: b.map(|b| b.into()),
            r: r.into(),
            s,
            e,
        }
    }

    fn listing(n: u32, entries: &[(&str, u64, u64, &str)]) -> NsListing {
        NsListing {
            n,
            entries: entries
                .iter()
                .map(|(p, i, l, t)| (p.to_string(), *i, *l, t.to_string()))
                .collect(),
            error: None,
            universe: Vec::new(),
        }
    }

    fn universe() -> Vec<String> {
        ["d0", "d0/f0", "f0", "f1", "l0"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn offs() -> HashMap<u32, i64> {
        [(1, 0), (2, 0)].into_iter().collect()
    }

    fn ns_check(ops: &[NsLine], ls: &[NsListing]) -> Vec<String> {
        check_namespace(ops, ls, &offs(), 0, &universe(), 2).violations
    }

    #[test]
    fn agreeing_namespace_passes() {
        let ops = [
            ns(1, "create", "f0", None, "ok", 0, 1),
            ns(2, "create", "f0", None, "EEXIST", 2, 3),
            ns(2, "link", "f0", Some("l0"), "ok", 4, 5),
            ns(1, "rename", "f0", Some("f1"), "ok", 6, 7),
            ns(2, "mkdir", "d0", None, "ok", 8, 9),
            ns(1, "create", "d0/f0", None, "ok", 10, 11),
            ns(2, "rmdir", "d0", None, "ENOTEMPTY", 12, 13),
            ns(2, "unlink", "d0/f0", None, "ok", 14, 15),
            ns(1, "rmdir", "d0", None, "ok", 16, 17),
        ];
        let l = [("f1", 5, 2, "f"), ("l0", 5, 2, "f")];
        let v = ns_check(&ops, &[listing(1, &l), listing(2, &l)]);
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn namespace_disagreements_are_rejected() {
        let ops = [
            ns(1, "create", "f0", None, "ok", 0, 1),
            ns(2, "unlink", "f1", None, "ENOENT", 2, 3),
        ];
        // A created, never removed name is missing on both nodes.
        let v = ns_check(&ops, &[listing(1, &[]), listing(2, &[])]);
        assert!(v.iter().any(|v| v.contains("f0 is missing")), "{v:?}");
        // Listings differ (one node corrupted).
        let v = ns_check(
            &ops,
            &[
                listing(1, &[("f0", 5, 1, "f")]),
                listing(2, &[("f0", 6, 1, "f")]),
            ],
        );
        assert!(v.iter().any(|v| v.contains("listings differ")), "{v:?}");
        // Link count that the names do not explain.
        let v = ns_check(
            &ops,
            &[
                listing(1, &[("f0", 5, 2, "f")]),
                listing(2, &[("f0", 5, 2, "f")]),
            ],
        );
        assert!(v.iter().any(|v| v.contains("link count 2")), "{v:?}");
        // A removed name still there.
        let ops = [
            ns(1, "create", "f0", None, "ok", 0, 1),
            ns(2, "unlink", "f0", None, "ok", 2, 3),
        ];
        let l = [("f0", 5, 1, "f")];
        let v = ns_check(&ops, &[listing(1, &l), listing(2, &l)]);
        assert!(
            v.iter().any(|v| v.contains("f0 is in the listing")),
            "{v:?}"
        );
        // Two exclusive creates of one name with no removal between: no order explains both.
        let ops = [
            ns(1, "create", "f0", None, "ok", 0, 1),
            ns(2, "create", "f0", None, "ok", 2, 3),
        ];
        let v = ns_check(&ops, &[listing(1, &l), listing(2, &l)]);
        assert!(v.iter().any(|v| v.contains("no order")), "{v:?}");
        // An error no correct file system returns here.
        let ops = [ns(1, "create", "f0", None, "EIO", 0, 1)];
        let v = ns_check(&ops, &[listing(1, &[]), listing(2, &[])]);
        assert!(v.iter().any(|v| v.contains("unexpected result")), "{v:?}");
        // A node without a listing.
        let v = ns_check(&[], &[listing(1, &[])]);
        assert!(
            v.iter().any(|v| v.contains("node 2 printed no listing")),
            "{v:?}"
        );
    }

    #[test]
    fn concurrent_namespace_operations_may_go_either_way() {
        // Concurrent create and unlink: present or absent are both fine.
        for (r_unlink, fin) in [("ok", false), ("ENOENT", true)] {
            let ops = [
                ns(1, "create", "f0", None, "ok", 0, 10),
                ns(2, "unlink", "f0", None, r_unlink, 1, 9),
            ];
            let l: Vec<_> = if fin { vec![("f0", 5, 1, "f")] } else { vec![] };
            let v = ns_check(&ops, &[listing(1, &l), listing(2, &l)]);
            assert!(v.is_empty(), "{r_unlink}: {v:?}");
        }
    }
}
