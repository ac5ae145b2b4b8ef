//! mxfsd's TOML config parser and validator on arbitrary bytes: must return an error naming the
//! field, never panic. Oracle: `mxfs_daemon::fuzzing::check_config`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| mxfs_daemon::fuzzing::check_config(data));
