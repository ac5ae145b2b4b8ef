// SPDX-License-Identifier: GPL-2.0
//! The tasks inside `-o mxfs` operations (`volume.rs`): which task holds which mount's volume
//! lock, in which mode, how deeply nested. A fixed table, no allocation, no lock: every
//! `op_begin` looks its task up, so this is on the path of every operation. Compiled by
//! `mxfs.ko` with `core` atomics and by `kmod/loom` twice: with `loom` atomics for races
//! between tasks (`tests/taskholds_loom.rs`) and with `core` atomics against a map
//! (`tests/taskholds.rs`). The atomics come from the parent module's `atomic`.
//!
//! # How it stays correct without a lock
//!
//! An entry is *owned* by the task whose address its key holds. Only a task looks up its own
//! key, and only the owner reads or writes an entry's value or frees it; other tasks only
//! claim free entries (a compare-and-exchange from 0). So a lookup needs no ordering with
//! other tasks: a key equal to the caller's was written by the caller.
//!
//! A task's entries live in its home group of [`GROUP_ENTRIES`] entries when there is room.
//! When the group is full, the entry goes to a later group and the home group's *spill* count
//! says so; a lookup scans other groups only while its home group has spilled entries.

use super::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use crate::proto::LockMode;

/// Most tasks inside an mxfs operation at once on this node; one more fails with `-EBUSY`.
pub const TASK_HOLDS_MAX: usize = 256;
/// Entries of one group: a task's lookup scans its home group (four loads on the path of
/// every `op_begin`).
pub const GROUP_ENTRIES: usize = 4;
/// Groups of the table.
pub const GROUPS: usize = TASK_HOLDS_MAX / GROUP_ENTRIES;

const _: () = assert!(GROUPS.is_power_of_two() && GROUPS * GROUP_ENTRIES == TASK_HOLDS_MAX);

/// A task's hold on one mount: the value of its entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TaskHold {
    /// Its mount slot (below 2^16).
    pub slot: usize,
    /// The mode its outermost `op_begin` took.
    pub mode: LockMode,
    /// Nested `op_begin` calls, counting the outermost.
    pub depth: u32,
}

impl TaskHold {
    #[inline(always)]
    fn pack(self) -> u64 {
        debug_assert!(self.slot < 1 << 16);
        (self.slot as u64) << 48 | (self.mode as u64) << 32 | u64::from(self.depth)
    }

    #[inline(always)]
    fn unpack(v: u64) -> TaskHold {
        TaskHold {
            slot: (v >> 48) as usize,
            mode: LockMode::ALL
                .get(((v >> 32) & 0xff) as usize)
                .copied()
                .unwrap_or(LockMode::Nl),
            depth: v as u32,
        }
    }
}

/// What [`TaskHolds::enter`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entered {
    /// The task has an entry for the slot already: this index.
    Found(usize),
    /// The task had none; it has this new one.
    Inserted(usize),
    /// The task had none, and the table is full.
    Full,
}

/// The tasks inside mxfs operations.
pub struct TaskHolds {
    /// Owner task address per entry; 0 for a free entry.
    keys: [AtomicUsize; TASK_HOLDS_MAX],
    /// [`TaskHold`] per entry, packed; read and written by the owner only.
    values: [AtomicU64; TASK_HOLDS_MAX],
    /// Per group: entries of tasks whose home it is that live in another group.
    spills: [AtomicU32; GROUPS],
}

impl TaskHolds {
    /// An empty table.
    pub fn new() -> TaskHolds {
        TaskHolds {
            keys: core::array::from_fn(|_| AtomicUsize::new(0)),
            values: core::array::from_fn(|_| AtomicU64::new(0)),
            spills: core::array::from_fn(|_| AtomicU32::new(0)),
        }
    }

    /// The group where `task`'s entries live when there is room.
    #[inline(always)]
    pub fn home(task: usize) -> usize {
        let h = (task as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h >> 32) as usize & (GROUPS - 1)
    }

    fn in_group(&self, task: usize, slot: usize, group: usize) -> Option<usize> {
        let first = group * GROUP_ENTRIES;
        (first..first + GROUP_ENTRIES)
            .find(|&i| self.keys[i].load(Ordering::Relaxed) == task && self.value(i).slot == slot)
    }

    /// The index of the calling task's entry for `slot`, if it has one. `task` must be the
    /// caller's own address (see the module comment).
    pub fn find(&self, task: usize, slot: usize) -> Option<usize> {
        let home = Self::home(task);
        self.in_group(task, slot, home)
            .or_else(|| self.in_spills(task, slot, home))
    }

    /// The calling task's entry for `slot` outside its home group `home`: looked for only
    /// while `home` has spilled entries.
    fn in_spills(&self, task: usize, slot: usize, home: usize) -> Option<usize> {
        if self.spills[home].load(Ordering::Relaxed) == 0 {
            return None;
        }
        (1..GROUPS).find_map(|k| self.in_group(task, slot, (home + k) & (GROUPS - 1)))
    }

    /// The value of entry `i`, which the caller owns.
    #[inline(always)]
    pub fn value(&self, i: usize) -> TaskHold {
        TaskHold::unpack(self.values[i].load(Ordering::Relaxed))
    }

    /// Replaces the value of entry `i`, which the caller owns.
    #[inline(always)]
    pub fn set(&self, i: usize, h: TaskHold) {
        self.values[i].store(h.pack(), Ordering::Relaxed);
    }

    /// [`TaskHolds::find`] and, if the calling task `task` has no entry for `h.slot`,
    /// [`TaskHolds::insert`] of `h`, in one scan of the home group when the task's entries
    /// have not spilled from it (the path of every `op_begin`).
    #[inline(always)]
    pub fn enter(&self, task: usize, h: TaskHold) -> Entered {
        let home = Self::home(task);
        let first = home * GROUP_ENTRIES;
        let mut free = None;
        for i in first..first + GROUP_ENTRIES {
            let k = self.keys[i].load(Ordering::Relaxed);
            if k == task && self.value(i).slot == h.slot {
                return Entered::Found(i);
            }
            if k == 0 && free.is_none() {
                free = Some(i);
            }
        }
        if let Some(i) = self.in_spills(task, h.slot, home) {
            return Entered::Found(i);
        }
        // Acquire: as in `insert`.
        if let Some(i) = free.filter(|&i| {
            self.keys[i]
                .compare_exchange(0, task, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        }) {
            self.set(i, h);
            return Entered::Inserted(i);
        }
        // Another task took the free entry first, or the home group is full.
        match self.insert(task, h) {
            Some(i) => Entered::Inserted(i),
            None => Entered::Full,
        }
    }

    /// Adds an entry for the calling task `task` (which has none for `h.slot`); its index, or
    /// `None` when the table is full.
    pub fn insert(&self, task: usize, h: TaskHold) -> Option<usize> {
        debug_assert!(task != 0);
        let home = Self::home(task);
        for k in 0..GROUPS {
            let g = (home + k) & (GROUPS - 1);
            for i in g * GROUP_ENTRIES..(g + 1) * GROUP_ENTRIES {
                if self.keys[i].load(Ordering::Relaxed) != 0 {
                    continue;
                }
                // Acquire: the previous owner's last use of the entry happens before ours.
                if self.keys[i]
                    .compare_exchange(0, task, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    self.set(i, h);
                    if k != 0 {
                        self.spills[home].fetch_add(1, Ordering::Relaxed);
                    }
                    return Some(i);
                }
            }
        }
        None
    }

    /// Frees entry `i` of the calling task `task`.
    #[inline(always)]
    pub fn remove(&self, task: usize, i: usize) {
        debug_assert_eq!(self.keys[i].load(Ordering::Relaxed), task);
        let home = Self::home(task);
        if i / GROUP_ENTRIES != home {
            self.spills[home].fetch_sub(1, Ordering::Relaxed);
        }
        // Release: our uses of the entry happen before its next owner's.
        self.keys[i].store(0, Ordering::Release);
    }

    /// Whether entry `i` exists and is `task`'s (a check of an index the caller kept).
    #[inline(always)]
    pub fn owned_by(&self, i: usize, task: usize) -> bool {
        self.keys
            .get(i)
            .is_some_and(|k| k.load(Ordering::Relaxed) == task)
    }

    /// Entries in use (a snapshot, for tests).
    pub fn used(&self) -> usize {
        self.keys
            .iter()
            .filter(|k| k.load(Ordering::Relaxed) != 0)
            .count()
    }
}

impl Default for TaskHolds {
    fn default() -> TaskHolds {
        TaskHolds::new()
    }
}
