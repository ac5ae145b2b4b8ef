//! Membership: which nodes are alive, agreed as `(epoch, members)` installs for the lock core.
//!
//! [`Membership`] is the provider interface; [`HeartbeatMembership`] is the built-in provider.
//! A corosync provider (CPG configuration changes + votequorum) would implement the same trait:
//! ignore `on_heartbeat`, and return CPG's agreed view from `tick` as an [`Install`].
//!
//! The heartbeat provider is sans-IO (time comes in as `now_ms`):
//! - a node's *view* is itself plus every peer heard within `heartbeat_timeout_ms` (a peer that
//!   restarted, i.e. changed incarnation while a member, stays out of the view until an epoch
//!   without it is installed, so its old locks are purged first);
//! - the *coordinator* is the lowest id in the view among nodes that already have a membership
//!   (a freshly started node defers to established ones). When its view differs from the
//!   installed members and has been stable for one heartbeat interval, it installs
//!   `(highest epoch seen + 1, view)`;
//! - every node adopts an install it hears in a heartbeat whose epoch is above its own, from a
//!   sender that is a member of it. Installs thus spread with heartbeats, and epochs only grow.
//!
//! Quorum is not decided here: the core grants only in a strict majority of the cluster.

use crate::frame::Heartbeat;
use mxfs_core::{Epoch, NodeId, NodeSet};
use std::collections::BTreeMap;

/// A membership the lock core should install.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Install {
    /// New epoch, above every epoch installed so far.
    pub epoch: Epoch,
    /// Live members.
    pub members: NodeSet,
}

/// What `mxfsctl status` shows about a peer.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PeerView {
    /// Node id.
    pub id: NodeId,
    /// Milliseconds since the last heartbeat, if any was heard.
    pub last_heard_ms_ago: Option<u64>,
    /// Whether it is in this node's view.
    pub alive: bool,
    /// The epoch it reported.
    pub epoch: Epoch,
    /// It announced that it fenced itself (kept out until restarted).
    #[serde(default)]
    pub fenced: bool,
}

/// A membership provider.
pub trait Membership: Send {
    /// A heartbeat arrived from `from`. May return an install to adopt.
    fn on_heartbeat(&mut self, from: NodeId, hb: &Heartbeat, now_ms: u64) -> Option<Install>;
    /// `from` announced a clean shutdown.
    fn on_leave(&mut self, from: NodeId, now_ms: u64);
    /// Periodic evaluation (every heartbeat interval). May return an install.
    fn tick(&mut self, now_ms: u64) -> Option<Install>;
    /// The heartbeat this node sends now.
    fn heartbeat(&self, now_ms: u64) -> Heartbeat;
    /// The installed membership.
    fn installed(&self) -> Install;
    /// Per-peer state for status output.
    fn peers(&self, now_ms: u64) -> Vec<PeerView>;
    /// The core told this node to fence itself: it stops taking part (announcing it, so the
    /// others keep it out) until the process is restarted with fresh state.
    fn self_fence(&mut self);
    /// Recovery has not finished for a long time (a message was lost, e.g. across a peer's
    /// reconnect): if this node coordinates, install the same view again in a new epoch, which
    /// restarts recovery everywhere.
    fn reinstall(&mut self, now_ms: u64) -> Option<Install>;
}

#[derive(Clone, Debug, Default)]
struct Peer {
    last_heard_ms: Option<u64>,
    incarnation: Option<u64>,
    epoch: Epoch,
    /// Restarted while a member: kept out of the view until an epoch without it.
    purge: bool,
    /// It announced that it fenced itself.
    fenced: bool,
}

/// Built-in heartbeat membership.
pub struct HeartbeatMembership {
    me: NodeId,
    cluster: NodeSet,
    incarnation: u64,
    interval_ms: u64,
    timeout_ms: u64,
    started_ms: u64,
    peers: BTreeMap<NodeId, Peer>,
    installed: Install,
    max_epoch_seen: Epoch,
    last_view: NodeSet,
    view_since_ms: u64,
    fenced: bool,
}

impl HeartbeatMembership {
    /// A provider for node `me` of `cluster`, started at `now_ms`.
    pub fn new(
        me: NodeId,
        cluster: NodeSet,
        incarnation: u64,
        interval_ms: u64,
        timeout_ms: u64,
        now_ms: u64,
    ) -> HeartbeatMembership {
        assert!(cluster.contains(me), "node {me} not in its own cluster");
        assert!(
            timeout_ms > interval_ms,
            "heartbeat timeout must exceed the interval"
        );
        let peers = cluster
            .iter()
            .filter(|p| *p != me)
            .map(|p| (p, Peer::default()))
            .collect();
        HeartbeatMembership {
            me,
            cluster,
            incarnation,
            interval_ms,
            timeout_ms,
            started_ms: now_ms,
            peers,
            installed: Install {
                epoch: 0,
                members: NodeSet::EMPTY,
            },
            max_epoch_seen: 0,
            last_view: NodeSet::EMPTY.with(me),
            view_since_ms: now_ms,
            fenced: false,
        }
    }

    fn alive(&self, p: &Peer, now_ms: u64) -> bool {
        !p.purge
            && !p.fenced
            && p.last_heard_ms
                .is_some_and(|t| now_ms.saturating_sub(t) < self.timeout_ms)
    }

    /// Itself plus every peer heard recently.
    pub fn view(&self, now_ms: u64) -> NodeSet {
        let mut v = NodeSet::EMPTY.with(self.me);
        for (id, p) in &self.peers {
            if self.alive(p, now_ms) {
                v = v.with(*id);
            }
        }
        v
    }

    fn is_coordinator(&self, view: NodeSet, now_ms: u64) -> bool {
        let established: Vec<NodeId> = view
            .iter()
            .filter(|n| {
                if *n == self.me {
                    self.installed.epoch > 0
                } else {
                    self.peers
                        .get(n)
                        .is_some_and(|p| p.epoch > 0 && self.alive(p, now_ms))
                }
            })
            .collect();
        let candidates: Vec<NodeId> = if established.is_empty() {
            view.iter().collect()
        } else {
            established
        };
        candidates.first() == Some(&self.me)
    }

    fn adopt(&mut self, i: Install) -> Install {
        debug_assert!(i.epoch > self.installed.epoch);
        self.installed = i;
        self.max_epoch_seen = self.max_epoch_seen.max(i.epoch);
        for (id, p) in self.peers.iter_mut() {
            if !i.members.contains(*id) {
                p.purge = false;
            }
        }
        i
    }
}

impl Membership for HeartbeatMembership {
    fn on_heartbeat(&mut self, from: NodeId, hb: &Heartbeat, now_ms: u64) -> Option<Install> {
        let member = self.installed.members.contains(from);
        let p = self.peers.get_mut(&from)?;
        if let Some(old) = p.incarnation {
            if old != hb.incarnation && member {
                tracing::warn!(
                    node = from,
                    "peer restarted; its old locks must be purged first"
                );
                p.purge = true;
            }
        }
        p.incarnation = Some(hb.incarnation);
        p.last_heard_ms = Some(now_ms);
        p.fenced = hb.fenced;
        p.epoch = hb.epoch;
        self.max_epoch_seen = self.max_epoch_seen.max(hb.epoch);
        let members = NodeSet(hb.members);
        let restarted = p.purge;
        // An install that leaves this node out is adopted only by a current member (it learns
        // it was excluded and stops); a node outside the membership waits to be included.
        let concerns_me = members.contains(self.me) || self.installed.members.contains(self.me);
        if !self.fenced
            && hb.epoch > self.installed.epoch
            && members.contains(from)
            && members.is_subset(self.cluster)
            && concerns_me
            && !restarted
        {
            return Some(self.adopt(Install {
                epoch: hb.epoch,
                members,
            }));
        }
        None
    }

    fn on_leave(&mut self, from: NodeId, _now_ms: u64) {
        if let Some(p) = self.peers.get_mut(&from) {
            p.last_heard_ms = None;
        }
    }

    fn tick(&mut self, now_ms: u64) -> Option<Install> {
        let view = self.view(now_ms);
        if view != self.last_view {
            self.last_view = view;
            self.view_since_ms = now_ms;
        }
        if self.fenced || view == self.installed.members || !self.is_coordinator(view, now_ms) {
            return None;
        }
        // A node that never had a membership does not start one in a minority: it would only
        // fence itself. It waits for a majority to appear.
        if self.installed.epoch == 0 && 2 * view.len() <= self.cluster.len() {
            return None;
        }
        let stable = now_ms.saturating_sub(self.view_since_ms) >= self.interval_ms;
        let booting = self.installed.epoch == 0
            && view != self.cluster
            && now_ms.saturating_sub(self.started_ms) < self.timeout_ms;
        if !stable || booting {
            return None;
        }
        let epoch = self.max_epoch_seen.max(self.installed.epoch) + 1;
        Some(self.adopt(Install {
            epoch,
            members: view,
        }))
    }

    fn heartbeat(&self, now_ms: u64) -> Heartbeat {
        Heartbeat {
            incarnation: self.incarnation,
            epoch: self.installed.epoch,
            members: self.installed.members.0,
            view: self.view(now_ms).0,
            fenced: self.fenced,
        }
    }

    fn self_fence(&mut self) {
        self.fenced = true;
    }

    fn reinstall(&mut self, now_ms: u64) -> Option<Install> {
        let view = self.view(now_ms);
        if self.fenced || self.installed.epoch == 0 || !self.is_coordinator(view, now_ms) {
            return None;
        }
        if 2 * view.len() <= self.cluster.len() {
            return None;
        }
        let epoch = self.max_epoch_seen.max(self.installed.epoch) + 1;
        Some(self.adopt(Install {
            epoch,
            members: view,
        }))
    }

    fn installed(&self) -> Install {
        self.installed
    }

    fn peers(&self, now_ms: u64) -> Vec<PeerView> {
        self.peers
            .iter()
            .map(|(id, p)| PeerView {
                id: *id,
                last_heard_ms_ago: p.last_heard_ms.map(|t| now_ms.saturating_sub(t)),
                alive: self.alive(p, now_ms),
                epoch: p.epoch,
                fenced: p.fenced,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const I: u64 = 50;
    const T: u64 = 200;

    fn three() -> Vec<HeartbeatMembership> {
        let c = NodeSet::EMPTY.with(1).with(2).with(3);
        (1..=3)
            .map(|n| HeartbeatMembership::new(n, c, 100 + n as u64, I, T, 0))
            .collect()
    }

    /// Every node heartbeats to every node in `links`, then ticks; returns installs.
    fn round(
        ms: &mut [HeartbeatMembership],
        now: u64,
        cut: Option<NodeId>,
    ) -> Vec<Option<Install>> {
        let hbs: Vec<(NodeId, Heartbeat)> = ms.iter().map(|m| (m.me, m.heartbeat(now))).collect();
        let mut out = vec![None; ms.len()];
        for (i, m) in ms.iter_mut().enumerate() {
            for (from, hb) in &hbs {
                if *from == m.me || cut == Some(*from) || cut == Some(m.me) {
                    continue;
                }
                if let Some(x) = m.on_heartbeat(*from, hb, now) {
                    out[i] = Some(x);
                }
            }
            if let Some(x) = m.tick(now) {
                out[i] = Some(x);
            }
        }
        out
    }

    #[test]
    fn boot_agrees_then_partition_splits_then_heals() {
        let mut ms = three();
        let all = NodeSet::EMPTY.with(1).with(2).with(3);
        let mut now = 0;
        for _ in 0..6 {
            now += I;
            round(&mut ms, now, None);
        }
        for m in &ms {
            assert_eq!(
                m.installed(),
                Install {
                    epoch: 1,
                    members: all
                },
                "node {}",
                m.me
            );
        }
        // Cut node 1 off: 2 and 3 install {2,3}; 1 installs {1}.
        for _ in 0..10 {
            now += I;
            round(&mut ms, now, Some(1));
        }
        assert_eq!(ms[0].installed().members, NodeSet::EMPTY.with(1));
        assert_eq!(ms[1].installed().members, NodeSet::EMPTY.with(2).with(3));
        assert_eq!(ms[1].installed(), ms[2].installed());
        assert!(ms[1].installed().epoch > 1);
        // Heal: everyone converges on one larger epoch with all three.
        for _ in 0..10 {
            now += I;
            round(&mut ms, now, None);
        }
        let e = ms[0].installed();
        assert_eq!(e.members, all);
        assert!(ms.iter().all(|m| m.installed() == e));
        assert!(e.epoch >= 3);
    }

    #[test]
    fn lone_fresh_node_waits_and_self_fenced_node_stays_out() {
        let mut ms = three();
        let mut now = 0;
        for _ in 0..10 {
            now += I;
            assert_eq!(
                ms[0].tick(now),
                None,
                "a lone fresh node must not install a minority"
            );
        }
        for _ in 0..6 {
            now += I;
            round(&mut ms, now, None);
        }
        assert_eq!(ms[0].installed().members.len(), 3);
        ms[0].self_fence();
        for _ in 0..10 {
            now += I;
            round(&mut ms, now, None);
        }
        let v: Vec<_> = ms.iter().map(|m| (m.installed(), m.view(now))).collect();
        assert_eq!(
            ms[1].installed().members,
            NodeSet::EMPTY.with(2).with(3),
            "{v:?}"
        );
        assert_eq!(ms[2].installed(), ms[1].installed());
        assert!(ms[0].heartbeat(now).fenced);
    }

    #[test]
    fn reinstall_bumps_the_epoch_everywhere() {
        let mut ms = three();
        let mut now = 0;
        for _ in 0..6 {
            now += I;
            round(&mut ms, now, None);
        }
        let before = ms[0].installed();
        assert_eq!(
            ms[1].reinstall(now),
            None,
            "only the coordinator reinstalls"
        );
        let i = ms[0].reinstall(now).expect("node 1 coordinates");
        assert_eq!(i.members, before.members);
        assert!(i.epoch > before.epoch);
        now += I;
        round(&mut ms, now, None);
        assert!(ms.iter().all(|m| m.installed() == i));
    }

    #[test]
    fn restarted_member_is_purged_before_rejoining() {
        let mut ms = three();
        let mut now = 0;
        for _ in 0..6 {
            now += I;
            round(&mut ms, now, None);
        }
        let c = ms[2].cluster;
        ms[2] = HeartbeatMembership::new(3, c, 999, I, T, now);
        let mut seen = Vec::new();
        for _ in 0..10 {
            now += I;
            if let Some(x) = round(&mut ms, now, None)[0] {
                seen.push(x.members);
            }
        }
        let without = NodeSet::EMPTY.with(1).with(2);
        assert_eq!(
            seen.first(),
            Some(&without),
            "installs seen by node 1: {seen:?}"
        );
        assert_eq!(ms[0].installed().members, without.with(3));
        assert_eq!(ms[2].installed(), ms[0].installed());
    }
}
