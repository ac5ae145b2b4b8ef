// SPDX-License-Identifier: GPL-2.0
/*
 * C glue of mxfs.ko. The Rust crate (mxfs_main.rs and friends) holds the logic; this file holds
 * only what the 6.12 `kernel` crate cannot express. Each function says why it is here.
 */
#include <linux/fs.h>
#include <linux/module.h>
#include <linux/namei.h>
#include <linux/netlink.h>
#include <linux/notifier.h>
#include <linux/pagemap.h>
#include <linux/percpu.h>
#include <linux/workqueue.h>
#include <linux/xfs_mxfs.h>
#include <net/genetlink.h>
#include "glue.h"

/* Family name, version and group names; Rust checks them against proto at init. */
#define MXFS_GENL_NAME "mxfs"
#define MXFS_GENL_VERSION 1
#define MXFS_DBG_GENL_NAME "mxfs_dbg"

/*
 * Attribute policies. They are filled from proto's ATTR_POLICY / RESOURCE_ATTR_POLICY by Rust
 * (mxfs_glue_policy_set) before the family is registered, so the kernel's strict validation and
 * proto's parser enforce one table. Why C: struct nla_policy has unions and bitfields that the
 * kernel crate does not wrap.
 */
static struct nla_policy mxfs_res_policy[MXFS_GLUE_RES_ATTR_MAX + 1];
static struct nla_policy mxfs_policy[MXFS_GLUE_ATTR_MAX + 1];

int mxfs_glue_policy_set(int nested, u16 id, u32 kind, u16 len)
{
	struct nla_policy *p;

	if (nested) {
		if (id > MXFS_GLUE_RES_ATTR_MAX)
			return -ERANGE;
		p = &mxfs_res_policy[id];
	} else {
		if (id > MXFS_GLUE_ATTR_MAX)
			return -ERANGE;
		p = &mxfs_policy[id];
	}
	memset(p, 0, sizeof(*p));
	switch (kind) {
	case MXFS_GLUE_KIND_UNSPEC:
		p->type = NLA_UNSPEC;
		break;
	case MXFS_GLUE_KIND_U8:
		p->type = NLA_U8;
		break;
	case MXFS_GLUE_KIND_U32:
		p->type = NLA_U32;
		break;
	case MXFS_GLUE_KIND_U64:
		p->type = NLA_U64;
		break;
	case MXFS_GLUE_KIND_S32:
		p->type = NLA_S32;
		break;
	case MXFS_GLUE_KIND_NUL_STRING:
		p->type = NLA_NUL_STRING;
		p->len = len;
		break;
	case MXFS_GLUE_KIND_NESTED:
		if (nested)
			return -EINVAL;
		p->type = NLA_NESTED;
		p->nested_policy = mxfs_res_policy;
		p->len = MXFS_GLUE_RES_ATTR_MAX;
		break;
	default:
		return -EINVAL;
	}
	return 0;
}

/*
 * One doit for every command the daemon may send. The generic netlink core has already checked
 * CAP_NET_ADMIN (GENL_ADMIN_PERM) and validated the attributes strictly against mxfs_policy.
 * Rust re-parses the raw attribute bytes with proto's parser. Why C: genl_info and the
 * genlmsg_* accessors are static inlines without Rust bindings.
 */
static int mxfs_doit(struct sk_buff *skb, struct genl_info *info)
{
	return mxfs_rs_doit(info->genlhdr->cmd, info->snd_portid, genlmsg_data(info->genlhdr),
			    genlmsg_len(info->genlhdr), info);
}

static int mxfs_dbg_doit(struct sk_buff *skb, struct genl_info *info)
{
	return mxfs_rs_dbg_doit(info->genlhdr->cmd, info->snd_portid,
				genlmsg_data(info->genlhdr), genlmsg_len(info->genlhdr), info);
}

/*
 * Only the commands user space may send have an entry. LOCK_REQ (1), LOCK_RELEASE (4),
 * VOLUME_UMOUNT (8), STATUS_RESP (10) and VOLUME_WITHDRAW (14) are sent by the kernel alone:
 * their doit is NULL, which genetlink expresses by leaving them out (a request for them gets
 * -EOPNOTSUPP).
 */
#define MXFS_OP(c) { .cmd = (c), .doit = mxfs_doit, .flags = GENL_ADMIN_PERM }
static const struct genl_small_ops mxfs_ops[] = {
	MXFS_OP(2),  /* LOCK_GRANT */
	MXFS_OP(3),  /* LOCK_DENY */
	MXFS_OP(5),  /* CACHE_INVAL */
	MXFS_OP(6),  /* NODE_STATUS */
	MXFS_OP(7),  /* VOLUME_MOUNT (the daemon's ack) */
	MXFS_OP(9),  /* STATUS_REQ */
	MXFS_OP(11), /* RECOVERY_START */
	MXFS_OP(12), /* RECOVERY_DONE */
	MXFS_OP(13), /* LOCK_CALLBACK */
};

static const struct genl_multicast_group mxfs_mcgrps[] = {
	[MXFS_GLUE_GROUP_LOCKS] = { .name = "locks", .flags = GENL_MCAST_CAP_NET_ADMIN },
	[MXFS_GLUE_GROUP_STATUS] = { .name = "status", .flags = GENL_MCAST_CAP_NET_ADMIN },
};

/*
 * parallel_ops: a lock request sleeps (up to GRANT_TIMEOUT_MS) inside a debug-family doit; the
 * grant that wakes it arrives through this family, so the two must not share genl_mutex.
 */
static struct genl_family mxfs_family = {
	.name = MXFS_GENL_NAME,
	.version = MXFS_GENL_VERSION,
	.maxattr = MXFS_GLUE_ATTR_MAX,
	.policy = mxfs_policy,
	.netnsok = false,
	.parallel_ops = true,
	.module = THIS_MODULE,
	.small_ops = mxfs_ops,
	.n_small_ops = ARRAY_SIZE(mxfs_ops),
	.resv_start_op = 0,
	.mcgrps = mxfs_mcgrps,
	.n_mcgrps = ARRAY_SIZE(mxfs_mcgrps),
};

/*
 * Test-only family "mxfs_dbg", registered only when the module is loaded with debug=1. It lets
 * the end-to-end tests drive the hooks from user space until the XFS patch series calls them:
 * 1 DBG_LOCK (payload of a LOCK_REQ; replies REQ_ID), 2 DBG_UNLOCK (payload of a LOCK_RELEASE),
 * 3 DBG_VOLUME_ADD (payload of a VOLUME_MOUNT with MOUNT_PATH).
 */
#define MXFS_DBG_OP(c) { .cmd = (c), .doit = mxfs_dbg_doit, .flags = GENL_ADMIN_PERM }
static const struct genl_small_ops mxfs_dbg_ops[] = {
	MXFS_DBG_OP(1),
	MXFS_DBG_OP(2),
	MXFS_DBG_OP(3),
};

static struct genl_family mxfs_dbg_family = {
	.name = MXFS_DBG_GENL_NAME,
	.version = MXFS_GENL_VERSION,
	.maxattr = MXFS_GLUE_ATTR_MAX,
	.policy = mxfs_policy,
	.netnsok = false,
	.parallel_ops = true,
	.module = THIS_MODULE,
	.small_ops = mxfs_dbg_ops,
	.n_small_ops = ARRAY_SIZE(mxfs_dbg_ops),
	.resv_start_op = 0,
};

/*
 * Tells Rust when a generic netlink socket is released, so the daemon's registration ends when
 * the daemon exits or dies. Why C: netlink notifiers have no Rust binding.
 */
static int mxfs_netlink_event(struct notifier_block *nb, unsigned long event, void *ptr)
{
	struct netlink_notify *n = ptr;

	if (event == NETLINK_URELEASE && n->protocol == NETLINK_GENERIC && n->portid)
		mxfs_rs_sock_release(n->portid);
	return NOTIFY_DONE;
}

static struct notifier_block mxfs_netlink_nb = { .notifier_call = mxfs_netlink_event };

/*
 * Registers the "mxfs" family and the socket-release notifier. Why C: genl_register_family,
 * the family struct and netlink notifiers have no Rust binding.
 */
int mxfs_glue_genl_register(void)
{
	int err;

	err = genl_register_family(&mxfs_family);
	if (err)
		return err;
	err = netlink_register_notifier(&mxfs_netlink_nb);
	if (err)
		genl_unregister_family(&mxfs_family);
	return err;
}

void mxfs_glue_genl_unregister(void)
{
	netlink_unregister_notifier(&mxfs_netlink_nb);
	genl_unregister_family(&mxfs_family);
}

/* The test-only family, registered by the hooks subsystem when debug=1. */
int mxfs_glue_dbg_register(void)
{
	return genl_register_family(&mxfs_dbg_family);
}

void mxfs_glue_dbg_unregister(void)
{
	genl_unregister_family(&mxfs_dbg_family);
}

/*
 * Module parameter debug=1 registers the "mxfs_dbg" family. Why C: the 6.12 Rust module! macro
 * has no module parameters.
 */
static bool mxfs_debug;
module_param_named(debug, mxfs_debug, bool, 0444);
MODULE_PARM_DESC(debug, "register the test-only mxfs_dbg genetlink family (drives the hooks)");

int mxfs_glue_debug(void)
{
	return mxfs_debug;
}

/* Builds one message of `family` around attribute bytes Rust encoded with proto. */
static struct sk_buff *mxfs_build(const struct genl_family *family, u32 portid, u32 seq, u8 cmd,
				  const void *attrs, u32 len, void **hdr)
{
	struct sk_buff *skb = genlmsg_new(len, GFP_KERNEL);

	if (!skb)
		return NULL;
	*hdr = genlmsg_put(skb, portid, seq, family, 0, cmd);
	if (!*hdr) {
		nlmsg_free(skb);
		return NULL;
	}
	if (len)
		skb_put_data(skb, attrs, len);
	genlmsg_end(skb, *hdr);
	return skb;
}

/* Sends a kernel-originated message to one port. Why C: genlmsg_* are static inlines. */
int mxfs_glue_unicast(u32 portid, u8 cmd, const void *attrs, u32 len)
{
	void *hdr;
	struct sk_buff *skb = mxfs_build(&mxfs_family, 0, 0, cmd, attrs, len, &hdr);

	if (!skb)
		return -ENOMEM;
	return genlmsg_unicast(&init_net, skb, portid);
}

/* Multicasts a kernel-originated message to a group. Why C: genlmsg_multicast is inline. */
int mxfs_glue_multicast(u32 group, u8 cmd, const void *attrs, u32 len)
{
	void *hdr;
	struct sk_buff *skb;

	if (group >= ARRAY_SIZE(mxfs_mcgrps))
		return -EINVAL;
	skb = mxfs_build(&mxfs_family, 0, 0, cmd, attrs, len, &hdr);
	if (!skb)
		return -ENOMEM;
	return genlmsg_multicast(&mxfs_family, skb, 0, group, GFP_KERNEL);
}

/* Replies to the sender of `info` (STATUS_RESP, DBG_LOCK). Why C: genlmsg_reply is inline. */
int mxfs_glue_reply(struct genl_info *info, u8 cmd, const void *attrs, u32 len)
{
	void *hdr;
	const struct genl_family *family = info->family;
	struct sk_buff *skb = mxfs_build(family, info->snd_portid, info->snd_seq, cmd, attrs, len,
					 &hdr);

	if (!skb)
		return -ENOMEM;
	return genlmsg_reply(skb, info);
}

/* Why C: <linux/pagemap.h> is not in the 6.12 kernel::bindings. */
int mxfs_glue_invalidate_range(struct address_space *mapping, unsigned long start,
			       unsigned long end)
{
	return invalidate_inode_pages2_range(mapping, start, end);
}

/* Writes back and waits for [start, end] (bytes). Why C: <linux/pagemap.h> again. */
int mxfs_glue_write_range(struct address_space *mapping, s64 start, s64 end)
{
	return filemap_write_and_wait_range(mapping, start, end);
}

/*
 * Debug interface only: resolves a mount path to its super block and takes an active reference,
 * so the cache table can name a volume before the XFS patch series registers mounts itself.
 * Why C: kern_path/struct path have no Rust abstraction and s_active is an atomic_t.
 */
struct super_block *mxfs_glue_path_sb(const char *path, int *err)
{
	struct path p;
	struct super_block *sb;

	*err = kern_path(path, LOOKUP_FOLLOW, &p);
	if (*err)
		return NULL;
	sb = p.dentry->d_sb;
	if (p.dentry != sb->s_root || !atomic_inc_not_zero(&sb->s_active)) {
		path_put(&p);
		*err = -EINVAL;
		return NULL;
	}
	path_put(&p);
	return sb;
}

/* Copies the 16-byte file system UUID, from which the volume id is derived. */
void mxfs_glue_sb_uuid(const struct super_block *sb, u8 *uuid16)
{
	memcpy(uuid16, &sb->s_uuid, 16);
}

/* Drops the reference mxfs_glue_path_sb took. Why C: deactivate_super needs a sleeping context
 * and pairs with the atomic_inc above; keeping both in one file keeps the pairing visible. */
void mxfs_glue_sb_put(struct super_block *sb)
{
	deactivate_super(sb);
}

/*
 * Finds inode `ino` of `sb` if it is in memory, with a reference (iput it), else NULL; never
 * reads it from disk. ilookup() alone is not enough: XFS keeps its inodes out of the VFS inode
 * hash (inode_fake_hash), so ilookup never finds them. The fallback walks sb->s_inodes like
 * drop_caches does: O(cached inodes), acceptable for CACHE_INVAL until the XFS patch series
 * offers an in-core lookup (xfs_iget with XFS_IGET_INCORE). Why C: __iget, i_state and the
 * s_inodes list have no Rust binding.
 */
struct inode *mxfs_glue_cached_inode(struct super_block *sb, unsigned long ino)
{
	struct inode *inode, *found = NULL;

	inode = ilookup(sb, ino);
	if (inode)
		return inode;
	spin_lock(&sb->s_inode_list_lock);
	list_for_each_entry(inode, &sb->s_inodes, i_sb_list) {
		if (inode->i_ino != ino)
			continue;
		spin_lock(&inode->i_lock);
		if (inode->i_state & (I_NEW | I_FREEING | I_WILL_FREE)) {
			spin_unlock(&inode->i_lock);
			continue;
		}
		__iget(inode);
		spin_unlock(&inode->i_lock);
		found = inode;
		break;
	}
	spin_unlock(&sb->s_inode_list_lock);
	return found;
}

/*
 * XFS callouts (<linux/xfs_mxfs.h>, added by the kmod/patches series): XFS calls these for
 * every `-o mxfs` mount. Why C: the table is a C struct of function pointers that must name
 * THIS_MODULE as its owner (XFS pins the module with it while a mount uses the table), and the
 * header is not in the kernel crate's bindings, which an out-of-tree module cannot extend. The
 * mount and unmount callouts forward to Rust.
 */
static int mxfs_xfs_mount(struct super_block *sb, const struct xfs_mxfs_mount_info *info,
			  void **mount_priv)
{
	*mount_priv = NULL;
	return mxfs_rs_fs_mount(sb, sb->s_id, info->uuid.b, MAJOR(info->log_dev),
				MINOR(info->log_dev), info->recover_node, mount_priv);
}

static void mxfs_xfs_unmount(struct super_block *sb, void *mount_priv)
{
	mxfs_rs_fs_unmount(sb->s_id, mount_priv);
}

/*
 * Operation callouts. Rust (volume.rs) takes the volume lock for each operation; here every call
 * is also counted per operation kind and intent, so that the smoke test can check that each
 * operation of an -o mxfs mount calls out exactly as the XFS series says, and op_fail_eio fails
 * every operation with -EIO before it takes the lock (the smoke test's stand-in for a withdrawn
 * mount). The counters are per CPU: a shared atomic counter would cost each operation two
 * atomic read-modify-writes on one cache line, as much as the cached lock itself. Why C: the
 * counters are read through a module parameter, which the 6.12 Rust module! macro cannot
 * declare, per-CPU variables have no Rust abstraction, and the op struct is the patched header's.
 */
enum { MXFS_INTENT_COUNT = 2 };

struct mxfs_op_count {
	unsigned long begins[XFS_MXFS_OP_KIND_COUNT][MXFS_INTENT_COUNT];
	unsigned long ends[XFS_MXFS_OP_KIND_COUNT][MXFS_INTENT_COUNT];
	unsigned long speculations;	/* begins flagged XFS_MXFS_OP_SPECULATE */
	unsigned long retries;		/* their ends that set XFS_MXFS_OP_RETRY */
};
static DEFINE_PER_CPU(struct mxfs_op_count, mxfs_op_counts);

/* Sums of the per-CPU counters of kind @k and intent @i. */
static void mxfs_op_count_sum(int k, int i, unsigned long *begins, unsigned long *ends)
{
	int cpu;

	*begins = 0;
	*ends = 0;
	for_each_possible_cpu(cpu) {
		const struct mxfs_op_count *c = per_cpu_ptr(&mxfs_op_counts, cpu);

		*begins += READ_ONCE(c->begins[k][i]);
		*ends += READ_ONCE(c->ends[k][i]);
	}
}

static const char *const mxfs_op_kind_names[XFS_MXFS_OP_KIND_COUNT] = {
	[XFS_MXFS_OP_READ] = "read",
	[XFS_MXFS_OP_WRITE] = "write",
	[XFS_MXFS_OP_DIO_READ] = "dio_read",
	[XFS_MXFS_OP_DIO_WRITE] = "dio_write",
	[XFS_MXFS_OP_FSYNC] = "fsync",
	[XFS_MXFS_OP_FAULT] = "fault",
	[XFS_MXFS_OP_PAGE_MKWRITE] = "page_mkwrite",
	[XFS_MXFS_OP_SETATTR] = "setattr",
	[XFS_MXFS_OP_GETATTR] = "getattr",
	[XFS_MXFS_OP_PERMISSION] = "permission",
	[XFS_MXFS_OP_LOOKUP] = "lookup",
	[XFS_MXFS_OP_REVALIDATE] = "revalidate",
	[XFS_MXFS_OP_CREATE] = "create",
	[XFS_MXFS_OP_MKNOD] = "mknod",
	[XFS_MXFS_OP_MKDIR] = "mkdir",
	[XFS_MXFS_OP_SYMLINK] = "symlink",
	[XFS_MXFS_OP_LINK] = "link",
	[XFS_MXFS_OP_UNLINK] = "unlink",
	[XFS_MXFS_OP_RMDIR] = "rmdir",
	[XFS_MXFS_OP_RENAME] = "rename",
	[XFS_MXFS_OP_READDIR] = "readdir",
	[XFS_MXFS_OP_READLINK] = "readlink",
	[XFS_MXFS_OP_FALLOCATE] = "fallocate",
	[XFS_MXFS_OP_XATTR_GET] = "xattr_get",
	[XFS_MXFS_OP_XATTR_SET] = "xattr_set",
	[XFS_MXFS_OP_XATTR_LIST] = "xattr_list",
	[XFS_MXFS_OP_XATTR_REMOVE] = "xattr_remove",
	[XFS_MXFS_OP_OPEN] = "open",
	[XFS_MXFS_OP_IOCTL] = "ioctl",
	[XFS_MXFS_OP_MOUNT] = "mount",
	[XFS_MXFS_OP_UNMOUNT] = "unmount",
	[XFS_MXFS_OP_SEEK] = "seek",
	[XFS_MXFS_OP_BMAP] = "bmap",
	[XFS_MXFS_OP_ACL_GET] = "acl_get",
};

/*
 * Module parameter op_fail_eio=1 makes every op_begin fail with -EIO, as a withdrawn mount will.
 * Writable at run time through /sys/module/mxfs/parameters/op_fail_eio.
 *
 * Module parameter spec_inline (default Y): speculations publish tickets (volume.rs), so that XFS
 * checks getattr and a path walk's permission checks itself while the lock is cached, without
 * calling op_begin and op_end (struct xfs_mxfs_spec). N withdraws the tickets and sends every
 * speculation through op_begin and op_end again, where op_counts counts it: the smoke test's
 * callout checks turn it off. op_fail_eio=1 withdraws them too, so that every operation reaches
 * op_begin and fails. Why C: module parameters, as below.
 */
static bool mxfs_op_fail_eio;
static bool mxfs_spec_inline = true;

static int mxfs_spec_param_set(const char *val, const struct kernel_param *kp)
{
	int err = param_set_bool(val, kp);

	if (!err)
		mxfs_rs_spec_inline(READ_ONCE(mxfs_spec_inline) && !READ_ONCE(mxfs_op_fail_eio));
	return err;
}

static const struct kernel_param_ops mxfs_spec_param_ops = {
	.set = mxfs_spec_param_set,
	.get = param_get_bool,
};
module_param_cb(op_fail_eio, &mxfs_spec_param_ops, &mxfs_op_fail_eio, 0644);
MODULE_PARM_DESC(op_fail_eio, "fail every operation of -o mxfs mounts with EIO (withdraw test)");
module_param_cb(spec_inline, &mxfs_spec_param_ops, &mxfs_spec_inline, 0644);
MODULE_PARM_DESC(spec_inline, "let XFS check speculative operations itself (default Y)");

/*
 * The words XFS checks a mount's speculative operations against (struct xfs_mxfs_spec), one per
 * mount slot, given to XFS from the mount callout (volume.rs). Why C: the struct is the patched
 * header's, and the kernel crate has no binding for it.
 */
static struct xfs_mxfs_spec mxfs_specs[MXFS_GLUE_MOUNTS_MAX];

void mxfs_glue_set_spec(struct super_block *sb, int slot, const u64 *ticket, const u64 *words,
			unsigned int nr_words)
{
	if (WARN_ON_ONCE(slot < 0 || slot >= MXFS_GLUE_MOUNTS_MAX))
		return;
	mxfs_specs[slot] = (struct xfs_mxfs_spec) {
		.ticket = ticket,
		.words = words,
		.nr_words = nr_words,
	};
	xfs_mxfs_set_spec(sb, &mxfs_specs[slot]);
}

/*
 * Read-only parameter op_counts: one line per operation kind and intent that was called, "KIND
 * R|W BEGINS ENDS" (R: read intent, W: write intent). A begin refused by op_fail_eio counts as a
 * begin with no end. The counters only grow; tests compare two readings.
 */
static int mxfs_op_counts_get(char *buf, const struct kernel_param *kp)
{
	int len = 0;
	int k, i;

	for (k = 0; k < XFS_MXFS_OP_KIND_COUNT; k++) {
		for (i = 0; i < MXFS_INTENT_COUNT; i++) {
			unsigned long b, e;

			mxfs_op_count_sum(k, i, &b, &e);
			if (!b && !e)
				continue;
			len += sysfs_emit_at(buf, len, "%s %c %lu %lu\n", mxfs_op_kind_names[k],
					     i == XFS_MXFS_INTENT_READ ? 'R' : 'W', b, e);
		}
	}
	return len;
}

static const struct kernel_param_ops mxfs_op_counts_ops = { .get = mxfs_op_counts_get };
module_param_cb(op_counts, &mxfs_op_counts_ops, NULL, 0444);
MODULE_PARM_DESC(op_counts, "operation callouts per kind and intent: KIND R|W BEGINS ENDS");

/*
 * Read-only parameter lock_stats: what the volume lock path did (volume.rs, LockStats), one
 * "NAME VALUE" line each; *_ns values are sums of nanoseconds over the count before them. Read
 * by `just bench-fs`, after four lines summed from the operation counters: "begins" and
 * "ends" of every operation kind, "speculations" (begins flagged XFS_MXFS_OP_SPECULATE) and
 * "retries" (speculations whose result was discarded). Why C: module parameters, as above.
 */
static const char *const mxfs_lock_stat_names[] = {
	"requests", "request_ns", "refreshes", "refresh_ns",
	"callbacks", "answers", "answer_wait_ns", "clean_points", "clean_point_ns", "give_back_ns",
	"conversion_deadlocks",
};

static int mxfs_lock_stats_get(char *buf, const struct kernel_param *kp)
{
	u64 v[ARRAY_SIZE(mxfs_lock_stat_names)];
	int n = mxfs_rs_lock_stats(v, ARRAY_SIZE(v));
	unsigned long begins = 0, ends = 0, speculations = 0, retries = 0;
	int len = 0;
	int i, k;

	for (k = 0; k < XFS_MXFS_OP_KIND_COUNT; k++) {
		for (i = 0; i < MXFS_INTENT_COUNT; i++) {
			unsigned long b, e;

			mxfs_op_count_sum(k, i, &b, &e);
			begins += b;
			ends += e;
		}
	}
	len += sysfs_emit_at(buf, len, "begins %lu\nends %lu\n", begins, ends);
	for_each_possible_cpu(k) {
		const struct mxfs_op_count *c = per_cpu_ptr(&mxfs_op_counts, k);

		speculations += READ_ONCE(c->speculations);
		retries += READ_ONCE(c->retries);
	}
	len += sysfs_emit_at(buf, len, "speculations %lu\nretries %lu\n", speculations, retries);
	for (i = 0; i < n; i++)
		len += sysfs_emit_at(buf, len, "%s %llu\n", mxfs_lock_stat_names[i], v[i]);
	return len;
}

static const struct kernel_param_ops mxfs_lock_stats_ops = { .get = mxfs_lock_stats_get };
module_param_cb(lock_stats, &mxfs_lock_stats_ops, NULL, 0444);
MODULE_PARM_DESC(lock_stats, "volume lock path counters and summed nanoseconds");

/*
 * Parameter pair_bench: writing N (1..MXFS_PAIR_BENCH_MAX) runs N op_begin/op_end pairs (read
 * intent) on the first mounted -o mxfs volume in the writer's context and times them, and N of
 * each of their parts alone (volume.rs, pair_bench); reading gives the last result, one
 * "NAME VALUE" line each, in nanoseconds per pair. `just bench-fs` prints it: the cost of the
 * cached path without the VFS and XFS around it. Why C: module parameters, as above.
 */
#define MXFS_PAIR_BENCH_MAX 10000000u
static const char *const mxfs_pair_bench_names[] = {
	"pairs", "pair_ns", "task_table_ns", "gate_ns", "clock_ns", "speculation_ns", "ticket_ns",
};
static u64 mxfs_pair_bench_result[ARRAY_SIZE(mxfs_pair_bench_names)];
static DEFINE_MUTEX(mxfs_pair_bench_mutex);

static int mxfs_pair_bench_set(const char *val, const struct kernel_param *kp)
{
	u64 v[ARRAY_SIZE(mxfs_pair_bench_names)];
	unsigned int pairs;
	int rc = kstrtouint(val, 0, &pairs);

	if (rc)
		return rc;
	if (!pairs || pairs > MXFS_PAIR_BENCH_MAX)
		return -EINVAL;
	rc = mxfs_rs_pair_bench(pairs, v, ARRAY_SIZE(v));
	if (rc < 0)
		return rc;
	mutex_lock(&mxfs_pair_bench_mutex);
	memcpy(mxfs_pair_bench_result, v, sizeof(v));
	mutex_unlock(&mxfs_pair_bench_mutex);
	return 0;
}

static int mxfs_pair_bench_get(char *buf, const struct kernel_param *kp)
{
	int len = 0;
	int i;

	mutex_lock(&mxfs_pair_bench_mutex);
	for (i = 0; i < ARRAY_SIZE(mxfs_pair_bench_names); i++)
		len += sysfs_emit_at(buf, len, "%s %llu\n", mxfs_pair_bench_names[i],
				     mxfs_pair_bench_result[i]);
	mutex_unlock(&mxfs_pair_bench_mutex);
	return len;
}

static const struct kernel_param_ops mxfs_pair_bench_ops = {
	.set = mxfs_pair_bench_set,
	.get = mxfs_pair_bench_get,
};
module_param_cb(pair_bench, &mxfs_pair_bench_ops, NULL, 0644);
MODULE_PARM_DESC(pair_bench, "write N: time N cached op_begin/op_end pairs; read: ns per pair");

/* Inline: on the path of every operation, where a call and its return cost more than it. */
static __always_inline bool mxfs_op_valid(const struct xfs_mxfs_op *op)
{
	return !WARN_ONCE((unsigned int)op->kind >= XFS_MXFS_OP_KIND_COUNT ||
			  (unsigned int)op->intent >= MXFS_INTENT_COUNT,
			  "mxfs: bad operation kind %d intent %d\n", op->kind, op->intent);
}

static int mxfs_xfs_op_begin(struct super_block *sb, void *mount_priv, struct xfs_mxfs_op *op)
{
	if (!mxfs_op_valid(op))
		return -EINVAL;
	this_cpu_inc(mxfs_op_counts.begins[op->kind][op->intent]);
	if (op->flags & XFS_MXFS_OP_SPECULATE)
		this_cpu_inc(mxfs_op_counts.speculations);
	if (READ_ONCE(mxfs_op_fail_eio))
		return -EIO;
	return mxfs_rs_op_begin(mount_priv, (size_t)current, op->intent == XFS_MXFS_INTENT_WRITE,
				op->flags & XFS_MXFS_OP_SPECULATE,
				op->kind == XFS_MXFS_OP_MOUNT || op->kind == XFS_MXFS_OP_UNMOUNT,
				(size_t *)&op->cookie);
}

static void mxfs_xfs_op_end(struct super_block *sb, void *mount_priv, struct xfs_mxfs_op *op)
{
	if (mxfs_op_valid(op))
		this_cpu_inc(mxfs_op_counts.ends[op->kind][op->intent]);
	if (!mxfs_rs_op_end(mount_priv, (size_t)current, (size_t)op->cookie)) {
		op->flags |= XFS_MXFS_OP_RETRY;
		this_cpu_inc(mxfs_op_counts.retries);
	}
}

/*
 * Answers to lock callbacks (volume.rs) run on an ordered work queue, one work item per mount
 * slot: never in a netlink doit (the daemon's grant of a down-conversion arrives through the same
 * socket as the callback) and never in an operation (the clean point must not run with an IOLOCK
 * held). WQ_MEM_RECLAIM: the clean point writes back dirty pages, so memory reclaim may wait for
 * it. Why C: the 6.12 kernel crate's work items must be owned by an Arc or a Box, and these live
 * in fixed slots for the module's lifetime.
 */
static struct workqueue_struct *mxfs_answer_wq;
static struct work_struct mxfs_answer_works[MXFS_GLUE_MOUNTS_MAX];

static void mxfs_answer_fn(struct work_struct *work)
{
	mxfs_rs_answer_work(work - mxfs_answer_works);
}

void mxfs_glue_answer_queue(int slot)
{
	if (!WARN_ON_ONCE(slot < 0 || slot >= MXFS_GLUE_MOUNTS_MAX))
		queue_work(mxfs_answer_wq, &mxfs_answer_works[slot]);
}

void mxfs_glue_answer_flush(int slot)
{
	if (!WARN_ON_ONCE(slot < 0 || slot >= MXFS_GLUE_MOUNTS_MAX))
		flush_work(&mxfs_answer_works[slot]);
}

static const struct xfs_mxfs_ops mxfs_xfs_ops = {
	.owner = THIS_MODULE,
	.mount = mxfs_xfs_mount,
	.unmount = mxfs_xfs_unmount,
	.op_begin = mxfs_xfs_op_begin,
	.op_end = mxfs_xfs_op_end,
};

int mxfs_glue_xfs_register(void)
{
	int k;

	int err;

	/* A kind the header gained without a name here would print as "(null)". */
	for (k = 0; k < XFS_MXFS_OP_KIND_COUNT; k++)
		if (WARN_ONCE(!mxfs_op_kind_names[k], "mxfs: operation kind %d has no name\n", k))
			return -EINVAL;
	mxfs_answer_wq = alloc_ordered_workqueue("mxfs_answer", WQ_MEM_RECLAIM);
	if (!mxfs_answer_wq)
		return -ENOMEM;
	for (k = 0; k < MXFS_GLUE_MOUNTS_MAX; k++)
		INIT_WORK(&mxfs_answer_works[k], mxfs_answer_fn);
	err = xfs_mxfs_register(&mxfs_xfs_ops);
	if (err)
		destroy_workqueue(mxfs_answer_wq);
	return err;
}

void mxfs_glue_xfs_unregister(void)
{
	xfs_mxfs_unregister(&mxfs_xfs_ops);
	/* No mount is left (each pins the module), so no work can be queued any more. */
	destroy_workqueue(mxfs_answer_wq);
}
