//! Structure-aware: builds a message from the fuzzer's bytes with `arbitrary`, encodes it, checks
//! that the parser gives it back (or that the encoder refused exactly the invalid ones), then
//! mutates bytes of the encoding and checks the parser answers with errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mxfs_fuzz::netlink::StructuredInput;

fuzz_target!(|input: StructuredInput<'_>| {
    let _ = mxfs_fuzz::netlink::check_structured(&input);
});
