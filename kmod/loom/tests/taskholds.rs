//! `kmod/taskholds.rs`, the lock-free table of tasks inside mxfs operations.
//!
//! - Against a map (the table on `core` atomics): random inserts, lookups and removals of keys
//!   (separately or as one `enter`), chosen to collide (many share a home group, so groups
//!   fill and spill into others), checking after every step that every key the map holds is
//!   found with its value, and no other key is found.
//! - Under loom (the table on loom atomics): tasks of one home group race for its last free
//!   entry through `enter`; the loser spills into the next group, and both find, change and
//!   free their own entries without disturbing anyone's.

use std::collections::HashMap;

use mxfs_kmod_loom::plain::taskholds::{
    Entered, TaskHold, TaskHolds, GROUP_ENTRIES, TASK_HOLDS_MAX,
};
use mxfs_kmod_loom::proto::LockMode;

/// A small xorshift generator (deterministic seeds, no dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn hold(slot: usize, depth: u32) -> TaskHold {
    TaskHold {
        slot,
        mode: LockMode::Pr,
        depth,
    }
}

fn lhold(slot: usize, depth: u32) -> mxfs_kmod_loom::taskholds::TaskHold {
    mxfs_kmod_loom::taskholds::TaskHold {
        slot,
        mode: LockMode::Pr,
        depth,
    }
}

fn check(t: &TaskHolds, map: &HashMap<(usize, usize), u32>, keys: &[usize]) {
    for &task in keys {
        for slot in 0..2 {
            match (t.find(task, slot), map.get(&(task, slot))) {
                (Some(i), Some(&d)) => assert_eq!(t.value(i), hold(slot, d)),
                (None, None) => {}
                (got, want) => panic!("task {task:#x} slot {slot}: table {got:?}, map {want:?}"),
            }
        }
    }
    assert_eq!(t.used(), map.len(), "entries in use");
}

/// `n` kernel-like task addresses whose home is `group`.
fn tasks_of_group(group: usize, n: usize) -> Vec<usize> {
    (0..)
        .map(|i| 0xffff_8880_0000_0000usize + i * 0x2c0)
        .filter(|&t| TaskHolds::home(t) == group)
        .take(n)
        .collect()
}

#[test]
fn table_agrees_with_a_map_under_collisions_and_spills() {
    for seed in 1..=20u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        // Half the keys share two home groups, so those groups fill and spill; the rest are
        // spread.
        let mut keys = tasks_of_group(3, 24);
        keys.extend(tasks_of_group(31, 24));
        keys.extend((0..TASK_HOLDS_MAX).map(|i| 0xffff_9990_0000_0000usize + i * 0x2c0));
        let t = TaskHolds::new();
        let mut map = HashMap::new();
        for step in 0..4000u32 {
            let task = keys[(rng.next() % keys.len() as u64) as usize];
            let slot = (rng.next() % 2) as usize;
            // Half the steps look up and insert in one `enter`, as op_begin does.
            let found = if rng.next().is_multiple_of(2) {
                t.find(task, slot)
            } else {
                let room = map.len() < TASK_HOLDS_MAX;
                match t.enter(task, hold(slot, 1)) {
                    Entered::Found(i) => Some(i),
                    e => {
                        let want = match (map.contains_key(&(task, slot)), room) {
                            (true, _) => "Found",
                            (false, true) => "Inserted",
                            (false, false) => "Full",
                        };
                        assert_eq!(
                            format!("{e:?}").split('(').next(),
                            Some(want),
                            "seed {seed} step {step}"
                        );
                        if let Entered::Inserted(_) = e {
                            map.insert((task, slot), 1);
                        }
                        check(&t, &map, &[task]);
                        continue;
                    }
                }
            };
            match found {
                Some(i) => {
                    assert!(map.contains_key(&(task, slot)), "seed {seed} step {step}");
                    if rng.next().is_multiple_of(3) {
                        let mut h = t.value(i);
                        h.depth += 1;
                        t.set(i, h);
                        *map.get_mut(&(task, slot)).unwrap() += 1;
                    } else {
                        t.remove(task, i);
                        map.remove(&(task, slot));
                    }
                }
                None => {
                    let inserted = t.insert(task, hold(slot, 1));
                    assert_eq!(
                        inserted.is_some(),
                        map.len() < TASK_HOLDS_MAX,
                        "seed {seed} step {step}"
                    );
                    if inserted.is_some() {
                        map.insert((task, slot), 1);
                    }
                }
            }
            if step.is_multiple_of(64) {
                check(&t, &map, &keys);
            } else {
                check(&t, &map, &[task]);
            }
        }
        check(&t, &map, &keys);
    }
}

#[test]
fn a_full_table_refuses_and_every_entry_stays_findable() {
    let t = TaskHolds::new();
    let tasks: Vec<usize> = (0..TASK_HOLDS_MAX).map(|i| 0x1000 + i * 64).collect();
    for &task in &tasks {
        assert!(t.insert(task, hold(0, 1)).is_some());
    }
    assert!(t.insert(0x99_9999, hold(0, 1)).is_none());
    for &task in &tasks {
        assert!(t.find(task, 0).is_some());
    }
    assert!(
        t.find(0x99_9999, 0).is_none(),
        "a lookup in a full table ends"
    );
}

#[test]
fn tasks_race_for_the_last_entry_of_their_group() {
    use loom::sync::Arc;
    use mxfs_kmod_loom::taskholds::{Entered as LoomEntered, TaskHolds as LoomHolds};

    let group = 5;
    let tasks = tasks_of_group(group, GROUP_ENTRIES + 1);
    // Each lookup loads a whole group of keys: more branches than loom's default allows.
    let mut model = loom::model::Builder::new();
    model.max_branches = 100_000;
    if model.preemption_bound.is_none() {
        model.preemption_bound = Some(3);
    }
    model.check(move || {
        let t = Arc::new(LoomHolds::new());
        // Other tasks fill all but one entry of the group.
        let fillers = &tasks[..GROUP_ENTRIES - 1];
        for (k, &f) in fillers.iter().enumerate() {
            t.insert(f, lhold(0, k as u32 + 1)).unwrap();
        }
        let racers: Vec<_> = [tasks[GROUP_ENTRIES - 1], tasks[GROUP_ENTRIES]]
            .into_iter()
            .map(|task| {
                let t = t.clone();
                loom::thread::spawn(move || {
                    assert_eq!(t.find(task, 1), None);
                    let i = match t.enter(task, lhold(1, 1)) {
                        LoomEntered::Inserted(i) => i,
                        e => panic!("enter found {e:?} in a table with room"),
                    };
                    assert_eq!(t.find(task, 1), Some(i), "finds its own entry");
                    assert_eq!(t.enter(task, lhold(1, 1)), LoomEntered::Found(i));
                    t.set(i, lhold(1, 2));
                    assert_eq!(t.value(t.find(task, 1).unwrap()), lhold(1, 2));
                    t.remove(task, i);
                    assert_eq!(t.find(task, 1), None, "gone after remove");
                })
            })
            .collect();
        for r in racers {
            r.join().unwrap();
        }
        for (k, &f) in fillers.iter().enumerate() {
            let i = t.find(f, 0).expect("a filler stays findable");
            assert_eq!(t.value(i), lhold(0, k as u32 + 1));
        }
        assert_eq!(t.used(), GROUP_ENTRIES - 1);
    });
}
