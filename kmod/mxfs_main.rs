// SPDX-License-Identifier: GPL-2.0
//! `mxfs.ko`: the kernel half of MXFS, a shared-disk cluster layer for XFS (DESIGN.md §2).
//!
//! Subsystems start in the order netlink, hooks, cache, and stop in reverse; a failed step
//! rolls back the steps before it. All state lives in one pinned [`Mxfs`], allocated before the
//! first subsystem starts and freed after the last one stops. C callbacks (genetlink doits, the
//! netlink notifier) reach it through [`state`].

use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

use kernel::error::Error;
use kernel::prelude::*;

/// The atomics of the files shared with the loom tests (`lockcache.rs`, `taskholds.rs` take
/// them from their parent module; the tests give them loom's).
mod atomic {
    pub(crate) use core::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicUsize, Ordering};
}
mod cache;
mod glue;
mod hooks;
// Shared with the loom tests, like `pending`.
#[allow(dead_code, unreachable_pub)]
mod lockcache;
mod netlink;
// Shared with the loom tests (kmod/loom), which use items the kernel does not (`expire`,
// `Ticket::req_id`, ...), and `pub` so the test crate can reach them.
#[allow(dead_code, unreachable_pub)]
mod pending;
mod proto;
#[allow(dead_code, unreachable_pub)]
mod taskholds;
mod volume;

module! {
    type: MxfsModule,
    name: "mxfs",
    author: "MXFS developers",
    description: "MXFS: cluster lock hooks, pending table and Generic Netlink for shared XFS",
    license: "GPL",
}

/// Printed on load; the workspace version.
pub(crate) const VERSION: &str = "0.4.0";

/// Everything the module keeps.
#[pin_data]
pub(crate) struct Mxfs {
    /// netlink: daemon portid, node states.
    net: netlink::NetState,
    /// hooks: requests waiting for a reply.
    #[pin]
    pending: hooks::KPending,
    /// hooks: per-volume recovery freezes.
    #[pin]
    freezes: hooks::Freezes,
    /// hooks: lock calls are accepted (between hooks init and exit).
    hooks_open: AtomicBool,
    /// hooks: the debug family is registered.
    debug_registered: AtomicBool,
    /// hooks: next request id; ids start at 1 and are never reused while loaded.
    next_req_id: AtomicU64,
    /// cache: volume → super block.
    #[pin]
    cache: cache::Cache,
    /// volume: the kernel lock cache and the `-o mxfs` mounts (level 0).
    #[pin]
    volumes: volume::Volumes,
}

impl Mxfs {
    fn new() -> impl PinInit<Mxfs> {
        pin_init!(Mxfs {
            net: netlink::NetState::new(),
            pending <- hooks::KPending::new(),
            freezes <- hooks::Freezes::new(),
            hooks_open: AtomicBool::new(false),
            debug_registered: AtomicBool::new(false),
            next_req_id: AtomicU64::new(1),
            cache <- cache::new(),
            volumes <- volume::Volumes::new(),
        })
    }
}

/// The published state, or null outside init..exit.
static STATE: AtomicPtr<Mxfs> = AtomicPtr::new(core::ptr::null_mut());

/// The module state, for C callbacks.
///
/// The pointer is published before the genetlink families and the notifier are registered and
/// cleared after they are unregistered; unregistration waits for running callbacks, and the
/// state is freed only after that. So a callback that sees it may use it until it returns.
pub(crate) fn state() -> Option<&'static Mxfs> {
    let p = STATE.load(Ordering::Acquire);
    // SAFETY: see above: a non-null pointer refers to the live, pinned state for as long as any
    // callback that could have loaded it runs.
    unsafe { p.as_ref() }
}

/// A kernel error from an errno constant of the bindings (for codes `kernel::error::code`
/// lacks in 6.12: ENOTCONN, ETIMEDOUT, ESHUTDOWN, EOPNOTSUPP, EALREADY).
pub(crate) fn kerr(errno: u32) -> Error {
    Error::from_errno(-(errno as i32))
}

struct MxfsModule {
    state: Pin<KBox<Mxfs>>,
}

impl kernel::Module for MxfsModule {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let state = KBox::pin_init(Mxfs::new(), GFP_KERNEL)?;
        let ptr = &*state as *const Mxfs as *mut Mxfs;
        STATE.store(ptr, Ordering::Release);
        if let Err(e) = netlink::init() {
            STATE.store(core::ptr::null_mut(), Ordering::Release);
            pr_err!("netlink init failed: {:?}\n", e);
            return Err(e);
        }
        if let Err(e) = hooks::init(&state) {
            netlink::exit();
            STATE.store(core::ptr::null_mut(), Ordering::Release);
            pr_err!("hooks init failed: {:?}\n", e);
            return Err(e);
        }
        if let Err(e) = cache::init(&state) {
            hooks::exit(&state);
            netlink::exit();
            STATE.store(core::ptr::null_mut(), Ordering::Release);
            pr_err!("cache init failed: {:?}\n", e);
            return Err(e);
        }
        // Last, so that XFS can hand us a mount only once everything above is up.
        // SAFETY: called once, from module init; the table it registers is static in glue.c.
        let rc = unsafe { glue::mxfs_glue_xfs_register() };
        if rc != 0 {
            cache::exit(&state);
            hooks::exit(&state);
            netlink::exit();
            STATE.store(core::ptr::null_mut(), Ordering::Release);
            pr_err!("registering the XFS callouts failed: {}\n", rc);
            return Err(Error::from_errno(rc));
        }
        pr_info!(
            "version {} loaded (pending {}x{} slots, debug={})\n",
            VERSION,
            pending::BUCKETS,
            pending::WAITERS_PER_BUCKET,
            state.debug_registered.load(Ordering::Acquire)
        );
        Ok(MxfsModule { state })
    }
}

impl Drop for MxfsModule {
    fn drop(&mut self) {
        // First, the reverse of init. No mount uses the callouts any more: each holds a
        // reference on this module, and module exit runs only when none is left.
        // SAFETY: init registered the table (drop runs only after a successful init).
        unsafe { glue::mxfs_glue_xfs_unregister() };
        cache::exit(&self.state);
        hooks::exit(&self.state);
        netlink::exit();
        STATE.store(core::ptr::null_mut(), Ordering::Release);
        pr_info!("version {} unloaded\n", VERSION);
    }
}

const _: () = assert!(volume::MOUNTS_MAX == glue::GLUE_MOUNTS_MAX);
