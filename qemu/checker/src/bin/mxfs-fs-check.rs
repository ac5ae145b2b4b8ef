//! `mxfs-fs-check`: judges the file-system phase of a QEMU cluster run from the JSON lines the
//! guests printed (see the `fs` module of the library). `data` checks the per-block histories
//! as linearizable registers; `ns` checks the namespace operations against every node's final
//! listing. Prints a summary, every violation (`VIOLATION: ...`), and a last line starting with
//! `PASS` or `FAIL`; exits 0, 1 (violations) or 2 (unreadable input).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mxfs_history_check::fs::{
    check_namespace, check_registers, clock_offsets, data_ops, ClockLine, DataLine, NsLine,
    NsListing,
};
use serde::de::DeserializeOwned;

#[derive(Parser)]
#[command(about = "Check the MXFS cluster's file-system histories")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Per-block register linearizability of MXFS-DATA lines; no acknowledged write lost.
    Data {
        /// MXFS-CLOCK lines (JSON).
        #[arg(long)]
        clock: String,
        /// Guest TSC frequency, kHz (only for the messages, in ms).
        #[arg(long, default_value_t = 1_000_000)]
        tsc_khz: u64,
        /// Fail unless at least this many operations were recorded.
        #[arg(long, default_value_t = 1)]
        min_ops: usize,
        /// MXFS-DATA lines (JSON).
        data: String,
    },
    /// Namespace operations (MXFS-NS lines) against the final listings (MXFS-NSLIST lines).
    Ns {
        #[arg(long)]
        clock: String,
        /// Nodes that must each have printed a listing.
        #[arg(long)]
        nodes: u32,
        ops: String,
        listings: String,
    },
}

fn read_lines<T: DeserializeOwned>(path: &str) -> Result<Vec<T>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("{path}:{}: {e}: {l}", i + 1)))
        .collect()
}

fn verdict(violations: &[String], summary: String) -> ExitCode {
    for v in violations {
        println!("VIOLATION: {v}");
    }
    if violations.is_empty() {
        println!("PASS {summary}");
        ExitCode::SUCCESS
    } else {
        println!(
            "FAIL {} violation(s); first: {}",
            violations.len(),
            violations[0]
        );
        ExitCode::FAILURE
    }
}

fn run(args: Args) -> Result<ExitCode, String> {
    match args.cmd {
        Cmd::Data {
            clock,
            tsc_khz,
            min_ops,
            data,
        } => {
            let (offs, eps, desc) = clock_offsets(&read_lines::<ClockLine>(&clock)?)?;
            let ops = data_ops(&read_lines::<DataLine>(&data)?, &offs)?;
            println!("clock: {desc}; eps {eps} ticks");
            let r = check_registers(&ops, eps, tsc_khz as f64);
            let mut v = r.violations;
            if ops.len() < min_ops {
                v.push(format!(
                    "only {} operations recorded, want {min_ops}",
                    ops.len()
                ));
            }
            let per_node = ops
                .iter()
                .fold(std::collections::BTreeMap::new(), |mut m, o| {
                    *m.entry(o.node).or_insert(0usize) += 1;
                    m
                });
            Ok(verdict(
                &v,
                format!(
                    "{} blocks, {} writes, {} reads ({} final), per node {:?}, clock error bound \
                     {:.3} ms",
                    r.registers,
                    r.writes,
                    r.reads,
                    r.final_reads,
                    per_node,
                    eps as f64 / tsc_khz as f64
                ),
            ))
        }
        Cmd::Ns {
            clock,
            nodes,
            ops,
            listings,
        } => {
            let (offs, eps, desc) = clock_offsets(&read_lines::<ClockLine>(&clock)?)?;
            let ops = read_lines::<NsLine>(&ops)?;
            let listings = read_lines::<NsListing>(&listings)?;
            println!("clock: {desc}; eps {eps} ticks");
            let universe = listings
                .iter()
                .map(|l| l.universe.clone())
                .find(|u| !u.is_empty())
                .unwrap_or_default();
            let r = check_namespace(&ops, &listings, &offs, eps, &universe, nodes);
            for (k, n) in &r.counts {
                println!("  {k}: {n}");
            }
            let ok = r
                .counts
                .iter()
                .filter(|(k, _)| k.ends_with(" ok"))
                .map(|(_, n)| n)
                .sum::<usize>();
            Ok(verdict(
                &r.violations,
                format!(
                    "{} operations ({ok} succeeded), {} paths judged, {} listings equal with {} \
                     entries",
                    ops.len(),
                    r.paths,
                    listings.len(),
                    r.entries
                ),
            ))
        }
    }
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(c) => c,
        Err(e) => {
            println!("FAIL error: {e}");
            ExitCode::from(2)
        }
    }
}
