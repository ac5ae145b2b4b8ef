//! proptest-state-machine: random operation sequences on a 3-node cluster of real cores,
//! judged at every step against a plain, single-master reference lock table.
//!
//! The reference table is fed only the kernel-visible outcome (grants, denies, releases) and
//! checks, in plain terms, what the distributed core must guarantee:
//! - every grant is compatible with every lock the reference knows to be held;
//! - every reply answers a request that is outstanding, and at most once;
//! - a try-lock that the reference sees blocked by a held lock is denied;
//! - at quiescence (network drained), no request waits on a resource where nothing held
//!   blocks any waiter (no lost wake-up, no lock kept cached against a waiter);
//! - a conversion keeps its old mode when denied.

use std::collections::BTreeMap;

use mxfs_core::sim::Cluster;
use mxfs_core::*;
use proptest::prelude::*;
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};

const NODES: u32 = 3;
const RESOURCES: u64 = 3;

#[derive(Clone, Debug)]
enum Op {
    Request {
        node: NodeId,
        res: u64,
        mode: LockMode,
        noqueue: bool,
        timeout_ms: Option<u32>,
    },
    /// Let time pass (request timeouts fire).
    Advance {
        ms: u64,
    },
    Convert {
        node: NodeId,
        k: usize,
        mode: LockMode,
    },
    Release {
        node: NodeId,
        k: usize,
    },
    /// Deliver the `k`-th message in flight (mod count): reorders the network.
    Deliver {
        k: usize,
    },
    /// Drain the network and check quiescence.
    Settle,
}

/// The reference side of proptest-state-machine only generates operations; the plain lock
/// table that judges them lives in [`Sut`] because grants happen when the network says so.
struct Ops;

impl ReferenceStateMachine for Ops {
    type State = ();
    type Transition = Op;

    fn init_state() -> BoxedStrategy<()> {
        Just(()).boxed()
    }

    fn transitions(_: &()) -> BoxedStrategy<Op> {
        let mode = proptest::sample::select(LockMode::ALL.to_vec());
        prop_oneof![
            3 => (
                0..NODES,
                0..RESOURCES,
                mode.clone(),
                proptest::bool::weighted(0.2),
                proptest::option::weighted(0.3, 1..100u32)
            )
                .prop_map(|(node, res, mode, noqueue, timeout_ms)| Op::Request {
                    node,
                    res,
                    mode,
                    noqueue,
                    timeout_ms
                }),
            1 => (0..60u64).prop_map(|ms| Op::Advance { ms }),
            1 => (0..NODES, 0..4usize, mode).prop_map(|(node, k, mode)| Op::Convert { node, k, mode }),
            3 => (0..NODES, 0..4usize).prop_map(|(node, k)| Op::Release { node, k }),
            4 => (0..64usize).prop_map(|k| Op::Deliver { k }),
            1 => Just(Op::Settle),
        ]
        .boxed()
    }

    fn apply(state: (), _: &Op) {
        state
    }
}

/// The plain reference lock table: one global map of held locks and outstanding requests.
#[derive(Clone, Default, Debug)]
struct Table {
    /// req key (node, req) -> (resource, mode)
    held: BTreeMap<(NodeId, ReqId), (u64, LockMode)>,
    /// outstanding requests: (node, req) -> (resource, mode, noqueue, convert)
    waiting: BTreeMap<(NodeId, ReqId), (u64, LockMode, bool, bool)>,
}

impl Table {
    fn compatible_with_held(&self, who: (NodeId, ReqId), res: u64, mode: LockMode) -> bool {
        self.held
            .iter()
            .all(|(k, (r, m))| *k == who || *r != res || m.compatible(mode))
    }
}

#[derive(Clone)]
struct Sut {
    c: Cluster,
    t: Table,
    next_req: ReqId,
}

fn rid(res: u64) -> ResourceId {
    ResourceId::inode(1, res)
}

impl Sut {
    /// Feeds every new kernel message to the reference table, checking each.
    fn judge(&mut self) {
        for (node, k) in std::mem::take(&mut self.c.kernel_log) {
            match k {
                KernelMsg::Grant {
                    req_id,
                    resource,
                    mode,
                } => {
                    let key = (node, req_id);
                    let (res, want, _, _) = self.t.waiting.remove(&key).unwrap_or_else(|| {
                        panic!("grant of n{node} req {req_id} that is not outstanding")
                    });
                    assert_eq!(rid(res), resource);
                    assert_eq!(want, mode);
                    assert!(
                        self.t.compatible_with_held(key, res, mode),
                        "grant of {mode:?} to n{node} req {req_id} on {res} conflicts with {:?}",
                        self.t.held
                    );
                    self.t.held.insert(key, (res, mode));
                }
                KernelMsg::Deny { req_id, errno, .. } => {
                    let key = (node, req_id);
                    assert!(
                        self.t.waiting.remove(&key).is_some(),
                        "deny of n{node} req {req_id} not outstanding"
                    );
                    assert!(errno < 0);
                }
                _ => {}
            }
        }
    }
}

impl StateMachineTest for Sut {
    type SystemUnderTest = Sut;
    type Reference = Ops;

    fn init_test(_: &()) -> Sut {
        Sut {
            c: Cluster::new(NODES),
            t: Table::default(),
            next_req: 1,
        }
    }

    fn apply(mut s: Sut, _: &(), op: Op) -> Sut {
        match op {
            Op::Advance { ms } => {
                let now = s.c.now_ms + ms;
                s.c.advance(now);
            }
            Op::Request {
                node,
                res,
                mode,
                noqueue,
                timeout_ms,
            } => {
                let req_id = s.next_req;
                s.next_req += 1;
                let mut flags = if noqueue {
                    LockFlags::NOQUEUE
                } else {
                    LockFlags::empty()
                };
                if timeout_ms.is_some() {
                    flags = flags.union(LockFlags::TIMEOUT_MS);
                }
                let timeout_ms = timeout_ms.unwrap_or(0);
                let blocked_now = !s.t.compatible_with_held((node, req_id), res, mode);
                s.t.waiting
                    .insert((node, req_id), (res, mode, noqueue, false));
                let ev = Event::KernelRequest {
                    req_id,
                    resource: rid(res),
                    mode,
                    flags,
                    timeout_ms,
                };
                s.c.event(node, ev).expect("request accepted");
                if noqueue && blocked_now {
                    // A try-lock blocked by a held lock cannot be granted: it is denied at once
                    // or after one round trip; no network step may change that meanwhile.
                    let mut probe = s.c.clone();
                    probe.settle();
                    let denied = probe.kernel_log.iter().any(|(n, k)| {
                        *n == node && matches!(k, KernelMsg::Deny { req_id: r, .. } if *r == req_id)
                    });
                    assert!(
                        denied,
                        "try-lock of n{node} blocked by a held lock was not denied"
                    );
                }
            }
            Op::Convert { node, k, mode } => {
                let mine: Vec<ReqId> =
                    s.t.held
                        .keys()
                        .filter(|(n, r)| *n == node && !s.t.waiting.contains_key(&(*n, *r)))
                        .map(|(_, r)| *r)
                        .collect();
                if let Some(req_id) = mine.get(k % mine.len().max(1)).copied() {
                    let (res, _) = s.t.held[&(node, req_id)];
                    let ev = Event::KernelRequest {
                        req_id,
                        resource: rid(res),
                        mode,
                        flags: LockFlags::CONVERT,
                        timeout_ms: 0,
                    };
                    s.t.waiting.insert((node, req_id), (res, mode, false, true));
                    // The old mode stays held until the conversion is granted.
                    s.c.event(node, ev).expect("convert accepted");
                }
            }
            Op::Release { node, k } => {
                let mine: Vec<ReqId> =
                    s.t.held
                        .keys()
                        .filter(|(n, r)| *n == node && !s.t.waiting.contains_key(&(*n, *r)))
                        .map(|(_, r)| *r)
                        .collect();
                if let Some(req_id) = mine.get(k % mine.len().max(1)).copied() {
                    let (res, _) = s.t.held.remove(&(node, req_id)).expect("held");
                    s.c.release(node, req_id, rid(res))
                        .expect("release accepted");
                }
            }
            Op::Deliver { k } => {
                if !s.c.net.is_empty() {
                    let i = k % s.c.net.len();
                    let (from, to, msg) = s.c.net.remove(i).expect("in range");
                    let _ = s.c.event(to, Event::Peer { from, msg });
                }
            }
            Op::Settle => {
                s.c.settle();
                s.judge();
                // Quiescence: every resource with a waiter has a held lock blocking a waiter,
                // or a waiter whose own node's kernel holds the resource (a pending BAST stops
                // new local holders until the local ones leave, as GFS2's demote does).
                for res in 0..RESOURCES {
                    let waiters: Vec<_> = s.t.waiting.iter().filter(|(_, w)| w.0 == res).collect();
                    if waiters.is_empty() {
                        continue;
                    }
                    let node_holds = |n: NodeId| {
                        s.t.held
                            .iter()
                            .any(|((hn, _), (r, _))| *hn == n && *r == res)
                    };
                    let blocked = waiters.iter().any(|(key, w)| {
                        !s.t.compatible_with_held(**key, res, w.1) || node_holds(key.0)
                    });
                    assert!(
                        blocked,
                        "resource {res} idle with waiters {waiters:?}, held {:?}",
                        s.t.held
                    );
                }
            }
        }
        s.judge();
        s
    }

    fn check_invariants(s: &Sut, _: &()) {
        for node in 0..NODES {
            s.c.core(node).check_invariants().expect("core invariants");
        }
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn core_matches_reference_lock_table(sequential 1..80 => Sut);
}

/// Replays a fixed operation list (a shrunk proptest counterexample) with tracing on.
fn replay(ops: Vec<Op>) {
    let mut s = <Sut as StateMachineTest>::init_test(&());
    s.c.tracing = true;
    for op in ops {
        let before = s.clone();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let t = <Sut as StateMachineTest>::apply(before.clone(), &(), op.clone());
            <Sut as StateMachineTest>::check_invariants(&t, &());
            t
        }));
        match r {
            Ok(t) => s = t,
            Err(e) => {
                let msg = e.downcast_ref::<String>().cloned().unwrap_or_default();
                let mut t = before;
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    let _ = <Sut as StateMachineTest>::apply(t.clone(), &(), op.clone());
                }));
                // Re-run the failing step without the checks to show what it did.
                t.c.settle();
                panic!("{op:?} failed: {msg}; trace:\n{}", t.c.trace);
            }
        }
    }
}

#[test]
fn replay_convert_then_down_convert_on_bast() {
    use LockMode::*;
    replay(vec![
        Op::Request {
            node: 0,
            res: 2,
            mode: Nl,
            noqueue: false,
            timeout_ms: None,
        },
        Op::Request {
            node: 0,
            res: 0,
            mode: Nl,
            noqueue: false,
            timeout_ms: None,
        },
        Op::Request {
            node: 0,
            res: 2,
            mode: Nl,
            noqueue: false,
            timeout_ms: None,
        },
        Op::Request {
            node: 2,
            res: 1,
            mode: Pr,
            noqueue: false,
            timeout_ms: None,
        },
        Op::Deliver { k: 20 },
        Op::Request {
            node: 0,
            res: 1,
            mode: Cw,
            noqueue: false,
            timeout_ms: None,
        },
        Op::Deliver { k: 46 },
        Op::Request {
            node: 0,
            res: 0,
            mode: Nl,
            noqueue: false,
            timeout_ms: None,
        },
        Op::Convert {
            node: 2,
            k: 0,
            mode: Cw,
        },
        Op::Settle,
    ]);
}
