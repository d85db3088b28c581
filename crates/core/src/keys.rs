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

/// The record position just past every data record of segment `segment` of `partition`: the
/// bucket's length, which follows the segment, is at most a bucket's limit, far below `0xffff`.
pub fn segment_end(partition: PartitionId, segment: u16) -> Vec<u8> {
    let mut out = segment_prefix(partition, segment);
    out.extend_from_slice(&[0xff, 0xff]);
    out
}

/// Segments per partition as a scan cursor counts them, plus one for "the partition's start".
const SCAN_SLOTS: u64 = crate::aae::SEGMENTS as u64 + 1;

/// A listing cursor as RESP `SCAN` gives it: a number, 0 being the start (and the end). Only
/// cursors at a partition's start or a segment's end (those of `whole_segments` pages) have
/// one.
pub fn scan_number(cursor: &driftkv_wire::ListCursor) -> Option<u64> {
    let slot = match &cursor.after {
        None => 0,
        Some(pos) => {
            let segment = segment_of_position(pos)?;
            if pos[..] != segment_end(PartitionId(cursor.partition), segment)[..] {
                return None;
            }
            u64::from(segment) + 1
        }
    };
    Some(1 + u64::from(cursor.partition) * SCAN_SLOTS + slot)
}

/// The listing cursor a RESP `SCAN` number stands for (`None`: 0, the start).
pub fn scan_cursor(n: u64) -> Result<Option<driftkv_wire::ListCursor>, String> {
    if n == 0 {
        return Ok(None);
    }
    let (partition, slot) = ((n - 1) / SCAN_SLOTS, (n - 1) % SCAN_SLOTS);
    let partition = u32::try_from(partition).map_err(|_| "invalid cursor".to_string())?;
    let after = match slot {
        0 => None,
        s => Some(bytes::Bytes::from(segment_end(
            PartitionId(partition),
            (s - 1) as u16,
        ))),
    };
    Ok(Some(driftkv_wire::ListCursor { partition, after }))
}

/// The anti-entropy segment written into a key made by [`data_key`]; `None` if `raw` is not a
/// data key.
pub fn segment_of_data_key(raw: &[u8]) -> Option<u16> {
    split_data_key(raw).map(|(_, segment, _, _)| segment)
}

/// The segment of a position in the data records: a data key, or a segment's end
/// ([`segment_end`]), which is no key; `None` for anything else.
pub fn segment_of_position(raw: &[u8]) -> Option<u16> {
    match raw {
        [DATA, _, _, _, _, hi, lo, ..] => Some(u16::from_be_bytes([*hi, *lo])),
        _ => None,
    }
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
        fn a_segment_ends_after_its_records_and_before_the_next_and_scan_numbers_round_trip(
            p in 0u32..1000,
            b in proptest::collection::vec(any::<u8>(), 1..300),
            k in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let key = Key::new(b, k);
            let raw = data_key(PartitionId(p), &key);
            let segment = crate::aae::segment_of(&key);
            prop_assert!(raw < segment_end(PartitionId(p), segment));
            if segment > 0 {
                prop_assert!(raw > segment_end(PartitionId(p), segment - 1));
            }
            for after in [None, Some(bytes::Bytes::from(segment_end(PartitionId(p), segment)))] {
                let cursor = driftkv_wire::ListCursor { partition: p, after };
                let n = scan_number(&cursor).expect("a cursor at a segment's end has a number");
                prop_assert!(n > 0);
                prop_assert_eq!(scan_cursor(n).unwrap(), Some(cursor));
            }
            let mid = driftkv_wire::ListCursor { partition: p, after: Some(bytes::Bytes::from(raw)) };
            prop_assert_eq!(scan_number(&mid), None);
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
