//! Oracles for the fuzz targets `peer_frame`, `daemon_config` and `ctl_request` (in
//! `fuzz/fuzz_targets/`).
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

/// Line limit of the `ctl_request` oracle: the daemon's codec ([`crate::ctl::line_codec`]) with
/// a limit that fuzz inputs (a few KiB at most) reach, so the over-long-line path is exercised;
/// a unit test checks the daemon's own [`crate::ctl::CTL_LINE_BYTES_MAX`].
pub const CTL_FUZZ_LINE_BYTES_MAX: usize = 256;

/// Feeds arbitrary bytes to the ctl socket's reader as one connection's stream: split into
/// lines by the daemon's codec, each line parsed as the daemon parses it. See
/// [`check_ctl_stream`].
pub fn check_ctl_input(data: &[u8]) {
    check_ctl_stream(data, CTL_FUZZ_LINE_BYTES_MAX);
}

/// [`check_ctl_input`] with a line limit of `max_bytes`. No line longer than the limit reaches
/// the parser (the daemon answers an error and closes the connection at the first such line,
/// or at one that is not UTF-8); every line that parses is checked by [`check_ctl_line`].
pub fn check_ctl_stream(data: &[u8], max_bytes: usize) {
    use tokio_util::codec::Decoder;
    let mut codec = crate::ctl::line_codec(max_bytes);
    let mut buf = bytes::BytesMut::from(data);
    let mut at_eof = false;
    loop {
        let next = if at_eof {
            codec.decode_eof(&mut buf)
        } else {
            codec.decode(&mut buf)
        };
        match next {
            Ok(Some(line)) => {
                assert!(
                    line.len() <= max_bytes,
                    "a line of {} bytes passed a limit of {max_bytes}",
                    line.len()
                );
                check_ctl_line(&line);
            }
            Ok(None) if !at_eof => at_eof = true,
            Ok(None) | Err(_) => return,
        }
    }
}

/// Parses one ctl request line. Whatever parses re-encodes (as `mxfsctl` sends it) to one line
/// that parses to the same request; the resource and mode fields parse without panicking, and
/// a resource that parses is well formed and survives its text form.
pub fn check_ctl_line(line: &str) {
    use crate::ctl::{format_resource, parse_mode, parse_request, parse_resource, CtlRequest};
    let Ok(req) = parse_request(line) else {
        return;
    };
    let text = serde_json::to_string(&req).expect("a parsed request re-encodes");
    assert!(
        !text.contains('\n'),
        "a request encodes to more than one line"
    );
    assert_eq!(
        parse_request(&text).as_ref(),
        Ok(&req),
        "request does not survive a round trip: {text}"
    );
    let (resource, mode) = match &req {
        CtlRequest::Lock { resource, mode, .. } => (resource, Some(mode)),
        CtlRequest::Unlock { resource } => (resource, None),
        _ => return,
    };
    if let Ok(r) = parse_resource(resource) {
        assert!(r.is_well_formed(), "{resource} parsed to a malformed {r:?}");
        assert_eq!(
            parse_resource(&format_resource(&r)),
            Ok(r),
            "resource {resource} does not survive its text form"
        );
    }
    if let Some(m) = mode {
        let _ = parse_mode(m);
    }
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

    /// Real request lines, as `mxfsctl` encodes them (also the fuzz seeds).
    fn real_requests() -> Vec<crate::ctl::CtlRequest> {
        use crate::ctl::CtlRequest;
        vec![
            CtlRequest::Status {},
            CtlRequest::Locks {},
            CtlRequest::Top { limit: 20 },
            CtlRequest::Lock {
                resource: "inode:1:42".into(),
                mode: "EX".into(),
                noqueue: false,
                timeout_ms: None,
            },
            CtlRequest::Lock {
                resource: "extent:0x10:7:1048576".into(),
                mode: "pr".into(),
                noqueue: true,
                timeout_ms: Some(500),
            },
            CtlRequest::Unlock {
                resource: "ag:1:3".into(),
            },
            CtlRequest::Events { since: 4 },
            CtlRequest::Isolate { on: true },
            CtlRequest::DropCore { count: 2 },
        ]
    }

    #[test]
    fn ctl_oracle_reads_real_lines_and_refuses_long_ones() {
        let mut stream = String::new();
        for r in real_requests() {
            let line = serde_json::to_string(&r).unwrap();
            assert_eq!(crate::ctl::parse_request(&line), Ok(r));
            check_ctl_line(&line);
            stream.push_str(&line);
            stream.push('\n');
        }
        check_ctl_input(stream.as_bytes());
        check_ctl_input(b"{\"cmd\":\"lock\",\"resource\":\"inode:1\",\"mode\":\"XX\"}\n\xff\n");
        check_ctl_input(&[b'{'; 300]);
        // The daemon's own limit: a line one byte over it never reaches the parser.
        use tokio_util::codec::Decoder;
        let max = crate::ctl::CTL_LINE_BYTES_MAX;
        let mut codec = crate::ctl::line_codec(max);
        let mut long = bytes::BytesMut::from(&[b' '; 1][..]);
        long.extend_from_slice(&vec![b'x'; max]);
        long.extend_from_slice(b"\n{\"cmd\":\"status\"}\n");
        assert!(codec.decode(&mut long).is_err(), "over-long line accepted");
        let mut codec = crate::ctl::line_codec(max);
        let mut ok = bytes::BytesMut::from(&vec![b' '; max][..]);
        ok.extend_from_slice(b"\n");
        assert_eq!(codec.decode(&mut ok).unwrap().map(|l| l.len()), Some(max));
    }

    /// The seed corpus of the `ctl_request` fuzz target is these real request lines, one file
    /// each. `MXFS_WRITE_CTL_SEEDS=1 cargo test -p mxfs-daemon ctl_seeds` rewrites it after a
    /// protocol change; otherwise this checks that the committed seeds are current.
    #[test]
    fn ctl_seeds_are_real_request_lines() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/ctl_request");
        let write = std::env::var_os("MXFS_WRITE_CTL_SEEDS").is_some();
        for (i, r) in real_requests().iter().enumerate() {
            let line = serde_json::to_string(r).unwrap() + "\n";
            let path = dir.join(format!("seed_{i:02}"));
            if write {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &line).unwrap();
            }
            let committed = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(committed, line, "{} is stale", path.display());
        }
    }

    /// The `peer_frame` seed `core_replayed` is a real `Msg` frame (zero MAC, as the other
    /// seeds) carrying `PeerBody::Replayed`, so the fuzzer starts from the journal-replay
    /// announcement. `MXFS_WRITE_SEEDS=1` rewrites it.
    #[test]
    fn peer_frame_seed_carries_a_replayed_announcement() {
        let m: WireMsg<PeerMsg> = WireMsg::Core(PeerMsg {
            epoch: 3,
            body: PeerBody::Replayed { node: 2 },
        });
        let frame = Frame {
            kind: crate::frame::FrameKind::Msg,
            seq: 4,
            body: encode_msg(&m).unwrap(),
            mac: [0; crate::frame::MAC_LEN],
        }
        .encode()
        .unwrap();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus/peer_frame/core_replayed");
        if std::env::var_os("MXFS_WRITE_SEEDS").is_some() {
            std::fs::write(&path, &frame).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(committed, frame, "{} is stale", path.display());
        let (_, back) = crate::frame::decode_peer_frame::<PeerMsg>(&committed).unwrap();
        assert_eq!(back, Some(m));
        check_peer_frame(&committed);
    }
}
