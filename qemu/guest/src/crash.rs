//! The crash phase of `just qemu-cluster` (qemu/README.md, *Crash recovery*): a storm of
//! fsync-acknowledged writes, creates and renames on each node's own directory of the -o mxfs
//! volume, steered by the host through control words on the witness disk, and the final
//! listing the host judges every acknowledgement against.
//!
//! Every acknowledged operation is printed as one `MXFS-CRASH-ACK <json>` line only after the
//! fsync that makes it durable returned: a write after `fsync` of its file, a create after
//! `fsync` of the new file and of its directory, a rename or unlink after `fsync` of the
//! directory.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::process::ExitCode;
use std::time::Duration;

use crate::fs::{block_value, stamp_block, Rng, BLOCK_BYTES};
use crate::Witness;

/// Host control word: 0 run; `round << 8 | victim` the host wants `victim` killed (everyone
/// else pauses, the victim acknowledges one more write and reports ready); `round << 8` the
/// round is over (run again); `CTL_STOP` end the storm.
pub const CTL_SECTOR: u64 = 1400;
/// With this bit in the control word the victim is not killed but its mxfsd: the storm exits
/// with `EXIT_DAEMON_DEATH` after the report, and the shell kills mxfsd.
pub const CTL_DAEMON_DEATH: u64 = 0x80;
const EXIT_DAEMON_DEATH: u8 = 3;
/// `READY_SECTOR + node`: the round for which the victim acknowledged its last write.
pub const READY_SECTOR: u64 = 1400;
/// `PAUSED_SECTOR + node`: the round for which a non-victim paused between operations. The
/// victim starts its last write only once every other node paused: a request still queued
/// behind it would call its lock back (its clean point would leave its log clean).
pub const PAUSED_SECTOR: u64 = 1420;
/// The host writes the round here right after its kill -9 (`crash-watch` reports it).
pub const KILLED_SECTOR: u64 = 1411;
/// Host snapshot request: `round << 8 | node` after round `round`'s recovery (node 1 went
/// on), while `node` is dead: node 1's `crash-watch` lists `c<node>` and writes the round to
/// `SNAP_DONE_SECTOR`. (Sectors 1400-1431 are the crash phase's; `PAUSED_SECTOR + node` ends
/// at 1429 for the at most 9 nodes of cluster.sh.)
pub const SNAP_SECTOR: u64 = 1430;
pub const SNAP_DONE_SECTOR: u64 = 1431;
pub const CTL_STOP: u64 = 0xFFFF_FFFF;
/// Data files per node and blocks per data file.
const DATA_FILES: u32 = 4;
const DATA_BLOCKS: u32 = 16;
/// Stamps of created files use this file number (data files are 0..DATA_FILES).
const CREATE_FILE_NO: u32 = 1000;
/// Created files a node keeps at most (then it renames or unlinks), so the final listing stays
/// small.
const LIVE_FILES_MAX: usize = 48;
/// Pause between control-word reads while another node's kill is pending.
const PAUSE_MS: u64 = 20;

fn data_name(f: u32) -> String {
    format!("d{f}")
}

/// Whether `name` is one the storm creates (`c<inc>-<op>`) or renames to (`r<inc>-<op>`).
fn is_storm_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('c').or_else(|| name.strip_prefix('r')) else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    matches!(rest.split_once('-'), Some((inc, op)) if digits(inc) && digits(op))
}

fn fsync_dir(dir: &str) -> Result<(), String> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("fsync {dir}: {e}"))
}

fn ack(v: serde_json::Value) {
    println!("MXFS-CRASH-ACK {v}");
    let _ = std::io::stdout().flush();
}

/// Runs the storm in `dir` (this node's directory, created if absent) until the host stops it.
pub fn cmd_storm(
    dir: &str,
    node: u32,
    nodes: u32,
    inc: u32,
    seed: u64,
    witness: &str,
) -> Result<ExitCode, String> {
    let w = Witness::open(witness)?;
    if std::fs::metadata(dir).is_err() {
        std::fs::create_dir(dir).map_err(|e| format!("mkdir {dir}: {e}"))?;
        let parent = std::path::Path::new(dir)
            .parent()
            .and_then(|p| p.to_str())
            .unwrap_or("/");
        fsync_dir(parent)?;
    }
    let mut data = Vec::new();
    for f in 0..DATA_FILES {
        let p = format!("{dir}/{}", data_name(f));
        let fh = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&p)
            .map_err(|e| format!("open {p}: {e}"))?;
        fh.set_len(u64::from(DATA_BLOCKS) * BLOCK_BYTES as u64)
            .and_then(|_| fh.sync_all())
            .map_err(|e| format!("size {p}: {e}"))?;
        data.push(fh);
    }
    fsync_dir(dir)?;
    // The created files alive now (renamed or not), from the directory. Only names the storm
    // makes: anything else (the daemon-death round's unacknowledged probe file, which may have
    // reached the disk) is left alone, or a rename of it would be an acknowledgement of a name
    // no earlier incarnation acknowledged.
    let mut live: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| format!("readdir {dir}: {e}"))?
        .filter_map(|e| e.ok().and_then(|e| e.file_name().into_string().ok()))
        .filter(|n| is_storm_name(n))
        .collect();
    let mut rng = Rng::new(seed ^ (u64::from(node) << 40) ^ (u64::from(inc) << 48));
    let mut ctr: u64 = 0;
    let mut done_round: u64 = 0;
    // In a kill round: the write is done, the create comes next.
    let mut kill_create_done = false;
    println!("MXFS-CRASH-STORM node {node} inc {inc} in {dir}");
    let _ = std::io::stdout().flush();
    loop {
        let ctl = w.read_word(CTL_SECTOR)?;
        if ctl == CTL_STOP {
            println!("MXFS-CRASH-STOPPED node {node} inc {inc} after {ctr} ops");
            return Ok(ExitCode::SUCCESS);
        }
        let (round, victim) = (ctl >> 8, (ctl & 0x7f) as u32);
        let kill_pending = victim != 0 && round > done_round;
        if kill_pending && victim != node {
            if w.read_word(PAUSED_SECTOR + u64::from(node))? < round {
                w.write_word(PAUSED_SECTOR + u64::from(node), round)?;
            }
            std::thread::sleep(Duration::from_millis(PAUSE_MS));
            continue;
        }
        if kill_pending && !kill_create_done {
            let mut behind = false;
            for other in (1..=nodes).filter(|o| *o != node) {
                behind |= w.read_word(PAUSED_SECTOR + u64::from(other))? < round;
            }
            if behind {
                std::thread::sleep(Duration::from_millis(PAUSE_MS));
                continue;
            }
        }
        ctr += 1;
        let seq = (u64::from(inc) << 32) | ctr;
        let pick = match (kill_pending, kill_create_done) {
            (false, _) => rng.below(100),
            (true, false) => 0,
            (true, true) => 70,
        };
        if pick < 60 {
            let f = rng.below(u64::from(DATA_FILES)) as u32;
            let b = rng.below(u64::from(DATA_BLOCKS)) as u32;
            let buf = stamp_block(node, f, b, seq);
            data[f as usize]
                .write_all_at(&buf, u64::from(b) * BLOCK_BYTES as u64)
                .and_then(|_| data[f as usize].sync_all())
                .map_err(|e| format!("write {dir}/d{f} block {b}: {e}"))?;
            ack(
                serde_json::json!({"n": node, "k": inc, "i": ctr, "op": "write", "f": f, "b": b,
                "v": format!("{node}:{seq}")}),
            );
        } else if (pick < 80 || live.is_empty()) && live.len() < LIVE_FILES_MAX {
            let name = format!("c{inc}-{ctr}");
            let p = format!("{dir}/{name}");
            let mut fh = File::create(&p).map_err(|e| format!("create {p}: {e}"))?;
            fh.write_all(&stamp_block(node, CREATE_FILE_NO, 0, seq))
                .and_then(|_| fh.sync_all())
                .map_err(|e| format!("write {p}: {e}"))?;
            fsync_dir(dir)?;
            ack(
                serde_json::json!({"n": node, "k": inc, "i": ctr, "op": "create", "name": name,
                "v": format!("{node}:{seq}")}),
            );
            live.push(name);
        } else if pick < 92 {
            let k = rng.below(live.len() as u64) as usize;
            let to = format!("r{inc}-{ctr}");
            std::fs::rename(format!("{dir}/{}", live[k]), format!("{dir}/{to}"))
                .map_err(|e| format!("rename {dir}/{}: {e}", live[k]))?;
            fsync_dir(dir)?;
            ack(
                serde_json::json!({"n": node, "k": inc, "i": ctr, "op": "rename",
                "from": live[k], "to": to}),
            );
            live[k] = to;
        } else {
            let name = live.swap_remove(rng.below(live.len() as u64) as usize);
            std::fs::remove_file(format!("{dir}/{name}"))
                .map_err(|e| format!("unlink {dir}/{name}: {e}"))?;
            fsync_dir(dir)?;
            ack(serde_json::json!({"n": node, "k": inc, "i": ctr, "op": "unlink", "name": name}));
        }
        if kill_pending && !kill_create_done {
            // Then a create (a new inode and a directory entry, so this node's log surely holds
            // changes that are not at home yet: an overwrite whose inode timestamps did not
            // move logs nothing), before the report.
            kill_create_done = true;
            continue;
        }
        if kill_pending {
            // The write and the create above are acknowledged and this node holds the volume
            // lock in EX with its log ahead of the home locations: tell the host, and wait to
            // be killed.
            w.write_word(READY_SECTOR + u64::from(node), round)?;
            println!("MXFS-CRASH-READY node {node} round {round} after {ctr} ops");
            let _ = std::io::stdout().flush();
            done_round = round;
            kill_create_done = false;
            if ctl & CTL_DAEMON_DEATH != 0 {
                return Ok(ExitCode::from(EXIT_DAEMON_DEATH));
            }
            while w.read_word(CTL_SECTOR)? == ctl {
                std::thread::sleep(Duration::from_millis(PAUSE_MS));
            }
        }
    }
}

/// What `dir` (node `n`'s directory) holds, as the json the host judges: each data block's
/// value (`blocks[file][block]`) and each other file's value (`names`).
fn listing(dir: &str, n: u32) -> serde_json::Value {
    let mut blocks: Vec<Vec<String>> = Vec::new();
    for f in 0..DATA_FILES {
        let p = format!("{dir}/{}", data_name(f));
        let mut vals = Vec::new();
        match File::open(&p) {
            Ok(fh) => {
                for b in 0..DATA_BLOCKS {
                    let mut buf = vec![0u8; BLOCK_BYTES];
                    let v = match fh.read_at(&mut buf, u64::from(b) * BLOCK_BYTES as u64) {
                        Ok(k) => block_value(&buf[..k], f, b),
                        Err(e) => format!("error:{e}"),
                    };
                    vals.push(v);
                }
            }
            Err(e) => vals.push(format!("error:{e}")),
        }
        blocks.push(vals);
    }
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let Ok(name) = e.file_name().into_string() else {
                continue;
            };
            if name.starts_with('d') {
                continue;
            }
            let v = match std::fs::read(e.path()) {
                Ok(buf) => block_value(&buf, CREATE_FILE_NO, 0),
                Err(e) => format!("error:{e}"),
            };
            names.insert(name, v);
        }
    }
    serde_json::json!({"n": n, "blocks": blocks, "names": names})
}

/// Prints `line` and a newline in one write(2): a listing is printed while another process of
/// this guest (the storm) prints its acknowledgements on the same console, and a line written
/// in pieces could be split by one of them.
fn print_whole_line(mut line: String) {
    line.push('\n');
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes()).and_then(|_| out.flush());
}

/// Prints what `root/c<n>` holds (the json of `listing`), one line per node: for every node
/// 1..=nodes, or only the nodes in `only` if it is not empty. Without `snap` the lines are the
/// final listing (`MXFS-CRASH-FINAL <json>`); with it, the snapshot of that round
/// (`MXFS-CRASH-SNAP <round> <json>`: the first-mounter round's restarted nodes list their own
/// directory, and node 1 those of the nodes not booted again, before they storm).
pub fn cmd_list(
    root: &str,
    nodes: u32,
    only: &[u32],
    snap: Option<u32>,
) -> Result<ExitCode, String> {
    if let Some(bad) = only.iter().find(|n| **n == 0 || **n > nodes) {
        return Err(format!("--only: node {bad} is not in 1..={nodes}"));
    }
    for n in (1..=nodes).filter(|n| only.is_empty() || only.contains(n)) {
        let j = listing(&format!("{root}/c{n}"), n);
        print_whole_line(match snap {
            Some(round) => format!("MXFS-CRASH-SNAP {round} {j}"),
            None => format!("MXFS-CRASH-FINAL {j}"),
        });
    }
    Ok(ExitCode::SUCCESS)
}

/// Reports (`MXFS-CRASH-KILLSEEN round up_s`, this guest's uptime) each round the host writes
/// to `KILLED_SECTOR` after a kill, until the storm stops; the host takes detection time from
/// there to the recovery's start. Also serves the host's snapshot requests (`SNAP_SECTOR`):
/// lists the dead node's directory under `root` (`MXFS-CRASH-SNAP <round> <json>`), then writes
/// the round to `SNAP_DONE_SECTOR`.
pub fn cmd_watch(witness: &str, root: &str) -> Result<ExitCode, String> {
    let w = Witness::open(witness)?;
    let mut seen = w.read_word(KILLED_SECTOR)?;
    loop {
        let k = w.read_word(KILLED_SECTOR)?;
        if k != seen {
            let up = std::fs::read_to_string("/proc/uptime").unwrap_or_default();
            println!(
                "MXFS-CRASH-KILLSEEN {k} {}",
                up.split(' ').next().unwrap_or("0")
            );
            let _ = std::io::stdout().flush();
            seen = k;
        }
        let req = w.read_word(SNAP_SECTOR)?;
        let (round, node) = (req >> 8, (req & 0xff) as u32);
        if node != 0 && round > w.read_word(SNAP_DONE_SECTOR)? {
            let j = listing(&format!("{root}/c{node}"), node);
            print_whole_line(format!("MXFS-CRASH-SNAP {round} {j}"));
            w.write_word(SNAP_DONE_SECTOR, round)?;
        }
        if w.read_word(CTL_SECTOR)? == CTL_STOP {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::is_storm_name;

    #[test]
    fn storm_adopts_only_its_own_names() {
        for n in ["c0-1", "r6-81", "c12-3456"] {
            assert!(is_storm_name(n), "{n}");
        }
        for n in [
            "after-daemon-death",
            "d0",
            "c-1",
            "r6-",
            "c6-8x",
            "x0-1",
            "c",
        ] {
            assert!(!is_storm_name(n), "{n}");
        }
    }
}
