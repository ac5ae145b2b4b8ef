//! `mxfsctl`: status, lock dumps, a live contention view, and command-line locks for `mxfsd`.

use clap::{Parser, Subcommand};
use mxfs_daemon::ctl::{self, CtlReply, CtlRequest};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Default ctl socket path.
const DEFAULT_SOCKET: &str = "/run/mxfs/mxfsd.sock";

/// MXFS cluster lock daemon control.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// mxfsd's ctl socket (default: from --config, $MXFS_CTL_SOCKET, or /run/mxfs/mxfsd.sock).
    #[arg(long, short, global = true)]
    socket: Option<PathBuf>,
    /// Read the ctl socket path from this mxfsd config file.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Print the raw JSON reply.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Members, quorum, epoch, peers and recovery history.
    Status,
    /// Every resource with master, granted/converting/waiting holders, mode and age.
    Locks,
    /// Live view of the most contended resources.
    Top {
        /// Print once and exit.
        #[arg(long)]
        once: bool,
        /// Refresh this many times, then exit.
        #[arg(long)]
        iterations: Option<u64>,
        /// Refresh period.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        /// Lines shown.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Take a lock (held by mxfsd on mxfsctl's behalf until `unlock`).
    Lock {
        /// `inode:VOL:INO`, `extent:VOL:INO:OFF` or `ag:VOL:AGNO`.
        resource: String,
        /// NL, CR, CW, PR, PW or EX.
        mode: String,
        /// Fail at once if not grantable.
        #[arg(long)]
        noqueue: bool,
        /// Fail if not granted in this many milliseconds.
        #[arg(long)]
        timeout_ms: Option<u32>,
    },
    /// Release the lock(s) mxfsctl holds on a resource.
    Unlock {
        /// Resource, as for `lock`.
        resource: String,
    },
    /// Kernel-bound event log (grants, denies, CACHE_INVAL, recovery).
    Events {
        /// First sequence number.
        #[arg(long, default_value_t = 0)]
        since: u64,
    },
    /// Test hook: drop all of this daemon's peer traffic (`on`) or resume it (`off`).
    #[command(hide = true)]
    Isolate {
        /// on or off.
        state: String,
    },
    /// Test hook: silently drop the next COUNT lock-core messages this daemon sends.
    #[command(hide = true)]
    DropCore {
        /// How many.
        count: u32,
    },
}

fn socket_of(a: &Args) -> Result<PathBuf, String> {
    if let Some(s) = &a.socket {
        return Ok(s.clone());
    }
    if let Some(c) = &a.config {
        return mxfs_daemon::config::Config::from_file(c)
            .map(|c| c.ctl_socket)
            .map_err(|e| e.to_string());
    }
    if let Ok(s) = std::env::var("MXFS_CTL_SOCKET") {
        return Ok(s.into());
    }
    Ok(DEFAULT_SOCKET.into())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let sock = match socket_of(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mxfsctl: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mxfsctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(&args, &sock)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mxfsctl: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args, sock: &std::path::Path) -> Result<ExitCode, String> {
    let req = match &args.cmd {
        Cmd::Status => CtlRequest::Status {},
        Cmd::Locks => CtlRequest::Locks {},
        Cmd::Top {
            once,
            iterations,
            interval_ms,
            limit,
        } => {
            let n = if *once {
                1
            } else {
                iterations.unwrap_or(u64::MAX)
            };
            for i in 0..n {
                let r = ctl::call(sock, &CtlRequest::Top { limit: *limit }).await?;
                if args.json {
                    println!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
                } else {
                    if n > 1 {
                        print!("\x1b[2J\x1b[H");
                    }
                    print_reply(&r);
                }
                if i + 1 < n {
                    tokio::time::sleep(Duration::from_millis(*interval_ms)).await;
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        Cmd::Lock {
            resource,
            mode,
            noqueue,
            timeout_ms,
        } => CtlRequest::Lock {
            resource: resource.clone(),
            mode: mode.clone(),
            noqueue: *noqueue,
            timeout_ms: *timeout_ms,
        },
        Cmd::Unlock { resource } => CtlRequest::Unlock {
            resource: resource.clone(),
        },
        Cmd::Events { since } => CtlRequest::Events { since: *since },
        Cmd::DropCore { count } => CtlRequest::DropCore { count: *count },
        Cmd::Isolate { state } => CtlRequest::Isolate {
            on: match state.as_str() {
                "on" => true,
                "off" => false,
                s => return Err(format!("isolate: want `on` or `off`, got `{s}`")),
            },
        },
    };
    let r = ctl::call(sock, &req).await?;
    if args.json {
        println!("{}", serde_json::to_string(&r).map_err(|e| e.to_string())?);
    } else {
        print_reply(&r);
    }
    Ok(match r {
        CtlReply::Error { .. } | CtlReply::Denied { .. } => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    })
}

/// Request ids of mxfsctl's locks are `LOCAL_REQ_BASE + n`; shown as `ctl#n`.
fn req(id: u64) -> String {
    match id.checked_sub(mxfs_daemon::daemon::LOCAL_REQ_BASE) {
        Some(n) => format!("ctl#{n}"),
        None => format!("kernel#{id}"),
    }
}

fn holders(label: &str, v: &[ctl::HolderView]) {
    for h in v {
        let held = h
            .held
            .as_deref()
            .map(|m| format!(" (holds {m})"))
            .unwrap_or_default();
        println!(
            "  {label:<9} {:<10} {:<3}{held} age {} ms",
            h.who, h.mode, h.age_ms
        );
    }
}

fn print_reply(r: &CtlReply) {
    match r {
        CtlReply::Error { error } => eprintln!("error: {error}"),
        CtlReply::Ok => println!("ok"),
        CtlReply::Status(s) => {
            println!(
                "node {}  kernel {}  uptime {} ms",
                s.node_id, s.kernel, s.uptime_ms
            );
            println!(
                "epoch {}  members {:?}  quorum {} ({} of {})  phase {}{}{}",
                s.epoch,
                s.members,
                if s.quorum { "yes" } else { "NO" },
                s.members.len(),
                s.cluster_size,
                s.phase,
                if s.self_fenced { "  SELF-FENCED" } else { "" },
                if s.isolated {
                    "  ISOLATED (test hook)"
                } else {
                    ""
                },
            );
            if !s.awaiting_fence.is_empty() {
                println!(
                    "fencing: waiting for {:?} (fencer node {})",
                    s.awaiting_fence, s.fencer
                );
            }
            if !s.awaiting_reports.is_empty() {
                println!(
                    "journals: waiting for the reports of {:?} before any replay",
                    s.awaiting_reports
                );
            }
            let first_mount = !s.journals_known && s.phase != "Stopped";
            if first_mount && s.awaiting_replay.iter().any(|n| s.members.contains(n)) {
                println!(
                    "first mounter: no member knows the journals, so every journal is replayed \
                     before anything is granted"
                );
            }
            if !s.awaiting_replay.is_empty() {
                println!(
                    "journal replay: waiting for {:?} (replayer node {}){}",
                    s.awaiting_replay,
                    s.fencer,
                    if s.replaying.is_empty() {
                        String::new()
                    } else {
                        format!("; this node replays {:?}", s.replaying)
                    }
                );
            }
            println!("peers:");
            for p in &s.peers {
                let heard = p
                    .last_heard_ms_ago
                    .map(|m| format!("{m} ms ago"))
                    .unwrap_or("never".into());
                let state = match (p.alive, p.fenced) {
                    (true, _) => "up",
                    (false, true) => "fenced",
                    (false, false) => "down",
                };
                println!(
                    "  node {:<3} {:<6} epoch {:<4} heard {heard}",
                    p.id, state, p.epoch
                );
            }
            println!("recoveries:");
            if s.recoveries.is_empty() {
                println!("  none");
            }
            for r in &s.recoveries {
                let d = r
                    .duration_ms
                    .map(|d| format!("{d} ms"))
                    .unwrap_or("running".into());
                let part = |v: Option<u64>| v.map(|v| format!("{v} ms")).unwrap_or("-".into());
                println!(
                    "  epoch {:<4} lost {:?}  started at {} ms  took {d}  (fence {}, replay {}, \
                     remaster {}{})",
                    r.epoch,
                    r.lost,
                    r.started_ms,
                    part(r.fence_ms),
                    part(r.replay_ms),
                    part(r.remaster_ms),
                    if r.replay_failures > 0 {
                        format!(", {} failed replays", r.replay_failures)
                    } else {
                        String::new()
                    }
                );
            }
        }
        CtlReply::Locks { master, local } => {
            println!("Resources mastered here:");
            if master.is_empty() {
                println!("  none");
            }
            for m in master {
                println!(
                    "Resource {}  master node{}  version {}",
                    m.resource, m.master, m.version
                );
                holders("Granted", &m.granted);
                holders("Convert", &m.converting);
                holders("Waiting", &m.waiting);
            }
            println!("Locks used by this node:");
            if local.is_empty() {
                println!("  none");
            }
            for l in local {
                let master = l.master.map(|m| format!("node{m}")).unwrap_or("-".into());
                let held = l.held.as_deref().unwrap_or("-");
                let bast = if l.bast_pending { "  BAST pending" } else { "" };
                println!(
                    "Resource {}  master {master}  node lock {held}{bast}",
                    l.resource
                );
                holders("Holder", &l.holders);
                holders("Waiting", &l.waiting);
            }
        }
        CtlReply::Top { lines } => {
            println!(
                "{:<32} {:>7} {:>7} {:>11} {:>12}",
                "RESOURCE", "GRANTED", "WAITING", "WAITS_TOTAL", "GRANTS_TOTAL"
            );
            for l in lines {
                println!(
                    "{:<32} {:>7} {:>7} {:>11} {:>12}",
                    l.resource, l.granted, l.waiting, l.waits_total, l.grants_total
                );
            }
        }
        CtlReply::Granted {
            req_id,
            resource,
            mode,
            waited_ms,
        } => {
            println!(
                "granted {resource} {mode} (request {}, waited {waited_ms} ms)",
                req(*req_id)
            )
        }
        CtlReply::Denied {
            req_id,
            errno,
            reason,
        } => {
            eprintln!("denied (request {}): errno {errno} {reason}", req(*req_id))
        }
        CtlReply::Unlocked { released } => {
            let r: Vec<String> = released.iter().map(|r| req(*r)).collect();
            println!("released {}", r.join(", "))
        }
        CtlReply::Events { events, next } => {
            for e in events {
                let id = e.req_id.map(|i| format!(" {}", req(i))).unwrap_or_default();
                let r = e.resource.as_deref().unwrap_or("");
                println!(
                    "{:>6} {:>8} ms {:<14} {r}{id} {}",
                    e.seq, e.at_ms, e.kind, e.detail
                );
            }
            println!("next {next}");
        }
    }
}
