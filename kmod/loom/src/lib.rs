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

/// A pending table on loom's mutexes and condition variables, with few buckets so loom's
/// state space stays small (bucket sharing is what the tests want to exercise anyway).
pub struct LoomTable {
    buckets: Vec<(Mutex<Bucket>, Condvar)>,
}

impl LoomTable {
    /// A table of `buckets` empty buckets (at least 1). Must be called inside `loom::model`.
    pub fn new(buckets: usize) -> LoomTable {
        assert!(buckets > 0, "a pending table needs at least one bucket");
        LoomTable {
            buckets: (0..buckets)
                .map(|_| (Mutex::new(Bucket::EMPTY), Condvar::new()))
                .collect(),
        }
    }
}

/// A held bucket lock. `Option` because loom's `Condvar::wait` takes the guard by value.
pub struct LoomGuard<'a>(Option<MutexGuard<'a, Bucket>>);

impl Deref for LoomGuard<'_> {
    type Target = Bucket;
    fn deref(&self) -> &Bucket {
        self.0.as_ref().expect("guard is only empty inside wait")
    }
}

impl DerefMut for LoomGuard<'_> {
    fn deref_mut(&mut self) -> &mut Bucket {
        self.0.as_mut().expect("guard is only empty inside wait")
    }
}

impl PendingSync for LoomTable {
    type Guard<'a> = LoomGuard<'a>;
    type Budget = ();

    fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    fn lock(&self, idx: usize) -> LoomGuard<'_> {
        LoomGuard(Some(
            self.buckets[idx]
                .0
                .lock()
                .expect("no test thread panics holding a bucket"),
        ))
    }

    fn wait(&self, idx: usize, guard: &mut LoomGuard<'_>, _budget: &mut ()) -> Wake {
        let g = guard.0.take().expect("guard present on entry to wait");
        guard.0 = Some(
            self.buckets[idx]
                .1
                .wait(g)
                .expect("no test thread panics holding a bucket"),
        );
        Wake::Notified
    }

    fn notify_all(&self, idx: usize) {
        self.buckets[idx].1.notify_all();
    }

    fn grant_budget(&self) {}
}

/// A lock cache on loom's mutexes and condition variables, with few buckets.
pub struct LoomCache {
    buckets: Vec<(Mutex<lockcache::CacheBucket>, Condvar)>,
    gates: Vec<[AtomicU64; lockcache::ENTRIES_PER_BUCKET]>,
}

impl LoomCache {
    /// A cache of `buckets` empty buckets (at least 1). Must be called inside `loom::model`.
    pub fn new(buckets: usize) -> LoomCache {
        assert!(buckets > 0, "a lock cache needs at least one bucket");
        LoomCache {
            buckets: (0..buckets)
                .map(|_| (Mutex::new(lockcache::CacheBucket::EMPTY), Condvar::new()))
                .collect(),
            gates: (0..buckets)
                .map(|_| core::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
        }
    }
}

/// A held cache bucket lock. `Option` because loom's `Condvar::wait` takes the guard by value.
pub struct LoomCacheGuard<'a>(Option<MutexGuard<'a, lockcache::CacheBucket>>);

impl Deref for LoomCacheGuard<'_> {
    type Target = lockcache::CacheBucket;
    fn deref(&self) -> &lockcache::CacheBucket {
        self.0.as_ref().expect("guard is only empty inside wait")
    }
}

impl DerefMut for LoomCacheGuard<'_> {
    fn deref_mut(&mut self) -> &mut lockcache::CacheBucket {
        self.0.as_mut().expect("guard is only empty inside wait")
    }
}

impl lockcache::CacheSync for LoomCache {
    type Guard<'a> = LoomCacheGuard<'a>;

    fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    fn lock(&self, idx: usize) -> LoomCacheGuard<'_> {
        LoomCacheGuard(Some(
            self.buckets[idx]
                .0
                .lock()
                .expect("no test thread panics holding a bucket"),
        ))
    }

    fn wait(&self, idx: usize, guard: &mut LoomCacheGuard<'_>) -> lockcache::Wake {
        let g = guard.0.take().expect("guard present on entry to wait");
        guard.0 = Some(
            self.buckets[idx]
                .1
                .wait(g)
                .expect("no test thread panics holding a bucket"),
        );
        lockcache::Wake::Notified
    }

    fn notify_all(&self, idx: usize) {
        self.buckets[idx].1.notify_all();
    }

    fn gate(&self, idx: usize, entry: usize) -> &AtomicU64 {
        &self.gates[idx][entry]
    }
}
