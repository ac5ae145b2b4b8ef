//! `mxfs-guest bench-fs ...`: the workloads of `just bench-fs` (qemu/bench-fs.sh). Each prints
//! `MXFS-BENCH <key> <value>` lines; the host script turns them into ratios. Guests run under
//! TCG, so only ratios measured in one run mean anything (README: "Speed goals").

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Block size of the overwrite workload.
const BLOCK_BYTES: usize = 4096;
/// Size of the overwrite workload's file.
const OVERWRITE_FILE_BYTES: u64 = 16 << 20;
/// Files the stat workload looks at.
const STAT_FILES: usize = 500;

fn io(what: &str, e: std::io::Error) -> String {
    format!("{what}: {e}")
}

/// A small xorshift generator: the workloads need cheap, repeatable offsets.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Runs `op` until `secs` pass; returns operations per second.
fn rate(secs: f64, mut op: impl FnMut(u64) -> Result<(), String>) -> Result<f64, String> {
    let start = Instant::now();
    let limit = Duration::from_secs_f64(secs);
    let mut n = 0u64;
    while start.elapsed() < limit {
        op(n)?;
        n += 1;
    }
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// The single-node workloads in `dir`, `secs` each; keys carry `label` (e.g. `mxfs`, `plain`).
pub fn cmd_single(dir: &str, label: &str, secs: f64) -> Result<ExitCode, String> {
    let d = Path::new(dir).join(format!("bench-{label}"));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).map_err(|e| io("mkdir", e))?;

    // 4 KiB random overwrite of a written file (no allocation in the loop).
    let path = d.join("overwrite");
    let f = OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| io("create overwrite file", e))?;
    let block = vec![0x5au8; BLOCK_BYTES];
    for off in (0..OVERWRITE_FILE_BYTES).step_by(BLOCK_BYTES) {
        f.write_all_at(&block, off).map_err(|e| io("fill", e))?;
    }
    f.sync_all().map_err(|e| io("fsync", e))?;
    let blocks = OVERWRITE_FILE_BYTES / BLOCK_BYTES as u64;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let overwrite = rate(secs, |_| {
        let off = (rng.next() % blocks) * BLOCK_BYTES as u64;
        f.write_all_at(&block, off).map_err(|e| io("pwrite", e))
    })?;
    println!("MXFS-BENCH {label}_overwrite_ops_per_s {overwrite:.0}");

    // Small-file create and unlink.
    let cdir = d.join("create");
    fs::create_dir_all(&cdir).map_err(|e| io("mkdir", e))?;
    let create = rate(secs, |n| {
        let p = cdir.join(format!("f{n}"));
        File::create(&p).map_err(|e| io("create", e))?;
        fs::remove_file(&p).map_err(|e| io("unlink", e))
    })?;
    println!("MXFS-BENCH {label}_create_unlink_per_s {create:.0}");

    // stat of many files.
    let sdir = d.join("stat");
    fs::create_dir_all(&sdir).map_err(|e| io("mkdir", e))?;
    let names: Vec<_> = (0..STAT_FILES)
        .map(|i| sdir.join(format!("s{i}")))
        .collect();
    for p in &names {
        File::create(p).map_err(|e| io("create", e))?;
    }
    let stat = rate(secs, |n| {
        fs::metadata(&names[n as usize % STAT_FILES])
            .map(|_| ())
            .map_err(|e| io("stat", e))
    })?;
    println!("MXFS-BENCH {label}_stat_per_s {stat:.0}");

    // fstat of one open file: the cheapest operation, so its cost is mostly the callout.
    let fstat = rate(secs, |_| {
        f.metadata().map(|_| ()).map_err(|e| io("fstat", e))
    })?;
    println!("MXFS-BENCH {label}_fstat_per_s {fstat:.0}");
    drop(f);
    let _ = fs::remove_dir_all(&d);
    Ok(ExitCode::SUCCESS)
}

/// Two nodes alternately write one file: node `me` (0 or 1) writes round `r` when
/// `r % 2 == me`, after it has read round `r - 1` from the file. Each round moves the volume
/// lock from one node to the other (a read takes it shared, a write exclusive). Prints the
/// rounds per second.
pub fn cmd_pingpong(
    file: &str,
    me: u64,
    rounds: u64,
    timeout_secs: u64,
) -> Result<ExitCode, String> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .map_err(|e| io("open", e))?;
    let read_round = |f: &mut File| -> Result<u64, String> {
        let mut b = [0u8; 8];
        f.seek(SeekFrom::Start(0)).map_err(|e| io("seek", e))?;
        f.read_exact(&mut b).map_err(|e| io("read", e))?;
        Ok(u64::from_le_bytes(b))
    };
    let start = Instant::now();
    let deadline = Duration::from_secs(timeout_secs);
    let mut done = 0;
    for r in 1..=rounds {
        if r % 2 != me {
            continue;
        }
        loop {
            if read_round(&mut f)? == r - 1 {
                break;
            }
            if start.elapsed() > deadline {
                return Err(format!(
                    "round {r}: the other node did not write round {}",
                    r - 1
                ));
            }
        }
        f.seek(SeekFrom::Start(0)).map_err(|e| io("seek", e))?;
        f.write_all(&r.to_le_bytes()).map_err(|e| io("write", e))?;
        done = r;
    }
    let secs = start.elapsed().as_secs_f64();
    println!("MXFS-BENCH pingpong_rounds {done}");
    println!("MXFS-BENCH pingpong_secs {secs:.3}");
    Ok(ExitCode::SUCCESS)
}

/// Creates small files in `dir` for `secs`; prints how many.
pub fn cmd_creates(dir: &str, secs: f64) -> Result<ExitCode, String> {
    fs::create_dir_all(dir).map_err(|e| io("mkdir", e))?;
    let start = Instant::now();
    let per_s = rate(secs, |n| {
        File::create(Path::new(dir).join(format!("c{n}")))
            .map(|_| ())
            .map_err(|e| io("create", e))
    })?;
    let n = (per_s * start.elapsed().as_secs_f64()).round();
    println!("MXFS-BENCH creates {n:.0}");
    println!("MXFS-BENCH creates_per_s {per_s:.1}");
    Ok(ExitCode::SUCCESS)
}
