//! Peer frames: the bytes inside one length-delimited TCP frame between two daemons.
//!
//! ```text
//! offset  size  field
//! 0       4     magic  "MXFP"
//! 4       1     version (PEER_PROTO_VERSION)
//! 5       1     kind   (1 Hello, 2 Auth, 3 Msg)
//! 6       8     seq    (u64 LE; 0 for Hello/Auth, strictly increasing from 1 for Msg)
//! 14      n     body
//! 14+n    32    mac    (HMAC-SHA256; zero for Hello, see `auth`)
//! ```
//!
//! Hello body: node id (u32 LE) + nonce (32 bytes). Auth body: empty, the proof is the mac.
//! Msg body: postcard of [`WireMsg`]. Every decoder here returns an error on garbage and never
//! panics; [`decode_peer_frame`] is the entry point the fuzz target drives.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// Version carried in every frame; a peer with another version is refused.
pub const PEER_PROTO_VERSION: u8 = 1;
/// Largest frame, in bytes (header, body and mac), that a daemon sends or accepts.
pub const FRAME_LEN_MAX: usize = 64 * 1024;
/// Frame magic.
pub const FRAME_MAGIC: [u8; 4] = *b"MXFP";
/// Size of the fixed header.
pub const HEADER_LEN: usize = 14;
/// Size of the trailing MAC.
pub const MAC_LEN: usize = 32;
/// Size of a handshake nonce.
pub const NONCE_LEN: usize = 32;

/// What a frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// First frame each side sends: who it is and a fresh nonce.
    Hello = 1,
    /// Second frame: proof of the cluster key over both nonces.
    Auth = 2,
    /// Every later frame: an authenticated message.
    Msg = 3,
}

/// A decoded frame (the MAC is not checked here, see `auth`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Frame kind.
    pub kind: FrameKind,
    /// Sequence number.
    pub seq: u64,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Trailing MAC.
    pub mac: [u8; MAC_LEN],
}

/// A Hello body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Sender's node id.
    pub node_id: u32,
    /// Sender's fresh nonce.
    pub nonce: [u8; NONCE_LEN],
}

/// Daemon-to-daemon messages carried in `Msg` frames; `P` is the lock core's peer message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WireMsg<P> {
    /// Liveness beacon and membership gossip, sent every `heartbeat_interval_ms`.
    Heartbeat(Heartbeat),
    /// A lock-core message.
    Core(P),
    /// The sender is shutting down cleanly.
    Leave,
    /// The sender lost lock-core messages (a link broke and healed without a membership
    /// change): the coordinator should reinstall the view in a new epoch, so that recovery
    /// resends every held lock and waiting request.
    Resync,
}

/// Heartbeat body: who the sender is (incarnation) and which membership it has installed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Random per-process value; a change means the peer restarted.
    pub incarnation: u64,
    /// Epoch of the membership the sender has installed (0: none yet).
    pub epoch: u64,
    /// Members of that epoch (bit set of node ids).
    pub members: u64,
    /// Nodes the sender currently hears, itself included (bit set).
    pub view: u64,
    /// The sender fenced itself (minority, or excluded): it holds stale state and must be
    /// restarted before it may rejoin.
    pub fenced: bool,
}

/// Why a frame was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// Shorter than header plus MAC.
    #[error("frame of {0} bytes is shorter than header and mac")]
    Short(usize),
    /// Longer than `FRAME_LEN_MAX`.
    #[error("frame of {0} bytes exceeds FRAME_LEN_MAX")]
    Long(usize),
    /// Wrong magic.
    #[error("bad frame magic")]
    Magic,
    /// Unsupported protocol version.
    #[error("peer protocol version {0}, expected {PEER_PROTO_VERSION}")]
    Version(u8),
    /// Unknown kind byte.
    #[error("unknown frame kind {0}")]
    Kind(u8),
    /// Body of the wrong size or content for its kind.
    #[error("malformed {0:?} body")]
    Body(FrameKind),
    /// The postcard payload did not decode.
    #[error("undecodable message: {0}")]
    Payload(String),
}

/// Decodes the frame layout. Never panics.
pub fn decode_frame(b: &[u8]) -> Result<Frame, FrameError> {
    if b.len() > FRAME_LEN_MAX {
        return Err(FrameError::Long(b.len()));
    }
    if b.len() < HEADER_LEN + MAC_LEN {
        return Err(FrameError::Short(b.len()));
    }
    if b[0..4] != FRAME_MAGIC {
        return Err(FrameError::Magic);
    }
    if b[4] != PEER_PROTO_VERSION {
        return Err(FrameError::Version(b[4]));
    }
    let kind = match b[5] {
        1 => FrameKind::Hello,
        2 => FrameKind::Auth,
        3 => FrameKind::Msg,
        k => return Err(FrameError::Kind(k)),
    };
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&b[6..14]);
    let mac_at = b.len() - MAC_LEN;
    let mut mac = [0u8; MAC_LEN];
    mac.copy_from_slice(&b[mac_at..]);
    Ok(Frame {
        kind,
        seq: u64::from_le_bytes(seq),
        body: b[HEADER_LEN..mac_at].to_vec(),
        mac,
    })
}

impl Frame {
    /// Header and body: the bytes the MAC covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEADER_LEN + self.body.len());
        v.extend_from_slice(&FRAME_MAGIC);
        v.push(PEER_PROTO_VERSION);
        v.push(self.kind as u8);
        v.extend_from_slice(&self.seq.to_le_bytes());
        v.extend_from_slice(&self.body);
        v
    }

    /// Full encoding; errors if it would exceed `FRAME_LEN_MAX`.
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        let mut v = self.signed_bytes();
        v.extend_from_slice(&self.mac);
        if v.len() > FRAME_LEN_MAX {
            return Err(FrameError::Long(v.len()));
        }
        Ok(v)
    }

    /// Parses a Hello body.
    pub fn hello(&self) -> Result<Hello, FrameError> {
        if self.kind != FrameKind::Hello || self.body.len() != 4 + NONCE_LEN || self.seq != 0 {
            return Err(FrameError::Body(FrameKind::Hello));
        }
        let mut id = [0u8; 4];
        id.copy_from_slice(&self.body[..4]);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&self.body[4..]);
        Ok(Hello {
            node_id: u32::from_le_bytes(id),
            nonce,
        })
    }

    /// Builds a Hello frame.
    pub fn new_hello(h: &Hello) -> Frame {
        let mut body = h.node_id.to_le_bytes().to_vec();
        body.extend_from_slice(&h.nonce);
        Frame {
            kind: FrameKind::Hello,
            seq: 0,
            body,
            mac: [0; MAC_LEN],
        }
    }

    /// Decodes a Msg body.
    pub fn msg<P: DeserializeOwned>(&self) -> Result<WireMsg<P>, FrameError> {
        if self.kind != FrameKind::Msg {
            return Err(FrameError::Body(self.kind));
        }
        let (m, rest) = postcard::take_from_bytes::<WireMsg<P>>(&self.body)
            .map_err(|e| FrameError::Payload(e.to_string()))?;
        if !rest.is_empty() {
            return Err(FrameError::Payload(format!(
                "{} trailing bytes",
                rest.len()
            )));
        }
        Ok(m)
    }
}

/// Serialises a message into a Msg body.
pub fn encode_msg<P: Serialize>(m: &WireMsg<P>) -> Result<Vec<u8>, FrameError> {
    postcard::to_allocvec(m).map_err(|e| FrameError::Payload(e.to_string()))
}

/// Decodes one whole peer frame, including its message body if it is a `Msg` frame.
/// The fuzz target's entry point: must return an error on garbage, never panic.
pub fn decode_peer_frame<P: DeserializeOwned>(
    b: &[u8],
) -> Result<(Frame, Option<WireMsg<P>>), FrameError> {
    let f = decode_frame(b)?;
    match f.kind {
        FrameKind::Hello => {
            f.hello()?;
            Ok((f, None))
        }
        FrameKind::Auth => {
            if !f.body.is_empty() {
                return Err(FrameError::Body(FrameKind::Auth));
            }
            Ok((f, None))
        }
        FrameKind::Msg => {
            let m = f.msg::<P>()?;
            Ok((f, Some(m)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type W = WireMsg<u32>;

    #[test]
    fn msg_round_trip() {
        let m: W = WireMsg::Heartbeat(Heartbeat {
            incarnation: 1,
            epoch: 7,
            members: 3,
            view: 5,
            fenced: false,
        });
        let f = Frame {
            kind: FrameKind::Msg,
            seq: 3,
            body: encode_msg(&m).unwrap(),
            mac: [9; 32],
        };
        let bytes = f.encode().unwrap();
        let (g, got) = decode_peer_frame::<u32>(&bytes).unwrap();
        assert_eq!(g, f);
        assert_eq!(got, Some(m));
    }

    #[test]
    fn hello_round_trip() {
        let h = Hello {
            node_id: 5,
            nonce: [3; 32],
        };
        let bytes = Frame::new_hello(&h).encode().unwrap();
        let (f, _) = decode_peer_frame::<u32>(&bytes).unwrap();
        assert_eq!(f.hello().unwrap(), h);
    }

    #[test]
    fn garbage_is_an_error() {
        assert_eq!(decode_frame(b"short"), Err(FrameError::Short(5)));
        let mut b = Frame::new_hello(&Hello {
            node_id: 1,
            nonce: [0; 32],
        })
        .encode()
        .unwrap();
        b[4] = 9;
        assert_eq!(decode_frame(&b), Err(FrameError::Version(9)));
        b[4] = PEER_PROTO_VERSION;
        b[5] = 7;
        assert_eq!(decode_frame(&b), Err(FrameError::Kind(7)));
        b[0] = b'X';
        assert_eq!(decode_frame(&b), Err(FrameError::Magic));
        let f = Frame {
            kind: FrameKind::Msg,
            seq: 1,
            body: vec![0xff; 5],
            mac: [0; 32],
        };
        assert!(matches!(
            decode_peer_frame::<u32>(&f.encode().unwrap()),
            Err(FrameError::Payload(_))
        ));
        assert!(matches!(
            decode_frame(&vec![0; FRAME_LEN_MAX + 1]),
            Err(FrameError::Long(_))
        ));
    }
}
