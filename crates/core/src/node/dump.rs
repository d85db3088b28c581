//! A replica's own records of one partition, as stored, for a backup: the backup tool asks
//! every replica of each partition and merges their copies (the merge is a join, so what any
//! replica holds is kept), so this reads only the local store and sends no message.

use super::*;

/// The most records one dump page holds.
pub const DUMP_RECORDS_MAX: usize = 4096;
/// The most bytes of records one dump page holds (one record may pass it alone).
pub const DUMP_BYTES_MAX: usize = 8 * 1024 * 1024;

/// One page of a partition's records on this node.
#[derive(Debug, Default)]
pub struct Dumped {
    /// Each record's position in the store, its key and its stored value (a record:
    /// `driftkv_wire::decode_object`).
    pub records: Vec<(Vec<u8>, Key, Vec<u8>)>,
    /// The last record position passed, to ask again after.
    pub last: Option<Vec<u8>>,
    /// Whether the partition may hold more records past `last`.
    pub more: bool,
}

impl Node {
    /// This node's records of `partition` after the record position `after` (`None`: from
    /// the start), at most `limit` (bounded by [`DUMP_RECORDS_MAX`]) and about
    /// [`DUMP_BYTES_MAX`] bytes. `Err` for a partition the ring does not have, a position
    /// outside the partition, or a storage failure.
    pub fn dump(
        &self,
        store: &dyn Store,
        partition: u32,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Dumped, String> {
        if partition >= self.ring().partitions_count() {
            return Err(format!(
                "partition {partition} does not exist: the ring has {}",
                self.ring().partitions_count()
            ));
        }
        let range = keys::partition_prefix(PartitionId(partition));
        if after.is_some_and(|a| !a.starts_with(&range)) {
            return Err("the dump position is not in that partition".into());
        }
        let limit = limit.clamp(1, DUMP_RECORDS_MAX);
        let mut page = Dumped::default();
        let (mut walked, mut bytes, mut full) = (0usize, 0usize, false);
        store
            .scan_with(&range, after, limit, &mut |raw_key, raw| {
                walked += 1;
                if bytes >= DUMP_BYTES_MAX {
                    full = true;
                    return;
                }
                page.last = Some(raw_key.to_vec());
                if let Some((_, key)) = keys::parse_data_key(raw_key) {
                    bytes = bytes
                        .saturating_add(raw.len())
                        .saturating_add(raw_key.len());
                    page.records.push((raw_key.to_vec(), key, raw.to_vec()));
                }
            })
            .map_err(|e| format!("storage failed: {e}"))?;
        page.more = full || walked == limit;
        Ok(page)
    }
}
