//! `mxfs-history-check FILE...`: checks the JSON-lines histories of a QEMU cluster run for
//! mutual exclusion (see the library docs); prints a summary and every violation, and exits 1
//! when there is one (2 when a file cannot be read or parsed).

use std::process::ExitCode;

use clap::Parser;
use mxfs_history_check::{check, parse};

#[derive(Parser)]
#[command(about = "Check MXFS cluster lock histories for mutual exclusion")]
struct Args {
    /// History files (JSON lines), one or more per node.
    #[arg(required = true)]
    files: Vec<String>,
    /// A node the test killed (its unreleased holds are expected); repeatable.
    #[arg(long = "lost-node")]
    lost: Vec<u32>,
    /// Fail unless at least this many grants were recorded.
    #[arg(long, default_value_t = 1)]
    min_grants: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut events = Vec::new();
    for f in &args.files {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("mxfs-history-check: {f}: {e}");
                return ExitCode::from(2);
            }
        };
        match parse(&text) {
            Ok(mut ev) => events.append(&mut ev),
            Err(e) => {
                eprintln!("mxfs-history-check: {f}: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let r = check(&events, &args.lost);
    let grants: usize = r.holds.values().sum();
    println!(
        "history: {} events, {grants} grants over {} resources",
        events.len(),
        r.holds.len()
    );
    for (res, n) in &r.holds {
        println!("  {res}: {n} grants");
    }
    for (e, n) in &r.errors {
        println!("  errors {e}: {n}");
    }
    for v in &r.violations {
        println!("VIOLATION: {}", v.0);
    }
    if !r.violations.is_empty() {
        println!("mutual exclusion: FAIL ({} violations)", r.violations.len());
        return ExitCode::FAILURE;
    }
    if grants < args.min_grants {
        println!(
            "mutual exclusion: FAIL (only {grants} grants, want {})",
            args.min_grants
        );
        return ExitCode::FAILURE;
    }
    println!("mutual exclusion: PASS");
    ExitCode::SUCCESS
}
