//! The one strict parser.
//!
//! Three entry points share one code path: [`parse_message`] (a whole netlink message),
//! [`parse_genl`] (`genlmsghdr` plus attributes) and [`parse_attrs`] (the attribute bytes of a
//! known command, which is what the kernel's `genl_info` and neli hand over). Offsets in errors
//! are relative to the start of the buffer given to the entry point.
//!
//! The parser reads only through bounds-checked accessors, so no input can make it panic or read
//! out of bounds. Checks run in wire order; the first problem found is reported.

use super::attr::{AttrId, AttrKey, AttrKind, AttrSet, ResourceAttr};
use super::error::{BadValue, ParseError, STATUS_MIN};
use super::message::{
    CacheInval, LockCallback, LockDeny, LockGrant, LockRelease, LockReq, Message, NodeStatus,
    RecoveryDone, RecoveryStart, StatusReq, StatusResp, VolumeMount, VolumeUmount, VolumeWithdraw,
};
use super::netlink::{
    bytes_at, nla_align, u16_at, NlHeader, GENL_HDRLEN, NLA_F_NESTED, NLA_HDRLEN, NLA_TYPE_MASK,
    NLMSG_HDRLEN, NLMSG_MIN_TYPE,
};
use super::types::{
    Command, LockFlags, LockMode, NodeState, ResourceId, ResourceType, FAMILY_VERSION, NODE_ID_MAX,
    PATH_LEN_MAX,
};

/// Parses one whole netlink message: `nlmsghdr`, `genlmsghdr`, attributes. `nlmsg_len` must be
/// the length of `buf`.
pub fn parse_message(buf: &[u8]) -> Result<(NlHeader, Message<'_>), ParseError> {
    let h: [u8; NLMSG_HDRLEN] =
        bytes_at(buf, 0).ok_or(ParseError::TruncatedNlmsghdr { len: buf.len() })?;
    let nlmsg_len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]);
    if usize::try_from(nlmsg_len).ok() != Some(buf.len()) {
        return Err(ParseError::NlmsgLenMismatch {
            nlmsg_len,
            buf_len: buf.len(),
        });
    }
    let header = NlHeader {
        nlmsg_type: u16::from_ne_bytes([h[4], h[5]]),
        flags: u16::from_ne_bytes([h[6], h[7]]),
        seq: u32::from_ne_bytes([h[8], h[9], h[10], h[11]]),
        pid: u32::from_ne_bytes([h[12], h[13], h[14], h[15]]),
    };
    if header.nlmsg_type < NLMSG_MIN_TYPE {
        return Err(ParseError::NotGenlFamily {
            nlmsg_type: header.nlmsg_type,
        });
    }
    let rest = buf.get(NLMSG_HDRLEN..).unwrap_or(&[]);
    let message = parse_genl_at(rest, NLMSG_HDRLEN)?;
    Ok((header, message))
}

/// Parses a Generic Netlink payload: `genlmsghdr` (command, version 1, reserved 0), attributes.
pub fn parse_genl(buf: &[u8]) -> Result<Message<'_>, ParseError> {
    parse_genl_at(buf, 0)
}

/// Parses the attributes of command `cmd`.
pub fn parse_attrs(cmd: Command, attrs: &[u8]) -> Result<Message<'_>, ParseError> {
    parse_attrs_at(cmd, attrs, 0)
}

fn parse_genl_at(buf: &[u8], base: usize) -> Result<Message<'_>, ParseError> {
    let g: [u8; GENL_HDRLEN] = bytes_at(buf, 0).ok_or(ParseError::TruncatedGenlmsghdr {
        offset: base,
        len: buf.len(),
    })?;
    let cmd = Command::from_u8(g[0]).ok_or(ParseError::UnknownCommand {
        offset: base,
        cmd: g[0],
    })?;
    if g[1] != FAMILY_VERSION {
        return Err(ParseError::BadVersion {
            offset: base + 1,
            version: g[1],
        });
    }
    let reserved = u16::from_ne_bytes([g[2], g[3]]);
    if reserved != 0 {
        return Err(ParseError::BadReserved {
            offset: base + 2,
            value: reserved,
        });
    }
    let attrs = buf.get(GENL_HDRLEN..).unwrap_or(&[]);
    parse_attrs_at(cmd, attrs, base + GENL_HDRLEN)
}

/// One attribute as found on the wire.
struct RawAttr<'a> {
    /// `nla_type`, flags included.
    nla_type: u16,
    /// Offset of the attribute header, relative to the entry point's buffer.
    offset: usize,
    /// The payload, without header or padding.
    payload: &'a [u8],
}

/// Walks a run of attributes, checking lengths, alignment and padding.
struct Walk<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
    parent: Option<AttrId>,
}

impl<'a> Walk<'a> {
    fn new(buf: &'a [u8], base: usize, parent: Option<AttrId>) -> Walk<'a> {
        Walk {
            buf,
            pos: 0,
            base,
            parent,
        }
    }

    fn next_attr(&mut self) -> Result<Option<RawAttr<'a>>, ParseError> {
        let rest = self.buf.len().saturating_sub(self.pos);
        if rest == 0 {
            return Ok(None);
        }
        let offset = self.base + self.pos;
        let (Some(nla_len), Some(nla_type)) =
            (u16_at(self.buf, self.pos), u16_at(self.buf, self.pos + 2))
        else {
            // Fewer than NLA_HDRLEN bytes left: the area does not end on an attribute boundary.
            return Err(ParseError::Misaligned { offset });
        };
        let len = usize::from(nla_len);
        if len < NLA_HDRLEN {
            return Err(ParseError::BadNlaLen { offset, nla_len });
        }
        if len > rest {
            return Err(match self.parent {
                Some(parent) => ParseError::NestedOverrun {
                    parent,
                    offset,
                    nla_len,
                },
                None => ParseError::BadNlaLen { offset, nla_len },
            });
        }
        let padded = nla_align(len);
        if padded > rest {
            return Err(ParseError::Misaligned { offset });
        }
        let payload = self.buf.get(self.pos + NLA_HDRLEN..self.pos + len);
        let padding = self.buf.get(self.pos + len..self.pos + padded);
        let (Some(payload), Some(padding)) = (payload, padding) else {
            return Err(ParseError::BadNlaLen { offset, nla_len });
        };
        if let Some(i) = padding.iter().position(|b| *b != 0) {
            return Err(ParseError::BadPadding {
                offset: offset + len + i,
            });
        }
        self.pos += padded;
        Ok(Some(RawAttr {
            nla_type,
            offset,
            payload,
        }))
    }
}

/// Checks the flag bits of `nla_type`: `NLA_F_NESTED` exactly on nests, never
/// `NLA_F_NET_BYTEORDER` (MXFS is native endian), as the kernel's strict validation does.
fn check_flags(attr: AttrKey, nested: bool, raw: &RawAttr<'_>) -> Result<(), ParseError> {
    let flags = raw.nla_type & !NLA_TYPE_MASK;
    let want = if nested { NLA_F_NESTED } else { 0 };
    if flags != want {
        return Err(ParseError::BadAttrFlags {
            attr,
            offset: raw.offset,
            flags,
        });
    }
    Ok(())
}

fn fixed<const N: usize>(attr: AttrKey, raw: &RawAttr<'_>) -> Result<[u8; N], ParseError> {
    raw.payload.try_into().map_err(|_| ParseError::BadAttrLen {
        attr,
        offset: raw.offset,
        len: raw.payload.len(),
        expected: N,
    })
}

fn get_u64(attr: AttrKey, raw: &RawAttr<'_>) -> Result<u64, ParseError> {
    fixed(attr, raw).map(u64::from_ne_bytes)
}

fn get_u32(attr: AttrKey, raw: &RawAttr<'_>) -> Result<u32, ParseError> {
    fixed(attr, raw).map(u32::from_ne_bytes)
}

fn get_u8(attr: AttrKey, raw: &RawAttr<'_>) -> Result<u8, ParseError> {
    fixed::<1>(attr, raw).map(|[b]| b)
}

fn bad(attr: AttrKey, raw: &RawAttr<'_>, value: BadValue) -> ParseError {
    ParseError::BadValue {
        attr,
        offset: raw.offset,
        value,
    }
}

/// A NUL-terminated UTF-8 string of at most `PATH_LEN_MAX` bytes before exactly one NUL.
fn get_str<'a>(attr: AttrId, raw: &RawAttr<'a>) -> Result<&'a str, ParseError> {
    let offset = raw.offset;
    let p = raw.payload;
    if p.len() > PATH_LEN_MAX + 1 {
        return Err(ParseError::StringTooLong {
            attr,
            offset,
            len: p.len(),
        });
    }
    let nul = p
        .iter()
        .position(|b| *b == 0)
        .ok_or(ParseError::StringNotTerminated { attr, offset })?;
    if nul + 1 != p.len() {
        return Err(ParseError::StringTrailingBytes { attr, offset });
    }
    let text = p
        .get(..nul)
        .ok_or(ParseError::StringNotTerminated { attr, offset })?;
    core::str::from_utf8(text).map_err(|_| ParseError::StringNotUtf8 { attr, offset })
}

/// Parses the nested resource whose attribute header is `raw`.
fn get_resource(cmd: Command, raw: &RawAttr<'_>) -> Result<ResourceId, ParseError> {
    let mut walk = Walk::new(raw.payload, raw.offset + NLA_HDRLEN, Some(AttrId::Resource));
    let mut kind = None;
    let mut fields: [Option<u64>; 3] = [None; 3];
    while let Some(inner) = walk.next_attr()? {
        let id = inner.nla_type & NLA_TYPE_MASK;
        let Some(r) = ResourceAttr::from_u16(id) else {
            return Err(ParseError::UnknownAttr {
                parent: Some(AttrId::Resource),
                id,
                offset: inner.offset,
            });
        };
        let key = AttrKey::Resource(r);
        check_flags(key, false, &inner)?;
        let dup = ParseError::DuplicateAttr {
            attr: key,
            offset: inner.offset,
        };
        match r {
            ResourceAttr::Type => {
                if kind.is_some() {
                    return Err(dup);
                }
                let t = get_u8(key, &inner)?;
                let k =
                    ResourceType::from_u8(t).ok_or(bad(key, &inner, BadValue::ResourceType(t)))?;
                kind = Some(k);
            }
            ResourceAttr::Volume | ResourceAttr::A | ResourceAttr::B => {
                let slot = match r {
                    ResourceAttr::Volume => &mut fields[0],
                    ResourceAttr::A => &mut fields[1],
                    _ => &mut fields[2],
                };
                if slot.is_some() {
                    return Err(dup);
                }
                *slot = Some(get_u64(key, &inner)?);
            }
        }
    }
    let missing = |r| ParseError::MissingAttr {
        cmd,
        attr: AttrKey::Resource(r),
    };
    let kind = kind.ok_or(missing(ResourceAttr::Type))?;
    let [volume, a, b] = fields;
    let id = ResourceId {
        kind,
        volume: volume.ok_or(missing(ResourceAttr::Volume))?,
        a: a.ok_or(missing(ResourceAttr::A))?,
        b: b.ok_or(missing(ResourceAttr::B))?,
    };
    if !id.is_well_formed() {
        return Err(bad(
            AttrKey::Top(AttrId::Resource),
            raw,
            BadValue::ResourceNotWellFormed,
        ));
    }
    Ok(id)
}

/// Values of the top-level attributes seen so far.
#[derive(Default)]
struct Values<'a> {
    resource: Option<ResourceId>,
    mode: Option<LockMode>,
    /// Offset of the `MODE` attribute, for the `LOCK_CALLBACK` check.
    mode_offset: usize,
    flags: Option<LockFlags>,
    req_id: Option<u64>,
    status: Option<i32>,
    volume: Option<u64>,
    node_id: Option<u32>,
    node_state: Option<NodeState>,
    ino: Option<u64>,
    offset: Option<u64>,
    length: Option<u64>,
    dev_path: Option<&'a str>,
    mount_path: Option<&'a str>,
    generation: Option<u64>,
    epoch: Option<u64>,
    timeout_ms: Option<u32>,
    /// Offset of the `TIMEOUT_MS` attribute, for the flag cross-check.
    timeout_offset: usize,
    data_version: Option<u64>,
}

impl<'a> Values<'a> {
    /// Decodes and checks the value of one attribute, already known to be allowed and new.
    fn decode(&mut self, cmd: Command, attr: AttrId, raw: &RawAttr<'a>) -> Result<(), ParseError> {
        let key = AttrKey::Top(attr);
        match attr {
            AttrId::Resource => self.resource = Some(get_resource(cmd, raw)?),
            AttrId::Mode => {
                let m = get_u8(key, raw)?;
                self.mode = Some(LockMode::from_u8(m).ok_or(bad(key, raw, BadValue::Mode(m)))?);
                self.mode_offset = raw.offset;
            }
            AttrId::Flags => {
                let f = LockFlags(get_u32(key, raw)?);
                if !f.is_valid() {
                    return Err(bad(key, raw, BadValue::FlagBits(f.0)));
                }
                self.flags = Some(f);
            }
            AttrId::ReqId => self.req_id = Some(get_u64(key, raw)?),
            AttrId::Status => {
                let s = i32::from_ne_bytes(fixed(key, raw)?);
                if !(STATUS_MIN..=-1).contains(&s) {
                    return Err(bad(key, raw, BadValue::Status(s)));
                }
                self.status = Some(s);
            }
            AttrId::Volume => self.volume = Some(get_u64(key, raw)?),
            AttrId::NodeId => {
                let n = get_u32(key, raw)?;
                if n > NODE_ID_MAX {
                    return Err(bad(key, raw, BadValue::NodeId(n)));
                }
                self.node_id = Some(n);
            }
            AttrId::NodeState => {
                let s = get_u8(key, raw)?;
                let state = NodeState::from_u8(s).ok_or(bad(key, raw, BadValue::NodeState(s)))?;
                self.node_state = Some(state);
            }
            AttrId::Ino => self.ino = Some(get_u64(key, raw)?),
            AttrId::Offset => self.offset = Some(get_u64(key, raw)?),
            AttrId::Length => self.length = Some(get_u64(key, raw)?),
            AttrId::DevPath => self.dev_path = Some(get_str(attr, raw)?),
            AttrId::MountPath => self.mount_path = Some(get_str(attr, raw)?),
            AttrId::Generation => self.generation = Some(get_u64(key, raw)?),
            AttrId::Epoch => self.epoch = Some(get_u64(key, raw)?),
            AttrId::TimeoutMs => {
                self.timeout_ms = Some(get_u32(key, raw)?);
                self.timeout_offset = raw.offset;
            }
            AttrId::DataVersion => self.data_version = Some(get_u64(key, raw)?),
        }
        Ok(())
    }
}

fn parse_attrs_at(cmd: Command, buf: &[u8], base: usize) -> Result<Message<'_>, ParseError> {
    let policy = cmd.policy();
    let mut values = Values::default();
    let mut seen = AttrSet::EMPTY;
    let mut walk = Walk::new(buf, base, None);
    while let Some(raw) = walk.next_attr()? {
        let id = raw.nla_type & NLA_TYPE_MASK;
        let Some(attr) = AttrId::from_u16(id) else {
            return Err(ParseError::UnknownAttr {
                parent: None,
                id,
                offset: raw.offset,
            });
        };
        check_flags(
            AttrKey::Top(attr),
            attr.policy().kind == AttrKind::Nested,
            &raw,
        )?;
        if seen.contains(attr) {
            return Err(ParseError::DuplicateAttr {
                attr: AttrKey::Top(attr),
                offset: raw.offset,
            });
        }
        if !policy.allows(attr) {
            return Err(ParseError::AttrNotAllowed {
                cmd,
                attr,
                offset: raw.offset,
            });
        }
        seen = seen.with(attr);
        values.decode(cmd, attr, &raw)?;
    }
    if let Some(attr) = policy.required.iter().find(|a| !seen.contains(*a)) {
        return Err(ParseError::MissingAttr {
            cmd,
            attr: AttrKey::Top(attr),
        });
    }
    build(cmd, values)
}

/// Extracts an attribute that the policy check already found present.
fn need<T>(v: Option<T>, cmd: Command, attr: AttrId) -> Result<T, ParseError> {
    v.ok_or(ParseError::MissingAttr {
        cmd,
        attr: AttrKey::Top(attr),
    })
}

fn build(cmd: Command, v: Values<'_>) -> Result<Message<'_>, ParseError> {
    use AttrId as A;
    let msg = match cmd {
        Command::LockReq => {
            let flags = need(v.flags, cmd, A::Flags)?;
            match (flags.contains(LockFlags::TIMEOUT_MS), v.timeout_ms) {
                (true, None) => {
                    return Err(ParseError::MissingAttr {
                        cmd,
                        attr: AttrKey::Top(A::TimeoutMs),
                    })
                }
                (false, Some(_)) => {
                    return Err(ParseError::AttrNotAllowed {
                        cmd,
                        attr: A::TimeoutMs,
                        offset: v.timeout_offset,
                    })
                }
                _ => {}
            }
            Message::LockReq(LockReq {
                req_id: need(v.req_id, cmd, A::ReqId)?,
                resource: need(v.resource, cmd, A::Resource)?,
                mode: need(v.mode, cmd, A::Mode)?,
                flags,
                timeout_ms: v.timeout_ms,
            })
        }
        Command::LockGrant => Message::LockGrant(LockGrant {
            req_id: need(v.req_id, cmd, A::ReqId)?,
            resource: need(v.resource, cmd, A::Resource)?,
            mode: need(v.mode, cmd, A::Mode)?,
            data_version: v.data_version,
        }),
        Command::LockDeny => Message::LockDeny(LockDeny {
            req_id: need(v.req_id, cmd, A::ReqId)?,
            resource: need(v.resource, cmd, A::Resource)?,
            status: need(v.status, cmd, A::Status)?,
        }),
        Command::LockRelease => Message::LockRelease(LockRelease {
            req_id: need(v.req_id, cmd, A::ReqId)?,
            resource: need(v.resource, cmd, A::Resource)?,
            mode: v.mode,
        }),
        Command::CacheInval => Message::CacheInval(CacheInval {
            volume: need(v.volume, cmd, A::Volume)?,
            ino: need(v.ino, cmd, A::Ino)?,
            offset: need(v.offset, cmd, A::Offset)?,
            length: need(v.length, cmd, A::Length)?,
        }),
        Command::NodeStatus => Message::NodeStatus(NodeStatus {
            node_id: need(v.node_id, cmd, A::NodeId)?,
            state: need(v.node_state, cmd, A::NodeState)?,
            epoch: v.epoch,
        }),
        Command::VolumeMount => Message::VolumeMount(VolumeMount {
            volume: need(v.volume, cmd, A::Volume)?,
            dev_path: v.dev_path,
            mount_path: v.mount_path,
            generation: v.generation,
        }),
        Command::VolumeUmount => Message::VolumeUmount(VolumeUmount {
            volume: need(v.volume, cmd, A::Volume)?,
        }),
        Command::StatusReq => Message::StatusReq(StatusReq),
        Command::StatusResp => Message::StatusResp(StatusResp {
            node_id: need(v.node_id, cmd, A::NodeId)?,
            state: v.node_state,
            volume: v.volume,
            epoch: v.epoch,
            generation: v.generation,
        }),
        Command::RecoveryStart => Message::RecoveryStart(RecoveryStart {
            volume: need(v.volume, cmd, A::Volume)?,
            epoch: need(v.epoch, cmd, A::Epoch)?,
        }),
        Command::RecoveryDone => Message::RecoveryDone(RecoveryDone {
            volume: need(v.volume, cmd, A::Volume)?,
            epoch: need(v.epoch, cmd, A::Epoch)?,
        }),
        Command::LockCallback => {
            let mode = need(v.mode, cmd, A::Mode)?;
            if mode == LockMode::Ex {
                return Err(ParseError::BadValue {
                    attr: AttrKey::Top(A::Mode),
                    offset: v.mode_offset,
                    value: BadValue::CallbackKeepsEx,
                });
            }
            Message::LockCallback(LockCallback {
                req_id: need(v.req_id, cmd, A::ReqId)?,
                resource: need(v.resource, cmd, A::Resource)?,
                mode,
            })
        }
        Command::VolumeWithdraw => Message::VolumeWithdraw(VolumeWithdraw {
            volume: need(v.volume, cmd, A::Volume)?,
            status: need(v.status, cmd, A::Status)?,
        }),
    };
    Ok(msg)
}
