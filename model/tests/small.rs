//! Small exhaustive runs of the model that fit in `cargo test` (debug build). The full runs
//! are `just model` and `just model-bounded`.

use mxfs_core::LockMode;
use mxfs_model::{representative, Ask, MxfsModel};
use stateright::Expectation;
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

/// Two holders of one resource on one node that both convert block each other (PR -> CW and
/// PR -> PW): the core denies the newer with `EDEADLK` (it waited for ever before the fix;
/// see README.md, "A core fault the model found"). Every check holds, and the denial happens.
#[test]
fn two_conversions_on_one_node_are_a_deadlock_the_core_breaks() {
    let m = MxfsModel {
        nodes: 1,
        resources: mxfs_model::pick_resources(1, 2),
        ops: 4,
        asks: vec![Ask::Wait(LockMode::Pr)],
        converts: vec![(LockMode::Pr, LockMode::Cw), (LockMode::Pr, LockMode::Pw)],
        max_crashes: 0,
        kernel_waits: 2,
        ..MxfsModel::exhaustive()
    };
    let c = run(m);
    for p in c.model().properties() {
        if matches!(p.expectation, Expectation::Always) {
            assert!(c.discovery(p.name).is_none(), "violated: {}", p.name);
        }
    }
    assert!(
        c.discovery("a deny").is_some(),
        "the EDEADLK denial is reached"
    );
}
