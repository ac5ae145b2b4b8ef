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

/// Operations of one batch of [`cmd_single`]: about 0.1-0.3 ms of stats or overwrites under
/// TCG (4 ms of creates), so that two batches side by side see the same guest speed, and one
/// clock read per batch costs nothing that would pull the mounts' ratio towards 1.
pub const BATCH_OPS: u32 = 32;

/// One mount's state for the single-node workloads.
struct Single {
    dir: std::path::PathBuf,
    overwrite: File,
    rng: Rng,
    create_dir: std::path::PathBuf,
    creates: u64,
    stats: usize,
    names: Vec<std::path::PathBuf>,
}

impl Single {
    /// Makes the workloads' files under `dir/bench-<label>`.
    fn prepare(dir: &str, label: &str) -> Result<Single, String> {
        let d = Path::new(dir).join(format!("bench-{label}"));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).map_err(|e| io("mkdir", e))?;
        // 4 KiB random overwrite of a written file (no allocation in the loop).
        let f = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(true)
            .open(d.join("overwrite"))
            .map_err(|e| io("create overwrite file", e))?;
        let block = vec![0x5au8; BLOCK_BYTES];
        for off in (0..OVERWRITE_FILE_BYTES).step_by(BLOCK_BYTES) {
            f.write_all_at(&block, off).map_err(|e| io("fill", e))?;
        }
        f.sync_all().map_err(|e| io("fsync", e))?;
        let create_dir = d.join("create");
        fs::create_dir_all(&create_dir).map_err(|e| io("mkdir", e))?;
        let sdir = d.join("stat");
        fs::create_dir_all(&sdir).map_err(|e| io("mkdir", e))?;
        let names: Vec<_> = (0..STAT_FILES)
            .map(|i| sdir.join(format!("s{i}")))
            .collect();
        for p in &names {
            File::create(p).map_err(|e| io("create", e))?;
        }
        Ok(Single {
            dir: d,
            overwrite: f,
            rng: Rng(0x9e37_79b9_7f4a_7c15),
            create_dir,
            creates: 0,
            stats: 0,
            names,
        })
    }

    /// Runs [`BATCH_OPS`] operations of workload `w` (an index into [`SINGLE_WORKLOADS`]);
    /// returns the time they took.
    fn batch(&mut self, w: usize) -> Result<Duration, String> {
        let blocks = OVERWRITE_FILE_BYTES / BLOCK_BYTES as u64;
        let block = [0x5au8; BLOCK_BYTES];
        let start = Instant::now();
        for _ in 0..BATCH_OPS {
            match w {
                0 => {
                    let off = (self.rng.next() % blocks) * BLOCK_BYTES as u64;
                    self.overwrite
                        .write_all_at(&block, off)
                        .map_err(|e| io("pwrite", e))?;
                }
                1 => {
                    // Names are never reused, so no batch finds the last one's dentries.
                    self.creates += 1;
                    let p = self.create_dir.join(format!("f{}", self.creates));
                    File::create(&p).map_err(|e| io("create", e))?;
                    fs::remove_file(&p).map_err(|e| io("unlink", e))?;
                }
                2 => {
                    self.stats += 1;
                    fs::metadata(&self.names[self.stats % STAT_FILES])
                        .map_err(|e| io("stat", e))?;
                }
                // fstat of one open file: the cheapest operation, so its cost is mostly the
                // callout.
                _ => {
                    self.overwrite.metadata().map_err(|e| io("fstat", e))?;
                }
            }
        }
        Ok(start.elapsed())
    }
}

/// The single-node workloads' keys, in the order [`Single::batch`] numbers them.
const SINGLE_WORKLOADS: [&str; 4] = [
    "overwrite_ops_per_s",
    "create_unlink_per_s",
    "stat_per_s",
    "fstat_per_s",
];

/// The single-node workloads on two mounts of the same guest, `a` (keys `<la>_...`) against
/// `b` (`<lb>_...`), about `secs` per workload and mount. A guest under TCG changes speed by
/// tens of percent from one fraction of a second to the next, so the mounts take turns at a
/// fine grain: pairs of batches of [`BATCH_OPS`] operations, a then b, then b then a, and so
/// on. Each pair gives one a/b speed ratio (b's time over a's), measured over a fraction of a
/// millisecond in which both saw the same guest. Prints each mount's rate over all its
/// batches, and `ratio_<workload>` lines with the median, lower and upper quartile of the
/// pairs' ratios. On an mxfs guest it also prints, per workload, the callouts of mount `a`'s
/// operations (mxfs.ko's `op_counts`, per operation: `callouts_<workload> KIND I N ...`);
/// mount `b` is plain XFS, whose operations make none.
pub fn cmd_single(a: (&str, &str), b: (&str, &str), secs: f64) -> Result<ExitCode, String> {
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("--secs {secs}: give a number of seconds above 0"));
    }
    let mut sa = Single::prepare(a.0, a.1)?;
    let mut sb = Single::prepare(b.0, b.1)?;
    let limit = Duration::from_secs_f64(2.0 * secs);
    println!("MXFS-BENCH single_batch_ops {BATCH_OPS}");
    for (w, key) in SINGLE_WORKLOADS.iter().enumerate() {
        let (mut time_a, mut time_b) = (Duration::ZERO, Duration::ZERO);
        let mut ratios = Vec::new();
        let before = crate::callouts::read_counts().ok();
        let start = Instant::now();
        while start.elapsed() < limit {
            let (ta, tb) = if ratios.len() % 2 == 0 {
                let ta = sa.batch(w)?;
                (ta, sb.batch(w)?)
            } else {
                let tb = sb.batch(w)?;
                (sa.batch(w)?, tb)
            };
            time_a += ta;
            time_b += tb;
            ratios.push(tb.as_secs_f64() / ta.as_secs_f64().max(1e-9));
        }
        ratios.sort_by(f64::total_cmp);
        let n = ratios.len();
        let quantile = |q: f64| ratios[((n - 1) as f64 * q).round() as usize];
        let ops = f64::from(BATCH_OPS) * n as f64;
        println!("MXFS-BENCH single_pairs_{key} {n}");
        println!("MXFS-BENCH {}_{key} {:.0}", a.1, ops / time_a.as_secs_f64());
        println!("MXFS-BENCH {}_{key} {:.0}", b.1, ops / time_b.as_secs_f64());
        println!(
            "MXFS-BENCH ratio_{key} {:.3} {:.3} {:.3}",
            quantile(0.5),
            quantile(0.25),
            quantile(0.75)
        );
        let callouts = match (before, crate::callouts::read_counts()) {
            (Some(b), Ok(after)) => crate::callouts::delta(&b, &after),
            _ => crate::callouts::Counts::new(),
        };
        let per_op: Vec<String> = callouts
            .iter()
            .filter(|(_, (begins, _))| *begins > 0)
            .map(|((k, i), (b, _))| format!("{k} {i} {:.2}", *b as f64 / ops))
            .collect();
        if !per_op.is_empty() {
            println!("MXFS-BENCH-CALLOUTS {key} {}", per_op.join(" "));
        }
    }
    drop((sa.overwrite, sb.overwrite));
    let _ = fs::remove_dir_all(&sa.dir);
    let _ = fs::remove_dir_all(&sb.dir);
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
