//! `just bench-daemon`: remote grant latency between three real mxfsd processes on loopback,
//! printed next to the loopback TCP round trip and the local (self-mastered) grant path.
//! Goal: remote p50 <= 1.5 x (TCP RTT p50 + local grant p50).
//!
//! The three figures are sampled interleaved (one TCP round trip, one local grant, one remote
//! grant, repeat), so a change in the machine's load moves all three alike and the ratio is
//! taken inside one window. The run has two passes:
//! - every process (bench, echo server, daemons) on one CPU: the comparison of code paths;
//! - as the scheduler places them: on a small VM a wake-up that crosses CPUs costs more than
//!   much of the code path, and where the scheduler puts each process decides the figures,
//!   so this pass compares placements as much as code. It is printed so nothing is hidden.
//!
//! The round trip is also measured back to back after the daemons stop. Both echo processes
//! then stay hot (neither does anything else between samples), so that figure is lower than
//! any lock request can see and is printed only for comparison.
//!
//! If `etcd` is installed (Debian `etcd-server`; the `bench-daemon` recipe installs it), the same
//! lock/unlock loop also runs against a three-member etcd cluster on 127.0.0.1 through its v3
//! lock API (HTTP/JSON gateway, one HTTP/1.0 connection per request) and is printed alongside.
//!
//! Every lock goes through node 1's ctl socket (one persistent connection, JSON lines), so the
//! local path includes the ctl round trip and JSON, exactly as the remote path does.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mxfs_core::{master_of, NodeSet, ResourceId};

/// Samples per figure (`MXFS_BENCH_ITERATIONS` overrides, e.g. for profiling).
fn iterations() -> usize {
    std::env::var("MXFS_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}
const WARMUP: usize = 100;

/// The mxfsd under test: this build's, or `MXFS_BENCH_MXFSD` (to compare two builds in one
/// sitting, e.g. before and after a change).
fn mxfsd_bin() -> std::path::PathBuf {
    std::env::var_os("MXFS_BENCH_MXFSD")
        .map(Into::into)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_mxfsd").into())
}
const VOLUME: u64 = 77;
/// etcd writes (and fsyncs) every lock through raft: fewer samples keep the run short.
const ETCD_ITERATIONS: usize = 300;

struct Kill(Vec<Child>);
impl Drop for Kill {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

/// A free port below the kernel's ephemeral range (32768..), so no outgoing connection of a
/// daemon that starts first can take the port a later daemon is about to bind.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 24_000 + (std::process::id() % 300) * 24;
    let _ = NEXT.compare_exchange(0, base, Ordering::SeqCst, Ordering::SeqCst);
    loop {
        let p = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(p < 32_768, "ran out of ports");
        if TcpListener::bind(("127.0.0.1", p as u16)).is_ok() {
            return p as u16;
        }
    }
}

fn echo(l: TcpListener) {
    let (mut s, _) = l.accept().unwrap();
    s.set_nodelay(true).unwrap();
    let mut b = [0u8; 64];
    while s.read_exact(&mut b).is_ok() {
        if s.write_all(&b).is_err() {
            break;
        }
    }
}

/// A connected client of an echo server in a child process (like two daemons).
struct Echo {
    conn: TcpStream,
    _server: Kill,
}

impl Echo {
    fn start() -> Echo {
        let port = free_port();
        let exe = std::env::current_exe().unwrap();
        let server = Kill(vec![Command::new(exe)
            .args(["--echo-server", &port.to_string()])
            .spawn()
            .unwrap()]);
        let deadline = Instant::now() + Duration::from_secs(10);
        let conn = loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(c) => break c,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("echo server: {e}"),
            }
        };
        conn.set_nodelay(true).unwrap();
        Echo {
            conn,
            _server: server,
        }
    }

    /// One round trip of a 64-byte message, in microseconds.
    fn rtt_us(&mut self) -> f64 {
        let mut b = [7u8; 64];
        let t0 = Instant::now();
        self.conn.write_all(&b).unwrap();
        self.conn.read_exact(&mut b).unwrap();
        t0.elapsed().as_secs_f64() * 1e6
    }
}

struct Ctl {
    w: UnixStream,
    r: BufReader<UnixStream>,
}

impl Ctl {
    fn connect(p: &Path) -> Ctl {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(s) = UnixStream::connect(p) {
                return Ctl {
                    r: BufReader::new(s.try_clone().unwrap()),
                    w: s,
                };
            }
            assert!(Instant::now() < deadline, "mxfsd ctl socket never appeared");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    fn call(&mut self, req: &str) -> String {
        writeln!(self.w, "{req}").unwrap();
        let mut line = String::new();
        self.r.read_line(&mut line).unwrap();
        line
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return; // `cargo bench -- --list` convention
    }
    if let Some(i) = args.iter().position(|a| a == "--echo-server") {
        let port: u16 = args[i + 1].parse().unwrap();
        echo(TcpListener::bind(("127.0.0.1", port)).unwrap());
        return;
    }
    if args.iter().any(|a| a == "--pass") {
        daemon_pass();
        return;
    }
    println!(
        "bench-daemon: {} interleaved samples per figure, 3 mxfsd on 127.0.0.1",
        iterations()
    );
    let exe = std::env::current_exe().unwrap();
    // Pinned pass: `taskset` (util-linux) pins this child and everything it starts to CPU 0.
    let pinned = Command::new("taskset")
        .args(["-c", "0"])
        .arg(&exe)
        .arg("--pass")
        .env(
            "MXFS_BENCH_PASS",
            "all processes on CPU 0 (goal judged here)",
        )
        .status();
    match pinned {
        Ok(s) if s.success() => {}
        other => println!("  pinned pass failed or taskset missing: {other:?}"),
    }
    let free = Command::new(&exe)
        .arg("--pass")
        .env("MXFS_BENCH_PASS", "as scheduled (2 CPUs)")
        .status();
    assert!(free.is_ok_and(|s| s.success()), "unpinned pass failed");
    let dir = tempfile::tempdir().unwrap();
    match etcd_lock_us(dir.path()) {
        Ok(mut e) => {
            let (e50, e99) = (pct(&mut e, 0.5), pct(&mut e, 0.99));
            println!(
                "  etcd 3.x lock API (3 members) p50 {e50:8.1} us   p99 {e99:8.1} us   ({} samples, \
                 as scheduled)",
                e.len()
            );
        }
        Err(why) => println!("  etcd: skipped ({why})"),
    }
}

/// Starts three daemons and samples TCP RTT, local and remote grants interleaved.
fn daemon_pass() {
    let pass = std::env::var("MXFS_BENCH_PASS").unwrap_or_default();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "bench-cluster-key-0123456789abcdef\n").unwrap();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let peers: String = (1..=3)
        .map(|i| {
            format!(
                "  {{ id = {i}, address = \"127.0.0.1:{}\" }},\n",
                ports[i - 1]
            )
        })
        .collect();
    let mut kids = Kill(Vec::new());
    for i in 1..=3 {
        let cfg = dir.path().join(format!("n{i}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "node_id = {i}\npeers = [\n{peers}]\ncluster_key_file = \"{}\"\n\
                 fence_command = [\"/bin/true\"]\nshared_journals = false\nkernel = \"none\"\n\
                 ctl_socket = \"{}\"\n",
                key.display(),
                dir.path().join(format!("n{i}.sock")).display()
            ),
        )
        .unwrap();
        kids.0.push(
            Command::new(mxfsd_bin())
                .arg("--config")
                .arg(&cfg)
                .env("RUST_LOG", "warn")
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
    }
    let mut ctl = Ctl::connect(&dir.path().join("n1.sock"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ctl
        .call(r#"{"cmd":"status"}"#)
        .contains(r#""members":[1,2,3]"#)
    {
        assert!(Instant::now() < deadline, "cluster did not form");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut echo = Echo::start();

    let members = NodeSet::EMPTY.with(1).with(2).with(3);
    // Inode numbers whose lock node 1 masters (local) or another node masters (remote).
    let mut next_ino = [2_000_000u64, 1_000_000u64];
    let mut next = |remote: bool| -> u64 {
        let n = &mut next_ino[remote as usize];
        loop {
            *n += 1;
            let r = ResourceId::inode(VOLUME, *n);
            if (master_of(members, &r) != Some(1)) == remote {
                return *n;
            }
        }
    };
    let mut lock_us = |ino: u64| -> f64 {
        let res = format!("inode:{VOLUME}:{ino}");
        let t0 = Instant::now();
        let g = ctl.call(&format!(
            r#"{{"cmd":"lock","resource":"{res}","mode":"EX"}}"#
        ));
        let us = t0.elapsed().as_secs_f64() * 1e6;
        assert!(g.contains("granted"), "{g}");
        ctl.call(&format!(r#"{{"cmd":"unlock","resource":"{res}"}}"#));
        us
    };
    let (mut tcp, mut local, mut remote) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..iterations() + WARMUP {
        let t = echo.rtt_us();
        let l = lock_us(next(false));
        let r = lock_us(next(true));
        if i >= WARMUP {
            tcp.push(t);
            local.push(l);
            remote.push(r);
        }
    }
    drop(kids);
    // The same round trip back to back, with nothing else running between samples: both
    // processes stay hot, which no lock request enjoys. Printed for comparison only.
    let mut hot: Vec<f64> = (0..iterations()).map(|_| echo.rtt_us()).collect();

    let (t50, t99) = (pct(&mut tcp, 0.5), pct(&mut tcp, 0.99));
    let (h50, h99) = (pct(&mut hot, 0.5), pct(&mut hot, 0.99));
    let (l50, l99) = (pct(&mut local, 0.5), pct(&mut local, 0.99));
    let (r50, r99) = (pct(&mut remote, 0.5), pct(&mut remote, 0.99));
    println!(" {pass}:");
    println!(
        "  loopback TCP RTT, back to back p50 {h50:7.1} us   p99 {h99:8.1} us   (both hot; not the baseline)"
    );
    println!(
        "  loopback TCP RTT, 2 processes p50 {t50:8.1} us   p99 {t99:8.1} us   (baseline below)"
    );
    println!("  local grant (self-mastered)   p50 {l50:8.1} us   p99 {l99:8.1} us   (ctl + core)");
    println!("  remote grant (other master)   p50 {r50:8.1} us   p99 {r99:8.1} us");
    let verdict = |r: f64| if r <= 1.5 { "met" } else { "NOT met" };
    let ratio = r50 / (t50 + l50);
    println!(
        "  remote p50 / (TCP RTT p50 + local p50) = {ratio:.2}  (goal <= 1.50: {})",
        verdict(ratio)
    );
    let strict = r50 / (h50 + l50);
    println!(
        "  the same with the back-to-back RTT  = {strict:.2}  (stricter: {})",
        verdict(strict)
    );
}

fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One HTTP/1.0 POST to etcd's JSON gateway; returns the parsed body.
fn etcd_post(port: u16, path: &str, body: &serde_json::Value) -> Result<serde_json::Value, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_nodelay(true).ok();
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let b = body.to_string();
    write!(
        s,
        "POST {path} HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
        b.len()
    )
    .map_err(|e| e.to_string())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| e.to_string())?;
    let (head, body) = resp.split_once("\r\n\r\n").ok_or("no HTTP body")?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return Err(format!("{path}: {}", head.lines().next().unwrap_or("")));
    }
    serde_json::from_str(body).map_err(|e| e.to_string())
}

fn etcd_lock_us(dir: &Path) -> Result<Vec<f64>, String> {
    if Command::new("etcd").arg("--version").output().is_err() {
        return Err("etcd not installed; `just bench-daemon` installs Debian's etcd-server".into());
    }
    let client: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let peer: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let initial: Vec<String> = (0..3)
        .map(|i| format!("e{i}=http://127.0.0.1:{}", peer[i]))
        .collect();
    let mut kids = Kill(Vec::new());
    for i in 0..3 {
        let c = format!("http://127.0.0.1:{}", client[i]);
        let p = format!("http://127.0.0.1:{}", peer[i]);
        let child = Command::new("etcd")
            .args(["--name", &format!("e{i}")])
            .arg("--data-dir")
            .arg(dir.join(format!("etcd{i}")))
            .args(["--listen-client-urls", &c, "--advertise-client-urls", &c])
            .args([
                "--listen-peer-urls",
                &p,
                "--initial-advertise-peer-urls",
                &p,
            ])
            .args(["--initial-cluster", &initial.join(",")])
            .args([
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                "mxfs-bench",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        kids.0.push(child);
    }
    let port = client[0];
    let deadline = Instant::now() + Duration::from_secs(20);
    let lease = loop {
        match etcd_post(port, "/v3/lease/grant", &serde_json::json!({"TTL": 600})) {
            Ok(v) if v["ID"].is_string() => break v["ID"].as_str().unwrap_or_default().to_string(),
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            other => return Err(format!("etcd cluster did not come up: {other:?}")),
        }
    };
    let mut v = Vec::new();
    for i in 0..ETCD_ITERATIONS + WARMUP / 10 {
        let name = b64(format!("mxfs-bench-{i}").as_bytes());
        let t0 = Instant::now();
        let l = etcd_post(
            port,
            "/v3/lock/lock",
            &serde_json::json!({"name": name, "lease": lease}),
        )?;
        let us = t0.elapsed().as_secs_f64() * 1e6;
        let key = l["key"]
            .as_str()
            .ok_or("etcd lock reply without key")?
            .to_string();
        etcd_post(port, "/v3/lock/unlock", &serde_json::json!({ "key": key }))?;
        if i >= WARMUP / 10 {
            v.push(us);
        }
    }
    Ok(v)
}
