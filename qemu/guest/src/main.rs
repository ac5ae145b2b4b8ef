//! `mxfs-guest`: the test driver that runs inside the QEMU guests.
//!
//! It talks to `mxfs.ko` over real Generic Netlink: the `mxfs_dbg` family (module loaded with
//! `debug=1`) drives the lock hooks, and the `mxfs` family is used to check who may send what,
//! or to play a scripted daemon for single-node tests. Every outcome can be checked against an
//! `--expect`ed errno name; the exit code is 0 exactly when it matched, and one line starting
//! with `PASS` or `FAIL` says what happened.

mod bench;
mod callouts;
mod crash;
mod fs;
mod genl;

use std::fs::OpenOptions;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use genl::{errno_by_name, errno_name, GenlError, Socket};
use mxfs_proto::{
    encode_attrs, parse_attrs, CacheInval, Command, LockDeny, LockFlags, LockGrant, LockMode,
    LockRelease, LockReq, Message, RecoveryDone, RecoveryStart, ResourceId, StatusReq, VolumeMount,
    ATTRS_LEN_MAX, FAMILY_NAME,
};

/// Debug family name and commands (kmod/glue.c).
const DBG_FAMILY: &str = "mxfs_dbg";
const DBG_LOCK: u8 = 1;
const DBG_UNLOCK: u8 = 2;
const DBG_VOLUME_ADD: u8 = 3;
/// Longest any single netlink exchange may take: above GRANT_TIMEOUT_MS (30 s).
const RECV_TIMEOUT_SECS: u64 = 45;

#[derive(Parser)]
#[command(
    name = "mxfs-guest",
    about = "MXFS guest test driver (talks to mxfs.ko)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Takes a cluster lock through the lock hook (mxfs_dbg DBG_LOCK), holds it, releases it.
    Lock {
        /// inode:VOL:INO, extent:VOL:INO:OFFSET or ag:VOL:AGNO (numbers decimal or 0x hex).
        resource: String,
        /// NL, CR, CW, PR, PW or EX.
        mode: String,
        /// Try-lock: deny at once if not grantable.
        #[arg(long)]
        noqueue: bool,
        /// How long to hold the lock before releasing it.
        #[arg(long, default_value_t = 0)]
        hold_ms: u64,
        /// Repeat lock/hold/release this many times.
        #[arg(long, default_value_t = 1)]
        iterations: u32,
        /// Expected outcome: OK or an errno name (ENOTCONN, ETIMEDOUT, EAGAIN, EPERM, ...).
        #[arg(long)]
        expect: Option<String>,
        /// Append JSON-lines history events to this file.
        #[arg(long)]
        history: Option<String>,
        /// Node id written into history lines.
        #[arg(long, default_value_t = 0)]
        node: u32,
        /// A shared raw disk (O_DIRECT) used as the exclusion witness, see `witness`.
        #[arg(long)]
        witness: Option<String>,
    },
    /// Sends STATUS_REQ on the mxfs family, optionally after dropping to an unprivileged uid.
    Status {
        #[arg(long)]
        as_uid: Option<u32>,
        #[arg(long)]
        expect: Option<String>,
    },
    /// Sends a LOCK_GRANT as if it were the daemon (to check that others are refused).
    SendGrant {
        resource: String,
        #[arg(long, default_value_t = 1)]
        req_id: u64,
        #[arg(long)]
        expect: Option<String>,
    },
    /// Plays the daemon: registers, answers `count` LOCK_REQs as told, logs LOCK_RELEASEs.
    FakeDaemon {
        /// grant, deny, ignore, or late (grant after --late-ms).
        #[arg(long, default_value = "grant")]
        answer: String,
        #[arg(long, default_value_t = 1)]
        count: u32,
        #[arg(long, default_value_t = 0)]
        late_ms: u64,
        /// Before each grant, send CACHE_INVAL(VOL, INO, 0, 0).
        #[arg(long)]
        inval: Option<String>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 120)]
        deadline_secs: u64,
        /// VOL:MS: first send RECOVERY_START for VOL, stay in recovery MS milliseconds (failing
        /// if a LOCK_REQ arrives meanwhile), then send RECOVERY_DONE.
        #[arg(long)]
        recover: Option<String>,
    },
    /// Registers a mounted file system in mxfs's cache table (DBG_VOLUME_ADD); prints its id.
    VolumeAdd { mount: String },
    /// Prints how many pages of FILE are resident in the page cache (mmap + mincore).
    Resident { file: String },
    /// Runs one system call per XFS operation on DIR and checks the callouts each produced
    /// (mxfs.ko's op_counts): one `MXFS-RESULT callout_<op>` line each, or with --plain one
    /// `plain_xfs_no_callouts` line that requires none at all.
    Callouts {
        dir: String,
        #[arg(long)]
        plain: bool,
    },
    /// With mxfs.ko's op_fail_eio set, a write, a read and a mkdir on DIR must fail with EIO and
    /// change nothing (`mxfs_fail_*` result lines).
    CalloutsFail { dir: String },
    /// Asks XFS to grow the data section of the file system mounted at MOUNT to the size it has
    /// (XFS_IOC_FSGEOMETRY, then XFS_IOC_FSGROWFSDATA): a no-op that plain XFS accepts, so the
    /// errno shows whether growfs itself is refused.
    Growfs {
        mount: String,
        #[arg(long)]
        expect: Option<String>,
    },
    /// Cluster barrier on the witness disk: records that this node reached `phase`, then waits
    /// until every node in `nodes` has.
    Barrier {
        #[arg(long)]
        witness: String,
        #[arg(long)]
        node: u32,
        /// Comma-separated node ids that must reach the phase.
        #[arg(long)]
        nodes: String,
        #[arg(long)]
        phase: u64,
        #[arg(long, default_value_t = 180)]
        timeout_secs: u64,
    },
    /// Answers clock-sync datagrams with this node's TSC (node 1, during the FS phase).
    ClockServe {
        #[arg(long, default_value_t = 7200)]
        port: u16,
        #[arg(long, default_value_t = 30)]
        secs: u64,
    },
    /// Measures node 1's TSC offset to this node's; prints an `MXFS-CLOCK` line.
    ClockSync {
        /// node 1's address:port.
        #[arg(long, default_value = "10.77.0.1:7200")]
        server: String,
        #[arg(long)]
        node: u32,
        /// `start` or `end` of the FS phase.
        #[arg(long, default_value = "start")]
        at: String,
    },
    /// Creates the shared data files (zeros: the initial value of every block).
    DataSetup {
        dir: String,
        #[arg(long, default_value_t = 2)]
        files: u32,
        #[arg(long, default_value_t = 8)]
        blocks: u32,
    },
    /// Random whole-block reads and writes with unique stamps; `MXFS-DATA` lines.
    Data {
        dir: String,
        #[arg(long)]
        node: u32,
        #[arg(long, default_value_t = 2)]
        files: u32,
        #[arg(long, default_value_t = 8)]
        blocks: u32,
        #[arg(long, default_value_t = 200)]
        ops: u32,
        /// Stop early after this many seconds.
        #[arg(long, default_value_t = 120)]
        secs: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Read every block once (after all nodes finished).
        #[arg(long = "final")]
        fin: bool,
    },
    /// chmod, chown, utimes, truncate to the values of TURN.
    AttrSet { file: String, turn: u32 },
    /// stat must show the values of TURN.
    AttrCheck { file: String, turn: u32 },
    /// Creates the mmap file.
    MmapSetup { file: String },
    /// Writes TURN's page through a shared mapping (msync or munmap).
    MmapSet { file: String, turn: u32 },
    /// TURN's page must read back by read(2) and through a mapping.
    MmapCheck { file: String, turn: u32 },
    /// Random namespace operations in DIR; `MXFS-NS` lines.
    Ns {
        dir: String,
        #[arg(long)]
        node: u32,
        #[arg(long, default_value_t = 120)]
        ops: u32,
        #[arg(long, default_value_t = 120)]
        secs: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Lists DIR (path, inode, links, type): one `MXFS-NSLIST` line.
    NsList {
        dir: String,
        #[arg(long)]
        node: u32,
    },
    /// fsx on FILE, each op run by the node a shared seeded schedule names.
    Fsx {
        file: String,
        #[arg(long)]
        node: u32,
        #[arg(long)]
        nodes: u32,
        #[arg(long, default_value_t = 2000)]
        ops: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        witness: String,
        /// Witness sector of the progress word (must start at 0).
        #[arg(long, default_value_t = 1300)]
        sector: u64,
        /// Name of the result line.
        #[arg(long, default_value = "cluster_fsx")]
        name: String,
    },
    /// Marks the fsx schedule failed (after `fsx` died).
    FsxAbort {
        #[arg(long)]
        witness: String,
        #[arg(long, default_value_t = 1300)]
        sector: u64,
    },
    /// Fence agent for mxfsd: waits until the host has marked NODE fenced on the witness disk
    /// (it does so after killing that guest). Exit 0 means fenced.
    FenceWait {
        #[arg(long)]
        witness: String,
        #[arg(long, default_value_t = 8)]
        timeout_secs: u64,
        /// Node id (mxfsd appends it, then the node name).
        node: u32,
        name: Option<String>,
    },
    /// Crash phase: the fsync-acknowledged storm in DIR until the host stops it (crash.rs).
    CrashStorm {
        dir: String,
        #[arg(long)]
        node: u32,
        /// Cluster size (every node is up when the host asks for a kill).
        #[arg(long)]
        nodes: u32,
        /// This node's incarnation (0 at the first boot, then the round it rejoined after).
        #[arg(long, default_value_t = 0)]
        inc: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        witness: String,
    },
    /// Crash phase: prints what ROOT/c<n> holds for n in 1..=NODES (MXFS-CRASH-FINAL lines,
    /// or MXFS-CRASH-SNAP lines of round SNAP).
    CrashList {
        root: String,
        #[arg(long)]
        nodes: u32,
        /// Only these nodes' directories (comma-separated ids).
        #[arg(long, value_delimiter = ',')]
        only: Vec<u32>,
        /// Print the lines as the snapshot of this round.
        #[arg(long)]
        snap: Option<u32>,
    },
    /// Crash phase: reports the host's kill marks with this guest's uptime, and lists a dead
    /// node's directory under ROOT when the host asks (snapshots after each recovery).
    CrashWatch {
        #[arg(long)]
        witness: String,
        #[arg(long)]
        root: String,
    },
    /// `just bench-fs` workloads; each prints `MXFS-BENCH <key> <value>` lines.
    BenchFs {
        #[command(subcommand)]
        what: BenchCmd,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// 4 KiB random overwrite, small-file create+unlink, stat of many files, fstat: in DIR
    /// (keys `mxfs_...`) against PLAIN_DIR (keys `plain_...`), the two taking turns.
    Single {
        dir: String,
        plain_dir: String,
        /// Seconds per workload and mount, in pairs of batches taking turns.
        #[arg(long, default_value_t = 4.0)]
        secs: f64,
    },
    /// Two nodes alternately write FILE (ME is 0 or 1): volume-lock hand-offs.
    Pingpong {
        file: String,
        #[arg(long)]
        me: u64,
        #[arg(long, default_value_t = 40)]
        rounds: u64,
        #[arg(long, default_value_t = 120)]
        timeout_secs: u64,
    },
    /// Creates small files in DIR for SECS.
    Creates {
        dir: String,
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
    },
}

fn parse_num(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|e| format!("bad number {s:?}: {e}"))
}

fn parse_resource(s: &str) -> Result<ResourceId, String> {
    let p: Vec<&str> = s.split(':').collect();
    match p.as_slice() {
        ["inode", v, i] => Ok(ResourceId::inode(parse_num(v)?, parse_num(i)?)),
        ["extent", v, i, o] => Ok(ResourceId::extent(
            parse_num(v)?,
            parse_num(i)?,
            parse_num(o)?,
        )),
        ["ag", v, a] => Ok(ResourceId::ag(parse_num(v)?, parse_num(a)?)),
        ["volume", v] => Ok(ResourceId::volume(parse_num(v)?)),
        _ => Err(format!(
            "bad resource {s:?}: want inode:VOL:INO, extent:VOL:INO:OFF, ag:VOL:AG or volume:VOL"
        )),
    }
}

fn parse_mode(s: &str) -> Result<LockMode, String> {
    LockMode::ALL
        .into_iter()
        .find(|m| m.name().eq_ignore_ascii_case(s))
        .ok_or_else(|| format!("bad lock mode {s:?}: want NL, CR, CW, PR, PW or EX"))
}

fn encode(msg: &Message<'_>) -> Result<Vec<u8>, String> {
    let mut buf = [0u8; ATTRS_LEN_MAX];
    let n =
        encode_attrs(msg, &mut buf).map_err(|e| format!("encode {:?}: {e:?}", msg.command()))?;
    Ok(buf[..n].to_vec())
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn res_str(r: &ResourceId) -> String {
    format!("{:?}:{:#x}:{}:{}", r.kind, r.volume, r.a, r.b)
}

/// JSON-lines history of one process.
struct History {
    file: Option<std::fs::File>,
    node: u32,
}

impl History {
    fn event(&mut self, req_id: u64, r: &ResourceId, event: &str, extra: serde_json::Value) {
        let Some(f) = self.file.as_mut() else { return };
        let line = serde_json::json!({
            "node": self.node, "time_ns": now_ns().to_string(), "req_id": req_id,
            "resource": res_str(r), "event": event, "extra": extra,
        });
        // One write(2) per line: two processes append to the same file (O_APPEND), and
        // `writeln!` on a File issues one write per formatting piece, which interleaved two
        // holders' lines ("{{\"event\"\"event\"..." seen in a CI dry run).
        let mut text = line.to_string();
        text.push('\n');
        let _ = f.write_all(text.as_bytes());
    }
}

/// The exclusion witness: one 512-byte sector per resource slot on a shared raw disk, read and
/// written with O_DIRECT so every node sees the disk, not its cache. A holder records what it
/// found on acquire (must be empty) and on release (must still be its own token), then clears.
/// The host checker reads those observations from the histories.
struct Witness {
    fd: libc::c_int,
    buf: *mut u8,
}

const SECTOR: usize = 4096;
/// Resource slots of the witness disk (sectors 0..WITNESS_SLOTS).
const WITNESS_SLOTS: u64 = 1024;
/// First barrier sector (one per node id).
const BARRIER_SECTOR: u64 = WITNESS_SLOTS;
/// First fence-mark sector (one per node id), written by the host.
const FENCE_SECTOR: u64 = WITNESS_SLOTS + 128;
/// The host's "fenced" mark.
const FENCED_MARK: u64 = 0xFE9C_ED00_0000_0001;

impl Witness {
    fn open(path: &str) -> Result<Witness, String> {
        let c = std::ffi::CString::new(path).map_err(|_| "witness path has NUL".to_string())?;
        // SAFETY: plain open(2) with a NUL-terminated path.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_DIRECT | libc::O_SYNC) };
        if fd < 0 {
            return Err(format!(
                "open witness {path}: {}",
                std::io::Error::last_os_error()
            ));
        }
        let mut p: *mut libc::c_void = std::ptr::null_mut();
        // SAFETY: allocates an aligned buffer for O_DIRECT.
        if unsafe { libc::posix_memalign(&mut p, SECTOR, SECTOR) } != 0 {
            return Err("posix_memalign failed".into());
        }
        Ok(Witness { fd, buf: p.cast() })
    }

    /// Sector of a control word: barrier phases at `BARRIER_SECTOR + node`, fence marks at
    /// `FENCE_SECTOR + node` (written by the host).
    fn read_word(&self, sector: u64) -> Result<u64, String> {
        // SAFETY: `buf` is SECTOR bytes, aligned; `fd` is open.
        let n = unsafe {
            libc::pread(
                self.fd,
                self.buf.cast(),
                SECTOR,
                (sector * SECTOR as u64) as i64,
            )
        };
        if n != SECTOR as isize {
            return Err(format!("witness read: {}", std::io::Error::last_os_error()));
        }
        let mut b = [0u8; 8];
        // SAFETY: `buf` holds at least 8 initialised bytes after the read.
        unsafe { std::ptr::copy_nonoverlapping(self.buf, b.as_mut_ptr(), 8) };
        Ok(u64::from_le_bytes(b))
    }

    fn write_word(&self, sector: u64, v: u64) -> Result<(), String> {
        // SAFETY: `buf` is SECTOR bytes.
        unsafe {
            std::ptr::write_bytes(self.buf, 0, SECTOR);
            std::ptr::copy_nonoverlapping(v.to_le_bytes().as_ptr(), self.buf, 8);
        }
        // SAFETY: as in `read_word`.
        let n = unsafe {
            libc::pwrite(
                self.fd,
                self.buf.cast(),
                SECTOR,
                (sector * SECTOR as u64) as i64,
            )
        };
        if n != SECTOR as isize {
            return Err(format!(
                "witness write: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }

    /// The sector of a resource's slot.
    fn slot(r: &ResourceId) -> u64 {
        r.a.wrapping_mul(31)
            .wrapping_add(r.b / 4096)
            .wrapping_add(r.kind as u64)
            % WITNESS_SLOTS
    }

    fn read(&self, r: &ResourceId) -> Result<u64, String> {
        self.read_word(Self::slot(r))
    }

    fn write(&self, r: &ResourceId, token: u64) -> Result<(), String> {
        self.write_word(Self::slot(r), token)
    }
}

/// Outcome of a command: 0 (OK) or a negative errno.
fn outcome(r: &Result<(), GenlError>) -> Result<i32, String> {
    match r {
        Ok(()) => Ok(0),
        Err(GenlError::Errno(e)) => Ok(*e),
        Err(e) => Err(e.to_string()),
    }
}

fn check(what: &str, got: i32, expect: &Option<String>, detail: &str) -> Result<ExitCode, String> {
    let want = match expect {
        None => 0,
        Some(n) => errno_by_name(n).ok_or_else(|| format!("unknown errno name {n:?}"))?,
    };
    let verdict = if got == want { "PASS" } else { "FAIL" };
    println!(
        "{verdict} {what}: got {} want {} {detail}",
        errno_name(got),
        errno_name(want)
    );
    Ok(if got == want {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn open() -> Result<Socket, String> {
    Socket::open(Duration::from_secs(RECV_TIMEOUT_SECS)).map_err(|e| e.to_string())
}

#[allow(clippy::too_many_arguments)]
fn cmd_lock(
    resource: &str,
    mode: &str,
    noqueue: bool,
    hold_ms: u64,
    iterations: u32,
    expect: &Option<String>,
    history: &Option<String>,
    node: u32,
    witness: &Option<String>,
) -> Result<ExitCode, String> {
    let r = parse_resource(resource)?;
    let m = parse_mode(mode)?;
    let mut s = open()?;
    let (fam, _) = s
        .resolve(DBG_FAMILY)
        .map_err(|e| format!("resolve {DBG_FAMILY}: {e}"))?;
    let file = match history {
        Some(p) => Some(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| format!("{p}: {e}"))?,
        ),
        None => None,
    };
    let mut h = History { file, node };
    let w = witness.as_deref().map(Witness::open).transpose()?;
    let flags = if noqueue {
        LockFlags::NOQUEUE
    } else {
        LockFlags::empty()
    };
    let req = encode(&Message::LockReq(LockReq {
        req_id: 0,
        resource: r,
        mode: m,
        flags,
        timeout_ms: None,
    }))?;
    let mut last = 0;
    let mut detail = String::new();
    for _ in 0..iterations {
        let t0 = Instant::now();
        h.event(0, &r, "request", serde_json::json!({"mode": m.name()}));
        let res = s.request(fam, DBG_LOCK, &req);
        let replies = match res {
            Ok(rep) => rep,
            Err(e) => {
                last = outcome(&Err(e))?;
                h.event(
                    0,
                    &r,
                    "error",
                    serde_json::json!({"errno": errno_name(last)}),
                );
                detail = format!("after {} ms", t0.elapsed().as_millis());
                break;
            }
        };
        let (_, payload) = replies.first().ok_or("DBG_LOCK: no reply")?;
        let Ok(Message::LockGrant(g)) = parse_attrs(Command::LockGrant, payload) else {
            return Err("DBG_LOCK reply is not a LOCK_GRANT payload".into());
        };
        let token = ((node as u64) << 48) | (g.req_id & 0xffff_ffff_ffff);
        let seen = w.as_ref().map(|w| w.read(&r)).transpose()?;
        h.event(
            g.req_id,
            &r,
            "granted",
            serde_json::json!({"mode": m.name(), "witness_seen": seen, "token": token}),
        );
        if let Some(w) = &w {
            if m.is_write() {
                w.write(&r, token)?;
            }
        }
        std::thread::sleep(Duration::from_millis(hold_ms));
        let seen_end = w.as_ref().map(|w| w.read(&r)).transpose()?;
        if let Some(w) = &w {
            if m.is_write() {
                w.write(&r, 0)?;
            }
        }
        h.event(
            g.req_id,
            &r,
            "release",
            serde_json::json!({"mode": m.name(), "witness_seen": seen_end, "token": token}),
        );
        let rel = encode(&Message::LockRelease(LockRelease {
            req_id: g.req_id,
            resource: r,
            mode: Some(m),
        }))?;
        last = outcome(&s.request(fam, DBG_UNLOCK, &rel).map(|_| ()))?;
        detail = format!(
            "req_id {} granted after {} ms",
            g.req_id,
            t0.elapsed().as_millis()
        );
        if last != 0 {
            break;
        }
    }
    check(&format!("lock {resource} {mode}"), last, expect, &detail)
}

fn drop_privileges(uid: u32) -> Result<(), String> {
    // SAFETY: plain setgid/setuid calls; failure is reported.
    let ok = unsafe { libc::setgid(uid) == 0 && libc::setuid(uid) == 0 };
    if !ok {
        return Err(format!(
            "setuid({uid}): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn cmd_status(as_uid: Option<u32>, expect: &Option<String>) -> Result<ExitCode, String> {
    let mut s = open()?;
    let (fam, _) = s
        .resolve(FAMILY_NAME)
        .map_err(|e| format!("resolve {FAMILY_NAME}: {e}"))?;
    if let Some(u) = as_uid {
        drop_privileges(u)?;
    }
    let attrs = encode(&Message::StatusReq(StatusReq))?;
    let r = s.request(fam, Command::StatusReq as u8, &attrs);
    let detail = match &r {
        Ok(rep) => rep
            .iter()
            .filter_map(|(c, p)| Command::from_u8(*c).and_then(|c| parse_attrs(c, p).ok()))
            .map(|m| format!("{m:?}"))
            .collect::<Vec<_>>()
            .join(" "),
        Err(_) => String::new(),
    };
    let uid = as_uid.map(|u| format!(" as uid {u}")).unwrap_or_default();
    check(
        &format!("STATUS_REQ{uid}"),
        outcome(&r.map(|_| ()))?,
        expect,
        &detail,
    )
}

fn cmd_send_grant(
    resource: &str,
    req_id: u64,
    expect: &Option<String>,
) -> Result<ExitCode, String> {
    let r = parse_resource(resource)?;
    let mut s = open()?;
    let (fam, _) = s.resolve(FAMILY_NAME).map_err(|e| e.to_string())?;
    let attrs = encode(&Message::LockGrant(LockGrant {
        req_id,
        resource: r,
        mode: LockMode::Ex,
        data_version: None,
    }))?;
    let got = outcome(&s.request(fam, Command::LockGrant as u8, &attrs).map(|_| ()))?;
    check("LOCK_GRANT from a non-daemon", got, expect, "")
}

fn cmd_fake_daemon(
    answer: &str,
    count: u32,
    late_ms: u64,
    inval: &Option<String>,
    deadline_secs: u64,
    recover: &Option<String>,
) -> Result<ExitCode, String> {
    let mut s = Socket::open(Duration::from_secs(1)).map_err(|e| e.to_string())?;
    let (fam, _) = s.resolve(FAMILY_NAME).map_err(|e| e.to_string())?;
    let attrs = encode(&Message::StatusReq(StatusReq))?;
    s.request(fam, Command::StatusReq as u8, &attrs)
        .map_err(|e| format!("register: {e}"))?;
    println!("fake-daemon: registered, answering {count} request(s) with {answer}");
    let _ = std::io::stdout().flush();
    if let Some(r) = recover {
        let (v, ms) = r.split_once(':').ok_or("--recover wants VOL:MS")?;
        if !recovery_window(&mut s, fam, parse_num(v)?, parse_num(ms)?)? {
            return Ok(ExitCode::FAILURE);
        }
    }
    let inval = inval
        .as_deref()
        .map(|v| -> Result<(u64, u64), String> {
            let (a, b) = v.split_once(':').ok_or("--inval wants VOL:INO")?;
            Ok((parse_num(a)?, parse_num(b)?))
        })
        .transpose()?;
    // A granted lock (on time or late) comes back as LOCK_RELEASE; wait for those too. A
    // daemon that ignores requests runs until its deadline (or is killed).
    let wants_release = matches!(answer, "grant" | "late");
    let finished = |answered: u32, releases: u32| {
        answer != "ignore" && answered >= count && (!wants_release || releases >= count)
    };
    let deadline = Instant::now() + Duration::from_secs(deadline_secs);
    let mut answered = 0;
    let mut releases = 0;
    while Instant::now() < deadline {
        let msgs = match s.next_messages() {
            Ok(m) => m,
            Err(GenlError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if finished(answered, releases) {
                    break;
                }
                continue;
            }
            Err(e) => return Err(e.to_string()),
        };
        for (ty, payload) in msgs {
            if ty != fam || payload.len() < 4 {
                continue;
            }
            let Some(cmd) = Command::from_u8(payload[0]) else {
                continue;
            };
            let msg = parse_attrs(cmd, &payload[4..]).map_err(|e| format!("{cmd:?}: {e}"))?;
            println!("fake-daemon: got {msg:?}");
            let _ = std::io::stdout().flush();
            match msg {
                Message::LockReq(req) if answered < count => {
                    answered += 1;
                    if let Some((vol, ino)) = inval {
                        let m = Message::CacheInval(CacheInval {
                            volume: vol,
                            ino,
                            offset: 0,
                            length: 0,
                        });
                        let r = s.request(fam, Command::CacheInval as u8, &encode(&m)?);
                        println!(
                            "fake-daemon: CACHE_INVAL -> {}",
                            outcome(&r.map(|_| ())).map(errno_name)?
                        );
                    }
                    let reply = match answer {
                        "grant" | "late" => Message::LockGrant(LockGrant {
                            req_id: req.req_id,
                            resource: req.resource,
                            mode: req.mode,
                            data_version: None,
                        }),
                        "deny" => Message::LockDeny(LockDeny {
                            req_id: req.req_id,
                            resource: req.resource,
                            status: -libc::EAGAIN,
                        }),
                        _ => continue,
                    };
                    if answer == "late" {
                        std::thread::sleep(Duration::from_millis(late_ms));
                    }
                    let r = s.request(fam, reply.command() as u8, &encode(&reply)?);
                    println!(
                        "fake-daemon: {} for {} -> {}",
                        reply.command().name(),
                        req.req_id,
                        outcome(&r.map(|_| ())).map(errno_name)?
                    );
                }
                Message::LockRelease(rel) => {
                    releases += 1;
                    println!(
                        "fake-daemon: LOCK_RELEASE req_id {} mode {:?}",
                        rel.req_id, rel.mode
                    );
                }
                _ => {}
            }
            let _ = std::io::stdout().flush();
        }
        if finished(answered, releases) {
            break;
        }
    }
    println!("fake-daemon: done, answered {answered}, releases seen {releases}");
    Ok(ExitCode::SUCCESS)
}

/// Freezes `volume` for `ms` milliseconds with RECOVERY_START/RECOVERY_DONE. Returns false if
/// the kernel sent a LOCK_REQ for that volume while it was frozen.
fn recovery_window(s: &mut Socket, fam: u16, volume: u64, ms: u64) -> Result<bool, String> {
    let start = Message::RecoveryStart(RecoveryStart { volume, epoch: 1 });
    s.request(fam, Command::RecoveryStart as u8, &encode(&start)?)
        .map_err(|e| format!("RECOVERY_START: {e}"))?;
    println!("fake-daemon: recovering volume {volume:#x} for {ms} ms");
    let _ = std::io::stdout().flush();
    let end = Instant::now() + Duration::from_millis(ms);
    let mut leaked = false;
    while Instant::now() < end {
        let msgs = match s.next_messages() {
            Ok(m) => m,
            Err(GenlError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e.to_string()),
        };
        for (ty, payload) in msgs {
            if ty == fam && payload.first() == Some(&(Command::LockReq as u8)) {
                println!("fake-daemon: FAIL a LOCK_REQ arrived during recovery");
                leaked = true;
            }
        }
    }
    let done = Message::RecoveryDone(RecoveryDone { volume, epoch: 1 });
    s.request(fam, Command::RecoveryDone as u8, &encode(&done)?)
        .map_err(|e| format!("RECOVERY_DONE: {e}"))?;
    println!("fake-daemon: RECOVERY_DONE sent");
    let _ = std::io::stdout().flush();
    Ok(!leaked)
}

fn cmd_volume_add(mount: &str) -> Result<ExitCode, String> {
    let mut s = open()?;
    let (fam, _) = s.resolve(DBG_FAMILY).map_err(|e| e.to_string())?;
    let attrs = encode(&Message::VolumeMount(VolumeMount {
        volume: 0,
        dev_path: None,
        mount_path: Some(mount),
        generation: None,
    }))?;
    let rep = s
        .request(fam, DBG_VOLUME_ADD, &attrs)
        .map_err(|e| format!("DBG_VOLUME_ADD: {e}"))?;
    let (_, p) = rep.first().ok_or("DBG_VOLUME_ADD: no reply")?;
    let Ok(Message::VolumeMount(v)) = parse_attrs(Command::VolumeMount, p) else {
        return Err("DBG_VOLUME_ADD reply is not a VOLUME_MOUNT payload".into());
    };
    println!("{:#x}", v.volume);
    Ok(ExitCode::SUCCESS)
}

fn cmd_resident(file: &str) -> Result<ExitCode, String> {
    let f = std::fs::File::open(file).map_err(|e| format!("{file}: {e}"))?;
    let len = f.metadata().map_err(|e| e.to_string())?.len() as usize;
    if len == 0 {
        println!("0/0");
        return Ok(ExitCode::SUCCESS);
    }
    use std::os::fd::AsRawFd;
    // SAFETY: maps `len` bytes of an open file read-only; unmapped below.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(format!("mmap {file}: {}", std::io::Error::last_os_error()));
    }
    let pages = len.div_ceil(4096);
    let mut vec = vec![0u8; pages];
    // SAFETY: `p` maps `len` bytes; `vec` has one byte per page.
    let rc = unsafe { libc::mincore(p, len, vec.as_mut_ptr()) };
    // SAFETY: unmaps what we mapped.
    unsafe { libc::munmap(p, len) };
    if rc != 0 {
        return Err(format!("mincore: {}", std::io::Error::last_os_error()));
    }
    let resident = vec.iter().filter(|b| **b & 1 != 0).count();
    println!("{resident}/{pages}");
    Ok(ExitCode::SUCCESS)
}

fn cmd_barrier(
    witness: &str,
    node: u32,
    nodes: &str,
    phase: u64,
    timeout_secs: u64,
) -> Result<ExitCode, String> {
    let w = Witness::open(witness)?;
    let ids: Vec<u64> = nodes.split(',').map(parse_num).collect::<Result<_, _>>()?;
    let own = BARRIER_SECTOR + node as u64;
    if w.read_word(own)? < phase {
        w.write_word(own, phase)?;
    }
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    loop {
        let mut behind = Vec::new();
        for id in &ids {
            if w.read_word(BARRIER_SECTOR + id)? < phase {
                behind.push(*id);
            }
        }
        if behind.is_empty() {
            println!("PASS barrier {phase}: nodes {nodes} reached it");
            return Ok(ExitCode::SUCCESS);
        }
        if Instant::now() > deadline {
            println!("FAIL barrier {phase}: nodes {behind:?} did not arrive in {timeout_secs} s");
            return Ok(ExitCode::FAILURE);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn cmd_fence_wait(witness: &str, node: u32, timeout_secs: u64) -> Result<ExitCode, String> {
    let w = Witness::open(witness)?;
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    while Instant::now() < deadline {
        if w.read_word(FENCE_SECTOR + node as u64)? == FENCED_MARK {
            println!("fence: node {node} is fenced (host mark on the witness disk)");
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("fence: node {node} not confirmed fenced within {timeout_secs} s");
    Ok(ExitCode::FAILURE)
}

/// `struct xfs_fsop_geom` (fs/xfs/libxfs/xfs_fs.h): 256 bytes; only the first fields are read.
#[repr(C)]
struct XfsFsopGeom {
    blocksize: u32,
    rtextsize: u32,
    agblocks: u32,
    agcount: u32,
    logblocks: u32,
    sectsize: u32,
    inodesize: u32,
    imaxpct: u32,
    datablocks: u64,
    rest: [u8; 256 - 40],
}

/// `struct xfs_growfs_data`: 16 bytes with its tail padding.
#[repr(C)]
struct XfsGrowfsData {
    newblocks: u64,
    imaxpct: u32,
    pad: u32,
}

/// `_IOR('X', 126, struct xfs_fsop_geom)` and `_IOW('X', 110, struct xfs_growfs_data)`.
const XFS_IOC_FSGEOMETRY: u64 = (2 << 30) | (256 << 16) | (0x58 << 8) | 126;
const XFS_IOC_FSGROWFSDATA: u64 = (1 << 30) | (16 << 16) | (0x58 << 8) | 110;

fn cmd_growfs(mount: &str, expect: &Option<String>) -> Result<ExitCode, String> {
    use std::os::fd::AsRawFd;
    let dir = std::fs::File::open(mount).map_err(|e| format!("open {mount}: {e}"))?;
    let mut geo = XfsFsopGeom {
        blocksize: 0,
        rtextsize: 0,
        agblocks: 0,
        agcount: 0,
        logblocks: 0,
        sectsize: 0,
        inodesize: 0,
        imaxpct: 0,
        datablocks: 0,
        rest: [0; 256 - 40],
    };
    // SAFETY: XFS_IOC_FSGEOMETRY writes one struct xfs_fsop_geom, which `geo` mirrors.
    if unsafe { libc::ioctl(dir.as_raw_fd(), XFS_IOC_FSGEOMETRY as _, &mut geo) } != 0 {
        return Err(format!(
            "XFS_IOC_FSGEOMETRY on {mount}: {}",
            std::io::Error::last_os_error()
        ));
    }
    let arg = XfsGrowfsData {
        newblocks: geo.datablocks,
        imaxpct: geo.imaxpct,
        pad: 0,
    };
    // SAFETY: XFS_IOC_FSGROWFSDATA reads one struct xfs_growfs_data, which `arg` mirrors.
    let rc = unsafe { libc::ioctl(dir.as_raw_fd(), XFS_IOC_FSGROWFSDATA as _, &arg) };
    let got = if rc == 0 {
        0
    } else {
        -std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    };
    let detail = format!("({} blocks of {} bytes)", geo.datablocks, geo.blocksize);
    check(&format!("growfs {mount}"), got, expect, &detail)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match &cli.cmd {
        Cmd::Lock {
            resource,
            mode,
            noqueue,
            hold_ms,
            iterations,
            expect,
            history,
            node,
            witness,
        } => cmd_lock(
            resource,
            mode,
            *noqueue,
            *hold_ms,
            *iterations,
            expect,
            history,
            *node,
            witness,
        ),
        Cmd::Status { as_uid, expect } => cmd_status(*as_uid, expect),
        Cmd::SendGrant {
            resource,
            req_id,
            expect,
        } => cmd_send_grant(resource, *req_id, expect),
        Cmd::FakeDaemon {
            answer,
            count,
            late_ms,
            inval,
            deadline_secs,
            recover,
        } => cmd_fake_daemon(answer, *count, *late_ms, inval, *deadline_secs, recover),
        Cmd::VolumeAdd { mount } => cmd_volume_add(mount),
        Cmd::Resident { file } => cmd_resident(file),
        Cmd::Growfs { mount, expect } => cmd_growfs(mount, expect),
        Cmd::Callouts { dir, plain } => callouts::cmd_callouts(dir, *plain),
        Cmd::CalloutsFail { dir } => callouts::cmd_callouts_fail(dir),
        Cmd::Barrier {
            witness,
            node,
            nodes,
            phase,
            timeout_secs,
        } => cmd_barrier(witness, *node, nodes, *phase, *timeout_secs),
        Cmd::FenceWait {
            witness,
            timeout_secs,
            node,
            name: _,
        } => cmd_fence_wait(witness, *node, *timeout_secs),
        Cmd::CrashStorm {
            dir,
            node,
            nodes,
            inc,
            seed,
            witness,
        } => crash::cmd_storm(dir, *node, *nodes, *inc, *seed, witness),
        Cmd::CrashList {
            root,
            nodes,
            only,
            snap,
        } => crash::cmd_list(root, *nodes, only, *snap),
        Cmd::CrashWatch { witness, root } => crash::cmd_watch(witness, root),
        Cmd::BenchFs { what } => match what {
            BenchCmd::Single {
                dir,
                plain_dir,
                secs,
            } => bench::cmd_single((dir, "mxfs"), (plain_dir, "plain"), *secs),
            BenchCmd::Pingpong {
                file,
                me,
                rounds,
                timeout_secs,
            } => bench::cmd_pingpong(file, *me, *rounds, *timeout_secs),
            BenchCmd::Creates { dir, secs } => bench::cmd_creates(dir, *secs),
        },
        Cmd::FsxAbort { witness, sector } => fs::cmd_fsx_abort(witness, *sector),
        Cmd::ClockServe { port, secs } => fs::cmd_clock_serve(*port, *secs),
        Cmd::ClockSync { server, node, at } => fs::cmd_clock_sync(server, *node, at),
        Cmd::DataSetup { dir, files, blocks } => fs::cmd_data_setup(dir, *files, *blocks),
        Cmd::Data {
            dir,
            node,
            files,
            blocks,
            ops,
            secs,
            seed,
            fin,
        } => fs::cmd_data(dir, *node, *files, *blocks, *ops, *secs, *seed, *fin),
        Cmd::AttrSet { file, turn } => fs::cmd_attr_set(file, *turn),
        Cmd::AttrCheck { file, turn } => fs::cmd_attr_check(file, *turn),
        Cmd::MmapSetup { file } => fs::cmd_mmap_setup(file),
        Cmd::MmapSet { file, turn } => fs::cmd_mmap_set(file, *turn),
        Cmd::MmapCheck { file, turn } => fs::cmd_mmap_check(file, *turn),
        Cmd::Ns {
            dir,
            node,
            ops,
            secs,
            seed,
        } => fs::cmd_ns(dir, *node, *ops, *secs, *seed),
        Cmd::NsList { dir, node } => fs::cmd_ns_list(dir, *node),
        Cmd::Fsx {
            file,
            node,
            nodes,
            ops,
            seed,
            witness,
            sector,
            name,
        } => fs::cmd_fsx(file, *node, *nodes, *ops, *seed, witness, *sector, name),
    };
    match r {
        Ok(c) => c,
        Err(e) => {
            println!("FAIL error: {e}");
            ExitCode::from(2)
        }
    }
}
