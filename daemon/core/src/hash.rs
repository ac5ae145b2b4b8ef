//! Rendezvous (highest-random-weight) hashing: the master of a resource is the live member
//! with the highest weight `fnv1a64(node, resource)`. Fixed and keyless, so every node (and
//! every build) computes the same master.

use crate::{NodeId, NodeSet, ResourceId};

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a_u64(mut h: u64, v: u64) -> u64 {
    for byte in v.to_le_bytes() {
        h ^= u64::from(byte);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// The rendezvous weight of `node` for `resource`: FNV-1a over the little-endian bytes of
/// `(node, kind, volume, a, b)`, followed by a 64-bit finaliser (splitmix64) so that nearby
/// inputs spread well.
pub fn rendezvous_weight(node: NodeId, resource: &ResourceId) -> u64 {
    let mut h = FNV_OFFSET_BASIS;
    h = fnv1a_u64(h, u64::from(node));
    h = fnv1a_u64(h, resource.kind as u64);
    h = fnv1a_u64(h, resource.volume);
    h = fnv1a_u64(h, resource.a);
    h = fnv1a_u64(h, resource.b);
    // splitmix64 finaliser.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The master of `resource` among `members`: highest weight, ties broken by the lower id.
/// `None` when `members` is empty.
pub fn master_of(members: NodeSet, resource: &ResourceId) -> Option<NodeId> {
    let mut best: Option<(u64, NodeId)> = None;
    for node in members.iter() {
        let w = rendezvous_weight(node, resource);
        match best {
            Some((bw, _)) if bw >= w => {}
            _ => best = Some((w, node)),
        }
    }
    best.map(|(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_is_a_member_and_stable() {
        let all = NodeSet::first(5);
        for ino in 0..200 {
            let r = ResourceId::inode(1, ino);
            let m = master_of(all, &r).unwrap();
            assert!(all.contains(m));
            // Removing a node that is not the master keeps the master (rendezvous property).
            for gone in all.iter().filter(|n| *n != m) {
                assert_eq!(master_of(all.without(gone), &r), Some(m));
            }
        }
        assert_eq!(master_of(NodeSet::EMPTY, &ResourceId::inode(1, 1)), None);
    }

    #[test]
    fn masters_spread_over_nodes() {
        let all = NodeSet::first(4);
        let mut count = [0u32; 4];
        for ino in 0..4000 {
            count[master_of(all, &ResourceId::inode(7, ino)).unwrap() as usize] += 1;
        }
        for c in count {
            assert!((800..1200).contains(&c), "{count:?}");
        }
    }

    #[test]
    fn weight_is_fixed() {
        // Pinned: a change here changes mastering between versions of mxfsd.
        assert_eq!(
            rendezvous_weight(0, &ResourceId::inode(1, 0)),
            0x2e3e_acf7_7b48_e70c
        );
        assert_eq!(
            rendezvous_weight(1, &ResourceId::inode(1, 1)),
            0xf359_499d_0d18_26e5
        );
        assert_eq!(
            rendezvous_weight(2, &ResourceId::inode(1, 12345)),
            0x109f_aad8_b676_c45a
        );
        assert_eq!(
            rendezvous_weight(3, &ResourceId::extent(2, 7, 1 << 20)),
            0x920a_020e_4d90_7635
        );
    }
}
