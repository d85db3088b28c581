//! What `driftkv backup` and `driftkv restore` carry: a node's dump pages (one partition's
//! records as one replica stores them), restore batches, and the backup file's records.
//!
//! Objects travel as stored records (`crate::encode_object`), so a backup keeps every sibling,
//! context, counter total, set dot and map field, and a record of the previous format is read
//! as the store reads it.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{Key, WireError};

/// The version byte of dump pages, restore batches and backup file records.
pub const BACKUP_FORMAT_VERSION: u8 = 1;

/// The first bytes of a backup file, before its version byte.
pub const BACKUP_MAGIC: &[u8] = b"DRIFTKV-BACKUP\n";

/// A key and its stored record.
pub type Record = (Key, Bytes);

/// One page of `GET /admin/dump`: records of one partition on one node, in stored order, each
/// with its position in the store (what the backup cuts rounds on: positions come from the
/// node, never recomputed by a client that may be of another build).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpPage {
    pub records: Vec<(Bytes, Key, Bytes)>,
    /// The last record position passed (the `after` of the next page).
    pub last: Option<Bytes>,
    /// Whether the partition may hold more past `last`.
    pub more: bool,
}

pub fn encode_page(page: &DumpPage) -> Vec<u8> {
    crate::encode(BACKUP_FORMAT_VERSION, page)
}

pub fn decode_page(bytes: &[u8]) -> Result<DumpPage, WireError> {
    crate::decode(BACKUP_FORMAT_VERSION, bytes)
}

/// The body of `POST /admin/restore`.
pub fn encode_batch(records: &[Record]) -> Vec<u8> {
    crate::encode(BACKUP_FORMAT_VERSION, &records)
}

/// Reads a restore batch of at most `records_max` records: the count the batch claims is
/// checked before any record is decoded, so tiny records cannot make a small body cost
/// memory out of proportion.
pub fn decode_batch(bytes: &[u8], records_max: usize) -> Result<Vec<Record>, WireError> {
    let claimed = bytes.get(1..).map(varint).unwrap_or(Some(0));
    match claimed {
        Some(n) if n <= records_max as u64 => crate::decode(BACKUP_FORMAT_VERSION, bytes),
        Some(n) => Err(WireError::Malformed(format!(
            "a restore batch of {n} records is over the limit of {records_max}"
        ))),
        None => Err(WireError::Malformed(
            "a restore batch without a count".into(),
        )),
    }
}

/// The unsigned varint (postcard's length prefix) at the start of `bytes`.
fn varint(bytes: &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, b) in bytes.iter().take(10).enumerate() {
        value |= u64::from(b & 0x7f).checked_shl(7 * i as u32)?;
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// One record of a backup file, as written after the file's length prefix.
pub fn encode_record(record: &Record) -> Vec<u8> {
    crate::encode(BACKUP_FORMAT_VERSION, record)
}

pub fn decode_record(bytes: &[u8]) -> Result<Record, WireError> {
    crate::decode(BACKUP_FORMAT_VERSION, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_batches_and_records_round_trip_and_garbage_is_refused() {
        let record: Record = (Key::default_bucket("k"), Bytes::from_static(b"\x02abc"));
        let page = DumpPage {
            records: vec![(Bytes::from_static(b"p"), record.0.clone(), record.1.clone())],
            last: Some(Bytes::from_static(b"pos")),
            more: true,
        };
        assert_eq!(decode_page(&encode_page(&page)), Ok(page));
        assert_eq!(
            decode_batch(&encode_batch(std::slice::from_ref(&record)), 1),
            Ok(vec![record.clone()])
        );
        let three = encode_batch(&[record.clone(), record.clone(), record.clone()]);
        assert!(
            decode_batch(&three, 2).is_err(),
            "the count is checked first"
        );
        assert_eq!(decode_batch(&three, 3).map(|b| b.len()), Ok(3));
        assert_eq!(decode_record(&encode_record(&record)), Ok(record));
        assert!(decode_batch(b"", 10).is_err());
        assert!(decode_batch(&[BACKUP_FORMAT_VERSION, 0xff, 0xff, 0xff, 0xff, 0x0f], 10).is_err());
        assert!(decode_batch(&[BACKUP_FORMAT_VERSION, 0xff, 0xff], 10).is_err());
        assert!(decode_record(&[9, 1, 2]).is_err());
    }
}
