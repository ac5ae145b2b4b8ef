//! Small exhaustive runs of the model that fit in `cargo test` (debug build). The full runs
//! are `just model` and `just model-bounded`.

use mxfs_core::LockMode;
use mxfs_model::{representative, Ask, MxfsModel};
use stateright::{Checker, Model};

fn run(model: MxfsModel) -> impl Checker<MxfsModel> {
    model
        .checker()
        .symmetry_fn(representative)
        .spawn_dfs()
        .join()
}

#[test]
fn contention_without_crash_keeps_every_property() {
    let m = MxfsModel {
        ops: 2,
        max_crashes: 0,
        asks: vec![
            Ask::Wait(mxfs_core::LockMode::Ex),
            Ask::Try(mxfs_core::LockMode::Ex),
        ],
        ..MxfsModel::exhaustive()
    };
    let c = run(m);
    for name in ["a grant", "a deny", "a BAST"] {
        assert!(c.discovery(name).is_some(), "{name} never happened");
    }
    for p in c.model().properties() {
        if p.expectation == stateright::Expectation::Always {
            c.assert_no_discovery(p.name);
        }
    }
}

#[test]
fn one_op_with_a_crash_keeps_every_property() {
    let m = MxfsModel {
        ops: 1,
        ..MxfsModel::exhaustive()
    };
    let c = run(m);
    assert!(c.discovery("a recovery").is_some());
    for p in c.model().properties() {
        if p.expectation == stateright::Expectation::Always {
            c.assert_no_discovery(p.name);
        }
    }
}

#[test]
fn mirror_is_an_involution() {
    for (_, m) in MxfsModel::bounded_suite() {
        mirror_walk(&m);
    }
}

fn mirror_walk(m: &MxfsModel) {
    let mut s = m.init_states().remove(0);
    for step in 0..24 {
        let mut acts = Vec::new();
        m.actions(&s, &mut acts);
        if acts.is_empty() {
            break;
        }
        let a = acts[(step * 7) % acts.len()].clone();
        s = m.next_state(&s, a).unwrap();
        let t = mxfs_model::mirror(&s);
        assert_eq!(mxfs_model::mirror(&t), s);
        // The representative (cores by their cached mirror hash) is the same for both images,
        // and is one of them (as the real renaming computes it).
        assert_eq!(representative(&s), representative(&t));
        assert!(representative(&s) == s || representative(&s) == t);
    }
}

/// A model with a partition step splitting `nodes` into `side` and the rest: one request
/// (EX) anywhere, before or after the split. The sides are chosen so that the symmetry (swap
/// node 0 and node n-1) maps each onto itself.
fn split(nodes: u32, side: &[u32]) -> MxfsModel {
    let side = side
        .iter()
        .fold(mxfs_core::NodeSet::EMPTY, |s, n| s.with(*n));
    MxfsModel {
        nodes,
        resources: mxfs_model::pick_resources(nodes, 2),
        ops: 1,
        asks: vec![Ask::Wait(LockMode::Ex)],
        converts: vec![],
        partition: Some(side),
        ..MxfsModel::exhaustive()
    }
}

fn assert_no_always_violated(c: &impl Checker<MxfsModel>) {
    for p in c.model().properties() {
        if p.expectation == stateright::Expectation::Always {
            c.assert_no_discovery(p.name);
        }
    }
}

/// 2 of 4 is "at least half" but not "more than half": neither side may grant after the
/// split; requests there are denied (ENOLCK).
#[test]
fn a_two_two_split_of_four_nodes_grants_on_neither_side() {
    let c = run(split(4, &[0, 3]));
    assert_no_always_violated(&c);
    assert!(c.discovery("a deny after a partition").is_some());
    assert!(
        c.discovery("a grant after a partition").is_none(),
        "a side of 2 of 4 granted"
    );
}

/// 3 of 5 is a majority: that side fences the other two and grants; the side of 2 grants
/// nothing ("only the majority side grants").
#[test]
fn a_three_two_split_of_five_nodes_grants_only_on_the_three_side() {
    // The split first, then one request (requests before the split: the 4-node test).
    let c = run(MxfsModel {
        partition_first: true,
        ..split(5, &[0, 2, 4])
    });
    assert_no_always_violated(&c);
    assert!(c.discovery("a grant after a partition").is_some());
    assert!(c.discovery("a deny after a partition").is_some());
}

/// Known core bug, kept as a reproducer (see README.md, "Known core bug"): two kernel holders
/// of PR on one node convert to CW and PW; each waits for the other's PR, and the core never
/// answers either (the master's conversion-deadlock rule does not cover two holders on one
/// node). When the core resolves it (EDEADLK for one, as the DLM does), this test fails: make
/// it assert no discovery and turn `same_node_conversions` on in the bounded runs.
#[test]
fn known_core_bug_two_conversions_on_one_node_deadlock() {
    let m = MxfsModel {
        nodes: 1,
        resources: mxfs_model::pick_resources(1, 2),
        ops: 4,
        asks: vec![Ask::Wait(LockMode::Pr)],
        converts: vec![(LockMode::Pr, LockMode::Cw), (LockMode::Pr, LockMode::Pw)],
        max_crashes: 0,
        kernel_waits: 2,
        same_node_conversions: true,
        ..MxfsModel::exhaustive()
    };
    let c = run(m);
    let path = c
        .discovery("no wait-for cycle once the network is quiet")
        .expect("the local conversion deadlock is found");
    let last = path.last_state().clone();
    let steps: Vec<String> = path.into_actions().iter().map(|s| s.to_string()).collect();
    // The trace, for `cargo test -p mxfs-model known_core_bug -- --nocapture`.
    for step in &steps {
        println!("{step}");
    }
    for line in c.model().explain_waits(&last) {
        println!("wait-for: {line}");
    }
    assert!(
        steps.iter().filter(|s| s.starts_with("Convert")).count() == 2,
        "{steps:?}"
    );
}
