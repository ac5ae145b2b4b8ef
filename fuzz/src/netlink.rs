//! Fuzz checks for `mxfs-proto`'s parser and encoder.

use arbitrary::Arbitrary;
use mxfs_proto::*;

/// Re-encodes an accepted whole message and checks it parses back to the same header and
/// message, and that the encoding has the input's length (the parser accepts no slack).
pub fn check_message(data: &[u8]) {
    let Ok((hdr, m)) = parse_message(data) else {
        return;
    };
    let mut buf = [0u8; MSG_LEN_MAX];
    let n = encode_message(&hdr, &m, &mut buf).expect("an accepted message re-encodes");
    assert_eq!(n, data.len(), "re-encoding changed the length");
    assert_eq!(n, m.encoded_len());
    assert_eq!(parse_message(&buf[..n]), Ok((hdr, m)));
}

/// The same for a genl payload (`genlmsghdr` and attributes).
pub fn check_genl(data: &[u8]) {
    let Ok(m) = parse_genl(data) else { return };
    let mut buf = [0u8; MSG_LEN_MAX];
    let n = encode_genl(&m, &mut buf).expect("an accepted payload re-encodes");
    assert_eq!(n, data.len(), "re-encoding changed the length");
    assert_eq!(parse_genl(&buf[..n]), Ok(m));
}

/// The same for the attributes of `cmd`.
pub fn check_attrs(cmd: Command, data: &[u8]) {
    let Ok(m) = parse_attrs(cmd, data) else {
        return;
    };
    assert_eq!(m.command(), cmd);
    let mut buf = [0u8; MSG_LEN_MAX];
    let n = encode_attrs(&m, &mut buf).expect("accepted attributes re-encode");
    assert_eq!(n, data.len(), "re-encoding changed the length");
    assert_eq!(parse_attrs(cmd, &buf[..n]), Ok(m));
}

/// Feeds `data` to every entry point: as a whole message, and (so that whole-message seeds
/// reach the inner parsers too) its tail past the nlmsghdr as a genl payload and its tail past
/// the genlmsghdr as attributes of the command byte found there.
pub fn check_all_entry_points(data: &[u8]) {
    check_message(data);
    check_genl(data);
    if let Some(genl) = data.get(NLMSG_HDRLEN..) {
        check_genl(genl);
        if let (Some(&cmd), Some(attrs)) = (genl.first(), genl.get(GENL_HDRLEN..)) {
            if let Some(cmd) = Command::from_u8(cmd) {
                check_attrs(cmd, attrs);
            }
        }
    }
}

/// A resource as the fuzzer builds it: through a builder, or raw (possibly not well formed).
#[derive(Arbitrary, Debug)]
pub struct ArbResource {
    kind: u8,
    volume: u64,
    a: u64,
    b: u64,
    raw: bool,
}

impl ArbResource {
    fn build(&self) -> ResourceId {
        let kind = match self.kind % 4 {
            0 => ResourceType::Inode,
            1 => ResourceType::Extent,
            2 => ResourceType::Ag,
            _ => ResourceType::Volume,
        };
        match (self.raw, kind) {
            (true, kind) => ResourceId {
                kind,
                volume: self.volume,
                a: self.a,
                b: self.b,
            },
            (false, ResourceType::Inode) => ResourceId::inode(self.volume, self.a),
            (false, ResourceType::Extent) => ResourceId::extent(self.volume, self.a, self.b),
            (false, ResourceType::Ag) => ResourceId::ag(self.volume, self.a),
            (false, ResourceType::Volume) => ResourceId::volume(self.volume),
        }
    }
}

fn mode(v: u8) -> LockMode {
    LockMode::ALL[usize::from(v) % LockMode::ALL.len()]
}

fn state(v: u8) -> NodeState {
    NodeState::from_u8(v % 4).expect("0..4 are node states")
}

/// Every message, with raw values where the encoder has something to refuse.
#[derive(Arbitrary, Debug)]
pub enum ArbMessage<'a> {
    LockReq {
        req_id: u64,
        res: ArbResource,
        mode: u8,
        flags: u32,
        timeout_ms: Option<u32>,
    },
    LockGrant {
        req_id: u64,
        res: ArbResource,
        mode: u8,
        data_version: Option<u64>,
    },
    LockDeny {
        req_id: u64,
        res: ArbResource,
        status: i32,
    },
    LockRelease {
        req_id: u64,
        res: ArbResource,
        mode: Option<u8>,
    },
    CacheInval {
        volume: u64,
        ino: u64,
        offset: u64,
        length: u64,
    },
    NodeStatus {
        node_id: u8,
        state: u8,
        epoch: Option<u64>,
    },
    VolumeMount {
        volume: u64,
        dev: Option<&'a str>,
        mnt: Option<&'a str>,
        gen: Option<u64>,
    },
    VolumeUmount {
        volume: u64,
    },
    StatusReq,
    StatusResp {
        node_id: u8,
        state: Option<u8>,
        volume: Option<u64>,
        epoch: Option<u64>,
        gen: Option<u64>,
    },
    RecoveryStart {
        volume: u64,
        epoch: u64,
    },
    RecoveryDone {
        volume: u64,
        epoch: u64,
    },
    LockCallback {
        req_id: u64,
        res: ArbResource,
        mode: u8,
    },
    VolumeWithdraw {
        volume: u64,
        status: i32,
    },
}

impl<'a> ArbMessage<'a> {
    fn build(&self) -> Message<'a> {
        match *self {
            ArbMessage::LockReq {
                req_id,
                ref res,
                mode: m,
                flags,
                timeout_ms,
            } => Message::LockReq(LockReq {
                req_id,
                resource: res.build(),
                mode: mode(m),
                flags: LockFlags(flags),
                timeout_ms,
            }),
            ArbMessage::LockGrant {
                req_id,
                ref res,
                mode: m,
                data_version,
            } => Message::LockGrant(LockGrant {
                req_id,
                resource: res.build(),
                mode: mode(m),
                data_version,
            }),
            ArbMessage::LockDeny {
                req_id,
                ref res,
                status,
            } => Message::LockDeny(LockDeny {
                req_id,
                resource: res.build(),
                status,
            }),
            ArbMessage::LockRelease {
                req_id,
                ref res,
                mode: m,
            } => Message::LockRelease(LockRelease {
                req_id,
                resource: res.build(),
                mode: m.map(mode),
            }),
            ArbMessage::CacheInval {
                volume,
                ino,
                offset,
                length,
            } => Message::CacheInval(CacheInval {
                volume,
                ino,
                offset,
                length,
            }),
            ArbMessage::NodeStatus {
                node_id,
                state: s,
                epoch,
            } => Message::NodeStatus(NodeStatus {
                node_id: node_id.into(),
                state: state(s),
                epoch,
            }),
            ArbMessage::VolumeMount {
                volume,
                dev,
                mnt,
                gen,
            } => Message::VolumeMount(VolumeMount {
                volume,
                dev_path: dev,
                mount_path: mnt,
                generation: gen,
            }),
            ArbMessage::VolumeUmount { volume } => Message::VolumeUmount(VolumeUmount { volume }),
            ArbMessage::StatusReq => Message::StatusReq(StatusReq),
            ArbMessage::StatusResp {
                node_id,
                state: s,
                volume,
                epoch,
                gen,
            } => Message::StatusResp(StatusResp {
                node_id: node_id.into(),
                state: s.map(state),
                volume,
                epoch,
                generation: gen,
            }),
            ArbMessage::RecoveryStart { volume, epoch } => {
                Message::RecoveryStart(RecoveryStart { volume, epoch })
            }
            ArbMessage::RecoveryDone { volume, epoch } => {
                Message::RecoveryDone(RecoveryDone { volume, epoch })
            }
            ArbMessage::LockCallback {
                req_id,
                ref res,
                mode: m,
            } => Message::LockCallback(LockCallback {
                req_id,
                resource: res.build(),
                mode: mode(m),
            }),
            ArbMessage::VolumeWithdraw { volume, status } => {
                Message::VolumeWithdraw(VolumeWithdraw { volume, status })
            }
        }
    }
}

/// Input of the structure-aware target.
#[derive(Arbitrary, Debug)]
pub struct StructuredInput<'a> {
    nlmsg_type: u16,
    flags: u16,
    seq: u32,
    pid: u32,
    msg: ArbMessage<'a>,
    /// Byte flips applied to the encoding: (index modulo length, xor mask).
    flips: [(u16, u8); 2],
    /// Length to cut the mutated encoding to, modulo its length plus one.
    cut: Option<u16>,
}

/// An oracle for what the encoder must accept, written independently of `proto`'s checks.
fn valid(hdr: &NlHeader, m: &Message<'_>) -> bool {
    let res_ok = |r: &ResourceId| match r.kind {
        ResourceType::Inode | ResourceType::Ag => r.b == 0,
        ResourceType::Extent => r.b.is_multiple_of(EXTENT_CHUNK_BYTES),
        ResourceType::Volume => r.a == 0 && r.b == 0,
    };
    let path_ok = |p: Option<&str>| p.is_none_or(|p| p.len() <= 255 && !p.contains('\0'));
    hdr.nlmsg_type >= 0x10
        && match m {
            Message::LockReq(r) => {
                res_ok(&r.resource)
                    && r.flags.0 & !0b111 == 0
                    && (r.flags.0 & 0b100 != 0) == r.timeout_ms.is_some()
            }
            Message::LockGrant(g) => res_ok(&g.resource),
            Message::LockDeny(d) => res_ok(&d.resource) && (-4095..0).contains(&d.status),
            Message::LockRelease(r) => res_ok(&r.resource),
            Message::LockCallback(c) => res_ok(&c.resource) && c.mode != LockMode::Ex,
            Message::VolumeWithdraw(w) => (-4095..0).contains(&w.status),
            Message::NodeStatus(s) => s.node_id <= 63,
            Message::StatusResp(s) => s.node_id <= 63,
            Message::VolumeMount(v) => path_ok(v.dev_path) && path_ok(v.mount_path),
            _ => true,
        }
}

/// What [`check_structured`] did with an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The message was valid, encoded, parsed back, then mutated and re-parsed.
    RoundTripped,
    /// The message was invalid and the encoder refused it.
    Refused,
}

/// Encodes the input's message: it must round-trip exactly when the oracle calls it valid.
/// Then flips bytes and cuts the encoding: the parser must return (never panic), and whatever
/// it accepts must round-trip too.
pub fn check_structured(input: &StructuredInput<'_>) -> Outcome {
    let hdr = NlHeader {
        nlmsg_type: input.nlmsg_type,
        flags: input.flags,
        seq: input.seq,
        pid: input.pid,
    };
    let m = input.msg.build();
    let mut buf = [0u8; MSG_LEN_MAX];
    let n = match encode_message(&hdr, &m, &mut buf) {
        Ok(n) => {
            assert!(
                valid(&hdr, &m),
                "encoder accepted an invalid message: {m:?}"
            );
            n
        }
        Err(EncodeError::BufferTooSmall { .. }) => panic!("MSG_LEN_MAX is too small for {m:?}"),
        Err(e) => {
            assert!(
                !valid(&hdr, &m),
                "encoder refused a valid message: {m:?}: {e}"
            );
            return Outcome::Refused;
        }
    };
    assert_eq!(n, m.encoded_len());
    assert_eq!(parse_message(&buf[..n]), Ok((hdr, m)));

    for (i, x) in input.flips {
        buf[usize::from(i) % n] ^= x;
    }
    let len = input.cut.map_or(n, |c| usize::from(c) % (n + 1));
    check_all_entry_points(&buf[..len]);
    Outcome::RoundTripped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_input_from_any_bytes() {
        // Deterministic pseudo-random inputs exercise both checks on stable.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut outcomes = [0usize; 2];
        for _ in 0..2000 {
            let bytes: Vec<u8> = (0..256)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let mut u = arbitrary::Unstructured::new(&bytes);
            if let Ok(input) = StructuredInput::arbitrary(&mut u) {
                outcomes[check_structured(&input) as usize] += 1;
            }
            check_all_entry_points(&bytes);
        }
        // Both branches of the oracle are exercised.
        assert!(outcomes[0] > 100 && outcomes[1] > 100, "{outcomes:?}");
    }
}
