//! The `mxfsd` event loop: one task owns the lock core and feeds it events from the kernel
//! port, the peer transport, membership, timers, fence results and the ctl socket; it carries
//! out the core's actions in order. The daemon has no lock logic of its own.

use crate::config::{Config, KernelKind};
use crate::ctl::{self, CtlReply, CtlRequest, EventView, HolderView, LocalView, MasterView};
use crate::fence;
use crate::frame::WireMsg;
use crate::kernel::{KernelPort, NetlinkPort, NullPort};
use crate::membership::{HeartbeatMembership, Install, Membership};
use crate::metrics::Metrics;
use crate::peer::{PeerInput, PeerNet, Wire};
use crate::replay;
use crate::timers::Timers;
use futures_util::{SinkExt, StreamExt};
use mxfs_core::{
    Action, Core, Event, KernelMsg, LockFlags, LockMode, NodeId, NodeSet, ReqId, ResourceId,
};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite, LinesCodec};

/// Request ids of the ctl-owned local client start here (the kernel's ids are below).
pub const LOCAL_REQ_BASE: ReqId = 1 << 62;
/// Kernel-bound events kept for `mxfsctl events`.
pub const EVENT_LOG_MAX: usize = 8192;
/// Resources with per-resource counters for `mxfsctl top`.
pub const TOP_TRACKED_MAX: usize = 65_536;
/// Capacity of each input channel of the event loop.
pub const INPUT_QUEUE_MAX: usize = 65_536;
/// A grant slower than this counts as a wait in metrics and `top` (the request queued behind
/// a conflicting holder or a recovery; an uncontended remote grant takes well under 1 ms).
pub const WAIT_THRESHOLD_MS: f64 = 5.0;
/// A recovery still rebuilding after this many heartbeat timeouts is restarted.
pub const RECOVERY_STALL_TIMEOUTS: u64 = 5;
/// Concurrent ctl connections.
pub const CTL_CONNS_MAX: usize = 128;
/// How long shutdown waits for release messages to leave.
pub const SHUTDOWN_FLUSH_MS: u64 = 300;

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Config or key file.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// Kernel port.
    #[error("{0}")]
    Kernel(#[from] crate::kernel::KernelError),
    /// The kernel module became unreachable while running (see `kernel.rs`).
    #[error("{0}")]
    KernelLost(String),
    /// A socket could not be bound.
    #[error("cannot bind {what} {addr}: {err}")]
    Bind {
        /// Which socket.
        what: &'static str,
        /// Address or path.
        addr: String,
        /// The error.
        err: std::io::Error,
    },
}

/// A ctl request with its reply channel.
struct CtlCall {
    req: CtlRequest,
    /// Identifies the connection, so a vanished `mxfsctl lock` can be cancelled.
    conn: u64,
    reply: oneshot::Sender<CtlReply>,
}

enum Internal {
    Fenced {
        node: NodeId,
    },
    /// A journal replay ended: `Ok` with how long it took, or why it failed.
    Replayed {
        node: NodeId,
        result: Result<u64, String>,
    },
    CtlGone {
        conn: u64,
    },
}

struct LocalPending {
    reply: oneshot::Sender<CtlReply>,
    conn: u64,
    resource: ResourceId,
    asked: Instant,
}

struct State {
    cfg: Config,
    start: Instant,
    core: Core,
    membership: Box<dyn Membership>,
    peers: PeerNet,
    kernel: Box<dyn KernelPort>,
    metrics: Arc<Metrics>,
    int_tx: mpsc::Sender<Internal>,
    timers: Timers,
    fencing: BTreeSet<NodeId>,
    next_local: ReqId,
    local_pending: BTreeMap<ReqId, LocalPending>,
    local_held: BTreeMap<ReqId, (ResourceId, LockMode)>,
    asked: BTreeMap<ReqId, Instant>,
    events: VecDeque<EventView>,
    event_seq: u64,
    per_resource: BTreeMap<ResourceId, (u64, u64)>,
    /// Lost lock-core messages already acted on.
    core_dropped_seen: u64,
    /// A resync is wanted until the epoch passes this one.
    resync_from_epoch: Option<u64>,
    /// When this node last reinstalled for a resync (rate limit).
    last_resync_ms: Option<u64>,
    /// Test hook: lock-core messages still to drop.
    drop_core: u32,
    /// When the core entered the rebuilding phase, for the stall watchdog.
    rebuilding_since_ms: Option<u64>,
    /// When each granted request was granted (`now_ms`), for holder ages.
    held_since: BTreeMap<ReqId, u64>,
    self_fenced: bool,
    recoveries_logged: BTreeSet<u64>,
    status_cache: Arc<Mutex<(usize, u64)>>,
}

fn name_of(cfg: &Config, node: NodeId) -> String {
    cfg.peers
        .iter()
        .find(|p| p.id == node)
        .and_then(|p| p.name.clone())
        .unwrap_or_else(|| format!("node{node}"))
}

fn cluster_of(cfg: &Config) -> NodeSet {
    cfg.peers.iter().fold(NodeSet::EMPTY, |s, p| s.with(p.id))
}

impl State {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Feeds one event to the core and carries out its actions.
    fn feed(&mut self, ev: Event) {
        let _ = self.try_feed(ev);
    }

    /// An event from the kernel. One the core refuses changes nothing; it is logged, for
    /// example a `LOCK_RELEASE` of a request that is not granted here (an older mxfs.ko hands
    /// back a late deny that way) or of a request this daemon does not know.
    fn kernel_event(&mut self, ev: Event) {
        if let Event::KernelRequest { req_id, .. } = &ev {
            self.asked.insert(*req_id, Instant::now());
        }
        if let Err(r) = self.try_feed(ev.clone()) {
            tracing::warn!(?ev, "kernel message ignored: the lock core refused it: {r}");
        }
    }

    /// [`State::feed`], returning why the core rejected the event (already logged and counted).
    fn try_feed(&mut self, ev: Event) -> Result<(), mxfs_core::Reject> {
        let now = self.now_ms();
        let (asked, released) = match &ev {
            Event::KernelRequest { req_id, .. } => (Some(*req_id), None),
            Event::KernelRelease { req_id, .. } | Event::KernelCancel { req_id } => {
                (None, Some(*req_id))
            }
            _ => (None, None),
        };
        let mut out = Vec::new();
        if let Err(r) = self.core.handle(now, ev, &mut out) {
            self.metrics.core_rejects.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("core rejected event: {r}");
            if let Some(req_id) = asked {
                self.asked.remove(&req_id);
                if let Some(p) = self.local_pending.remove(&req_id) {
                    let _ = p.reply.send(CtlReply::Error {
                        error: format!("lock core refused: {r}"),
                    });
                }
            }
            return Err(r);
        }
        if let Some(req_id) = released {
            self.held_since.remove(&req_id);
        }
        for a in out {
            self.act(a);
        }
        // Answers a kernel-less port gives at once (each `CACHE_INVAL` succeeds), fed after the
        // whole batch is carried out, as a kernel's ack would arrive.
        for ev in self.kernel.take_answers() {
            self.feed(ev);
        }
        let mut c = self.status_cache.lock().unwrap_or_else(|e| e.into_inner());
        *c = (self.core.members().len(), self.core.epoch());
        Ok(())
    }

    fn count_resource(&mut self, r: ResourceId, wait: bool) {
        if !self.per_resource.contains_key(&r) && self.per_resource.len() >= TOP_TRACKED_MAX {
            return;
        }
        let e = self.per_resource.entry(r).or_default();
        if wait {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }

    fn log_event(
        &mut self,
        kind: &str,
        req_id: Option<u64>,
        resource: Option<String>,
        detail: String,
    ) {
        if self.events.len() >= EVENT_LOG_MAX {
            self.events.pop_front();
        }
        let at_ms = self.now_ms();
        self.events.push_back(EventView {
            seq: self.event_seq,
            at_ms,
            kind: kind.into(),
            req_id,
            resource,
            detail,
        });
        self.event_seq += 1;
    }

    fn act(&mut self, a: Action) {
        match a {
            Action::Send { to, msg } => {
                if self.drop_core > 0 {
                    self.drop_core -= 1;
                    tracing::warn!(to, ?msg, "test hook: lock-core message dropped");
                    return;
                }
                self.peers.send(to, WireMsg::Core(msg))
            }
            Action::Kernel(km) => self.kernel_msg(km),
            Action::SetTimer { id, at_ms } => self.timers.set(id, at_ms),
            Action::CancelTimer { id } => self.timers.cancel(id),
            Action::Fence { node } => self.start_fence(node),
            Action::ReplayJournal { node, epoch } => self.start_replay(node, epoch),
            Action::SelfFence { epoch } => {
                self.self_fenced = true;
                self.membership.self_fence();
                tracing::error!(
                    epoch,
                    "this node is in a minority partition or was excluded: it grants nothing and \
                     stays out of the cluster until mxfsd is restarted"
                );
                self.log_event(
                    "self_fence",
                    None,
                    None,
                    format!("minority at epoch {epoch}"),
                );
            }
        }
    }

    fn kernel_msg(&mut self, km: KernelMsg) {
        match &km {
            KernelMsg::Grant {
                req_id,
                resource,
                mode,
                ..
            } => {
                self.metrics.grants.fetch_add(1, Ordering::Relaxed);
                if let Some(t) = self.asked.remove(req_id) {
                    let ms = t.elapsed().as_secs_f64() * 1000.0;
                    self.metrics.grant_latency.observe_ms(ms);
                    if ms > WAIT_THRESHOLD_MS {
                        self.metrics.waits.fetch_add(1, Ordering::Relaxed);
                        self.count_resource(*resource, true);
                    }
                }
                self.count_resource(*resource, false);
                let now = self.now_ms();
                if self.held_since.len() < mxfs_core::REQUESTS_MAX {
                    self.held_since.insert(*req_id, now);
                }
                let rs = ctl::format_resource(resource);
                self.log_event("grant", Some(*req_id), Some(rs), mode.name().into());
                if let Some(p) = self.local_pending.remove(req_id) {
                    self.local_held.insert(*req_id, (p.resource, *mode));
                    let _ = p.reply.send(CtlReply::Granted {
                        req_id: *req_id,
                        resource: ctl::format_resource(&p.resource),
                        mode: mode.name().into(),
                        waited_ms: p.asked.elapsed().as_millis() as u64,
                    });
                    return;
                }
                if *req_id >= LOCAL_REQ_BASE {
                    // Conversions of ctl locks are not offered; a grant for an id we no longer
                    // wait for is handed back so nothing leaks.
                    if !self.local_held.contains_key(req_id) {
                        tracing::warn!(req_id, "grant for an abandoned local request; releasing");
                        let ev = Event::KernelRelease {
                            req_id: *req_id,
                            resource: *resource,
                        };
                        self.feed(ev);
                    }
                    return;
                }
            }
            KernelMsg::Deny {
                req_id,
                resource,
                errno,
            } => {
                self.metrics.denies.fetch_add(1, Ordering::Relaxed);
                self.asked.remove(req_id);
                if *errno == mxfs_core::ETIMEDOUT {
                    self.metrics.waits.fetch_add(1, Ordering::Relaxed);
                    self.count_resource(*resource, true);
                }
                let rs = ctl::format_resource(resource);
                self.log_event("deny", Some(*req_id), Some(rs), format!("errno {errno}"));
                if let Some(p) = self.local_pending.remove(req_id) {
                    let _ = p.reply.send(CtlReply::Denied {
                        req_id: *req_id,
                        errno: *errno,
                        reason: ctl::errno_name(*errno).into(),
                    });
                }
                if *req_id >= LOCAL_REQ_BASE {
                    return;
                }
            }
            KernelMsg::CacheInval {
                resource: _,
                volume,
                ino,
                offset,
                len,
            } => {
                self.metrics.cache_invals.fetch_add(1, Ordering::Relaxed);
                self.log_event(
                    "cache_inval",
                    None,
                    Some(format!("inode:{volume}:{ino}")),
                    format!("offset {offset} len {len}"),
                );
            }
            KernelMsg::RecoveryStart { epoch } => {
                tracing::warn!(epoch, "recovery started: lock traffic frozen");
                self.log_event("recovery_start", None, None, format!("epoch {epoch}"));
            }
            KernelMsg::RecoveryDone { epoch } => {
                self.recovery_done(*epoch);
            }
            KernelMsg::NodeStatus { node, state } => {
                self.log_event("node_status", None, None, format!("node {node} {state:?}"));
            }
            KernelMsg::Callback {
                req_id,
                resource,
                mode,
            } => {
                let rs = ctl::format_resource(resource);
                self.log_event("callback", Some(*req_id), Some(rs), mode.name().into());
            }
        }
        self.kernel.deliver(&km);
    }

    fn recovery_done(&mut self, epoch: u64) {
        let rec = self
            .core
            .recovery_history()
            .iter()
            .rev()
            .find(|r| r.epoch == epoch)
            .cloned();
        let dur = rec
            .as_ref()
            .and_then(|r| r.finished_ms.map(|f| f.saturating_sub(r.started_ms)));
        // The phases after detection (recovery_ms): fence, journal replay, remaster.
        let part = |a: Option<u64>, b: Option<u64>| a.zip(b).map(|(a, b)| b.saturating_sub(a));
        let (fence_ms, replay_ms, remaster_ms) = rec.as_ref().map_or((None, None, None), |r| {
            (
                part(Some(r.started_ms), r.fenced_ms),
                part(r.fenced_ms, r.replayed_ms),
                part(r.replayed_ms, r.finished_ms),
            )
        });
        let lost: Vec<NodeId> = rec.map(|r| r.lost.iter().collect()).unwrap_or_default();
        if self.recoveries_logged.insert(epoch) {
            self.metrics.recoveries.fetch_add(1, Ordering::Relaxed);
            if let Some(d) = dur {
                self.metrics.recovery_duration.observe_ms(d as f64);
            }
        }
        tracing::warn!(
            epoch,
            ?lost,
            duration_ms = ?dur,
            fence_ms = ?fence_ms,
            replay_ms = ?replay_ms,
            remaster_ms = ?remaster_ms,
            "recovery done: lock traffic resumed"
        );
        self.log_event(
            "recovery_done",
            None,
            None,
            format!(
                "epoch {epoch} lost {lost:?} duration_ms {} fence_ms {} replay_ms {} \
                 remaster_ms {}",
                dur.unwrap_or(0),
                fence_ms.unwrap_or(0),
                replay_ms.unwrap_or(0),
                remaster_ms.unwrap_or(0)
            ),
        );
    }

    fn start_fence(&mut self, node: NodeId) {
        if !self.fencing.insert(node) {
            return;
        }
        let cmd = self.cfg.fence_command.clone();
        let name = name_of(&self.cfg, node);
        let timeout = self.cfg.fence_timeout_ms;
        let tx = self.int_tx.clone();
        let metrics = self.metrics.clone();
        self.log_event("fence", None, None, format!("fencing node {node} ({name})"));
        tracing::warn!(node, %name, "fencing");
        tokio::spawn(async move {
            loop {
                let t = Instant::now();
                match fence::fence_once(&cmd, node, &name, timeout).await {
                    Ok(()) => {
                        tracing::warn!(
                            node,
                            ms = t.elapsed().as_millis() as u64,
                            "fence confirmed"
                        );
                        let _ = tx.send(Internal::Fenced { node }).await;
                        return;
                    }
                    Err(e) => {
                        metrics.fence_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(node, "fence failed, retrying: {e}");
                        tokio::time::sleep(Duration::from_millis(fence::FENCE_RETRY_DELAY_MS))
                            .await;
                    }
                }
            }
        });
    }

    /// Runs the journal replay of lost node `node` (one attempt; the core asks again after a
    /// failure). Without shared journals (`shared_journals = false`) there is nothing to
    /// replay: the result is fed as at once. Either way the result comes back through the
    /// internal channel, as a separate event after this batch of actions is carried out.
    fn start_replay(&mut self, node: NodeId, epoch: u64) {
        let name = name_of(&self.cfg, node);
        let tx = self.int_tx.clone();
        let Some(cmd) = self.cfg.replay_command.clone() else {
            tracing::info!(
                node,
                %name,
                "no shared journals (shared_journals = false): nothing to replay"
            );
            self.log_event(
                "replay",
                None,
                None,
                format!("node {node} ({name}): no shared journals, nothing to replay"),
            );
            tokio::spawn(async move {
                let _ = tx
                    .send(Internal::Replayed {
                        node,
                        result: Ok(0),
                    })
                    .await;
            });
            return;
        };
        let timeout = self.cfg.replay_timeout_ms;
        self.metrics.journal_replays.fetch_add(1, Ordering::Relaxed);
        self.log_event(
            "replay",
            None,
            None,
            format!("replaying the journal of node {node} ({name}), epoch {epoch}"),
        );
        if self.core.members().contains(node) {
            // A cold start's member, or a node back before its replay was announced: it cannot
            // mount before this recovery ends.
            tracing::warn!(
                node,
                %name,
                epoch,
                "replaying the journal of a member (first mounter, or back before its replay)"
            );
        } else {
            tracing::warn!(node, %name, epoch, "replaying the journal of a lost node");
        }
        tokio::spawn(async move {
            let t = Instant::now();
            let result = replay::replay_once(&cmd, node, &name, epoch, timeout)
                .await
                .map(|()| t.elapsed().as_millis() as u64)
                .map_err(|e| e.to_string());
            let _ = tx.send(Internal::Replayed { node, result }).await;
        });
    }

    fn replay_result(&mut self, node: NodeId, result: Result<u64, String>) {
        match result {
            Ok(ms) => {
                tracing::warn!(node, ms, "journal replayed");
                self.log_event(
                    "replay",
                    None,
                    None,
                    format!("node {node} journal replayed in {ms} ms"),
                );
                self.feed(Event::JournalReplayed { node });
            }
            Err(e) => {
                self.metrics
                    .journal_replay_failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    node,
                    retry_ms = mxfs_core::REPLAY_RETRY_DELAY_MS,
                    "journal replay FAILED; recovery stays frozen and the replay is retried: {e}"
                );
                self.log_event(
                    "replay",
                    None,
                    None,
                    format!("node {node} journal replay FAILED: {e}"),
                );
                self.feed(Event::JournalReplayFailed { node });
            }
        }
    }

    fn install(&mut self, i: Install) {
        tracing::info!(epoch = i.epoch, members = ?i.members.iter().collect::<Vec<_>>(), "membership");
        self.feed(Event::Membership {
            epoch: i.epoch,
            members: i.members,
        });
        let hb = self.membership.heartbeat(self.now_ms());
        self.peers.broadcast(&WireMsg::Heartbeat(hb));
    }

    fn on_peer(&mut self, from: NodeId, msg: Wire) {
        match msg {
            WireMsg::Heartbeat(hb) => {
                let now = self.now_ms();
                if let Some(i) = self.membership.on_heartbeat(from, &hb, now) {
                    self.install(i);
                }
            }
            WireMsg::Core(m) => self.feed(Event::Peer { from, msg: m }),
            WireMsg::Leave => {
                tracing::info!(peer = from, "peer is leaving");
                let now = self.now_ms();
                self.membership.on_leave(from, now);
            }
            WireMsg::Resync => {
                if self.core.members().contains(from) && self.resync_from_epoch.is_none() {
                    tracing::warn!(peer = from, "peer lost lock-core messages; resync asked");
                    self.resync_from_epoch = Some(self.core.epoch());
                }
            }
        }
    }

    fn tick(&mut self) {
        let now = self.now_ms();
        let hb = self.membership.heartbeat(now);
        self.peers.broadcast(&WireMsg::Heartbeat(hb));
        if let Some(i) = self.membership.tick(now) {
            self.install(i);
            return;
        }
        self.watch_recovery(now);
        self.watch_lost_messages(now);
    }

    /// Lock-core messages lost without a membership change (a link that broke and healed
    /// within the heartbeat timeout, or a full queue) would leave requests unanswered. The
    /// cure is a recovery without fencing: the coordinator reinstalls the same view in a new
    /// epoch and every node resends what it holds and waits for. A node that lost messages
    /// asks the coordinator (`Resync`) every tick until a new epoch arrives.
    fn watch_lost_messages(&mut self, now: u64) {
        let shared = self.peers.shared().clone();
        let dropped = shared.stats.core_dropped.load(Ordering::Relaxed);
        if dropped != self.core_dropped_seen {
            self.core_dropped_seen = dropped;
            if self.resync_from_epoch.is_none() {
                tracing::warn!(dropped, "lock-core messages were lost; asking for a resync");
                self.resync_from_epoch = Some(self.core.epoch());
            }
        }
        let Some(from) = self.resync_from_epoch else {
            return;
        };
        if self.self_fenced || self.core.epoch() > from {
            self.resync_from_epoch = None;
            return;
        }
        if shared.isolated.load(Ordering::Relaxed) {
            return;
        }
        let recent = self
            .last_resync_ms
            .is_some_and(|t| now.saturating_sub(t) < self.cfg.heartbeat_timeout_ms);
        if recent {
            return;
        }
        if let Some(i) = self.membership.reinstall(now) {
            tracing::warn!(
                epoch = i.epoch,
                "resync: reinstalling the view so recovery resends"
            );
            self.last_resync_ms = Some(now);
            self.resync_from_epoch = None;
            self.install(i);
        } else {
            self.peers.broadcast(&WireMsg::Resync);
        }
    }

    /// A recovery stuck rebuilding, or a fencer waiting for a member's `Journals` report (a
    /// recovery message lost, e.g. to a peer that restarted between two sends), is restarted
    /// by the coordinator with a new epoch of the same view.
    fn watch_recovery(&mut self, now: u64) {
        if self.core.phase() != mxfs_core::Phase::Rebuilding
            && self.core.awaiting_reports().is_empty()
        {
            self.rebuilding_since_ms = None;
            return;
        }
        let since = *self.rebuilding_since_ms.get_or_insert(now);
        let stall_ms = RECOVERY_STALL_TIMEOUTS * self.cfg.heartbeat_timeout_ms;
        if now.saturating_sub(since) < stall_ms {
            return;
        }
        if let Some(i) = self.membership.reinstall(now) {
            tracing::error!(
                epoch = self.core.epoch(),
                stall_ms,
                "recovery stalled; restarting it"
            );
            self.rebuilding_since_ms = None;
            self.install(i);
        }
    }

    fn ctl(&mut self, call: CtlCall) {
        let CtlCall { req, conn, reply } = call;
        let r = match req {
            CtlRequest::Status {} => CtlReply::Status(self.status()),
            CtlRequest::Locks {} => self.locks(),
            CtlRequest::Top { limit } => self.top(limit),
            CtlRequest::Events { since } => {
                let events: Vec<EventView> = self
                    .events
                    .iter()
                    .filter(|e| e.seq >= since)
                    .cloned()
                    .collect();
                CtlReply::Events {
                    events,
                    next: self.event_seq,
                }
            }
            CtlRequest::DropCore { count } => {
                if !self.cfg.test_hooks {
                    CtlReply::Error {
                        error: "drop_core needs `test_hooks = true` in the config".into(),
                    }
                } else {
                    self.drop_core = count;
                    tracing::warn!(count, "test hook: dropping the next lock-core messages");
                    CtlReply::Ok
                }
            }
            CtlRequest::Isolate { on } => {
                if !self.cfg.test_hooks {
                    CtlReply::Error {
                        error: "isolate needs `test_hooks = true` in the config".into(),
                    }
                } else {
                    self.peers.shared().isolated.store(on, Ordering::Relaxed);
                    tracing::warn!(on, "test hook: peer traffic isolation");
                    CtlReply::Ok
                }
            }
            CtlRequest::Unlock { resource } => match ctl::parse_resource(&resource) {
                Err(e) => CtlReply::Error { error: e },
                Ok(r) => {
                    let ids: Vec<ReqId> = self
                        .local_held
                        .iter()
                        .filter(|(_, (x, _))| *x == r)
                        .map(|(k, _)| *k)
                        .collect();
                    for id in &ids {
                        self.local_held.remove(id);
                        self.feed(Event::KernelRelease {
                            req_id: *id,
                            resource: r,
                        });
                    }
                    if ids.is_empty() {
                        CtlReply::Error {
                            error: format!("no lock held on {resource} by mxfsctl"),
                        }
                    } else {
                        CtlReply::Unlocked { released: ids }
                    }
                }
            },
            CtlRequest::Lock {
                resource,
                mode,
                noqueue,
                timeout_ms,
            } => {
                let parsed =
                    ctl::parse_resource(&resource).and_then(|r| Ok((r, ctl::parse_mode(&mode)?)));
                match parsed {
                    Err(e) => CtlReply::Error { error: e },
                    Ok((r, m)) => {
                        self.local_lock(r, m, noqueue, timeout_ms, conn, reply);
                        return;
                    }
                }
            }
        };
        let _ = reply.send(r);
    }

    fn local_lock(
        &mut self,
        resource: ResourceId,
        mode: LockMode,
        noqueue: bool,
        timeout_ms: Option<u32>,
        conn: u64,
        reply: oneshot::Sender<CtlReply>,
    ) {
        let req_id = self.next_local;
        self.next_local += 1;
        let mut flags = LockFlags::empty();
        if noqueue {
            flags = flags.union(LockFlags::NOQUEUE);
        }
        if timeout_ms.is_some() {
            flags = flags.union(LockFlags::TIMEOUT_MS);
        }
        let asked = Instant::now();
        self.local_pending.insert(
            req_id,
            LocalPending {
                reply,
                conn,
                resource,
                asked,
            },
        );
        self.asked.insert(req_id, asked);
        self.feed(Event::KernelRequest {
            req_id,
            resource,
            mode,
            flags,
            timeout_ms: timeout_ms.unwrap_or(0),
        });
    }

    fn ctl_gone(&mut self, conn: u64) {
        let gone: Vec<ReqId> = self
            .local_pending
            .iter()
            .filter(|(_, p)| p.conn == conn)
            .map(|(k, _)| *k)
            .collect();
        for id in gone {
            self.local_pending.remove(&id);
            self.asked.remove(&id);
            tracing::info!(
                req_id = id,
                "mxfsctl went away; cancelling its lock request"
            );
            self.feed(Event::KernelCancel { req_id: id });
        }
    }

    fn status(&self) -> ctl::StatusView {
        let now = self.now_ms();
        let members = self.core.members();
        let cluster = cluster_of(&self.cfg);
        let recoveries = self
            .core
            .recovery_history()
            .iter()
            .map(|r| ctl::RecoveryView {
                epoch: r.epoch,
                lost: r.lost.iter().collect(),
                duration_ms: r.finished_ms.map(|f| f.saturating_sub(r.started_ms)),
                started_ms: r.started_ms,
                fence_ms: r.fenced_ms.map(|f| f.saturating_sub(r.started_ms)),
                replay_ms: r
                    .replayed_ms
                    .zip(r.fenced_ms)
                    .map(|(d, f)| d.saturating_sub(f)),
                remaster_ms: r
                    .finished_ms
                    .zip(r.replayed_ms)
                    .map(|(d, f)| d.saturating_sub(f)),
                replay_failures: r.replay_failures,
            })
            .collect();
        ctl::StatusView {
            node_id: self.cfg.node_id,
            kernel: self.kernel.describe(),
            epoch: self.core.epoch(),
            members: members.iter().collect(),
            cluster_size: cluster.len(),
            quorum: mxfs_core::quorate(members, cluster),
            phase: format!("{:?}", self.core.phase()),
            peers: self.membership.peers(now),
            recoveries,
            self_fenced: self.self_fenced,
            fencer: self.core.fencer(),
            awaiting_fence: self.core.awaiting_fence().iter().collect(),
            awaiting_replay: self.core.awaiting_replay().iter().collect(),
            replaying: self.core.replaying().iter().collect(),
            journals_known: self.core.journals_known(),
            awaiting_reports: self.core.awaiting_reports().iter().collect(),
            isolated: self.peers.shared().isolated.load(Ordering::Relaxed),
            uptime_ms: now,
        }
    }

    fn locks(&self) -> CtlReply {
        let now = self.now_ms();
        let q = |v: &[mxfs_core::QueueEntry]| -> Vec<HolderView> {
            v.iter()
                .map(|e| HolderView {
                    who: format!("node{}", e.node),
                    mode: e.mode.name().into(),
                    held: e.held.map(|h| h.name().into()),
                    age_ms: now.saturating_sub(e.since_ms),
                })
                .collect()
        };
        let master = self
            .core
            .dump_master()
            .iter()
            .map(|d| MasterView {
                resource: ctl::format_resource(&d.resource),
                master: d.master,
                version: format!("{}.{}", d.version.epoch, d.version.counter),
                granted: q(&d.granted),
                converting: q(&d.converting),
                waiting: q(&d.waiting),
            })
            .collect();
        let local = self
            .core
            .dump_local()
            .iter()
            .map(|d| LocalView {
                resource: ctl::format_resource(&d.resource),
                master: d.master,
                held: d.held.map(|m| m.name().into()),
                holders: d
                    .holders
                    .iter()
                    .map(|(id, m)| HolderView {
                        who: self.req_name(*id),
                        mode: m.name().into(),
                        held: None,
                        age_ms: self
                            .held_since
                            .get(id)
                            .map_or(0, |t| now.saturating_sub(*t)),
                    })
                    .collect(),
                waiting: d
                    .waiting
                    .iter()
                    .map(|(id, m, since)| HolderView {
                        who: self.req_name(*id),
                        mode: m.name().into(),
                        held: None,
                        age_ms: now.saturating_sub(*since),
                    })
                    .collect(),
                bast_pending: d.bast_pending,
            })
            .collect();
        CtlReply::Locks { master, local }
    }

    fn req_name(&self, id: ReqId) -> String {
        if id >= LOCAL_REQ_BASE {
            format!("ctl#{}", id - LOCAL_REQ_BASE)
        } else {
            format!("kernel#{id}")
        }
    }

    fn top(&self, limit: usize) -> CtlReply {
        let mut lines: BTreeMap<ResourceId, ctl::TopLine> = BTreeMap::new();
        let blank = |r: &ResourceId| ctl::TopLine {
            resource: ctl::format_resource(r),
            granted: 0,
            waiting: 0,
            waits_total: 0,
            grants_total: 0,
        };
        for d in self.core.dump_master() {
            let l = lines
                .entry(d.resource)
                .or_insert_with(|| blank(&d.resource));
            l.granted = d.granted.len();
            l.waiting = d.converting.len() + d.waiting.len();
        }
        for (r, (w, g)) in &self.per_resource {
            let l = lines.entry(*r).or_insert_with(|| blank(r));
            l.waits_total = *w;
            l.grants_total = *g;
        }
        let mut v: Vec<ctl::TopLine> = lines.into_values().collect();
        v.sort_by(|a, b| {
            (b.waiting, b.waits_total, b.grants_total).cmp(&(
                a.waiting,
                a.waits_total,
                a.grants_total,
            ))
        });
        v.truncate(limit);
        CtlReply::Top { lines: v }
    }

    /// Tells the peers' cores that this node leaves cleanly, if its kernel holds nothing; the
    /// membership `Leave` that follows on the same connections then drops it without a fence.
    fn announce_leave(&mut self) {
        match self.try_feed(Event::Leave) {
            Ok(()) => tracing::info!("left the cluster cleanly: the peers drop this node unfenced"),
            Err(mxfs_core::Reject::Busy(n)) => tracing::warn!(
                requests = n,
                "the kernel still holds or waits for locks: the peers will fence this node"
            ),
            Err(mxfs_core::Reject::ReplayRunning(nodes)) => tracing::warn!(
                nodes = ?nodes.iter().collect::<Vec<_>>(),
                "this node still replays a lost node's journal: the peers will fence this node \
                 and replay it again"
            ),
            Err(e) => tracing::info!("no clean leave to announce: {e}"),
        }
    }

    /// Releases every lock the ctl client holds and withdraws its waiting requests.
    fn release_all_local(&mut self) {
        let held: Vec<(ReqId, ResourceId)> =
            self.local_held.iter().map(|(k, (r, _))| (*k, *r)).collect();
        for (id, r) in held {
            self.local_held.remove(&id);
            self.feed(Event::KernelRelease {
                req_id: id,
                resource: r,
            });
        }
        let pending: Vec<ReqId> = self.local_pending.keys().copied().collect();
        for id in pending {
            if let Some(p) = self.local_pending.remove(&id) {
                let _ = p.reply.send(CtlReply::Error {
                    error: "mxfsd is shutting down".into(),
                });
            }
            self.feed(Event::KernelCancel { req_id: id });
        }
    }
}

fn socket_ino(p: &std::path::Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).ok().map(|m| m.ino())
}

/// Binds the ctl socket, replacing a stale one (a socket nobody listens on).
fn bind_ctl(path: &PathBuf) -> Result<tokio::net::UnixListener, DaemonError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|err| DaemonError::Bind {
            what: "ctl socket directory",
            addr: dir.display().to_string(),
            err,
        })?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(DaemonError::Bind {
                what: "ctl socket",
                addr: path.display().to_string(),
                err: std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "another mxfsd is serving it",
                ),
            });
        }
        let _ = std::fs::remove_file(path);
    }
    let l = tokio::net::UnixListener::bind(path).map_err(|err| DaemonError::Bind {
        what: "ctl socket",
        addr: path.display().to_string(),
        err,
    })?;
    // Only root (the daemon's user) may take or drop locks through the ctl socket.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|err| {
        DaemonError::Bind {
            what: "ctl socket permissions",
            addr: path.display().to_string(),
            err,
        }
    })?;
    Ok(l)
}

async fn ctl_accept(
    listener: tokio::net::UnixListener,
    tx: mpsc::Sender<CtlCall>,
    int_tx: mpsc::Sender<Internal>,
) {
    let conns = Arc::new(AtomicU64::new(1));
    let slots = Arc::new(tokio::sync::Semaphore::new(CTL_CONNS_MAX));
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!("too many ctl connections; refused");
            continue;
        };
        let conn = conns.fetch_add(1, Ordering::Relaxed);
        let tx = tx.clone();
        let int_tx = int_tx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            ctl_conn(sock, conn, tx).await;
            let _ = int_tx.send(Internal::CtlGone { conn }).await;
        });
    }
}

async fn ctl_conn(sock: tokio::net::UnixStream, conn: u64, tx: mpsc::Sender<CtlCall>) {
    let (r, w) = sock.into_split();
    let mut lines = FramedRead::new(r, ctl::line_codec(ctl::CTL_LINE_BYTES_MAX));
    let mut out = FramedWrite::new(w, LinesCodec::new());
    loop {
        let line = match lines.next().await {
            None => return,
            Some(Ok(l)) => l,
            Some(Err(e)) => {
                let err = CtlReply::Error {
                    error: format!("bad request line: {e}"),
                };
                let _ = out
                    .send(serde_json::to_string(&err).unwrap_or_default())
                    .await;
                return;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let reply = match ctl::parse_request(&line) {
            Err(error) => CtlReply::Error { error },
            Ok(req) => {
                let (rtx, rrx) = oneshot::channel();
                if tx
                    .send(CtlCall {
                        req,
                        conn,
                        reply: rtx,
                    })
                    .await
                    .is_err()
                {
                    return;
                }
                // Wait for the reply, but notice the client going away meanwhile (a blocked
                // `mxfsctl lock` that is interrupted must not leave a request behind).
                tokio::select! {
                    r = rrx => match r {
                        Ok(r) => r,
                        Err(_) => CtlReply::Error { error: "mxfsd dropped the request".into() },
                    },
                    _ = lines.next() => return,
                }
            }
        };
        let text = serde_json::to_string(&reply)
            .unwrap_or_else(|e| format!("{{\"reply\":\"error\",\"error\":\"{e}\"}}"));
        if out.send(text).await.is_err() {
            return;
        }
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(cfg: Config) -> Result<(), DaemonError> {
    let key = cfg.load_key()?;
    let start = Instant::now();
    let mut inc = [0u8; 8];
    getrandom::fill(&mut inc).map_err(|e| DaemonError::Bind {
        what: "random source",
        addr: String::new(),
        err: std::io::Error::other(e.to_string()),
    })?;
    let incarnation = u64::from_le_bytes(inc);

    let (peer_tx, mut peer_rx) = mpsc::channel::<PeerInput>(INPUT_QUEUE_MAX);
    let (kev_tx, mut kev_rx) = mpsc::channel::<Event>(INPUT_QUEUE_MAX);
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<CtlCall>(CTL_CONNS_MAX);
    let (int_tx, mut int_rx) = mpsc::channel::<Internal>(INPUT_QUEUE_MAX);
    // The netlink port reports here, once, that mxfs.ko became unreachable.
    let (klost_tx, mut klost_rx) = mpsc::channel::<String>(1);

    let kernel: Box<dyn KernelPort> = match cfg.kernel {
        KernelKind::None => Box::new(NullPort::default()),
        KernelKind::Netlink => {
            Box::new(NetlinkPort::start(kev_tx.clone(), klost_tx.clone()).await?)
        }
    };
    let ctl_listener = bind_ctl(&cfg.ctl_socket)?;
    let ctl_ino = socket_ino(&cfg.ctl_socket);
    let peers_map = cfg.peers.iter().map(|p| (p.id, p.address)).collect();
    let peers = PeerNet::start(cfg.node_id, key, cfg.listen(), peers_map, peer_tx)
        .await
        .map_err(|err| DaemonError::Bind {
            what: "peer listener",
            addr: cfg.listen().to_string(),
            err,
        })?;
    let metrics = Arc::new(Metrics::default());
    let status_cache = Arc::new(Mutex::new((0usize, 0u64)));
    if let Some(addr) = cfg.metrics_address {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|err| DaemonError::Bind {
                what: "metrics",
                addr: addr.to_string(),
                err,
            })?;
        let m = metrics.clone();
        let sc = status_cache.clone();
        let ps = peers.shared().clone();
        tokio::spawn(crate::metrics::serve(
            l,
            Arc::new(move || {
                let (members, epoch) = *sc.lock().unwrap_or_else(|e| e.into_inner());
                m.render(&[
                    ("mxfs_members", members as u64),
                    ("mxfs_epoch", epoch),
                    (
                        "mxfs_peer_auth_failures",
                        ps.stats.auth_failures.load(Ordering::Relaxed),
                    ),
                    (
                        "mxfs_peer_bad_frames",
                        ps.stats.bad_frames.load(Ordering::Relaxed),
                    ),
                    (
                        "mxfs_peer_dropped",
                        ps.stats.dropped.load(Ordering::Relaxed),
                    ),
                    ("mxfs_peer_sent", ps.stats.sent.load(Ordering::Relaxed)),
                    (
                        "mxfs_peer_received",
                        ps.stats.received.load(Ordering::Relaxed),
                    ),
                ])
            }),
        ));
    }
    tokio::spawn(ctl_accept(ctl_listener, ctl_tx, int_tx.clone()));

    let cluster = cluster_of(&cfg);
    let core = Core::new(mxfs_core::Config {
        node: cfg.node_id,
        cluster,
        members: NodeSet::EMPTY,
        epoch: 0,
        limits: mxfs_core::Limits::DEFAULT,
    });
    let membership = Box::new(HeartbeatMembership::new(
        cfg.node_id,
        cluster,
        incarnation,
        cfg.heartbeat_interval_ms,
        cfg.heartbeat_timeout_ms,
        0,
    ));
    tracing::info!(
        node = cfg.node_id,
        listen = %cfg.listen(),
        ctl = %cfg.ctl_socket.display(),
        kernel = %kernel.describe(),
        "mxfsd started"
    );
    let mut st = State {
        start,
        core,
        membership,
        peers,
        kernel,
        metrics,
        int_tx,
        timers: Timers::default(),
        fencing: BTreeSet::new(),
        next_local: LOCAL_REQ_BASE,
        local_pending: BTreeMap::new(),
        local_held: BTreeMap::new(),
        asked: BTreeMap::new(),
        events: VecDeque::new(),
        event_seq: 0,
        per_resource: BTreeMap::new(),
        held_since: BTreeMap::new(),
        rebuilding_since_ms: None,
        drop_core: 0,
        core_dropped_seen: 0,
        resync_from_epoch: None,
        last_resync_ms: None,
        self_fenced: false,
        recoveries_logged: BTreeSet::new(),
        status_cache,
        cfg,
    };

    let mut tick = tokio::time::interval(Duration::from_millis(st.cfg.heartbeat_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Persistent signal streams: a fresh `ctrl_c()` future per loop turn would re-register
    // with the signal driver on every event.
    let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|err| DaemonError::Bind {
            what: "signal",
            addr: "SIGINT".into(),
            err,
        })?;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|err| DaemonError::Bind {
            what: "signal",
            addr: "SIGTERM".into(),
            err,
        })?;
    let _keep_kernel_tx = kev_tx;
    let _keep_klost_tx = klost_tx;
    let mut kernel_lost = None;
    // One sleep for the earliest lock-core timer, re-armed only when that deadline changes.
    let idle = || tokio::time::Instant::now() + Duration::from_secs(86_400);
    let timer = tokio::time::sleep_until(idle());
    tokio::pin!(timer);
    let mut timer_at_ms: Option<u64> = None;
    loop {
        let next = st.timers.next_deadline_ms();
        if next != timer_at_ms {
            timer_at_ms = next;
            let at = next.map_or_else(idle, |ms| (st.start + Duration::from_millis(ms)).into());
            timer.as_mut().reset(at);
        }
        tokio::select! {
            _ = &mut timer, if timer_at_ms.is_some() => {
                let now = st.now_ms();
                while let Some(id) = st.timers.pop_due(now) {
                    st.feed(Event::Timer { id });
                }
                timer_at_ms = None; // the sleep has completed: re-arm it on the next turn
            }
            Some(PeerInput::Msg { from, msg }) = peer_rx.recv() => st.on_peer(from, msg),
            Some(ev) = kev_rx.recv() => st.kernel_event(ev),
            Some(call) = ctl_rx.recv() => st.ctl(call),
            Some(i) = int_rx.recv() => match i {
                Internal::Fenced { node } => {
                    st.fencing.remove(&node);
                    st.log_event("fence", None, None, format!("node {node} fenced"));
                    st.feed(Event::FenceConfirmed { node });
                }
                Internal::Replayed { node, result } => st.replay_result(node, result),
                Internal::CtlGone { conn } => st.ctl_gone(conn),
            },
            _ = tick.tick() => st.tick(),
            Some(why) = klost_rx.recv() => {
                kernel_lost = Some(why);
                break;
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
        // Kernel-bound messages are never dropped: what this turn delivered that did not fit
        // the netlink send queue goes in before the loop takes more input (backpressure).
        if st.kernel.backlog() > 0 {
            st.kernel.flush().await;
        }
    }
    tracing::info!("shutting down: releasing locks held by this node");
    st.release_all_local();
    st.announce_leave();
    st.peers.broadcast(&WireMsg::Leave);
    st.kernel.flush().await;
    tokio::time::sleep(Duration::from_millis(SHUTDOWN_FLUSH_MS)).await;
    // Remove the socket only if it is still ours (a new mxfsd may already have replaced it).
    if socket_ino(&st.cfg.ctl_socket) == ctl_ino {
        let _ = std::fs::remove_file(&st.cfg.ctl_socket);
    }
    tracing::info!("mxfsd stopped");
    match kernel_lost {
        Some(why) => Err(DaemonError::KernelLost(why)),
        None => Ok(()),
    }
}
