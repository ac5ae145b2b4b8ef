//! Master layer: per-resource granted, convert and wait queues, FIFO grants, BASTs, versions.

use std::collections::VecDeque;

use crate::*;

/// A granted lock on the master.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Granted {
    pub node: NodeId,
    pub mode: LockMode,
    pub seq: u64,
    pub since_ms: u64,
    pub bast_sent: bool,
}

/// A convert or wait queue entry on the master.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Pending {
    pub node: NodeId,
    pub mode: LockMode,
    pub seq: u64,
    pub since_ms: u64,
}

/// Master-side state of one resource.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct MasterRes {
    pub version: Version,
    pub granted: Vec<Granted>,
    pub converting: VecDeque<Pending>,
    pub waiting: VecDeque<Pending>,
}

impl MasterRes {
    pub fn dump(&self, resource: ResourceId, master: NodeId) -> ResourceDump {
        let held = |node: NodeId| self.granted.iter().find(|g| g.node == node).map(|g| g.mode);
        ResourceDump {
            resource,
            master,
            version: self.version,
            granted: self
                .granted
                .iter()
                .map(|g| QueueEntry {
                    node: g.node,
                    seq: g.seq,
                    mode: g.mode,
                    held: None,
                    since_ms: g.since_ms,
                })
                .collect(),
            converting: self
                .converting
                .iter()
                .map(|p| QueueEntry {
                    node: p.node,
                    seq: p.seq,
                    mode: p.mode,
                    held: held(p.node),
                    since_ms: p.since_ms,
                })
                .collect(),
            waiting: self
                .waiting
                .iter()
                .map(|p| QueueEntry {
                    node: p.node,
                    seq: p.seq,
                    mode: p.mode,
                    held: None,
                    since_ms: p.since_ms,
                })
                .collect(),
        }
    }
}

use crate::engine::Core;
use crate::modes::{covers, gives_up_write};

impl MasterRes {
    fn new(version: Version) -> MasterRes {
        MasterRes {
            version,
            granted: Vec::new(),
            converting: VecDeque::new(),
            waiting: VecDeque::new(),
        }
    }

    fn is_idle(&self) -> bool {
        self.granted.is_empty() && self.converting.is_empty() && self.waiting.is_empty()
    }

    fn queued(&self, node: NodeId) -> bool {
        self.converting
            .iter()
            .chain(self.waiting.iter())
            .any(|p| p.node == node)
    }

    /// Granted locks of nodes other than `node` that `mode` is incompatible with.
    fn blockers(&self, node: NodeId, mode: LockMode) -> impl Iterator<Item = &Granted> {
        self.granted
            .iter()
            .filter(move |g| g.node != node && !g.mode.compatible(mode))
    }

    /// Checks the master invariants of this resource.
    pub(crate) fn check(&self, r: &ResourceId) -> Result<(), String> {
        for (i, a) in self.granted.iter().enumerate() {
            for b in &self.granted[i + 1..] {
                if a.node == b.node {
                    return Err(format!("{r:?}: node {} granted twice", a.node));
                }
                if !a.mode.compatible(b.mode) {
                    return Err(format!("{r:?}: incompatible grants {a:?} {b:?}"));
                }
            }
        }
        for c in &self.converting {
            if !self.granted.iter().any(|g| g.node == c.node) {
                return Err(format!(
                    "{r:?}: conversion of node {} that holds nothing",
                    c.node
                ));
            }
        }
        for w in &self.waiting {
            if self.granted.iter().any(|g| g.node == w.node) {
                return Err(format!("{r:?}: node {} waits while holding", w.node));
            }
        }
        if self.converting.len() + self.waiting.len() > WAITERS_PER_RESOURCE_MAX {
            return Err(format!("{r:?}: queues over WAITERS_PER_RESOURCE_MAX"));
        }
        if self.is_idle() {
            return Err(format!("{r:?}: idle entry kept"));
        }
        Ok(())
    }
}

impl Core {
    /// A fresh, never issued version of this master's epoch.
    fn fresh_version(&mut self) -> Version {
        let v = Version {
            epoch: self.epoch,
            counter: self.master_gen,
        };
        self.master_gen += 1;
        v
    }

    fn send_to(&mut self, to: NodeId, body: PeerBody, out: &mut Vec<Action>) {
        self.send(to, body, out);
    }

    /// A master-layer message (`Lock`, `Release`, `Cancel`) from `from`.
    pub(crate) fn master_msg(
        &mut self,
        now_ms: u64,
        from: NodeId,
        body: PeerBody,
        out: &mut Vec<Action>,
    ) -> Result<(), Reject> {
        if !self.recovery.master_ready {
            return Err(Reject::Unexpected(
                "lock traffic before this master is rebuilt",
            ));
        }
        let resource = match &body {
            PeerBody::Lock { resource, .. }
            | PeerBody::Release { resource, .. }
            | PeerBody::Cancel { resource, .. } => *resource,
            _ => return Err(Reject::Unexpected("not a master-layer message")),
        };
        if master_of(self.members, &resource) != Some(self.cfg.node) {
            return Err(Reject::Unexpected(
                "lock traffic for a resource this node does not master",
            ));
        }
        let seq = match &body {
            PeerBody::Lock { seq, .. }
            | PeerBody::Release { seq, .. }
            | PeerBody::Cancel { seq, .. } => *seq,
            _ => unreachable!("matched above"),
        };
        if let Some(c) = self.early_cancels.get(&(from, resource)).copied() {
            if c == seq && matches!(body, PeerBody::Lock { .. }) {
                self.early_cancels.remove(&(from, resource));
                self.deny_msg(from, resource, ECANCELED, seq, out);
                return Ok(());
            }
            if c < seq {
                self.early_cancels.remove(&(from, resource));
            }
        }
        match body {
            PeerBody::Lock {
                mode, noqueue, seq, ..
            } => self.on_lock(now_ms, from, resource, mode, noqueue, seq, out)?,
            PeerBody::Release { to, seq, .. } => self.on_release(from, resource, to, seq, out)?,
            PeerBody::Cancel { seq, .. } => self.on_cancel(from, resource, seq, out),
            _ => unreachable!("matched above"),
        }
        self.process(now_ms, &resource, out);
        Ok(())
    }

    fn grant_msg(
        &mut self,
        to: NodeId,
        resource: ResourceId,
        mode: LockMode,
        seq: u64,
        out: &mut Vec<Action>,
    ) {
        let version = self.master[&resource].version;
        self.send_to(
            to,
            PeerBody::Grant {
                resource,
                mode,
                version,
                seq,
            },
            out,
        );
    }

    fn deny_msg(
        &mut self,
        to: NodeId,
        resource: ResourceId,
        errno: i32,
        seq: u64,
        out: &mut Vec<Action>,
    ) {
        self.send_to(
            to,
            PeerBody::Deny {
                resource,
                errno,
                seq,
            },
            out,
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn on_lock(
        &mut self,
        now_ms: u64,
        from: NodeId,
        resource: ResourceId,
        mode: LockMode,
        noqueue: bool,
        seq: u64,
        out: &mut Vec<Action>,
    ) -> Result<(), Reject> {
        if !self.master.contains_key(&resource) {
            if self.master.len() >= MASTER_RESOURCES_MAX {
                self.deny_msg(from, resource, ENOMEM, seq, out);
                return Ok(());
            }
            let v = self.fresh_version();
            self.master.insert(resource, MasterRes::new(v));
        }
        let node = self.cfg.node;
        let m = self.master.get_mut(&resource).expect("inserted");
        if m.queued(from) {
            return Err(Reject::Unexpected(
                "second lock request from a node already queued",
            ));
        }
        let _ = node;
        let held = m.granted.iter().position(|g| g.node == from);
        if let Some(gi) = held {
            let old = m.granted[gi].mode;
            if covers(old, mode) {
                // Down-conversion (or no change): always grantable at once.
                if gives_up_write(old, Some(mode)) {
                    let v = self.fresh_version();
                    let m = self.master.get_mut(&resource).expect("present");
                    m.version = v;
                }
                let m = self.master.get_mut(&resource).expect("present");
                let g = &mut m.granted[gi];
                g.mode = mode;
                g.seq = seq;
                g.bast_sent = false;
                self.grant_msg(from, resource, mode, seq, out);
                return Ok(());
            }
        }
        let grantable_now = m.blockers(from, mode).next().is_none()
            && m.converting.is_empty()
            && (held.is_some() || m.waiting.is_empty());
        if noqueue {
            if grantable_now {
                self.grant_now(now_ms, from, resource, mode, seq, out);
            } else {
                // DLM_LKF_NOQUEUEBAST: tell the blockers, so cached locks get given up and a
                // later try-lock succeeds.
                self.send_basts(&resource, from, mode, out);
                self.deny_msg(from, resource, EAGAIN, seq, out);
            }
            return Ok(());
        }
        if m.converting.len() + m.waiting.len() >= WAITERS_PER_RESOURCE_MAX {
            self.deny_msg(from, resource, EAGAIN, seq, out);
            return Ok(());
        }
        let p = Pending {
            node: from,
            mode,
            seq,
            since_ms: now_ms,
        };
        if held.is_some() {
            m.converting.push_back(p);
        } else {
            m.waiting.push_back(p);
        }
        Ok(())
    }

    fn grant_now(
        &mut self,
        now_ms: u64,
        from: NodeId,
        resource: ResourceId,
        mode: LockMode,
        seq: u64,
        out: &mut Vec<Action>,
    ) {
        let m = self.master.get_mut(&resource).expect("present");
        match m.granted.iter_mut().find(|g| g.node == from) {
            Some(g) => {
                g.mode = mode;
                g.seq = seq;
                g.bast_sent = false;
            }
            None => m.granted.push(Granted {
                node: from,
                mode,
                seq,
                since_ms: now_ms,
                bast_sent: false,
            }),
        }
        self.grant_msg(from, resource, mode, seq, out);
    }

    fn on_release(
        &mut self,
        from: NodeId,
        resource: ResourceId,
        to: Option<LockMode>,
        seq: u64,
        out: &mut Vec<Action>,
    ) -> Result<(), Reject> {
        let gi = self
            .master
            .get(&resource)
            .and_then(|m| m.granted.iter().position(|g| g.node == from))
            .ok_or(Reject::Unexpected(
                "release of a lock the master does not know",
            ))?;
        let m = self.master.get_mut(&resource).expect("found");
        let old = m.granted[gi].mode;
        if to.is_some_and(|t| !covers(old, t)) {
            return Err(Reject::Unexpected("release to a stronger mode"));
        }
        match to {
            None => {
                m.granted.remove(gi);
            }
            Some(t) => {
                let g = &mut m.granted[gi];
                g.mode = t;
                g.bast_sent = false;
            }
        }
        if gives_up_write(old, to) {
            let v = self.fresh_version();
            self.master.get_mut(&resource).expect("present").version = v;
        }
        let version = self.master[&resource].version;
        self.send_to(
            from,
            PeerBody::ReleaseAck {
                resource,
                version,
                seq,
            },
            out,
        );
        Ok(())
    }

    fn on_cancel(&mut self, from: NodeId, resource: ResourceId, seq: u64, out: &mut Vec<Action>) {
        let answered = self
            .master
            .get(&resource)
            .is_some_and(|m| m.granted.iter().any(|g| g.node == from && g.seq >= seq));
        let queued = self.master.get(&resource).is_some_and(|m| {
            m.waiting
                .iter()
                .chain(m.converting.iter())
                .any(|p| p.node == from && p.seq == seq)
        });
        if !answered && !queued {
            // Not arrived yet (or already answered by a deny): remember it for the `Lock`.
            if self.early_cancels.len() >= EARLY_CANCELS_MAX {
                let oldest = *self.early_cancels.keys().next().expect("not empty");
                self.early_cancels.remove(&oldest);
            }
            self.early_cancels.insert((from, resource), seq);
            return;
        }
        let Some(m) = self.master.get_mut(&resource) else {
            return;
        };
        let hit = |p: &Pending| p.node == from && p.seq == seq;
        let found = if let Some(i) = m.waiting.iter().position(hit) {
            m.waiting.remove(i).is_some()
        } else if let Some(i) = m.converting.iter().position(hit) {
            m.converting.remove(i).is_some()
        } else {
            // Already answered (a grant is on its way and will be cached), or not yet arrived
            // (it will be queued and granted later, then cached and given up on a BAST).
            false
        };
        if found {
            self.deny_msg(from, resource, ECANCELED, seq, out);
        }
    }

    /// Sends a BAST for a blocked request of `node` in `mode` to each blocker not told yet.
    fn send_basts(
        &mut self,
        resource: &ResourceId,
        node: NodeId,
        mode: LockMode,
        out: &mut Vec<Action>,
    ) {
        let m = self.master.get_mut(resource).expect("present");
        let mut to = [0 as NodeId; NODES_MAX];
        let mut n = 0;
        for g in m.granted.iter_mut() {
            if g.node != node && !g.mode.compatible(mode) && !g.bast_sent {
                g.bast_sent = true;
                to[n] = g.node;
                n += 1;
            }
        }
        for holder in &to[..n] {
            self.send_to(
                *holder,
                PeerBody::Bast {
                    resource: *resource,
                    mode,
                },
                out,
            );
        }
    }

    /// The grant pass: converts first (FIFO), then waiters (FIFO), each only while grantable;
    /// then BASTs to the holders blocking the head; drops the entry when idle.
    pub(crate) fn process(&mut self, now_ms: u64, resource: &ResourceId, out: &mut Vec<Action>) {
        // Callers are the lock traffic of a rebuilt master (`master_msg` checks).
        debug_assert!(self.recovery.master_ready && self.phase != Phase::Stopped);
        if !self.master.contains_key(resource) {
            return;
        }
        // Ends: every `continue` pops an entry from the convert or the wait queue.
        loop {
            let m = self.master.get_mut(resource).expect("present");
            if let Some(c) = m.converting.front() {
                if m.blockers(c.node, c.mode).next().is_none() {
                    let c = m.converting.pop_front().expect("front");
                    self.grant_now(now_ms, c.node, *resource, c.mode, c.seq, out);
                    continue;
                }
                // Conversion deadlock: every blocker is itself waiting to convert. Deny the
                // head (it keeps its granted mode), as the Linux DLM does.
                let deadlock = m
                    .blockers(c.node, c.mode)
                    .all(|b| m.converting.iter().any(|p| p.node == b.node));
                if deadlock {
                    let c = m.converting.pop_front().expect("front");
                    self.deny_msg(c.node, *resource, EDEADLK, c.seq, out);
                    continue;
                }
                break;
            }
            if let Some(w) = m.waiting.front() {
                if m.blockers(w.node, w.mode).next().is_none() {
                    let w = m.waiting.pop_front().expect("front");
                    self.grant_now(now_ms, w.node, *resource, w.mode, w.seq, out);
                    continue;
                }
            }
            break;
        }
        let m = self.master.get(resource).expect("present");
        if let Some(h) = m.converting.front().or(m.waiting.front()) {
            let (node, mode) = (h.node, h.mode);
            self.send_basts(resource, node, mode, out);
        }
        if self.master[resource].is_idle() {
            self.master.remove(resource);
        }
    }

    /// Recovery: `from` holds `resource` in `mode`.
    pub(crate) fn on_recover(
        &mut self,
        now_ms: u64,
        from: NodeId,
        resource: ResourceId,
        mode: LockMode,
    ) -> Result<(), Reject> {
        if self.recovery.master_ready {
            return Err(Reject::Unexpected("recover message after rebuild"));
        }
        if master_of(self.members, &resource) != Some(self.cfg.node) {
            return Err(Reject::Unexpected(
                "recover message for a resource this node does not master",
            ));
        }
        if self
            .master
            .get(&resource)
            .is_some_and(|m| m.granted.iter().any(|g| g.node == from))
        {
            return Err(Reject::Unexpected("duplicate recover message"));
        }
        // Survivors hold pairwise compatible locks, so a conflicting claim can only come from a
        // stale core (e.g. a node that was cut off, fenced, and came back without restarting).
        // Refusing it keeps the granted queue compatible; the first claim stands.
        if self
            .master
            .get(&resource)
            .is_some_and(|m| m.granted.iter().any(|g| !g.mode.compatible(mode)))
        {
            return Err(Reject::Unexpected(
                "recover message conflicting with a rebuilt grant",
            ));
        }
        if !self.master.contains_key(&resource) {
            let v = self.fresh_version();
            self.master.insert(resource, MasterRes::new(v));
        }
        let m = self.master.get_mut(&resource).expect("present");
        m.granted.push(Granted {
            node: from,
            mode,
            seq: 0,
            since_ms: now_ms,
            bast_sent: false,
        });
        *self.recovery.received.entry(from).or_default() += 1;
        Ok(())
    }
}
