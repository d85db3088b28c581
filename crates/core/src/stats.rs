//! Counters the core keeps about its own work; the shell exports them as metrics.

/// Upper bounds (ms) of the histogram buckets: from a millisecond to a minute.
pub const BUCKETS_MS: [u64; 16] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 30_000, 60_000,
];

/// A fixed-bucket histogram of milliseconds, cumulative when exported.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Per-bucket counts (not cumulative); the last slot counts values above every bound.
    pub counts: [u64; BUCKETS_MS.len() + 1],
    pub sum_ms: u64,
    pub count: u64,
}

impl Histogram {
    pub fn record(&mut self, ms: u64) {
        let slot = BUCKETS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(BUCKETS_MS.len());
        self.counts[slot] += 1;
        self.sum_ms = self.sum_ms.saturating_add(ms);
        self.count += 1;
    }

    /// `(upper bound ms, cumulative count)` per bucket, ending with `(None, count)` for +Inf.
    pub fn cumulative(&self) -> Vec<(Option<u64>, u64)> {
        let mut total = 0;
        let mut out = Vec::with_capacity(self.counts.len());
        for (i, c) in self.counts.iter().enumerate() {
            total += c;
            out.push((BUCKETS_MS.get(i).copied(), total));
        }
        out
    }
}

/// Monotonic counts since the node started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// How long after a write was made (its HLC time) it reached this replica, for every write
    /// that arrived here new: by replication, read repair or handoff.
    pub replication_lag_ms: Histogram,
    /// Values per read answer (1 = no conflict), in the same buckets.
    pub read_siblings: Histogram,
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
    /// Repairs (read repair, a repair message) this node could not merge into its own copy;
    /// the storage error behind each is counted too.
    pub repairs_failed: u64,
    /// Syncs of the store that failed (each refused the confirmations of its batch).
    pub syncs_failed: u64,
    /// Confirmations of durability (write answers, acknowledgements, transfer receipts)
    /// refused because the sync meant to back them failed.
    pub confirmations_refused: u64,
    /// Anti-entropy exchanges this node finished as initiator, and how many found the
    /// partition already in sync.
    pub aae_exchanges: u64,
    pub aae_in_sync: u64,
    /// Keys whose hashes an exchange compared (either side).
    pub aae_keys_compared: u64,
    /// Keys an exchange changed on this node.
    pub aae_keys_repaired: u64,
    /// Bytes of objects this node sent in exchanges.
    pub aae_bytes_sent: u64,
    pub aae_tree_builds: u64,
    /// Trees found out of step with storage by the periodic check, and rebuilt.
    pub aae_tree_mismatches: u64,
    pub aae_timeouts: u64,
    /// Due exchanges put off because client traffic was heavy.
    pub aae_deferred: u64,
    /// Session reads that failed because no replica that answered had caught up with the
    /// session.
    pub session_reads_behind: u64,
    /// Tombstones this node deleted after every primary held them past the grace period.
    pub tombstones_collected: u64,
    /// Keys handed to their new owners (after a join or a leave) and deleted here.
    pub keys_transferred: u64,
    /// Merges that met one dot with two values: an actor identity was reused (a node came
    /// back without its data under its old incarnation). The greater value was kept.
    pub dot_clashes: u64,
    /// Times this node took a new incarnation after handing over copies of its own writes.
    pub actor_renewals: u64,
    /// Forwarded requests delivered again and ignored (applied once).
    pub duplicate_forwards: u64,
    pub bad_messages: u64,
    /// Client contexts this node bounded before writing with them (forged or foreign claims
    /// dropped: see `Node::bound_context`).
    pub contexts_trimmed: u64,
    /// Writes refused because the key would pass `siblings_max` or `object_bytes_max`.
    pub writes_refused_limits: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_end_at_infinity() {
        let mut h = Histogram::default();
        for ms in [0, 1, 3, 70_000] {
            h.record(ms);
        }
        let c = h.cumulative();
        assert_eq!(c[0], (Some(1), 2));
        assert_eq!(c[2], (Some(5), 3));
        assert_eq!(c[c.len() - 2], (Some(60_000), 3));
        assert_eq!(c[c.len() - 1], (None, 4));
        assert_eq!((h.count, h.sum_ms), (4, 70_004));
    }
}
