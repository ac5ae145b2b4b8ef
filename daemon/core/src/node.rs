//! Node layer: this node's cluster lock per resource (cached after the kernel releases it),
//! the kernel's holders and FIFO waiters, BAST handling and cache invalidation. Local grants
//! follow the rule of `grant.rs`.

use std::collections::{BTreeMap, VecDeque};

use crate::engine::Ctx;
use crate::grant::{self, covers, gives_up_write, NodeView};
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
    /// The data version this node's cache holds for the resource; `None` when unknown (never
    /// granted, or an invalidation is pending or failed): nothing is granted locally then.
    pub version: Option<Version>,
    /// A `CACHE_INVAL` was sent for a grant of this version; the grant waits for the
    /// driver's [`Event::CacheInvalDone`].
    pub inval: Option<Version>,
    pub holders: Vec<(ReqId, LockMode)>,
    pub waiters: VecDeque<Waiter>,
    pub outstanding: Option<Outstanding>,
    pub bast: bool,
    /// What the BASTs since the lock was last given up asked for: the supremum of their
    /// blocked modes, so a mode compatible with it is compatible with each of them.
    pub blocked: Option<LockMode>,
    /// Holders the kernel was sent a `LOCK_CALLBACK` for, with the mode it may keep, until
    /// the holder releases or converts. A holder is called again only to keep less.
    pub called: Vec<(ReqId, LockMode)>,
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

/// The node table: this node's view of each resource it uses and every outstanding kernel
/// request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct NodeTable {
    /// This node's view of each resource it uses.
    pub local: BTreeMap<ResourceId, LocalRes>,
    /// Every outstanding kernel request (waiting or granted).
    pub reqs: BTreeMap<ReqId, ReqState>,
    /// Next sequence number for a node -> master message.
    pub next_seq: u64,
    /// Size limits (from [`Config::limits`]).
    pub limits: Limits,
}

impl Default for NodeTable {
    fn default() -> NodeTable {
        NodeTable {
            local: BTreeMap::new(),
            reqs: BTreeMap::new(),
            next_seq: 1,
            limits: Limits::DEFAULT,
        }
    }
}

/// `CACHE_INVAL` for `resource`, or `None` for `AG` resources (metadata buffers, no page
/// cache: the AG buffers are re-read under the lock by XFS itself). A `VOLUME` resource
/// covers the whole volume: ino 0 (no XFS inode has that number), offset 0, length 0.
pub(crate) fn cache_inval(resource: &ResourceId) -> Option<KernelMsg> {
    match resource.kind {
        ResourceType::Inode => Some(KernelMsg::CacheInval {
            resource: *resource,
            volume: resource.volume,
            ino: resource.a,
            offset: 0,
            len: 0,
        }),
        ResourceType::Extent => Some(KernelMsg::CacheInval {
            resource: *resource,
            volume: resource.volume,
            ino: resource.a,
            offset: resource.b,
            len: mxfs_proto::EXTENT_CHUNK_BYTES,
        }),
        ResourceType::Ag => None,
        ResourceType::Volume => Some(KernelMsg::CacheInval {
            resource: *resource,
            volume: resource.volume,
            ino: 0,
            offset: 0,
            len: 0,
        }),
    }
}

/// What the kernel asked for in one `LOCK_REQ`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KernelAsk {
    pub req_id: ReqId,
    pub resource: ResourceId,
    pub mode: LockMode,
    pub flags: LockFlags,
    pub timeout_ms: u32,
}

impl NodeTable {
    /// `Event::KernelRequest`. `phase` is the recovery phase (nothing is granted unless it
    /// is `Normal`; everything is denied when `Stopped`).
    pub(crate) fn kernel_request(
        &mut self,
        ask: KernelAsk,
        phase: Phase,
        cx: &mut Ctx,
    ) -> Result<(), Reject> {
        let KernelAsk {
            req_id,
            resource,
            mode,
            flags,
            timeout_ms,
        } = ask;
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
                cx.deny(req_id, resource, EINVAL);
                return Ok(());
            }
            None if convert => {
                cx.deny(req_id, resource, EINVAL);
                return Ok(());
            }
            _ => {}
        }
        if phase == Phase::Stopped {
            cx.deny(req_id, resource, ENOLCK);
            return Ok(());
        }
        if !convert && self.reqs.len() >= self.limits.requests_max {
            cx.deny(req_id, resource, ENOMEM);
            return Ok(());
        }
        if !self.local.contains_key(&resource) && !self.make_room(cx) {
            cx.deny(req_id, resource, ENOMEM);
            return Ok(());
        }
        let normal = phase == Phase::Normal;
        let l = self.local.entry(resource).or_default();
        // Fast path: nothing queued and the local rule grants it from the cached lock.
        if !convert
            && l.waiters.is_empty()
            && grant::node_may_grant(
                l.view(normal, false),
                mode,
                l.others_compatible(req_id, mode),
                false,
            )
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
            cx.kernel(KernelMsg::Grant {
                req_id,
                resource,
                mode,
                version: l.version,
            });
            return Ok(());
        }
        if l.waiters.len() >= WAITERS_PER_RESOURCE_MAX {
            cx.deny(req_id, resource, EAGAIN);
            return Ok(());
        }
        let w = Waiter {
            req_id,
            mode,
            since_ms: cx.now_ms,
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
            let at_ms = cx
                .now_ms
                .saturating_add(u64::from(timeout_ms).min(REQUEST_TIMEOUT_MAX_MS));
            cx.out.push(Action::SetTimer {
                id: TimerId::Request(req_id),
                at_ms,
            });
        }
        self.pump(&resource, normal, cx);
        Ok(())
    }

    /// Evicts one idle resource entry (no lock, no request, nothing in flight) when the table
    /// is full, invalidating its pages since its version is forgotten. False if none.
    fn make_room(&mut self, cx: &mut Ctx) -> bool {
        if self.local.len() < self.limits.resources_max {
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
                if let Some(k) = cache_inval(&r) {
                    cx.kernel(k);
                }
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
        normal: bool,
        cx: &mut Ctx,
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
        l.called.retain(|(id, _)| *id != req_id);
        if st.waiting {
            // Its conversion dies with it, silently: the kernel released the lock. A `Lock`
            // sent for it is withdrawn, or it would block later requests at the master
            // (found by the proptest, see `tests/reference.rs`).
            if let Some(w) = l.remove_waiter(req_id) {
                if w.timer {
                    cx.cancel_timer(req_id);
                }
            }
            l.withdraw(req_id, &st.resource, cx);
        }
        self.pump(&st.resource, normal, cx);
        Ok(())
    }

    /// `Event::KernelCancel`.
    pub(crate) fn kernel_cancel(
        &mut self,
        req_id: ReqId,
        normal: bool,
        cx: &mut Ctx,
    ) -> Result<(), Reject> {
        let st = self
            .reqs
            .get(&req_id)
            .ok_or(Reject::UnknownRequest(req_id))?;
        if st.granted.is_some() {
            return self.kernel_release(req_id, None, normal, cx);
        }
        self.abandon(req_id, None, normal, cx);
        Ok(())
    }

    /// `Event::Timer`.
    pub(crate) fn request_timeout(
        &mut self,
        req_id: ReqId,
        normal: bool,
        cx: &mut Ctx,
    ) -> Result<(), Reject> {
        match self.reqs.get(&req_id) {
            Some(st) if st.waiting => {
                self.abandon(req_id, Some(ETIMEDOUT), normal, cx);
                Ok(())
            }
            _ => Err(Reject::Stale("timer of a request no longer waiting")),
        }
    }

    /// Stops waiting for `req_id` (timeout or cancel): removes it from the local queue, denies
    /// it with `errno` if given, and withdraws the `Lock` that was sent for it at the master
    /// (even if other local waiters remain: they may need a weaker lock, and must not wait
    /// behind a request nobody wants; found by the proptest, see `tests/regressions.rs`).
    fn abandon(&mut self, req_id: ReqId, errno: Option<i32>, normal: bool, cx: &mut Ctx) {
        let resource = stop_waiting(&mut self.reqs, req_id);
        let l = self
            .local
            .get_mut(&resource)
            .expect("a waiting request has a resource");
        let w = l
            .remove_waiter(req_id)
            .expect("a waiting request is queued");
        if w.timer && errno != Some(ETIMEDOUT) {
            cx.cancel_timer(req_id);
        }
        if let Some(errno) = errno {
            cx.deny(req_id, resource, errno);
        }
        l.withdraw(req_id, &resource, cx);
        self.pump(&resource, normal, cx);
    }

    /// Denies every waiting kernel request with `errno` (the node stopped granting).
    pub(crate) fn deny_all_waiters(&mut self, errno: i32, cx: &mut Ctx) {
        for (resource, l) in self.local.iter_mut() {
            deny_waiters(l, resource, &mut self.reqs, errno, cx);
        }
    }

    /// A new epoch: whatever was in flight belongs to the old one and is void; the new masters
    /// learn what this node holds from its `Recover` messages.
    pub(crate) fn void_in_flight(&mut self) {
        for l in self.local.values_mut() {
            l.outstanding = None;
            l.clear_bast();
        }
    }

    /// Every cluster lock this node holds (cached or used), in resource order.
    pub(crate) fn held(&self) -> Vec<(ResourceId, LockMode)> {
        self.local
            .iter()
            .filter_map(|(r, l)| l.held.map(|m| (*r, m)))
            .collect()
    }

    /// Pumps every resource (after a recovery).
    pub(crate) fn pump_all(&mut self, normal: bool, cx: &mut Ctx) {
        let resources: Vec<ResourceId> = self.local.keys().copied().collect();
        for r in resources {
            self.pump(&r, normal, cx);
        }
    }

    fn next_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    /// Grants what can be granted locally, then starts the one master exchange the resource
    /// needs next (a lock, an up-conversion, or giving the lock up for a BAST).
    pub(crate) fn pump(&mut self, resource: &ResourceId, normal: bool, cx: &mut Ctx) {
        self.pump_with(resource, normal, false, cx);
    }

    /// [`NodeTable::pump`]; `fresh_grant` lets the waiters a just-arrived grant was asked for
    /// be served even if a BAST is already pending (it may overtake the grant on the network).
    /// Without that, two nodes waiting for one lock can pass it back and forth forever, each
    /// giving it up on arrival (found by the model: see `tests/regressions.rs`).
    fn pump_with(&mut self, resource: &ResourceId, normal: bool, fresh_grant: bool, cx: &mut Ctx) {
        let Some(l) = self.local.get_mut(resource) else {
            return;
        };
        if l.held.is_none() && l.outstanding.is_none() {
            // A BAST about a lock this node neither holds nor awaits is stale (it may arrive
            // after its lock was given up); keeping it would block the next request (found by
            // the proptest, see `tests/regressions.rs`).
            l.clear_bast();
        }
        if l.inval.is_some() {
            // Nothing is granted, asked for or given up until the kernel answers the
            // invalidation.
            return;
        }
        let view = l.view(normal, fresh_grant);
        // 1. Local grants: any conversion the rule allows, wherever it stands (a conversion
        //    never waits behind another it does not conflict with), then first requests FIFO
        //    from the head (only once no conversion waits: conversions come first).
        while let Some(i) = l.waiters.iter().enumerate().position(|(i, w)| {
            (w.convert || i == 0)
                && grant::node_may_grant(
                    view,
                    w.mode,
                    l.others_compatible(w.req_id, w.mode),
                    w.convert,
                )
        }) {
            let w = l.waiters.remove(i).expect("in range");
            if w.convert {
                let h = l
                    .holders
                    .iter_mut()
                    .find(|(id, _)| *id == w.req_id)
                    .expect("holder");
                h.1 = w.mode;
                // A new mode: called back again if it still blocks.
                l.called.retain(|(id, _)| *id != w.req_id);
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
                cx.cancel_timer(w.req_id);
            }
            cx.kernel(KernelMsg::Grant {
                req_id: w.req_id,
                resource: *resource,
                mode: w.mode,
                version: l.version,
            });
        }
        // 2. Local conversions that block each other in a cycle never end: deny the newest.
        if let Some(req_id) = l.conversion_deadlock() {
            self.abandon(req_id, Some(EDEADLK), normal, cx);
            return;
        }
        // 3. Who asks the master next (if nothing is in flight): the first conversion the
        //    node's lock does not cover, else the head if it is a first request.
        //    (Computed once: nothing below changes the queue before step 6, since step 4
        //    returns after any denial.)
        let next_asker = l.asker();
        let asker = next_asker.filter(|_| normal && l.outstanding.is_none());
        // 4. A try-lock that cannot be granted now and does not ask the master now is denied
        //    at once (one that waits for its own answer from the master stays).
        let own = match &l.outstanding {
            Some(Outstanding::Lock { for_req, .. }) => *for_req,
            _ => None,
        };
        let in_flight = l.outstanding.is_some();
        let mut denied = false;
        let mut i = 0;
        while i < l.waiters.len() {
            let w = &l.waiters[i];
            let others_ok = l.others_compatible(w.req_id, w.mode);
            let may_ask =
                asker == Some(i) && grant::try_lock_may_proceed(view, others_ok, in_flight);
            if !w.noqueue || may_ask || own == Some(w.req_id) {
                i += 1;
                continue;
            }
            let w = l.waiters.remove(i).expect("in range");
            stop_waiting(&mut self.reqs, w.req_id);
            cx.deny(w.req_id, *resource, EAGAIN);
            denied = true;
        }
        if denied {
            // What waited behind a denied try-lock may be grantable now. Ends: each round
            // removes a waiter.
            self.pump_with(resource, normal, fresh_grant, cx);
            return;
        }
        let l = self.local.get_mut(resource).expect("present");
        // Callbacks: a BAST asked for the lock; every holder whose mode blocks what it asked
        // for is called back once, so the kernel ends its use (clean point) and releases or
        // down-converts (DESIGN.md §5.2). The lock itself goes back in step 7, once the
        // holders allow.
        if let (true, Some(blocked)) = (normal, l.blocked) {
            for (req_id, mode) in l.holders.iter() {
                if grant::compatible(*mode, blocked) {
                    continue;
                }
                // Called back already to keep a mode that blocks nothing now: nothing new to
                // say. Otherwise ask it to keep less than it was last told.
                let told = l.called.iter_mut().find(|(id, _)| id == req_id);
                let base = told.as_ref().map_or(*mode, |(_, t)| *t);
                if grant::compatible(base, blocked) {
                    continue;
                }
                let keep = grant::callback_keeps(base, blocked);
                match told {
                    Some((_, t)) => *t = keep,
                    None => l.called.push((*req_id, keep)),
                }
                cx.kernel(KernelMsg::Callback {
                    req_id: *req_id,
                    resource: *resource,
                    mode: keep,
                });
            }
        }
        // 5. A conversion that needs the master goes before the first request whose `Lock`
        //    is in flight: withdraw that `Lock`, so the conversion's need (and any conversion
        //    deadlock across nodes) reaches the master now (found by the proptest's wait-for
        //    check, see `tests/reference.rs`).
        if let (Some(for_req), Some(i)) = (own, next_asker) {
            let first = l.waiters.iter().any(|w| w.req_id == for_req && !w.convert);
            if first && l.waiters[i].convert {
                l.withdraw(for_req, resource, cx);
            }
        }
        if !normal || l.outstanding.is_some() {
            return;
        }
        // 6. A waiter needs the master.
        if let Some(w) = next_asker.map(|i| &l.waiters[i]) {
            if grant::node_may_ask(l.bast, l.others_compatible(w.req_id, w.mode), w.convert) {
                let (req_id, mode, noqueue) = (w.req_id, w.mode, w.noqueue);
                let seq = self.next_seq();
                let l = self.local.get_mut(resource).expect("present");
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
                        let want = grant::mode_to_ask(held, mode);
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
                cx.send_master(resource, body);
                return;
            }
        }
        // 7. A BAST asked for the lock: give up what the holders, and the conversions the
        //    lock already covers (they wait only for local holders), do not need.
        if let (true, Some(h)) = (l.bast, l.held) {
            let converting = l
                .waiters
                .iter()
                .filter(|w| w.convert && covers(h, w.mode))
                .map(|w| w.mode);
            let needed = grant::needed_by(l.holders.iter().map(|(_, m)| *m).chain(converting));
            if needed != Some(h) {
                let seq = self.next_seq();
                let l = self.local.get_mut(resource).expect("present");
                l.give_up(h, needed, seq);
                cx.send_master(
                    resource,
                    PeerBody::Release {
                        resource: *resource,
                        to: needed,
                        seq,
                    },
                );
            }
        }
    }

    /// A node-layer message (`Grant`, `Deny`, `ReleaseAck`, `Bast`) from `resource`'s master.
    pub(crate) fn msg(&mut self, body: PeerBody, normal: bool, cx: &mut Ctx) -> Result<(), Reject> {
        match body {
            PeerBody::Grant {
                resource,
                mode,
                version,
                seq,
            } => {
                let l = self.lock_answer(&resource, seq)?;
                debug_assert!(l.inval.is_none(), "nothing is asked while invalidating");
                l.outstanding = None;
                l.held = Some(mode);
                if l.version != Some(version) {
                    match cache_inval(&resource) {
                        Some(k) => {
                            // The waiters are served once the kernel confirms the pages are
                            // gone (`inval_done`); a refused invalidation grants nothing.
                            l.version = None;
                            l.inval = Some(version);
                            cx.kernel(k);
                            return Ok(());
                        }
                        None => l.version = Some(version),
                    }
                }
                self.pump_with(&resource, normal, true, cx);
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
                    // `for_req` is cleared when its request stops waiting (`withdraw`).
                    Some(req_id) => {
                        debug_assert!(self.reqs.get(&req_id).is_some_and(|st| st.waiting));
                        self.abandon(req_id, Some(errno), normal, cx)
                    }
                    None => self.pump(&resource, normal, cx),
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
                self.pump(&resource, normal, cx);
                Ok(())
            }
            PeerBody::Bast { resource, mode } => {
                let l = self
                    .local
                    .get_mut(&resource)
                    .ok_or(Reject::Stale("bast for unknown resource"))?;
                let pending_lock = matches!(l.outstanding, Some(Outstanding::Lock { .. }));
                if l.held.is_none() && !pending_lock {
                    return Err(Reject::Stale("bast for a lock not held"));
                }
                l.bast = true;
                l.blocked = Some(l.blocked.map_or(mode, |b| grant::sup(b, mode)));
                self.pump(&resource, normal, cx);
                Ok(())
            }
            _ => Err(Reject::Unexpected("not a node-layer message")),
        }
    }

    /// `Event::CacheInvalDone`: the kernel answered the `CACHE_INVAL` sent for the last grant
    /// of `resource` (`errno` 0: the pages are gone). On success the waiters are served from
    /// the new grant. On failure the pages may be stale, so nothing is granted from this lock:
    /// every waiter is denied with the kernel's errno (`EIO` if it gave none), and the lock
    /// is given up down to what current holders need, so the next grant invalidates again.
    pub(crate) fn inval_done(
        &mut self,
        resource: ResourceId,
        errno: i32,
        normal: bool,
        cx: &mut Ctx,
    ) -> Result<(), Reject> {
        let l = self
            .local
            .get_mut(&resource)
            .ok_or(Reject::Stale("invalidation answer for an unknown resource"))?;
        let version = l
            .inval
            .take()
            .ok_or(Reject::Stale("invalidation answer matches no CACHE_INVAL"))?;
        if errno == 0 {
            l.version = Some(version);
            self.pump_with(&resource, normal, true, cx);
            return Ok(());
        }
        let errno = if errno < 0 { errno } else { EIO };
        deny_waiters(l, &resource, &mut self.reqs, errno, cx);
        l.bast = true;
        self.pump(&resource, normal, cx);
        Ok(())
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

    /// Checks every resource's node-side invariants, and that the request table agrees with
    /// the queues.
    pub(crate) fn check(&self) -> Result<(), String> {
        let mut waiting = 0;
        let mut granted = 0;
        for (r, l) in &self.local {
            l.check(r, &self.reqs)?;
            waiting += l.waiters.len();
            granted += l.holders.len();
        }
        let (w, g) = self.reqs.values().fold((0, 0), |(w, g), st| {
            (
                w + usize::from(st.waiting),
                g + usize::from(st.granted.is_some()),
            )
        });
        if w != waiting || g != granted {
            return Err(format!("request table ({w} waiting, {g} granted) disagrees with queues ({waiting}, {granted})"));
        }
        Ok(())
    }

    /// This node's own view of every resource it uses, in resource order.
    pub(crate) fn dump(&self, members: NodeSet) -> Vec<LocalDump> {
        self.local
            .iter()
            .map(|(r, l)| l.dump(*r, master_of(members, r)))
            .collect()
    }
}

/// Denies every kernel request waiting on `l` with `errno`.
fn deny_waiters(
    l: &mut LocalRes,
    resource: &ResourceId,
    reqs: &mut BTreeMap<ReqId, ReqState>,
    errno: i32,
    cx: &mut Ctx,
) {
    for w in l.waiters.drain(..) {
        if w.timer {
            cx.cancel_timer(w.req_id);
        }
        cx.deny(w.req_id, *resource, errno);
        stop_waiting(reqs, w.req_id);
    }
}

/// `req_id` no longer waits: it leaves the request table unless the kernel still holds it (a
/// denied or abandoned conversion keeps its old mode). Returns its resource.
fn stop_waiting(reqs: &mut BTreeMap<ReqId, ReqState>, req_id: ReqId) -> ResourceId {
    let st = reqs.get_mut(&req_id).expect("a waiting request is known");
    debug_assert!(st.waiting);
    st.waiting = false;
    let resource = st.resource;
    if st.granted.is_none() {
        reqs.remove(&req_id);
    }
    resource
}

impl LocalRes {
    /// What the grant rule needs to know about this resource.
    fn view(&self, normal: bool, fresh_grant: bool) -> NodeView {
        NodeView {
            normal,
            current: self.version.is_some(),
            held: self.held,
            bast: self.bast,
            fresh_grant,
        }
    }

    /// Whether `mode` is compatible with every local holder other than `req_id`.
    fn others_compatible(&self, req_id: ReqId, mode: LockMode) -> bool {
        self.holders
            .iter()
            .all(|(id, m)| *id == req_id || grant::compatible(*m, mode))
    }

    /// The waiter that asks the master next: the first conversion the node's lock does not
    /// cover, else the head of the queue if it is a first request the lock does not cover.
    fn asker(&self) -> Option<usize> {
        let uncovered = |w: &Waiter| self.held.is_none_or(|h| !covers(h, w.mode));
        match self.waiters.iter().position(|w| w.convert && uncovered(w)) {
            Some(i) => Some(i),
            None => self
                .waiters
                .front()
                .filter(|w| !w.convert && uncovered(w))
                .map(|_| 0),
        }
    }

    /// A local conversion that waits in a cycle of local conversions (each blocked by the
    /// next one's granted mode), the newest of the cycle: it can never be granted.
    fn conversion_deadlock(&self) -> Option<ReqId> {
        let convs: Vec<(ReqId, LockMode, LockMode)> = self
            .waiters
            .iter()
            .filter(|w| w.convert)
            .filter_map(|w| {
                let (_, granted) = self.holders.iter().find(|(id, _)| *id == w.req_id)?;
                Some((w.req_id, *granted, w.mode))
            })
            .collect();
        if convs.len() < 2 {
            return None;
        }
        let modes: Vec<(LockMode, LockMode)> = convs.iter().map(|c| (c.1, c.2)).collect();
        grant::conversion_cycle(&modes).map(|i| convs[i].0)
    }

    fn remove_waiter(&mut self, req_id: ReqId) -> Option<Waiter> {
        let at = self.waiters.iter().position(|w| w.req_id == req_id)?;
        self.waiters.remove(at)
    }

    /// No BAST is pending any more (the lock was given up, the BAST was stale, or a new epoch
    /// voided it): new holders may come. Callbacks already sent stay in force.
    fn clear_bast(&mut self) {
        self.bast = false;
        self.blocked = None;
    }

    /// Withdraws the `Lock` in flight for `req_id`, if any, with a `Cancel` to the master: no
    /// local request wants its answer any more (a grant that crosses the cancel is cached).
    fn withdraw(&mut self, req_id: ReqId, resource: &ResourceId, cx: &mut Ctx) {
        if let Some(Outstanding::Lock {
            seq,
            for_req,
            cancelled,
            ..
        }) = &mut self.outstanding
        {
            if *for_req == Some(req_id) {
                *for_req = None;
                if !*cancelled {
                    *cancelled = true;
                    let seq = *seq;
                    cx.send_master(
                        resource,
                        PeerBody::Cancel {
                            resource: *resource,
                            seq,
                        },
                    );
                }
            }
        }
    }

    /// Nothing held, waited for or in flight: the entry only remembers a version.
    fn is_idle(&self) -> bool {
        self.held.is_none()
            && self.holders.is_empty()
            && self.waiters.is_empty()
            && self.outstanding.is_none()
    }

    /// Records giving up (or down-converting) the cluster lock from `from` to `to`.
    fn give_up(&mut self, from: LockMode, to: Option<LockMode>, seq: u64) {
        debug_assert!(to.is_none_or(|t| covers(from, t)));
        self.held = to;
        self.clear_bast();
        // The ack's version is this node's only if its pages were current: after a refused
        // invalidation they are not, and the next grant must invalidate again.
        self.outstanding = Some(Outstanding::Release {
            seq,
            wrote: gives_up_write(from, to) && self.version.is_some(),
        });
    }

    fn dump(&self, resource: ResourceId, master: Option<NodeId>) -> LocalDump {
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

    /// Checks the node-side invariants of this resource against the request table.
    fn check(&self, r: &ResourceId, reqs: &BTreeMap<ReqId, ReqState>) -> Result<(), String> {
        for (i, (a, am)) in self.holders.iter().enumerate() {
            for (b, bm) in &self.holders[i + 1..] {
                if !grant::compatible(*am, *bm) {
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
        if self.inval.is_some() && (self.version.is_some() || self.held.is_none()) {
            return Err(format!(
                "{r:?}: invalidation pending with a known version or no lock"
            ));
        }
        if self.waiters.len() > WAITERS_PER_RESOURCE_MAX {
            return Err(format!(
                "{r:?}: local waiters over WAITERS_PER_RESOURCE_MAX"
            ));
        }
        Ok(())
    }
}
