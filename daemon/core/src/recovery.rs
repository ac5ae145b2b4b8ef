//! Recovery layer: the phase, fencing (one fence agent per lost node, run by the fencer), the
//! rebuild barrier (`Recover`, `RecoverDone`, `RebuildDone`), clean leaves and the history
//! `mxfsctl` shows. The engine calls it on membership changes and recovery messages, and
//! asks the node and master tables for what it needs.

use std::collections::BTreeMap;

use crate::engine::Ctx;
use crate::*;

/// Recovery state of one core.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Recovery {
    /// Where this core stands.
    pub phase: Phase,
    /// Removed members whose fence is not yet confirmed.
    pub unfenced: NodeSet,
    /// `RecoverDone` counts announced by each member in this epoch.
    pub expected: BTreeMap<NodeId, u32>,
    /// `Recover` messages received from each member in this epoch.
    pub received: BTreeMap<NodeId, u32>,
    /// Members whose `RebuildDone` arrived in this epoch.
    pub rebuilt: NodeSet,
    /// This node sent its `RebuildDone`s (its master tables are complete).
    pub master_ready: bool,
    /// Members that announced a clean leave ([`PeerBody::Leaving`]): the membership that
    /// drops them does not fence them.
    pub departed: NodeSet,
    /// Non-members known to be fenced (confirmed here or announced by `Fenced`), until they
    /// are members again.
    pub fenced: NodeSet,
    /// As the fencer: nodes other members asked to fence (`FenceAsk`) whose fence agent runs.
    pub fence_asked: NodeSet,
    /// Finished and running recoveries, oldest first (at most [`RECOVERY_HISTORY_MAX`]).
    pub history: Vec<RecoveryRecord>,
}

impl Recovery {
    /// The state of a core that starts in `phase`.
    pub(crate) fn new(phase: Phase) -> Recovery {
        Recovery {
            phase,
            unfenced: NodeSet::EMPTY,
            expected: BTreeMap::new(),
            received: BTreeMap::new(),
            rebuilt: NodeSet::EMPTY,
            master_ready: phase == Phase::Normal,
            departed: NodeSet::EMPTY,
            fenced: NodeSet::EMPTY,
            fence_asked: NodeSet::EMPTY,
            history: Vec::new(),
        }
    }

    /// A membership of a new epoch: `lost` left it. Freezes, records the recovery, tells the
    /// kernel, and returns the nodes still to fence (lost now or earlier, not fenced yet;
    /// nodes that announced a clean leave need no fence).
    pub(crate) fn begin(&mut self, lost: NodeSet, members: NodeSet, cx: &mut Ctx) -> NodeSet {
        let left = lost.minus(lost.minus(self.departed));
        let must_fence = lost.minus(left);
        self.departed = self.departed.minus(lost);
        self.fenced = self.fenced.minus(members);
        self.fence_asked = self.fence_asked.minus(members);
        self.unfenced = self
            .unfenced
            .union(must_fence)
            .minus(members)
            .minus(self.fenced);
        self.expected.clear();
        self.received.clear();
        self.rebuilt = NodeSet::EMPTY;
        self.master_ready = false;
        if self.history.len() >= RECOVERY_HISTORY_MAX {
            self.history.remove(0);
        }
        self.history.push(RecoveryRecord {
            epoch: cx.epoch,
            lost,
            started_ms: cx.now_ms,
            finished_ms: None,
        });
        cx.kernel(KernelMsg::RecoveryStart { epoch: cx.epoch });
        for node in lost.iter() {
            let state = if left.contains(node) {
                NodeState::Down
            } else {
                NodeState::Suspect
            };
            cx.kernel(KernelMsg::NodeStatus { node, state });
        }
        self.unfenced
    }

    /// Starts fencing in a quorate membership: one fence agent per lost node. The fencer runs
    /// it (again, for a node lost earlier whose fence is still unconfirmed: the driver
    /// ignores a fence already running), the others ask the fencer, which answers with
    /// `Fenced` when it is done. True if nothing is left to fence.
    pub(crate) fn start_fencing(&mut self, cx: &mut Ctx) -> bool {
        self.phase = Phase::Fencing;
        let fencer = fencer(cx.members, cx.me);
        for node in self.unfenced.iter() {
            if fencer == cx.me {
                cx.out.push(Action::Fence { node });
            } else {
                cx.send(fencer, PeerBody::FenceAsk { node });
            }
        }
        self.unfenced.is_empty()
    }

    /// `Event::FenceConfirmed`: this node's fence agent fenced `node`; every other member
    /// learns it from `Fenced`. True if recovery may now rebuild.
    pub(crate) fn fence_confirmed(&mut self, node: NodeId, cx: &mut Ctx) -> Result<bool, Reject> {
        if !self.unfenced.union(self.fence_asked).contains(node) {
            return Err(Reject::Stale(
                "fence confirmation for a node not being fenced",
            ));
        }
        self.fence_asked = self.fence_asked.without(node);
        cx.send_to_others(PeerBody::Fenced { node });
        Ok(self.learn_fenced(node, cx))
    }

    /// `PeerBody::FenceAsk` (this node is the fencer).
    pub(crate) fn fence_ask(
        &mut self,
        from: NodeId,
        node: NodeId,
        cluster: NodeSet,
        cx: &mut Ctx,
    ) -> Result<(), Reject> {
        if cx.members.contains(node) || !cluster.contains(node) {
            return Err(Reject::Stale("fence asked for a member"));
        }
        if self.fenced.contains(node) {
            cx.send(from, PeerBody::Fenced { node });
        } else if !self.unfenced.union(self.fence_asked).contains(node) {
            self.fence_asked = self.fence_asked.with(node);
            cx.out.push(Action::Fence { node });
        }
        // Otherwise its fence agent runs; `Fenced` goes to every member when it is done.
        Ok(())
    }

    /// `PeerBody::Fenced`. True if recovery may now rebuild.
    pub(crate) fn fenced_announced(&mut self, node: NodeId, cx: &mut Ctx) -> Result<bool, Reject> {
        if cx.members.contains(node) {
            return Err(Reject::Stale("fence announced for a member"));
        }
        Ok(self.learn_fenced(node, cx))
    }

    /// `node` is fenced (confirmed here or announced by a peer). True if that was the last
    /// fence this recovery waited for.
    fn learn_fenced(&mut self, node: NodeId, cx: &mut Ctx) -> bool {
        self.fenced = self.fenced.with(node);
        if !self.unfenced.contains(node) {
            return false;
        }
        self.unfenced = self.unfenced.without(node);
        cx.kernel(KernelMsg::NodeStatus {
            node,
            state: NodeState::Down,
        });
        self.phase == Phase::Fencing && self.unfenced.is_empty()
    }

    /// Every lost node is fenced: tell each new master what this node holds (`held`), then
    /// announce how many such messages each member should expect.
    pub(crate) fn start_rebuild(&mut self, held: Vec<(ResourceId, LockMode)>, cx: &mut Ctx) {
        debug_assert_eq!(self.phase, Phase::Fencing);
        self.phase = Phase::Rebuilding;
        let mut counts = [0u32; NODES_MAX];
        for (resource, mode) in held {
            let master = master_of(cx.members, &resource).expect("members include this node");
            counts[master as usize] += 1;
            cx.send(master, PeerBody::Recover { resource, mode });
        }
        for node in cx.members.iter() {
            cx.send(
                node,
                PeerBody::RecoverDone {
                    count: counts[node as usize],
                },
            );
        }
    }

    /// A `Recover` from `from` was accepted by the master table.
    pub(crate) fn count_recover(&mut self, from: NodeId) {
        *self.received.entry(from).or_default() += 1;
    }

    /// `PeerBody::RecoverDone` from `from`.
    pub(crate) fn recover_done(&mut self, from: NodeId, count: u32) -> Result<(), Reject> {
        if self.expected.contains_key(&from) {
            return Err(Reject::Unexpected("duplicate RecoverDone"));
        }
        self.expected.insert(from, count);
        Ok(())
    }

    /// Master side of the barrier: once every member's `Recover` messages are in (this node's
    /// own `RecoverDone`, sent after its fences, is among them), send `RebuildDone` to all.
    pub(crate) fn check_rebuilt(&mut self, cx: &mut Ctx) {
        if self.master_ready {
            return;
        }
        let complete = cx.members.iter().all(|n| {
            self.expected
                .get(&n)
                .is_some_and(|e| *e == self.received.get(&n).copied().unwrap_or(0))
        });
        if !complete {
            return;
        }
        self.master_ready = true;
        for node in cx.members.iter() {
            cx.send(node, PeerBody::RebuildDone);
        }
    }

    /// `PeerBody::RebuildDone` from `from`. True if every master is rebuilt and this node
    /// resumed granting (`RECOVERY_DONE` sent); the caller then serves its waiters.
    pub(crate) fn rebuild_done(&mut self, from: NodeId, cx: &mut Ctx) -> Result<bool, Reject> {
        if self.rebuilt.contains(from) {
            return Err(Reject::Unexpected("duplicate RebuildDone"));
        }
        self.rebuilt = self.rebuilt.with(from);
        if self.phase != Phase::Rebuilding || self.rebuilt != cx.members {
            return Ok(false);
        }
        self.phase = Phase::Normal;
        if let Some(h) = self.history.last_mut() {
            h.finished_ms = Some(cx.now_ms);
        }
        cx.kernel(KernelMsg::RecoveryDone { epoch: cx.epoch });
        Ok(true)
    }

    /// Checks the recovery invariants of a core with node `me`, `members` and `cluster`.
    pub(crate) fn check(
        &self,
        me: NodeId,
        members: NodeSet,
        cluster: NodeSet,
    ) -> Result<(), String> {
        if !self.departed.is_subset(members) || self.departed.contains(me) {
            return Err("a departed node is not another member".into());
        }
        let outside = cluster.minus(members);
        if !self.fenced.union(self.fence_asked).is_subset(outside) {
            return Err("a member is marked fenced or being fenced".into());
        }
        if !self.unfenced.minus(self.fenced).eq(&self.unfenced) {
            return Err("a node is both fenced and awaiting its fence".into());
        }
        if self.phase == Phase::Normal && !(members.contains(me) && quorate(members, cluster)) {
            return Err("granting without being a member of a quorate membership".into());
        }
        if self.phase == Phase::Normal && !self.master_ready {
            return Err("normal phase with master tables not rebuilt".into());
        }
        Ok(())
    }
}

/// The member that runs the fence agents of an epoch: the lowest id (`me` if no members).
pub(crate) fn fencer(members: NodeSet, me: NodeId) -> NodeId {
    members.iter().next().unwrap_or(me)
}

/// Whether `members` is a strict majority of `cluster` (members outside `cluster` do not count).
/// The one quorum rule: the core grants only under it, and `mxfsd` reports it.
pub fn quorate(members: NodeSet, cluster: NodeSet) -> bool {
    let live = members.minus(members.minus(cluster)).len();
    2 * live > cluster.len()
}
