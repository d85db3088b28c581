//! Active anti-entropy: per-partition hash trees and the pieces of the exchange.
//!
//! A partition's keys fall into [`SEGMENTS`] segments by a hash of the key. A segment's leaf is
//! the XOR of `entry_hash(record key, record bytes)` over its keys, so a write updates one leaf
//! in O(1) (XOR out the old entry, XOR in the new), and two replicas holding the same states
//! have the same leaves whatever order they learned them in. Leaves are grouped [`GROUP`] at a
//! time under middle hashes; an exchange compares middles, then the leaves under differing
//! middles, then the keys of differing segments, then moves only differing objects. An
//! exchange opens with the root alone, so a partition in sync costs two small messages.
//!
//! Trees live in memory. The node builds them from storage in the background, a batch of
//! records per tick (after every restart), and rebuilds one now and then the same way to check
//! that it still matches its partition.

use driftkv_wire::{Hash64, Key};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// Leaves per partition tree.
pub const SEGMENTS: usize = 1024;
/// Leaves under one middle hash.
pub const GROUP: usize = 32;
/// Middle hashes per tree.
pub const MIDS: usize = SEGMENTS / GROUP;

/// The segment of a key: independent of the bits that choose its partition (see
/// [`driftkv_ring::segment_hash`], which the key carries).
pub fn segment_of(key: &Key) -> u16 {
    (key.segment_hash() % SEGMENTS as u64) as u16
}

/// One key's contribution to its leaf: covers the key and its whole stored state. The record
/// is hashed in place, seeded by the hash of its key (no copy of either).
pub fn entry_hash(record_key: &[u8], record: &[u8]) -> u64 {
    xxh3_64_with_seed(record, xxh3_64(record_key))
}

/// A partition's hash tree: the leaves; middles and root are computed from them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tree {
    leaves: Vec<u64>,
}

impl Default for Tree {
    fn default() -> Self {
        Tree {
            leaves: vec![0; SEGMENTS],
        }
    }
}

impl Tree {
    /// Adds or removes (XOR is its own inverse) one entry.
    pub fn toggle(&mut self, segment: u16, entry: u64) {
        self.leaves[segment as usize % SEGMENTS] ^= entry;
    }

    /// The leaf of a segment, borrowed (to prefetch it).
    pub fn leaf_ref(&self, segment: u16) -> &u64 {
        &self.leaves[segment as usize % SEGMENTS]
    }

    pub fn leaf(&self, segment: u16) -> u64 {
        self.leaves[segment as usize % SEGMENTS]
    }

    pub fn mids(&self) -> Vec<Hash64> {
        self.leaves
            .chunks(GROUP)
            .map(|group| {
                let bytes: Vec<u8> = group.iter().flat_map(|l| l.to_le_bytes()).collect();
                Hash64(xxh3_64(&bytes))
            })
            .collect()
    }

    pub fn root(&self) -> Hash64 {
        let bytes: Vec<u8> = self.mids().iter().flat_map(|m| m.0.to_le_bytes()).collect();
        Hash64(xxh3_64_with_seed(&bytes, 1))
    }

    /// For every middle hash that differs from `theirs`, its index and the leaves under it.
    pub fn leaves_under_differing(&self, theirs: &[Hash64]) -> Vec<(u16, Vec<Hash64>)> {
        self.mids()
            .iter()
            .enumerate()
            .filter(|(group, m)| theirs.get(*group) != Some(m))
            .map(|(group, _)| {
                let leaves = &self.leaves[group * GROUP..(group + 1) * GROUP];
                (group as u16, leaves.iter().copied().map(Hash64).collect())
            })
            .collect()
    }

    /// The segments whose leaves differ from `theirs` (groups as [`Tree::leaves_under_differing`]
    /// gives them; out-of-range groups and leaves are ignored).
    pub fn differing_segments(&self, theirs: &[(u16, Vec<Hash64>)]) -> Vec<u16> {
        let mut out = Vec::new();
        for (group, leaves) in theirs {
            let group = *group as usize;
            if group >= MIDS {
                continue;
            }
            for (i, leaf) in leaves.iter().take(GROUP).enumerate() {
                let segment = group * GROUP + i;
                if self.leaves[segment] != leaf.0 {
                    out.push(segment as u16);
                }
            }
        }
        out
    }
}

/// Bounds and pace of anti-entropy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AaeConfig {
    /// Off: no exchanges (trees are still kept, to measure the raw protocol).
    pub enabled: bool,
    /// Time between exchanges this node starts.
    pub interval_ms: u64,
    /// An exchange not finished by then is abandoned.
    pub timeout_ms: u64,
    /// Differing segments handled per exchange; the rest wait for the next one.
    pub segments_per_exchange_max: usize,
    /// Objects in one message at most.
    pub objects_per_message_max: usize,
    /// Client requests since the last exchange decision above which a due exchange is put
    /// off: anti-entropy yields to client traffic (0: never).
    pub busy_requests: u64,
    /// Due exchanges put off in a row at most: busy traffic slows repair, never starves it.
    pub defer_max: u32,
}

impl Default for AaeConfig {
    fn default() -> Self {
        AaeConfig {
            enabled: true,
            interval_ms: 500,
            timeout_ms: 10_000,
            segments_per_exchange_max: 256,
            objects_per_message_max: 2_000,
            busy_requests: 1_000,
            defer_max: 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn trees_agree_whatever_the_order_of_updates(
            entries in proptest::collection::btree_map(any::<u16>(), any::<u64>(), 0..50),
            seed in any::<u64>(),
        ) {
            let list: Vec<(u16, u64)> = entries.into_iter().collect();
            let mut a = Tree::default();
            for (s, h) in &list {
                a.toggle(*s, *h);
            }
            let mut shuffled = list.clone();
            let n = shuffled.len().max(1);
            shuffled.rotate_left((seed as usize) % n);
            let mut b = Tree::default();
            // An entry added, replaced and replaced back ends where it started.
            for (s, h) in &shuffled {
                b.toggle(*s, 7);
                b.toggle(*s, 7);
                b.toggle(*s, *h);
            }
            prop_assert_eq!(a.root(), b.root());
            prop_assert_eq!(&a, &b);
        }
    }

    #[test]
    fn one_different_entry_is_found_by_descending() {
        let mut a = Tree::default();
        let mut b = Tree::default();
        for s in 0..SEGMENTS as u16 {
            a.toggle(s, s as u64 * 31 + 1);
            b.toggle(s, s as u64 * 31 + 1);
        }
        assert_eq!(a.root(), b.root());
        b.toggle(700, 99);
        assert_ne!(a.root(), b.root());
        let leaves = b.leaves_under_differing(&a.mids());
        assert_eq!(leaves.len(), 1, "one middle differs");
        assert_eq!(leaves[0].1.len(), GROUP);
        assert_eq!(a.differing_segments(&leaves), vec![700]);
    }

    #[test]
    fn segments_spread_keys() {
        let mut count = vec![0u32; SEGMENTS];
        for i in 0..20_000 {
            count[segment_of(&Key::default_bucket(format!("k{i}"))) as usize] += 1;
        }
        let max = *count.iter().max().unwrap();
        assert!(max < 50, "20000 keys over 1024 segments: fullest has {max}");
    }
}
