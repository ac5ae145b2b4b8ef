//! insta snapshots of readable protocol traces. A change in the protocol shows up here as a
//! reviewed diff (`cargo insta review`).

use mxfs_core::sim::{res_mastered_by, Cluster};
use mxfs_core::*;

/// n1 writes under EX and releases (cached); n2 asks for PR: the master BASTs n1, n1 gives the
/// lock up (its write bumps the version), and n2 is granted after a CACHE_INVAL.
#[test]
fn grant_after_bast() {
    let mut c = Cluster::new(3);
    let r = res_mastered_by(0, NodeSet::first(3));
    c.request(1, 1, r, LockMode::Ex).unwrap();
    c.settle();
    c.release(1, 1, r).unwrap();
    c.settle();
    c.tracing = true;
    c.request(2, 1, r, LockMode::Pr).unwrap();
    c.settle();
    assert!(c.granted(2, 1));
    insta::assert_snapshot!(c.trace);
}

/// n0 holds EX on a resource mastered by n2, n1 waits for it; n2 dies. Freeze, fence, rebuild
/// (Recover / RecoverDone / RebuildDone), resume; then n0 releases and n1 is granted.
#[test]
fn whole_recovery() {
    let mut c = Cluster::new(3);
    let r = res_mastered_by(2, NodeSet::first(3));
    c.request(0, 1, r, LockMode::Ex).unwrap();
    c.settle();
    c.request(1, 1, r, LockMode::Ex).unwrap();
    c.settle();
    c.tracing = true;
    c.advance(1_000);
    c.crash(2, 2);
    c.advance(1_005);
    c.settle();
    c.release(0, 1, r).unwrap();
    c.settle();
    assert!(c.granted(1, 1));
    let h = c.core(0).recovery_history().last().cloned().unwrap();
    assert_eq!((h.started_ms, h.finished_ms), (1_000, Some(1_005)));
    insta::assert_snapshot!(c.trace);
}
