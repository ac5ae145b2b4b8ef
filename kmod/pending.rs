// SPDX-License-Identifier: GPL-2.0
//! The pending table: lock requests waiting for `LOCK_GRANT` or `LOCK_DENY` (DESIGN.md §2).
//!
//! This one file is compiled twice: by `mxfs.ko`, which plugs in `kernel::sync` (a `SpinLock`
//! and a `CondVar` per bucket, see `hooks.rs`), and by the loom tests in `kmod/loom`, which plug
//! in `loom::sync`. The logic lives here, in [`PendingTable`]'s provided methods; a platform only
//! says how to lock a bucket, sleep on it and wake it ([`PendingSync`]).
//!
//! Nothing here allocates. A table has a fixed number of buckets, each a fixed array of
//! [`WAITERS_PER_BUCKET`] slots, found by request id. A waiter owns its slot from
//! [`PendingTable::insert`] until [`PendingTable::wait_reply`] or [`PendingTable::cancel`]
//! returns; every other path only changes the slot's state. So a slot is freed exactly once, by
//! its owner, and a ticket's slot index stays valid while the ticket lives.
//!
//! The wait is bounded: a waiter sleeps at most [`PendingSync::grant_budget`] (the platform's
//! rendering of `GRANT_TIMEOUT_MS`), then marks itself expired, frees its slot and returns
//! [`PendingError::TimedOut`]. A reply that arrives after that finds no entry, or an expired one;
//! [`PendingTable::complete`] then answers [`Delivery::Late`] with the reply, and the caller hands
//! the lock back with `LOCK_RELEASE` if it was a grant ([`Delivery::hand_back`]), so no lock
//! leaks. A late deny is only dropped: the daemon granted nothing, so there is nothing to hand
//! back (a release of it would tell the daemon to release a lock it never granted). Loom does not model timeouts, so the tests race a
//! timer thread calling [`PendingTable::expire`], which takes the same path as a timed-out wait.

use core::ops::DerefMut;

use crate::proto::{LockMode, ResourceId};

/// Buckets of the kernel's table (the loom tests use fewer; see [`PendingSync::bucket_count`]).
pub const BUCKETS: usize = 256;
/// Slots per bucket: requests whose ids share a bucket that may wait at once.
pub const WAITERS_PER_BUCKET: usize = 8;
/// Most requests the kernel's table can hold at once. Request ids are sequential, so they fill
/// the buckets evenly; a request that finds its bucket full fails with [`PendingError::Full`].
pub const WAITERS_MAX: usize = BUCKETS * WAITERS_PER_BUCKET;

/// What a slot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotState {
    /// Free.
    Free,
    /// Inserted; no reply yet.
    Waiting,
    /// `LOCK_GRANT` arrived; the owner has not yet picked it up.
    Granted(Grant),
    /// `LOCK_DENY` arrived with this negative errno.
    Denied(i32),
    /// The grant timeout passed first.
    Expired,
    /// Failed by the table (daemon gone, module exit) with this negative errno.
    Cancelled(i32),
}

/// One waiting request.
#[derive(Clone, Copy, Debug)]
pub struct Slot {
    req_id: u64,
    resource: ResourceId,
    state: SlotState,
}

impl Slot {
    const FREE: Slot = Slot {
        req_id: 0,
        resource: ResourceId::inode(0, 0),
        state: SlotState::Free,
    };
}

/// The data a bucket lock protects.
#[derive(Debug)]
pub struct Bucket {
    slots: [Slot; WAITERS_PER_BUCKET],
    /// Set by [`PendingTable::shutdown`]: no new request may enter.
    closed: bool,
}

impl Bucket {
    /// An empty, open bucket.
    pub const EMPTY: Bucket = Bucket {
        slots: [Slot::FREE; WAITERS_PER_BUCKET],
        closed: false,
    };

    fn find(&self, req_id: u64) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.state != SlotState::Free && s.req_id == req_id)
    }

    /// Number of occupied slots.
    pub fn occupied(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.state != SlotState::Free)
            .count()
    }
}

/// Why a sleep on a bucket ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// Notified, or a spurious wake-up: look at the slot again.
    Notified,
    /// The waiter's budget is used up.
    TimedOut,
    /// A signal is pending for the sleeping task.
    Interrupted,
}

/// Why a request did not get its lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PendingError {
    /// The table is shut down (module exit).
    Shutdown,
    /// The request's bucket has no free slot ([`WAITERS_PER_BUCKET`]).
    Full,
    /// Two live requests carry one id; the caller's id allocator is broken.
    DuplicateId,
    /// No reply within the grant timeout.
    TimedOut,
    /// The waiting task got a signal.
    Interrupted,
    /// The daemon denied the request with this negative errno.
    Denied(i32),
    /// The table failed the request with this negative errno (for example the daemon went away).
    Cancelled(i32),
}

/// What [`PendingTable::complete`] did with a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The waiter got it.
    Delivered,
    /// Nobody waits for it any more (timed out, cancelled or never known). Carries the reply
    /// that came late: a grant must be handed back with `LOCK_RELEASE` for that request id, a
    /// deny is only dropped (see [`Delivery::hand_back`]).
    Late(Reply),
    /// The request already has its reply; this one is dropped.
    Duplicate,
    /// The request id exists but names another resource; the reply is refused.
    Mismatch,
}

impl Delivery {
    /// Whether the caller must answer this outcome with `LOCK_RELEASE` (no mode) for the
    /// request: only a late grant, so that the lock the daemon granted does not leak. A late
    /// deny granted nothing and is dropped.
    pub fn hand_back(self) -> bool {
        matches!(self, Delivery::Late(Reply::Grant(_)))
    }
}

/// What a `LOCK_GRANT` says beyond the request it answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The granted mode.
    pub mode: LockMode,
    /// The resource's data version, if the daemon sent one.
    pub version: Option<u64>,
}

/// A reply from the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `LOCK_GRANT`.
    Grant(Grant),
    /// `LOCK_DENY` with a negative errno.
    Deny(i32),
}

/// A waiter's claim on its slot, returned by [`PendingTable::insert`]. It must be given back
/// to exactly one of [`PendingTable::wait_reply`] or [`PendingTable::cancel`].
#[must_use = "a ticket holds a slot until wait_reply or cancel frees it"]
#[derive(Debug)]
pub struct Ticket {
    req_id: u64,
    bucket: usize,
    slot: usize,
}

impl Ticket {
    /// The request id this ticket waits for.
    pub fn req_id(&self) -> u64 {
        self.req_id
    }
}

/// How a platform locks, sleeps on and wakes the buckets of a table.
pub trait PendingSync {
    /// A held bucket lock.
    type Guard<'a>: DerefMut<Target = Bucket>
    where
        Self: 'a;
    /// Time a waiter may still sleep, in the platform's units.
    type Budget;

    /// Number of buckets; at least 1. The kernel has [`BUCKETS`].
    fn bucket_count(&self) -> usize;
    /// Locks bucket `idx` (`idx < bucket_count()`).
    fn lock(&self, idx: usize) -> Self::Guard<'_>;
    /// Sleeps on bucket `idx`, releasing `guard` meanwhile and holding it again on return.
    /// Takes what it slept from `budget` and returns [`Wake::TimedOut`] once it is used up.
    fn wait(&self, idx: usize, guard: &mut Self::Guard<'_>, budget: &mut Self::Budget) -> Wake;
    /// Wakes every sleeper of bucket `idx`.
    fn notify_all(&self, idx: usize);
    /// A fresh budget of `GRANT_TIMEOUT_MS`.
    fn grant_budget(&self) -> Self::Budget;
}

/// The pending table's operations, for every [`PendingSync`] platform.
pub trait PendingTable: PendingSync {
    /// The bucket of a request id.
    fn bucket_of(&self, req_id: u64) -> usize {
        let n = self.bucket_count();
        debug_assert!(n > 0);
        (req_id % n as u64) as usize
    }

    /// Registers request `req_id` for `resource` before the request is sent, so a reply that
    /// comes at once finds it.
    fn insert(&self, req_id: u64, resource: ResourceId) -> Result<Ticket, PendingError> {
        let bucket = self.bucket_of(req_id);
        let mut g = self.lock(bucket);
        if g.closed {
            return Err(PendingError::Shutdown);
        }
        if g.find(req_id).is_some() {
            return Err(PendingError::DuplicateId);
        }
        let slot = g
            .slots
            .iter()
            .position(|s| s.state == SlotState::Free)
            .ok_or(PendingError::Full)?;
        g.slots[slot] = Slot {
            req_id,
            resource,
            state: SlotState::Waiting,
        };
        Ok(Ticket {
            req_id,
            bucket,
            slot,
        })
    }

    /// Gives up a request that was never sent (sending failed), freeing its slot.
    fn cancel(&self, ticket: Ticket) {
        let mut g = self.lock(ticket.bucket);
        self.release_slot(&mut g, &ticket);
    }

    /// Waits for the reply to `ticket`'s request, at most the grant budget, and frees the slot.
    /// `Ok` means granted, with what the grant said.
    fn wait_reply(&self, ticket: Ticket) -> Result<Grant, PendingError> {
        let mut budget = self.grant_budget();
        let mut g = self.lock(ticket.bucket);
        loop {
            let slot = g.slots[ticket.slot];
            if slot.req_id != ticket.req_id || slot.state == SlotState::Free {
                // Only the owner frees its slot, so this cannot happen; fail the request rather
                // than touch a slot that is not ours.
                debug_assert!(false, "pending slot of request {} lost", ticket.req_id);
                return Err(PendingError::Cancelled(-EIO));
            }
            let outcome = match slot.state {
                SlotState::Waiting => None,
                SlotState::Granted(g) => Some(Ok(g)),
                SlotState::Denied(e) => Some(Err(PendingError::Denied(e))),
                SlotState::Expired => Some(Err(PendingError::TimedOut)),
                SlotState::Cancelled(e) => Some(Err(PendingError::Cancelled(e))),
                SlotState::Free => Some(Err(PendingError::Cancelled(-EIO))),
            };
            if let Some(outcome) = outcome {
                self.release_slot(&mut g, &ticket);
                return outcome;
            }
            match self.wait(ticket.bucket, &mut g, &mut budget) {
                Wake::Notified => {}
                Wake::TimedOut => expire_slot(&mut g, ticket.slot),
                Wake::Interrupted => {
                    if g.slots[ticket.slot].state == SlotState::Waiting {
                        self.release_slot(&mut g, &ticket);
                        return Err(PendingError::Interrupted);
                    }
                    // A reply is already there: take it on the next turn.
                }
            }
        }
    }

    /// Hands a daemon reply to its waiter.
    fn complete(&self, req_id: u64, resource: ResourceId, reply: Reply) -> Delivery {
        let bucket = self.bucket_of(req_id);
        let mut g = self.lock(bucket);
        let Some(i) = g.find(req_id) else {
            return Delivery::Late(reply);
        };
        let slot = &mut g.slots[i];
        if slot.resource != resource {
            return Delivery::Mismatch;
        }
        match slot.state {
            SlotState::Waiting => {
                slot.state = match reply {
                    Reply::Grant(g) => SlotState::Granted(g),
                    Reply::Deny(e) => SlotState::Denied(e),
                };
                drop(g);
                self.notify_all(bucket);
                Delivery::Delivered
            }
            SlotState::Granted(_) | SlotState::Denied(_) => Delivery::Duplicate,
            SlotState::Expired | SlotState::Cancelled(_) => Delivery::Late(reply),
            SlotState::Free => Delivery::Late(reply),
        }
    }

    /// The grant timer of request `req_id` fired: a waiting request expires, as if its own
    /// timed sleep had run out. Returns whether it was still waiting.
    fn expire(&self, req_id: u64) -> bool {
        let bucket = self.bucket_of(req_id);
        let mut g = self.lock(bucket);
        let Some(i) = g.find(req_id) else {
            return false;
        };
        if g.slots[i].state != SlotState::Waiting {
            return false;
        }
        expire_slot(&mut g, i);
        drop(g);
        self.notify_all(bucket);
        true
    }

    /// Fails every waiting request with `errno` (negative), for example when the daemon goes
    /// away. Requests that already have a reply keep it. Returns how many were failed.
    fn fail_all(&self, errno: i32) -> usize {
        debug_assert!(errno < 0);
        let mut failed = 0;
        for b in 0..self.bucket_count() {
            let mut g = self.lock(b);
            for s in g.slots.iter_mut().filter(|s| s.state == SlotState::Waiting) {
                s.state = SlotState::Cancelled(errno);
                failed += 1;
            }
            drop(g);
            self.notify_all(b);
        }
        failed
    }

    /// Closes the table: new requests fail with [`PendingError::Shutdown`] and every waiter is
    /// woken with `Cancelled(-ESHUTDOWN)`. Call [`PendingTable::drain`] after it.
    fn shutdown(&self) {
        for b in 0..self.bucket_count() {
            self.lock(b).closed = true;
        }
        self.fail_all(-ESHUTDOWN);
    }

    /// Waits until every waiter has left the table (after [`PendingTable::shutdown`]). Each
    /// waiter already has its reply, so it leaves without sleeping; the wait is bounded by the
    /// grant budget per bucket. Returns the number of slots still occupied (0 when drained).
    fn drain(&self) -> usize {
        let mut left = 0;
        for b in 0..self.bucket_count() {
            let mut budget = self.grant_budget();
            let mut g = self.lock(b);
            debug_assert!(g.closed, "drain without shutdown");
            while g.occupied() > 0 {
                if self.wait(b, &mut g, &mut budget) == Wake::TimedOut {
                    break;
                }
            }
            left += g.occupied();
        }
        left
    }

    /// Occupied slots over all buckets.
    fn occupied(&self) -> usize {
        (0..self.bucket_count())
            .map(|b| self.lock(b).occupied())
            .sum()
    }

    /// Frees the ticket's slot (bucket lock held). Wakes a draining module exit if closed.
    #[doc(hidden)]
    fn release_slot(&self, g: &mut Self::Guard<'_>, ticket: &Ticket) {
        debug_assert_eq!(g.slots[ticket.slot].req_id, ticket.req_id);
        g.slots[ticket.slot] = Slot::FREE;
        if g.closed {
            self.notify_all(ticket.bucket);
        }
    }
}

impl<T: PendingSync + ?Sized> PendingTable for T {}

/// Marks a still-waiting slot expired (bucket lock held); a reply already there wins.
fn expire_slot(g: &mut Bucket, slot: usize) {
    if g.slots[slot].state == SlotState::Waiting {
        g.slots[slot].state = SlotState::Expired;
    }
}

/// `EIO`, for an internal inconsistency.
pub const EIO: i32 = 5;
/// `ESHUTDOWN`, for requests failed by module exit.
pub const ESHUTDOWN: i32 = 108;
