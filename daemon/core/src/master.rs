//! Master layer: per-resource granted, convert and wait queues, FIFO grants, BASTs, versions.

use std::collections::VecDeque;

use crate::*;

/// A granted lock on the master.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Granted {
    pub node: NodeId,
    pub mode: LockMode,
    pub seq: u64,
    pub since_ms: u64,
    pub bast_sent: bool,
}

/// A convert or wait queue entry on the master.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Pending {
    pub node: NodeId,
    pub mode: LockMode,
    pub seq: u64,
    pub since_ms: u64,
}

/// Master-side state of one resource.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct MasterRes {
    pub version: Version,
    pub granted: Vec<Granted>,
    pub converting: VecDeque<Pending>,
    pub waiting: VecDeque<Pending>,
}

impl MasterRes {
    pub fn dump(&self, resource: ResourceId, master: NodeId) -> ResourceDump {
        let held = |node: NodeId| self.granted.iter().find(|g| g.node == node).map(|g| g.mode);
        ResourceDump {
            resource,
            master,
            version: self.version,
            granted: self
                .granted
                .iter()
                .map(|g| QueueEntry {
                    node: g.node,
                    seq: g.seq,
                    mode: g.mode,
                    held: None,
                    since_ms: g.since_ms,
                })
                .collect(),
            converting: self
                .converting
                .iter()
                .map(|p| QueueEntry {
                    node: p.node,
                    seq: p.seq,
                    mode: p.mode,
                    held: held(p.node),
                    since_ms: p.since_ms,
                })
                .collect(),
            waiting: self
                .waiting
                .iter()
                .map(|p| QueueEntry {
                    node: p.node,
                    seq: p.seq,
                    mode: p.mode,
                    held: None,
                    since_ms: p.since_ms,
                })
                .collect(),
        }
    }
}
