//! A small ordered map kept as one sorted vector.
//!
//! Version vectors and sibling sets hold a handful of entries (one per replica that wrote the
//! key), and they are decoded, cloned, merged and dropped on every replica write. A `BTreeMap`
//! costs an allocation per node and pointer chasing per lookup; one sorted vector costs a single
//! allocation and a scan of a few contiguous entries. Larger maps (a thousand-node cluster's
//! vectors) still look up by binary search.
//!
//! It serializes as a map, exactly as a `BTreeMap` with the same entries does (same postcard
//! bytes, same JSON), so the stored and wire formats do not depend on this choice.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Entries sorted by key, each key once.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SortedMap<K, V> {
    entries: Vec<(K, V)>,
}

impl<K, V> Default for SortedMap<K, V> {
    fn default() -> Self {
        SortedMap {
            entries: Vec::new(),
        }
    }
}

impl<K: Ord, V> SortedMap<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    fn find(&self, key: &K) -> Result<usize, usize> {
        self.entries.binary_search_by(|(k, _)| k.cmp(key))
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.find(key).ok().map(|i| &self.entries[i].1)
    }

    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        match self.find(key) {
            Ok(i) => Some(&mut self.entries[i].1),
            Err(_) => None,
        }
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.find(key).is_ok()
    }

    /// Inserts or replaces; returns the value replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    /// The value of `key`, inserted with `make` first if absent.
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        let i = match self.find(&key) {
            Ok(i) => i,
            Err(i) => {
                self.entries.insert(i, (key, make()));
                i
            }
        };
        &mut self.entries[i].1
    }

    /// Inserts (or replaces) every entry of `batch` as `insert` one by one would, a repeated
    /// key's last value winning, in one merge: O(len + batch·log batch) instead of a shift of
    /// the vector per entry (a large cluster's member table learns members by the hundred).
    pub fn insert_all(&mut self, mut batch: Vec<(K, V)>) {
        if batch.is_empty() {
            return;
        }
        batch.sort_by(|a, b| a.0.cmp(&b.0));
        // Of equal keys (now adjacent, in input order) the first key stays with the last value,
        // as inserting them one by one leaves it.
        batch.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                std::mem::swap(&mut later.1, &mut kept.1);
            }
            same
        });
        let old = std::mem::take(&mut self.entries);
        let mut merged = Vec::with_capacity(old.len() + batch.len());
        let mut new = batch.into_iter().peekable();
        for (k, v) in old {
            while let Some(n) = new.next_if(|n| n.0 < k) {
                merged.push(n);
            }
            match new.next_if(|n| n.0 == k) {
                // As `insert` does: the stored key stays, the value is replaced.
                Some((_, value)) => merged.push((k, value)),
                None => merged.push((k, v)),
            }
        }
        merged.extend(new);
        self.entries = merged;
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.entries.retain_mut(|(k, v)| keep(k, v));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> + ExactSizeIterator + Clone {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// Entries in key order, values mutable.
    pub fn iter_mut(
        &mut self,
    ) -> impl DoubleEndedIterator<Item = (&K, &mut V)> + ExactSizeIterator {
        self.entries.iter_mut().map(|(k, v)| (&*k, v))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + ExactSizeIterator + Clone {
        self.entries.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator + Clone {
        self.entries.iter().map(|(_, v)| v)
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for SortedMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

impl<K: Serialize, V: Serialize> Serialize for SortedMap<K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.entries.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>> Deserialize<'de> for SortedMap<K, V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<K, V>(PhantomData<(K, V)>);

        impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>> Visitor<'de> for MapVisitor<K, V> {
            type Value = SortedMap<K, V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                // The length comes from the input: trust it for a small reservation only.
                let mut map = SortedMap {
                    entries: Vec::with_capacity(access.size_hint().unwrap_or(0).min(64)),
                };
                // Encodings written by this type are sorted: appended as they come. Anything
                // else (JSON written by hand, an old encoding, a hostile peer's reversed list) is
                // sorted once at the end, not placed entry by entry (quadratic in the input); a
                // repeated key keeps the last value, as a `BTreeMap` would.
                let mut sorted = true;
                while let Some((k, v)) = access.next_entry::<K, V>()? {
                    if let Some((last, _)) = map.entries.last()
                        && *last >= k
                    {
                        sorted = false;
                    }
                    map.entries.push((k, v));
                }
                if !sorted {
                    // Reversed, then sorted stably: of equal keys, the one that came last is first.
                    map.entries.reverse();
                    map.entries.sort_by(|a, b| a.0.cmp(&b.0));
                    map.entries.dedup_by(|later, first| later.0 == first.0);
                }
                Ok(map)
            }
        }

        deserializer.deserialize_map(MapVisitor(PhantomData))
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for SortedMap<K, V> {
    /// As a `BTreeMap` collects: sorted, a repeated key's last value winning.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = SortedMap::new();
        map.insert_all(iter.into_iter().collect());
        map
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Same operations, same answers and same encodings as a `BTreeMap`.
        #[test]
        fn behaves_and_encodes_like_a_btree_map(
            ops in proptest::collection::vec((0u8..6, 0u16..40, any::<u32>()), 0..80),
            batch in proptest::collection::vec((0u16..40, any::<u32>()), 0..12),
        ) {
            let mut ours = SortedMap::new();
            let mut model = BTreeMap::new();
            for (op, k, v) in ops {
                match op {
                    0 => prop_assert_eq!(ours.insert(k, v), model.insert(k, v)),
                    1 => {
                        ours.retain(|key, _| key % 3 != (v % 3) as u16);
                        model.retain(|key, _| key % 3 != (v % 3) as u16);
                    }
                    2 => {
                        ours.insert_all(batch.iter().map(|(bk, bv)| (bk ^ (k % 8), bv ^ v)).collect());
                        model.extend(batch.iter().map(|(bk, bv)| (bk ^ (k % 8), bv ^ v)));
                    }
                    3 => {
                        *ours.get_or_insert_with(k, || v) += 1;
                        *model.entry(k).or_insert_with(|| v) += 1;
                    }
                    4 => {
                        ours.iter_mut().for_each(|(key, val)| *val ^= u32::from(*key) ^ v);
                        model.iter_mut().for_each(|(key, val)| *val ^= u32::from(*key) ^ v);
                    }
                    _ => prop_assert_eq!(ours.get(&k), model.get(&k)),
                }
                prop_assert!(ours.iter().eq(model.iter()));
            }
            let bytes = postcard::to_allocvec(&ours).unwrap();
            prop_assert_eq!(&bytes, &postcard::to_allocvec(&model).unwrap());
            prop_assert_eq!(postcard::from_bytes::<SortedMap<u16, u32>>(&bytes).unwrap(), ours.clone());
            let ours_s: SortedMap<String, u32> = ours.iter().map(|(k, v)| (k.to_string(), *v)).collect();
            let model_s: BTreeMap<String, u32> = model.iter().map(|(k, v)| (k.to_string(), *v)).collect();
            prop_assert_eq!(serde_json::to_string(&ours_s).unwrap(), serde_json::to_string(&model_s).unwrap());
        }

        /// Entries out of order or repeated (not written by this type) still decode to a sorted
        /// map, the last value of a repeated key winning.
        #[test]
        fn unsorted_input_decodes_sorted(pairs in proptest::collection::vec((0u16..20, any::<u32>()), 0..30)) {
            let json = format!(
                "{{{}}}",
                pairs.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect::<Vec<_>>().join(",")
            );
            let ours: SortedMap<String, u32> = serde_json::from_str(&json).unwrap();
            let model: BTreeMap<String, u32> = serde_json::from_str(&json).unwrap();
            prop_assert!(ours.iter().eq(model.iter()));
        }

        /// Collected as a `BTreeMap` collects: sorted, the last value of a repeated key.
        #[test]
        fn collects_like_a_btree_map(pairs in proptest::collection::vec((0u16..30, any::<u32>()), 0..60)) {
            let ours: SortedMap<u16, u32> = pairs.iter().copied().collect();
            let model: BTreeMap<u16, u32> = pairs.iter().copied().collect();
            prop_assert!(ours.iter().eq(model.iter()));
        }
    }
}
