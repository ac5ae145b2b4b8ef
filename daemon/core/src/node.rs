//! Node layer: this node's cluster lock per resource, local holders and waiters, caching,
//! BAST handling and cache invalidation.

use std::collections::VecDeque;

use crate::*;

/// A kernel request waiting locally.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Waiter {
    pub req_id: ReqId,
    pub mode: LockMode,
    pub since_ms: u64,
    pub noqueue: bool,
    /// A conversion of a held request (it also appears in `holders`).
    pub convert: bool,
}

/// The one node -> master message in flight for a resource (stop-and-wait).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Outstanding {
    Lock {
        seq: u64,
        mode: LockMode,
        for_req: Option<ReqId>,
        cancelled: bool,
    },
    Release {
        seq: u64,
    },
}

/// Node-side state of one resource.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct LocalRes {
    pub held: Option<LockMode>,
    pub version: Option<Version>,
    pub holders: Vec<(ReqId, LockMode)>,
    pub waiters: VecDeque<Waiter>,
    pub outstanding: Option<Outstanding>,
    pub bast: bool,
}

impl LocalRes {
    pub fn dump(&self, resource: ResourceId, master: Option<NodeId>) -> LocalDump {
        LocalDump {
            resource,
            master,
            held: self.held,
            version: self.version,
            holders: self.holders.clone(),
            waiting: self
                .waiters
                .iter()
                .map(|w| (w.req_id, w.mode, w.since_ms))
                .collect(),
            bast_pending: self.bast,
        }
    }
}

/// Where a kernel request stands.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ReqState {
    pub resource: ResourceId,
    /// Granted mode, if granted (a converting request keeps its old mode here).
    pub granted: Option<LockMode>,
    /// Waiting (first grant or conversion).
    pub waiting: bool,
}

/// Recovery bookkeeping for the current epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Recovery {
    /// Removed members whose fence is not yet confirmed.
    pub unfenced: NodeSet,
    /// `RecoverDone` counts announced by each member.
    pub expected: std::collections::BTreeMap<NodeId, u32>,
    /// `Recover` messages received from each member.
    pub received: std::collections::BTreeMap<NodeId, u32>,
    /// Members whose `RebuildDone` arrived.
    pub rebuilt: NodeSet,
    /// This node sent its `RecoverDone`s.
    pub reported: bool,
    /// This node sent its `RebuildDone`s (its master tables are complete).
    pub master_ready: bool,
}
