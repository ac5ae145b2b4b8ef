//! The grant rule, in one place: who may hold what, on the master and on a node.
//!
//! Everything in the core that decides whether a lock may be granted, queued, asked for or
//! given up calls one of these functions; nothing else in the crate consults the
//! compatibility matrix for a grant.
//!
//! - **Compatibility** is the VMS/Linux DLM matrix ([`LockMode::compatible`], in `proto`).
//! - **Covers**: holding `held` lets a local user have `want` when every mode compatible with
//!   `held` is compatible with `want` ([`covers`]); **supremum** is the weakest mode that covers
//!   two others ([`sup`], e.g. `sup(CW, PR) = PW`). A node's cluster lock must cover every
//!   local holder.
//! - **Master**: conversions are served before waiters. A conversion is granted as soon as no
//!   other node's granted mode blocks it, wherever it stands in the convert queue (the DLM's
//!   rule 6-3); first requests are granted FIFO, only while no conversion waits and nothing
//!   blocks the head ([`master_may_grant_now`], [`master_scan`]), so a compatible newcomer
//!   never overtakes a blocked request. Conversions that block each other in a cycle (each
//!   one's granted mode blocks the next one's request) are a conversion deadlock: the newest
//!   of the cycle is denied `EDEADLK` and keeps its old mode ([`conversion_cycle`]).
//! - **Node**: a kernel request is granted locally when the node's lock covers it, the node's
//!   cache is at the lock's data version (the last `CACHE_INVAL` succeeded), it is
//!   compatible with the other local holders, lock traffic is not frozen, and no BAST stops
//!   new holders ([`node_may_grant`]); the fast path for a request with nothing queued calls
//!   the same function. Local conversions likewise are granted wherever they stand in the
//!   local queue, first requests FIFO after them, and a cycle of local conversions is denied
//!   with `EDEADLK` by the same [`conversion_cycle`]. A conversion the node's lock does not
//!   cover asks the master at once, even while a local holder still blocks it, so that a
//!   deadlock across nodes reaches a master that can see it; a first request asks when it is
//!   the head ([`node_may_ask`], [`mode_to_ask`]). On a BAST the lock is given up down to
//!   what the holders and the conversions it already covers need ([`needed_by`]).
//! - **Data versions** step when a PW or EX holder gives its lock up ([`gives_up_write`]).

use std::collections::VecDeque;

use crate::master::{Granted, Pending};
use crate::{LockMode, NodeId};

/// Whether `a` and `b` may be held at once by different holders (the DLM matrix).
pub(crate) fn compatible(a: LockMode, b: LockMode) -> bool {
    a.compatible(b)
}

/// Whether holding `held` lets a local user have `want`: every mode compatible with `held` is
/// compatible with `want` (the compatibility set of `held` is a subset of `want`'s).
pub(crate) fn covers(held: LockMode, want: LockMode) -> bool {
    COVERS[held as usize][want as usize]
}

/// `covers` for every pair, computed at compile time from the compatibility matrix.
const COVERS: [[bool; 6]; 6] = {
    let mut t = [[false; 6]; 6];
    let mut h = 0;
    while h < 6 {
        let mut w = 0;
        while w < 6 {
            let mut ok = true;
            let mut x = 0;
            while x < 6 {
                let (hm, wm, xm) = (LockMode::ALL[h], LockMode::ALL[w], LockMode::ALL[x]);
                if hm.compatible(xm) && !wm.compatible(xm) {
                    ok = false;
                }
                x += 1;
            }
            t[h][w] = ok;
            w += 1;
        }
        h += 1;
    }
    t
};

/// The weakest mode that covers both `a` and `b` (e.g. `sup(CW, PR) = PW`).
pub(crate) fn sup(a: LockMode, b: LockMode) -> LockMode {
    for m in LockMode::ALL {
        if covers(m, a) && covers(m, b) {
            return m;
        }
    }
    LockMode::Ex
}

/// Whether going from `from` to `to` (`None`: released) gives up a write mode, which steps
/// the resource's data version.
pub(crate) fn gives_up_write(from: LockMode, to: Option<LockMode>) -> bool {
    from.is_write() && !to.is_some_and(|m| m.is_write())
}

// ----- master ------------------------------------------------------------------------------

/// Whether the granted lock `g` (of another node) blocks a request of `node` for `mode`.
pub(crate) fn blocks(g: &Granted, node: NodeId, mode: LockMode) -> bool {
    g.node != node && !compatible(g.mode, mode)
}

/// Whether a master may grant `node`'s request for `mode`, arriving now, without queueing it:
/// no lock another node holds blocks it, and, for a first request (not a conversion of a lock
/// `node` holds), nothing waits in either queue. So a compatible newcomer never overtakes a
/// blocked request, while a conversion that nothing blocks is granted at once.
pub(crate) fn master_may_grant_now(
    granted: &[Granted],
    converting: &VecDeque<Pending>,
    waiting: &VecDeque<Pending>,
    node: NodeId,
    mode: LockMode,
) -> bool {
    let holds = granted.iter().any(|g| g.node == node);
    !granted.iter().any(|g| blocks(g, node, mode))
        && (holds || (converting.is_empty() && waiting.is_empty()))
}

/// What the master's grant pass does next with its queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MasterScan {
    /// Grant the conversion at this index of the convert queue (the first nothing blocks).
    GrantConvert(usize),
    /// Deny the conversion at this index with `EDEADLK`: it is the newest of a cycle of
    /// conversions each blocked by the next one's granted mode, so none can ever be granted
    /// (it keeps its old mode, as in the Linux DLM).
    Deadlock(usize),
    /// Grant the head of the wait queue.
    GrantWaiter,
    /// Everything queued is blocked: stop (and BAST the blockers).
    Stop,
}

/// The master's grant pass, one step: any conversion nothing blocks, then a conversion
/// deadlock, then (only with no conversion queued) the head of the wait queue if nothing
/// blocks it; nothing behind a blocked head waiter is granted.
pub(crate) fn master_scan(
    granted: &[Granted],
    converting: &VecDeque<Pending>,
    waiting: &VecDeque<Pending>,
) -> MasterScan {
    let blocked = |node: NodeId, mode: LockMode| granted.iter().any(|g| blocks(g, node, mode));
    if let Some(i) = converting.iter().position(|c| !blocked(c.node, c.mode)) {
        return MasterScan::GrantConvert(i);
    }
    let held = |node: NodeId| granted.iter().find(|g| g.node == node).map(|g| g.mode);
    let convs: Vec<(LockMode, LockMode)> = converting
        .iter()
        .map(|c| (held(c.node).unwrap_or(LockMode::Nl), c.mode))
        .collect();
    if let Some(i) = conversion_cycle(&convs) {
        return MasterScan::Deadlock(i);
    }
    if !converting.is_empty() {
        return MasterScan::Stop;
    }
    match waiting.front() {
        Some(w) if !blocked(w.node, w.mode) => MasterScan::GrantWaiter,
        _ => MasterScan::Stop,
    }
}

/// A conversion deadlock among `convs`, each `(granted, requested)` of one holder in queue
/// order: conversion `x` waits for `y` when `y`'s granted mode blocks `x`'s request. Returns
/// the index of the newest member of a wait-for cycle (the one to deny), if there is one.
/// Used by the master for its convert queue and by a node for its local conversions.
pub(crate) fn conversion_cycle(convs: &[(LockMode, LockMode)]) -> Option<usize> {
    let waits_for = |x: usize, y: usize| x != y && !compatible(convs[y].0, convs[x].1);
    // Drop every conversion that waits for no remaining one: it ends (is granted, or waits
    // only for holders that are not converting), and so may what waits for it. Kahn's
    // algorithm over the reversed edges: O(n^2) mode checks.
    let n = convs.len();
    let mut waiting_on: Vec<usize> = (0..n)
        .map(|x| (0..n).filter(|&y| waits_for(x, y)).count())
        .collect();
    let mut alive = vec![true; n];
    let mut free: Vec<usize> = (0..n).filter(|&x| waiting_on[x] == 0).collect();
    while let Some(y) = free.pop() {
        alive[y] = false;
        for x in (0..n).filter(|&x| alive[x] && waits_for(x, y)) {
            waiting_on[x] -= 1;
            if waiting_on[x] == 0 {
                free.push(x);
            }
        }
    }
    // Every remaining conversion waits for a remaining one: walk from the first until a
    // conversion repeats; the walk's loop is a cycle.
    let mut at = alive.iter().position(|a| *a)?;
    let mut path = vec![at];
    loop {
        let next = (0..n)
            .find(|&y| alive[y] && waits_for(at, y))
            .expect("a remaining conversion waits for a remaining one");
        if let Some(i) = path.iter().position(|&p| p == next) {
            return path[i..].iter().copied().max();
        }
        path.push(next);
        at = next;
    }
}

// ----- node --------------------------------------------------------------------------------

/// What a node knows about a resource when it decides on a local request.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NodeView {
    /// Lock traffic flows (not recovering or stopped).
    pub normal: bool,
    /// The node's cache is at the lock's data version (the last invalidation succeeded).
    pub current: bool,
    /// The node's cluster lock, if any.
    pub held: Option<LockMode>,
    /// A BAST asked for the lock: no new local holders.
    pub bast: bool,
    /// A grant for the waiters just arrived (they are served even if a BAST overtook it).
    pub fresh_grant: bool,
}

/// Whether a node may grant a kernel request for `mode` from its own lock, whose data its
/// cache holds at the current version (never after a refused invalidation). `others_ok`: the
/// mode is compatible with every other local holder; `convert`: the request converts a lock
/// a local holder already has (a BAST does not stop it: the holder cannot give way while it
/// waits).
pub(crate) fn node_may_grant(v: NodeView, mode: LockMode, others_ok: bool, convert: bool) -> bool {
    v.normal
        && v.current
        && others_ok
        && v.held.is_some_and(|h| covers(h, mode))
        && (!v.bast || v.fresh_grant || convert)
}

/// Whether a waiter whose mode the node's lock does not cover may ask the master for it now.
/// A conversion always may, even while a BAST is pending or a local holder still blocks it:
/// the master serves conversions first, the holder cannot give the lock up while it waits,
/// and only the master sees a conversion deadlock across nodes. A first request (the head of
/// the local queue) asks only when it is compatible with the local holders and no BAST is
/// pending.
pub(crate) fn node_may_ask(bast: bool, others_ok: bool, convert: bool) -> bool {
    convert || (others_ok && !bast)
}

/// Whether a try-lock may still be granted without waiting: lock traffic flows, it is
/// compatible with the local holders, and no exchange with the master or BAST is pending.
pub(crate) fn try_lock_may_proceed(v: NodeView, others_ok: bool, in_flight: bool) -> bool {
    v.normal && others_ok && !in_flight && !v.bast
}

/// The mode a node asks its master for: what the waiter wants, joined with what is held.
pub(crate) fn mode_to_ask(held: Option<LockMode>, want: LockMode) -> LockMode {
    held.map_or(want, |h| sup(h, want))
}

/// The weakest lock that still covers every local holder (`None`: nobody holds it).
pub(crate) fn needed_by(holders: impl IntoIterator<Item = LockMode>) -> Option<LockMode> {
    holders.into_iter().reduce(sup)
}

#[cfg(test)]
mod tests {
    use super::*;
    use LockMode::*;

    #[test]
    fn covers_table_matches_definition() {
        for h in LockMode::ALL {
            for w in LockMode::ALL {
                let def = LockMode::ALL
                    .iter()
                    .all(|x| !h.compatible(*x) || w.compatible(*x));
                assert_eq!(covers(h, w), def, "{h:?} {w:?}");
            }
        }
    }

    #[test]
    fn lattice() {
        assert!(covers(Ex, Nl) && covers(Ex, Pr) && covers(Pw, Cw) && covers(Pw, Pr));
        assert!(!covers(Cw, Pr) && !covers(Pr, Cw) && !covers(Pr, Pw) && !covers(Nl, Cr));
        for m in LockMode::ALL {
            assert!(covers(m, m));
            assert!(covers(Ex, m));
            assert!(covers(m, Nl));
        }
        assert_eq!(sup(Cw, Pr), Pw);
        assert_eq!(sup(Cr, Pr), Pr);
        assert_eq!(sup(Nl, Cr), Cr);
        assert_eq!(sup(Pw, Ex), Ex);
        assert_eq!(sup(Cr, Cw), Cw);
        assert!(gives_up_write(Ex, None) && gives_up_write(Pw, Some(Pr)));
        assert!(!gives_up_write(Ex, Some(Pw)) && !gives_up_write(Pr, None));
        assert_eq!(needed_by([Cr, Cw, Pr]), Some(Pw));
        assert_eq!(needed_by([]), None);
        assert_eq!(mode_to_ask(None, Cw), Cw);
        assert_eq!(mode_to_ask(Some(Pr), Cw), Pw);
    }

    fn g(node: NodeId, mode: LockMode) -> Granted {
        Granted {
            node,
            mode,
            seq: 1,
            since_ms: 0,
            bast_sent: false,
        }
    }

    fn p(node: NodeId, mode: LockMode) -> Pending {
        Pending {
            node,
            mode,
            seq: 2,
            since_ms: 0,
        }
    }

    #[test]
    fn master_rule() {
        let none = VecDeque::new();
        let granted = [g(1, Pr), g(2, Pr)];
        let q = |v: &[Pending]| v.iter().cloned().collect::<VecDeque<_>>();
        // Nothing blocks a CR newcomer, but it waits behind an earlier waiter.
        assert!(master_may_grant_now(&granted, &none, &none, 3, Cr));
        assert!(!master_may_grant_now(
            &granted,
            &none,
            &q(&[p(4, Ex)]),
            3,
            Cr
        ));
        // A conversion nothing blocks is granted at once, whatever is queued (DLM rule 6-3);
        // a first request waits behind any queued conversion.
        assert!(master_may_grant_now(
            &granted,
            &none,
            &q(&[p(4, Ex)]),
            1,
            Cr
        ));
        assert!(master_may_grant_now(
            &granted,
            &q(&[p(2, Ex)]),
            &none,
            1,
            Cr
        ));
        assert!(!master_may_grant_now(
            &granted,
            &q(&[p(2, Ex)]),
            &none,
            3,
            Cr
        ));
        assert!(!master_may_grant_now(&granted, &none, &none, 3, Ex));
        assert!(
            !master_may_grant_now(&granted, &none, &none, 1, Ex),
            "node 2 blocks"
        );
        assert!(
            master_may_grant_now(&granted[..1], &none, &none, 1, Ex),
            "own lock never blocks"
        );
        assert!(blocks(&g(1, Pr), 2, Ex) && !blocks(&g(1, Pr), 1, Ex) && !blocks(&g(1, Pr), 2, Cr));
        // Both PR holders convert to EX: a conversion deadlock; the newer one is denied.
        let both = q(&[p(1, Ex), p(2, Ex)]);
        assert_eq!(master_scan(&granted, &both, &none), MasterScan::Deadlock(1));
        // A conversion behind a blocked one is granted when nothing blocks it.
        let three = [g(1, Pr), g(2, Nl), g(3, Nl)];
        assert_eq!(
            master_scan(&three, &q(&[p(2, Ex), p(3, Cr)]), &none),
            MasterScan::GrantConvert(1)
        );
        // n2 (NL -> EX) waits for n1's PR, which is not converting: no deadlock.
        assert_eq!(
            master_scan(&three, &q(&[p(2, Ex)]), &none),
            MasterScan::Stop
        );
        // A deadlock that a third, non-converting holder also blocks is still a deadlock.
        let cw = [g(1, Cw), g(2, Cw), g(3, Cw)];
        assert_eq!(
            master_scan(&cw, &q(&[p(1, Pr), p(2, Pr)]), &none),
            MasterScan::Deadlock(1)
        );
        let one = q(&[p(1, Ex)]);
        assert_eq!(
            master_scan(&granted, &one, &q(&[p(3, Cr)])),
            MasterScan::Stop,
            "a blocked conversion holds back the wait queue"
        );
        assert_eq!(
            master_scan(&granted, &none, &q(&[p(3, Cr)])),
            MasterScan::GrantWaiter
        );
        assert_eq!(
            master_scan(&granted, &none, &q(&[p(3, Ex), p(4, Cr)])),
            MasterScan::Stop
        );
        assert_eq!(
            master_scan(&granted, &q(&[p(1, Cr)]), &none),
            MasterScan::GrantConvert(0)
        );
        assert_eq!(master_scan(&granted, &none, &none), MasterScan::Stop);
    }

    #[test]
    fn conversion_cycles() {
        // Two PR holders converting to CW block each other.
        assert_eq!(conversion_cycle(&[(Pr, Cw), (Pr, Cw)]), Some(1));
        // A down-conversion waits for nobody: no cycle.
        assert_eq!(conversion_cycle(&[(Nl, Cw), (Pr, Nl)]), None);
        // A chain that ends is no cycle: 0 waits for 1, 1 for nobody here.
        assert_eq!(conversion_cycle(&[(Nl, Ex), (Cr, Pr)]), None);
        // A cycle between free conversions; the newest member of the cycle is denied: 1 and 2
        // (CW -> PR) wait for each other's CW; 0 and 3 wait for nobody.
        assert_eq!(
            conversion_cycle(&[(Nl, Nl), (Cw, Pr), (Cw, Pr), (Nl, Cr)]),
            Some(2)
        );
        // One that waits for a cycle is not denied; the cycle's newest member is.
        assert_eq!(conversion_cycle(&[(Nl, Ex), (Pr, Cw), (Pr, Cw)]), Some(2));
        assert_eq!(conversion_cycle(&[]), None);
    }

    #[test]
    fn node_rule() {
        let v = NodeView {
            normal: true,
            current: true,
            held: Some(Pr),
            bast: false,
            fresh_grant: false,
        };
        assert!(node_may_grant(v, Cr, true, false));
        assert!(!node_may_grant(v, Cw, true, false), "PR does not cover CW");
        assert!(!node_may_grant(v, Cr, false, false));
        let frozen = NodeView { normal: false, ..v };
        let stale = NodeView {
            current: false,
            ..v
        };
        assert!(!node_may_grant(stale, Cr, true, false) && !node_may_grant(stale, Cr, true, true));
        assert!(!node_may_grant(frozen, Cr, true, false));
        let bast = NodeView { bast: true, ..v };
        assert!(!node_may_grant(bast, Cr, true, false));
        assert!(node_may_grant(bast, Cr, true, true));
        let fresh = NodeView {
            fresh_grant: true,
            ..bast
        };
        assert!(node_may_grant(fresh, Cr, true, false));
        assert!(node_may_ask(false, true, false));
        assert!(!node_may_ask(true, true, false) && node_may_ask(true, true, true));
        assert!(!node_may_ask(false, false, false));
        assert!(
            node_may_ask(true, false, true),
            "a conversion asks even while a local holder blocks it"
        );
        assert!(try_lock_may_proceed(v, true, false));
        assert!(!try_lock_may_proceed(v, true, true) && !try_lock_may_proceed(bast, true, false));
        assert!(
            !try_lock_may_proceed(frozen, true, false) && !try_lock_may_proceed(v, false, false)
        );
    }
}
