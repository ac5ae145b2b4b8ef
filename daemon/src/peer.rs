//! TCP transport between daemons: length-delimited frames, authenticated with the cluster key.
//!
//! Every node dials every other node once (outbound, used for sending) and accepts the others'
//! dials (inbound, used for receiving). Both directions run the handshake of `auth`. A peer
//! that fails it is refused and logged; a frame that fails to decode or verify closes its
//! connection. Messages for an unreachable peer are dropped: a peer that stays unreachable is
//! declared lost by membership, and recovery resends what matters.

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
        let shared = Arc::new(Shared {
            me,
            key,
            peers: others.clone(),
            isolated: AtomicBool::new(false),
            stats: PeerStats::default(),
        });
        tokio::spawn(accept_loop(listener, shared.clone(), tx));
        let mut queues = BTreeMap::new();
        for (id, addr) in others {
            let (qtx, qrx) = mpsc::channel(PEER_QUEUE_MAX);
            queues.insert(id, qtx);
            tokio::spawn(dial_loop(id, addr, shared.clone(), qrx));
        }
        Ok(PeerNet { shared, queues })
    }

    /// Queues `msg` for `to`. Never blocks; a full queue drops the message.
    pub fn send(&self, to: NodeId, msg: Wire) {
        let Some(q) = self.queues.get(&to) else {
            tracing::error!(to, "send to unknown peer dropped");
            return;
        };
        if self.shared.isolated.load(Ordering::Relaxed) {
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
            if let Err(e) = serve_inbound(sock, &sh, tx).await {
                tracing::warn!(%addr, "inbound peer connection closed: {e}");
            }
        });
    }
}

async fn serve_inbound(
    sock: TcpStream,
    sh: &Shared,
    tx: mpsc::Sender<PeerInput>,
) -> Result<(), ConnError> {
    let _ = sock.set_nodelay(true);
    let mut c = Framed::new(sock, codec());
    let (peer, _sealer, mut opener) = match handshake_bounded(&mut c, sh, None).await {
        Ok(x) => x,
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
    loop {
        let f = match next_frame(&mut c).await {
            Ok(f) => f,
            Err(ConnError::Closed) => return Ok(()),
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
            return Ok(());
        }
    }
}

async fn dial_loop(id: NodeId, addr: SocketAddr, sh: Arc<Shared>, mut q: mpsc::Receiver<Wire>) {
    let mut logged_down = false;
    // A message whose send failed; it goes first on the next connection.
    let mut carry: Option<Wire> = None;
    loop {
        let sock = match TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(e) => {
                if !logged_down {
                    tracing::info!(peer = id, %addr, "peer unreachable: {e}");
                    logged_down = true;
                }
                if let Some(m) = carry.take() {
                    count_drop(&sh, &m);
                }
                drain(&mut q, &sh);
                tokio::time::sleep(Duration::from_millis(REDIAL_DELAY_MS)).await;
                continue;
            }
        };
        let _ = sock.set_nodelay(true);
        let mut c = Framed::new(sock, codec());
        let mut sealer = match handshake_bounded(&mut c, &sh, Some(id)).await {
            Ok((_, s, _)) => s,
            Err(e) => {
                if e.is_refusal() {
                    sh.stats.auth_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(peer = id, %addr, "peer refused: {e}");
                } else {
                    tracing::info!(peer = id, %addr, "outbound handshake did not complete: {e}");
                }
                if let Some(m) = carry.take() {
                    count_drop(&sh, &m);
                }
                drain(&mut q, &sh);
                tokio::time::sleep(Duration::from_millis(REDIAL_DELAY_MS)).await;
                continue;
            }
        };
        tracing::info!(peer = id, "outbound peer authenticated");
        logged_down = false;
        loop {
            let m = match carry.take() {
                Some(m) => m,
                None => tokio::select! {
                    m = q.recv() => match m {
                        Some(m) => m,
                        None => return,
                    },
                    // Nothing is ever sent back on an outbound connection: any read result
                    // means the peer closed it (it died or restarted). Redial at once rather
                    // than lose the next messages into a dead socket.
                    _ = c.next() => {
                        tracing::info!(peer = id, "outbound connection closed by peer; redialling");
                        break;
                    }
                },
            };
            let body = match frame::encode_msg(&m) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(peer = id, "unencodable message dropped: {e}");
                    continue;
                }
            };
            let bytes = match sealer.seal(body).encode() {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(peer = id, "oversized message dropped: {e}");
                    continue;
                }
            };
            if let Err(e) = c.send(Bytes::from(bytes)).await {
                tracing::warn!(peer = id, "peer send failed, redialling: {e}");
                carry = Some(m);
                break;
            }
            sh.stats.sent.fetch_add(1, Ordering::Relaxed);
        }
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
