//! The node's cache of decoded objects.
//!
//! Every message about a key reads its stored record, and a record's decoding (sibling values
//! copied out, actor names interned, version vectors rebuilt) costs several times what cloning
//! the decoded object does. The node keeps the objects it last read or wrote, by key, beside the
//! hash-tree entry of their stored bytes, so a hot key is decoded once and an update of it need
//! not read the old bytes to take them out of its tree.
//!
//! Coherence: a node is the only writer of its data records and every write goes through its
//! save and remove paths, which update this cache in the same step; a restarted node starts
//! empty. Debug builds check every hit against the store (see `Node::read_record`).
//!
//! Bounded by bytes: each entry counts its stored record's bytes and its key's, plus
//! [`ENTRY_OVERHEAD_BYTES`]; past the node's `object_cache_bytes_max` it starts over empty
//! (simple, deterministic, and a hot set smaller than the bound is back after one pass). A
//! bound by count let a cache of large objects hold gigabytes, and one of small objects start
//! over every few thousand writes of a keyspace larger than the count.

use driftkv_ring::PartitionId;
use driftkv_wire::{Key, Object};

use crate::fasthash::FastMap;

/// What an entry costs beyond its record and key bytes (the decoded form's allocations, the
/// table's slot), as the bound counts it.
pub const ENTRY_OVERHEAD_BYTES: usize = 160;

/// A decoded record: its partition (a key has one, the check is cheap), the object, and the
/// hash-tree entry of the stored bytes (`aae::entry_hash`).
#[derive(Clone, Debug)]
pub struct Cached {
    pub partition: PartitionId,
    pub object: Object,
    pub entry: u64,
    /// The stored record's bytes.
    pub bytes: usize,
}

#[derive(Debug)]
pub struct ObjectCache {
    map: FastMap<Key, Cached>,
    /// What the entries count, by [`ObjectCache::cost`].
    bytes: usize,
    bytes_max: usize,
}

impl ObjectCache {
    /// An empty cache holding at most `bytes_max` bytes of entries.
    pub fn new(bytes_max: usize) -> ObjectCache {
        ObjectCache {
            map: FastMap::default(),
            bytes: 0,
            bytes_max,
        }
    }

    fn cost(key: &Key, cached: &Cached) -> usize {
        cached
            .bytes
            .saturating_add(key.key().len())
            .saturating_add(key.bucket().len())
            .saturating_add(ENTRY_OVERHEAD_BYTES)
    }

    pub fn get(&self, partition: PartitionId, key: &Key) -> Option<&Cached> {
        self.map.get(key).filter(|c| c.partition == partition)
    }

    pub fn insert(&mut self, key: &Key, cached: Cached) {
        let cost = Self::cost(key, &cached);
        if let Some(slot) = self.map.get_mut(key) {
            self.bytes = self.bytes.saturating_sub(Self::cost(key, slot)) + cost;
            *slot = cached;
        } else {
            self.bytes = self.bytes.saturating_add(cost);
            self.map.insert(key.clone(), cached);
        }
        if self.bytes > self.bytes_max {
            // Start over, keeping the entry just made (unless it alone passes the bound).
            let kept = self.map.remove(key).filter(|_| cost <= self.bytes_max);
            self.map.clear();
            self.bytes = 0;
            if let Some(kept) = kept {
                self.bytes = cost;
                self.map.insert(key.clone(), kept);
            }
        }
    }

    pub fn remove(&mut self, key: &Key) {
        if let Some(old) = self.map.remove(key) {
            self.bytes = self.bytes.saturating_sub(Self::cost(key, &old));
        }
    }

    /// Entries and their counted bytes.
    pub fn usage(&self) -> (usize, usize) {
        (self.map.len(), self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use driftkv_causal::register::Register;

    use super::*;

    fn cached(bytes: usize) -> Cached {
        Cached {
            partition: PartitionId(0),
            object: Object::Register(Register::new()),
            entry: 0,
            bytes,
        }
    }

    fn key(i: usize) -> Key {
        Key::default_bucket(format!("k{i}"))
    }

    #[test]
    fn the_cache_counts_bytes_and_starts_over_past_its_bound_keeping_the_newest() {
        let one = ObjectCache::cost(&key(0), &cached(1000));
        let mut cache = ObjectCache::new(3 * one);
        for i in 0..3 {
            cache.insert(&key(i), cached(1000));
        }
        assert_eq!(cache.usage(), (3, 3 * one));
        // Replacing an entry counts the new one instead of the old.
        cache.insert(&key(0), cached(1000));
        assert_eq!(cache.usage(), (3, 3 * one));
        cache.insert(&key(3), cached(1000));
        assert_eq!(
            cache.usage(),
            (1, one),
            "started over with the newest entry"
        );
        assert!(cache.get(PartitionId(0), &key(3)).is_some());
        cache.remove(&key(3));
        assert_eq!(cache.usage(), (0, 0));
        // An entry larger than the whole bound is not kept at all.
        cache.insert(&key(4), cached(10 * one));
        assert_eq!(cache.usage(), (0, 0));
    }
}
