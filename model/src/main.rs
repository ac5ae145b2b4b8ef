//! `mxfs-model`: runs the MXFS lock protocol model. Stops at the first violated `always`
//! property, prints it with its steps and exits non-zero; also exits non-zero when an
//! exhaustive run never reaches a `sometimes` property. Prints states per second.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use mxfs_model::{MxfsModel, MODES, MODE_PROPERTY_NAMES};
use stateright::{Checker, Expectation, HasDiscoveries, Model, UniformChooser};

/// Checker threads (the machine has two cores).
const CHECKER_THREADS: usize = 2;

fn usage() -> ExitCode {
    eprintln!(
        "usage: mxfs-model check [OPS [CONVERTS [TRY]]] [--reorder] | bounded [SCENARIO] [--reorder] \
         | simulate [SECONDS] [SEED] | sim-bounded SECONDS_EACH SEED..."
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    // `--reorder`: an unordered network instead of per-pair FIFO channels.
    let reorder = args.iter().any(|a| a == "--reorder");
    args.retain(|a| a != "--reorder");
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
            if args.get(2).is_some_and(|v| v == "0") {
                m.converts.clear();
            }
            if args.get(3).is_some_and(|v| v == "1") {
                m.asks.push(mxfs_model::Ask::Try(mxfs_core::LockMode::Ex));
            }
            m.fifo = !reorder;
            match exhaustive("check (3 nodes, 2 resources, 1 crash)", m) {
                Ok(_) => ExitCode::SUCCESS,
                Err(()) => ExitCode::FAILURE,
            }
        }
        "bounded" => {
            let start = Instant::now();
            let mut found: Vec<&'static str> = Vec::new();
            // Optional: only the scenarios whose name starts with this word (e.g. `faults`).
            let only = args.get(1).cloned();
            let suite = MxfsModel::bounded_suite()
                .into_iter()
                .filter(|(name, _)| only.as_ref().is_none_or(|o| name.starts_with(o.as_str())));
            for (name, mut m) in suite {
                m.fifo = !reorder;
                match exhaustive(name, m) {
                    Ok(d) => found.extend(d),
                    Err(()) => return ExitCode::FAILURE,
                }
            }
            // Every mode is requested and converted to somewhere in the suite.
            let mut ok = true;
            for m in MODES.iter().filter(|_| only.is_none()).copied() {
                for name in MODE_PROPERTY_NAMES[mxfs_model::mode_index(m)] {
                    if !found.contains(&name) {
                        println!("  MISSING in the bounded suite: {name}");
                        ok = false;
                    }
                }
            }
            println!(
                "bounded suite: {} in {:.1} s",
                if ok { "ok" } else { "FAILED" },
                start.elapsed().as_secs_f64()
            );
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
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
            let mut m = MxfsModel::simulation();
            m.fifo = !reorder;
            simulate(m, secs, seed)
        }
        "sim-bounded" => {
            let Some(Ok(secs)) = args.get(1).map(|s| s.parse::<u64>()) else {
                return usage();
            };
            let seeds: Result<Vec<u64>, _> = args[2..].iter().map(|s| s.parse()).collect();
            let Ok(seeds) = seeds else {
                return usage();
            };
            if seeds.is_empty() {
                return usage();
            }
            for seed in seeds {
                let mut m = MxfsModel::simulation();
                m.fifo = !reorder;
                if simulate(m, secs, seed) != ExitCode::SUCCESS {
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        _ => usage(),
    }
}

/// An exhaustive DFS with the symmetry; `Ok` with the `sometimes` properties reached.
fn exhaustive(name: &str, model: MxfsModel) -> Result<Vec<&'static str>, ()> {
    println!(
        "model {name}: {} nodes, {} ops, asks {:?}, converts {:?}, {} network, resources {:?}",
        model.nodes,
        model.ops,
        model.asks,
        model.converts,
        if model.fifo { "FIFO" } else { "unordered" },
        model.resources.iter().map(|r| r.a).collect::<Vec<_>>()
    );
    let symmetry = model.symmetry;
    if symmetry && model.resources != mxfs_model::pick_resources(model.nodes, 2) {
        eprintln!("symmetry needs two mirrored resources");
        return Err(());
    }
    let start = Instant::now();
    let mut builder = model.checker().threads(CHECKER_THREADS);
    if symmetry {
        builder = builder.symmetry_fn(mxfs_model::representative);
    }
    let checker = builder
        .finish_when(HasDiscoveries::AnyFailures)
        .spawn_dfs()
        .join();
    report("explored", &checker, start);
    judge(&checker, true)
}

fn simulate(model: MxfsModel, secs: u64, seed: u64) -> ExitCode {
    println!(
        "simulation: {} nodes, {} resources, {} ops, {} crashes, {} cancels, {} losses, {} \
         network, {secs} s, seed {seed}",
        model.nodes,
        model.resources.len(),
        model.ops,
        model.max_crashes,
        model.cancels,
        model.losses,
        if model.fifo { "FIFO" } else { "unordered" },
    );
    let start = Instant::now();
    let checker = model
        .checker()
        .threads(CHECKER_THREADS)
        .timeout(Duration::from_secs(secs))
        .finish_when(HasDiscoveries::AnyFailures)
        .spawn_simulation(seed, UniformChooser)
        .join();
    report("simulated", &checker, start);
    match judge(&checker, false) {
        Ok(_) => ExitCode::SUCCESS,
        Err(()) => ExitCode::FAILURE,
    }
}

fn report<C: Checker<MxfsModel>>(what: &str, checker: &C, start: Instant) {
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{what} {} states ({} unique), max depth {}, in {secs:.1} s: {:.0} states/s",
        checker.state_count(),
        checker.unique_state_count(),
        checker.max_depth(),
        checker.state_count() as f64 / secs.max(1e-3)
    );
}

/// Prints each property's outcome; fails on any counterexample, and (when `complete`) on any
/// `sometimes` without an example. `Ok` with the `sometimes` properties reached.
fn judge<C: Checker<MxfsModel>>(checker: &C, complete: bool) -> Result<Vec<&'static str>, ()> {
    let mut ok = true;
    let mut reached = Vec::new();
    let found = checker.discoveries();
    let model = checker.model();
    let violated = model
        .properties()
        .iter()
        .any(|p| p.expectation == Expectation::Always && found.contains_key(p.name));
    for p in model.properties() {
        let hit = found.get(p.name);
        match (p.expectation, hit) {
            (Expectation::Sometimes, Some(_)) => {
                reached.push(p.name);
                println!("  ok       sometimes: {}", p.name);
            }
            (Expectation::Sometimes, None) if violated => {
                println!("  (stopped) sometimes: {}", p.name);
            }
            (Expectation::Sometimes, None) => {
                println!("  MISSING  sometimes: {}", p.name);
                ok &= !complete;
            }
            (_, None) => println!("  ok       always:    {}", p.name),
            (_, Some(path)) => {
                ok = false;
                println!(
                    "  VIOLATED always:    {} (after {} steps)",
                    p.name,
                    path.clone().into_actions().len()
                );
                let last = path.last_state();
                println!("      last state: {:?}", last.bad);
                for step in path.clone().into_actions() {
                    println!("      {step}");
                }
                for line in model.explain_waits(last) {
                    println!("      wait-for: {line}");
                }
                if let Some(cycle) = model.wait_for_cycle(last) {
                    for e in cycle {
                        println!(
                            "      cycle: {} waits for {} ({})",
                            mxfs_model::show(e.waiter),
                            mxfs_model::show(e.blocker),
                            e.why
                        );
                    }
                }
            }
        }
    }
    if ok {
        Ok(reached)
    } else {
        println!("model check FAILED");
        Err(())
    }
}
