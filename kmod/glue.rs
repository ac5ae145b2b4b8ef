// SPDX-License-Identifier: GPL-2.0
//! The C glue's interface (`glue.h`), as Rust sees it. Each function's reason to exist is at its
//! definition in `glue.c`. Pointers to kernel structs are `c_void` here (bindgen's
//! structs are not FFI-safe in an extern block); callers cast.

use core::ffi::c_void;

use kernel::ffi::{c_char, c_int, c_ulong};

/// `MXFS_GLUE_ATTR_MAX` in glue.h: size of the C policy array minus one.
pub(crate) const GLUE_ATTR_MAX: u16 = 17;
/// `MXFS_GLUE_RES_ATTR_MAX` in glue.h.
pub(crate) const GLUE_RES_ATTR_MAX: u16 = 4;
/// `enum mxfs_glue_group`: the "status" group ("locks" is 0 and carries nothing yet).
pub(crate) const GROUP_STATUS: u32 = 1;

extern "C" {
    pub(crate) fn mxfs_glue_policy_set(nested: c_int, id: u16, kind: u32, len: u16) -> c_int;
    pub(crate) fn mxfs_glue_genl_register() -> c_int;
    pub(crate) fn mxfs_glue_genl_unregister();
    pub(crate) fn mxfs_glue_dbg_register() -> c_int;
    pub(crate) fn mxfs_glue_dbg_unregister();
    pub(crate) fn mxfs_glue_debug() -> c_int;
    pub(crate) fn mxfs_glue_unicast(portid: u32, cmd: u8, attrs: *const c_void, len: u32) -> c_int;
    pub(crate) fn mxfs_glue_multicast(group: u32, cmd: u8, attrs: *const c_void, len: u32)
        -> c_int;
    pub(crate) fn mxfs_glue_reply(
        info: *mut c_void,
        cmd: u8,
        attrs: *const c_void,
        len: u32,
    ) -> c_int;
    pub(crate) fn mxfs_glue_invalidate_range(
        mapping: *mut c_void,
        start: c_ulong,
        end: c_ulong,
    ) -> c_int;
    pub(crate) fn mxfs_glue_write_range(mapping: *mut c_void, start: i64, end: i64) -> c_int;
    pub(crate) fn mxfs_glue_path_sb(path: *const c_char, err: *mut c_int) -> *mut c_void;
    pub(crate) fn mxfs_glue_sb_uuid(sb: *const c_void, uuid16: *mut u8);
    pub(crate) fn mxfs_glue_sb_put(sb: *mut c_void);
    pub(crate) fn mxfs_glue_cached_inode(sb: *mut c_void, ino: c_ulong) -> *mut c_void;
    pub(crate) fn mxfs_glue_xfs_register() -> c_int;
    pub(crate) fn mxfs_glue_xfs_unregister();
    pub(crate) fn mxfs_glue_answer_queue(slot: c_int);
    pub(crate) fn mxfs_glue_answer_flush(slot: c_int);
    pub(crate) fn mxfs_glue_set_spec(
        sb: *mut c_void,
        slot: c_int,
        ticket: *const u64,
        words: *const u64,
        nr_words: u32,
    );
}

/// `MXFS_GLUE_MOUNTS_MAX` in glue.h: the answer work items glue.c keeps.
pub(crate) const GLUE_MOUNTS_MAX: usize = 16;

// The services of the patched xfs.ko (<linux/xfs_mxfs.h>), called with a mount's
// `struct super_block`; see `volume.rs` for when.
extern "C" {
    pub(crate) fn xfs_mxfs_clean_point(sb: *mut c_void) -> c_int;
    pub(crate) fn xfs_mxfs_uncache(sb: *mut c_void);
    pub(crate) fn xfs_mxfs_refresh(sb: *mut c_void) -> c_int;
    pub(crate) fn xfs_mxfs_withdraw(sb: *mut c_void);
}
