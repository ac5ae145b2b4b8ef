//! The typed messages: one struct per command, and [`Message`] over all of them.
//!
//! Strings are borrowed from the parsed buffer, so nothing allocates. Optional attributes are
//! `Option`s. See `super::policy` for why each attribute is required or optional.

use super::attr::{AttrId, AttrPolicy};
use super::netlink::{GENL_HDRLEN, NLMSG_HDRLEN};
use super::policy::COMMAND_POLICY;
use super::types::{Command, LockFlags, LockMode, NodeState, ResourceId};

/// `LOCK_REQ`, kernel -> daemon: acquire `resource` in `mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LockReq {
    /// Unique id of this request; grants and denies name it.
    pub req_id: u64,
    /// What to lock.
    pub resource: ResourceId,
    /// Requested mode.
    pub mode: LockMode,
    /// Request flags.
    pub flags: LockFlags,
    /// Present exactly when `flags` has [`LockFlags::TIMEOUT_MS`].
    pub timeout_ms: Option<u32>,
}

/// `LOCK_GRANT`, daemon -> kernel: request `req_id` is granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LockGrant {
    /// The request being answered.
    pub req_id: u64,
    /// The request's resource, checked by the kernel against its pending entry.
    pub resource: ResourceId,
    /// Granted mode.
    pub mode: LockMode,
    /// Data version the master holds for the resource.
    pub data_version: Option<u64>,
}

/// `LOCK_DENY`, daemon -> kernel: request `req_id` is denied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LockDeny {
    /// The request being answered.
    pub req_id: u64,
    /// The request's resource.
    pub resource: ResourceId,
    /// Negative errno in `-4095..=-1` (for example `-EAGAIN` for a `NOQUEUE` miss).
    pub status: i32,
}

/// `LOCK_RELEASE`, kernel -> daemon: a lock is released, or a late grant handed back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LockRelease {
    /// The request that acquired the lock.
    pub req_id: u64,
    /// The resource.
    pub resource: ResourceId,
    /// Mode that was held; `None` when returning a grant that arrived after the timeout.
    pub mode: Option<LockMode>,
}

/// `CACHE_INVAL`, daemon -> kernel: drop cached pages of an inode range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CacheInval {
    /// Volume id.
    pub volume: u64,
    /// Inode number.
    pub ino: u64,
    /// First byte.
    pub offset: u64,
    /// Number of bytes; 0 means the whole file.
    pub length: u64,
}

/// `NODE_STATUS`, daemon -> kernel: the state of a cluster node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeStatus {
    /// Node id, at most [`super::types::NODE_ID_MAX`].
    pub node_id: u32,
    /// Its state.
    pub state: NodeState,
    /// Membership epoch this state belongs to.
    pub epoch: Option<u64>,
}

/// `VOLUME_MOUNT`: the kernel announces a mounted clustered volume (with paths and
/// generation); the daemon acknowledges with the volume alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VolumeMount<'a> {
    /// Volume id.
    pub volume: u64,
    /// Block device path.
    pub dev_path: Option<&'a str>,
    /// Mount point.
    pub mount_path: Option<&'a str>,
    /// Volume generation.
    pub generation: Option<u64>,
}

/// `VOLUME_UMOUNT`, kernel -> daemon: a clustered volume is unmounted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VolumeUmount {
    /// Volume id.
    pub volume: u64,
}

/// `STATUS_REQ`, daemon -> kernel: status query; registers the daemon's portid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StatusReq;

/// `STATUS_RESP`, kernel -> daemon: answer to `STATUS_REQ`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StatusResp {
    /// This node's id.
    pub node_id: u32,
    /// This node's state as the kernel last heard it.
    pub state: Option<NodeState>,
    /// A mounted clustered volume, if any.
    pub volume: Option<u64>,
    /// The membership epoch the kernel last heard.
    pub epoch: Option<u64>,
    /// Generation of `volume`.
    pub generation: Option<u64>,
}

/// `RECOVERY_START`, daemon -> kernel: freeze lock traffic on a volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecoveryStart {
    /// Volume id.
    pub volume: u64,
    /// The new membership epoch being recovered into.
    pub epoch: u64,
}

/// `RECOVERY_DONE`, daemon -> kernel: recovery of a volume is finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecoveryDone {
    /// Volume id.
    pub volume: u64,
    /// The epoch named by the matching `RECOVERY_START`.
    pub epoch: u64,
}

/// `LOCK_CALLBACK`, daemon -> kernel: another node needs a lock this kernel holds cached.
///
/// The kernel stops new holders, waits for the current ones, runs the clean point (DESIGN.md
/// §5.1 rule 2), and then answers with exactly one message naming `req_id`: `LOCK_RELEASE`
/// (with the mode it held) to give the lock up, or, when `mode` is not NL and it wants to keep
/// the lock, `LOCK_REQ` with `CONVERT` to `mode` or weaker (a down-conversion, answered by
/// `LOCK_GRANT`). See `proto/README.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LockCallback {
    /// The granted request through which the kernel holds the lock.
    pub req_id: u64,
    /// The request's resource, checked by the kernel against its cached lock.
    pub resource: ResourceId,
    /// The strongest mode the kernel may keep; NL means release. Never EX.
    pub mode: LockMode,
}

/// `VOLUME_WITHDRAW`, kernel -> daemon: the mount of `volume` shut down (XFS forced shutdown)
/// and its cached locks cannot be released cleanly. The daemon must not let any other node
/// use what this node held until it is fenced and its journal replayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VolumeWithdraw {
    /// Volume id.
    pub volume: u64,
    /// The negative errno that made the mount withdraw, in `-4095..=-1` (`-EIO` for a failed
    /// clean point, for example).
    pub status: i32,
}

/// Any MXFS message. Strings borrow from the buffer the message was parsed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Message<'a> {
    /// `LOCK_REQ`.
    LockReq(LockReq),
    /// `LOCK_GRANT`.
    LockGrant(LockGrant),
    /// `LOCK_DENY`.
    LockDeny(LockDeny),
    /// `LOCK_RELEASE`.
    LockRelease(LockRelease),
    /// `CACHE_INVAL`.
    CacheInval(CacheInval),
    /// `NODE_STATUS`.
    NodeStatus(NodeStatus),
    /// `VOLUME_MOUNT`.
    VolumeMount(VolumeMount<'a>),
    /// `VOLUME_UMOUNT`.
    VolumeUmount(VolumeUmount),
    /// `STATUS_REQ`.
    StatusReq(StatusReq),
    /// `STATUS_RESP`.
    StatusResp(StatusResp),
    /// `RECOVERY_START`.
    RecoveryStart(RecoveryStart),
    /// `RECOVERY_DONE`.
    RecoveryDone(RecoveryDone),
    /// `LOCK_CALLBACK`.
    LockCallback(LockCallback),
    /// `VOLUME_WITHDRAW`.
    VolumeWithdraw(VolumeWithdraw),
}

impl Message<'_> {
    /// The command this message is sent as.
    pub const fn command(&self) -> Command {
        match self {
            Message::LockReq(_) => Command::LockReq,
            Message::LockGrant(_) => Command::LockGrant,
            Message::LockDeny(_) => Command::LockDeny,
            Message::LockRelease(_) => Command::LockRelease,
            Message::CacheInval(_) => Command::CacheInval,
            Message::NodeStatus(_) => Command::NodeStatus,
            Message::VolumeMount(_) => Command::VolumeMount,
            Message::VolumeUmount(_) => Command::VolumeUmount,
            Message::StatusReq(_) => Command::StatusReq,
            Message::StatusResp(_) => Command::StatusResp,
            Message::RecoveryStart(_) => Command::RecoveryStart,
            Message::RecoveryDone(_) => Command::RecoveryDone,
            Message::LockCallback(_) => Command::LockCallback,
            Message::VolumeWithdraw(_) => Command::VolumeWithdraw,
        }
    }
}

/// Largest attribute area any one command can have: every allowed attribute at its maximum size.
pub const ATTRS_LEN_MAX: usize = attrs_len_max();
/// Largest genl payload (`genlmsghdr` plus attributes).
pub const PAYLOAD_LEN_MAX: usize = GENL_HDRLEN + ATTRS_LEN_MAX;
/// Largest whole netlink message; a buffer this big always holds an encoded message.
pub const MSG_LEN_MAX: usize = NLMSG_HDRLEN + PAYLOAD_LEN_MAX;

const fn attrs_len_max() -> usize {
    let mut max = 0;
    let mut c = 0;
    while c < COMMAND_POLICY.len() {
        let p = &COMMAND_POLICY[c];
        let mut len = 0;
        let mut a = 0;
        while a < AttrId::ALL.len() {
            let id = AttrId::ALL[a];
            if p.allows(id) {
                let pol: AttrPolicy = id.policy();
                len += pol.wire_len_max();
            }
            a += 1;
        }
        if len > max {
            max = len;
        }
        c += 1;
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msg_len_max_is_volume_mount_with_both_paths() {
        // VOLUME (12) + DEV_PATH (4 + 256) + MOUNT_PATH (4 + 256) + GENERATION (12).
        assert_eq!(ATTRS_LEN_MAX, 12 + 260 + 260 + 12);
        assert_eq!(MSG_LEN_MAX, 16 + 4 + 544);
    }

    #[test]
    fn command_of_each_variant() {
        let m = Message::VolumeUmount(VolumeUmount { volume: 1 });
        assert_eq!(m.command(), Command::VolumeUmount);
        assert_eq!(Message::StatusReq(StatusReq).command(), Command::StatusReq);
    }
}
