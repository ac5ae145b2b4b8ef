//! Property tests: for every command, parse(encode(m)) == m through each entry point, encoded
//! bytes are 4-byte aligned, and `nlmsg_len` is the encoded length.

use mxfs_proto::*;
use proptest::prelude::*;

fn resource() -> impl Strategy<Value = ResourceId> {
    prop_oneof![
        (any::<u64>(), any::<u64>()).prop_map(|(v, i)| ResourceId::inode(v, i)),
        (any::<u64>(), any::<u64>(), any::<u64>())
            .prop_map(|(v, i, o)| ResourceId::extent(v, i, o)),
        (any::<u64>(), any::<u64>()).prop_map(|(v, a)| ResourceId::ag(v, a)),
        any::<u64>().prop_map(ResourceId::volume),
    ]
}

fn mode() -> impl Strategy<Value = LockMode> {
    proptest::sample::select(LockMode::ALL.to_vec())
}

fn node_state() -> impl Strategy<Value = NodeState> {
    (0u8..4).prop_map(|s| NodeState::from_u8(s).expect("0..4 are node states"))
}

fn node_id() -> impl Strategy<Value = u32> {
    0..=NODE_ID_MAX
}

/// NUL-free UTF-8 of any length up to the limit; leaked so messages can borrow it.
fn path() -> impl Strategy<Value = &'static str> {
    prop_oneof!["[^\\x00]{0,63}", "[a-z/]{255}", Just(String::new())]
        .prop_filter("within PATH_LEN_MAX", |s| s.len() <= PATH_LEN_MAX)
        .prop_map(|s| &*Box::leak(s.into_boxed_str()))
}

fn errno() -> impl Strategy<Value = i32> {
    prop_oneof![Just(-1), Just(STATUS_MIN), STATUS_MIN..=-1]
}

fn message() -> impl Strategy<Value = Message<'static>> {
    prop_oneof![
        (any::<u64>(), resource(), mode(), 0u32..8, any::<u32>()).prop_map(
            |(req_id, resource, mode, bits, t)| {
                let flags = LockFlags(bits);
                let timeout_ms = flags.contains(LockFlags::TIMEOUT_MS).then_some(t);
                Message::LockReq(LockReq {
                    req_id,
                    resource,
                    mode,
                    flags,
                    timeout_ms,
                })
            }
        ),
        (any::<u64>(), resource(), mode(), any::<Option<u64>>()).prop_map(
            |(req_id, resource, mode, data_version)| {
                Message::LockGrant(LockGrant {
                    req_id,
                    resource,
                    mode,
                    data_version,
                })
            }
        ),
        (any::<u64>(), resource(), errno()).prop_map(|(req_id, resource, status)| {
            Message::LockDeny(LockDeny {
                req_id,
                resource,
                status,
            })
        }),
        (any::<u64>(), resource(), proptest::option::of(mode())).prop_map(
            |(req_id, resource, mode)| {
                Message::LockRelease(LockRelease {
                    req_id,
                    resource,
                    mode,
                })
            }
        ),
        any::<[u64; 4]>().prop_map(|[volume, ino, offset, length]| {
            Message::CacheInval(CacheInval {
                volume,
                ino,
                offset,
                length,
            })
        }),
        (node_id(), node_state(), any::<Option<u64>>()).prop_map(|(node_id, state, epoch)| {
            Message::NodeStatus(NodeStatus {
                node_id,
                state,
                epoch,
            })
        }),
        (
            any::<u64>(),
            proptest::option::of(path()),
            proptest::option::of(path()),
            any::<Option<u64>>()
        )
            .prop_map(|(volume, dev_path, mount_path, generation)| {
                Message::VolumeMount(VolumeMount {
                    volume,
                    dev_path,
                    mount_path,
                    generation,
                })
            }),
        any::<u64>().prop_map(|volume| Message::VolumeUmount(VolumeUmount { volume })),
        Just(Message::StatusReq(StatusReq)),
        (
            node_id(),
            proptest::option::of(node_state()),
            any::<Option<u64>>(),
            any::<Option<u64>>(),
            any::<Option<u64>>()
        )
            .prop_map(|(node_id, state, volume, epoch, generation)| {
                Message::StatusResp(StatusResp {
                    node_id,
                    state,
                    volume,
                    epoch,
                    generation,
                })
            }),
        (any::<u64>(), any::<u64>()).prop_map(|(volume, epoch)| {
            Message::RecoveryStart(RecoveryStart { volume, epoch })
        }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(volume, epoch)| { Message::RecoveryDone(RecoveryDone { volume, epoch }) }),
        (
            any::<u64>(),
            resource(),
            proptest::sample::select(LockMode::ALL[..5].to_vec())
        )
            .prop_map(|(req_id, resource, mode)| {
                Message::LockCallback(LockCallback {
                    req_id,
                    resource,
                    mode,
                })
            }),
        (any::<u64>(), errno()).prop_map(|(volume, status)| {
            Message::VolumeWithdraw(VolumeWithdraw { volume, status })
        }),
    ]
}

fn header() -> impl Strategy<Value = NlHeader> {
    (
        NLMSG_MIN_TYPE..=u16::MAX,
        any::<u16>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(|(nlmsg_type, flags, seq, pid)| NlHeader {
            nlmsg_type,
            flags,
            seq,
            pid,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn whole_message_round_trips(hdr in header(), m in message()) {
        let mut buf = [0u8; MSG_LEN_MAX];
        let n = encode_message(&hdr, &m, &mut buf).expect("valid message encodes");
        prop_assert_eq!(n, m.encoded_len());
        prop_assert!(n <= MSG_LEN_MAX);
        prop_assert_eq!(n % 4, 0);
        prop_assert_eq!(u32::from_ne_bytes(buf[..4].try_into().unwrap()) as usize, n);
        prop_assert_eq!(parse_message(&buf[..n]), Ok((hdr, m)));
    }

    #[test]
    fn payload_and_attrs_round_trip(m in message()) {
        let mut buf = [0u8; MSG_LEN_MAX];
        let n = encode_genl(&m, &mut buf).expect("valid message encodes");
        prop_assert_eq!(n, m.payload_len());
        prop_assert_eq!(n % 4, 0);
        prop_assert_eq!(parse_genl(&buf[..n]), Ok(m));
        let n = encode_attrs(&m, &mut buf).expect("valid message encodes");
        prop_assert_eq!(n, m.attrs_len());
        prop_assert_eq!(n % 4, 0);
        prop_assert_eq!(parse_attrs(m.command(), &buf[..n]), Ok(m));
    }

    #[test]
    fn every_truncation_is_an_error(hdr in header(), m in message()) {
        let mut buf = [0u8; MSG_LEN_MAX];
        let n = encode_message(&hdr, &m, &mut buf).expect("valid message encodes");
        for k in 0..n {
            prop_assert!(parse_message(&buf[..k]).is_err(), "prefix of {} bytes parsed", k);
        }
    }

    #[test]
    fn encoding_is_deterministic_and_exact(m in message()) {
        // Bytes past the returned length are untouched, and two encodings are identical.
        let mut a = [0xaau8; MSG_LEN_MAX];
        let mut b = [0x55u8; MSG_LEN_MAX];
        let hdr = NlHeader { nlmsg_type: 0x1c, flags: NLM_F_REQUEST, seq: 1, pid: 2 };
        let n = encode_message(&hdr, &m, &mut a).unwrap();
        prop_assert_eq!(encode_message(&hdr, &m, &mut b), Ok(n));
        prop_assert_eq!(&a[..n], &b[..n]);
        prop_assert!(a[n..].iter().all(|x| *x == 0xaa));
    }
}

#[test]
fn strategies_cover_every_command() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut seen = [false; Command::ALL.len()];
    let mut runner = TestRunner::deterministic();
    let strat = message();
    for _ in 0..2000 {
        let m = strat.new_tree(&mut runner).unwrap().current();
        seen[m.command() as usize - 1] = true;
    }
    assert_eq!(seen, [true; Command::ALL.len()]);
}
