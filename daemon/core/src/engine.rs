//! [`Core`]: the event loop body. Dispatches events to the node, master and recovery layers.

use std::collections::BTreeMap;

use crate::master::MasterRes;
use crate::node::{LocalRes, ReqState};
use crate::*;

/// The lock core of one node. See the crate docs.
///
/// `Clone + Eq + Hash` so that the stateright model can keep cores in its states.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Core {
    pub(crate) cfg: Config,
    pub(crate) epoch: Epoch,
    pub(crate) members: NodeSet,
    pub(crate) phase: Phase,
    /// Node layer: this node's view of each resource it uses.
    pub(crate) local: BTreeMap<ResourceId, LocalRes>,
    /// Node layer: every outstanding kernel request.
    pub(crate) reqs: BTreeMap<ReqId, ReqState>,
    /// Master layer: resources this node masters.
    pub(crate) master: BTreeMap<ResourceId, MasterRes>,
    /// Next sequence number for a node -> master message.
    pub(crate) next_seq: u64,
    pub(crate) recovery: crate::node::Recovery,
    pub(crate) history: Vec<RecoveryRecord>,
    pub(crate) future: Vec<(NodeId, PeerMsg)>,
    /// Next counter of [`Version`]s this master issues in this epoch.
    pub(crate) master_gen: u64,
    /// Master layer: `Cancel`s that arrived before the `Lock` they withdraw (the network may
    /// reorder), by sender and resource: the `Lock` with that sequence number is denied on
    /// arrival. A stale entry (its `Lock` was already answered) is dropped by the sender's next
    /// message about the resource, whose sequence number is higher.
    pub(crate) early_cancels: BTreeMap<(NodeId, ResourceId), u64>,
    /// Self-addressed messages, delivered before `handle` returns. Always empty in between.
    pub(crate) loopback: std::collections::VecDeque<PeerBody>,
    /// Members that announced a clean leave ([`PeerBody::Leaving`]): the membership that
    /// drops them does not fence them.
    pub(crate) departed: NodeSet,
    /// Non-members known to be fenced (confirmed here or announced by `Fenced`), until they
    /// are members again.
    pub(crate) fenced: NodeSet,
    /// As the fencer: nodes other members asked to fence (`FenceAsk`) whose fence agent runs.
    pub(crate) fence_asked: NodeSet,
}

impl Core {
    /// A core for `cfg`. Panics only on a programming error in `cfg` (node id out of range or
    /// not in `cluster`, members outside `cluster`); the daemon validates its TOML first.
    pub fn new(cfg: Config) -> Core {
        assert!(
            (cfg.node as usize) < NODES_MAX,
            "node id {} out of range",
            cfg.node
        );
        assert!(
            cfg.cluster.contains(cfg.node),
            "node {} not in the cluster",
            cfg.node
        );
        assert!(
            cfg.members.is_subset(cfg.cluster),
            "initial members outside the cluster"
        );
        let phase = if cfg.members.contains(cfg.node) && quorate(cfg.members, cfg.cluster) {
            Phase::Normal
        } else {
            Phase::Stopped
        };
        let recovery = crate::node::Recovery {
            master_ready: phase == Phase::Normal,
            ..Default::default()
        };
        Core {
            epoch: cfg.epoch,
            members: cfg.members,
            phase,
            local: BTreeMap::new(),
            reqs: BTreeMap::new(),
            master: BTreeMap::new(),
            next_seq: 1,
            recovery,
            history: Vec::new(),
            future: Vec::new(),
            master_gen: 0,
            early_cancels: BTreeMap::new(),
            loopback: Default::default(),
            departed: NodeSet::EMPTY,
            fenced: NodeSet::EMPTY,
            fence_asked: NodeSet::EMPTY,
            cfg,
        }
    }

    /// Feeds one event at time `now_ms` and appends the resulting actions to `out`, to be
    /// carried out in order. On `Err`, the event was ignored: nothing changed and nothing was
    /// appended. The core never panics on any event sequence (invariant checks aside).
    pub fn handle(&mut self, now_ms: u64, ev: Event, out: &mut Vec<Action>) -> Result<(), Reject> {
        debug_assert!(self.loopback.is_empty());
        let mark = out.len();
        let r = match ev {
            Event::KernelRequest {
                req_id,
                resource,
                mode,
                flags,
                timeout_ms,
            } => self.kernel_request(now_ms, req_id, resource, mode, flags, timeout_ms, out),
            Event::KernelRelease { req_id, resource } => {
                self.kernel_release(req_id, Some(resource), out)
            }
            Event::KernelCancel { req_id } => self.kernel_cancel(req_id, out),
            Event::Peer { from, msg } => self.peer(now_ms, from, msg, out),
            Event::Membership { epoch, members } => self.membership(now_ms, epoch, members, out),
            Event::Timer {
                id: TimerId::Request(req_id),
            } => self.request_timeout(req_id, out),
            Event::FenceConfirmed { node } => self.fence_confirmed(now_ms, node, out),
            Event::Leave => self.leave(out),
        };
        if r.is_ok() {
            self.drain_loopback(now_ms, out);
        }
        debug_assert!(
            r.is_ok() || out.len() == mark,
            "a rejected event emitted actions"
        );
        // The full check walks every table; past a few thousand entries it would make debug
        // builds quadratic, so big tables rely on the tests and the model instead.
        #[cfg(debug_assertions)]
        if self.local.len() + self.master.len() <= DEBUG_CHECK_ENTRIES_MAX {
            if let Err(e) = self.check_invariants() {
                panic!("lock core invariant broken on node {}: {e}", self.cfg.node);
            }
        }
        r
    }

    /// Sends `body` to every other member.
    fn send_to_others(&mut self, body: PeerBody, out: &mut Vec<Action>) {
        for to in self.members.without(self.cfg.node).iter() {
            self.send(to, body.clone(), out);
        }
    }

    /// Sends `body` to `to`; a message to this node is queued on the loopback instead.
    pub(crate) fn send(&mut self, to: NodeId, body: PeerBody, out: &mut Vec<Action>) {
        if to == self.cfg.node {
            self.loopback.push_back(body);
        } else {
            out.push(Action::Send {
                to,
                msg: PeerMsg {
                    epoch: self.epoch,
                    body,
                },
            });
        }
    }

    fn drain_loopback(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        // Ends: every self-message answers or starts at most one exchange per resource, and
        // the stop-and-wait discipline bounds those (the model and proptest check that runs
        // settle).
        while let Some(body) = self.loopback.pop_front() {
            // A rejected self-message is a local protocol slip; dropping it is the only option.
            let _ = self.dispatch(now_ms, self.cfg.node, body, out);
        }
    }

    /// `Event::Peer`: epoch and membership checks, then dispatch.
    fn peer(
        &mut self,
        now_ms: u64,
        from: NodeId,
        msg: PeerMsg,
        out: &mut Vec<Action>,
    ) -> Result<(), Reject> {
        if from == self.cfg.node || !self.cfg.cluster.contains(from) {
            return Err(Reject::NotMember(from));
        }
        if msg.epoch < self.epoch {
            return Err(Reject::StaleEpoch {
                got: msg.epoch,
                have: self.epoch,
            });
        }
        if msg.epoch > self.epoch {
            if self.future.len() >= FUTURE_MSGS_MAX {
                return Err(Reject::FutureBufferFull);
            }
            self.future.push((from, msg));
            return Ok(());
        }
        if !self.members.contains(from) {
            return Err(Reject::NotMember(from));
        }
        if self.phase == Phase::Stopped {
            return Err(Reject::Unexpected(
                "this node is stopped (minority or not a member)",
            ));
        }
        self.dispatch(now_ms, from, msg.body, out)
    }

    fn dispatch(
        &mut self,
        now_ms: u64,
        from: NodeId,
        body: PeerBody,
        out: &mut Vec<Action>,
    ) -> Result<(), Reject> {
        match body {
            PeerBody::Lock { .. } | PeerBody::Release { .. } | PeerBody::Cancel { .. } => {
                self.master_msg(now_ms, from, body, out)
            }
            PeerBody::Grant { .. }
            | PeerBody::Deny { .. }
            | PeerBody::ReleaseAck { .. }
            | PeerBody::Bast { .. } => {
                if master_of(self.members, body_resource(&body)) != Some(from) {
                    return Err(Reject::Unexpected(
                        "node-layer message from a node that is not the master",
                    ));
                }
                // A master that finished rebuilding may BAST a node that is still waiting for
                // the last `RebuildDone`s; keep it (the pump acts once the node resumes).
                // Grants and acks cannot come before this node's own lock traffic resumes.
                if self.phase == Phase::Fencing
                    || (self.phase == Phase::Rebuilding && !matches!(body, PeerBody::Bast { .. }))
                {
                    return Err(Reject::Unexpected("node-layer message during recovery"));
                }
                self.node_msg(body, out)
            }
            PeerBody::Recover { resource, mode } => {
                self.on_recover(now_ms, from, resource, mode)?;
                self.check_rebuilt(out);
                Ok(())
            }
            PeerBody::RecoverDone { count } => {
                if self.recovery.expected.contains_key(&from) {
                    return Err(Reject::Unexpected("duplicate RecoverDone"));
                }
                self.recovery.expected.insert(from, count);
                self.check_rebuilt(out);
                Ok(())
            }
            PeerBody::FenceAsk { node } => self.fence_ask(from, node, out),
            PeerBody::Fenced { node } => {
                if self.members.contains(node) {
                    return Err(Reject::Stale("fence announced for a member"));
                }
                self.learn_fenced(node, out);
                Ok(())
            }
            PeerBody::Leaving => {
                // Sent once, after the sender's kernel let go of everything; nothing of the
                // sender's changes until the membership that drops it.
                self.departed = self.departed.with(from);
                Ok(())
            }
            PeerBody::RebuildDone => {
                if self.recovery.rebuilt.contains(from) {
                    return Err(Reject::Unexpected("duplicate RebuildDone"));
                }
                self.recovery.rebuilt = self.recovery.rebuilt.with(from);
                self.check_resumed(now_ms, out);
                Ok(())
            }
        }
    }

    /// `Event::Membership`: freeze, fence the lost, and start rebuilding (or stop).
    fn membership(
        &mut self,
        now_ms: u64,
        epoch: Epoch,
        members: NodeSet,
        out: &mut Vec<Action>,
    ) -> Result<(), Reject> {
        if epoch <= self.epoch {
            return Err(Reject::BadMembership("epoch not above the current one"));
        }
        if !members.is_subset(self.cfg.cluster) {
            return Err(Reject::BadMembership(
                "member outside the configured cluster",
            ));
        }
        let lost = self.members.minus(members);
        // A node that left cleanly holds nothing through its kernel and has stopped: it need
        // not be fenced. Every other lost node must be.
        let left = lost.minus(lost.minus(self.departed));
        let must_fence = lost.minus(left);
        self.departed = self.departed.minus(lost);
        self.epoch = epoch;
        self.members = members;
        self.master.clear();
        self.master_gen = 0;
        self.early_cancels.clear();
        self.fenced = self.fenced.minus(members);
        self.fence_asked = self.fence_asked.minus(members);
        let unfenced = self
            .recovery
            .unfenced
            .union(must_fence)
            .minus(members)
            .minus(self.fenced);
        self.recovery = crate::node::Recovery {
            unfenced,
            ..Default::default()
        };
        for l in self.local.values_mut() {
            // Whatever was in flight belongs to the old epoch and is void; the new masters
            // learn what this node holds from its `Recover` messages.
            l.outstanding = None;
            l.bast = false;
        }
        if self.history.len() >= RECOVERY_HISTORY_MAX {
            self.history.remove(0);
        }
        self.history.push(RecoveryRecord {
            epoch,
            lost,
            started_ms: now_ms,
            finished_ms: None,
        });
        out.push(Action::Kernel(KernelMsg::RecoveryStart { epoch }));
        for node in lost.iter() {
            let state = if left.contains(node) {
                NodeState::Down
            } else {
                NodeState::Suspect
            };
            out.push(Action::Kernel(KernelMsg::NodeStatus { node, state }));
        }
        if !members.contains(self.cfg.node) || !quorate(members, self.cfg.cluster) {
            self.phase = Phase::Stopped;
            self.deny_all_waiters(ENOLCK, out);
            out.push(Action::SelfFence { epoch });
            return Ok(());
        }
        self.phase = Phase::Fencing;
        // One fence agent per lost node: the fencer runs it (again, for a node lost earlier
        // whose fence is still unconfirmed: the driver ignores a fence already running), the
        // others ask the fencer, which answers with `Fenced` when it is done.
        let fencer = self.fencer();
        for node in unfenced.iter() {
            if fencer == self.cfg.node {
                out.push(Action::Fence { node });
            } else {
                self.send(fencer, PeerBody::FenceAsk { node }, out);
            }
        }
        if self.recovery.unfenced.is_empty() {
            self.start_rebuild(out);
        }
        // Messages of this epoch that arrived early.
        let future = std::mem::take(&mut self.future);
        for (from, msg) in future {
            if msg.epoch == self.epoch {
                let _ = self.peer(now_ms, from, msg, out);
            } else if msg.epoch > self.epoch {
                self.future.push((from, msg));
            }
        }
        Ok(())
    }

    fn deny_all_waiters(&mut self, errno: i32, out: &mut Vec<Action>) {
        for (resource, l) in self.local.iter_mut() {
            for w in l.waiters.drain(..) {
                if w.timer {
                    out.push(Action::CancelTimer {
                        id: TimerId::Request(w.req_id),
                    });
                }
                Self::kdeny(out, w.req_id, *resource, errno);
                crate::node::stop_waiting(&mut self.reqs, w.req_id);
            }
        }
    }

    /// `Event::Leave`: announce a clean leave to every other member and stop, if the kernel
    /// holds and waits for nothing.
    fn leave(&mut self, out: &mut Vec<Action>) -> Result<(), Reject> {
        if !self.reqs.is_empty() {
            return Err(Reject::Busy(self.reqs.len()));
        }
        if self.phase == Phase::Stopped {
            return Err(Reject::Unexpected(
                "this node is stopped (minority or not a member)",
            ));
        }
        self.send_to_others(PeerBody::Leaving, out);
        self.phase = Phase::Stopped;
        Ok(())
    }

    /// Lost nodes whose fence is not confirmed yet; recovery waits for them.
    pub fn awaiting_fence(&self) -> NodeSet {
        self.recovery.unfenced
    }

    /// The member that runs the fence agents of this epoch: the lowest id.
    pub fn fencer(&self) -> NodeId {
        self.members.iter().next().unwrap_or(self.cfg.node)
    }

    /// `Event::FenceConfirmed`: this node's fence agent fenced `node`; every other member
    /// learns it from `Fenced`.
    fn fence_confirmed(
        &mut self,
        _now_ms: u64,
        node: NodeId,
        out: &mut Vec<Action>,
    ) -> Result<(), Reject> {
        if !self
            .recovery
            .unfenced
            .union(self.fence_asked)
            .contains(node)
        {
            return Err(Reject::Stale(
                "fence confirmation for a node not being fenced",
            ));
        }
        self.fence_asked = self.fence_asked.without(node);
        self.send_to_others(PeerBody::Fenced { node }, out);
        self.learn_fenced(node, out);
        Ok(())
    }

    /// `PeerBody::FenceAsk` (this node is the fencer).
    fn fence_ask(
        &mut self,
        from: NodeId,
        node: NodeId,
        out: &mut Vec<Action>,
    ) -> Result<(), Reject> {
        if self.members.contains(node) || !self.cfg.cluster.contains(node) {
            return Err(Reject::Stale("fence asked for a member"));
        }
        if self.fenced.contains(node) {
            self.send(from, PeerBody::Fenced { node }, out);
        } else if !self
            .recovery
            .unfenced
            .union(self.fence_asked)
            .contains(node)
        {
            self.fence_asked = self.fence_asked.with(node);
            out.push(Action::Fence { node });
        }
        // Otherwise its fence agent runs; `Fenced` goes to every member when it is done.
        Ok(())
    }

    /// `node` is fenced (confirmed here or announced by a peer).
    fn learn_fenced(&mut self, node: NodeId, out: &mut Vec<Action>) {
        self.fenced = self.fenced.with(node);
        if !self.recovery.unfenced.contains(node) {
            return;
        }
        self.recovery.unfenced = self.recovery.unfenced.without(node);
        out.push(Action::Kernel(KernelMsg::NodeStatus {
            node,
            state: NodeState::Down,
        }));
        if self.phase == Phase::Fencing && self.recovery.unfenced.is_empty() {
            self.start_rebuild(out);
        }
    }

    /// Every lost node is fenced: tell each new master what this node holds, then announce
    /// how many such messages each member should expect.
    fn start_rebuild(&mut self, out: &mut Vec<Action>) {
        debug_assert_eq!(self.phase, Phase::Fencing);
        self.phase = Phase::Rebuilding;
        let mut counts = [0u32; NODES_MAX];
        let held: Vec<(ResourceId, LockMode)> = self
            .local
            .iter()
            .filter_map(|(r, l)| l.held.map(|m| (*r, m)))
            .collect();
        for (resource, mode) in held {
            let master = master_of(self.members, &resource).expect("members include this node");
            counts[master as usize] += 1;
            self.send(master, PeerBody::Recover { resource, mode }, out);
        }
        for node in self.members.iter() {
            self.send(
                node,
                PeerBody::RecoverDone {
                    count: counts[node as usize],
                },
                out,
            );
        }
    }

    /// Master side of the barrier: every member's `Recover` messages are in.
    fn check_rebuilt(&mut self, out: &mut Vec<Action>) {
        let rc = &self.recovery;
        // This node's own `RecoverDone` (sent after its fences) is among the expected ones.
        if rc.master_ready {
            return;
        }
        let complete = self.members.iter().all(|n| {
            rc.expected
                .get(&n)
                .is_some_and(|e| *e == rc.received.get(&n).copied().unwrap_or(0))
        });
        if !complete {
            return;
        }
        self.recovery.master_ready = true;
        for node in self.members.iter() {
            self.send(node, PeerBody::RebuildDone, out);
        }
    }

    /// Every master is rebuilt: resume granting.
    fn check_resumed(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        if self.phase != Phase::Rebuilding || self.recovery.rebuilt != self.members {
            return;
        }
        self.phase = Phase::Normal;
        if let Some(h) = self.history.last_mut() {
            h.finished_ms = Some(now_ms);
        }
        out.push(Action::Kernel(KernelMsg::RecoveryDone {
            epoch: self.epoch,
        }));
        let resources: Vec<ResourceId> = self.local.keys().copied().collect();
        for r in resources {
            self.pump(&r, out);
        }
    }

    /// Checks every internal invariant (granted modes pairwise compatible on each master,
    /// local holders compatible and covered by the node's lock, queue bounds, ...). The tests
    /// and the model call this after every step; `handle` calls it in debug builds.
    pub fn check_invariants(&self) -> Result<(), String> {
        for (r, m) in &self.master {
            m.check(r)?;
            if master_of(self.members, r) != Some(self.cfg.node) {
                return Err(format!("{r:?}: mastered here but its master is elsewhere"));
            }
        }
        let mut waiting = 0;
        let mut granted = 0;
        for (r, l) in &self.local {
            l.check(r, &self.reqs)?;
            waiting += l.waiters.len();
            granted += l.holders.len();
        }
        let (w, g) = self.reqs.values().fold((0, 0), |(w, g), st| {
            (
                w + usize::from(st.waiting),
                g + usize::from(st.granted.is_some()),
            )
        });
        if w != waiting || g != granted {
            return Err(format!("request table ({w} waiting, {g} granted) disagrees with queues ({waiting}, {granted})"));
        }
        if !self.departed.is_subset(self.members) || self.departed.contains(self.cfg.node) {
            return Err("a departed node is not another member".into());
        }
        let outside = self.cfg.cluster.minus(self.members);
        if !self.fenced.union(self.fence_asked).is_subset(outside) {
            return Err("a member is marked fenced or being fenced".into());
        }
        if !self
            .recovery
            .unfenced
            .minus(self.fenced)
            .eq(&self.recovery.unfenced)
        {
            return Err("a node is both fenced and awaiting its fence".into());
        }
        if self.phase == Phase::Normal
            && !(self.members.contains(self.cfg.node) && quorate(self.members, self.cfg.cluster))
        {
            return Err("granting without being a member of a quorate membership".into());
        }
        if self.phase == Phase::Normal && !self.recovery.master_ready {
            return Err("normal phase with master tables not rebuilt".into());
        }
        if !self.loopback.is_empty() {
            return Err("loopback not drained".into());
        }
        Ok(())
    }

    // ----- introspection -----

    /// This node's id.
    pub fn node(&self) -> NodeId {
        self.cfg.node
    }
    /// Current membership epoch.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }
    /// Current live members.
    pub fn members(&self) -> NodeSet {
        self.members
    }
    /// Recovery phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }
    /// Whether lock traffic is frozen (recovering or stopped).
    pub fn recovering(&self) -> bool {
        self.phase != Phase::Normal
    }
    /// Finished and running recoveries, oldest first (at most [`RECOVERY_HISTORY_MAX`]).
    pub fn recovery_history(&self) -> &[RecoveryRecord] {
        &self.history
    }
    /// The master of `resource` in the current membership.
    pub fn master_of(&self, resource: &ResourceId) -> Option<NodeId> {
        master_of(self.members, resource)
    }
    /// Queues of every resource this node masters, in resource order.
    pub fn dump_master(&self) -> Vec<ResourceDump> {
        self.master
            .iter()
            .map(|(r, m)| m.dump(*r, self.cfg.node))
            .collect()
    }
    /// Every node that appears in a queue (granted, converting or waiting) of a resource this
    /// node masters. Cheaper than [`Core::dump_master`] when only the set is needed.
    pub fn master_queue_nodes(&self) -> NodeSet {
        let mut set = NodeSet::EMPTY;
        for m in self.master.values() {
            for n in m
                .granted
                .iter()
                .map(|g| g.node)
                .chain(m.converting.iter().chain(&m.waiting).map(|p| p.node))
            {
                set = set.with(n);
            }
        }
        set
    }

    /// This node's own view of every resource it uses, in resource order.
    pub fn dump_local(&self) -> Vec<LocalDump> {
        self.local
            .iter()
            .map(|(r, l)| l.dump(*r, self.master_of(r)))
            .collect()
    }
}

/// Largest table size for which debug builds run `check_invariants` after every event.
#[cfg(debug_assertions)]
const DEBUG_CHECK_ENTRIES_MAX: usize = 4096;

/// Whether `members` is a strict majority of `cluster` (members outside `cluster` do not count).
/// The one quorum rule: the core grants only under it, and `mxfsd` reports it.
pub fn quorate(members: NodeSet, cluster: NodeSet) -> bool {
    let live = members.minus(members.minus(cluster)).len();
    2 * live > cluster.len()
}

/// The resource a node-layer message is about.
fn body_resource(body: &PeerBody) -> &ResourceId {
    match body {
        PeerBody::Lock { resource, .. }
        | PeerBody::Release { resource, .. }
        | PeerBody::Cancel { resource, .. }
        | PeerBody::Grant { resource, .. }
        | PeerBody::Deny { resource, .. }
        | PeerBody::ReleaseAck { resource, .. }
        | PeerBody::Bast { resource, .. }
        | PeerBody::Recover { resource, .. } => resource,
        PeerBody::RecoverDone { .. }
        | PeerBody::RebuildDone
        | PeerBody::Leaving
        | PeerBody::FenceAsk { .. }
        | PeerBody::Fenced { .. } => unreachable!("no resource"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master::Granted;

    fn core_with_lock() -> Core {
        let mut core = Core::new(Config::booted(0, 1));
        let mut out = Vec::new();
        let ev = Event::KernelRequest {
            req_id: 1,
            resource: ResourceId::inode(1, 1),
            mode: LockMode::Pr,
            flags: LockFlags::empty(),
            timeout_ms: 0,
        };
        core.handle(0, ev, &mut out).unwrap();
        core.check_invariants().unwrap();
        core
    }

    #[test]
    fn invariant_check_catches_incompatible_master_grants() {
        let mut core = core_with_lock();
        let m = core.master.values_mut().next().unwrap();
        m.granted.push(Granted {
            node: 1,
            mode: LockMode::Ex,
            seq: 9,
            since_ms: 0,
            bast_sent: false,
        });
        assert!(core
            .check_invariants()
            .unwrap_err()
            .contains("incompatible"));
    }

    #[test]
    fn invariant_check_catches_request_table_drift() {
        let mut core = core_with_lock();
        core.reqs.clear();
        assert!(core.check_invariants().is_err());
        let mut core = core_with_lock();
        core.local.values_mut().next().unwrap().held = None;
        assert!(core.check_invariants().unwrap_err().contains("not covered"));
    }

    #[test]
    fn invariant_check_catches_granting_without_quorum_or_rebuild() {
        let mut core = core_with_lock();
        core.cfg.cluster = NodeSet::first(3);
        assert!(core.check_invariants().unwrap_err().contains("quorate"));
        let mut core = core_with_lock();
        core.recovery.master_ready = false;
        assert!(core.check_invariants().unwrap_err().contains("rebuilt"));
    }

    #[test]
    fn invariant_check_catches_broken_master_queues() {
        use crate::master::Pending;
        let pending = |node| Pending {
            node,
            mode: LockMode::Ex,
            seq: 5,
            since_ms: 0,
        };
        let mut core = core_with_lock();
        let m = core.master.values_mut().next().unwrap();
        let g = m.granted[0].clone();
        m.granted.push(g);
        assert!(core
            .check_invariants()
            .unwrap_err()
            .contains("granted twice"));
        let mut core = core_with_lock();
        core.master
            .values_mut()
            .next()
            .unwrap()
            .converting
            .push_back(pending(1));
        assert!(core
            .check_invariants()
            .unwrap_err()
            .contains("holds nothing"));
        let mut core = core_with_lock();
        core.master
            .values_mut()
            .next()
            .unwrap()
            .waiting
            .push_back(pending(0));
        assert!(core
            .check_invariants()
            .unwrap_err()
            .contains("waits while holding"));
        let mut core = core_with_lock();
        let m = core.master.values_mut().next().unwrap();
        for n in 0..WAITERS_PER_RESOURCE_MAX as u32 {
            m.waiting.push_back(pending(n + 100));
        }
        assert_eq!(
            core.check_invariants(),
            Ok(()),
            "exactly at the limit is fine"
        );
        let m = core.master.values_mut().next().unwrap();
        m.converting.push_back(pending(0));
        assert!(core
            .check_invariants()
            .unwrap_err()
            .contains("WAITERS_PER_RESOURCE_MAX"));
        let mut core = core_with_lock();
        core.master.values_mut().next().unwrap().granted.clear();
        assert!(core.check_invariants().unwrap_err().contains("idle"));
    }

    #[test]
    fn invariant_check_catches_one_sided_request_table_drift() {
        let mut core = core_with_lock();
        core.reqs.values_mut().next().unwrap().waiting = true;
        assert!(core.check_invariants().unwrap_err().contains("disagrees"));
    }

    #[test]
    fn invariant_check_catches_bad_departed_and_fenced_sets() {
        let fresh = || Core::new(Config::booted(0, 3));
        let mut core = fresh();
        core.departed = NodeSet::EMPTY.with(0);
        assert!(core.check_invariants().unwrap_err().contains("departed"));
        let mut core = fresh();
        core.members = NodeSet::first(2);
        core.departed = NodeSet::EMPTY.with(2);
        assert!(core.check_invariants().unwrap_err().contains("departed"));
        let mut core = fresh();
        core.fence_asked = NodeSet::EMPTY.with(1);
        assert!(core
            .check_invariants()
            .unwrap_err()
            .contains("being fenced"));
        let mut core = fresh();
        core.members = NodeSet::first(2);
        core.recovery.unfenced = NodeSet::EMPTY.with(2);
        core.fenced = NodeSet::EMPTY.with(2);
        assert!(core.check_invariants().unwrap_err().contains("both fenced"));
    }

    #[test]
    fn quorum_is_a_strict_majority() {
        let four = NodeSet::first(4);
        assert!(!quorate(NodeSet::first(2), four));
        assert!(quorate(NodeSet::first(3), four));
        let five = NodeSet::first(5);
        assert!(quorate(NodeSet::first(3), five));
        assert!(!quorate(NodeSet::first(2), five));
        assert!(quorate(NodeSet::first(1), NodeSet::first(1)));
        // Members outside the configured cluster do not count.
        assert!(!quorate(
            NodeSet::first(2).union(NodeSet(0b1100_0000)),
            four
        ));
    }

    #[test]
    fn introspection_answers() {
        let core = core_with_lock();
        assert_eq!(core.node(), 0);
        let r = ResourceId::inode(1, 1);
        assert_eq!(core.master_of(&r), Some(0));
        assert_eq!(core.master_queue_nodes(), NodeSet::EMPTY.with(0));
        assert_eq!(core.dump_master()[0].granted[0].mode, LockMode::Pr);
        assert_eq!(core.dump_local()[0].holders, vec![(1, LockMode::Pr)]);
        let other = Core::new(Config::booted(2, 3));
        assert_eq!(other.node(), 2);
        assert_eq!(other.master_of(&r), master_of(NodeSet::first(3), &r));
    }
}
