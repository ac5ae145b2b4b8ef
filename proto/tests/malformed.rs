//! One test per class of malformed input, each asserting the exact error: the variant and the
//! attribute or byte offset it names. Inputs are built by hand (tests/common), not by the encoder.

mod common;

use common::{genl, lock_req_attrs, nlmsg, res, B};
use mxfs_proto::*;

fn req(attrs: &B) -> Result<Message<'_>, ParseError> {
    parse_attrs(Command::LockReq, &attrs.0)
}

const RES: AttrKey = AttrKey::Top(AttrId::Resource);

#[test]
fn hand_built_lock_req_parses_and_matches_encoder() {
    let attrs = lock_req_attrs();
    let want = Message::LockReq(LockReq {
        req_id: 9,
        resource: ResourceId::inode(7, 42),
        mode: LockMode::Ex,
        flags: LockFlags::empty(),
        timeout_ms: None,
    });
    assert_eq!(req(&attrs), Ok(want));
    let mut buf = [0u8; MSG_LEN_MAX];
    let n = encode_attrs(&want, &mut buf).unwrap();
    assert_eq!(&buf[..n], &attrs.0[..]);
    let whole = nlmsg(&genl(1, &attrs));
    let hdr = NlHeader {
        nlmsg_type: 0x20,
        flags: NLM_F_REQUEST,
        seq: 3,
        pid: 4,
    };
    assert_eq!(parse_message(&whole), Ok((hdr, want)));
    let n = encode_message(&hdr, &want, &mut buf).unwrap();
    assert_eq!(&buf[..n], &whole[..]);
}

#[test]
fn truncated_nlmsghdr() {
    let whole = nlmsg(&genl(9, &B::new()));
    assert_eq!(
        parse_message(&whole[..15]),
        Err(ParseError::TruncatedNlmsghdr { len: 15 })
    );
    assert_eq!(
        parse_message(&[]),
        Err(ParseError::TruncatedNlmsghdr { len: 0 })
    );
}

#[test]
fn truncated_genlmsghdr() {
    let whole = nlmsg(&[9, 1]);
    assert_eq!(
        parse_message(&whole),
        Err(ParseError::TruncatedGenlmsghdr { offset: 16, len: 2 })
    );
    let empty = nlmsg(&[]);
    assert_eq!(
        parse_message(&empty),
        Err(ParseError::TruncatedGenlmsghdr { offset: 16, len: 0 })
    );
    assert_eq!(
        parse_genl(&[9, 1, 0]),
        Err(ParseError::TruncatedGenlmsghdr { offset: 0, len: 3 })
    );
}

#[test]
fn nlmsg_len_disagrees_with_buffer() {
    let mut whole = nlmsg(&genl(9, &B::new()));
    whole[0] = 24; // 20 bytes present
    assert_eq!(
        parse_message(&whole),
        Err(ParseError::NlmsgLenMismatch {
            nlmsg_len: 24,
            buf_len: 20
        })
    );
    let mut long = nlmsg(&genl(9, &B::new()));
    long.extend_from_slice(&[0; 4]); // trailing bytes after the message
    assert_eq!(
        parse_message(&long),
        Err(ParseError::NlmsgLenMismatch {
            nlmsg_len: 20,
            buf_len: 24
        })
    );
}

#[test]
fn control_message_type_is_not_a_family() {
    let mut whole = nlmsg(&genl(9, &B::new()));
    whole[4..6].copy_from_slice(&2u16.to_ne_bytes()); // NLMSG_ERROR
    assert_eq!(
        parse_message(&whole),
        Err(ParseError::NotGenlFamily { nlmsg_type: 2 })
    );
}

#[test]
fn bad_nla_len_short() {
    let attrs = B::new().raw(3, AttrId::Mode as u16, &[]);
    assert_eq!(
        req(&attrs),
        Err(ParseError::BadNlaLen {
            offset: 0,
            nla_len: 3
        })
    );
    let attrs = lock_req_attrs().raw(0, AttrId::TimeoutMs as u16, &[]);
    assert_eq!(
        req(&attrs),
        Err(ParseError::BadNlaLen {
            offset: 76,
            nla_len: 0
        })
    );
}

#[test]
fn bad_nla_len_past_end() {
    let attrs = lock_req_attrs().raw(100, AttrId::TimeoutMs as u16, &[0; 4]);
    assert_eq!(
        req(&attrs),
        Err(ParseError::BadNlaLen {
            offset: 76,
            nla_len: 100
        })
    );
    // In a whole message the offset counts from the nlmsghdr.
    let whole = nlmsg(&genl(1, &attrs));
    assert_eq!(
        parse_message(&whole),
        Err(ParseError::BadNlaLen {
            offset: 96,
            nla_len: 100
        })
    );
}

#[test]
fn misaligned_trailing_bytes() {
    let attrs = lock_req_attrs().bytes(&[0, 0]);
    assert_eq!(req(&attrs), Err(ParseError::Misaligned { offset: 76 }));
}

#[test]
fn misaligned_last_attribute_without_padding() {
    // MODE last, nla_len 5, but the buffer stops right after its payload byte.
    let mut attrs = B::new()
        .nest(AttrId::Resource, res(1, 7, 42, 0))
        .u32(AttrId::Flags, 0)
        .u64(AttrId::ReqId, 9)
        .u8(AttrId::Mode, 5);
    attrs.0.truncate(attrs.0.len() - 3);
    assert_eq!(req(&attrs), Err(ParseError::Misaligned { offset: 68 }));
}

#[test]
fn bad_padding() {
    let mut attrs = lock_req_attrs();
    attrs.0[48 + 6] = 0xff; // second padding byte of MODE
    assert_eq!(req(&attrs), Err(ParseError::BadPadding { offset: 54 }));
    let mut nested = lock_req_attrs();
    nested.0[4 + 7] = 1; // last padding byte of RESOURCE.TYPE
    assert_eq!(req(&nested), Err(ParseError::BadPadding { offset: 11 }));
}

#[test]
fn unknown_command() {
    assert_eq!(
        parse_genl(&genl(0, &B::new())),
        Err(ParseError::UnknownCommand { offset: 0, cmd: 0 })
    );
    // One past the last command (VOLUME_WITHDRAW, 14).
    let whole = nlmsg(&genl(15, &B::new()));
    assert_eq!(
        parse_message(&whole),
        Err(ParseError::UnknownCommand {
            offset: 16,
            cmd: 15
        })
    );
}

#[test]
fn wrong_genl_version() {
    let mut g = genl(9, &B::new());
    g[1] = 2;
    assert_eq!(
        parse_genl(&g),
        Err(ParseError::BadVersion {
            offset: 1,
            version: 2
        })
    );
}

#[test]
fn nonzero_genl_reserved() {
    let mut g = genl(9, &B::new());
    g[3] = 1;
    assert_eq!(
        parse_genl(&g),
        Err(ParseError::BadReserved {
            offset: 2,
            value: u16::from_ne_bytes([0, 1])
        })
    );
}

#[test]
fn unknown_attribute() {
    let attrs = lock_req_attrs().attr(18, &0u32.to_ne_bytes());
    assert_eq!(
        req(&attrs),
        Err(ParseError::UnknownAttr {
            parent: None,
            id: 18,
            offset: 76
        })
    );
    let zero = B::new().attr(0, &[]);
    assert_eq!(
        req(&zero),
        Err(ParseError::UnknownAttr {
            parent: None,
            id: 0,
            offset: 0
        })
    );
    let inner = res(1, 7, 42, 0).attr(5, &[0; 8]);
    let attrs = B::new().nest(AttrId::Resource, inner);
    assert_eq!(
        req(&attrs),
        Err(ParseError::UnknownAttr {
            parent: Some(AttrId::Resource),
            id: 5,
            offset: 48
        })
    );
}

#[test]
fn missing_required_attribute() {
    let attrs = B::new()
        .nest(AttrId::Resource, res(1, 7, 42, 0))
        .u32(AttrId::Flags, 0)
        .u64(AttrId::ReqId, 9);
    assert_eq!(
        req(&attrs),
        Err(ParseError::MissingAttr {
            cmd: Command::LockReq,
            attr: AttrKey::Top(AttrId::Mode)
        })
    );
    let deny = B::new()
        .nest(AttrId::Resource, res(1, 7, 42, 0))
        .u64(AttrId::ReqId, 9);
    assert_eq!(
        parse_attrs(Command::LockDeny, &deny.0),
        Err(ParseError::MissingAttr {
            cmd: Command::LockDeny,
            attr: AttrKey::Top(AttrId::Status)
        })
    );
    assert_eq!(
        parse_attrs(Command::RecoveryStart, &[]),
        Err(ParseError::MissingAttr {
            cmd: Command::RecoveryStart,
            attr: AttrKey::Top(AttrId::Volume)
        })
    );
}

#[test]
fn missing_nested_attribute() {
    let inner = B::new()
        .attr(ResourceAttr::Type as u16, &[1])
        .attr(ResourceAttr::Volume as u16, &7u64.to_ne_bytes())
        .attr(ResourceAttr::A as u16, &42u64.to_ne_bytes());
    let attrs = B::new().nest(AttrId::Resource, inner).u8(AttrId::Mode, 5);
    assert_eq!(
        req(&attrs),
        Err(ParseError::MissingAttr {
            cmd: Command::LockReq,
            attr: AttrKey::Resource(ResourceAttr::B)
        })
    );
}

#[test]
fn timeout_required_iff_flag() {
    let attrs = B::new()
        .nest(AttrId::Resource, res(1, 7, 42, 0))
        .u8(AttrId::Mode, 5)
        .u32(AttrId::Flags, LockFlags::TIMEOUT_MS.0)
        .u64(AttrId::ReqId, 9);
    assert_eq!(
        req(&attrs),
        Err(ParseError::MissingAttr {
            cmd: Command::LockReq,
            attr: AttrKey::Top(AttrId::TimeoutMs)
        })
    );
    let with = attrs.u32(AttrId::TimeoutMs, 500);
    assert!(matches!(
        req(&with),
        Ok(Message::LockReq(LockReq {
            timeout_ms: Some(500),
            ..
        }))
    ));
    let without_flag = lock_req_attrs().u32(AttrId::TimeoutMs, 500);
    assert_eq!(
        req(&without_flag),
        Err(ParseError::AttrNotAllowed {
            cmd: Command::LockReq,
            attr: AttrId::TimeoutMs,
            offset: 76
        })
    );
}

#[test]
fn attribute_not_allowed_for_command() {
    let grant = B::new()
        .nest(AttrId::Resource, res(1, 7, 42, 0))
        .u8(AttrId::Mode, 5)
        .u64(AttrId::ReqId, 9)
        .u32(AttrId::Status, (-11i32) as u32);
    assert_eq!(
        parse_attrs(Command::LockGrant, &grant.0),
        Err(ParseError::AttrNotAllowed {
            cmd: Command::LockGrant,
            attr: AttrId::Status,
            offset: 68
        })
    );
    let status_req = B::new().u64(AttrId::Volume, 1);
    assert_eq!(
        parse_attrs(Command::StatusReq, &status_req.0),
        Err(ParseError::AttrNotAllowed {
            cmd: Command::StatusReq,
            attr: AttrId::Volume,
            offset: 0
        })
    );
}

#[test]
fn wrong_length_for_fixed_size() {
    let attrs = B::new()
        .nest(AttrId::Resource, res(1, 7, 42, 0))
        .attr(AttrId::Mode as u16, &[5, 0]);
    assert_eq!(
        req(&attrs),
        Err(ParseError::BadAttrLen {
            attr: AttrKey::Top(AttrId::Mode),
            offset: 48,
            len: 2,
            expected: 1
        })
    );
    let attrs = B::new().attr(AttrId::ReqId as u16, &9u32.to_ne_bytes());
    assert_eq!(
        req(&attrs),
        Err(ParseError::BadAttrLen {
            attr: AttrKey::Top(AttrId::ReqId),
            offset: 0,
            len: 4,
            expected: 8
        })
    );
    let inner = B::new().attr(ResourceAttr::Type as u16, &1u64.to_ne_bytes());
    let attrs = B::new().nest(AttrId::Resource, inner);
    assert_eq!(
        req(&attrs),
        Err(ParseError::BadAttrLen {
            attr: AttrKey::Resource(ResourceAttr::Type),
            offset: 4,
            len: 8,
            expected: 1
        })
    );
}

fn mount(attrs: &B) -> Result<Message<'_>, ParseError> {
    parse_attrs(Command::VolumeMount, &attrs.0)
}

#[test]
fn string_without_nul() {
    let attrs = B::new()
        .u64(AttrId::Volume, 1)
        .attr(AttrId::DevPath as u16, b"/dev/vdb");
    assert_eq!(
        mount(&attrs),
        Err(ParseError::StringNotTerminated {
            attr: AttrId::DevPath,
            offset: 12
        })
    );
    let empty = B::new()
        .u64(AttrId::Volume, 1)
        .attr(AttrId::MountPath as u16, b"");
    assert_eq!(
        mount(&empty),
        Err(ParseError::StringNotTerminated {
            attr: AttrId::MountPath,
            offset: 12
        })
    );
}

#[test]
fn string_with_bytes_after_nul() {
    let attrs = B::new()
        .u64(AttrId::Volume, 1)
        .attr(AttrId::DevPath as u16, b"/dev\0vdb\0");
    assert_eq!(
        mount(&attrs),
        Err(ParseError::StringTrailingBytes {
            attr: AttrId::DevPath,
            offset: 12
        })
    );
}

#[test]
fn string_over_limit() {
    let mut long = vec![b'a'; PATH_LEN_MAX + 1];
    long.push(0);
    let attrs = B::new()
        .u64(AttrId::Volume, 1)
        .attr(AttrId::MountPath as u16, &long);
    assert_eq!(
        mount(&attrs),
        Err(ParseError::StringTooLong {
            attr: AttrId::MountPath,
            offset: 12,
            len: 257
        })
    );
    // Exactly at the limit is fine.
    let mut max = vec![b'a'; PATH_LEN_MAX];
    max.push(0);
    let attrs = B::new()
        .u64(AttrId::Volume, 1)
        .attr(AttrId::MountPath as u16, &max);
    let Ok(Message::VolumeMount(m)) = mount(&attrs) else {
        panic!("limit-length path rejected")
    };
    assert_eq!(m.mount_path.map(str::len), Some(PATH_LEN_MAX));
}

#[test]
fn string_not_utf8() {
    let attrs = B::new()
        .u64(AttrId::Volume, 1)
        .attr(AttrId::DevPath as u16, b"/dev/\xff\0");
    assert_eq!(
        mount(&attrs),
        Err(ParseError::StringNotUtf8 {
            attr: AttrId::DevPath,
            offset: 12
        })
    );
}

#[test]
fn duplicate_attribute() {
    let attrs = lock_req_attrs().u64(AttrId::ReqId, 10);
    assert_eq!(
        req(&attrs),
        Err(ParseError::DuplicateAttr {
            attr: AttrKey::Top(AttrId::ReqId),
            offset: 76
        })
    );
    let inner = res(1, 7, 42, 0).attr(ResourceAttr::A as u16, &1u64.to_ne_bytes());
    let attrs = B::new().nest(AttrId::Resource, inner);
    assert_eq!(
        req(&attrs),
        Err(ParseError::DuplicateAttr {
            attr: AttrKey::Resource(ResourceAttr::A),
            offset: 48
        })
    );
}

#[test]
fn nested_attribute_overruns_parent() {
    // The parent's nla_len covers TYPE only, but TYPE's header claims 12 bytes.
    let attrs = B::new()
        .raw(4 + 8, AttrId::Resource as u16 | NLA_F_NESTED, &[])
        .raw(12, ResourceAttr::Type as u16, &[1])
        .bytes(&[0; 4]);
    assert_eq!(
        req(&attrs),
        Err(ParseError::NestedOverrun {
            parent: AttrId::Resource,
            offset: 4,
            nla_len: 12
        })
    );
}

#[test]
fn wrong_type_flags() {
    let attrs = B::new().attr(AttrId::Resource as u16, &res(1, 7, 42, 0).0);
    assert_eq!(
        req(&attrs),
        Err(ParseError::BadAttrFlags {
            attr: RES,
            offset: 0,
            flags: 0
        })
    );
    let attrs = B::new().attr(AttrId::Mode as u16 | NLA_F_NESTED, &[5]);
    assert_eq!(
        req(&attrs),
        Err(ParseError::BadAttrFlags {
            attr: AttrKey::Top(AttrId::Mode),
            offset: 0,
            flags: NLA_F_NESTED
        })
    );
    let attrs = B::new().attr(AttrId::ReqId as u16 | NLA_F_NET_BYTEORDER, &[0; 8]);
    assert_eq!(
        req(&attrs),
        Err(ParseError::BadAttrFlags {
            attr: AttrKey::Top(AttrId::ReqId),
            offset: 0,
            flags: NLA_F_NET_BYTEORDER
        })
    );
}

fn bad_value(
    attr: AttrKey,
    offset: usize,
    value: BadValue,
) -> Result<Message<'static>, ParseError> {
    Err(ParseError::BadValue {
        attr,
        offset,
        value,
    })
}

#[test]
fn bad_mode() {
    let attrs = B::new()
        .nest(AttrId::Resource, res(1, 7, 42, 0))
        .u8(AttrId::Mode, 6);
    assert_eq!(
        req(&attrs),
        bad_value(AttrKey::Top(AttrId::Mode), 48, BadValue::Mode(6))
    );
}

#[test]
fn bad_resource_type() {
    // 5 is one past VOLUME (4).
    let attrs = B::new().nest(AttrId::Resource, res(5, 7, 42, 0));
    assert_eq!(
        req(&attrs),
        bad_value(
            AttrKey::Resource(ResourceAttr::Type),
            4,
            BadValue::ResourceType(5)
        )
    );
    let attrs = B::new().nest(AttrId::Resource, res(0, 7, 42, 0));
    assert_eq!(
        req(&attrs),
        bad_value(
            AttrKey::Resource(ResourceAttr::Type),
            4,
            BadValue::ResourceType(0)
        )
    );
}

#[test]
fn resource_not_well_formed() {
    // An INODE resource with b != 0, and an EXTENT whose chunk offset is not aligned.
    let attrs = B::new().nest(AttrId::Resource, res(1, 7, 42, 1));
    assert_eq!(
        req(&attrs),
        bad_value(RES, 0, BadValue::ResourceNotWellFormed)
    );
    let attrs = B::new().nest(AttrId::Resource, res(2, 7, 42, 4096));
    assert_eq!(
        req(&attrs),
        bad_value(RES, 0, BadValue::ResourceNotWellFormed)
    );
    // A VOLUME covers the whole volume: any a or b is malformed, even a chunk-aligned b.
    for (a, b) in [(1, 0), (0, 1), (0, EXTENT_CHUNK_BYTES), (42, 42)] {
        let attrs = B::new().nest(AttrId::Resource, res(4, 7, a, b));
        assert_eq!(
            req(&attrs),
            bad_value(RES, 0, BadValue::ResourceNotWellFormed),
            "VOLUME with a={a} b={b}"
        );
    }
}

/// A valid `LOCK_CALLBACK` attribute area: the VOLUME resource of volume 7, keep `mode`,
/// request id 9. Offsets: RESOURCE 0, MODE 48, REQ_ID 56; 68 bytes.
fn callback_attrs(mode: u8) -> B {
    B::new()
        .nest(AttrId::Resource, res(4, 7, 0, 0))
        .u8(AttrId::Mode, mode)
        .u64(AttrId::ReqId, 9)
}

#[test]
fn hand_built_lock_callback_parses_and_matches_encoder() {
    let attrs = callback_attrs(3);
    let want = Message::LockCallback(LockCallback {
        req_id: 9,
        resource: ResourceId::volume(7),
        mode: LockMode::Pr,
    });
    assert_eq!(parse_attrs(Command::LockCallback, &attrs.0), Ok(want));
    let mut buf = [0u8; MSG_LEN_MAX];
    let n = encode_attrs(&want, &mut buf).unwrap();
    assert_eq!(&buf[..n], &attrs.0[..]);
    // NL (release) and every mode below EX may be kept.
    for m in 0..5u8 {
        assert!(
            parse_attrs(Command::LockCallback, &callback_attrs(m).0).is_ok(),
            "mode {m}"
        );
    }
    let whole = nlmsg(&genl(13, &attrs));
    assert!(matches!(
        parse_message(&whole),
        Ok((_, Message::LockCallback(c))) if c.req_id == 9
    ));
}

#[test]
fn lock_callback_keeping_ex_is_refused() {
    assert_eq!(
        parse_attrs(Command::LockCallback, &callback_attrs(5).0),
        bad_value(AttrKey::Top(AttrId::Mode), 48, BadValue::CallbackKeepsEx)
    );
    // In another attribute order the error names MODE where it is: last, at byte 60.
    let attrs = B::new()
        .nest(AttrId::Resource, res(4, 7, 0, 0))
        .u64(AttrId::ReqId, 9)
        .u8(AttrId::Mode, 5);
    assert_eq!(
        parse_attrs(Command::LockCallback, &attrs.0),
        bad_value(AttrKey::Top(AttrId::Mode), 60, BadValue::CallbackKeepsEx)
    );
}

#[test]
fn lock_callback_needs_holder_resource_and_mode_and_nothing_else() {
    let cmd = Command::LockCallback;
    let no_mode = B::new()
        .nest(AttrId::Resource, res(4, 7, 0, 0))
        .u64(AttrId::ReqId, 9);
    assert_eq!(
        parse_attrs(cmd, &no_mode.0),
        Err(ParseError::MissingAttr {
            cmd,
            attr: AttrKey::Top(AttrId::Mode)
        })
    );
    let no_req = B::new()
        .nest(AttrId::Resource, res(4, 7, 0, 0))
        .u8(AttrId::Mode, 0);
    assert_eq!(
        parse_attrs(cmd, &no_req.0),
        Err(ParseError::MissingAttr {
            cmd,
            attr: AttrKey::Top(AttrId::ReqId)
        })
    );
    let no_res = B::new().u8(AttrId::Mode, 0).u64(AttrId::ReqId, 9);
    assert_eq!(
        parse_attrs(cmd, &no_res.0),
        Err(ParseError::MissingAttr {
            cmd,
            attr: AttrKey::Top(AttrId::Resource)
        })
    );
    // A callback is not a request: FLAGS (at 68, after the valid area) is not allowed.
    let flags = callback_attrs(0).u32(AttrId::Flags, 0);
    assert_eq!(
        parse_attrs(cmd, &flags.0),
        Err(ParseError::AttrNotAllowed {
            cmd,
            attr: AttrId::Flags,
            offset: 68
        })
    );
}

#[test]
fn volume_withdraw_carries_volume_and_negative_errno() {
    let cmd = Command::VolumeWithdraw;
    let attrs = |s: i32| {
        B::new()
            .u32(AttrId::Status, s as u32)
            .u64(AttrId::Volume, 7)
    };
    assert_eq!(
        parse_attrs(cmd, &attrs(-5).0),
        Ok(Message::VolumeWithdraw(VolumeWithdraw {
            volume: 7,
            status: -5
        }))
    );
    for s in [0i32, 5, -4096] {
        assert_eq!(
            parse_attrs(cmd, &attrs(s).0),
            bad_value(AttrKey::Top(AttrId::Status), 0, BadValue::Status(s)),
            "status {s}"
        );
    }
    let no_status = B::new().u64(AttrId::Volume, 7);
    assert_eq!(
        parse_attrs(cmd, &no_status.0),
        Err(ParseError::MissingAttr {
            cmd,
            attr: AttrKey::Top(AttrId::Status)
        })
    );
    let with_epoch = attrs(-5).u64(AttrId::Epoch, 1);
    assert_eq!(
        parse_attrs(cmd, &with_epoch.0),
        Err(ParseError::AttrNotAllowed {
            cmd,
            attr: AttrId::Epoch,
            offset: 20
        })
    );
}

#[test]
fn bad_node_state_and_node_id() {
    let attrs = B::new().u32(AttrId::NodeId, 3).u8(AttrId::NodeState, 4);
    assert_eq!(
        parse_attrs(Command::NodeStatus, &attrs.0),
        bad_value(AttrKey::Top(AttrId::NodeState), 8, BadValue::NodeState(4))
    );
    let attrs = B::new().u32(AttrId::NodeId, NODE_ID_MAX + 1);
    assert_eq!(
        parse_attrs(Command::NodeStatus, &attrs.0),
        bad_value(AttrKey::Top(AttrId::NodeId), 0, BadValue::NodeId(64))
    );
}

#[test]
fn undefined_flag_bits() {
    let attrs = B::new()
        .nest(AttrId::Resource, res(1, 7, 42, 0))
        .u8(AttrId::Mode, 5)
        .u32(AttrId::Flags, 8);
    assert_eq!(
        req(&attrs),
        bad_value(AttrKey::Top(AttrId::Flags), 56, BadValue::FlagBits(8))
    );
}

#[test]
fn deny_status_must_be_negative_errno() {
    for s in [0i32, 11, -4096, i32::MIN] {
        let attrs = B::new()
            .nest(AttrId::Resource, res(1, 7, 42, 0))
            .u64(AttrId::ReqId, 9)
            .u32(AttrId::Status, s as u32);
        assert_eq!(
            parse_attrs(Command::LockDeny, &attrs.0),
            bad_value(AttrKey::Top(AttrId::Status), 60, BadValue::Status(s)),
            "status {s}"
        );
    }
    let ok = B::new()
        .nest(AttrId::Resource, res(1, 7, 42, 0))
        .u64(AttrId::ReqId, 9)
        .u32(AttrId::Status, (-11i32) as u32);
    assert!(matches!(
        parse_attrs(Command::LockDeny, &ok.0),
        Ok(Message::LockDeny(LockDeny { status: -11, .. }))
    ));
}

#[test]
fn every_error_displays_its_culprit() {
    let e = ParseError::MissingAttr {
        cmd: Command::LockReq,
        attr: AttrKey::Resource(ResourceAttr::B),
    };
    assert_eq!(
        e.to_string(),
        "LOCK_REQ is missing required attribute RESOURCE.B(4)"
    );
    let e = ParseError::BadNlaLen {
        offset: 76,
        nla_len: 100,
    };
    assert!(e.to_string().contains("byte 76"), "{e}");
    assert_eq!(e.offset(), Some(76));
    let e = ParseError::BadValue {
        attr: RES,
        offset: 0,
        value: BadValue::ResourceNotWellFormed,
    };
    assert!(
        e.to_string()
            .starts_with("attribute RESOURCE(1) at byte 0: resource id"),
        "{e}"
    );
    let e = EncodeError::BufferTooSmall {
        needed: 96,
        available: 10,
    };
    assert_eq!(e.to_string(), "encoding needs 96 bytes, buffer has 10");
}

#[test]
fn encoder_rejects_what_the_parser_rejects() {
    let mut buf = [0u8; MSG_LEN_MAX];
    let bad_res = ResourceId {
        b: 1,
        ..ResourceId::inode(1, 2)
    };
    let m = Message::LockGrant(LockGrant {
        req_id: 1,
        resource: bad_res,
        mode: LockMode::Pr,
        data_version: None,
    });
    assert_eq!(
        encode_attrs(&m, &mut buf),
        Err(EncodeError::BadValue {
            attr: RES,
            value: BadValue::ResourceNotWellFormed
        })
    );
    let m = Message::LockReq(LockReq {
        req_id: 1,
        resource: ResourceId::inode(1, 2),
        mode: LockMode::Pr,
        flags: LockFlags::TIMEOUT_MS,
        timeout_ms: None,
    });
    assert_eq!(
        encode_genl(&m, &mut buf),
        Err(EncodeError::BadValue {
            attr: AttrKey::Top(AttrId::TimeoutMs),
            value: BadValue::TimeoutFlagMismatch
        })
    );
    let m = Message::VolumeMount(VolumeMount {
        volume: 1,
        dev_path: Some("a\0b"),
        mount_path: None,
        generation: None,
    });
    assert_eq!(
        encode_attrs(&m, &mut buf),
        Err(EncodeError::BadValue {
            attr: AttrKey::Top(AttrId::DevPath),
            value: BadValue::PathHasNul
        })
    );
    let m = Message::LockDeny(LockDeny {
        req_id: 1,
        resource: ResourceId::ag(1, 2),
        status: 0,
    });
    assert_eq!(
        encode_attrs(&m, &mut buf),
        Err(EncodeError::BadValue {
            attr: AttrKey::Top(AttrId::Status),
            value: BadValue::Status(0)
        })
    );
    let m = Message::LockCallback(LockCallback {
        req_id: 1,
        resource: ResourceId::volume(1),
        mode: LockMode::Ex,
    });
    assert_eq!(
        encode_attrs(&m, &mut buf),
        Err(EncodeError::BadValue {
            attr: AttrKey::Top(AttrId::Mode),
            value: BadValue::CallbackKeepsEx
        })
    );
    let m = Message::LockCallback(LockCallback {
        req_id: 1,
        resource: ResourceId {
            a: 3,
            ..ResourceId::volume(1)
        },
        mode: LockMode::Nl,
    });
    assert_eq!(
        encode_attrs(&m, &mut buf),
        Err(EncodeError::BadValue {
            attr: RES,
            value: BadValue::ResourceNotWellFormed
        })
    );
    let m = Message::VolumeWithdraw(VolumeWithdraw {
        volume: 1,
        status: 0,
    });
    assert_eq!(
        encode_attrs(&m, &mut buf),
        Err(EncodeError::BadValue {
            attr: AttrKey::Top(AttrId::Status),
            value: BadValue::Status(0)
        })
    );
    let hdr = NlHeader {
        nlmsg_type: 3,
        ..NlHeader::default()
    };
    assert_eq!(
        encode_message(&hdr, &Message::StatusReq(StatusReq), &mut buf),
        Err(EncodeError::NotGenlFamily { nlmsg_type: 3 })
    );
}

#[test]
fn encoder_reports_small_buffer_without_panicking() {
    let m = Message::CacheInval(CacheInval {
        volume: 1,
        ino: 2,
        offset: 3,
        length: 4,
    });
    let hdr = NlHeader {
        nlmsg_type: 0x20,
        ..NlHeader::default()
    };
    let need = m.encoded_len();
    assert_eq!(need, 16 + 4 + 4 * 12);
    for n in 0..need {
        let mut buf = vec![0u8; n];
        assert_eq!(
            encode_message(&hdr, &m, &mut buf),
            Err(EncodeError::BufferTooSmall {
                needed: need,
                available: n
            })
        );
    }
    let mut buf = vec![0u8; need];
    assert_eq!(encode_message(&hdr, &m, &mut buf), Ok(need));
    assert_eq!(parse_message(&buf), Ok((hdr, m)));
}
