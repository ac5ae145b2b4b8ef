//! insta snapshots of the encoded bytes of one example message per command, as an annotated hex
//! dump. A change here is a wire-format change. Netlink is native endian; the committed
//! snapshots are little-endian, so the test runs only on little-endian hosts.
//!
//! Review a change with `cargo insta review` (or INSTA_UPDATE=always, then `git diff`). Under CI
//! (`CI=true`) insta never writes snapshots, and a mismatch or a missing snapshot fails.
#![cfg(target_endian = "little")]

mod common;

use mxfs_proto::*;

/// One example per command, in command order, with the optional attributes present where a
/// command has them so every attribute appears in some snapshot.
fn examples() -> [(&'static str, Message<'static>); 12] {
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
    ]
}

#[test]
fn encoded_examples() {
    let hdr = NlHeader {
        nlmsg_type: 0x1c,
        flags: NLM_F_REQUEST | NLM_F_ACK,
        seq: 1,
        pid: 4242,
    };
    for (i, (name, m)) in examples().iter().enumerate() {
        assert_eq!(m.command() as usize, i + 1, "examples are in command order");
        let mut buf = [0u8; MSG_LEN_MAX];
        let n = encode_message(&hdr, m, &mut buf).unwrap();
        assert_eq!(parse_message(&buf[..n]), Ok((hdr, *m)));
        let dump = format!(
            "{}\n{m:?}\n\n{}",
            m.command().name(),
            common::hexdump(&buf[..n])
        );
        insta::assert_snapshot!(*name, dump);
    }
}
