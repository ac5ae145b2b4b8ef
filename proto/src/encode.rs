//! The one encoder.
//!
//! It writes into a caller-provided buffer and returns the number of bytes written. A message is
//! first checked against the same rules the parser enforces, then measured, and only then
//! written, so an error leaves nothing half-written that looks valid. Attributes are emitted in
//! ascending id order, each padded with zeros to 4 bytes; the resource nest carries
//! `NLA_F_NESTED`. Measuring and writing run the same code ([`Writer`] counts past the end of
//! its buffer instead of writing), so the two cannot disagree.

use super::attr::{AttrId, AttrKey, ResourceAttr, RESOURCE_NEST_LEN};
use super::error::{BadValue, EncodeError, STATUS_MIN};
use super::message::Message;
use super::netlink::{
    nla_align, NlHeader, GENL_HDRLEN, NLA_F_NESTED, NLA_HDRLEN, NLMSG_HDRLEN, NLMSG_MIN_TYPE,
};
use super::types::{LockFlags, LockMode, ResourceId, FAMILY_VERSION, NODE_ID_MAX, PATH_LEN_MAX};

/// Writes bytes at a cursor; bytes past the end of the buffer are only counted.
struct Writer<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.pos + bytes.len();
        if let Some(dst) = self.buf.get_mut(self.pos..end) {
            dst.copy_from_slice(bytes);
        }
        self.pos = end;
    }

    fn pad(&mut self) {
        let aligned = nla_align(self.pos);
        while self.pos < aligned {
            self.put(&[0]);
        }
    }

    fn header(&mut self, len: usize, nla_type: u16) {
        debug_assert!(len <= usize::from(u16::MAX));
        self.put(&(len as u16).to_ne_bytes());
        self.put(&nla_type.to_ne_bytes());
    }

    fn attr(&mut self, nla_type: u16, payload: &[u8]) {
        self.header(NLA_HDRLEN + payload.len(), nla_type);
        self.put(payload);
        self.pad();
    }

    fn u8(&mut self, attr: AttrId, v: u8) {
        self.attr(attr as u16, &[v]);
    }

    fn u32(&mut self, attr: AttrId, v: u32) {
        self.attr(attr as u16, &v.to_ne_bytes());
    }

    fn u64(&mut self, attr: AttrId, v: u64) {
        self.attr(attr as u16, &v.to_ne_bytes());
    }

    fn opt_u64(&mut self, attr: AttrId, v: Option<u64>) {
        if let Some(v) = v {
            self.u64(attr, v);
        }
    }

    fn string(&mut self, attr: AttrId, s: Option<&str>) {
        if let Some(s) = s {
            self.header(NLA_HDRLEN + s.len() + 1, attr as u16);
            self.put(s.as_bytes());
            self.put(&[0]);
            self.pad();
        }
    }

    fn resource(&mut self, r: &ResourceId) {
        let start = self.pos;
        self.header(
            NLA_HDRLEN + RESOURCE_NEST_LEN,
            AttrId::Resource as u16 | NLA_F_NESTED,
        );
        self.attr(ResourceAttr::Type as u16, &[r.kind as u8]);
        self.attr(ResourceAttr::Volume as u16, &r.volume.to_ne_bytes());
        self.attr(ResourceAttr::A as u16, &r.a.to_ne_bytes());
        self.attr(ResourceAttr::B as u16, &r.b.to_ne_bytes());
        debug_assert_eq!(self.pos - start, NLA_HDRLEN + RESOURCE_NEST_LEN);
    }
}

/// Emits the attributes of `msg` in id order. `validate` has accepted `msg`.
fn emit(msg: &Message<'_>, w: &mut Writer<'_>) {
    use AttrId as A;
    match msg {
        Message::LockReq(m) => {
            w.resource(&m.resource);
            w.u8(A::Mode, m.mode as u8);
            w.u32(A::Flags, m.flags.0);
            w.u64(A::ReqId, m.req_id);
            if let Some(t) = m.timeout_ms {
                w.u32(A::TimeoutMs, t);
            }
        }
        Message::LockGrant(m) => {
            w.resource(&m.resource);
            w.u8(A::Mode, m.mode as u8);
            w.u64(A::ReqId, m.req_id);
            w.opt_u64(A::DataVersion, m.data_version);
        }
        Message::LockDeny(m) => {
            w.resource(&m.resource);
            w.u64(A::ReqId, m.req_id);
            w.u32(A::Status, m.status as u32);
        }
        Message::LockRelease(m) => {
            w.resource(&m.resource);
            if let Some(mode) = m.mode {
                w.u8(A::Mode, mode as u8);
            }
            w.u64(A::ReqId, m.req_id);
        }
        Message::CacheInval(m) => {
            w.u64(A::Volume, m.volume);
            w.u64(A::Ino, m.ino);
            w.u64(A::Offset, m.offset);
            w.u64(A::Length, m.length);
        }
        Message::NodeStatus(m) => {
            w.u32(A::NodeId, m.node_id);
            w.u8(A::NodeState, m.state as u8);
            w.opt_u64(A::Epoch, m.epoch);
        }
        Message::VolumeMount(m) => {
            w.u64(A::Volume, m.volume);
            w.string(A::DevPath, m.dev_path);
            w.string(A::MountPath, m.mount_path);
            w.opt_u64(A::Generation, m.generation);
        }
        Message::VolumeUmount(m) => w.u64(A::Volume, m.volume),
        Message::StatusReq(_) => {}
        Message::StatusResp(m) => {
            w.opt_u64(A::Volume, m.volume);
            w.u32(A::NodeId, m.node_id);
            if let Some(s) = m.state {
                w.u8(A::NodeState, s as u8);
            }
            w.opt_u64(A::Generation, m.generation);
            w.opt_u64(A::Epoch, m.epoch);
        }
        Message::RecoveryStart(m) => {
            w.u64(A::Volume, m.volume);
            w.u64(A::Epoch, m.epoch);
        }
        Message::RecoveryDone(m) => {
            w.u64(A::Volume, m.volume);
            w.u64(A::Epoch, m.epoch);
        }
        Message::LockCallback(m) => {
            w.resource(&m.resource);
            w.u8(A::Mode, m.mode as u8);
            w.u64(A::ReqId, m.req_id);
        }
        Message::VolumeWithdraw(m) => {
            w.u32(A::Status, m.status as u32);
            w.u64(A::Volume, m.volume);
        }
    }
}

fn check(ok: bool, attr: AttrId, value: BadValue) -> Result<(), EncodeError> {
    if ok {
        Ok(())
    } else {
        Err(EncodeError::BadValue {
            attr: AttrKey::Top(attr),
            value,
        })
    }
}

fn check_resource(r: &ResourceId) -> Result<(), EncodeError> {
    check(
        r.is_well_formed(),
        AttrId::Resource,
        BadValue::ResourceNotWellFormed,
    )
}

fn check_status(s: i32) -> Result<(), EncodeError> {
    check(
        (STATUS_MIN..=-1).contains(&s),
        AttrId::Status,
        BadValue::Status(s),
    )
}

fn check_node_id(n: u32) -> Result<(), EncodeError> {
    check(n <= NODE_ID_MAX, AttrId::NodeId, BadValue::NodeId(n))
}

fn check_path(attr: AttrId, s: Option<&str>) -> Result<(), EncodeError> {
    if let Some(s) = s {
        check(
            s.len() <= PATH_LEN_MAX,
            attr,
            BadValue::PathTooLong(s.len()),
        )?;
        check(!s.as_bytes().contains(&0), attr, BadValue::PathHasNul)?;
    }
    Ok(())
}

/// Rejects what the parser would reject, so that `parse(encode(m)) == m` for every `m` that
/// encodes.
fn validate(msg: &Message<'_>) -> Result<(), EncodeError> {
    match msg {
        Message::LockReq(m) => {
            check_resource(&m.resource)?;
            check(
                m.flags.is_valid(),
                AttrId::Flags,
                BadValue::FlagBits(m.flags.0),
            )?;
            let has_flag = m.flags.contains(LockFlags::TIMEOUT_MS);
            check(
                has_flag == m.timeout_ms.is_some(),
                AttrId::TimeoutMs,
                BadValue::TimeoutFlagMismatch,
            )
        }
        Message::LockGrant(m) => check_resource(&m.resource),
        Message::LockDeny(m) => {
            check_resource(&m.resource)?;
            check_status(m.status)
        }
        Message::LockRelease(m) => check_resource(&m.resource),
        Message::NodeStatus(m) => check_node_id(m.node_id),
        Message::VolumeMount(m) => {
            check_path(AttrId::DevPath, m.dev_path)?;
            check_path(AttrId::MountPath, m.mount_path)
        }
        Message::StatusResp(m) => check_node_id(m.node_id),
        Message::LockCallback(m) => {
            check_resource(&m.resource)?;
            check(
                m.mode != LockMode::Ex,
                AttrId::Mode,
                BadValue::CallbackKeepsEx,
            )
        }
        Message::VolumeWithdraw(m) => check_status(m.status),
        Message::CacheInval(_)
        | Message::VolumeUmount(_)
        | Message::StatusReq(_)
        | Message::RecoveryStart(_)
        | Message::RecoveryDone(_) => Ok(()),
    }
}

impl Message<'_> {
    /// Bytes of the attribute area.
    pub fn attrs_len(&self) -> usize {
        let mut w = Writer {
            buf: &mut [],
            pos: 0,
        };
        emit(self, &mut w);
        w.pos
    }

    /// Bytes of the Generic Netlink payload: `genlmsghdr` and attributes.
    pub fn payload_len(&self) -> usize {
        GENL_HDRLEN + self.attrs_len()
    }

    /// Bytes of the whole netlink message, which is also its `nlmsg_len`. At most
    /// [`super::message::MSG_LEN_MAX`].
    pub fn encoded_len(&self) -> usize {
        NLMSG_HDRLEN + self.payload_len()
    }
}

/// Shared path of the entry points: validates, checks space, then writes `prefix` (already
/// encoded headers) followed by the attributes.
fn encode_with(
    msg: &Message<'_>,
    prefix: &[u8],
    nlmsg_len_at: Option<usize>,
    buf: &mut [u8],
) -> Result<usize, EncodeError> {
    validate(msg)?;
    let needed = prefix.len() + msg.attrs_len();
    if buf.len() < needed {
        return Err(EncodeError::BufferTooSmall {
            needed,
            available: buf.len(),
        });
    }
    let mut w = Writer { buf, pos: 0 };
    w.put(prefix);
    emit(msg, &mut w);
    debug_assert_eq!(w.pos, needed);
    debug_assert_eq!(w.pos % 4, 0);
    if let Some(at) = nlmsg_len_at {
        // `needed` is at most MSG_LEN_MAX, far below u32::MAX.
        let len = (needed as u32).to_ne_bytes();
        if let Some(dst) = w.buf.get_mut(at..at + 4) {
            dst.copy_from_slice(&len);
        }
    }
    Ok(needed)
}

/// Encodes the attribute area of `msg` into `buf`; returns the bytes written.
pub fn encode_attrs(msg: &Message<'_>, buf: &mut [u8]) -> Result<usize, EncodeError> {
    encode_with(msg, &[], None, buf)
}

fn genl_header(msg: &Message<'_>) -> [u8; GENL_HDRLEN] {
    [msg.command() as u8, FAMILY_VERSION, 0, 0]
}

/// Encodes `genlmsghdr` (command, version 1, reserved 0) and the attributes of `msg`.
pub fn encode_genl(msg: &Message<'_>, buf: &mut [u8]) -> Result<usize, EncodeError> {
    encode_with(msg, &genl_header(msg), None, buf)
}

/// Encodes a whole netlink message: `nlmsghdr` with `header`'s fields and the computed
/// `nlmsg_len`, `genlmsghdr`, attributes.
pub fn encode_message(
    header: &NlHeader,
    msg: &Message<'_>,
    buf: &mut [u8],
) -> Result<usize, EncodeError> {
    if header.nlmsg_type < NLMSG_MIN_TYPE {
        return Err(EncodeError::NotGenlFamily {
            nlmsg_type: header.nlmsg_type,
        });
    }
    let mut prefix = [0u8; NLMSG_HDRLEN + GENL_HDRLEN];
    // nlmsg_len (bytes 0..4) is filled in once the length is known.
    prefix[4..6].copy_from_slice(&header.nlmsg_type.to_ne_bytes());
    prefix[6..8].copy_from_slice(&header.flags.to_ne_bytes());
    prefix[8..12].copy_from_slice(&header.seq.to_ne_bytes());
    prefix[12..16].copy_from_slice(&header.pid.to_ne_bytes());
    prefix[16..20].copy_from_slice(&genl_header(msg));
    encode_with(msg, &prefix, Some(0), buf)
}
