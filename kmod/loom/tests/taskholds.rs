//! `kmod/taskholds.rs`, the table of tasks inside mxfs operations, against a map: random
//! inserts, lookups and removals of keys chosen to collide (their hashes share a home slot often,
//! and the table wraps), checking after every step that every key the map holds is found at an
//! entry carrying it, and no other key is found.

use std::collections::HashMap;

use mxfs_kmod_loom::proto::LockMode;
use mxfs_kmod_loom::taskholds::{TaskHold, TaskHolds, TASK_HOLDS_MAX};

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

fn check(t: &TaskHolds, map: &HashMap<(usize, usize), u32>, keys: &[usize]) {
    for &task in keys {
        for slot in 0..2 {
            match (t.find(task, slot), map.get(&(task, slot))) {
                (Some(i), Some(&d)) => {
                    let e = &t.entries[i];
                    assert_eq!((e.task, e.slot, e.depth), (task, slot, d));
                }
                (None, None) => {}
                (got, want) => panic!("task {task:#x} slot {slot}: table {got:?}, map {want:?}"),
            }
        }
    }
    let used = t.entries.iter().filter(|e| e.task != 0).count();
    assert_eq!(used, map.len(), "entries in use");
}

#[test]
fn table_agrees_with_a_map_under_collisions_and_wrap_around() {
    for seed in 1..=20u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        // Kernel-like task addresses: few distinct values, so probes collide and wrap.
        let keys: Vec<usize> = (0..TASK_HOLDS_MAX + 40)
            .map(|i| 0xffff_8880_0000_0000usize + i * 0x2c0)
            .collect();
        let mut t = TaskHolds::EMPTY;
        let mut map = HashMap::new();
        for step in 0..4000u32 {
            let task = keys[(rng.next() % keys.len() as u64) as usize];
            let slot = (rng.next() % 2) as usize;
            match t.find(task, slot) {
                Some(i) => {
                    if rng.next().is_multiple_of(3) {
                        t.entries[i].depth += 1;
                        *map.get_mut(&(task, slot)).unwrap() += 1;
                    } else {
                        t.remove(i);
                        map.remove(&(task, slot));
                    }
                }
                None => {
                    let inserted = t.insert(TaskHold {
                        task,
                        slot,
                        mode: LockMode::Pr,
                        depth: 1,
                    });
                    assert_eq!(
                        inserted,
                        map.len() < TASK_HOLDS_MAX,
                        "seed {seed} step {step}"
                    );
                    if inserted {
                        map.insert((task, slot), 1);
                    }
                }
            }
            // Every key every 64 steps (debug builds run this test too), and the touched one
            // at every step.
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
    let mut t = TaskHolds::EMPTY;
    for i in 0..TASK_HOLDS_MAX {
        assert!(t.insert(TaskHold {
            task: 0x1000 + i * 64,
            slot: 0,
            mode: LockMode::Ex,
            depth: 1,
        }));
    }
    assert!(!t.insert(TaskHold {
        task: 0x99_9999,
        slot: 0,
        mode: LockMode::Ex,
        depth: 1,
    }));
    for i in 0..TASK_HOLDS_MAX {
        assert!(t.find(0x1000 + i * 64, 0).is_some());
    }
    assert!(
        t.find(0x99_9999, 0).is_none(),
        "a lookup in a full table ends"
    );
}
