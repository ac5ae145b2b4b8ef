//! `mxfsd`, the MXFS cluster lock daemon, as a library: config, peer frames and authentication,
//! membership, the kernel port, the ctl protocol, metrics, and the event loop that drives the
//! sans-IO lock core (`mxfs-core`). The binaries `mxfsd` and `mxfsctl` are thin wrappers.
#![forbid(unsafe_code)]

pub mod agent;
pub mod auth;
pub mod config;
pub mod ctl;
pub mod daemon;
pub mod fence;
pub mod frame;
pub mod fuzzing;
pub mod kernel;
pub mod membership;
pub mod metrics;
pub mod peer;
pub mod replay;
pub mod timers;
