//! insta snapshots of the encoded bytes of one example message per command, as an annotated hex
//! dump. A change here is a wire-format change. Netlink is native endian; the committed
//! snapshots are little-endian, so the test runs only on little-endian hosts.
//!
//! Review a change with `cargo insta review` (or INSTA_UPDATE=always, then `git diff`). Under CI
//! (`CI=true`) insta never writes snapshots, and a mismatch or a missing snapshot fails.
#![cfg(target_endian = "little")]

mod common;

use mxfs_proto::*;

#[test]
fn encoded_examples() {
    let hdr = NlHeader {
        nlmsg_type: 0x1c,
        flags: NLM_F_REQUEST | NLM_F_ACK,
        seq: 1,
        pid: 4242,
    };
    for (i, (name, m)) in common::examples().iter().enumerate() {
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
