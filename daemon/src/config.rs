//! `mxfsd` configuration: TOML, strict (`deny_unknown_fields`), validated with field names.
//!
//! [`parse_config`] is a pure function of the text so the fuzz target can call it; reading the
//! key file is a separate step ([`Config::load_key`]).

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Largest config file accepted, in bytes.
pub const CONFIG_BYTES_MAX: usize = 1 << 20;
/// Most nodes in one cluster (node ids index the kernel's node array).
pub const PEERS_MAX: usize = mxfs_proto::NODES_MAX;
/// Shortest cluster key, in bytes.
pub const KEY_BYTES_MIN: usize = 16;
/// Longest cluster key file, in bytes.
pub const KEY_BYTES_MAX: usize = 4096;
/// Bounds on the heartbeat interval.
pub const HEARTBEAT_INTERVAL_MS_MIN: u64 = 10;
/// Upper bound on the heartbeat interval.
pub const HEARTBEAT_INTERVAL_MS_MAX: u64 = 60_000;
/// Upper bound on the fence command's timeout.
pub const FENCE_TIMEOUT_MS_MAX: u64 = 600_000;
/// Default of `replay_timeout_ms`: replaying a full XFS log of a few hundred megabytes with
/// its intents takes minutes on slow storage.
pub const REPLAY_TIMEOUT_MS_DEFAULT: u64 = 300_000;
/// Upper bound on the journal replay command's timeout.
pub const REPLAY_TIMEOUT_MS_MAX: u64 = 3_600_000;

/// Which kernel port the daemon drives.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum KernelKind {
    /// The real `mxfs.ko` over Generic Netlink.
    Netlink,
    /// No kernel: only ctl-owned local clients take locks (tests, operators).
    None,
}

/// One cluster member.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// Node id, unique in the cluster, `0..=NODE_ID_MAX`.
    pub id: u32,
    /// Address its peer listener is reachable on.
    pub address: SocketAddr,
    /// Optional name, passed to the fence command.
    #[serde(default)]
    pub name: Option<String>,
}

/// The whole config file.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This node's id; must appear in `peers`.
    pub node_id: u32,
    /// Address the peer listener binds; defaults to this node's `peers` address.
    #[serde(default)]
    pub listen_address: Option<SocketAddr>,
    /// Every cluster member, this node included.
    pub peers: Vec<PeerConfig>,
    /// File holding the shared cluster key (at least `KEY_BYTES_MIN` bytes).
    pub cluster_key_file: PathBuf,
    /// How often heartbeats are sent.
    #[serde(default = "default_heartbeat_interval_ms")]
    pub heartbeat_interval_ms: u64,
    /// Silence after which a peer is declared lost.
    #[serde(default = "default_heartbeat_timeout_ms")]
    pub heartbeat_timeout_ms: u64,
    /// Fence agent command line (program and arguments); the node id and name are appended and
    /// also set as `MXFS_FENCE_NODE_ID` / `MXFS_FENCE_NODE_NAME`.
    pub fence_command: Vec<String>,
    /// How long the fence command may run before it counts as failed.
    #[serde(default = "default_fence_timeout_ms")]
    pub fence_timeout_ms: u64,
    /// Journal replay command line (DESIGN.md §5.5): run by the fencer after a lost node's
    /// fence is confirmed, as `replay_command... <node-id> <node-name>` with
    /// `MXFS_REPLAY_NODE_ID`, `MXFS_REPLAY_NODE_NAME` and `MXFS_REPLAY_EPOCH` set. Exit status
    /// 0 means the node's log is replayed and closed with an unmount record. Required unless
    /// `shared_journals = false`.
    #[serde(default)]
    pub replay_command: Option<Vec<String>>,
    /// How long the replay command may run before it is killed and counts as failed.
    #[serde(default = "default_replay_timeout_ms")]
    pub replay_timeout_ms: u64,
    /// `false` declares a cluster that mounts no MXFS volume (lock-only use): a lost node
    /// leaves no journal, so its replay is done at once. Default `true`: `replay_command` is
    /// required.
    #[serde(default = "default_shared_journals")]
    pub shared_journals: bool,
    /// Volume (path or label) this daemon serves; informational for `kernel = "none"`.
    #[serde(default)]
    pub volume: Option<String>,
    /// Kernel port: `"netlink"` (real module) or `"none"`.
    #[serde(default = "default_kernel")]
    pub kernel: KernelKind,
    /// Unix socket for `mxfsctl`.
    pub ctl_socket: PathBuf,
    /// Optional Prometheus endpoint (must be a loopback address).
    #[serde(default)]
    pub metrics_address: Option<SocketAddr>,
    /// Enables test-only ctl commands (peer traffic drop). Never set in production.
    #[serde(default)]
    pub test_hooks: bool,
}

fn default_heartbeat_interval_ms() -> u64 {
    200
}
fn default_heartbeat_timeout_ms() -> u64 {
    1_000
}
fn default_fence_timeout_ms() -> u64 {
    10_000
}
fn default_replay_timeout_ms() -> u64 {
    REPLAY_TIMEOUT_MS_DEFAULT
}
fn default_shared_journals() -> bool {
    true
}
fn default_kernel() -> KernelKind {
    KernelKind::Netlink
}

/// A config error; the message names the offending field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The TOML did not parse or did not match the schema (serde names the field).
    #[error("config: {0}")]
    Syntax(String),
    /// A field has a value outside what is allowed.
    #[error("config: field `{field}`: {reason}")]
    Invalid {
        /// Dotted field path, e.g. `peers[1].id`.
        field: String,
        /// Why it was refused.
        reason: String,
    },
    /// The config or key file could not be read.
    #[error("config: cannot read {path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        reason: String,
    },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Parses and validates a config text. Never panics, whatever the input.
pub fn parse_config(text: &str) -> Result<Config, ConfigError> {
    if text.len() > CONFIG_BYTES_MAX {
        return Err(invalid(
            "<file>",
            format!("longer than {CONFIG_BYTES_MAX} bytes"),
        ));
    }
    let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
    cfg.validate()?;
    Ok(cfg)
}

impl Config {
    /// Reads and parses a config file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        parse_config(&text)
    }

    /// Checks every cross-field rule; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id > mxfs_proto::NODE_ID_MAX {
            return Err(invalid(
                "node_id",
                format!("must be <= {}", mxfs_proto::NODE_ID_MAX),
            ));
        }
        if self.peers.is_empty() {
            return Err(invalid("peers", "must list every node, this one included"));
        }
        if self.peers.len() > PEERS_MAX {
            return Err(invalid("peers", format!("at most {PEERS_MAX} nodes")));
        }
        for (i, p) in self.peers.iter().enumerate() {
            if p.id > mxfs_proto::NODE_ID_MAX {
                return Err(invalid(
                    format!("peers[{i}].id"),
                    format!("must be <= {}", mxfs_proto::NODE_ID_MAX),
                ));
            }
            if self.peers[..i].iter().any(|q| q.id == p.id) {
                return Err(invalid(
                    format!("peers[{i}].id"),
                    format!("duplicate id {}", p.id),
                ));
            }
            if self.peers[..i].iter().any(|q| q.address == p.address) {
                return Err(invalid(
                    format!("peers[{i}].address"),
                    format!("duplicate address {}", p.address),
                ));
            }
            if p.address.port() == 0 {
                return Err(invalid(format!("peers[{i}].address"), "port must not be 0"));
            }
        }
        if !self.peers.iter().any(|p| p.id == self.node_id) {
            return Err(invalid(
                "node_id",
                format!("{} is not listed in `peers`", self.node_id),
            ));
        }
        if !(HEARTBEAT_INTERVAL_MS_MIN..=HEARTBEAT_INTERVAL_MS_MAX)
            .contains(&self.heartbeat_interval_ms)
        {
            return Err(invalid(
                "heartbeat_interval_ms",
                format!("must be in {HEARTBEAT_INTERVAL_MS_MIN}..={HEARTBEAT_INTERVAL_MS_MAX}"),
            ));
        }
        if self.heartbeat_timeout_ms < 2 * self.heartbeat_interval_ms
            || self.heartbeat_timeout_ms > 100 * HEARTBEAT_INTERVAL_MS_MAX
        {
            return Err(invalid(
                "heartbeat_timeout_ms",
                "must be at least 2 x heartbeat_interval_ms and at most 6000000",
            ));
        }
        if self.fence_command.is_empty() || self.fence_command[0].is_empty() {
            return Err(invalid("fence_command", "must name a program"));
        }
        if self.fence_timeout_ms == 0 || self.fence_timeout_ms > FENCE_TIMEOUT_MS_MAX {
            return Err(invalid(
                "fence_timeout_ms",
                format!("must be in 1..={FENCE_TIMEOUT_MS_MAX}"),
            ));
        }
        match (&self.replay_command, self.shared_journals) {
            (None, true) => {
                return Err(invalid(
                    "replay_command",
                    "missing: give the command that replays a lost node's journal (DESIGN.md \
                     §5.5), or set `shared_journals = false` for a cluster that mounts no MXFS \
                     volume",
                ))
            }
            (Some(_), false) => {
                return Err(invalid(
                    "shared_journals",
                    "is false, so there is nothing to replay, but `replay_command` is set: keep \
                     one of the two",
                ))
            }
            (Some(c), true) if c.is_empty() || c[0].is_empty() => {
                return Err(invalid("replay_command", "must name a program"));
            }
            _ => {}
        }
        if self.replay_timeout_ms == 0 || self.replay_timeout_ms > REPLAY_TIMEOUT_MS_MAX {
            return Err(invalid(
                "replay_timeout_ms",
                format!("must be in 1..={REPLAY_TIMEOUT_MS_MAX}"),
            ));
        }
        if self.ctl_socket.as_os_str().is_empty() {
            return Err(invalid("ctl_socket", "must not be empty"));
        }
        if self.cluster_key_file.as_os_str().is_empty() {
            return Err(invalid("cluster_key_file", "must not be empty"));
        }
        if let Some(m) = self.metrics_address {
            if !m.ip().is_loopback() {
                return Err(invalid("metrics_address", "must be a loopback address"));
            }
        }
        Ok(())
    }

    /// This node's own peer entry.
    pub fn me(&self) -> &PeerConfig {
        let me = self.peers.iter().find(|p| p.id == self.node_id);
        me.expect("validate() checked node_id is in peers")
    }

    /// Address the peer listener binds.
    pub fn listen(&self) -> SocketAddr {
        self.listen_address.unwrap_or(self.me().address)
    }

    /// Reads the cluster key file.
    pub fn load_key(&self) -> Result<Vec<u8>, ConfigError> {
        let path = &self.cluster_key_file;
        let key = std::fs::read(path).map_err(|e| ConfigError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let key = trim_ascii_end(&key);
        if key.len() < KEY_BYTES_MIN || key.len() > KEY_BYTES_MAX {
            return Err(invalid(
                "cluster_key_file",
                format!(
                    "{}: key must be {KEY_BYTES_MIN}..={KEY_BYTES_MAX} bytes, got {}",
                    path.display(),
                    key.len()
                ),
            ));
        }
        Ok(key.to_vec())
    }
}

fn trim_ascii_end(b: &[u8]) -> &[u8] {
    let mut end = b.len();
    while end > 0 && b[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    &b[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
node_id = 1
peers = [
  { id = 1, address = "127.0.0.1:7001" },
  { id = 2, address = "127.0.0.1:7002", name = "b" },
]
cluster_key_file = "/etc/mxfs/key"
fence_command = ["/bin/true"]
replay_command = ["/usr/local/sbin/mxfs-replay", "--volume", "/dev/mapper/shared-proxy"]
kernel = "none"
ctl_socket = "/run/mxfs.sock"
"#;

    #[test]
    fn good_config_parses_with_defaults() {
        let c = parse_config(GOOD).unwrap();
        assert_eq!(c.node_id, 1);
        assert_eq!(c.heartbeat_interval_ms, 200);
        assert_eq!(c.kernel, KernelKind::None);
        assert_eq!(c.listen(), "127.0.0.1:7001".parse().unwrap());
        assert_eq!(c.replay_command.as_ref().unwrap().len(), 3);
        assert_eq!(c.replay_timeout_ms, REPLAY_TIMEOUT_MS_DEFAULT);
        assert!(c.shared_journals);
    }

    #[test]
    fn example_config_parses() {
        let c = parse_config(include_str!("../mxfsd.example.toml")).unwrap();
        assert!(c.replay_command.is_some() && c.shared_journals);
    }

    #[test]
    fn journal_replay_is_configured_or_explicitly_absent() {
        let without = GOOD
            .lines()
            .filter(|l| !l.starts_with("replay_command"))
            .collect::<Vec<_>>()
            .join("\n");
        let e = parse_config(&without).unwrap_err().to_string();
        assert!(
            e.contains("`replay_command`") && e.contains("shared_journals = false"),
            "{e}"
        );
        let lock_only = parse_config(&format!("{without}\nshared_journals = false\n")).unwrap();
        assert!(!lock_only.shared_journals && lock_only.replay_command.is_none());
        let both = parse_config(&format!("{GOOD}shared_journals = false\n")).unwrap_err();
        assert!(both.to_string().contains("`shared_journals`"), "{both}");
    }

    #[test]
    fn unknown_field_is_named() {
        let e = parse_config(&format!("{GOOD}\nheartbeat_interval = 5\n")).unwrap_err();
        assert!(e.to_string().contains("heartbeat_interval"), "{e}");
    }

    #[test]
    fn bad_values_name_their_field() {
        let cases = [
            (GOOD.replace("node_id = 1", "node_id = 9"), "node_id"),
            (GOOD.replace("id = 2,", "id = 1,"), "peers[1].id"),
            (GOOD.replace("7002", "7001"), "peers[1].address"),
            (
                format!("{GOOD}heartbeat_interval_ms = 1\n"),
                "heartbeat_interval_ms",
            ),
            (
                format!("{GOOD}heartbeat_timeout_ms = 100\n"),
                "heartbeat_timeout_ms",
            ),
            (GOOD.replace("[\"/bin/true\"]", "[]"), "fence_command"),
            (
                GOOD.replace("[\"/usr/local/sbin/mxfs-replay\"", "[\"\""),
                "replay_command",
            ),
            (
                format!("{GOOD}replay_timeout_ms = 0\n"),
                "replay_timeout_ms",
            ),
            (
                format!("{GOOD}replay_timeout_ms = 3600001\n"),
                "replay_timeout_ms",
            ),
            (
                format!("{GOOD}metrics_address = \"10.0.0.1:9\"\n"),
                "metrics_address",
            ),
            (GOOD.replace("\"none\"", "\"nope\""), "kernel"),
        ];
        for (text, field) in cases {
            let e = parse_config(&text).unwrap_err().to_string();
            assert!(e.contains(field), "expected {field} in {e}");
        }
    }
}
