//! Oracles for the fuzz targets `peer_frame` and `daemon_config` (in `fuzz/fuzz_targets/`).
//! They live here so stable `cargo test` exercises them too. Each must never panic on any
//! input except through its own assertion, which marks a real bug.

use crate::auth::{Opener, Sealer};
use crate::frame::{decode_peer_frame, encode_msg, Frame, FrameKind};
use mxfs_core::PeerMsg;

/// Decodes arbitrary bytes as a peer frame. Whatever decodes must re-encode to the same bytes
/// (the format has one encoding), and must fail MAC verification under a key it was not sealed
/// with.
pub fn check_peer_frame(data: &[u8]) {
    let Ok((f, msg)) = decode_peer_frame::<PeerMsg>(data) else {
        return;
    };
    assert_eq!(
        f.encode().as_deref(),
        Ok(data),
        "frame encoding is not canonical"
    );
    if let Some(m) = msg {
        let body = encode_msg(&m).expect("a decoded message re-encodes");
        let back = Frame {
            kind: FrameKind::Msg,
            seq: f.seq,
            body,
            mac: f.mac,
        }
        .msg::<PeerMsg>();
        assert_eq!(
            back.as_ref(),
            Ok(&m),
            "message does not survive a round trip"
        );
        let mut o = Opener::new([0x5a; 32]);
        let forged = o.open(&f).is_ok();
        let sealed = Sealer::new([0x5a; 32]).seal(f.body.clone());
        assert!(
            !forged || sealed.mac == f.mac,
            "a frame passed MAC verification without the key"
        );
    }
}

/// Parses arbitrary bytes as a config. Whatever parses must be internally consistent.
pub fn check_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cfg) = crate::config::parse_config(text) else {
        return;
    };
    assert!(cfg.validate().is_ok());
    assert_eq!(cfg.me().id, cfg.node_id);
    let _ = cfg.listen();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Hello, WireMsg};
    use mxfs_core::{LockMode, PeerBody, ResourceId};

    #[test]
    fn oracles_accept_valid_and_garbage_inputs() {
        let m: WireMsg<PeerMsg> = WireMsg::Core(PeerMsg {
            epoch: 3,
            body: PeerBody::Lock {
                resource: ResourceId::inode(1, 2),
                mode: LockMode::Ex,
                noqueue: false,
                seq: 9,
            },
        });
        let f = Sealer::new([1; 32]).seal(encode_msg(&m).unwrap());
        check_peer_frame(&f.encode().unwrap());
        check_peer_frame(
            &Frame::new_hello(&Hello {
                node_id: 1,
                nonce: [2; 32],
            })
            .encode()
            .unwrap(),
        );
        check_peer_frame(b"MXFP\x01\x03garbage-garbage-garbage-garbage-garbage-garbage");
        check_config(include_bytes!("../mxfsd.example.toml"));
        check_config(b"node_id = [");
        check_config(&[0xff, 0xfe]);
    }
}
