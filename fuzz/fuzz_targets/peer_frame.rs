//! mxfsd's peer frame decoder (header, HMAC trailer, postcard body of the core's PeerMsg) on
//! arbitrary bytes: must return an error on garbage, never panic. Oracle:
//! `mxfs_daemon::fuzzing::check_peer_frame`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| mxfs_daemon::fuzzing::check_peer_frame(data));
