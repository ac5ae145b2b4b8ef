//! A minimal Generic Netlink client over a raw `AF_NETLINK` socket: resolve a family, send one
//! request, collect the replies and the ack. MXFS payloads are encoded and parsed with proto.

use std::io;
use std::mem::size_of;
use std::time::Duration;

use mxfs_proto::{nla_align, GENL_HDRLEN, NLA_HDRLEN, NLMSG_HDRLEN, NLM_F_ACK, NLM_F_REQUEST};

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const CTRL_ATTR_MCAST_GROUPS: u16 = 7;
const CTRL_ATTR_MCAST_GRP_NAME: u16 = 1;
const CTRL_ATTR_MCAST_GRP_ID: u16 = 2;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// Largest datagram read.
const RECV_BUF_BYTES: usize = 16 * 1024;

/// A netlink-level failure: an errno from the kernel or a socket error.
#[derive(Debug)]
pub enum GenlError {
    /// The kernel answered with this negative errno.
    Errno(i32),
    /// The socket failed.
    Io(io::Error),
    /// The reply was not well formed.
    Malformed(&'static str),
}

impl std::fmt::Display for GenlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GenlError::Errno(e) => write!(f, "{} ({})", errno_name(*e), e),
            GenlError::Io(e) => write!(f, "netlink socket: {e}"),
            GenlError::Malformed(w) => write!(f, "malformed netlink reply: {w}"),
        }
    }
}

/// Symbolic name of the negative errnos the tests expect.
pub fn errno_name(e: i32) -> &'static str {
    match -e {
        0 => "OK",
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EAGAIN => "EAGAIN",
        libc::EBUSY => "EBUSY",
        libc::EINVAL => "EINVAL",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ENOTCONN => "ENOTCONN",
        libc::ESHUTDOWN => "ESHUTDOWN",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EALREADY => "EALREADY",
        libc::ENODEV => "ENODEV",
        _ => "E?",
    }
}

/// Parses a symbolic errno back (for `--expect`).
pub fn errno_by_name(name: &str) -> Option<i32> {
    (0..200).map(|e: i32| -e).find(|e| errno_name(*e) == name)
}

/// A bound generic netlink socket.
pub struct Socket {
    fd: libc::c_int,
    seq: u32,
    /// Messages that arrived while waiting for an ack of another request: `(type, payload)`.
    backlog: Vec<(u16, Vec<u8>)>,
}

impl Drop for Socket {
    fn drop(&mut self) {
        // SAFETY: `fd` is a socket this struct owns.
        unsafe { libc::close(self.fd) };
    }
}

fn last_err() -> GenlError {
    GenlError::Io(io::Error::last_os_error())
}

/// Walks `(type, payload)` attributes.
pub fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < NLA_HDRLEN {
            return None;
        }
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & 0x3fff;
        if len < NLA_HDRLEN || len > buf.len() {
            return None;
        }
        let payload = &buf[NLA_HDRLEN..len];
        buf = &buf[nla_align(len).min(buf.len())..];
        Some((ty, payload))
    })
}

fn put_attr(out: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    let len = (NLA_HDRLEN + payload.len()) as u16;
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(nla_align(out.len()), 0);
}

impl Socket {
    /// Opens and binds a socket; `recv_timeout` bounds every receive.
    pub fn open(recv_timeout: Duration) -> Result<Socket, GenlError> {
        // SAFETY: plain socket(2) call.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_GENERIC) };
        if fd < 0 {
            return Err(last_err());
        }
        let s = Socket {
            fd,
            seq: 1,
            backlog: Vec::new(),
        };
        let tv = libc::timeval {
            tv_sec: recv_timeout.as_secs() as libc::time_t,
            tv_usec: recv_timeout.subsec_micros() as libc::suseconds_t,
        };
        // SAFETY: `tv` is a valid timeval for the duration of the call.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(last_err());
        }
        // SAFETY: an all-zero sockaddr_nl is valid; the kernel picks the portid.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `addr` is a valid sockaddr_nl of the given size.
        let rc = unsafe {
            libc::bind(
                fd,
                (&addr as *const libc::sockaddr_nl).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(last_err());
        }
        Ok(s)
    }

    fn send(&mut self, family: u16, cmd: u8, attrs: &[u8]) -> Result<u32, GenlError> {
        self.seq += 1;
        let mut m = Vec::with_capacity(NLMSG_HDRLEN + GENL_HDRLEN + attrs.len());
        let len = (NLMSG_HDRLEN + GENL_HDRLEN + attrs.len()) as u32;
        m.extend_from_slice(&len.to_ne_bytes());
        m.extend_from_slice(&family.to_ne_bytes());
        m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        m.extend_from_slice(&self.seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&[cmd, 1, 0, 0]);
        m.extend_from_slice(attrs);
        // SAFETY: an all-zero sockaddr_nl addresses the kernel.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: `m` and `addr` are valid for their lengths during the call.
        let rc = unsafe {
            libc::sendto(
                self.fd,
                m.as_ptr().cast(),
                m.len(),
                0,
                (&addr as *const libc::sockaddr_nl).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(last_err());
        }
        Ok(self.seq)
    }

    /// Receives one datagram (one or more netlink messages).
    pub fn recv(&self) -> Result<Vec<u8>, GenlError> {
        let mut buf = vec![0u8; RECV_BUF_BYTES];
        // SAFETY: `buf` is valid for writes of its length.
        let n = unsafe { libc::recv(self.fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(last_err());
        }
        buf.truncate(n as usize);
        Ok(buf)
    }

    /// Sends `cmd` with `attrs` to `family` and returns the genl payloads (after `genlmsghdr`)
    /// of the replies, with the command of each, once the ack arrives. An error ack is
    /// [`GenlError::Errno`].
    pub fn request(
        &mut self,
        family: u16,
        cmd: u8,
        attrs: &[u8],
    ) -> Result<Vec<(u8, Vec<u8>)>, GenlError> {
        let seq = self.send(family, cmd, attrs)?;
        let mut replies = Vec::new();
        loop {
            let dgram = self.recv()?;
            for (ty, flags_seq, payload) in messages(&dgram)? {
                if flags_seq != seq {
                    self.backlog.push((ty, payload.to_vec()));
                    continue;
                }
                match ty {
                    NLMSG_ERROR => {
                        let e = payload
                            .get(..4)
                            .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                            .ok_or(GenlError::Malformed("short NLMSG_ERROR"))?;
                        return if e == 0 {
                            Ok(replies)
                        } else {
                            Err(GenlError::Errno(e))
                        };
                    }
                    NLMSG_DONE => return Ok(replies),
                    _ => {
                        let cmd = *payload
                            .first()
                            .ok_or(GenlError::Malformed("no genl header"))?;
                        replies.push((cmd, payload.get(GENL_HDRLEN..).unwrap_or(&[]).to_vec()));
                    }
                }
            }
        }
    }

    /// Resolves a family: its id and its multicast groups by name.
    pub fn resolve(&mut self, name: &str) -> Result<(u16, Vec<(String, u32)>), GenlError> {
        let mut a = Vec::new();
        let mut n = name.as_bytes().to_vec();
        n.push(0);
        put_attr(&mut a, CTRL_ATTR_FAMILY_NAME, &n);
        let replies = self.request(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, &a)?;
        let (_, payload) = replies
            .first()
            .ok_or(GenlError::Malformed("no GETFAMILY reply"))?;
        let mut id = None;
        let mut groups = Vec::new();
        for (ty, p) in attrs(payload) {
            match ty {
                CTRL_ATTR_FAMILY_ID if p.len() >= 2 => id = Some(u16::from_ne_bytes([p[0], p[1]])),
                CTRL_ATTR_MCAST_GROUPS => {
                    for (_, grp) in attrs(p) {
                        let mut gname = String::new();
                        let mut gid = None;
                        for (t, v) in attrs(grp) {
                            match t {
                                CTRL_ATTR_MCAST_GRP_NAME => {
                                    gname = String::from_utf8_lossy(v)
                                        .trim_end_matches('\0')
                                        .to_string()
                                }
                                CTRL_ATTR_MCAST_GRP_ID if v.len() >= 4 => {
                                    gid = Some(u32::from_ne_bytes([v[0], v[1], v[2], v[3]]))
                                }
                                _ => {}
                            }
                        }
                        if let Some(g) = gid {
                            groups.push((gname, g));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok((id.ok_or(GenlError::Malformed("no family id"))?, groups))
    }

    /// The next unsolicited messages: the backlog first, else one datagram's worth.
    pub fn next_messages(&mut self) -> Result<Vec<(u16, Vec<u8>)>, GenlError> {
        if !self.backlog.is_empty() {
            return Ok(std::mem::take(&mut self.backlog));
        }
        let dgram = self.recv()?;
        Ok(messages(&dgram)?
            .into_iter()
            .map(|(t, _, p)| (t, p.to_vec()))
            .collect())
    }
}

/// One netlink message of a datagram: `nlmsg_type`, `nlmsg_seq`, payload.
pub type Nlmsg<'a> = (u16, u32, &'a [u8]);

/// Splits a datagram into its messages.
pub fn messages(dgram: &[u8]) -> Result<Vec<Nlmsg<'_>>, GenlError> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + NLMSG_HDRLEN <= dgram.len() {
        let h = &dgram[off..off + NLMSG_HDRLEN];
        let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let ty = u16::from_ne_bytes([h[4], h[5]]);
        let seq = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]);
        if len < NLMSG_HDRLEN || off + len > dgram.len() {
            return Err(GenlError::Malformed("bad nlmsg_len"));
        }
        out.push((ty, seq, &dgram[off + NLMSG_HDRLEN..off + len]));
        off += nla_align(len);
    }
    Ok(out)
}
