//! Per-command policy: which attributes each command requires or allows, and who may send it.
//!
//! This is const data so the kernel module can build its `genl_ops` table from it: a command
//! that the daemon may send gets a `doit` and `GENL_ADMIN_PERM`; one only the kernel sends has a
//! NULL `doit`. The parser enforces exactly these sets; the encoder only emits them.
//!
//! The choices, command by command (also in `proto/README.md`):
//! - `LOCK_REQ` (kernel): `REQ_ID`, `RESOURCE`, `MODE`, `FLAGS` required. `TIMEOUT_MS` is
//!   required when `FLAGS` has `TIMEOUT_MS` and not allowed otherwise (checked by the parser
//!   beyond this table, which lists it as optional).
//! - `LOCK_GRANT` (daemon): `REQ_ID`, `RESOURCE`, `MODE` required; the resource is checked
//!   against the request id by the kernel. `DATA_VERSION` optional: the version the grant
//!   carries, so the kernel can log or assert it.
//! - `LOCK_DENY` (daemon): `REQ_ID`, `RESOURCE`, `STATUS` (a negative errno) required.
//! - `LOCK_RELEASE` (kernel): `REQ_ID`, `RESOURCE` required. `MODE` optional: present when a
//!   held lock is released (the daemon needs it to know whether data may have changed), absent
//!   when a late grant is handed back.
//! - `CACHE_INVAL` (daemon): `VOLUME`, `INO`, `OFFSET`, `LENGTH` required (length 0 = to EOF).
//! - `NODE_STATUS` (daemon): `NODE_ID`, `NODE_STATE` required, `EPOCH` optional.
//! - `VOLUME_MOUNT` (kernel and daemon): `VOLUME` required. The kernel's announcement adds
//!   `DEV_PATH`, `MOUNT_PATH` and `GENERATION`; the daemon's ack carries the volume alone and
//!   registers the daemon's portid. All three are therefore optional.
//! - `VOLUME_UMOUNT` (kernel): `VOLUME` required.
//! - `STATUS_REQ` (daemon): no attribute; it registers the daemon's portid.
//! - `STATUS_RESP` (kernel): `NODE_ID` required (this node's id as the daemon last set it);
//!   `NODE_STATE`, `VOLUME`, `EPOCH`, `GENERATION` optional.
//! - `RECOVERY_START`, `RECOVERY_DONE` (daemon): `VOLUME`, `EPOCH` required.
//! - `LOCK_CALLBACK` (daemon): `REQ_ID`, `RESOURCE`, `MODE` required. `REQ_ID` names the
//!   granted request through which the kernel holds the lock cached, `RESOURCE` is checked
//!   against it, `MODE` is the strongest mode the kernel may keep (NL: release it). EX is
//!   refused by the parser: keeping EX would change nothing.
//! - `VOLUME_WITHDRAW` (kernel): `VOLUME`, `STATUS` (the negative errno that shut the mount
//!   down) required.

use super::attr::{AttrId, AttrSet};
use super::types::Command;

/// Who sends a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Sender {
    /// `mxfs.ko`.
    Kernel,
    /// `mxfsd`, through its registered portid.
    Daemon,
}

/// The policy of one command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CommandPolicy {
    /// The command this entry describes.
    pub command: Command,
    /// Attributes that must be present.
    pub required: AttrSet,
    /// Attributes that may be present.
    pub optional: AttrSet,
    /// Whether the kernel sends this command.
    pub from_kernel: bool,
    /// Whether the daemon sends this command (the kmod gives it a `doit`).
    pub from_daemon: bool,
}

impl CommandPolicy {
    /// Whether `attr` may appear in this command at all.
    pub const fn allows(&self, attr: AttrId) -> bool {
        self.required.contains(attr) || self.optional.contains(attr)
    }

    /// Whether `sender` may send this command.
    pub const fn may_send(&self, sender: Sender) -> bool {
        match sender {
            Sender::Kernel => self.from_kernel,
            Sender::Daemon => self.from_daemon,
        }
    }
}

const fn entry(
    command: Command,
    required: &[AttrId],
    optional: &[AttrId],
    from_kernel: bool,
    from_daemon: bool,
) -> CommandPolicy {
    CommandPolicy {
        command,
        required: AttrSet::of(required),
        optional: AttrSet::of(optional),
        from_kernel,
        from_daemon,
    }
}

use AttrId as A;

/// Policy of every command, indexed by command number minus one.
pub const COMMAND_POLICY: [CommandPolicy; Command::ALL.len()] = [
    entry(
        Command::LockReq,
        &[A::Resource, A::Mode, A::Flags, A::ReqId],
        &[A::TimeoutMs],
        true,
        false,
    ),
    entry(
        Command::LockGrant,
        &[A::Resource, A::Mode, A::ReqId],
        &[A::DataVersion],
        false,
        true,
    ),
    entry(
        Command::LockDeny,
        &[A::Resource, A::ReqId, A::Status],
        &[],
        false,
        true,
    ),
    entry(
        Command::LockRelease,
        &[A::Resource, A::ReqId],
        &[A::Mode],
        true,
        false,
    ),
    entry(
        Command::CacheInval,
        &[A::Volume, A::Ino, A::Offset, A::Length],
        &[],
        false,
        true,
    ),
    entry(
        Command::NodeStatus,
        &[A::NodeId, A::NodeState],
        &[A::Epoch],
        false,
        true,
    ),
    entry(
        Command::VolumeMount,
        &[A::Volume],
        &[A::DevPath, A::MountPath, A::Generation],
        true,
        true,
    ),
    entry(Command::VolumeUmount, &[A::Volume], &[], true, false),
    entry(Command::StatusReq, &[], &[], false, true),
    entry(
        Command::StatusResp,
        &[A::NodeId],
        &[A::NodeState, A::Volume, A::Epoch, A::Generation],
        true,
        false,
    ),
    entry(
        Command::RecoveryStart,
        &[A::Volume, A::Epoch],
        &[],
        false,
        true,
    ),
    entry(
        Command::RecoveryDone,
        &[A::Volume, A::Epoch],
        &[],
        false,
        true,
    ),
    entry(
        Command::LockCallback,
        &[A::Resource, A::Mode, A::ReqId],
        &[],
        false,
        true,
    ),
    entry(
        Command::VolumeWithdraw,
        &[A::Volume, A::Status],
        &[],
        true,
        false,
    ),
];

impl Command {
    /// This command's policy.
    pub const fn policy(self) -> &'static CommandPolicy {
        &COMMAND_POLICY[self as usize - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_indexed_by_command() {
        for c in Command::ALL {
            let p = c.policy();
            assert_eq!(p.command, c);
            assert!(!p.required.intersects(p.optional), "{c:?}");
            assert!(p.from_kernel || p.from_daemon, "{c:?}");
        }
    }

    #[test]
    fn senders_follow_design() {
        // DESIGN.md §1: the kernel sends LOCK_REQ and LOCK_RELEASE itself (doit is NULL), only
        // the daemon's portid may send grants, denies, invalidations, callbacks and recovery
        // commands. A withdraw is the kernel's news alone.
        for c in [
            Command::LockReq,
            Command::LockRelease,
            Command::VolumeWithdraw,
        ] {
            assert!(c.policy().may_send(Sender::Kernel));
            assert!(!c.policy().may_send(Sender::Daemon));
        }
        for c in [
            Command::LockGrant,
            Command::LockDeny,
            Command::CacheInval,
            Command::RecoveryStart,
            Command::RecoveryDone,
            Command::StatusReq,
            Command::LockCallback,
        ] {
            assert!(c.policy().may_send(Sender::Daemon));
            assert!(!c.policy().may_send(Sender::Kernel));
        }
        assert!(Command::VolumeMount.policy().may_send(Sender::Daemon));
        assert!(Command::VolumeMount.policy().may_send(Sender::Kernel));
    }

    #[test]
    fn timeout_only_in_lock_req() {
        for c in Command::ALL {
            assert_eq!(c.policy().allows(AttrId::TimeoutMs), c == Command::LockReq);
        }
        assert!(Command::StatusReq.policy().required.is_empty());
        assert!(Command::LockDeny.policy().required.contains(AttrId::Status));
    }

    #[test]
    fn callback_names_the_cached_holder_and_the_mode_to_keep() {
        let p = Command::LockCallback.policy();
        for a in [AttrId::Resource, AttrId::Mode, AttrId::ReqId] {
            assert!(p.required.contains(a), "{a:?}");
        }
        assert!(p.optional.is_empty());
        let w = Command::VolumeWithdraw.policy();
        assert!(w.required.contains(AttrId::Volume) && w.required.contains(AttrId::Status));
        assert!(w.optional.is_empty());
    }
}
