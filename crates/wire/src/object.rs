//! Keys and the objects stored under them: registers, counters, sets and maps.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use driftkv_causal::register::MergeOutcome;
use driftkv_causal::{ConflictMode, Register, VersionVector};
use driftkv_crdt::{AwSet, Crdt, OrMap, PnCounter};

/// A key in a bucket. The bucket `default` is the one `/kv/{key}` addresses.
///
/// A handle to one shared allocation: a key is cloned into every message, pending request,
/// cache entry and (in the simulator) history record about it, and moved with each of them. One
/// pointer clones with one reference count (where two `Bytes` took two calls through their
/// vtables) and keeps the messages that carry it small enough to be moved in line.
///
/// The key's placement hash ([`driftkv_ring::key_hash`]) is computed once, when the key is
/// made: every message about a key asks for its partition, and every map of keys hashes it.
#[derive(Clone)]
pub struct Key(Arc<KeyParts>);

struct KeyParts {
    bucket: Bytes,
    key: Bytes,
    hash: u64,
    segment_hash: u64,
}

/// The encoded shape: the two fields, exactly as the derived encoding of
/// `struct Key { bucket, key }` writes them (frames and records did not change when the key
/// became shared).
#[derive(Serialize)]
#[serde(rename = "Key")]
struct KeyRef<'a> {
    bucket: &'a Bytes,
    key: &'a Bytes,
}

#[derive(Deserialize)]
#[serde(rename = "Key")]
struct KeyOwned {
    bucket: Bytes,
    key: Bytes,
}

impl Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        KeyRef {
            bucket: self.bucket(),
            key: self.key(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        KeyOwned::deserialize(deserializer).map(|k| Key::new(k.bucket, k.key))
    }
}

impl PartialEq for Key {
    /// Byte equality of both parts; but a key is mostly compared with clones of itself (maps
    /// of in-flight work, caches, the simulator's oracle), which share their allocation, and
    /// short keys are compared in line instead of by a call out to `memcmp`.
    fn eq(&self, other: &Key) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
            || (same_bytes(self.key(), other.key()) && same_bytes(self.bucket(), other.bucket()))
    }
}

impl Eq for Key {}

impl Ord for Key {
    /// By bucket, then key, as bytes.
    fn cmp(&self, other: &Key) -> std::cmp::Ordering {
        if Arc::ptr_eq(&self.0, &other.0) {
            return std::cmp::Ordering::Equal;
        }
        (self.bucket(), self.key()).cmp(&(other.bucket(), other.key()))
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl std::hash::Hash for Key {
    /// The placement hash: a function of the bytes equality compares, so equal keys hash alike.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.0.hash);
    }
}

/// Byte equality, by pointer first (clones share their bytes) and in line for up to 16 bytes
/// (where a call out to `memcmp` costs more than the comparison).
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if std::ptr::eq(a.as_ptr(), b.as_ptr()) {
        return true;
    }
    if a.len() <= 16 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    a == b
}

impl Key {
    pub fn new(bucket: impl Into<Bytes>, key: impl Into<Bytes>) -> Self {
        let (bucket, key) = (bucket.into(), key.into());
        let hash = driftkv_ring::key_hash(&bucket, &key);
        let segment_hash = driftkv_ring::segment_hash(&bucket, &key);
        Key(Arc::new(KeyParts {
            bucket,
            key,
            hash,
            segment_hash,
        }))
    }

    pub fn default_bucket(key: impl Into<Bytes>) -> Self {
        Key::new(Bytes::from_static(b"default"), key)
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &Bytes {
        &self.0.bucket
    }

    /// The key within its bucket.
    pub fn key(&self) -> &Bytes {
        &self.0.key
    }

    /// Where the key lives: [`driftkv_ring::key_hash`] of its bucket and key.
    pub fn key_hash(&self) -> u64 {
        self.0.hash
    }

    /// Which anti-entropy segment holds it: [`driftkv_ring::segment_hash`] of its bucket and
    /// key (computed once, with the key: every record key the core makes holds its segment).
    pub fn segment_hash(&self) -> u64 {
        self.0.segment_hash
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}",
            String::from_utf8_lossy(self.bucket()),
            String::from_utf8_lossy(self.key())
        )
    }
}

/// The kind of object a key holds; a request for another kind is a wrong-type error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ObjectKind {
    Register,
    Counter,
    Set,
    Map,
}

impl ObjectKind {
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Register => "register",
            ObjectKind::Counter => "counter",
            ObjectKind::Set => "set",
            ObjectKind::Map => "map",
        }
    }

    /// The kind a name given by a client (a route, a `TYPE` filter) means.
    pub fn parse(name: &str) -> Option<ObjectKind> {
        match name {
            "register" => Some(ObjectKind::Register),
            "counter" => Some(ObjectKind::Counter),
            "set" => Some(ObjectKind::Set),
            "map" => Some(ObjectKind::Map),
            _ => None,
        }
    }
}

/// The state of one key on one replica.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Object {
    Register(Register),
    Counter(PnCounter),
    Set(AwSet),
    Map(OrMap),
}

impl Object {
    pub fn empty(kind: ObjectKind) -> Object {
        match kind {
            ObjectKind::Register => Object::Register(Register::new()),
            ObjectKind::Counter => Object::Counter(PnCounter::new()),
            ObjectKind::Set => Object::Set(AwSet::new()),
            ObjectKind::Map => Object::Map(OrMap::new()),
        }
    }

    /// Whether the key holds anything a reader sees at `now_ms` (wall-clock milliseconds): a
    /// live register value, a counter with counts, a set member, a map field. Deleted,
    /// expired and emptied keys do not: they are not listed and read as missing.
    pub fn is_live_at(&self, now_ms: u64) -> bool {
        match self {
            Object::Register(r) => r.values_at(now_ms).next().is_some(),
            Object::Counter(c) => c.has_counts(),
            Object::Set(s) => !s.is_empty(),
            Object::Map(m) => !m.is_empty(),
        }
    }

    pub fn kind(&self) -> ObjectKind {
        match self {
            Object::Register(_) => ObjectKind::Register,
            Object::Counter(_) => ObjectKind::Counter,
            Object::Set(_) => ObjectKind::Set,
            Object::Map(_) => ObjectKind::Map,
        }
    }

    /// The version vector shown to people: a register's, set's or map's context; counters
    /// have none.
    pub fn version_vector(&self) -> Option<&VersionVector> {
        match self {
            Object::Register(r) => Some(r.context()),
            Object::Set(s) => Some(s.context()),
            Object::Map(m) => Some(m.context()),
            Object::Counter(_) => None,
        }
    }

    /// Joins another replica's state of the same key into this one.
    ///
    /// Two replicas can create one key concurrently as different kinds (a SET on one node, an
    /// INCR on another). That is resolved deterministically, as a join must be: the greater
    /// kind (register < counter < set < map) wins and the merge reports a conflict.
    pub fn merge(&mut self, mode: ConflictMode, other: &Object) -> MergeOutcome {
        match (&mut *self, other) {
            (Object::Register(a), Object::Register(b)) => a.merge(mode, b),
            (Object::Counter(a), Object::Counter(b)) => MergeOutcome {
                changed: a.merge(b),
                ..Default::default()
            },
            (Object::Set(a), Object::Set(b)) => MergeOutcome {
                changed: a.merge(b),
                ..Default::default()
            },
            (Object::Map(a), Object::Map(b)) => MergeOutcome {
                changed: a.merge(b),
                ..Default::default()
            },
            (ours, theirs) => {
                let take = theirs.kind() > ours.kind();
                if take {
                    *ours = theirs.clone();
                }
                MergeOutcome {
                    concurrent: true,
                    changed: take,
                    ..Default::default()
                }
            }
        }
    }
}

impl std::fmt::Debug for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Object::Register(r) => write!(f, "Register{r:?}"),
            Object::Counter(c) => write!(f, "Counter{c:?}"),
            Object::Set(s) => write!(f, "{s:?}"),
            Object::Map(m) => write!(f, "{m:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn key_equality_is_byte_equality(
            bucket in proptest::collection::vec(0u8..3, 0..20),
            a in proptest::collection::vec(0u8..3, 0..40),
            b in proptest::collection::vec(0u8..3, 0..40),
        ) {
            let ka = Key::new(bucket.clone(), a.clone());
            let kb = Key::new(bucket.clone(), b.clone());
            proptest::prop_assert_eq!(ka == kb, a == b);
            proptest::prop_assert!(ka == ka.clone());
            // Equal bytes in another allocation, and the same bytes seen through a shorter slice.
            proptest::prop_assert!(ka == Key::new(bucket.clone(), a.clone()));
            let shorter = Key::new(ka.bucket().clone(), ka.key().slice(..a.len() / 2));
            proptest::prop_assert_eq!(ka == shorter, a.len() / 2 == a.len());
        }

        #[test]
        fn keys_order_and_encode_as_their_two_parts(
            buckets in proptest::collection::vec(proptest::collection::vec(0u8..3, 0..4), 2),
            keys in proptest::collection::vec(proptest::collection::vec(0u8..3, 0..6), 2),
        ) {
            let ka = Key::new(buckets[0].clone(), keys[0].clone());
            let kb = Key::new(buckets[1].clone(), keys[1].clone());
            proptest::prop_assert_eq!(
                ka.cmp(&kb),
                (&buckets[0], &keys[0]).cmp(&(&buckets[1], &keys[1]))
            );
            proptest::prop_assert_eq!(ka.cmp(&ka.clone()), std::cmp::Ordering::Equal);
            // The placement hash is the ring's, of the two parts.
            proptest::prop_assert_eq!(ka.key_hash(), driftkv_ring::key_hash(&buckets[0], &keys[0]));
            // The encoding of the struct the key was before it became a shared handle.
            #[derive(serde::Serialize)]
            #[serde(rename = "Key")]
            struct Plain<'a> {
                bucket: &'a [u8],
                key: &'a [u8],
            }
            let plain = Plain { bucket: &buckets[0], key: &keys[0] };
            let bytes = postcard::to_allocvec(&ka).expect("encodes");
            proptest::prop_assert_eq!(&bytes, &postcard::to_allocvec(&plain).expect("encodes"));
            let back: Key = postcard::from_bytes(&bytes).expect("decodes");
            proptest::prop_assert_eq!(back, ka);
        }
    }
}
