//! A deterministic in-memory cluster of cores for tests, traces and benchmarks: a FIFO
//! network queue, a kernel log per node, fences confirmed on demand and a readable trace.
//! It does no I/O and has no clock of its own (time advances only through [`Cluster::advance`]).

use std::collections::VecDeque;
use std::fmt::Write;

use crate::*;

/// N cores wired together.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// The cores; `None` once crashed.
    pub cores: Vec<Option<Core>>,
    /// Messages in flight: `(from, to, msg)`.
    pub net: VecDeque<(NodeId, NodeId, PeerMsg)>,
    /// Kernel messages emitted, per node, in order.
    pub kernel: Vec<Vec<KernelMsg>>,
    /// Every kernel message of every node, in the order emitted.
    pub kernel_log: Vec<(NodeId, KernelMsg)>,
    /// Fence requests not yet confirmed: `(by, target)`.
    pub fences: Vec<(NodeId, NodeId)>,
    /// Journal replays asked for and not yet finished: `(by, target)`.
    pub replays: Vec<(NodeId, NodeId)>,
    /// `settle` leaves replays alone (a test finishes or fails them with
    /// [`Cluster::finish_replay`]).
    pub hold_replays: bool,
    /// Replays that `settle` fails before it lets one succeed.
    pub replay_failures: u32,
    /// Armed timers: `(node, id, at_ms)`.
    pub timers: Vec<(NodeId, TimerId, u64)>,
    /// Current time.
    pub now_ms: u64,
    /// Human-readable log of everything that happened, when `tracing` is on.
    pub trace: String,
    /// Record `trace`.
    pub tracing: bool,
    /// Self-fence actions seen: `(node, epoch)`.
    pub self_fenced: Vec<(NodeId, Epoch)>,
    /// What each node's kernel answers to a `CACHE_INVAL` (0: done; a negative errno: it
    /// refuses). The answer is fed right after the batch that asked for it.
    pub inval_errno: Vec<i32>,
}

impl Cluster {
    /// `n` nodes booted together at epoch 1.
    pub fn new(n: u32) -> Cluster {
        Cluster {
            cores: (0..n)
                .map(|i| Some(Core::new(Config::booted(i, n))))
                .collect(),
            net: VecDeque::new(),
            kernel: vec![Vec::new(); n as usize],
            kernel_log: Vec::new(),
            fences: Vec::new(),
            replays: Vec::new(),
            hold_replays: false,
            replay_failures: 0,
            timers: Vec::new(),
            now_ms: 0,
            trace: String::new(),
            tracing: false,
            self_fenced: Vec::new(),
            inval_errno: vec![0; n as usize],
        }
    }

    /// `n` nodes freshly started (no membership, journals unknown), of which only those in
    /// `up` run; give them their first membership with [`Cluster::install`].
    pub fn fresh(n: u32, up: NodeSet) -> Cluster {
        let mut c = Cluster::new(n);
        for i in 0..n {
            c.cores[i as usize] = up.contains(i).then(|| Core::new(Config::fresh(i, n)));
        }
        c
    }

    /// Starts `node` again as a fresh process (after a crash); it joins at the next
    /// [`Cluster::install`].
    pub fn restart(&mut self, node: NodeId) {
        self.log(format_args!("n{node} RESTARTS"));
        let n = self.cores.len() as u32;
        self.cores[node as usize] = Some(Core::new(Config::fresh(node, n)));
    }

    /// Gives every running node the membership of every running node at `epoch`.
    pub fn install(&mut self, epoch: Epoch) {
        let members = self.live();
        for n in members.iter() {
            let _ = self.event(n, Event::Membership { epoch, members });
        }
    }

    /// The core of `node` (panics if crashed).
    pub fn core(&self, node: NodeId) -> &Core {
        self.cores[node as usize].as_ref().expect("node is up")
    }

    fn log(&mut self, line: std::fmt::Arguments<'_>) {
        if self.tracing {
            let _ = writeln!(self.trace, "{line}");
        }
    }

    /// Feeds `ev` to `node` and routes the actions.
    pub fn event(&mut self, node: NodeId, ev: Event) -> Result<(), Reject> {
        let mut out = Vec::new();
        if self.tracing {
            let line = describe_event(&ev);
            self.log(format_args!("n{node} <- {line}"));
        }
        let now = self.now_ms;
        let core = self.cores[node as usize].as_mut().expect("node is up");
        let r = core.handle(now, ev, &mut out);
        if let Err(e) = &r {
            self.log(format_args!("n{node}    rejected: {e}"));
        }
        let invals = self.route(node, out);
        // The kernel answers each invalidation once the batch is carried out.
        for resource in invals {
            if self.cores[node as usize].is_some() {
                let errno = self.inval_errno[node as usize];
                let _ = self.event(node, Event::CacheInvalDone { resource, errno });
            }
        }
        r
    }

    /// Carries out `out`; returns the resources of the `CACHE_INVAL`s to answer.
    fn route(&mut self, node: NodeId, out: Vec<Action>) -> Vec<ResourceId> {
        let mut invals = Vec::new();
        for a in out {
            match a {
                Action::Send { to, msg } => {
                    self.log(format_args!(
                        "n{node} -> n{to} {}",
                        describe_body(&msg.body)
                    ));
                    self.net.push_back((node, to, msg));
                }
                Action::Kernel(k) => {
                    self.log(format_args!("n{node} -> kernel {}", describe_kernel(&k)));
                    if let KernelMsg::CacheInval { resource, .. } = &k {
                        invals.push(*resource);
                    }
                    self.kernel_log.push((node, k.clone()));
                    self.kernel[node as usize].push(k);
                }
                Action::SetTimer { id, at_ms } => {
                    self.timers.retain(|(n, t, _)| !(*n == node && *t == id));
                    self.timers.push((node, id, at_ms));
                }
                Action::CancelTimer { id } => {
                    self.timers.retain(|(n, t, _)| !(*n == node && *t == id))
                }
                Action::Fence { node: target } => {
                    self.log(format_args!("n{node} -> fence n{target}"));
                    self.fences.push((node, target));
                }
                Action::ReplayJournal {
                    node: target,
                    epoch,
                } => {
                    self.log(format_args!(
                        "n{node} -> replay the journal of n{target} (epoch {epoch})"
                    ));
                    self.replays.push((node, target));
                }
                Action::SelfFence { epoch } => {
                    self.log(format_args!(
                        "n{node} -> SELF-FENCE (minority in epoch {epoch})"
                    ));
                    self.self_fenced.push((node, epoch));
                }
            }
        }
        invals
    }

    /// Delivers the oldest message in flight. False if none.
    pub fn step(&mut self) -> bool {
        let Some((from, to, msg)) = self.net.pop_front() else {
            return false;
        };
        if self.cores[to as usize].is_none() {
            return true;
        }
        let _ = self.event(to, Event::Peer { from, msg });
        true
    }

    /// Delivers the oldest message in flight that matches `pred` (out of order, as a network
    /// without per-link ordering may). False if none matches.
    pub fn deliver_first(&mut self, pred: impl Fn(NodeId, NodeId, &PeerBody) -> bool) -> bool {
        let Some(i) = self.net.iter().position(|(f, t, m)| pred(*f, *t, &m.body)) else {
            return false;
        };
        let (from, to, msg) = self.net.remove(i).expect("found");
        if self.cores[to as usize].is_some() {
            let _ = self.event(to, Event::Peer { from, msg });
        }
        true
    }

    /// Delivers messages and confirms fences until nothing is left. Panics past `limit` steps.
    pub fn settle(&mut self) {
        let mut limit = 1_000_000usize + 64 * self.net.len();
        loop {
            assert!(limit > 0, "cluster does not settle");
            limit -= 1;
            if self.step() {
                continue;
            }
            if let Some((by, target)) = self.fences.first().copied() {
                self.fences.remove(0);
                if self.cores[by as usize].is_some() {
                    let _ = self.event(by, Event::FenceConfirmed { node: target });
                }
                continue;
            }
            if let Some((by, target)) = self.replays.first().copied() {
                if !self.hold_replays {
                    let ok = self.replay_failures == 0;
                    self.replay_failures = self.replay_failures.saturating_sub(1);
                    let _ = self.finish_replay(by, target, ok);
                    continue;
                }
            }
            break;
        }
    }

    /// Ends the journal replay `by` runs for `target`: feeds `by` the result (replayed, or
    /// failed). False if no such replay runs.
    pub fn finish_replay(&mut self, by: NodeId, target: NodeId, ok: bool) -> bool {
        let Some(i) = self.replays.iter().position(|r| *r == (by, target)) else {
            return false;
        };
        self.replays.remove(i);
        if self.cores[by as usize].is_some() {
            let ev = if ok {
                Event::JournalReplayed { node: target }
            } else {
                Event::JournalReplayFailed { node: target }
            };
            let _ = self.event(by, ev);
        }
        true
    }

    /// Takes the armed timer with the earliest deadline at or before `now_ms`, if any.
    pub fn pop_due_timer(&mut self) -> Option<(NodeId, TimerId)> {
        let now_ms = self.now_ms;
        let i = self
            .timers
            .iter()
            .enumerate()
            .filter(|(_, t)| t.2 <= now_ms)
            .min_by_key(|(_, t)| t.2)
            .map(|(i, _)| i)?;
        let (node, id, _) = self.timers.remove(i);
        Some((node, id))
    }

    /// Advances time to `now_ms` and fires due timers in deadline order.
    pub fn advance(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
        while let Some((node, id)) = self.pop_due_timer() {
            if self.cores[node as usize].is_some() {
                let _ = self.event(node, Event::Timer { id });
            }
        }
    }

    /// Crashes `node` (its messages in flight are lost) and gives every survivor the new
    /// membership at `epoch`.
    pub fn crash(&mut self, node: NodeId, epoch: Epoch) {
        self.log(format_args!("n{node} CRASHES"));
        self.drop_and_install(node, epoch);
    }

    /// `node`'s daemon stops cleanly: its core announces the leave ([`Event::Leave`]), the
    /// announcements are delivered, the node stops, and every survivor gets the membership
    /// without it at `epoch`. On `Err` (the kernel still holds locks) nothing happened.
    pub fn leave(&mut self, node: NodeId, epoch: Epoch) -> Result<(), Reject> {
        self.event(node, Event::Leave)?;
        self.settle();
        self.log(format_args!("n{node} STOPS"));
        self.drop_and_install(node, epoch);
        Ok(())
    }

    fn drop_and_install(&mut self, node: NodeId, epoch: Epoch) {
        self.cores[node as usize] = None;
        self.net.retain(|(f, t, _)| *f != node && *t != node);
        self.replays.retain(|(by, _)| *by != node);
        let members = self.live();
        for n in members.iter() {
            let _ = self.event(n, Event::Membership { epoch, members });
        }
    }

    /// The set of nodes that are up.
    pub fn live(&self) -> NodeSet {
        let mut s = NodeSet::EMPTY;
        for (i, c) in self.cores.iter().enumerate() {
            if c.is_some() {
                s = s.with(i as NodeId);
            }
        }
        s
    }

    /// Kernel request shorthand.
    pub fn request(
        &mut self,
        node: NodeId,
        req_id: ReqId,
        resource: ResourceId,
        mode: LockMode,
    ) -> Result<(), Reject> {
        self.kernel_request(node, req_id, resource, mode, LockFlags::empty())
    }

    /// Kernel conversion shorthand: `LOCK_REQ` with `CONVERT` of the held request `req_id`.
    pub fn convert(
        &mut self,
        node: NodeId,
        req_id: ReqId,
        resource: ResourceId,
        mode: LockMode,
    ) -> Result<(), Reject> {
        self.kernel_request(node, req_id, resource, mode, LockFlags::CONVERT)
    }

    fn kernel_request(
        &mut self,
        node: NodeId,
        req_id: ReqId,
        resource: ResourceId,
        mode: LockMode,
        flags: LockFlags,
    ) -> Result<(), Reject> {
        let ev = Event::KernelRequest {
            req_id,
            resource,
            mode,
            flags,
            timeout_ms: 0,
        };
        self.event(node, ev)
    }

    /// Kernel release shorthand.
    pub fn release(
        &mut self,
        node: NodeId,
        req_id: ReqId,
        resource: ResourceId,
    ) -> Result<(), Reject> {
        self.event(node, Event::KernelRelease { req_id, resource })
    }

    /// Whether `node`'s kernel was granted `req_id` (last reply for it is a grant).
    pub fn granted(&self, node: NodeId, req_id: ReqId) -> bool {
        self.kernel[node as usize]
            .iter()
            .rev()
            .find_map(|k| match k {
                KernelMsg::Grant { req_id: r, .. } if *r == req_id => Some(true),
                KernelMsg::Deny { req_id: r, .. } if *r == req_id => Some(false),
                _ => None,
            })
            .unwrap_or(false)
    }

    /// The errno `node`'s kernel got for `req_id`, if denied.
    pub fn denied(&self, node: NodeId, req_id: ReqId) -> Option<i32> {
        self.kernel[node as usize]
            .iter()
            .rev()
            .find_map(|k| match k {
                KernelMsg::Deny {
                    req_id: r, errno, ..
                } if *r == req_id => Some(*errno),
                _ => None,
            })
    }
}

fn res(r: &ResourceId) -> String {
    match r.kind {
        ResourceType::Inode => format!("inode({},{})", r.volume, r.a),
        ResourceType::Extent => format!("extent({},{},{})", r.volume, r.a, r.b),
        ResourceType::Ag => format!("ag({},{})", r.volume, r.a),
        ResourceType::Volume => format!("volume({})", r.volume),
    }
}

/// One-line description of an event.
pub fn describe_event(ev: &Event) -> String {
    match ev {
        Event::KernelRequest {
            req_id,
            resource,
            mode,
            flags,
            timeout_ms,
        } => {
            let mut f = String::new();
            if flags.contains(LockFlags::NOQUEUE) {
                f.push_str(" NOQUEUE");
            }
            if flags.contains(LockFlags::CONVERT) {
                f.push_str(" CONVERT");
            }
            if flags.contains(LockFlags::TIMEOUT_MS) {
                let _ = write!(f, " TIMEOUT={timeout_ms}ms");
            }
            format!(
                "kernel LOCK_REQ req={req_id} {} {}{f}",
                res(resource),
                mode.name()
            )
        }
        Event::KernelRelease { req_id, resource } => {
            format!("kernel LOCK_RELEASE req={req_id} {}", res(resource))
        }
        Event::KernelCancel { req_id } => format!("kernel cancel req={req_id}"),
        Event::Peer { from, msg } => {
            format!("n{from} {} (epoch {})", describe_body(&msg.body), msg.epoch)
        }
        Event::Membership { epoch, members } => {
            format!(
                "membership epoch={epoch} members={:?}",
                members.iter().collect::<Vec<_>>()
            )
        }
        Event::Timer {
            id: TimerId::Request(r),
        } => format!("timer req={r}"),
        Event::Timer {
            id: TimerId::ReplayRetry(n),
        } => format!("timer: retry the journal replay of n{n}"),
        Event::FenceConfirmed { node } => format!("fence of n{node} confirmed"),
        Event::JournalReplayed { node } => format!("journal of n{node} replayed"),
        Event::JournalReplayFailed { node } => format!("journal replay of n{node} FAILED"),
        Event::CacheInvalDone { resource, errno } => {
            format!("CacheInvalDone {} errno={errno}", res(resource))
        }
        Event::Leave => "daemon stopping: leave".into(),
    }
}

/// One-line description of a peer message body.
pub fn describe_body(b: &PeerBody) -> String {
    match b {
        PeerBody::Lock {
            resource,
            mode,
            noqueue,
            seq,
        } => {
            format!(
                "Lock {} {}{} seq={seq}",
                res(resource),
                mode.name(),
                if *noqueue { " NOQUEUE" } else { "" }
            )
        }
        PeerBody::Release { resource, to, seq } => {
            format!(
                "Release {} to={} seq={seq}",
                res(resource),
                to.map_or("none", |m| m.name())
            )
        }
        PeerBody::Cancel { resource, seq } => format!("Cancel {} seq={seq}", res(resource)),
        PeerBody::Grant {
            resource,
            mode,
            version,
            seq,
        } => {
            format!(
                "Grant {} {} v={}.{} seq={seq}",
                res(resource),
                mode.name(),
                version.epoch,
                version.counter
            )
        }
        PeerBody::Deny {
            resource,
            errno,
            seq,
        } => format!("Deny {} errno={errno} seq={seq}", res(resource)),
        PeerBody::ReleaseAck {
            resource,
            version,
            seq,
        } => {
            format!(
                "ReleaseAck {} v={}.{} seq={seq}",
                res(resource),
                version.epoch,
                version.counter
            )
        }
        PeerBody::Bast { resource, mode } => {
            format!("Bast {} (blocked {})", res(resource), mode.name())
        }
        PeerBody::Recover { resource, mode } => {
            format!("Recover {} {}", res(resource), mode.name())
        }
        PeerBody::RecoverDone { count } => format!("RecoverDone count={count}"),
        PeerBody::RebuildDone => "RebuildDone".into(),
        PeerBody::Leaving => "Leaving".into(),
        PeerBody::FenceAsk { node } => format!("FenceAsk n{node}"),
        PeerBody::Fenced { node } => format!("Fenced n{node}"),
        PeerBody::Replayed { node } => format!("Replayed n{node}"),
        PeerBody::Journals {
            known,
            replaying,
            waiting,
        } => format!(
            "Journals known={known} replaying {:?} waiting {:?}",
            replaying.iter().collect::<Vec<_>>(),
            waiting.iter().collect::<Vec<_>>()
        ),
    }
}

/// One-line description of a kernel message.
pub fn describe_kernel(k: &KernelMsg) -> String {
    match k {
        KernelMsg::CacheInval {
            resource: _,
            volume,
            ino,
            offset,
            len,
        } => {
            format!("CACHE_INVAL vol={volume} ino={ino} off={offset} len={len}")
        }
        KernelMsg::Grant {
            req_id,
            resource,
            mode,
            ..
        } => format!("LOCK_GRANT req={req_id} {} {}", res(resource), mode.name()),
        KernelMsg::Deny {
            req_id,
            resource,
            errno,
        } => format!("LOCK_DENY req={req_id} {} errno={errno}", res(resource)),
        KernelMsg::RecoveryStart { epoch } => format!("RECOVERY_START epoch={epoch}"),
        KernelMsg::RecoveryDone { epoch } => format!("RECOVERY_DONE epoch={epoch}"),
        KernelMsg::NodeStatus { node, state } => format!("NODE_STATUS n{node} {state:?}"),
        KernelMsg::Callback {
            req_id,
            resource,
            mode,
        } => format!(
            "LOCK_CALLBACK req={req_id} {} keep={}",
            res(resource),
            mode.name()
        ),
    }
}

/// The first inode of volume 1 (ino below 10 000) for which `pred` holds. Tests use it to pick
/// a resource with a given master; panics if none qualifies (a test set-up error).
pub fn inode_where(pred: impl Fn(&ResourceId) -> bool) -> ResourceId {
    (0..10_000)
        .map(|ino| ResourceId::inode(1, ino))
        .find(|r| pred(r))
        .expect("some inode below 10 000 qualifies")
}

/// The first inode of volume 1 whose master among `members` is `master`.
pub fn res_mastered_by(master: NodeId, members: NodeSet) -> ResourceId {
    inode_where(|r| master_of(members, r) == Some(master))
}
