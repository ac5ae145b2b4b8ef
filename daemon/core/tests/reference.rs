//! proptest-state-machine: random operation sequences on a 3-node cluster of real cores,
//! judged at every event against a plain, single-master reference lock table.
//!
//! The reference judges with its own, literal DLM compatibility matrix ([`MATRIX`]); it never
//! asks the core (`LockMode::compatible` or anything else) whether two modes conflict. It is
//! fed the kernel-visible outcome (requests, grants, denies, cache invalidations, releases)
//! after every single event, and reads the core's queues only through `dump_master` and
//! `dump_local`. It checks:
//! - **exclusion**: every grant is compatible with every lock the reference knows to be held;
//! - **replies**: every reply answers an outstanding request, at most once; a conversion keeps
//!   its old mode while it waits and when it is denied;
//! - **try-locks**: a try-lock that a held lock blocks is denied; a try-lock issued behind an
//!   earlier waiting (not try-lock) request of its node and resource is answered in the same
//!   batch, never queued;
//! - **versions** ([`Versions`]): after a PW or EX holder ends its write (release, cancel, or
//!   conversion to a non-write mode), a grant to another node of a mode that excludes writers
//!   carries a newer data version and is preceded by that node's `CACHE_INVAL`;
//! - **local fairness**: per node and resource, first requests are granted in the order the
//!   kernel issued them and never while a conversion waits; conversions in the order issued;
//! - **master fairness**: between two snapshots of a master's queues (before and after each
//!   event it handles), no first grant leaves an earlier waiter or any conversion queued, and
//!   no conversion stays queued while no other node's granted mode blocks it;
//! - **quiescence** (network drained): no resource is idle with waiters, no request waits with
//!   nothing blocking it, and no request waits in a wait-for cycle (holders, local queue
//!   order, pending BASTs, master queue order, its node's pending cluster request); the
//!   failure names the chain.
//!
//! Four real core faults this test found (conversions served strictly FIFO on a node, two
//! local conversions blocking each other, a conversion deadlock hidden on a node, a cancelled
//! conversion left queued at the master) are replayed by the tests at the end, which fail on
//! the core before its fix.

use std::collections::{BTreeMap, BTreeSet};

use mxfs_core::sim::Cluster;
use mxfs_core::*;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};

const NODES: u32 = 3;
const RESOURCES: u64 = 3;
/// Cases of the main property: about 9 s in debug on the 2-core machine under load (the
/// whole `cargo test -p mxfs-core` stays near 20 s). `PROPTEST_CASES` overrides it.
const CASES: u32 = 1024;
/// Operation sequences the coverage test runs.
const COVERAGE_SEQUENCES: u32 = 64;

use LockMode::{Cr, Cw, Ex, Nl, Pr, Pw};

/// The six modes, weakest first, written out here.
const MODES: [LockMode; 6] = [Nl, Cr, Cw, Pr, Pw, Ex];

/// The DLM compatibility matrix (Linux `fs/dlm`, VMS), stated literally. Rows and columns in
/// the order of [`MODES`]. The core's own table is never consulted by this test.
#[rustfmt::skip]
const MATRIX: [[bool; 6]; 6] = [
    //          NL     CR     CW     PR     PW     EX
    /* NL */ [ true,  true,  true,  true,  true,  true],
    /* CR */ [ true,  true,  true,  true,  true, false],
    /* CW */ [ true,  true,  true, false, false, false],
    /* PR */ [ true,  true, false,  true, false, false],
    /* PW */ [ true,  true, false, false, false, false],
    /* EX */ [ true, false, false, false, false, false],
];

fn ix(m: LockMode) -> usize {
    match m {
        Nl => 0,
        Cr => 1,
        Cw => 2,
        Pr => 3,
        Pw => 4,
        Ex => 5,
    }
}

/// Whether `a` and `b` may be held at once, by [`MATRIX`].
fn compat(a: LockMode, b: LockMode) -> bool {
    MATRIX[ix(a)][ix(b)]
}

/// Holding `h` lets one have `w`: everything compatible with `h` is compatible with `w`.
fn covers(h: LockMode, w: LockMode) -> bool {
    MODES.iter().all(|x| !compat(h, *x) || compat(w, *x))
}

/// Modes whose holders may have changed data when they stop holding them.
fn is_write(m: LockMode) -> bool {
    matches!(m, Pw | Ex)
}

/// A grant of `m` promises that nobody writes meanwhile (not compatible with PW): CW, PR, PW
/// and EX. Such a grant must find the node's page cache current.
fn excludes_writers(m: LockMode) -> bool {
    !compat(m, Pw)
}

#[test]
fn matrix_is_the_dlm_matrix() {
    for a in MODES {
        assert!(compat(Nl, a) && compat(a, Nl), "NL is compatible with all");
        for b in MODES {
            assert_eq!(compat(a, b), compat(b, a), "symmetric: {a:?} {b:?}");
        }
    }
    let with_ex: Vec<_> = MODES.into_iter().filter(|m| compat(Ex, *m)).collect();
    assert_eq!(with_ex, vec![Nl]);
    let with_pw: Vec<_> = MODES.into_iter().filter(|m| compat(Pw, *m)).collect();
    assert_eq!(with_pw, vec![Nl, Cr]);
    assert!(!compat(Cw, Pr) && compat(Cw, Cw) && compat(Pr, Pr) && compat(Cr, Pw));
    let writer_excluding: Vec<_> = MODES.into_iter().filter(|m| excludes_writers(*m)).collect();
    assert_eq!(writer_excluding, vec![Cw, Pr, Pw, Ex]);
    assert!(covers(Pw, Cw) && covers(Pw, Pr) && !covers(Pr, Cw) && !covers(Cw, Pr));
}

#[derive(Clone, Debug)]
enum Op {
    Request {
        node: NodeId,
        res: u64,
        mode: LockMode,
        noqueue: bool,
        timeout_ms: Option<u32>,
    },
    /// Let time pass (request timeouts fire).
    Advance {
        ms: u64,
    },
    /// Convert the `k`-th (mod count) held, not waiting, request of `node`.
    Convert {
        node: NodeId,
        k: usize,
        mode: LockMode,
        noqueue: bool,
    },
    Release {
        node: NodeId,
        k: usize,
    },
    /// `KernelCancel` of the `k`-th (mod count) outstanding request of `node` (no reply): a
    /// waiting first request is withdrawn; a waiting conversion's request is released.
    Cancel {
        node: NodeId,
        k: usize,
    },
    /// Deliver the `k`-th message in flight (mod count): reorders the network.
    Deliver {
        k: usize,
    },
    /// Drain the network and check quiescence.
    Settle,
}

/// The reference side of proptest-state-machine only generates operations; the plain lock
/// table that judges them lives in [`Sut`] because grants happen when the network says so.
struct Ops;

impl ReferenceStateMachine for Ops {
    type State = ();
    type Transition = Op;

    fn init_state() -> BoxedStrategy<()> {
        Just(()).boxed()
    }

    fn transitions(_: &()) -> BoxedStrategy<Op> {
        let mode = proptest::sample::select(MODES.to_vec());
        prop_oneof![
            3 => (
                0..NODES,
                0..RESOURCES,
                mode.clone(),
                proptest::bool::weighted(0.2),
                proptest::option::weighted(0.3, 1..100u32)
            )
                .prop_map(|(node, res, mode, noqueue, timeout_ms)| Op::Request {
                    node,
                    res,
                    mode,
                    noqueue,
                    timeout_ms
                }),
            1 => (0..60u64).prop_map(|ms| Op::Advance { ms }),
            2 => (0..NODES, 0..4usize, mode, proptest::bool::weighted(0.15))
                .prop_map(|(node, k, mode, noqueue)| Op::Convert { node, k, mode, noqueue }),
            3 => (0..NODES, 0..4usize).prop_map(|(node, k)| Op::Release { node, k }),
            1 => (0..NODES, 0..4usize).prop_map(|(node, k)| Op::Cancel { node, k }),
            4 => (0..64usize).prop_map(|k| Op::Deliver { k }),
            1 => Just(Op::Settle),
        ]
        .boxed()
    }

    fn apply(state: (), _: &Op) {
        state
    }
}

/// An outstanding kernel request, as the reference sees it.
#[derive(Clone, Debug)]
struct Wait {
    res: u64,
    mode: LockMode,
    noqueue: bool,
    convert: bool,
    /// A timeout timer bounds the wait.
    timed: bool,
    /// When the kernel issued it (a counter over all requests and conversions).
    order: u64,
}

/// The plain reference lock table: one global map of held locks and outstanding requests.
#[derive(Clone, Default, Debug)]
struct Table {
    /// (node, req) -> (resource, mode)
    held: BTreeMap<(NodeId, ReqId), (u64, LockMode)>,
    /// (node, req) -> outstanding request (a conversion's old mode stays in `held`)
    waiting: BTreeMap<(NodeId, ReqId), Wait>,
    /// Held requests the kernel was sent a `LOCK_CALLBACK` for, with the mode it may keep
    /// (until it releases or converts).
    called: BTreeMap<(NodeId, ReqId), LockMode>,
}

impl Table {
    fn compatible_with_held(&self, who: (NodeId, ReqId), res: u64, mode: LockMode) -> bool {
        self.held
            .iter()
            .all(|(k, (r, m))| *k == who || *r != res || compat(*m, mode))
    }

    /// Whether `a` is ahead of `b` in their node's local queue (same node and resource):
    /// conversions before first requests, first requests FIFO in issue order. Conversions are
    /// not ordered among themselves: one that nothing blocks is granted at once (the DLM's
    /// rule 6-3), whatever waits beside it.
    fn ahead(a: &Wait, b: &Wait) -> bool {
        if a.convert != b.convert {
            return a.convert;
        }
        !a.convert && a.order < b.order
    }

    /// Outstanding requests of `node` on `res` ahead of `w` in the local queue.
    fn ahead_of(&self, node: NodeId, req: ReqId, w: &Wait) -> Vec<(NodeId, ReqId)> {
        self.waiting
            .iter()
            .filter(|((n, q), o)| *n == node && *q != req && o.res == w.res && Self::ahead(o, w))
            .map(|(k, _)| *k)
            .collect()
    }
}

/// The data-version oracle's ground truth, independent of the core's `Version`s.
///
/// `truth[r]` counts the write generations of `r`: it goes up by one whenever a kernel stops
/// holding PW or EX on `r` (release, cancel of a granted request, or a conversion to a
/// non-write mode). `cache[(n, r)]` is the generation node `n`'s page cache shows: set to the
/// truth by `n`'s `CACHE_INVAL` for `r` (the pages are re-read) and by `n`'s own write end (its
/// pages are the newest). A grant to `n` of a mode that excludes writers must find
/// `cache[(n, r)] == truth[r]`.
///
/// "Newer version", stated with the core's `Version` (totally ordered by `(epoch, counter)`;
/// within one epoch a master's counter only grows): when a write of node `w` on `r` ends, the
/// version the master of `r` has for it just before that event becomes `floor[(n, r)]` for
/// every other node `n`. `n`'s next writer-excluding grant on `r` must leave `n` caching (read
/// with `dump_local` after the event that delivered the grant) a version strictly above that
/// floor: the master issued it after the write ended. The proptest has no membership change,
/// so the epoch is constant and the order is the counter's.
#[derive(Clone, Default, Debug)]
struct Versions {
    truth: BTreeMap<u64, u64>,
    cache: BTreeMap<(NodeId, u64), u64>,
    floor: BTreeMap<(NodeId, u64), Version>,
    /// Writer-excluding grants checked against a floor (coverage of the check itself).
    floor_checks: u64,
}

/// What the generated sequences exercised, for the coverage test.
#[derive(Clone, Default, Debug)]
struct Seen {
    /// `(kind, mode)`: "request", "convert", "request granted", "convert granted".
    modes: BTreeSet<(&'static str, usize)>,
    version_floor_checks: u64,
    master_first_grants_with_queue: u64,
    quiescence_waiters: u64,
    callbacks_checked: u64,
}

#[derive(Clone)]
struct Sut {
    c: Cluster,
    t: Table,
    v: Versions,
    next_req: ReqId,
    next_order: u64,
    /// Each node's master queues before the event being handled.
    pre: Vec<Vec<ResourceDump>>,
    seen: Seen,
}

/// A request of a node's kernel.
type Key = (NodeId, ReqId);
/// The wait-for graph at quiescence: each waiter and what it waits for, with the reason.
type WaitFor = BTreeMap<Key, Vec<(Key, &'static str)>>;

fn rid(res: u64) -> ResourceId {
    ResourceId::inode(1, res)
}

fn entry_is(e: &QueueEntry, f: &QueueEntry) -> bool {
    e.node == f.node && e.seq == f.seq
}

impl Sut {
    fn new() -> Sut {
        Sut {
            c: Cluster::new(NODES),
            t: Table::default(),
            v: Versions::default(),
            next_req: 1,
            next_order: 0,
            pre: Vec::new(),
            seen: Seen::default(),
        }
    }

    fn master_dumps(&self) -> Vec<Vec<ResourceDump>> {
        (0..NODES).map(|n| self.c.core(n).dump_master()).collect()
    }

    /// The version `res`'s master has for it, in the snapshot taken before the current event.
    fn pre_version(&self, res: u64) -> Option<Version> {
        self.pre
            .iter()
            .flatten()
            .find(|d| d.resource == rid(res))
            .map(|d| d.version)
    }

    /// Feeds `ev` to `node`, then judges its master queues and every kernel message it emitted.
    fn ev(&mut self, node: NodeId, ev: Event) -> Result<(), Reject> {
        self.pre = self.master_dumps();
        let r = self.c.event(node, ev);
        let after = self.c.core(node).dump_master();
        self.check_master_fairness(node, &after);
        self.judge();
        r
    }

    /// Master fairness between the queues before and after one event on `master`: no first
    /// grant overtakes a queued request, and no conversion stays queued while no other node's
    /// granted mode blocks it (by the literal matrix).
    fn check_master_fairness(&mut self, master: NodeId, after: &[ResourceDump]) {
        let empty = Vec::new();
        for a in after {
            for c in &a.converting {
                assert!(
                    a.granted
                        .iter()
                        .any(|g| g.node != c.node && !compat(g.mode, c.mode)),
                    "master n{master} on {:?}: the conversion of n{} seq {} to {:?} stays queued with nothing blocking it (granted {:?})",
                    a.resource, c.node, c.seq, c.mode, a.granted
                );
            }
            let b = self.pre[master as usize]
                .iter()
                .find(|d| d.resource == a.resource);
            let (bg, bc, bw) = match b {
                Some(b) => (&b.granted, &b.converting, &b.waiting),
                None => (&empty, &empty, &empty),
            };
            let still_waiting = |e: &QueueEntry| a.waiting.iter().any(|f| entry_is(e, f));
            let still_converting = |e: &QueueEntry| a.converting.iter().any(|f| entry_is(e, f));
            for g in &a.granted {
                if !bg.iter().any(|p| p.node == g.node) {
                    // A first grant: nothing queued ahead of it may stay queued.
                    // By node: the node may also have converted further within the
                    // event (its own grant loops back on the master's node).
                    let ahead = match bw.iter().position(|e| e.node == g.node) {
                        Some(i) => &bw[..i],
                        None => &bw[..],
                    };
                    if !ahead.is_empty() || !bc.is_empty() {
                        self.seen.master_first_grants_with_queue += 1;
                    }
                    if let Some(e) = ahead.iter().find(|e| still_waiting(e)) {
                        panic!(
                            "master n{master} on {:?}: granted n{} seq {} {:?} while n{} seq {} {:?}, queued ahead of it, still waits (before: waiting {bw:?}; after: granted {:?} waiting {:?})",
                            a.resource, g.node, g.seq, g.mode, e.node, e.seq, e.mode, a.granted, a.waiting
                        );
                    }
                    if let Some(e) = bc.iter().find(|e| still_converting(e)) {
                        panic!(
                            "master n{master} on {:?}: granted n{} seq {} {:?} while the conversion of n{} seq {} to {:?} still waits (conversions go first)",
                            a.resource, g.node, g.seq, g.mode, e.node, e.seq, e.mode
                        );
                    }
                }
            }
        }
    }

    /// A kernel's write on `res` ends now (before the event that ends it is handled, or, for a
    /// conversion, at its grant: the master's version in `pre` is the one before the event).
    fn write_ends(&mut self, node: NodeId, res: u64) {
        let t = self.v.truth.entry(res).or_default();
        *t += 1;
        let t = *t;
        self.v.cache.insert((node, res), t);
        let floor = self
            .pre_version(res)
            .expect("a resource held in a write mode has a master entry");
        for n in (0..NODES).filter(|n| *n != node) {
            let f = self.v.floor.entry((n, res)).or_insert(floor);
            *f = (*f).max(floor);
        }
    }

    /// Checks a grant of writer-excluding `mode` on `res` to `node` against the version oracle.
    fn check_version(&mut self, node: NodeId, req_id: ReqId, res: u64, mode: LockMode) {
        let truth = self.v.truth.get(&res).copied().unwrap_or(0);
        let cache = self.v.cache.get(&(node, res)).copied().unwrap_or(0);
        assert_eq!(
            cache, truth,
            "grant of {mode:?} to n{node} req {req_id} on {res}: its page cache shows write generation {cache}, the data is at {truth}: no CACHE_INVAL since a write ended elsewhere"
        );
        if let Some(floor) = self.v.floor.get(&(node, res)).copied() {
            self.v.floor_checks += 1;
            let cached = self
                .c
                .core(node)
                .dump_local()
                .into_iter()
                .find(|d| d.resource == rid(res))
                .and_then(|d| d.version);
            assert!(
                cached.is_some_and(|v| v > floor),
                "grant of {mode:?} to n{node} req {req_id} on {res} carries version {cached:?}, not newer than {floor:?}, the master's version when another node's write ended"
            );
        }
    }

    /// Feeds every new kernel message to the reference table, checking each.
    fn judge(&mut self) {
        for (node, k) in std::mem::take(&mut self.c.kernel_log) {
            match k {
                KernelMsg::CacheInval {
                    resource,
                    volume,
                    ino,
                    offset,
                    len,
                } => {
                    assert_eq!((volume, offset, len), (1, 0, 0), "INODE inval: whole inode");
                    assert_eq!(resource, ResourceId::inode(volume, ino));
                    let truth = self.v.truth.get(&ino).copied().unwrap_or(0);
                    self.v.cache.insert((node, ino), truth);
                }
                KernelMsg::Grant {
                    req_id,
                    resource,
                    mode,
                    ..
                } => {
                    let key = (node, req_id);
                    let w = self.t.waiting.remove(&key).unwrap_or_else(|| {
                        panic!("grant of n{node} req {req_id} that is not outstanding")
                    });
                    let res = w.res;
                    assert_eq!(rid(res), resource);
                    assert_eq!(w.mode, mode);
                    assert!(
                        self.t.compatible_with_held(key, res, mode),
                        "grant of {mode:?} to n{node} req {req_id} on {res} conflicts with {:?}",
                        self.t.held
                    );
                    let earlier = self.t.ahead_of(node, req_id, &w);
                    assert!(
                        earlier.is_empty(),
                        "n{node} granted req {req_id} ({mode:?}{}) on {res} while {earlier:?}, ahead of it in the local queue (FIFO, conversions first), still wait: {:?}",
                        if w.convert { ", conversion" } else { "" },
                        earlier.iter().map(|k| &self.t.waiting[k]).collect::<Vec<_>>()
                    );
                    let kind = if w.convert {
                        "convert granted"
                    } else {
                        "request granted"
                    };
                    self.seen.modes.insert((kind, ix(mode)));
                    let old = self.t.held.insert(key, (res, mode));
                    self.t.called.remove(&key);
                    if let Some((_, old)) = old {
                        if is_write(old) && !is_write(mode) {
                            self.write_ends(node, res);
                        }
                    }
                    if excludes_writers(mode) {
                        self.check_version(node, req_id, res, mode);
                    }
                }
                KernelMsg::Callback {
                    req_id,
                    resource,
                    mode,
                } => {
                    let key = (node, req_id);
                    let (res, held) = *self.t.held.get(&key).unwrap_or_else(|| {
                        panic!("callback for n{node} req {req_id}, which the kernel does not hold")
                    });
                    assert_eq!(rid(res), resource);
                    assert!(
                        covers(held, mode) && mode != held && mode != Ex,
                        "callback of n{node} req {req_id} ({held:?}) may keep {mode:?}"
                    );
                    // Called again only to keep less.
                    let before = self.t.called.insert(key, mode);
                    assert!(
                        before.is_none_or(|b| b != mode && covers(b, mode)),
                        "n{node} req {req_id} called back to keep {mode:?} after {before:?}"
                    );
                }
                KernelMsg::Deny { req_id, errno, .. } => {
                    let key = (node, req_id);
                    assert!(
                        self.t.waiting.remove(&key).is_some(),
                        "deny of n{node} req {req_id} not outstanding"
                    );
                    assert!(errno < 0);
                }
                _ => {}
            }
        }
    }

    /// Delivers every message in flight, in order, through [`Sut::ev`].
    fn settle(&mut self) {
        let mut limit = 1_000_000usize;
        while let Some((from, to, msg)) = self.c.net.pop_front() {
            limit = limit.checked_sub(1).expect("cluster does not settle");
            let _ = self.ev(to, Event::Peer { from, msg });
        }
        assert!(self.c.fences.is_empty(), "no node is lost in this test");
    }

    /// Advances time to `now_ms`, firing due timers in deadline order through [`Sut::ev`].
    fn advance(&mut self, now_ms: u64) {
        self.c.now_ms = now_ms;
        while let Some((node, id)) = self.c.pop_due_timer() {
            let _ = self.ev(node, Event::Timer { id });
        }
    }

    /// Requests `node`'s kernel holds and does not convert, in request order.
    fn idle_holders(&self, node: NodeId) -> Vec<ReqId> {
        self.t
            .held
            .keys()
            .filter(|(n, r)| *n == node && !self.t.waiting.contains_key(&(*n, *r)))
            .map(|(_, r)| *r)
            .collect()
    }

    /// A kernel stops holding `key` (release or cancel of a granted request).
    fn stops_holding(&mut self, key: (NodeId, ReqId)) -> u64 {
        let (res, mode) = self.t.held.remove(&key).expect("held");
        self.t.called.remove(&key);
        if is_write(mode) {
            self.pre = self.master_dumps();
            self.write_ends(key.0, res);
        }
        res
    }

    /// Quiescence: every waiter is blocked by something that can end, and by no cycle.
    fn check_quiescence(&mut self) {
        self.check_callbacks();
        // Every resource with a waiter has a held lock blocking a waiter, or a waiter whose
        // own node's kernel holds the resource (a pending BAST stops new local holders until
        // the local ones leave, as GFS2's demote does).
        for res in 0..RESOURCES {
            let waiters: Vec<_> = self
                .t
                .waiting
                .iter()
                .filter(|(_, w)| w.res == res)
                .collect();
            if waiters.is_empty() {
                continue;
            }
            let node_holds = |n: NodeId| {
                self.t
                    .held
                    .iter()
                    .any(|((hn, _), (r, _))| *hn == n && *r == res)
            };
            let blocked = waiters.iter().any(|(key, w)| {
                !self.t.compatible_with_held(**key, res, w.mode) || node_holds(key.0)
            });
            assert!(
                blocked,
                "resource {res} idle with waiters {waiters:?}, held {:?}",
                self.t.held
            );
        }
        self.check_wait_for();
    }

    /// Kernels cache their locks (DESIGN.md §5.2), so a holder that another node waits for
    /// must have been called back: every kernel holder whose mode blocks a conversion queued
    /// at a master, or the head of a master's wait queue, got a `LOCK_CALLBACK` whose kept
    /// mode no longer blocks it.
    fn check_callbacks(&mut self) {
        for d in (0..NODES).flat_map(|n| self.c.core(n).dump_master()) {
            let blocked = d.converting.iter().chain(d.waiting.first());
            for e in blocked {
                for (h, (r, m)) in &self.t.held {
                    if h.0 == e.node || rid(*r) != d.resource || compat(*m, e.mode) {
                        continue;
                    }
                    self.seen.callbacks_checked += 1;
                    let keep = self.t.called.get(h);
                    assert!(
                        keep.is_some_and(|k| compat(*k, e.mode)),
                        "at quiescence n{} req {} holds {m:?} on {r}, blocking n{}'s {:?} at the master, and was called back with {keep:?}",
                        h.0,
                        h.1,
                        e.node,
                        e.mode
                    );
                }
            }
        }
    }

    /// What `key` waits for at quiescence, each with the reason.
    fn blockers(&self, key: (NodeId, ReqId), w: &Wait) -> Vec<((NodeId, ReqId), &'static str)> {
        let (node, req) = key;
        let mut out = Vec::new();
        // 1. Held locks its mode conflicts with (by the literal matrix).
        for (h, (r, m)) in &self.t.held {
            if *h != key && *r == w.res && !compat(*m, w.mode) {
                out.push((*h, "holds a conflicting mode"));
            }
        }
        // 2. Requests ahead of it in its node's local queue.
        for k in self.t.ahead_of(node, req, w) {
            out.push((k, "is ahead in the local queue"));
        }
        // 3. A pending BAST holds first requests back until the node's holders leave.
        let local = self
            .c
            .core(node)
            .dump_local()
            .into_iter()
            .find(|d| d.resource == rid(w.res));
        if !w.convert && local.as_ref().is_some_and(|l| l.bast_pending) {
            for (h, (r, _)) in &self.t.held {
                if h.0 == node && *r == w.res && *h != key {
                    out.push((*h, "holds the lock a BAST asked for"));
                }
            }
        }
        // 4. The master's queue order: the nodes queued ahead of this node's first request, each
        //    represented by the head of its local queue.
        let dump = (0..NODES)
            .flat_map(|n| self.c.core(n).dump_master())
            .find(|d| d.resource == rid(w.res));
        if let Some(d) = dump {
            // 5. Its node's one cluster request at the master (stop-and-wait; it may be for
            //    another local request) waits for the holders of other nodes it conflicts with.
            let entry = d
                .converting
                .iter()
                .chain(&d.waiting)
                .find(|e| e.node == node);
            if let Some(e) = entry {
                for (h, (r, m)) in &self.t.held {
                    if h.0 != node && *r == w.res && !compat(*m, e.mode) && *h != key {
                        out.push((*h, "blocks its node's cluster request at the master"));
                    }
                }
                // 6. Another node whose cluster lock blocks it keeps that lock for its
                //    conversions the lock already covers (they wait only for that node's own
                //    holders), and for as long as its own cluster request converts at the
                //    master (represented by the head of its local queue).
                for g in &d.granted {
                    if g.node == node || compat(g.mode, e.mode) {
                        continue;
                    }
                    let mine = || {
                        self.t
                            .waiting
                            .iter()
                            .filter(move |((n, _), o)| *n == g.node && o.res == w.res)
                    };
                    for (c, _) in mine().filter(|(_, o)| o.convert && covers(g.mode, o.mode)) {
                        out.push((
                            *c,
                            "converts under its node's cluster lock, which covers it",
                        ));
                    }
                    if d.converting.iter().any(|c| c.node == g.node) {
                        let head = mine().min_by_key(|(_, o)| (!o.convert, o.order));
                        if let Some((k, _)) = head {
                            out.push((*k, "heads a node that converts at the master"));
                        }
                    }
                }
            }
            // A conversion waits only for granted modes (conversions are not ordered among
            // themselves); a first request waits for every conversion and earlier waiter.
            let ahead: Vec<&QueueEntry> = if d.converting.iter().any(|e| e.node == node) {
                Vec::new()
            } else if let Some(i) = d.waiting.iter().position(|e| e.node == node) {
                d.converting.iter().chain(&d.waiting[..i]).collect()
            } else {
                Vec::new()
            };
            for e in ahead {
                let head = self
                    .t
                    .waiting
                    .iter()
                    .filter(|((n, _), o)| *n == e.node && o.res == w.res)
                    .min_by(|a, b| {
                        if Table::ahead(a.1, b.1) {
                            std::cmp::Ordering::Less
                        } else {
                            std::cmp::Ordering::Greater
                        }
                    });
                if let Some((k, _)) = head {
                    out.push((*k, "is queued ahead at the master"));
                }
            }
        }
        out
    }

    /// No waiter has nothing to wait for, and every waiter can be granted once what blocks it
    /// ends: a held lock not itself converting ends (the kernel releases it), a waiter with a
    /// timeout ends, and a waiter ends once all its blockers end. What never ends waits in a
    /// wait-for cycle or behind one; the failure prints that chain.
    fn check_wait_for(&mut self) {
        let mut graph = WaitFor::new();
        for (k, w) in &self.t.waiting {
            let b = self.blockers(*k, w);
            assert!(
                !b.is_empty(),
                "at quiescence n{} req {} waits for {:?} on {} with nothing blocking it (held {:?}, waiting {:?})",
                k.0,
                k.1,
                w.mode,
                w.res,
                self.t.held,
                self.t.waiting
            );
            graph.insert(*k, b);
        }
        self.seen.quiescence_waiters += graph.len() as u64;
        let mut ends: BTreeSet<(NodeId, ReqId)> = BTreeSet::new();
        loop {
            let before = ends.len();
            for (k, b) in &graph {
                if ends.contains(k) {
                    continue;
                }
                let done = self.t.waiting[k].timed
                    || b.iter()
                        .all(|(x, _)| !self.t.waiting.contains_key(x) || ends.contains(x));
                if done {
                    ends.insert(*k);
                }
            }
            if ends.len() == before {
                break;
            }
        }
        let Some(stuck) = graph.keys().find(|k| !ends.contains(k)).copied() else {
            return;
        };
        // Follow blockers that never end until one repeats.
        let mut chain = vec![stuck];
        let mut text = String::new();
        let mut at = stuck;
        loop {
            let w = &self.t.waiting[&at];
            let (next, why) = graph[&at]
                .iter()
                .find(|(x, _)| self.t.waiting.contains_key(x) && !ends.contains(x))
                .copied()
                .expect("a blocker that never ends");
            let held = self.t.held.get(&next).map(|h| h.1);
            text.push_str(&format!(
                "\n  n{} req {} ({}{:?} on {}) waits for n{} req {} (held {:?}, waiting for {:?}), which {why}",
                at.0,
                at.1,
                if w.convert { "conversion to " } else { "" },
                w.mode,
                w.res,
                next.0,
                next.1,
                held,
                self.t.waiting[&next].mode
            ));
            if chain.contains(&next) {
                break;
            }
            chain.push(next);
            at = next;
        }
        panic!("at quiescence a request waits in a wait-for cycle:{text}");
    }
}

impl StateMachineTest for Sut {
    type SystemUnderTest = Sut;
    type Reference = Ops;

    fn init_test(_: &()) -> Sut {
        Sut::new()
    }

    fn apply(mut s: Sut, _: &(), op: Op) -> Sut {
        match op {
            Op::Advance { ms } => {
                let now = s.c.now_ms + ms;
                s.advance(now);
            }
            Op::Request {
                node,
                res,
                mode,
                noqueue,
                timeout_ms,
            } => {
                let req_id = s.next_req;
                s.next_req += 1;
                let mut flags = if noqueue {
                    LockFlags::NOQUEUE
                } else {
                    LockFlags::empty()
                };
                if timeout_ms.is_some() {
                    flags = flags.union(LockFlags::TIMEOUT_MS);
                }
                let w = Wait {
                    res,
                    mode,
                    noqueue,
                    convert: false,
                    timed: timeout_ms.is_some() && !noqueue,
                    order: s.next_order,
                };
                s.next_order += 1;
                s.seen.modes.insert(("request", ix(mode)));
                let ev = Event::KernelRequest {
                    req_id,
                    resource: rid(res),
                    mode,
                    flags,
                    timeout_ms: timeout_ms.unwrap_or(0),
                };
                s.issue(node, req_id, w, ev);
            }
            Op::Convert {
                node,
                k,
                mode,
                noqueue,
            } => {
                let mine = s.idle_holders(node);
                if let Some(req_id) = mine.get(k % mine.len().max(1)).copied() {
                    let (res, _) = s.t.held[&(node, req_id)];
                    let mut flags = LockFlags::CONVERT;
                    if noqueue {
                        flags = flags.union(LockFlags::NOQUEUE);
                    }
                    let w = Wait {
                        res,
                        mode,
                        noqueue,
                        convert: true,
                        timed: false,
                        order: s.next_order,
                    };
                    s.next_order += 1;
                    s.seen.modes.insert(("convert", ix(mode)));
                    let ev = Event::KernelRequest {
                        req_id,
                        resource: rid(res),
                        mode,
                        flags,
                        timeout_ms: 0,
                    };
                    // The old mode stays held until the conversion is granted.
                    s.issue(node, req_id, w, ev);
                }
            }
            Op::Release { node, k } => {
                let mine = s.idle_holders(node);
                if let Some(req_id) = mine.get(k % mine.len().max(1)).copied() {
                    let res = s.stops_holding((node, req_id));
                    let ev = Event::KernelRelease {
                        req_id,
                        resource: rid(res),
                    };
                    s.ev(node, ev).expect("release accepted");
                }
            }
            Op::Cancel { node, k } => {
                let mine: Vec<ReqId> =
                    s.t.waiting
                        .iter()
                        .filter(|((n, _), _)| *n == node)
                        .map(|((_, r), _)| *r)
                        .collect();
                if let Some(req_id) = mine.get(k % mine.len().max(1)).copied() {
                    // No reply follows: a first request is withdrawn; a conversion's request
                    // is granted, so the cancel acts as its release (see `Event::KernelCancel`).
                    s.t.waiting.remove(&(node, req_id));
                    if s.t.held.contains_key(&(node, req_id)) {
                        s.stops_holding((node, req_id));
                    }
                    s.ev(node, Event::KernelCancel { req_id })
                        .expect("cancel accepted");
                }
            }
            Op::Deliver { k } => {
                if !s.c.net.is_empty() {
                    let i = k % s.c.net.len();
                    let (from, to, msg) = s.c.net.remove(i).expect("in range");
                    let _ = s.ev(to, Event::Peer { from, msg });
                }
            }
            Op::Settle => {
                s.settle();
                s.check_quiescence();
            }
        }
        s.judge();
        s.seen.version_floor_checks = s.v.floor_checks;
        s
    }

    fn check_invariants(s: &Sut, _: &()) {
        for node in 0..NODES {
            s.c.core(node).check_invariants().expect("core invariants");
        }
    }
}

impl Sut {
    /// Issues a kernel request or conversion `w` as `ev` and checks the try-lock rules.
    fn issue(&mut self, node: NodeId, req_id: ReqId, w: Wait, ev: Event) {
        let key = (node, req_id);
        let (res, mode, noqueue) = (w.res, w.mode, w.noqueue);
        let blocked_now = !self.t.compatible_with_held(key, res, mode);
        // Earlier requests of this node that really wait (not try-locks) ahead of it.
        let behind: Vec<_> = self
            .t
            .ahead_of(node, req_id, &w)
            .into_iter()
            .filter(|k| !self.t.waiting[k].noqueue)
            .collect();
        self.t.waiting.insert(key, w);
        let from = self.c.kernel[node as usize].len();
        self.ev(node, ev).expect("request accepted");
        if !noqueue {
            return;
        }
        let first = answer(&self.c.kernel[node as usize][from..], req_id);
        if !behind.is_empty() {
            // A try-lock behind an earlier waiter of its node is answered at once, not queued
            // (granted only if those waiters were granted first, which `judge` checks).
            assert!(
                first.is_some(),
                "try-lock n{node} req {req_id} ({mode:?}) was queued behind {behind:?}"
            );
        }
        if blocked_now && first.is_none() {
            // A try-lock blocked by a held lock cannot be granted: it is denied at once or
            // after one round trip; no network step may change that meanwhile.
            let mut probe = self.c.clone();
            let from = probe.kernel[node as usize].len();
            probe.settle();
            let later = answer(&probe.kernel[node as usize][from..], req_id);
            assert_eq!(
                later,
                Some(false),
                "try-lock of n{node} req {req_id} ({mode:?}) blocked by a held lock was not denied"
            );
        } else if blocked_now {
            assert_eq!(
                first,
                Some(false),
                "try-lock of n{node} req {req_id} ({mode:?}) blocked by a held lock was granted"
            );
        }
    }
}

/// The first reply to `req_id` among `msgs`: `Some(true)` for a grant, `Some(false)` for a deny.
fn answer(msgs: &[KernelMsg], req_id: ReqId) -> Option<bool> {
    msgs.iter().find_map(|k| match k {
        KernelMsg::Grant { req_id: r, .. } if *r == req_id => Some(true),
        KernelMsg::Deny { req_id: r, .. } if *r == req_id => Some(false),
        _ => None,
    })
}

/// [`CASES`], or `PROPTEST_CASES` from the environment for a longer run.
fn cases() -> u32 {
    match std::env::var("PROPTEST_CASES") {
        Ok(_) => ProptestConfig::default().cases,
        Err(_) => CASES,
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn core_matches_reference_lock_table(sequential 1..80 => Sut);
}

/// The generator and the checks are exercised: all six modes are requested, converted to and
/// granted both ways, and the version, master fairness and quiescence checks judge something.
#[test]
fn operations_cover_all_six_modes_and_every_check() {
    let mut runner = TestRunner::deterministic();
    let ops = proptest::collection::vec(Ops::transitions(&()), 1..80);
    let mut seen = Seen::default();
    for _ in 0..COVERAGE_SEQUENCES {
        let seq = ops.new_tree(&mut runner).expect("strategy").current();
        let mut s = Sut::new();
        for op in seq {
            s = <Sut as StateMachineTest>::apply(s, &(), op);
        }
        s = <Sut as StateMachineTest>::apply(s, &(), Op::Settle);
        seen.modes.extend(s.seen.modes);
        seen.version_floor_checks += s.seen.version_floor_checks;
        seen.master_first_grants_with_queue += s.seen.master_first_grants_with_queue;
        seen.quiescence_waiters += s.seen.quiescence_waiters;
        seen.callbacks_checked += s.seen.callbacks_checked;
    }
    for kind in ["request", "convert", "request granted", "convert granted"] {
        for m in MODES {
            assert!(
                seen.modes.contains(&(kind, ix(m))),
                "no {kind} of {m:?} in {COVERAGE_SEQUENCES} sequences: {seen:?}"
            );
        }
    }
    assert!(seen.version_floor_checks > 0, "{seen:?}");
    assert!(seen.master_first_grants_with_queue > 0, "{seen:?}");
    assert!(seen.quiescence_waiters > 0, "{seen:?}");
    assert!(seen.callbacks_checked > 0, "{seen:?}");
}

/// Replays a fixed operation list (a shrunk proptest counterexample) with tracing on.
fn replay(ops: Vec<Op>) {
    let mut s = <Sut as StateMachineTest>::init_test(&());
    s.c.tracing = true;
    for op in ops {
        let before = s.clone();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let t = <Sut as StateMachineTest>::apply(before.clone(), &(), op.clone());
            <Sut as StateMachineTest>::check_invariants(&t, &());
            t
        }));
        match r {
            Ok(t) => s = t,
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let mut t = before;
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let _ = <Sut as StateMachineTest>::apply(t.clone(), &(), op.clone());
                }));
                // Re-run the failing step without the checks to show what it did.
                t.c.settle();
                panic!("{op:?} failed: {msg}; trace:\n{}", t.c.trace);
            }
        }
    }
}

#[test]
fn replay_convert_then_down_convert_on_bast() {
    let req = |node, res, mode| Op::Request {
        node,
        res,
        mode,
        noqueue: false,
        timeout_ms: None,
    };
    replay(vec![
        req(0, 2, Nl),
        req(0, 0, Nl),
        req(0, 2, Nl),
        req(2, 1, Pr),
        Op::Deliver { k: 20 },
        req(0, 1, Cw),
        Op::Deliver { k: 46 },
        req(0, 0, Nl),
        Op::Convert {
            node: 2,
            k: 0,
            mode: Cw,
            noqueue: false,
        },
        Op::Settle,
    ]);
}

fn req(node: NodeId, res: u64, mode: LockMode) -> Op {
    Op::Request {
        node,
        res,
        mode,
        noqueue: false,
        timeout_ms: None,
    }
}

fn convert(node: NodeId, k: usize, mode: LockMode) -> Op {
    Op::Convert {
        node,
        k,
        mode,
        noqueue: false,
    }
}

/// Real core bug (found by this proptest's wait-for check): n1's kernel holds req 1 in PR and
/// req 2 in NL. req 2 converts to CW, which req 1's PR blocks; then req 1 converts down to NL.
/// The node served its conversions strictly FIFO, so the down-conversion (which the DLM
/// grants at once, and which would unblock req 2) waited behind req 2, and req 2 waited for
/// req 1: neither was ever answered. Fixed: a conversion is granted wherever it stands in
/// the local queue.
#[test]
fn local_conversion_cycle_is_a_deadlock() {
    replay(vec![
        req(1, 1, Pr),
        req(1, 1, Nl),
        convert(1, 1, Cw),
        convert(1, 0, Nl),
        Op::Settle,
    ]);
}

/// Real core bug (found by this proptest once `Op::Cancel` could hit a conversion): n1's
/// kernel cancels req 1 while its conversion NL -> CW waits at the master behind n0's PR.
/// The cancel releases req 1 locally, but the `Lock CW` stays in the master's convert queue,
/// and n2's NL request (compatible with everything) waits behind it for as long as n0 holds
/// PR. The quiescence check finds n2 waiting on a resource where no held lock blocks any
/// waiter (the wait-for check would name the same: nothing blocks n2 but a lock nobody wants).
/// Fixed: a release or cancel of a converting request withdraws its `Lock` with a `Cancel`.
#[test]
fn cancelled_conversion_leaves_no_lock_queued() {
    replay(vec![
        req(1, 0, Nl),
        req(0, 0, Nl),
        Op::Deliver { k: 0 },
        req(0, 0, Nl),
        Op::Deliver { k: 0 },
        convert(0, 0, Pr),
        Op::Deliver { k: 0 },
        req(0, 0, Nl),
        convert(1, 0, Cw),
        req(2, 0, Nl),
        Op::Cancel { node: 1, k: 0 },
        Op::Settle,
    ]);
}

/// Real core bug (found by this proptest's wait-for check): n2's kernel holds req 1 in CW,
/// n1's holds req 2 in CR and converts it to PR (queued at the master behind n2's CW). n2's
/// kernel takes req 4 in CR and converts req 1 to EX, which its own req 4 blocks, so the
/// conversion stays on n2 and the master never sees the conversion deadlock (n1 PR waits for
/// n2's CW, n2 EX for n1's CR); n0's NL waits behind it all. The DLM denies one conversion
/// with -EDEADLK at once; here it lasted as long as n2's kernel held req 4. Fixed: a
/// conversion the node's lock does not cover asks the master at once, even while a local
/// holder blocks it, and the master denies the newer of the two conversions.
#[test]
fn conversion_held_back_by_own_holder_deadlocks() {
    replay(vec![
        req(2, 0, Cw),
        Op::Settle,
        req(1, 0, Cr),
        convert(1, 0, Pr),
        req(0, 0, Nl),
        req(2, 0, Cr),
        convert(2, 0, Ex),
        Op::Settle,
    ]);
}

/// Core weakness (found by this proptest's wait-for check): n0 and n2 hold CW, n1 holds NL.
/// n1 converts to PR, then n2 converts to PR; both conversions queue at the master, each
/// blocked by the other's mode (n2 behind n1 in FIFO, n1 by n2's CW). The master does not
/// deny either while n0's CW (not converting) also blocks n1, so both wait until n0's kernel
/// releases; the Linux DLM's pairwise check would deny one with -EDEADLK at once. Fixed:
/// the master grants any conversion nothing blocks (n2's, once n0 leaves) and denies a
/// conversion only when it is on a wait-for cycle of conversions.
#[test]
fn conversion_deadlock_waits_for_a_third_holder() {
    replay(vec![
        req(2, 1, Cw),
        req(0, 1, Cw),
        req(1, 1, Nl),
        Op::Settle,
        convert(1, 0, Pr),
        convert(2, 0, Pr),
        Op::Settle,
    ]);
}

/// Found by the stale-early-cancel invariant: n1's try-lock is denied, its kernel cancels
/// it, and the network delivers n1's next `Lock` before the `Cancel`. The master must not
/// remember a cancel older than an entry it already queued for n1 (it did, and kept it).
#[test]
fn cancel_overtaken_by_the_next_lock_is_not_remembered() {
    replay(vec![
        req(0, 2, Cw),
        Op::Settle,
        Op::Request {
            node: 1,
            res: 2,
            mode: Pr,
            noqueue: true,
            timeout_ms: None,
        },
        req(2, 0, Nl),
        Op::Deliver { k: 62 },
        Op::Deliver { k: 55 },
        Op::Cancel { node: 1, k: 0 },
        req(1, 2, Pr),
        Op::Deliver { k: 4 },
        Op::Deliver { k: 20 },
        Op::Settle,
    ]);
}
