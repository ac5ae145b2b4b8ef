//! Counterexamples found by the model (`model/`), kept as readable traces.

use mxfs_core::sim::{inode_where, res_mastered_by, Cluster};
use mxfs_core::*;

/// Model counterexample (livelock, depth > 50 000): n0 and n2 both wait for EX on a resource
/// mastered by n1. The master grants n2 and, as n0 is now blocked, sends n2 a BAST; the BAST
/// overtakes the grant. n2 used to give the lock up on arrival without serving its kernel,
/// then n0 did the same, forever. A fresh grant must serve the waiters it was asked for.
#[test]
fn bast_overtaking_its_grant_does_not_livelock() {
    let mut c = Cluster::new(3);
    c.tracing = true;
    let r = res_mastered_by(1, NodeSet::first(3));
    c.request(2, 1, r, LockMode::Ex).unwrap();
    c.request(0, 1, r, LockMode::Ex).unwrap();
    // n1 receives n2's Lock, then n0's Lock: grants n2, and BASTs n2 for n0.
    assert!(c.deliver_first(|f, _, b| f == 2 && matches!(b, PeerBody::Lock { .. })));
    assert!(c.deliver_first(|f, _, b| f == 0 && matches!(b, PeerBody::Lock { .. })));
    // The BAST overtakes the grant.
    assert!(c.deliver_first(|_, t, b| t == 2 && matches!(b, PeerBody::Bast { .. })));
    assert!(c.deliver_first(|_, t, b| t == 2 && matches!(b, PeerBody::Grant { .. })));
    assert!(
        c.granted(2, 1),
        "the grant serves the kernel that asked for it\n{}",
        c.trace
    );
    c.settle();
    assert!(!c.granted(0, 1), "n2's kernel still holds EX");
    c.release(2, 1, r).unwrap();
    c.settle();
    assert!(c.granted(0, 1), "then n0 gets it\n{}", c.trace);
}

/// Model counterexample (unanswered request at quiescence): n0's kernel holds PR, n1 waits
/// for EX so n0 has a BAST pending, then n0's kernel converts its PR to EX. The node layer
/// held the conversion back because of the BAST while the BAST waited for the holder: both
/// kernels waited forever. The DLM serves converts before waiters, so the conversion must go
/// to the master and be granted.
#[test]
fn convert_with_bast_pending_is_not_stuck() {
    let mut c = Cluster::new(3);
    c.tracing = true;
    let r = res_mastered_by(1, NodeSet::first(3));
    c.request(0, 1, r, LockMode::Pr).unwrap();
    c.settle();
    c.request(1, 1, r, LockMode::Ex).unwrap();
    c.settle();
    assert!(c.core(0).dump_local()[0].bast_pending);
    let conv = Event::KernelRequest {
        req_id: 1,
        resource: r,
        mode: LockMode::Ex,
        flags: LockFlags::CONVERT,
        timeout_ms: 0,
    };
    c.event(0, conv).unwrap();
    c.settle();
    assert_eq!(
        c.core(0).dump_local()[0].holders,
        vec![(1, LockMode::Ex)],
        "{}",
        c.trace
    );
    c.release(0, 1, r).unwrap();
    c.settle();
    assert!(c.granted(1, 1), "{}", c.trace);
}

/// Model counterexample (unanswered request at quiescence): a master that finished rebuilding
/// BASTs a node still waiting for the last `RebuildDone`. The node dropped the BAST as
/// "node-layer message during recovery", kept its lock cached after its kernel released it,
/// and the waiter on the master waited forever.
#[test]
fn bast_during_rebuild_is_kept() {
    let mut c = Cluster::new(3);
    c.tracing = true;
    let r = res_mastered_by(1, NodeSet::first(3).without(2));
    c.request(0, 1, r, LockMode::Pr).unwrap();
    c.settle();
    c.request(1, 1, r, LockMode::Ex).unwrap();
    c.crash(2, 2);
    // Fences first, then let n1 finish its rebuild before n0 hears n1's RebuildDone.
    while let Some((by, target)) = c.fences.pop() {
        c.event(by, Event::FenceConfirmed { node: target }).unwrap();
    }
    let rebuild_to_n0 =
        |f: NodeId, t: NodeId, b: &PeerBody| f == 1 && t == 0 && matches!(b, PeerBody::RebuildDone);
    // The replay starts once the fencer has every member's `Journals` report.
    loop {
        while let Some((by, target)) = c.replays.first().copied() {
            assert!(c.finish_replay(by, target, true));
        }
        if !c.deliver_first(|f, t, b| !rebuild_to_n0(f, t, b)) && c.replays.is_empty() {
            break;
        }
    }
    assert!(
        c.core(0).recovering() && !c.core(1).recovering(),
        "{}",
        c.trace
    );
    assert!(
        c.core(0).dump_local()[0].bast_pending,
        "the BAST was kept\n{}",
        c.trace
    );
    c.settle();
    c.release(0, 1, r).unwrap();
    c.settle();
    assert!(c.granted(1, 1), "{}", c.trace);
}

/// proptest counterexample (tests/reference.rs, minimal case): n0's kernel holds CR, asks
/// for EX (queued behind its own CR), then try-locks EX. The try-lock sat behind the queued
/// EX and was never answered; a try-lock that cannot be granted now must be denied now.
#[test]
fn try_lock_behind_a_blocked_waiter_is_denied_at_once() {
    let mut c = Cluster::new(3);
    let r = ResourceId::inode(1, 2);
    c.request(0, 1, r, LockMode::Cr).unwrap();
    c.settle();
    c.request(0, 2, r, LockMode::Ex).unwrap();
    let try_ex = Event::KernelRequest {
        req_id: 3,
        resource: r,
        mode: LockMode::Ex,
        flags: LockFlags::NOQUEUE,
        timeout_ms: 0,
    };
    c.event(0, try_ex).unwrap();
    c.settle();
    assert_eq!(c.denied(0, 3), Some(EAGAIN));
    assert!(
        !c.granted(0, 2) && c.denied(0, 2).is_none(),
        "the queued EX keeps waiting"
    );
}

/// proptest counterexample (tests/reference.rs, minimal case): n0's kernel holds CR; n2 asks
/// for EX with a 54 ms timeout, then for NL. The EX times out, but its `Lock` stayed queued at
/// the master because another local waiter (the NL) remained, so the NL waited behind an EX
/// nobody wanted. The timed-out request's `Lock` is now always withdrawn.
#[test]
fn timed_out_lock_is_withdrawn_even_with_other_local_waiters() {
    let mut c = Cluster::new(3);
    let r = ResourceId::inode(1, 0);
    c.request(0, 1, r, LockMode::Cr).unwrap();
    c.settle();
    let ex = Event::KernelRequest {
        req_id: 1,
        resource: r,
        mode: LockMode::Ex,
        flags: LockFlags::TIMEOUT_MS,
        timeout_ms: 54,
    };
    c.event(2, ex).unwrap();
    c.settle();
    c.request(2, 2, r, LockMode::Nl).unwrap();
    c.advance(54);
    c.settle();
    assert_eq!(c.denied(2, 1), Some(ETIMEDOUT));
    assert!(c.granted(2, 2), "NL is compatible with n0's CR");
}

/// proptest counterexample (tests/reference.rs, minimal case): n0 asks for CR with a 1 ms
/// timeout; it expires and n0 sends `Cancel`, which overtakes the `Lock`. The master found
/// nothing to cancel, then queued the `Lock` behind n2's EX, and n0's next request (NL, which
/// n2's EX allows) waited behind that unwanted CR. The master now remembers early cancels.
#[test]
fn cancel_overtaking_its_lock_still_withdraws_it() {
    let mut c = Cluster::new(3);
    c.tracing = true;
    let r = ResourceId::inode(1, 2);
    assert_eq!(master_of(NodeSet::first(3), &r), Some(2));
    let cr = Event::KernelRequest {
        req_id: 1,
        resource: r,
        mode: LockMode::Cr,
        flags: LockFlags::TIMEOUT_MS,
        timeout_ms: 1,
    };
    c.event(0, cr).unwrap();
    c.advance(1);
    assert_eq!(c.denied(0, 1), Some(ETIMEDOUT));
    c.request(0, 2, r, LockMode::Nl).unwrap();
    assert!(c.deliver_first(|_, _, b| matches!(b, PeerBody::Cancel { .. })));
    c.request(2, 3, r, LockMode::Ex).unwrap();
    assert!(c.granted(2, 3));
    c.settle();
    assert!(
        c.granted(0, 2),
        "NL is compatible with n2's EX\n{}",
        c.trace
    );
}

/// proptest counterexample (tests/reference.rs, shrunk): n0's `Lock` for PR is outstanding
/// when a stale BAST (about a lock n0 already gave up) arrives and sets its BAST flag; the
/// `Lock` is then cancelled. With nothing held and nothing in flight the flag kept n0's next
/// request (NL) from ever being sent. A BAST about nothing is now dropped.
#[test]
fn stale_bast_does_not_block_the_next_request() {
    let mut c = Cluster::new(3);
    c.tracing = true;
    let r = ResourceId::inode(1, 0);
    assert_eq!(master_of(NodeSet::first(3), &r), Some(1));
    // n0 holds CW cached; n2's PR makes the master BAST n0, which gives the lock up...
    c.request(0, 1, r, LockMode::Cw).unwrap();
    c.settle();
    c.release(0, 1, r).unwrap();
    c.request(2, 2, r, LockMode::Ex).unwrap();
    // ... while n0 already asks again (PR), so its `Lock` is outstanding when a BAST lands.
    assert!(c.deliver_first(|f, _, b| f == 2 && matches!(b, PeerBody::Lock { .. })));
    assert!(c.deliver_first(|_, t, b| t == 0 && matches!(b, PeerBody::Bast { .. })));
    assert!(c.deliver_first(|f, _, b| f == 0 && matches!(b, PeerBody::Release { .. })));
    assert!(c.deliver_first(|_, t, b| t == 0 && matches!(b, PeerBody::ReleaseAck { .. })));
    let pr = Event::KernelRequest {
        req_id: 3,
        resource: r,
        mode: LockMode::Pr,
        flags: LockFlags::TIMEOUT_MS,
        timeout_ms: 5,
    };
    c.event(0, pr).unwrap();
    // A second, stale BAST for n0 (the master sends one per grant; fake the late copy).
    let stale = PeerMsg {
        epoch: 1,
        body: PeerBody::Bast {
            resource: r,
            mode: LockMode::Ex,
        },
    };
    c.event(
        0,
        Event::Peer {
            from: 1,
            msg: stale,
        },
    )
    .unwrap();
    assert!(c.core(0).dump_local()[0].bast_pending);
    c.advance(5);
    assert_eq!(c.denied(0, 3), Some(ETIMEDOUT));
    c.settle();
    c.release(2, 2, r).unwrap();
    c.settle();
    c.request(0, 4, r, LockMode::Nl).unwrap();
    c.settle();
    assert!(c.granted(0, 4), "{}", c.trace);
}

/// Variant of the above with n2's EX already granted (by sequence number 1, like n0's `Lock`)
/// when the early `Cancel` arrives: a grant of *another* node must not make the master think
/// n0's `Lock` was answered.
#[test]
fn early_cancel_is_kept_while_other_nodes_hold_grants() {
    let mut c = Cluster::new(3);
    c.tracing = true;
    let r = ResourceId::inode(1, 2);
    c.request(2, 1, r, LockMode::Ex).unwrap();
    assert!(c.granted(2, 1));
    // n1 waits for EX too, queued on the master with sequence number 1 as well.
    c.request(1, 1, r, LockMode::Ex).unwrap();
    assert!(c.deliver_first(|f, _, b| f == 1 && matches!(b, PeerBody::Lock { .. })));
    let cr = Event::KernelRequest {
        req_id: 1,
        resource: r,
        mode: LockMode::Cr,
        flags: LockFlags::TIMEOUT_MS,
        timeout_ms: 1,
    };
    c.event(0, cr).unwrap();
    c.advance(1);
    c.request(0, 2, r, LockMode::Nl).unwrap();
    assert!(c.deliver_first(|_, _, b| matches!(b, PeerBody::Cancel { .. })));
    c.settle();
    assert_eq!(
        c.denied(1, 1),
        None,
        "n1's request is not the one cancelled\n{}",
        c.trace
    );
    // FIFO: n0's NL queues behind n1's EX; once n2 releases, both are granted (EX and NL are
    // compatible), unless a cancelled CR still sat between them.
    c.release(2, 1, r).unwrap();
    c.settle();
    assert!(c.granted(1, 1), "{}", c.trace);
    assert!(c.granted(0, 2), "{}", c.trace);
}

/// A `Cancel` that arrives after its `Lock` was granted and given up again leaves a stale
/// record on the master; the node's next `Lock` (a higher sequence number) must be served,
/// not denied as cancelled.
#[test]
fn stale_early_cancel_does_not_deny_the_next_lock() {
    let mut c = Cluster::new(3);
    c.tracing = true;
    let r = ResourceId::inode(1, 2);
    assert_eq!(master_of(NodeSet::first(3), &r), Some(2));
    let ex = Event::KernelRequest {
        req_id: 1,
        resource: r,
        mode: LockMode::Ex,
        flags: LockFlags::TIMEOUT_MS,
        timeout_ms: 5,
    };
    c.event(0, ex).unwrap();
    // The master grants at once, but n0's timer fires before the grant arrives.
    assert!(c.deliver_first(|_, _, b| matches!(b, PeerBody::Lock { .. })));
    c.advance(5);
    assert_eq!(c.denied(0, 1), Some(ETIMEDOUT));
    // The grant arrives (cached); n2 wants the lock, so n0 gives it up; the Release and its
    // ack overtake the Cancel.
    assert!(c.deliver_first(|_, t, b| t == 0 && matches!(b, PeerBody::Grant { .. })));
    c.request(2, 1, r, LockMode::Ex).unwrap();
    assert!(c.deliver_first(|_, t, b| t == 0 && matches!(b, PeerBody::Bast { .. })));
    assert!(c.deliver_first(|f, _, b| f == 0 && matches!(b, PeerBody::Release { .. })));
    assert!(c.granted(2, 1));
    c.release(2, 1, r).unwrap();
    assert!(c.deliver_first(|_, _, b| matches!(b, PeerBody::Cancel { .. })));
    c.settle();
    c.request(0, 2, r, LockMode::Pr).unwrap();
    c.settle();
    assert!(c.granted(0, 2), "{}", c.trace);
}

/// Seen live with three mxfsd on loopback (daemon helper, 20:02 UTC): n2 held EX, was cut off
/// and fenced, and a survivor was granted EX. When n2 came back in a later epoch, its stale
/// core resent `Recover{EX}` and the master's debug invariant check panicked on two EX grants.
/// A peer message must never panic the core: the master refuses a `Recover` that conflicts
/// with what it has already rebuilt, and its grants stay compatible.
#[test]
fn stale_conflicting_recover_is_rejected_not_a_panic() {
    let mut c = Cluster::new(3);
    let all = NodeSet::first(3);
    let survivors = NodeSet::first(2);
    let r = inode_where(|r| master_of(all, r) == Some(0) && master_of(survivors, r) == Some(0));
    c.request(2, 1, r, LockMode::Ex).unwrap();
    c.settle();
    c.request(1, 2, r, LockMode::Ex).unwrap();
    c.settle();
    c.crash(2, 2);
    c.settle();
    assert!(c.granted(1, 2), "the survivor gets the lost node's EX");
    // n2 "rejoins" in epoch 3 with its stale view and claims EX again.
    for n in [0, 1] {
        c.event(
            n,
            Event::Membership {
                epoch: 3,
                members: all,
            },
        )
        .unwrap();
    }
    let forged = Event::Peer {
        from: 2,
        msg: PeerMsg {
            epoch: 3,
            body: PeerBody::Recover {
                resource: r,
                mode: LockMode::Ex,
            },
        },
    };
    assert_eq!(c.event(0, forged), Ok(()), "the first claim is taken");
    // n1's own Recover{EX} now conflicts: refused, and the grants stay compatible.
    let legit = Event::Peer {
        from: 1,
        msg: PeerMsg {
            epoch: 3,
            body: PeerBody::Recover {
                resource: r,
                mode: LockMode::Ex,
            },
        },
    };
    let got = c.event(0, legit);
    assert!(
        matches!(got, Err(Reject::Unexpected(_))),
        "a conflicting Recover is refused, got {got:?}"
    );
    c.core(0).check_invariants().unwrap();
}
