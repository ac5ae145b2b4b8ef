// SPDX-License-Identifier: GPL-2.0
//! Level 0: one cluster lock per `-o mxfs` mount, cached in the kernel (DESIGN.md §5.2, §5.3).
//!
//! XFS calls out at the entry and exit of every operation (`kmod/patches`, glue.c forwards here).
//! An operation that only reads takes the volume's `VOLUME` resource in PR, any other in EX,
//! through the kernel lock cache ([`crate::lockcache`], here on `kernel::sync`): a cached mode
//! that covers the operation costs no message. A miss sends `LOCK_REQ` (or a `CONVERT` of the
//! cached lock) and waits in the pending table like any lock call.
//!
//! The three XFS services are called at the points the cache names:
//! - the *refresh* (`xfs_mxfs_refresh`) by the first holder after a grant that may carry other
//!   nodes' changes, before it goes on;
//! - the *clean point* (`xfs_mxfs_clean_point`) before a lock held in EX is given up or
//!   down-converted, and the *uncache* (`xfs_mxfs_uncache`) when less than PR is kept: both in
//!   the answer to a `LOCK_CALLBACK`, which runs on an ordered work queue (glue.c), never in a
//!   netlink doit (the daemon's grant of a down-conversion arrives through the same socket) and
//!   never in an operation's context (the clean point must not run with an IOLOCK held);
//! - the *withdraw* (`xfs_mxfs_withdraw`) when mxfsd goes away while a volume is mounted or an
//!   answer fails: the cache refuses every later acquire with `-EIO` and XFS shuts the mount
//!   down.
//!
//! A task may call `op_begin` again before its `op_end` (a page fault while read or write
//! copies user memory, fs/xfs/xfs_mxfs.c lists the others). The cache cannot see that the
//! caller already holds the lock, and a callback pending meanwhile would make the inner call
//! wait for the outer one forever. So each holding task is recorded ([`TaskHolds`]); an inner
//! call whose mode the outer one covers only counts a depth. An inner call that needs more
//! than the outer one holds (a write fault on an mxfs mapping while reading into it) fails
//! with `-EDEADLK`: converting would wait for the task's own hold.
//!
//! Lock order: the cache's bucket locks are leaves (never held across a sleep or a call out;
//! [`TaskHolds`] takes no lock); the mount table's mutex is taken by mount, unmount and daemon
//! loss only, and is held across the XFS withdraw and the answer work's flush.

use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};

use kernel::bindings;
use kernel::error::{code, Error};
use kernel::init::pin_init_array_from_fn;
use kernel::prelude::*;
use kernel::sync::lock::{spinlock::SpinLockBackend, Guard};
use kernel::sync::{new_condvar, new_mutex, new_spinlock, CondVar, Mutex, SpinLock};

use crate::glue;
use crate::hooks;
use crate::lockcache::{
    covers, Acquired, Answer, CacheBucket, CacheError, CacheSync, CallbackOutcome, Gate, Granted,
    LockCache, Wake, CACHE_BUCKETS, ENTRIES_PER_BUCKET,
};
use crate::netlink;
use crate::pending::Grant;
use crate::proto::{
    volume_id_from_uuid, LockFlags, LockMode, LockRelease, Message, ResourceId, VolumeMount,
    VolumeUmount, VolumeWithdraw,
};
use crate::taskholds::{Entered, TaskHold, TaskHolds, TASK_HOLDS_MAX};
use crate::{kerr, state, Mxfs};

/// Most `-o mxfs` mounts at once (the same bound as the recovery freezes' volumes).
pub(crate) const MOUNTS_MAX: usize = hooks::VOLUMES_MAX;

/// The private pointer of a recovery mount (`mxfs_recover=N`): no slot, no lock. It replays a
/// dead node's log at mount while the cluster is frozen for that node's recovery, and serves
/// no operation after (DESIGN.md §5.5).
const RECOVERY_MOUNT_PRIV: usize = usize::MAX;

/// `op_end` cookies (kept by XFS in `xfs_mxfs_op::cookie`): which hold the `op_begin` took.
/// Bits 0-2: the kind; bits 3-10: the task's [`TaskHolds`] entry (not for a speculation);
/// bits 16-56: for a gate hold or a speculation, the packed [`Gate`].
const COOKIE_GATE: usize = 0;
const COOKIE_PR: usize = 1;
const COOKIE_EX: usize = 2;
const COOKIE_NESTED: usize = 3;
const COOKIE_SPECULATE: usize = 4;
const COOKIE_RECOVERY: usize = 5;
const COOKIE_KIND_MASK: usize = 7;
const COOKIE_TASK_SHIFT: u32 = 3;
const COOKIE_GATE_SHIFT: u32 = 16;

const _: () = assert!(TASK_HOLDS_MAX <= 1 << (COOKIE_GATE_SHIFT - COOKIE_TASK_SHIFT));

/// One bucket of the kernel's lock cache.
#[pin_data]
pub(crate) struct KCacheBucket {
    #[pin]
    lock: SpinLock<CacheBucket>,
    #[pin]
    cv: CondVar,
    /// Tasks sleeping on `cv`. Changed only with `lock` held (a sleeper counts itself before
    /// `cv` releases the lock), so a notifier that reads it after its own critical section
    /// sees every sleeper that could have missed that section's change, and skips the wake-up
    /// (a wait-queue lock with interrupts off) when there is none: the common case of
    /// `op_end`.
    sleepers: AtomicU32,
    /// The gates of the bucket's entries (`lockcache::gate`).
    gates: [AtomicU64; ENTRIES_PER_BUCKET],
}

/// The kernel lock cache: [`LockCache`] on `kernel::sync`.
#[pin_data]
pub(crate) struct KCache {
    #[pin]
    buckets: [KCacheBucket; CACHE_BUCKETS],
}

impl KCache {
    /// Bucket `idx`'s gate words, as XFS reads them (`struct xfs_mxfs_spec`): a pointer to the
    /// whole array (an `AtomicU64` has the layout of a `u64`).
    fn gate_words(&self, idx: usize) -> *const u64 {
        self.buckets[idx].gates.as_ptr().cast()
    }

    pub(crate) fn new() -> impl PinInit<KCache> {
        pin_init!(KCache {
            buckets <- pin_init_array_from_fn(|_| {
                pin_init!(KCacheBucket {
                    lock <- new_spinlock!(CacheBucket::EMPTY, "mxfs_lockcache_bucket"),
                    cv <- new_condvar!("mxfs_lockcache_wq"),
                    sleepers: AtomicU32::new(0),
                    gates: [const { AtomicU64::new(0) }; ENTRIES_PER_BUCKET],
                })
            }),
        })
    }
}

impl CacheSync for KCache {
    type Guard<'a> = Guard<'a, CacheBucket, SpinLockBackend>;

    fn bucket_count(&self) -> usize {
        CACHE_BUCKETS
    }

    fn lock(&self, idx: usize) -> Self::Guard<'_> {
        self.buckets[idx].lock.lock()
    }

    fn wait(&self, idx: usize, guard: &mut Self::Guard<'_>) -> Wake {
        let b = &self.buckets[idx];
        b.sleepers.fetch_add(1, Ordering::Relaxed);
        let signal = b.cv.wait_interruptible(guard);
        // The lock is held again here.
        b.sleepers.fetch_sub(1, Ordering::Relaxed);
        if signal {
            Wake::Interrupted
        } else {
            Wake::Notified
        }
    }

    fn notify_all(&self, idx: usize) {
        let b = &self.buckets[idx];
        if b.sleepers.load(Ordering::Acquire) > 0 {
            b.cv.notify_all();
        }
    }

    #[inline(always)]
    fn gate(&self, idx: usize, entry: usize) -> &AtomicU64 {
        &self.buckets[idx].gates[entry]
    }
}

/// One mounted volume.
#[pin_data]
pub(crate) struct MountSlot {
    /// The volume id; 0 while the slot is free.
    volume: AtomicU64,
    /// The mount's `struct super_block`, valid while `volume` is set.
    sb: AtomicPtr<c_void>,
    /// From the mount callout to the unmount callout: the services may be called.
    live: AtomicBool,
    /// The answer to a callback that the work queue runs next.
    #[pin]
    answer: SpinLock<Option<Answer>>,
    /// When the last `LOCK_CALLBACK` for this volume arrived (ns, for [`LockStats`]).
    callback_at_ns: AtomicU64,
    /// The packed [`Gate`] of the volume lock's cache entry, learnt by the last slow acquire;
    /// 0 for none yet. It may be stale: the gate then refuses it.
    gate: AtomicU64,
    /// The speculation ticket XFS checks getattr and a path walk's permission checks against
    /// itself (`struct xfs_mxfs_spec`, [`crate::lockcache::ticket`]), published by the last
    /// speculation that went through [`mxfs_rs_op_begin`]; 0 for none. It may be stale: the
    /// gate word then no longer matches it, XFS calls out, and the call publishes a new one.
    spec_ticket: AtomicU64,
}

/// Whether speculations publish tickets (`spec_inline` and `op_fail_eio`, glue.c).
static SPEC_INLINE: AtomicBool = AtomicBool::new(true);

/// `spec_inline` (glue.c): with `on` false, no ticket is published and every published one is
/// withdrawn, so every speculation reaches [`mxfs_rs_op_begin`] again (where glue.c counts it).
#[no_mangle]
pub(crate) extern "C" fn mxfs_rs_spec_inline(on: bool) {
    SPEC_INLINE.store(on, Ordering::SeqCst);
    if !on {
        if let Some(st) = state() {
            for s in st.volumes.slots.iter() {
                s.spec_ticket.store(0, Ordering::SeqCst);
            }
        }
    }
}

/// Publishes ticket `t` on `slot` for XFS, unless `spec_inline=0` (see [`SPEC_INLINE`]).
fn publish_ticket(slot: &MountSlot, t: u64) {
    if !SPEC_INLINE.load(Ordering::Relaxed) {
        return;
    }
    slot.spec_ticket.store(t, Ordering::SeqCst);
    // A `spec_inline=0` that ran meanwhile may have missed this ticket: take it back.
    if !SPEC_INLINE.load(Ordering::SeqCst) {
        slot.spec_ticket.store(0, Ordering::SeqCst);
    }
}

/// What the lock path did and how long it took (nanoseconds are sums; divide by the count).
/// Read by `just bench-fs` through the module parameter `lock_stats`: glue.c's
/// `mxfs_lock_stat_names` names them, in the order of [`Stat`].
pub(crate) struct LockStats {
    counters: [AtomicU64; STAT_COUNT],
}

/// Indexes of [`LockStats`].
#[derive(Clone, Copy)]
#[repr(usize)]
pub(crate) enum Stat {
    /// `LOCK_REQ`s sent for an operation (misses and upgrades).
    Requests,
    /// Their time from send to grant.
    RequestNs,
    /// Refreshes run.
    Refreshes,
    /// Their time.
    RefreshNs,
    /// `LOCK_CALLBACK`s received.
    Callbacks,
    /// Answers run.
    Answers,
    /// Time from the callback to the start of its answer (waiting for holders and the queue).
    AnswerWaitNs,
    /// Clean points run.
    CleanPoints,
    /// Their time.
    CleanPointNs,
    /// Time of the answers' release or down-conversion message (and its grant).
    GiveBackNs,
    /// PR to EX conversions denied as a deadlock with another node's, and retried from NL.
    ConversionDeadlocks,
}

const STAT_COUNT: usize = Stat::ConversionDeadlocks as usize + 1;

impl LockStats {
    fn new() -> LockStats {
        LockStats {
            counters: [const { AtomicU64::new(0) }; STAT_COUNT],
        }
    }

    fn add(&self, s: Stat, n: u64) {
        self.counters[s as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one to `count` and the nanoseconds since `start` to `ns`.
    fn time(&self, count: Stat, ns: Stat, start: i64) {
        self.add(count, 1);
        self.add(ns, now_ns().saturating_sub(start) as u64);
    }
}

/// `pair_bench` (glue.c): `pairs` cached `op_begin`/`op_end` pairs with read intent on the
/// first mounted volume, timed; then `pairs` of each of their parts alone: the task table's
/// claim and free, and the gate's acquire and release; a clock read (the loop's own overhead
/// is in each); `pairs` speculations (`op_begin` with `speculate` and `op_end`), and `pairs`
/// checks of the ticket those published, as XFS makes them. Writes `[pairs, pair_ns,
/// task_table_ns, gate_ns, clock_ns, speculation_ns, ticket_ns]` (nanoseconds per pair;
/// `ticket_ns` is 0 with `spec_inline=0`) to `out`; returns how many, or a negative errno:
/// `-ENODEV` with no mxfs mount, or what the first `op_begin` failed with.
#[no_mangle]
pub(crate) extern "C" fn mxfs_rs_pair_bench(pairs: u32, out: *mut u64, n: c_int) -> c_int {
    let Some(st) = state() else {
        return code::ENODEV.to_errno();
    };
    let v = &st.volumes;
    let Some(idx) = v
        .slots
        .iter()
        .position(|s| s.volume.load(Ordering::Acquire) != 0 && s.live.load(Ordering::Acquire))
    else {
        return code::ENODEV.to_errno();
    };
    let slot = &v.slots[idx];
    let mount_priv = (idx + 1) as *mut c_void;
    let task = current_task();
    let timed = |f: &mut dyn FnMut() -> Result| -> Result<u64> {
        let start = now_ns();
        for _ in 0..pairs {
            f()?;
        }
        let ns = now_ns().saturating_sub(start) as u64;
        Ok(ns.checked_div(u64::from(pairs)).unwrap_or(0))
    };
    let mut pair = || {
        let mut cookie = 0usize;
        let rc = mxfs_rs_op_begin(mount_priv, task, false, false, false, &mut cookie);
        if rc != 0 {
            return Err(Error::from_errno(rc));
        }
        mxfs_rs_op_end(mount_priv, task, cookie);
        Ok(())
    };
    // One pair first: the lock is then cached (a miss asks mxfsd once).
    let r = pair().and_then(|()| {
        let pair_ns = timed(&mut pair)?;
        let table_ns = timed(&mut || {
            let h = TaskHold {
                slot: idx,
                mode: LockMode::Pr,
                depth: 1,
            };
            let Entered::Inserted(i) = v.holds.enter(task, h) else {
                return Err(code::EBUSY);
            };
            v.holds.remove(task, i);
            Ok(())
        })?;
        let gate = Gate::unpack(slot.gate.load(Ordering::Relaxed), CACHE_BUCKETS);
        let gate_ns = timed(&mut || {
            let g = gate.filter(|g| v.locks.acquire_fast(*g, LockMode::Pr));
            let g = g.ok_or(code::EAGAIN)?;
            if let Some(a) = v.locks.release_fast(g) {
                queue_answer(idx, slot, a);
            }
            Ok(())
        })?;
        let mut sink = 0usize;
        let clock_ns = timed(&mut || {
            sink = sink.wrapping_add(now_ns() as usize);
            Ok(())
        })?;
        core::hint::black_box(sink);
        let speculation_ns = timed(&mut || {
            let mut cookie = 0usize;
            let rc = mxfs_rs_op_begin(mount_priv, task, false, true, false, &mut cookie);
            if rc != 0 {
                return Err(Error::from_errno(rc));
            }
            if mxfs_rs_op_end(mount_priv, task, cookie) {
                Ok(())
            } else {
                Err(code::EAGAIN)
            }
        })?;
        // The check XFS makes itself with the ticket the speculations above published (the
        // same loads and barriers as xfs_mxfs_spec_begin() and xfs_mxfs_spec_end()).
        let b = v
            .locks
            .bucket_of(ResourceId::volume(slot.volume.load(Ordering::Acquire)));
        let ticket_ns = timed(&mut || {
            let t = slot.spec_ticket.load(Ordering::Relaxed);
            if v.locks.ticket_admits(b, t, false) && v.locks.ticket_admits(b, t, true) {
                Ok(())
            } else {
                Err(code::EAGAIN)
            }
        })
        .unwrap_or(0);
        Ok([
            u64::from(pairs),
            pair_ns,
            table_ns,
            gate_ns,
            clock_ns,
            speculation_ns,
            ticket_ns,
        ])
    });
    match r {
        Ok(vals) => {
            let k = vals.len().min(usize::try_from(n).unwrap_or(0));
            for (i, x) in vals.iter().take(k).enumerate() {
                // SAFETY: glue.c passes an array of `n` u64s, and `i < k <= n`.
                unsafe { *out.add(i) = *x };
            }
            k as c_int
        }
        Err(e) => e.to_errno(),
    }
}

fn now_ns() -> i64 {
    kernel::time::Ktime::ktime_get().to_ns()
}

/// glue.c's `lock_stats` parameter: copies the counters into `out` (`n` entries).
#[no_mangle]
pub(crate) extern "C" fn mxfs_rs_lock_stats(out: *mut u64, n: c_int) -> c_int {
    let Some(st) = state() else {
        return 0;
    };
    let n = (n.max(0) as usize).min(STAT_COUNT);
    for i in 0..n {
        // SAFETY: glue.c passes an array of at least `n` entries, valid during the call.
        unsafe { *out.add(i) = st.volumes.stats.counters[i].load(Ordering::Relaxed) };
    }
    n as c_int
}

/// Everything level 0 keeps.
#[pin_data]
pub(crate) struct Volumes {
    #[pin]
    locks: KCache,
    #[pin]
    slots: [MountSlot; MOUNTS_MAX],
    /// Serialises mount, unmount and daemon loss (slot lifetimes).
    #[pin]
    table: Mutex<()>,
    holds: TaskHolds,
    stats: LockStats,
}

impl Volumes {
    pub(crate) fn new() -> impl PinInit<Volumes> {
        pin_init!(Volumes {
            locks <- KCache::new(),
            slots <- pin_init_array_from_fn(|_| {
                pin_init!(MountSlot {
                    volume: AtomicU64::new(0),
                    sb: AtomicPtr::new(core::ptr::null_mut()),
                    live: AtomicBool::new(false),
                    answer <- new_spinlock!(None, "mxfs_volume_answer"),
                    callback_at_ns: AtomicU64::new(0),
                    gate: AtomicU64::new(0),
                    spec_ticket: AtomicU64::new(0),
                })
            }),
            table <- new_mutex!((), "mxfs_volume_table"),
            stats: LockStats::new(),
            holds: TaskHolds::new(),
        })
    }
}

fn cache_error(e: CacheError) -> Error {
    Error::from_errno(e.errno())
}

/// The slot a mount's private pointer names (index + 1, so that null is never a slot).
fn slot_of(v: &Volumes, mount_priv: *mut c_void) -> Option<(usize, &MountSlot)> {
    let i = (mount_priv as usize).checked_sub(1)?;
    let s = v.slots.get(i)?;
    (s.volume.load(Ordering::Acquire) != 0).then_some((i, s))
}

fn slot_of_volume(v: &Volumes, volume: u64) -> Option<(usize, &MountSlot)> {
    v.slots
        .iter()
        .enumerate()
        .find(|(_, s)| volume != 0 && s.volume.load(Ordering::Acquire) == volume)
}

/// The current task's address, the key of [`TaskHolds`].
fn current_task() -> usize {
    core::ptr::from_ref(kernel::current!()) as usize
}

/// Asks mxfsd for the lock cache's request `req_id`: a new request, or a `CONVERT` of the
/// cached one.
fn request(
    st: &Mxfs,
    resource: ResourceId,
    req_id: u64,
    mode: LockMode,
    convert: bool,
) -> Result<Grant> {
    let flags = if convert {
        LockFlags::CONVERT
    } else {
        LockFlags::empty()
    };
    hooks::request(st, req_id, resource, mode, flags, None)
}

/// Runs the refresh the cache asked this holder for, and reports it.
fn refresh(v: &Volumes, slot: &MountSlot, resource: ResourceId, mode: LockMode) -> Result {
    let sb = slot.sb.load(Ordering::Acquire);
    let start = now_ns();
    // SAFETY: the slot's super block stays valid from the mount callout to the unmount
    // callout, and a holder runs inside an operation of that mount, which is between them.
    let rc = unsafe { glue::xfs_mxfs_refresh(sb) };
    v.stats.time(Stat::Refreshes, Stat::RefreshNs, start);
    v.locks.refreshed(resource, rc == 0);
    if rc == 0 {
        return Ok(());
    }
    pr_err!(
        "refresh of volume {:#x} failed ({}); the operation fails\n",
        resource.volume,
        rc
    );
    release(v, resource, mode);
    Err(Error::from_errno(rc))
}

/// Takes a holder reference on `resource` in `mode`, asking mxfsd when the cache misses.
fn acquire(
    st: &Mxfs,
    idx: usize,
    slot: &MountSlot,
    resource: ResourceId,
    mode: LockMode,
) -> Result {
    let v = &st.volumes;
    loop {
        let r = match v
            .locks
            .acquire(resource, mode, || {
                st.next_req_id.fetch_add(1, Ordering::Relaxed)
            })
            .map_err(cache_error)?
        {
            Acquired::Hit => {
                return Ok(());
            }
            Acquired::Refresh => return refresh(v, slot, resource, mode),
            Acquired::Send(r) => r,
        };
        let sent = now_ns();
        let grant = match request(st, resource, r.req_id, r.mode, r.convert) {
            Ok(g) => {
                v.stats.time(Stat::Requests, Stat::RequestNs, sent);
                g
            }
            Err(e) => {
                if let Some(a) = v.locks.request_failed(resource, r.req_id) {
                    queue_answer(idx, slot, a);
                }
                if r.convert && e.to_errno() == -(bindings::EDEADLK as i32) {
                    // Two nodes that both hold PR and both convert to EX wait for each other;
                    // the lock manager denies the newer conversion (EDEADLK). Give the PR back
                    // (a callback to ourselves: new holders wait, the answer runs once the
                    // current ones leave) and ask again from nothing, behind the other node.
                    v.stats.add(Stat::ConversionDeadlocks, 1);
                    give_back(v, idx, slot, resource);
                    continue;
                }
                return Err(e);
            }
        };
        match v
            .locks
            .granted(resource, r.req_id, grant.mode, mode, grant.version)
            .map_err(cache_error)?
        {
            Granted::Holder(Acquired::Hit) => return Ok(()),
            Granted::Holder(Acquired::Refresh) => return refresh(v, slot, resource, mode),
            Granted::Holder(Acquired::Send(_)) => {
                pr_err!("lock cache: a grant asked for another request\n");
                release(v, resource, mode);
                return Err(code::EIO);
            }
            Granted::Retry(a) => {
                if let Some(a) = a {
                    queue_answer(idx, slot, a);
                }
            }
        }
    }
}

/// Gives this node's cached lock on `resource` back, as a callback to NL would.
fn give_back(v: &Volumes, idx: usize, slot: &MountSlot, resource: ResourceId) {
    let Some(h) = v.locks.entry(resource).and_then(|e| e.held()) else {
        return;
    };
    match v.locks.callback(h.req_id, resource, LockMode::Nl) {
        Ok(CallbackOutcome::AnswerNow(a)) => queue_answer(idx, slot, a),
        Ok(CallbackOutcome::Recorded) => {}
        Err(e) => pr_warn!("giving back request {} failed: {:?}\n", h.req_id, e),
    }
}

/// Drops a holder reference; queues the answer it makes due, if any.
fn release(v: &Volumes, resource: ResourceId, mode: LockMode) {
    match v.locks.release_holder(resource, mode) {
        Ok(Some(a)) => match slot_of_volume(v, resource.volume) {
            Some((i, s)) => queue_answer(i, s, a),
            None => pr_err!(
                "answer for unmounted volume {:#x} dropped\n",
                resource.volume
            ),
        },
        Ok(None) => {}
        Err(e) => pr_err!("release of a {} holder failed: {:?}\n", mode.name(), e),
    }
}

/// Hands an answer to the slot's work item.
fn queue_answer(idx: usize, slot: &MountSlot, a: Answer) {
    let earlier = slot.answer.lock().replace(a);
    if let Some(e) = earlier {
        // The cache lets one answer per resource be due at a time (`answering`), and a mount
        // has one resource: two at once mean its state machine broke. Withdraw rather than
        // guess which lock to give back.
        pr_err!(
            "two answers due at once (request {} and {}); withdrawing\n",
            e.req_id,
            a.req_id
        );
        if let Some(st) = state() {
            st.volumes.locks.withdraw();
        }
    }
    // SAFETY: `idx` is a slot index below MOUNTS_MAX, which glue.c's work array matches.
    unsafe { glue::mxfs_glue_answer_queue(idx as c_int) };
}

/// The work item of slot `idx` (glue.c): runs the answers due for its volume.
#[no_mangle]
pub(crate) extern "C" fn mxfs_rs_answer_work(idx: c_int) {
    let Some(st) = state() else {
        return;
    };
    let Some(slot) = st.volumes.slots.get(idx as usize) else {
        return;
    };
    let mut next = slot.answer.lock().take();
    while let Some(a) = next {
        next = run_answer(st, slot, a);
    }
}

/// Gives up what a callback asked for: the clean point if the lock was held for writing, the
/// uncache if less than PR stays, then `LOCK_RELEASE` or a down-converting `LOCK_REQ`. Returns
/// the next answer the cache makes due.
fn run_answer(st: &Mxfs, slot: &MountSlot, a: Answer) -> Option<Answer> {
    let stats = &st.volumes.stats;
    let called = slot.callback_at_ns.swap(0, Ordering::Relaxed);
    if called != 0 {
        stats.time(Stat::Answers, Stat::AnswerWaitNs, called as i64);
    }
    let sb = slot.sb.load(Ordering::Acquire);
    let live = slot.live.load(Ordering::Acquire);
    let mut result: core::result::Result<Option<u64>, i32> = Ok(None);
    let start = now_ns();
    if live && a.clean_point {
        // SAFETY: `live` is set only while the super block is valid (mount to unmount callout),
        // and the unmount callout clears it and flushes this work before it returns.
        let rc = unsafe { glue::xfs_mxfs_clean_point(sb) };
        if rc != 0 {
            pr_err!(
                "clean point of volume {:#x} failed ({}); withdrawing\n",
                a.resource.volume,
                rc
            );
            result = Err(rc);
        }
        stats.time(Stat::CleanPoints, Stat::CleanPointNs, start);
    }
    let give_back = now_ns();
    if result.is_ok() {
        if live && !a.to.is_some_and(|m| covers(m, LockMode::Pr)) {
            // SAFETY: as for the clean point.
            unsafe { glue::xfs_mxfs_uncache(sb) };
        }
        result = match a.to {
            None => netlink::send_to_daemon(
                st,
                &Message::LockRelease(LockRelease {
                    req_id: a.req_id,
                    resource: a.resource,
                    mode: Some(a.from),
                }),
            )
            .map(|()| None),
            Some(to) => request(st, a.resource, a.req_id, to, true).map(|g| g.version),
        }
        .map_err(|e| e.to_errno());
        stats.add(Stat::GiveBackNs, now_ns().saturating_sub(give_back) as u64);
    }
    if let Err(e) = result {
        withdraw_mount(st, slot, live, e);
    }
    st.volumes.locks.answered(a.resource, result)
}

/// The lock of one mount is lost: tell XFS (forced shutdown) and mxfsd (`VOLUME_WITHDRAW`).
fn withdraw_mount(st: &Mxfs, slot: &MountSlot, live: bool, errno: i32) {
    let volume = slot.volume.load(Ordering::Acquire);
    if live {
        // SAFETY: as in `run_answer`.
        unsafe { glue::xfs_mxfs_withdraw(slot.sb.load(Ordering::Acquire)) };
    }
    let msg = Message::VolumeWithdraw(VolumeWithdraw {
        volume,
        status: errno.clamp(-4095, -1),
    });
    if let Err(e) = netlink::send_to_daemon(st, &msg) {
        pr_warn!("VOLUME_WITHDRAW of {:#x} not sent: {:?}\n", volume, e);
    }
}

/// `LOCK_CALLBACK` from mxfsd: record it; if the answer is due now, queue it.
pub(crate) fn callback(st: &Mxfs, req_id: u64, resource: ResourceId, keep: LockMode) -> Result {
    let v = &st.volumes;
    v.stats.add(Stat::Callbacks, 1);
    let slot = slot_of_volume(v, resource.volume);
    if let Some((_, s)) = slot {
        let _ = s.callback_at_ns.compare_exchange(
            0,
            now_ns() as u64,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
    match v
        .locks
        .callback(req_id, resource, keep)
        .map_err(cache_error)?
    {
        CallbackOutcome::Recorded => Ok(()),
        CallbackOutcome::AnswerNow(a) => match slot {
            Some((i, s)) => {
                queue_answer(i, s, a);
                Ok(())
            }
            None => {
                pr_err!(
                    "LOCK_CALLBACK for request {}: volume {:#x} is not mounted\n",
                    req_id,
                    resource.volume
                );
                Err(code::ENOENT)
            }
        },
    }
}

/// mxfsd's socket went away. Every mounted volume withdraws: the cluster is about to fence
/// this node, so it must not write any more (DESIGN.md §5.2).
pub(crate) fn daemon_gone(st: &Mxfs) {
    let v = &st.volumes;
    let _g = v.table.lock();
    let mut any = false;
    for s in v.slots.iter() {
        if s.volume.load(Ordering::Acquire) == 0 || !s.live.load(Ordering::Acquire) {
            continue;
        }
        if !any {
            v.locks.withdraw();
            any = true;
        }
        pr_err!(
            "mxfsd went away while volume {:#x} is mounted; withdrawing it\n",
            s.volume.load(Ordering::Acquire)
        );
        // SAFETY: the table mutex keeps the unmount callout, which ends the super block's use
        // here, from running meanwhile; `live` says it has not run yet.
        unsafe { glue::xfs_mxfs_withdraw(s.sb.load(Ordering::Acquire)) };
    }
}

/// The XFS mount callout (glue.c's `mxfs_xfs_mount`). A mount needs mxfsd (`-ENOTCONN`
/// otherwise), gets a slot and announces itself with `VOLUME_MOUNT`; its first operation (the
/// rest of the mount, `XFS_MXFS_OP_MOUNT`) then takes the volume lock in EX.
#[no_mangle]
pub(crate) extern "C" fn mxfs_rs_fs_mount(
    sb: *mut c_void,
    sb_id: *const kernel::ffi::c_char,
    uuid16: *const u8,
    log_major: u32,
    log_minor: u32,
    recover_node: u32,
    mount_priv: *mut *mut c_void,
) -> c_int {
    let Some(st) = state() else {
        return code::ENODEV.to_errno();
    };
    // SAFETY: XFS passes the super block's NUL-terminated s_id and its 16-byte uuid, both live
    // for the duration of the call (glue.c).
    let (id, uuid) = unsafe { (CStr::from_char_ptr(sb_id), &*uuid16.cast::<[u8; 16]>()) };
    let volume = volume_id_from_uuid(uuid);
    if recover_node != 0 {
        // Run by mxfsd's replay command while the cluster is frozen for the node's recovery
        // (or by an operator with the cluster stopped): no lock, no VOLUME_MOUNT, and no
        // daemon needed.
        // SAFETY: XFS passes a valid pointer for the mount's private data.
        unsafe { *mount_priv = RECOVERY_MOUNT_PRIV as *mut c_void };
        pr_info!(
            "XFS recovery mount of {}: replaying node {}'s log (device {}:{}) of volume {:#x}\n",
            id,
            recover_node,
            log_major,
            log_minor,
            volume
        );
        return 0;
    }
    if st.net.daemon().is_none() {
        pr_err!(
            "mount of {} refused: mxfsd is not running (start it, then mount again)\n",
            id
        );
        return kerr(bindings::ENOTCONN).to_errno();
    }
    let v = &st.volumes;
    let _g = v.table.lock();
    if slot_of_volume(v, volume).is_some() {
        pr_err!(
            "mount of {} refused: volume {:#x} is already mounted here\n",
            id,
            volume
        );
        return code::EBUSY.to_errno();
    }
    let Some((i, s)) = v
        .slots
        .iter()
        .enumerate()
        .find(|(_, s)| s.volume.load(Ordering::Acquire) == 0)
    else {
        pr_err!(
            "mount of {} refused: {} volumes are mounted already\n",
            id,
            MOUNTS_MAX
        );
        return code::ENOSPC.to_errno();
    };
    s.sb.store(sb, Ordering::Release);
    // (A gate left from the slot's last mount would be refused anyway: its generation moved.
    // Not a ticket: it names an entry by index only, maybe of another bucket's gates.)
    s.gate.store(0, Ordering::Relaxed);
    s.spec_ticket.store(0, Ordering::SeqCst);
    s.volume.store(volume, Ordering::Release);
    s.live.store(true, Ordering::Release);
    let msg = Message::VolumeMount(VolumeMount {
        volume,
        dev_path: id.to_str().ok(),
        mount_path: None,
        generation: None,
    });
    if let Err(e) = netlink::send_to_daemon(st, &msg) {
        s.live.store(false, Ordering::Release);
        s.volume.store(0, Ordering::Release);
        s.sb.store(core::ptr::null_mut(), Ordering::Release);
        pr_err!("mount of {}: VOLUME_MOUNT not sent ({:?})\n", id, e);
        return e.to_errno();
    }
    // XFS checks speculations against the gates of the volume lock's bucket (the bucket is
    // fixed by the resource; the entry may change, and the ticket names it).
    let words = v
        .locks
        .gate_words(v.locks.bucket_of(ResourceId::volume(volume)));
    // SAFETY: in XFS's mount callout, as the service requires; the slot's ticket and the
    // cache's gates are pinned in the module's state, which outlives every mount.
    unsafe {
        glue::mxfs_glue_set_spec(
            sb,
            i as c_int,
            s.spec_ticket.as_ptr().cast_const(),
            words,
            ENTRIES_PER_BUCKET as u32,
        )
    };
    // SAFETY: XFS passes a valid pointer for the mount's private data.
    unsafe { *mount_priv = (i + 1) as *mut c_void };
    pr_info!(
        "XFS mount of {} accepted: volume {:#x}, log device {}:{}\n",
        id,
        volume,
        log_major,
        log_minor
    );
    0
}

/// The XFS unmount callout, once for every accepted mount, after the unmount wrote everything
/// back under the volume lock. Gives the cached lock back and says `VOLUME_UMOUNT`.
#[no_mangle]
pub(crate) extern "C" fn mxfs_rs_fs_unmount(
    sb_id: *const kernel::ffi::c_char,
    mount_priv: *mut c_void,
) {
    let Some(st) = state() else {
        return;
    };
    // SAFETY: XFS passes the super block's NUL-terminated s_id, live during the call.
    let id = unsafe { CStr::from_char_ptr(sb_id) };
    if mount_priv as usize == RECOVERY_MOUNT_PRIV {
        pr_info!("XFS recovery mount of {} unmounted\n", id);
        return;
    }
    let v = &st.volumes;
    let _g = v.table.lock();
    let Some((i, s)) = slot_of(v, mount_priv) else {
        pr_err!("unmount of an unknown mount\n");
        return;
    };
    let volume = s.volume.load(Ordering::Acquire);
    s.live.store(false, Ordering::Release);
    // SAFETY: `i` is a slot index below MOUNTS_MAX.
    unsafe { glue::mxfs_glue_answer_flush(i as c_int) };
    let resource = ResourceId::volume(volume);
    if let Some(h) = v.locks.entry(resource).and_then(|e| e.held()) {
        // Nothing is left to write: the unmount did it under this lock. A callback to NL
        // makes the cache's answer a plain release.
        match v.locks.callback(h.req_id, resource, LockMode::Nl) {
            Ok(CallbackOutcome::AnswerNow(a)) => {
                let mut next = Some(a);
                while let Some(a) = next {
                    next = run_answer(st, s, a);
                }
            }
            Ok(CallbackOutcome::Recorded) => {
                pr_err!(
                    "unmount of volume {:#x}: the lock still has holders\n",
                    volume
                )
            }
            Err(e) => pr_info!(
                "unmount of volume {:#x}: lock not released ({:?})\n",
                volume,
                e
            ),
        }
    }
    if let Err(e) = netlink::send_to_daemon(st, &Message::VolumeUmount(VolumeUmount { volume })) {
        pr_warn!("VOLUME_UMOUNT of {:#x} not sent: {:?}\n", volume, e);
    }
    s.volume.store(0, Ordering::Release);
    s.sb.store(core::ptr::null_mut(), Ordering::Release);
    pr_info!("XFS unmount of {}: volume {:#x}\n", id, volume);
}

/// `op_begin` (glue.c): the volume lock for one operation. Returns 0 or a negative errno;
/// `*cookie` says what `op_end` must give back. `task` is the calling task's address, the key
/// of [`TaskHolds`] (glue.c passes `current`, one per-CPU load in C; [`current_task`] is a
/// call of a C helper).
///
/// With `speculate` (XFS_MXFS_OP_SPECULATE: an operation that only reads, such as a getattr
/// or an RCU path walk's permission check) the operation takes no hold at all: it is admitted
/// if the volume lock's gate is open for PR, and [`mxfs_rs_op_end`] says whether the gate
/// stayed open throughout ([`LockCache::gate_admits`]). Nothing here sleeps then; an
/// operation the gate does not admit gets `-EAGAIN`, and XFS repeats it the ordinary way.
///
/// The path of almost every operation: a lookup of the task in [`TaskHolds`] (a nested call
/// ends there), a claim of a task entry, and one atomic operation on the volume lock's gate
/// when the lock is cached in a mode that covers the operation. Anything else takes the
/// cache's slow path, which may ask mxfsd.
#[no_mangle]
pub(crate) extern "C" fn mxfs_rs_op_begin(
    mount_priv: *mut c_void,
    task: usize,
    write: bool,
    speculate: bool,
    lifecycle: bool,
    cookie: *mut usize,
) -> c_int {
    if mount_priv as usize == RECOVERY_MOUNT_PRIV {
        // A recovery mount runs its mount and unmount without the lock, and nothing else.
        if !lifecycle {
            return code::EPERM.to_errno();
        }
        // SAFETY: XFS passes the cookie of its on-stack op, valid during the call.
        unsafe { *cookie = COOKIE_RECOVERY };
        return 0;
    }
    let Some(st) = state() else {
        return code::ENODEV.to_errno();
    };
    let v = &st.volumes;
    let Some((idx, slot)) = slot_of(v, mount_priv) else {
        return code::EIO.to_errno();
    };
    let mode = if write { LockMode::Ex } else { LockMode::Pr };
    let gate = Gate::unpack(slot.gate.load(Ordering::Relaxed), CACHE_BUCKETS);
    if speculate {
        if write {
            // Only reading operations speculate (include/linux/xfs_mxfs.h).
            return code::EINVAL.to_errno();
        }
        // The speculation's first check, which also yields the ticket XFS may check the next
        // speculations against itself.
        return match gate.and_then(|g| Some((g, v.locks.speculation_ticket(g)?))) {
            Some((g, t)) => {
                publish_ticket(slot, t);
                // SAFETY: XFS passes the cookie of its on-stack op, valid during the call.
                unsafe { *cookie = COOKIE_SPECULATE | (g.pack() as usize) << COOKIE_GATE_SHIFT };
                0
            }
            None => code::EAGAIN.to_errno(),
        };
    }
    let hold = TaskHold {
        slot: idx,
        mode,
        depth: 1,
    };
    // The task is recorded before it takes the lock (and forgotten if that fails), so that a
    // nested call finds it.
    let i = match v.holds.enter(task, hold) {
        Entered::Found(i) => {
            // A nested call counts a depth on the outer one's hold.
            let mut h = v.holds.value(i);
            if !covers(h.mode, mode) {
                return kerr(bindings::EDEADLK).to_errno();
            }
            h.depth += 1;
            v.holds.set(i, h);
            // SAFETY: XFS passes the cookie of its on-stack op, valid during the call.
            unsafe { *cookie = COOKIE_NESTED | i << COOKIE_TASK_SHIFT };
            return 0;
        }
        Entered::Inserted(i) => i,
        Entered::Full => return code::EBUSY.to_errno(),
    };
    let task_bits = i << COOKIE_TASK_SHIFT;
    if let Some(g) = gate {
        if v.locks.acquire_fast(g, mode) {
            // SAFETY: as above.
            unsafe { *cookie = COOKIE_GATE | task_bits | (g.pack() as usize) << COOKIE_GATE_SHIFT };
            return 0;
        }
    }
    let resource = ResourceId::volume(slot.volume.load(Ordering::Acquire));
    if let Err(e) = acquire(st, idx, slot, resource, mode) {
        v.holds.remove(task, i);
        return e.to_errno();
    }
    if let Some(g) = v.locks.gate_of(resource) {
        slot.gate.store(g.pack(), Ordering::Relaxed);
    }
    let kind = if write { COOKIE_EX } else { COOKIE_PR };
    // SAFETY: as above.
    unsafe { *cookie = kind | task_bits };
    0
}

/// `op_end` (glue.c), once for every `op_begin` that returned 0, by the same `task`. Returns
/// false when the operation was a speculation whose result must be discarded (glue.c then
/// sets XFS_MXFS_OP_RETRY), else true.
#[no_mangle]
pub(crate) extern "C" fn mxfs_rs_op_end(
    mount_priv: *mut c_void,
    task: usize,
    cookie: usize,
) -> bool {
    let kind = cookie & COOKIE_KIND_MASK;
    if mount_priv as usize == RECOVERY_MOUNT_PRIV {
        return kind == COOKIE_RECOVERY;
    }
    let Some(st) = state() else {
        return false;
    };
    let v = &st.volumes;
    if kind == COOKIE_SPECULATE {
        return Gate::unpack((cookie >> COOKIE_GATE_SHIFT) as u64, CACHE_BUCKETS)
            .is_some_and(|g| v.locks.gate_admits(g, LockMode::Pr));
    }
    let i = (cookie >> COOKIE_TASK_SHIFT) & (TASK_HOLDS_MAX - 1);
    if !v.holds.owned_by(i, task) {
        pr_err!("op_end of a task that holds nothing\n");
        return true;
    }
    if kind == COOKIE_NESTED {
        let mut h = v.holds.value(i);
        h.depth = h.depth.saturating_sub(1);
        v.holds.set(i, h);
        return true;
    }
    let h = v.holds.value(i);
    debug_assert_eq!(h.depth, 1);
    v.holds.remove(task, i);
    // The path of almost every operation: the task's entry and the gate's hold go; the mount's
    // slot is looked up only if an answer is due.
    if kind == COOKIE_GATE {
        let Some(g) = Gate::unpack((cookie >> COOKIE_GATE_SHIFT) as u64, CACHE_BUCKETS) else {
            pr_err!("op_end with a bad gate cookie {:#x}\n", cookie);
            return true;
        };
        if let Some(a) = v.locks.release_fast(g) {
            match slot_of(v, mount_priv) {
                Some((idx, slot)) => queue_answer(idx, slot, a),
                None => pr_err!(
                    "answer for request {} of an unmounted volume dropped\n",
                    a.req_id
                ),
            }
        }
        return true;
    }
    let Some((_, slot)) = slot_of(v, mount_priv) else {
        return false;
    };
    debug_assert_eq!(
        h.mode,
        if kind == COOKIE_EX {
            LockMode::Ex
        } else {
            LockMode::Pr
        }
    );
    release(
        v,
        ResourceId::volume(slot.volume.load(Ordering::Acquire)),
        h.mode,
    );
    true
}
