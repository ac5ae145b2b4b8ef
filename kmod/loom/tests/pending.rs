//! Loom tests of the pending table (DESIGN.md §4): grant or deny against the timeout, duplicate
//! and late grants, late denies (dropped, never handed back), two waiters on one resource, and
//! module exit while waiters wait.
//!
//! `just loom` runs them in release mode at `LOOM_MAX_PREEMPTIONS=3`; without the variable the
//! tests use that bound too, so `cargo test` stays fast.

use loom::sync::Arc;
use loom::thread;
use mxfs_kmod_loom::pending::{Delivery, Grant, PendingError, PendingTable, Reply, ESHUTDOWN};
use mxfs_kmod_loom::proto::{LockMode, ResourceId};
use mxfs_kmod_loom::LoomTable;

/// A grant of EX with version 7, the reply most tests deliver.
const GRANT_INFO: Grant = Grant {
    mode: LockMode::Ex,
    version: Some(7),
};
const GRANT: Reply = Reply::Grant(GRANT_INFO);
const EAGAIN: i32 = 11;
const ENOTCONN: i32 = 107;

fn model<F: Fn() + Sync + Send + 'static>(f: F) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(f);
}

/// Runs `f` on a clone of the table in a new loom thread.
fn spawn<R: Send + 'static>(
    t: &Arc<LoomTable>,
    f: impl FnOnce(&LoomTable) -> R + Send + 'static,
) -> thread::JoinHandle<R> {
    let t = t.clone();
    thread::spawn(move || f(&t))
}

fn res(ino: u64) -> ResourceId {
    ResourceId::inode(7, ino)
}

/// A grant races the grant timer. Exactly one wins: a granted waiter means the grant was
/// delivered; a timed-out waiter means the grant was late, so the caller releases the lock.
#[test]
fn grant_vs_timeout() {
    model(|| {
        let t = Arc::new(LoomTable::new(1));
        let ticket = t.insert(1, res(1)).unwrap();
        let waiter = spawn(&t, move |t| t.wait_reply(ticket));
        let timer = spawn(&t, move |t| t.expire(1));
        let delivery = t.complete(1, res(1), GRANT);
        let got = waiter.join().unwrap();
        let expired = timer.join().unwrap();
        match got {
            Ok(g) => {
                assert_eq!(
                    Reply::Grant(g),
                    GRANT,
                    "the waiter sees what the grant said"
                );
                assert_eq!(delivery, Delivery::Delivered);
                assert!(!expired);
            }
            Err(PendingError::TimedOut) => {
                assert!(expired);
                assert_eq!(delivery, Delivery::Late(GRANT));
                assert!(
                    delivery.hand_back(),
                    "a grant after the timeout must be released"
                );
            }
            other => panic!("unexpected outcome {other:?}"),
        }
        assert_eq!(t.occupied(), 0, "the waiter frees its own slot");
    });
}

/// A deny races the timer: the waiter sees the deny's errno exactly when it was delivered.
#[test]
fn deny_vs_timeout() {
    model(|| {
        let t = Arc::new(LoomTable::new(1));
        let ticket = t.insert(5, res(1)).unwrap();
        let waiter = spawn(&t, move |t| t.wait_reply(ticket));
        let timer = spawn(&t, move |t| t.expire(5));
        let delivery = t.complete(5, res(1), Reply::Deny(-EAGAIN));
        let got = waiter.join().unwrap();
        let expired = timer.join().unwrap();
        match got {
            Err(PendingError::Denied(e)) => {
                assert_eq!(e, -EAGAIN);
                assert_eq!(delivery, Delivery::Delivered);
                assert!(!expired);
            }
            Err(PendingError::TimedOut) => {
                assert!(expired);
                assert_eq!(delivery, Delivery::Late(Reply::Deny(-EAGAIN)));
                assert!(
                    !delivery.hand_back(),
                    "a deny after the timeout granted nothing: it must not be released"
                );
            }
            other => panic!("unexpected outcome {other:?}"),
        }
        assert_eq!(t.occupied(), 0);
    });
}

/// Two grants for one request: exactly one is delivered; the other is a duplicate (the waiter
/// still holds its reply) or late (the waiter is gone), never a second delivery.
#[test]
fn duplicate_grant() {
    model(|| {
        let t = Arc::new(LoomTable::new(1));
        let ticket = t.insert(3, res(2)).unwrap();
        let waiter = spawn(&t, move |t| t.wait_reply(ticket));
        let second = spawn(&t, move |t| t.complete(3, res(2), GRANT));
        let first = t.complete(3, res(2), GRANT);
        let second = second.join().unwrap();
        assert_eq!(waiter.join().unwrap(), Ok(GRANT_INFO));
        let delivered = [first, second]
            .iter()
            .filter(|d| **d == Delivery::Delivered)
            .count();
        assert_eq!(delivered, 1, "first {first:?} second {second:?}");
        for d in [first, second] {
            assert!(matches!(
                d,
                Delivery::Delivered | Delivery::Duplicate | Delivery::Late(GRANT)
            ));
        }
        assert_eq!(t.occupied(), 0);
    });
}

/// A grant after the waiter timed out and left finds no entry: late, so it gets released.
#[test]
fn late_grant_after_timeout() {
    model(|| {
        let t = Arc::new(LoomTable::new(2));
        let ticket = t.insert(9, res(3)).unwrap();
        let timer = spawn(&t, move |t| assert!(t.expire(9)));
        timer.join().unwrap();
        assert_eq!(t.wait_reply(ticket), Err(PendingError::TimedOut));
        let d = t.complete(9, res(3), GRANT);
        assert_eq!(d, Delivery::Late(GRANT));
        assert!(d.hand_back(), "a late grant is handed back");
        // A grant for a request the table never knew is late too, and handed back.
        assert!(t.complete(77, res(3), GRANT).hand_back());
        assert_eq!(t.occupied(), 0);
    });
}

/// A deny after the waiter timed out and left, or for a request the table never knew, is late
/// and only dropped: handing it back would tell the daemon to release a lock it never granted.
#[test]
fn late_deny_is_not_handed_back() {
    model(|| {
        let t = Arc::new(LoomTable::new(2));
        let ticket = t.insert(9, res(3)).unwrap();
        let timer = spawn(&t, move |t| t.expire(9));
        let d = t.complete(9, res(3), Reply::Deny(-EAGAIN));
        let expired = timer.join().unwrap();
        let got = t.wait_reply(ticket);
        if expired {
            assert_eq!(got, Err(PendingError::TimedOut));
            assert_eq!(d, Delivery::Late(Reply::Deny(-EAGAIN)));
        } else {
            assert_eq!(got, Err(PendingError::Denied(-EAGAIN)));
            assert_eq!(d, Delivery::Delivered);
        }
        // Whichever came first, the deny is never handed back.
        assert!(matches!(
            d,
            Delivery::Delivered | Delivery::Late(Reply::Deny(_))
        ));
        assert!(!d.hand_back(), "late deny handed back: {d:?}");
        let d = t.complete(9, res(3), Reply::Deny(-EAGAIN));
        assert_eq!(d, Delivery::Late(Reply::Deny(-EAGAIN)));
        assert!(!d.hand_back(), "late deny handed back: {d:?}");
        let never = t.complete(78, res(3), Reply::Deny(-ENOTCONN));
        assert!(!never.hand_back(), "unknown deny handed back: {never:?}");
        assert_eq!(t.occupied(), 0);
    });
}

/// Two local waiters on one resource share a bucket and its condition variable. Each gets the
/// reply for its own request id; a reply naming the wrong resource is refused.
#[test]
fn two_waiters_one_resource() {
    model(|| {
        let t = Arc::new(LoomTable::new(1));
        let a = t.insert(1, res(4)).unwrap();
        let b = t.insert(2, res(4)).unwrap();
        let wa = spawn(&t, move |t| t.wait_reply(a));
        let wb = spawn(&t, move |t| t.wait_reply(b));
        assert_eq!(t.complete(2, res(5), GRANT), Delivery::Mismatch);
        assert_eq!(
            t.complete(2, res(4), Reply::Deny(-EAGAIN)),
            Delivery::Delivered
        );
        assert_eq!(t.complete(1, res(4), GRANT), Delivery::Delivered);
        assert_eq!(wa.join().unwrap(), Ok(GRANT_INFO));
        assert_eq!(wb.join().unwrap(), Err(PendingError::Denied(-EAGAIN)));
        assert_eq!(t.occupied(), 0);
    });
}

/// Module exit while two requests wait: both wake with an error (or keep a grant that won the
/// race), exit's drain returns only when both have left, and new requests are refused.
#[test]
fn module_exit_while_waiting() {
    model(|| {
        let t = Arc::new(LoomTable::new(2));
        let a = t.insert(1, res(6)).unwrap();
        let b = t.insert(2, res(7)).unwrap();
        let wa = spawn(&t, move |t| t.wait_reply(a));
        let wb = spawn(&t, move |t| t.wait_reply(b));
        let daemon = spawn(&t, move |t| t.complete(1, res(6), GRANT));
        t.shutdown();
        assert_eq!(t.drain(), 0, "drain returns once every waiter has left");
        assert_eq!(t.insert(3, res(8)).unwrap_err(), PendingError::Shutdown);
        let ra = wa.join().unwrap();
        let rb = wb.join().unwrap();
        let d = daemon.join().unwrap();
        assert_eq!(rb, Err(PendingError::Cancelled(-ESHUTDOWN)));
        match ra {
            Ok(_) => assert_eq!(d, Delivery::Delivered),
            Err(PendingError::Cancelled(e)) => {
                assert_eq!(e, -ESHUTDOWN);
                assert_eq!(d, Delivery::Late(GRANT));
                assert!(d.hand_back(), "a grant after exit must be released");
            }
            other => panic!("unexpected outcome {other:?}"),
        }
        assert_eq!(t.occupied(), 0);
    });
}

/// The daemon goes away: waiting requests fail with -ENOTCONN at once, not after the timeout.
#[test]
fn daemon_gone_fails_waiters() {
    model(|| {
        let t = Arc::new(LoomTable::new(1));
        let a = t.insert(1, res(9)).unwrap();
        let wa = spawn(&t, move |t| t.wait_reply(a));
        let failed = t.fail_all(-ENOTCONN);
        assert_eq!(failed, 1);
        assert_eq!(wa.join().unwrap(), Err(PendingError::Cancelled(-ENOTCONN)));
        assert_eq!(t.occupied(), 0);
    });
}

/// A full bucket refuses a request instead of blocking or overwriting a slot.
#[test]
fn full_bucket_is_refused() {
    use mxfs_kmod_loom::pending::WAITERS_PER_BUCKET;
    model(|| {
        let t = LoomTable::new(1);
        let mut tickets = Vec::new();
        for id in 0..WAITERS_PER_BUCKET as u64 {
            tickets.push(t.insert(id + 1, res(id)).unwrap());
        }
        assert_eq!(t.insert(100, res(100)).unwrap_err(), PendingError::Full);
        assert_eq!(t.insert(1, res(0)).unwrap_err(), PendingError::DuplicateId);
        for tk in tickets {
            t.cancel(tk);
        }
        assert_eq!(t.occupied(), 0);
    });
}
