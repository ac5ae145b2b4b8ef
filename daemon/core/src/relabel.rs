//! Renaming nodes and resources in a core's state, for symmetry reduction in model checkers.

use std::collections::BTreeMap;

use crate::engine::Core;
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
        };
        PeerMsg {
            epoch: m.epoch,
            body,
        }
    }
}

impl Core {
    /// This core's state with nodes and resources renamed by `map` (see [`Relabel`]).
    pub fn relabel(&self, map: &Relabel<'_>) -> Core {
        let n = |x: NodeId| (map.node)(x);
        let r = |x: &ResourceId| (map.resource)(x);
        let mut c = self.clone();
        c.cfg.node = n(self.cfg.node);
        c.cfg.cluster = map.set(self.cfg.cluster);
        c.cfg.members = map.set(self.cfg.members);
        c.members = map.set(self.members);
        c.local = self.local.iter().map(|(k, v)| (r(k), v.clone())).collect();
        c.reqs = self
            .reqs
            .iter()
            .map(|(id, st)| {
                let mut st = st.clone();
                st.resource = r(&st.resource);
                (*id, st)
            })
            .collect();
        c.master = self
            .master
            .iter()
            .map(|(k, m)| {
                let mut m = m.clone();
                for g in m.granted.iter_mut() {
                    g.node = n(g.node);
                }
                for p in m.converting.iter_mut().chain(m.waiting.iter_mut()) {
                    p.node = n(p.node);
                }
                (r(k), m)
            })
            .collect();
        let remap = |b: &BTreeMap<NodeId, u32>| b.iter().map(|(k, v)| (n(*k), *v)).collect();
        c.recovery.unfenced = map.set(self.recovery.unfenced);
        c.departed = map.set(self.departed);
        c.fenced = map.set(self.fenced);
        c.fence_asked = map.set(self.fence_asked);
        c.recovery.expected = remap(&self.recovery.expected);
        c.recovery.received = remap(&self.recovery.received);
        c.recovery.rebuilt = map.set(self.recovery.rebuilt);
        for h in c.history.iter_mut() {
            h.lost = map.set(h.lost);
        }
        c.early_cancels = self
            .early_cancels
            .iter()
            .map(|((f, res), s)| ((n(*f), r(res)), *s))
            .collect();
        c.future = self
            .future
            .iter()
            .map(|(f, m)| (n(*f), map.msg(m)))
            .collect();
        c
    }
}
