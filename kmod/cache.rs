// SPDX-License-Identifier: GPL-2.0
//! Cache: the volume → super block table and `CACHE_INVAL` (DESIGN.md §2).
//!
//! The inode is found with `ilookup`, or, for XFS, which keeps its inodes out of the VFS hash,
//! by walking the super block's inode list (`glue.c`).
//!
//! The table has [`CACHE_BUCKETS`] buckets of [`VOLUMES_PER_BUCKET`] entries, behind one mutex:
//! invalidation sleeps (page locks, writeback), so the lookup and the use of the super block
//! happen under the same sleeping lock, and an entry cannot be removed while it is in use.
//!
//! Until the XFS patch series registers clustered mounts itself, entries come from the debug
//! interface (`DBG_VOLUME_ADD` with a mount path), which holds an active reference to the super
//! block until the module exits.

use kernel::ffi::{c_int, c_ulong};

use kernel::bindings;
use kernel::error::{code, to_result};
use kernel::page::PAGE_SHIFT;
use kernel::prelude::*;
use kernel::str::CString;
use kernel::sync::{new_mutex, Mutex};

use crate::glue;
use crate::proto::volume_id_from_uuid;
use crate::{kerr, Mxfs};

/// Buckets of the volume table.
pub(crate) const CACHE_BUCKETS: usize = 16;
/// Volumes per bucket.
pub(crate) const VOLUMES_PER_BUCKET: usize = 4;

/// One registered volume.
#[derive(Clone, Copy)]
struct Entry {
    volume: u64,
    sb: *mut bindings::super_block,
}

/// The table the mutex protects.
pub(crate) struct CacheTable {
    buckets: [[Option<Entry>; VOLUMES_PER_BUCKET]; CACHE_BUCKETS],
}

// SAFETY: the super block pointers are only dereferenced (by kernel functions) under the
// table's mutex, while the table holds an active reference to each; nothing is thread-bound.
unsafe impl Send for CacheTable {}

impl CacheTable {
    const fn new() -> CacheTable {
        CacheTable {
            buckets: [[None; VOLUMES_PER_BUCKET]; CACHE_BUCKETS],
        }
    }

    fn bucket(volume: u64) -> usize {
        (volume % CACHE_BUCKETS as u64) as usize
    }

    fn get(&self, volume: u64) -> Option<Entry> {
        self.buckets[Self::bucket(volume)]
            .iter()
            .flatten()
            .find(|e| e.volume == volume)
            .copied()
    }
}

/// The cache subsystem's state.
pub(crate) type Cache = Mutex<CacheTable>;

/// The cache table's initialiser.
pub(crate) fn new() -> impl PinInit<Cache> {
    new_mutex!(CacheTable::new(), "mxfs_cache")
}

/// Subsystem init. The table is built with the module state; nothing else to start yet.
pub(crate) fn init(_st: &Mxfs) -> Result {
    Ok(())
}

/// Subsystem exit: drop every entry and the super block references the table holds.
pub(crate) fn exit(st: &Mxfs) {
    let mut t = st.cache.lock();
    for b in t.buckets.iter_mut() {
        for slot in b.iter_mut() {
            if let Some(e) = slot.take() {
                // SAFETY: `e.sb` holds the active reference `register_path` took.
                unsafe { glue::mxfs_glue_sb_put(e.sb.cast()) };
            }
        }
    }
}

/// Registers the file system mounted at `path` (debug interface) and returns its volume id.
pub(crate) fn register_path(st: &Mxfs, path: &str) -> Result<u64> {
    let cpath = CString::try_from_fmt(kernel::fmt!("{}", path))?;
    let mut err: c_int = 0;
    // SAFETY: `cpath` is NUL-terminated and lives across the call; `err` is a valid out pointer.
    let sb: *mut bindings::super_block =
        unsafe { glue::mxfs_glue_path_sb(cpath.as_char_ptr(), &mut err) }.cast();
    if sb.is_null() {
        to_result(err)?;
        return Err(code::EINVAL);
    }
    let mut uuid = [0u8; 16];
    // SAFETY: `sb` is a live super block (we hold an active reference); `uuid` has 16 bytes.
    unsafe { glue::mxfs_glue_sb_uuid(sb.cast(), uuid.as_mut_ptr()) };
    let volume = volume_id_from_uuid(&uuid);
    let mut t = st.cache.lock();
    let bucket = &mut t.buckets[CacheTable::bucket(volume)];
    let dup = bucket.iter().flatten().any(|e| e.volume == volume);
    let free = bucket.iter_mut().find(|s| s.is_none());
    match (dup, free) {
        (false, Some(slot)) => {
            *slot = Some(Entry { volume, sb });
            pr_info!("volume {:#x} registered ({})\n", volume, path);
            Ok(volume)
        }
        (dup, _) => {
            drop(t);
            // SAFETY: drops the reference taken above, which the table did not keep.
            unsafe { glue::mxfs_glue_sb_put(sb.cast()) };
            if dup {
                Ok(volume)
            } else {
                Err(code::ENOSPC)
            }
        }
    }
}

/// Some registered volume, for `STATUS_RESP`.
pub(crate) fn first_volume(st: &Mxfs) -> Option<u64> {
    let t = st.cache.lock();
    t.buckets
        .iter()
        .flatten()
        .flatten()
        .map(|e| e.volume)
        .next()
}

/// Runs `f` on the mapping of inode `ino` of `volume` if that inode is cached on this node.
fn with_mapping(
    st: &Mxfs,
    volume: u64,
    ino: u64,
    f: impl FnOnce(*mut bindings::address_space) -> c_int,
) -> Result {
    let t = st.cache.lock();
    let Some(e) = t.get(volume) else {
        // Not mounted here: nothing cached.
        return Ok(());
    };
    let ino = c_ulong::try_from(ino).map_err(|_| code::EINVAL)?;
    // SAFETY: `e.sb` is live (active reference held by the table, whose mutex we hold).
    let inode: *mut bindings::inode = unsafe { glue::mxfs_glue_cached_inode(e.sb.cast(), ino) }.cast();
    if inode.is_null() {
        return Ok(());
    }
    // SAFETY: `inode` is a referenced inode from mxfs_glue_cached_inode; its mapping is valid
    // while we hold that reference.
    let mapping = unsafe { (*inode).i_mapping };
    let rc = f(mapping);
    // SAFETY: drops the reference mxfs_glue_cached_inode took.
    unsafe { bindings::iput(inode) };
    to_result(rc)
}

/// `CACHE_INVAL(volume, ino, offset, length)`: drops the cached pages of that range (the whole
/// file when `length` is 0). An inode that is not cached here needs nothing.
///
/// Ino 0 is the invalidation of a `VOLUME` resource: the whole volume. No XFS inode has number
/// 0, so the per-inode path would find nothing and answer success with every cache intact.
/// Until the level-0 purge (DESIGN.md §5.3) exists, a mounted volume refuses it with
/// `-EOPNOTSUPP`, and the daemon then grants nothing that needed it.
pub(crate) fn invalidate(st: &Mxfs, volume: u64, ino: u64, offset: u64, length: u64) -> Result {
    if ino == 0 {
        if st.cache.lock().get(volume).is_none() {
            // Not mounted here: nothing cached.
            return Ok(());
        }
        pr_warn!(
            "CACHE_INVAL of all of volume {:#x} (ino 0) refused: the volume purge is not \
             implemented yet\n",
            volume
        );
        return Err(kerr(bindings::EOPNOTSUPP));
    }
    let shift = PAGE_SHIFT as u32;
    let start = (offset >> shift) as c_ulong;
    let end = if length == 0 {
        c_ulong::MAX
    } else {
        let last = offset.checked_add(length - 1).ok_or(code::EINVAL)?;
        (last >> shift) as c_ulong
    };
    let r = with_mapping(st, volume, ino, |m| {
        // SAFETY: `m` is the mapping of an inode we hold a reference to; start <= end.
        unsafe { glue::mxfs_glue_invalidate_range(m.cast(), start, end) }
    });
    pr_info!(
        "CACHE_INVAL volume {:#x} ino {} offset {} length {}: {:?}\n",
        volume,
        ino,
        offset,
        length,
        r
    );
    r
}

/// Writes back and waits for `[offset, offset + length)` of an inode (the whole file when
/// `length` is 0), before a PW or EX lock on it is released.
pub(crate) fn write_back(st: &Mxfs, volume: u64, ino: u64, offset: u64, length: u64) -> Result {
    let start = i64::try_from(offset).map_err(|_| code::EINVAL)?;
    let end = if length == 0 {
        i64::MAX
    } else {
        i64::try_from(offset.saturating_add(length - 1)).unwrap_or(i64::MAX)
    };
    with_mapping(st, volume, ino, |m| {
        // SAFETY: `m` is the mapping of an inode we hold a reference to; start <= end.
        unsafe { glue::mxfs_glue_write_range(m.cast(), start, end) }
    })
}
