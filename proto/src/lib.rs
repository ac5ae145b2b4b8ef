//! `mxfs-proto`: the Generic Netlink protocol between `mxfs.ko` and `mxfsd`.
//!
//! `no_std`, no allocation, no dependencies beyond `core`: the kernel module compiles this same
//! source. See DESIGN.md §1.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod types;

pub use types::*;
