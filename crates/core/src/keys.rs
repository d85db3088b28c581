//! Layout of the core's records in the byte-ordered store.
//!
//! - `d` partition(u32 BE) segment(u16 BE) bucket_len(u16 BE) bucket key → an object
//! - `h` node_len(u8) node  <data key>                    → a hint: a copy held for `node`
//! - `m` name                                              → node metadata
//!
//! Data keys start with their ring partition so one partition is one contiguous range:
//! handoff walks a partition with one scan. Inside a partition they are grouped by their
//! anti-entropy segment (see `aae`), so an exchange reads exactly the segments that differ.

use driftkv_ring::{NodeId, PartitionId};
use driftkv_wire::Key;

pub const DATA: u8 = b'd';
pub const HINT: u8 = b'h';
pub const META: u8 = b'm';

pub fn data_key(partition: PartitionId, key: &Key) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + key.bucket().len() + key.key().len());
    out.push(DATA);
    out.extend_from_slice(&partition.0.to_be_bytes());
    out.extend_from_slice(&crate::aae::segment_of(key).to_be_bytes());
    out.extend_from_slice(&(key.bucket().len() as u16).to_be_bytes());
    out.extend_from_slice(key.bucket());
    out.extend_from_slice(key.key());
    out
}

/// The anti-entropy segment written into a key made by [`data_key`]; `None` if `raw` is not a
/// data key.
pub fn segment_of_data_key(raw: &[u8]) -> Option<u16> {
    split_data_key(raw).map(|(_, segment, _, _)| segment)
}

pub fn partition_prefix(partition: PartitionId) -> Vec<u8> {
    let mut out = vec![DATA];
    out.extend_from_slice(&partition.0.to_be_bytes());
    out
}

/// The records of one anti-entropy segment of a partition.
pub fn segment_prefix(partition: PartitionId, segment: u16) -> Vec<u8> {
    let mut out = partition_prefix(partition);
    out.extend_from_slice(&segment.to_be_bytes());
    out
}

/// The partition and key of a data record, or `None` if `raw` is not one.
pub fn parse_data_key(raw: &[u8]) -> Option<(PartitionId, Key)> {
    let (partition, _, bucket, key) = split_data_key(raw)?;
    Some((partition, Key::new(bucket.to_vec(), key.to_vec())))
}

/// A data key's partition, segment, bucket and key, borrowed.
fn split_data_key(raw: &[u8]) -> Option<(PartitionId, u16, &[u8], &[u8])> {
    let rest = raw.strip_prefix(&[DATA])?;
    let partition = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
    let segment = u16::from_be_bytes(rest.get(4..6)?.try_into().ok()?);
    let len = u16::from_be_bytes(rest.get(6..8)?.try_into().ok()?) as usize;
    let bucket = rest.get(8..8 + len)?;
    let key = rest.get(8 + len..)?;
    Some((PartitionId(partition), segment, bucket, key))
}

pub fn hint_prefix(node: &NodeId) -> Vec<u8> {
    let name = node.as_str().as_bytes();
    let mut out = Vec::with_capacity(2 + name.len());
    out.push(HINT);
    out.push(name.len().min(255) as u8);
    out.extend_from_slice(&name[..name.len().min(255)]);
    out
}

pub fn hint_key(node: &NodeId, data_key: &[u8]) -> Vec<u8> {
    let mut out = hint_prefix(node);
    out.extend_from_slice(data_key);
    out
}

/// The node and data key of a hint record.
pub fn parse_hint_key(raw: &[u8]) -> Option<(NodeId, &[u8])> {
    let rest = raw.strip_prefix(&[HINT])?;
    let len = *rest.first()? as usize;
    let name = std::str::from_utf8(rest.get(1..1 + len)?).ok()?;
    Some((NodeId::from(name), rest.get(1 + len..)?))
}

pub fn meta_key(name: &str) -> Vec<u8> {
    let mut out = vec![META];
    out.extend_from_slice(name.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn data_keys_round_trip(p in any::<u32>(), b in proptest::collection::vec(any::<u8>(), 0..300), k in proptest::collection::vec(any::<u8>(), 0..300)) {
            let key = Key::new(b, k);
            let raw = data_key(PartitionId(p), &key);
            prop_assert!(raw.starts_with(&partition_prefix(PartitionId(p))));
            prop_assert!(raw.starts_with(&segment_prefix(PartitionId(p), crate::aae::segment_of(&key))));
            prop_assert_eq!(segment_of_data_key(&raw), Some(crate::aae::segment_of(&key)));
            prop_assert_eq!(parse_data_key(&raw), Some((PartitionId(p), key)));
        }

        #[test]
        fn hint_keys_round_trip(n in "[a-z0-9-]{1,20}", k in proptest::collection::vec(any::<u8>(), 0..100)) {
            let node = NodeId::from(n.as_str());
            let raw = hint_key(&node, &k);
            prop_assert!(raw.starts_with(&hint_prefix(&node)));
            prop_assert_eq!(parse_hint_key(&raw), Some((node, &k[..])));
        }
    }
}
