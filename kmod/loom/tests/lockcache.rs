//! Loom tests of the kernel lock cache (`kmod/lockcache.rs`, DESIGN.md §5.2): a hit sends
//! nothing, a callback racing new holders, a release racing a grant, a withdraw while holders
//! wait; the gate (holders without the bucket lock, speculations without a hold) racing a
//! callback and a withdraw; plus the callback's refusals, single-threaded.
//!
//! The tests play the kernel's callers and the daemon: a `Send` is "sent" and its reply
//! reported at once (or failed), an `Answer` is carried out by the thread that got it (the clean
//! point and the send are a counter). `--release` turns `debug_assert!` off, so the threads
//! check the entry's invariants themselves after each step.
//!
//! `just loom` runs them at `LOOM_MAX_PREEMPTIONS=3`; without the variable that bound is used.

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use loom::sync::Arc;
use loom::thread;
use mxfs_kmod_loom::lockcache::{
    covers, inf, sup, Acquired, Answer, CacheError, CallbackOutcome, Gate, Granted, InFlight,
    LockCache, Refresh,
};
use mxfs_kmod_loom::proto::{LockMode, ResourceId};
use mxfs_kmod_loom::LoomCache;

use LockMode::{Cr, Cw, Ex, Nl, Pr, Pw};

fn model<F: Fn() + Sync + Send + 'static>(f: F) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(f);
}

const R: ResourceId = ResourceId::volume(7);
const V1: Option<u64> = Some(1);

/// What the test threads share: the cache and what they observed.
struct World {
    c: LoomCache,
    /// Local holders between their hit and their release, counted by the test.
    active: AtomicUsize,
    /// Answers carried out.
    answers: AtomicUsize,
    /// Set by the thread carrying out the answer, just before it reports `answered`.
    answered: AtomicBool,
    /// `LOCK_REQ`s sent.
    sends: AtomicUsize,
    /// Next request id.
    next_id: AtomicUsize,
}

impl World {
    fn new() -> Arc<World> {
        Arc::new(World {
            c: LoomCache::new(1),
            active: AtomicUsize::new(0),
            answers: AtomicUsize::new(0),
            answered: AtomicBool::new(false),
            sends: AtomicUsize::new(0),
            next_id: AtomicUsize::new(10),
        })
    }

    /// The entry's and its gate's invariants.
    fn check(&self) {
        assert_eq!(self.c.check_resource(R), Ok(()), "{:?}", self.c.entry(R));
    }

    fn id(&self) -> u64 {
        self.next_id.fetch_add(1, SeqCst) as u64
    }

    /// Carries out an answer: the holders are gone, nothing is in flight, then "clean point and
    /// send", then `answered`. Follows up further answers.
    fn carry_out(&self, mut a: Option<Answer>) {
        while let Some(ans) = a {
            assert_eq!(
                self.active.load(SeqCst),
                0,
                "answer {ans:?} while a holder holds"
            );
            let e = self.c.entry(R).expect("answered entry is tracked");
            assert_eq!(
                e.request(),
                None,
                "answer {ans:?} while a request is in flight"
            );
            self.check();
            self.answers.fetch_add(1, SeqCst);
            self.answered.store(true, SeqCst);
            a = self.c.answered(R, Ok(None));
            self.check();
        }
    }

    /// Acquires `mode` until this thread is a holder, playing the daemon for any request (it
    /// grants at once, with version 1). Returns the first outcome of `acquire` too.
    fn hold(&self, mode: LockMode) -> Result<Acquired, CacheError> {
        let first = self.c.acquire(R, mode, || self.id());
        let mut got = first;
        loop {
            self.check();
            match got? {
                Acquired::Hit => break,
                Acquired::Refresh => {
                    self.c.refreshed(R, true);
                    break;
                }
                Acquired::Send(r) => {
                    self.sends.fetch_add(1, SeqCst);
                    match self.c.granted(R, r.req_id, r.mode, mode, V1)? {
                        Granted::Holder(Acquired::Refresh) => {
                            self.c.refreshed(R, true);
                            break;
                        }
                        Granted::Holder(_) => break,
                        Granted::Retry(a) => self.carry_out(a),
                    }
                }
            }
            got = self.c.acquire(R, mode, || self.id());
        }
        self.active.fetch_add(1, SeqCst);
        self.check();
        first
    }

    /// Leaves as a holder of `mode` and carries out the answer if it is due.
    fn leave(&self, mode: LockMode) {
        self.active.fetch_sub(1, SeqCst);
        let a = self.c.release_holder(R, mode).expect("holder releases");
        self.check();
        self.carry_out(a);
    }
}

/// Sets up `R` cached in `mode` through request 1 (version 1, refreshed), no holder.
fn cached(w: &World, mode: LockMode) {
    let Ok(Acquired::Send(r)) = w.c.acquire(R, mode, || 1) else {
        panic!("a first acquire sends");
    };
    assert_eq!(
        r,
        InFlight {
            req_id: 1,
            mode,
            convert: false
        }
    );
    assert_eq!(
        w.c.granted(R, 1, mode, mode, V1),
        Ok(Granted::Holder(Acquired::Refresh)),
        "a first grant refreshes"
    );
    w.c.refreshed(R, true);
    assert_eq!(w.c.release_holder(R, mode), Ok(None));
}

/// The covers relation, stated literally, and what follows from it.
#[test]
fn covers_is_the_dlm_lattice() {
    // NL ⊑ CR ⊑ CW ⊑ PW ⊑ EX and CR ⊑ PR ⊑ PW; CW and PR are incomparable.
    let below = |m: LockMode| -> &'static [LockMode] {
        match m {
            Nl => &[Nl],
            Cr => &[Nl, Cr],
            Cw => &[Nl, Cr, Cw],
            Pr => &[Nl, Cr, Pr],
            Pw => &[Nl, Cr, Cw, Pr, Pw],
            Ex => &[Nl, Cr, Cw, Pr, Pw, Ex],
        }
    };
    for h in LockMode::ALL {
        for w in LockMode::ALL {
            assert_eq!(covers(h, w), below(h).contains(&w), "covers({h:?}, {w:?})");
        }
    }
    assert_eq!(sup(Cw, Pr), Pw);
    assert_eq!(sup(Pr, Ex), Ex);
    assert_eq!(inf(Cw, Pr), Cr);
    assert_eq!(inf(Pw, Pr), Pr);
}

/// Holders whose mode the cache covers send nothing, even racing each other and a release;
/// their releases answer nothing (no callback).
#[test]
fn a_hit_never_sends() {
    model(|| {
        let w = World::new();
        cached(&w, Ex);
        let ts: Vec<_> = [Pr, Ex]
            .into_iter()
            .map(|m| {
                let w = w.clone();
                thread::spawn(move || {
                    let first = w.c.acquire(R, m, || panic!("a hit allocated a request id"));
                    assert_eq!(first, Ok(Acquired::Hit), "{m:?} on a cached EX");
                    w.active.fetch_add(1, SeqCst);
                    w.check();
                    w.leave(m);
                })
            })
            .collect();
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(w.sends.load(SeqCst), 0);
        assert_eq!(w.answers.load(SeqCst), 0);
        let e = w.c.entry(R).unwrap();
        assert_eq!(e.held().map(|h| (h.mode, h.req_id)), Some((Ex, 1)));
        assert_eq!(e.refresh(), Refresh::Fresh);
    });
}

/// A callback races a holder's release and a new acquirer. The lock is given up exactly once,
/// after the last holder left; nobody who acquires after the callback is recorded becomes a
/// holder before the answer is carried out (it sends a new request, after the release).
#[test]
fn callback_races_new_holders() {
    model(|| {
        let w = World::new();
        cached(&w, Ex);
        assert_eq!(w.hold(Ex), Ok(Acquired::Hit));
        // A racing acquirer: a hit before the callback, or a new request after the answer.
        let a = {
            let w = w.clone();
            thread::spawn(move || {
                let first = w.hold(Pr);
                match first {
                    Ok(Acquired::Hit) => {}
                    Ok(Acquired::Send(r)) => {
                        assert!(!r.convert, "re-request after a release is new: {r:?}");
                        assert!(w.answered.load(SeqCst), "sent before the answer");
                    }
                    other => panic!("unexpected {other:?}"),
                }
                w.leave(Pr);
            })
        };
        // The daemon calls back, then (same thread) acquires again: it must wait for the answer.
        let d = {
            let w = w.clone();
            thread::spawn(move || {
                match w.c.callback(1, R, Nl) {
                    Ok(CallbackOutcome::AnswerNow(ans)) => {
                        assert_eq!((ans.from, ans.to), (Ex, None));
                        w.carry_out(Some(ans));
                    }
                    Ok(CallbackOutcome::Recorded) => {}
                    Err(e) => panic!("callback refused: {e:?}"),
                }
                let first = w.hold(Pr);
                let held = w.c.entry(R).unwrap().held().expect("a holder holds a lock");
                assert_ne!(
                    held.req_id, 1,
                    "a holder started on the called-back lock: {first:?}"
                );
                assert!(w.answered.load(SeqCst), "holder started before the answer");
                w.leave(Pr);
            })
        };
        w.leave(Ex);
        a.join().unwrap();
        d.join().unwrap();
        assert_eq!(w.answers.load(SeqCst), 1, "exactly one answer");
        assert_eq!(w.active.load(SeqCst), 0);
    });
}

/// A holder's release races the grant of an upgrade (a conversion of request 1 from PR to EX)
/// and a callback. The answer waits for the conversion's outcome, comes once, after the last
/// holder, and gives up whatever is held then.
#[test]
fn release_races_grant() {
    model(|| {
        let w = World::new();
        cached(&w, Pr);
        assert_eq!(w.hold(Pr), Ok(Acquired::Hit));
        let up = {
            let w = w.clone();
            thread::spawn(move || {
                w.hold(Ex).expect("upgrade");
                w.leave(Ex);
            })
        };
        let d = {
            let w = w.clone();
            thread::spawn(move || match w.c.callback(1, R, Nl) {
                Ok(CallbackOutcome::AnswerNow(a)) => w.carry_out(Some(a)),
                Ok(CallbackOutcome::Recorded) => {}
                Err(e) => panic!("callback refused: {e:?}"),
            })
        };
        w.leave(Pr);
        up.join().unwrap();
        d.join().unwrap();
        assert_eq!(w.answers.load(SeqCst), 1, "exactly one answer");
        assert_eq!(w.active.load(SeqCst), 0);
        let e = w.c.entry(R).unwrap();
        assert_eq!(e.callback(), None, "the callback was answered");
        assert_eq!(e.request(), None);
    });
}

/// mxfsd grants a new request and calls it back at once: the callback can reach the cache
/// before the acquirer has reported the grant. The callback is accepted (the id is known from
/// the moment the request is sent), the acquirer becomes a holder only if its grant came
/// first, and the answer comes exactly once, after it left.
#[test]
fn callback_races_new_grant() {
    model(|| {
        let w = World::new();
        let Ok(Acquired::Send(r)) = w.c.acquire(R, Ex, || 10) else {
            panic!("nothing cached: send");
        };
        // The grant is on its way to the acquirer; the callback follows it from mxfsd.
        let d = {
            let w = w.clone();
            thread::spawn(move || match w.c.callback(10, R, Nl) {
                Ok(CallbackOutcome::AnswerNow(a)) => w.carry_out(Some(a)),
                Ok(CallbackOutcome::Recorded) => {}
                Err(e) => panic!("callback for a request in flight refused: {e:?}"),
            })
        };
        match w.c.granted(R, r.req_id, Ex, Ex, V1) {
            Ok(Granted::Holder(Acquired::Refresh)) => {
                w.active.fetch_add(1, SeqCst);
                w.c.refreshed(R, true);
                w.leave(Ex);
            }
            Ok(Granted::Retry(a)) => w.carry_out(a),
            other => panic!("unexpected {other:?}"),
        }
        d.join().unwrap();
        assert_eq!(w.answers.load(SeqCst), 1, "exactly one answer");
        let e = w.c.entry(R).unwrap();
        assert_eq!(
            (e.held(), e.callback()),
            (None, None),
            "released and answered"
        );
    });
}

/// Withdraw while two acquirers wait behind a callback and a holder still holds: both wake
/// with -EIO (only the withdraw can wake them), nothing hangs, the callback is never answered,
/// a drain that races the holder's release returns once it left, and a later acquire fails
/// with -EIO.
#[test]
fn withdraw_while_holders_wait() {
    model(|| {
        let w = World::new();
        cached(&w, Ex);
        assert_eq!(w.hold(Ex), Ok(Acquired::Hit));
        assert_eq!(w.c.callback(1, R, Nl), Ok(CallbackOutcome::Recorded));
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let w = w.clone();
                thread::spawn(move || {
                    let got = w.c.acquire(R, Pr, || w.id());
                    assert_eq!(got, Err(CacheError::Withdrawn));
                    assert_eq!(got.unwrap_err().errno(), -5);
                })
            })
            .collect();
        let x = {
            let w = w.clone();
            thread::spawn(move || {
                w.c.withdraw();
                assert_eq!(w.c.drain(), 0, "drain returns once the holder left");
                assert_eq!(w.active.load(SeqCst), 0, "drained while a holder holds");
            })
        };
        for t in waiters {
            t.join().unwrap();
        }
        w.active.fetch_sub(1, SeqCst);
        assert_eq!(
            w.c.release_holder(R, Ex),
            Ok(None),
            "a withdrawn cache answers no callback"
        );
        x.join().unwrap();
        assert_eq!(w.c.acquire(R, Pr, || 99), Err(CacheError::Withdrawn));
        assert_eq!(w.c.callback(1, R, Nl), Err(CacheError::Withdrawn));
        assert_eq!(w.answers.load(SeqCst), 0);
    });
}

/// After a release, two acquirers race for the lock again and the grant carries a new data
/// version: exactly one holder refreshes, and no holder runs before that refresh is done. A
/// grant that carries the version already cached refreshes nothing.
#[test]
fn refresh_before_any_holder() {
    model(|| {
        let w = World::new();
        cached(&w, Ex);
        let Ok(CallbackOutcome::AnswerNow(a)) = w.c.callback(1, R, Nl) else {
            panic!("no holder: answer now");
        };
        assert_eq!(w.c.answered(R, Ok(None)), None);
        assert_eq!(a.to, None);
        let refreshed = Arc::new(AtomicUsize::new(0));
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let (w, refreshed) = (w.clone(), refreshed.clone());
                thread::spawn(move || {
                    // Whoever is not a hit must refresh (a new version), and nobody
                    // is told to retry: nothing else happens to the lock meanwhile.
                    let must_refresh = match w.c.acquire(R, Pr, || w.id()).expect("acquire") {
                        Acquired::Hit => false,
                        Acquired::Refresh => true,
                        Acquired::Send(r) => {
                            let g = w.c.granted(R, r.req_id, Pr, Pr, Some(2)).unwrap();
                            assert_eq!(g, Granted::Holder(Acquired::Refresh), "new version");
                            true
                        }
                    };
                    if must_refresh {
                        refreshed.fetch_add(1, SeqCst);
                        w.c.refreshed(R, true);
                    } else {
                        assert_eq!(refreshed.load(SeqCst), 1, "hit before the refresh");
                    }
                    assert_eq!(w.c.release_holder(R, Pr), Ok(None));
                })
            })
            .collect();
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(refreshed.load(SeqCst), 1, "exactly one refresh");
        // Released again; the next grant carries version 2 again: nothing to refresh.
        let req = w.c.entry(R).unwrap().held().unwrap().req_id;
        let Ok(CallbackOutcome::AnswerNow(_)) = w.c.callback(req, R, Nl) else {
            panic!("no holder: answer now");
        };
        assert_eq!(w.c.answered(R, Ok(None)), None);
        let Ok(Acquired::Send(r)) = w.c.acquire(R, Pr, || 50) else {
            panic!("released: send");
        };
        assert_eq!(
            w.c.granted(R, r.req_id, Pr, Pr, Some(2)),
            Ok(Granted::Holder(Acquired::Hit)),
            "same version: no refresh"
        );
    });
}

/// The callback's refusals and its keep-less rule, single-threaded.
#[test]
fn callback_refusals() {
    model(|| {
        let w = World::new();
        cached(&w, Ex);
        let other = ResourceId::volume(8);
        assert_eq!(w.c.callback(2, R, Nl), Err(CacheError::Unknown));
        assert_eq!(w.c.callback(2, R, Nl).unwrap_err().errno(), -2);
        assert_eq!(w.c.callback(1, other, Nl), Err(CacheError::Mismatch));
        assert_eq!(w.c.callback(1, other, Nl).unwrap_err().errno(), -22);
        assert_eq!(w.c.callback(1, R, Ex), Err(CacheError::Mismatch));
        assert_eq!(w.hold(Ex), Ok(Acquired::Hit));
        // Keep PR, then a second callback may only keep less: CW meets PR at CR, which no
        // longer covers PR, so the answer is a release.
        assert_eq!(w.c.callback(1, R, Pr), Ok(CallbackOutcome::Recorded));
        assert_eq!(w.c.entry(R).unwrap().callback(), Some(Pr));
        assert_eq!(w.c.callback(1, R, Cw), Ok(CallbackOutcome::Recorded));
        assert_eq!(w.c.entry(R).unwrap().callback(), Some(Cr));
        w.active.fetch_sub(1, SeqCst);
        let a =
            w.c.release_holder(R, Ex)
                .unwrap()
                .expect("last holder answers");
        assert_eq!((a.req_id, a.from, a.to, a.clean_point), (1, Ex, None, true));
        // A holder release that names a mode nobody holds is refused.
        assert_eq!(w.c.release_holder(R, Pr), Err(CacheError::Mismatch));
        assert_eq!(w.c.answered(R, Ok(None)), None);
        // A callback for a new request in flight waits for its grant; if the request fails
        // instead, nothing was granted here and the callback is dropped, so acquirers go on.
        let Ok(Acquired::Send(r)) = w.c.acquire(R, Pr, || 5) else {
            panic!("released: send");
        };
        assert_eq!(w.c.callback(5, R, Nl), Ok(CallbackOutcome::Recorded));
        assert_eq!(w.c.request_failed(R, r.req_id), None);
        assert_eq!(w.c.entry(R).unwrap().callback(), None);
        assert!(matches!(w.c.acquire(R, Pr, || 6), Ok(Acquired::Send(_))));
        // A grant weaker than asked withdraws the cache.
        assert_eq!(w.c.granted(R, 6, Cr, Pr, V1), Err(CacheError::Mismatch));
        assert_eq!(w.c.acquire(R, Pr, || 7), Err(CacheError::Withdrawn));
    });
}

/// A callback keeping PR down-converts an EX lock; readers then hit on PR without a refresh.
#[test]
fn down_conversion_keeps_readers() {
    model(|| {
        let w = World::new();
        cached(&w, Ex);
        let Ok(CallbackOutcome::AnswerNow(a)) = w.c.callback(1, R, Pr) else {
            panic!("no holder: answer now");
        };
        assert_eq!((a.from, a.to, a.clean_point), (Ex, Some(Pr), true));
        assert_eq!(w.c.answered(R, Ok(Some(2))), None);
        let e = w.c.entry(R).unwrap();
        assert_eq!(e.held().map(|h| (h.mode, h.req_id)), Some((Pr, 1)));
        assert_eq!(e.version(), Some(2));
        assert_eq!(w.c.acquire(R, Pr, || 99), Ok(Acquired::Hit));
        // A failed answer withdraws the cache.
        assert_eq!(w.c.release_holder(R, Pr), Ok(None));
        let Ok(CallbackOutcome::AnswerNow(_)) = w.c.callback(1, R, Nl) else {
            panic!("no holder: answer now");
        };
        assert_eq!(w.c.answered(R, Err(-5)), None);
        assert_eq!(w.c.acquire(R, Pr, || 99), Err(CacheError::Withdrawn));
    });
}

/// A holder coming through the gate races a callback: the answer is carried out exactly once,
/// never while the gate holder is inside (`carry_out` asserts it), and the gate admits nobody
/// once the callback is in.
#[test]
fn gate_holder_races_callback() {
    model(|| {
        let w = World::new();
        cached(&w, Ex);
        let g = w.c.gate_of(R).expect("a cached lock has a gate");
        let w1 = w.clone();
        let holder = thread::spawn(move || {
            if w1.c.acquire_fast(g, Pr) {
                w1.active.fetch_add(1, SeqCst);
                w1.check();
                w1.active.fetch_sub(1, SeqCst);
                let a = w1.c.release_fast(g);
                w1.check();
                w1.carry_out(a);
            }
        });
        match w.c.callback(1, R, Nl) {
            Ok(CallbackOutcome::AnswerNow(a)) => w.carry_out(Some(a)),
            Ok(CallbackOutcome::Recorded) => {}
            Err(e) => panic!("callback refused: {e:?}"),
        }
        assert!(
            !w.c.acquire_fast(g, Pr),
            "the gate admits nobody after a callback"
        );
        holder.join().unwrap();
        assert_eq!(w.answers.load(SeqCst), 1, "exactly one answer");
        assert_eq!(w.c.entry(R).and_then(|e| e.held()), None, "released");
        assert_eq!(w.c.gate_holders(R), 0);
        w.check();
    });
}

/// A speculation racing the lock's departure and return. With the lock cached in EX, `learn`
/// takes what the reader checks with (a gate, a ticket); the reader then checks with `check`
/// (`false`: before its read; `true`: after) and reads the volume, which holds 1 while this
/// node has the lock and 2 once another node wrote; meanwhile the main thread gives the lock up
/// (the callback's answer), "another node" writes, and the lock comes back, refreshed. A read
/// that passes both checks must have seen 1. Returns the world and what `learn` took.
fn speculation_across_a_callback<T: Copy + Send + 'static>(
    learn: impl FnOnce(&World) -> T,
    check: impl Fn(&World, T, bool) -> bool + Send + 'static,
) -> (Arc<World>, T) {
    let w = World::new();
    cached(&w, Ex);
    let x = learn(&w);
    let data = Arc::new(AtomicUsize::new(1));
    let (w1, d1) = (w.clone(), data.clone());
    let reader = thread::spawn(move || {
        if check(&w1, x, false) {
            let seen = d1.load(SeqCst);
            if check(&w1, x, true) {
                assert_eq!(seen, 1, "a speculation stood on data written elsewhere");
            }
        }
    });
    match w.c.callback(1, R, Nl) {
        Ok(CallbackOutcome::AnswerNow(a)) => w.carry_out(Some(a)),
        other => panic!("no holder, so the answer is due at once: {other:?}"),
    }
    data.store(2, SeqCst);
    w.hold(Pr).expect("the lock comes back");
    w.leave(Pr);
    reader.join().unwrap();
    w.check();
    (w, x)
}

/// The gate of `R`, cached, and a ticket for it.
fn gate_and_ticket(w: &World) -> (Gate, u64) {
    let g = w.c.gate_of(R).expect("a cached lock has a gate");
    let t =
        w.c.speculation_ticket(g)
            .expect("an open gate gives a ticket");
    (g, t)
}

/// A speculation (the gate checked before and after a read, no hold) never stands when the
/// data it read was written after the lock left the node, even if the lock came back and the
/// gate opened again before the second check.
#[test]
fn speculation_fails_across_a_callback() {
    model(|| {
        speculation_across_a_callback(
            |w| w.c.gate_of(R).expect("a cached lock has a gate"),
            |w, g, _| w.c.gate_admits(g, Pr),
        );
    });
}

/// The same with a ticket, checked the way XFS checks it without calling the module
/// (`LockCache::ticket_admits` mirrors `xfs_mxfs_spec_begin()` and `xfs_mxfs_spec_end()`); the
/// ticket admits nothing once the lock is back.
#[test]
fn ticket_speculation_fails_across_a_callback() {
    model(|| {
        let (w, t) = speculation_across_a_callback(
            |w| gate_and_ticket(w).1,
            |w, t, second| w.c.ticket_admits(0, t, second),
        );
        assert!(
            !w.c.ticket_admits(0, t, false),
            "a ticket from before the callback admits nothing after it"
        );
    });
}

/// A ticket names a slot, not a resource: once the slot goes to another resource (and its gate
/// opens for it), the old ticket admits nothing; a ticket of a closed gate is refused; holders
/// coming and going (the word's lower half) do not disturb a ticket.
#[test]
fn ticket_refused_after_close_or_slot_reuse() {
    model(|| {
        let w = World::new();
        cached(&w, Pr);
        let (g, t) = gate_and_ticket(&w);
        assert!(w.c.acquire_fast(g, Pr));
        assert!(
            w.c.ticket_admits(0, t, false),
            "a gate holder does not move the ticket"
        );
        assert_eq!(w.c.release_fast(g), None);
        assert!(w.c.ticket_admits(0, t, true));
        match w.c.callback(1, R, Nl) {
            Ok(CallbackOutcome::AnswerNow(a)) => w.carry_out(Some(a)),
            other => panic!("no holder, so the answer is due at once: {other:?}"),
        }
        assert_eq!(
            w.c.speculation_ticket(g),
            None,
            "a closed gate gives no ticket"
        );
        assert!(!w.c.ticket_admits(0, t, false));
        // Another resource takes the idle slot and its gate opens.
        const R2: ResourceId = ResourceId::volume(8);
        let Ok(Acquired::Send(r)) = w.c.acquire(R2, Pr, || 2) else {
            panic!("a first acquire of R2 sends");
        };
        assert!(matches!(
            w.c.granted(R2, r.req_id, Pr, Pr, V1),
            Ok(Granted::Holder(Acquired::Refresh))
        ));
        w.c.refreshed(R2, true);
        assert_eq!(w.c.release_holder(R2, Pr), Ok(None));
        let g2 = w.c.gate_of(R2).expect("R2 is cached");
        assert_eq!(
            (g2.bucket, g2.entry),
            (g.bucket, g.entry),
            "R2 took R's slot"
        );
        assert!(w.c.speculation_ticket(g2).is_some());
        assert!(
            !w.c.ticket_admits(0, t, false),
            "R's ticket admits nothing on R2's gate"
        );
        assert_eq!(w.c.speculation_ticket(g), None, "R's gate no longer exists");
    });
}

/// A withdraw while a holder is inside the gate: the gate closes at once, and a drain waits
/// until the holder leaves.
#[test]
fn withdraw_drains_gate_holders() {
    model(|| {
        let w = World::new();
        cached(&w, Ex);
        let g = w.c.gate_of(R).expect("a cached lock has a gate");
        assert!(w.c.acquire_fast(g, Ex));
        let w1 = w.clone();
        let withdrawer = thread::spawn(move || {
            w1.c.withdraw();
            assert!(!w1.c.acquire_fast(g, Pr), "a withdrawn gate admits nobody");
            assert!(!w1.c.gate_admits(g, Pr));
            w1.c.drain()
        });
        assert_eq!(
            w.c.release_fast(g),
            None,
            "a withdrawn cache answers nothing"
        );
        assert_eq!(
            withdrawer.join().unwrap(),
            0,
            "the drain ends with no holder"
        );
        assert_eq!(w.c.gate_holders(R), 0);
        w.check();
    });
}
