//! Keys and the objects stored under them: registers, counters and sets.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use driftkv_causal::register::MergeOutcome;
use driftkv_causal::{ConflictMode, Register, VersionVector};
use driftkv_crdt::{AwSet, Crdt, PnCounter};

/// A key in a bucket. The bucket `default` is the one `/kv/{key}` addresses.
#[derive(Clone, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    pub bucket: Bytes,
    pub key: Bytes,
}

impl PartialEq for Key {
    /// Byte equality of both parts, as derived; but a key is mostly compared with clones of
    /// itself (maps of in-flight work, caches, the simulator's oracle), which share their
    /// bytes, and short keys are compared in line instead of by a call out to `memcmp`.
    fn eq(&self, other: &Key) -> bool {
        same_bytes(&self.key, &other.key) && same_bytes(&self.bucket, &other.bucket)
    }
}

impl std::hash::Hash for Key {
    /// As equality sees it (and as a derived hash would be): the bucket's bytes, the key's.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bucket.hash(state);
        self.key.hash(state);
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
        Key {
            bucket: bucket.into(),
            key: key.into(),
        }
    }

    pub fn default_bucket(key: impl Into<Bytes>) -> Self {
        Key::new(Bytes::from_static(b"default"), key)
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}",
            String::from_utf8_lossy(&self.bucket),
            String::from_utf8_lossy(&self.key)
        )
    }
}

/// The kind of object a key holds; a request for another kind is a wrong-type error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ObjectKind {
    Register,
    Counter,
    Set,
}

impl ObjectKind {
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Register => "register",
            ObjectKind::Counter => "counter",
            ObjectKind::Set => "set",
        }
    }
}

/// The state of one key on one replica.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Object {
    Register(Register),
    Counter(PnCounter),
    Set(AwSet),
}

impl Object {
    pub fn empty(kind: ObjectKind) -> Object {
        match kind {
            ObjectKind::Register => Object::Register(Register::new()),
            ObjectKind::Counter => Object::Counter(PnCounter::new()),
            ObjectKind::Set => Object::Set(AwSet::new()),
        }
    }

    pub fn kind(&self) -> ObjectKind {
        match self {
            Object::Register(_) => ObjectKind::Register,
            Object::Counter(_) => ObjectKind::Counter,
            Object::Set(_) => ObjectKind::Set,
        }
    }

    /// The version vector shown to people: a register's or set's context; counters have none.
    pub fn version_vector(&self) -> Option<&VersionVector> {
        match self {
            Object::Register(r) => Some(r.context()),
            Object::Set(s) => Some(s.context()),
            Object::Counter(_) => None,
        }
    }

    /// Joins another replica's state of the same key into this one.
    ///
    /// Two replicas can create one key concurrently as different kinds (a SET on one node, an
    /// INCR on another). That is resolved deterministically, as a join must be: the greater
    /// kind (register < counter < set) wins and the merge reports a conflict.
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
            let shorter = Key::new(ka.bucket.clone(), ka.key.slice(..a.len() / 2));
            proptest::prop_assert_eq!(ka == shorter, a.len() / 2 == a.len());
        }
    }
}
