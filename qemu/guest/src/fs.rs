//! The file-system workloads of the cluster's `-o mxfs` phase (qemu/cluster-node.sh). Each
//! records what it did as JSON lines for the host checkers (`mxfs-fs-check`), or, where a node
//! can judge alone against a model every node computes the same way (fsx, attributes, mmap),
//! prints `PASS`/`FAIL` lines.
//!
//! Times are the TSC (`rdtsc`): under TCG a guest's TSC is the host's TSC minus the host's TSC
//! when that QEMU started, so the guests' clocks run at one rate but differ by a constant.
//! `clock-sync` measures that constant against node 1 over UDP (best of many round trips; the
//! error bound is half the best round trip), and the host adds it to every time.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Error;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::process::ExitCode;
use std::time::{Duration, Instant, UNIX_EPOCH};

use crate::Witness;

/// One data block, the unit every data operation reads or writes.
pub(crate) const BLOCK_BYTES: usize = 4096;
/// One stamp inside a data block, repeated to fill it: magic, node, file, block, pad, seq.
const STAMP_BYTES: usize = 32;
const STAMP_MAGIC: &[u8; 8] = b"MXFSDATA";
/// fsx: the file never grows past this, and one operation moves at most `FSX_OP_BYTES_MAX`.
const FSX_FILE_BYTES_MAX: u64 = 128 * 1024;
const FSX_OP_BYTES_MAX: u64 = 32 * 1024;
/// fsx progress word on the witness disk: ops done, or this bit plus the failed op.
const FSX_FAILED: u64 = 1 << 63;
/// How long an fsx node waits for the op before its own.
const FSX_WAIT_SECS: u64 = 60;
/// Clock sync: round trips tried, and how long one may take.
const CLOCK_ROUNDS: u32 = 60;
const CLOCK_ROUND_TIMEOUT_MS: u64 = 300;

/// The TSC: one rate on every guest of this host (see the module docs).
pub fn ticks() -> u64 {
    // SAFETY: rdtsc has no preconditions on x86_64; it only reads the time-stamp counter.
    #[allow(unused_unsafe)]
    unsafe {
        core::arch::x86_64::_rdtsc()
    }
}

/// Symbolic name of an I/O error's errno (the checkers compare names).
pub fn err_name(e: &Error) -> String {
    let n = e.raw_os_error().unwrap_or(0);
    let name = match n {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::EEXIST => "EEXIST",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENOSPC => "ENOSPC",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ESTALE => "ESTALE",
        libc::EUCLEAN => "EFSCORRUPTED",
        libc::EBUSY => "EBUSY",
        libc::ENOTCONN => "ENOTCONN",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EACCES => "EACCES",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ENODATA => "ENODATA",
        _ => return format!("E{n}:{e}"),
    };
    name.to_string()
}

/// splitmix64: the workloads' PRNG (seeded per node, or per fsx op so every node agrees).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

// ---------------------------------------------------------------------------------------------
// Clock

/// Node 1's side: answers every datagram with its own TSC, for `secs` seconds.
pub fn cmd_clock_serve(port: u16, secs: u64) -> Result<ExitCode, String> {
    let s = UdpSocket::bind(("0.0.0.0", port)).map_err(|e| format!("bind :{port}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    let end = Instant::now() + Duration::from_secs(secs);
    let mut buf = [0u8; 16];
    let mut answered = 0u64;
    while Instant::now() < end {
        let Ok((n, from)) = s.recv_from(&mut buf) else {
            continue;
        };
        let t = ticks();
        if n < 8 {
            continue;
        }
        buf[8..16].copy_from_slice(&t.to_le_bytes());
        let _ = s.send_to(&buf, from);
        answered += 1;
    }
    println!("clock-serve: answered {answered} datagrams");
    Ok(ExitCode::SUCCESS)
}

/// A node's side: the offset of node 1's TSC to its own, from the round trip with the smallest
/// delay; prints one `MXFS-CLOCK` line. Node 1 prints offset 0 without asking.
pub fn cmd_clock_sync(server: &str, node: u32, at: &str) -> Result<ExitCode, String> {
    if node == 1 {
        println!("MXFS-CLOCK {{\"n\":1,\"off\":0,\"err\":0,\"at\":\"{at}\",\"rtt\":0}}");
        return Ok(ExitCode::SUCCESS);
    }
    let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_millis(CLOCK_ROUND_TIMEOUT_MS)))
        .map_err(|e| e.to_string())?;
    s.connect(server)
        .map_err(|e| format!("connect {server}: {e}"))?;
    let mut best: Option<(u64, i64)> = None;
    let mut buf = [0u8; 16];
    let mut answered = 0;
    for round in 0..CLOCK_ROUNDS as u64 {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&round.to_le_bytes());
        let t0 = ticks();
        if s.send(&out).is_err() {
            continue;
        }
        // Skip late answers to earlier rounds.
        let ts = loop {
            match s.recv(&mut buf) {
                Ok(16) if buf[..8] == out[..8] => {
                    break Some(u64::from_le_bytes(buf[8..16].try_into().unwrap_or([0; 8])))
                }
                Ok(_) => continue,
                Err(_) => break None,
            }
        };
        let t1 = ticks();
        let Some(ts) = ts else { continue };
        answered += 1;
        let rtt = t1.wrapping_sub(t0);
        let mid = t0 as i128 + (rtt / 2) as i128;
        let off = (ts as i128 - mid) as i64;
        if best.is_none_or(|(r, _)| rtt < r) {
            best = Some((rtt, off));
        }
    }
    let (rtt, off) = best.ok_or_else(|| format!("no answer from {server}"))?;
    println!(
        "MXFS-CLOCK {{\"n\":{node},\"off\":{off},\"err\":{},\"at\":\"{at}\",\"rtt\":{rtt},\"answered\":{answered}}}",
        rtt / 2 + 1
    );
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// Data: whole blocks with unique stamps

fn data_path(dir: &str, f: u32) -> String {
    format!("{dir}/data{f}")
}

pub(crate) fn stamp_block(node: u32, file: u32, block: u32, seq: u64) -> Vec<u8> {
    let mut rec = [0u8; STAMP_BYTES];
    rec[..8].copy_from_slice(STAMP_MAGIC);
    rec[8..12].copy_from_slice(&node.to_le_bytes());
    rec[12..16].copy_from_slice(&file.to_le_bytes());
    rec[16..20].copy_from_slice(&block.to_le_bytes());
    rec[24..32].copy_from_slice(&seq.to_le_bytes());
    rec.repeat(BLOCK_BYTES / STAMP_BYTES)
}

/// The value a block holds: `init` (zeros), `NODE:SEQ` (one whole stamp of that block), or
/// `torn:...` naming what it found instead.
pub(crate) fn block_value(buf: &[u8], file: u32, block: u32) -> String {
    if buf.len() < BLOCK_BYTES {
        return format!("torn:short read of {} bytes", buf.len());
    }
    if buf.iter().all(|b| *b == 0) {
        return "init".into();
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for rec in buf.chunks(STAMP_BYTES) {
        let name = if &rec[..8] == STAMP_MAGIC
            && u32::from_le_bytes(rec[12..16].try_into().unwrap_or_default()) == file
            && u32::from_le_bytes(rec[16..20].try_into().unwrap_or_default()) == block
        {
            format!(
                "{}:{}",
                u32::from_le_bytes(rec[8..12].try_into().unwrap_or_default()),
                u64::from_le_bytes(rec[24..32].try_into().unwrap_or_default())
            )
        } else if rec.iter().all(|b| *b == 0) {
            "zero".into()
        } else {
            "garbage".into()
        };
        *seen.entry(name).or_default() += 1;
    }
    if seen.len() == 1 {
        if let Some(v) = seen.keys().next().filter(|v| v.as_str() != "garbage") {
            return v.clone();
        }
    }
    let parts: Vec<String> = seen.iter().map(|(k, n)| format!("{k}x{n}")).collect();
    format!("torn:{}", parts.join(","))
}

#[allow(clippy::too_many_arguments)]
fn data_line(
    node: u32,
    file: u32,
    block: u32,
    op: &str,
    v: &str,
    s: u64,
    e: u64,
    err: Option<String>,
    fin: bool,
) -> String {
    serde_json::json!({"n": node, "f": file, "b": block, "op": op, "v": v, "s": s, "e": e,
        "err": err, "fin": fin})
    .to_string()
}

/// Node 1, before the others start: the shared files, all zeros (the initial value).
pub fn cmd_data_setup(dir: &str, files: u32, blocks: u32) -> Result<ExitCode, String> {
    for f in 0..files {
        let p = data_path(dir, f);
        let file = File::create(&p).map_err(|e| format!("create {p}: {e}"))?;
        file.set_len(blocks as u64 * BLOCK_BYTES as u64)
            .map_err(|e| format!("truncate {p}: {e}"))?;
        file.sync_all().map_err(|e| format!("fsync {p}: {e}"))?;
    }
    println!("PASS data files {files} x {blocks} blocks created");
    Ok(ExitCode::SUCCESS)
}

fn read_block(f: &File, block: u32) -> Result<Vec<u8>, Error> {
    let mut buf = vec![0u8; BLOCK_BYTES];
    let n = f.read_at(&mut buf, block as u64 * BLOCK_BYTES as u64)?;
    buf.truncate(n);
    Ok(buf)
}

/// Random whole-block reads and writes on the shared files; prints one `MXFS-DATA` line per
/// operation at the end (printing during the run would slow it under TCG). With `--final`,
/// reads every block once instead (after every node finished).
#[allow(clippy::too_many_arguments)]
pub fn cmd_data(
    dir: &str,
    node: u32,
    files: u32,
    blocks: u32,
    ops: u32,
    secs: u64,
    seed: u64,
    fin: bool,
) -> Result<ExitCode, String> {
    let mut lines = Vec::new();
    let mut handles = Vec::new();
    let mut open_errors = Vec::new();
    for f in 0..files {
        let p = data_path(dir, f);
        match OpenOptions::new().read(true).write(true).open(&p) {
            Ok(h) => handles.push(Some(h)),
            Err(e) => {
                open_errors.push(format!("open {p}: {}", err_name(&e)));
                handles.push(None);
            }
        }
    }
    let one = |f: u32, b: u32, write: Option<u64>, lines: &mut Vec<String>| {
        let Some(h) = handles[f as usize].as_ref() else {
            // Recorded as a failed call: the file could not be opened on this node.
            let t = ticks();
            let (op, v) = match write {
                Some(seq) => ("w", format!("{node}:{seq}")),
                None => ("r", "?".to_string()),
            };
            let err = Some("open failed".to_string());
            lines.push(data_line(node, f, b, op, &v, t, t, err, fin));
            return;
        };
        let off = b as u64 * BLOCK_BYTES as u64;
        match write {
            Some(seq) => {
                let buf = stamp_block(node, f, b, seq);
                let v = format!("{node}:{seq}");
                let s = ticks();
                let r = h.write_at(&buf, off);
                let e = ticks();
                let err = match r {
                    Ok(n) if n == BLOCK_BYTES => None,
                    Ok(n) => Some(format!("short write {n}")),
                    Err(x) => Some(err_name(&x)),
                };
                lines.push(data_line(node, f, b, "w", &v, s, e, err, fin));
            }
            None => {
                let s = ticks();
                let r = read_block(h, b);
                let e = ticks();
                let (v, err) = match r {
                    Ok(buf) => (block_value(&buf, f, b), None),
                    Err(x) => ("?".to_string(), Some(err_name(&x))),
                };
                lines.push(data_line(node, f, b, "r", &v, s, e, err, fin));
            }
        }
    };
    let started = Instant::now();
    let mut done = 0;
    if fin {
        for f in 0..files {
            for b in 0..blocks {
                one(f, b, None, &mut lines);
            }
        }
    } else {
        let mut rng = Rng::new(seed ^ (node as u64) << 32);
        let deadline = started + Duration::from_secs(secs);
        for k in 0..ops {
            if Instant::now() > deadline {
                break;
            }
            let f = rng.below(files as u64) as u32;
            let b = rng.below(blocks as u64) as u32;
            let write = rng.below(2) == 0;
            one(f, b, write.then_some(k as u64 + 1), &mut lines);
            done += 1;
        }
    }
    for l in &lines {
        println!("MXFS-DATA {l}");
    }
    let errors = lines.iter().filter(|l| !l.contains("\"err\":null")).count();
    println!(
        "data: node {node} {} {} operations in {} ms, {errors} failed{}",
        if fin { "final read of" } else { "ran" },
        if fin { lines.len() } else { done },
        started.elapsed().as_millis(),
        if open_errors.is_empty() {
            String::new()
        } else {
            format!(" ({})", open_errors.join("; "))
        }
    );
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// Attributes and mmap: one node changes, the others look

struct AttrWant {
    mode: u32,
    uid: u32,
    gid: u32,
    atime: i64,
    mtime: i64,
    size: u64,
}

fn attr_want(turn: u32) -> AttrWant {
    let atime = 1_500_000_000 + turn as i64 * 100;
    AttrWant {
        mode: 0o600 + turn,
        uid: 1000 + turn,
        gid: 2000 + turn,
        atime,
        mtime: atime + 1,
        size: 4096 * turn as u64 + 123,
    }
}

/// truncate, chmod, chown and utimes of `file` to the values of `turn` (utimes last: truncate
/// sets mtime).
pub fn cmd_attr_set(file: &str, turn: u32) -> Result<ExitCode, String> {
    let w = attr_want(turn);
    let step = |what: &str, r: std::io::Result<()>| r.map_err(|e| format!("{what} {file}: {e}"));
    let f = OpenOptions::new()
        .write(true)
        .open(file)
        .map_err(|e| format!("open {file}: {e}"))?;
    step("truncate", f.set_len(w.size))?;
    step(
        "chmod",
        fs::set_permissions(file, fs::Permissions::from_mode(w.mode)),
    )?;
    step(
        "chown",
        std::os::unix::fs::chown(file, Some(w.uid), Some(w.gid)),
    )?;
    let t = |s: i64| UNIX_EPOCH + Duration::from_secs(s as u64);
    step(
        "utimes",
        f.set_times(
            fs::FileTimes::new()
                .set_accessed(t(w.atime))
                .set_modified(t(w.mtime)),
        ),
    )?;
    println!(
        "PASS turn {turn}: set mode {:o} owner {}:{} times {}/{} size {}",
        w.mode, w.uid, w.gid, w.atime, w.mtime, w.size
    );
    Ok(ExitCode::SUCCESS)
}

/// stat of `file` must show what the node of `turn` set.
pub fn cmd_attr_check(file: &str, turn: u32) -> Result<ExitCode, String> {
    let w = attr_want(turn);
    let m = match fs::metadata(file) {
        Ok(m) => m,
        Err(e) => {
            println!("FAIL turn {turn}: stat {file}: {}", err_name(&e));
            return Ok(ExitCode::FAILURE);
        }
    };
    let got = [
        ("mode", (m.mode() & 0o7777) as i64, w.mode as i64),
        ("uid", m.uid() as i64, w.uid as i64),
        ("gid", m.gid() as i64, w.gid as i64),
        ("atime", m.atime(), w.atime),
        ("mtime", m.mtime(), w.mtime),
        ("size", m.size() as i64, w.size as i64),
    ];
    let bad: Vec<String> = got
        .iter()
        .filter(|(_, g, w)| g != w)
        .map(|(n, g, w)| {
            if *n == "mode" {
                format!("{n} {g:o} (want {w:o})")
            } else {
                format!("{n} {g} (want {w})")
            }
        })
        .collect();
    if bad.is_empty() {
        println!("PASS turn {turn}: mode, owner, times and size as set");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("FAIL turn {turn}: {}", bad.join(", "));
        Ok(ExitCode::FAILURE)
    }
}

/// Pages of the mmap file; the page of a turn is `turn % MMAP_PAGES`.
const MMAP_PAGES: u32 = 4;

fn mmap_pattern(turn: u32) -> Vec<u8> {
    let mut p: Vec<u8> = (0..BLOCK_BYTES)
        .map(|i| (i as u32 * 7 + turn * 13 + 1) as u8)
        .collect();
    let head = format!("mmap turn {turn}");
    p[..head.len()].copy_from_slice(head.as_bytes());
    p
}

/// A shared, writable mapping of `len` bytes of `f` at 0.
struct Map {
    p: *mut u8,
    len: usize,
}

impl Map {
    fn new(f: &File, off: u64, len: usize, write: bool) -> Result<Map, Error> {
        let prot = if write {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: maps `len` bytes of an open file; the mapping is unmapped in Drop and only
        // touched through `slice`/`slice_mut` within `len`.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                off as libc::off_t,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::last_os_error());
        }
        Ok(Map { p: p.cast(), len })
    }
    fn slice(&self) -> &[u8] {
        // SAFETY: `p` maps `len` readable bytes for the life of `self`.
        unsafe { std::slice::from_raw_parts(self.p, self.len) }
    }
    fn slice_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `slice`; mapped writable when created with `write`.
        unsafe { std::slice::from_raw_parts_mut(self.p, self.len) }
    }
    fn msync(&self) -> Result<(), Error> {
        // SAFETY: syncs exactly the range this object mapped.
        if unsafe { libc::msync(self.p.cast(), self.len, libc::MS_SYNC) } != 0 {
            return Err(Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: unmaps what `new` mapped, once.
        unsafe { libc::munmap(self.p.cast(), self.len) };
    }
}

/// Node 1: the mmap file, all zeros.
pub fn cmd_mmap_setup(file: &str) -> Result<ExitCode, String> {
    let f = File::create(file).map_err(|e| format!("create {file}: {e}"))?;
    f.set_len((MMAP_PAGES as usize * BLOCK_BYTES) as u64)
        .map_err(|e| format!("truncate {file}: {e}"))?;
    println!("PASS mmap file created");
    Ok(ExitCode::SUCCESS)
}

/// Writes the turn's pattern through a shared mapping, then msync (odd turns) or only munmap.
pub fn cmd_mmap_set(file: &str, turn: u32) -> Result<ExitCode, String> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .map_err(|e| format!("open {file}: {}", err_name(&e)))?;
    let page = (turn % MMAP_PAGES) as u64;
    let mut m = Map::new(&f, page * BLOCK_BYTES as u64, BLOCK_BYTES, true)
        .map_err(|e| format!("mmap {file}: {}", err_name(&e)))?;
    m.slice_mut().copy_from_slice(&mmap_pattern(turn));
    let how = if turn % 2 == 1 {
        m.msync().map_err(|e| format!("msync: {}", err_name(&e)))?;
        "msync"
    } else {
        "munmap"
    };
    drop(m);
    println!("PASS turn {turn}: wrote page {page} through a shared mapping, then {how}");
    Ok(ExitCode::SUCCESS)
}

/// The turn's page must read back with read(2) and through a new shared mapping.
pub fn cmd_mmap_check(file: &str, turn: u32) -> Result<ExitCode, String> {
    let want = mmap_pattern(turn);
    let page = (turn % MMAP_PAGES) as u64;
    let f = match File::open(file) {
        Ok(f) => f,
        Err(e) => {
            println!("FAIL turn {turn}: open {file}: {}", err_name(&e));
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut problems = Vec::new();
    let describe = |got: &[u8]| match got.iter().zip(&want).position(|(a, b)| a != b) {
        None if got.len() == want.len() => None,
        None => Some(format!("{} bytes", got.len())),
        Some(i) => Some(format!(
            "byte {i} is {:#x} (want {:#x}); starts {:?}",
            got[i],
            want[i],
            String::from_utf8_lossy(&got[..16])
        )),
    };
    let mut buf = vec![0u8; BLOCK_BYTES];
    match f.read_at(&mut buf, page * BLOCK_BYTES as u64) {
        Ok(n) => {
            if let Some(d) = describe(&buf[..n]) {
                problems.push(format!("read(2): {d}"));
            }
        }
        Err(e) => problems.push(format!("read(2): {}", err_name(&e))),
    }
    match Map::new(&f, page * BLOCK_BYTES as u64, BLOCK_BYTES, false) {
        Ok(m) => {
            if let Some(d) = describe(m.slice()) {
                problems.push(format!("mapping: {d}"));
            }
        }
        Err(e) => problems.push(format!("mmap: {}", err_name(&e))),
    }
    if problems.is_empty() {
        println!("PASS turn {turn}: page {page} reads back by read(2) and by mapping");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("FAIL turn {turn}: page {page}: {}", problems.join("; "));
        Ok(ExitCode::FAILURE)
    }
}

// ---------------------------------------------------------------------------------------------
// Namespace

const NS_DIRS: [&str; 3] = ["d0", "d1", "d2"];
const NS_FILES: [&str; 4] = ["f0", "f1", "f2", "f3"];
const NS_LINKS: [&str; 3] = ["l0", "l1", "l2"];

/// Every path the namespace workload can name, relative to its tree.
fn ns_universe() -> Vec<String> {
    let mut u: Vec<String> = NS_DIRS.iter().map(|d| d.to_string()).collect();
    let parents: Vec<Option<&str>> = std::iter::once(None)
        .chain(NS_DIRS.iter().map(|d| Some(*d)))
        .collect();
    for p in &parents {
        for n in NS_FILES.iter().chain(NS_LINKS.iter()) {
            u.push(match p {
                None => n.to_string(),
                Some(d) => format!("{d}/{n}"),
            });
        }
    }
    u
}

fn pick<'a>(rng: &mut Rng, names: &[&'a str]) -> &'a str {
    names[rng.below(names.len() as u64) as usize]
}

/// A name from `names` at the top of the tree or in one of its directories.
fn name_in_some_dir(rng: &mut Rng, names: &[&str]) -> String {
    let name = pick(rng, names);
    match rng.below(NS_DIRS.len() as u64 + 1) as usize {
        0 => name.to_string(),
        i => format!("{}/{name}", NS_DIRS[i - 1]),
    }
}

/// Random create, link, unlink, rename, mkdir and rmdir in the tree `dir`, names drawn from
/// small pools so that nodes collide. Files (`f*`) are created and renamed among themselves;
/// links (`l*`) are only made by link and removed by unlink, so a rename never joins two names
/// of one inode (POSIX makes that rename a no-op, which the checker would not know).
pub fn cmd_ns(dir: &str, node: u32, ops: u32, secs: u64, seed: u64) -> Result<ExitCode, String> {
    let mut rng = Rng::new(seed ^ ((node as u64) << 40) ^ 0x5A5A);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let mut lines = Vec::new();
    for _ in 0..ops {
        if Instant::now() > deadline {
            break;
        }
        let kind = rng.below(100);
        let (op, a, b) = match kind {
            0..=24 => ("create", name_in_some_dir(&mut rng, &NS_FILES), None),
            25..=39 => {
                let a = name_in_some_dir(&mut rng, &NS_FILES);
                let b = name_in_some_dir(&mut rng, &NS_LINKS);
                ("link", a, Some(b))
            }
            40..=59 => {
                let pool: &[&str] = if rng.below(2) == 0 {
                    &NS_FILES
                } else {
                    &NS_LINKS
                };
                ("unlink", name_in_some_dir(&mut rng, pool), None)
            }
            60..=74 => {
                let a = name_in_some_dir(&mut rng, &NS_FILES);
                let mut b = name_in_some_dir(&mut rng, &NS_FILES);
                while b == a {
                    b = name_in_some_dir(&mut rng, &NS_FILES);
                }
                ("rename", a, Some(b))
            }
            75..=87 => ("mkdir", pick(&mut rng, &NS_DIRS).to_string(), None),
            _ => ("rmdir", pick(&mut rng, &NS_DIRS).to_string(), None),
        };
        let pa = format!("{dir}/{a}");
        let pb = b.as_ref().map(|b| format!("{dir}/{b}"));
        let s = ticks();
        let r = match (op, &pb) {
            ("create", _) => OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&pa)
                .map(|_| ()),
            ("link", Some(pb)) => fs::hard_link(&pa, pb),
            ("unlink", _) => fs::remove_file(&pa),
            ("rename", Some(pb)) => fs::rename(&pa, pb),
            ("mkdir", _) => fs::create_dir(&pa),
            ("rmdir", _) => fs::remove_dir(&pa),
            _ => Err(Error::other("bad op")),
        };
        let e = ticks();
        let r = match r {
            Ok(()) => "ok".to_string(),
            Err(x) => err_name(&x),
        };
        lines
            .push(serde_json::json!({"n": node, "op": op, "a": a, "b": b, "r": r, "s": s, "e": e}));
    }
    for l in &lines {
        println!("MXFS-NS {l}");
    }
    println!(
        "ns: node {node} ran {} operations in {} ms",
        lines.len(),
        started.elapsed().as_millis()
    );
    Ok(ExitCode::SUCCESS)
}

fn walk(root: &str, rel: &str, out: &mut Vec<(String, u64, u64, String)>) -> Result<(), String> {
    let path = if rel.is_empty() {
        root.to_string()
    } else {
        format!("{root}/{rel}")
    };
    let rd = fs::read_dir(&path).map_err(|e| format!("readdir {path}: {}", err_name(&e)))?;
    for ent in rd {
        let ent = ent.map_err(|e| format!("readdir {path}: {}", err_name(&e)))?;
        let name = ent.file_name().to_string_lossy().to_string();
        let r = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let m = fs::symlink_metadata(format!("{root}/{r}"))
            .map_err(|e| format!("stat {r}: {}", err_name(&e)))?;
        let t = if m.is_dir() {
            "d"
        } else if m.is_file() {
            "f"
        } else {
            "o"
        };
        out.push((r.clone(), m.ino(), m.nlink(), t.to_string()));
        if m.is_dir() {
            walk(root, &r, out)?;
        }
    }
    Ok(())
}

/// Lists the tree: one `MXFS-NSLIST` line with every (path, inode, links, type).
pub fn cmd_ns_list(dir: &str, node: u32) -> Result<ExitCode, String> {
    let mut entries = Vec::new();
    let error = walk(dir, "", &mut entries).err();
    entries.sort();
    let line = serde_json::json!({"n": node, "entries": entries, "error": error,
        "universe": ns_universe()});
    println!("MXFS-NSLIST {line}");
    println!(
        "ns-list: node {node}: {} entries{}",
        entries.len(),
        error.map(|e| format!(", {e}")).unwrap_or_default()
    );
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// fsx

#[derive(Clone, Copy, Debug)]
enum FsxOp {
    Write { off: u64, len: u64 },
    Read { off: u64, len: u64 },
    Truncate { size: u64 },
    MapRead { off: u64, len: u64 },
    MapWrite { off: u64, len: u64 },
    Fallocate { off: u64, len: u64, keep: bool },
    Punch { off: u64, len: u64 },
}

impl FsxOp {
    fn kind(&self) -> &'static str {
        match self {
            FsxOp::Write { .. } => "write",
            FsxOp::Read { .. } => "read",
            FsxOp::Truncate { .. } => "truncate",
            FsxOp::MapRead { .. } => "mapread",
            FsxOp::MapWrite { .. } => "mapwrite",
            FsxOp::Fallocate { .. } => "fallocate",
            FsxOp::Punch { .. } => "punch",
        }
    }
}

/// Op `k` of the schedule and the node that runs it: a function of (seed, k) only, so every
/// node computes the same schedule.
fn fsx_op(seed: u64, k: u64, nodes: u32) -> (u32, FsxOp) {
    let mut r = Rng::new(seed.wrapping_mul(0x1000_0000_01B3) ^ k);
    let node = 1 + r.below(nodes as u64) as u32;
    let len = 1 + r.below(FSX_OP_BYTES_MAX);
    let off = r.below(FSX_FILE_BYTES_MAX - len);
    let op = match r.below(100) {
        0..=24 => FsxOp::Write { off, len },
        25..=44 => FsxOp::Read { off, len },
        45..=52 => FsxOp::Truncate {
            size: r.below(FSX_FILE_BYTES_MAX + 1),
        },
        53..=64 => FsxOp::MapRead { off, len },
        65..=76 => FsxOp::MapWrite { off, len },
        77..=88 => FsxOp::Fallocate {
            off,
            len,
            keep: r.below(2) == 0,
        },
        _ => FsxOp::Punch { off, len },
    };
    (node, op)
}

/// The bytes op `k` writes: never zero, so a hole or a lost write shows.
fn fsx_data(k: u64, off: u64, len: u64) -> Vec<u8> {
    (off..off + len)
        .map(|i| ((k.wrapping_mul(7919) + i.wrapping_mul(31)) % 251 + 1) as u8)
        .collect()
}

/// What a mapping op covers, clamped to the file: mappings cannot extend it.
fn clamp(off: u64, len: u64, size: u64) -> Option<(u64, u64)> {
    (off < size).then(|| (off, len.min(size - off)))
}

/// Applies op `k` to the model (the expected file contents).
fn fsx_model(model: &mut Vec<u8>, k: u64, op: FsxOp) {
    let size = model.len() as u64;
    match op {
        FsxOp::Write { off, len } => {
            if off + len > size {
                model.resize((off + len) as usize, 0);
            }
            model[off as usize..(off + len) as usize].copy_from_slice(&fsx_data(k, off, len));
        }
        FsxOp::MapWrite { off, len } => {
            if let Some((off, len)) = clamp(off, len, size) {
                model[off as usize..(off + len) as usize].copy_from_slice(&fsx_data(k, off, len));
            }
        }
        FsxOp::Truncate { size } => model.resize(size as usize, 0),
        FsxOp::Fallocate { off, len, keep } => {
            if !keep && off + len > size {
                model.resize((off + len) as usize, 0);
            }
        }
        FsxOp::Punch { off, len } => {
            if let Some((off, len)) = clamp(off, len, size) {
                model[off as usize..(off + len) as usize].fill(0);
            }
        }
        FsxOp::Read { .. } | FsxOp::MapRead { .. } => {}
    }
}

fn first_diff(got: &[u8], want: &[u8]) -> Option<String> {
    if got == want {
        return None;
    }
    match got.iter().zip(want).position(|(a, b)| a != b) {
        Some(i) => Some(format!(
            "at +{i}: got {:#04x} want {:#04x} ({} of {} bytes differ)",
            got[i],
            want[i],
            got.iter().zip(want).filter(|(a, b)| a != b).count(),
            want.len()
        )),
        None => Some(format!("got {} bytes, want {}", got.len(), want.len())),
    }
}

fn falloc(f: &File, mode: libc::c_int, off: u64, len: u64) -> Result<(), String> {
    // SAFETY: fallocate(2) on an open descriptor; no memory is passed.
    let rc =
        unsafe { libc::fallocate(f.as_raw_fd(), mode, off as libc::off_t, len as libc::off_t) };
    if rc != 0 {
        return Err(format!("fallocate: {}", err_name(&Error::last_os_error())));
    }
    Ok(())
}

/// Runs op `k` on the file; the result is checked against `model` (before the op for reads,
/// after it for the size).
fn fsx_run(f: &File, k: u64, op: FsxOp, model_before: &[u8]) -> Result<(), String> {
    let size = model_before.len() as u64;
    let io = |what: &str, e: Error| format!("{what}: {}", err_name(&e));
    match op {
        FsxOp::Write { off, len } => {
            let n = f
                .write_at(&fsx_data(k, off, len), off)
                .map_err(|e| io("pwrite", e))?;
            if n as u64 != len {
                return Err(format!("pwrite wrote {n} of {len}"));
            }
        }
        FsxOp::Read { off, len } => {
            let mut buf = vec![0u8; len as usize];
            let mut got = 0usize;
            while got < buf.len() {
                let n = f
                    .read_at(&mut buf[got..], off + got as u64)
                    .map_err(|e| io("pread", e))?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            let want = &model_before[(off.min(size)) as usize..((off + len).min(size)) as usize];
            if let Some(d) = first_diff(&buf[..got], want) {
                return Err(format!("pread: {d}"));
            }
        }
        FsxOp::MapRead { off, len } | FsxOp::MapWrite { off, len } => {
            let Some((off, len)) = clamp(off, len, size) else {
                return Ok(());
            };
            // A mapping past the file's end faults with SIGBUS: a node whose idea of the size
            // is stale must fail the op, not die.
            let real = f.metadata().map_err(|e| io("fstat", e))?.len();
            if real != size {
                return Err(format!("size {real} before a mapped op, want {size}"));
            }
            let base = off & !(BLOCK_BYTES as u64 - 1);
            let write = matches!(op, FsxOp::MapWrite { .. });
            let mut m =
                Map::new(f, base, (off + len - base) as usize, write).map_err(|e| io("mmap", e))?;
            let range = (off - base) as usize..(off + len - base) as usize;
            if write {
                m.slice_mut()[range].copy_from_slice(&fsx_data(k, off, len));
                m.msync().map_err(|e| io("msync", e))?;
            } else if let Some(d) = first_diff(
                &m.slice()[range],
                &model_before[off as usize..(off + len) as usize],
            ) {
                return Err(format!("mapped read: {d}"));
            }
        }
        FsxOp::Truncate { size } => f.set_len(size).map_err(|e| io("ftruncate", e))?,
        FsxOp::Fallocate { off, len, keep } => {
            let mode = if keep { libc::FALLOC_FL_KEEP_SIZE } else { 0 };
            falloc(f, mode, off, len)?
        }
        FsxOp::Punch { off, len } => falloc(
            f,
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            off,
            len,
        )?,
    }
    Ok(())
}

/// Marks the fsx schedule at `sector` failed, so the other nodes stop waiting (the shell calls
/// this when `fsx` itself died, e.g. of a signal).
pub fn cmd_fsx_abort(witness: &str, sector: u64) -> Result<ExitCode, String> {
    let w = Witness::open(witness)?;
    let word = w.read_word(sector)?;
    w.write_word(sector, FSX_FAILED | (word & !FSX_FAILED))?;
    Ok(ExitCode::SUCCESS)
}

/// How a wait on the fsx progress word ended.
enum FsxWait {
    /// The word met the condition.
    Reached,
    /// A node marked the schedule failed (the message says which op).
    Failed(String),
    /// `FSX_WAIT_SECS` passed; the last value read.
    TimedOut(u64),
}

/// Polls the progress word at `sector` every `poll` until `done` holds, a node marks the
/// schedule failed, or `FSX_WAIT_SECS` pass.
fn fsx_wait(
    w: &Witness,
    sector: u64,
    done: impl Fn(u64) -> bool,
    poll: Duration,
) -> Result<FsxWait, String> {
    let deadline = Instant::now() + Duration::from_secs(FSX_WAIT_SECS);
    loop {
        let word = w.read_word(sector)?;
        if word & FSX_FAILED != 0 {
            return Ok(FsxWait::Failed(format!(
                "stopped: op {} failed on another node",
                word & !FSX_FAILED
            )));
        }
        if done(word) {
            return Ok(FsxWait::Reached);
        }
        if Instant::now() > deadline {
            return Ok(FsxWait::TimedOut(word));
        }
        std::thread::sleep(poll);
    }
}

/// fsx on one file, op `k` run by the node the schedule names; the others wait on the witness
/// word at `sector` (ops done so far). Every node keeps the model and checks its own ops'
/// results and the file size after each against it. Prints one `MXFS-RESULT <name>` line.
#[allow(clippy::too_many_arguments)]
pub fn cmd_fsx(
    file: &str,
    node: u32,
    nodes: u32,
    ops: u64,
    seed: u64,
    witness: &str,
    sector: u64,
    name: &str,
) -> Result<ExitCode, String> {
    let w = Witness::open(witness)?;
    let started = Instant::now();
    let f = OpenOptions::new().read(true).write(true).open(file);
    let mut model: Vec<u8> = Vec::new();
    let mut mine: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut failure: Option<String> = None;
    let mut waited_ms = 0u128;
    for k in 0..ops {
        let (who, op) = fsx_op(seed, k, nodes);
        if who == node {
            // Wait until op k-1 is done (or somebody failed).
            let t0 = Instant::now();
            match fsx_wait(&w, sector, |word| word == k, Duration::from_micros(500))? {
                FsxWait::Reached => {}
                FsxWait::Failed(e) => failure = Some(e),
                FsxWait::TimedOut(word) => {
                    failure = Some(format!(
                        "op {k}: op {word} not done within {FSX_WAIT_SECS} s"
                    ));
                    let _ = w.write_word(sector, FSX_FAILED | k);
                }
            }
            waited_ms += t0.elapsed().as_millis();
            if failure.is_some() {
                break;
            }
            let res = match &f {
                Ok(f) => fsx_run(f, k, op, &model).and_then(|()| {
                    let mut after = model.clone();
                    fsx_model(&mut after, k, op);
                    let size = f
                        .metadata()
                        .map_err(|e| format!("fstat: {}", err_name(&e)))?
                        .len();
                    if size != after.len() as u64 {
                        return Err(format!("size {size} after the op, want {}", after.len()));
                    }
                    Ok(())
                }),
                Err(e) => Err(format!("open {file}: {}", err_name(e))),
            };
            *mine.entry(op.kind()).or_default() += 1;
            if let Err(e) = res {
                failure = Some(format!("op {k} {op:?}: {e}"));
                let _ = w.write_word(sector, FSX_FAILED | k);
                break;
            }
            w.write_word(sector, k + 1)?;
        }
        fsx_model(&mut model, k, op);
    }
    // The last op may be another node's: wait for the end before the verdict.
    if failure.is_none() {
        match fsx_wait(&w, sector, |word| word >= ops, Duration::from_millis(2))? {
            FsxWait::Reached => {}
            FsxWait::Failed(e) => failure = Some(e),
            FsxWait::TimedOut(word) => failure = Some(format!("only {word} of {ops} ops done")),
        }
    }
    let ran: u64 = mine.values().sum();
    let kinds: Vec<String> = mine.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let secs = started.elapsed().as_secs_f64();
    match failure {
        None => {
            println!(
                "MXFS-RESULT {name} PASS node {node} ran {ran} of {ops} ops ({}), all as the \
                 model says; {secs:.1} s, {waited_ms} ms waiting; seed {seed}",
                kinds.join(", ")
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(e) => {
            println!(
                "MXFS-RESULT {name} FAIL node {node}: {e} (ran {ran}: {}; {secs:.1} s; seed {seed})",
                kinds.join(", ")
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_values_parse() {
        assert_eq!(block_value(&[0u8; BLOCK_BYTES], 0, 1), "init");
        assert_eq!(block_value(&stamp_block(2, 0, 1, 17), 0, 1), "2:17");
        // A stamp of another block is not this block's value.
        assert!(block_value(&stamp_block(2, 0, 3, 17), 0, 1).starts_with("torn"));
        let mut mix = stamp_block(2, 0, 1, 17);
        mix[2048..].copy_from_slice(&stamp_block(3, 0, 1, 5)[2048..]);
        assert_eq!(block_value(&mix, 0, 1), "torn:2:17x64,3:5x64");
    }

    #[test]
    fn fsx_model_follows_posix() {
        let mut m = Vec::new();
        fsx_model(&mut m, 1, FsxOp::Write { off: 10, len: 5 });
        assert_eq!(m.len(), 15);
        assert!(m[..10].iter().all(|b| *b == 0) && m[10..].iter().all(|b| *b != 0));
        fsx_model(&mut m, 2, FsxOp::Punch { off: 12, len: 100 });
        assert!(m[12..].iter().all(|b| *b == 0) && m.len() == 15);
        fsx_model(&mut m, 3, FsxOp::MapWrite { off: 14, len: 100 });
        assert_eq!(m.len(), 15, "a mapping cannot extend the file");
        fsx_model(
            &mut m,
            4,
            FsxOp::Fallocate {
                off: 0,
                len: 40,
                keep: true,
            },
        );
        assert_eq!(m.len(), 15);
        fsx_model(
            &mut m,
            5,
            FsxOp::Fallocate {
                off: 0,
                len: 40,
                keep: false,
            },
        );
        assert_eq!(m.len(), 40);
        fsx_model(&mut m, 6, FsxOp::Truncate { size: 3 });
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn fsx_schedule_is_shared_and_uses_every_node() {
        let a: Vec<_> = (0..200).map(|k| fsx_op(7, k, 3).0).collect();
        let b: Vec<_> = (0..200).map(|k| fsx_op(7, k, 3).0).collect();
        assert_eq!(a, b);
        for n in 1..=3 {
            assert!(a.contains(&n));
        }
    }

    #[test]
    fn ns_universe_names_every_path() {
        let u = ns_universe();
        assert_eq!(u.len(), 3 + 4 * 7);
        assert!(u.contains(&"d2/l2".to_string()));
    }
}
