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
    /// A timeout timer is armed for it.
    pub timer: bool,
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
        /// It gave up a write mode: the ack's version is this node's (newest) data.
        wrote: bool,
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
    /// This node sent its `RebuildDone`s (its master tables are complete).
    pub master_ready: bool,
}

use crate::engine::Core;
use crate::modes::{covers, gives_up_write, sup};

/// `req_id` no longer waits: it leaves the request table unless the kernel still holds it (a
/// denied or abandoned conversion keeps its old mode). Returns its resource.
pub(crate) fn stop_waiting(
    reqs: &mut std::collections::BTreeMap<ReqId, ReqState>,
    req_id: ReqId,
) -> ResourceId {
    let st = reqs.get_mut(&req_id).expect("a waiting request is known");
    debug_assert!(st.waiting);
    st.waiting = false;
    let resource = st.resource;
    if st.granted.is_none() {
        reqs.remove(&req_id);
    }
    resource
}

/// `CACHE_INVAL` for `resource`, or `None` for `AG` resources (metadata buffers, no page
/// cache: the AG buffers are re-read under the lock by XFS itself).
pub(crate) fn cache_inval(resource: &ResourceId) -> Option<KernelMsg> {
    match resource.kind {
        ResourceType::Inode => Some(KernelMsg::CacheInval {
            volume: resource.volume,
            ino: resource.a,
            offset: 0,
            len: 0,
        }),
        ResourceType::Extent => Some(KernelMsg::CacheInval {
            volume: resource.volume,
            ino: resource.a,
            offset: resource.b,
            len: mxfs_proto::EXTENT_CHUNK_BYTES,
        }),
        ResourceType::Ag => None,
    }
}

impl Core {
    pub(crate) fn kdeny(out: &mut Vec<Action>, req_id: ReqId, resource: ResourceId, errno: i32) {
        out.push(Action::Kernel(KernelMsg::Deny {
            req_id,
            resource,
            errno,
        }));
    }

    /// `Event::KernelRequest`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn kernel_request(
        &mut self,
        now_ms: u64,
        req_id: ReqId,
        resource: ResourceId,
        mode: LockMode,
        flags: LockFlags,
        timeout_ms: u32,
        out: &mut Vec<Action>,
    ) -> Result<(), Reject> {
        if !flags.is_valid() {
            return Err(Reject::InvalidFlags(flags.0));
        }
        if !resource.is_well_formed() {
            return Err(Reject::MalformedResource);
        }
        let convert = flags.contains(LockFlags::CONVERT);
        let noqueue = flags.contains(LockFlags::NOQUEUE);
        let timer = flags.contains(LockFlags::TIMEOUT_MS) && !noqueue;
        match self.reqs.get(&req_id) {
            Some(st) if st.waiting || !convert => return Err(Reject::DuplicateRequest(req_id)),
            Some(st) if st.resource != resource => {
                Self::kdeny(out, req_id, resource, EINVAL);
                return Ok(());
            }
            None if convert => {
                Self::kdeny(out, req_id, resource, EINVAL);
                return Ok(());
            }
            _ => {}
        }
        if self.phase == Phase::Stopped {
            Self::kdeny(out, req_id, resource, ENOLCK);
            return Ok(());
        }
        if !convert && self.reqs.len() >= REQUESTS_MAX {
            Self::kdeny(out, req_id, resource, ENOMEM);
            return Ok(());
        }
        if !self.local.contains_key(&resource) && !self.make_room(out) {
            Self::kdeny(out, req_id, resource, ENOMEM);
            return Ok(());
        }
        let normal = self.phase == Phase::Normal;
        let l = self.local.entry(resource).or_default();
        // Fast path: a cached lock that covers the request, nobody queued, no BAST.
        if !convert
            && normal
            && l.waiters.is_empty()
            && !l.bast
            && l.held.is_some_and(|h| covers(h, mode))
            && l.holders.iter().all(|(_, m)| m.compatible(mode))
        {
            l.holders.push((req_id, mode));
            self.reqs.insert(
                req_id,
                ReqState {
                    resource,
                    granted: Some(mode),
                    waiting: false,
                },
            );
            out.push(Action::Kernel(KernelMsg::Grant {
                req_id,
                resource,
                mode,
            }));
            return Ok(());
        }
        if l.waiters.len() >= WAITERS_PER_RESOURCE_MAX {
            Self::kdeny(out, req_id, resource, EAGAIN);
            return Ok(());
        }
        let w = Waiter {
            req_id,
            mode,
            since_ms: now_ms,
            noqueue,
            convert,
            timer,
        };
        if convert {
            // Conversions go before first requests, FIFO among themselves.
            let at = l
                .waiters
                .iter()
                .position(|w| !w.convert)
                .unwrap_or(l.waiters.len());
            l.waiters.insert(at, w);
            self.reqs.get_mut(&req_id).expect("checked above").waiting = true;
        } else {
            l.waiters.push_back(w);
            self.reqs.insert(
                req_id,
                ReqState {
                    resource,
                    granted: None,
                    waiting: true,
                },
            );
        }
        if timer {
            let at_ms = now_ms.saturating_add(u64::from(timeout_ms).min(REQUEST_TIMEOUT_MAX_MS));
            out.push(Action::SetTimer {
                id: TimerId::Request(req_id),
                at_ms,
            });
        }
        self.pump(&resource, out);
        Ok(())
    }

    /// Evicts one idle resource entry (no lock, no request, nothing in flight) when the table
    /// is full, invalidating its pages since its version is forgotten. False if none.
    fn make_room(&mut self, out: &mut Vec<Action>) -> bool {
        if self.local.len() < RESOURCES_MAX {
            return true;
        }
        let idle = self
            .local
            .iter()
            .find(|(_, l)| l.is_idle())
            .map(|(r, _)| *r);
        match idle {
            Some(r) => {
                self.local.remove(&r);
                out.extend(cache_inval(&r).map(Action::Kernel));
                true
            }
            None => false,
        }
    }

    /// `Event::KernelRelease` (and `KernelCancel` of a granted request).
    pub(crate) fn kernel_release(
        &mut self,
        req_id: ReqId,
        resource: Option<ResourceId>,
        out: &mut Vec<Action>,
    ) -> Result<(), Reject> {
        let st = self
            .reqs
            .get(&req_id)
            .ok_or(Reject::UnknownRequest(req_id))?;
        if resource.is_some_and(|r| r != st.resource) {
            return Err(Reject::ResourceMismatch(req_id));
        }
        if st.granted.is_none() {
            return Err(Reject::Unexpected(
                "release of a request that is not granted",
            ));
        }
        let st = self.reqs.remove(&req_id).expect("present");
        let l = self
            .local
            .get_mut(&st.resource)
            .expect("a granted request has a resource");
        l.holders.retain(|(id, _)| *id != req_id);
        if st.waiting {
            // Its conversion dies with it, silently: the kernel released the lock.
            if let Some(w) = remove_waiter(l, req_id) {
                if w.timer {
                    out.push(Action::CancelTimer {
                        id: TimerId::Request(req_id),
                    });
                }
            }
        }
        self.pump(&st.resource, out);
        Ok(())
    }

    /// `Event::KernelCancel`.
    pub(crate) fn kernel_cancel(
        &mut self,
        req_id: ReqId,
        out: &mut Vec<Action>,
    ) -> Result<(), Reject> {
        let st = self
            .reqs
            .get(&req_id)
            .ok_or(Reject::UnknownRequest(req_id))?;
        if st.granted.is_some() {
            return self.kernel_release(req_id, None, out);
        }
        self.abandon(req_id, None, out);
        Ok(())
    }

    /// `Event::Timer`.
    pub(crate) fn request_timeout(
        &mut self,
        req_id: ReqId,
        out: &mut Vec<Action>,
    ) -> Result<(), Reject> {
        match self.reqs.get(&req_id) {
            Some(st) if st.waiting => {
                self.abandon(req_id, Some(ETIMEDOUT), out);
                Ok(())
            }
            _ => Err(Reject::Stale("timer of a request no longer waiting")),
        }
    }

    /// Stops waiting for `req_id` (timeout or cancel): removes it from the local queue, denies
    /// it with `errno` if given, and withdraws the `Lock` that was sent for it at the master
    /// (even if other local waiters remain: they may need a weaker lock, and must not wait
    /// behind a request nobody wants; found by the proptest, see `tests/regressions.rs`).
    fn abandon(&mut self, req_id: ReqId, errno: Option<i32>, out: &mut Vec<Action>) {
        let resource = stop_waiting(&mut self.reqs, req_id);
        let l = self
            .local
            .get_mut(&resource)
            .expect("a waiting request has a resource");
        let w = remove_waiter(l, req_id).expect("a waiting request is queued");
        if w.timer && errno != Some(ETIMEDOUT) {
            out.push(Action::CancelTimer {
                id: TimerId::Request(req_id),
            });
        }
        if let Some(errno) = errno {
            Self::kdeny(out, req_id, resource, errno);
        }
        let mut cancel = None;
        if let Some(Outstanding::Lock {
            seq,
            for_req,
            cancelled,
            ..
        }) = &mut l.outstanding
        {
            if *for_req == Some(req_id) {
                *for_req = None;
                if !*cancelled {
                    *cancelled = true;
                    cancel = Some(*seq);
                }
            }
        }
        if let Some(seq) = cancel {
            self.send_master(&resource, PeerBody::Cancel { resource, seq }, out);
        }
        self.pump(&resource, out);
    }

    /// Sends `body` about `resource` to its master (self-addressed messages loop back).
    pub(crate) fn send_master(
        &mut self,
        resource: &ResourceId,
        body: PeerBody,
        out: &mut Vec<Action>,
    ) {
        let master = master_of(self.members, resource).expect("normal phase has members");
        self.send(master, body, out);
    }

    fn next_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    /// Grants what can be granted locally, then starts the one master exchange the resource
    /// needs next (a lock, an up-conversion, or giving the lock up for a BAST).
    pub(crate) fn pump(&mut self, resource: &ResourceId, out: &mut Vec<Action>) {
        self.pump_with(resource, false, out);
    }

    /// [`Core::pump`]; `fresh_grant` lets the waiters a just-arrived grant was asked for be
    /// served even if a BAST is already pending (it may overtake the grant on the network).
    /// Without that, two nodes waiting for one lock can pass it back and forth forever, each
    /// giving it up on arrival (found by the model: see `tests/regressions.rs`).
    fn pump_with(&mut self, resource: &ResourceId, fresh_grant: bool, out: &mut Vec<Action>) {
        let normal = self.phase == Phase::Normal;
        let Some(l) = self.local.get_mut(resource) else {
            return;
        };
        if l.held.is_none() && l.outstanding.is_none() {
            // A BAST about a lock this node neither holds nor awaits is stale (it may arrive
            // after its lock was given up); keeping it would block the next request (found by
            // the proptest, see `tests/regressions.rs`).
            l.bast = false;
        }
        // 1. Local grants and try-lock denials, FIFO.
        while let Some(w) = l.waiters.front() {
            let others_ok = l.others_compatible(w.req_id, w.mode);
            let covered = l.held.is_some_and(|h| covers(h, w.mode));
            // A BAST stops new local holders (so the remote waiter is not starved), not
            // conversions of existing ones, nor the waiters a fresh grant was asked for.
            if normal && others_ok && covered && (!l.bast || fresh_grant || w.convert) {
                let w = l.waiters.pop_front().expect("front exists");
                if w.convert {
                    let h = l
                        .holders
                        .iter_mut()
                        .find(|(id, _)| *id == w.req_id)
                        .expect("holder");
                    h.1 = w.mode;
                } else {
                    l.holders.push((w.req_id, w.mode));
                }
                let st = self
                    .reqs
                    .get_mut(&w.req_id)
                    .expect("queued request is known");
                st.granted = Some(w.mode);
                st.waiting = false;
                if w.timer {
                    out.push(Action::CancelTimer {
                        id: TimerId::Request(w.req_id),
                    });
                }
                out.push(Action::Kernel(KernelMsg::Grant {
                    req_id: w.req_id,
                    resource: *resource,
                    mode: w.mode,
                }));
                continue;
            }
            if w.noqueue && !(normal && others_ok && l.outstanding.is_none() && !l.bast) {
                let w = l.waiters.pop_front().expect("front exists");
                stop_waiting(&mut self.reqs, w.req_id);
                Self::kdeny(out, w.req_id, *resource, EAGAIN);
                continue;
            }
            break;
        }
        // A try-lock behind a blocked head cannot be granted now: deny it at once.
        let mut i = 1;
        while i < l.waiters.len() {
            if !l.waiters[i].noqueue {
                i += 1;
                continue;
            }
            let w = l.waiters.remove(i).expect("in range");
            stop_waiting(&mut self.reqs, w.req_id);
            Self::kdeny(out, w.req_id, *resource, EAGAIN);
        }
        if !normal || l.outstanding.is_some() {
            return;
        }
        // 2. The head waiter needs the master.
        if let Some(w) = l.waiters.front() {
            // A holder's up-conversion goes to the master even with a BAST pending: the
            // holder cannot give the lock up while it waits, and the master serves converts
            // before waiters (found by the model: see `tests/regressions.rs`).
            if l.others_compatible(w.req_id, w.mode) && (!l.bast || w.convert) {
                let (req_id, mode, noqueue) = (w.req_id, w.mode, w.noqueue);
                let seq = self.next_seq;
                self.next_seq += 1;
                let body = match l.held {
                    // An unused cached lock is given up before asking for a stronger one, so
                    // two nodes upgrading cached locks cannot deadlock in the convert queue.
                    Some(h) if l.holders.is_empty() && !noqueue => {
                        l.give_up(h, None, seq);
                        PeerBody::Release {
                            resource: *resource,
                            to: None,
                            seq,
                        }
                    }
                    held => {
                        let want = held.map_or(mode, |h| sup(h, mode));
                        l.outstanding = Some(Outstanding::Lock {
                            seq,
                            mode: want,
                            for_req: Some(req_id),
                            cancelled: false,
                        });
                        PeerBody::Lock {
                            resource: *resource,
                            mode: want,
                            noqueue,
                            seq,
                        }
                    }
                };
                self.send_master(resource, body, out);
                return;
            }
        }
        // 3. A BAST asked for the lock: give up what the holders do not need.
        if l.bast {
            if let Some(h) = l.held {
                let needed = l.holders.iter().map(|(_, m)| *m).reduce(sup);
                if needed != Some(h) {
                    let seq = self.next_seq();
                    let l = self.local.get_mut(resource).expect("present");
                    l.give_up(h, needed, seq);
                    self.send_master(
                        resource,
                        PeerBody::Release {
                            resource: *resource,
                            to: needed,
                            seq,
                        },
                        out,
                    );
                }
            }
        }
    }

    /// A node-layer message from `resource`'s master.
    pub(crate) fn node_msg(&mut self, body: PeerBody, out: &mut Vec<Action>) -> Result<(), Reject> {
        match body {
            PeerBody::Grant {
                resource,
                mode,
                version,
                seq,
            } => {
                let l = self.lock_answer(&resource, seq)?;
                l.outstanding = None;
                l.held = Some(mode);
                if l.version != Some(version) {
                    l.version = Some(version);
                    out.extend(cache_inval(&resource).map(Action::Kernel));
                }
                self.pump_with(&resource, true, out);
                Ok(())
            }
            PeerBody::Deny {
                resource,
                errno,
                seq,
            } => {
                let l = self.lock_answer(&resource, seq)?;
                let Some(Outstanding::Lock { for_req, .. }) = l.outstanding.take() else {
                    unreachable!("lock_answer checked")
                };
                match for_req {
                    Some(req_id) if self.reqs.get(&req_id).is_some_and(|st| st.waiting) => {
                        self.abandon(req_id, Some(errno), out)
                    }
                    _ => self.pump(&resource, out),
                }
                Ok(())
            }
            PeerBody::ReleaseAck {
                resource,
                version,
                seq,
            } => {
                let l = self
                    .local
                    .get_mut(&resource)
                    .ok_or(Reject::Unexpected("ack for unknown resource"))?;
                match l.outstanding {
                    Some(Outstanding::Release { seq: s, wrote }) if s == seq => {
                        l.outstanding = None;
                        if wrote {
                            l.version = Some(version);
                        }
                    }
                    _ => return Err(Reject::Unexpected("release ack matches no release")),
                }
                self.pump(&resource, out);
                Ok(())
            }
            PeerBody::Bast { resource, .. } => {
                let l = self
                    .local
                    .get_mut(&resource)
                    .ok_or(Reject::Stale("bast for unknown resource"))?;
                let pending_lock = matches!(l.outstanding, Some(Outstanding::Lock { .. }));
                if l.held.is_none() && !pending_lock {
                    return Err(Reject::Stale("bast for a lock not held"));
                }
                l.bast = true;
                self.pump(&resource, out);
                Ok(())
            }
            _ => Err(Reject::Unexpected("not a node-layer message")),
        }
    }

    fn lock_answer(&mut self, resource: &ResourceId, seq: u64) -> Result<&mut LocalRes, Reject> {
        let l = self
            .local
            .get_mut(resource)
            .ok_or(Reject::Unexpected("answer for unknown resource"))?;
        match l.outstanding {
            Some(Outstanding::Lock { seq: s, .. }) if s == seq => Ok(l),
            _ => Err(Reject::Unexpected("answer matches no outstanding lock")),
        }
    }
}

fn remove_waiter(l: &mut LocalRes, req_id: ReqId) -> Option<Waiter> {
    let at = l.waiters.iter().position(|w| w.req_id == req_id)?;
    l.waiters.remove(at)
}

impl LocalRes {
    /// Whether `mode` is compatible with every local holder other than `req_id`.
    fn others_compatible(&self, req_id: ReqId, mode: LockMode) -> bool {
        self.holders
            .iter()
            .all(|(id, m)| *id == req_id || m.compatible(mode))
    }

    /// Nothing held, waited for or in flight: the entry only remembers a version.
    pub(crate) fn is_idle(&self) -> bool {
        self.held.is_none()
            && self.holders.is_empty()
            && self.waiters.is_empty()
            && self.outstanding.is_none()
    }

    /// Records giving up (or down-converting) the cluster lock from `from` to `to`.
    fn give_up(&mut self, from: LockMode, to: Option<LockMode>, seq: u64) {
        debug_assert!(to.is_none_or(|t| covers(from, t)));
        self.held = to;
        self.bast = false;
        self.outstanding = Some(Outstanding::Release {
            seq,
            wrote: gives_up_write(from, to),
        });
    }
}

impl LocalRes {
    /// Checks the node-side invariants of this resource against the request table.
    pub(crate) fn check(
        &self,
        r: &ResourceId,
        reqs: &std::collections::BTreeMap<ReqId, ReqState>,
    ) -> Result<(), String> {
        for (i, (a, am)) in self.holders.iter().enumerate() {
            for (b, bm) in &self.holders[i + 1..] {
                if !am.compatible(*bm) {
                    return Err(format!(
                        "{r:?}: local holders {a} {am:?} and {b} {bm:?} incompatible"
                    ));
                }
            }
            match self.held {
                Some(h) if covers(h, *am) => {}
                _ => {
                    return Err(format!(
                        "{r:?}: holder {a} {am:?} not covered by node lock {:?}",
                        self.held
                    ))
                }
            }
            if reqs
                .get(a)
                .is_none_or(|st| st.granted != Some(*am) || st.resource != *r)
            {
                return Err(format!(
                    "{r:?}: holder {a} disagrees with the request table"
                ));
            }
        }
        for w in &self.waiters {
            if reqs
                .get(&w.req_id)
                .is_none_or(|st| !st.waiting || st.resource != *r)
            {
                return Err(format!(
                    "{r:?}: waiter {} disagrees with the request table",
                    w.req_id
                ));
            }
        }
        if self.waiters.len() > WAITERS_PER_RESOURCE_MAX {
            return Err(format!(
                "{r:?}: local waiters over WAITERS_PER_RESOURCE_MAX"
            ));
        }
        Ok(())
    }
}
