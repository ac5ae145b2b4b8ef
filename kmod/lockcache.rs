// SPDX-License-Identifier: GPL-2.0
//! The kernel lock cache (DESIGN.md §5.2): granted cluster locks kept between operations.
//!
//! This one file is compiled twice, like `pending.rs`: by `mxfs.ko` with `kernel::sync` and by
//! the loom tests in `kmod/loom` with `loom::sync`. The state machine lives in [`LockCache`]'s
//! provided methods; a platform only says how to lock a bucket, sleep on it and wake it
//! ([`CacheSync`]). Nothing here sends a message, runs a clean point or refreshes: every method
//! returns what the caller must do next ([`Acquired`], [`Answer`]), and the caller reports the
//! result back. So the rules are checked by loom exactly as the kernel runs them.
//!
//! # One resource's life
//!
//! - [`LockCache::acquire`]: if the cached mode covers the wanted mode, no callback is pending
//!   and the cache is not withdrawn, the caller becomes a *holder* and sends nothing
//!   ([`Acquired::Hit`]). If the last grant carried a new data version, the first holder is
//!   told to refresh ([`Acquired::Refresh`]) and every later acquirer waits until it reports
//!   [`LockCache::refreshed`]. Otherwise the caller is told to send one `LOCK_REQ`
//!   ([`Acquired::Send`]): a new request, or a `CONVERT` of the cached request to the supremum
//!   of the cached and the wanted mode. One request is in flight per resource; other acquirers
//!   that are not hits wait for its outcome.
//! - [`LockCache::granted`] / [`LockCache::request_failed`]: the sender reports the outcome.
//! - [`LockCache::release_holder`]: drops a holder reference. The lock stays cached.
//! - The *gate* ([`LockCache::acquire_fast`], [`LockCache::release_fast`]): while a resource is
//!   quiet (a lock cached, no callback, refresh, answer or withdraw) its gate is open, and a
//!   holder whose mode the cached mode covers comes and goes with one atomic operation on the
//!   gate's word, without the bucket lock: the path of almost every operation. Every change
//!   under the bucket lock recomputes the gate; closing it leaves its holders counted in the
//!   word, so an answer waits for them as for any holder, and the last one to leave a closed
//!   gate takes the bucket lock and finds the answer due.
//! - [`LockCache::callback`]: mxfsd's `LOCK_CALLBACK`. New holders wait from now on (GFS2's
//!   demote). When the last holder leaves, and no request is in flight, the one who sees it
//!   gets an [`Answer`]: run the clean point if it says so, send `LOCK_RELEASE` or a
//!   down-converting `LOCK_REQ`, then report [`LockCache::answered`]. Only then do the waiters
//!   go on.
//! - [`LockCache::withdraw`]: mxfsd went away. Every waiter and every later acquire fails with
//!   `-EIO`; holders finish and drop their references; no callback is answered any more.
//!
//! # Choices
//!
//! - *Covers* is the DLM relation: mode `h` covers mode `w` when every mode compatible with `h`
//!   is compatible with `w`. Literally: NL ⊑ CR ⊑ CW ⊑ PW ⊑ EX and CR ⊑ PR ⊑ PW; CW and PR
//!   do not cover each other (their supremum is PW). [`covers`] computes it from proto's
//!   matrix; a test pins the table.
//! - An upgrade converts the cached request (same `REQ_ID`, `CONVERT`), as proto/README.md
//!   describes, so the node holds one cluster lock per resource.
//! - A request in flight does not stop hits: the cached mode still protects those holders. It
//!   does stop the answer to a callback, because the answer names the request id that the
//!   conversion in flight also names; the answer waits for the conversion's outcome.
//! - A grant that arrives while a callback is pending records the lock but starts no holder:
//!   the callback names the lock, whatever its mode. The answer then gives up the new mode.
//! - Refresh rule (§5.1 rule 3): a new (non-conversion) grant needs a refresh unless it
//!   carries a version equal to the one cached; no version (`None`) means unknown and always
//!   refreshes. An upgrading conversion of a lock held in PR, PW or EX never refreshes: those
//!   modes block every writing mode (CW, PW, EX) of other nodes, so nothing changed meanwhile.
//!   The grant of a down-conversion (an answer) never refreshes either, for the same reason.
//!   An upgrade from CR or CW that does refresh lets the holders already running in CR or CW
//!   go on meanwhile (level 0 takes only PR and EX, so there it does not arise).
//!   A failed refresh leaves the refresh due for the next holder; the failing holder still
//!   drops its reference.
//! - The answer: a down-conversion to the kept mode when that mode still covers PR (PR or PW,
//!   what level 0's readers use) and is covered by the held mode; otherwise `LOCK_RELEASE`.
//!   The clean point runs when the held mode is PW or EX. A callback whose kept mode already
//!   covers the held mode (the lock was down-converted meanwhile) asks for nothing and is
//!   dropped when the answer would be due. Repeated callbacks keep the *infimum* of what they
//!   allow, so a later callback can only ever keep less.
//! - A failed answer (the clean point, the send or the down-conversion failed) withdraws the
//!   whole cache: a kernel that cannot give a lock back cleanly must not answer at all
//!   (proto/README.md, `VOLUME_WITHDRAW`).
//! - Withdrawn is one flag per bucket, set on every bucket by [`LockCache::withdraw`], so it
//!   covers the resources the cache has not seen yet too.
//! - Entries are fixed slots found by resource. A released entry keeps its data version (the
//!   next grant may skip the refresh) until its slot is reused by another resource.

use core::ops::DerefMut;

use super::atomic::{fence, AtomicU64, Ordering};
use crate::proto::{LockMode, ResourceId};

/// Buckets of the kernel's cache (the loom tests use fewer; see [`CacheSync::bucket_count`]).
pub const CACHE_BUCKETS: usize = 64;
/// Resources one bucket can track at once.
pub const ENTRIES_PER_BUCKET: usize = 8;
/// Most resources the kernel's cache tracks at once; an acquire that finds its bucket full of
/// busy entries fails with [`CacheError::Full`].
pub const CACHE_ENTRIES_MAX: usize = CACHE_BUCKETS * ENTRIES_PER_BUCKET;
/// Most local holders of one resource at once (a counter bound, not a memory size).
pub const HOLDERS_PER_RESOURCE_MAX: u32 = 1 << 20;

/// `EIO`: the cache is withdrawn.
pub const EIO: i32 = 5;
/// `ENOENT`: a callback names a request this cache does not hold.
pub const ENOENT: i32 = 2;
/// `EINTR`: a waiter got a signal.
pub const EINTR: i32 = 4;
/// `EBUSY`: the bucket has no free entry.
pub const EBUSY: i32 = 16;
/// `EINVAL`: a callback or release names the wrong resource or mode.
pub const EINVAL: i32 = 22;

/// Whether holding `held` lets a local holder use `want`: every mode compatible with `held` is
/// compatible with `want`.
pub const fn covers(held: LockMode, want: LockMode) -> bool {
    let mut i = 0;
    while i < LockMode::ALL.len() {
        let x = LockMode::ALL[i];
        if held.compatible(x) && !want.compatible(x) {
            return false;
        }
        i += 1;
    }
    true
}

/// The weakest mode that covers both `a` and `b` (e.g. `sup(CW, PR) = PW`).
pub const fn sup(a: LockMode, b: LockMode) -> LockMode {
    let mut i = 0;
    while i < LockMode::ALL.len() {
        let m = LockMode::ALL[i];
        if covers(m, a) && covers(m, b) {
            return m;
        }
        i += 1;
    }
    LockMode::Ex
}

/// The strongest mode that both `a` and `b` cover (e.g. `inf(CW, PR) = CR`).
pub const fn inf(a: LockMode, b: LockMode) -> LockMode {
    let mut i = LockMode::ALL.len();
    while i > 0 {
        i -= 1;
        let m = LockMode::ALL[i];
        if covers(a, m) && covers(b, m) {
            return m;
        }
    }
    LockMode::Nl
}

/// Whether holding `mode` keeps every other node from writing (it blocks CW, PW and EX).
const fn blocks_writers(mode: LockMode) -> bool {
    !mode.compatible(LockMode::Cw) && !mode.compatible(LockMode::Pw)
}

/// The cluster lock a resource is cached through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    /// Granted mode.
    pub mode: LockMode,
    /// The daemon-side request id (the *cached holder* of proto/README.md).
    pub req_id: u64,
}

/// Where the refresh of a resource stands (§5.1 rule 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refresh {
    /// Nothing to re-read.
    Fresh,
    /// The last grant carried a new version; the next holder must refresh first.
    Needed,
    /// A holder is refreshing; other acquirers wait.
    Running,
}

/// The one `LOCK_REQ` in flight for a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InFlight {
    /// Its request id (the cached one for a conversion).
    pub req_id: u64,
    /// Mode asked for.
    pub mode: LockMode,
    /// `CONVERT` of the cached lock (an upgrade).
    pub convert: bool,
}

/// One tracked resource.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    resource: ResourceId,
    used: bool,
    held: Option<Held>,
    /// Data version of the last grant; `None`: unknown.
    version: Option<u64>,
    refresh: Refresh,
    /// Local holders per mode, indexed by `LockMode as usize`.
    holders: [u32; 6],
    /// A pending callback: the strongest mode the kernel may keep.
    callback: Option<LockMode>,
    /// A request in flight.
    request: Option<InFlight>,
    /// An answer being carried out.
    answering: Option<Answer>,
    /// Tasks sleeping for this entry.
    waiters: u32,
    /// Bumped each time the slot is given to another resource, so a stale [`Gate`] never
    /// opens another resource's gate.
    gen: u16,
}

impl Entry {
    const FREE: Entry = Entry {
        resource: ResourceId::volume(0),
        used: false,
        held: None,
        version: None,
        refresh: Refresh::Fresh,
        holders: [0; 6],
        callback: None,
        request: None,
        answering: None,
        waiters: 0,
        gen: 0,
    };

    /// Number of local holders.
    pub fn holder_count(&self) -> u32 {
        self.holders.iter().sum()
    }

    /// Nothing depends on this entry: its slot may go to another resource.
    fn idle(&self) -> bool {
        self.held.is_none()
            && self.holder_count() == 0
            && self.callback.is_none()
            && self.request.is_none()
            && self.answering.is_none()
            && self.waiters == 0
    }

    /// Whether the request id names this entry's lock or its request in flight.
    fn names(&self, req_id: u64) -> bool {
        self.held.is_some_and(|h| h.req_id == req_id)
            || self.request.is_some_and(|r| r.req_id == req_id)
    }

    /// The entry's invariants: `Err` names the first one broken. Asserted in debug builds
    /// after every change, and by the loom tests (which run in release).
    pub fn invariants(&self) -> Result<(), &'static str> {
        if self.holder_count() > 0 && self.held.is_none() {
            return Err("holders without a lock");
        }
        if let Some(h) = self.held {
            if LockMode::ALL
                .iter()
                .any(|m| self.holders[*m as usize] > 0 && !covers(h.mode, *m))
            {
                return Err("a holder's mode is not covered by the cached mode");
            }
        }
        if self.answering.is_some() && self.holder_count() > 0 {
            return Err("an answer runs while holders hold");
        }
        if self.answering.is_some() && self.request.is_some() {
            return Err("an answer runs while a request is in flight");
        }
        if self.answering.is_some() && self.callback.is_none() {
            return Err("an answer runs without a callback");
        }
        if self.refresh == Refresh::Running && self.holder_count() == 0 {
            return Err("a refresh runs without its holder");
        }
        Ok(())
    }

    fn check(&self) {
        debug_assert_eq!(self.invariants(), Ok(()));
    }

    /// The mode the gate lets holders in with: the cached mode while the entry is quiet.
    fn gate_mode(&self, withdrawn: bool) -> Option<LockMode> {
        if withdrawn
            || self.callback.is_some()
            || self.refresh != Refresh::Fresh
            || self.answering.is_some()
        {
            return None;
        }
        self.held.map(|h| h.mode)
    }

    /// The gate's invariants against its word, checked under the bucket lock.
    fn gate_invariants(&self, word: u64, withdrawn: bool) -> Result<(), &'static str> {
        if gate::mode(word) != self.gate_mode(withdrawn) {
            return Err("the gate is not open exactly while the entry is quiet");
        }
        if gate::gen(word) != self.gen {
            return Err("the gate carries another resource's generation");
        }
        if self.answering.is_some() && gate::count(word) > 0 {
            return Err("an answer runs while gate holders hold");
        }
        if self.held.is_none() && gate::count(word) > 0 {
            return Err("gate holders without a lock");
        }
        Ok(())
    }

    /// The answer due now, if any: a callback is pending, no holder holds (`gate_holders`
    /// counts those inside the closed gate), nothing is in flight, no answer runs. Drops a
    /// callback that asks for nothing.
    fn answer_due(&mut self, gate_holders: u32) -> Option<Answer> {
        let keep = self.callback?;
        if self.holder_count() > 0
            || gate_holders > 0
            || self.request.is_some()
            || self.answering.is_some()
        {
            return None;
        }
        let held = self.held?;
        if covers(keep, held.mode) {
            self.callback = None;
            return None;
        }
        let to = if covers(keep, LockMode::Pr) && covers(held.mode, keep) {
            Some(keep)
        } else {
            None
        };
        let a = Answer {
            resource: self.resource,
            req_id: held.req_id,
            from: held.mode,
            to,
            clean_point: held.mode.is_write(),
        };
        self.answering = Some(a);
        Some(a)
    }
}

/// The data a bucket lock protects.
#[derive(Debug)]
pub struct CacheBucket {
    entries: [Entry; ENTRIES_PER_BUCKET],
    /// Set by [`LockCache::withdraw`].
    withdrawn: bool,
}

impl CacheBucket {
    /// An empty bucket.
    pub const EMPTY: CacheBucket = CacheBucket {
        entries: [Entry::FREE; ENTRIES_PER_BUCKET],
        withdrawn: false,
    };

    fn find(&self, resource: ResourceId) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.used && e.resource == resource)
    }

    /// Finds `resource`'s entry, or takes a free or idle slot for it.
    fn find_or_insert(&mut self, resource: ResourceId) -> Option<usize> {
        if let Some(i) = self.find(resource) {
            return Some(i);
        }
        let i = self.entries.iter().position(|e| !e.used || e.idle())?;
        self.entries[i] = Entry {
            resource,
            used: true,
            gen: self.entries[i].gen.wrapping_add(1),
            ..Entry::FREE
        };
        Some(i)
    }
}

/// Why a sleep on a bucket ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// Notified, or spuriously: look again.
    Notified,
    /// A signal is pending for the sleeping task.
    Interrupted,
}

/// Why a cache operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheError {
    /// The cache is withdrawn (mxfsd went away, or an answer failed): `-EIO`.
    Withdrawn,
    /// The resource's bucket has no free entry: `-EBUSY`.
    Full,
    /// The waiting task got a signal: `-EINTR`.
    Interrupted,
    /// No cached lock or request in flight carries this request id: `-ENOENT`.
    Unknown,
    /// The request id, resource or mode does not match the cache's state: `-EINVAL`.
    Mismatch,
    /// The request failed with this negative errno (a deny, a timeout, no daemon).
    Failed(i32),
}

impl CacheError {
    /// The negative errno the caller returns.
    pub fn errno(self) -> i32 {
        match self {
            CacheError::Withdrawn => -EIO,
            CacheError::Full => -EBUSY,
            CacheError::Interrupted => -EINTR,
            CacheError::Unknown => -ENOENT,
            CacheError::Mismatch => -EINVAL,
            CacheError::Failed(e) => e,
        }
    }
}

/// What [`LockCache::acquire`] made of the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acquired {
    /// A holder, on the cached lock; nothing is sent. Give it back with
    /// [`LockCache::release_holder`].
    Hit,
    /// A holder that must refresh before it uses anything cached, then report
    /// [`LockCache::refreshed`].
    Refresh,
    /// Not a holder yet: send this `LOCK_REQ`, wait for its reply and report it with
    /// [`LockCache::granted`] or [`LockCache::request_failed`].
    Send(InFlight),
}

/// What [`LockCache::granted`] made of the sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granted {
    /// A holder ([`Acquired::Hit`] or [`Acquired::Refresh`]).
    Holder(Acquired),
    /// Not a holder: a callback came first (the lock is recorded, the callback names it), or
    /// a refresh runs. Carry out the answer if there is one, then call [`LockCache::acquire`]
    /// again.
    Retry(Option<Answer>),
}

/// The answer to a callback, due now: run the clean point if `clean_point`, then send
/// `LOCK_RELEASE` (`to` is `None`, `MODE` = `from`) or `LOCK_REQ` with `CONVERT` to `to`
/// (`REQ_ID` = `req_id`), then report [`LockCache::answered`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The resource.
    pub resource: ResourceId,
    /// The cached request the callback named.
    pub req_id: u64,
    /// The mode held.
    pub from: LockMode,
    /// The mode kept (`None`: released).
    pub to: Option<LockMode>,
    /// Whether the clean point must run first (the held mode can write).
    pub clean_point: bool,
}

/// What [`LockCache::callback`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallbackOutcome {
    /// Recorded: the answer comes when the last holder leaves or the request in flight ends.
    Recorded,
    /// Recorded, and nobody holds: the caller carries out this answer now.
    AnswerNow(Answer),
}

/// How a platform locks, sleeps on and wakes the buckets of a cache.
pub trait CacheSync {
    /// A held bucket lock.
    type Guard<'a>: DerefMut<Target = CacheBucket>
    where
        Self: 'a;

    /// Number of buckets; at least 1. The kernel has [`CACHE_BUCKETS`].
    fn bucket_count(&self) -> usize;
    /// Locks bucket `idx` (`idx < bucket_count()`).
    fn lock(&self, idx: usize) -> Self::Guard<'_>;
    /// Sleeps on bucket `idx`, releasing `guard` meanwhile and holding it again on return.
    fn wait(&self, idx: usize, guard: &mut Self::Guard<'_>) -> Wake;
    /// Wakes every sleeper of bucket `idx`.
    fn notify_all(&self, idx: usize);
    /// The gate word of entry `entry` of bucket `idx` (see [`gate`]); 0 at first.
    fn gate(&self, idx: usize, entry: usize) -> &AtomicU64;
}

/// A gate word: bits 0-31 count the holders that came through the gate; bits 32-39 are 0
/// while the gate is closed, else the mode it admits plus one; bits 48-63 are the entry's
/// generation. Written with the bucket lock held, except for the count, which gate holders
/// change with one atomic operation each.
pub mod gate {
    use crate::proto::LockMode;

    pub(super) const MODE_SHIFT: u32 = 32;
    const GEN_SHIFT: u32 = 48;

    /// Holders inside.
    pub fn count(w: u64) -> u32 {
        w as u32
    }
    /// The mode admitted; `None` while closed.
    pub fn mode(w: u64) -> Option<LockMode> {
        let m = ((w >> MODE_SHIFT) & 0xff) as usize;
        m.checked_sub(1).and_then(|m| LockMode::ALL.get(m).copied())
    }
    /// The generation of the entry the gate belongs to.
    pub fn gen(w: u64) -> u16 {
        (w >> GEN_SHIFT) as u16
    }
    /// `w` with its mode and generation replaced, its count kept.
    pub fn with(w: u64, mode: Option<LockMode>, gen: u16) -> u64 {
        let m = mode.map_or(0, |m| m as u64 + 1);
        u64::from(count(w)) | m << MODE_SHIFT | u64::from(gen) << GEN_SHIFT
    }
}

/// Speculation tickets (`struct xfs_mxfs_spec` in the patched `<linux/xfs_mxfs.h>`): XFS
/// checks a speculative operation itself, without calling the module, against a bucket's gate
/// words. A ticket is the gate word's upper half (its mode and generation: see [`gate`]) with
/// the entry's index in its low bits. The upper half stays equal exactly while the gate stays
/// open in one generation, since every close bumps the generation and a slot given to another
/// resource does too: so a ticket admits a speculation under the same rule as
/// [`LockCache::gate_admits`]. The lower half (the holder count) changes freely.
pub mod ticket {
    /// The bits of a ticket that index the bucket's gates (`XFS_MXFS_TICKET_INDEX_MASK`).
    pub const INDEX_MASK: u64 = 0xffff;
    /// Where the compared half begins (`XFS_MXFS_TICKET_SEQ_SHIFT`): the gate's mode.
    pub const SEQ_SHIFT: u32 = 32;

    /// The ticket of gate word `w` of entry `entry`.
    pub fn of(w: u64, entry: u8) -> u64 {
        (w >> SEQ_SHIFT << SEQ_SHIFT) | u64::from(entry)
    }
    /// Whether gate word `w` still has ticket `t`'s upper half.
    pub fn admits(w: u64, t: u64) -> bool {
        t != 0 && (w ^ t) >> SEQ_SHIFT == 0
    }
}

// The ticket's compared half is exactly the gate's mode and generation, never the count.
const _: () = assert!(gate::MODE_SHIFT == ticket::SEQ_SHIFT);
const _: () = assert!(ENTRIES_PER_BUCKET as u64 <= ticket::INDEX_MASK + 1);

/// Where a resource's gate is: what [`LockCache::gate_of`] returns and
/// [`LockCache::acquire_fast`] takes. A copy may go stale (the slot given to another
/// resource); its generation then no longer matches and the gate refuses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gate {
    /// Bucket index.
    pub bucket: u16,
    /// Entry index in the bucket.
    pub entry: u8,
    /// The entry's generation.
    pub gen: u16,
}

impl Gate {
    /// Bit set in every packed gate, so that 0 means none.
    const PACKED: u64 = 1 << 40;

    /// The gate in 41 bits, never 0.
    pub fn pack(self) -> u64 {
        Self::PACKED
            | u64::from(self.bucket) << 24
            | u64::from(self.entry) << 16
            | u64::from(self.gen)
    }

    /// A packed gate back, if `v` is one whose indexes fit a cache of `buckets` buckets.
    pub fn unpack(v: u64, buckets: usize) -> Option<Gate> {
        if v >> 40 != 1 {
            return None;
        }
        let g = Gate {
            bucket: (v >> 24) as u16,
            entry: (v >> 16) as u8,
            gen: v as u16,
        };
        (usize::from(g.bucket) < buckets && usize::from(g.entry) < ENTRIES_PER_BUCKET).then_some(g)
    }
}

/// Recomputes entry `i`'s gate from its state, keeping the count; returns the count. Called
/// with the bucket lock held after every change. Closing bumps the entry's generation, so a
/// [`Gate`] learnt before no longer fits and a speculation that began before fails
/// ([`LockCache::gate_admits`]). AcqRel: opening publishes what the lock protected (a refresh)
/// to the gate's holders; closing sees every holder that left before, and precedes whatever
/// the closer does next (a clean point, an uncache, a refresh).
fn sync_gate(word: &AtomicU64, e: &mut Entry, withdrawn: bool) -> u32 {
    let mode = e.gate_mode(withdrawn);
    let mut w = word.load(Ordering::Acquire);
    if mode.is_none() && gate::mode(w).is_some() {
        e.gen = e.gen.wrapping_add(1);
    }
    loop {
        let new = gate::with(w, mode, e.gen);
        if new == w {
            return gate::count(w);
        }
        match word.compare_exchange_weak(w, new, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return gate::count(w),
            Err(x) => w = x,
        }
    }
}

/// The cache's operations, for every [`CacheSync`] platform.
pub trait LockCache: CacheSync {
    /// The bucket of a resource.
    fn bucket_of(&self, r: ResourceId) -> usize {
        let n = self.bucket_count() as u64;
        debug_assert!(n > 0);
        let h = r
            .volume
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(r.a.wrapping_mul(0xc2b2_ae3d_27d4_eb4f))
            .wrapping_add(r.b)
            .wrapping_add(r.kind as u64);
        (h % n) as usize
    }

    /// Recomputes entry `i`'s gate after a change (bucket `b` locked as `g`); returns the
    /// holders inside the gate.
    #[doc(hidden)]
    fn settle(&self, b: usize, g: &mut CacheBucket, i: usize) -> u32 {
        let word = self.gate(b, i);
        let withdrawn = g.withdrawn;
        let n = sync_gate(word, &mut g.entries[i], withdrawn);
        debug_assert_eq!(
            g.entries[i].gate_invariants(word.load(Ordering::Relaxed), g.withdrawn),
            Ok(())
        );
        n
    }

    /// Becomes a holder of `resource` in `mode` through its gate: one atomic operation, no
    /// lock. False when the gate is closed, admits less than `mode`, is full or belongs to
    /// another resource now: then call [`LockCache::acquire`]. Give the hold back with
    /// [`LockCache::release_fast`].
    #[inline(always)]
    fn acquire_fast(&self, gate: Gate, mode: LockMode) -> bool {
        let word = self.gate(usize::from(gate.bucket), usize::from(gate.entry));
        let mut w = word.load(Ordering::Relaxed);
        loop {
            let open = gate::mode(w).is_some_and(|m| covers(m, mode));
            if !open || gate::gen(w) != gate.gen || gate::count(w) >= HOLDERS_PER_RESOURCE_MAX {
                return false;
            }
            // Acquire: pairs with the opening under the bucket lock.
            match word.compare_exchange_weak(w, w + 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(x) => w = x,
            }
        }
    }

    /// Gives back a hold [`LockCache::acquire_fast`] took through `gate`. Returns the answer
    /// to carry out if this was the last holder of a called-back lock.
    #[inline(always)]
    fn release_fast(&self, gate: Gate) -> Option<Answer> {
        let (b, i) = (usize::from(gate.bucket), usize::from(gate.entry));
        // Release: this holder's work happens before the answer of whoever closed the gate.
        let before = self.gate(b, i).fetch_sub(1, Ordering::Release);
        debug_assert!(gate::count(before) > 0, "gate holder count underflow");
        if gate::mode(before).is_some() || gate::count(before) != 1 {
            return None;
        }
        self.release_last(b, i)
    }

    /// [`LockCache::release_fast`] of the last holder of a closed gate: the answer may be due,
    /// and a drain may wait. Out of line: the inlined fast path stays short.
    #[doc(hidden)]
    #[cold]
    #[inline(never)]
    fn release_last(&self, b: usize, i: usize) -> Option<Answer> {
        let mut g = self.lock(b);
        let n = gate::count(self.gate(b, i).load(Ordering::Acquire));
        let a = if g.withdrawn {
            None
        } else {
            g.entries[i].answer_due(n)
        };
        self.settle(b, &mut g, i);
        g.entries[i].check();
        drop(g);
        self.notify_all(b);
        a
    }

    /// Whether `gate` is open now for `mode` in the generation it names: a reader may act as
    /// if it held the lock in `mode`, without a hold, if the gate admits it both before and
    /// after it reads (a *speculation*: nothing is counted, so nothing waits for it). Each
    /// close bumps the generation, so the second check fails if the gate closed in between,
    /// even if it opened again (unless 65,536 closes passed in between). The second check
    /// orders the reader's reads before it (Acquire fence: the kernel's `smp_rmb`).
    fn gate_admits(&self, gate: Gate, mode: LockMode) -> bool {
        fence(Ordering::Acquire);
        self.admitting_word(gate, mode).is_some()
    }

    /// `gate`'s word (Acquire load), if the gate is open for `mode` in the generation it
    /// names: the test of [`LockCache::gate_admits`] and [`LockCache::speculation_ticket`].
    #[doc(hidden)]
    fn admitting_word(&self, gate: Gate, mode: LockMode) -> Option<u64> {
        let w = self
            .gate(usize::from(gate.bucket), usize::from(gate.entry))
            .load(Ordering::Acquire);
        (gate::gen(w) == gate.gen && gate::mode(w).is_some_and(|m| covers(m, mode))).then_some(w)
    }

    /// A speculation ticket for `gate` ([`ticket`]), if the gate admits PR now in the
    /// generation it names: the first check of a speculation, as [`LockCache::gate_admits`]
    /// makes it (an Acquire load). The caller may publish the ticket for XFS, which then checks
    /// speculations itself ([`ticket::admits`]) until the gate closes.
    fn speculation_ticket(&self, gate: Gate) -> Option<u64> {
        self.admitting_word(gate, LockMode::Pr)
            .map(|w| ticket::of(w, gate.entry))
    }

    /// XFS's check of a speculation with ticket `t` against bucket `bucket`'s gates
    /// (`xfs_mxfs_spec_begin()` and `xfs_mxfs_spec_end()` in the patched `fs/xfs/xfs_mxfs.h`),
    /// here so that loom checks the protocol the C code follows: the same loads, the same
    /// orderings (Acquire load at the start; Acquire fence, the kernel's `smp_rmb`, before the
    /// second check), the same comparison.
    fn ticket_admits(&self, bucket: usize, t: u64, second: bool) -> bool {
        let i = (t & ticket::INDEX_MASK) as usize;
        if t == 0 || i >= ENTRIES_PER_BUCKET {
            return false;
        }
        if second {
            fence(Ordering::Acquire);
        }
        ticket::admits(self.gate(bucket, i).load(Ordering::Acquire), t)
    }

    /// The gate of `resource`, if the cache tracks it (cost: the bucket lock; call it after a
    /// slow [`LockCache::acquire`] to learn the gate for the next operations).
    fn gate_of(&self, resource: ResourceId) -> Option<Gate> {
        let b = self.bucket_of(resource);
        let g = self.lock(b);
        g.find(resource).map(|i| Gate {
            bucket: b as u16,
            entry: i as u8,
            gen: g.entries[i].gen,
        })
    }

    /// Holders inside `resource`'s gate now (for tests and status).
    fn gate_holders(&self, resource: ResourceId) -> u32 {
        let b = self.bucket_of(resource);
        let g = self.lock(b);
        g.find(resource)
            .map_or(0, |i| gate::count(self.gate(b, i).load(Ordering::Acquire)))
    }

    /// The invariants of `resource`'s entry and gate, under the bucket lock (for tests).
    fn check_resource(&self, resource: ResourceId) -> Result<(), &'static str> {
        let b = self.bucket_of(resource);
        let g = self.lock(b);
        let Some(i) = g.find(resource) else {
            return Ok(());
        };
        g.entries[i].invariants()?;
        g.entries[i].gate_invariants(self.gate(b, i).load(Ordering::Acquire), g.withdrawn)
    }

    /// Becomes a holder of `resource` in `mode`, or learns which request to send.
    /// `new_id` is called, under the bucket lock (so it must not sleep), only when a new
    /// request must be sent: the id is known to the cache before the request leaves, so a
    /// callback that follows the grant at once finds it.
    fn acquire(
        &self,
        resource: ResourceId,
        mode: LockMode,
        new_id: impl FnOnce() -> u64,
    ) -> Result<Acquired, CacheError> {
        let b = self.bucket_of(resource);
        let mut g = self.lock(b);
        let mut waited = false;
        let mut slot = None;
        let out = loop {
            if g.withdrawn {
                break Err(CacheError::Withdrawn);
            }
            let i = match slot {
                Some(i) => i,
                None => match g.find_or_insert(resource) {
                    Some(i) => {
                        slot = Some(i);
                        i
                    }
                    None => break Err(CacheError::Full),
                },
            };
            let e = &mut g.entries[i];
            if e.callback.is_none() && e.refresh != Refresh::Running {
                if e.held.is_some_and(|h| covers(h.mode, mode)) {
                    if e.holder_count() >= HOLDERS_PER_RESOURCE_MAX {
                        // (The gate has a bound of its own: together at most twice this.)
                        break Err(CacheError::Full);
                    }
                    e.holders[mode as usize] += 1;
                    if e.refresh == Refresh::Needed {
                        e.refresh = Refresh::Running;
                        break Ok(Acquired::Refresh);
                    }
                    break Ok(Acquired::Hit);
                }
                if e.request.is_none() && e.answering.is_none() {
                    let r = match e.held {
                        Some(h) => InFlight {
                            req_id: h.req_id,
                            mode: sup(h.mode, mode),
                            convert: true,
                        },
                        None => InFlight {
                            req_id: new_id(),
                            mode,
                            convert: false,
                        },
                    };
                    e.request = Some(r);
                    break Ok(Acquired::Send(r));
                }
            }
            // A callback, a refresh or another request is in the way: wait for its end.
            if !waited {
                g.entries[i].waiters += 1;
                waited = true;
            }
            if self.wait(b, &mut g) == Wake::Interrupted {
                break Err(CacheError::Interrupted);
            }
        };
        if waited {
            if let Some(i) = slot {
                g.entries[i].waiters -= 1;
            }
        }
        if let Some(i) = slot {
            self.settle(b, &mut g, i);
            g.entries[i].check();
        }
        out
    }

    /// The request `req_id` that [`LockCache::acquire`] told the caller to send was granted
    /// `mode` with data `version`. Makes the caller a holder of `want`, the mode it acquired
    /// for, unless a callback came first. A grant weaker than the request withdraws the
    /// cache ([`CacheError::Mismatch`]).
    fn granted(
        &self,
        resource: ResourceId,
        req_id: u64,
        mode: LockMode,
        want: LockMode,
        version: Option<u64>,
    ) -> Result<Granted, CacheError> {
        let b = self.bucket_of(resource);
        let mut g = self.lock(b);
        let i = g.find(resource).ok_or(CacheError::Unknown)?;
        let withdrawn = g.withdrawn;
        let e = &mut g.entries[i];
        let Some(r) = e.request.filter(|r| r.req_id == req_id) else {
            return Err(CacheError::Unknown);
        };
        e.request = None;
        if withdrawn {
            drop(g);
            self.notify_all(b);
            return Err(CacheError::Withdrawn);
        }
        if !covers(mode, r.mode) {
            // mxfsd granted less than asked. Recording it could leave holders of the old mode
            // uncovered, ignoring it would leave mxfsd and the kernel disagreeing about the
            // lock: either breaks the coverage rule, so the cache withdraws.
            drop(g);
            self.withdraw();
            return Err(CacheError::Mismatch);
        }
        let stale = version.is_none() || version != e.version;
        let refresh = if r.convert {
            let before = e.held.map_or(LockMode::Nl, |h| h.mode);
            stale && !blocks_writers(before)
        } else {
            stale
        };
        e.held = Some(Held { mode, req_id });
        if version.is_some() {
            e.version = version;
        }
        if refresh {
            e.refresh = Refresh::Needed;
        }
        let n = self.settle(b, &mut g, i);
        let e = &mut g.entries[i];
        let out = if e.callback.is_some() {
            Granted::Retry(e.answer_due(n))
        } else if !covers(mode, want) || e.refresh == Refresh::Running {
            // Granted less than wanted (see the assertion above), or a holder from before
            // this grant is refreshing: try again, waiting for the refresh.
            Granted::Retry(None)
        } else {
            e.holders[want as usize] += 1;
            if e.refresh == Refresh::Needed {
                e.refresh = Refresh::Running;
                Granted::Holder(Acquired::Refresh)
            } else {
                Granted::Holder(Acquired::Hit)
            }
        };
        e.check();
        self.settle(b, &mut g, i);
        drop(g);
        self.notify_all(b);
        Ok(out)
    }

    /// The request `req_id` failed (deny, timeout, signal, no daemon): the cached lock, if
    /// any, stays as it was (a denied conversion keeps the old mode). Wakes the waiters so one
    /// of them sends again. Returns the answer due now if a callback waited for this outcome.
    fn request_failed(&self, resource: ResourceId, req_id: u64) -> Option<Answer> {
        let b = self.bucket_of(resource);
        let mut g = self.lock(b);
        let i = g.find(resource)?;
        let withdrawn = g.withdrawn;
        let e = &mut g.entries[i];
        if e.request.map(|r| r.req_id) != Some(req_id) {
            debug_assert!(false, "request {req_id} failed but is not in flight");
            return None;
        }
        e.request = None;
        if e.held.is_none() {
            // A callback for a request that was never granted here has nothing to answer: a
            // grant after the timeout is handed back with `LOCK_RELEASE` by the pending
            // table, and that answers the callback. Left pending it would stop every acquirer.
            e.callback = None;
        }
        let n = self.settle(b, &mut g, i);
        let e = &mut g.entries[i];
        let a = if withdrawn { None } else { e.answer_due(n) };
        e.check();
        self.settle(b, &mut g, i);
        drop(g);
        self.notify_all(b);
        a
    }

    /// The refreshing holder is done; `ok` false leaves the refresh due for the next holder.
    fn refreshed(&self, resource: ResourceId, ok: bool) {
        let b = self.bucket_of(resource);
        let mut g = self.lock(b);
        let Some(i) = g.find(resource) else {
            debug_assert!(false, "refresh of an untracked resource");
            return;
        };
        let e = &mut g.entries[i];
        debug_assert_eq!(e.refresh, Refresh::Running);
        e.refresh = if ok { Refresh::Fresh } else { Refresh::Needed };
        self.settle(b, &mut g, i);
        drop(g);
        self.notify_all(b);
    }

    /// Drops a holder reference of `mode`. Returns the answer to carry out if this was the
    /// last holder of a called-back lock.
    fn release_holder(
        &self,
        resource: ResourceId,
        mode: LockMode,
    ) -> Result<Option<Answer>, CacheError> {
        let b = self.bucket_of(resource);
        let mut g = self.lock(b);
        let i = g.find(resource).ok_or(CacheError::Mismatch)?;
        let withdrawn = g.withdrawn;
        let e = &mut g.entries[i];
        if e.holders[mode as usize] == 0 {
            return Err(CacheError::Mismatch);
        }
        e.holders[mode as usize] -= 1;
        let last = e.holder_count() == 0;
        let n = gate::count(self.gate(b, i).load(Ordering::Acquire));
        let a = if withdrawn { None } else { e.answer_due(n) };
        e.check();
        self.settle(b, &mut g, i);
        drop(g);
        if last {
            // A draining withdraw waits for the last holder.
            self.notify_all(b);
        }
        Ok(a)
    }

    /// mxfsd's `LOCK_CALLBACK`: the lock cached through `req_id` may keep at most `keep`.
    fn callback(
        &self,
        req_id: u64,
        resource: ResourceId,
        keep: LockMode,
    ) -> Result<CallbackOutcome, CacheError> {
        if keep == LockMode::Ex {
            return Err(CacheError::Mismatch);
        }
        let b = self.bucket_of(resource);
        let mut g = self.lock(b);
        if g.withdrawn {
            return Err(CacheError::Withdrawn);
        }
        let Some(i) = g.find(resource).filter(|i| g.entries[*i].names(req_id)) else {
            drop(g);
            return Err(self.misnamed(req_id));
        };
        let e = &mut g.entries[i];
        if let Some(a) = e.answering {
            if a.to.is_none() {
                // Already releasing: that release answers this callback too.
                return Ok(CallbackOutcome::Recorded);
            }
        }
        e.callback = Some(match e.callback {
            Some(k) => inf(k, keep),
            None => keep,
        });
        // Closes the gate: from now on new holders wait, and the count says who is inside.
        let n = self.settle(b, &mut g, i);
        let e = &mut g.entries[i];
        let out = match e.answer_due(n) {
            Some(a) => CallbackOutcome::AnswerNow(a),
            None => CallbackOutcome::Recorded,
        };
        e.check();
        self.settle(b, &mut g, i);
        Ok(out)
    }

    /// Why a callback's request id does not name its resource's lock: another resource's
    /// (`Mismatch`) or none (`Unknown`).
    #[doc(hidden)]
    fn misnamed(&self, req_id: u64) -> CacheError {
        for b in 0..self.bucket_count() {
            let g = self.lock(b);
            if g.entries.iter().any(|e| e.used && e.names(req_id)) {
                return CacheError::Mismatch;
            }
        }
        CacheError::Unknown
    }

    /// The answer was carried out: `Ok(version)` (the version of a down-conversion's grant, if
    /// it carried one) or `Err` (the clean point, the send or the conversion failed; the cache
    /// withdraws). Returns a further answer if a later callback asks to keep less still.
    fn answered(&self, resource: ResourceId, result: Result<Option<u64>, i32>) -> Option<Answer> {
        let b = self.bucket_of(resource);
        let mut g = self.lock(b);
        let Some(i) = g.find(resource) else {
            debug_assert!(false, "answer for an untracked resource");
            return None;
        };
        let e = &mut g.entries[i];
        let Some(a) = e.answering.take() else {
            debug_assert!(false, "answered without an answer");
            return None;
        };
        if result.is_err() {
            drop(g);
            self.withdraw();
            return None;
        }
        match a.to {
            None => {
                e.held = None;
                e.callback = None;
            }
            Some(to) => {
                e.held = Some(Held {
                    mode: to,
                    req_id: a.req_id,
                });
                if let Ok(Some(v)) = result {
                    e.version = Some(v);
                }
                if e.callback.is_some_and(|k| covers(k, to)) {
                    e.callback = None;
                }
            }
        }
        let n = self.settle(b, &mut g, i);
        let next = if g.withdrawn {
            None
        } else {
            g.entries[i].answer_due(n)
        };
        g.entries[i].check();
        self.settle(b, &mut g, i);
        drop(g);
        self.notify_all(b);
        next
    }

    /// mxfsd went away (or an answer failed): every waiter and every later acquire fails with
    /// [`CacheError::Withdrawn`]; holders keep running until they release; no callback is
    /// answered any more.
    fn withdraw(&self) {
        for b in 0..self.bucket_count() {
            let mut g = self.lock(b);
            g.withdrawn = true;
            for i in 0..ENTRIES_PER_BUCKET {
                self.settle(b, &mut g, i);
            }
            drop(g);
            self.notify_all(b);
        }
    }

    /// Waits until no holder holds anything (after [`LockCache::withdraw`], for example at
    /// module exit). Returns the holders left if a sleep was interrupted, else 0.
    fn drain(&self) -> u32 {
        for b in 0..self.bucket_count() {
            let mut g = self.lock(b);
            loop {
                let n: u32 = (0..ENTRIES_PER_BUCKET)
                    .map(|i| {
                        g.entries[i].holder_count()
                            + gate::count(self.gate(b, i).load(Ordering::Acquire))
                    })
                    .sum();
                if n == 0 {
                    break;
                }
                if self.wait(b, &mut g) == Wake::Interrupted {
                    return n;
                }
            }
        }
        0
    }

    /// A copy of `resource`'s entry, if tracked (for tests and status).
    fn entry(&self, resource: ResourceId) -> Option<Entry> {
        let g = self.lock(self.bucket_of(resource));
        g.find(resource).map(|i| g.entries[i])
    }
}

impl<T: CacheSync + ?Sized> LockCache for T {}

impl Entry {
    /// The cached lock.
    pub fn held(&self) -> Option<Held> {
        self.held
    }
    /// Holders in `mode`.
    pub fn holders(&self, mode: LockMode) -> u32 {
        self.holders[mode as usize]
    }
    /// The pending callback's mode to keep.
    pub fn callback(&self) -> Option<LockMode> {
        self.callback
    }
    /// The refresh state.
    pub fn refresh(&self) -> Refresh {
        self.refresh
    }
    /// The version of the last grant.
    pub fn version(&self) -> Option<u64> {
        self.version
    }
    /// The request in flight.
    pub fn request(&self) -> Option<InFlight> {
        self.request
    }
    /// Tasks waiting.
    pub fn waiters(&self) -> u32 {
        self.waiters
    }
    /// The answer being carried out.
    pub fn answering(&self) -> Option<Answer> {
        self.answering
    }
}
