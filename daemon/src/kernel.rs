//! The kernel side of the daemon, behind [`KernelPort`].
//!
//! - [`NullPort`] (`kernel = "none"`): no module; only ctl-owned local clients take locks. Every
//!   kernel message is still recorded in the daemon's event log, so tests observe CACHE_INVAL
//!   and grant order exactly as the module would receive it.
//! - [`NetlinkPort`] (`kernel = "netlink"`): the real `mxfs.ko` over Generic Netlink. neli
//!   resolves the family and multicast groups; messages are encoded and parsed with `mxfs-proto`
//!   only (one strict parser shared with the module and the fuzz targets).

use mxfs_core::{Event, KernelMsg};
use mxfs_proto as proto;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Where the daemon's kernel messages go.
pub trait KernelPort: Send {
    /// Delivers one message to the kernel, in order; never blocks.
    fn deliver(&mut self, msg: &KernelMsg);
    /// A short description for status output.
    fn describe(&self) -> String;
}

/// No kernel module (tests and operators); messages only reach the event log.
pub struct NullPort;

impl KernelPort for NullPort {
    fn deliver(&mut self, _msg: &KernelMsg) {}
    fn describe(&self) -> String {
        "none".into()
    }
}

/// Errors setting up the netlink port.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The `mxfs` family is not registered.
    #[error("mxfs genetlink family not found: is mxfs.ko loaded? ({0})")]
    NoFamily(String),
    /// A multicast group is missing.
    #[error("mxfs genetlink multicast group `{0}` not found: mxfs.ko version mismatch? ({1})")]
    NoGroup(&'static str, String),
    /// Socket error.
    #[error("netlink socket: {0}")]
    Io(#[from] std::io::Error),
    /// Other neli error.
    #[error("netlink: {0}")]
    Netlink(String),
}

/// Largest datagram read from the netlink socket.
pub const NL_RECV_BYTES_MAX: usize = 64 * 1024;
/// Kernel messages queued for the writer task.
pub const NL_SEND_QUEUE_MAX: usize = 65_536;
const NLMSG_ERROR: u16 = 2;

/// The real module over Generic Netlink.
pub struct NetlinkPort {
    family: u16,
    portid: u32,
    volumes: Arc<Mutex<BTreeSet<u64>>>,
    out: mpsc::Sender<Vec<u8>>,
    seq: u32,
}

/// Converts a parsed kernel message into a core event, if it is one.
pub fn event_of(msg: &proto::Message<'_>) -> Option<Event> {
    match msg {
        proto::Message::LockReq(r) => Some(Event::KernelRequest {
            req_id: r.req_id,
            resource: r.resource,
            mode: r.mode,
            flags: r.flags,
            timeout_ms: r.timeout_ms.unwrap_or(0),
        }),
        proto::Message::LockRelease(r) => Some(match r.mode {
            Some(_) => Event::KernelRelease {
                req_id: r.req_id,
                resource: r.resource,
            },
            // A grant that arrived after the kernel gave up: hand it back.
            None => Event::KernelCancel { req_id: r.req_id },
        }),
        _ => None,
    }
}

/// Converts core kernel messages into wire messages (one per mounted volume for recovery).
pub fn messages_of(msg: &KernelMsg, volumes: &BTreeSet<u64>) -> Vec<proto::Message<'static>> {
    match *msg {
        KernelMsg::Grant {
            req_id,
            resource,
            mode,
        } => {
            vec![proto::Message::LockGrant(proto::LockGrant {
                req_id,
                resource,
                mode,
                data_version: None,
            })]
        }
        KernelMsg::Deny {
            req_id,
            resource,
            errno,
        } => {
            vec![proto::Message::LockDeny(proto::LockDeny {
                req_id,
                resource,
                status: errno,
            })]
        }
        KernelMsg::CacheInval {
            volume,
            ino,
            offset,
            len,
        } => {
            vec![proto::Message::CacheInval(proto::CacheInval {
                volume,
                ino,
                offset,
                length: len,
            })]
        }
        KernelMsg::NodeStatus { node, state } => {
            vec![proto::Message::NodeStatus(proto::NodeStatus {
                node_id: node,
                state,
                epoch: None,
            })]
        }
        KernelMsg::RecoveryStart { epoch } => volumes
            .iter()
            .map(|v| proto::Message::RecoveryStart(proto::RecoveryStart { volume: *v, epoch }))
            .collect(),
        KernelMsg::RecoveryDone { epoch } => volumes
            .iter()
            .map(|v| proto::Message::RecoveryDone(proto::RecoveryDone { volume: *v, epoch }))
            .collect(),
    }
}

impl NetlinkPort {
    /// Resolves the family, joins the `locks` and `status` groups, registers with
    /// `STATUS_REQ`, and starts the reader (events to `events`) and writer tasks.
    pub async fn start(events: mpsc::Sender<Event>) -> Result<NetlinkPort, KernelError> {
        use neli::consts::socket::NlFamily;
        use neli::router::asynchronous::NlRouter;
        use neli::utils::Groups;

        let (router, _multicast) = NlRouter::connect(NlFamily::Generic, None, Groups::empty())
            .await
            .map_err(|e| KernelError::Netlink(e.to_string()))?;
        let family = router
            .resolve_genl_family(proto::FAMILY_NAME)
            .await
            .map_err(|e| KernelError::NoFamily(e.to_string()))?;
        let mut groups = Vec::new();
        for g in [proto::MCGRP_LOCKS, proto::MCGRP_STATUS] {
            let id = router
                .resolve_nl_mcast_group(proto::FAMILY_NAME, g)
                .await
                .map_err(|e| KernelError::NoGroup(g, e.to_string()))?;
            groups.push(id);
        }
        drop(router);

        let sock = neli::socket::NlSocket::connect(NlFamily::Generic, None, Groups::empty())?;
        sock.add_mcast_membership(Groups::new_groups(&groups))?;
        sock.nonblock()?;
        let portid = sock.pid()?;
        // `AsyncFd::new` is deprecated for types that do not prove I/O safety; `NlSocket` owns
        // its fd exclusively and closes it only on drop, after `AsyncFd` deregisters it.
        #[allow(deprecated)]
        let fd = Arc::new(tokio::io::unix::AsyncFd::new(sock)?);
        let volumes = Arc::new(Mutex::new(BTreeSet::new()));
        let (out, out_rx) = mpsc::channel(NL_SEND_QUEUE_MAX);
        tokio::spawn(writer(fd.clone(), out_rx));
        tokio::spawn(reader(
            fd,
            family,
            portid,
            volumes.clone(),
            events,
            out.clone(),
        ));
        let mut port = NetlinkPort {
            family,
            portid,
            volumes,
            out,
            seq: 0,
        };
        port.send(&proto::Message::StatusReq(proto::StatusReq));
        tracing::info!(family, portid, ?groups, "netlink: registered with mxfs.ko");
        Ok(port)
    }

    fn send(&mut self, m: &proto::Message<'_>) {
        self.seq = self.seq.wrapping_add(1);
        if let Some(b) = encode(self.family, self.portid, self.seq, m) {
            if self.out.try_send(b).is_err() {
                tracing::error!("netlink send queue full; {:?} dropped", m.command());
            }
        }
    }
}

fn encode(family: u16, portid: u32, seq: u32, m: &proto::Message<'_>) -> Option<Vec<u8>> {
    let h = proto::NlHeader {
        nlmsg_type: family,
        flags: proto::NLM_F_REQUEST | proto::NLM_F_ACK,
        seq,
        pid: portid,
    };
    let mut buf = vec![0u8; proto::MSG_LEN_MAX];
    match proto::encode_message(&h, m, &mut buf) {
        Ok(n) => {
            buf.truncate(n);
            Some(buf)
        }
        Err(e) => {
            tracing::error!("cannot encode {}: {e}", m.command().name());
            None
        }
    }
}

impl KernelPort for NetlinkPort {
    fn deliver(&mut self, msg: &KernelMsg) {
        let vols = self.volumes.lock().map(|v| v.clone()).unwrap_or_default();
        for m in messages_of(msg, &vols) {
            self.send(&m);
        }
    }
    fn describe(&self) -> String {
        format!("netlink (family {}, portid {})", self.family, self.portid)
    }
}

type Fd = Arc<tokio::io::unix::AsyncFd<neli::socket::NlSocket>>;

async fn writer(fd: Fd, mut rx: mpsc::Receiver<Vec<u8>>) {
    use neli::consts::socket::Msg;
    while let Some(b) = rx.recv().await {
        loop {
            let Ok(mut g) = fd.writable().await else {
                return;
            };
            match g.try_io(|s| s.get_ref().send(&b, Msg::empty())) {
                Ok(Ok(_)) => break,
                Ok(Err(e)) => {
                    tracing::error!("netlink send: {e}");
                    break;
                }
                Err(_would_block) => continue,
            }
        }
    }
}

async fn reader(
    fd: Fd,
    family: u16,
    portid: u32,
    volumes: Arc<Mutex<BTreeSet<u64>>>,
    events: mpsc::Sender<Event>,
    out: mpsc::Sender<Vec<u8>>,
) {
    use neli::consts::socket::Msg;
    let mut buf = vec![0u8; NL_RECV_BYTES_MAX];
    let mut seq = 1u32 << 31;
    loop {
        let n = loop {
            let Ok(mut g) = fd.readable().await else {
                return;
            };
            match g.try_io(|s| s.get_ref().recv(&mut buf[..], Msg::empty())) {
                Ok(Ok((n, _))) => break n,
                Ok(Err(e)) => {
                    tracing::error!("netlink recv: {e}");
                    return;
                }
                Err(_would_block) => continue,
            }
        };
        let mut off = 0;
        while off + proto::NLMSG_HDRLEN <= n {
            let len =
                u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
            if len < proto::NLMSG_HDRLEN || off + len > n {
                tracing::warn!(len, "netlink: truncated message dropped");
                break;
            }
            let one = &buf[off..off + len];
            off += proto::nla_align(len);
            let ty = u16::from_ne_bytes([one[4], one[5]]);
            if ty == NLMSG_ERROR {
                if one.len() >= proto::NLMSG_HDRLEN + 4 {
                    let e = i32::from_ne_bytes([one[16], one[17], one[18], one[19]]);
                    if e != 0 {
                        tracing::error!(errno = e, "netlink: kernel refused a message");
                    }
                }
                continue;
            }
            if ty != family {
                continue;
            }
            let msg = match proto::parse_message(one) {
                Ok((_, m)) => m,
                Err(e) => {
                    tracing::warn!("netlink: malformed message from kernel dropped: {e}");
                    continue;
                }
            };
            match msg {
                proto::Message::VolumeMount(v) => {
                    tracing::info!(volume = v.volume, dev = ?v.dev_path, mnt = ?v.mount_path, "volume mounted");
                    if let Ok(mut s) = volumes.lock() {
                        s.insert(v.volume);
                    }
                    seq = seq.wrapping_add(1);
                    let ack = proto::Message::VolumeMount(proto::VolumeMount {
                        volume: v.volume,
                        dev_path: None,
                        mount_path: None,
                        generation: None,
                    });
                    if let Some(b) = encode(family, portid, seq, &ack) {
                        let _ = out.try_send(b);
                    }
                }
                proto::Message::VolumeUmount(v) => {
                    tracing::info!(volume = v.volume, "volume unmounted");
                    if let Ok(mut s) = volumes.lock() {
                        s.remove(&v.volume);
                    }
                }
                proto::Message::StatusResp(s) => {
                    tracing::info!(?s, "kernel status");
                    // A daemon (re)started after the mount learns the volume from here, as
                    // the kernel does not announce an existing mount again.
                    if let (Some(v), Ok(mut set)) = (s.volume, volumes.lock()) {
                        set.insert(v);
                    }
                }
                other => match event_of(&other) {
                    Some(ev) => {
                        if events.send(ev).await.is_err() {
                            return;
                        }
                    }
                    None => {
                        tracing::warn!("netlink: unexpected {} from kernel", other.command().name())
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mxfs_core::{LockMode, ResourceId};

    #[test]
    fn core_messages_round_trip_through_the_proto_codec() {
        let r = ResourceId::inode(7, 42);
        let vols: BTreeSet<u64> = [7, 8].into_iter().collect();
        let msgs = [
            KernelMsg::Grant {
                req_id: 1,
                resource: r,
                mode: LockMode::Ex,
            },
            KernelMsg::Deny {
                req_id: 2,
                resource: r,
                errno: -11,
            },
            KernelMsg::CacheInval {
                volume: 7,
                ino: 42,
                offset: 0,
                len: 0,
            },
            KernelMsg::RecoveryStart { epoch: 3 },
        ];
        let mut n = 0;
        for m in &msgs {
            for w in messages_of(m, &vols) {
                let b = encode(0x20, 5, 1, &w).unwrap();
                let (_, back) = proto::parse_message(&b).unwrap();
                assert_eq!(back, w);
                n += 1;
            }
        }
        assert_eq!(n, 5, "recovery start goes once per mounted volume");
    }

    #[test]
    fn kernel_requests_become_core_events() {
        let r = ResourceId::ag(1, 3);
        let req = proto::Message::LockReq(proto::LockReq {
            req_id: 9,
            resource: r,
            mode: LockMode::Pw,
            flags: proto::LockFlags::NOQUEUE,
            timeout_ms: None,
        });
        let b = encode(0x20, 0, 1, &req).unwrap();
        let (_, m) = proto::parse_message(&b).unwrap();
        assert_eq!(
            event_of(&m),
            Some(Event::KernelRequest {
                req_id: 9,
                resource: r,
                mode: LockMode::Pw,
                flags: proto::LockFlags::NOQUEUE,
                timeout_ms: 0
            })
        );
    }
}
