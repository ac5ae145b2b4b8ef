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
fn rate(secs: f64, op: impl FnMut(u64) -> Result<(), String>) -> Result<f64, String> {
    Ok(counted(secs, op)?.1)
}

/// Runs `op` until `secs` pass; returns the operations run and their rate per second.
fn counted(secs: f64, mut op: impl FnMut(u64) -> Result<(), String>) -> Result<(u64, f64), String> {
    let start = Instant::now();
    let limit = Duration::from_secs_f64(secs);
    let mut n = 0u64;
    while start.elapsed() < limit {
        op(n)?;
        n += 1;
    }
    Ok((n, n as f64 / start.elapsed().as_secs_f64()))
}

/// Rounds of [`cmd_single`]: each workload runs `SINGLE_ROUNDS` times on each mount.
pub const SINGLE_ROUNDS: u32 = 8;

/// One mount's state for the single-node workloads.
struct Single {
    dir: std::path::PathBuf,
    overwrite: File,
    rng: Rng,
    create_dir: std::path::PathBuf,
    creates: u64,
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
            names,
        })
    }

    /// Runs workload `w` (an index into [`SINGLE_WORKLOADS`]) for `secs`: the operations run
    /// and their rate per second.
    fn run(&mut self, w: usize, secs: f64) -> Result<(u64, f64), String> {
        let blocks = OVERWRITE_FILE_BYTES / BLOCK_BYTES as u64;
        let block = [0x5au8; BLOCK_BYTES];
        match w {
            0 => counted(secs, |_| {
                let off = (self.rng.next() % blocks) * BLOCK_BYTES as u64;
                self.overwrite
                    .write_all_at(&block, off)
                    .map_err(|e| io("pwrite", e))
            }),
            1 => counted(secs, |_| {
                // Names are never reused, so no round finds the last one's dentries.
                self.creates += 1;
                let p = self.create_dir.join(format!("f{}", self.creates));
                File::create(&p).map_err(|e| io("create", e))?;
                fs::remove_file(&p).map_err(|e| io("unlink", e))
            }),
            2 => counted(secs, |n| {
                fs::metadata(&self.names[n as usize % STAT_FILES])
                    .map(|_| ())
                    .map_err(|e| io("stat", e))
            }),
            // fstat of one open file: the cheapest operation, so its cost is mostly the callout.
            _ => counted(secs, |_| {
                self.overwrite
                    .metadata()
                    .map(|_| ())
                    .map_err(|e| io("fstat", e))
            }),
        }
    }
}

/// The single-node workloads' keys, in the order [`Single::run`] numbers them.
const SINGLE_WORKLOADS: [&str; 4] = [
    "overwrite_ops_per_s",
    "create_unlink_per_s",
    "stat_per_s",
    "fstat_per_s",
];

/// The single-node workloads on two mounts of the same guest, `a` (keys `<la>_...`) against
/// `b` (`<lb>_...`), `secs` per workload and mount. A guest under TCG drifts in speed over
/// seconds (the other guests, the host), so the mounts take turns: [`SINGLE_ROUNDS`] rounds of
/// `secs / SINGLE_ROUNDS` each, in the order a b b a, a b b a, ... Prints each mount's rate over
/// all its rounds, and `ratio_<workload>` lines with the median, lowest and highest of the
/// rounds' a/b ratios. On an mxfs guest it also prints, per workload, the callouts of mount
/// `a`'s operations (mxfs.ko's `op_counts`, per operation: `callouts_<workload> KIND I N ...`).
pub fn cmd_single(a: (&str, &str), b: (&str, &str), secs: f64) -> Result<ExitCode, String> {
    let mut sa = Single::prepare(a.0, a.1)?;
    let mut sb = Single::prepare(b.0, b.1)?;
    let slice = secs / f64::from(SINGLE_ROUNDS);
    println!("MXFS-BENCH single_rounds {SINGLE_ROUNDS}");
    for (w, key) in SINGLE_WORKLOADS.iter().enumerate() {
        let (mut sum_a, mut sum_b) = (0.0, 0.0);
        let mut ratios = Vec::new();
        let mut ops_a = 0u64;
        let mut callouts = crate::callouts::Counts::new();
        for r in 0..SINGLE_ROUNDS {
            let mut run_a = || -> Result<f64, String> {
                let before = crate::callouts::read_counts().ok();
                let (n, rate) = sa.run(w, slice)?;
                ops_a += n;
                if let (Some(b), Ok(after)) = (before, crate::callouts::read_counts()) {
                    for (k, (begins, _)) in crate::callouts::delta(&b, &after) {
                        callouts.entry(k).or_insert((0, 0)).0 += begins;
                    }
                }
                Ok(rate)
            };
            let (ra, rb) = if r % 2 == 0 {
                let ra = run_a()?;
                (ra, sb.run(w, slice)?.1)
            } else {
                let rb = sb.run(w, slice)?.1;
                (run_a()?, rb)
            };
            sum_a += ra;
            sum_b += rb;
            ratios.push(ra / rb);
        }
        ratios.sort_by(f64::total_cmp);
        let n = ratios.len();
        let median = (ratios[(n - 1) / 2] + ratios[n / 2]) / 2.0;
        let rounds = f64::from(SINGLE_ROUNDS);
        println!("MXFS-BENCH {}_{key} {:.0}", a.1, sum_a / rounds);
        println!("MXFS-BENCH {}_{key} {:.0}", b.1, sum_b / rounds);
        println!(
            "MXFS-BENCH ratio_{key} {median:.3} {:.3} {:.3}",
            ratios[0],
            ratios[n - 1]
        );
        if !callouts.is_empty() && ops_a > 0 {
            let per_op: Vec<String> = callouts
                .iter()
                .map(|((k, i), (b, _))| format!("{k} {i} {:.2}", *b as f64 / ops_a as f64))
                .collect();
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
