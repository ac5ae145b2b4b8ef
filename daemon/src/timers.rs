//! The lock core's timers, kept in the event loop: one deadline-ordered set and one tokio
//! `Sleep` for the earliest entry. Arming or cancelling a timer is a map operation; nothing is
//! spawned per timer, so a cancelled timeout (the usual fate of a request's 30 s timeout) costs
//! nothing after it is cancelled.

use mxfs_core::TimerId;
use std::collections::{BTreeSet, HashMap};

/// Armed timers of the lock core, by deadline (`now_ms` of the core's clock).
#[derive(Default, Debug)]
pub struct Timers {
    /// Deadline of each armed timer.
    armed: HashMap<TimerId, u64>,
    /// The same entries ordered by deadline.
    by_deadline: BTreeSet<(u64, TimerId)>,
}

impl Timers {
    /// Arms `id` for `at_ms`, replacing an earlier arming of the same id.
    pub fn set(&mut self, id: TimerId, at_ms: u64) {
        if let Some(old) = self.armed.insert(id, at_ms) {
            self.by_deadline.remove(&(old, id));
        }
        self.by_deadline.insert((at_ms, id));
        debug_assert_eq!(self.armed.len(), self.by_deadline.len());
    }

    /// Disarms `id`; a timer that is not armed is ignored.
    pub fn cancel(&mut self, id: TimerId) {
        if let Some(at) = self.armed.remove(&id) {
            self.by_deadline.remove(&(at, id));
        }
        debug_assert_eq!(self.armed.len(), self.by_deadline.len());
    }

    /// The earliest deadline, if any timer is armed.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.by_deadline.first().map(|(at, _)| *at)
    }

    /// Disarms and returns the earliest timer due at `now_ms`, if any.
    pub fn pop_due(&mut self, now_ms: u64) -> Option<TimerId> {
        let (at, id) = *self.by_deadline.first()?;
        if at > now_ms {
            return None;
        }
        self.by_deadline.remove(&(at, id));
        self.armed.remove(&id);
        Some(id)
    }

    /// How many timers are armed.
    pub fn len(&self) -> usize {
        self.armed.len()
    }

    /// No timer is armed.
    pub fn is_empty(&self) -> bool {
        self.armed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: u64) -> TimerId {
        TimerId::Request(n)
    }

    #[test]
    fn fires_in_deadline_order_and_only_when_due() {
        let mut ts = Timers::default();
        ts.set(t(1), 300);
        ts.set(t(2), 100);
        ts.set(t(3), 200);
        assert_eq!(ts.next_deadline_ms(), Some(100));
        assert_eq!(ts.pop_due(99), None);
        assert_eq!(ts.pop_due(250), Some(t(2)));
        assert_eq!(ts.pop_due(250), Some(t(3)));
        assert_eq!(ts.pop_due(250), None);
        assert_eq!(ts.next_deadline_ms(), Some(300));
        assert_eq!(ts.len(), 1);
    }

    #[test]
    fn cancel_and_rearm_leave_no_stale_entry() {
        let mut ts = Timers::default();
        ts.set(t(1), 100);
        ts.set(t(1), 500); // re-armed later: the 100 ms entry must not fire
        assert_eq!(ts.pop_due(200), None);
        assert_eq!(ts.next_deadline_ms(), Some(500));
        ts.cancel(t(1));
        ts.cancel(t(9)); // never armed
        assert!(ts.is_empty());
        assert_eq!(ts.next_deadline_ms(), None);
        assert_eq!(ts.pop_due(u64::MAX), None);
    }
}
