/* SPDX-License-Identifier: GPL-2.0 */
/*
 * C glue of mxfs.ko: the interface between glue.c and the Rust crate. The Rust side declares the
 * same functions in an `extern "C"` block (glue.rs in mxfs_main.rs's module tree), so keep both
 * in step. Everything here exists because the 6.12 `kernel` crate has no binding for it
 * (Generic Netlink, netlink notifiers, <linux/pagemap.h>) or because it is a static inline.
 */
#ifndef MXFS_GLUE_H
#define MXFS_GLUE_H

#include <linux/types.h>

struct address_space;
struct genl_info;
struct super_block;
struct inode;

/* Sizes of the policy arrays; the Rust side asserts they match proto's ATTR_MAX / RESOURCE_ATTR_MAX. */
#define MXFS_GLUE_ATTR_MAX 17
#define MXFS_GLUE_RES_ATTR_MAX 4

/* Wire kinds the Rust side passes to mxfs_glue_policy_set (proto's AttrKind). */
enum mxfs_glue_kind {
	MXFS_GLUE_KIND_UNSPEC = 0,
	MXFS_GLUE_KIND_U8 = 1,
	MXFS_GLUE_KIND_U32 = 2,
	MXFS_GLUE_KIND_U64 = 3,
	MXFS_GLUE_KIND_S32 = 4,
	MXFS_GLUE_KIND_NUL_STRING = 5,
	MXFS_GLUE_KIND_NESTED = 6,
};

/* Multicast groups, in the order of the family's mcgrps array. */
enum mxfs_glue_group { MXFS_GLUE_GROUP_LOCKS = 0, MXFS_GLUE_GROUP_STATUS = 1 };

int mxfs_glue_policy_set(int nested, u16 id, u32 kind, u16 len);
int mxfs_glue_genl_register(void);
void mxfs_glue_genl_unregister(void);
int mxfs_glue_dbg_register(void);
void mxfs_glue_dbg_unregister(void);
int mxfs_glue_debug(void);
int mxfs_glue_unicast(u32 portid, u8 cmd, const void *attrs, u32 len);
int mxfs_glue_multicast(u32 group, u8 cmd, const void *attrs, u32 len);
int mxfs_glue_reply(struct genl_info *info, u8 cmd, const void *attrs, u32 len);
int mxfs_glue_invalidate_range(struct address_space *mapping, unsigned long start,
			       unsigned long end);
int mxfs_glue_write_range(struct address_space *mapping, s64 start, s64 end);
struct super_block *mxfs_glue_path_sb(const char *path, int *err);
void mxfs_glue_sb_uuid(const struct super_block *sb, u8 *uuid16);
void mxfs_glue_sb_put(struct super_block *sb);
struct inode *mxfs_glue_cached_inode(struct super_block *sb, unsigned long ino);
int mxfs_glue_xfs_register(void);
void mxfs_glue_xfs_unregister(void);
void mxfs_glue_answer_queue(int slot);
void mxfs_glue_answer_flush(int slot);
void mxfs_glue_set_spec(struct super_block *sb, int slot, const u64 *ticket, const u64 *words,
			unsigned int nr_words);

/* Mount slots; volume.rs's MOUNTS_MAX (asserted there). */
#define MXFS_GLUE_MOUNTS_MAX 16

/* Implemented in Rust (mxfs_main.rs / netlink.rs). */
int mxfs_rs_doit(u8 cmd, u32 portid, const void *attrs, u32 len, struct genl_info *info);
int mxfs_rs_dbg_doit(u8 cmd, u32 portid, const void *attrs, u32 len, struct genl_info *info);
void mxfs_rs_sock_release(u32 portid);
int mxfs_rs_fs_mount(struct super_block *sb, const char *sb_id, const u8 *uuid16, u32 log_major,
		     u32 log_minor, u32 recover_node, void **mount_priv);
void mxfs_rs_fs_unmount(const char *sb_id, void *mount_priv);
int mxfs_rs_op_begin(void *mount_priv, size_t task, bool write, bool speculate, bool lifecycle,
		     size_t *cookie);
bool mxfs_rs_op_end(void *mount_priv, size_t task, size_t cookie);
void mxfs_rs_answer_work(int slot);
void mxfs_rs_spec_inline(bool on);
int mxfs_rs_lock_stats(u64 *out, int n);
int mxfs_rs_pair_bench(u32 pairs, u64 *out, int n);

#endif
