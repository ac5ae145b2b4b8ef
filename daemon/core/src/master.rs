//! Master layer: for the resources this node masters, the granted, convert and wait queues,
//! FIFO grants by the rule of `grant.rs`, BASTs, data versions and early cancels.

use std::collections::{BTreeMap, VecDeque};

use crate::engine::Ctx;
use crate::grant::{self, covers, gives_up_write, MasterScan};
use crate::*;

/// A granted lock on the master.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Granted {
    pub node: NodeId,
    pub mode: LockMode,
    pub seq: u64,
    pub since_ms: u64,
    /// The BASTs sent for this grant asked for this mode (the supremum of the blocked modes
    /// named); another is sent only for a request it does not cover.
    pub bast_sent: Option<LockMode>,
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

/// The master table of one node: every resource it masters in the current epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct MasterTable {
    /// Resources this node masters, with their queues.
    pub res: BTreeMap<ResourceId, MasterRes>,
    /// Next counter of [`Version`]s this master issues in this epoch.
    pub gen: u64,
    /// `Cancel`s that arrived before the `Lock` they withdraw (the network may reorder), by
    /// sender and resource: the `Lock` with that sequence number is denied on arrival. A stale
    /// entry (its `Lock` was already answered) is dropped by the sender's next message about
    /// the resource, whose sequence number is higher.
    pub early_cancels: BTreeMap<(NodeId, ResourceId), u64>,
}

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

    /// Every node in a queue of this resource.
    fn nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.granted
            .iter()
            .map(|g| g.node)
            .chain(self.converting.iter().chain(&self.waiting).map(|p| p.node))
    }

    fn dump(&self, resource: ResourceId, master: NodeId) -> ResourceDump {
        let held = |node: NodeId| self.granted.iter().find(|g| g.node == node).map(|g| g.mode);
        let pending = |p: &Pending, held: Option<LockMode>| QueueEntry {
            node: p.node,
            seq: p.seq,
            mode: p.mode,
            held,
            since_ms: p.since_ms,
        };
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
                .map(|p| pending(p, held(p.node)))
                .collect(),
            waiting: self.waiting.iter().map(|p| pending(p, None)).collect(),
        }
    }

    /// Checks the master invariants of this resource.
    fn check(&self, r: &ResourceId) -> Result<(), String> {
        for (i, a) in self.granted.iter().enumerate() {
            for b in &self.granted[i + 1..] {
                if a.node == b.node {
                    return Err(format!("{r:?}: node {} granted twice", a.node));
                }
                if !grant::compatible(a.mode, b.mode) {
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
        // One entry per node at most, so the queues hold at most NODES_MAX entries.
        let mut queued = NodeSet::EMPTY;
        for p in self.converting.iter().chain(&self.waiting) {
            if queued.contains(p.node) {
                return Err(format!("{r:?}: node {} queued twice", p.node));
            }
            queued = queued.with(p.node);
        }
        if self.is_idle() {
            return Err(format!("{r:?}: idle entry kept"));
        }
        Ok(())
    }
}

impl MasterTable {
    /// A new epoch: every queue is rebuilt from the survivors' `Recover` messages.
    pub(crate) fn reset(&mut self) {
        *self = MasterTable::default();
    }

    /// A fresh, never issued version of this master's epoch.
    fn fresh_version(&mut self, epoch: Epoch) -> Version {
        let v = Version {
            epoch,
            counter: self.gen,
        };
        self.gen += 1;
        v
    }

    /// A master-layer message (`Lock`, `Release`, `Cancel`) from `from`. The caller checked
    /// that this master's tables are rebuilt.
    pub(crate) fn msg(&mut self, from: NodeId, body: PeerBody, cx: &mut Ctx) -> Result<(), Reject> {
        let (resource, seq) = match &body {
            PeerBody::Lock { resource, seq, .. }
            | PeerBody::Release { resource, seq, .. }
            | PeerBody::Cancel { resource, seq, .. } => (*resource, *seq),
            _ => return Err(Reject::Unexpected("not a master-layer message")),
        };
        if master_of(cx.members, &resource) != Some(cx.me) {
            return Err(Reject::Unexpected(
                "lock traffic for a resource this node does not master",
            ));
        }
        if let Some(c) = self.early_cancels.get(&(from, resource)).copied() {
            if c == seq && matches!(body, PeerBody::Lock { .. }) {
                self.early_cancels.remove(&(from, resource));
                deny_msg(cx, from, resource, ECANCELED, seq);
                return Ok(());
            }
            if c < seq {
                self.early_cancels.remove(&(from, resource));
            }
        }
        match body {
            PeerBody::Lock { mode, noqueue, .. } => {
                self.on_lock(from, resource, mode, noqueue, seq, cx)?
            }
            PeerBody::Release { to, .. } => self.on_release(from, resource, to, seq, cx)?,
            PeerBody::Cancel { .. } => self.on_cancel(from, resource, seq, cx),
            _ => unreachable!("matched above"),
        }
        self.process(&resource, cx);
        Ok(())
    }

    fn grant_msg(&self, cx: &mut Ctx, to: NodeId, resource: ResourceId, mode: LockMode, seq: u64) {
        let version = self.res[&resource].version;
        cx.send(
            to,
            PeerBody::Grant {
                resource,
                mode,
                version,
                seq,
            },
        );
    }

    fn on_lock(
        &mut self,
        from: NodeId,
        resource: ResourceId,
        mode: LockMode,
        noqueue: bool,
        seq: u64,
        cx: &mut Ctx,
    ) -> Result<(), Reject> {
        if !self.res.contains_key(&resource) {
            if self.res.len() >= MASTER_RESOURCES_MAX {
                deny_msg(cx, from, resource, ENOMEM, seq);
                return Ok(());
            }
            let v = self.fresh_version(cx.epoch);
            self.res.insert(resource, MasterRes::new(v));
        }
        let m = self.res.get_mut(&resource).expect("inserted");
        if m.queued(from) {
            return Err(Reject::Unexpected(
                "second lock request from a node already queued",
            ));
        }
        let held = m.granted.iter().position(|g| g.node == from);
        if let Some(gi) = held {
            let old = m.granted[gi].mode;
            if covers(old, mode) {
                // Down-conversion (or no change): always grantable at once.
                if gives_up_write(old, Some(mode)) {
                    let v = self.fresh_version(cx.epoch);
                    self.res.get_mut(&resource).expect("present").version = v;
                }
                self.grant_now(cx, from, resource, mode, seq);
                return Ok(());
            }
        }
        let grantable_now =
            grant::master_may_grant_now(&m.granted, &m.converting, &m.waiting, from, mode);
        if noqueue {
            if grantable_now {
                self.grant_now(cx, from, resource, mode, seq);
            } else {
                // DLM_LKF_NOQUEUEBAST: tell the blockers, so cached locks get given up and a
                // later try-lock succeeds.
                self.send_basts(&resource, from, mode, cx);
                deny_msg(cx, from, resource, EAGAIN, seq);
            }
            return Ok(());
        }
        // No length limit is needed here: a node has at most one entry in these queues
        // (`queued` above), so they hold at most one entry per member node (`check`).
        let p = Pending {
            node: from,
            mode,
            seq,
            since_ms: cx.now_ms,
        };
        if held.is_some() {
            m.converting.push_back(p);
        } else {
            m.waiting.push_back(p);
        }
        Ok(())
    }

    /// Grants (or converts) `from`'s lock to `mode` and tells it.
    fn grant_now(
        &mut self,
        cx: &mut Ctx,
        from: NodeId,
        resource: ResourceId,
        mode: LockMode,
        seq: u64,
    ) {
        let m = self.res.get_mut(&resource).expect("present");
        match m.granted.iter_mut().find(|g| g.node == from) {
            Some(g) => {
                g.mode = mode;
                g.seq = seq;
                g.bast_sent = None;
            }
            None => m.granted.push(Granted {
                node: from,
                mode,
                seq,
                since_ms: cx.now_ms,
                bast_sent: None,
            }),
        }
        self.grant_msg(cx, from, resource, mode, seq);
    }

    fn on_release(
        &mut self,
        from: NodeId,
        resource: ResourceId,
        to: Option<LockMode>,
        seq: u64,
        cx: &mut Ctx,
    ) -> Result<(), Reject> {
        let m = self.res.get_mut(&resource);
        let (m, gi) = m
            .and_then(|m| {
                m.granted
                    .iter()
                    .position(|g| g.node == from)
                    .map(|gi| (m, gi))
            })
            .ok_or(Reject::Unexpected(
                "release of a lock the master does not know",
            ))?;
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
                g.bast_sent = None;
            }
        }
        if gives_up_write(old, to) {
            let v = self.fresh_version(cx.epoch);
            self.res.get_mut(&resource).expect("present").version = v;
        }
        let version = self.res[&resource].version;
        cx.send(
            from,
            PeerBody::ReleaseAck {
                resource,
                version,
                seq,
            },
        );
        Ok(())
    }

    fn on_cancel(&mut self, from: NodeId, resource: ResourceId, seq: u64, cx: &mut Ctx) {
        let hit = |p: &Pending| p.node == from && p.seq == seq;
        let Some(m) = self.res.get_mut(&resource) else {
            self.remember_cancel(from, resource, seq);
            return;
        };
        let found = if let Some(i) = m.waiting.iter().position(hit) {
            m.waiting.remove(i).is_some()
        } else if let Some(i) = m.converting.iter().position(hit) {
            m.converting.remove(i).is_some()
        } else {
            false
        };
        // A granted or queued entry of the sender at least as new as the cancel means its
        // `Lock` was answered already (the network may deliver the cancel after the sender's
        // next `Lock`, found by the proptest's invariant): nothing to remember.
        let newer = m.granted.iter().any(|g| g.node == from && g.seq >= seq)
            || m.converting
                .iter()
                .chain(&m.waiting)
                .any(|p| p.node == from && p.seq >= seq);
        if found {
            deny_msg(cx, from, resource, ECANCELED, seq);
        } else if !newer {
            // Not arrived yet (or already answered by a deny): remember it for the `Lock`.
            self.remember_cancel(from, resource, seq);
        }
        // Otherwise already answered; a grant is on its way and will be cached, then given
        // up on a BAST.
    }

    fn remember_cancel(&mut self, from: NodeId, resource: ResourceId, seq: u64) {
        if self.early_cancels.len() >= EARLY_CANCELS_MAX {
            let oldest = *self.early_cancels.keys().next().expect("not empty");
            self.early_cancels.remove(&oldest);
        }
        self.early_cancels.insert((from, resource), seq);
    }

    /// Sends a BAST for a blocked request of `node` in `mode` to each blocker not yet told of
    /// a request at least as strong.
    fn send_basts(&mut self, resource: &ResourceId, node: NodeId, mode: LockMode, cx: &mut Ctx) {
        let m = self.res.get_mut(resource).expect("present");
        for g in m.granted.iter_mut() {
            if grant::blocks(g, node, mode) && !g.bast_sent.is_some_and(|b| covers(b, mode)) {
                g.bast_sent = Some(g.bast_sent.map_or(mode, |b| grant::sup(b, mode)));
                cx.send(
                    g.node,
                    PeerBody::Bast {
                        resource: *resource,
                        mode,
                    },
                );
            }
        }
    }

    /// The grant pass (`grant::master_scan`): every conversion nothing blocks, conversion
    /// deadlocks, then waiters (FIFO) while grantable; then BASTs to the holders blocking
    /// what is still queued; drops the entry when idle.
    fn process(&mut self, resource: &ResourceId, cx: &mut Ctx) {
        // Ends: every step but `Stop` pops an entry from the convert or the wait queue.
        loop {
            let Some(m) = self.res.get_mut(resource) else {
                return;
            };
            match grant::master_scan(&m.granted, &m.converting, &m.waiting) {
                MasterScan::GrantConvert(i) => {
                    let c = m.converting.remove(i).expect("in the queue");
                    self.grant_now(cx, c.node, *resource, c.mode, c.seq);
                }
                MasterScan::Deadlock(i) => {
                    let c = m.converting.remove(i).expect("in the queue");
                    deny_msg(cx, c.node, *resource, EDEADLK, c.seq);
                }
                MasterScan::GrantWaiter => {
                    let w = m.waiting.pop_front().expect("head");
                    self.grant_now(cx, w.node, *resource, w.mode, w.seq);
                }
                MasterScan::Stop => break,
            }
        }
        // Every queued conversion and the head waiter are blocked: tell their blockers.
        let m = &self.res[resource];
        let blocked: Vec<(NodeId, LockMode)> = m
            .converting
            .iter()
            .chain(m.waiting.front())
            .map(|p| (p.node, p.mode))
            .collect();
        for (node, mode) in blocked {
            self.send_basts(resource, node, mode, cx);
        }
        if self.res[resource].is_idle() {
            self.res.remove(resource);
        }
    }

    /// Recovery: `from` holds `resource` in `mode`. The caller checked that the table is
    /// being rebuilt.
    pub(crate) fn on_recover(
        &mut self,
        from: NodeId,
        resource: ResourceId,
        mode: LockMode,
        cx: &Ctx,
    ) -> Result<(), Reject> {
        if master_of(cx.members, &resource) != Some(cx.me) {
            return Err(Reject::Unexpected(
                "recover message for a resource this node does not master",
            ));
        }
        if let Some(m) = self.res.get(&resource) {
            if m.granted.iter().any(|g| g.node == from) {
                return Err(Reject::Unexpected("duplicate recover message"));
            }
            // Survivors hold pairwise compatible locks, so a conflicting claim can only come
            // from a stale core (e.g. a node that was cut off, fenced, and came back without
            // restarting). Refusing it keeps the granted queue compatible; the first claim
            // stands.
            if m.granted.iter().any(|g| !grant::compatible(g.mode, mode)) {
                return Err(Reject::Unexpected(
                    "recover message conflicting with a rebuilt grant",
                ));
            }
        } else {
            let v = self.fresh_version(cx.epoch);
            self.res.insert(resource, MasterRes::new(v));
        }
        let m = self.res.get_mut(&resource).expect("present");
        m.granted.push(Granted {
            node: from,
            mode,
            seq: 0,
            since_ms: cx.now_ms,
            bast_sent: None,
        });
        Ok(())
    }

    /// Checks every mastered resource, and that each is mastered here (`me` in `members`).
    pub(crate) fn check(&self, me: NodeId, members: NodeSet) -> Result<(), String> {
        for (r, m) in &self.res {
            m.check(r)?;
            if master_of(members, r) != Some(me) {
                return Err(format!("{r:?}: mastered here but its master is elsewhere"));
            }
        }
        // An early cancel waits for a `Lock` not seen yet: the sender's later messages about
        // the resource drop it, so no queue entry of the sender is as new as it.
        for ((node, r), c) in &self.early_cancels {
            let Some(m) = self.res.get(r) else { continue };
            let newer = m.granted.iter().any(|g| g.node == *node && g.seq >= *c)
                || m.converting
                    .iter()
                    .chain(&m.waiting)
                    .any(|p| p.node == *node && p.seq >= *c);
            if newer {
                return Err(format!(
                    "{r:?}: early cancel of n{node} seq {c} kept past a newer message"
                ));
            }
        }
        Ok(())
    }

    /// Queues of every resource mastered here, in resource order.
    pub(crate) fn dump(&self, me: NodeId) -> Vec<ResourceDump> {
        self.res.iter().map(|(r, m)| m.dump(*r, me)).collect()
    }

    /// Every node that appears in a queue.
    pub(crate) fn queue_nodes(&self) -> NodeSet {
        self.res
            .values()
            .flat_map(MasterRes::nodes)
            .fold(NodeSet::EMPTY, NodeSet::with)
    }
}

/// Tells `to` that its `Lock` with sequence `seq` is denied.
fn deny_msg(cx: &mut Ctx, to: NodeId, resource: ResourceId, errno: i32, seq: u64) {
    cx.send(
        to,
        PeerBody::Deny {
            resource,
            errno,
            seq,
        },
    );
}
