//! The fuzz seed corpus is the encoding of `common::examples()` (one message per command), so it
//! follows the wire format. This test fails when a committed seed is stale; regenerate with
//! `MXFS_BLESS_CORPUS=1 cargo test -p mxfs-proto --test fuzz_corpus`.
#![cfg(target_endian = "little")]

mod common;

use mxfs_proto::*;
use std::path::PathBuf;

/// Targets seeded with whole encoded messages.
const TARGETS: [&str; 2] = ["netlink_attrs", "netlink_structured"];

#[test]
fn seed_corpus_matches_encoder() {
    let bless = std::env::var_os("MXFS_BLESS_CORPUS").is_some();
    let hdr = NlHeader {
        nlmsg_type: 0x1c,
        flags: NLM_F_REQUEST,
        seq: 1,
        pid: 0,
    };
    for target in TARGETS {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus")
            .join(target);
        for (name, m) in common::examples() {
            let mut buf = [0u8; MSG_LEN_MAX];
            let n = encode_message(&hdr, &m, &mut buf).unwrap();
            let path = dir.join(format!("seed_{name}"));
            if bless {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &buf[..n]).unwrap();
            }
            let committed = std::fs::read(&path).unwrap_or_else(|e| {
                panic!("{}: {e} (bless with MXFS_BLESS_CORPUS=1)", path.display())
            });
            assert_eq!(committed, &buf[..n], "{} is stale", path.display());
            assert_eq!(parse_message(&committed), Ok((hdr, m)));
        }
    }
}
