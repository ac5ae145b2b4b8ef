//! insta snapshots of every peer frame kind, byte for byte (hex), with a fixed session key so
//! the MAC is deterministic. A change here is a peer protocol change: bump PEER_PROTO_VERSION.

use mxfs_core::{LockMode, NodeSet, PeerBody, PeerMsg, ResourceId, Version};
use mxfs_daemon::auth::Sealer;
use mxfs_daemon::frame::{decode_peer_frame, encode_msg, Frame, Heartbeat, Hello, WireMsg};

fn hex(b: &[u8]) -> String {
    b.chunks(16)
        .map(|c| {
            c.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn sealed(m: &WireMsg<PeerMsg>) -> Vec<u8> {
    let bytes = Sealer::new([0x42; 32])
        .seal(encode_msg(m).unwrap())
        .encode()
        .unwrap();
    let (_, back) = decode_peer_frame::<PeerMsg>(&bytes).unwrap();
    assert_eq!(back.as_ref(), Some(m), "round trip");
    bytes
}

#[test]
fn peer_frames() {
    let r = ResourceId::extent(0xc6f2_e552_3a33_014b, 131, 3 << 20);
    let v = Version {
        epoch: 4,
        counter: 9,
    };
    let bodies = [
        (
            "lock",
            PeerBody::Lock {
                resource: r,
                mode: LockMode::Ex,
                noqueue: true,
                seq: 7,
            },
        ),
        (
            "release",
            PeerBody::Release {
                resource: r,
                to: Some(LockMode::Pr),
                seq: 8,
            },
        ),
        (
            "cancel",
            PeerBody::Cancel {
                resource: r,
                seq: 7,
            },
        ),
        (
            "grant",
            PeerBody::Grant {
                resource: r,
                mode: LockMode::Pw,
                version: v,
                seq: 7,
            },
        ),
        (
            "deny",
            PeerBody::Deny {
                resource: r,
                errno: -11,
                seq: 7,
            },
        ),
        (
            "release_ack",
            PeerBody::ReleaseAck {
                resource: r,
                version: v,
                seq: 8,
            },
        ),
        (
            "bast",
            PeerBody::Bast {
                resource: r,
                mode: LockMode::Cr,
            },
        ),
        (
            "recover",
            PeerBody::Recover {
                resource: r,
                mode: LockMode::Nl,
            },
        ),
        ("recover_done", PeerBody::RecoverDone { count: 300 }),
        ("rebuild_done", PeerBody::RebuildDone),
        (
            "journals",
            PeerBody::Journals {
                known: true,
                replaying: NodeSet(0b0100),
                waiting: NodeSet(0b1000),
            },
        ),
    ];
    let mut out = String::new();
    for (name, body) in bodies {
        let b = sealed(&WireMsg::Core(PeerMsg { epoch: 4, body }));
        out += &format!("## core {name}\n{}\n", hex(&b));
    }
    let hb = Heartbeat {
        incarnation: 0x0123_4567_89ab_cdef,
        epoch: 4,
        members: 0b1110,
        view: 0b0110,
        fenced: false,
    };
    out += &format!("## heartbeat\n{}\n", hex(&sealed(&WireMsg::Heartbeat(hb))));
    out += &format!("## leave\n{}\n", hex(&sealed(&WireMsg::Leave)));
    out += &format!("## resync\n{}\n", hex(&sealed(&WireMsg::Resync)));
    let hello = Frame::new_hello(&Hello {
        node_id: 3,
        nonce: [0xa5; 32],
    })
    .encode()
    .unwrap();
    out += &format!("## hello\n{}\n", hex(&hello));
    insta::assert_snapshot!(out);
}
