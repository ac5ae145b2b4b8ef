// SPDX-License-Identifier: GPL-2.0
//! Generic Netlink: the `mxfs` v1 family (DESIGN.md §1), the daemon's portid, node states.
//!
//! The family struct and ops table are C (`glue.c`): the 6.12 kernel crate has no genetlink
//! bindings. Everything else is here. The attribute policy comes from proto's `ATTR_POLICY`,
//! written into the C table before registration; each doit hands the raw attribute bytes to
//! proto's parser, and every kernel-sent message is encoded with proto's encoder.
//!
//! Authority: the generic netlink core refuses every command without CAP_NET_ADMIN
//! (`GENL_ADMIN_PERM`). Then `STATUS_REQ` or a `VOLUME_MOUNT` ack registers the sender as the
//! daemon when none is registered, and only that portid may send anything else (`-EPERM`). The
//! registration ends when the daemon's socket is released (netlink notifier).

use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use kernel::bindings;
use kernel::error::{code, to_result, Error};
use kernel::prelude::*;

use crate::glue;
use crate::pending::{Delivery, Grant, PendingTable, Reply};
use crate::proto::{
    self, AttrKind, Command, LockRelease, Message, NodeState, StatusResp, ATTRS_LEN_MAX, ATTR_MAX,
    ATTR_POLICY, NODES_MAX, RESOURCE_ATTR_MAX, RESOURCE_ATTR_POLICY,
};
use crate::{cache, hooks, kerr, state, volume, Mxfs};

/// No daemon registered.
const PORTID_NONE: u32 = 0;

/// Netlink-side state: who the daemon is and what it told us about the cluster.
pub(crate) struct NetState {
    /// Registered daemon portid, or [`PORTID_NONE`].
    daemon_portid: AtomicU32,
    /// `NODE_STATUS` per node id, as `NodeState as u8` (fixed array, DESIGN.md §2).
    node_states: [AtomicU8; NODES_MAX],
    /// Membership epoch from the last `NODE_STATUS` or `RECOVERY_*` that carried one.
    epoch: AtomicU64,
}

impl NetState {
    pub(crate) const fn new() -> NetState {
        // `AtomicU8` is not `Copy`; a const item may be repeated.
        const UNKNOWN: AtomicU8 = AtomicU8::new(NodeState::Unknown as u8);
        NetState {
            daemon_portid: AtomicU32::new(PORTID_NONE),
            node_states: [UNKNOWN; NODES_MAX],
            epoch: AtomicU64::new(0),
        }
    }

    /// The registered daemon's portid.
    pub(crate) fn daemon(&self) -> Option<u32> {
        match self.daemon_portid.load(Ordering::Acquire) {
            PORTID_NONE => None,
            p => Some(p),
        }
    }
}

/// Maps proto's attribute kind onto `enum mxfs_glue_kind`.
fn glue_kind(kind: AttrKind) -> u32 {
    match kind {
        AttrKind::Unspec => 0,
        AttrKind::U8 => 1,
        AttrKind::U32 => 2,
        AttrKind::U64 => 3,
        AttrKind::S32 => 4,
        AttrKind::NulString => 5,
        AttrKind::Nested => 6,
    }
}

/// Subsystem init: policy from proto, then family and notifier registration.
pub(crate) fn init() -> Result {
    if ATTR_MAX != glue::GLUE_ATTR_MAX || RESOURCE_ATTR_MAX != glue::GLUE_RES_ATTR_MAX {
        pr_err!(
            "glue.h policy size ({}, {}) differs from proto ({}, {})\n",
            glue::GLUE_ATTR_MAX,
            glue::GLUE_RES_ATTR_MAX,
            ATTR_MAX,
            RESOURCE_ATTR_MAX
        );
        return Err(code::EINVAL);
    }
    for (id, p) in RESOURCE_ATTR_POLICY.iter().enumerate() {
        // SAFETY: called once at init, before the family is registered, so nothing reads the
        // policy table concurrently; `id` is at most RESOURCE_ATTR_MAX (checked above).
        to_result(unsafe { glue::mxfs_glue_policy_set(1, id as u16, glue_kind(p.kind), p.len) })?;
    }
    for (id, p) in ATTR_POLICY.iter().enumerate() {
        // SAFETY: as above, for the top-level table of ATTR_MAX + 1 entries.
        to_result(unsafe { glue::mxfs_glue_policy_set(0, id as u16, glue_kind(p.kind), p.len) })?;
    }
    // SAFETY: registers static C objects; the Rust state their doits use is published before
    // `init` runs (see `mxfs_main.rs`).
    to_result(unsafe { glue::mxfs_glue_genl_register() })
}

/// Subsystem exit. Unregistration waits for running doits to finish.
pub(crate) fn exit() {
    // SAFETY: the family was registered by `init`, which succeeded.
    unsafe { glue::mxfs_glue_genl_unregister() };
}

/// Encodes `msg`'s attributes with proto into `buf`; returns the length.
fn encode<'b>(msg: &Message<'_>, buf: &'b mut [u8; ATTRS_LEN_MAX]) -> Result<&'b [u8]> {
    match proto::encode_attrs(msg, buf) {
        Ok(n) => Ok(&buf[..n]),
        Err(e) => {
            pr_err!("cannot encode {}: {:?}\n", msg.command().name(), e);
            Err(code::EINVAL)
        }
    }
}

/// Sends a kernel-originated message to the daemon. With no daemon, or when its socket is gone,
/// the result is `-ENOTCONN` and the registration is dropped.
pub(crate) fn send_to_daemon(st: &Mxfs, msg: &Message<'_>) -> Result {
    let portid = st.net.daemon().ok_or(kerr(bindings::ENOTCONN))?;
    let mut buf = [0u8; ATTRS_LEN_MAX];
    let attrs = encode(msg, &mut buf)?;
    // SAFETY: `attrs` is valid for `attrs.len()` bytes for the duration of the call; the C side
    // copies it into a new skb.
    let rc = unsafe {
        glue::mxfs_glue_unicast(
            portid,
            msg.command() as u8,
            attrs.as_ptr().cast(),
            attrs.len() as u32,
        )
    };
    if rc == -(bindings::ECONNREFUSED as c_int) {
        daemon_gone(st, portid);
        return Err(kerr(bindings::ENOTCONN));
    }
    to_result(rc)
}

/// Multicasts a kernel-originated message to a group ("locks" or "status").
pub(crate) fn multicast(group: u32, msg: &Message<'_>) -> Result {
    let mut buf = [0u8; ATTRS_LEN_MAX];
    let attrs = encode(msg, &mut buf)?;
    // SAFETY: as in `send_to_daemon`.
    let rc = unsafe {
        glue::mxfs_glue_multicast(
            group,
            msg.command() as u8,
            attrs.as_ptr().cast(),
            attrs.len() as u32,
        )
    };
    // -ESRCH: nobody listens, which is fine.
    if rc == -(bindings::ESRCH as c_int) {
        return Ok(());
    }
    to_result(rc)
}

/// Replies to the sender of a request with `msg` sent as command number `cmd`.
pub(crate) fn reply(info: *mut c_void, cmd: u8, msg: &Message<'_>) -> Result {
    let mut buf = [0u8; ATTRS_LEN_MAX];
    let attrs = encode(msg, &mut buf)?;
    // SAFETY: `info` is the genl_info of the doit that is running (the caller's contract), and
    // `attrs` is valid for its length during the call.
    to_result(unsafe {
        glue::mxfs_glue_reply(info, cmd, attrs.as_ptr().cast(), attrs.len() as u32)
    })
}

/// The daemon at `portid` went away: forget it and fail the requests waiting for it.
fn daemon_gone(st: &Mxfs, portid: u32) {
    if st
        .net
        .daemon_portid
        .compare_exchange(portid, PORTID_NONE, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        let failed = st.pending.fail_all(-(bindings::ENOTCONN as i32));
        volume::daemon_gone(st);
        pr_info!(
            "daemon (portid {}) gone; {} waiting request(s) failed\n",
            portid,
            failed
        );
    }
}

/// Registers `portid` as the daemon if none is registered. Returns whether it is the daemon.
fn register_daemon(st: &Mxfs, portid: u32) -> bool {
    match st.net.daemon_portid.compare_exchange(
        PORTID_NONE,
        portid,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => {
            pr_info!("daemon registered (portid {})\n", portid);
            true
        }
        Err(current) => current == portid,
    }
}

/// Called by the C netlink notifier when a generic netlink socket is released.
#[no_mangle]
pub(crate) extern "C" fn mxfs_rs_sock_release(portid: u32) {
    if let Some(st) = state() {
        daemon_gone(st, portid);
    }
}

/// Turns a Rust result into a doit return value.
pub(crate) fn errno(r: Result) -> c_int {
    match r {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// Borrows a doit's attribute bytes.
///
/// # Safety
///
/// `attrs` must be valid for reads of `len` bytes for `'a` (genetlink's payload of the running
/// doit), or `len` must be 0.
pub(crate) unsafe fn payload<'a>(attrs: *const c_void, len: u32) -> &'a [u8] {
    if len == 0 || attrs.is_null() {
        return &[];
    }
    // SAFETY: the caller guarantees `attrs` is valid for `len` bytes for `'a`.
    unsafe { core::slice::from_raw_parts(attrs.cast::<u8>(), len as usize) }
}

/// Parses the payload of command `cmd` with proto's strict parser.
pub(crate) fn parse<'a>(cmd: Command, bytes: &'a [u8]) -> Result<Message<'a>> {
    proto::parse_attrs(cmd, bytes).map_err(|e| {
        pr_warn!("malformed {}: {}\n", cmd.name(), e);
        code::EINVAL
    })
}

/// The doit of every command the daemon sends (glue.c's `mxfs_doit`).
#[no_mangle]
pub(crate) extern "C" fn mxfs_rs_doit(
    cmd: u8,
    portid: u32,
    attrs: *const c_void,
    len: u32,
    info: *mut c_void,
) -> c_int {
    let Some(st) = state() else {
        return code::ENODEV.to_errno();
    };
    let Some(command) = Command::from_u8(cmd) else {
        return kerr(bindings::EOPNOTSUPP).to_errno();
    };
    // SAFETY: glue.c passes genlmsg_data()/genlmsg_len() of the message being handled, which
    // stay valid until this doit returns; nothing keeps the slice past that.
    let bytes = unsafe { payload(attrs, len) };
    errno(doit(st, command, portid, bytes, info))
}

fn doit(st: &Mxfs, command: Command, portid: u32, bytes: &[u8], info: *mut c_void) -> Result {
    let msg = parse(command, bytes)?;
    match msg {
        Message::StatusReq(_) => {
            register_daemon(st, portid);
            let resp = Message::StatusResp(status(st));
            reply(info, Command::StatusResp as u8, &resp)
        }
        Message::VolumeMount(m) => {
            if !register_daemon(st, portid) {
                return Err(code::EPERM);
            }
            pr_info!("daemon acknowledged volume {:#x}\n", m.volume);
            Ok(())
        }
        _ if st.net.daemon() != Some(portid) => {
            pr_warn!(
                "{} from portid {} refused: not the daemon\n",
                command.name(),
                portid
            );
            Err(code::EPERM)
        }
        Message::LockGrant(m) => deliver(
            st,
            m.req_id,
            m.resource,
            Reply::Grant(Grant {
                mode: m.mode,
                version: m.data_version,
            }),
        ),
        Message::LockDeny(m) => deliver(st, m.req_id, m.resource, Reply::Deny(m.status)),
        Message::CacheInval(m) => cache::invalidate(st, m.volume, m.ino, m.offset, m.length),
        Message::NodeStatus(m) => {
            let slot = st
                .net
                .node_states
                .get(m.node_id as usize)
                .ok_or(code::EINVAL)?;
            slot.store(m.state as u8, Ordering::Release);
            if let Some(epoch) = m.epoch {
                st.net.epoch.store(epoch, Ordering::Release);
            }
            pr_info!("node {} is {:?}\n", m.node_id, m.state);
            Ok(())
        }
        Message::RecoveryStart(m) => {
            st.net.epoch.store(m.epoch, Ordering::Release);
            hooks::recovery_start(st, m.volume, m.epoch)
        }
        Message::RecoveryDone(m) => hooks::recovery_done(st, m.volume, m.epoch),
        Message::LockCallback(m) => volume::callback(st, m.req_id, m.resource, m.mode),
        // Kernel-only commands have no ops entry, so genetlink never calls us with them.
        Message::LockReq(_)
        | Message::LockRelease(_)
        | Message::VolumeUmount(_)
        | Message::StatusResp(_)
        | Message::VolumeWithdraw(_) => Err(kerr(bindings::EOPNOTSUPP)),
    }
}

/// Hands a grant or deny to its waiter. A late grant is handed back with `LOCK_RELEASE` (no
/// mode) so the lock does not leak; a late deny granted nothing and is only dropped.
fn deliver(st: &Mxfs, req_id: u64, resource: proto::ResourceId, r: Reply) -> Result {
    match st.pending.complete(req_id, resource, r) {
        Delivery::Delivered => Ok(()),
        late @ Delivery::Late(_) if late.hand_back() => {
            pr_info!("late grant for request {}; handing it back\n", req_id);
            let rel = Message::LockRelease(LockRelease {
                req_id,
                resource,
                mode: None,
            });
            send_to_daemon(st, &rel)
        }
        Delivery::Late(_) => {
            pr_info!("late deny for request {} dropped\n", req_id);
            Ok(())
        }
        Delivery::Duplicate => {
            pr_warn!("duplicate reply for request {} dropped\n", req_id);
            Err(kerr(bindings::EALREADY))
        }
        Delivery::Mismatch => {
            pr_warn!("reply for request {} names another resource\n", req_id);
            Err(code::EINVAL)
        }
    }
}

/// This node's status as the kernel knows it, for `STATUS_RESP`.
fn status(st: &Mxfs) -> StatusResp {
    let epoch = st.net.epoch.load(Ordering::Acquire);
    StatusResp {
        node_id: 0,
        state: None,
        volume: cache::first_volume(st),
        epoch: if epoch == 0 { None } else { Some(epoch) },
        generation: None,
    }
}

/// The `status` multicast group, for callers outside this module.
pub(crate) use glue::GROUP_STATUS;

/// Makes `Error` from a negative errno coming from proto (a deny's status).
pub(crate) fn error_from_status(status: i32) -> Error {
    Error::from_errno(status)
}
