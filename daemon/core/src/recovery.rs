//! Recovery layer: the phase, fencing (one fence agent per lost node, run by the fencer), the
//! journal replay of every fenced node (run by the fencer too), the rebuild barrier
//! (`Recover`, `RecoverDone`, `RebuildDone`), clean leaves and the history `mxfsctl` shows.
//! The engine calls it on membership changes and recovery messages, and asks the node and
//! master tables for what it needs.

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
    /// Removed members that needed a fence and whose journal replay this core has not learnt
    /// of (DESIGN.md §5.5); recovery does not rebuild, so grants nothing, until it is empty.
    pub unreplayed: NodeSet,
    /// Non-members whose journal is known replayed (here or announced by `Replayed`), until
    /// they are members again.
    pub replayed: NodeSet,
    /// Nodes whose replay this core asked its driver for ([`Action::ReplayJournal`]) and
    /// whose result has not come back. Kept across epochs: the replay runs on.
    pub replaying: NodeSet,
    /// Nodes whose replay failed here, with [`TimerId::ReplayRetry`] armed.
    pub replay_retry: NodeSet,
    /// This core knows which journals may be dirty: it resumed in a quorate membership and
    /// has not stopped since (a core built in `Normal` counts). A fresh core learns it from
    /// the members' `Journals` reports, or, as the fencer of a cold start, replays every
    /// journal (README, *First mounter*).
    pub known: bool,
    /// Members whose journal must be replayed before this core resumes: every member of a
    /// cold start (on its fencer), and a node that became a member again before its replay
    /// was announced. They cannot mount meanwhile (a mount needs a lock), so the fencer
    /// replays their logs without a fence.
    pub member_logs: NodeSet,
    /// As the fencer: members whose `Journals` report is in for this epoch (itself included).
    /// No replay starts before every member's is.
    pub reported: NodeSet,
    /// As the fencer: a member reported `known` in this epoch, so this is no cold start.
    pub heard_known: bool,
    /// As the fencer: journals another member reported replaying; that member finishes them
    /// (the replayer of a journal stays fixed until it announces or is fenced).
    pub elsewhere: NodeSet,
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
            unreplayed: NodeSet::EMPTY,
            replayed: NodeSet::EMPTY,
            replaying: NodeSet::EMPTY,
            replay_retry: NodeSet::EMPTY,
            known: phase == Phase::Normal,
            member_logs: NodeSet::EMPTY,
            reported: NodeSet::EMPTY,
            heard_known: false,
            elsewhere: NodeSet::EMPTY,
            history: Vec::new(),
        }
    }

    /// A membership of a new epoch: `lost` left it. Freezes, records the recovery, tells the
    /// kernel, and returns the nodes still to fence (lost now or earlier, not fenced yet;
    /// nodes that announced a clean leave need no fence and no journal replay). A node that is
    /// a member again needs no fence, but its journal is still replayed if it was awaited
    /// (see the README's *Journal replay*).
    pub(crate) fn begin(&mut self, lost: NodeSet, members: NodeSet, cx: &mut Ctx) -> NodeSet {
        // A member whose journal still waits (it never mounted since) that is lost is
        // fenced and replayed like any lost node, clean leave or not.
        let dirty_lost = self.member_logs.minus(members);
        let left = lost.minus(lost.minus(self.departed)).minus(dirty_lost);
        let must_fence = lost.minus(left).union(dirty_lost);
        // A node that is a member again before its journal replay was announced keeps its
        // replay: its log is still dirty (README, *Journal replay*).
        self.member_logs = both(self.member_logs.union(self.unreplayed), members);
        let keep_replays = self.member_logs;
        self.departed = self.departed.minus(lost);
        self.fenced = self.fenced.minus(members);
        self.fence_asked = self.fence_asked.minus(members);
        self.unfenced = self
            .unfenced
            .union(must_fence)
            .minus(members)
            .minus(self.fenced);
        self.replayed = self.replayed.minus(members);
        self.replaying = self.replaying.minus(members.minus(keep_replays));
        self.replay_retry = self.replay_retry.minus(members.minus(keep_replays));
        self.reported = NodeSet::EMPTY.with(cx.me);
        self.heard_known = false;
        self.elsewhere = NodeSet::EMPTY;
        self.unreplayed = self
            .unreplayed
            .union(must_fence)
            .minus(members)
            .minus(self.replayed);
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
            fenced_ms: None,
            replayed_ms: None,
            replay_failures: 0,
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
    /// ignores a fence already running) and replays the journal of every fenced node not
    /// known replayed; the others ask the fencer, which answers with `Fenced` and `Replayed`
    /// when each is done. True if nothing is left to fence or replay.
    /// Every other member reports its journals to the fencer first (`Journals`).
    pub(crate) fn start_fencing(&mut self, cluster: NodeSet, cx: &mut Ctx) -> bool {
        self.phase = Phase::Fencing;
        let fencer = fencer(cx.members, cx.me);
        if fencer != cx.me {
            cx.send(
                fencer,
                PeerBody::Journals {
                    known: self.known,
                    replaying: self.replaying.union(self.replay_retry),
                    waiting: self.member_logs,
                },
            );
        } else {
            // Alone: the fence loop below fences what a cold start adds.
            self.cold_start_if_due(cluster, cx);
        }
        for node in self.unfenced.union(self.unreplayed).iter() {
            if fencer != cx.me {
                cx.send(fencer, PeerBody::FenceAsk { node });
            } else if self.unfenced.contains(node) {
                cx.out.push(Action::Fence { node });
            }
        }
        self.replay_due(cx);
        self.barrier_passed(cx)
    }

    /// True (and the phase and history updated) if every lost node is fenced and replayed,
    /// so the rebuild may start.
    fn barrier_passed(&mut self, cx: &mut Ctx) -> bool {
        if !matches!(self.phase, Phase::Fencing | Phase::Replaying) || !self.unfenced.is_empty() {
            return false;
        }
        // A fencer that does not know the journals waits for every report: the cluster may
        // be starting cold.
        if !self.known && fencer(cx.members, cx.me) == cx.me && self.reported != cx.members {
            return false;
        }
        if let Some(h) = self.history.last_mut() {
            h.fenced_ms.get_or_insert(cx.now_ms);
        }
        if !self.unreplayed.union(self.member_logs).is_empty() {
            self.phase = Phase::Replaying;
            return false;
        }
        if let Some(h) = self.history.last_mut() {
            h.replayed_ms.get_or_insert(cx.now_ms);
        }
        true
    }

    /// As the fencer of a quorate membership: asks the driver to replay the journal of every
    /// fenced node not known replayed, unless its replay runs here or waits for a retry.
    /// Only once every node it knows lost is fenced: a lost earlier replayer may still be
    /// replaying the same journal until its own fence, and two replays of one log must never
    /// overlap.
    /// Nor before every member reported (`Journals`): a journal another member replays stays
    /// its own (`elsewhere`).
    fn replay_due(&mut self, cx: &mut Ctx) {
        if fencer(cx.members, cx.me) != cx.me
            || self.phase == Phase::Stopped
            || !self.unfenced.union(self.fence_asked).is_empty()
            || self.reported != cx.members
        {
            return;
        }
        let due = self
            .fenced
            .minus(self.replayed)
            .union(self.member_logs)
            .minus(self.replaying)
            .minus(self.replay_retry)
            .minus(self.elsewhere);
        for node in due.iter() {
            self.replaying = self.replaying.with(node);
            cx.out.push(Action::ReplayJournal {
                node,
                epoch: cx.epoch,
            });
        }
    }

    /// `Event::JournalReplayed`: the replay this core asked for is done. Tells every other
    /// member. True if recovery may now rebuild.
    pub(crate) fn journal_replayed(&mut self, node: NodeId, cx: &mut Ctx) -> Result<bool, Reject> {
        if !self.replaying.contains(node) {
            return Err(Reject::Stale(
                "journal replay result for a node not being replayed",
            ));
        }
        self.replaying = self.replaying.without(node);
        if cx.members.contains(node) {
            // A member's log (cold start, or a node back before its replay was announced).
            cx.send_to_others(PeerBody::Replayed { node });
            self.member_logs = self.member_logs.without(node);
            return Ok(self.barrier_passed(cx));
        }
        if !self.fenced.contains(node) {
            // Started while `node` was a member whose log waited; lost since, it is replayed
            // again after its fence (a clean log replays as a no-op).
            return Ok(false);
        }
        cx.send_to_others(PeerBody::Replayed { node });
        Ok(self.learn_replayed(node, cx))
    }

    /// `Event::JournalReplayFailed`: recovery stays frozen; the replay runs again when
    /// [`TimerId::ReplayRetry`] fires.
    pub(crate) fn journal_replay_failed(
        &mut self,
        node: NodeId,
        cx: &mut Ctx,
    ) -> Result<(), Reject> {
        if !self.replaying.contains(node) {
            return Err(Reject::Stale(
                "journal replay result for a node not being replayed",
            ));
        }
        self.replaying = self.replaying.without(node);
        if !cx.members.contains(node) && !self.fenced.contains(node) {
            // As above: replayed after its fence.
            return Ok(());
        }
        self.replay_retry = self.replay_retry.with(node);
        if let Some(h) = self.history.last_mut() {
            h.replay_failures = h.replay_failures.saturating_add(1);
        }
        cx.out.push(Action::SetTimer {
            id: TimerId::ReplayRetry(node),
            at_ms: cx.now_ms.saturating_add(REPLAY_RETRY_DELAY_MS),
        });
        Ok(())
    }

    /// `TimerId::ReplayRetry(node)` fired: replay again. The replayer of a journal stays
    /// fixed (this node reported it to any later fencer as its own), so it retries even if it
    /// is not the fencer any more.
    pub(crate) fn replay_retry(&mut self, node: NodeId, cx: &mut Ctx) -> Result<(), Reject> {
        if !self.replay_retry.contains(node) {
            return Err(Reject::Stale("replay retry timer for no failed replay"));
        }
        self.replay_retry = self.replay_retry.without(node);
        if self.phase != Phase::Stopped {
            self.replaying = self.replaying.with(node);
            cx.out.push(Action::ReplayJournal {
                node,
                epoch: cx.epoch,
            });
        }
        Ok(())
    }

    /// `PeerBody::Replayed`. True if recovery may now rebuild.
    pub(crate) fn replayed_announced(
        &mut self,
        node: NodeId,
        cx: &mut Ctx,
    ) -> Result<bool, Reject> {
        if cx.members.contains(node) {
            if !self.member_logs.contains(node) {
                return Err(Reject::Stale("journal replay announced for a member"));
            }
            self.member_logs = self.member_logs.without(node);
            self.elsewhere = self.elsewhere.without(node);
            return Ok(self.barrier_passed(cx));
        }
        Ok(self.learn_replayed(node, cx))
    }

    /// `PeerBody::Journals` from `from` (this node is the fencer). True if recovery may now
    /// rebuild.
    pub(crate) fn journals_report(
        &mut self,
        from: NodeId,
        report: (bool, NodeSet, NodeSet),
        cluster: NodeSet,
        cx: &mut Ctx,
    ) -> Result<bool, Reject> {
        let (known, replaying, waiting) = report;
        if fencer(cx.members, cx.me) != cx.me {
            return Err(Reject::Unexpected(
                "journal report to a node not the fencer",
            ));
        }
        if self.reported.contains(from) {
            return Err(Reject::Unexpected("duplicate Journals report"));
        }
        if !replaying.union(waiting).is_subset(cluster) || !waiting.is_subset(cx.members) {
            return Err(Reject::Unexpected("journal report names a node outside"));
        }
        self.reported = self.reported.with(from);
        self.heard_known |= known;
        // Journals it replays stay its own; a member log it waits for, this node replays.
        self.elsewhere = self.elsewhere.union(replaying.minus(self.replayed));
        self.member_logs = self.member_logs.union(waiting.minus(replaying));
        for node in self.cold_start_if_due(cluster, cx).iter() {
            cx.out.push(Action::Fence { node });
        }
        self.replay_due(cx);
        Ok(self.barrier_passed(cx))
    }

    /// As the fencer, once every member reported: if neither this node nor any member knows
    /// the journals, the cluster starts cold (every member is fresh, none has resumed), so
    /// every journal may be dirty. Every non-member is fenced and its journal replayed, and
    /// every member's journal is replayed (no member can mount before this recovery ends),
    /// before anything is granted (GFS2's first-mounter rule; DESIGN.md §5.5). Returns the
    /// nodes it added to the fence set, for the caller to fence.
    fn cold_start_if_due(&mut self, cluster: NodeSet, cx: &mut Ctx) -> NodeSet {
        if self.known || self.heard_known || self.reported != cx.members {
            return NodeSet::EMPTY;
        }
        let outside = cluster.minus(cx.members);
        let to_fence = outside.minus(self.fenced).minus(self.unfenced);
        self.unfenced = self.unfenced.union(to_fence);
        self.unreplayed = self.unreplayed.union(outside.minus(self.replayed));
        self.member_logs = self.member_logs.union(cx.members);
        to_fence
    }

    /// `node`'s journal is replayed (here or announced), so it is fenced too. True if that
    /// passed the recovery barrier.
    fn learn_replayed(&mut self, node: NodeId, cx: &mut Ctx) -> bool {
        // Known replayed first, so that `learn_fenced` does not ask for its replay.
        self.replayed = self.replayed.with(node);
        self.elsewhere = self.elsewhere.without(node);
        let mut passed = self.learn_fenced(node, cx);
        if self.unreplayed.contains(node) {
            self.unreplayed = self.unreplayed.without(node);
            passed = self.barrier_passed(cx);
        }
        passed
    }

    /// `Event::FenceConfirmed`: this node's fence agent fenced `node`. As the fencer, this
    /// node replays its journal next, and every other member learns both from `Replayed` (a
    /// replayed node is fenced); a node that stopped being the fencer meanwhile announces the
    /// fence alone (`Fenced`). True if recovery may now rebuild.
    pub(crate) fn fence_confirmed(&mut self, node: NodeId, cx: &mut Ctx) -> Result<bool, Reject> {
        if !self.unfenced.union(self.fence_asked).contains(node) {
            return Err(Reject::Stale(
                "fence confirmation for a node not being fenced",
            ));
        }
        self.fence_asked = self.fence_asked.without(node);
        if fencer(cx.members, cx.me) != cx.me || self.phase == Phase::Stopped {
            cx.send_to_others(PeerBody::Fenced { node });
        }
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
        if self.replayed.contains(node) {
            cx.send(from, PeerBody::Replayed { node });
        } else if self.fenced.contains(node) {
            cx.send(from, PeerBody::Fenced { node });
            // Otherwise its replay runs (or is started now, or waits for its retry);
            // `Replayed` goes to every member when it is done.
            self.replay_due(cx);
        } else if !self.unfenced.union(self.fence_asked).contains(node) {
            self.fence_asked = self.fence_asked.with(node);
            cx.out.push(Action::Fence { node });
        }
        // Otherwise its fence agent runs; `Fenced` goes to every member when it is done, and
        // the replay follows.
        Ok(())
    }

    /// `PeerBody::Fenced`. True if recovery may now rebuild.
    pub(crate) fn fenced_announced(&mut self, node: NodeId, cx: &mut Ctx) -> Result<bool, Reject> {
        if cx.members.contains(node) {
            return Err(Reject::Stale("fence announced for a member"));
        }
        Ok(self.learn_fenced(node, cx))
    }

    /// `node` is fenced (confirmed here or announced by a peer). As the fencer, starts its
    /// journal replay. True if that passed the recovery barrier (nothing left to fence or
    /// replay).
    fn learn_fenced(&mut self, node: NodeId, cx: &mut Ctx) -> bool {
        self.fenced = self.fenced.with(node);
        let awaited = self.unfenced.contains(node);
        if awaited {
            self.unfenced = self.unfenced.without(node);
            cx.kernel(KernelMsg::NodeStatus {
                node,
                state: NodeState::Down,
            });
        }
        self.replay_due(cx);
        awaited && self.barrier_passed(cx)
    }

    /// Every lost node is fenced and replayed: tell each new master what this node holds
    /// (`held`), then announce how many such messages each member should expect.
    pub(crate) fn start_rebuild(&mut self, held: Vec<(ResourceId, LockMode)>, cx: &mut Ctx) {
        debug_assert!(matches!(self.phase, Phase::Fencing | Phase::Replaying));
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
        self.known = true;
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
        if !self.unreplayed.union(self.replayed).is_subset(outside) {
            return Err("a member is marked unreplayed or replayed".into());
        }
        if !self.member_logs.is_subset(members) {
            return Err("a non-member's journal is awaited as a member's".into());
        }
        if !self.unreplayed.is_subset(self.unfenced.union(self.fenced)) {
            return Err(
                "a node awaits its journal replay but is neither fenced nor awaited".into(),
            );
        }
        if !self.replayed.is_subset(self.fenced) {
            return Err("a node is replayed but not fenced".into());
        }
        if !self.unreplayed.minus(self.replayed).eq(&self.unreplayed) {
            return Err("a node is both replayed and awaiting its replay".into());
        }
        // A replay runs on a fenced node, a member whose log waits, or (started while it was
        // such a member) a lost node awaiting its fence.
        let replayable = self.fenced.union(self.member_logs).union(self.unfenced);
        if !self.replaying.minus(self.replay_retry).eq(&self.replaying)
            || !self
                .replaying
                .union(self.replay_retry)
                .is_subset(replayable)
            || !self.replaying.minus(self.replayed).eq(&self.replaying)
        {
            return Err("a replay runs or waits for a node not fenced, or twice".into());
        }
        if !self.elsewhere.minus(self.replaying).eq(&self.elsewhere) {
            return Err("replaying a journal another member reported replaying".into());
        }
        if (self.known && self.phase == Phase::Stopped)
            || (self.phase == Phase::Normal && !self.known)
        {
            return Err("knows the journals while stopped, or grants without knowing them".into());
        }
        if self.phase == Phase::Replaying && !self.unfenced.is_empty() {
            return Err("replaying journals while a fence is awaited".into());
        }
        if self.phase == Phase::Normal && !(members.contains(me) && quorate(members, cluster)) {
            return Err("granting without being a member of a quorate membership".into());
        }
        if self.phase == Phase::Normal && !self.master_ready {
            return Err("normal phase with master tables not rebuilt".into());
        }
        if matches!(self.phase, Phase::Normal | Phase::Rebuilding)
            && !self
                .unfenced
                .union(self.unreplayed)
                .union(self.member_logs)
                .is_empty()
        {
            return Err(
                "rebuilding or granting before every lost node is fenced and replayed".into(),
            );
        }
        Ok(())
    }
}

/// The nodes in both sets.
fn both(a: NodeSet, b: NodeSet) -> NodeSet {
    a.minus(a.minus(b))
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
