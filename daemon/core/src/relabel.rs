//! Renaming nodes and resources in a core's state, for symmetry reduction in model checkers.

use std::collections::BTreeMap;

use crate::engine::Core;
use crate::master::{Granted, MasterRes, MasterTable, Pending};
use crate::node::{LocalRes, NodeTable, ReqState};
use crate::recovery::Recovery;
use crate::*;

/// A renaming of node ids and resources. For the renamed state to be a state of the same
/// system, `node` must be a permutation of the cluster and `resource` a permutation of the
/// resources in use, such that `master_of(node(M), resource(r)) == node(master_of(M, r))`
/// for every member set `M` (e.g. swap two nodes and two resources whose rendezvous rankings
/// mirror each other). The core does not check that.
pub struct Relabel<'a> {
    /// Node renaming.
    pub node: &'a dyn Fn(NodeId) -> NodeId,
    /// Resource renaming.
    pub resource: &'a dyn Fn(&ResourceId) -> ResourceId,
}

impl Relabel<'_> {
    /// Renames every member of a set.
    pub fn set(&self, s: NodeSet) -> NodeSet {
        s.iter()
            .fold(NodeSet::EMPTY, |acc, n| acc.with((self.node)(n)))
    }

    /// Renames the resources a message names.
    pub fn msg(&self, m: &PeerMsg) -> PeerMsg {
        let r = |x: &ResourceId| (self.resource)(x);
        let body = match &m.body {
            PeerBody::Lock {
                resource,
                mode,
                noqueue,
                seq,
            } => PeerBody::Lock {
                resource: r(resource),
                mode: *mode,
                noqueue: *noqueue,
                seq: *seq,
            },
            PeerBody::Release { resource, to, seq } => PeerBody::Release {
                resource: r(resource),
                to: *to,
                seq: *seq,
            },
            PeerBody::Cancel { resource, seq } => PeerBody::Cancel {
                resource: r(resource),
                seq: *seq,
            },
            PeerBody::Grant {
                resource,
                mode,
                version,
                seq,
            } => PeerBody::Grant {
                resource: r(resource),
                mode: *mode,
                version: *version,
                seq: *seq,
            },
            PeerBody::Deny {
                resource,
                errno,
                seq,
            } => PeerBody::Deny {
                resource: r(resource),
                errno: *errno,
                seq: *seq,
            },
            PeerBody::ReleaseAck {
                resource,
                version,
                seq,
            } => PeerBody::ReleaseAck {
                resource: r(resource),
                version: *version,
                seq: *seq,
            },
            PeerBody::Bast { resource, mode } => PeerBody::Bast {
                resource: r(resource),
                mode: *mode,
            },
            PeerBody::Recover { resource, mode } => PeerBody::Recover {
                resource: r(resource),
                mode: *mode,
            },
            PeerBody::RecoverDone { count } => PeerBody::RecoverDone { count: *count },
            PeerBody::RebuildDone => PeerBody::RebuildDone,
            PeerBody::Leaving => PeerBody::Leaving,
            PeerBody::FenceAsk { node } => PeerBody::FenceAsk {
                node: (self.node)(*node),
            },
            PeerBody::Fenced { node } => PeerBody::Fenced {
                node: (self.node)(*node),
            },
            PeerBody::Replayed { node } => PeerBody::Replayed {
                node: (self.node)(*node),
            },
            PeerBody::Journals {
                known,
                replaying,
                waiting,
            } => PeerBody::Journals {
                known: *known,
                replaying: self.set(*replaying),
                waiting: self.set(*waiting),
            },
        };
        PeerMsg {
            epoch: m.epoch,
            body,
        }
    }
}

impl Core {
    /// This core's state with nodes and resources renamed by `map` (see [`Relabel`]).
    ///
    /// Every struct is taken apart field by field (no `..`), so a new field that may hold a
    /// node id or a resource does not compile until it is handled here.
    pub fn relabel(&self, map: &Relabel<'_>) -> Core {
        let n = |x: NodeId| (map.node)(x);
        let r = |x: &ResourceId| (map.resource)(x);
        let set = |s: NodeSet| map.set(s);
        let Core {
            cfg,
            epoch,
            members,
            node,
            master,
            recovery,
            future,
            loopback,
        } = self;
        let Config {
            node: me,
            cluster,
            members: initial,
            epoch: initial_epoch,
            limits,
        } = cfg;
        let NodeTable {
            local,
            reqs,
            next_seq,
            limits: node_limits,
        } = node;
        let MasterTable {
            res,
            gen,
            early_cancels,
        } = master;
        let Recovery {
            phase,
            unfenced,
            expected,
            received,
            rebuilt,
            master_ready,
            departed,
            fenced,
            fence_asked,
            unreplayed,
            replayed,
            replaying,
            replay_retry,
            known,
            member_logs,
            reported,
            heard_known,
            elsewhere,
            history,
        } = recovery;
        let local = local
            .iter()
            .map(|(k, l)| {
                // Modes, versions, request ids and sequence numbers: nothing to rename.
                let LocalRes {
                    held,
                    version,
                    inval,
                    holders,
                    waiters,
                    outstanding,
                    bast,
                    blocked,
                    called,
                } = l;
                let l = LocalRes {
                    held: *held,
                    version: *version,
                    inval: *inval,
                    holders: holders.clone(),
                    waiters: waiters.clone(),
                    outstanding: outstanding.clone(),
                    bast: *bast,
                    blocked: *blocked,
                    called: called.clone(),
                };
                (r(k), l)
            })
            .collect();
        let reqs = reqs
            .iter()
            .map(|(id, st)| {
                let ReqState {
                    resource,
                    granted,
                    waiting,
                } = st;
                let st = ReqState {
                    resource: r(resource),
                    granted: *granted,
                    waiting: *waiting,
                };
                (*id, st)
            })
            .collect();
        let res = res
            .iter()
            .map(|(k, m)| {
                let MasterRes {
                    version,
                    granted,
                    converting,
                    waiting,
                } = m;
                let pending = |p: &Pending| {
                    let Pending {
                        node,
                        mode,
                        seq,
                        since_ms,
                    } = p;
                    Pending {
                        node: n(*node),
                        mode: *mode,
                        seq: *seq,
                        since_ms: *since_ms,
                    }
                };
                let m = MasterRes {
                    version: *version,
                    granted: granted
                        .iter()
                        .map(|g| {
                            let Granted {
                                node,
                                mode,
                                seq,
                                since_ms,
                                bast_sent,
                            } = g;
                            Granted {
                                node: n(*node),
                                mode: *mode,
                                seq: *seq,
                                since_ms: *since_ms,
                                bast_sent: *bast_sent,
                            }
                        })
                        .collect(),
                    converting: converting.iter().map(pending).collect(),
                    waiting: waiting.iter().map(pending).collect(),
                };
                (r(k), m)
            })
            .collect();
        let remap = |b: &BTreeMap<NodeId, u32>| b.iter().map(|(k, v)| (n(*k), *v)).collect();
        let history = history
            .iter()
            .map(|h| {
                let RecoveryRecord {
                    epoch,
                    lost,
                    started_ms,
                    fenced_ms,
                    replayed_ms,
                    replay_failures,
                    finished_ms,
                } = h;
                RecoveryRecord {
                    epoch: *epoch,
                    lost: set(*lost),
                    started_ms: *started_ms,
                    fenced_ms: *fenced_ms,
                    replayed_ms: *replayed_ms,
                    replay_failures: *replay_failures,
                    finished_ms: *finished_ms,
                }
            })
            .collect();
        Core {
            cfg: Config {
                node: n(*me),
                cluster: set(*cluster),
                members: set(*initial),
                epoch: *initial_epoch,
                limits: *limits,
            },
            epoch: *epoch,
            members: set(*members),
            node: NodeTable {
                local,
                reqs,
                next_seq: *next_seq,
                limits: *node_limits,
            },
            master: MasterTable {
                res,
                gen: *gen,
                early_cancels: early_cancels
                    .iter()
                    .map(|((f, res), s)| ((n(*f), r(res)), *s))
                    .collect(),
            },
            recovery: Recovery {
                phase: *phase,
                unfenced: set(*unfenced),
                expected: remap(expected),
                received: remap(received),
                rebuilt: set(*rebuilt),
                master_ready: *master_ready,
                departed: set(*departed),
                fenced: set(*fenced),
                fence_asked: set(*fence_asked),
                unreplayed: set(*unreplayed),
                replayed: set(*replayed),
                replaying: set(*replaying),
                replay_retry: set(*replay_retry),
                known: *known,
                member_logs: set(*member_logs),
                reported: set(*reported),
                heard_known: *heard_known,
                elsewhere: set(*elsewhere),
                history,
            },
            future: future.iter().map(|(f, m)| (n(*f), map.msg(m))).collect(),
            loopback: loopback
                .iter()
                .map(|b| {
                    map.msg(&PeerMsg {
                        epoch: 0,
                        body: b.clone(),
                    })
                    .body
                })
                .collect(),
        }
    }
}
