//! `kmod/taskholds.rs` on `core`'s atomics (see the crate root).

/// The atomics of this instance: `core`'s.
pub mod atomic {
    pub use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
}

// On purpose: the same file as the crate root's `taskholds`, on other atomics.
#[allow(clippy::duplicate_mod)]
#[path = "../../taskholds.rs"]
pub mod taskholds;
