//! `mxfs-model`: a stateright model of the MXFS lock protocol (DESIGN.md §4).
//!
//! Wiring only: every node is a real [`mxfs_core::Core`]; the model supplies kernels (clients
//! that request, convert and release), an unordered network, a partition/crash with the
//! membership and fence events it causes, and a fence agent. The rules live in the core; the
//! properties judge what the *kernels* saw, not what the cores claim.
#![forbid(unsafe_code)]

use std::fmt;

use mxfs_core::{
    Action, Config, Core, Event, KernelMsg, LockFlags, LockMode, NodeId, NodeSet, PeerMsg, Phase,
    Reject, Relabel, ReqId, ResourceId,
};
use stateright::{Model, Property};

/// Epoch of the membership that follows crash number `crashes` (the boot epoch is 1).
fn crash_epoch(crashes: u8) -> u64 {
    1 + u64::from(crashes)
}

/// What a client may ask for in one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ask {
    /// Queued request in `mode`.
    Wait(LockMode),
    /// Try-lock (`NOQUEUE`) in `mode`.
    Try(LockMode),
}

/// The model's parameters.
#[derive(Clone, Debug)]
pub struct MxfsModel {
    /// Number of nodes (all configured, all members at boot, epoch 1).
    pub nodes: u32,
    /// Resources the clients use.
    pub resources: Vec<ResourceId>,
    /// Requests and conversions all clients together may issue.
    pub ops: u8,
    /// Requests clients may choose from.
    pub asks: Vec<Ask>,
    /// Whether a holder may convert (PR <-> EX).
    pub converts: bool,
    /// Crashes (partitions that end in a fence) and clean leaves allowed, together.
    pub max_crashes: u8,
}

/// A message in flight.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Envelope {
    /// Sender.
    pub from: NodeId,
    /// Receiver.
    pub to: NodeId,
    /// Message.
    pub msg: PeerMsg,
}

/// One node's kernel, as the model sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Kernel {
    /// Next request id.
    pub next_req: ReqId,
    /// Requests waiting for a reply: `(req, resource index, mode, is_convert)`.
    pub pending: Vec<(ReqId, u8, LockMode, bool)>,
    /// Locks the kernel holds: `(req, resource index, mode)`.
    pub held: Vec<(ReqId, u8, LockMode)>,
    /// `RECOVERY_START` seen without a later `RECOVERY_DONE`.
    pub recovering: bool,
    /// Version of each resource's data in this node's page cache.
    pub cache: Vec<u8>,
    /// The node learnt it is in a minority partition.
    pub minority: bool,
}

/// Safety violations observed on transitions (a property fails when one is set).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Violations {
    /// A grant reached a kernel while it was recovering.
    pub grant_while_recovering: bool,
    /// A grant for a mode that excludes writers reached a node with a stale page cache.
    pub stale_grant: bool,
    /// A reply named a request that was not waiting.
    pub extra_reply: bool,
    /// A node that knew it was in a minority granted.
    pub minority_grant: bool,
    /// Two nodes ran a fence agent for the same loss.
    pub duplicate_fence: bool,
    /// A core rejected a message or event the model considers legitimate, or broke an
    /// invariant (text in `core_error`).
    pub core_error: Option<String>,
}

/// Things seen at least once, for `sometimes` properties.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Seen {
    /// A kernel got a grant.
    pub grant: bool,
    /// A kernel got a deny.
    pub deny: bool,
    /// A BAST was delivered.
    pub bast: bool,
    /// A conversion (kernel convert granted, or a node lock up/down-converted).
    pub conversion: bool,
    /// A recovery finished somewhere.
    pub recovery: bool,
    /// A node left cleanly and the membership without it fenced nobody.
    pub clean_leave: bool,
}

/// The model state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    /// Cores; `None` once the node is fenced (dead).
    pub cores: Vec<Option<Core>>,
    /// Kernels, one per node.
    pub kernels: Vec<Kernel>,
    /// Messages in flight (a sorted multiset: the network is unordered).
    pub net: Vec<Envelope>,
    /// The node cut off by the crash, if any.
    pub cut: Option<NodeId>,
    /// A node that left cleanly, until the survivors get the membership without it.
    pub departing: Option<NodeId>,
    /// Crashes and clean leaves so far.
    pub crashes: u8,
    /// Fence requests not yet carried out: `(by, target)`, sorted.
    pub fences: Vec<(NodeId, NodeId)>,
    /// Fence agents started for the current loss: `(target, by)`, sorted; cleared by each
    /// crash or leave.
    pub fence_agents: Vec<(NodeId, NodeId)>,
    /// Ground truth data version of each resource (bumped by each write release, and by the
    /// journal replay of a node fenced while holding a write lock).
    pub truth: Vec<u8>,
    /// Operations left.
    pub ops_left: u8,
    /// Safety violations.
    pub bad: Violations,
    /// `sometimes` witnesses.
    pub seen: Seen,
}

/// A model step.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Node's kernel requests resource `res` (index).
    Request(NodeId, u8, Ask),
    /// Node's kernel converts held request `req` to `mode`.
    Convert(NodeId, ReqId, LockMode),
    /// Node's kernel releases `req`.
    Release(NodeId, ReqId),
    /// Deliver message `net[i]`.
    Deliver(Envelope),
    /// Cut `node` off: survivors get the new membership now, the cut node later.
    Crash(NodeId),
    /// The cut node notices it is alone.
    Notice(NodeId),
    /// The fence agent of `by` fences `target` (killing it) and confirms.
    Fence(NodeId, NodeId),
    /// `node`'s daemon stops cleanly (its kernel holds and waits for nothing): its core
    /// announces the leave and the process exits.
    Leave(NodeId),
    /// The survivors get the membership without the node that left.
    Depart(NodeId),
}

impl MxfsModel {
    /// The `just model` scenario: 3 nodes, 2 resources, 1 crash, 3 kernel operations (queued
    /// PR or EX requests, or PR <-> EX conversions), releases free. See README.md.
    pub fn exhaustive() -> MxfsModel {
        MxfsModel {
            nodes: 3,
            resources: pick_resources(3, 2),
            ops: 3,
            asks: vec![Ask::Wait(LockMode::Pr), Ask::Wait(LockMode::Ex)],
            converts: true,
            max_crashes: 1,
        }
    }

    /// The bounded scenario of `just verify`: 2 operations, adding try-locks (`NOQUEUE` EX).
    pub fn bounded() -> MxfsModel {
        MxfsModel {
            ops: 2,
            asks: vec![
                Ask::Wait(LockMode::Pr),
                Ask::Wait(LockMode::Ex),
                Ask::Try(LockMode::Ex),
            ],
            ..MxfsModel::exhaustive()
        }
    }

    /// The simulation scenario: 5 nodes, 3 resources, 2 crashes, more ops.
    pub fn simulation() -> MxfsModel {
        MxfsModel {
            nodes: 5,
            resources: pick_resources(5, 3),
            ops: 12,
            asks: vec![
                Ask::Wait(LockMode::Cr),
                Ask::Wait(LockMode::Pr),
                Ask::Wait(LockMode::Cw),
                Ask::Wait(LockMode::Pw),
                Ask::Wait(LockMode::Ex),
                Ask::Try(LockMode::Ex),
                Ask::Try(LockMode::Pr),
            ],
            converts: true,
            max_crashes: 2,
        }
    }

    fn res(&self, i: u8) -> ResourceId {
        self.resources[i as usize]
    }

    fn res_index(&self, r: &ResourceId) -> u8 {
        self.resources
            .iter()
            .position(|x| x == r)
            .expect("model resource") as u8
    }

    /// Feeds `ev` to `node` and applies the actions to the model state.
    fn feed(&self, s: &mut State, node: NodeId, ev: Event) {
        let Some(core) = s.cores[node as usize].as_mut() else {
            return;
        };
        let mut out = Vec::new();
        if let Err(e) = core.handle(0, ev, &mut out) {
            // A peer message may legitimately be from an old epoch, or a BAST may find the
            // lock already given up; anything else is a protocol slip.
            let legit = matches!(
                e,
                Reject::StaleEpoch { .. } | Reject::NotMember(_) | Reject::Stale(_)
            );
            if !legit {
                s.bad
                    .core_error
                    .get_or_insert(format!("n{node} rejected an event: {e}"));
            }
        }
        if let Err(e) = core.check_invariants() {
            s.bad.core_error.get_or_insert(format!("n{node}: {e}"));
        }
        for a in out {
            self.apply(s, node, a);
        }
    }

    fn apply(&self, s: &mut State, node: NodeId, a: Action) {
        let n = node as usize;
        match a {
            Action::Send { to, msg } => {
                if let mxfs_core::PeerBody::Release { to: Some(_), .. } = msg.body {
                    s.seen.conversion = true;
                }
                if s.cut.is_some_and(|c| c == node || c == to) || s.cores[to as usize].is_none() {
                    return; // the partition eats it
                }
                let e = Envelope {
                    from: node,
                    to,
                    msg,
                };
                let at = s.net.binary_search(&e).unwrap_or_else(|i| i);
                s.net.insert(at, e);
            }
            Action::Kernel(k) => self.kernel(s, n, k),
            Action::SetTimer { .. } | Action::CancelTimer { .. } => {}
            Action::Fence { node: target } => {
                if s.fence_agents
                    .iter()
                    .any(|(t, by)| *t == target && *by != node)
                {
                    s.bad.duplicate_fence = true;
                }
                if let Err(at) = s.fence_agents.binary_search(&(target, node)) {
                    s.fence_agents.insert(at, (target, node));
                }
                let at = s
                    .fences
                    .binary_search(&(node, target))
                    .unwrap_or_else(|i| i);
                s.fences.insert(at, (node, target));
            }
            Action::SelfFence { .. } => {}
        }
    }

    fn kernel(&self, s: &mut State, n: usize, k: KernelMsg) {
        match k {
            KernelMsg::CacheInval { ino, .. } => {
                let i = self
                    .resources
                    .iter()
                    .position(|r| r.a == ino)
                    .expect("model inode");
                s.kernels[n].cache[i] = s.truth[i];
            }
            KernelMsg::Grant {
                req_id,
                resource,
                mode,
            } => {
                let i = self.res_index(&resource);
                s.seen.grant = true;
                let kn = &mut s.kernels[n];
                if kn.recovering {
                    s.bad.grant_while_recovering = true;
                }
                if kn.minority {
                    s.bad.minority_grant = true;
                }
                // Modes that exclude writers must see the newest data.
                if !mode.compatible(LockMode::Pw) && kn.cache[i as usize] != s.truth[i as usize] {
                    s.bad.stale_grant = true;
                }
                match kn.pending.iter().position(|p| p.0 == req_id) {
                    Some(at) => {
                        let (_, _, _, convert) = kn.pending.remove(at);
                        if convert {
                            s.seen.conversion = true;
                            kn.held.retain(|h| h.0 != req_id);
                        }
                        kn.held.push((req_id, i, mode));
                        kn.held.sort();
                    }
                    None => s.bad.extra_reply = true,
                }
            }
            KernelMsg::Deny { req_id, .. } => {
                s.seen.deny = true;
                let kn = &mut s.kernels[n];
                match kn.pending.iter().position(|p| p.0 == req_id) {
                    Some(at) => {
                        kn.pending.remove(at);
                    }
                    None => s.bad.extra_reply = true,
                }
            }
            KernelMsg::RecoveryStart { .. } => s.kernels[n].recovering = true,
            KernelMsg::RecoveryDone { .. } => {
                s.kernels[n].recovering = false;
                s.seen.recovery = true;
            }
            KernelMsg::NodeStatus { .. } => {}
        }
    }

    /// Kills `target`: its kernel's locks vanish; a write lock's journal is replayed.
    fn kill(&self, s: &mut State, target: NodeId) {
        let t = target as usize;
        if s.cores[t].is_none() {
            return;
        }
        s.cores[t] = None;
        for (_, i, mode) in std::mem::take(&mut s.kernels[t].held) {
            if mode.is_write() {
                s.truth[i as usize] = s.truth[i as usize].wrapping_add(1);
            }
        }
        s.kernels[t].pending.clear();
        s.net.retain(|e| e.from != target && e.to != target);
        s.fences.retain(|(by, _)| *by != target);
    }

    /// Whether nothing can happen any more.
    pub fn quiescent(&self, s: &State) -> bool {
        let mut acts = Vec::new();
        self.actions(s, &mut acts);
        acts.is_empty()
    }
}

/// Resources for an `n`-node model such that the joint symmetry (swap node 0 and node n-1,
/// swap resource 0 and resource 1) maps masters onto masters for every member subset: the
/// rendezvous ranking of resource 1 is the reverse-swapped ranking of resource 0.
pub fn pick_resources(n: u32, count: usize) -> Vec<ResourceId> {
    assert!(count >= 2, "the symmetry needs two resources");
    let all = NodeSet::first(n);
    let rank = |r: &ResourceId| {
        let mut v: Vec<NodeId> = all.iter().collect();
        v.sort_by_key(|x| std::cmp::Reverse(mxfs_core::rendezvous_weight(*x, r)));
        v
    };
    let swap = |x: NodeId| {
        if x == 0 {
            n - 1
        } else if x == n - 1 {
            0
        } else {
            x
        }
    };
    let first = ResourceId::inode(1, 1);
    let want: Vec<NodeId> = rank(&first).into_iter().map(swap).collect();
    let second = (2..1_000_000)
        .map(|ino| ResourceId::inode(1, ino))
        .find(|r| rank(r) == want)
        .expect("some inode has the mirrored ranking");
    let mut out = vec![first, second];
    out.extend(
        (second.a + 1..)
            .map(|ino| ResourceId::inode(1, ino))
            .take(count - 2),
    );
    out
}

impl Model for MxfsModel {
    type State = State;
    type Action = Step;

    fn init_states(&self) -> Vec<State> {
        let n = self.nodes as usize;
        let r = self.resources.len();
        vec![State {
            cores: (0..self.nodes)
                .map(|i| Some(Core::new(Config::booted(i, self.nodes))))
                .collect(),
            kernels: vec![
                Kernel {
                    next_req: 1,
                    cache: vec![0; r],
                    ..Default::default()
                };
                n
            ],
            net: Vec::new(),
            cut: None,
            departing: None,
            crashes: 0,
            fences: Vec::new(),
            fence_agents: Vec::new(),
            truth: vec![0; r],
            ops_left: self.ops,
            bad: Violations::default(),
            seen: Seen::default(),
        }]
    }

    fn actions(&self, s: &State, acts: &mut Vec<Step>) {
        for node in 0..self.nodes {
            let n = node as usize;
            if s.cores[n].is_none() {
                continue;
            }
            let k = &s.kernels[n];
            if s.ops_left > 0 && k.pending.is_empty() {
                for i in 0..self.resources.len() as u8 {
                    // One lock per resource per kernel: a second one would be the kernel
                    // deadlocking on itself, which the hooks never do.
                    if k.held.iter().any(|h| h.1 == i) {
                        continue;
                    }
                    for ask in &self.asks {
                        acts.push(Step::Request(node, i, *ask));
                    }
                }
                if self.converts {
                    for (req, _, mode) in &k.held {
                        let to = if *mode == LockMode::Ex {
                            LockMode::Pr
                        } else {
                            LockMode::Ex
                        };
                        acts.push(Step::Convert(node, *req, to));
                    }
                }
            }
            for (req, _, _) in &k.held {
                if !k.pending.iter().any(|p| p.0 == *req) {
                    acts.push(Step::Release(node, *req));
                }
            }
            // One partition or leave at a time: the next may start once the last cut node is
            // fenced and the last leaver is out of the membership.
            let settled =
                s.cut.is_none_or(|c| s.cores[c as usize].is_none()) && s.departing.is_none();
            if s.crashes < self.max_crashes && settled {
                acts.push(Step::Crash(node));
                let idle = k.held.is_empty() && k.pending.is_empty();
                let running = s.cores[n]
                    .as_ref()
                    .is_some_and(|c| c.phase() != Phase::Stopped);
                if idle && running {
                    acts.push(Step::Leave(node));
                }
            }
            if s.cut == Some(node) && !k.minority {
                acts.push(Step::Notice(node));
            }
        }
        for e in &s.net {
            acts.push(Step::Deliver(e.clone()));
        }
        acts.dedup();
        for (by, target) in &s.fences {
            acts.push(Step::Fence(*by, *target));
        }
        if let Some(node) = s.departing {
            acts.push(Step::Depart(node));
        }
    }

    fn next_state(&self, last: &State, step: Step) -> Option<State> {
        let mut s = last.clone();
        match step {
            Step::Request(node, i, ask) => {
                let k = &mut s.kernels[node as usize];
                let req_id = k.next_req;
                k.next_req += 1;
                let (mode, flags) = match ask {
                    Ask::Wait(m) => (m, LockFlags::empty()),
                    Ask::Try(m) => (m, LockFlags::NOQUEUE),
                };
                k.pending.push((req_id, i, mode, false));
                s.ops_left -= 1;
                let ev = Event::KernelRequest {
                    req_id,
                    resource: self.res(i),
                    mode,
                    flags,
                    timeout_ms: 0,
                };
                self.feed(&mut s, node, ev);
            }
            Step::Convert(node, req_id, mode) => {
                let k = &mut s.kernels[node as usize];
                let i = k.held.iter().find(|h| h.0 == req_id)?.1;
                k.pending.push((req_id, i, mode, true));
                s.ops_left -= 1;
                let ev = Event::KernelRequest {
                    req_id,
                    resource: self.res(i),
                    mode,
                    flags: LockFlags::CONVERT,
                    timeout_ms: 0,
                };
                self.feed(&mut s, node, ev);
            }
            Step::Release(node, req_id) => {
                let k = &mut s.kernels[node as usize];
                let at = k.held.iter().position(|h| h.0 == req_id)?;
                let (_, i, mode) = k.held.remove(at);
                if mode.is_write() {
                    // The kernel wrote back under the lock: new data, and its own cache has it.
                    s.truth[i as usize] = s.truth[i as usize].wrapping_add(1);
                    s.kernels[node as usize].cache[i as usize] = s.truth[i as usize];
                }
                self.feed(
                    &mut s,
                    node,
                    Event::KernelRelease {
                        req_id,
                        resource: self.res(i),
                    },
                );
            }
            Step::Deliver(e) => {
                let at = s.net.binary_search(&e).ok()?;
                s.net.remove(at);
                if let mxfs_core::PeerBody::Bast { .. } = e.msg.body {
                    s.seen.bast = true;
                }
                self.feed(
                    &mut s,
                    e.to,
                    Event::Peer {
                        from: e.from,
                        msg: e.msg,
                    },
                );
            }
            Step::Crash(node) => {
                s.crashes += 1;
                s.fence_agents.clear();
                s.cut = Some(node);
                s.net.retain(|e| e.from != node && e.to != node);
                let members = s.live().without(node);
                let epoch = crash_epoch(s.crashes);
                for m in members.iter() {
                    self.feed(&mut s, m, Event::Membership { epoch, members });
                }
            }
            Step::Notice(node) => {
                s.kernels[node as usize].minority = true;
                let members = NodeSet::EMPTY.with(node);
                let epoch = crash_epoch(s.crashes);
                self.feed(&mut s, node, Event::Membership { epoch, members });
            }
            Step::Fence(by, target) => {
                let at = s.fences.binary_search(&(by, target)).ok()?;
                s.fences.remove(at);
                self.kill(&mut s, target);
                self.feed(&mut s, by, Event::FenceConfirmed { node: target });
            }
            Step::Leave(node) => {
                s.crashes += 1;
                s.fence_agents.clear();
                s.departing = Some(node);
                self.feed(&mut s, node, Event::Leave);
                // The process exits; its announcements stay in flight.
                s.cores[node as usize] = None;
                s.net.retain(|e| e.to != node);
                s.fences.retain(|(by, _)| *by != node);
            }
            Step::Depart(node) => {
                s.departing = None;
                let members = s.live();
                let epoch = crash_epoch(s.crashes);
                for m in members.iter() {
                    self.feed(&mut s, m, Event::Membership { epoch, members });
                }
                if !s.fences.iter().any(|(_, t)| *t == node) {
                    s.seen.clean_leave = true;
                }
            }
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always(
                "no two incompatible grants on one resource",
                |_, s: &State| s.kernel_grants_compatible(),
            ),
            Property::always("nothing granted while recovering", |_, s: &State| {
                !s.bad.grant_while_recovering
            }),
            Property::always(
                "CACHE_INVAL reaches a stale node before the grant",
                |_, s: &State| !s.bad.stale_grant,
            ),
            Property::always("a request gets at most one reply", |_, s: &State| {
                !s.bad.extra_reply
            }),
            Property::always(
                "a lost node holds nothing once recovery is done",
                |_, s: &State| s.lost_node_purged(),
            ),
            Property::always("only the majority side grants", |_, s: &State| {
                !s.bad.minority_grant
            }),
            Property::always("one fence agent per lost node", |_, s: &State| {
                !s.bad.duplicate_fence
            }),
            Property::always(
                "cores accept every legitimate event and keep their invariants",
                |_, s: &State| s.bad.core_error.is_none(),
            ),
            Property::always(
                "every request is answered by quiescence",
                |m: &MxfsModel, s: &State| s.all_answered() || !m.quiescent(s),
            ),
            Property::sometimes("a grant", |_, s: &State| s.seen.grant),
            Property::sometimes("a deny", |_, s: &State| s.seen.deny),
            Property::sometimes("a BAST", |_, s: &State| s.seen.bast),
            Property::sometimes("a conversion", |_, s: &State| s.seen.conversion),
            Property::sometimes("a recovery", |_, s: &State| s.seen.recovery),
            Property::sometimes("a clean leave without a fence", |_, s: &State| {
                s.seen.clean_leave
            }),
        ]
    }
}

impl State {
    /// Nodes whose core is running.
    pub fn live(&self) -> NodeSet {
        let mut set = NodeSet::EMPTY;
        for (i, c) in self.cores.iter().enumerate() {
            if c.is_some() {
                set = set.with(i as NodeId);
            }
        }
        set
    }

    /// Kernel-visible grants (of live nodes, including a cut node until it is fenced) are
    /// pairwise compatible per resource.
    pub fn kernel_grants_compatible(&self) -> bool {
        let mut all: Vec<(u8, LockMode)> = Vec::new();
        for (n, k) in self.kernels.iter().enumerate() {
            if self.cores[n].is_none() {
                continue;
            }
            all.extend(k.held.iter().map(|(_, i, m)| (*i, *m)));
        }
        all.iter().enumerate().all(|(a, (ia, ma))| {
            all[a + 1..]
                .iter()
                .all(|(ib, mb)| ia != ib || ma.compatible(*mb))
        })
    }

    /// Every core that finished a recovery has no master entry for a non-member.
    pub fn lost_node_purged(&self) -> bool {
        self.cores
            .iter()
            .flatten()
            .filter(|c| c.phase() == Phase::Normal && c.epoch() > 1)
            .all(|c| c.master_queue_nodes().is_subset(c.members()))
    }

    /// No live kernel waits for a reply.
    pub fn all_answered(&self) -> bool {
        self.kernels
            .iter()
            .enumerate()
            .all(|(n, k)| self.cores[n].is_none() || k.pending.is_empty())
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Deliver(e) => write!(
                f,
                "deliver n{} -> n{}: {}",
                e.from,
                e.to,
                mxfs_core::sim::describe_body(&e.msg.body)
            ),
            other => write!(f, "{other:?}"),
        }
    }
}

/// The symmetry of the model: swap node 0 with node n-1 and resource 0 with resource 1 (the
/// resources are picked by [`pick_resources`] so that this maps masters onto masters). Clients
/// may ask for any resource in any mode and any node may crash, so the model is symmetric
/// under it. Sequence numbers may differ between two symmetric runs, but only equality of
/// sequence numbers matters to the core, so the two states behave alike.
pub fn mirror(s: &State) -> State {
    let n = s.cores.len() as NodeId;
    let swap_node = move |x: NodeId| {
        if x == 0 {
            n - 1
        } else if x == n - 1 {
            0
        } else {
            x
        }
    };
    let res = cached_resources(n, s.truth.len());
    let swap_res = move |r: &ResourceId| {
        if *r == res[0] {
            res[1]
        } else if *r == res[1] {
            res[0]
        } else {
            *r
        }
    };
    let map = Relabel {
        node: &swap_node,
        resource: &swap_res,
    };
    let mut out = s.clone();
    for (i, c) in s.cores.iter().enumerate() {
        out.cores[swap_node(i as NodeId) as usize] = c.as_ref().map(|c| c.relabel(&map));
    }
    for (i, k) in s.kernels.iter().enumerate() {
        out.kernels[swap_node(i as NodeId) as usize] = mirror_kernel(k);
    }
    out.net = s
        .net
        .iter()
        .map(|e| Envelope {
            from: swap_node(e.from),
            to: swap_node(e.to),
            msg: map.msg(&e.msg),
        })
        .collect();
    out.net.sort();
    out.cut = s.cut.map(swap_node);
    out.departing = s.departing.map(swap_node);
    let swap_pairs = |v: &[(NodeId, NodeId)]| {
        let mut v: Vec<_> = v
            .iter()
            .map(|(a, b)| (swap_node(*a), swap_node(*b)))
            .collect();
        v.sort();
        v
    };
    out.fences = swap_pairs(&s.fences);
    out.fence_agents = swap_pairs(&s.fence_agents);
    out.truth.swap(0, 1);
    out
}

/// `(nodes, count)` and its [`pick_resources`].
type ResourceCacheEntry = ((u32, usize), Vec<ResourceId>);

/// [`pick_resources`], memoised per thread.
fn cached_resources(n: u32, count: usize) -> Vec<ResourceId> {
    thread_local! {
        static CACHE: std::cell::RefCell<Vec<ResourceCacheEntry>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    CACHE.with(|c| {
        if let Some((_, v)) = c.borrow().iter().find(|(k, _)| *k == (n, count)) {
            return v.clone();
        }
        let v = pick_resources(n, count);
        c.borrow_mut().push(((n, count), v.clone()));
        v
    })
}

/// Representative of `s`'s symmetry class {s, mirror(s)}, chosen by a hash of the cheap
/// part of the state (kernels, truth, cut) first, and of the whole state only on a tie, so
/// that the cores are renamed only when the mirror image is the one kept.
/// Valid for models whose resources are `pick_resources(nodes, count)`.
pub fn representative(s: &State) -> State {
    use std::hash::{Hash, Hasher};
    fn fp<T: Hash>(x: &T) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        x.hash(&mut h);
        h.finish()
    }
    let n = s.cores.len() as NodeId;
    let swap_node = |x: NodeId| {
        if x == 0 {
            n - 1
        } else if x == n - 1 {
            0
        } else {
            x
        }
    };
    let mut kernels = s.kernels.clone();
    for (i, k) in s.kernels.iter().enumerate() {
        kernels[swap_node(i as NodeId) as usize] = mirror_kernel(k);
    }
    let mut truth = s.truth.clone();
    truth.swap(0, 1);
    let mine = fp(&(&s.kernels, &s.truth, s.cut));
    let theirs = fp(&(&kernels, &truth, s.cut.map(swap_node)));
    match mine.cmp(&theirs) {
        std::cmp::Ordering::Less => s.clone(),
        std::cmp::Ordering::Greater => mirror(s),
        std::cmp::Ordering::Equal => {
            let t = mirror(s);
            if fp(&t) < fp(s) {
                t
            } else {
                s.clone()
            }
        }
    }
}

fn mirror_kernel(k: &Kernel) -> Kernel {
    let swap_index = |i: u8| match i {
        0 => 1,
        1 => 0,
        x => x,
    };
    let mut k = k.clone();
    for p in k.pending.iter_mut() {
        p.1 = swap_index(p.1);
    }
    for h in k.held.iter_mut() {
        h.1 = swap_index(h.1);
    }
    k.held.sort();
    k.cache.swap(0, 1);
    k
}
