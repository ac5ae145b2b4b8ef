// SPDX-License-Identifier: GPL-2.0
//! Hooks: the cluster lock calls XFS makes (DESIGN.md §2), the pending table on `kernel::sync`,
//! per-volume recovery freezes, and the test-only `mxfs_dbg` family that drives the hooks from
//! user space until the XFS patch series calls them.
//!
//! A lock call waits while its volume is recovering, registers a pending entry, sends
//! `LOCK_REQ` to the daemon and sleeps until the grant, a deny or `GRANT_TIMEOUT_MS`. An unlock
//! first writes back the range a PW or EX lock covered, then sends `LOCK_RELEASE`, and does not
//! wait for anything.

use core::ffi::{c_int, c_void};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use kernel::bindings;
use kernel::error::{code, to_result, Error};
use kernel::init::pin_init_array_from_fn;
use kernel::prelude::*;
use kernel::sync::lock::{spinlock::SpinLockBackend, Guard};
use kernel::sync::{new_condvar, new_spinlock, CondVar, CondVarTimeoutResult, SpinLock};
use kernel::time::{msecs_to_jiffies, Jiffies};

use crate::glue;
use crate::netlink;
use crate::pending::{Bucket, Grant, PendingError, PendingSync, PendingTable, Wake, BUCKETS};
use crate::proto::{
    Command, LockFlags, LockGrant, LockMode, LockRelease, LockReq, Message, ResourceId,
    ResourceType, VolumeMount, EXTENT_CHUNK_BYTES, GRANT_TIMEOUT_MS,
};
use crate::{cache, kerr, state, Mxfs};

/// Volumes that can be frozen for recovery at once.
pub(crate) const VOLUMES_MAX: usize = 16;
/// Longest a lock call waits for a volume's recovery to finish before `-ETIMEDOUT`.
pub(crate) const RECOVERY_WAIT_MS_MAX: u32 = 120_000;

/// One bucket of the kernel's pending table.
#[pin_data]
pub(crate) struct KBucket {
    #[pin]
    lock: SpinLock<Bucket>,
    #[pin]
    cv: CondVar,
}

/// The pending table on `kernel::sync`: [`BUCKETS`] spinlocked buckets, each with a wait queue.
#[pin_data]
pub(crate) struct KPending {
    #[pin]
    buckets: [KBucket; BUCKETS],
}

impl KPending {
    pub(crate) fn new() -> impl PinInit<KPending> {
        pin_init!(KPending {
            buckets <- pin_init_array_from_fn(|_| {
                pin_init!(KBucket {
                    lock <- new_spinlock!(Bucket::EMPTY, "mxfs_pending_bucket"),
                    cv <- new_condvar!("mxfs_pending_wq"),
                })
            }),
        })
    }
}

impl PendingSync for KPending {
    type Guard<'a> = Guard<'a, Bucket, SpinLockBackend>;
    type Budget = Jiffies;

    fn bucket_count(&self) -> usize {
        BUCKETS
    }

    fn lock(&self, idx: usize) -> Self::Guard<'_> {
        self.buckets[idx].lock.lock()
    }

    fn wait(&self, idx: usize, guard: &mut Self::Guard<'_>, budget: &mut Jiffies) -> Wake {
        if *budget == 0 {
            return Wake::TimedOut;
        }
        match self.buckets[idx]
            .cv
            .wait_interruptible_timeout(guard, *budget)
        {
            CondVarTimeoutResult::Timeout => {
                *budget = 0;
                Wake::TimedOut
            }
            CondVarTimeoutResult::Woken { jiffies } => {
                *budget = jiffies;
                Wake::Notified
            }
            CondVarTimeoutResult::Signal { jiffies } => {
                *budget = jiffies;
                Wake::Interrupted
            }
        }
    }

    fn notify_all(&self, idx: usize) {
        self.buckets[idx].cv.notify_all();
    }

    fn grant_budget(&self) -> Jiffies {
        msecs_to_jiffies(GRANT_TIMEOUT_MS)
    }
}

/// Recovery state of one volume: an atomic flag for the fast path, and a wait queue (with the
/// flag again under its lock) for lock calls that must wait.
#[pin_data]
pub(crate) struct VolumeFreeze {
    /// Volume id, or 0 for a free slot.
    volume: AtomicU64,
    recovering: AtomicBool,
    #[pin]
    lock: SpinLock<bool>,
    #[pin]
    wq: CondVar,
}

impl VolumeFreeze {
    fn new() -> impl PinInit<VolumeFreeze> {
        pin_init!(VolumeFreeze {
            volume: AtomicU64::new(0),
            recovering: AtomicBool::new(false),
            lock <- new_spinlock!(false, "mxfs_volume_freeze"),
            wq <- new_condvar!("mxfs_volume_wq"),
        })
    }
}

/// The volumes' recovery states.
#[pin_data]
pub(crate) struct Freezes {
    #[pin]
    slots: [VolumeFreeze; VOLUMES_MAX],
    /// Serialises claiming a slot for a new volume id.
    #[pin]
    claim: SpinLock<()>,
}

impl Freezes {
    pub(crate) fn new() -> impl PinInit<Freezes> {
        pin_init!(Freezes {
            slots <- pin_init_array_from_fn(|_| VolumeFreeze::new()),
            claim <- new_spinlock!((), "mxfs_volume_claim"),
        })
    }

    fn find(&self, volume: u64) -> Option<&VolumeFreeze> {
        self.slots
            .iter()
            .find(|s| s.volume.load(Ordering::Acquire) == volume)
    }

    fn find_or_claim(&self, volume: u64) -> Result<&VolumeFreeze> {
        if volume == 0 {
            return Err(code::EINVAL);
        }
        if let Some(s) = self.find(volume) {
            return Ok(s);
        }
        let _g = self.claim.lock();
        if let Some(s) = self.find(volume) {
            return Ok(s);
        }
        let s = self.find(0).ok_or(code::ENOSPC)?;
        s.volume.store(volume, Ordering::Release);
        Ok(s)
    }
}

/// Waits while `volume` is recovering, at most [`RECOVERY_WAIT_MS_MAX`].
fn wait_not_recovering(st: &Mxfs, volume: u64) -> Result {
    let Some(f) = st.freezes.find(volume) else {
        return Ok(());
    };
    if !f.recovering.load(Ordering::Acquire) {
        return Ok(());
    }
    let mut left = msecs_to_jiffies(RECOVERY_WAIT_MS_MAX);
    let mut g = f.lock.lock();
    while *g {
        match f.wq.wait_interruptible_timeout(&mut g, left) {
            CondVarTimeoutResult::Timeout => return Err(kerr(bindings::ETIMEDOUT)),
            CondVarTimeoutResult::Signal { .. } => return Err(code::ERESTARTSYS),
            CondVarTimeoutResult::Woken { jiffies } => left = jiffies,
        }
    }
    Ok(())
}

/// `RECOVERY_START`: freeze lock calls on `volume`.
pub(crate) fn recovery_start(st: &Mxfs, volume: u64, epoch: u64) -> Result {
    let f = st.freezes.find_or_claim(volume)?;
    *f.lock.lock() = true;
    f.recovering.store(true, Ordering::Release);
    pr_info!(
        "RECOVERY_START volume {:#x} epoch {}\n",
        volume,
        epoch
    );
    Ok(())
}

/// `RECOVERY_DONE`: let lock calls on `volume` proceed.
pub(crate) fn recovery_done(st: &Mxfs, volume: u64, epoch: u64) -> Result {
    let f = st.freezes.find_or_claim(volume)?;
    f.recovering.store(false, Ordering::Release);
    *f.lock.lock() = false;
    f.wq.notify_all();
    pr_info!("RECOVERY_DONE volume {:#x} epoch {}\n", volume, epoch);
    Ok(())
}

/// Wakes every lock call frozen by recovery (module exit); they see the closed table.
fn thaw_all(st: &Mxfs) {
    for f in st.freezes.slots.iter() {
        f.recovering.store(false, Ordering::Release);
        *f.lock.lock() = false;
        f.wq.notify_all();
    }
}

/// A granted cluster lock; give it back with [`unlock`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct LockHandle {
    pub(crate) req_id: u64,
    pub(crate) resource: ResourceId,
    pub(crate) mode: LockMode,
}

fn pending_error(e: PendingError) -> Error {
    match e {
        PendingError::Shutdown => kerr(bindings::ESHUTDOWN),
        PendingError::Full => code::EBUSY,
        PendingError::DuplicateId => code::EEXIST,
        PendingError::TimedOut => kerr(bindings::ETIMEDOUT),
        PendingError::Interrupted => code::ERESTARTSYS,
        PendingError::Denied(e) | PendingError::Cancelled(e) => netlink::error_from_status(e),
    }
}

/// Acquires `resource` in `mode` from the cluster: the one path every lock hook takes.
pub(crate) fn lock(
    st: &Mxfs,
    resource: ResourceId,
    mode: LockMode,
    flags: LockFlags,
    timeout_ms: Option<u32>,
) -> Result<LockHandle> {
    if !st.hooks_open.load(Ordering::Acquire) {
        return Err(kerr(bindings::ESHUTDOWN));
    }
    wait_not_recovering(st, resource.volume)?;
    let req_id = st.next_req_id.fetch_add(1, Ordering::Relaxed);
    request(st, req_id, resource, mode, flags, timeout_ms)?;
    Ok(LockHandle {
        req_id,
        resource,
        mode,
    })
}

/// Sends `LOCK_REQ` for request `req_id` and waits for the reply (at most
/// `GRANT_TIMEOUT_MS`). The request enters the pending table before it is sent, so its reply
/// cannot overtake it. `-ENOTCONN` at once when no daemon is registered. The lock hooks above
/// and the level-0 volume lock (`volume.rs`) both ask through here.
pub(crate) fn request(
    st: &Mxfs,
    req_id: u64,
    resource: ResourceId,
    mode: LockMode,
    flags: LockFlags,
    timeout_ms: Option<u32>,
) -> Result<Grant> {
    if st.net.daemon().is_none() {
        return Err(kerr(bindings::ENOTCONN));
    }
    let ticket = st.pending.insert(req_id, resource).map_err(pending_error)?;
    let req = Message::LockReq(LockReq {
        req_id,
        resource,
        mode,
        flags,
        timeout_ms,
    });
    if let Err(e) = netlink::send_to_daemon(st, &req) {
        st.pending.cancel(ticket);
        return Err(e);
    }
    st.pending.wait_reply(ticket).map_err(pending_error)
}

/// Releases a lock: writes back what a PW/EX lock covered, then sends `LOCK_RELEASE`.
/// Fire-and-forget: a failure is logged, never returned to the XFS caller.
pub(crate) fn unlock(st: &Mxfs, h: LockHandle) {
    if h.mode.is_write() {
        let r = &h.resource;
        let wb = match r.kind {
            ResourceType::Inode => cache::write_back(st, r.volume, r.a, 0, 0),
            ResourceType::Extent => cache::write_back(st, r.volume, r.a, r.b, EXTENT_CHUNK_BYTES),
            ResourceType::Ag => Ok(()),
            // A VOLUME lock taken through these hooks (the debug family) is outside the kernel
            // lock cache, whose answers run level 0's clean point (volume.rs); nothing here
            // wrote the volume back: say so in the warning below instead of releasing as if
            // the volume were clean.
            ResourceType::Volume => Err(kerr(bindings::EOPNOTSUPP)),
        };
        if let Err(e) = wb {
            pr_warn!(
                "write-back before release of {} failed: {:?}\n",
                h.req_id,
                e
            );
        }
    }
    let rel = Message::LockRelease(LockRelease {
        req_id: h.req_id,
        resource: h.resource,
        mode: Some(h.mode),
    });
    if let Err(e) = netlink::send_to_daemon(st, &rel) {
        pr_warn!(
            "LOCK_RELEASE of request {} not sent: {:?}\n",
            h.req_id,
            e
        );
    }
}

/// `inode_lock`: the cluster lock of inode `ino` of `volume`.
#[allow(dead_code)] // For levels 1 and 2 (finer locks); level 0 locks the volume in volume.rs.
pub(crate) fn inode_lock(st: &Mxfs, volume: u64, ino: u64, mode: LockMode) -> Result<LockHandle> {
    lock(
        st,
        ResourceId::inode(volume, ino),
        mode,
        LockFlags::empty(),
        None,
    )
}

/// `extent_lock`: the cluster lock of the chunk of `ino` holding byte `offset`.
#[allow(dead_code)] // For levels 1 and 2 (finer locks); level 0 locks the volume in volume.rs.
pub(crate) fn extent_lock(
    st: &Mxfs,
    volume: u64,
    ino: u64,
    offset: u64,
    mode: LockMode,
) -> Result<LockHandle> {
    lock(
        st,
        ResourceId::extent(volume, ino, offset),
        mode,
        LockFlags::empty(),
        None,
    )
}

/// `ag_lock`: the cluster lock of allocation group `agno`, taken with `NOQUEUE` where XFS
/// try-locks an AGF (`trylock`), so a contended AG is skipped.
#[allow(dead_code)] // For levels 1 and 2 (finer locks); level 0 locks the volume in volume.rs.
pub(crate) fn ag_lock(
    st: &Mxfs,
    volume: u64,
    agno: u64,
    mode: LockMode,
    trylock: bool,
) -> Result<LockHandle> {
    let flags = if trylock {
        LockFlags::NOQUEUE
    } else {
        LockFlags::empty()
    };
    lock(st, ResourceId::ag(volume, agno), mode, flags, None)
}

/// `inode_unlock`, `extent_unlock`, `ag_unlock`: one release path for every type.
#[allow(dead_code)] // For levels 1 and 2 (finer locks); level 0 locks the volume in volume.rs.
pub(crate) fn inode_unlock(st: &Mxfs, h: LockHandle) {
    debug_assert!(h.resource.kind == ResourceType::Inode);
    unlock(st, h)
}

/// See [`inode_unlock`].
#[allow(dead_code)] // For levels 1 and 2 (finer locks); level 0 locks the volume in volume.rs.
pub(crate) fn extent_unlock(st: &Mxfs, h: LockHandle) {
    debug_assert!(h.resource.kind == ResourceType::Extent);
    unlock(st, h)
}

/// See [`inode_unlock`].
#[allow(dead_code)] // For levels 1 and 2 (finer locks); level 0 locks the volume in volume.rs.
pub(crate) fn ag_unlock(st: &Mxfs, h: LockHandle) {
    debug_assert!(h.resource.kind == ResourceType::Ag);
    unlock(st, h)
}

/// Subsystem init: opens the hooks, and registers `mxfs_dbg` when loaded with `debug=1`.
pub(crate) fn init(st: &Mxfs) -> Result {
    // SAFETY: reads a module parameter, set before init runs.
    let debug = unsafe { glue::mxfs_glue_debug() } != 0;
    if debug {
        // SAFETY: registers a static C family whose doit uses the published state.
        to_result(unsafe { glue::mxfs_glue_dbg_register() })?;
    }
    st.debug_registered.store(debug, Ordering::Release);
    st.hooks_open.store(true, Ordering::Release);
    Ok(())
}

/// Subsystem exit: refuse new calls, wake every waiter with `-ESHUTDOWN` and wait until they
/// have all left the table, then drop the debug family.
pub(crate) fn exit(st: &Mxfs) {
    st.hooks_open.store(false, Ordering::Release);
    st.pending.shutdown();
    thaw_all(st);
    let left = st.pending.drain();
    if left != 0 {
        pr_err!("{} request(s) still pending at exit\n", left);
    }
    if st.debug_registered.swap(false, Ordering::AcqRel) {
        // SAFETY: registered by `init`; unregistration waits for running doits.
        unsafe { glue::mxfs_glue_dbg_unregister() };
    }
}

/// `mxfs_dbg` command numbers (glue.c).
const DBG_LOCK: u8 = 1;
const DBG_UNLOCK: u8 = 2;
const DBG_VOLUME_ADD: u8 = 3;

/// The doit of the test-only `mxfs_dbg` family.
///
/// - `DBG_LOCK` carries a `LOCK_REQ` payload (its request id is ignored) and calls the lock
///   hook; the reply is a `LOCK_GRANT` payload naming the request id it got.
/// - `DBG_UNLOCK` carries a `LOCK_RELEASE` payload with the mode and calls the unlock hook.
/// - `DBG_VOLUME_ADD` carries a `VOLUME_MOUNT` payload with `MOUNT_PATH`; it registers that
///   mount in the cache table and replies with a `VOLUME_MOUNT` naming the derived volume id.
#[no_mangle]
pub(crate) extern "C" fn mxfs_rs_dbg_doit(
    cmd: u8,
    _portid: u32,
    attrs: *const c_void,
    len: u32,
    info: *mut c_void,
) -> c_int {
    let Some(st) = state() else {
        return code::ENODEV.to_errno();
    };
    // SAFETY: glue.c passes the running doit's payload, valid until we return.
    let bytes = unsafe { netlink::payload(attrs, len) };
    netlink::errno(dbg_doit(st, cmd, bytes, info))
}

fn dbg_doit(st: &Mxfs, cmd: u8, bytes: &[u8], info: *mut c_void) -> Result {
    match cmd {
        DBG_LOCK => {
            let Message::LockReq(m) = netlink::parse(Command::LockReq, bytes)? else {
                return Err(code::EINVAL);
            };
            let h = lock(st, m.resource, m.mode, m.flags, m.timeout_ms)?;
            let g = Message::LockGrant(LockGrant {
                req_id: h.req_id,
                resource: h.resource,
                mode: h.mode,
                data_version: None,
            });
            if let Err(e) = netlink::reply(info, DBG_LOCK, &g) {
                // The caller cannot learn the request id, so it could never unlock.
                unlock(st, h);
                return Err(e);
            }
            Ok(())
        }
        DBG_UNLOCK => {
            let Message::LockRelease(m) = netlink::parse(Command::LockRelease, bytes)? else {
                return Err(code::EINVAL);
            };
            let mode = m.mode.ok_or(code::EINVAL)?;
            unlock(
                st,
                LockHandle {
                    req_id: m.req_id,
                    resource: m.resource,
                    mode,
                },
            );
            Ok(())
        }
        DBG_VOLUME_ADD => {
            let Message::VolumeMount(m) = netlink::parse(Command::VolumeMount, bytes)? else {
                return Err(code::EINVAL);
            };
            let path = m.mount_path.ok_or(code::EINVAL)?;
            let volume = cache::register_path(st, path)?;
            let ack = Message::VolumeMount(VolumeMount {
                volume,
                dev_path: None,
                mount_path: Some(path),
                generation: None,
            });
            // Announce it the way a patched XFS mount will: on the status group, which the
            // daemon listens to (it answers with a VOLUME_MOUNT ack).
            netlink::multicast(netlink::GROUP_STATUS, &ack)?;
            netlink::reply(info, DBG_VOLUME_ADD, &ack)
        }
        _ => Err(kerr(bindings::EOPNOTSUPP)),
    }
}
