// SPDX-License-Identifier: GPL-2.0
//! The `mxfs-proto` sources, compiled into the module from `../proto/src` (DESIGN.md §1: the
//! kernel uses the same parser, encoder and policy as the daemon). The module tree mirrors
//! `proto/src/lib.rs`, so the files' `super::x` paths resolve here too.
#![allow(dead_code, unreachable_pub, unused_imports)]

#[path = "../proto/src/attr.rs"]
mod attr;
#[path = "../proto/src/encode.rs"]
mod encode;
#[path = "../proto/src/error.rs"]
mod error;
#[path = "../proto/src/message.rs"]
mod message;
#[path = "../proto/src/netlink.rs"]
mod netlink;
#[path = "../proto/src/parse.rs"]
mod parse;
#[path = "../proto/src/policy.rs"]
mod policy;
#[path = "../proto/src/types.rs"]
mod types;

pub(crate) use attr::*;
pub(crate) use encode::*;
pub(crate) use error::*;
pub(crate) use message::*;
pub(crate) use netlink::*;
pub(crate) use parse::*;
pub(crate) use policy::*;
pub(crate) use types::*;
