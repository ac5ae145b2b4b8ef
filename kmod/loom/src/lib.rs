//! The kernel module's pending table (`kmod/pending.rs`) and lock cache (`kmod/lockcache.rs`),
//! the very files `mxfs.ko` compiles, instantiated with `loom::sync`, so loom can explore their
//! interleavings.
//!
//! The kernel sleeps with a timeout; loom cannot model one (its timed waits never time out), so
//! [`LoomTable`]'s sleeps never time out either and the tests race a timer thread that calls
//! `PendingTable::expire`, the same path a timed-out kernel wait takes.

/// The proto vocabulary under the path `pending.rs` expects (`crate::proto`).
pub mod proto {
    pub use mxfs_proto::*;
}

/// The atomics `lockcache.rs` and `taskholds.rs` take from their parent module: loom's.
pub mod atomic {
    pub use loom::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicUsize, Ordering};
}

#[path = "../../pending.rs"]
pub mod pending;

#[path = "../../lockcache.rs"]
pub mod lockcache;

#[path = "../../taskholds.rs"]
pub mod taskholds;

/// `taskholds.rs` again on `core`'s atomics, for the single-threaded test against a map (loom
/// would count each of its thousands of steps as a branch). A `path` attribute, so that the
/// file's own `path` is taken from `src/`.
#[path = "plain.rs"]
pub mod plain;

use std::ops::{Deref, DerefMut};

use loom::sync::atomic::AtomicU64;
use loom::sync::{Condvar, Mutex, MutexGuard};
use pending::{Bucket, PendingSync, Wake};

/// Buckets of `T` on loom's mutexes and condition variables: what [`LoomTable`] and
/// [`LoomCache`] lock, sleep on and wake, with few buckets so loom's state space stays small
/// (bucket sharing is what the tests want to exercise anyway).
pub struct LoomBuckets<T> {
    buckets: Vec<(Mutex<T>, Condvar)>,
}

impl<T> LoomBuckets<T> {
    /// `n` buckets (at least 1) made by `empty`. Must be called inside `loom::model`.
    fn new(n: usize, empty: impl Fn() -> T) -> LoomBuckets<T> {
        assert!(n > 0, "a table needs at least one bucket");
        LoomBuckets {
            buckets: (0..n)
                .map(|_| (Mutex::new(empty()), Condvar::new()))
                .collect(),
        }
    }

    fn len(&self) -> usize {
        self.buckets.len()
    }

    fn lock(&self, idx: usize) -> LoomGuard<'_, T> {
        LoomGuard(Some(
            self.buckets[idx]
                .0
                .lock()
                .expect("no test thread panics holding a bucket"),
        ))
    }

    /// Sleeps on bucket `idx` until notified (loom's waits never time out).
    fn wait(&self, idx: usize, guard: &mut LoomGuard<'_, T>) {
        let g = guard.0.take().expect("guard present on entry to wait");
        guard.0 = Some(
            self.buckets[idx]
                .1
                .wait(g)
                .expect("no test thread panics holding a bucket"),
        );
    }

    fn notify_all(&self, idx: usize) {
        self.buckets[idx].1.notify_all();
    }
}

/// A held bucket lock. `Option` because loom's `Condvar::wait` takes the guard by value.
pub struct LoomGuard<'a, T>(Option<MutexGuard<'a, T>>);

impl<T> Deref for LoomGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0.as_ref().expect("guard is only empty inside wait")
    }
}

impl<T> DerefMut for LoomGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.0.as_mut().expect("guard is only empty inside wait")
    }
}

/// A pending table on [`LoomBuckets`].
pub struct LoomTable(LoomBuckets<Bucket>);

impl LoomTable {
    /// A table of `buckets` empty buckets (at least 1). Must be called inside `loom::model`.
    pub fn new(buckets: usize) -> LoomTable {
        LoomTable(LoomBuckets::new(buckets, || Bucket::EMPTY))
    }
}

impl PendingSync for LoomTable {
    type Guard<'a> = LoomGuard<'a, Bucket>;
    type Budget = ();

    fn bucket_count(&self) -> usize {
        self.0.len()
    }

    fn lock(&self, idx: usize) -> Self::Guard<'_> {
        self.0.lock(idx)
    }

    fn wait(&self, idx: usize, guard: &mut Self::Guard<'_>, _budget: &mut ()) -> Wake {
        self.0.wait(idx, guard);
        Wake::Notified
    }

    fn notify_all(&self, idx: usize) {
        self.0.notify_all(idx);
    }

    fn grant_budget(&self) {}
}

/// A lock cache on [`LoomBuckets`], with its gate words.
pub struct LoomCache {
    buckets: LoomBuckets<lockcache::CacheBucket>,
    gates: Vec<[AtomicU64; lockcache::ENTRIES_PER_BUCKET]>,
}

impl LoomCache {
    /// A cache of `buckets` empty buckets (at least 1). Must be called inside `loom::model`.
    pub fn new(buckets: usize) -> LoomCache {
        LoomCache {
            buckets: LoomBuckets::new(buckets, || lockcache::CacheBucket::EMPTY),
            gates: (0..buckets)
                .map(|_| core::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
        }
    }
}

impl lockcache::CacheSync for LoomCache {
    type Guard<'a> = LoomGuard<'a, lockcache::CacheBucket>;

    fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    fn lock(&self, idx: usize) -> Self::Guard<'_> {
        self.buckets.lock(idx)
    }

    fn wait(&self, idx: usize, guard: &mut Self::Guard<'_>) -> lockcache::Wake {
        self.buckets.wait(idx, guard);
        lockcache::Wake::Notified
    }

    fn notify_all(&self, idx: usize) {
        self.buckets.notify_all(idx);
    }

    fn gate(&self, idx: usize, entry: usize) -> &AtomicU64 {
        &self.gates[idx][entry]
    }
}
