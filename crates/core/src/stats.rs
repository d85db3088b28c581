//! Counters the core keeps about its own work; the shell exports them as metrics.

/// Monotonic counts since the node started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub reads: u64,
    pub writes: u64,
    pub forwarded: u64,
    pub unavailable: u64,
    /// Replicas a read found behind the merged answer.
    pub stale_replicas_found: u64,
    pub read_repairs_sent: u64,
    /// Merges that met writes neither side had seen.
    pub conflicts: u64,
    /// Values discarded by the last-write-wins rule.
    pub lww_discarded: u64,
    /// Reads answered with more than one sibling.
    pub sibling_reads: u64,
    pub hints_stored: u64,
    pub hints_delivered: u64,
    pub hints_expired: u64,
    pub hints_refused: u64,
    pub storage_errors: u64,
    pub bad_messages: u64,
}
