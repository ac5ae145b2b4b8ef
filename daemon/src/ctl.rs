//! The ctl protocol between `mxfsctl` and `mxfsd`: one JSON object per line each way, over a
//! unix socket. A request that does not parse gets an `error` reply, never a crash.

use crate::membership::PeerView;
use mxfs_core::{LockMode, ResourceId};
use serde::{Deserialize, Serialize};

/// Longest request line accepted, in bytes. A longer line gets an `error` reply and the
/// connection is closed.
pub const CTL_LINE_BYTES_MAX: usize = 64 * 1024;

/// The codec that splits a ctl connection into lines: the daemon reads with
/// `line_codec(CTL_LINE_BYTES_MAX)`; the fuzz oracle uses a smaller limit its inputs reach.
pub fn line_codec(max_bytes: usize) -> tokio_util::codec::LinesCodec {
    tokio_util::codec::LinesCodec::new_with_max_length(max_bytes)
}

/// Parses one request line, as the daemon does with every line it reads.
pub fn parse_request(line: &str) -> Result<CtlRequest, String> {
    serde_json::from_str(line).map_err(|e| format!("bad request: {e}"))
}

/// A request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum CtlRequest {
    /// Members, quorum, epoch, recovery history.
    Status {},
    /// Every resource with its queues.
    Locks {},
    /// The most contended resources.
    Top {
        /// How many lines.
        limit: usize,
    },
    /// Take a lock on behalf of the ctl-owned local client; answered when granted or denied.
    Lock {
        /// `inode:VOL:INO`, `extent:VOL:INO:OFF`, `ag:VOL:AGNO` or `volume:VOL`.
        resource: String,
        /// NL, CR, CW, PR, PW or EX.
        mode: String,
        /// Deny at once if not grantable.
        #[serde(default)]
        noqueue: bool,
        /// Deny if not granted within this many milliseconds.
        #[serde(default)]
        timeout_ms: Option<u32>,
    },
    /// Release every lock the local client holds on `resource`.
    Unlock {
        /// Resource, as for `Lock`.
        resource: String,
    },
    /// Kernel-bound messages (grants, denies, CACHE_INVAL, recovery) with sequence >= `since`.
    Events {
        /// First sequence number wanted.
        #[serde(default)]
        since: u64,
    },
    /// Test hook (needs `test_hooks = true`): drop all peer traffic, or resume it.
    Isolate {
        /// Drop (true) or resume (false).
        on: bool,
    },
    /// Test hook (needs `test_hooks = true`): silently drop the next `count` lock-core messages
    /// this daemon sends (a message lost in transit).
    DropCore {
        /// How many.
        count: u32,
    },
}

/// A queue entry as shown by `mxfsctl locks`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderView {
    /// Node (master view) or request id (local view).
    pub who: String,
    /// Mode (granted or wanted).
    pub mode: String,
    /// Mode still held during a conversion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    /// Milliseconds in this queue.
    pub age_ms: u64,
}

/// One master resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterView {
    /// Resource.
    pub resource: String,
    /// Master node.
    pub master: u32,
    /// Data version `epoch.counter`.
    pub version: String,
    /// Granted queue.
    pub granted: Vec<HolderView>,
    /// Convert queue.
    pub converting: Vec<HolderView>,
    /// Wait queue.
    pub waiting: Vec<HolderView>,
}

/// This node's view of one resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalView {
    /// Resource.
    pub resource: String,
    /// Current master.
    pub master: Option<u32>,
    /// Cluster lock mode held by this node (possibly cached).
    pub held: Option<String>,
    /// Local holders.
    pub holders: Vec<HolderView>,
    /// Local waiters.
    pub waiting: Vec<HolderView>,
    /// A BAST is pending.
    pub bast_pending: bool,
}

/// One recovery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryView {
    /// Epoch recovered into.
    pub epoch: u64,
    /// Lost nodes.
    pub lost: Vec<u32>,
    /// Duration, if finished.
    pub duration_ms: Option<u64>,
    /// Start, in ms since the daemon started.
    pub started_ms: u64,
    /// From the start until this node knew every lost node fenced.
    #[serde(default)]
    pub fence_ms: Option<u64>,
    /// From then until it knew every lost node's journal replayed (0 when none needed one;
    /// on a node other than the replayer, fence and replay are learnt together).
    #[serde(default)]
    pub replay_ms: Option<u64>,
    /// From then until the master tables were rebuilt and locking resumed.
    #[serde(default)]
    pub remaster_ms: Option<u64>,
    /// Journal replays that failed on this node during this recovery (each retried).
    #[serde(default)]
    pub replay_failures: u32,
}

/// `status` reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    /// This node.
    pub node_id: u32,
    /// Kernel port.
    pub kernel: String,
    /// Installed epoch.
    pub epoch: u64,
    /// Members of that epoch.
    pub members: Vec<u32>,
    /// Configured cluster size.
    pub cluster_size: usize,
    /// Whether the members are a strict majority.
    pub quorum: bool,
    /// Core phase: Normal, Fencing, Replaying, Rebuilding, Stopped.
    pub phase: String,
    /// Peers.
    pub peers: Vec<PeerView>,
    /// Recovery history, oldest first.
    pub recoveries: Vec<RecoveryView>,
    /// Whether this node was told to fence itself (minority).
    pub self_fenced: bool,
    /// The member that runs the fence agents of this epoch (the lowest id).
    pub fencer: u32,
    /// Lost nodes whose fence is not confirmed yet (recovery waits for them).
    pub awaiting_fence: Vec<u32>,
    /// Nodes whose journal replay this node has not learnt of (recovery waits for them):
    /// lost nodes, and on a first mounter every node, members included.
    #[serde(default)]
    pub awaiting_replay: Vec<u32>,
    /// Nodes whose journal this node replays now (or again after a failure).
    #[serde(default)]
    pub replaying: Vec<u32>,
    /// Whether this node knows which journals may be dirty (it resumed in a quorate
    /// membership and has not stopped since). A fresh node does not; if no member does, the
    /// cluster starts cold and its fencer replays every journal (first mounter).
    #[serde(default)]
    pub journals_known: bool,
    /// As the fencer: members whose journal report it waits for before any replay.
    #[serde(default)]
    pub awaiting_reports: Vec<u32>,
    /// Test hook state.
    pub isolated: bool,
    /// Milliseconds since start.
    pub uptime_ms: u64,
}

/// One contended resource for `top`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopLine {
    /// Resource.
    pub resource: String,
    /// Holders granted now.
    pub granted: usize,
    /// Waiting or converting now.
    pub waiting: usize,
    /// Requests for it that waited (grant slower than `WAIT_THRESHOLD_MS`, or timed out) since
    /// start (this node).
    pub waits_total: u64,
    /// Grants of it since start (this node).
    pub grants_total: u64,
}

/// One kernel-bound event, as logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventView {
    /// Sequence number (dense, from 0).
    pub seq: u64,
    /// Milliseconds since start.
    pub at_ms: u64,
    /// `grant`, `deny`, `cache_inval`, `recovery_start`, `recovery_done`, `node_status`,
    /// `fence`, `self_fence`.
    pub kind: String,
    /// Request id, for grants and denies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req_id: Option<u64>,
    /// Resource or inode range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Human-readable rest.
    pub detail: String,
}

/// A reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum CtlReply {
    /// The request failed.
    Error {
        /// Why.
        error: String,
    },
    /// `status`.
    Status(StatusView),
    /// `locks`.
    Locks {
        /// Resources this node masters.
        master: Vec<MasterView>,
        /// This node's own resources.
        local: Vec<LocalView>,
    },
    /// `top`.
    Top {
        /// Most contended first.
        lines: Vec<TopLine>,
    },
    /// `lock` granted.
    Granted {
        /// Request id the daemon allocated.
        req_id: u64,
        /// Resource.
        resource: String,
        /// Mode.
        mode: String,
        /// Milliseconds from request to grant.
        waited_ms: u64,
    },
    /// `lock` denied.
    Denied {
        /// Request id.
        req_id: u64,
        /// Negative errno.
        errno: i32,
        /// Its meaning.
        reason: String,
    },
    /// `unlock` done.
    Unlocked {
        /// Request ids released.
        released: Vec<u64>,
    },
    /// `events`.
    Events {
        /// Entries.
        events: Vec<EventView>,
        /// Sequence number to ask for next.
        next: u64,
    },
    /// Done.
    Ok,
}

/// Parses a lock mode name (case-insensitive).
pub fn parse_mode(s: &str) -> Result<LockMode, String> {
    LockMode::ALL
        .into_iter()
        .find(|m| m.name().eq_ignore_ascii_case(s))
        .ok_or_else(|| format!("unknown lock mode `{s}` (want NL, CR, CW, PR, PW or EX)"))
}

fn num(s: &str, what: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("bad {what} `{s}`: not a number"))
}

/// Parses `inode:VOL:INO`, `extent:VOL:INO:OFF`, `ag:VOL:AGNO` or `volume:VOL` (numbers
/// decimal or 0x hex).
/// An extent offset is rounded down to its chunk.
pub fn parse_resource(s: &str) -> Result<ResourceId, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let r = match parts.as_slice() {
        ["inode", v, i] => ResourceId::inode(num(v, "volume")?, num(i, "inode number")?),
        ["extent", v, i, o] => ResourceId::extent(
            num(v, "volume")?,
            num(i, "inode number")?,
            num(o, "offset")?,
        ),
        ["ag", v, a] => ResourceId::ag(num(v, "volume")?, num(a, "AG number")?),
        ["volume", v] => ResourceId::volume(num(v, "volume")?),
        _ => {
            return Err(format!(
                "bad resource `{s}` (want inode:VOL:INO, extent:VOL:INO:OFF, ag:VOL:AGNO or \
                 volume:VOL)"
            ))
        }
    };
    Ok(r)
}

/// The text form `parse_resource` reads.
pub fn format_resource(r: &ResourceId) -> String {
    use mxfs_core::ResourceType;
    match r.kind {
        ResourceType::Inode => format!("inode:{}:{}", r.volume, r.a),
        ResourceType::Extent => format!("extent:{}:{}:{}", r.volume, r.a, r.b),
        ResourceType::Ag => format!("ag:{}:{}", r.volume, r.a),
        ResourceType::Volume => format!("volume:{}", r.volume),
    }
}

/// Meaning of a core errno.
pub fn errno_name(e: i32) -> &'static str {
    match e {
        mxfs_core::EAGAIN => "EAGAIN: not grantable now (noqueue) or queue full",
        mxfs_core::ENOMEM => "ENOMEM: table limit reached",
        mxfs_core::EINVAL => "EINVAL: malformed request",
        mxfs_core::ENOLCK => "ENOLCK: no quorum, this node grants nothing",
        mxfs_core::ETIMEDOUT => "ETIMEDOUT: not granted within the timeout",
        _ => "unknown errno",
    }
}

/// Client side: sends one request and reads one reply.
pub async fn call(socket: &std::path::Path, req: &CtlRequest) -> Result<CtlReply, String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let s = tokio::net::UnixStream::connect(socket).await.map_err(|e| {
        format!(
            "cannot connect to {}: {e} (is mxfsd running?)",
            socket.display()
        )
    })?;
    let (r, mut w) = s.into_split();
    let mut line = serde_json::to_string(req).map_err(|e| e.to_string())?;
    line.push('\n');
    w.write_all(line.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut reply = String::new();
    BufReader::new(r)
        .read_line(&mut reply)
        .await
        .map_err(|e| e.to_string())?;
    if reply.is_empty() {
        return Err("mxfsd closed the connection without a reply".into());
    }
    serde_json::from_str(&reply).map_err(|e| format!("bad reply from mxfsd: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_parse_and_print() {
        for s in [
            "inode:1:42",
            "extent:7:3:1048576",
            "ag:0x10:2",
            "volume:0xabcd",
        ] {
            let r = parse_resource(s).unwrap();
            assert_eq!(parse_resource(&format_resource(&r)).unwrap(), r);
        }
        assert_eq!(parse_resource("extent:1:2:1048577").unwrap().b, 1 << 20);
        assert!(parse_resource("inode:1").unwrap_err().contains("inode:1"));
        assert!(parse_resource("ag:x:1").unwrap_err().contains("volume"));
        assert_eq!(
            parse_resource("volume:7").unwrap(),
            mxfs_core::ResourceId::volume(7)
        );
        assert!(parse_resource("volume:7:1")
            .unwrap_err()
            .contains("volume:VOL"));
        assert_eq!(parse_mode("ex").unwrap(), LockMode::Ex);
        assert!(parse_mode("XX").is_err());
    }

    #[test]
    fn requests_are_strict_json() {
        let r: CtlRequest =
            serde_json::from_str(r#"{"cmd":"lock","resource":"ag:1:2","mode":"PR"}"#).unwrap();
        assert!(matches!(
            r,
            CtlRequest::Lock {
                noqueue: false,
                timeout_ms: None,
                ..
            }
        ));
        assert!(serde_json::from_str::<CtlRequest>(r#"{"cmd":"status","x":1}"#).is_err());
        assert!(serde_json::from_str::<CtlRequest>(r#"{"cmd":"nope"}"#).is_err());
    }
}
