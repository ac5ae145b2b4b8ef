//! Raw bytes into every entry point of the netlink parser. It must never panic, and every input
//! it accepts must survive parse -> encode -> parse unchanged (see `mxfs_fuzz::netlink`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mxfs_fuzz::netlink::check_all_entry_points(data);
});
