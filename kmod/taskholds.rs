// SPDX-License-Identifier: GPL-2.0
//! The tasks inside `-o mxfs` operations (`volume.rs`): which task holds which mount's volume
//! lock, in which mode, how deeply nested. A fixed table, no allocation; compiled by `mxfs.ko`
//! and by the tests in `kmod/loom` (`tests/taskholds.rs`), which check it against a map.

use crate::proto::LockMode;

/// Most tasks inside an mxfs operation at once on this node; one more fails with `-EBUSY`.
pub const TASK_HOLDS_MAX: usize = 256;

/// A task inside an mxfs operation.
#[derive(Clone, Copy)]
pub struct TaskHold {
    /// The task (its address), 0 for a free entry.
    pub task: usize,
    /// Its mount slot.
    pub slot: usize,
    /// The mode its outermost `op_begin` took.
    pub mode: LockMode,
    /// Nested `op_begin` calls, counting the outermost.
    pub depth: u32,
}

/// The tasks inside mxfs operations: an open-addressing table keyed by task address (linear
/// probing from a multiplicative hash, backward-shift deletion, so a lookup stops at the first
/// free entry). One lookup per `op_begin` and `op_end`, under a spinlock held for nothing else.
pub struct TaskHolds {
    /// The table; use [`TaskHolds::find`], [`TaskHolds::insert`], [`TaskHolds::remove`].
    pub entries: [TaskHold; TASK_HOLDS_MAX],
}

const _: () = assert!(TASK_HOLDS_MAX.is_power_of_two());

impl TaskHolds {
    /// A free entry.
    pub const FREE: TaskHold = TaskHold {
        task: 0,
        slot: 0,
        mode: LockMode::Nl,
        depth: 0,
    };

    fn home(task: usize) -> usize {
        let h = (task as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h >> 32) as usize & (TASK_HOLDS_MAX - 1)
    }

    /// The index of `(task, slot)`'s entry.
    pub fn find(&self, task: usize, slot: usize) -> Option<usize> {
        let mut i = Self::home(task);
        for _ in 0..TASK_HOLDS_MAX {
            let e = &self.entries[i];
            if e.task == 0 {
                return None;
            }
            if e.task == task && e.slot == slot {
                return Some(i);
            }
            i = (i + 1) & (TASK_HOLDS_MAX - 1);
        }
        None
    }

    /// Adds an entry; false when the table is full.
    pub fn insert(&mut self, h: TaskHold) -> bool {
        debug_assert!(h.task != 0);
        let mut i = Self::home(h.task);
        for _ in 0..TASK_HOLDS_MAX {
            if self.entries[i].task == 0 {
                self.entries[i] = h;
                return true;
            }
            i = (i + 1) & (TASK_HOLDS_MAX - 1);
        }
        false
    }

    /// Removes entry `i`, moving later entries of its probe run back so lookups still find
    /// them.
    pub fn remove(&mut self, mut i: usize) {
        let mask = TASK_HOLDS_MAX - 1;
        let mut j = i;
        loop {
            j = (j + 1) & mask;
            if self.entries[j].task == 0 || j == i {
                break;
            }
            let k = Self::home(self.entries[j].task);
            // Entry j may move to i unless its home lies cyclically in (i, j].
            let stays = if i <= j {
                i < k && k <= j
            } else {
                i < k || k <= j
            };
            if !stays {
                self.entries[i] = self.entries[j];
                i = j;
            }
        }
        self.entries[i] = Self::FREE;
    }
}

impl TaskHolds {
    /// An empty table.
    pub const EMPTY: TaskHolds = TaskHolds {
        entries: [Self::FREE; TASK_HOLDS_MAX],
    };
}
