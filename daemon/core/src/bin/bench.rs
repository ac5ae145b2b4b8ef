//! `just bench-core`: prints lock core figures (no assertions; see README.md for goals).
//!
//! 1. Uncontended acquire+release on one thread, cached (the node keeps its lock after the
//!    kernel releases it, so a re-request is granted locally): goal >= 5 M pairs/s.
//! 2. The same with a fresh resource each time (a full trip through the local master).
//! 3. Recovery of a 3-node cluster after losing a node that holds 10 000 locks, from the
//!    membership event to every survivor resuming: goal <= 50 ms. Also with the survivors
//!    holding 10 000 locks each, which they must resend to the new masters.

use std::hint::black_box;
use std::time::Instant;

use mxfs_core::sim::Cluster;
use mxfs_core::*;

/// Acquire+release pairs per second on one core, each pair on `resource_of(i)`.
fn pairs_per_sec(pairs: u64, resource_of: impl Fn(u64) -> ResourceId) -> f64 {
    let mut core = Core::new(Config::booted(0, 1));
    let mut out = Vec::with_capacity(16);
    let start = Instant::now();
    for i in 0..pairs {
        let resource = resource_of(i);
        let ev = Event::KernelRequest {
            req_id: i,
            resource,
            mode: LockMode::Ex,
            flags: LockFlags::empty(),
            timeout_ms: 0,
        };
        core.handle(0, ev, &mut out).expect("request");
        // The kernel answers the first grant's invalidation (a fresh resource every time).
        if let Some(Action::Kernel(KernelMsg::CacheInval { .. })) = out.last() {
            let done = Event::CacheInvalDone { resource, errno: 0 };
            core.handle(0, done, &mut out).expect("inval answer");
        }
        core.handle(
            0,
            Event::KernelRelease {
                req_id: i,
                resource,
            },
            &mut out,
        )
        .expect("release");
        black_box(&out);
        out.clear();
    }
    pairs as f64 / start.elapsed().as_secs_f64()
}

/// 64 resources reused round-robin: after the first touch every grant is from the cache.
fn cached_pairs(pairs: u64) -> f64 {
    let resources: Vec<ResourceId> = (0..64).map(|i| ResourceId::inode(1, i)).collect();
    pairs_per_sec(pairs, |i| resources[(i % 64) as usize])
}

/// A new resource every time: a full trip through the local master.
fn fresh_pairs(pairs: u64) -> f64 {
    pairs_per_sec(pairs, |i| ResourceId::inode(2, i))
}

/// Milliseconds from the crash to every survivor resuming.
fn recovery_ms(lost_locks: u64, survivor_locks: u64) -> f64 {
    let mut c = Cluster::new(3);
    for i in 0..lost_locks {
        c.request(2, i, ResourceId::inode(3, i), LockMode::Ex)
            .expect("request");
    }
    for n in 0..2 {
        for i in 0..survivor_locks {
            let r = ResourceId::inode(4 + n as u64, i);
            c.request(n, i, r, LockMode::Pr).expect("request");
        }
    }
    c.settle();
    let start = Instant::now();
    c.crash(2, 2);
    c.settle();
    let ms = start.elapsed().as_secs_f64() * 1e3;
    assert!(
        !c.core(0).recovering() && !c.core(1).recovering(),
        "recovery did not finish"
    );
    ms
}

fn main() {
    let n = 5_000_000;
    let best = (0..3).map(|_| cached_pairs(n)).fold(0.0, f64::max);
    println!(
        "uncontended acquire+release, cached lock:       {:>6.2} M pairs/s (goal >= 5)",
        best / 1e6
    );
    let best = (0..3).map(|_| fresh_pairs(1_000_000)).fold(0.0, f64::max);
    println!(
        "uncontended acquire+release, new resource each: {:>6.2} M pairs/s",
        best / 1e6
    );
    let ms = (0..3)
        .map(|_| recovery_ms(10_000, 0))
        .fold(f64::MAX, f64::min);
    println!("recovery, lost node held 10 000 locks:          {ms:>6.2} ms (goal <= 50)");
    let ms = (0..3)
        .map(|_| recovery_ms(10_000, 10_000))
        .fold(f64::MAX, f64::min);
    println!("  ... and each survivor resends 10 000 locks:   {ms:>6.2} ms");
}
