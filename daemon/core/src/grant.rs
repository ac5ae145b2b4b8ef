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
//! - **Master**: converts are served before waiters, each queue FIFO; a request is granted when
//!   no other node's granted mode blocks it and nothing queued is ahead of it
//!   ([`master_may_grant_now`], [`master_scan`]), so a compatible newcomer never overtakes a
//!   blocked request. A head converter whose every blocker is itself converting is a
//!   conversion deadlock and is denied ([`MasterScan::Deadlock`]).
//! - **Node**: a kernel request is granted locally when the node's lock covers it, the node's
//!   cache is at the lock's data version (the last `CACHE_INVAL` succeeded), it is
//!   compatible with the other local holders, lock traffic is not frozen, and no BAST stops
//!   new holders ([`node_may_grant`]); the fast path for a request with nothing queued calls
//!   the same function. Otherwise the head waiter asks the master for the supremum of what it
//!   wants and what is held ([`node_may_ask`], [`mode_to_ask`]); on a BAST the lock is given up
//!   down to what the remaining holders need ([`needed_by`]).
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
/// no lock another node holds blocks it, no conversion waits, and (for a first request, not
/// a conversion of a lock `node` holds) no earlier request waits. So a compatible newcomer
/// never overtakes a blocked request.
pub(crate) fn master_may_grant_now(
    granted: &[Granted],
    converting: &VecDeque<Pending>,
    waiting: &VecDeque<Pending>,
    node: NodeId,
    mode: LockMode,
) -> bool {
    let holds = granted.iter().any(|g| g.node == node);
    !granted.iter().any(|g| blocks(g, node, mode))
        && converting.is_empty()
        && (holds || waiting.is_empty())
}

/// What the master's grant pass does next with the heads of its queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MasterScan {
    /// Grant the head of the convert queue.
    GrantConvert,
    /// Deny the head of the convert queue with `EDEADLK`: every node blocking it is itself
    /// waiting to convert, so none can ever give way (the head keeps its old mode, as in the
    /// Linux DLM).
    Deadlock,
    /// Grant the head of the wait queue.
    GrantWaiter,
    /// The heads are blocked: stop (and BAST their blockers).
    Stop,
}

/// The master's grant pass, one step: converts first (FIFO), then waiters (FIFO), each only
/// while nothing blocks the head; nothing behind a blocked head is granted.
pub(crate) fn master_scan(
    granted: &[Granted],
    converting: &VecDeque<Pending>,
    waiting: &VecDeque<Pending>,
) -> MasterScan {
    if let Some(c) = converting.front() {
        let mut blockers = granted
            .iter()
            .filter(|g| blocks(g, c.node, c.mode))
            .peekable();
        if blockers.peek().is_none() {
            return MasterScan::GrantConvert;
        }
        if blockers.all(|b| converting.iter().any(|p| p.node == b.node)) {
            return MasterScan::Deadlock;
        }
        return MasterScan::Stop;
    }
    match waiting.front() {
        Some(w) if !granted.iter().any(|g| blocks(g, w.node, w.mode)) => MasterScan::GrantWaiter,
        _ => MasterScan::Stop,
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

/// Whether the head waiter may ask the master for a stronger lock now. A BAST stops that,
/// except for a holder's conversion (the master serves conversions first, and the holder
/// cannot give the lock up while it waits).
pub(crate) fn node_may_ask(bast: bool, others_ok: bool, convert: bool) -> bool {
    others_ok && (!bast || convert)
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
        // A conversion does not wait behind waiters, but behind other conversions.
        assert!(master_may_grant_now(
            &granted,
            &none,
            &q(&[p(4, Ex)]),
            1,
            Cr
        ));
        assert!(!master_may_grant_now(
            &granted,
            &q(&[p(2, Ex)]),
            &none,
            1,
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
        // Both PR holders convert to EX: a conversion deadlock.
        let both = q(&[p(1, Ex), p(2, Ex)]);
        assert_eq!(master_scan(&granted, &both, &none), MasterScan::Deadlock);
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
            MasterScan::GrantConvert
        );
        assert_eq!(master_scan(&granted, &none, &none), MasterScan::Stop);
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
        assert!(!node_may_ask(false, false, true));
        assert!(try_lock_may_proceed(v, true, false));
        assert!(!try_lock_may_proceed(v, true, true) && !try_lock_may_proceed(bast, true, false));
        assert!(
            !try_lock_may_proceed(frozen, true, false) && !try_lock_may_proceed(v, false, false)
        );
    }
}
