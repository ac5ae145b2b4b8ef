//! [`Core`]: routes events and messages between the node table (`node.rs`), the master table
//! (`master.rs`) and recovery (`recovery.rs`). The grant rule they share is in `grant.rs`.

use std::collections::VecDeque;

use crate::master::MasterTable;
use crate::node::{KernelAsk, NodeTable};
use crate::recovery::{fencer, quorate, Recovery};
use crate::*;

/// The lock core of one node. See the crate docs.
///
/// `Clone + Eq + Hash` so that the stateright model can keep cores in its states.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Core {
    pub(crate) cfg: Config,
    pub(crate) epoch: Epoch,
    pub(crate) members: NodeSet,
    /// Node layer: this node's locks, the kernel's holders and waiters.
    pub(crate) node: NodeTable,
    /// Master layer: the resources this node masters.
    pub(crate) master: MasterTable,
    /// Recovery layer: phase, fences, rebuild barrier, history.
    pub(crate) recovery: Recovery,
    /// Peer messages of a future epoch, held until its membership arrives.
    pub(crate) future: Vec<(NodeId, PeerMsg)>,
    /// Self-addressed messages, delivered before `handle` returns. Always empty in between.
    pub(crate) loopback: VecDeque<PeerBody>,
}

/// What a layer knows of the event being handled, and where its output goes: the actions of
/// this `handle` call, in order, and the loopback for messages to this node itself.
pub(crate) struct Ctx<'a> {
    /// This node.
    pub me: NodeId,
    /// The current epoch.
    pub epoch: Epoch,
    /// The current members.
    pub members: NodeSet,
    /// The time of the event.
    pub now_ms: u64,
    /// Self-addressed messages.
    loopback: &'a mut VecDeque<PeerBody>,
    /// The actions, in order.
    pub out: &'a mut Vec<Action>,
}

impl Ctx<'_> {
    /// Sends `body` to `to`; a message to this node is queued on the loopback instead.
    pub(crate) fn send(&mut self, to: NodeId, body: PeerBody) {
        if to == self.me {
            self.loopback.push_back(body);
        } else {
            self.out.push(Action::Send {
                to,
                msg: PeerMsg {
                    epoch: self.epoch,
                    body,
                },
            });
        }
    }

    /// Sends `body` to every other member.
    pub(crate) fn send_to_others(&mut self, body: PeerBody) {
        for to in self.members.without(self.me).iter() {
            self.send(to, body.clone());
        }
    }

    /// Sends `body` about `resource` to its master (self-addressed messages loop back).
    pub(crate) fn send_master(&mut self, resource: &ResourceId, body: PeerBody) {
        let master = master_of(self.members, resource).expect("lock traffic has members");
        self.send(master, body);
    }

    /// A message to the local kernel.
    pub(crate) fn kernel(&mut self, msg: KernelMsg) {
        self.out.push(Action::Kernel(msg));
    }

    /// `LOCK_DENY` for `req_id`.
    pub(crate) fn deny(&mut self, req_id: ReqId, resource: ResourceId, errno: i32) {
        self.kernel(KernelMsg::Deny {
            req_id,
            resource,
            errno,
        });
    }

    /// Disarms the timeout of `req_id`.
    pub(crate) fn cancel_timer(&mut self, req_id: ReqId) {
        self.out.push(Action::CancelTimer {
            id: TimerId::Request(req_id),
        });
    }
}

/// A [`Ctx`] for `$core` at `$now` writing to `$out` (a macro, so that the borrow of the
/// core's loopback stays disjoint from the borrow of the layer it is passed to).
macro_rules! ctx {
    ($core:ident, $now:expr, $out:expr) => {
        Ctx {
            me: $core.cfg.node,
            epoch: $core.epoch,
            members: $core.members,
            now_ms: $now,
            loopback: &mut $core.loopback,
            out: $out,
        }
    };
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
        Core {
            epoch: cfg.epoch,
            members: cfg.members,
            node: NodeTable {
                limits: cfg.limits,
                ..NodeTable::default()
            },
            master: MasterTable::default(),
            recovery: Recovery::new(phase),
            future: Vec::new(),
            loopback: VecDeque::new(),
            cfg,
        }
    }

    /// Feeds one event at time `now_ms` and appends the resulting actions to `out`, to be
    /// carried out in order. On `Err`, the event was ignored: nothing changed and nothing was
    /// appended. The core never panics on any event sequence (invariant checks aside).
    pub fn handle(&mut self, now_ms: u64, ev: Event, out: &mut Vec<Action>) -> Result<(), Reject> {
        debug_assert!(self.loopback.is_empty());
        let mark = out.len();
        let normal = self.recovery.phase == Phase::Normal;
        let r = match ev {
            Event::KernelRequest {
                req_id,
                resource,
                mode,
                flags,
                timeout_ms,
            } => {
                let ask = KernelAsk {
                    req_id,
                    resource,
                    mode,
                    flags,
                    timeout_ms,
                };
                let phase = self.recovery.phase;
                self.node
                    .kernel_request(ask, phase, &mut ctx!(self, now_ms, out))
            }
            Event::KernelRelease { req_id, resource } => self.node.kernel_release(
                req_id,
                Some(resource),
                normal,
                &mut ctx!(self, now_ms, out),
            ),
            Event::KernelCancel { req_id } => {
                self.node
                    .kernel_cancel(req_id, normal, &mut ctx!(self, now_ms, out))
            }
            Event::Peer { from, msg } => self.peer(now_ms, from, msg, out),
            Event::Membership { epoch, members } => self.membership(now_ms, epoch, members, out),
            Event::Timer {
                id: TimerId::Request(req_id),
            } => self
                .node
                .request_timeout(req_id, normal, &mut ctx!(self, now_ms, out)),
            Event::Timer {
                id: TimerId::ReplayRetry(node),
            } => self
                .recovery
                .replay_retry(node, &mut ctx!(self, now_ms, out)),
            Event::JournalReplayed { node } => {
                let r = self
                    .recovery
                    .journal_replayed(node, &mut ctx!(self, now_ms, out));
                r.map(|rebuild| self.rebuild_if(rebuild, now_ms, out))
            }
            Event::JournalReplayFailed { node } => self
                .recovery
                .journal_replay_failed(node, &mut ctx!(self, now_ms, out)),
            Event::FenceConfirmed { node } => {
                let r = self
                    .recovery
                    .fence_confirmed(node, &mut ctx!(self, now_ms, out));
                r.map(|rebuild| self.rebuild_if(rebuild, now_ms, out))
            }
            Event::CacheInvalDone { resource, errno } => {
                self.node
                    .inval_done(resource, errno, normal, &mut ctx!(self, now_ms, out))
            }
            Event::Leave => self.leave(now_ms, out),
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
        if self.node.local.len() + self.master.res.len() <= DEBUG_CHECK_ENTRIES_MAX {
            if let Err(e) = self.check_invariants() {
                panic!("lock core invariant broken on node {}: {e}", self.cfg.node);
            }
        }
        r
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
        if self.recovery.phase == Phase::Stopped {
            return Err(Reject::Unexpected(
                "this node is stopped (minority or not a member)",
            ));
        }
        self.dispatch(now_ms, from, msg.body, out)
    }

    /// Routes a peer message of the current epoch to the layer it is for.
    fn dispatch(
        &mut self,
        now_ms: u64,
        from: NodeId,
        body: PeerBody,
        out: &mut Vec<Action>,
    ) -> Result<(), Reject> {
        let phase = self.recovery.phase;
        match body {
            PeerBody::Lock { .. } | PeerBody::Release { .. } | PeerBody::Cancel { .. } => {
                if !self.recovery.master_ready {
                    return Err(Reject::Unexpected(
                        "lock traffic before this master is rebuilt",
                    ));
                }
                debug_assert!(phase != Phase::Stopped);
                self.master.msg(from, body, &mut ctx!(self, now_ms, out))
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
                if phase == Phase::Fencing
                    || (phase == Phase::Rebuilding && !matches!(body, PeerBody::Bast { .. }))
                {
                    return Err(Reject::Unexpected("node-layer message during recovery"));
                }
                let normal = phase == Phase::Normal;
                self.node.msg(body, normal, &mut ctx!(self, now_ms, out))
            }
            PeerBody::Recover { resource, mode } => {
                if self.recovery.master_ready {
                    return Err(Reject::Unexpected("recover message after rebuild"));
                }
                self.master
                    .on_recover(from, resource, mode, &ctx!(self, now_ms, out))?;
                self.recovery.count_recover(from);
                self.recovery.check_rebuilt(&mut ctx!(self, now_ms, out));
                Ok(())
            }
            PeerBody::RecoverDone { count } => {
                self.recovery.recover_done(from, count)?;
                self.recovery.check_rebuilt(&mut ctx!(self, now_ms, out));
                Ok(())
            }
            PeerBody::FenceAsk { node } => {
                let cluster = self.cfg.cluster;
                self.recovery
                    .fence_ask(from, node, cluster, &mut ctx!(self, now_ms, out))
            }
            PeerBody::Fenced { node } => {
                let r = self
                    .recovery
                    .fenced_announced(node, &mut ctx!(self, now_ms, out));
                r.map(|rebuild| self.rebuild_if(rebuild, now_ms, out))
            }
            PeerBody::Replayed { node } => {
                let r = self
                    .recovery
                    .replayed_announced(node, &mut ctx!(self, now_ms, out));
                r.map(|rebuild| self.rebuild_if(rebuild, now_ms, out))
            }
            PeerBody::Journals {
                known,
                replaying,
                waiting,
            } => {
                let cluster = self.cfg.cluster;
                let r = self.recovery.journals_report(
                    from,
                    (known, replaying, waiting),
                    cluster,
                    &mut ctx!(self, now_ms, out),
                );
                r.map(|rebuild| self.rebuild_if(rebuild, now_ms, out))
            }
            PeerBody::Leaving => {
                // Sent once, after the sender's kernel let go of everything; nothing of the
                // sender's changes until the membership that drops it.
                self.recovery.departed = self.recovery.departed.with(from);
                Ok(())
            }
            PeerBody::RebuildDone => {
                let resumed = self
                    .recovery
                    .rebuild_done(from, &mut ctx!(self, now_ms, out))?;
                if resumed {
                    self.node.pump_all(true, &mut ctx!(self, now_ms, out));
                }
                Ok(())
            }
        }
    }

    /// Starts the rebuild when the last fence or journal replay came in.
    fn rebuild_if(&mut self, rebuild: bool, now_ms: u64, out: &mut Vec<Action>) {
        if rebuild {
            let held = self.node.held();
            self.recovery
                .start_rebuild(held, &mut ctx!(self, now_ms, out));
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
        self.epoch = epoch;
        self.members = members;
        self.master.reset();
        self.node.void_in_flight();
        self.recovery
            .begin(lost, members, &mut ctx!(self, now_ms, out));
        if !members.contains(self.cfg.node) || !quorate(members, self.cfg.cluster) {
            self.recovery.phase = Phase::Stopped;
            self.recovery.known = false;
            self.node
                .deny_all_waiters(ENOLCK, &mut ctx!(self, now_ms, out));
            out.push(Action::SelfFence { epoch });
            return Ok(());
        }
        let cluster = self.cfg.cluster;
        let none_to_wait_for = self
            .recovery
            .start_fencing(cluster, &mut ctx!(self, now_ms, out));
        if none_to_wait_for {
            let held = self.node.held();
            self.recovery
                .start_rebuild(held, &mut ctx!(self, now_ms, out));
        }
        // Messages of this epoch that arrived early.
        let future = std::mem::take(&mut self.future);
        for (from, msg) in future {
            match msg.epoch.cmp(&self.epoch) {
                std::cmp::Ordering::Equal => {
                    let _ = self.peer(now_ms, from, msg, out);
                }
                std::cmp::Ordering::Greater => self.future.push((from, msg)),
                // An epoch this node skipped: void.
                std::cmp::Ordering::Less => {}
            }
        }
        Ok(())
    }

    /// `Event::Leave`: announce a clean leave to every other member and stop, if the kernel
    /// holds and waits for nothing.
    fn leave(&mut self, now_ms: u64, out: &mut Vec<Action>) -> Result<(), Reject> {
        if !self.node.reqs.is_empty() {
            return Err(Reject::Busy(self.node.reqs.len()));
        }
        let replays = self.replaying();
        if !replays.is_empty() {
            return Err(Reject::ReplayRunning(replays));
        }
        if self.recovery.phase == Phase::Stopped {
            return Err(Reject::Unexpected(
                "this node is stopped (minority or not a member)",
            ));
        }
        ctx!(self, now_ms, out).send_to_others(PeerBody::Leaving);
        self.recovery.phase = Phase::Stopped;
        self.recovery.known = false;
        Ok(())
    }

    /// Checks every internal invariant (granted modes pairwise compatible on each master,
    /// local holders compatible and covered by the node's lock, queue bounds, recovery sets,
    /// ...). The tests and the model call this after every step; `handle` calls it in debug
    /// builds.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.master.check(self.cfg.node, self.members)?;
        self.node.check()?;
        self.recovery
            .check(self.cfg.node, self.members, self.cfg.cluster)?;
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
        self.recovery.phase
    }
    /// Whether lock traffic is frozen (recovering or stopped).
    pub fn recovering(&self) -> bool {
        self.recovery.phase != Phase::Normal
    }
    /// Finished and running recoveries, oldest first (at most [`RECOVERY_HISTORY_MAX`]).
    pub fn recovery_history(&self) -> &[RecoveryRecord] {
        &self.recovery.history
    }
    /// Lost nodes whose fence is not confirmed yet; recovery waits for them.
    pub fn awaiting_fence(&self) -> NodeSet {
        self.recovery.unfenced
    }
    /// Lost nodes whose journal replay this node has not learnt of yet; recovery waits for
    /// them (DESIGN.md §5.5).
    /// Members whose journal waits too (a cold start's, or a node back before its replay
    /// was announced) are included.
    pub fn awaiting_replay(&self) -> NodeSet {
        self.recovery.unreplayed.union(self.recovery.member_logs)
    }
    /// Whether this node knows which journals may be dirty (it resumed in a quorate
    /// membership and has not stopped since); a fencer that does not waits for every
    /// member's report and, if no member knows either, replays every journal (first mounter).
    pub fn journals_known(&self) -> bool {
        self.recovery.known
    }
    /// Lost nodes whose journal replay this node's driver runs now ([`Action::ReplayJournal`]
    /// without a result yet) or will run again after a failure.
    pub fn replaying(&self) -> NodeSet {
        self.recovery.replaying.union(self.recovery.replay_retry)
    }
    /// As the fencer in recovery: members whose `Journals` report has not arrived; no
    /// journal replay starts before it does (a lost report stalls recovery until the next
    /// epoch, which `mxfsd`'s stall watchdog installs).
    pub fn awaiting_reports(&self) -> NodeSet {
        if self.fencer() != self.cfg.node || !self.recovering() || self.phase() == Phase::Stopped {
            return NodeSet::EMPTY;
        }
        self.members.minus(self.recovery.reported)
    }
    /// The member that runs the fence agents of this epoch: the lowest id.
    pub fn fencer(&self) -> NodeId {
        fencer(self.members, self.cfg.node)
    }
    /// The master of `resource` in the current membership.
    pub fn master_of(&self, resource: &ResourceId) -> Option<NodeId> {
        master_of(self.members, resource)
    }
    /// Queues of every resource this node masters, in resource order.
    pub fn dump_master(&self) -> Vec<ResourceDump> {
        self.master.dump(self.cfg.node)
    }
    /// Every node that appears in a queue (granted, converting or waiting) of a resource this
    /// node masters. Cheaper than [`Core::dump_master`] when only the set is needed.
    pub fn master_queue_nodes(&self) -> NodeSet {
        self.master.queue_nodes()
    }
    /// This node's own view of every resource it uses, in resource order.
    pub fn dump_local(&self) -> Vec<LocalDump> {
        self.node.dump(self.members)
    }
}

/// Largest table size for which debug builds run `check_invariants` after every event.
#[cfg(debug_assertions)]
const DEBUG_CHECK_ENTRIES_MAX: usize = 4096;

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
        | PeerBody::Fenced { .. }
        | PeerBody::Replayed { .. }
        | PeerBody::Journals { .. } => unreachable!("no resource"),
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
        assert!(matches!(
            out.last(),
            Some(Action::Kernel(KernelMsg::CacheInval { .. }))
        ));
        let done = Event::CacheInvalDone {
            resource: ResourceId::inode(1, 1),
            errno: 0,
        };
        core.handle(0, done, &mut out).unwrap();
        assert!(matches!(
            out.last(),
            Some(Action::Kernel(KernelMsg::Grant { .. }))
        ));
        core.check_invariants().unwrap();
        core
    }

    #[test]
    fn invariant_check_catches_incompatible_master_grants() {
        let mut core = core_with_lock();
        let m = core.master.res.values_mut().next().unwrap();
        m.granted.push(Granted {
            node: 1,
            mode: LockMode::Ex,
            seq: 9,
            since_ms: 0,
            bast_sent: None,
        });
        assert!(core
            .check_invariants()
            .unwrap_err()
            .contains("incompatible"));
    }

    #[test]
    fn invariant_check_catches_request_table_drift() {
        let mut core = core_with_lock();
        core.node.reqs.clear();
        assert!(core.check_invariants().is_err());
        let mut core = core_with_lock();
        core.node.local.values_mut().next().unwrap().held = None;
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
    fn invariant_check_catches_a_local_holder_not_covered() {
        let mut core = core_with_lock();
        assert_eq!(core.check_invariants(), Ok(()));
        let l = core.node.local.values_mut().next().unwrap();
        l.holders[0].1 = LockMode::Ex;
        core.node.reqs.values_mut().next().unwrap().granted = Some(LockMode::Ex);
        assert!(core
            .check_invariants()
            .unwrap_err()
            .contains("not covered by node lock"));
        // A holder or waiter whose request-table entry names another resource.
        let mut core = core_with_lock();
        core.node.reqs.values_mut().next().unwrap().resource = ResourceId::inode(1, 9);
        assert!(core
            .check_invariants()
            .unwrap_err()
            .contains("disagrees with the request table"));
        let mut core = core_with_lock();
        let l = core.node.local.values_mut().next().unwrap();
        l.waiters.push_back(crate::node::Waiter {
            req_id: 7,
            mode: LockMode::Ex,
            since_ms: 0,
            noqueue: false,
            convert: false,
            timer: false,
        });
        core.node.reqs.insert(
            7,
            crate::node::ReqState {
                resource: ResourceId::inode(1, 9),
                granted: None,
                waiting: true,
            },
        );
        assert!(core
            .check_invariants()
            .unwrap_err()
            .contains("waiter 7 disagrees"));
        // An invalidation pending while the version is known, or with no lock.
        let mut core = core_with_lock();
        let l = core.node.local.values_mut().next().unwrap();
        l.inval = l.version;
        assert!(core
            .check_invariants()
            .unwrap_err()
            .contains("invalidation pending"));
        let l = core.node.local.values_mut().next().unwrap();
        (l.version, l.held, l.holders) = (None, None, Vec::new());
        core.node.reqs.clear();
        assert!(core
            .check_invariants()
            .unwrap_err()
            .contains("invalidation pending"));
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
        let m = core.master.res.values_mut().next().unwrap();
        let g = m.granted[0].clone();
        m.granted.push(g);
        assert!(core
            .check_invariants()
            .unwrap_err()
            .contains("granted twice"));
        let mut core = core_with_lock();
        core.master
            .res
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
            .res
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
        let m = core.master.res.values_mut().next().unwrap();
        m.waiting.push_back(pending(1));
        assert_eq!(core.check_invariants(), Ok(()));
        let m = core.master.res.values_mut().next().unwrap();
        m.waiting.push_back(pending(1));
        assert!(core
            .check_invariants()
            .unwrap_err()
            .contains("queued twice"));
        let mut core = core_with_lock();
        core.master.res.values_mut().next().unwrap().granted.clear();
        assert!(core.check_invariants().unwrap_err().contains("idle"));
    }

    #[test]
    fn invariant_check_catches_one_sided_request_table_drift() {
        let mut core = core_with_lock();
        core.node.reqs.values_mut().next().unwrap().waiting = true;
        assert!(core.check_invariants().unwrap_err().contains("disagrees"));
    }

    #[test]
    fn invariant_check_catches_bad_departed_and_fenced_sets() {
        let fresh = || Core::new(Config::booted(0, 3));
        let mut core = fresh();
        core.recovery.departed = NodeSet::EMPTY.with(0);
        assert!(core.check_invariants().unwrap_err().contains("departed"));
        let mut core = fresh();
        core.members = NodeSet::first(2);
        core.recovery.departed = NodeSet::EMPTY.with(2);
        assert!(core.check_invariants().unwrap_err().contains("departed"));
        let mut core = fresh();
        core.recovery.fence_asked = NodeSet::EMPTY.with(1);
        assert!(core
            .check_invariants()
            .unwrap_err()
            .contains("being fenced"));
        let mut core = fresh();
        core.members = NodeSet::first(2);
        core.recovery.unfenced = NodeSet::EMPTY.with(2);
        core.recovery.fenced = NodeSet::EMPTY.with(2);
        assert!(core.check_invariants().unwrap_err().contains("both fenced"));
    }

    #[test]
    fn invariant_check_catches_bad_replay_sets() {
        // n2 lost and fenced, so every replay set may name it; members never.
        let lost = || {
            let mut core = Core::new(Config::booted(0, 3));
            core.members = NodeSet::first(2);
            core.recovery.fenced = NodeSet::EMPTY.with(2);
            core
        };
        let mut core = lost();
        core.recovery.phase = Phase::Replaying;
        core.recovery.unreplayed = NodeSet::EMPTY.with(2);
        core.recovery.replaying = NodeSet::EMPTY.with(2);
        core.recovery.master_ready = false;
        assert_eq!(core.check_invariants(), Ok(()));
        let mut core = lost();
        core.recovery.replayed = NodeSet::EMPTY.with(1);
        assert!(core.check_invariants().unwrap_err().contains("member"));
        let mut core = lost();
        core.recovery.fenced = NodeSet::EMPTY;
        core.recovery.unreplayed = NodeSet::EMPTY.with(2);
        assert!(core
            .check_invariants()
            .unwrap_err()
            .contains("neither fenced nor awaited"));
        let mut core = lost();
        core.recovery.fenced = NodeSet::EMPTY;
        core.recovery.replayed = NodeSet::EMPTY.with(2);
        assert!(core
            .check_invariants()
            .unwrap_err()
            .contains("replayed but not fenced"));
        let mut core = lost();
        core.recovery.replayed = NodeSet::EMPTY.with(2);
        core.recovery.unreplayed = NodeSet::EMPTY.with(2);
        assert!(core
            .check_invariants()
            .unwrap_err()
            .contains("both replayed and awaiting"));
        for (replaying, retry, replayed) in [(true, true, false), (true, false, true)] {
            let mut core = lost();
            let pick = |b: bool| {
                if b {
                    NodeSet::EMPTY.with(2)
                } else {
                    NodeSet::EMPTY
                }
            };
            core.recovery.replaying = pick(replaying);
            core.recovery.replay_retry = pick(retry);
            core.recovery.replayed = pick(replayed);
            assert!(core.check_invariants().unwrap_err().contains("twice"));
        }
        let mut core = lost();
        core.recovery.fenced = NodeSet::EMPTY;
        core.recovery.replay_retry = NodeSet::EMPTY.with(2);
        assert!(core.check_invariants().unwrap_err().contains("not fenced"));
        let mut core = lost();
        core.recovery.phase = Phase::Replaying;
        core.recovery.master_ready = false;
        core.recovery.fenced = NodeSet::EMPTY;
        core.recovery.unfenced = NodeSet::EMPTY.with(2);
        assert!(core
            .check_invariants()
            .unwrap_err()
            .contains("while a fence is awaited"));
        // The barrier: no rebuild and no grant before every lost node is replayed.
        for phase in [Phase::Normal, Phase::Rebuilding] {
            let mut core = lost();
            core.members = NodeSet::first(2);
            core.recovery.phase = phase;
            core.recovery.unreplayed = NodeSet::EMPTY.with(2);
            assert!(core
                .check_invariants()
                .unwrap_err()
                .contains("before every lost node is fenced and replayed"));
        }
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
