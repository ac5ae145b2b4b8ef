//! `mxfs-model`: a stateright model of the MXFS lock protocol (DESIGN.md §4).
//!
//! Wiring only: every node is a real [`mxfs_core::Core`]; the model supplies kernels (clients
//! that request, convert, cancel, time out and release), a network (per-pair FIFO channels as
//! mxfsd ships, or an unordered one), message loss answered by the daemon's resync, a
//! partition/crash with the membership and fence events it causes, and a fence agent. The
//! rules live in the core; the properties judge what the *kernels* and the *wire* saw, against
//! the model's own copy of the DLM compatibility matrix ([`DLM_COMPAT`]), never the core's.
#![forbid(unsafe_code)]

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

use mxfs_core::{
    Action, Config, Core, Event, KernelMsg, LockFlags, LockMode, NodeId, NodeSet, PeerBody,
    PeerMsg, Phase, Reject, Relabel, ReqId, ResourceId, TimerId, Version,
};
use stateright::{Model, Property};

// ---------------------------------------------------------------------------------------------
// The model's own DLM compatibility matrix.
// ---------------------------------------------------------------------------------------------

/// The DLM compatibility matrix, written out here on purpose (not taken from `mxfs-proto`,
/// whose `LockMode::compatible` the core itself uses): `DLM_COMPAT[held][wanted]`, rows and
/// columns NL, CR, CW, PR, PW, EX (the VMS / Linux DLM table).
#[rustfmt::skip]
pub const DLM_COMPAT: [[bool; 6]; 6] = [
    //        NL     CR     CW     PR     PW     EX
    /* NL */ [true,  true,  true,  true,  true,  true ],
    /* CR */ [true,  true,  true,  true,  true,  false],
    /* CW */ [true,  true,  true,  false, false, false],
    /* PR */ [true,  true,  false, true,  false, false],
    /* PW */ [true,  true,  false, false, false, false],
    /* EX */ [true,  false, false, false, false, false],
];

/// The six modes in the order of [`DLM_COMPAT`]'s rows.
pub const MODES: [LockMode; 6] = [
    LockMode::Nl,
    LockMode::Cr,
    LockMode::Cw,
    LockMode::Pr,
    LockMode::Pw,
    LockMode::Ex,
];

/// Row of `m` in [`DLM_COMPAT`] (by name, not by the enum's discriminant).
pub fn mode_index(m: LockMode) -> usize {
    match m {
        LockMode::Nl => 0,
        LockMode::Cr => 1,
        LockMode::Cw => 2,
        LockMode::Pr => 3,
        LockMode::Pw => 4,
        LockMode::Ex => 5,
    }
}

/// Whether a lock held in `held` may coexist with one in `wanted` on another holder.
pub fn compat(held: LockMode, wanted: LockMode) -> bool {
    DLM_COMPAT[mode_index(held)][mode_index(wanted)]
}

/// Whether a holder of `m` may write the data (PW, EX): its release makes a new version.
pub fn writes(m: LockMode) -> bool {
    matches!(m, LockMode::Pw | LockMode::Ex)
}

/// The conversion targets of the bounded runs: a cycle through all six modes, so each mode is
/// converted from and to once: NL->CR, CR->CW, CW->PR (sideways), PR->PW (the up-conversion
/// that deadlocks between two PR holders), PW->EX, EX->NL (down).
pub const CONVERT_CYCLE: [(LockMode, LockMode); 6] = [
    (LockMode::Nl, LockMode::Cr),
    (LockMode::Cr, LockMode::Cw),
    (LockMode::Cw, LockMode::Pr),
    (LockMode::Pr, LockMode::Pw),
    (LockMode::Pw, LockMode::Ex),
    (LockMode::Ex, LockMode::Nl),
];

/// `TIMEOUT_MS` of a timed request. Time is not modelled: its timer may fire at any step.
pub const REQUEST_TIMEOUT_MS: u32 = 1_000;

// ---------------------------------------------------------------------------------------------
// Parameters and state.
// ---------------------------------------------------------------------------------------------

/// What a client may ask for in one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ask {
    /// Queued request in `mode`.
    Wait(LockMode),
    /// Try-lock (`NOQUEUE`) in `mode`.
    Try(LockMode),
    /// Queued request with `TIMEOUT_MS` ([`REQUEST_TIMEOUT_MS`]); its timer may fire.
    Timed(LockMode),
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
    /// Conversions a holder may ask for: `(held mode, target)`.
    pub converts: Vec<(LockMode, LockMode)>,
    /// Crashes (partitions that end in a fence), clean leaves and partitions, together.
    pub max_crashes: u8,
    /// Requests each kernel may wait for at once (1: one process per node; 2: two processes,
    /// which may also lock a resource their node already holds, so local queues form).
    pub kernel_waits: u8,
    /// `KernelCancel`s the kernels may issue for waiting requests.
    pub cancels: u8,
    /// Messages the network may lose; each loss is followed by the daemon's resync (the same
    /// members reinstalled in a new epoch, no fence).
    pub losses: u8,
    /// One side of the partition step, if the model has one (the other side is the rest).
    pub partition: Option<NodeSet>,
    /// Kernels request nothing until the partition happened (a smaller state space for the
    /// 5-node quorum test).
    pub partition_first: bool,
    /// Per node pair FIFO channels (one TCP connection per pair, as mxfsd ships); `false`:
    /// any message in flight may be delivered next.
    pub fifo: bool,
    /// Whether the checker uses [`representative`] (valid only with two resources from
    /// [`pick_resources`] and a partition side that the node swap maps onto itself); cores
    /// then also carry the hash of their mirror image.
    pub symmetry: bool,
    /// Nodes whose kernel refuses every `CACHE_INVAL` (answers `EBUSY`): the core must then
    /// grant them nothing that needs fresh pages. Must be mapped onto itself by the symmetry.
    pub refuse_inval: NodeSet,
    /// Journal replays that may fail (`Event::JournalReplayFailed`; the core retries on a
    /// timer).
    pub replay_failures: u8,
    /// First mounter: `Some(up)` starts only the nodes of `up`, as fresh processes (no
    /// membership, journals unknown), and gives them their first membership at once; the
    /// other nodes are down from the start. Every node's journal may be dirty (the whole
    /// cluster went down), so no grant may come before each was replayed. `None`: every node
    /// boots as a member of a running cluster.
    pub cold_start: Option<NodeSet>,
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

/// What kind of request a kernel waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A first request, queued.
    Queued,
    /// A first request with `TIMEOUT_MS` (queued).
    Timed,
    /// A try-lock (`NOQUEUE`): denied, never queued, if not grantable.
    Try,
    /// A conversion of a held lock.
    Convert,
}

/// A request a kernel waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pending {
    /// Request id.
    pub req: ReqId,
    /// Resource index.
    pub res: u8,
    /// Wanted mode.
    pub mode: LockMode,
    /// Kind.
    pub kind: Kind,
}

impl Pending {
    /// A first request that waits in a queue (not a try-lock, not a conversion).
    pub fn queued_first(&self) -> bool {
        matches!(self.kind, Kind::Queued | Kind::Timed)
    }
}

/// A lock a kernel holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Held {
    /// Request id.
    pub req: ReqId,
    /// Resource index.
    pub res: u8,
    /// Mode.
    pub mode: LockMode,
    /// Reached this mode by a conversion.
    pub converted: bool,
}

/// One node's kernel, as the model sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Kernel {
    /// Next request id.
    pub next_req: ReqId,
    /// Requests waiting for a reply, in issue order.
    pub pending: Vec<Pending>,
    /// Locks the kernel holds, sorted.
    pub held: Vec<Held>,
    /// `RECOVERY_START` seen without a later `RECOVERY_DONE`.
    pub recovering: bool,
    /// Version of each resource's data in this node's page cache.
    pub cache: Vec<u8>,
    /// The node learnt it is in a minority partition.
    pub minority: bool,
    /// Held requests called back (`LOCK_CALLBACK`), with the mode the kernel may keep, until
    /// released or converted. The kernel answers with a release (any `Release` step).
    pub called: Vec<(ReqId, LockMode)>,
    /// The kernel lock cache's view of each resource (DESIGN.md §5.2): the data version of its
    /// last grant, and the data it cached under it. A grant with another version refreshes
    /// (re-reads the truth); a grant with the same version keeps the cached data.
    pub versioned: Vec<(Option<Version>, u8)>,
}

/// A first-request `Lock` a master received and has not answered yet (master-queue fairness).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Queued {
    /// The master.
    pub master: NodeId,
    /// Resource index.
    pub res: u8,
    /// Requesting node.
    pub node: NodeId,
    /// The `Lock`'s sequence number.
    pub seq: u64,
    /// Not a try-lock.
    pub queued: bool,
}

/// Safety violations observed on transitions (a property fails when one is set).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Violations {
    /// A grant reached a kernel while it was recovering.
    pub grant_while_recovering: bool,
    /// A grant for a mode that excludes writers reached a node with a stale page cache.
    pub stale_grant: bool,
    /// A grant for a mode that excludes writers carried the version of the kernel's last
    /// grant, so the kernel kept its cache, but another node had written meanwhile.
    pub stale_version: bool,
    /// A reply named a request that was not waiting.
    pub extra_reply: bool,
    /// A node that knew it was in a minority granted.
    pub minority_grant: bool,
    /// Two nodes ran a fence agent for the same loss.
    pub duplicate_fence: bool,
    /// A kernel got a grant on a resource a dead node held for writing before that node's
    /// journal was replayed.
    pub unreplayed_grant: bool,
    /// Two live nodes replayed one journal at once.
    pub concurrent_replay: bool,
    /// A kernel got a grant after a cold start before every journal was replayed.
    pub cold_grant: bool,
    /// A later request was granted while an earlier queued one waited (text says where).
    pub overtaken: Option<String>,
    /// A core rejected a message or event the model considers legitimate, or broke an
    /// invariant (text in `core_error`).
    pub core_error: Option<String>,
}

/// Things seen at least once, for `sometimes` properties. History, not state: `Eq` and
/// `Hash` ignore it, so two states that differ only in what their paths saw are one state to
/// the checker (each `sometimes` is still reached on the path that visits it first; a run
/// that misses one says MISSING and fails).
#[derive(Clone, Debug, Default)]
pub struct Seen {
    /// A kernel got a grant.
    pub grant: bool,
    /// A kernel got a grant with the version of its last one and kept its cache.
    pub version_kept: bool,
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
    /// A request was denied with `ETIMEDOUT`.
    pub timeout: bool,
    /// A kernel cancelled a waiting request.
    pub cancel: bool,
    /// A resync after a lost message finished its recovery somewhere.
    pub resync: bool,
    /// After a partition, a kernel got a grant.
    pub partition_grant: bool,
    /// After a partition, a kernel got a deny.
    pub partition_deny: bool,
    /// A kernel was called back for a lock it holds.
    pub callback: bool,
    /// Resources (bit per index) a dead node held for writing whose journal was replayed.
    pub replayed_res: u64,
    /// A kernel got a grant on a resource whose dead writer's journal was replayed.
    pub grant_after_replay: bool,
    /// A failed journal replay was retried.
    pub replay_retried: bool,
    /// A journal replay was started by a node other than one that started it earlier and
    /// died.
    pub replay_taken_over: bool,
    /// Replays started on this path: `(target, by)`, sorted.
    pub replay_starts: Vec<(NodeId, NodeId)>,
}

impl PartialEq for Seen {
    fn eq(&self, _: &Seen) -> bool {
        true
    }
}
impl Eq for Seen {}
impl Hash for Seen {
    fn hash<H: Hasher>(&self, _: &mut H) {}
}

/// A core with its content hash, so that fingerprinting a state hashes each core only when
/// it changes, and with the hash of its mirror image (for [`representative`]), computed at
/// most once per core. Equality is by hash: 64-bit fingerprints are what the checker
/// compares anyway.
#[derive(Clone, Debug)]
pub struct CoreCell {
    /// Hash of the core (in a [`representative`]: of its mirror image).
    pub hash: u64,
    inner: Arc<CoreBox>,
}

#[derive(Clone, Debug)]
struct CoreBox {
    core: Core,
    mirror_hash: OnceLock<u64>,
}

impl PartialEq for CoreCell {
    fn eq(&self, other: &CoreCell) -> bool {
        self.hash == other.hash
    }
}
impl Eq for CoreCell {}
impl Hash for CoreCell {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.hash.hash(h);
    }
}

impl CoreCell {
    fn new(core: Core) -> CoreCell {
        CoreCell {
            hash: fast_hash(&core),
            inner: Arc::new(CoreBox {
                core,
                mirror_hash: OnceLock::new(),
            }),
        }
    }

    /// The core.
    pub fn core(&self) -> &Core {
        &self.inner.core
    }

    /// Runs `f` on the core (cloned first if another state shares it) and rehashes it.
    fn update<T>(&mut self, f: impl FnOnce(&mut Core) -> T) -> T {
        let b = Arc::make_mut(&mut self.inner);
        let out = f(&mut b.core);
        b.mirror_hash = OnceLock::new();
        self.hash = fast_hash(&b.core);
        out
    }

    /// Hash of the core under [`mirror`]'s renaming in an `n`-node model.
    fn mirror_hash(&self, n: NodeId) -> u64 {
        *self
            .inner
            .mirror_hash
            .get_or_init(|| fast_hash(&mirror_core(&self.inner.core, n)))
    }
}

/// A fast 64-bit hasher for fingerprints (MurmurHash3's 64-bit mixing; std's SipHash was a
/// fifth of the checker's time).
#[derive(Default)]
struct FastHasher(u64);

impl FastHasher {
    fn add(&mut self, w: u64) {
        let k = w
            .wrapping_mul(0x87c3_7b91_1142_53d5)
            .rotate_left(31)
            .wrapping_mul(0x4cf5_ad43_2745_937f);
        self.0 = (self.0 ^ k)
            .rotate_left(27)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(b));
        }
        self.add(bytes.len() as u64);
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        // fmix64
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// [`FastHasher`] of `x`.
pub fn fast_hash<T: Hash + ?Sized>(x: &T) -> u64 {
    let mut h = FastHasher::default();
    x.hash(&mut h);
    h.finish()
}

/// The model state.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    /// Cores; `None` once the node is fenced (dead).
    pub cores: Vec<Option<CoreCell>>,
    /// Kernels, one per node.
    pub kernels: Vec<Kernel>,
    /// Messages in flight. FIFO network: sorted by `(from, to)`, send order within a pair;
    /// unordered network: a sorted multiset.
    pub net: Vec<Envelope>,
    /// The network is per-pair FIFO (the model's `fifo`, kept here for [`representative`]).
    pub fifo: bool,
    /// Epoch of the newest membership the model issued.
    pub epoch: u64,
    /// The node cut off by the crash, if any.
    pub cut: Option<NodeId>,
    /// The side of the partition that happened, if any (the other side is the rest).
    pub side: Option<NodeSet>,
    /// A node that left cleanly, until the survivors get the membership without it.
    pub departing: Option<NodeId>,
    /// A message was lost and the resync (a new epoch, same members) has not happened yet.
    pub resync: bool,
    /// Crashes, clean leaves and partitions so far.
    pub crashes: u8,
    /// Fence requests not yet carried out: `(by, target)`, sorted.
    pub fences: Vec<(NodeId, NodeId)>,
    /// Fence agents started for the current loss: `(target, by)`, sorted; cleared by each
    /// crash or leave.
    pub fence_agents: Vec<(NodeId, NodeId)>,
    /// Armed request timers `(node, req)`, sorted.
    pub timers: Vec<(NodeId, ReqId)>,
    /// Journal replays a driver runs (`Action::ReplayJournal`): `(by, target)`, sorted.
    pub replays: Vec<(NodeId, NodeId)>,
    /// Armed replay-retry timers `(node, target)`, sorted.
    pub retries: Vec<(NodeId, NodeId)>,
    /// Resources dead nodes held for writing whose journal is not replayed yet: `(node,
    /// res)`, sorted. The replay writes their new data (the ground truth moves then).
    pub unreplayed: Vec<(NodeId, u8)>,
    /// First mounter: the journals not replayed since the cold start (every node's at first).
    pub cold_dirty: NodeSet,
    /// Master-queue fairness record: first-request `Lock`s each master received in its
    /// current epoch and has not answered, in arrival order.
    pub queued: Vec<Queued>,
    /// Who holds what at each master as the wire shows it: `(master, res, node)`, sorted
    /// (set by a `Grant` sent or a `Recover` received, cleared by a `Release` to nothing
    /// received and by the master's next epoch). A `Lock` from a holder is a conversion.
    pub master_holds: Vec<(NodeId, u8, NodeId)>,
    /// Ground truth data version of each resource (bumped by each write release, and by the
    /// journal replay of a node fenced while holding a write lock).
    pub truth: Vec<u8>,
    /// Operations left.
    pub ops_left: u8,
    /// Cancels left.
    pub cancels_left: u8,
    /// Losses left.
    pub losses_left: u8,
    /// Journal replay failures left.
    pub replay_failures_left: u8,
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
    /// Node's kernel stops waiting for `req` (`KernelCancel`).
    Cancel(NodeId, ReqId),
    /// The timer of node's request `req` fires.
    Timer(NodeId, ReqId),
    /// Deliver the message (the head of its channel on a FIFO network).
    Deliver(Envelope),
    /// The network loses the message (the daemon then asks for a resync).
    Lose(Envelope),
    /// The resync: every member gets the same membership in a new epoch.
    Resync,
    /// Cut `node` off: survivors get the new membership now, the cut node later.
    Crash(NodeId),
    /// The cut node notices it is alone.
    Notice(NodeId),
    /// The network splits into the model's partition side and the rest; each side gets its
    /// own membership at once.
    Partition,
    /// The fence agent of `by` fences `target` (killing it) and confirms.
    Fence(NodeId, NodeId),
    /// The driver of `by` finishes replaying `target`'s journal.
    Replay(NodeId, NodeId),
    /// The driver of `by` fails to replay `target`'s journal.
    ReplayFail(NodeId, NodeId),
    /// The replay-retry timer of `by` for `target` fires.
    ReplayRetry(NodeId, NodeId),
    /// `node`'s daemon stops cleanly (its kernel holds and waits for nothing): its core
    /// announces the leave and the process exits.
    Leave(NodeId),
    /// The survivors get the membership without the node that left.
    Depart(NodeId),
}

/// What a kernel of [`MxfsModel::refuse_inval`] answers to a `CACHE_INVAL` (`-EBUSY`).
pub const INVAL_REFUSED_ERRNO: i32 = -16;

impl MxfsModel {
    /// The `just model` scenario: 3 nodes, 2 resources, 1 crash, 3 kernel operations (queued
    /// PR or EX requests, or PR <-> EX conversions), releases free, FIFO channels. See
    /// README.md.
    pub fn exhaustive() -> MxfsModel {
        MxfsModel {
            nodes: 3,
            resources: pick_resources(3, 2),
            ops: 3,
            asks: vec![Ask::Wait(LockMode::Pr), Ask::Wait(LockMode::Ex)],
            converts: vec![(LockMode::Pr, LockMode::Ex), (LockMode::Ex, LockMode::Pr)],
            max_crashes: 1,
            kernel_waits: 1,
            cancels: 0,
            losses: 0,
            partition: None,
            partition_first: false,
            fifo: true,
            symmetry: true,
            refuse_inval: NodeSet::EMPTY,
            replay_failures: 0,
            cold_start: None,
        }
    }

    /// The bounded scenarios of `just verify` (`just model-bounded`), each exhaustive; see
    /// README.md for why these.
    pub fn bounded_suite() -> Vec<(&'static str, MxfsModel)> {
        let all_waits: Vec<Ask> = MODES.iter().map(|m| Ask::Wait(*m)).collect();
        vec![
            (
                "crash: 2 ops, PR/EX and try-EX, PR<->EX, 1 crash or leave",
                MxfsModel {
                    ops: 2,
                    asks: vec![
                        Ask::Wait(LockMode::Pr),
                        Ask::Wait(LockMode::Ex),
                        Ask::Try(LockMode::Ex),
                    ],
                    ..MxfsModel::exhaustive()
                },
            ),
            (
                "replay: 2 ops, EX, 1 crash or leave, 1 failed journal replay",
                MxfsModel {
                    ops: 2,
                    asks: vec![Ask::Wait(LockMode::Ex)],
                    converts: vec![],
                    replay_failures: 1,
                    ..MxfsModel::exhaustive()
                },
            ),
            (
                "six modes: 3 ops, every mode asked and try-EX, the conversion cycle, no crash",
                MxfsModel {
                    ops: 3,
                    asks: [all_waits, vec![Ask::Try(LockMode::Ex)]].concat(),
                    converts: CONVERT_CYCLE.to_vec(),
                    max_crashes: 0,
                    ..MxfsModel::exhaustive()
                },
            ),
            (
                "queues: 3 ops, NL/PR/EX and try-PR, two waits per kernel, no crash",
                MxfsModel {
                    ops: 3,
                    asks: vec![
                        Ask::Wait(LockMode::Nl),
                        Ask::Wait(LockMode::Pr),
                        Ask::Wait(LockMode::Ex),
                        Ask::Try(LockMode::Pr),
                    ],
                    converts: vec![],
                    max_crashes: 0,
                    kernel_waits: 2,
                    ..MxfsModel::exhaustive()
                },
            ),
            (
                "deadlock: 4 ops, PR and PR->EX (two holders converting), no crash",
                MxfsModel {
                    ops: 4,
                    asks: vec![Ask::Wait(LockMode::Pr)],
                    converts: vec![(LockMode::Pr, LockMode::Ex)],
                    max_crashes: 0,
                    ..MxfsModel::exhaustive()
                },
            ),
            (
                "refused inval: 2 ops, PR/EX, PR<->EX, node 1's kernel refuses every CACHE_INVAL",
                MxfsModel {
                    ops: 2,
                    max_crashes: 0,
                    refuse_inval: NodeSet::EMPTY.with(1),
                    ..MxfsModel::exhaustive()
                },
            ),
            (
                "first mount: 3 ops, PR/EX and try-EX, nodes 0 and 2 start fresh, node 1 is down",
                MxfsModel {
                    ops: 3,
                    asks: vec![
                        Ask::Wait(LockMode::Pr),
                        Ask::Wait(LockMode::Ex),
                        Ask::Try(LockMode::Ex),
                    ],
                    converts: vec![],
                    max_crashes: 0,
                    cold_start: Some(NodeSet::EMPTY.with(0).with(2)),
                    ..MxfsModel::exhaustive()
                },
            ),
            (
                "faults: 2 ops, timed EX, PR, 1 cancel, 1 lost message + resync, no crash",
                MxfsModel {
                    ops: 2,
                    asks: vec![Ask::Timed(LockMode::Ex), Ask::Wait(LockMode::Pr)],
                    converts: vec![],
                    max_crashes: 0,
                    cancels: 1,
                    losses: 1,
                    ..MxfsModel::exhaustive()
                },
            ),
        ]
    }

    /// The simulation scenario: 5 nodes, 3 resources, 2 crashes, more ops, every mode, every
    /// conversion, timeouts, cancels and lost messages.
    pub fn simulation() -> MxfsModel {
        let mut asks: Vec<Ask> = MODES.iter().map(|m| Ask::Wait(*m)).collect();
        asks.extend([
            Ask::Try(LockMode::Ex),
            Ask::Try(LockMode::Pr),
            Ask::Timed(LockMode::Pw),
            Ask::Timed(LockMode::Cr),
        ]);
        let mut converts = Vec::new();
        for a in MODES {
            for b in MODES {
                if a != b {
                    converts.push((a, b));
                }
            }
        }
        MxfsModel {
            nodes: 5,
            resources: pick_resources(5, 3),
            ops: 12,
            asks,
            converts,
            max_crashes: 2,
            kernel_waits: 2,
            cancels: 2,
            losses: 2,
            partition: None,
            partition_first: false,
            fifo: true,
            symmetry: false,
            refuse_inval: NodeSet::EMPTY,
            replay_failures: 1,
            cold_start: None,
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
        let Some(cell) = s.cores[node as usize].as_mut() else {
            return;
        };
        let mut out = Vec::new();
        let (handled, checked) = cell.update(|core| {
            let handled = core.handle(0, ev, &mut out);
            (handled, core.check_invariants())
        });
        if let Err(e) = handled {
            // A peer message may legitimately be from an old epoch, or a BAST may find the
            // lock already given up, or a timer its request answered; anything else is a
            // protocol slip.
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
        if let Err(e) = checked {
            s.bad.core_error.get_or_insert(format!("n{node}: {e}"));
        }
        let mut invals = Vec::new();
        for a in out {
            if let Action::Kernel(KernelMsg::CacheInval { resource, .. }) = &a {
                invals.push(*resource);
            }
            self.apply(s, node, a);
        }
        // The kernel answers each invalidation once the batch is carried out: done, or
        // refused by a kernel of `refuse_inval`.
        for resource in invals {
            let errno = if self.refuse_inval.contains(node) {
                INVAL_REFUSED_ERRNO
            } else {
                0
            };
            self.feed(s, node, Event::CacheInvalDone { resource, errno });
        }
    }

    fn apply(&self, s: &mut State, node: NodeId, a: Action) {
        let n = node as usize;
        match a {
            Action::Send { to, msg } => {
                self.observe_send(s, node, to, &msg.body);
                if s.cut.is_some_and(|c| c == node || c == to)
                    || s.side
                        .is_some_and(|side| side.contains(node) != side.contains(to))
                    || s.cores[to as usize].is_none()
                {
                    return; // the partition eats it
                }
                let e = Envelope {
                    from: node,
                    to,
                    msg,
                };
                let at = if self.fifo {
                    s.net.partition_point(|x| (x.from, x.to) <= (node, to))
                } else {
                    s.net.binary_search(&e).unwrap_or_else(|i| i)
                };
                s.net.insert(at, e);
            }
            Action::Kernel(k) => self.kernel(s, n, k),
            Action::SetTimer {
                id: TimerId::Request(req),
                ..
            } => {
                if let Err(at) = s.timers.binary_search(&(node, req)) {
                    s.timers.insert(at, (node, req));
                }
            }
            Action::CancelTimer {
                id: TimerId::Request(req),
            } => {
                if let Ok(at) = s.timers.binary_search(&(node, req)) {
                    s.timers.remove(at);
                }
            }
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
            Action::SetTimer {
                id: TimerId::ReplayRetry(target),
                ..
            } => {
                if let Err(at) = s.retries.binary_search(&(node, target)) {
                    s.retries.insert(at, (node, target));
                }
            }
            Action::CancelTimer {
                id: TimerId::ReplayRetry(target),
            } => {
                if let Ok(at) = s.retries.binary_search(&(node, target)) {
                    s.retries.remove(at);
                }
            }
            Action::ReplayJournal { node: target, .. } => {
                if s.replays.iter().any(|(by, t)| *t == target && *by != node) {
                    s.bad.concurrent_replay = true;
                }
                if s.seen
                    .replay_starts
                    .iter()
                    .any(|(t, by)| *t == target && *by != node && s.cores[*by as usize].is_none())
                {
                    s.seen.replay_taken_over = true;
                }
                if let Err(at) = s.seen.replay_starts.binary_search(&(target, node)) {
                    s.seen.replay_starts.insert(at, (target, node));
                }
                if let Err(at) = s.replays.binary_search(&(node, target)) {
                    s.replays.insert(at, (node, target));
                }
            }
            Action::SelfFence { .. } => {}
        }
    }

    /// Master-queue fairness, judged on the wire: a `Grant` a master sends for a first
    /// request must not overtake an earlier first request it received (same resource, same
    /// epoch) that is still unanswered. Conversions (a `Lock` from a node the master granted)
    /// are not judged: they legitimately go first.
    fn observe_send(&self, s: &mut State, from: NodeId, to: NodeId, body: &PeerBody) {
        match body {
            PeerBody::Release { to: Some(_), .. } => s.seen.conversion = true,
            PeerBody::Grant { resource, seq, .. } => {
                let i = self.res_index(resource);
                if let Some(at) = s
                    .queued
                    .iter()
                    .position(|q| q.master == from && q.res == i && q.node == to && q.seq == *seq)
                {
                    if let Some(w) = s.queued[..at]
                        .iter()
                        .find(|q| q.master == from && q.res == i && q.queued)
                    {
                        let g = s.queued[at];
                        s.bad.overtaken.get_or_insert(format!(
                            "master n{from}: Lock n{} seq {} (res {i}) granted while the earlier \
                             Lock n{} seq {} waits",
                            g.node, g.seq, w.node, w.seq
                        ));
                    }
                    s.queued.remove(at);
                }
                if let Err(at) = s.master_holds.binary_search(&(from, i, to)) {
                    s.master_holds.insert(at, (from, i, to));
                }
            }
            PeerBody::Deny { resource, seq, .. } => {
                let i = self.res_index(resource);
                s.queued
                    .retain(|q| !(q.master == from && q.res == i && q.node == to && q.seq == *seq));
            }
            _ => {}
        }
    }

    /// What a master learns from a message it accepts (see [`MxfsModel::observe_send`]).
    fn observe_delivery(&self, s: &mut State, e: &Envelope) {
        let Some(cell) = s.cores[e.to as usize].as_ref() else {
            return;
        };
        if e.msg.epoch != cell.core().epoch() || !cell.core().members().contains(e.from) {
            return; // dropped or held for a later epoch: not judged
        }
        match &e.msg.body {
            PeerBody::Lock {
                resource,
                noqueue,
                seq,
                ..
            } => {
                let i = self.res_index(resource);
                if s.master_holds.binary_search(&(e.to, i, e.from)).is_err() {
                    s.queued.push(Queued {
                        master: e.to,
                        res: i,
                        node: e.from,
                        seq: *seq,
                        queued: !noqueue,
                    });
                }
            }
            PeerBody::Release {
                resource, to: None, ..
            } => {
                let i = self.res_index(resource);
                if let Ok(at) = s.master_holds.binary_search(&(e.to, i, e.from)) {
                    s.master_holds.remove(at);
                }
            }
            PeerBody::Recover { resource, .. } => {
                let i = self.res_index(resource);
                if let Err(at) = s.master_holds.binary_search(&(e.to, i, e.from)) {
                    s.master_holds.insert(at, (e.to, i, e.from));
                }
            }
            _ => {}
        }
    }

    /// A master's queues are rebuilt in a new epoch: forget what it received before.
    fn forget_master(s: &mut State, m: NodeId) {
        s.queued.retain(|q| q.master != m);
        s.master_holds.retain(|h| h.0 != m);
    }

    /// Feeds a membership to `m` (the master's fairness record starts afresh).
    fn membership(&self, s: &mut State, m: NodeId, members: NodeSet) {
        let epoch = s.epoch;
        Self::forget_master(s, m);
        self.feed(s, m, Event::Membership { epoch, members });
    }

    fn kernel(&self, s: &mut State, n: usize, k: KernelMsg) {
        match k {
            KernelMsg::CacheInval { .. } if self.refuse_inval.contains(n as NodeId) => {}
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
                version,
            } => {
                let i = self.res_index(&resource);
                if s.unreplayed.iter().any(|(_, r)| *r == i) {
                    s.bad.unreplayed_grant = true;
                }
                if !s.cold_dirty.is_empty() {
                    s.bad.cold_grant = true;
                }
                if s.seen.replayed_res & (1 << i) != 0 {
                    s.seen.grant_after_replay = true;
                }
                // The kernel lock cache refreshes when the version differs (or is unknown).
                let v = &mut s.kernels[n].versioned[i as usize];
                if version.is_none() || version != v.0 {
                    *v = (version, s.truth[i as usize]);
                } else {
                    s.seen.version_kept = true;
                }
                if !compat(mode, LockMode::Pw) && v.1 != s.truth[i as usize] {
                    s.bad.stale_version = true;
                }
                s.seen.grant = true;
                if s.side.is_some() {
                    s.seen.partition_grant = true;
                }
                let kn = &mut s.kernels[n];
                if kn.recovering {
                    s.bad.grant_while_recovering = true;
                }
                if kn.minority {
                    s.bad.minority_grant = true;
                }
                // Modes that exclude writers must see the newest data.
                if !compat(mode, LockMode::Pw) && kn.cache[i as usize] != s.truth[i as usize] {
                    s.bad.stale_grant = true;
                }
                let Some(at) = kn.pending.iter().position(|p| p.req == req_id) else {
                    s.bad.extra_reply = true;
                    return;
                };
                let p = kn.pending.remove(at);
                // Local-queue fairness: a first request is granted only after every earlier
                // queued first request of this node on this resource is answered.
                if p.kind != Kind::Convert {
                    if let Some(w) = kn.pending[..at]
                        .iter()
                        .find(|w| w.res == i && w.queued_first())
                    {
                        s.bad.overtaken.get_or_insert(format!(
                            "node n{n}: request {} ({:?}, res {i}) granted while the earlier \
                             request {} ({:?}) waits",
                            p.req, p.mode, w.req, w.mode
                        ));
                    }
                }
                let converted = p.kind == Kind::Convert;
                if converted {
                    s.seen.conversion = true;
                    kn.held.retain(|h| h.req != req_id);
                    kn.called.retain(|(r, _)| *r != req_id);
                }
                kn.held.push(Held {
                    req: req_id,
                    res: i,
                    mode,
                    converted,
                });
                kn.held.sort();
            }
            KernelMsg::Deny { req_id, errno, .. } => {
                s.seen.deny = true;
                if s.side.is_some() {
                    s.seen.partition_deny = true;
                }
                if errno == mxfs_core::ETIMEDOUT {
                    s.seen.timeout = true;
                }
                let kn = &mut s.kernels[n];
                match kn.pending.iter().position(|p| p.req == req_id) {
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
            // A callback must name a lock this kernel holds and let it keep a weaker mode
            // (never EX); a second one only asks it to keep less. The kernel answers by
            // releasing the lock (a `Release` step, which the checker tries at every point).
            KernelMsg::Callback { req_id, mode, .. } => {
                s.seen.callback = true;
                let kn = &mut s.kernels[n];
                let Some(h) = kn.held.iter().find(|h| h.req == req_id) else {
                    s.bad.core_error.get_or_insert(format!(
                        "node n{n}: LOCK_CALLBACK for request {req_id}, which the kernel does \
                         not hold"
                    ));
                    return;
                };
                let told = kn.called.iter().find(|(r, _)| *r == req_id).map(|c| c.1);
                let weaker = |a: LockMode, b: LockMode| {
                    a != b
                        && LockMode::ALL
                            .iter()
                            .all(|x| !compat(a, *x) || compat(b, *x))
                };
                if mode == LockMode::Ex
                    || !weaker(h.mode, mode)
                    || told.is_some_and(|t| !weaker(t, mode))
                {
                    s.bad.core_error.get_or_insert(format!(
                        "node n{n}: LOCK_CALLBACK for request {req_id} (held {:?}, told {told:?}) \
                         may keep {mode:?}",
                        h.mode
                    ));
                    return;
                }
                kn.called.retain(|(r, _)| *r != req_id);
                kn.called.push((req_id, mode));
                kn.called.sort();
            }
        }
    }

    /// Kills `target`: its kernel's locks vanish; what it held for writing waits for its
    /// journal replay (its log may hold changes only partly at their home locations); replays
    /// it ran stop.
    fn kill(&self, s: &mut State, target: NodeId) {
        let t = target as usize;
        if s.cores[t].is_none() {
            return;
        }
        s.cores[t] = None;
        for h in std::mem::take(&mut s.kernels[t].held) {
            if writes(h.mode) {
                if let Err(at) = s.unreplayed.binary_search(&(target, h.res)) {
                    s.unreplayed.insert(at, (target, h.res));
                }
            }
        }
        s.replays.retain(|(by, _)| *by != target);
        s.retries.retain(|(by, _)| *by != target);
        s.kernels[t].pending.clear();
        s.kernels[t].called.clear();
        s.net.retain(|e| e.from != target && e.to != target);
        s.fences.retain(|(by, _)| *by != target);
        s.timers.retain(|(n, _)| *n != target);
        Self::forget_master(s, target);
    }

    /// Whether nothing can happen any more.
    pub fn quiescent(&self, s: &State) -> bool {
        if !s.net.is_empty()
            || !s.timers.is_empty()
            || !s.fences.is_empty()
            || !s.replays.is_empty()
            || !s.retries.is_empty()
            || s.resync
        {
            return false;
        }
        let mut acts = Vec::new();
        self.actions(s, &mut acts);
        acts.is_empty()
    }

    /// Messages that may be delivered (or lost) next.
    fn deliverable<'a>(&self, s: &'a State) -> impl Iterator<Item = &'a Envelope> + 'a {
        let fifo = self.fifo;
        s.net.iter().enumerate().filter_map(move |(i, e)| {
            let head = i == 0 || {
                let p = &s.net[i - 1];
                if fifo {
                    (p.from, p.to) != (e.from, e.to)
                } else {
                    p != e
                }
            };
            head.then_some(e)
        })
    }

    /// Nothing the cores have not yet seen is in flight or due: no message, fence, resync,
    /// membership or timer. In such a state only kernels can act.
    pub fn quiet(&self, s: &State) -> bool {
        s.net.is_empty()
            && s.fences.is_empty()
            && s.replays.is_empty()
            && s.retries.is_empty()
            && !s.resync
            && s.departing.is_none()
            && s.cut
                .is_none_or(|c| s.cores[c as usize].is_none() || s.kernels[c as usize].minority)
    }

    /// Kernels cache locks until called back (DESIGN.md §5.2), so every kernel holder whose
    /// mode blocks a conversion queued at a master, or the head of a master's wait queue, has
    /// been called back with a mode that no longer blocks it. Judged once the network is
    /// quiet, on live majority nodes.
    pub fn blockers_called_back(&self, s: &State) -> Result<(), String> {
        for cell in s.cores.iter().flatten() {
            for d in cell.core().dump_master() {
                let Some(i) = self.resources.iter().position(|r| *r == d.resource) else {
                    continue;
                };
                for e in d.converting.iter().chain(d.waiting.first()) {
                    for (k, kn) in s.kernels.iter().enumerate() {
                        if k as NodeId == e.node || s.cores[k].is_none() || kn.minority {
                            continue;
                        }
                        for h in kn.held.iter().filter(|h| h.res as usize == i) {
                            if compat(h.mode, e.mode) {
                                continue;
                            }
                            let told = kn.called.iter().find(|(r, _)| *r == h.req).map(|c| c.1);
                            if !told.is_some_and(|t| compat(t, e.mode)) {
                                return Err(format!(
                                    "n{k} req {} holds {:?} on res {i}, blocking n{}'s {:?} at \
                                     the master, and was called back with {told:?}",
                                    h.req, h.mode, e.node, e.mode
                                ));
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether kernels on both sides of a partition would be a majority (the model's own rule:
    /// more than half of the configured nodes).
    pub fn majority(&self, side: NodeSet) -> bool {
        2 * side.len() > self.nodes as usize
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
    let swap = |x: NodeId| swap_node(n, x);
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

fn swap_node(n: NodeId, x: NodeId) -> NodeId {
    if x == 0 {
        n - 1
    } else if x == n - 1 {
        0
    } else {
        x
    }
}

impl Model for MxfsModel {
    type State = State;
    type Action = Step;

    fn init_states(&self) -> Vec<State> {
        let n = self.nodes as usize;
        let r = self.resources.len();
        let core = |i: NodeId| match self.cold_start {
            None => Some(CoreCell::new(Core::new(Config::booted(i, self.nodes)))),
            Some(up) => up
                .contains(i)
                .then(|| CoreCell::new(Core::new(Config::fresh(i, self.nodes)))),
        };
        let mut s = State {
            cores: (0..self.nodes).map(core).collect(),
            kernels: vec![
                Kernel {
                    next_req: 1,
                    cache: vec![0; r],
                    versioned: vec![(None, 0); r],
                    ..Default::default()
                };
                n
            ],
            net: Vec::new(),
            fifo: self.fifo,
            epoch: 1,
            cut: None,
            side: None,
            departing: None,
            resync: false,
            crashes: 0,
            fences: Vec::new(),
            fence_agents: Vec::new(),
            timers: Vec::new(),
            replays: Vec::new(),
            retries: Vec::new(),
            unreplayed: Vec::new(),
            cold_dirty: match self.cold_start {
                None => NodeSet::EMPTY,
                Some(_) => NodeSet::first(self.nodes),
            },
            queued: Vec::new(),
            master_holds: Vec::new(),
            truth: vec![0; r],
            ops_left: self.ops,
            cancels_left: self.cancels,
            losses_left: self.losses,
            replay_failures_left: self.replay_failures,
            bad: Violations::default(),
            seen: Seen::default(),
        };
        if let Some(up) = self.cold_start {
            for node in up.iter() {
                self.feed(
                    &mut s,
                    node,
                    Event::Membership {
                        epoch: 1,
                        members: up,
                    },
                );
            }
        }
        vec![s]
    }

    fn actions(&self, s: &State, acts: &mut Vec<Step>) {
        // One partition, crash, leave or resync at a time: the next may start once the last
        // cut node is fenced, the last leaver is out of the membership and the last resync
        // installed.
        let settled = s.cut.is_none_or(|c| s.cores[c as usize].is_none())
            && s.departing.is_none()
            && !s.resync
            && s.side.is_none();
        for node in 0..self.nodes {
            let n = node as usize;
            if s.cores[n].is_none() {
                continue;
            }
            let k = &s.kernels[n];
            let waiting_for_split = self.partition_first && s.side.is_none();
            if s.ops_left > 0 && k.pending.len() < self.kernel_waits as usize && !waiting_for_split
            {
                for i in 0..self.resources.len() as u8 {
                    // With one process per node, one lock per resource: a second one would be
                    // the process deadlocking on itself, which the hooks never do.
                    if self.kernel_waits == 1 && k.held.iter().any(|h| h.res == i) {
                        continue;
                    }
                    for ask in &self.asks {
                        acts.push(Step::Request(node, i, *ask));
                    }
                }
                for h in &k.held {
                    if k.pending.iter().any(|p| p.req == h.req) {
                        continue;
                    }
                    for (from, to) in &self.converts {
                        if *from == h.mode {
                            acts.push(Step::Convert(node, h.req, *to));
                        }
                    }
                }
            }
            for h in &k.held {
                if !k.pending.iter().any(|p| p.req == h.req) {
                    acts.push(Step::Release(node, h.req));
                }
            }
            if s.cancels_left > 0 {
                for p in &k.pending {
                    if p.kind != Kind::Convert {
                        acts.push(Step::Cancel(node, p.req));
                    }
                }
            }
            if s.crashes < self.max_crashes && settled {
                if self.partition.is_none() {
                    acts.push(Step::Crash(node));
                }
                let idle = k.held.is_empty() && k.pending.is_empty();
                // A node whose driver replays a journal cannot leave cleanly (the core refuses:
                // it must be fenced, as after a crash).
                let running = s.cores[n].as_ref().is_some_and(|c| {
                    c.core().phase() != Phase::Stopped && c.core().replaying().is_empty()
                });
                if idle && running && self.partition.is_none() {
                    acts.push(Step::Leave(node));
                }
            }
            if s.cut == Some(node) && !k.minority {
                acts.push(Step::Notice(node));
            }
        }
        if self.partition.is_some() && s.crashes < self.max_crashes && settled {
            acts.push(Step::Partition);
        }
        for (node, req) in &s.timers {
            acts.push(Step::Timer(*node, *req));
        }
        for e in self.deliverable(s) {
            acts.push(Step::Deliver(e.clone()));
        }
        if s.losses_left > 0 && settled {
            for e in self.deliverable(s) {
                acts.push(Step::Lose(e.clone()));
            }
        }
        if s.resync {
            acts.push(Step::Resync);
        }
        for (by, target) in &s.fences {
            acts.push(Step::Fence(*by, *target));
        }
        for (by, target) in &s.replays {
            acts.push(Step::Replay(*by, *target));
            if s.replay_failures_left > 0 {
                acts.push(Step::ReplayFail(*by, *target));
            }
        }
        for (by, target) in &s.retries {
            acts.push(Step::ReplayRetry(*by, *target));
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
                let (mode, flags, kind, timeout_ms) = match ask {
                    Ask::Wait(m) => (m, LockFlags::empty(), Kind::Queued, 0),
                    Ask::Try(m) => (m, LockFlags::NOQUEUE, Kind::Try, 0),
                    Ask::Timed(m) => (m, LockFlags::TIMEOUT_MS, Kind::Timed, REQUEST_TIMEOUT_MS),
                };
                k.pending.push(Pending {
                    req: req_id,
                    res: i,
                    mode,
                    kind,
                });
                s.ops_left -= 1;
                let ev = Event::KernelRequest {
                    req_id,
                    resource: self.res(i),
                    mode,
                    flags,
                    timeout_ms,
                };
                self.feed(&mut s, node, ev);
            }
            Step::Convert(node, req_id, mode) => {
                let k = &mut s.kernels[node as usize];
                let i = k.held.iter().find(|h| h.req == req_id)?.res;
                k.pending.push(Pending {
                    req: req_id,
                    res: i,
                    mode,
                    kind: Kind::Convert,
                });
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
                let at = k.held.iter().position(|h| h.req == req_id)?;
                let h = k.held.remove(at);
                k.called.retain(|(r, _)| *r != req_id);
                let i = h.res as usize;
                if writes(h.mode) {
                    // The kernel wrote back under the lock: new data, and its own cache has it.
                    s.truth[i] = s.truth[i].wrapping_add(1);
                    s.kernels[node as usize].cache[i] = s.truth[i];
                    s.kernels[node as usize].versioned[i].1 = s.truth[i];
                }
                self.feed(
                    &mut s,
                    node,
                    Event::KernelRelease {
                        req_id,
                        resource: self.res(h.res),
                    },
                );
            }
            Step::Cancel(node, req_id) => {
                let k = &mut s.kernels[node as usize];
                let at = k.pending.iter().position(|p| p.req == req_id)?;
                k.pending.remove(at);
                s.cancels_left -= 1;
                s.seen.cancel = true;
                self.feed(&mut s, node, Event::KernelCancel { req_id });
            }
            Step::Timer(node, req_id) => {
                let at = s.timers.binary_search(&(node, req_id)).ok()?;
                s.timers.remove(at);
                self.feed(
                    &mut s,
                    node,
                    Event::Timer {
                        id: TimerId::Request(req_id),
                    },
                );
            }
            Step::Deliver(e) => {
                let at = s.net.iter().position(|x| *x == e)?;
                s.net.remove(at);
                if let PeerBody::Bast { .. } = e.msg.body {
                    s.seen.bast = true;
                }
                self.observe_delivery(&mut s, &e);
                self.feed(
                    &mut s,
                    e.to,
                    Event::Peer {
                        from: e.from,
                        msg: e.msg,
                    },
                );
            }
            Step::Lose(e) => {
                let at = s.net.iter().position(|x| *x == e)?;
                s.net.remove(at);
                s.losses_left -= 1;
                s.resync = true;
            }
            Step::Resync => {
                s.resync = false;
                s.seen.resync = true;
                s.epoch += 1;
                let members = s.live();
                for m in members.iter() {
                    self.membership(&mut s, m, members);
                }
            }
            Step::Crash(node) => {
                s.crashes += 1;
                s.epoch += 1;
                s.fence_agents.clear();
                s.cut = Some(node);
                s.net.retain(|e| e.from != node && e.to != node);
                let members = s.live().without(node);
                for m in members.iter() {
                    self.membership(&mut s, m, members);
                }
            }
            Step::Notice(node) => {
                s.kernels[node as usize].minority = true;
                let members = NodeSet::EMPTY.with(node);
                self.membership(&mut s, node, members);
            }
            Step::Partition => {
                let side = self.partition?;
                let all = s.live();
                let b = all.minus(side);
                let a = all.minus(b);
                s.crashes += 1;
                s.epoch += 1;
                s.fence_agents.clear();
                s.side = Some(side);
                s.net
                    .retain(|e| side.contains(e.from) == side.contains(e.to));
                for group in [a, b] {
                    if !self.majority(group) {
                        for m in group.iter() {
                            s.kernels[m as usize].minority = true;
                        }
                    }
                }
                for group in [a, b] {
                    for m in group.iter() {
                        self.membership(&mut s, m, group);
                    }
                }
            }
            Step::Fence(by, target) => {
                let at = s.fences.binary_search(&(by, target)).ok()?;
                s.fences.remove(at);
                self.kill(&mut s, target);
                self.feed(&mut s, by, Event::FenceConfirmed { node: target });
            }
            Step::Replay(by, target) => {
                let at = s.replays.binary_search(&(by, target)).ok()?;
                s.replays.remove(at);
                // The replay writes what the log held to its home locations: new data.
                for (_, i) in s.unreplayed.iter().filter(|(n, _)| *n == target) {
                    s.truth[*i as usize] = s.truth[*i as usize].wrapping_add(1);
                    s.seen.replayed_res |= 1 << *i;
                }
                s.unreplayed.retain(|(n, _)| *n != target);
                s.cold_dirty = s.cold_dirty.without(target);
                self.feed(&mut s, by, Event::JournalReplayed { node: target });
            }
            Step::ReplayFail(by, target) => {
                let at = s.replays.binary_search(&(by, target)).ok()?;
                s.replays.remove(at);
                s.replay_failures_left -= 1;
                self.feed(&mut s, by, Event::JournalReplayFailed { node: target });
            }
            Step::ReplayRetry(by, target) => {
                let at = s.retries.binary_search(&(by, target)).ok()?;
                s.retries.remove(at);
                s.seen.replay_retried = true;
                self.feed(
                    &mut s,
                    by,
                    Event::Timer {
                        id: TimerId::ReplayRetry(target),
                    },
                );
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
                s.timers.retain(|(n, _)| *n != node);
                Self::forget_master(&mut s, node);
            }
            Step::Depart(node) => {
                s.departing = None;
                s.epoch += 1;
                let members = s.live();
                for m in members.iter() {
                    self.membership(&mut s, m, members);
                }
                if !s.fences.iter().any(|(_, t)| *t == node) {
                    s.seen.clean_leave = true;
                }
            }
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let mut ps = vec![
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
            Property::always(
                "no kernel holder uses a lock whose data changed under an unchanged version",
                |_, s: &State| !s.bad.stale_version,
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
                "nothing a dead node held for writing is granted before its journal is replayed",
                |_, s: &State| !s.bad.unreplayed_grant,
            ),
            Property::always("one replay at a time per journal", |_, s: &State| {
                !s.bad.concurrent_replay
            }),
            Property::always(
                "no grant before every journal a first mounter must replay is replayed",
                |_, s: &State| !s.bad.cold_grant,
            ),
            Property::always(
                "cores accept every legitimate event and keep their invariants",
                |_, s: &State| s.bad.core_error.is_none(),
            ),
            Property::always(
                "a compatible newcomer never overtakes an earlier blocked request",
                |_, s: &State| s.bad.overtaken.is_none(),
            ),
            Property::always(
                "no wait-for cycle once the network is quiet",
                |m: &MxfsModel, s: &State| !m.quiet(s) || m.wait_for_cycle(s).is_none(),
            ),
            Property::always(
                "every holder blocking a queued request is called back once the network is quiet",
                |m: &MxfsModel, s: &State| !m.quiet(s) || m.blockers_called_back(s).is_ok(),
            ),
            Property::always(
                "every request is answered by quiescence",
                |m: &MxfsModel, s: &State| s.all_answered() || !m.quiescent(s),
            ),
            Property::sometimes("a grant", |_, s: &State| s.seen.grant),
            Property::sometimes("a deny", |_, s: &State| s.seen.deny),
            Property::sometimes("a BAST", |_, s: &State| s.seen.bast),
            Property::sometimes("a callback", |_, s: &State| s.seen.callback),
            Property::sometimes("a grant that keeps the kernel's cache", |_, s: &State| {
                s.seen.version_kept
            }),
        ];
        if !self.converts.is_empty() {
            ps.push(Property::sometimes("a conversion", |_, s: &State| {
                s.seen.conversion
            }));
        }
        if self.max_crashes > 0 || self.losses > 0 {
            ps.push(Property::sometimes("a recovery", |_, s: &State| {
                s.seen.recovery
            }));
        }
        if self.max_crashes > 0 && self.partition.is_none() {
            ps.push(Property::sometimes(
                "a clean leave without a fence",
                |_, s: &State| s.seen.clean_leave,
            ));
            ps.push(Property::sometimes(
                "a lock granted after its dead writer's journal replay",
                |_, s: &State| s.seen.grant_after_replay,
            ));
        }
        if self.max_crashes > 0 && self.replay_failures > 0 {
            ps.push(Property::sometimes(
                "a failed journal replay retried",
                |_, s: &State| s.seen.replay_retried,
            ));
        }
        if self.max_crashes > 1 && self.nodes >= 5 {
            ps.push(Property::sometimes(
                "a journal replay taken over from a dead replayer",
                |_, s: &State| s.seen.replay_taken_over,
            ));
        }
        if self.asks.iter().any(|a| matches!(a, Ask::Timed(_))) {
            ps.push(Property::sometimes("a timeout", |_, s: &State| {
                s.seen.timeout
            }));
        }
        if self.cancels > 0 {
            ps.push(Property::sometimes("a cancel", |_, s: &State| {
                s.seen.cancel
            }));
        }
        if self.losses > 0 {
            ps.push(Property::sometimes(
                "a resync after a lost message",
                |_, s: &State| s.seen.resync,
            ));
        }
        if self.kernel_waits > 1 {
            ps.push(Property::sometimes(
                "two first requests wait on one node for one resource",
                |_, s: &State| s.local_queue_formed(),
            ));
        }
        // Needs three live kernels (one holds, two wait) with one process each.
        let live_nodes = self.cold_start.map_or(self.nodes as usize, NodeSet::len);
        if self.ops >= 3 && (live_nodes >= 3 || self.kernel_waits >= 2) {
            ps.push(Property::sometimes(
                "two first requests wait at a master for one resource",
                |_, s: &State| s.master_queue_formed(),
            ));
        }
        if self.partition.is_some() {
            // Without a majority side this is never reached (the tests check that).
            ps.push(Property::sometimes(
                "a grant after a partition",
                |_, s: &State| s.seen.partition_grant,
            ));
            ps.push(Property::sometimes(
                "a deny after a partition",
                |_, s: &State| s.seen.partition_deny,
            ));
        }
        for m in MODES {
            let asked = self
                .asks
                .iter()
                .any(|a| matches!(a, Ask::Wait(x) | Ask::Try(x) | Ask::Timed(x) if *x == m));
            if asked {
                ps.push(mode_property(m, false));
            }
            if self.converts.iter().any(|(_, to)| *to == m) {
                ps.push(mode_property(m, true));
            }
        }
        ps
    }
}

/// Names of the per-mode `sometimes` properties: `[mode][converted]`.
pub const MODE_PROPERTY_NAMES: [[&str; 2]; 6] = [
    ["a request granted in NL", "a conversion to NL granted"],
    ["a request granted in CR", "a conversion to CR granted"],
    ["a request granted in CW", "a conversion to CW granted"],
    ["a request granted in PR", "a conversion to PR granted"],
    ["a request granted in PW", "a conversion to PW granted"],
    ["a request granted in EX", "a conversion to EX granted"],
];

fn mode_property(m: LockMode, converted: bool) -> Property<MxfsModel> {
    let name = MODE_PROPERTY_NAMES[mode_index(m)][usize::from(converted)];
    // Properties are plain fns: one per (mode, converted).
    macro_rules! holds {
        ($mode:expr, $conv:expr) => {
            |_: &MxfsModel, s: &State| s.holds_mode($mode, $conv)
        };
    }
    use LockMode::*;
    let f: fn(&MxfsModel, &State) -> bool = match (m, converted) {
        (Nl, false) => holds!(Nl, false),
        (Cr, false) => holds!(Cr, false),
        (Cw, false) => holds!(Cw, false),
        (Pr, false) => holds!(Pr, false),
        (Pw, false) => holds!(Pw, false),
        (Ex, false) => holds!(Ex, false),
        (Nl, true) => holds!(Nl, true),
        (Cr, true) => holds!(Cr, true),
        (Cw, true) => holds!(Cw, true),
        (Pr, true) => holds!(Pr, true),
        (Pw, true) => holds!(Pw, true),
        (Ex, true) => holds!(Ex, true),
    };
    Property::sometimes(name, f)
}

/// Vertices of the wait-for graph that are not kernel requests use "request ids" from the
/// top of the range: `lock_vertex(i)` is a node's cluster lock on resource `i` (cached or
/// held), `ask_vertex(i)` its request (first or conversion) in the master's queues for `i`.
const VERTEX_BASE: ReqId = ReqId::MAX - 64;

/// A node's cluster lock on resource index `i`, as a wait-for vertex "request id".
pub fn lock_vertex(i: u8) -> ReqId {
    ReqId::MAX - 2 * ReqId::from(i)
}

/// A node's entry in the master's convert or wait queue for resource index `i`.
pub fn ask_vertex(i: u8) -> ReqId {
    ReqId::MAX - 2 * ReqId::from(i) - 1
}

/// A vertex of the wait-for graph, for reports: "n1 req 2", "n1 lock on res 0" or "n1 entry
/// in the master queue of res 0".
pub fn show(x: (NodeId, ReqId)) -> String {
    if x.1 <= VERTEX_BASE {
        return format!("n{} req {}", x.0, x.1);
    }
    let d = ReqId::MAX - x.1;
    if d.is_multiple_of(2) {
        format!("n{} cluster lock on res {}", x.0, d / 2)
    } else {
        format!("n{} entry in the master queue of res {}", x.0, d / 2)
    }
}

/// One edge of the wait-for graph: `waiter` (node, req) waits for `blocker` (node, req).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitEdge {
    /// The waiting request.
    pub waiter: (NodeId, ReqId),
    /// What it waits for.
    pub blocker: (NodeId, ReqId),
    /// Why: "holds EX", "queued ahead".
    pub why: String,
}

impl MxfsModel {
    /// The wait-for graph over kernel requests: a waiting request waits for every lock on its
    /// resource held (by any live kernel, other than its own request) in a mode the DLM
    /// matrix says it cannot coexist with, and for every request queued ahead of it in its
    /// node's local queue (as the core reports it: this is how a conversion queued behind
    /// its node's other requests shows).
    pub fn wait_for_graph(&self, s: &State) -> Vec<WaitEdge> {
        let mut edges = Vec::new();
        for (n, k) in s.kernels.iter().enumerate() {
            let Some(cell) = s.cores[n].as_ref() else {
                continue;
            };
            let local = cell.core().dump_local();
            for p in &k.pending {
                let me = (n as NodeId, p.req);
                for (m, other) in s.kernels.iter().enumerate() {
                    if s.cores[m].is_none() {
                        continue;
                    }
                    for h in &other.held {
                        if h.res == p.res && (m, h.req) != (n, p.req) && !compat(h.mode, p.mode) {
                            edges.push(WaitEdge {
                                waiter: me,
                                blocker: (m as NodeId, h.req),
                                why: format!("holds {}", h.mode.name()),
                            });
                        }
                    }
                }
                let res = self.res(p.res);
                // Other nodes' cluster locks (cached or held): a lock no kernel holds still
                // blocks until its node gives it up.
                for (m, other) in s.cores.iter().enumerate() {
                    let Some(other) = other else { continue };
                    if m == n {
                        continue;
                    }
                    let held = other
                        .core()
                        .dump_local()
                        .into_iter()
                        .find(|l| l.resource == res)
                        .and_then(|l| l.held);
                    if let Some(h) = held.filter(|h| !compat(*h, p.mode)) {
                        edges.push(WaitEdge {
                            waiter: me,
                            blocker: (m as NodeId, lock_vertex(p.res)),
                            why: format!("its cluster lock is {}", h.name()),
                        });
                    }
                }
                // Its node's request at the master, if the node asked for it.
                edges.push(WaitEdge {
                    waiter: me,
                    blocker: (n as NodeId, ask_vertex(p.res)),
                    why: "its node asked the master".to_string(),
                });
                // Requests ahead of it in its node's queue (a conversion waits for none:
                // only conversions are ahead of one, and they are not ordered).
                if let Some(l) = local
                    .iter()
                    .find(|l| l.resource == res)
                    .filter(|_| p.kind != Kind::Convert)
                {
                    if let Some(at) = l.waiting.iter().position(|w| w.0 == p.req) {
                        for w in &l.waiting[..at] {
                            edges.push(WaitEdge {
                                waiter: me,
                                blocker: (n as NodeId, w.0),
                                why: format!("queued ahead ({})", w.1.name()),
                            });
                        }
                    }
                }
            }
        }
        // A node's cluster lock stays while its kernel holds the resource (not for its
        // waiters: with no holder left it is given up on a BAST), and while the node's own
        // request for the resource waits at the master (one message per resource in flight:
        // it cannot release meanwhile).
        for (m, k) in s.kernels.iter().enumerate() {
            if s.cores[m].is_none() {
                continue;
            }
            for h in &k.held {
                edges.push(WaitEdge {
                    waiter: (m as NodeId, lock_vertex(h.res)),
                    blocker: (m as NodeId, h.req),
                    why: "its kernel holds it".to_string(),
                });
            }
        }
        // The master's queues: a conversion waits only for the granted locks of other nodes
        // it cannot coexist with (conversions are not ordered among themselves); a first
        // request also waits for every conversion and every earlier first request.
        for cell in s.cores.iter().flatten() {
            for d in cell.core().dump_master() {
                let Some(i) = self.resources.iter().position(|r| *r == d.resource) else {
                    continue;
                };
                let i = i as u8;
                let queue: Vec<_> = d.converting.iter().chain(d.waiting.iter()).collect();
                for (at, e) in queue.iter().enumerate() {
                    let me = (e.node, ask_vertex(i));
                    edges.push(WaitEdge {
                        waiter: (e.node, lock_vertex(i)),
                        blocker: me,
                        why: "its node's request waits at the master".to_string(),
                    });
                    let ahead = if at < d.converting.len() {
                        &queue[..0]
                    } else {
                        &queue[..at]
                    };
                    for a in ahead {
                        if a.node != e.node {
                            edges.push(WaitEdge {
                                waiter: me,
                                blocker: (a.node, ask_vertex(i)),
                                why: format!("queued ahead at the master ({})", a.mode.name()),
                            });
                        }
                    }
                    for g in &d.granted {
                        if g.node != e.node && !compat(g.mode, e.mode) {
                            edges.push(WaitEdge {
                                waiter: me,
                                blocker: (g.node, lock_vertex(i)),
                                why: format!("granted {} at the master", g.mode.name()),
                            });
                        }
                    }
                }
            }
        }
        // Keep only edges into vertices that exist: an ask vertex with no master entry waits
        // for nothing and blocks nothing.
        let is_ask =
            |v: (NodeId, ReqId)| v.1 > VERTEX_BASE && !(ReqId::MAX - v.1).is_multiple_of(2);
        let asks: Vec<(NodeId, ReqId)> = edges
            .iter()
            .filter(|e| is_ask(e.waiter))
            .map(|e| e.waiter)
            .collect();
        edges.retain(|e| {
            !is_ask(e.blocker) || asks.contains(&e.blocker) || e.waiter.1 > VERTEX_BASE
        });
        edges.sort_by_key(|e| (e.waiter, e.blocker));
        edges.dedup_by(|a, b| (a.waiter, a.blocker) == (b.waiter, b.blocker));
        edges
    }

    /// A cycle of the wait-for graph, if any.
    pub fn wait_for_cycle(&self, s: &State) -> Option<Vec<WaitEdge>> {
        if s.kernels.iter().all(|k| k.pending.is_empty()) {
            return None;
        }
        let edges = self.wait_for_graph(s);
        // A request whose timer may still fire can leave the cycle.
        let timed = |x: &(NodeId, ReqId)| s.timers.binary_search(x).is_ok();
        let edges: Vec<WaitEdge> = edges.into_iter().filter(|e| !timed(&e.waiter)).collect();
        fn dfs(
            at: (NodeId, ReqId),
            edges: &[WaitEdge],
            path: &mut Vec<WaitEdge>,
            done: &mut Vec<(NodeId, ReqId)>,
        ) -> Option<Vec<WaitEdge>> {
            if let Some(i) = path.iter().position(|e| e.waiter == at) {
                return Some(path[i..].to_vec());
            }
            if done.contains(&at) {
                return None;
            }
            for e in edges.iter().filter(|e| e.waiter == at) {
                path.push(e.clone());
                if let Some(c) = dfs(e.blocker, edges, path, done) {
                    return Some(c);
                }
                path.pop();
            }
            done.push(at);
            None
        }
        let mut done = Vec::new();
        for e in &edges {
            let mut path = Vec::new();
            if let Some(c) = dfs(e.waiter, &edges, &mut path, &mut done) {
                return Some(c);
            }
        }
        None
    }

    /// For a report: every waiting request and the chain of what it waits for.
    pub fn explain_waits(&self, s: &State) -> Vec<String> {
        let edges = self.wait_for_graph(s);
        let mut out = Vec::new();
        for (n, k) in s.kernels.iter().enumerate() {
            if s.cores[n].is_none() {
                continue;
            }
            for p in &k.pending {
                let mut line = format!(
                    "n{n} req {} waits for {} {:?} on res {}",
                    p.req,
                    p.mode.name(),
                    p.kind,
                    p.res
                );
                let mut at = (n as NodeId, p.req);
                let mut seen = vec![at];
                while let Some(e) = edges.iter().find(|e| e.waiter == at) {
                    line.push_str(&format!(" -> {} ({})", show(e.blocker), e.why));
                    if seen.contains(&e.blocker) {
                        line.push_str(" [cycle]");
                        break;
                    }
                    seen.push(e.blocker);
                    at = e.blocker;
                }
                if !edges.iter().any(|e| e.waiter == (n as NodeId, p.req)) {
                    line.push_str(" -> nothing any kernel or other node holds (lost in the cores)");
                }
                out.push(line);
            }
        }
        out
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
    /// pairwise compatible per resource, by the model's own matrix.
    pub fn kernel_grants_compatible(&self) -> bool {
        let mut all: Vec<(u8, LockMode)> = Vec::new();
        for (n, k) in self.kernels.iter().enumerate() {
            if self.cores[n].is_none() {
                continue;
            }
            all.extend(k.held.iter().map(|h| (h.res, h.mode)));
        }
        all.iter().enumerate().all(|(a, (ia, ma))| {
            all[a + 1..]
                .iter()
                .all(|(ib, mb)| ia != ib || compat(*ma, *mb))
        })
    }

    /// Every core that finished a recovery has no master entry for a non-member.
    pub fn lost_node_purged(&self) -> bool {
        self.cores
            .iter()
            .flatten()
            .filter(|c| c.core().phase() == Phase::Normal && c.core().epoch() > 1)
            .all(|c| c.core().master_queue_nodes().is_subset(c.core().members()))
    }

    /// No live kernel waits for a reply.
    pub fn all_answered(&self) -> bool {
        self.kernels
            .iter()
            .enumerate()
            .all(|(n, k)| self.cores[n].is_none() || k.pending.is_empty())
    }

    /// Some live kernel holds a lock in `mode`, reached by a conversion or not.
    pub fn holds_mode(&self, mode: LockMode, converted: bool) -> bool {
        self.kernels.iter().enumerate().any(|(n, k)| {
            self.cores[n].is_some()
                && k.held
                    .iter()
                    .any(|h| h.mode == mode && h.converted == converted)
        })
    }

    /// Two queued first requests of one kernel wait for one resource.
    pub fn local_queue_formed(&self) -> bool {
        self.kernels.iter().any(|k| {
            k.pending.iter().enumerate().any(|(i, a)| {
                a.queued_first()
                    && k.pending[i + 1..]
                        .iter()
                        .any(|b| b.res == a.res && b.kind != Kind::Convert)
            })
        })
    }

    /// Two first-request `Lock`s wait at one master for one resource.
    pub fn master_queue_formed(&self) -> bool {
        self.queued.iter().enumerate().any(|(i, a)| {
            self.queued[i + 1..]
                .iter()
                .any(|b| b.master == a.master && b.res == a.res)
        })
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
            Step::Lose(e) => write!(
                f,
                "LOSE n{} -> n{}: {}",
                e.from,
                e.to,
                mxfs_core::sim::describe_body(&e.msg.body)
            ),
            other => write!(f, "{other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Symmetry.
// ---------------------------------------------------------------------------------------------

/// The renaming of the symmetry for an `n`-node model with resources `res`.
fn with_relabel<T>(n: NodeId, f: impl FnOnce(&Relabel<'_>) -> T) -> T {
    let res = cached_resources(n, 2);
    let swap_res = move |r: &ResourceId| {
        if *r == res[0] {
            res[1]
        } else if *r == res[1] {
            res[0]
        } else {
            *r
        }
    };
    let swap = move |x: NodeId| swap_node(n, x);
    let map = Relabel {
        node: &swap,
        resource: &swap_res,
    };
    f(&map)
}

fn mirror_core(c: &Core, n: NodeId) -> Core {
    with_relabel(n, |map| c.relabel(map))
}

/// `s` under the symmetry, with the cores given by `core` (a real relabel for [`mirror`], a
/// hash swap for [`representative`]).
fn mirror_with(s: &State, core: impl Fn(&CoreCell) -> CoreCell) -> State {
    let n = s.cores.len() as NodeId;
    let sw = |x: NodeId| swap_node(n, x);
    let swap_index = |i: u8| match i {
        0 => 1,
        1 => 0,
        x => x,
    };
    // Destructured, so that a new field fails to compile until it is mirrored.
    let State {
        cores,
        kernels,
        net,
        fifo,
        epoch,
        cut,
        side,
        departing,
        resync,
        crashes,
        fences,
        fence_agents,
        timers,
        replays,
        retries,
        unreplayed,
        cold_dirty,
        queued,
        master_holds,
        truth,
        ops_left,
        cancels_left,
        losses_left,
        replay_failures_left,
        bad,
        seen,
    } = s;
    let mut out_cores = vec![None; cores.len()];
    for (i, c) in cores.iter().enumerate() {
        out_cores[sw(i as NodeId) as usize] = c.as_ref().map(&core);
    }
    let mut out_kernels = vec![Kernel::default(); kernels.len()];
    for (i, k) in kernels.iter().enumerate() {
        out_kernels[sw(i as NodeId) as usize] = mirror_kernel(k);
    }
    let mut out_net: Vec<Envelope> = with_relabel(n, |map| {
        net.iter()
            .map(|e| Envelope {
                from: sw(e.from),
                to: sw(e.to),
                msg: map.msg(&e.msg),
            })
            .collect()
    });
    if *fifo {
        out_net.sort_by_key(|e| (e.from, e.to));
    } else {
        out_net.sort();
    }
    let swap_pairs = |v: &[(NodeId, NodeId)]| {
        let mut v: Vec<_> = v.iter().map(|(a, b)| (sw(*a), sw(*b))).collect();
        v.sort();
        v
    };
    let mut out_timers: Vec<_> = timers.iter().map(|(a, r)| (sw(*a), *r)).collect();
    out_timers.sort();
    let mut out_holds: Vec<_> = master_holds
        .iter()
        .map(|(m, i, x)| (sw(*m), swap_index(*i), sw(*x)))
        .collect();
    out_holds.sort();
    let mut out_truth = truth.clone();
    out_truth.swap(0, 1);
    State {
        cores: out_cores,
        kernels: out_kernels,
        net: out_net,
        fifo: *fifo,
        epoch: *epoch,
        cut: cut.map(sw),
        side: side.map(|side| side.iter().fold(NodeSet::EMPTY, |a, x| a.with(sw(x)))),
        departing: departing.map(sw),
        resync: *resync,
        crashes: *crashes,
        fences: swap_pairs(fences),
        fence_agents: swap_pairs(fence_agents),
        timers: out_timers,
        replays: swap_pairs(replays),
        retries: swap_pairs(retries),
        unreplayed: {
            let mut v: Vec<_> = unreplayed
                .iter()
                .map(|(x, i)| (sw(*x), swap_index(*i)))
                .collect();
            v.sort();
            v
        },
        cold_dirty: cold_dirty.iter().fold(NodeSet::EMPTY, |a, x| a.with(sw(x))),
        queued: queued
            .iter()
            .map(|q| Queued {
                master: sw(q.master),
                res: swap_index(q.res),
                node: sw(q.node),
                ..*q
            })
            .collect(),
        master_holds: out_holds,
        truth: out_truth,
        ops_left: *ops_left,
        cancels_left: *cancels_left,
        losses_left: *losses_left,
        replay_failures_left: *replay_failures_left,
        bad: bad.clone(),
        seen: Seen {
            replay_starts: swap_pairs(&seen.replay_starts),
            replayed_res: (seen.replayed_res & !3)
                | (seen.replayed_res & 1) << 1
                | (seen.replayed_res >> 1) & 1,
            ..seen.clone()
        },
    }
}

/// The symmetry of the model: swap node 0 with node n-1 and resource 0 with resource 1 (the
/// resources are picked by [`pick_resources`] so that this maps masters onto masters). Clients
/// may ask for any resource in any mode and any node may crash, so the model is symmetric
/// under it. Sequence numbers may differ between two symmetric runs, but only equality of
/// sequence numbers matters to the core, so the two states behave alike.
pub fn mirror(s: &State) -> State {
    let n = s.cores.len() as NodeId;
    mirror_with(s, |c| CoreCell::new(mirror_core(c.core(), n)))
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

/// Representative of `s`'s symmetry class {s, mirror(s)}: the one with the smaller
/// fingerprint. It is only fingerprinted by the checker, so its cores are not renamed: each
/// carries the hash of its mirror image (computed when the core last changed), which is what
/// [`CoreCell`]'s `Hash` and `Eq` use. Valid for models whose resources are
/// `pick_resources(nodes, 2)`.
pub fn representative(s: &State) -> State {
    let n = s.cores.len() as NodeId;
    let t = mirror_with(s, |c| CoreCell {
        hash: c.mirror_hash(n),
        inner: c.inner.clone(),
    });
    if fast_hash(&t) < fast_hash(s) {
        t
    } else {
        s.clone()
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
        p.res = swap_index(p.res);
    }
    for h in k.held.iter_mut() {
        h.res = swap_index(h.res);
    }
    k.held.sort();
    k.cache.swap(0, 1);
    k
}
