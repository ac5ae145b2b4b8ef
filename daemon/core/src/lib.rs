//! `mxfs-core`: the MXFS lock core (DESIGN.md §3).
//!
//! A deterministic, sans-IO state machine in the style of quinn-proto and raft-rs: the driver
//! (the tokio daemon `mxfsd`, or the stateright model in `model/`) feeds [`Event`]s into
//! [`Core::handle`] together with the current time, and acts on the [`Action`]s it appends to
//! the caller's buffer, **in order**. The core has no clock, socket, thread or randomness.
//!
//! Ordering contract: actions in one batch must be carried out in the order given. A
//! [`KernelMsg::CacheInval`] always precedes the [`KernelMsg::Grant`] it protects, and that
//! grant is emitted only after the driver answers the invalidation with
//! [`Event::CacheInvalDone`]: every `CacheInval` must be answered by exactly one
//! `CacheInvalDone` naming its resource, with the kernel's errno (0 when the pages are gone).
//! A refused invalidation grants nothing: the waiters are denied with that errno.
//!
//! Layers inside one core, each a type in its own file; [`Core`] (`engine.rs`) routes events
//! and messages between them:
//! - the *node* table (`node.rs`) keeps this node's cluster lock per resource (cached after
//!   the kernel releases it), the local holders and a FIFO of local waiters, and talks to
//!   masters;
//! - the *master* table (`master.rs`) keeps, for the resources this node masters (rendezvous
//!   hashing over the live members), the granted, convert and wait queues and the data
//!   version;
//! - *recovery* (`recovery.rs`) freezes, fences, rebuilds master state and resumes on
//!   membership changes, and holds the strict-majority quorum rule.
//!
//! Who may hold what — compatibility, covers and supremum, when a master may grant, when a
//! node may grant locally — is decided in one file, `grant.rs`, for every layer.
//!
//! Messages the node addresses to itself (it masters the resource) never leave the core.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod engine;
mod grant;
mod hash;
mod master;
mod node;
mod recovery;
mod relabel;
pub mod sim;
#[cfg(feature = "serde")]
mod wire;

pub use crate::engine::Core;
pub use crate::recovery::quorate;
pub use hash::{master_of, rendezvous_weight};
pub use mxfs_proto::{LockFlags, LockMode, NodeState, ResourceId, ResourceType};
pub use relabel::Relabel;

/// A cluster node id (`0..=NODE_ID_MAX`).
pub type NodeId = u32;
/// A kernel request id (unique per node, chosen by the kernel module).
pub type ReqId = u64;
/// A membership epoch. Strictly increases with every membership change.
pub type Epoch = u64;

// ---------------------------------------------------------------------------------------------
// Limits. Every bounded table ends in a deny or a rejection, never a panic.
// ---------------------------------------------------------------------------------------------

/// Largest number of nodes; node ids are `0..NODES_MAX` (bits of a [`NodeSet`]).
pub const NODES_MAX: usize = mxfs_proto::NODES_MAX;
/// Largest number of resources this node tracks on its own behalf (held, cached or waited
/// for). A new resource past this is denied with [`ENOMEM`] once no idle entry can be evicted.
pub const RESOURCES_MAX: usize = 1 << 20;
/// Largest number of resources one master keeps queues for. Past this, a new request is
/// denied with [`ENOMEM`].
pub const MASTER_RESOURCES_MAX: usize = 1 << 20;
/// Largest number of kernel requests waiting on one resource in a node's local queue. Past
/// this, a request is denied with [`EAGAIN`]. (A master's convert plus wait queue needs no
/// limit of its own: it holds at most one entry per node, so at most [`NODES_MAX`].)
pub const WAITERS_PER_RESOURCE_MAX: usize = 1024;
/// Largest number of kernel requests outstanding (waiting or granted) on this node. Past this,
/// a request is denied with [`ENOMEM`].
pub const REQUESTS_MAX: usize = 1 << 20;
/// Largest number of peer messages from a future epoch kept until that epoch's membership
/// event arrives; more are dropped (the recovery barrier then waits for the next epoch).
pub const FUTURE_MSGS_MAX: usize = 4096;
/// Largest number of remembered early `Cancel`s on a master (see `Core`); past this the
/// oldest is forgotten, and its `Lock` is then queued, granted, cached and given up on a BAST.
pub const EARLY_CANCELS_MAX: usize = 4096;
/// Number of finished recoveries kept for `mxfsctl`.
pub const RECOVERY_HISTORY_MAX: usize = 32;
/// Longest per-request timeout accepted, in milliseconds; longer ones are clamped.
pub const REQUEST_TIMEOUT_MAX_MS: u64 = 3_600_000;
/// Delay before the replayer runs a failed journal replay again ([`Event::JournalReplayFailed`]),
/// in milliseconds. Recovery stays frozen meanwhile.
pub const REPLAY_RETRY_DELAY_MS: u64 = 2_000;

// Errnos carried by [`KernelMsg::Deny`] (negative, as the kernel returns them).
/// Try-lock (`NOQUEUE`) not grantable now, or a queue is full.
pub const EAGAIN: i32 = -11;
/// A table limit was reached.
pub const ENOMEM: i32 = -12;
/// Conversion deadlock: two holders each wait to convert past the other; one is denied and
/// keeps its old mode, as in the Linux DLM.
pub const EDEADLK: i32 = -35;
/// Master -> node only: the pending `Lock` was withdrawn by the node's `Cancel`.
pub const ECANCELED: i32 = -125;
/// Malformed request (bad flags, convert of a lock not held, ...).
pub const EINVAL: i32 = -22;
/// This node is in a minority partition or is not a member: it grants nothing.
pub const ENOLCK: i32 = -37;
/// The per-request timeout expired before a grant.
pub const ETIMEDOUT: i32 = -110;
/// The kernel refused the `CACHE_INVAL` a grant needed and gave no errno of its own.
pub const EIO: i32 = -5;

// ---------------------------------------------------------------------------------------------
// Plain data types.
// ---------------------------------------------------------------------------------------------

/// A set of node ids as a bit set (bit `n` = node `n`). Copy, ordered and hashable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct NodeSet(pub u64);

impl NodeSet {
    /// The empty set.
    pub const EMPTY: NodeSet = NodeSet(0);

    /// The set `{0, 1, .., n-1}`.
    pub const fn first(n: u32) -> NodeSet {
        if n as usize >= NODES_MAX {
            NodeSet(u64::MAX)
        } else {
            NodeSet((1u64 << n) - 1)
        }
    }
    /// Whether `node` is in the set. Out-of-range ids are never members.
    pub const fn contains(self, node: NodeId) -> bool {
        (node as usize) < NODES_MAX && self.0 & (1u64 << node) != 0
    }
    /// The set with `node` added. Out-of-range ids are ignored.
    pub const fn with(self, node: NodeId) -> NodeSet {
        if (node as usize) < NODES_MAX {
            NodeSet(self.0 | (1u64 << node))
        } else {
            self
        }
    }
    /// The set with `node` removed.
    pub const fn without(self, node: NodeId) -> NodeSet {
        if (node as usize) < NODES_MAX {
            NodeSet(self.0 & !(1u64 << node))
        } else {
            self
        }
    }
    /// Members of either set.
    pub const fn union(self, other: NodeSet) -> NodeSet {
        NodeSet(self.0 | other.0)
    }
    /// Members of `self` not in `other`.
    pub const fn minus(self, other: NodeSet) -> NodeSet {
        NodeSet(self.0 & !other.0)
    }
    /// Number of members.
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }
    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// Whether every member of `self` is in `other`.
    pub const fn is_subset(self, other: NodeSet) -> bool {
        self.0 & !other.0 == 0
    }
    /// Members in ascending order.
    pub fn iter(self) -> impl Iterator<Item = NodeId> {
        (0..NODES_MAX as u32).filter(move |n| self.contains(*n))
    }
}

/// The data version of a resource: `(epoch, counter)`.
///
/// Every version a master issues is unique: `counter` comes from one per-master generator
/// that advances when a resource entry is created and when a PW or EX holder gives its lock
/// up (release or down-conversion to a non-write mode), and masters restart it at each new
/// epoch, whose number differs. So a node invalidates its page cache for a resource whenever a
/// grant carries a version other than the one it cached: equality is the only "fresh" answer,
/// and a version a node never saw always invalidates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Version {
    /// Epoch of the master that issued the version.
    pub epoch: Epoch,
    /// Write generations under that master.
    pub counter: u64,
}

/// Static configuration of one core.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// This node's id.
    pub node: NodeId,
    /// Every configured node of the cluster. Quorum is a strict majority of `cluster.len()`.
    pub cluster: NodeSet,
    /// Initial membership. Empty means "not formed yet": the core grants nothing until the
    /// first [`Event::Membership`]. A cluster that boots together may start every node with
    /// the same non-empty set and [`Config::epoch`].
    pub members: NodeSet,
    /// Epoch of the initial membership.
    pub epoch: Epoch,
    /// The node table's size limits ([`Limits::DEFAULT`] in production; tests lower them to
    /// reach them).
    pub limits: Limits,
}

/// Size limits of a node's own tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Resources the node tracks on its own behalf ([`RESOURCES_MAX`] by default).
    pub resources_max: usize,
    /// Kernel requests outstanding on the node ([`REQUESTS_MAX`] by default).
    pub requests_max: usize,
}

impl Limits {
    /// The production limits.
    pub const DEFAULT: Limits = Limits {
        resources_max: RESOURCES_MAX,
        requests_max: REQUESTS_MAX,
    };
}

impl Config {
    /// A node of a cluster `{0..n}` that booted together: every node is a member at epoch 1.
    pub fn booted(node: NodeId, n: u32) -> Config {
        Config {
            node,
            cluster: NodeSet::first(n),
            members: NodeSet::first(n),
            epoch: 1,
            limits: Limits::DEFAULT,
        }
    }
    /// Node `node` of an `n`-node cluster, freshly started: no membership yet (as `mxfsd`
    /// starts it), so it grants nothing before its first membership and does not know the
    /// journals (README, *First mounter*).
    pub fn fresh(node: NodeId, n: u32) -> Config {
        Config {
            members: NodeSet::EMPTY,
            epoch: 0,
            ..Config::booted(node, n)
        }
    }
}

/// A timer the core asked the driver to arm with [`Action::SetTimer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerId {
    /// The per-request timeout of a kernel request.
    Request(ReqId),
    /// The retry of a failed journal replay of this (lost) node, [`REPLAY_RETRY_DELAY_MS`]
    /// after the failure.
    ReplayRetry(NodeId),
}

/// Input to [`Core::handle`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// `LOCK_REQ` from the local kernel. With [`LockFlags::CONVERT`], `req_id` names a request
    /// this kernel already holds granted on `resource`, to be converted to `mode`; the reply
    /// (grant or deny) again names `req_id`, and a denied conversion keeps the old mode.
    /// `timeout_ms` is honoured only with [`LockFlags::TIMEOUT_MS`].
    KernelRequest {
        /// Kernel request id.
        req_id: ReqId,
        /// What to lock.
        resource: ResourceId,
        /// Requested mode.
        mode: LockMode,
        /// `NOQUEUE`, `CONVERT`, `TIMEOUT_MS`.
        flags: LockFlags,
        /// Timeout in milliseconds (with `TIMEOUT_MS`).
        timeout_ms: u32,
    },
    /// `LOCK_RELEASE` from the local kernel: the granted request `req_id` is released. The
    /// node keeps its cluster lock cached until a BAST asks for it.
    KernelRelease {
        /// The granted request being released.
        req_id: ReqId,
        /// Its resource (checked against the request).
        resource: ResourceId,
    },
    /// The kernel stopped waiting for `req_id` (its own timeout). No reply follows. If the
    /// request was already granted this acts as a release.
    KernelCancel {
        /// The request being cancelled.
        req_id: ReqId,
    },
    /// A message from a peer core.
    Peer {
        /// Sender.
        from: NodeId,
        /// The message.
        msg: PeerMsg,
    },
    /// The membership layer agreed on a new member set. `epoch` must exceed the current one;
    /// older or equal epochs are rejected.
    Membership {
        /// The new epoch.
        epoch: Epoch,
        /// Live members.
        members: NodeSet,
    },
    /// A timer armed by [`Action::SetTimer`] fired.
    Timer {
        /// Which timer.
        id: TimerId,
    },
    /// The fence agent confirmed that `node` is fenced (cannot write the shared disk).
    FenceConfirmed {
        /// The fenced node.
        node: NodeId,
    },
    /// The kernel answered a [`KernelMsg::CacheInval`] for `resource`: `errno` 0 means its
    /// pages are gone; a negative errno means it refused, and the grant that needed the
    /// invalidation is not delivered (its waiters are denied with `errno`).
    CacheInvalDone {
        /// The resource of the `CacheInval` being answered.
        resource: ResourceId,
        /// 0, or the kernel's negative errno.
        errno: i32,
    },
    /// The replay that [`Action::ReplayJournal`] asked for is done: `node`'s journal is replayed
    /// into the shared volume and closed with an unmount record. The core tells every other
    /// member ([`PeerBody::Replayed`]); recovery resumes once every lost node is replayed.
    JournalReplayed {
        /// The lost node whose journal was replayed.
        node: NodeId,
    },
    /// The replay that [`Action::ReplayJournal`] asked for failed (the driver logs why).
    /// Recovery stays frozen; the core arms [`TimerId::ReplayRetry`] and asks again when it
    /// fires.
    JournalReplayFailed {
        /// The lost node whose replay failed.
        node: NodeId,
    },
    /// The daemon is stopping. If the kernel holds and waits for nothing, the core tells every
    /// other member that this node leaves cleanly ([`PeerBody::Leaving`]), so the next
    /// membership without it needs no fence, and stops granting. Otherwise it is rejected
    /// ([`Reject::Busy`]): a node whose kernel may still write must be fenced; so must a node
    /// whose driver still replays a lost node's journal ([`Reject::ReplayRunning`]).
    Leave,
}

/// A message to the local kernel module (one Generic Netlink command).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KernelMsg {
    /// Drop cached pages: `len == 0` means the whole inode. Emitted for `INODE` resources
    /// (whole inode) and `EXTENT` resources (`offset = b`, `len = EXTENT_CHUNK_BYTES`); `AG`
    /// resources protect metadata buffers, not page cache, and emit nothing; a `VOLUME`
    /// resource invalidates the whole volume (`ino` 0, `offset` 0, `len` 0). The driver
    /// answers it with [`Event::CacheInvalDone`] for `resource`.
    CacheInval {
        /// The resource whose grant waits for this invalidation.
        resource: ResourceId,
        /// Volume id.
        volume: u64,
        /// Inode number.
        ino: u64,
        /// Byte offset.
        offset: u64,
        /// Byte length (0 = whole inode).
        len: u64,
    },
    /// `LOCK_GRANT` for `req_id`.
    Grant {
        /// The granted request.
        req_id: ReqId,
        /// Its resource.
        resource: ResourceId,
        /// Granted mode.
        mode: LockMode,
        /// The resource's data version as this node last learned it from the master (changes
        /// whenever another node may have written; `None` before the first grant). The kernel
        /// refreshes what it cached when it differs from the version of its last hold.
        version: Option<Version>,
    },
    /// `LOCK_DENY` for `req_id` with a negative errno.
    Deny {
        /// The denied request.
        req_id: ReqId,
        /// Its resource.
        resource: ResourceId,
        /// Negative errno ([`EAGAIN`], [`ETIMEDOUT`], ...).
        errno: i32,
    },
    /// `RECOVERY_START`: freeze lock traffic.
    RecoveryStart {
        /// The epoch being recovered into.
        epoch: Epoch,
    },
    /// `RECOVERY_DONE`: resume lock traffic.
    RecoveryDone {
        /// The recovered epoch.
        epoch: Epoch,
    },
    /// `NODE_STATUS`.
    NodeStatus {
        /// The node.
        node: NodeId,
        /// Its state.
        state: NodeState,
    },
    /// `LOCK_CALLBACK` (DESIGN.md §5.2): another node needs the lock the kernel holds cached
    /// through `req_id`. The kernel answers after its clean point with `LOCK_RELEASE`
    /// ([`Event::KernelRelease`]) or a down-conversion to `mode` or weaker (`LOCK_REQ` with
    /// `CONVERT`). Sent once a BAST asks for the lock, to each holder whose mode blocks the
    /// waiting request, once; again only to ask it to keep less. The node's lock passes on
    /// only after the kernel's answer.
    Callback {
        /// The granted request through which the kernel holds the lock.
        req_id: ReqId,
        /// Its resource.
        resource: ResourceId,
        /// The strongest mode the kernel may keep; NL means release. Never EX (the wire
        /// format refuses it).
        mode: LockMode,
    },
}

/// Output of [`Core::handle`], to be carried out in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send `msg` to peer `to` (never to this node itself).
    Send {
        /// Destination node.
        to: NodeId,
        /// The message.
        msg: PeerMsg,
    },
    /// Send a message to the local kernel.
    Kernel(KernelMsg),
    /// Arm (or re-arm) timer `id` to fire at absolute time `at_ms` (the clock of `now_ms`).
    SetTimer {
        /// Timer id.
        id: TimerId,
        /// Absolute deadline in milliseconds.
        at_ms: u64,
    },
    /// Disarm timer `id` (it may already have fired; a late [`Event::Timer`] is harmless).
    CancelTimer {
        /// Timer id.
        id: TimerId,
    },
    /// Run the fence agent against `node`, then feed [`Event::FenceConfirmed`].
    Fence {
        /// Node to fence.
        node: NodeId,
    },
    /// Replay the journal of the fenced node `node` into the shared volume (DESIGN.md §5.5: a
    /// proxy mount with `mxfs_recover=node` and `node`'s log, then unmount), then feed
    /// [`Event::JournalReplayed`] or [`Event::JournalReplayFailed`]. Emitted by the fencer
    /// once the fence is confirmed, at most once at a time per node on this core; a replay
    /// of a log already replayed changes nothing, so a replay another survivor may also have
    /// run before it died is harmless. The result is accepted in later epochs too.
    ReplayJournal {
        /// The lost, fenced node whose journal to replay.
        node: NodeId,
        /// The epoch whose recovery asked for it (for logs).
        epoch: Epoch,
    },
    /// This node is in a minority partition of `epoch`: it has stopped granting and must
    /// fence itself (stop writing the shared disk, e.g. reboot).
    SelfFence {
        /// The epoch whose membership left this node in the minority.
        epoch: Epoch,
    },
}

/// The body of a message between cores. See `README.md` for the protocol.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum PeerBody {
    /// node -> master: acquire or up/down-convert this node's lock on `resource` to `mode`.
    Lock {
        /// Resource.
        #[cfg_attr(feature = "serde", serde(with = "wire::resource"))]
        resource: ResourceId,
        /// Wanted mode.
        #[cfg_attr(feature = "serde", serde(with = "wire::mode"))]
        mode: LockMode,
        /// Deny at once if not grantable.
        noqueue: bool,
        /// Node-chosen sequence number; the answer carries it.
        seq: u64,
    },
    /// node -> master: give the lock up (`to == None`) or down-convert it to `to`.
    Release {
        /// Resource.
        #[cfg_attr(feature = "serde", serde(with = "wire::resource"))]
        resource: ResourceId,
        /// Down-conversion target, or `None` to release.
        #[cfg_attr(feature = "serde", serde(with = "wire::opt_mode"))]
        to: Option<LockMode>,
        /// Sequence number; answered by `ReleaseAck`.
        seq: u64,
    },
    /// node -> master: withdraw the pending `Lock` with sequence `seq` (timeout or cancel).
    Cancel {
        /// Resource.
        #[cfg_attr(feature = "serde", serde(with = "wire::resource"))]
        resource: ResourceId,
        /// Sequence number of the `Lock` to withdraw.
        seq: u64,
    },
    /// master -> node: the `Lock` with sequence `seq` is granted in `mode`.
    Grant {
        /// Resource.
        #[cfg_attr(feature = "serde", serde(with = "wire::resource"))]
        resource: ResourceId,
        /// Granted mode.
        #[cfg_attr(feature = "serde", serde(with = "wire::mode"))]
        mode: LockMode,
        /// Data version at grant time.
        version: Version,
        /// Sequence number of the `Lock`.
        seq: u64,
    },
    /// master -> node: the `Lock` with sequence `seq` is denied (negative errno).
    Deny {
        /// Resource.
        #[cfg_attr(feature = "serde", serde(with = "wire::resource"))]
        resource: ResourceId,
        /// Negative errno.
        errno: i32,
        /// Sequence number of the `Lock`.
        seq: u64,
    },
    /// master -> node: the `Release` with sequence `seq` is done; `version` is the data
    /// version after it (a node that gave up a write mode caches this version, as its pages
    /// are the newest).
    ReleaseAck {
        /// Resource.
        #[cfg_attr(feature = "serde", serde(with = "wire::resource"))]
        resource: ResourceId,
        /// Version after the release.
        version: Version,
        /// Sequence number of the `Release`.
        seq: u64,
    },
    /// master -> holder: your lock blocks a request for `mode`; give it up when unused.
    Bast {
        /// Resource.
        #[cfg_attr(feature = "serde", serde(with = "wire::resource"))]
        resource: ResourceId,
        /// Mode of the blocked request.
        #[cfg_attr(feature = "serde", serde(with = "wire::mode"))]
        mode: LockMode,
    },
    /// survivor -> new master (recovery): I hold `resource` in `mode`.
    Recover {
        /// Resource.
        #[cfg_attr(feature = "serde", serde(with = "wire::resource"))]
        resource: ResourceId,
        /// Held mode.
        #[cfg_attr(feature = "serde", serde(with = "wire::mode"))]
        mode: LockMode,
    },
    /// survivor -> every member (recovery): my fences are confirmed and I sent you `count`
    /// `Recover` messages in this epoch.
    RecoverDone {
        /// Number of `Recover` messages sent to the receiver.
        count: u32,
    },
    /// member -> every member (recovery): I have every member's `Recover` messages; my
    /// resources are rebuilt.
    RebuildDone,
    /// member -> every member: my kernel holds and waits for nothing and I am stopping; the
    /// next membership without me need not fence me.
    Leaving,
    /// member -> the fencer (recovery): `node` left my membership unfenced or with its journal
    /// not replayed; fence it and replay its journal, or tell me that is done (`Fenced`,
    /// `Replayed`). The fencer is the lowest-id member, so one fence agent runs per loss.
    FenceAsk {
        /// The lost node.
        node: NodeId,
    },
    /// member that ran the fence agent -> every member: `node` is fenced.
    Fenced {
        /// The fenced node.
        node: NodeId,
    },
    /// member that replayed a lost node's journal -> every member: `node`'s journal is
    /// replayed (so it is fenced too); nothing it held for writing is damaged any more.
    Replayed {
        /// The lost node whose journal was replayed.
        node: NodeId,
    },
    /// member -> the fencer, once per epoch (recovery): what this member knows of the
    /// journals. The fencer starts no journal replay before every member's report is in, so
    /// it never replays a log another member still replays, and a fencer that never resumed
    /// learns whether the cluster is starting cold (README, *First mounter*).
    Journals {
        /// The sender resumed in a quorate membership and has not stopped since, so every
        /// journal it does not name (here or with `FenceAsk`) is clean.
        known: bool,
        /// Journals whose replay the sender's driver runs or will retry: the sender keeps
        /// them until it announces `Replayed` or is fenced.
        replaying: NodeSet,
        /// Members whose journal the sender waits for (a node that became a member again
        /// before its replay was announced).
        waiting: NodeSet,
    },
}

/// A message between cores: the sender's epoch and a body. Messages whose epoch is not the
/// receiver's are dropped (older) or held until that epoch's membership arrives (newer).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct PeerMsg {
    /// Sender's membership epoch.
    pub epoch: Epoch,
    /// What it says.
    pub body: PeerBody,
}

/// Why [`Core::handle`] ignored an event. Nothing was changed and no action was emitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reject {
    /// A kernel request reused a request id that is still outstanding.
    DuplicateRequest(ReqId),
    /// A release, cancel or convert named a request id this core does not know.
    UnknownRequest(ReqId),
    /// A release named a resource other than the request's.
    ResourceMismatch(ReqId),
    /// A kernel request carried undefined flag bits.
    InvalidFlags(u32),
    /// A resource id that no builder makes (see `ResourceId::is_well_formed`).
    MalformedResource,
    /// A peer message from a node that is not a member of the current epoch (or from self).
    NotMember(NodeId),
    /// A peer message from an older epoch.
    StaleEpoch {
        /// The message's epoch.
        got: Epoch,
        /// This core's epoch.
        have: Epoch,
    },
    /// A future-epoch message arrived but the holding buffer is full.
    FutureBufferFull,
    /// A membership event with an epoch not above the current one, or naming nodes outside
    /// the configured cluster.
    BadMembership(&'static str),
    /// A peer message that makes no sense in the current state (e.g. a grant nobody asked
    /// for); the text says which.
    Unexpected(&'static str),
    /// [`Event::Leave`] while the kernel holds or waits for this many requests.
    Busy(usize),
    /// [`Event::Leave`] while this node's driver replays (or will retry) the journals of these
    /// lost nodes: stopping would leave a replay half done, so the node must be fenced.
    ReplayRunning(NodeSet),
    /// A timer or fence confirmation that matches nothing outstanding.
    Stale(&'static str),
}

impl core::fmt::Display for Reject {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for Reject {}

// ---------------------------------------------------------------------------------------------
// Introspection (read-only, for mxfsctl and tests).
// ---------------------------------------------------------------------------------------------

/// One entry of a master queue.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueEntry {
    /// Holder or requester.
    pub node: NodeId,
    /// The node's sequence number of the request (0 for locks rebuilt by recovery).
    pub seq: u64,
    /// Granted mode (granted queue), target mode (convert and wait queues).
    pub mode: LockMode,
    /// For a conversion: the mode still held meanwhile.
    pub held: Option<LockMode>,
    /// When it entered this queue (`now_ms` of that event).
    pub since_ms: u64,
}

/// Master-side state of one resource, like a `dlm_tool lockdebug` line.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResourceDump {
    /// The resource.
    pub resource: ResourceId,
    /// Its master (this node).
    pub master: NodeId,
    /// Current data version.
    pub version: Version,
    /// Granted queue.
    pub granted: Vec<QueueEntry>,
    /// Convert queue, FIFO.
    pub converting: Vec<QueueEntry>,
    /// Wait queue, FIFO.
    pub waiting: Vec<QueueEntry>,
}

/// Node-side state of one resource.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LocalDump {
    /// The resource.
    pub resource: ResourceId,
    /// Master in the current membership, if any.
    pub master: Option<NodeId>,
    /// This node's cluster lock mode, if held (possibly cached, unused).
    pub held: Option<LockMode>,
    /// Cached data version, if this node has seen one.
    pub version: Option<Version>,
    /// Kernel requests holding the lock: `(req_id, mode)`.
    pub holders: Vec<(ReqId, LockMode)>,
    /// Kernel requests waiting, FIFO: `(req_id, mode, since_ms)`.
    pub waiting: Vec<(ReqId, LockMode, u64)>,
    /// A BAST asked for the lock; it is given up as soon as the holders allow.
    pub bast_pending: bool,
}

/// One recovery, for `mxfsctl status`. Its phases, for `recovery_ms`: detection happens
/// before `started_ms` (the membership layer's timeout), fencing runs from `started_ms` to
/// `fenced_ms`, the journal replay to `replayed_ms`, the rebuild of the master tables
/// (remastering) to `finished_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RecoveryRecord {
    /// Epoch recovered into.
    pub epoch: Epoch,
    /// Nodes lost (fenced, unless they left cleanly).
    pub lost: NodeSet,
    /// Start time (`now_ms`): the membership arrived.
    pub started_ms: u64,
    /// When this node knew every lost node fenced, if it did.
    pub fenced_ms: Option<u64>,
    /// When this node knew every lost node's journal replayed (equal to `fenced_ms` when no
    /// journal needed a replay), if it did.
    pub replayed_ms: Option<u64>,
    /// Journal replays that failed on this node during this recovery (each retried).
    pub replay_failures: u32,
    /// End time, if finished.
    pub finished_ms: Option<u64>,
}

/// Recovery phase of a core.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// Granting normally.
    Normal,
    /// Frozen; waiting for fence confirmations of lost nodes.
    Fencing,
    /// Frozen; every lost node is fenced, waiting for their journals to be replayed.
    Replaying,
    /// Frozen; rebuilding master state (recovery barrier).
    Rebuilding,
    /// Not a member or in a minority: grants nothing until a majority membership arrives.
    Stopped,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos_are_the_linux_values_negated() {
        assert_eq!(
            [EAGAIN, ENOMEM, EDEADLK, EINVAL, ENOLCK, ETIMEDOUT, ECANCELED, EIO],
            [-11, -12, -35, -22, -37, -110, -125, -5]
        );
    }

    #[test]
    fn node_set_operations() {
        let s = NodeSet::EMPTY.with(1).with(1).with(63);
        assert!(s.contains(1) && s.contains(63) && !s.contains(0));
        assert_eq!(s.len(), 2);
        assert_eq!(s.without(1), NodeSet::EMPTY.with(63));
        assert_eq!(s.without(5), s);
        // Out-of-range ids are never members and change nothing.
        assert!(!NodeSet(u64::MAX).contains(64));
        assert_eq!(s.with(64), s);
        assert_eq!(s.without(64), s);
        assert!(NodeSet::EMPTY.with(1).is_subset(s));
        assert!(!NodeSet::EMPTY.with(2).is_subset(s));
        assert_eq!(s.minus(NodeSet::EMPTY.with(1)), NodeSet::EMPTY.with(63));
        assert_eq!(s.union(NodeSet::EMPTY.with(1).with(2)), s.with(2));
        assert_eq!(NodeSet::first(3), NodeSet(0b111));
        assert_eq!(NodeSet::first(64), NodeSet(u64::MAX));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![1, 63]);
        assert!(NodeSet::EMPTY.is_empty() && !s.is_empty());
    }

    #[test]
    fn reject_displays_its_reason() {
        let text = Reject::UnknownRequest(7).to_string();
        assert!(
            text.contains("UnknownRequest") && text.contains('7'),
            "{text}"
        );
    }

    #[test]
    fn membership_outside_the_cluster_is_rejected() {
        let mut core = Core::new(Config::booted(0, 3));
        let mut out = Vec::new();
        let ev = Event::Membership {
            epoch: 2,
            members: NodeSet::first(4),
        };
        assert!(matches!(
            core.handle(0, ev, &mut out),
            Err(Reject::BadMembership(_))
        ));
        assert!(out.is_empty());
        assert_eq!(core.epoch(), 1);
    }
}
