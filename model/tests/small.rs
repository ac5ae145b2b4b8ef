//! Small exhaustive runs of the model that fit in `cargo test` (debug build). The full runs
//! are `just model` and `just model-bounded`.

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
