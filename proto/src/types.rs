//! Protocol vocabulary: family, groups, commands, attribute ids, resource ids, lock modes, flags.
//!
//! Everything here is plain data with explicit numeric values. The numbers are the wire format:
//! changing one is a protocol change and shows up in the insta snapshots.

/// Generic Netlink family name (`GENL_NAMSIZ` is 16 including the NUL).
pub const FAMILY_NAME: &str = "mxfs";
/// Generic Netlink family version.
pub const FAMILY_VERSION: u8 = 1;
/// Multicast group carrying lock traffic.
pub const MCGRP_LOCKS: &str = "locks";
/// Multicast group carrying node and recovery status.
pub const MCGRP_STATUS: &str = "status";

/// How long the kernel waits for `LOCK_GRANT`/`LOCK_DENY` before giving up with `-ETIMEDOUT`.
pub const GRANT_TIMEOUT_MS: u32 = 30_000;
/// Size of the aligned byte-range chunk that one `EXTENT` resource covers.
pub const EXTENT_CHUNK_BYTES: u64 = 1 << 20;
/// Largest node id; node ids index the kernel's fixed `node_states` array.
pub const NODE_ID_MAX: u32 = 63;
/// Number of entries in the kernel's node state array.
pub const NODES_MAX: usize = NODE_ID_MAX as usize + 1;
/// Longest device or mount path, in bytes, not counting the terminating NUL.
pub const PATH_LEN_MAX: usize = 255;

/// Generic Netlink commands, numbered from 1 in the order of DESIGN.md §1. 0 is unspecified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Command {
    /// kernel -> daemon: please acquire a lock.
    LockReq = 1,
    /// daemon -> kernel: the request named by its id is granted.
    LockGrant = 2,
    /// daemon -> kernel: the request named by its id is denied, with an errno.
    LockDeny = 3,
    /// kernel -> daemon: a held lock is released (or a late grant is returned).
    LockRelease = 4,
    /// daemon -> kernel: drop cached pages of an inode range before a grant.
    CacheInval = 5,
    /// daemon -> kernel: the state of a cluster node.
    NodeStatus = 6,
    /// kernel -> daemon (multicast) and daemon -> kernel (ack): a clustered volume is mounted.
    VolumeMount = 7,
    /// kernel -> daemon: a clustered volume is unmounted.
    VolumeUmount = 8,
    /// daemon -> kernel: status query; also registers the daemon's portid.
    StatusReq = 9,
    /// kernel -> daemon: answer to `STATUS_REQ`.
    StatusResp = 10,
    /// daemon -> kernel: freeze lock traffic on a volume.
    RecoveryStart = 11,
    /// daemon -> kernel: recovery finished; resume lock traffic.
    RecoveryDone = 12,
    /// daemon -> kernel: another node needs a lock this kernel holds cached; stop new holders,
    /// wait for the current ones, run the clean point, then release it or down-convert it to
    /// the mode named (DESIGN.md §5.2).
    LockCallback = 13,
    /// kernel -> daemon: a clustered mount shut down (forced shutdown) and cannot release its
    /// cached locks cleanly; the node must be fenced and its journal replayed.
    VolumeWithdraw = 14,
}

impl Command {
    /// Every command, in wire order.
    pub const ALL: [Command; 14] = [
        Command::LockReq,
        Command::LockGrant,
        Command::LockDeny,
        Command::LockRelease,
        Command::CacheInval,
        Command::NodeStatus,
        Command::VolumeMount,
        Command::VolumeUmount,
        Command::StatusReq,
        Command::StatusResp,
        Command::RecoveryStart,
        Command::RecoveryDone,
        Command::LockCallback,
        Command::VolumeWithdraw,
    ];

    /// Decodes a command number; `None` for 0 (unspecified) or anything past the last command.
    pub const fn from_u8(v: u8) -> Option<Command> {
        if v == 0 || v as usize > Self::ALL.len() {
            None
        } else {
            Some(Self::ALL[v as usize - 1])
        }
    }

    /// Upper-case name as in DESIGN.md, for logs and errors.
    pub const fn name(self) -> &'static str {
        match self {
            Command::LockReq => "LOCK_REQ",
            Command::LockGrant => "LOCK_GRANT",
            Command::LockDeny => "LOCK_DENY",
            Command::LockRelease => "LOCK_RELEASE",
            Command::CacheInval => "CACHE_INVAL",
            Command::NodeStatus => "NODE_STATUS",
            Command::VolumeMount => "VOLUME_MOUNT",
            Command::VolumeUmount => "VOLUME_UMOUNT",
            Command::StatusReq => "STATUS_REQ",
            Command::StatusResp => "STATUS_RESP",
            Command::RecoveryStart => "RECOVERY_START",
            Command::RecoveryDone => "RECOVERY_DONE",
            Command::LockCallback => "LOCK_CALLBACK",
            Command::VolumeWithdraw => "VOLUME_WITHDRAW",
        }
    }
}

/// Lock modes of the VMS/Linux DLM, weakest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum LockMode {
    /// Null: no access, keeps the lock's place.
    Nl = 0,
    /// Concurrent read.
    Cr = 1,
    /// Concurrent write.
    Cw = 2,
    /// Protected read.
    Pr = 3,
    /// Protected write.
    Pw = 4,
    /// Exclusive.
    Ex = 5,
}

/// The DLM compatibility matrix, indexed `[held][requested]`.
#[rustfmt::skip]
const COMPAT: [[bool; 6]; 6] = [
    //        NL     CR     CW     PR     PW     EX
    /* NL */ [true, true, true, true, true, true],
    /* CR */ [true, true, true, true, true, false],
    /* CW */ [true, true, true, false, false, false],
    /* PR */ [true, true, false, true, false, false],
    /* PW */ [true, true, false, false, false, false],
    /* EX */ [true, false, false, false, false, false],
];

impl LockMode {
    /// Every mode, weakest first.
    pub const ALL: [LockMode; 6] = [
        LockMode::Nl,
        LockMode::Cr,
        LockMode::Cw,
        LockMode::Pr,
        LockMode::Pw,
        LockMode::Ex,
    ];

    /// Decodes a mode number.
    pub const fn from_u8(v: u8) -> Option<LockMode> {
        if (v as usize) < Self::ALL.len() {
            Some(Self::ALL[v as usize])
        } else {
            None
        }
    }

    /// Whether a lock held in `self` lets another node hold `other` at the same time.
    pub const fn compatible(self, other: LockMode) -> bool {
        COMPAT[self as usize][other as usize]
    }

    /// Whether releasing a lock in this mode may have changed data (PW or EX).
    pub const fn is_write(self) -> bool {
        matches!(self, LockMode::Pw | LockMode::Ex)
    }

    /// Upper-case DLM name.
    pub const fn name(self) -> &'static str {
        match self {
            LockMode::Nl => "NL",
            LockMode::Cr => "CR",
            LockMode::Cw => "CW",
            LockMode::Pr => "PR",
            LockMode::Pw => "PW",
            LockMode::Ex => "EX",
        }
    }
}

/// Request flags (`MXFS_ATTR_FLAGS`, a u32 bit set).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LockFlags(pub u32);

impl LockFlags {
    /// Try-lock: deny at once if the lock is not grantable now.
    pub const NOQUEUE: LockFlags = LockFlags(1 << 0);
    /// Convert a lock this requester already holds to the requested mode.
    pub const CONVERT: LockFlags = LockFlags(1 << 1);
    /// The request carries `MXFS_ATTR_TIMEOUT_MS`; deny it if not granted in that time.
    pub const TIMEOUT_MS: LockFlags = LockFlags(1 << 2);
    /// Every defined bit; others are rejected by the parser.
    pub const ALL: LockFlags = LockFlags(0b111);

    /// No flag set.
    pub const fn empty() -> LockFlags {
        LockFlags(0)
    }
    /// Whether every bit of `other` is set in `self`.
    pub const fn contains(self, other: LockFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// Union of two flag sets.
    pub const fn union(self, other: LockFlags) -> LockFlags {
        LockFlags(self.0 | other.0)
    }
    /// Whether only defined bits are set.
    pub const fn is_valid(self) -> bool {
        self.0 & !Self::ALL.0 == 0
    }
}

/// What a resource id names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ResourceType {
    /// An inode: `a` = ino.
    Inode = 1,
    /// An aligned chunk of a file: `a` = ino, `b` = chunk offset in bytes.
    Extent = 2,
    /// An allocation group: `a` = AG number.
    Ag = 3,
    /// The whole volume (level 0 of DESIGN.md §5.3): `a` = `b` = 0.
    Volume = 4,
}

impl ResourceType {
    /// Decodes a resource type number.
    pub const fn from_u8(v: u8) -> Option<ResourceType> {
        match v {
            1 => Some(ResourceType::Inode),
            2 => Some(ResourceType::Extent),
            3 => Some(ResourceType::Ag),
            4 => Some(ResourceType::Volume),
            _ => None,
        }
    }
}

/// A lockable resource, named the same way on every node.
///
/// The derived order (type, then volume, then `a`, then `b`) is the global lock order of
/// DESIGN.md §2: cluster locks are always taken in ascending `ResourceId` order. The type
/// order is the wire number, so a `VOLUME` lock sorts after every other type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceId {
    /// What kind of object this is.
    pub kind: ResourceType,
    /// Volume id, derived from the XFS superblock UUID.
    pub volume: u64,
    /// First key: ino or AG number.
    pub a: u64,
    /// Second key: the chunk offset for `EXTENT`, 0 otherwise.
    pub b: u64,
}

impl ResourceId {
    /// The inode `ino` of `volume`.
    pub const fn inode(volume: u64, ino: u64) -> ResourceId {
        ResourceId {
            kind: ResourceType::Inode,
            volume,
            a: ino,
            b: 0,
        }
    }

    /// The `EXTENT_CHUNK_BYTES` chunk of inode `ino` that holds byte `offset`.
    pub const fn extent(volume: u64, ino: u64, offset: u64) -> ResourceId {
        ResourceId {
            kind: ResourceType::Extent,
            volume,
            a: ino,
            b: offset - offset % EXTENT_CHUNK_BYTES,
        }
    }

    /// Allocation group `agno` of `volume`.
    pub const fn ag(volume: u64, agno: u64) -> ResourceId {
        ResourceId {
            kind: ResourceType::Ag,
            volume,
            a: agno,
            b: 0,
        }
    }

    /// The whole of `volume`: the one resource of level 0 (DESIGN.md §5.3).
    pub const fn volume(volume: u64) -> ResourceId {
        ResourceId {
            kind: ResourceType::Volume,
            volume,
            a: 0,
            b: 0,
        }
    }

    /// Whether the id is one a builder could have made: `b` is 0 except for an aligned
    /// `EXTENT` chunk, and a `VOLUME` has `a` = `b` = 0. The parser rejects ids that are not
    /// well formed.
    pub const fn is_well_formed(&self) -> bool {
        match self.kind {
            ResourceType::Inode | ResourceType::Ag => self.b == 0,
            ResourceType::Extent => self.b % EXTENT_CHUNK_BYTES == 0,
            ResourceType::Volume => self.a == 0 && self.b == 0,
        }
    }
}

/// The volume id of an XFS file system, from the UUID in its super block: the two 8-byte
/// halves of the UUID, each read little-endian, XORed. Every node reads the same super block,
/// so every node names the volume (and each resource on it) the same way. Never 0, which means
/// "no volume": a zero result (the two halves equal) maps to 1.
///
/// The kernel module (mount registration) and mxfsd share this one definition.
pub const fn volume_id_from_uuid(uuid: &[u8; 16]) -> u64 {
    let lo = u64::from_le_bytes([
        uuid[0], uuid[1], uuid[2], uuid[3], uuid[4], uuid[5], uuid[6], uuid[7],
    ]);
    let hi = u64::from_le_bytes([
        uuid[8], uuid[9], uuid[10], uuid[11], uuid[12], uuid[13], uuid[14], uuid[15],
    ]);
    match lo ^ hi {
        0 => 1,
        v => v,
    }
}

/// Cluster node state carried by `NODE_STATUS` and `STATUS_RESP`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum NodeState {
    /// Never heard of, or left cleanly.
    Unknown = 0,
    /// Member of the cluster, heartbeating.
    Up = 1,
    /// Missed heartbeats; recovery will fence it.
    Suspect = 2,
    /// Fenced and its locks purged.
    Down = 3,
}

impl NodeState {
    /// Decodes a node state number.
    pub const fn from_u8(v: u8) -> Option<NodeState> {
        match v {
            0 => Some(NodeState::Unknown),
            1 => Some(NodeState::Up),
            2 => Some(NodeState::Suspect),
            3 => Some(NodeState::Down),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_numbers_follow_design_order() {
        for (i, c) in Command::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i + 1);
            assert_eq!(Command::from_u8(i as u8 + 1), Some(*c));
        }
        assert_eq!(Command::from_u8(0), None);
        assert_eq!(Command::from_u8(15), None);
        // The seed's 12 keep their numbers; later commands are appended.
        assert_eq!(Command::RecoveryDone as u8, 12);
        assert_eq!(Command::LockCallback as u8, 13);
        assert_eq!(Command::VolumeWithdraw as u8, 14);
    }

    #[test]
    fn compat_matrix_is_symmetric_and_matches_dlm() {
        for a in LockMode::ALL {
            for b in LockMode::ALL {
                assert_eq!(a.compatible(b), b.compatible(a), "{a:?} {b:?}");
            }
            assert!(a.compatible(LockMode::Nl));
        }
        assert!(LockMode::Pr.compatible(LockMode::Pr));
        assert!(!LockMode::Pr.compatible(LockMode::Cw));
        assert!(LockMode::Cw.compatible(LockMode::Cw));
        assert!(LockMode::Pw.compatible(LockMode::Cr));
        assert!(!LockMode::Pw.compatible(LockMode::Pw));
        assert!(!LockMode::Ex.compatible(LockMode::Cr));
    }

    #[test]
    fn extent_builder_aligns_to_chunk() {
        let r = ResourceId::extent(7, 42, EXTENT_CHUNK_BYTES + 5);
        assert_eq!(r.b, EXTENT_CHUNK_BYTES);
        assert!(r.is_well_formed());
        let bad = ResourceId { b: 5, ..r };
        assert!(!bad.is_well_formed());
        assert!(!ResourceId {
            b: 1,
            ..ResourceId::inode(1, 2)
        }
        .is_well_formed());
    }

    #[test]
    fn volume_resource_is_whole_volume_only() {
        let r = ResourceId::volume(7);
        assert_eq!((r.kind as u8, r.volume, r.a, r.b), (4, 7, 0, 0));
        assert!(r.is_well_formed());
        assert!(!ResourceId { a: 1, ..r }.is_well_formed());
        assert!(!ResourceId { b: 1, ..r }.is_well_formed());
        assert!(!ResourceId {
            b: EXTENT_CHUNK_BYTES,
            ..r
        }
        .is_well_formed());
        // Existing wire values are unchanged; VOLUME is appended.
        assert_eq!(ResourceType::from_u8(3), Some(ResourceType::Ag));
        assert_eq!(ResourceType::from_u8(4), Some(ResourceType::Volume));
        assert_eq!(ResourceType::from_u8(5), None);
        assert!(ResourceId::ag(9, 9) < ResourceId::volume(1));
    }

    #[test]
    fn volume_id_of_fixed_uuids() {
        // 6f1c2a3e-9b4d-4e5f-8a7b-0c1d2e3f4a5b, in the byte order of the super block.
        let uuid = [
            0x6f, 0x1c, 0x2a, 0x3e, 0x9b, 0x4d, 0x4e, 0x5f, 0x8a, 0x7b, 0x0c, 0x1d, 0x2e, 0x3f,
            0x4a, 0x5b,
        ];
        // lo = 0x5f4e4d9b3e2a1c6f, hi = 0x5b4a3f2e1d0c7b8a (little-endian halves).
        assert_eq!(volume_id_from_uuid(&uuid), 0x0404_72b5_2326_67e5);
        let counting: [u8; 16] = core::array::from_fn(|i| i as u8);
        assert_eq!(volume_id_from_uuid(&counting), 0x0808_0808_0808_0808);
        // Equal halves XOR to 0, which is reserved for "no volume".
        assert_eq!(volume_id_from_uuid(&[0; 16]), 1);
        assert_eq!(volume_id_from_uuid(&[0xa5; 16]), 1);
    }

    #[test]
    fn resource_order_is_type_then_id() {
        assert!(ResourceId::inode(9, 9) < ResourceId::extent(1, 1, 0));
        assert!(ResourceId::extent(9, 9, 0) < ResourceId::ag(1, 0));
        assert!(ResourceId::inode(1, 2) < ResourceId::inode(1, 3));
    }

    #[test]
    fn flags() {
        let f = LockFlags::NOQUEUE.union(LockFlags::TIMEOUT_MS);
        assert!(f.contains(LockFlags::NOQUEUE));
        assert!(!f.contains(LockFlags::CONVERT));
        assert!(f.is_valid());
        assert!(!LockFlags(8).is_valid());
    }
}
