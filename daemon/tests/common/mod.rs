//! Test harness: real `mxfsd` processes on 127.0.0.1 with random free ports, temp dirs, a fence
//! script that records what it fenced, bounded waits everywhere, and children killed on drop.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const MXFSD: &str = env!("CARGO_BIN_EXE_mxfsd");
pub const MXFSCTL: &str = env!("CARGO_BIN_EXE_mxfsctl");
/// Upper bound on any single wait in these tests.
pub const WAIT_MS: u64 = 15_000;
pub const HEARTBEAT_INTERVAL_MS: u64 = 100;
pub const HEARTBEAT_TIMEOUT_MS: u64 = 1500;

/// A port nobody listens on, below the kernel's ephemeral range (32768..) so that outgoing
/// connections never take it, and unique within this test process (a counter from a base
/// that differs per process), so parallel tests never pick the same one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 500) * 24,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let p = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(p < 32_768, "ran out of test ports");
        if std::net::TcpListener::bind(("127.0.0.1", p as u16)).is_ok() {
            return p as u16;
        }
    }
}

/// Polls `f` until it returns `Some` or `ms` pass.
pub fn wait_for<T>(what: &str, ms: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_millis(ms);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {ms} ms waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub struct Node {
    pub id: u32,
    pub metrics_port: u16,
    pub config: PathBuf,
    pub sock: PathBuf,
    pub port: u16,
    pub log: PathBuf,
    pub child: Option<Child>,
}

impl Node {
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "node {} already running", self.id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(MXFSD)
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn mxfsd");
        self.child = Some(child);
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait (bounded) for a clean exit; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("node running");
        let ok = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill -TERM failed");
        wait_for("mxfsd to exit after SIGTERM", WAIT_MS, || {
            c.try_wait().unwrap()
        })
    }

    pub fn ctl_output(&self, args: &[&str]) -> Output {
        Command::new(MXFSCTL)
            .arg("--socket")
            .arg(&self.sock)
            .arg("--json")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run mxfsctl")
    }

    /// Runs mxfsctl and parses its JSON reply.
    pub fn ctl(&self, args: &[&str]) -> Value {
        let out = self.ctl_output(args);
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.trim()).unwrap_or_else(|e| {
            panic!(
                "mxfsctl {args:?} on node {}: bad JSON ({e}): stdout {text:?} stderr {:?}",
                self.id,
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// Starts `mxfsctl lock` in the background (it blocks until granted or denied).
    pub fn lock_bg(&self, resource: &str, mode: &str, extra: &[&str]) -> Child {
        Command::new(MXFSCTL)
            .arg("--socket")
            .arg(&self.sock)
            .arg("--json")
            .args(["lock", resource, mode])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mxfsctl lock")
    }

    pub fn status(&self) -> Value {
        self.ctl(&["status"])
    }

    pub fn members(&self) -> Option<Vec<u64>> {
        let out = self.ctl_output(&["status"]);
        let v: Value = serde_json::from_slice(&out.stdout).ok()?;
        if v["phase"] != "Normal" {
            return None;
        }
        Some(
            v["members"]
                .as_array()?
                .iter()
                .filter_map(|m| m.as_u64())
                .collect(),
        )
    }

    pub fn events(&self) -> Vec<Value> {
        self.ctl(&["events"])["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
    pub fence_log: PathBuf,
    /// Where the test replay command records each replay: `<node-id> <name> <epoch>`.
    pub replay_log: PathBuf,
}

pub fn write_key(path: &Path, seed: &str) {
    std::fs::write(path, format!("mxfs-test-cluster-key-{seed}-0123456789\n")).unwrap();
}

impl Cluster {
    /// Writes configs for `n` nodes (ids 1..=n). `key_of(id)` names each node's key seed.
    pub fn configure(n: u32, key_of: impl Fn(u32) -> &'static str) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let fence_log = dir.path().join("fenced.log");
        let fence = dir.path().join("fence.sh");
        std::fs::write(
            &fence,
            format!(
                "#!/bin/sh\n# While HOLD exists the agent waits (bounded by fence_timeout_ms).\n\
                 while [ -e {} ]; do sleep 0.05; done\n\
                 echo \"$MXFS_FENCE_NODE_ID $2\" >> {}\n",
                dir.path().join("fence.hold").display(),
                fence_log.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fence, std::fs::Permissions::from_mode(0o755)).unwrap();
        let replay_log = dir.path().join("replayed.log");
        let replay = dir.path().join("replay.sh");
        std::fs::write(
            &replay,
            format!(
                "#!/bin/sh
# While HOLD exists the replay waits; if FAIL exists it fails once.
                 while [ -e {hold} ]; do sleep 0.05; done
                 if [ -e {fail} ]; then rm -f {fail}; echo \"replay of $1 failed (test)\" >&2; \
                 exit 3; fi
                 echo \"$MXFS_REPLAY_NODE_ID $2 $MXFS_REPLAY_EPOCH\" >> {log}
",
                hold = dir.path().join("replay.hold").display(),
                fail = dir.path().join("replay.fail").display(),
                log = replay_log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&replay, std::fs::Permissions::from_mode(0o755)).unwrap();
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let peers: String = (1..=n)
            .map(|i| {
                format!(
                    "  {{ id = {i}, address = \"127.0.0.1:{}\", name = \"n{i}\" }},\n",
                    ports[i as usize - 1]
                )
            })
            .collect();
        let mut nodes = Vec::new();
        for i in 1..=n {
            let key = dir.path().join(format!("key-{}", key_of(i)));
            write_key(&key, key_of(i));
            let sock = dir.path().join(format!("n{i}.sock"));
            let config = dir.path().join(format!("n{i}.toml"));
            let metrics_port = free_port();
            std::fs::write(
                &config,
                format!(
                    "node_id = {i}\npeers = [\n{peers}]\ncluster_key_file = \"{}\"\n\
                     heartbeat_interval_ms = {HEARTBEAT_INTERVAL_MS}\n\
                     heartbeat_timeout_ms = {HEARTBEAT_TIMEOUT_MS}\n\
                     fence_command = [\"{}\"]\nfence_timeout_ms = 5000\nkernel = \"none\"\n\
                     replay_command = [\"{}\"]\nreplay_timeout_ms = 5000\n\
                     ctl_socket = \"{}\"\ntest_hooks = true\n\
                     metrics_address = \"127.0.0.1:{metrics_port}\"\n",
                    key.display(),
                    fence.display(),
                    replay.display(),
                    sock.display()
                ),
            )
            .unwrap();
            nodes.push(Node {
                id: i,
                metrics_port,
                config,
                sock,
                port: ports[i as usize - 1],
                log: dir.path().join(format!("n{i}.log")),
                child: None,
            });
        }
        Cluster {
            dir,
            nodes,
            fence_log,
            replay_log,
        }
    }

    /// Rewrites every node's config for a lock-only cluster: `shared_journals = false`
    /// instead of the replay command (before the daemons start).
    pub fn lock_only(&self) {
        for n in &self.nodes {
            let text = std::fs::read_to_string(&n.config).unwrap();
            let text: String = text
                .lines()
                .map(|l| {
                    if l.starts_with("replay_command") {
                        "shared_journals = false".to_string()
                    } else {
                        l.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("\n");
            std::fs::write(&n.config, text + "\n").unwrap();
        }
    }

    /// Makes the test replay command wait (`true`) until released (`false`).
    pub fn hold_replays(&self, on: bool) {
        let hold = self.replay_log.with_file_name("replay.hold");
        if on {
            std::fs::write(hold, "").unwrap();
        } else {
            std::fs::remove_file(hold).unwrap();
        }
    }

    /// Makes the next run of the test replay command fail.
    pub fn fail_next_replay(&self) {
        std::fs::write(self.replay_log.with_file_name("replay.fail"), "").unwrap();
    }

    pub fn replayed(&self) -> String {
        std::fs::read_to_string(&self.replay_log).unwrap_or_default()
    }

    /// Starts `n` daemons with one key and waits until all agree on all `n` members.
    pub fn start(n: u32) -> Cluster {
        let mut c = Cluster::configure(n, |_| "good");
        for node in &mut c.nodes {
            node.start();
        }
        let all: Vec<u64> = (1..=n as u64).collect();
        c.wait_members(&(1..=n).collect::<Vec<_>>(), &all);
        // Every daemon started fresh, so the first membership is a cold start: its fencer
        // replays every node's journal once (first mounter) before anything is granted.
        let want: Vec<String> = (1..=n).map(|i| format!("{i} n{i}")).collect();
        wait_for("the first mounter to replay every journal", WAIT_MS, || {
            let mut got: Vec<String> = c
                .replayed()
                .lines()
                .map(|l| l.rsplit_once(' ').map_or(l, |(a, _)| a).to_string())
                .collect();
            got.sort();
            (got == want).then_some(())
        });
        std::fs::write(&c.replay_log, "").unwrap();
        c
    }

    pub fn node(&self, id: u32) -> &Node {
        &self.nodes[id as usize - 1]
    }

    pub fn node_mut(&mut self, id: u32) -> &mut Node {
        &mut self.nodes[id as usize - 1]
    }

    /// Waits until every node in `on` is Normal with exactly `members`.
    pub fn wait_members(&self, on: &[u32], members: &[u64]) {
        for id in on {
            let n = self.node(*id);
            let end = Instant::now() + Duration::from_millis(WAIT_MS);
            while n.members().as_deref() != Some(members) {
                if Instant::now() > end {
                    self.dump_logs();
                    panic!("timed out waiting for node {id} to have members {members:?}");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Makes the test fence agent wait (`true`) until released (`false`).
    pub fn hold_fences(&self, on: bool) {
        let hold = self.fence_log.with_file_name("fence.hold");
        if on {
            std::fs::write(hold, "").unwrap();
        } else {
            std::fs::remove_file(hold).unwrap();
        }
    }

    pub fn fenced(&self) -> String {
        std::fs::read_to_string(&self.fence_log).unwrap_or_default()
    }

    /// Dumps every node's log (for failure diagnosis).
    pub fn dump_logs(&self) {
        for n in &self.nodes {
            eprintln!("===== node {} log =====\n{}", n.id, n.log_text());
        }
    }
}

/// Waits (bounded) for a background `mxfsctl lock` to finish and returns its JSON reply.
pub fn finish(mut child: Child, ms: u64) -> Value {
    let st = wait_for("background mxfsctl lock to finish", ms, || {
        child.try_wait().unwrap()
    });
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("bad JSON from mxfsctl lock ({st}, {e}): {text:?}"))
}

/// Asserts a background `mxfsctl lock` is still blocked.
pub fn still_blocked(child: &mut Child, ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
    assert!(
        child.try_wait().unwrap().is_none(),
        "lock was expected to stay blocked"
    );
}
