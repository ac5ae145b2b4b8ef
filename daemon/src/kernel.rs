//! The kernel side of the daemon, behind [`KernelPort`].
//!
//! - [`NullPort`] (`kernel = "none"`): no module; only ctl-owned local clients take locks. Every
//!   kernel message is still recorded in the daemon's event log, so tests observe CACHE_INVAL
//!   and grant order exactly as the module would receive it.
//! - [`NetlinkPort`] (`kernel = "netlink"`): the real `mxfs.ko` over Generic Netlink. neli
//!   resolves the family and multicast groups; messages are encoded and parsed with `mxfs-proto`
//!   only (one strict parser shared with the module and the fuzz targets).
//!
//! Kernel-bound messages are never dropped. A lost `CACHE_INVAL` would let a stale grant
//! through and a lost grant would leak the lock, so:
//! - [`KernelPort::deliver`] queues in order and never blocks; what does not fit the bounded
//!   send queue ([`NL_SEND_QUEUE_MAX`]) waits in the port's backlog, and the event loop awaits
//!   [`KernelPort::flush`] before it takes more input (backpressure, see [`SendQueue`]).
//! - The writer task sends one datagram at a time. A send that would block waits for the
//!   socket; a transient failure (`ENOBUFS`, `ENOMEM`, `EINTR`) sends the same message again
//!   after [`NL_SEND_RETRY_MS`], so order is kept. Any other failure means mxfsd cannot reach
//!   the kernel at all: the writer logs it as such and reports it, and the daemon stops with
//!   an error (the peers then fence this node if its kernel held locks) rather than run on
//!   with a kernel it cannot tell about grants and invalidations.

use mxfs_core::{Event, KernelMsg, ResourceId};
use mxfs_proto as proto;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Where the daemon's kernel messages go.
pub trait KernelPort: Send {
    /// Queues one message for the kernel, after every message delivered before it; never
    /// blocks and never drops it (what does not fit the send queue waits for [`Self::flush`]).
    fn deliver(&mut self, msg: &KernelMsg);
    /// Answers the port has ready for the lock core. Every `CACHE_INVAL` is answered with
    /// exactly one [`Event::CacheInvalDone`]: a port without a kernel answers at once, here;
    /// the netlink port answers from the kernel's ack, through the kernel event channel.
    fn take_answers(&mut self) -> Vec<Event> {
        Vec::new()
    }
    /// Messages delivered but not yet in the send queue.
    fn backlog(&self) -> usize {
        0
    }
    /// Waits until the backlog is in the send queue. The event loop awaits this after every
    /// turn, before it takes more input, so a full queue slows the daemon down instead of
    /// losing a message.
    fn flush(&mut self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(std::future::ready(()))
    }
    /// A short description for status output.
    fn describe(&self) -> String;
}

/// No kernel module (tests and operators); messages only reach the event log. With no page
/// cache to drop, every `CACHE_INVAL` succeeds at once.
#[derive(Default)]
pub struct NullPort {
    answers: Vec<Event>,
}

impl KernelPort for NullPort {
    fn deliver(&mut self, msg: &KernelMsg) {
        if let KernelMsg::CacheInval { resource, .. } = msg {
            self.answers.push(Event::CacheInvalDone {
                resource: *resource,
                errno: 0,
            });
        }
    }
    fn take_answers(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.answers)
    }
    fn describe(&self) -> String {
        "none".into()
    }
}

/// Errors setting up the netlink port.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The `mxfs` family is not registered.
    #[error("mxfs genetlink family not found: is mxfs.ko loaded? ({0})")]
    NoFamily(String),
    /// A multicast group is missing.
    #[error("mxfs genetlink multicast group `{0}` not found: mxfs.ko version mismatch? ({1})")]
    NoGroup(&'static str, String),
    /// Socket error.
    #[error("netlink socket: {0}")]
    Io(#[from] std::io::Error),
    /// Other neli error.
    #[error("netlink: {0}")]
    Netlink(String),
}

/// Largest datagram read from the netlink socket.
pub const NL_RECV_BYTES_MAX: usize = 64 * 1024;
/// Kernel messages queued for the writer task.
pub const NL_SEND_QUEUE_MAX: usize = 65_536;
/// Pause before the writer sends a message again after a transient failure (`ENOBUFS`,
/// `ENOMEM`, `EINTR`).
pub const NL_SEND_RETRY_MS: u64 = 10;
/// While one message keeps failing transiently, the writer logs every this many retries (the
/// first one included), so a long stall is visible without flooding the log.
pub const NL_SEND_RETRY_LOG_EVERY: u64 = 100;
const NLMSG_ERROR: u16 = 2;
/// `ENOBUFS` on Linux (std has no `ErrorKind` for it).
const ENOBUFS: i32 = 105;

/// The real module over Generic Netlink.
pub struct NetlinkPort {
    family: u16,
    portid: u32,
    volumes: Arc<Mutex<BTreeSet<u64>>>,
    out: SendQueue,
    seq: u32,
    invals: PendingInvals,
}

/// `CACHE_INVAL`s sent and not yet acknowledged, by netlink sequence number. The kernel acks
/// every message (`NLM_F_ACK`) with its errno; the reader turns the ack of an invalidation
/// into the lock core's [`Event::CacheInvalDone`], so a grant waits for the pages to be gone
/// and a refused invalidation grants nothing.
#[derive(Clone, Default)]
pub struct PendingInvals(Arc<Mutex<BTreeMap<u32, ResourceId>>>);

impl PendingInvals {
    fn insert(&self, seq: u32, resource: ResourceId) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.insert(seq, resource);
    }

    /// The answer for the ack of message `seq` with `errno` (0 or negative), if that message
    /// was an invalidation still waiting.
    pub fn answer(&self, seq: u32, errno: i32) -> Option<Event> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let resource = m.remove(&seq)?;
        Some(Event::CacheInvalDone { resource, errno })
    }

    /// Answers every waiting invalidation with `errno`: their acks may be among the messages a
    /// receive-buffer overrun lost, and a refusal is the safe answer (the waiters are denied,
    /// nothing stale is granted; a later real ack finds nothing and is ignored).
    pub fn fail_all(&self, errno: i32) -> Vec<Event> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *m)
            .into_values()
            .map(|resource| Event::CacheInvalDone { resource, errno })
            .collect()
    }
}

/// The ordered, lossless hand-off from the event loop to the writer task: a bounded channel of
/// encoded datagrams, and a backlog for what did not fit. Once anything waits in the backlog,
/// later messages queue behind it, so the kernel sees them in delivery order.
pub struct SendQueue {
    tx: mpsc::Sender<Vec<u8>>,
    backlog: VecDeque<Vec<u8>>,
}

impl SendQueue {
    /// A queue of `capacity` datagrams (the daemon uses [`NL_SEND_QUEUE_MAX`]) and the receiving
    /// end for the writer.
    pub fn new(capacity: usize) -> (SendQueue, mpsc::Receiver<Vec<u8>>) {
        let (tx, rx) = mpsc::channel(capacity);
        let q = SendQueue {
            tx,
            backlog: VecDeque::new(),
        };
        (q, rx)
    }

    /// A sender for other tasks (the reader's `VOLUME_MOUNT` ack), which wait for room.
    pub fn sender(&self) -> mpsc::Sender<Vec<u8>> {
        self.tx.clone()
    }

    /// Queues a datagram without waiting.
    pub fn push(&mut self, b: Vec<u8>) {
        if !self.backlog.is_empty() {
            self.backlog.push_back(b);
            return;
        }
        match self.tx.try_send(b) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(b)) => self.backlog.push_back(b),
            Err(mpsc::error::TrySendError::Closed(_)) => writer_gone(1),
        }
    }

    /// Datagrams waiting for room in the channel.
    pub fn backlog(&self) -> usize {
        self.backlog.len()
    }

    /// Moves the backlog into the channel, waiting for room. Cancel-safe: a datagram leaves the
    /// backlog only together with the channel slot reserved for it.
    pub async fn flush(&mut self) {
        while !self.backlog.is_empty() {
            match self.tx.reserve().await {
                Ok(permit) => {
                    if let Some(b) = self.backlog.pop_front() {
                        permit.send(b);
                    }
                }
                Err(_) => {
                    writer_gone(self.backlog.len());
                    self.backlog.clear();
                }
            }
        }
    }
}

/// The writer stopped because the kernel is unreachable (it said why, and the daemon is
/// stopping): nothing can carry these messages any more.
fn writer_gone(n: usize) {
    tracing::error!(
        messages = n,
        "netlink writer stopped (mxfs.ko unreachable): kernel-bound messages not delivered"
    );
}

/// What the writer does after a failed send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendFailure {
    /// Out of buffers or memory, or interrupted: send the same message again after
    /// [`NL_SEND_RETRY_MS`].
    Transient,
    /// The socket or the kernel refuses for good (closed or invalid socket, connection refused,
    /// bad message): mxfsd cannot reach the kernel.
    Fatal,
}

/// Sorts a send error (would-block is not an error here: the writer waits for the socket).
pub fn send_failure(e: &std::io::Error) -> SendFailure {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::OutOfMemory | ErrorKind::Interrupted | ErrorKind::WouldBlock => {
            SendFailure::Transient
        }
        _ if e.raw_os_error() == Some(ENOBUFS) => SendFailure::Transient,
        _ => SendFailure::Fatal,
    }
}

/// Sends one datagram to the kernel, waiting while the socket would block.
pub trait NlSink: Send + Sync + 'static {
    /// `Ok` once sent; the OS error otherwise.
    fn send(&self, b: &[u8]) -> impl Future<Output = std::io::Result<()>> + Send;
}

/// Converts a parsed kernel message into a core event, if it is one.
pub fn event_of(msg: &proto::Message<'_>) -> Option<Event> {
    match msg {
        proto::Message::LockReq(r) => Some(Event::KernelRequest {
            req_id: r.req_id,
            resource: r.resource,
            mode: r.mode,
            flags: r.flags,
            timeout_ms: r.timeout_ms.unwrap_or(0),
        }),
        proto::Message::LockRelease(r) => Some(match r.mode {
            Some(_) => Event::KernelRelease {
                req_id: r.req_id,
                resource: r.resource,
            },
            // A grant that arrived after the kernel gave up: hand it back.
            None => Event::KernelCancel { req_id: r.req_id },
        }),
        _ => None,
    }
}

/// Bits of [`proto::LockGrant::data_version`] that hold the version's counter; the master's
/// epoch goes above them.
const DATA_VERSION_COUNTER_BITS: u32 = 40;

/// The wire form of a data version: the epoch in the high 24 bits, the counter in the low 40.
/// The kernel only compares versions for equality, so a version that does not fit is sent as
/// unknown (`None`), which makes the kernel refresh: never wrong, only slower.
pub fn data_version(v: mxfs_core::Version) -> Option<u64> {
    let epoch_max = (1u64 << (64 - DATA_VERSION_COUNTER_BITS)) - 1;
    if v.epoch > epoch_max || v.counter >> DATA_VERSION_COUNTER_BITS != 0 {
        return None;
    }
    Some(v.epoch << DATA_VERSION_COUNTER_BITS | v.counter)
}

/// Converts core kernel messages into wire messages (one per mounted volume for recovery).
pub fn messages_of(msg: &KernelMsg, volumes: &BTreeSet<u64>) -> Vec<proto::Message<'static>> {
    match *msg {
        KernelMsg::Grant {
            req_id,
            resource,
            mode,
            version,
        } => {
            vec![proto::Message::LockGrant(proto::LockGrant {
                req_id,
                resource,
                mode,
                data_version: version.and_then(data_version),
            })]
        }
        KernelMsg::Deny {
            req_id,
            resource,
            errno,
        } => {
            vec![proto::Message::LockDeny(proto::LockDeny {
                req_id,
                resource,
                status: errno,
            })]
        }
        KernelMsg::CacheInval {
            resource: _,
            volume,
            ino,
            offset,
            len,
        } => {
            vec![proto::Message::CacheInval(proto::CacheInval {
                volume,
                ino,
                offset,
                length: len,
            })]
        }
        KernelMsg::NodeStatus { node, state } => {
            vec![proto::Message::NodeStatus(proto::NodeStatus {
                node_id: node,
                state,
                epoch: None,
            })]
        }
        KernelMsg::RecoveryStart { epoch } => volumes
            .iter()
            .map(|v| proto::Message::RecoveryStart(proto::RecoveryStart { volume: *v, epoch }))
            .collect(),
        KernelMsg::RecoveryDone { epoch } => volumes
            .iter()
            .map(|v| proto::Message::RecoveryDone(proto::RecoveryDone { volume: *v, epoch }))
            .collect(),
        KernelMsg::Callback {
            req_id,
            resource,
            mode,
        } => {
            vec![proto::Message::LockCallback(proto::LockCallback {
                req_id,
                resource,
                mode,
            })]
        }
    }
}

impl NetlinkPort {
    /// Resolves the family, joins the `locks` and `status` groups, registers with
    /// `STATUS_REQ`, and starts the reader (events to `events`) and writer tasks.
    /// If the kernel becomes unreachable (a send fails for good, or the socket cannot be read
    /// any more), the reason goes to `lost` once and the daemon should stop.
    pub async fn start(
        events: mpsc::Sender<Event>,
        lost: mpsc::Sender<String>,
    ) -> Result<NetlinkPort, KernelError> {
        use neli::consts::socket::NlFamily;
        use neli::router::asynchronous::NlRouter;
        use neli::utils::Groups;

        let (router, _multicast) = NlRouter::connect(NlFamily::Generic, None, Groups::empty())
            .await
            .map_err(|e| KernelError::Netlink(e.to_string()))?;
        let family = router
            .resolve_genl_family(proto::FAMILY_NAME)
            .await
            .map_err(|e| KernelError::NoFamily(e.to_string()))?;
        let mut groups = Vec::new();
        for g in [proto::MCGRP_LOCKS, proto::MCGRP_STATUS] {
            let id = router
                .resolve_nl_mcast_group(proto::FAMILY_NAME, g)
                .await
                .map_err(|e| KernelError::NoGroup(g, e.to_string()))?;
            groups.push(id);
        }
        drop(router);

        let sock = neli::socket::NlSocket::connect(NlFamily::Generic, None, Groups::empty())?;
        sock.add_mcast_membership(Groups::new_groups(&groups))?;
        sock.nonblock()?;
        let portid = sock.pid()?;
        // `AsyncFd::new` is deprecated for types that do not prove I/O safety; `NlSocket` owns
        // its fd exclusively and closes it only on drop, after `AsyncFd` deregisters it.
        #[allow(deprecated)]
        let fd = Arc::new(tokio::io::unix::AsyncFd::new(sock)?);
        let (mut port, out_rx) = NetlinkPort::detached(family, portid, NL_SEND_QUEUE_MAX);
        tokio::spawn(writer(fd.clone(), out_rx, lost.clone()));
        let to = ReaderOutputs {
            events,
            out: port.out.sender(),
            lost,
        };
        tokio::spawn(reader(
            fd,
            family,
            portid,
            port.volumes.clone(),
            port.pending_invals(),
            to,
        ));
        port.send(&proto::Message::StatusReq(proto::StatusReq));
        tracing::info!(family, portid, ?groups, "netlink: registered with mxfs.ko");
        Ok(port)
    }

    /// A port with no socket behind it: what it delivers comes out of the returned receiver
    /// (the writer's end). `start` wires it to the socket; tests read it directly.
    pub fn detached(
        family: u16,
        portid: u32,
        capacity: usize,
    ) -> (NetlinkPort, mpsc::Receiver<Vec<u8>>) {
        let (out, rx) = SendQueue::new(capacity);
        let port = NetlinkPort {
            family,
            portid,
            volumes: Arc::new(Mutex::new(BTreeSet::new())),
            out,
            seq: 0,
            invals: PendingInvals::default(),
        };
        (port, rx)
    }

    /// Sends `m`; returns its sequence number, or `None` if it cannot be encoded.
    fn send(&mut self, m: &proto::Message<'_>) -> Option<u32> {
        self.seq = self.seq.wrapping_add(1);
        let b = encode(self.family, self.portid, self.seq, m)?;
        self.out.push(b);
        Some(self.seq)
    }

    /// The invalidations waiting for the kernel's ack (shared with the reader).
    pub fn pending_invals(&self) -> PendingInvals {
        self.invals.clone()
    }
}

fn encode(family: u16, portid: u32, seq: u32, m: &proto::Message<'_>) -> Option<Vec<u8>> {
    let h = proto::NlHeader {
        nlmsg_type: family,
        flags: proto::NLM_F_REQUEST | proto::NLM_F_ACK,
        seq,
        pid: portid,
    };
    let mut buf = vec![0u8; proto::MSG_LEN_MAX];
    match proto::encode_message(&h, m, &mut buf) {
        Ok(n) => {
            buf.truncate(n);
            Some(buf)
        }
        Err(e) => {
            tracing::error!("cannot encode {}: {e}", m.command().name());
            None
        }
    }
}

impl KernelPort for NetlinkPort {
    fn deliver(&mut self, msg: &KernelMsg) {
        let vols = self.volumes.lock().map(|v| v.clone()).unwrap_or_default();
        for m in messages_of(msg, &vols) {
            let seq = self.send(&m);
            if let (KernelMsg::CacheInval { resource, .. }, Some(seq)) = (msg, seq) {
                self.invals.insert(seq, *resource);
            }
        }
    }
    fn backlog(&self) -> usize {
        self.out.backlog()
    }
    fn flush(&mut self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.out.flush())
    }
    fn describe(&self) -> String {
        format!("netlink (family {}, portid {})", self.family, self.portid)
    }
}

/// The sequence number and errno (0 or negative) of an `NLMSG_ERROR` datagram (an ack), or
/// `None` if it is too short to carry them.
pub fn ack_of(one: &[u8]) -> Option<(u32, i32)> {
    let seq = one.get(8..12)?;
    let e = one.get(proto::NLMSG_HDRLEN..proto::NLMSG_HDRLEN + 4)?;
    Some((
        u32::from_ne_bytes([seq[0], seq[1], seq[2], seq[3]]),
        i32::from_ne_bytes([e[0], e[1], e[2], e[3]]),
    ))
}

type Fd = Arc<tokio::io::unix::AsyncFd<neli::socket::NlSocket>>;

impl NlSink for Fd {
    async fn send(&self, b: &[u8]) -> std::io::Result<()> {
        use neli::consts::socket::Msg;
        loop {
            let mut g = self.writable().await?;
            match g.try_io(|s| s.get_ref().send(b, Msg::empty())) {
                Ok(r) => return r.map(|_| ()),
                Err(_would_block) => continue,
            }
        }
    }
}

/// Sends every queued datagram in order, none dropped: a transient failure sends the same
/// datagram again after [`NL_SEND_RETRY_MS`]; a fatal one is reported to `lost` and ends the
/// writer (the queue then closes, see [`SendQueue`]). Ends when every sender is gone.
pub async fn writer<S: NlSink>(
    sink: S,
    mut rx: mpsc::Receiver<Vec<u8>>,
    lost: mpsc::Sender<String>,
) {
    while let Some(b) = rx.recv().await {
        let mut retries: u64 = 0;
        loop {
            let Err(e) = sink.send(&b).await else {
                break;
            };
            if send_failure(&e) == SendFailure::Fatal {
                let why = format!(
                    "netlink send failed: {e}: mxfsd cannot reach mxfs.ko any more, so grants \
                     and CACHE_INVAL cannot be delivered; stopping"
                );
                tracing::error!("{why}");
                let _ = lost.try_send(why);
                return;
            }
            if retries.is_multiple_of(NL_SEND_RETRY_LOG_EVERY) {
                tracing::warn!(
                    retries,
                    "netlink send: {e}; sending the same message again in {NL_SEND_RETRY_MS} ms \
                     (nothing is dropped)"
                );
            }
            retries += 1;
            tokio::time::sleep(Duration::from_millis(NL_SEND_RETRY_MS)).await;
        }
    }
}

/// Where the reader sends what it hears: core events, datagrams for the kernel (the
/// `VOLUME_MOUNT` ack), and the reason the kernel became unreachable.
struct ReaderOutputs {
    events: mpsc::Sender<Event>,
    out: mpsc::Sender<Vec<u8>>,
    lost: mpsc::Sender<String>,
}

async fn reader(
    fd: Fd,
    family: u16,
    portid: u32,
    volumes: Arc<Mutex<BTreeSet<u64>>>,
    invals: PendingInvals,
    to: ReaderOutputs,
) {
    let ReaderOutputs { events, out, lost } = to;
    use neli::consts::socket::Msg;
    let mut buf = vec![0u8; NL_RECV_BYTES_MAX];
    let mut seq = 1u32 << 31;
    loop {
        let n = loop {
            let Ok(mut g) = fd.readable().await else {
                return;
            };
            match g.try_io(|s| s.get_ref().recv(&mut buf[..], Msg::empty())) {
                Ok(Ok((n, _))) => break n,
                // The receive buffer overflowed (a burst of multicasts or acks): those are
                // gone, but the socket works; keep reading.
                Ok(Err(e)) if e.raw_os_error() == Some(ENOBUFS) => {
                    tracing::error!("netlink recv: {e}: messages from mxfs.ko were lost");
                    for ev in invals.fail_all(-ENOBUFS) {
                        if events.send(ev).await.is_err() {
                            return;
                        }
                    }
                    continue;
                }
                Ok(Err(e)) => {
                    let why = format!(
                        "netlink recv failed: {e}: mxfsd cannot hear mxfs.ko any more; stopping"
                    );
                    tracing::error!("{why}");
                    let _ = lost.try_send(why);
                    return;
                }
                Err(_would_block) => continue,
            }
        };
        let mut off = 0;
        while off + proto::NLMSG_HDRLEN <= n {
            let len =
                u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
            if len < proto::NLMSG_HDRLEN || off + len > n {
                tracing::warn!(len, "netlink: truncated message dropped");
                break;
            }
            let one = &buf[off..off + len];
            off += proto::nla_align(len);
            let ty = u16::from_ne_bytes([one[4], one[5]]);
            if ty == NLMSG_ERROR {
                let Some((seq, e)) = ack_of(one) else {
                    tracing::warn!("netlink: short ack dropped");
                    continue;
                };
                if e != 0 {
                    tracing::error!(errno = e, seq, "netlink: kernel refused a message");
                }
                if let Some(ev) = invals.answer(seq, e) {
                    if events.send(ev).await.is_err() {
                        return;
                    }
                }
                continue;
            }
            if ty != family {
                continue;
            }
            let msg = match proto::parse_message(one) {
                Ok((_, m)) => m,
                Err(e) => {
                    tracing::warn!("netlink: malformed message from kernel dropped: {e}");
                    continue;
                }
            };
            match msg {
                proto::Message::VolumeMount(v) => {
                    tracing::info!(volume = v.volume, dev = ?v.dev_path, mnt = ?v.mount_path, "volume mounted");
                    if let Ok(mut s) = volumes.lock() {
                        s.insert(v.volume);
                    }
                    seq = seq.wrapping_add(1);
                    let ack = proto::Message::VolumeMount(proto::VolumeMount {
                        volume: v.volume,
                        dev_path: None,
                        mount_path: None,
                        generation: None,
                    });
                    if let Some(b) = encode(family, portid, seq, &ack) {
                        // Waits for room like every kernel-bound message; fails only once the
                        // writer stopped (already reported).
                        if out.send(b).await.is_err() {
                            writer_gone(1);
                        }
                    }
                }
                proto::Message::VolumeUmount(v) => {
                    tracing::info!(volume = v.volume, "volume unmounted");
                    if let Ok(mut s) = volumes.lock() {
                        s.remove(&v.volume);
                    }
                }
                proto::Message::VolumeWithdraw(w) => {
                    // The mount shut down with locks it cannot release cleanly: they must not
                    // pass to another node before this node is fenced and its journal
                    // replayed. The lock core does not act on this yet (issue 10); say so.
                    tracing::error!(
                        volume = w.volume,
                        errno = w.status,
                        "mxfs.ko withdrew the volume: this node must be fenced before its locks \
                         pass on (mxfsd does not act on VOLUME_WITHDRAW yet)"
                    );
                }
                proto::Message::StatusResp(s) => {
                    tracing::info!(?s, "kernel status");
                    // A daemon (re)started after the mount learns the volume from here, as
                    // the kernel does not announce an existing mount again.
                    if let (Some(v), Ok(mut set)) = (s.volume, volumes.lock()) {
                        set.insert(v);
                    }
                }
                other => match event_of(&other) {
                    Some(ev) => {
                        if events.send(ev).await.is_err() {
                            return;
                        }
                    }
                    None => {
                        tracing::warn!("netlink: unexpected {} from kernel", other.command().name())
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mxfs_core::{LockMode, ResourceId};
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A writer's socket that takes 1 ms per datagram and answers `ENOBUFS` to every
    /// `fail_every`-th attempt (0: never), or `fatal` to every attempt.
    struct SlowSink {
        sent: Arc<Mutex<Vec<Vec<u8>>>>,
        attempts: AtomicU64,
        fail_every: u64,
        fatal: Option<i32>,
    }

    impl SlowSink {
        fn new(fail_every: u64, fatal: Option<i32>) -> (SlowSink, Arc<Mutex<Vec<Vec<u8>>>>) {
            let sent = Arc::new(Mutex::new(Vec::new()));
            let sink = SlowSink {
                sent: sent.clone(),
                attempts: AtomicU64::new(0),
                fail_every,
                fatal,
            };
            (sink, sent)
        }
    }

    impl NlSink for SlowSink {
        async fn send(&self, b: &[u8]) -> std::io::Result<()> {
            tokio::time::sleep(Duration::from_millis(1)).await;
            if let Some(e) = self.fatal {
                return Err(std::io::Error::from_raw_os_error(e));
            }
            let n = self.attempts.fetch_add(1, Ordering::Relaxed) + 1;
            if self.fail_every > 0 && n.is_multiple_of(self.fail_every) {
                return Err(std::io::Error::from_raw_os_error(ENOBUFS));
            }
            self.sent.lock().unwrap().push(b.to_vec());
            Ok(())
        }
    }

    fn grant(req_id: u64) -> KernelMsg {
        KernelMsg::Grant {
            req_id,
            resource: ResourceId::inode(1, req_id),
            mode: LockMode::Ex,
            version: None,
        }
    }

    fn granted_ids(datagrams: &[Vec<u8>]) -> Vec<u64> {
        datagrams
            .iter()
            .map(|b| match proto::parse_message(b) {
                Ok((_, proto::Message::LockGrant(g))) => g.req_id,
                other => panic!("not a grant: {other:?}"),
            })
            .collect()
    }

    /// A queue of one datagram, a writer that is slow and sometimes out of buffers: every
    /// message the event loop delivers still reaches the socket, in delivery order. (With the
    /// old `try_send`, everything past the first message of a turn was dropped.)
    #[tokio::test]
    async fn a_full_queue_waits_and_nothing_is_lost_or_reordered() {
        const TURNS: u64 = 40;
        const PER_TURN: u64 = 3;
        let (mut port, rx) = NetlinkPort::detached(0x20, 7, 1);
        let (sink, sent) = SlowSink::new(10, None);
        let (lost_tx, mut lost_rx) = mpsc::channel(1);
        let w = tokio::spawn(writer(sink, rx, lost_tx));
        let mut most_waiting = 0;
        for turn in 0..TURNS {
            for i in 0..PER_TURN {
                port.deliver(&grant(turn * PER_TURN + i));
            }
            most_waiting = most_waiting.max(port.backlog());
            port.flush().await;
            assert_eq!(port.backlog(), 0, "flush leaves nothing behind");
        }
        drop(port);
        tokio::time::timeout(Duration::from_secs(10), w)
            .await
            .expect("the writer ends once the port is gone")
            .unwrap();
        let want: Vec<u64> = (0..TURNS * PER_TURN).collect();
        assert_eq!(granted_ids(&sent.lock().unwrap()), want);
        assert!(most_waiting > 0, "the test must fill the queue");
        assert!(lost_rx.try_recv().is_err(), "ENOBUFS is retried, not fatal");
    }

    /// A socket that refuses for good: the writer says that mxfs.ko is unreachable, reports it
    /// once and stops; later deliveries do not hang the event loop.
    #[tokio::test]
    async fn a_dead_socket_is_reported_and_does_not_hang_the_loop() {
        const EBADF: i32 = 9;
        let (mut port, rx) = NetlinkPort::detached(0x20, 7, 1);
        let (sink, sent) = SlowSink::new(0, Some(EBADF));
        let (lost_tx, mut lost_rx) = mpsc::channel(1);
        let w = tokio::spawn(writer(sink, rx, lost_tx));
        port.deliver(&grant(1));
        let why = tokio::time::timeout(Duration::from_secs(5), lost_rx.recv())
            .await
            .expect("reported")
            .expect("a reason");
        assert!(why.contains("cannot reach mxfs.ko"), "{why}");
        w.await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            for i in 2..10 {
                port.deliver(&grant(i));
                port.flush().await;
            }
        })
        .await
        .expect("flush returns once the writer is gone");
        assert!(sent.lock().unwrap().is_empty());
    }

    fn inval_of(r: ResourceId) -> KernelMsg {
        KernelMsg::CacheInval {
            resource: r,
            volume: r.volume,
            ino: r.a,
            offset: 0,
            len: 0,
        }
    }

    #[test]
    fn a_port_without_a_kernel_answers_every_invalidation_once() {
        let r = ResourceId::inode(7, 42);
        let mut port = NullPort::default();
        port.deliver(&inval_of(r));
        port.deliver(&KernelMsg::RecoveryStart { epoch: 2 });
        assert_eq!(
            port.take_answers(),
            vec![Event::CacheInvalDone {
                resource: r,
                errno: 0
            }]
        );
        assert!(port.take_answers().is_empty(), "answered once");
    }

    #[test]
    fn the_kernel_ack_of_an_invalidation_becomes_its_answer() {
        const EBUSY: i32 = -16;
        let r = ResourceId::inode(7, 42);
        let (mut port, mut rx) = NetlinkPort::detached(0x20, 5, 8);
        port.deliver(&KernelMsg::RecoveryStart { epoch: 2 });
        port.deliver(&inval_of(r));
        let pending = port.pending_invals();
        let mut seqs = Vec::new();
        while let Ok(b) = rx.try_recv() {
            seqs.push(u32::from_ne_bytes([b[8], b[9], b[10], b[11]]));
        }
        // No volume is mounted, so RECOVERY_START sends nothing: one datagram, the inval.
        let [seq] = seqs[..] else {
            panic!("one datagram expected: {seqs:?}")
        };
        // An NLMSG_ERROR ack as the kernel sends it: header, errno, the request's header.
        let mut ack = vec![0u8; proto::NLMSG_HDRLEN + 4 + proto::NLMSG_HDRLEN];
        let len = ack.len() as u32;
        ack[0..4].copy_from_slice(&len.to_ne_bytes());
        ack[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        ack[8..12].copy_from_slice(&seq.to_ne_bytes());
        ack[16..20].copy_from_slice(&EBUSY.to_ne_bytes());
        assert_eq!(ack_of(&ack), Some((seq, EBUSY)));
        assert_eq!(ack_of(&ack[..18]), None, "a short ack is no answer");
        assert_eq!(pending.answer(seq + 1, 0), None, "another message's ack");
        assert_eq!(
            pending.answer(seq, EBUSY),
            Some(Event::CacheInvalDone {
                resource: r,
                errno: EBUSY
            })
        );
        assert_eq!(pending.answer(seq, 0), None, "answered once");
        // A receive overrun may have eaten acks: every waiting invalidation is refused.
        port.deliver(&inval_of(r));
        assert_eq!(
            pending.fail_all(-ENOBUFS),
            vec![Event::CacheInvalDone {
                resource: r,
                errno: -ENOBUFS
            }]
        );
        assert!(pending.fail_all(-ENOBUFS).is_empty());
    }

    #[test]
    fn send_errors_are_sorted_into_retry_and_unreachable() {
        use std::io::Error;
        for e in [
            ENOBUFS, 12, /* ENOMEM */
            4,  /* EINTR */
            11, /* EAGAIN */
        ] {
            assert_eq!(
                send_failure(&Error::from_raw_os_error(e)),
                SendFailure::Transient,
                "errno {e}"
            );
        }
        for e in [
            9,   /* EBADF */
            111, /* ECONNREFUSED */
            90,  /* EMSGSIZE */
            32,
        ] {
            assert_eq!(
                send_failure(&Error::from_raw_os_error(e)),
                SendFailure::Fatal,
                "errno {e}"
            );
        }
    }

    /// What mxfsd relies on when the kernel hands something back that is not granted (an older
    /// mxfs.ko answered a late deny with `LOCK_RELEASE`): the core refuses it and changes
    /// nothing, so `kernel_event` only logs it.
    #[test]
    fn a_release_of_a_request_not_granted_changes_nothing() {
        use mxfs_core::{Core, LockFlags};
        let mut core = Core::new(mxfs_core::Config::booted(0, 1));
        let r = ResourceId::inode(1, 5);
        let mut out = Vec::new();
        let req = |req_id, flags| Event::KernelRequest {
            req_id,
            resource: r,
            mode: LockMode::Ex,
            flags,
            timeout_ms: 0,
        };
        core.handle(0, req(1, LockFlags::empty()), &mut out)
            .unwrap();
        let done = Event::CacheInvalDone {
            resource: r,
            errno: 0,
        };
        core.handle(0, done, &mut out).unwrap();
        core.handle(0, req(2, LockFlags::NOQUEUE), &mut out)
            .unwrap();
        core.handle(0, req(3, LockFlags::empty()), &mut out)
            .unwrap();
        assert!(
            out.iter().any(|a| matches!(
                a,
                mxfs_core::Action::Kernel(KernelMsg::Deny { req_id: 2, .. })
            )),
            "{out:?}"
        );
        let before = (core.dump_master(), core.dump_local());
        let release = |req_id, mode| {
            let b = encode(
                0x20,
                0,
                1,
                &proto::Message::LockRelease(proto::LockRelease {
                    req_id,
                    resource: r,
                    mode,
                }),
            )
            .unwrap();
            let (_, m) = proto::parse_message(&b).unwrap();
            event_of(&m).unwrap()
        };
        for (ev, what) in [
            (release(2, None), "late deny handed back"),
            (
                release(3, Some(LockMode::Ex)),
                "release of a waiting request",
            ),
            (
                release(9, Some(LockMode::Ex)),
                "release of an unknown request",
            ),
        ] {
            let mut out = Vec::new();
            assert!(core.handle(1, ev, &mut out).is_err(), "{what} accepted");
            assert!(out.is_empty(), "{what}: {out:?}");
            assert_eq!(
                (core.dump_master(), core.dump_local()),
                before,
                "{what} changed state"
            );
        }
    }

    #[test]
    fn data_versions_pack_epoch_and_counter_and_refuse_what_does_not_fit() {
        use mxfs_core::Version;
        let v = |epoch, counter| data_version(Version { epoch, counter });
        assert_eq!(v(3, 9), Some(3 << 40 | 9));
        assert_ne!(v(1, 2), v(2, 1), "epoch and counter do not mix");
        assert_eq!(v(0xff_ffff, (1 << 40) - 1), Some(u64::MAX));
        assert_eq!(
            v(1 << 24, 0),
            None,
            "an epoch beyond 24 bits is unknown, not wrapped"
        );
        assert_eq!(
            v(1, 1 << 40),
            None,
            "a counter beyond 40 bits is unknown, not wrapped"
        );
    }

    #[test]
    fn core_messages_round_trip_through_the_proto_codec() {
        let r = ResourceId::inode(7, 42);
        let vols: BTreeSet<u64> = [7, 8].into_iter().collect();
        let msgs = [
            KernelMsg::Grant {
                req_id: 1,
                resource: r,
                mode: LockMode::Ex,
                version: Some(mxfs_core::Version {
                    epoch: 3,
                    counter: 9,
                }),
            },
            KernelMsg::Deny {
                req_id: 2,
                resource: r,
                errno: -11,
            },
            KernelMsg::CacheInval {
                resource: r,
                volume: 7,
                ino: 42,
                offset: 0,
                len: 0,
            },
            KernelMsg::RecoveryStart { epoch: 3 },
        ];
        let mut n = 0;
        for m in &msgs {
            for w in messages_of(m, &vols) {
                let b = encode(0x20, 5, 1, &w).unwrap();
                let (_, back) = proto::parse_message(&b).unwrap();
                assert_eq!(back, w);
                n += 1;
            }
        }
        assert_eq!(n, 5, "recovery start goes once per mounted volume");
    }

    /// What the core will ask for at level 0: the netlink port puts a callback on the wire as
    /// `LOCK_CALLBACK` naming the cached holder, and the invalidation of a `VOLUME` as a
    /// `CACHE_INVAL` of ino 0 with the volume id. Each is one datagram in delivery order.
    #[test]
    fn the_netlink_port_sends_callbacks_and_volume_invalidations() {
        let v = ResourceId::volume(0xabcd);
        let (mut port, mut rx) = NetlinkPort::detached(0x20, 5, 8);
        port.deliver(&KernelMsg::Callback {
            req_id: 7,
            resource: v,
            mode: LockMode::Pr,
        });
        port.deliver(&KernelMsg::CacheInval {
            resource: v,
            volume: v.volume,
            ino: 0,
            offset: 0,
            len: 0,
        });
        let mut datagrams = Vec::new();
        while let Ok(b) = rx.try_recv() {
            datagrams.push(b);
        }
        let got: Vec<_> = datagrams
            .iter()
            .map(|b| proto::parse_message(b).unwrap().1)
            .collect();
        assert_eq!(
            got,
            vec![
                proto::Message::LockCallback(proto::LockCallback {
                    req_id: 7,
                    resource: v,
                    mode: LockMode::Pr,
                }),
                proto::Message::CacheInval(proto::CacheInval {
                    volume: 0xabcd,
                    ino: 0,
                    offset: 0,
                    length: 0,
                }),
            ]
        );
    }

    #[test]
    fn kernel_requests_become_core_events() {
        let r = ResourceId::ag(1, 3);
        let req = proto::Message::LockReq(proto::LockReq {
            req_id: 9,
            resource: r,
            mode: LockMode::Pw,
            flags: proto::LockFlags::NOQUEUE,
            timeout_ms: None,
        });
        let b = encode(0x20, 0, 1, &req).unwrap();
        let (_, m) = proto::parse_message(&b).unwrap();
        assert_eq!(
            event_of(&m),
            Some(Event::KernelRequest {
                req_id: 9,
                resource: r,
                mode: LockMode::Pw,
                flags: proto::LockFlags::NOQUEUE,
                timeout_ms: 0
            })
        );
    }
}
