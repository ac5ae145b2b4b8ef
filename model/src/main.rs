//! `mxfs-model`: runs the MXFS lock protocol model. Exits non-zero when an `always` property
//! is violated or a `sometimes` property is never reached.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use mxfs_model::MxfsModel;
use stateright::{Checker, Expectation, Model, UniformChooser};

fn usage() -> ExitCode {
    eprintln!(
        "usage: mxfs-model check [OPS [CONVERTS [TRY]]] | bounded | simulate [SECONDS] [SEED]"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(mode) = args.first() else {
        return usage();
    };
    match mode.as_str() {
        "check" => {
            let mut m = MxfsModel::exhaustive();
            // Optional knobs for exploring other bounds: OPS, then CONVERTS (0/1), then TRY (0/1).
            if let Some(v) = args.get(1).and_then(|s| s.parse().ok()) {
                m.ops = v;
            }
            if let Some(v) = args.get(2) {
                m.converts = v == "1";
            }
            if args.get(3).is_some_and(|v| v == "1") {
                m.asks.push(mxfs_model::Ask::Try(mxfs_core::LockMode::Ex));
            }
            exhaustive("check (3 nodes, 2 resources, 1 crash)", m)
        }
        "bounded" => exhaustive(
            "bounded (3 nodes, 2 resources, 1 crash)",
            MxfsModel::bounded(),
        ),
        "simulate" => {
            let secs: u64 = match args.get(1).map(|s| s.parse()) {
                None => 30,
                Some(Ok(v)) => v,
                Some(Err(_)) => return usage(),
            };
            let seed: u64 = match args.get(2).map(|s| s.parse()) {
                None => 1,
                Some(Ok(v)) => v,
                Some(Err(_)) => return usage(),
            };
            simulate(secs, seed)
        }
        _ => usage(),
    }
}

fn exhaustive(name: &str, model: MxfsModel) -> ExitCode {
    println!(
        "model {name}: {} ops, converts {}, asks {:?}, resources {:?}",
        model.ops,
        model.converts,
        model.asks,
        model.resources.iter().map(|r| r.a).collect::<Vec<_>>()
    );
    assert_eq!(
        model.resources,
        mxfs_model::pick_resources(model.nodes, model.resources.len()),
        "symmetry needs mirrored resources"
    );
    let start = Instant::now();
    let checker = model
        .checker()
        .threads(2)
        .symmetry_fn(mxfs_model::representative)
        .spawn_dfs()
        .join();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "explored {} states ({} unique), max depth {}, in {secs:.1} s",
        checker.state_count(),
        checker.unique_state_count(),
        checker.max_depth()
    );
    judge(&checker, true)
}

fn simulate(secs: u64, seed: u64) -> ExitCode {
    let model = MxfsModel::simulation();
    println!(
        "simulation: {} nodes, {} resources, {} ops, {} crashes, {secs} s, seed {seed}",
        model.nodes,
        model.resources.len(),
        model.ops,
        model.max_crashes
    );
    let start = Instant::now();
    let checker = model
        .checker()
        .threads(2)
        .timeout(Duration::from_secs(secs))
        .spawn_simulation(seed, UniformChooser)
        .join();
    println!(
        "simulated {} states ({} unique), max depth {}, in {:.1} s",
        checker.state_count(),
        checker.unique_state_count(),
        checker.max_depth(),
        start.elapsed().as_secs_f64()
    );
    judge(&checker, false)
}

/// Prints each property's outcome; fails on any counterexample, and (when `complete`) on any
/// `sometimes` without an example.
fn judge<C: Checker<MxfsModel>>(checker: &C, complete: bool) -> ExitCode {
    let mut ok = true;
    let found = checker.discoveries();
    for p in checker.model().properties() {
        let hit = found.get(p.name);
        match (p.expectation, hit) {
            (Expectation::Sometimes, Some(_)) => println!("  ok       sometimes: {}", p.name),
            (Expectation::Sometimes, None) => {
                println!("  MISSING  sometimes: {}", p.name);
                ok &= !complete;
            }
            (_, None) => println!("  ok       always:    {}", p.name),
            (_, Some(path)) => {
                ok = false;
                println!("  VIOLATED always:    {}", p.name);
                println!("      last state: {:?}", path.last_state().bad);
                for step in path.clone().into_actions() {
                    println!("      {step}");
                }
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        println!("model check FAILED");
        ExitCode::FAILURE
    }
}
