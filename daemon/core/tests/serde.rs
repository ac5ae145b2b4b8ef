//! PeerMsg serde round trips (feature `serde`), and rejection of bad fields.
#![cfg(feature = "serde")]

use mxfs_core::*;

fn all_bodies() -> Vec<PeerBody> {
    let r = ResourceId::extent(7, 9, 3 << 20);
    let v = Version {
        epoch: 4,
        counter: 11,
    };
    vec![
        PeerBody::Lock {
            resource: r,
            mode: LockMode::Pw,
            noqueue: true,
            seq: 1,
        },
        PeerBody::Release {
            resource: r,
            to: Some(LockMode::Cr),
            seq: 2,
        },
        PeerBody::Release {
            resource: r,
            to: None,
            seq: 3,
        },
        PeerBody::Cancel {
            resource: r,
            seq: 4,
        },
        PeerBody::Grant {
            resource: r,
            mode: LockMode::Ex,
            version: v,
            seq: 5,
        },
        PeerBody::Deny {
            resource: r,
            errno: EAGAIN,
            seq: 6,
        },
        PeerBody::ReleaseAck {
            resource: r,
            version: v,
            seq: 7,
        },
        PeerBody::Bast {
            resource: ResourceId::ag(7, 3),
            mode: LockMode::Nl,
        },
        PeerBody::Recover {
            resource: ResourceId::inode(7, 1),
            mode: LockMode::Cw,
        },
        PeerBody::RecoverDone { count: 3 },
        PeerBody::RebuildDone,
        PeerBody::Leaving,
        PeerBody::FenceAsk { node: 4 },
        PeerBody::Fenced { node: 4 },
        PeerBody::Replayed { node: 63 },
        PeerBody::Journals {
            known: false,
            replaying: NodeSet(1 << 63),
            waiting: NodeSet(0b101),
        },
    ]
}

#[test]
fn round_trip() {
    for body in all_bodies() {
        let msg = PeerMsg { epoch: 9, body };
        let text = serde_json::to_string(&msg).unwrap();
        let back: PeerMsg = serde_json::from_str(&text).unwrap();
        assert_eq!(back, msg, "{text}");
    }
}

#[test]
fn bad_fields_are_errors_naming_the_field() {
    let ok = serde_json::to_string(&PeerMsg {
        epoch: 1,
        body: PeerBody::Lock {
            resource: ResourceId::inode(1, 2),
            mode: LockMode::Ex,
            noqueue: false,
            seq: 1,
        },
    })
    .unwrap();
    let bad_mode = ok.replace("\"mode\":5", "\"mode\":6");
    let e = serde_json::from_str::<PeerMsg>(&bad_mode)
        .unwrap_err()
        .to_string();
    assert!(e.contains("mode"), "{e}");
    let bad_kind = ok.replace("[1,1,2,0]", "[9,1,2,0]");
    assert_ne!(bad_kind, ok);
    let e = serde_json::from_str::<PeerMsg>(&bad_kind)
        .unwrap_err()
        .to_string();
    assert!(e.contains("resource"), "{e}");
    let unaligned = ok.replace("[1,1,2,0]", "[1,1,2,5]");
    let e = serde_json::from_str::<PeerMsg>(&unaligned)
        .unwrap_err()
        .to_string();
    assert!(e.contains("well formed"), "{e}");
    let rel = serde_json::to_string(&PeerMsg {
        epoch: 1,
        body: PeerBody::Release {
            resource: ResourceId::inode(1, 2),
            to: Some(LockMode::Pr),
            seq: 1,
        },
    })
    .unwrap();
    let e = serde_json::from_str::<PeerMsg>(&rel.replace("\"to\":3", "\"to\":8"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("to"), "{e}");
}
