//! The storage boundary: a synchronous byte key-value store the core reads and writes.
//!
//! Synchronous on purpose (as raft-rs's `Storage`): the embedded engines behind it are
//! synchronous, and a sans-io core cannot await. Durability is the caller's loop: after a batch
//! of inputs it calls [`Store::sync`] (group commit) before sending what the batch produced, so
//! nothing is acknowledged before it is durable under the configured policy.

use std::collections::BTreeSet;

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
    /// Calls `f` once with the value of `key` (`None`: absent), borrowed where the backend can
    /// lend it: the core decodes a record in place instead of copying it first.
    fn get_with(&self, key: &[u8], f: &mut dyn FnMut(Option<&[u8]>)) -> Result<(), StoreError> {
        f(self.get(key)?.as_deref());
        Ok(())
    }
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError>;
    /// [`Store::put`] of buffers the caller no longer needs: a backend that keeps them takes
    /// them as they are.
    fn put_owned(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), StoreError> {
        self.put(&key, &value)
    }
    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError>;
    /// Up to `limit` entries whose key starts with `prefix` and sorts strictly after `after`
    /// (from the start of the prefix when `None`), in key order.
    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StoreError>;
    /// [`Store::scan`], each entry lent to `f` in turn instead of copied out (a backend that
    /// can lend its entries does; the default copies them).
    fn scan_with(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        f: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), StoreError> {
        for (key, value) in self.scan(prefix, after, limit)? {
            f(&key, &value);
        }
        Ok(())
    }
    /// Makes every write so far durable (a no-op under [`Durability::None`]).
    fn sync(&mut self) -> Result<(), StoreError>;
}

/// The point index: looked up, never iterated (see `fasthash`).
type KeyIndex = crate::fasthash::FastMap<IndexKey, Vec<u8>>;

/// A key as the point index holds it: in line up to [`INLINE_KEY`] bytes (a record key is
/// about thirty), so a lookup compares it where the table's probe already is, instead of
/// following a pointer to bytes that are rarely in cache; longer keys on the heap. Hashes and
/// compares as its bytes do, so the index is looked up by `&[u8]`.
#[derive(Clone, Debug)]
enum IndexKey {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Heap(Box<[u8]>),
}

/// Bytes of a key kept in line (an entry of the index, with its value's vector, is then one
/// 64-byte cache line).
const INLINE_KEY: usize = 38;
const _: () = assert!(std::mem::size_of::<(IndexKey, Vec<u8>)>() == 64);

impl IndexKey {
    fn new(key: &[u8]) -> IndexKey {
        if key.len() > INLINE_KEY {
            return IndexKey::Heap(key.into());
        }
        let mut bytes = [0; INLINE_KEY];
        bytes[..key.len()].copy_from_slice(key);
        IndexKey::Inline {
            len: key.len() as u8,
            bytes,
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            IndexKey::Inline { len, bytes } => &bytes[..*len as usize],
            IndexKey::Heap(bytes) => bytes,
        }
    }
}

impl std::borrow::Borrow<[u8]> for IndexKey {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::hash::Hash for IndexKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl PartialEq for IndexKey {
    fn eq(&self, other: &IndexKey) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for IndexKey {}

/// A key as the ordered set holds it: its first sixteen bytes as a big-endian number (zero
/// padded), then the key. The pairs sort exactly as the keys' bytes do (where the numbers
/// differ, the first differing byte, or the end of the shorter key, decides alike; where they
/// are equal the keys decide), and most comparisons end at the number, in line, where comparing
/// the bytes calls out to `memcmp` (record keys share their first bytes within a partition, but
/// rarely all sixteen). The key is a boxed slice (no capacity word): 32 bytes an entry, so a
/// search reads fewer cache lines of each tree node.
type Ordered = (u128, Box<[u8]>);

fn ordered(key: Vec<u8>) -> Ordered {
    (lead(&key), key.into_boxed_slice())
}

fn lead(key: &[u8]) -> u128 {
    match key.first_chunk::<16>() {
        Some(first) => u128::from_be_bytes(*first),
        None => key
            .iter()
            .enumerate()
            .fold(0, |n, (i, &b)| n | u128::from(b) << (8 * (15 - i))),
    }
}

/// An in-memory store that models a disk: `sync` makes every write so far durable and `crash`
/// loses the writes since the last one. Used by tests and the simulator.
///
/// One layer holds every record, synced or not: a hash map (point reads, the hot path) beside
/// an ordered set of its keys (scans). What a write since the last sync replaced sits in an
/// undo log: a sync forgets the log, a crash plays it backwards. So a write costs one map
/// update and a log push, and a sync costs nothing but the log's release.
#[derive(Clone, Debug, Default)]
pub struct MemStore {
    data: KeyIndex,
    /// `data`'s keys in order (see [`Ordered`]).
    order: BTreeSet<Ordered>,
    /// Each unsynced write's key and the value it replaced (`None`: the key was absent),
    /// oldest first.
    undo: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Under [`Durability::None`] (never synced) only a key's first write needs undoing: the
    /// keys already in the log, so it stays as large as the data, not the write history.
    logged: crate::fasthash::FastMap<Vec<u8>, ()>,
    durability: Durability,
    faults: StoreFaults,
}

/// Storage faults a [`MemStore`] injects, as a failing disk would: a sync that fails leaves its
/// writes unsynced (a crash before a later good sync loses them), a write that fails changes
/// nothing. Drawn from the store's own seeded stream, so a simulation stays reproducible.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreFaults {
    /// Syncs that fail next, before any chance is drawn (for tests).
    pub fail_next_syncs: u32,
    /// The chance that a sync fails, in parts per million.
    pub sync_fail_ppm: u32,
    /// The chance that a put or delete fails, in parts per million.
    pub write_fail_ppm: u32,
    /// The state of the draws.
    pub seed: u64,
}

/// Parts per million: the unit of [`StoreFaults`]' chances.
pub const PPM: u32 = 1_000_000;

impl StoreFaults {
    /// One draw: true with a chance of `ppm` parts per million (no draw when it is zero, so a
    /// store without faults behaves exactly as before).
    fn strikes(&mut self, ppm: u32) -> bool {
        if ppm == 0 {
            return false;
        }
        // splitmix64: small, seedable, and good enough for fault dice.
        self.seed = self.seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        z % u64::from(PPM) < u64::from(ppm)
    }

    fn sync_fails(&mut self) -> bool {
        if self.fail_next_syncs > 0 {
            self.fail_next_syncs -= 1;
            return true;
        }
        let ppm = self.sync_fail_ppm;
        self.strikes(ppm)
    }

    fn write_fails(&mut self) -> bool {
        let ppm = self.write_fail_ppm;
        self.strikes(ppm)
    }
}

impl MemStore {
    pub fn new(durability: Durability) -> Self {
        MemStore {
            durability,
            ..Default::default()
        }
    }

    /// An empty store with room for `keys` keys before its index grows.
    pub fn with_capacity(durability: Durability, keys: usize) -> Self {
        let mut data = KeyIndex::default();
        data.reserve(keys);
        MemStore {
            data,
            durability,
            ..Default::default()
        }
    }

    /// The value of `key` as [`Store::get`] returns it, borrowed instead of copied.
    pub fn get_ref(&self, key: &[u8]) -> Option<&[u8]> {
        self.data.get(key).map(Vec::as_slice)
    }

    /// Storage faults to inject from now on (see [`StoreFaults`]).
    pub fn set_faults(&mut self, faults: StoreFaults) {
        self.faults = faults;
    }

    /// Ends the injected faults, returning them (to be set again).
    pub fn take_faults(&mut self) -> StoreFaults {
        std::mem::take(&mut self.faults)
    }

    /// Makes the next `n` syncs fail.
    pub fn fail_next_syncs(&mut self, n: u32) {
        self.faults.fail_next_syncs = n;
    }

    /// Writes not yet made durable by a sync.
    pub fn unsynced_writes(&self) -> usize {
        self.undo.len()
    }

    /// Loses everything not synced, as a power cut would.
    pub fn crash(&mut self) {
        while let Some((key, old)) = self.undo.pop() {
            self.set(key, old);
        }
        self.logged.clear();
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// The keys that start with `prefix`, in order, borrowed.
    pub fn keys_with_prefix<'a>(&'a self, prefix: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
        self.keys_from(prefix, None)
    }

    /// The keys that start with `prefix` and sort strictly after `after` (all of them when
    /// `None`), in order, borrowed: what a scan walks.
    fn keys_from<'a>(
        &'a self,
        prefix: &'a [u8],
        after: Option<&[u8]>,
    ) -> impl Iterator<Item = &'a [u8]> {
        use std::ops::Bound;
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(ordered(a.to_vec())),
            _ => Bound::Included(ordered(prefix.to_vec())),
        };
        self.order
            .range((start, Bound::Unbounded))
            .map(|(_, k)| &k[..])
            .take_while(move |k| k.starts_with(prefix))
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Sets `key` to `value` (`None`: absent), returning what it replaced.
    fn set(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) -> Option<Vec<u8>> {
        match value {
            Some(value) => match self.data.get_mut(&key[..]) {
                Some(slot) => Some(std::mem::replace(slot, value)),
                None => {
                    self.insert_new(key, value);
                    None
                }
            },
            None => {
                let old = self.data.remove(&key[..]);
                if old.is_some() {
                    self.order.remove(&ordered(key));
                }
                old
            }
        }
    }

    /// Enters a key `data` does not hold.
    fn insert_new(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.data.insert(IndexKey::new(&key), value);
        self.order.insert(ordered(key));
    }

    /// A write: applied at once, remembered for a crash until a sync makes it durable.
    fn write(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        let remember = match self.durability {
            Durability::EveryWrite => false,
            Durability::GroupCommit => true,
            Durability::None => !self.logged.contains_key(&key),
        };
        if !remember {
            self.set(key, value);
            return;
        }
        if self.durability == Durability::None {
            self.logged.insert(key.clone(), ());
        }
        // An overwrite (the common write) hands its key to the log; only a new key is copied.
        let old = match (value, self.data.get_mut(&key[..])) {
            (Some(value), Some(slot)) => Some(std::mem::replace(slot, value)),
            (Some(value), None) => {
                self.insert_new(key.clone(), value);
                None
            }
            (None, _) => {
                let old = self.set(key.clone(), None);
                self.undo.push((key, old));
                return;
            }
        };
        self.undo.push((key, old));
    }
}

impl Store for MemStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get_ref(key).map(<[u8]>::to_vec))
    }

    fn get_with(&self, key: &[u8], f: &mut dyn FnMut(Option<&[u8]>)) -> Result<(), StoreError> {
        f(self.get_ref(key));
        Ok(())
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.put_owned(key.to_vec(), value.to_vec())
    }

    fn put_owned(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), StoreError> {
        if self.faults.write_fails() {
            return Err(injected("write"));
        }
        self.write(key, Some(value));
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        if self.faults.write_fails() {
            return Err(injected("delete"));
        }
        self.write(key.to_vec(), None);
        Ok(())
    }

    fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Entries, StoreError> {
        Ok(self
            .keys_from(prefix, after)
            .take(limit)
            .map(|k| (k.to_vec(), self.data[k].clone()))
            .collect())
    }

    fn scan_with(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        f: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), StoreError> {
        for key in self.keys_from(prefix, after).take(limit) {
            f(key, &self.data[key]);
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        if self.faults.sync_fails() {
            return Err(injected("sync"));
        }
        // A policy of `None` never syncs on purpose; the OS would flush eventually, which the
        // simulator models as "survives only a clean shutdown".
        if self.durability != Durability::None {
            self.undo.clear();
        }
        Ok(())
    }
}

fn injected(what: &str) -> StoreError {
    StoreError::Io(format!("injected {what} failure"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_sync_leaves_its_writes_at_risk_until_a_good_one() {
        let mut s = MemStore::new(Durability::GroupCommit);
        s.put(b"a", b"1").unwrap();
        s.fail_next_syncs(1);
        assert!(s.sync().is_err());
        assert_eq!(s.unsynced_writes(), 1);
        s.crash();
        assert_eq!(
            s.get(b"a").unwrap(),
            None,
            "a failed sync made nothing durable"
        );
        s.put(b"a", b"2").unwrap();
        s.fail_next_syncs(1);
        assert!(s.sync().is_err());
        s.sync().unwrap();
        s.crash();
        assert_eq!(s.get(b"a").unwrap().as_deref(), Some(&b"2"[..]));
    }

    #[test]
    fn injected_write_failures_change_nothing_and_follow_their_seed() {
        let run = |seed| {
            let mut s = MemStore::new(Durability::GroupCommit);
            s.set_faults(StoreFaults {
                write_fail_ppm: PPM / 2,
                seed,
                ..StoreFaults::default()
            });
            let failed: Vec<bool> = (0..64u8).map(|i| s.put(&[i], b"v").is_err()).collect();
            for (i, f) in failed.iter().enumerate() {
                assert_eq!(s.get(&[i as u8]).unwrap().is_none(), *f);
            }
            failed
        };
        let a = run(7);
        assert_eq!(a, run(7), "the same seed fails the same writes");
        assert!(a.iter().any(|f| *f) && a.iter().any(|f| !*f));
    }

    proptest::proptest! {
        #[test]
        fn ordered_keys_sort_as_their_bytes(
            a in proptest::collection::vec(0u8..3, 0..24),
            b in proptest::collection::vec(0u8..3, 0..24),
        ) {
            proptest::prop_assert_eq!(ordered(a.clone()).cmp(&ordered(b.clone())), a.cmp(&b));
        }
    }

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

    #[derive(Clone, Debug)]
    enum Op {
        Put(u8, u8),
        Delete(u8),
        Sync,
        Crash,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (0u8..24, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
            2 => (0u8..24).prop_map(Op::Delete),
            1 => Just(Op::Sync),
            1 => Just(Op::Crash),
        ]
    }

    proptest::proptest! {
        /// The store against the obvious model (what was synced, what is current): reads and
        /// scans see the current state, a crash returns to the synced one, under every policy.
        /// Keys start with two bytes (`k / 4`, `k % 4`), so scans by a one-byte prefix, from a
        /// key on, are checked too; their lengths straddle what the index keeps in line.
        #[test]
        fn the_store_behaves_as_a_synced_and_a_current_map(
            ops in proptest::collection::vec(op(), 0..80),
            policy in 0..3usize,
        ) {
            let key = |k: u8| {
                // Of length 2, the most kept in line, and one more.
                let mut key = vec![k / 4, k % 4];
                key.resize([2, INLINE_KEY, INLINE_KEY + 1][k as usize % 3], 7);
                key
            };
            use std::collections::BTreeMap;
            let durability = [Durability::EveryWrite, Durability::GroupCommit, Durability::None][policy];
            let mut s = MemStore::new(durability);
            let mut synced: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            let mut current = synced.clone();
            for op in ops {
                match op {
                    Op::Put(k, v) => {
                        s.put(&key(k), &[v]).unwrap();
                        current.insert(key(k), vec![v]);
                    }
                    Op::Delete(k) => {
                        s.delete(&key(k)).unwrap();
                        current.remove(&key(k));
                    }
                    Op::Sync => {
                        s.sync().unwrap();
                        if durability != Durability::None {
                            synced = current.clone();
                        }
                    }
                    Op::Crash => {
                        s.crash();
                        current = synced.clone();
                    }
                }
                if durability == Durability::EveryWrite {
                    synced = current.clone();
                }
                let all: Vec<(Vec<u8>, Vec<u8>)> = current.clone().into_iter().collect();
                proptest::prop_assert_eq!(s.scan(b"", None, 100).unwrap(), all);
                proptest::prop_assert_eq!(s.len(), current.len());
                for k in 0u8..24 {
                    proptest::prop_assert_eq!(s.get(&key(k)).unwrap(), current.get(&key(k)).cloned());
                }
                for prefix in 0u8..6 {
                    for after in [None, Some(0u8), Some(2)] {
                        let after = after.map(|a| vec![prefix, a]);
                        let want: Vec<(Vec<u8>, Vec<u8>)> = current
                            .iter()
                            .filter(|(k, _)| k[0] == prefix && after.as_ref().is_none_or(|a| *k > a))
                            .take(3)
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        proptest::prop_assert_eq!(s.scan(&[prefix], after.as_deref(), 3).unwrap(), want.clone());
                        let mut lent = Vec::new();
                        s.scan_with(&[prefix], after.as_deref(), 3, &mut |k, v| lent.push((k.to_vec(), v.to_vec()))).unwrap();
                        proptest::prop_assert_eq!(lent, want);
                    }
                    let keys: Vec<Vec<u8>> = s.keys_with_prefix(&[prefix]).map(<[u8]>::to_vec).collect();
                    let want: Vec<Vec<u8>> = current.keys().filter(|k| k[0] == prefix).cloned().collect();
                    proptest::prop_assert_eq!(keys, want);
                }
            }
        }
    }
}
