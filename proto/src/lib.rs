//! `mxfs-proto`: the Generic Netlink protocol between `mxfs.ko` and `mxfsd`.
//!
//! `no_std`, no allocation, no dependencies beyond `core`: the kernel module compiles this same
//! source by `#[path]`-including each submodule, so modules name each other as `super::x`.
//! See DESIGN.md §1 and `proto/README.md`.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod attr;
mod encode;
mod error;
mod message;
mod netlink;
mod parse;
mod policy;
mod types;

pub use attr::*;
pub use encode::*;
pub use error::*;
pub use message::*;
pub use netlink::*;
pub use parse::*;
pub use policy::*;
pub use types::*;
