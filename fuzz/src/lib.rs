//! Checks shared by the MXFS fuzz targets. Each target in `fuzz_targets/` is a thin wrapper
//! around one function here, so the checks can also be unit-tested on stable.

pub mod netlink;
