//! mxfsd's ctl socket reader on arbitrary bytes: the line codec (a line over the limit is
//! refused, never parsed) and the JSON request parser, then the resource and mode fields. Must
//! never panic; whatever parses re-encodes to one line that parses to the same request. Oracle:
//! `mxfs_daemon::fuzzing::check_ctl_input`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| mxfs_daemon::fuzzing::check_ctl_input(data));
