//! TCP transport between daemons: length-delimited frames, authenticated with the cluster key.
//!
//! Each pair of nodes shares one connection, dialled by the lower id and used in both
//! directions, so a reply carries the TCP acknowledgement of the request it answers. Both
//! sides run the handshake of `auth`. A peer that fails it is refused and logged; a frame that
//! fails to decode or verify closes its connection. A newer connection from the same peer (it
//! restarted) retires the older one. Messages for a peer with no connection up are dropped and
//! counted: a peer that stays unreachable is declared lost by membership, and lost lock-core
//! messages lead to a resync (see the daemon's event loop).

use crate::auth::{self, Opener, Sealer};
use crate::frame::{self, decode_frame, Frame, FrameKind, Hello, WireMsg, FRAME_LEN_MAX};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use mxfs_core::{NodeId, PeerMsg};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// Messages queued for one peer; past this, new ones are dropped (and counted).
pub const PEER_QUEUE_MAX: usize = 8192;
/// Time allowed for the handshake.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 2_000;
/// Delay between dial attempts to an unreachable peer.
pub const REDIAL_DELAY_MS: u64 = 100;
/// Inbound connections handled at once.
pub const INBOUND_CONNS_MAX: usize = 256;

/// What the daemon's peer messages are.
pub type Wire = WireMsg<PeerMsg>;

/// Something the transport hands to the event loop.
#[derive(Debug)]
pub enum PeerInput {
    /// An authenticated message from `from`.
    Msg {
        /// Sender.
        from: NodeId,
        /// The message.
        msg: Wire,
    },
}

/// Counters shared with metrics and status.
#[derive(Default, Debug)]
pub struct PeerStats {
    /// Connections refused at authentication (wrong key, unknown id, protocol violation).
    pub auth_failures: AtomicU64,
    /// Frames that failed to decode or verify.
    pub bad_frames: AtomicU64,
    /// Messages dropped because a peer queue was full or the peer unreachable.
    pub dropped: AtomicU64,
    /// Of those (and of received ones discarded while isolated), lock-core messages.
    pub core_dropped: AtomicU64,
    /// Messages sent.
    pub sent: AtomicU64,
    /// Messages received.
    pub received: AtomicU64,
}

/// Shared transport state.
pub struct Shared {
    me: NodeId,
    key: Vec<u8>,
    peers: BTreeMap<NodeId, SocketAddr>,
    slots: BTreeMap<NodeId, Arc<Slot>>,
    /// Test hook: drop all peer traffic in both directions (a partition on loopback).
    pub isolated: AtomicBool,
    /// Counters.
    pub stats: PeerStats,
}

/// The sending side: one queue per peer.
pub struct PeerNet {
    shared: Arc<Shared>,
    queues: BTreeMap<NodeId, mpsc::Sender<Wire>>,
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .length_field_length(4)
        .max_frame_length(FRAME_LEN_MAX)
        .new_codec()
}

/// Errors of one connection.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// Socket error.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Bad frame.
    #[error("frame: {0}")]
    Frame(#[from] frame::FrameError),
    /// Authentication failure.
    #[error("auth: {0}")]
    Auth(#[from] auth::AuthError),
    /// The peer closed or timed out during the handshake.
    #[error("connection closed during handshake")]
    Closed,
    /// Handshake took too long.
    #[error("handshake timed out")]
    Timeout,
    /// A length prefix above `FRAME_LEN_MAX` (or otherwise undecodable framing).
    #[error("bad frame length: {0}")]
    Oversize(String),
}

impl ConnError {
    /// A refusal (wrong key, unknown or wrong node id, protocol violation), as opposed to a
    /// connection that broke or timed out, e.g. because the peer died mid-handshake.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            ConnError::Auth(_) | ConnError::Frame(_) | ConnError::Oversize(_) | ConnError::Timeout
        )
    }
}

type Conn = Framed<TcpStream, LengthDelimitedCodec>;

async fn next_frame(c: &mut Conn) -> Result<Frame, ConnError> {
    match c.next().await {
        Some(Ok(b)) => Ok(decode_frame(&b)?),
        Some(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
            Err(ConnError::Oversize(e.to_string()))
        }
        Some(Err(e)) => Err(e.into()),
        None => Err(ConnError::Closed),
    }
}

/// Runs the handshake; returns the peer id and the two directional keys (send, receive).
async fn handshake(
    c: &mut Conn,
    sh: &Shared,
    expect: Option<NodeId>,
) -> Result<(NodeId, Sealer, Opener), ConnError> {
    let my_nonce = auth::nonce();
    let hello = Frame::new_hello(&Hello {
        node_id: sh.me,
        nonce: my_nonce,
    });
    c.send(Bytes::from(hello.encode()?)).await?;
    let theirs = next_frame(c).await?.hello()?;
    let peer = theirs.node_id;
    let acceptable =
        peer != sh.me && sh.peers.contains_key(&peer) && expect.is_none_or(|e| e == peer);
    if !acceptable {
        return Err(auth::AuthError::BadId(peer).into());
    }
    let proof = auth::proof(&sh.key, sh.me, peer, &my_nonce, &theirs.nonce);
    let f = Frame {
        kind: FrameKind::Auth,
        seq: 0,
        body: Vec::new(),
        mac: proof,
    };
    c.send(Bytes::from(f.encode()?)).await?;
    let a = next_frame(c).await?;
    if a.kind != FrameKind::Auth || !a.body.is_empty() {
        return Err(auth::AuthError::Unexpected(a.kind).into());
    }
    auth::check_proof(&sh.key, peer, sh.me, &theirs.nonce, &my_nonce, &a.mac)?;
    let tx = auth::session_key(&sh.key, sh.me, peer, &my_nonce, &theirs.nonce);
    let rx = auth::session_key(&sh.key, peer, sh.me, &theirs.nonce, &my_nonce);
    Ok((peer, Sealer::new(tx), Opener::new(rx)))
}

async fn handshake_bounded(
    c: &mut Conn,
    sh: &Shared,
    expect: Option<NodeId>,
) -> Result<(NodeId, Sealer, Opener), ConnError> {
    match tokio::time::timeout(
        Duration::from_millis(HANDSHAKE_TIMEOUT_MS),
        handshake(c, sh, expect),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(ConnError::Timeout),
    }
}

impl PeerNet {
    /// Binds the listener and starts the dialers. Inbound messages go to `tx`.
    pub async fn start(
        me: NodeId,
        key: Vec<u8>,
        listen: SocketAddr,
        peers: BTreeMap<NodeId, SocketAddr>,
        tx: mpsc::Sender<PeerInput>,
    ) -> std::io::Result<PeerNet> {
        let listener = TcpListener::bind(listen).await?;
        let others: BTreeMap<NodeId, SocketAddr> =
            peers.into_iter().filter(|(id, _)| *id != me).collect();
        let mut queues = BTreeMap::new();
        let mut slots = BTreeMap::new();
        for id in others.keys() {
            let (qtx, qrx) = mpsc::channel(PEER_QUEUE_MAX);
            queues.insert(*id, qtx);
            slots.insert(*id, Arc::new(Slot::new(qrx)));
        }
        let shared = Arc::new(Shared {
            me,
            key,
            peers: others.clone(),
            slots,
            isolated: AtomicBool::new(false),
            stats: PeerStats::default(),
        });
        tokio::spawn(accept_loop(listener, shared.clone(), tx.clone()));
        for (id, addr) in others {
            if dials(me, id) {
                tokio::spawn(dial_loop(id, addr, shared.clone(), tx.clone()));
            }
        }
        Ok(PeerNet { shared, queues })
    }

    /// Queues `msg` for `to`. Never blocks; a full queue, or a peer with no connection up,
    /// drops the message (counted: lost lock-core messages lead to a resync).
    pub fn send(&self, to: NodeId, msg: Wire) {
        let (Some(q), Some(slot)) = (self.queues.get(&to), self.shared.slots.get(&to)) else {
            tracing::error!(to, "send to unknown peer dropped");
            return;
        };
        if self.shared.isolated.load(Ordering::Relaxed) || !slot.connected.load(Ordering::Acquire) {
            count_drop(&self.shared, &msg);
            return;
        }
        if let Err(e) = q.try_send(msg) {
            let msg = match e {
                mpsc::error::TrySendError::Full(m) | mpsc::error::TrySendError::Closed(m) => m,
            };
            count_drop(&self.shared, &msg);
            tracing::warn!(to, "peer queue full or closed; message dropped");
        }
    }

    /// Queues `msg` for every peer.
    pub fn broadcast(&self, msg: &Wire) {
        for id in self.queues.keys() {
            self.send(*id, msg.clone());
        }
    }

    /// Shared state (stats, test hooks).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

/// One TCP connection per pair of nodes, carrying both directions (so each frame's ACK rides
/// on the reply rather than costing a packet of its own): the node with the lower id dials.
pub fn dials(me: NodeId, peer: NodeId) -> bool {
    me < peer
}

/// The per-peer state that outlives connections: the send queue, taken by whichever
/// connection is current, and the connection generation that retires an older one.
pub struct Slot {
    queue: tokio::sync::Mutex<mpsc::Receiver<Wire>>,
    /// Bumped by each new authenticated connection; an older connection sees the change and
    /// closes, handing the queue over.
    generation: tokio::sync::watch::Sender<u64>,
    /// A connection holds the queue and is writing it.
    connected: AtomicBool,
}

impl Slot {
    fn new(q: mpsc::Receiver<Wire>) -> Slot {
        Slot {
            queue: tokio::sync::Mutex::new(q),
            generation: tokio::sync::watch::Sender::new(0),
            connected: AtomicBool::new(false),
        }
    }
}

/// How a connection ended without a protocol error.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// The peer closed it (it stopped, restarted or lost us).
    Closed,
    /// A newer connection with the same peer took over.
    Replaced,
    /// The daemon is shutting down (its queue is gone).
    Shutdown,
}

/// Carries one authenticated connection in both directions until it ends: frames from the
/// peer go to the event loop, the peer's queue goes out. Whatever is still queued when it
/// ends is dropped and counted, so the lock core learns that messages were lost.
async fn run_conn(
    mut c: Conn,
    peer: NodeId,
    mut sealer: Sealer,
    mut opener: Opener,
    sh: &Shared,
    tx: &mpsc::Sender<PeerInput>,
) -> Result<Ended, ConnError> {
    let slot = sh.slots.get(&peer).ok_or(auth::AuthError::BadId(peer))?;
    let mut my_gen = 0;
    slot.generation.send_modify(|g| {
        *g += 1;
        my_gen = *g;
    });
    let mut gen_rx = slot.generation.subscribe();
    let mut q = slot.queue.lock().await;
    if *slot.generation.borrow() != my_gen {
        return Ok(Ended::Replaced); // a newer connection arrived while this one waited
    }
    // Anything queued before this connection belongs to a lost one: drop and count it.
    drain(&mut q, sh);
    slot.connected.store(true, Ordering::Release);
    let ended = serve_conn(
        &mut c,
        peer,
        &mut sealer,
        &mut opener,
        sh,
        tx,
        &mut q,
        &mut gen_rx,
    )
    .await;
    slot.connected.store(false, Ordering::Release);
    drain(&mut q, sh);
    ended
}

#[allow(clippy::too_many_arguments)]
async fn serve_conn(
    c: &mut Conn,
    peer: NodeId,
    sealer: &mut Sealer,
    opener: &mut Opener,
    sh: &Shared,
    tx: &mpsc::Sender<PeerInput>,
    q: &mut mpsc::Receiver<Wire>,
    gen_rx: &mut tokio::sync::watch::Receiver<u64>,
) -> Result<Ended, ConnError> {
    loop {
        tokio::select! {
            m = q.recv() => {
                let Some(m) = m else { return Ok(Ended::Shutdown) };
                let body = match frame::encode_msg(&m) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::error!(peer, "unencodable message dropped: {e}");
                        continue;
                    }
                };
                let bytes = match sealer.seal(body).encode() {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::error!(peer, "oversized message dropped: {e}");
                        continue;
                    }
                };
                // A write into a peer that stopped reading can block; a newer connection from
                // that peer must still be able to take over.
                let sent = tokio::select! {
                    r = c.send(Bytes::from(bytes)) => r,
                    _ = gen_rx.changed() => {
                        count_drop(sh, &m);
                        return Ok(Ended::Replaced);
                    }
                };
                if let Err(e) = sent {
                    count_drop(sh, &m);
                    return Err(e.into());
                }
                sh.stats.sent.fetch_add(1, Ordering::Relaxed);
            }
            f = next_frame(c) => {
                let f = match f {
                    Ok(f) => f,
                    Err(ConnError::Closed) => return Ok(Ended::Closed),
                    Err(e) => {
                        if e.is_refusal() {
                            sh.stats.bad_frames.fetch_add(1, Ordering::Relaxed);
                        }
                        return Err(e);
                    }
                };
                if let Err(e) = opener.open(&f) {
                    sh.stats.bad_frames.fetch_add(1, Ordering::Relaxed);
                    return Err(e.into());
                }
                let msg = match f.msg::<PeerMsg>() {
                    Ok(m) => m,
                    Err(e) => {
                        sh.stats.bad_frames.fetch_add(1, Ordering::Relaxed);
                        return Err(e.into());
                    }
                };
                if sh.isolated.load(Ordering::Relaxed) {
                    count_drop(sh, &msg);
                    continue;
                }
                sh.stats.received.fetch_add(1, Ordering::Relaxed);
                if tx.send(PeerInput::Msg { from: peer, msg }).await.is_err() {
                    return Ok(Ended::Shutdown);
                }
            }
            _ = gen_rx.changed() => return Ok(Ended::Replaced),
        }
    }
}

async fn accept_loop(listener: TcpListener, sh: Arc<Shared>, tx: mpsc::Sender<PeerInput>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(INBOUND_CONNS_MAX));
    loop {
        let (sock, addr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("peer accept: {e}");
                tokio::time::sleep(Duration::from_millis(REDIAL_DELAY_MS)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%addr, "too many inbound peer connections; refused");
            continue;
        };
        let sh = sh.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = serve_inbound(sock, &sh, &tx).await {
                tracing::warn!(%addr, "inbound peer connection closed: {e}");
            }
        });
    }
}

async fn serve_inbound(
    sock: TcpStream,
    sh: &Shared,
    tx: &mpsc::Sender<PeerInput>,
) -> Result<(), ConnError> {
    let _ = sock.set_nodelay(true);
    let mut c = Framed::new(sock, codec());
    // Only lower ids dial this node.
    let (peer, sealer, opener) = match handshake_bounded(&mut c, sh, None).await {
        Ok(x) if dials(x.0, sh.me) => x,
        Ok((peer, ..)) => {
            sh.stats.auth_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                peer,
                "peer refused: node {peer} dialled node {} (only lower ids dial)",
                sh.me
            );
            return Ok(());
        }
        Err(e) => {
            if e.is_refusal() {
                sh.stats.auth_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("peer refused: {e}");
            } else {
                tracing::info!("inbound handshake did not complete: {e}");
            }
            return Ok(());
        }
    };
    tracing::info!(peer, "inbound peer authenticated");
    let ended = run_conn(c, peer, sealer, opener, sh, tx).await?;
    tracing::info!(peer, ?ended, "inbound peer connection ended");
    Ok(())
}

async fn dial_loop(id: NodeId, addr: SocketAddr, sh: Arc<Shared>, tx: mpsc::Sender<PeerInput>) {
    let mut logged_down = false;
    loop {
        let sock = match TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(e) => {
                if !logged_down {
                    tracing::info!(peer = id, %addr, "peer unreachable: {e}");
                    logged_down = true;
                }
                tokio::time::sleep(Duration::from_millis(REDIAL_DELAY_MS)).await;
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        let mut c = Framed::new(sock, codec());
        let (_, sealer, opener) = match handshake_bounded(&mut c, &sh, Some(id)).await {
            Ok(x) => x,
            Err(e) => {
                if e.is_refusal() {
                    sh.stats.auth_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(peer = id, %addr, "peer refused: {e}");
                } else {
                    tracing::info!(peer = id, %addr, "outbound handshake did not complete: {e}");
                }
                tokio::time::sleep(Duration::from_millis(REDIAL_DELAY_MS)).await;
                continue;
            }
        };
        tracing::info!(peer = id, "outbound peer authenticated");
        logged_down = false;
        match run_conn(c, id, sealer, opener, &sh, &tx).await {
            Ok(Ended::Shutdown) => return,
            Ok(ended) => tracing::info!(peer = id, ?ended, "peer connection ended; redialling"),
            Err(e) => tracing::warn!(peer = id, "peer connection failed, redialling: {e}"),
        }
        // A peer that closes right after the handshake must not turn this into a busy loop.
        tokio::time::sleep(Duration::from_millis(REDIAL_DELAY_MS)).await;
    }
}

fn drain(q: &mut mpsc::Receiver<Wire>, sh: &Shared) {
    while let Ok(m) = q.try_recv() {
        count_drop(sh, &m);
    }
}

fn count_drop(sh: &Shared, m: &Wire) {
    sh.stats.dropped.fetch_add(1, Ordering::Relaxed);
    if matches!(m, WireMsg::Core(_)) {
        sh.stats.core_dropped.fetch_add(1, Ordering::Relaxed);
    }
}
