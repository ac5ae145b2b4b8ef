//! Attribute ids, their wire types and the attribute policy table.
//!
//! Top-level attributes are numbered from 1 (0 is `MXFS_ATTR_UNSPEC`). The resource attribute is
//! nested: it carries its own attribute space, [`ResourceAttr`], numbered from 1 as well.
//!
//! [`ATTR_POLICY`] and [`RESOURCE_ATTR_POLICY`] are indexed by attribute id, entry 0 being
//! unspecified, so the kernel module can turn each into an `nla_policy` array of `ATTR_MAX + 1`
//! (or `RESOURCE_ATTR_MAX + 1`) entries without reordering anything.

use super::netlink::{nla_align, NLA_HDRLEN};
use super::types::PATH_LEN_MAX;

/// Top-level attribute ids (`MXFS_ATTR_*`). 0 is unspecified and never valid on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
pub enum AttrId {
    /// Nested [`super::types::ResourceId`]: type u8, volume u64, a u64, b u64.
    Resource = 1,
    /// [`super::types::LockMode`] as u8.
    Mode = 2,
    /// [`super::types::LockFlags`] as u32.
    Flags = 3,
    /// Request id, u64, unique per kernel request.
    ReqId = 4,
    /// Negative errno, i32.
    Status = 5,
    /// Volume id, u64.
    Volume = 6,
    /// Node id, u32, at most [`super::types::NODE_ID_MAX`].
    NodeId = 7,
    /// [`super::types::NodeState`] as u8.
    NodeState = 8,
    /// Inode number, u64.
    Ino = 9,
    /// Byte offset, u64.
    Offset = 10,
    /// Byte length, u64 (0 means "to the end of the file" in `CACHE_INVAL`).
    Length = 11,
    /// Block device path, NUL-terminated UTF-8, at most [`PATH_LEN_MAX`] bytes before the NUL.
    DevPath = 12,
    /// Mount point path, NUL-terminated UTF-8, at most [`PATH_LEN_MAX`] bytes before the NUL.
    MountPath = 13,
    /// Volume generation (bumped on each mkfs/remount), u64.
    Generation = 14,
    /// Cluster membership epoch, u64.
    Epoch = 15,
    /// Request timeout in milliseconds, u32.
    TimeoutMs = 16,
    /// Data version of a resource, u64, carried by grants.
    DataVersion = 17,
}

/// Value of the unspecified attribute id (`MXFS_ATTR_UNSPEC`).
pub const ATTR_UNSPEC: u16 = 0;
/// Largest top-level attribute id (`MXFS_ATTR_MAX`).
pub const ATTR_MAX: u16 = 17;

impl AttrId {
    /// Every attribute, in id order.
    pub const ALL: [AttrId; ATTR_MAX as usize] = [
        AttrId::Resource,
        AttrId::Mode,
        AttrId::Flags,
        AttrId::ReqId,
        AttrId::Status,
        AttrId::Volume,
        AttrId::NodeId,
        AttrId::NodeState,
        AttrId::Ino,
        AttrId::Offset,
        AttrId::Length,
        AttrId::DevPath,
        AttrId::MountPath,
        AttrId::Generation,
        AttrId::Epoch,
        AttrId::TimeoutMs,
        AttrId::DataVersion,
    ];

    /// Decodes an attribute id (flags already masked off); `None` for 0 or past [`ATTR_MAX`].
    pub const fn from_u16(v: u16) -> Option<AttrId> {
        if v == ATTR_UNSPEC || v > ATTR_MAX {
            None
        } else {
            Some(Self::ALL[v as usize - 1])
        }
    }

    /// Upper-case name, for logs and errors.
    pub const fn name(self) -> &'static str {
        match self {
            AttrId::Resource => "RESOURCE",
            AttrId::Mode => "MODE",
            AttrId::Flags => "FLAGS",
            AttrId::ReqId => "REQ_ID",
            AttrId::Status => "STATUS",
            AttrId::Volume => "VOLUME",
            AttrId::NodeId => "NODE_ID",
            AttrId::NodeState => "NODE_STATE",
            AttrId::Ino => "INO",
            AttrId::Offset => "OFFSET",
            AttrId::Length => "LENGTH",
            AttrId::DevPath => "DEV_PATH",
            AttrId::MountPath => "MOUNT_PATH",
            AttrId::Generation => "GENERATION",
            AttrId::Epoch => "EPOCH",
            AttrId::TimeoutMs => "TIMEOUT_MS",
            AttrId::DataVersion => "DATA_VERSION",
        }
    }

    /// This attribute's policy entry.
    pub const fn policy(self) -> AttrPolicy {
        ATTR_POLICY[self as usize]
    }

    /// Bit of this attribute in an [`AttrSet`].
    const fn bit(self) -> u32 {
        1 << (self as u16)
    }
}

/// Attribute ids inside the nested [`AttrId::Resource`] (`MXFS_RES_ATTR_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
pub enum ResourceAttr {
    /// [`super::types::ResourceType`] as u8.
    Type = 1,
    /// Volume id, u64.
    Volume = 2,
    /// First key, u64.
    A = 3,
    /// Second key, u64.
    B = 4,
}

/// Largest attribute id inside a resource (`MXFS_RES_ATTR_MAX`).
pub const RESOURCE_ATTR_MAX: u16 = 4;

impl ResourceAttr {
    /// Every resource attribute, in id order. All four are required.
    pub const ALL: [ResourceAttr; RESOURCE_ATTR_MAX as usize] = [
        ResourceAttr::Type,
        ResourceAttr::Volume,
        ResourceAttr::A,
        ResourceAttr::B,
    ];

    /// Decodes a nested attribute id (flags already masked off).
    pub const fn from_u16(v: u16) -> Option<ResourceAttr> {
        if v == 0 || v > RESOURCE_ATTR_MAX {
            None
        } else {
            Some(Self::ALL[v as usize - 1])
        }
    }

    /// Upper-case name, for logs and errors.
    pub const fn name(self) -> &'static str {
        match self {
            ResourceAttr::Type => "TYPE",
            ResourceAttr::Volume => "VOLUME",
            ResourceAttr::A => "A",
            ResourceAttr::B => "B",
        }
    }

    /// This attribute's policy entry.
    pub const fn policy(self) -> AttrPolicy {
        RESOURCE_ATTR_POLICY[self as usize]
    }
}

/// Names one attribute, top-level or nested, in errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttrKey {
    /// A top-level attribute.
    Top(AttrId),
    /// An attribute nested in [`AttrId::Resource`].
    Resource(ResourceAttr),
}

impl core::fmt::Display for AttrKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AttrKey::Top(a) => write!(f, "{}({})", a.name(), *a as u16),
            AttrKey::Resource(r) => write!(f, "RESOURCE.{}({})", r.name(), *r as u16),
        }
    }
}

/// Wire type of an attribute; each maps one-to-one onto a kernel `NLA_*` type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttrKind {
    /// No attribute (id 0): `NLA_UNSPEC`, rejected by strict validation.
    Unspec,
    /// `NLA_U8`: exactly 1 byte.
    U8,
    /// `NLA_U32`: exactly 4 bytes, native endian.
    U32,
    /// `NLA_U64`: exactly 8 bytes, native endian.
    U64,
    /// `NLA_S32`: exactly 4 bytes, native endian, two's complement.
    S32,
    /// `NLA_NUL_STRING`: UTF-8 followed by exactly one NUL, `len` bytes at most before the NUL.
    NulString,
    /// `NLA_NESTED` with `NLA_F_NESTED` set; its contents follow [`RESOURCE_ATTR_POLICY`].
    Nested,
}

/// One entry of an attribute policy: the kmod turns it into `struct nla_policy { type, len }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AttrPolicy {
    /// Wire type.
    pub kind: AttrKind,
    /// Means what `nla_policy.len` means for the kind, so the kmod can copy it:
    /// - fixed-size integers: the exact payload length (the kernel derives it from the type);
    /// - [`AttrKind::NulString`]: the longest string, not counting its NUL;
    /// - [`AttrKind::Nested`]: the largest id of the nested policy ([`RESOURCE_ATTR_MAX`]), as
    ///   with `NLA_POLICY_NESTED(resource_policy)`;
    /// - `Unspec`: 0.
    pub len: u16,
}

impl AttrPolicy {
    const fn fixed(kind: AttrKind, len: u16) -> AttrPolicy {
        AttrPolicy { kind, len }
    }

    /// Exact payload length: the integer's size, or a complete resource nest's length.
    /// `None` for strings and `Unspec`.
    pub const fn fixed_len(self) -> Option<usize> {
        match self.kind {
            AttrKind::U8 | AttrKind::U32 | AttrKind::U64 | AttrKind::S32 => Some(self.len as usize),
            AttrKind::Nested => Some(RESOURCE_NEST_LEN),
            AttrKind::Unspec | AttrKind::NulString => None,
        }
    }

    /// Largest number of bytes this attribute takes on the wire: header, payload and padding.
    pub const fn wire_len_max(self) -> usize {
        let payload = match self.kind {
            AttrKind::Unspec => 0,
            AttrKind::NulString => self.len as usize + 1,
            AttrKind::Nested => RESOURCE_NEST_LEN,
            AttrKind::U8 | AttrKind::U32 | AttrKind::U64 | AttrKind::S32 => self.len as usize,
        };
        nla_align(NLA_HDRLEN + payload)
    }
}

const U8: AttrPolicy = AttrPolicy::fixed(AttrKind::U8, 1);
const U32: AttrPolicy = AttrPolicy::fixed(AttrKind::U32, 4);
const S32: AttrPolicy = AttrPolicy::fixed(AttrKind::S32, 4);
const U64: AttrPolicy = AttrPolicy::fixed(AttrKind::U64, 8);
const PATH: AttrPolicy = AttrPolicy::fixed(AttrKind::NulString, PATH_LEN_MAX as u16);
const UNSPEC: AttrPolicy = AttrPolicy::fixed(AttrKind::Unspec, 0);

/// Payload length of a complete resource nest: four attributes, each padded to 4 bytes.
pub const RESOURCE_NEST_LEN: usize = nla_align(NLA_HDRLEN + 1) + 3 * nla_align(NLA_HDRLEN + 8);

/// Policy of the attributes inside [`AttrId::Resource`], indexed by [`ResourceAttr`] id.
pub const RESOURCE_ATTR_POLICY: [AttrPolicy; RESOURCE_ATTR_MAX as usize + 1] =
    [UNSPEC, U8, U64, U64, U64];

/// Policy of the top-level attributes, indexed by [`AttrId`] id (entry 0 is unspecified).
pub const ATTR_POLICY: [AttrPolicy; ATTR_MAX as usize + 1] = [
    UNSPEC,
    AttrPolicy::fixed(AttrKind::Nested, RESOURCE_ATTR_MAX),
    U8,   // MODE
    U32,  // FLAGS
    U64,  // REQ_ID
    S32,  // STATUS
    U64,  // VOLUME
    U32,  // NODE_ID
    U8,   // NODE_STATE
    U64,  // INO
    U64,  // OFFSET
    U64,  // LENGTH
    PATH, // DEV_PATH
    PATH, // MOUNT_PATH
    U64,  // GENERATION
    U64,  // EPOCH
    U32,  // TIMEOUT_MS
    U64,  // DATA_VERSION
];

/// A set of top-level attributes, one bit per [`AttrId`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AttrSet(u32);

impl AttrSet {
    /// No attribute.
    pub const EMPTY: AttrSet = AttrSet(0);

    /// The set of the listed attributes.
    pub const fn of(ids: &[AttrId]) -> AttrSet {
        let mut bits = 0;
        let mut i = 0;
        while i < ids.len() {
            bits |= ids[i].bit();
            i += 1;
        }
        AttrSet(bits)
    }

    /// Whether `id` is in the set.
    pub const fn contains(self, id: AttrId) -> bool {
        self.0 & id.bit() != 0
    }

    /// The set with `id` added.
    pub const fn with(self, id: AttrId) -> AttrSet {
        AttrSet(self.0 | id.bit())
    }

    /// Union of two sets.
    pub const fn union(self, other: AttrSet) -> AttrSet {
        AttrSet(self.0 | other.0)
    }

    /// Whether the two sets share an attribute.
    pub const fn intersects(self, other: AttrSet) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Number of attributes in the set.
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The attributes of the set, in id order.
    pub fn iter(self) -> impl Iterator<Item = AttrId> {
        AttrId::ALL.into_iter().filter(move |a| self.contains(*a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_index_policy() {
        for (i, a) in AttrId::ALL.iter().enumerate() {
            assert_eq!(*a as usize, i + 1);
            assert_eq!(AttrId::from_u16(i as u16 + 1), Some(*a));
            assert_ne!(a.policy().kind, AttrKind::Unspec);
        }
        assert_eq!(AttrId::from_u16(0), None);
        assert_eq!(AttrId::from_u16(ATTR_MAX + 1), None);
        assert_eq!(ATTR_POLICY[0].kind, AttrKind::Unspec);
        for (i, r) in ResourceAttr::ALL.iter().enumerate() {
            assert_eq!(ResourceAttr::from_u16(i as u16 + 1), Some(*r));
        }
        assert_eq!(ResourceAttr::from_u16(5), None);
    }

    #[test]
    fn policy_lengths() {
        assert_eq!(AttrId::Mode.policy().fixed_len(), Some(1));
        assert_eq!(AttrId::Status.policy().kind, AttrKind::S32);
        assert_eq!(AttrId::DevPath.policy().fixed_len(), None);
        assert_eq!(AttrId::DevPath.policy().len as usize, PATH_LEN_MAX);
        assert_eq!(AttrId::DevPath.policy().wire_len_max(), 4 + 256);
        // type (4+1+3) + volume, a, b (4+8 each)
        assert_eq!(RESOURCE_NEST_LEN, 8 + 36);
        assert_eq!(AttrId::Resource.policy().wire_len_max(), 48);
        assert_eq!(AttrId::Resource.policy().fixed_len(), Some(44));
        assert_eq!(AttrId::Resource.policy().len, RESOURCE_ATTR_MAX);
    }

    #[test]
    fn attr_set() {
        let s = AttrSet::of(&[AttrId::Mode, AttrId::DataVersion]);
        assert!(s.contains(AttrId::Mode) && s.contains(AttrId::DataVersion));
        assert!(!s.contains(AttrId::Resource));
        assert_eq!(s.len(), 2);
        let mut it = s.iter();
        assert_eq!(it.next(), Some(AttrId::Mode));
        assert_eq!(it.next(), Some(AttrId::DataVersion));
        assert_eq!(it.next(), None);
        assert!(AttrSet::EMPTY.is_empty());
    }
}
