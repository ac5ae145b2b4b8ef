//! [`Core`]: the event loop body. Dispatches events to the node, master and recovery layers.

use std::collections::BTreeMap;

use crate::master::MasterRes;
use crate::node::{LocalRes, ReqState};
use crate::*;

/// The lock core of one node. See the crate docs.
///
/// `Clone + Eq + Hash` so that the stateright model can keep cores in its states.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Core {
    pub(crate) cfg: Config,
    pub(crate) epoch: Epoch,
    pub(crate) members: NodeSet,
    pub(crate) phase: Phase,
    /// Node layer: this node's view of each resource it uses.
    pub(crate) local: BTreeMap<ResourceId, LocalRes>,
    /// Node layer: every outstanding kernel request.
    pub(crate) reqs: BTreeMap<ReqId, ReqState>,
    /// Master layer: resources this node masters.
    pub(crate) master: BTreeMap<ResourceId, MasterRes>,
    /// Next sequence number for a node -> master message.
    pub(crate) next_seq: u64,
    pub(crate) recovery: crate::node::Recovery,
    pub(crate) history: Vec<RecoveryRecord>,
    pub(crate) future: Vec<(NodeId, PeerMsg)>,
}

impl Core {
    /// A core for `cfg`. Panics only on a programming error in `cfg` (node id out of range or
    /// not in `cluster`, members outside `cluster`); the daemon validates its TOML first.
    pub fn new(cfg: Config) -> Core {
        assert!(
            (cfg.node as usize) < NODES_MAX,
            "node id {} out of range",
            cfg.node
        );
        assert!(
            cfg.cluster.contains(cfg.node),
            "node {} not in the cluster",
            cfg.node
        );
        assert!(
            cfg.members.is_subset(cfg.cluster),
            "initial members outside the cluster"
        );
        let phase = if cfg.members.contains(cfg.node) && quorate(cfg.members, cfg.cluster) {
            Phase::Normal
        } else {
            Phase::Stopped
        };
        Core {
            epoch: cfg.epoch,
            members: cfg.members,
            phase,
            local: BTreeMap::new(),
            reqs: BTreeMap::new(),
            master: BTreeMap::new(),
            next_seq: 1,
            recovery: Default::default(),
            history: Vec::new(),
            future: Vec::new(),
            cfg,
        }
    }

    /// Feeds one event at time `now_ms` and appends the resulting actions to `out`, to be
    /// carried out in order. On `Err`, the event was ignored: nothing changed and nothing was
    /// appended. The core never panics on any event sequence (invariant checks aside).
    pub fn handle(&mut self, now_ms: u64, ev: Event, out: &mut Vec<Action>) -> Result<(), Reject> {
        let _ = (now_ms, ev, out);
        Err(Reject::Unexpected("lock core logic not implemented yet"))
    }

    /// Checks every internal invariant (granted modes pairwise compatible on each master,
    /// local holders compatible and covered by the node's lock, queue bounds, ...). The tests
    /// and the model call this after every step; `handle` calls it in debug builds.
    pub fn check_invariants(&self) -> Result<(), String> {
        Ok(())
    }

    // ----- introspection -----

    /// This node's id.
    pub fn node(&self) -> NodeId {
        self.cfg.node
    }
    /// Current membership epoch.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }
    /// Current live members.
    pub fn members(&self) -> NodeSet {
        self.members
    }
    /// Recovery phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }
    /// Whether lock traffic is frozen (recovering or stopped).
    pub fn recovering(&self) -> bool {
        self.phase != Phase::Normal
    }
    /// Finished and running recoveries, oldest first (at most [`RECOVERY_HISTORY_MAX`]).
    pub fn recovery_history(&self) -> &[RecoveryRecord] {
        &self.history
    }
    /// The master of `resource` in the current membership.
    pub fn master_of(&self, resource: &ResourceId) -> Option<NodeId> {
        master_of(self.members, resource)
    }
    /// Queues of every resource this node masters, in resource order.
    pub fn dump_master(&self) -> Vec<ResourceDump> {
        self.master
            .iter()
            .map(|(r, m)| m.dump(*r, self.cfg.node))
            .collect()
    }
    /// This node's own view of every resource it uses, in resource order.
    pub fn dump_local(&self) -> Vec<LocalDump> {
        self.local
            .iter()
            .map(|(r, l)| l.dump(*r, self.master_of(r)))
            .collect()
    }
}

/// Whether `members` is a strict majority of `cluster`.
pub(crate) fn quorate(members: NodeSet, cluster: NodeSet) -> bool {
    let live = members.minus(members.minus(cluster)).len();
    2 * live > cluster.len()
}
