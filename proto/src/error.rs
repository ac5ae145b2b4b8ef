//! Typed errors of the parser and the encoder.
//!
//! Every parse error names the byte offset at fault (relative to the start of the buffer given
//! to the entry point) and, where there is one, the attribute.

use core::fmt;

use super::attr::{AttrId, AttrKey};
use super::types::{Command, PATH_LEN_MAX};

/// Smallest errno a status may carry (`-MAX_ERRNO`).
pub const STATUS_MIN: i32 = -4095;

/// A value that is well framed but not allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BadValue {
    /// Not a [`super::types::LockMode`].
    Mode(u8),
    /// Not a [`super::types::ResourceType`].
    ResourceType(u8),
    /// Not a [`super::types::NodeState`].
    NodeState(u8),
    /// Flag bits outside [`super::types::LockFlags::ALL`].
    FlagBits(u32),
    /// Node id above [`super::types::NODE_ID_MAX`].
    NodeId(u32),
    /// A resource id that no builder makes (see `ResourceId::is_well_formed`).
    ResourceNotWellFormed,
    /// A status that is not a negative errno in [`STATUS_MIN`]`..=-1`.
    Status(i32),
    /// Encoder only: a path longer than [`PATH_LEN_MAX`] bytes.
    PathTooLong(usize),
    /// Encoder only: a path with a NUL byte in it.
    PathHasNul,
    /// Encoder only: `timeout_ms` is set without the `TIMEOUT_MS` flag, or the reverse.
    TimeoutFlagMismatch,
    /// A `LOCK_CALLBACK` whose mode to keep is EX: it would ask the kernel for nothing.
    CallbackKeepsEx,
}

impl fmt::Display for BadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BadValue::Mode(v) => write!(f, "lock mode {v} is not one of NL..EX (0..=5)"),
            BadValue::ResourceType(v) => {
                write!(
                    f,
                    "resource type {v} is not INODE, EXTENT, AG or VOLUME (1..=4)"
                )
            }
            BadValue::NodeState(v) => write!(f, "node state {v} is not defined (0..=3)"),
            BadValue::FlagBits(v) => write!(f, "flags {v:#x} have undefined bits"),
            BadValue::NodeId(v) => write!(f, "node id {v} is above NODE_ID_MAX"),
            BadValue::ResourceNotWellFormed => {
                write!(
                    f,
                    "resource id is not well formed (b must be 0, or chunk-aligned for \
                     EXTENT; a and b must be 0 for VOLUME)"
                )
            }
            BadValue::Status(v) => write!(f, "status {v} is not a negative errno"),
            BadValue::PathTooLong(n) => {
                write!(f, "path of {n} bytes is longer than {PATH_LEN_MAX}")
            }
            BadValue::PathHasNul => write!(f, "path contains a NUL byte"),
            BadValue::TimeoutFlagMismatch => {
                write!(
                    f,
                    "timeout_ms must be set exactly when the TIMEOUT_MS flag is"
                )
            }
            BadValue::CallbackKeepsEx => write!(
                f,
                "LOCK_CALLBACK mode EX asks for nothing: the mode to keep must be weaker"
            ),
        }
    }
}

/// Why a buffer is not a valid MXFS message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParseError {
    /// The buffer is shorter than an `nlmsghdr`.
    TruncatedNlmsghdr {
        /// Buffer length.
        len: usize,
    },
    /// The message ends before its `genlmsghdr` does.
    TruncatedGenlmsghdr {
        /// Offset of the `genlmsghdr`.
        offset: usize,
        /// Bytes available from there.
        len: usize,
    },
    /// `nlmsg_len` is not the length of the buffer.
    NlmsgLenMismatch {
        /// The header's `nlmsg_len`.
        nlmsg_len: u32,
        /// The buffer's length.
        buf_len: usize,
    },
    /// `nlmsg_type` is a netlink control message type, not a Generic Netlink family id.
    NotGenlFamily {
        /// The header's `nlmsg_type`.
        nlmsg_type: u16,
    },
    /// The command is 0 or past the last command.
    UnknownCommand {
        /// Offset of the command byte.
        offset: usize,
        /// The command number.
        cmd: u8,
    },
    /// The genl version is not [`super::types::FAMILY_VERSION`].
    BadVersion {
        /// Offset of the version byte.
        offset: usize,
        /// The version.
        version: u8,
    },
    /// The genl `reserved` field is not 0.
    BadReserved {
        /// Offset of the field.
        offset: usize,
        /// Its value.
        value: u16,
    },
    /// An `nla_len` is shorter than the attribute header or runs past the end of the message.
    BadNlaLen {
        /// Offset of the attribute header.
        offset: usize,
        /// Its `nla_len`.
        nla_len: u16,
    },
    /// An attribute inside a nest runs past the end of its parent.
    NestedOverrun {
        /// The parent attribute.
        parent: AttrId,
        /// Offset of the inner attribute header.
        offset: usize,
        /// Its `nla_len`.
        nla_len: u16,
    },
    /// An attribute area does not end on a 4-byte boundary: fewer than 4 bytes left over, or a
    /// last attribute without its padding.
    Misaligned {
        /// Offset of the attribute (or of the stray bytes).
        offset: usize,
    },
    /// A padding byte after an attribute is not zero.
    BadPadding {
        /// Offset of the padding byte.
        offset: usize,
    },
    /// An attribute id that MXFS does not define (`parent` is the nest it was found in).
    UnknownAttr {
        /// The enclosing nest, `None` at the top level.
        parent: Option<AttrId>,
        /// The id, with flag bits masked off.
        id: u16,
        /// Offset of the attribute header.
        offset: usize,
    },
    /// `NLA_F_NESTED` missing on a nest or set on a plain attribute, or `NLA_F_NET_BYTEORDER`.
    BadAttrFlags {
        /// The attribute.
        attr: AttrKey,
        /// Offset of the attribute header.
        offset: usize,
        /// The flag bits found.
        flags: u16,
    },
    /// The same attribute appears twice.
    DuplicateAttr {
        /// The attribute.
        attr: AttrKey,
        /// Offset of the second occurrence.
        offset: usize,
    },
    /// An attribute this command does not carry.
    AttrNotAllowed {
        /// The command.
        cmd: Command,
        /// The attribute.
        attr: AttrId,
        /// Offset of the attribute header.
        offset: usize,
    },
    /// A required attribute is absent.
    MissingAttr {
        /// The command.
        cmd: Command,
        /// The attribute.
        attr: AttrKey,
    },
    /// A fixed-size attribute (or a resource nest) has the wrong payload length.
    BadAttrLen {
        /// The attribute.
        attr: AttrKey,
        /// Offset of the attribute header.
        offset: usize,
        /// Payload length found.
        len: usize,
        /// Payload length expected.
        expected: usize,
    },
    /// A string attribute has no NUL terminator.
    StringNotTerminated {
        /// The attribute.
        attr: AttrId,
        /// Offset of the attribute header.
        offset: usize,
    },
    /// A string attribute has bytes after its first NUL.
    StringTrailingBytes {
        /// The attribute.
        attr: AttrId,
        /// Offset of the attribute header.
        offset: usize,
    },
    /// A string attribute is longer than [`PATH_LEN_MAX`] (without its NUL).
    StringTooLong {
        /// The attribute.
        attr: AttrId,
        /// Offset of the attribute header.
        offset: usize,
        /// Payload length found, NUL included.
        len: usize,
    },
    /// A string attribute is not UTF-8.
    StringNotUtf8 {
        /// The attribute.
        attr: AttrId,
        /// Offset of the attribute header.
        offset: usize,
    },
    /// A well-framed value that is not allowed.
    BadValue {
        /// The attribute.
        attr: AttrKey,
        /// Offset of the attribute header.
        offset: usize,
        /// What is wrong with it.
        value: BadValue,
    },
}

impl ParseError {
    /// The byte offset at fault, if the error has one.
    pub const fn offset(&self) -> Option<usize> {
        match *self {
            ParseError::TruncatedNlmsghdr { .. }
            | ParseError::NlmsgLenMismatch { .. }
            | ParseError::NotGenlFamily { .. }
            | ParseError::MissingAttr { .. } => None,
            ParseError::TruncatedGenlmsghdr { offset, .. }
            | ParseError::UnknownCommand { offset, .. }
            | ParseError::BadVersion { offset, .. }
            | ParseError::BadReserved { offset, .. }
            | ParseError::BadNlaLen { offset, .. }
            | ParseError::NestedOverrun { offset, .. }
            | ParseError::Misaligned { offset }
            | ParseError::BadPadding { offset }
            | ParseError::UnknownAttr { offset, .. }
            | ParseError::BadAttrFlags { offset, .. }
            | ParseError::DuplicateAttr { offset, .. }
            | ParseError::AttrNotAllowed { offset, .. }
            | ParseError::BadAttrLen { offset, .. }
            | ParseError::StringNotTerminated { offset, .. }
            | ParseError::StringTrailingBytes { offset, .. }
            | ParseError::StringTooLong { offset, .. }
            | ParseError::StringNotUtf8 { offset, .. }
            | ParseError::BadValue { offset, .. } => Some(offset),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ParseError::TruncatedNlmsghdr { len } => {
                write!(
                    f,
                    "message of {len} bytes is shorter than the 16-byte nlmsghdr"
                )
            }
            ParseError::TruncatedGenlmsghdr { offset, len } => write!(
                f,
                "genlmsghdr at byte {offset} is truncated: {len} of 4 bytes present"
            ),
            ParseError::NlmsgLenMismatch { nlmsg_len, buf_len } => {
                write!(
                    f,
                    "nlmsg_len {nlmsg_len} disagrees with the {buf_len}-byte buffer"
                )
            }
            ParseError::NotGenlFamily { nlmsg_type } => {
                write!(
                    f,
                    "nlmsg_type {nlmsg_type} is a netlink control type, not a family id"
                )
            }
            ParseError::UnknownCommand { offset, cmd } => {
                write!(
                    f,
                    "unknown command {cmd} at byte {offset} (expected 1..={})",
                    Command::ALL.len()
                )
            }
            ParseError::BadVersion { offset, version } => write!(
                f,
                "genl version {version} at byte {offset}, expected {}",
                super::types::FAMILY_VERSION
            ),
            ParseError::BadReserved { offset, value } => {
                write!(
                    f,
                    "genl reserved field at byte {offset} is {value:#x}, expected 0"
                )
            }
            ParseError::BadNlaLen { offset, nla_len } => write!(
                f,
                "attribute at byte {offset}: nla_len {nla_len} is below 4 or runs past the end"
            ),
            ParseError::NestedOverrun {
                parent,
                offset,
                nla_len,
            } => write!(
                f,
                "attribute at byte {offset} inside {}: nla_len {nla_len} runs past its parent",
                parent.name()
            ),
            ParseError::Misaligned { offset } => {
                write!(
                    f,
                    "attribute data at byte {offset} does not end on a 4-byte boundary"
                )
            }
            ParseError::BadPadding { offset } => {
                write!(f, "padding byte at {offset} is not zero")
            }
            ParseError::UnknownAttr {
                parent: None,
                id,
                offset,
            } => {
                write!(f, "unknown attribute id {id} at byte {offset}")
            }
            ParseError::UnknownAttr {
                parent: Some(p),
                id,
                offset,
            } => {
                write!(
                    f,
                    "unknown attribute id {id} inside {} at byte {offset}",
                    p.name()
                )
            }
            ParseError::BadAttrFlags {
                attr,
                offset,
                flags,
            } => {
                write!(
                    f,
                    "attribute {attr} at byte {offset} has wrong type flags {flags:#x}"
                )
            }
            ParseError::DuplicateAttr { attr, offset } => {
                write!(f, "attribute {attr} repeated at byte {offset}")
            }
            ParseError::AttrNotAllowed { cmd, attr, offset } => write!(
                f,
                "attribute {} at byte {offset} is not allowed in {}",
                AttrKey::Top(attr),
                cmd.name()
            ),
            ParseError::MissingAttr { cmd, attr } => {
                write!(f, "{} is missing required attribute {attr}", cmd.name())
            }
            ParseError::BadAttrLen {
                attr,
                offset,
                len,
                expected,
            } => write!(
                f,
                "attribute {attr} at byte {offset} has {len} payload bytes, expected {expected}"
            ),
            ParseError::StringNotTerminated { attr, offset } => write!(
                f,
                "string attribute {} at byte {offset} has no NUL terminator",
                AttrKey::Top(attr)
            ),
            ParseError::StringTrailingBytes { attr, offset } => write!(
                f,
                "string attribute {} at byte {offset} has bytes after its NUL",
                AttrKey::Top(attr)
            ),
            ParseError::StringTooLong { attr, offset, len } => write!(
                f,
                "string attribute {} at byte {offset} has {len} bytes, limit {} plus NUL",
                AttrKey::Top(attr),
                PATH_LEN_MAX
            ),
            ParseError::StringNotUtf8 { attr, offset } => write!(
                f,
                "string attribute {} at byte {offset} is not UTF-8",
                AttrKey::Top(attr)
            ),
            ParseError::BadValue {
                attr,
                offset,
                value,
            } => {
                write!(f, "attribute {attr} at byte {offset}: {value}")
            }
        }
    }
}

/// Why a message could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EncodeError {
    /// The output buffer is too small; nothing useful was written.
    BufferTooSmall {
        /// Bytes the encoding needs.
        needed: usize,
        /// Bytes the buffer has.
        available: usize,
    },
    /// The header's `nlmsg_type` is a netlink control type, not a family id.
    NotGenlFamily {
        /// The `nlmsg_type` given.
        nlmsg_type: u16,
    },
    /// The message holds a value the parser would reject; nothing was written.
    BadValue {
        /// The attribute.
        attr: AttrKey,
        /// What is wrong with it.
        value: BadValue,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EncodeError::BufferTooSmall { needed, available } => {
                write!(f, "encoding needs {needed} bytes, buffer has {available}")
            }
            EncodeError::NotGenlFamily { nlmsg_type } => {
                write!(
                    f,
                    "nlmsg_type {nlmsg_type} is a netlink control type, not a family id"
                )
            }
            EncodeError::BadValue { attr, value } => {
                write!(f, "cannot encode attribute {attr}: {value}")
            }
        }
    }
}
