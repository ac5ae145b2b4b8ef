//! Test helpers: a byte builder independent of the crate's encoder, so the parser tests do not
//! trust the code they check.
#![allow(dead_code)]

use mxfs_proto::*;

/// Raw attribute bytes, built by hand.
#[derive(Clone, Default)]
pub struct B(pub Vec<u8>);

impl B {
    pub fn new() -> B {
        B(Vec::new())
    }

    /// An attribute with an explicit `nla_len` (may lie), payload, then zero padding.
    pub fn raw(mut self, nla_len: u16, nla_type: u16, payload: &[u8]) -> B {
        self.0.extend_from_slice(&nla_len.to_ne_bytes());
        self.0.extend_from_slice(&nla_type.to_ne_bytes());
        self.0.extend_from_slice(payload);
        while self.0.len() % 4 != 0 {
            self.0.push(0);
        }
        self
    }

    /// A well-formed attribute.
    pub fn attr(self, nla_type: u16, payload: &[u8]) -> B {
        let len = 4 + payload.len() as u16;
        self.raw(len, nla_type, payload)
    }

    pub fn u8(self, a: AttrId, v: u8) -> B {
        self.attr(a as u16, &[v])
    }

    pub fn u32(self, a: AttrId, v: u32) -> B {
        self.attr(a as u16, &v.to_ne_bytes())
    }

    pub fn u64(self, a: AttrId, v: u64) -> B {
        self.attr(a as u16, &v.to_ne_bytes())
    }

    pub fn nest(self, a: AttrId, inner: B) -> B {
        self.attr(a as u16 | NLA_F_NESTED, &inner.0)
    }

    pub fn bytes(mut self, b: &[u8]) -> B {
        self.0.extend_from_slice(b);
        self
    }
}

/// The contents of a resource nest.
pub fn res(kind: u8, volume: u64, a: u64, b: u64) -> B {
    B::new()
        .attr(ResourceAttr::Type as u16, &[kind])
        .attr(ResourceAttr::Volume as u16, &volume.to_ne_bytes())
        .attr(ResourceAttr::A as u16, &a.to_ne_bytes())
        .attr(ResourceAttr::B as u16, &b.to_ne_bytes())
}

/// A valid `LOCK_REQ` attribute area: inode 42 of volume 7, EX, no flags, request id 9.
/// Offsets: RESOURCE 0 (TYPE 4, VOLUME 12, A 24, B 36), MODE 48, FLAGS 56, REQ_ID 64; 76 bytes.
pub fn lock_req_attrs() -> B {
    B::new()
        .nest(AttrId::Resource, res(1, 7, 42, 0))
        .u8(AttrId::Mode, 5)
        .u32(AttrId::Flags, 0)
        .u64(AttrId::ReqId, 9)
}

/// A whole netlink message around `payload` (`genlmsghdr` and attributes), with a correct
/// `nlmsg_len`, family id 0x20, flags REQUEST, seq 3, pid 4.
pub fn nlmsg(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&(16 + payload.len() as u32).to_ne_bytes());
    v.extend_from_slice(&0x20u16.to_ne_bytes());
    v.extend_from_slice(&1u16.to_ne_bytes());
    v.extend_from_slice(&3u32.to_ne_bytes());
    v.extend_from_slice(&4u32.to_ne_bytes());
    v.extend_from_slice(payload);
    v
}

/// `genlmsghdr` for `cmd`, version 1, then the attributes.
pub fn genl(cmd: u8, attrs: &B) -> Vec<u8> {
    let mut v = vec![cmd, 1, 0, 0];
    v.extend_from_slice(&attrs.0);
    v
}

/// Renders bytes as a readable, annotated dump: one line per header and per attribute, nested
/// attributes indented. Walks the TLVs generically, without the crate's parser.
pub fn hexdump(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let hex = |b: &[u8]| {
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let h = &bytes[..16];
    let u16at = |b: &[u8], o: usize| u16::from_ne_bytes([b[o], b[o + 1]]);
    let u32at = |b: &[u8], o: usize| u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    writeln!(
        out,
        "0000 nlmsghdr   {}  len={} type={:#x} flags={:#x} seq={} pid={}",
        hex(h),
        u32at(h, 0),
        u16at(h, 4),
        u16at(h, 6),
        u32at(h, 8),
        u32at(h, 12)
    )
    .unwrap();
    let g = &bytes[16..20];
    writeln!(
        out,
        "0010 genlmsghdr {}  cmd={} version={}",
        hex(g),
        g[0],
        g[1]
    )
    .unwrap();
    fn walk(out: &mut String, bytes: &[u8], start: usize, end: usize, depth: usize) {
        let mut off = start;
        while off + 4 <= end {
            let len = u16::from_ne_bytes([bytes[off], bytes[off + 1]]) as usize;
            let ty = u16::from_ne_bytes([bytes[off + 2], bytes[off + 3]]);
            let padded = (len + 3) & !3;
            let indent = "  ".repeat(depth);
            let id = ty & 0x3fff;
            let name = if depth == 0 {
                AttrId::from_u16(id).map(|a| a.name()).unwrap_or("?")
            } else {
                ResourceAttr::from_u16(id).map(|a| a.name()).unwrap_or("?")
            };
            let nested = ty & NLA_F_NESTED != 0;
            let hdr = &bytes[off..off + 4];
            if nested {
                writeln!(out, "{off:04x} {indent}{name}: {} (nested, len={len})", {
                    hdr.iter()
                        .map(|x| format!("{x:02x}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap();
                walk(out, bytes, off + 4, off + len, depth + 1);
            } else {
                let all = &bytes[off..(off + padded).min(bytes.len())];
                let s = all.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>();
                writeln!(
                    out,
                    "{off:04x} {indent}{name}: {} | {}",
                    s[..4].join(" "),
                    s[4..].join(" ")
                )
                .unwrap();
            }
            off += padded;
        }
    }
    walk(&mut out, bytes, 20, bytes.len(), 0);
    out
}

/// One example per command, in command order, with the optional attributes present where a
/// command has them so every attribute appears in some snapshot.
pub fn examples() -> [(&'static str, Message<'static>); Command::ALL.len()] {
    [
        (
            "01_lock_req",
            Message::LockReq(LockReq {
                req_id: 0x0102_0304_0506_0708,
                resource: ResourceId::extent(0xabcd, 131, 5 * EXTENT_CHUNK_BYTES + 17),
                mode: LockMode::Pw,
                flags: LockFlags::NOQUEUE.union(LockFlags::TIMEOUT_MS),
                timeout_ms: Some(GRANT_TIMEOUT_MS),
            }),
        ),
        (
            "02_lock_grant",
            Message::LockGrant(LockGrant {
                req_id: 7,
                resource: ResourceId::inode(0xabcd, 131),
                mode: LockMode::Pr,
                data_version: Some(42),
            }),
        ),
        (
            "03_lock_deny",
            Message::LockDeny(LockDeny {
                req_id: 8,
                resource: ResourceId::ag(0xabcd, 3),
                status: -11, // -EAGAIN
            }),
        ),
        (
            "04_lock_release",
            Message::LockRelease(LockRelease {
                req_id: 7,
                resource: ResourceId::inode(0xabcd, 131),
                mode: Some(LockMode::Ex),
            }),
        ),
        (
            "05_cache_inval",
            Message::CacheInval(CacheInval {
                volume: 0xabcd,
                ino: 131,
                offset: 4096,
                length: 0,
            }),
        ),
        (
            "06_node_status",
            Message::NodeStatus(NodeStatus {
                node_id: 2,
                state: NodeState::Suspect,
                epoch: Some(9),
            }),
        ),
        (
            "07_volume_mount",
            Message::VolumeMount(VolumeMount {
                volume: 0xabcd,
                dev_path: Some("/dev/vdb"),
                mount_path: Some("/mnt/mxfs"),
                generation: Some(3),
            }),
        ),
        (
            "08_volume_umount",
            Message::VolumeUmount(VolumeUmount { volume: 0xabcd }),
        ),
        ("09_status_req", Message::StatusReq(StatusReq)),
        (
            "10_status_resp",
            Message::StatusResp(StatusResp {
                node_id: 1,
                state: Some(NodeState::Up),
                volume: Some(0xabcd),
                epoch: Some(9),
                generation: Some(3),
            }),
        ),
        (
            "11_recovery_start",
            Message::RecoveryStart(RecoveryStart {
                volume: 0xabcd,
                epoch: 10,
            }),
        ),
        (
            "12_recovery_done",
            Message::RecoveryDone(RecoveryDone {
                volume: 0xabcd,
                epoch: 10,
            }),
        ),
        (
            "13_lock_callback",
            Message::LockCallback(LockCallback {
                req_id: 7,
                resource: ResourceId::volume(0xabcd),
                mode: LockMode::Pr,
            }),
        ),
        (
            "14_volume_withdraw",
            Message::VolumeWithdraw(VolumeWithdraw {
                volume: 0xabcd,
                status: -5, // -EIO
            }),
        ),
    ]
}
