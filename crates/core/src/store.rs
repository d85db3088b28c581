//! The storage boundary: a synchronous byte key-value store the core reads and writes.
//!
//! Synchronous on purpose (as raft-rs's `Storage`): the embedded engines behind it are
//! synchronous, and a sans-io core cannot await. Durability is the caller's loop: after a batch
//! of inputs it calls [`Store::sync`] (group commit) before sending what the batch produced, so
//! nothing is acknowledged before it is durable under the configured policy.

use std::collections::{BTreeMap, BTreeSet};

/// Why a store operation failed. The node answers the request with an error and keeps serving.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("storage I/O failed: {0}")]
    Io(String),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
}

/// How long a write may wait before it is on stable storage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// fsync after every write: slowest, nothing acknowledged is ever lost.
    EveryWrite,
    /// Writes of one batch are synced once, before the batch's acknowledgements leave.
    #[default]
    GroupCommit,
    /// Never fsync explicitly: the OS decides. A crash loses recent writes.
    None,
}

impl std::str::FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "every-write" | "fsync" | "always" => Ok(Durability::EveryWrite),
            "group-commit" | "group" | "batch" => Ok(Durability::GroupCommit),
            "none" => Ok(Durability::None),
            other => Err(format!(
                "unknown durability {other:?} (expected every-write, group-commit or none)"
            )),
        }
    }
}

/// Key-value pairs in key order, as `scan` returns them.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// A byte-ordered key-value store. Keys sort as byte strings; `scan` walks them in order.
///
/// Every backend must pass the conformance suite in the storage crate.
pub trait Store {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError>;
    /// Up to `limit` entries whose key starts with `prefix` and sorts strictly after `after`
    /// (from the start of the prefix when `None`), in key order.
    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StoreError>;
    /// Makes every write so far durable (a no-op under [`Durability::None`]).
    fn sync(&mut self) -> Result<(), StoreError>;
}

/// The point index: looked up, never iterated (see `fasthash`).
type KeyIndex = crate::fasthash::FastMap<Vec<u8>, Vec<u8>>;

/// An in-memory store that models a disk: writes land in a volatile layer that `sync` makes
/// durable and `crash` throws away. Used by tests and the simulator.
///
/// The durable layer is a hash map (point reads, the hot path) beside an ordered set of its
/// keys (scans); the volatile layer holds the few writes since the last sync, in order.
#[derive(Clone, Debug, Default)]
pub struct MemStore {
    durable: KeyIndex,
    /// The durable layer's keys in order.
    order: BTreeSet<Vec<u8>>,
    /// Writes not yet synced: `None` is a delete.
    volatile: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    durability: Durability,
}

impl MemStore {
    pub fn new(durability: Durability) -> Self {
        MemStore {
            durability,
            ..Default::default()
        }
    }

    /// The value of `key` as [`Store::get`] returns it, borrowed instead of copied.
    pub fn get_ref(&self, key: &[u8]) -> Option<&[u8]> {
        if !self.volatile.is_empty()
            && let Some(v) = self.volatile.get(key)
        {
            return v.as_deref();
        }
        self.durable.get(key).map(Vec::as_slice)
    }

    /// Loses everything not synced, as a power cut would.
    pub fn crash(&mut self) {
        self.volatile.clear();
    }

    pub fn len(&self) -> usize {
        self.view().count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn view(&self) -> impl Iterator<Item = (&Vec<u8>, &Vec<u8>)> {
        let mut merged: BTreeMap<&Vec<u8>, Option<&Vec<u8>>> = self
            .order
            .iter()
            .map(|k| (k, self.durable.get(k)))
            .collect();
        for (k, v) in &self.volatile {
            merged.insert(k, v.as_ref());
        }
        merged.into_iter().filter_map(|(k, v)| v.map(|v| (k, v)))
    }

    fn settle(&mut self) {
        if self.durability == Durability::EveryWrite {
            self.flush();
        }
    }

    fn flush(&mut self) {
        for (k, v) in std::mem::take(&mut self.volatile) {
            match v {
                Some(v) => match self.durable.get_mut(&k) {
                    Some(old) => *old = v,
                    None => {
                        self.order.insert(k.clone());
                        self.durable.insert(k, v);
                    }
                },
                None => {
                    if self.durable.remove(&k).is_some() {
                        self.order.remove(&k);
                    }
                }
            }
        }
    }
}

impl Store for MemStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get_ref(key).map(<[u8]>::to_vec))
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.volatile.insert(key.to_vec(), Some(value.to_vec()));
        self.settle();
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.volatile.insert(key.to_vec(), None);
        self.settle();
        Ok(())
    }

    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StoreError> {
        use std::ops::Bound;
        // Walks both layers from the first candidate key in step, the volatile layer winning
        // ties, and stops at the first key past the prefix: O(limit + log n), not O(n) (the
        // simulator scans partitions of large stores on every tick).
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        let range = (start, Bound::Unbounded);
        let value_of = |k: &Vec<u8>| self.durable.get(k).expect("ordered keys are in the index");
        let mut durable = self
            .order
            .range::<[u8], _>(range)
            .map(|k| (k, value_of(k)))
            .peekable();
        let mut volatile = self.volatile.range::<[u8], _>(range).peekable();
        let mut out = Vec::new();
        while out.len() < limit {
            let (key, value) = match (durable.peek(), volatile.peek()) {
                (None, None) => break,
                (Some((dk, _)), Some((vk, _))) if dk < vk => {
                    let (k, v) = durable.next().expect("peeked");
                    (k, Some(v))
                }
                (Some((dk, _)), Some((vk, _))) if dk == vk => {
                    durable.next();
                    let (k, v) = volatile.next().expect("peeked");
                    (k, v.as_ref())
                }
                (Some(_), None) => {
                    let (k, v) = durable.next().expect("peeked");
                    (k, Some(v))
                }
                _ => {
                    let (k, v) = volatile.next().expect("peeked");
                    (k, v.as_ref())
                }
            };
            if !key.starts_with(prefix) {
                break;
            }
            if let Some(value) = value {
                out.push((key.clone(), value.clone()));
            }
        }
        Ok(out)
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        // A policy of `None` never syncs on purpose; the OS would flush eventually, which the
        // simulator models as "survives only a clean shutdown".
        if self.durability != Durability::None {
            self.flush();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_loses_exactly_the_unsynced_writes() {
        let mut s = MemStore::new(Durability::GroupCommit);
        s.put(b"a", b"1").unwrap();
        s.sync().unwrap();
        s.put(b"b", b"2").unwrap();
        s.delete(b"a").unwrap();
        assert_eq!(s.get(b"a").unwrap(), None);
        s.crash();
        assert_eq!(s.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(s.get(b"b").unwrap(), None);
    }

    #[test]
    fn scan_sees_unsynced_writes_and_deletes_over_synced_ones() {
        let mut s = MemStore::new(Durability::GroupCommit);
        for k in [&b"pa"[..], b"pb", b"pc", b"q"] {
            s.put(k, b"old").unwrap();
        }
        s.sync().unwrap();
        s.delete(b"pb").unwrap();
        s.put(b"pc", b"new").unwrap();
        s.put(b"pd", b"new").unwrap();
        assert_eq!(
            s.scan(b"p", None, 10).unwrap(),
            [
                (b"pa".to_vec(), b"old".to_vec()),
                (b"pc".to_vec(), b"new".to_vec()),
                (b"pd".to_vec(), b"new".to_vec()),
            ]
        );
        assert_eq!(
            s.scan(b"p", Some(b"pa"), 1).unwrap(),
            [(b"pc".to_vec(), b"new".to_vec())]
        );
        assert_eq!(s.scan(b"p", Some(b"a"), 1).unwrap()[0].0, b"pa");
        assert!(s.scan(b"p", Some(b"pd"), 10).unwrap().is_empty());
    }

    #[test]
    fn every_write_durability_survives_a_crash() {
        let mut s = MemStore::new(Durability::EveryWrite);
        s.put(b"a", b"1").unwrap();
        s.crash();
        assert_eq!(s.get(b"a").unwrap(), Some(b"1".to_vec()));
    }
}
