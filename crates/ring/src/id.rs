//! Identifiers the ring hands out and the stable key hash that maps keys onto partitions.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A cluster member's name. Cheap to clone: rings, preference lists and hints copy it a lot.
///
/// Ordered and hashed by its string, so sorting members is sorting names. Two ids sharing one
/// allocation compare equal without reading it, and that is the common case: ids are clones of
/// one another, or made from the same text on the same thread (names are interned with the
/// actors', see `driftkv_causal::actor::intern`).
#[derive(Clone, Debug)]
pub struct NodeId(Arc<str>);

impl std::hash::Hash for NodeId {
    /// As equality sees it: the name's text.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl PartialEq for NodeId {
    fn eq(&self, other: &NodeId) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || driftkv_causal::actor::name_cmp(&self.0, &other.0).is_eq()
    }
}

impl Eq for NodeId {}

impl Ord for NodeId {
    fn cmp(&self, other: &NodeId) -> std::cmp::Ordering {
        if Arc::ptr_eq(&self.0, &other.0) {
            return std::cmp::Ordering::Equal;
        }
        driftkv_causal::actor::name_cmp(&self.0, &other.0)
    }
}

impl PartialOrd for NodeId {
    fn partial_cmp(&self, other: &NodeId) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl NodeId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the two share one allocation (then they are equal; interned ids of one name
    /// usually do). Reads no bytes of either name.
    pub fn same_allocation(&self, other: &NodeId) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for NodeId {
    fn from(name: &str) -> Self {
        NodeId(driftkv_causal::actor::intern(name))
    }
}

impl From<Arc<str>> for NodeId {
    /// Shares the name (an actor's, say) instead of interning a copy.
    fn from(name: Arc<str>) -> Self {
        NodeId(name)
    }
}

impl From<String> for NodeId {
    fn from(name: String) -> Self {
        NodeId::from(name.as_str())
    }
}

impl AsRef<str> for NodeId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

// Sound because Ord/Eq/Hash are those of the `str` it holds (the pointer test only shortcuts), so
// maps keyed by `NodeId` can be queried with a plain `&str`.
impl Borrow<str> for NodeId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

// Written by hand (not via serde's `rc` feature) so the wire form is a plain string whatever
// features the workspace enables.
impl Serialize for NodeId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // The name is interned from the text the format hands over, never copied first.
        struct Name;
        impl serde::de::Visitor<'_> for Name {
            type Value = NodeId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a node name")
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<NodeId, E> {
                Ok(NodeId::from(name))
            }
        }
        deserializer.deserialize_str(Name)
    }
}

/// One of the ring's fixed partitions, `0..partitions`. Serialized as a plain `u32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PartitionId(pub u32);

impl fmt::Display for PartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The 64-bit hash that places a key on the ring.
///
/// xxh3-64 (default seed) over `len(bucket) as u64 LE ‖ bucket ‖ len(key) as u64 LE ‖ key`.
/// The length prefixes keep `("ab", "c")` and `("a", "bc")` apart. This value decides where
/// data lives on disk and across the cluster, so it must never change between releases: it is
/// a specified function, not `std`'s `DefaultHasher` (whose output is allowed to change), and
/// tests pin exact values.
pub fn key_hash(bucket: &[u8], key: &[u8]) -> u64 {
    hash_parts(
        0,
        &[
            &(bucket.len() as u64).to_le_bytes(),
            bucket,
            &(key.len() as u64).to_le_bytes(),
            key,
        ],
    )
}

/// The hash that chooses a key's anti-entropy segment (the core takes it modulo its segment
/// count): xxh3-64 seeded `0x00AA_E5E6` over `len(bucket) as u64 LE ‖ bucket ‖ key`. Like
/// [`key_hash`] it is part of the stored record layout (the segment is in every record's key)
/// and must never change; it is independent of the bits that place the key.
pub fn segment_hash(bucket: &[u8], key: &[u8]) -> u64 {
    hash_parts(
        0x00AA_E5E6,
        &[&(bucket.len() as u64).to_le_bytes(), bucket, key],
    )
}

/// xxh3-64 with `seed` over the concatenation of `parts`, without allocating it: short inputs
/// (the usual keys) are gathered on the stack and hashed in one call, which costs a fraction of
/// the streaming hasher's buffering; longer ones stream (the digest is the same either way).
#[inline]
pub fn hash_parts(seed: u64, parts: &[&[u8]]) -> u64 {
    const STACK: usize = 96;
    let total: usize = parts.iter().map(|p| p.len()).sum();
    if total <= STACK {
        let mut buf = [0u8; STACK];
        let mut at = 0;
        for part in parts {
            copy_small(&mut buf[at..at + part.len()], part);
            at += part.len();
        }
        return xxhash_rust::xxh3::xxh3_64_with_seed(&buf[..at], seed);
    }
    let mut hasher = xxhash_rust::xxh3::Xxh3::with_seed(seed);
    for part in parts {
        hasher.update(part);
    }
    hasher.digest()
}

/// `to.copy_from_slice(from)` for the few bytes of a key part, in line: a part of 4 to 16 bytes
/// is two word copies that may overlap, instead of a call out to `memcpy` (which costs more
/// than the copy at these sizes). `to` and `from` have the same length.
#[inline]
fn copy_small(to: &mut [u8], from: &[u8]) {
    let n = from.len();
    debug_assert_eq!(to.len(), n);
    match n {
        0 => {}
        1..=3 => {
            to[0] = from[0];
            to[n / 2] = from[n / 2];
            to[n - 1] = from[n - 1];
        }
        4..=7 => {
            let (head, tail) = (word4(&from[..4]), word4(&from[n - 4..]));
            to[..4].copy_from_slice(&head);
            to[n - 4..].copy_from_slice(&tail);
        }
        8..=16 => {
            let (head, tail) = (word8(&from[..8]), word8(&from[n - 8..]));
            to[..8].copy_from_slice(&head);
            to[n - 8..].copy_from_slice(&tail);
        }
        _ => to.copy_from_slice(from),
    }
}

fn word4(bytes: &[u8]) -> [u8; 4] {
    bytes.try_into().expect("four bytes")
}

fn word8(bytes: &[u8]) -> [u8; 8] {
    bytes.try_into().expect("eight bytes")
}

/// Where a node's `vnode`-th point sits on the hash circle: xxh3-64 over
/// `len(name) as u64 LE ‖ name ‖ vnode as u32 LE`. Stable for the same reason as [`key_hash`]:
/// a change would reshuffle every partition's owners.
pub(crate) fn vnode_hash(node: &NodeId, vnode: u32) -> u64 {
    let name = node.as_str().as_bytes();
    hash_parts(
        0,
        &[
            &(name.len() as u64).to_le_bytes(),
            name,
            &vnode.to_le_bytes(),
        ],
    )
}
