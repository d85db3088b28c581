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
//! Bounded: at [`OBJECTS_MAX`] entries it starts over empty (simple, deterministic, and a hot
//! set smaller than the bound is back after one pass).

use driftkv_ring::PartitionId;
use driftkv_wire::{Key, Object};

use crate::fasthash::FastMap;

/// Objects kept at most, per node.
pub const OBJECTS_MAX: usize = 32_768;

/// A decoded record: its partition (a key has one, the check is cheap), the object, and the
/// hash-tree entry of the stored bytes (`aae::entry_hash`).
#[derive(Clone, Debug)]
pub struct Cached {
    pub partition: PartitionId,
    pub object: Object,
    pub entry: u64,
}

#[derive(Debug, Default)]
pub struct ObjectCache {
    map: FastMap<Key, Cached>,
}

impl ObjectCache {
    pub fn get(&self, partition: PartitionId, key: &Key) -> Option<&Cached> {
        self.map.get(key).filter(|c| c.partition == partition)
    }

    pub fn insert(&mut self, key: &Key, cached: Cached) {
        if let Some(slot) = self.map.get_mut(key) {
            *slot = cached;
            return;
        }
        if self.map.len() >= OBJECTS_MAX {
            self.map.clear();
        }
        self.map.insert(key.clone(), cached);
    }

    pub fn remove(&mut self, key: &Key) {
        self.map.remove(key);
    }
}
