//! `just bench-daemon`: remote grant latency between three real mxfsd processes on loopback,
//! printed next to the loopback TCP round trip and the local (self-mastered) grant path
//! measured in the same run. Goal: remote p50 <= 1.5 x (TCP RTT p50 + local grant p50).
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

const ITERATIONS: usize = 2000;
const WARMUP: usize = 100;
const VOLUME: u64 = 77;

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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tcp_rtt_us() -> Vec<f64> {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let mut b = [0u8; 64];
        while s.read_exact(&mut b).is_ok() {
            if s.write_all(&b).is_err() {
                break;
            }
        }
    });
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_nodelay(true).unwrap();
    let mut b = [7u8; 64];
    let mut v = Vec::new();
    for i in 0..ITERATIONS + WARMUP {
        let t0 = Instant::now();
        c.write_all(&b).unwrap();
        c.read_exact(&mut b).unwrap();
        if i >= WARMUP {
            v.push(t0.elapsed().as_secs_f64() * 1e6);
        }
    }
    drop(c);
    t.join().unwrap();
    v
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
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` convention
    }
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
                 fence_command = [\"/bin/true\"]\nkernel = \"none\"\nctl_socket = \"{}\"\n",
                key.display(),
                dir.path().join(format!("n{i}.sock")).display()
            ),
        )
        .unwrap();
        kids.0.push(
            Command::new(env!("CARGO_BIN_EXE_mxfsd"))
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

    let members = NodeSet::EMPTY.with(1).with(2).with(3);
    let mut measure = |want_remote: bool| -> Vec<f64> {
        let mut v = Vec::new();
        let mut ino = if want_remote { 1_000_000u64 } else { 2_000_000 };
        let mut i = 0;
        while v.len() < ITERATIONS {
            ino += 1;
            let r = ResourceId::inode(VOLUME, ino);
            let remote = master_of(members, &r) != Some(1);
            if remote != want_remote {
                continue;
            }
            let res = format!("inode:{VOLUME}:{ino}");
            let t0 = Instant::now();
            let g = ctl.call(&format!(
                r#"{{"cmd":"lock","resource":"{res}","mode":"EX"}}"#
            ));
            let us = t0.elapsed().as_secs_f64() * 1e6;
            assert!(g.contains("granted"), "{g}");
            ctl.call(&format!(r#"{{"cmd":"unlock","resource":"{res}"}}"#));
            if i >= WARMUP {
                v.push(us);
            }
            i += 1;
        }
        v
    };
    let mut local = measure(false);
    let mut remote = measure(true);
    let mut tcp = tcp_rtt_us();

    let (t50, t99) = (pct(&mut tcp, 0.5), pct(&mut tcp, 0.99));
    let (l50, l99) = (pct(&mut local, 0.5), pct(&mut local, 0.99));
    let (r50, r99) = (pct(&mut remote, 0.5), pct(&mut remote, 0.99));
    println!("bench-daemon: {ITERATIONS} samples each, 3 mxfsd on 127.0.0.1");
    println!("  loopback TCP round trip       p50 {t50:8.1} us   p99 {t99:8.1} us");
    println!("  local grant (self-mastered)   p50 {l50:8.1} us   p99 {l99:8.1} us   (ctl + core)");
    println!("  remote grant (other master)   p50 {r50:8.1} us   p99 {r99:8.1} us");
    let ratio = r50 / (t50 + l50);
    println!(
        "  remote p50 / (TCP RTT p50 + local p50) = {ratio:.2}  (goal <= 1.50: {})",
        if ratio <= 1.5 { "met" } else { "NOT met" }
    );
}
