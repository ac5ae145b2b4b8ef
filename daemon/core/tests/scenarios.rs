//! Scenario tests of the lock core through the in-memory cluster (`mxfs_core::sim`).

use mxfs_core::sim::{res_mastered_by, Cluster};
use mxfs_core::*;

/// An inode of volume 1 whose master among `members` is `master`.
#[test]
fn local_grant_release_then_cached_regrant_without_network() {
    let mut c = Cluster::new(3);
    let r = res_mastered_by(1, NodeSet::first(3));
    c.request(0, 1, r, LockMode::Ex).unwrap();
    assert!(!c.granted(0, 1), "remote master must answer first");
    c.settle();
    assert!(c.granted(0, 1));
    // First grant invalidates (the version was never seen), before the grant.
    assert!(matches!(c.kernel[0][0], KernelMsg::CacheInval { ino, len: 0, .. } if ino == r.a));
    assert!(matches!(c.kernel[0][1], KernelMsg::Grant { req_id: 1, .. }));
    c.release(0, 1, r).unwrap();
    assert!(c.net.is_empty(), "release keeps the lock cached");
    c.request(0, 2, r, LockMode::Pr).unwrap();
    assert!(c.net.is_empty(), "cached re-grant needs no network");
    assert!(c.granted(0, 2));
    assert_eq!(
        c.kernel[0].len(),
        3,
        "no second CACHE_INVAL for a cached lock"
    );
}

/// Level 0: one VOLUME resource covers the whole volume, so its invalidation names no inode:
/// `CACHE_INVAL(volume, ino 0, offset 0, len 0)`, before the first grant and before the grant
/// after another node wrote.
#[test]
fn volume_lock_invalidates_the_whole_volume_before_its_grants() {
    let whole = |k: &KernelMsg| {
        matches!(k, KernelMsg::CacheInval { volume: 9, ino: 0, offset: 0, len: 0, resource }
            if *resource == ResourceId::volume(9))
    };
    let mut c = Cluster::new(2);
    let r = ResourceId::volume(9);
    c.request(0, 1, r, LockMode::Ex).unwrap();
    c.settle();
    assert!(c.granted(0, 1));
    assert!(whole(&c.kernel[0][0]), "{:?}", c.kernel[0]);
    assert!(matches!(c.kernel[0][1], KernelMsg::Grant { req_id: 1, .. }));
    c.release(0, 1, r).unwrap();
    c.settle();
    c.request(1, 2, r, LockMode::Pr).unwrap();
    c.settle();
    assert!(c.granted(1, 2));
    let k = &c.kernel[1];
    let g = k
        .iter()
        .position(|m| matches!(m, KernelMsg::Grant { req_id: 2, .. }))
        .unwrap();
    assert!(g > 0 && whole(&k[g - 1]), "{k:?}");
}

#[test]
fn bast_takes_back_cached_lock_and_waiter_gets_grant_with_inval() {
    let mut c = Cluster::new(2);
    let r = res_mastered_by(0, NodeSet::first(2));
    c.request(1, 1, r, LockMode::Ex).unwrap();
    c.settle();
    assert!(c.granted(1, 1));
    c.release(1, 1, r).unwrap();
    c.settle();
    // n0 (the master) wants it: BAST to n1, which gives it up, then n0 is granted.
    c.request(0, 7, r, LockMode::Pr).unwrap();
    c.settle();
    assert!(c.granted(0, 7));
    let d = &c.core(1).dump_local()[0];
    assert_eq!(d.held, None, "n1 gave the cached lock up on the BAST");
    // n1 wrote under EX: the version moved, so n0 invalidates before its grant.
    let k = &c.kernel[0];
    let g = k
        .iter()
        .position(|m| matches!(m, KernelMsg::Grant { req_id: 7, .. }))
        .unwrap();
    assert!(matches!(k[g - 1], KernelMsg::CacheInval { .. }));
    // n1 asks again for PR: compatible, granted; its cached version is the newest (it was the
    // writer), so no invalidation.
    let before = c.kernel[1].len();
    c.request(1, 2, r, LockMode::Pr).unwrap();
    c.settle();
    assert!(c.granted(1, 2));
    assert!(!c.kernel[1][before..]
        .iter()
        .any(|m| matches!(m, KernelMsg::CacheInval { .. })));
}

#[test]
fn held_lock_is_given_up_only_when_the_kernel_releases() {
    let mut c = Cluster::new(2);
    let r = res_mastered_by(0, NodeSet::first(2));
    c.request(1, 1, r, LockMode::Ex).unwrap();
    c.settle();
    c.request(0, 2, r, LockMode::Ex).unwrap();
    c.settle();
    assert!(!c.granted(0, 2), "n1's kernel still holds EX");
    assert!(c.core(1).dump_local()[0].bast_pending);
    c.release(1, 1, r).unwrap();
    c.settle();
    assert!(c.granted(0, 2));
}

#[test]
fn noqueue_denies_at_once_and_bast_frees_cached_lock() {
    let mut c = Cluster::new(2);
    let r = res_mastered_by(0, NodeSet::first(2));
    c.request(1, 1, r, LockMode::Ex).unwrap();
    c.settle();
    c.release(1, 1, r).unwrap();
    let ev = Event::KernelRequest {
        req_id: 5,
        resource: r,
        mode: LockMode::Ex,
        flags: LockFlags::NOQUEUE,
        timeout_ms: 0,
    };
    c.event(0, ev.clone()).unwrap();
    c.settle();
    assert_eq!(c.denied(0, 5), Some(EAGAIN));
    // The deny came with a BAST: the cached lock is gone, so a retry succeeds.
    let retry = Event::KernelRequest {
        req_id: 6,
        resource: r,
        mode: LockMode::Ex,
        flags: LockFlags::NOQUEUE,
        timeout_ms: 0,
    };
    c.event(0, retry).unwrap();
    c.settle();
    assert!(c.granted(0, 6));
}

#[test]
fn fifo_compatible_newcomer_does_not_jump_a_blocked_waiter() {
    let mut c = Cluster::new(3);
    let r = res_mastered_by(0, NodeSet::first(3));
    c.request(0, 1, r, LockMode::Pr).unwrap();
    c.settle();
    c.request(1, 2, r, LockMode::Ex).unwrap();
    c.settle();
    c.request(2, 3, r, LockMode::Pr).unwrap();
    c.settle();
    assert!(!c.granted(1, 2));
    assert!(
        !c.granted(2, 3),
        "PR is compatible with the granted PR but queued behind EX"
    );
    c.release(0, 1, r).unwrap();
    c.settle();
    assert!(c.granted(1, 2));
    assert!(!c.granted(2, 3));
    c.release(1, 2, r).unwrap();
    c.settle();
    assert!(c.granted(2, 3));
}

#[test]
fn timeout_denies_and_removes_from_master_queue() {
    let mut c = Cluster::new(3);
    let r = res_mastered_by(0, NodeSet::first(3));
    c.request(1, 1, r, LockMode::Ex).unwrap();
    c.settle();
    let ev = Event::KernelRequest {
        req_id: 2,
        resource: r,
        mode: LockMode::Ex,
        flags: LockFlags::TIMEOUT_MS,
        timeout_ms: 100,
    };
    c.event(2, ev).unwrap();
    c.settle();
    c.advance(100);
    c.settle();
    assert_eq!(c.denied(2, 2), Some(ETIMEDOUT));
    let d = c.core(0).dump_master();
    assert!(
        d[0].waiting.is_empty(),
        "cancel removed the master's wait entry: {d:?}"
    );
    // A later PR from n0 is not stuck behind the dead EX waiter... it waits only for n1.
    c.release(1, 1, r).unwrap();
    c.request(0, 3, r, LockMode::Pr).unwrap();
    c.settle();
    assert!(c.granted(0, 3));
}

#[test]
fn kernel_convert_up_and_down() {
    let mut c = Cluster::new(2);
    let r = res_mastered_by(1, NodeSet::first(2));
    c.request(0, 1, r, LockMode::Pr).unwrap();
    c.settle();
    c.convert(0, 1, r, LockMode::Ex).unwrap();
    c.settle();
    assert_eq!(
        c.kernel[0]
            .iter()
            .filter(|k| matches!(k, KernelMsg::Grant { req_id: 1, .. }))
            .count(),
        2
    );
    assert_eq!(c.core(0).dump_local()[0].holders, vec![(1, LockMode::Ex)]);
    c.convert(0, 1, r, LockMode::Pr).unwrap();
    assert_eq!(c.core(0).dump_local()[0].holders, vec![(1, LockMode::Pr)]);
    // n1 wants PR: the node lock (EX) is down-converted to PR on the BAST, not released.
    c.request(1, 9, r, LockMode::Pr).unwrap();
    c.settle();
    assert!(c.granted(1, 9));
    assert_eq!(c.core(0).dump_local()[0].held, Some(LockMode::Pr));
}

#[test]
fn conversion_deadlock_denies_one_converter() {
    let mut c = Cluster::new(3);
    let r = res_mastered_by(2, NodeSet::first(3));
    c.request(0, 1, r, LockMode::Pr).unwrap();
    c.request(1, 1, r, LockMode::Pr).unwrap();
    c.settle();
    c.convert(0, 1, r, LockMode::Ex).unwrap();
    c.convert(1, 1, r, LockMode::Ex).unwrap();
    c.settle();
    let denied = [c.denied(0, 1), c.denied(1, 1)];
    assert!(denied.contains(&Some(EDEADLK)), "{denied:?}");
    // The denied one keeps PR; once it releases, the other converts.
    let loser = if denied[0] == Some(EDEADLK) { 0 } else { 1 };
    c.release(loser, 1, r).unwrap();
    c.settle();
    assert!(c.granted(1 - loser, 1));
    assert_eq!(
        c.core(1 - loser).dump_local()[0].holders,
        vec![(1, LockMode::Ex)]
    );
}

/// Two holders on one node both convert PR -> CW: each waits for the other's PR, a local
/// conversion deadlock. The newer is denied `EDEADLK` and keeps PR; once it releases, the
/// older converts. (Before the fix both waited for ever.)
#[test]
fn two_local_conversions_that_block_each_other_are_a_deadlock() {
    let mut c = Cluster::new(2);
    let r = res_mastered_by(1, NodeSet::first(2));
    c.request(0, 1, r, LockMode::Pr).unwrap();
    c.request(0, 2, r, LockMode::Pr).unwrap();
    c.settle();
    c.convert(0, 1, r, LockMode::Cw).unwrap();
    c.convert(0, 2, r, LockMode::Cw).unwrap();
    c.settle();
    assert_eq!(c.denied(0, 2), Some(EDEADLK));
    assert_eq!(c.denied(0, 1), None, "the older conversion still waits");
    c.release(0, 2, r).unwrap();
    c.settle();
    assert_eq!(c.core(0).dump_local()[0].holders, vec![(1, LockMode::Cw)]);
}

/// A down-conversion is granted at once even behind a conversion it blocks, which it then
/// unblocks (before the fix a node served its conversions strictly FIFO and both waited).
#[test]
fn down_conversion_is_not_queued_behind_a_conversion_it_blocks() {
    let mut c = Cluster::new(2);
    let r = res_mastered_by(1, NodeSet::first(2));
    c.request(0, 1, r, LockMode::Pr).unwrap();
    c.request(0, 2, r, LockMode::Nl).unwrap();
    c.settle();
    c.convert(0, 2, r, LockMode::Cw).unwrap();
    c.settle();
    c.convert(0, 1, r, LockMode::Nl).unwrap();
    c.settle();
    let mut holders = c.core(0).dump_local()[0].holders.clone();
    holders.sort();
    assert_eq!(holders, vec![(1, LockMode::Nl), (2, LockMode::Cw)]);
}

/// A BAST calls back every local holder whose mode blocks the waiting request, once each,
/// with the strongest mode it may keep; the lock passes on only after the kernel answers
/// (here with a down-conversion to that mode).
#[test]
fn bast_calls_back_each_blocking_holder_once_and_waits_for_its_answer() {
    let mut c = Cluster::new(2);
    let r = res_mastered_by(1, NodeSet::first(2));
    c.request(0, 1, r, LockMode::Ex).unwrap();
    c.settle();
    c.request(1, 9, r, LockMode::Pr).unwrap();
    c.settle();
    let callbacks = |c: &Cluster| {
        c.kernel[0]
            .iter()
            .filter(|k| matches!(k, KernelMsg::Callback { .. }))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        callbacks(&c),
        vec![KernelMsg::Callback {
            req_id: 1,
            resource: r,
            mode: LockMode::Pr
        }]
    );
    assert!(!c.granted(1, 9), "the lock waits for the kernel's answer");
    // Another local request pumps the resource again: no second callback.
    c.request(0, 2, r, LockMode::Nl).unwrap();
    c.settle();
    assert_eq!(callbacks(&c).len(), 1);
    // The kernel's clean point is done: it down-converts to what it may keep.
    c.convert(0, 1, r, LockMode::Pr).unwrap();
    c.settle();
    assert!(c.granted(1, 9));
    assert_eq!(c.core(0).dump_local()[0].held, Some(LockMode::Pr));
    assert_eq!(callbacks(&c).len(), 1);
}

/// The node table's limits (`Config::limits`, lowered here to reach them): a new request past
/// `requests_max` is denied `ENOMEM` while a conversion of a held request still goes through;
/// a new resource past `resources_max` is denied `ENOMEM` unless an idle entry can be evicted.
#[test]
fn node_table_limits_deny_with_enomem_and_evict_idle_entries() {
    let mut c = Cluster::new(2);
    let mut cfg = Config::booted(0, 2);
    cfg.limits = Limits {
        resources_max: 2,
        requests_max: 2,
    };
    c.cores[0] = Some(Core::new(cfg));
    let r1 = res_mastered_by(1, NodeSet::first(2));
    let r2 = ResourceId::inode(1, r1.a + 1);
    let r3 = ResourceId::inode(1, r1.a + 2);
    c.request(0, 1, r1, LockMode::Pr).unwrap();
    c.request(0, 2, r2, LockMode::Pr).unwrap();
    c.settle();
    assert!(c.granted(0, 1) && c.granted(0, 2));
    // Two requests outstanding: a third is refused, a conversion of a held one is not.
    c.request(0, 3, r1, LockMode::Nl).unwrap();
    assert_eq!(c.denied(0, 3), Some(ENOMEM));
    c.convert(0, 1, r1, LockMode::Nl).unwrap();
    assert!(
        c.kernel[0]
            .iter()
            .filter(|k| matches!(k, KernelMsg::Grant { req_id: 1, .. }))
            .count()
            == 2
    );
    // Two resources tracked and both in use: a third resource is refused.
    c.release(0, 2, r2).unwrap();
    c.settle();
    c.request(0, 4, r3, LockMode::Pr).unwrap();
    assert_eq!(c.denied(0, 4), Some(ENOMEM), "r2 still caches its lock");
    // Once r2's cached lock is given up (a BAST) its entry is idle and is evicted for r3.
    c.request(1, 9, r2, LockMode::Ex).unwrap();
    c.settle();
    assert!(c.granted(1, 9));
    c.request(0, 5, r3, LockMode::Pr).unwrap();
    c.settle();
    assert!(c.granted(0, 5));
    assert_eq!(c.core(0).dump_local().len(), 2);
}

/// A kernel conversion that needs the master goes before a first request of its node whose
/// `Lock` is in flight: that `Lock` is withdrawn, and the master's queue then shows the
/// conversion's need, so a conversion deadlock across nodes is visible there.
#[test]
fn conversion_needing_the_master_withdraws_a_first_requests_lock() {
    let mut c = Cluster::new(2);
    let r = res_mastered_by(1, NodeSet::first(2));
    c.request(0, 1, r, LockMode::Nl).unwrap();
    c.request(1, 1, r, LockMode::Pr).unwrap();
    c.settle();
    // n0's first request for PW waits at the master behind n1's PR.
    c.request(0, 2, r, LockMode::Pw).unwrap();
    c.settle();
    let queued = |c: &Cluster| {
        let d = &c.core(1).dump_master()[0];
        d.converting
            .iter()
            .chain(&d.waiting)
            .map(|e| (e.node, e.mode))
            .collect::<Vec<_>>()
    };
    assert_eq!(queued(&c), vec![(0, LockMode::Pw)]);
    // n0's kernel converts req 1 NL -> EX: it goes first on n0, so its need replaces the PW.
    c.convert(0, 1, r, LockMode::Ex).unwrap();
    c.settle();
    assert_eq!(queued(&c), vec![(0, LockMode::Ex)]);
    assert_eq!(c.denied(0, 2), None, "the first request still waits on n0");
    c.release(1, 1, r).unwrap();
    c.settle();
    assert!(c.granted(0, 1));
}

/// Three local holders of PR all converting to CW form one cycle: the newest conversions
/// are denied until the cycle is gone, then the oldest converts once the others release.
#[test]
fn three_local_conversions_in_a_cycle_are_broken() {
    let mut c = Cluster::new(2);
    let r = res_mastered_by(1, NodeSet::first(2));
    for req in 1..=3 {
        c.request(0, req, r, LockMode::Pr).unwrap();
    }
    c.settle();
    for req in 1..=3 {
        c.convert(0, req, r, LockMode::Cw).unwrap();
    }
    c.settle();
    assert_eq!(
        (c.denied(0, 1), c.denied(0, 2), c.denied(0, 3)),
        (None, Some(EDEADLK), Some(EDEADLK))
    );
    c.release(0, 2, r).unwrap();
    c.release(0, 3, r).unwrap();
    c.settle();
    assert_eq!(c.core(0).dump_local()[0].holders, vec![(1, LockMode::Cw)]);
}

/// The fence agents of an epoch run on its lowest-id member: when node 0 is lost, node 1.
#[test]
fn the_lowest_surviving_member_fences() {
    let mut c = Cluster::new(3);
    assert_eq!(c.core(2).fencer(), 0);
    c.crash(0, 2);
    assert_eq!((c.core(1).fencer(), c.core(2).fencer()), (1, 1));
}

#[test]
fn recovery_purges_lost_holder_and_grants_waiter() {
    let mut c = Cluster::new(3);
    let all = NodeSet::first(3);
    let r = res_mastered_by(2, all);
    c.request(0, 1, r, LockMode::Ex).unwrap();
    c.settle();
    c.request(1, 2, r, LockMode::Ex).unwrap();
    c.settle();
    assert!(!c.granted(1, 2));
    // The master dies; n0 still holds EX, n1 waits.
    c.crash(2, 2);
    assert!(c.core(0).recovering());
    assert!(c.fences.iter().any(|(_, t)| *t == 2));
    c.settle();
    assert!(!c.core(0).recovering() && !c.core(1).recovering());
    assert!(!c.granted(1, 2), "n0 still holds EX");
    c.release(0, 1, r).unwrap();
    c.settle();
    assert!(c.granted(1, 2));
    for n in [0, 1] {
        assert!(c.kernel[n].contains(&KernelMsg::RecoveryStart { epoch: 2 }));
        assert!(c.kernel[n].contains(&KernelMsg::RecoveryDone { epoch: 2 }));
        let h = c.core(n as NodeId).recovery_history();
        assert_eq!(h.last().unwrap().lost, NodeSet::EMPTY.with(2));
    }
}

#[test]
fn lost_node_locks_are_purged() {
    let mut c = Cluster::new(3);
    let all = NodeSet::first(3);
    let r = res_mastered_by(0, all);
    c.request(2, 1, r, LockMode::Ex).unwrap();
    c.settle();
    c.request(1, 2, r, LockMode::Ex).unwrap();
    c.settle();
    assert!(!c.granted(1, 2));
    c.crash(2, 2);
    c.settle();
    assert!(c.granted(1, 2), "the lost holder's EX is purged");
    for d in c
        .core(0)
        .dump_master()
        .iter()
        .chain(c.core(1).dump_master().iter())
    {
        assert!(d.granted.iter().all(|g| g.node != 2));
    }
}

#[test]
fn nothing_granted_until_fence_confirmed() {
    let mut c = Cluster::new(3);
    let r = res_mastered_by(0, NodeSet::first(3));
    c.request(0, 1, r, LockMode::Pr).unwrap();
    c.settle();
    c.release(0, 1, r).unwrap();
    c.crash(2, 2);
    // Deliver messages but hold the fences back.
    while c.step() {}
    c.request(0, 2, r, LockMode::Pr).unwrap();
    while c.step() {}
    assert!(!c.granted(0, 2), "granted while recovering");
    c.settle();
    assert!(c.granted(0, 2));
}

#[test]
fn minority_stops_granting_and_self_fences() {
    let mut c = Cluster::new(3);
    let r = res_mastered_by(0, NodeSet::first(3));
    c.request(0, 1, r, LockMode::Pr).unwrap();
    c.settle();
    c.release(0, 1, r).unwrap();
    c.crash(1, 2);
    c.crash(2, 3);
    c.settle();
    assert!(c.self_fenced.iter().any(|(n, _)| *n == 0));
    c.request(0, 2, r, LockMode::Pr).unwrap();
    assert_eq!(
        c.denied(0, 2),
        Some(ENOLCK),
        "a minority node must not grant even from cache"
    );
}

#[test]
fn bad_input_is_rejected_not_panicking() {
    let mut c = Cluster::new(2);
    let r = ResourceId::inode(1, 1);
    c.request(0, 1, r, LockMode::Ex).unwrap();
    assert_eq!(
        c.request(0, 1, r, LockMode::Ex),
        Err(Reject::DuplicateRequest(1))
    );
    assert_eq!(c.release(0, 99, r), Err(Reject::UnknownRequest(99)));
    let bad = Event::KernelRequest {
        req_id: 3,
        resource: r,
        mode: LockMode::Ex,
        flags: LockFlags(64),
        timeout_ms: 0,
    };
    assert_eq!(c.event(0, bad), Err(Reject::InvalidFlags(64)));
    let malformed = ResourceId { b: 3, ..r };
    assert_eq!(
        c.request(0, 4, malformed, LockMode::Ex),
        Err(Reject::MalformedResource)
    );
    let msg = PeerMsg {
        epoch: 1,
        body: PeerBody::RebuildDone,
    };
    assert_eq!(
        c.event(
            0,
            Event::Peer {
                from: 9,
                msg: msg.clone()
            }
        ),
        Err(Reject::NotMember(9))
    );
    assert_eq!(
        c.event(0, Event::Peer { from: 0, msg }),
        Err(Reject::NotMember(0))
    );
    let old = PeerMsg {
        epoch: 0,
        body: PeerBody::RebuildDone,
    };
    assert!(matches!(
        c.event(0, Event::Peer { from: 1, msg: old }),
        Err(Reject::StaleEpoch { .. })
    ));
    assert!(matches!(
        c.event(
            0,
            Event::Membership {
                epoch: 1,
                members: NodeSet::first(2)
            }
        ),
        Err(Reject::BadMembership(_))
    ));
    assert!(matches!(
        c.event(0, Event::FenceConfirmed { node: 1 }),
        Err(Reject::Stale(_))
    ));
    c.settle();
    c.core(0).check_invariants().unwrap();
}

#[test]
fn future_epoch_messages_wait_for_their_membership() {
    let mut c = Cluster::new(3);
    let r = res_mastered_by(0, NodeSet::first(3).without(2));
    c.request(0, 1, r, LockMode::Pr).unwrap();
    c.settle();
    // n0, the fencer, hears of epoch 2 first: it fences n2 and sends its `Fenced` and rebuild
    // messages to n1, still at epoch 1, which holds them.
    let members = NodeSet::first(2);
    c.event(0, Event::Membership { epoch: 2, members }).unwrap();
    assert_eq!(c.fences, vec![(0, 2)]);
    c.fences.clear();
    c.event(0, Event::FenceConfirmed { node: 2 }).unwrap();
    while c.step() {}
    assert_eq!(c.core(1).epoch(), 1);
    assert!(!c.core(1).recovering());
    assert!(c.core(0).recovering(), "n0 waits for n1's rebuild messages");
    // Then n1 gets the membership: the held messages are replayed and recovery completes,
    // with no second fence agent.
    c.event(1, Event::Membership { epoch: 2, members }).unwrap();
    c.settle();
    assert!(c.fences.is_empty(), "only the fencer fenced");
    assert!(!c.core(0).recovering() && !c.core(1).recovering());
    c.request(1, 2, r, LockMode::Pr).unwrap();
    c.settle();
    assert!(c.granted(1, 2));
}

/// Messages two epochs ahead stay held through the membership of the epoch between.
#[test]
fn messages_two_epochs_ahead_wait_through_the_epoch_between() {
    let mut c = Cluster::new(3);
    let members = NodeSet::first(2);
    // n0 loses n2 (epoch 2), fences it, then reinstalls the same view (epoch 3, as a resync
    // does): its messages of both epochs reach n1, still at epoch 1.
    c.event(0, Event::Membership { epoch: 2, members }).unwrap();
    c.event(0, Event::FenceConfirmed { node: 2 }).unwrap();
    c.event(0, Event::Membership { epoch: 3, members }).unwrap();
    c.fences.clear();
    while c.step() {}
    c.event(1, Event::Membership { epoch: 2, members }).unwrap();
    while c.step() {}
    assert_eq!(c.core(1).epoch(), 2);
    c.event(1, Event::Membership { epoch: 3, members }).unwrap();
    c.settle();
    assert!(!c.core(0).recovering() && !c.core(1).recovering());
    assert!(c.fences.is_empty(), "n2 was fenced once, in epoch 2");
}

#[test]
fn future_buffer_is_bounded() {
    let mut c = Cluster::new(2);
    let msg = PeerMsg {
        epoch: 5,
        body: PeerBody::RebuildDone,
    };
    for _ in 0..FUTURE_MSGS_MAX {
        c.event(
            0,
            Event::Peer {
                from: 1,
                msg: msg.clone(),
            },
        )
        .unwrap();
    }
    assert_eq!(
        c.event(0, Event::Peer { from: 1, msg }),
        Err(Reject::FutureBufferFull)
    );
}

#[test]
fn node_layer_messages_during_fencing_are_rejected() {
    let mut c = Cluster::new(3);
    let r = res_mastered_by(1, NodeSet::first(2));
    c.event(
        0,
        Event::Membership {
            epoch: 2,
            members: NodeSet::first(2),
        },
    )
    .unwrap();
    assert_eq!(c.core(0).phase(), Phase::Fencing);
    let v = Version {
        epoch: 2,
        counter: 0,
    };
    for body in [
        PeerBody::Grant {
            resource: r,
            mode: LockMode::Pr,
            version: v,
            seq: 1,
        },
        PeerBody::Bast {
            resource: r,
            mode: LockMode::Pr,
        },
    ] {
        let ev = Event::Peer {
            from: 1,
            msg: PeerMsg { epoch: 2, body },
        };
        assert!(matches!(c.event(0, ev), Err(Reject::Unexpected(_))));
    }
}

#[test]
fn minority_denies_its_waiters_and_stays_stopped() {
    let mut c = Cluster::new(3);
    let r = res_mastered_by(1, NodeSet::first(3));
    c.request(1, 1, r, LockMode::Ex).unwrap();
    c.settle();
    c.request(0, 2, r, LockMode::Ex).unwrap();
    c.settle();
    assert!(!c.granted(0, 2));
    // n0 finds itself alone: its waiter is denied, and nothing restarts it.
    c.event(
        0,
        Event::Membership {
            epoch: 2,
            members: NodeSet::EMPTY.with(0),
        },
    )
    .unwrap();
    assert_eq!(c.denied(0, 2), Some(ENOLCK));
    assert_eq!(c.core(0).phase(), Phase::Stopped);
    for node in [1, 2] {
        let _ = c.event(0, Event::FenceConfirmed { node });
    }
    assert_eq!(
        c.core(0).phase(),
        Phase::Stopped,
        "a stopped node does not rebuild"
    );
    assert!(c.self_fenced.contains(&(0, 2)));
}

#[test]
fn local_waiter_limit_denies_with_eagain() {
    let mut c = Cluster::new(1);
    let r = ResourceId::inode(1, 1);
    c.request(0, 0, r, LockMode::Ex).unwrap();
    for req in 1..=WAITERS_PER_RESOURCE_MAX as u64 {
        c.request(0, req, r, LockMode::Ex).unwrap();
    }
    let over = WAITERS_PER_RESOURCE_MAX as u64 + 1;
    c.request(0, over, r, LockMode::Ex).unwrap();
    assert_eq!(c.denied(0, over), Some(EAGAIN));
    assert_eq!(
        c.core(0).dump_local()[0].waiting.len(),
        WAITERS_PER_RESOURCE_MAX
    );
}

#[test]
fn master_dump_shows_conversions_and_forgets_idle_resources() {
    let mut c = Cluster::new(2);
    let r = res_mastered_by(0, NodeSet::first(2));
    // n0 holds CR, n1 PR: a conversion's `held` must be its own node's mode.
    c.request(0, 1, r, LockMode::Cr).unwrap();
    c.request(1, 1, r, LockMode::Pr).unwrap();
    c.settle();
    c.convert(1, 1, r, LockMode::Ex).unwrap();
    c.settle();
    let d = &c.core(0).dump_master()[0];
    assert_eq!(d.converting.len(), 1, "{d:?}");
    assert_eq!(
        (
            d.converting[0].node,
            d.converting[0].mode,
            d.converting[0].held
        ),
        (1, LockMode::Ex, Some(LockMode::Pr))
    );
    assert_eq!(
        d.granted
            .iter()
            .map(|g| (g.node, g.held))
            .collect::<Vec<_>>(),
        vec![(0, None), (1, None)]
    );
    c.release(0, 1, r).unwrap();
    c.settle();
    assert!(c.granted(1, 1));
    c.release(1, 1, r).unwrap();
    c.settle();
    // n1 caches EX. A try-lock from n0 is denied, and its BAST makes n1 give the cached lock
    // up: nobody holds anything, and the master forgets the resource.
    let ev = Event::KernelRequest {
        req_id: 3,
        resource: r,
        mode: LockMode::Ex,
        flags: LockFlags::NOQUEUE,
        timeout_ms: 0,
    };
    c.event(0, ev).unwrap();
    c.settle();
    assert_eq!(c.denied(0, 3), Some(EAGAIN));
    assert_eq!(c.core(1).dump_local()[0].held, None);
    assert!(
        c.core(0).dump_master().is_empty(),
        "{:?}",
        c.core(0).dump_master()
    );
}

#[test]
fn duplicate_lock_from_a_queued_node_is_rejected() {
    let mut c = Cluster::new(2);
    let r = res_mastered_by(0, NodeSet::first(2));
    c.request(0, 1, r, LockMode::Ex).unwrap();
    c.request(1, 1, r, LockMode::Ex).unwrap();
    c.settle();
    let dup = PeerMsg {
        epoch: 1,
        body: PeerBody::Lock {
            resource: r,
            mode: LockMode::Ex,
            noqueue: false,
            seq: 99,
        },
    };
    assert!(matches!(
        c.event(0, Event::Peer { from: 1, msg: dup }),
        Err(Reject::Unexpected(_))
    ));
}

#[test]
fn cancel_removes_only_its_own_request() {
    let mut c = Cluster::new(3);
    let r = res_mastered_by(2, NodeSet::first(3));
    c.request(2, 1, r, LockMode::Ex).unwrap();
    // n1 and n0 both queue behind n2's EX, each with its own sequence number 1.
    c.request(1, 1, r, LockMode::Ex).unwrap();
    c.settle();
    let cr = Event::KernelRequest {
        req_id: 1,
        resource: r,
        mode: LockMode::Cr,
        flags: LockFlags::TIMEOUT_MS,
        timeout_ms: 10,
    };
    c.event(0, cr).unwrap();
    c.settle();
    c.advance(10);
    c.settle();
    assert_eq!(c.denied(0, 1), Some(ETIMEDOUT));
    assert_eq!(c.denied(1, 1), None, "n1's request was not cancelled");
    let d = &c.core(2).dump_master()[0];
    assert_eq!(
        d.waiting.iter().map(|w| w.node).collect::<Vec<_>>(),
        vec![1]
    );
}

#[test]
fn bast_goes_once_and_only_to_blocking_holders() {
    let mut c = Cluster::new(3);
    let r = res_mastered_by(2, NodeSet::first(3));
    c.request(0, 1, r, LockMode::Pr).unwrap();
    c.request(1, 1, r, LockMode::Cr).unwrap();
    c.settle();
    c.tracing = true;
    // PW is blocked by n0's PR only (CR is compatible with PW).
    c.request(2, 1, r, LockMode::Pw).unwrap();
    c.settle();
    // n1 converts its node lock CR -> PR (converts go first, PR is compatible with PR): the
    // grant pass runs again; n0 was already told, n1 now blocks PW too.
    c.request(1, 2, r, LockMode::Pr).unwrap();
    c.settle();
    assert!(c.granted(1, 2));
    let basts: Vec<String> = c
        .trace
        .lines()
        .filter(|l| l.contains("Bast") && !l.contains(" <- "))
        .map(String::from)
        .collect();
    let want: Vec<String> = [0, 1]
        .iter()
        .map(|n| format!("n2 -> n{n} Bast inode(1,{}) (blocked PW)", r.a))
        .collect();
    assert_eq!(basts, want, "{}", c.trace);
    assert!(!c.granted(2, 1));
    c.release(0, 1, r).unwrap();
    c.release(1, 1, r).unwrap();
    c.release(1, 2, r).unwrap();
    c.settle();
    assert!(c.granted(2, 1), "{}", c.trace);
}

#[test]
fn bad_request_ids_and_conversions() {
    let mut c = Cluster::new(1);
    let r = ResourceId::inode(1, 1);
    c.request(0, 1, r, LockMode::Pr).unwrap();
    assert!(c.granted(0, 1));
    // A new request reusing a granted id is a duplicate.
    assert_eq!(
        c.request(0, 1, r, LockMode::Pr),
        Err(Reject::DuplicateRequest(1))
    );
    // Converting a request this kernel never made, or naming another resource: EINVAL.
    c.convert(0, 7, r, LockMode::Ex).unwrap();
    assert_eq!(c.denied(0, 7), Some(EINVAL));
    let other = ResourceId::inode(1, 2);
    c.convert(0, 1, other, LockMode::Ex).unwrap();
    assert_eq!(c.denied(0, 1), Some(EINVAL));
    assert_eq!(
        c.core(0).dump_local()[0].holders,
        vec![(1, LockMode::Pr)],
        "the lock is unchanged"
    );
}

#[test]
fn recovery_rebuilds_shared_locks_from_every_holder() {
    let all = NodeSet::first(3);
    let survivors = NodeSet::first(2);
    let r = (0..10_000)
        .map(|ino| ResourceId::inode(1, ino))
        .find(|r| master_of(all, r) == Some(2) && master_of(survivors, r) == Some(0))
        .unwrap();
    let mut c = Cluster::new(3);
    c.request(0, 1, r, LockMode::Pr).unwrap();
    c.request(1, 1, r, LockMode::Pr).unwrap();
    c.settle();
    c.crash(2, 2);
    c.settle();
    assert!(!c.core(0).recovering() && !c.core(1).recovering());
    let d = &c.core(0).dump_master()[0];
    assert_eq!(
        d.granted
            .iter()
            .map(|g| (g.node, g.mode))
            .collect::<Vec<_>>(),
        vec![(0, LockMode::Pr), (1, LockMode::Pr)]
    );
    assert_eq!(
        d.version.epoch, 2,
        "a rebuilt resource starts a new version"
    );
}

#[test]
fn kernel_cancel_withdraws_a_waiter_silently_and_releases_a_grant() {
    let mut c = Cluster::new(2);
    let r = res_mastered_by(0, NodeSet::first(2));
    c.request(0, 1, r, LockMode::Ex).unwrap();
    let ev = Event::KernelRequest {
        req_id: 2,
        resource: r,
        mode: LockMode::Ex,
        flags: LockFlags::TIMEOUT_MS,
        timeout_ms: 50,
    };
    c.event(1, ev).unwrap();
    c.settle();
    assert_eq!(c.timers.len(), 1);
    let before = c.kernel[1].len();
    c.event(1, Event::KernelCancel { req_id: 2 }).unwrap();
    c.settle();
    assert!(c.timers.is_empty(), "the timeout timer is cancelled");
    assert_eq!(c.kernel[1].len(), before, "no reply after a cancel");
    assert!(c.core(0).dump_master()[0].waiting.is_empty());
    // A late timer for it is stale.
    assert!(matches!(
        c.event(
            1,
            Event::Timer {
                id: TimerId::Request(2)
            }
        ),
        Err(Reject::Stale(_))
    ));
    // Cancelling a granted request releases it.
    c.event(0, Event::KernelCancel { req_id: 1 }).unwrap();
    assert!(c.core(0).dump_local()[0].holders.is_empty());
    assert_eq!(
        c.event(0, Event::KernelCancel { req_id: 1 }),
        Err(Reject::UnknownRequest(1))
    );
}

#[test]
fn timer_of_a_granted_request_is_stale() {
    let mut c = Cluster::new(1);
    let r = ResourceId::inode(1, 1);
    let ev = Event::KernelRequest {
        req_id: 1,
        resource: r,
        mode: LockMode::Ex,
        flags: LockFlags::TIMEOUT_MS,
        timeout_ms: 50,
    };
    c.event(0, ev).unwrap();
    assert!(c.granted(0, 1));
    assert!(c.timers.is_empty());
    assert!(matches!(
        c.event(
            0,
            Event::Timer {
                id: TimerId::Request(1)
            }
        ),
        Err(Reject::Stale(_))
    ));
    assert_eq!(c.core(0).dump_local()[0].holders, vec![(1, LockMode::Ex)]);
}

#[test]
fn sequence_numbers_increase_across_releases_and_locks() {
    let mut c = Cluster::new(2);
    c.tracing = true;
    let r = res_mastered_by(0, NodeSet::first(2));
    c.request(1, 1, r, LockMode::Ex).unwrap();
    c.settle();
    c.release(1, 1, r).unwrap();
    c.request(0, 1, r, LockMode::Ex).unwrap();
    c.settle();
    c.release(0, 1, r).unwrap();
    c.request(1, 2, r, LockMode::Ex).unwrap();
    c.settle();
    assert!(c.granted(1, 2));
    let seqs: Vec<u64> = c
        .trace
        .lines()
        .filter(|l| l.starts_with("n1 -> n0"))
        .filter_map(|l| l.rsplit("seq=").next()?.parse().ok())
        .collect();
    assert!(
        seqs.len() >= 3 && seqs.windows(2).all(|w| w[0] < w[1]),
        "{seqs:?}\n{}",
        c.trace
    );
}

#[test]
fn two_nodes_upgrading_cached_locks_do_not_deadlock() {
    let mut c = Cluster::new(3);
    let r = res_mastered_by(2, NodeSet::first(3));
    c.request(0, 1, r, LockMode::Pr).unwrap();
    c.request(1, 1, r, LockMode::Pr).unwrap();
    c.settle();
    c.release(0, 1, r).unwrap();
    c.release(1, 1, r).unwrap();
    // Both cached PR locks are unused: each is given up before asking for EX.
    c.request(0, 2, r, LockMode::Ex).unwrap();
    c.request(1, 2, r, LockMode::Ex).unwrap();
    c.settle();
    assert!(c.granted(0, 2) ^ c.granted(1, 2));
    assert_eq!(
        (c.denied(0, 2), c.denied(1, 2)),
        (None, None),
        "no EDEADLK for cached locks"
    );
}

#[test]
fn answers_with_the_wrong_sequence_number_are_rejected() {
    let mut c = Cluster::new(2);
    let r = res_mastered_by(1, NodeSet::first(2));
    c.request(0, 1, r, LockMode::Ex).unwrap();
    let v = Version {
        epoch: 1,
        counter: 0,
    };
    for body in [
        PeerBody::Grant {
            resource: r,
            mode: LockMode::Ex,
            version: v,
            seq: 99,
        },
        PeerBody::Deny {
            resource: r,
            errno: EAGAIN,
            seq: 99,
        },
        PeerBody::ReleaseAck {
            resource: r,
            version: v,
            seq: 99,
        },
    ] {
        let ev = Event::Peer {
            from: 1,
            msg: PeerMsg { epoch: 1, body },
        };
        assert!(matches!(c.event(0, ev), Err(Reject::Unexpected(_))));
    }
    assert!(!c.granted(0, 1) && c.denied(0, 1).is_none());
    c.settle();
    assert!(c.granted(0, 1));
    c.release(0, 1, r).unwrap();
    let ack = PeerBody::ReleaseAck {
        resource: r,
        version: v,
        seq: 1,
    };
    let ev = Event::Peer {
        from: 1,
        msg: PeerMsg {
            epoch: 1,
            body: ack,
        },
    };
    assert!(
        matches!(c.event(0, ev), Err(Reject::Unexpected(_))),
        "nothing is being released"
    );
}

/// A daemon that stops cleanly (its kernel holds nothing) is dropped from the membership
/// without a fence; the locks it mastered are rebuilt on the survivors and its cached lock is
/// gone, so a survivor gets that resource.
#[test]
fn clean_leave_is_not_fenced_and_recovery_rebuilds_without_it() {
    let mut c = Cluster::new(3);
    let all = NodeSet::first(3);
    let mastered_by_leaver = res_mastered_by(2, all);
    let cached_by_leaver = res_mastered_by(0, all);
    // n0 holds a lock that the leaver masters; the leaver holds one cached (kernel released).
    c.request(0, 1, mastered_by_leaver, LockMode::Ex).unwrap();
    c.request(2, 1, cached_by_leaver, LockMode::Ex).unwrap();
    c.settle();
    c.release(2, 1, cached_by_leaver).unwrap();
    c.settle();
    assert_eq!(c.core(2).dump_local()[0].held, Some(LockMode::Ex));
    c.leave(2, 2).unwrap();
    assert!(c.fences.is_empty(), "a clean leave needs no fence");
    for n in [0, 1] {
        assert!(c.kernel[n].contains(&KernelMsg::NodeStatus {
            node: 2,
            state: NodeState::Down
        }));
    }
    c.settle();
    assert!(!c.core(0).recovering() && !c.core(1).recovering());
    assert!(c.granted(0, 1), "n0 keeps its lock through the remastering");
    c.request(1, 5, cached_by_leaver, LockMode::Ex).unwrap();
    c.settle();
    assert!(c.granted(1, 5), "the leaver's cached lock went with it");
    c.request(1, 6, mastered_by_leaver, LockMode::Ex).unwrap();
    c.settle();
    assert!(!c.granted(1, 6), "n0's EX was rebuilt on the new master");
}

/// A node whose kernel still holds (or waits for) a lock cannot leave cleanly: the leave is
/// refused with nothing sent, and when it goes anyway it is fenced.
#[test]
fn leave_with_kernel_locks_is_refused_and_such_a_node_is_fenced() {
    let mut c = Cluster::new(3);
    let r = res_mastered_by(0, NodeSet::first(3));
    c.request(2, 1, r, LockMode::Pr).unwrap();
    c.settle();
    assert_eq!(c.leave(2, 2), Err(Reject::Busy(1)));
    assert!(c.net.is_empty(), "a refused leave sends nothing");
    c.crash(2, 2);
    assert!(c.fences.iter().any(|(_, t)| *t == 2));
}

/// The membership may drop the leaver before its announcement arrives (it is then from an
/// older epoch): the survivors fence it, as for any lost node.
#[test]
fn leave_announced_after_the_membership_change_is_fenced() {
    let mut c = Cluster::new(3);
    c.event(2, Event::Leave).unwrap();
    let announcements: Vec<_> = c.net.drain(..).collect();
    assert_eq!(announcements.len(), 2);
    c.crash(2, 2);
    for (from, to, msg) in announcements {
        let r = c.event(to, Event::Peer { from, msg });
        assert!(matches!(r, Err(Reject::StaleEpoch { .. })), "{r:?}");
    }
    assert_eq!(c.fences, vec![(0, 2)], "the fencer fences the leaver");
}

/// One fence agent per lost node: the lowest-id member fences, the others ask it and wait for
/// its `Fenced`. If the fencer dies before confirming, the next fencer takes over both fences.
#[test]
fn one_fencer_per_loss_and_the_next_fencer_takes_over() {
    let mut c = Cluster::new(5);
    c.crash(4, 2);
    assert_eq!(
        c.fences,
        vec![(0, 4)],
        "only n0, the lowest id, runs the agent"
    );
    while c.step() {}
    for n in 1..4 {
        assert!(c.core(n).recovering(), "n{n} waits for the fencer's word");
        assert_eq!(c.core(n).awaiting_fence(), NodeSet::EMPTY.with(4));
        assert_eq!(c.core(n).fencer(), 0);
    }
    // The fencer dies before its agent confirms.
    c.fences.clear();
    c.crash(0, 3);
    let mut f = c.fences.clone();
    f.sort();
    assert_eq!(f, vec![(1, 0), (1, 4)], "n1 fences both, n4 included");
    c.settle();
    for n in 1..4 {
        assert!(!c.core(n).recovering(), "n{n} recovered");
        let downs: Vec<_> = c.kernel[n as usize]
            .iter()
            .filter(|k| {
                matches!(
                    k,
                    KernelMsg::NodeStatus {
                        state: NodeState::Down,
                        ..
                    }
                )
            })
            .collect();
        assert_eq!(downs.len(), 2, "n{n}: {downs:?}");
    }
    // A late ask for a node already fenced is answered at once, with no second agent.
    let before = c.net.len();
    c.event(
        1,
        Event::Peer {
            from: 2,
            msg: PeerMsg {
                epoch: 3,
                body: PeerBody::FenceAsk { node: 4 },
            },
        },
    )
    .unwrap();
    assert!(c.fences.is_empty() && c.replays.is_empty());
    assert_eq!(
        c.net.len(),
        before + 1,
        "answered with Replayed (a replayed node is fenced)"
    );
}

/// A `FenceAsk` that names a member (or a node outside the cluster) is refused: the fencer must
/// never start a fence agent against a live member on a peer's word.
#[test]
fn fence_ask_for_a_member_or_a_stranger_is_refused() {
    let mut c = Cluster::new(3);
    for node in [1, 2, 7] {
        let r = c.event(
            0,
            Event::Peer {
                from: 1,
                msg: PeerMsg {
                    epoch: 1,
                    body: PeerBody::FenceAsk { node },
                },
            },
        );
        assert!(matches!(r, Err(Reject::Stale(_))), "node {node}: {r:?}");
    }
    assert!(c.fences.is_empty() && c.net.is_empty());
}

/// A kernel that refuses the `CACHE_INVAL` a grant needs gets no grant: the waiter is denied
/// with the kernel's errno, the lock is given up without claiming the newest data, and the
/// next request invalidates again before it is granted.
#[test]
fn refused_invalidation_denies_the_waiter_and_the_next_grant_invalidates_again() {
    const EBUSY: i32 = -16;
    let mut c = Cluster::new(2);
    let r = res_mastered_by(0, NodeSet::first(2));
    // n0 writes under EX, so the version moves.
    c.request(0, 1, r, LockMode::Ex).unwrap();
    c.settle();
    c.release(0, 1, r).unwrap();
    c.settle();
    // n1's kernel cannot drop its pages.
    c.inval_errno[1] = EBUSY;
    c.request(1, 2, r, LockMode::Pr).unwrap();
    c.settle();
    assert_eq!(
        c.denied(1, 2),
        Some(EBUSY),
        "the grant needed a refused inval"
    );
    assert!(!c.kernel[1]
        .iter()
        .any(|m| matches!(m, KernelMsg::Grant { .. })));
    let d = &c.core(1).dump_local()[0];
    assert_eq!(d.held, None, "the unusable lock is given up");
    assert_eq!(d.version, None, "the pages are not known to be current");
    // The kernel recovers: the next request invalidates again, then is granted.
    c.inval_errno[1] = 0;
    let before = c.kernel[1].len();
    c.request(1, 3, r, LockMode::Pr).unwrap();
    c.settle();
    assert!(c.granted(1, 3));
    let k = &c.kernel[1][before..];
    assert!(
        matches!(k, [KernelMsg::CacheInval { resource, .. }, KernelMsg::Grant { req_id: 3, .. }] if *resource == r),
        "{k:?}"
    );
}

/// An answer to an invalidation nobody asked for is refused and changes nothing.
#[test]
fn stray_invalidation_answer_is_rejected() {
    let mut c = Cluster::new(1);
    let r = res_mastered_by(0, NodeSet::first(1));
    let stray = Event::CacheInvalDone {
        resource: r,
        errno: 0,
    };
    assert!(matches!(c.event(0, stray.clone()), Err(Reject::Stale(_))));
    c.request(0, 1, r, LockMode::Ex).unwrap();
    c.settle();
    assert!(c.granted(0, 1));
    assert!(matches!(c.event(0, stray), Err(Reject::Stale(_))));
}

/// While the kernel has not answered the invalidation, nothing is granted from the lock.
#[test]
fn grant_waits_for_the_invalidation_answer() {
    let r = res_mastered_by(0, NodeSet::first(1));
    let mut core = Core::new(Config::booted(0, 1));
    let mut out = Vec::new();
    let ask = |req_id| Event::KernelRequest {
        req_id,
        resource: r,
        mode: LockMode::Pr,
        flags: LockFlags::empty(),
        timeout_ms: 0,
    };
    core.handle(0, ask(1), &mut out).unwrap();
    assert!(
        matches!(out[..], [Action::Kernel(KernelMsg::CacheInval { .. })]),
        "{out:?}"
    );
    out.clear();
    core.handle(0, ask(2), &mut out).unwrap();
    assert!(
        out.is_empty(),
        "no grant from a lock being invalidated: {out:?}"
    );
    let done = Event::CacheInvalDone {
        resource: r,
        errno: 0,
    };
    core.handle(0, done, &mut out).unwrap();
    let granted: Vec<ReqId> = out
        .iter()
        .filter_map(|a| match a {
            Action::Kernel(KernelMsg::Grant { req_id, .. }) => Some(*req_id),
            _ => None,
        })
        .collect();
    assert_eq!(granted, vec![1, 2]);
}

// ---------------------------------------------------------------------------------------------
// Journal replay (DESIGN.md §5.5, issue 11): between the confirmed fence and the rebuild.
// ---------------------------------------------------------------------------------------------

/// The version `node`'s kernel got with the grant of `req_id`, if it was granted.
fn grant_version(c: &Cluster, node: NodeId, req_id: ReqId) -> Option<Version> {
    c.kernel[node as usize].iter().find_map(|k| match k {
        KernelMsg::Grant {
            req_id: r, version, ..
        } if *r == req_id => *version,
        _ => None,
    })
}

/// A node dies holding EX on a resource it also masters; a survivor waits for it. Nothing is
/// granted, and nobody resumes, until the fencer's replay of the dead node's journal is done;
/// then the waiter gets the lock with a version of the new epoch, so its kernel refreshes, and
/// the recovery record has the fence and replay times.
#[test]
fn journal_is_replayed_before_anything_resumes() {
    let mut c = Cluster::new(3);
    let r = res_mastered_by(2, NodeSet::first(3));
    c.request(2, 1, r, LockMode::Ex).unwrap();
    c.settle();
    let before = grant_version(&c, 2, 1).expect("n2 granted");
    c.request(1, 1, r, LockMode::Pr).unwrap();
    c.hold_replays = true;
    c.now_ms = 100;
    c.crash(2, 2);
    c.now_ms = 200;
    c.settle();
    assert_eq!(
        c.replays,
        vec![(0, 2)],
        "the fencer, n0, replays n2's journal"
    );
    // The fencer knows n2 fenced; n1 learns fence and replay together, from `Replayed`.
    assert_eq!(c.core(0).phase(), Phase::Replaying);
    assert_eq!(c.core(0).awaiting_fence(), NodeSet::EMPTY);
    assert_eq!(c.core(1).phase(), Phase::Fencing);
    assert_eq!(c.core(1).awaiting_fence(), NodeSet::EMPTY.with(2));
    for n in 0..2 {
        let core = c.core(n);
        assert_eq!(core.awaiting_replay(), NodeSet::EMPTY.with(2), "n{n}");
        assert!(
            !c.kernel[n as usize]
                .iter()
                .any(|k| matches!(k, KernelMsg::RecoveryDone { epoch: 2 })),
            "n{n} resumed before the replay"
        );
    }
    assert_eq!(c.core(0).replaying(), NodeSet::EMPTY.with(2));
    assert!(!c.granted(1, 1), "granted before the replay");
    c.now_ms = 300;
    assert!(c.finish_replay(0, 2, true));
    c.settle();
    assert!(c.granted(1, 1), "{}", c.trace);
    let after = grant_version(&c, 1, 1).expect("granted");
    assert_eq!(after.epoch, 2, "a version of the new epoch");
    assert_ne!(after, before);
    for n in 0..2 {
        let core = c.core(n);
        assert_eq!(core.phase(), Phase::Normal);
        assert_eq!(core.awaiting_replay(), NodeSet::EMPTY);
        let h = core.recovery_history().last().unwrap().clone();
        let fenced_ms = if n == 0 { 200 } else { 300 };
        assert_eq!(
            (h.started_ms, h.fenced_ms, h.replayed_ms, h.finished_ms),
            (100, Some(fenced_ms), Some(300), Some(300)),
            "n{n}: {h:?}"
        );
        assert_eq!(h.replay_failures, 0);
    }
    assert_eq!(c.core(0).replaying(), NodeSet::EMPTY);
}

/// The replayer dies before it announced the replay: the next fencer fences it and replays
/// both journals, its own loss's and the first one's. A replayer that dies after announcing
/// has its own journal replayed only.
#[test]
fn replayer_dies_mid_replay_and_the_next_fencer_takes_over() {
    let mut c = Cluster::new(5);
    let r = res_mastered_by(4, NodeSet::first(5));
    c.request(4, 1, r, LockMode::Ex).unwrap();
    c.settle();
    c.request(3, 1, r, LockMode::Ex).unwrap();
    c.hold_replays = true;
    c.crash(4, 2);
    c.settle();
    assert_eq!(c.replays, vec![(0, 4)]);
    // n0 dies while it replays n4's journal.
    c.crash(0, 3);
    c.settle();
    let mut replays = c.replays.clone();
    replays.sort();
    assert_eq!(replays, vec![(1, 0), (1, 4)], "n1 replays both journals");
    assert_eq!(c.core(1).phase(), Phase::Replaying);
    for n in 1..4 {
        assert!(c.core(n).recovering(), "n{n}");
        assert_eq!(
            c.core(n).awaiting_replay(),
            NodeSet::EMPTY.with(0).with(4),
            "n{n}"
        );
    }
    assert!(c.finish_replay(1, 4, true));
    c.settle();
    assert!(!c.granted(3, 1), "granted before n0's journal is replayed");
    assert!(c.finish_replay(1, 0, true));
    c.settle();
    assert!(c.granted(3, 1), "{}", c.trace);
    assert!((1..4).all(|n| !c.core(n).recovering()));

    // Another cluster: n0 replays n4's journal and dies right after its `Replayed` went out.
    let mut c = Cluster::new(5);
    c.request(4, 1, r, LockMode::Pw).unwrap();
    c.settle();
    c.request(3, 1, r, LockMode::Pr).unwrap();
    c.hold_replays = true;
    c.crash(4, 2);
    c.settle();
    assert!(c.finish_replay(0, 4, true));
    while c.step() {}
    c.crash(0, 3);
    c.settle();
    assert_eq!(
        c.replays,
        vec![(1, 0)],
        "n1 replays n0's journal only: n4's was announced"
    );
    assert!(c.finish_replay(1, 0, true));
    c.settle();
    assert!(c.granted(3, 1), "{}", c.trace);
}

/// A node that announced a clean leave needs neither fence nor replay.
#[test]
fn clean_leave_needs_no_journal_replay() {
    let mut c = Cluster::new(3);
    c.hold_replays = true;
    c.leave(2, 2).unwrap();
    c.settle();
    assert!(c.fences.is_empty() && c.replays.is_empty());
    for n in 0..2 {
        assert!(!c.core(n).recovering(), "n{n}");
        assert_eq!(c.core(n).awaiting_replay(), NodeSet::EMPTY);
        let h = c.core(n).recovery_history().last().unwrap().clone();
        assert_eq!(h.fenced_ms, h.replayed_ms, "no replay step: {h:?}");
    }
}

/// A failed replay keeps recovery frozen and runs again when its retry timer fires; the
/// failure is counted in the recovery record.
#[test]
fn failed_replay_retries_and_does_not_resume() {
    let mut c = Cluster::new(3);
    let r = res_mastered_by(0, NodeSet::first(3));
    c.request(2, 1, r, LockMode::Ex).unwrap();
    c.settle();
    c.request(1, 1, r, LockMode::Ex).unwrap();
    c.hold_replays = true;
    c.crash(2, 2);
    c.settle();
    c.now_ms = 1_000;
    assert!(c.finish_replay(0, 2, false));
    c.settle();
    assert!(c.replays.is_empty());
    assert_eq!(
        c.timers,
        vec![(0, TimerId::ReplayRetry(2), 1_000 + REPLAY_RETRY_DELAY_MS)]
    );
    assert_eq!(
        c.core(0).replaying(),
        NodeSet::EMPTY.with(2),
        "still its job"
    );
    assert_eq!(c.core(0).phase(), Phase::Replaying);
    assert!(c.core(1).recovering());
    assert!(!c.granted(1, 1));
    c.advance(1_000 + REPLAY_RETRY_DELAY_MS - 1);
    assert!(c.replays.is_empty(), "retried early");
    c.advance(1_000 + REPLAY_RETRY_DELAY_MS);
    assert_eq!(c.replays, vec![(0, 2)], "retried");
    assert_eq!(
        c.core(0).recovery_history().last().unwrap().replay_failures,
        1
    );
    assert!(c.finish_replay(0, 2, true));
    c.settle();
    assert!(c.granted(1, 1), "{}", c.trace);
    // A late timer or result matches nothing.
    let stale = c.event(
        0,
        Event::Timer {
            id: TimerId::ReplayRetry(2),
        },
    );
    assert!(matches!(stale, Err(Reject::Stale(_))), "{stale:?}");
    let stale = c.event(0, Event::JournalReplayed { node: 2 });
    assert!(matches!(stale, Err(Reject::Stale(_))), "{stale:?}");
}

/// `Replayed` naming a member is refused; a repeated one is harmless.
#[test]
fn replayed_for_a_member_is_refused_and_a_repeat_is_harmless() {
    let mut c = Cluster::new(3);
    let replayed = |node, epoch| Event::Peer {
        from: 0,
        msg: PeerMsg {
            epoch,
            body: PeerBody::Replayed { node },
        },
    };
    let r = c.event(1, replayed(2, 1));
    assert!(matches!(r, Err(Reject::Stale(_))), "{r:?}");
    c.crash(2, 2);
    c.settle();
    assert!(!c.core(1).recovering());
    assert_eq!(c.event(1, replayed(2, 2)), Ok(()));
    assert!(!c.core(1).recovering());
    c.core(1).check_invariants().unwrap();
}

/// The replayer cannot leave cleanly while its replay runs (stopping would leave it half
/// done): the leave is refused, and such a node is fenced and its replay run again by the
/// next fencer, only once every lost node is fenced (so the two replays never overlap).
#[test]
fn replayer_cannot_leave_cleanly_and_replays_never_overlap() {
    let mut c = Cluster::new(5);
    c.hold_replays = true;
    c.crash(4, 2);
    c.settle();
    assert_eq!(c.replays, vec![(0, 4)]);
    assert_eq!(
        c.event(0, Event::Leave),
        Err(Reject::ReplayRunning(NodeSet::EMPTY.with(4)))
    );
    // n0 is cut off, not yet fenced: its replay may still run. n1 fences both first.
    c.hold_replays = true;
    c.cores[0] = None;
    c.net.retain(|(f, t, _)| *f != 0 && *t != 0);
    let members = c.live();
    for n in members.iter() {
        c.event(n, Event::Membership { epoch: 3, members }).unwrap();
    }
    while c.step() {}
    let mut f = c.fences.clone();
    f.sort();
    assert_eq!(f, vec![(1, 0), (1, 4)]);
    c.fences.retain(|x| *x == (1, 4));
    c.settle();
    assert!(
        !c.replays.iter().any(|(by, _)| *by == 1),
        "n1 replays while n0, which may still replay n4, is unfenced"
    );
    c.event(1, Event::FenceConfirmed { node: 0 }).unwrap();
    let mut r = c.replays.clone();
    r.sort();
    assert_eq!(r, vec![(0, 4), (1, 0), (1, 4)]);
}

/// A fence agent that confirms after its node stopped being the fencer (a lower id joined)
/// announces the fence itself (`Fenced`), since the journal replay is now the new fencer's job.
#[test]
fn fence_confirmed_after_the_fencer_changed_is_announced() {
    let mut c = Cluster::new(5);
    c.leave(0, 2).unwrap();
    c.settle();
    c.crash(4, 3);
    assert_eq!(c.fences, vec![(1, 4)]);
    c.fences.clear();
    while c.step() {}
    // n0 restarts and joins: it is the fencer of epoch 4.
    c.cores[0] = Some(Core::new(Config {
        members: NodeSet::EMPTY,
        epoch: 0,
        ..Config::booted(0, 5)
    }));
    let members = NodeSet::first(4);
    for n in members.iter() {
        c.event(n, Event::Membership { epoch: 4, members }).unwrap();
    }
    c.net.clear();
    c.event(1, Event::FenceConfirmed { node: 4 }).unwrap();
    let fenced_to: Vec<NodeId> = c
        .net
        .iter()
        .filter(|(f, _, m)| *f == 1 && m.body == PeerBody::Fenced { node: 4 })
        .map(|(_, t, _)| *t)
        .collect();
    assert_eq!(fenced_to, vec![0, 2, 3], "{}", c.trace);
    assert!(c.replays.is_empty(), "n1 is not the replayer any more");
}

/// First mounter (issue 11 item 3): three fresh nodes, of which n2 never comes up, form
/// the cluster's first membership. None knows the journals, so the fencer (n0) fences n2
/// and replays every journal, n0's, n1's and n2's, before anything is granted anywhere.
#[test]
fn cold_start_replays_every_journal_before_any_grant() {
    let mut c = Cluster::fresh(3, NodeSet::first(2));
    c.hold_replays = true;
    c.install(1);
    let r = res_mastered_by(1, NodeSet::first(2));
    c.request(1, 1, r, LockMode::Pr).unwrap();
    c.settle();
    let mut replays = c.replays.clone();
    replays.sort();
    assert_eq!(replays, vec![(0, 0), (0, 1), (0, 2)], "{}", c.trace);
    assert_eq!(c.core(0).phase(), Phase::Replaying);
    assert_eq!(c.core(0).awaiting_replay(), NodeSet::first(3));
    assert_eq!(c.core(0).replaying(), NodeSet::first(3));
    assert!(!c.core(0).journals_known() && !c.core(1).journals_known());
    for (by, target) in [(0, 2), (0, 0)] {
        assert!(c.finish_replay(by, target, true));
        c.settle();
        assert!(!c.granted(1, 1), "granted before n1's journal is replayed");
        assert!(c.core(1).recovering() && c.core(0).recovering());
    }
    assert!(c.finish_replay(0, 1, true));
    c.settle();
    assert!(c.granted(1, 1), "{}", c.trace);
    assert!(c.core(0).journals_known() && c.core(1).journals_known());
    assert_eq!(c.core(0).awaiting_replay(), NodeSet::EMPTY);
    // A single-node cluster started fresh replays its own journal first.
    let mut c = Cluster::fresh(1, NodeSet::first(1));
    c.hold_replays = true;
    c.install(1);
    c.request(0, 1, r, LockMode::Ex).unwrap();
    c.settle();
    assert_eq!(c.replays, vec![(0, 0)]);
    assert!(!c.granted(0, 1));
    assert!(c.finish_replay(0, 0, true));
    c.settle();
    assert!(c.granted(0, 1));
}

/// A fresh node joining a running cluster is no cold start: a member that knows the
/// journals says so in its report, so nothing is fenced or replayed, also when the newcomer
/// has the lowest id and so becomes the fencer.
#[test]
fn fresh_node_joining_a_running_cluster_replays_nothing() {
    for (node, epochs) in [(2, (2, 3)), (0, (4, 5))] {
        let mut c = Cluster::new(3);
        c.crash(node, epochs.0);
        c.settle();
        c.replays.clear();
        c.restart(node);
        c.hold_replays = true;
        c.tracing = true;
        c.install(epochs.1);
        c.settle();
        assert_eq!(c.replays, vec![], "n{node} joins: {}", c.trace);
        assert!(!c.trace.contains("-> fence"), "{}", c.trace);
        assert!((0..3).all(|n| !c.core(n).recovering()), "{}", c.trace);
        assert!(c.core(node).journals_known());
        let r = res_mastered_by(node, NodeSet::first(3));
        c.request(node, 1, r, LockMode::Ex).unwrap();
        c.settle();
        assert!(c.granted(node, 1));
    }
}

/// Issue 11's open point (a): a node back before its replay was announced keeps its journal
/// awaited. Its log is still dirty, so nothing is granted until it is replayed; the replay
/// already running goes on, and no second one starts.
#[test]
fn node_back_before_its_replay_is_announced_keeps_its_journal_awaited() {
    let mut c = Cluster::new(3);
    let r = res_mastered_by(1, NodeSet::first(3));
    c.request(2, 1, r, LockMode::Ex).unwrap();
    c.settle();
    c.hold_replays = true;
    c.crash(2, 2);
    c.settle();
    assert_eq!(c.replays, vec![(0, 2)]);
    c.restart(2);
    c.install(3);
    c.request(1, 1, r, LockMode::Pr).unwrap();
    c.settle();
    assert_eq!(c.replays, vec![(0, 2)], "one replay of n2's journal");
    for n in 0..2 {
        assert_eq!(c.core(n).awaiting_replay(), NodeSet::EMPTY.with(2), "n{n}");
    }
    assert!(!c.granted(1, 1), "granted before n2's journal is replayed");
    assert!(c.finish_replay(0, 2, true));
    c.settle();
    assert!(c.granted(1, 1), "{}", c.trace);
    assert!((0..3).all(|n| !c.core(n).recovering()));

    // The same before the fence is confirmed: the fencer replays n2's log as a member's
    // (n2 cannot mount before the recovery ends), without a fence.
    let mut c = Cluster::new(3);
    c.hold_replays = true;
    c.crash(2, 2);
    c.fences.clear();
    c.restart(2);
    c.install(3);
    c.settle();
    assert_eq!(c.replays, vec![(0, 2)], "{}", c.trace);
    assert!((0..3).all(|n| c.core(n).recovering()));
    assert!(c.finish_replay(0, 2, true));
    c.settle();
    assert!((0..3).all(|n| !c.core(n).recovering()), "{}", c.trace);
}

/// Issue 11's open point (b): a lower-id node joining while a replay runs becomes the
/// fencer, but the replayer stays fixed: the old fencer reports the replay as its own
/// (`Journals`), the new fencer fences the lost node again on the others' `FenceAsk` but
/// never replays its journal, and the old fencer retries a failed attempt itself.
#[test]
fn lower_id_node_joining_mid_replay_starts_no_second_replay() {
    let mut c = Cluster::new(5);
    c.crash(0, 2);
    c.settle();
    let r = res_mastered_by(4, NodeSet::first(5).without(0));
    c.request(4, 1, r, LockMode::Ex).unwrap();
    c.settle();
    c.replays.clear();
    c.hold_replays = true;
    c.crash(4, 3);
    c.settle();
    assert_eq!(c.replays, vec![(1, 4)], "n1, the fencer, replays n4");
    c.restart(0);
    c.install(4);
    c.request(2, 1, r, LockMode::Pr).unwrap();
    c.settle();
    assert_eq!(c.core(0).fencer(), 0);
    assert_eq!(c.replays, vec![(1, 4)], "no second replay: {}", c.trace);
    assert!(!c.granted(2, 1));
    assert!(c.finish_replay(1, 4, false));
    c.settle();
    c.advance(REPLAY_RETRY_DELAY_MS);
    c.settle();
    assert_eq!(c.replays, vec![(1, 4)], "n1 retries its own replay");
    assert!(!c.granted(2, 1));
    assert!(c.finish_replay(1, 4, true));
    c.settle();
    assert!(c.granted(2, 1), "{}", c.trace);
    assert!((0..4).all(|n| !c.core(n).recovering()));
}
