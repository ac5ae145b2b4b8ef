//! Netlink and Generic Netlink framing: header layouts, alignment and flag bits.
//!
//! Netlink is native endian. A message is a 16-byte `nlmsghdr`, a 4-byte `genlmsghdr`, then
//! attributes: each a 4-byte `nlattr` header (`nla_len` u16 counting header and payload,
//! `nla_type` u16) followed by the payload and zero padding up to a multiple of 4 (`NLA_ALIGN`).

/// Size of `struct nlmsghdr`: `nlmsg_len` u32, `nlmsg_type` u16, `nlmsg_flags` u16,
/// `nlmsg_seq` u32, `nlmsg_pid` u32.
pub const NLMSG_HDRLEN: usize = 16;
/// Size of `struct genlmsghdr`: `cmd` u8, `version` u8, `reserved` u16.
pub const GENL_HDRLEN: usize = 4;
/// Size of `struct nlattr`.
pub const NLA_HDRLEN: usize = 4;
/// Attribute alignment.
pub const NLA_ALIGNTO: usize = 4;
/// `nla_type` bit: the payload is a nest of attributes.
pub const NLA_F_NESTED: u16 = 1 << 15;
/// `nla_type` bit: the payload is in network byte order (MXFS never sets it).
pub const NLA_F_NET_BYTEORDER: u16 = 1 << 14;
/// Mask that leaves the attribute id of an `nla_type`.
pub const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);
/// Smallest `nlmsg_type` that is not a netlink control message (`NLMSG_MIN_TYPE`); Generic
/// Netlink family ids start here.
pub const NLMSG_MIN_TYPE: u16 = 0x10;
/// `nlmsg_flags`: it is a request.
pub const NLM_F_REQUEST: u16 = 0x01;
/// `nlmsg_flags`: part of a multipart message.
pub const NLM_F_MULTI: u16 = 0x02;
/// `nlmsg_flags`: reply with an acknowledgement.
pub const NLM_F_ACK: u16 = 0x04;

/// Rounds `len` up to the attribute alignment. `len` must be at most `usize::MAX - 3`.
pub const fn nla_align(len: usize) -> usize {
    (len + NLA_ALIGNTO - 1) & !(NLA_ALIGNTO - 1)
}

/// The fields of an `nlmsghdr` other than `nlmsg_len`, which the encoder computes and the
/// parser checks against the buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NlHeader {
    /// The Generic Netlink family id, resolved at run time (at least [`NLMSG_MIN_TYPE`]).
    pub nlmsg_type: u16,
    /// `NLM_F_*` flags.
    pub flags: u16,
    /// Sequence number.
    pub seq: u32,
    /// Port id of the sender (0 for the kernel).
    pub pid: u32,
}

/// Reads `N` bytes at `off`, or `None` if they are not all inside `buf`.
pub(crate) fn bytes_at<const N: usize>(buf: &[u8], off: usize) -> Option<[u8; N]> {
    let end = off.checked_add(N)?;
    buf.get(off..end)?.try_into().ok()
}

/// Reads a native-endian u16 at `off`.
pub(crate) fn u16_at(buf: &[u8], off: usize) -> Option<u16> {
    bytes_at(buf, off).map(u16::from_ne_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align() {
        assert_eq!(nla_align(0), 0);
        assert_eq!(nla_align(1), 4);
        assert_eq!(nla_align(4), 4);
        assert_eq!(nla_align(5), 8);
        assert_eq!(NLA_TYPE_MASK, 0x3fff);
    }

    #[test]
    fn reads_stay_in_bounds() {
        let b = [1u8, 0, 0, 0, 2];
        assert_eq!(bytes_at::<4>(&b, 0), Some([1, 0, 0, 0]));
        assert_eq!(bytes_at::<4>(&b, 2), None);
        assert_eq!(u16_at(&b, 4), None);
        assert_eq!(u16_at(&b, usize::MAX), None);
    }
}
