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

    /// Adds another histogram's counts to this one.
    pub fn add(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
        self.sum_ms = self.sum_ms.saturating_add(other.sum_ms);
        self.count += other.count;
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

/// A counter of the node: kept in [`Stats`], exported by the shell as a metric and in RESP
/// `INFO`, and summed over nodes by the simulator. Every counter is listed once, in
/// [`COUNTERS`]; each consumer walks that list.
#[derive(Clone, Copy, Debug)]
pub struct Counter {
    /// The field's name, as RESP `INFO` and the simulator show it.
    pub name: &'static str,
    /// The Prometheus series it is exported as.
    pub metric: &'static str,
    pub help: &'static str,
    pub get: fn(&Stats) -> u64,
}

/// Declares the node's counters once: the fields of [`Stats`], the registry [`COUNTERS`] (in
/// the order they are shown) and [`Stats::add`].
macro_rules! counters {
    ($( $(#[doc = $doc:literal])* $field:ident => $metric:literal, $help:literal; )*) => {
        /// Monotonic counts since the node started.
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct Stats {
            /// How long after a write was made (its HLC time) it reached this replica, for
            /// every write that arrived here new: by replication, read repair or handoff.
            pub replication_lag_ms: Histogram,
            /// Values per read answer (1 = no conflict), in the same buckets.
            pub read_siblings: Histogram,
            $( $(#[doc = $doc])* pub $field: u64, )*
        }

        /// Every counter of [`Stats`], in the order they are shown.
        pub const COUNTERS: &[Counter] = &[
            $( Counter {
                name: stringify!($field),
                metric: $metric,
                help: $help,
                get: |s: &Stats| s.$field,
            }, )*
        ];

        impl Stats {
            /// Adds another node's (or another life's) counts to these.
            pub fn add(&mut self, other: &Stats) {
                self.replication_lag_ms.add(&other.replication_lag_ms);
                self.read_siblings.add(&other.read_siblings);
                $( self.$field += other.$field; )*
            }
        }
    };
}

counters! {
    /// Merges that met one dot with two values: an actor identity was reused (a node came
    /// back without its data under its old incarnation). The greater value was kept.
    dot_clashes => "driftkv_dot_clashes_total",
        "Merges that met one dot with two values (a reused node identity).";
    aae_timeouts => "driftkv_aae_timeouts_total",
        "Exchanges abandoned because the peer did not answer in time.";
    /// Due exchanges put off because client traffic was heavy.
    aae_deferred => "driftkv_aae_deferred_total",
        "Due exchanges put off because client traffic was heavy.";
    /// Session reads that failed because no replica that answered had caught up with the
    /// session.
    session_reads_behind => "driftkv_session_reads_behind_total",
        "Session reads refused because no replica that answered had caught up with the session.";
    /// Anti-entropy exchanges this node finished as initiator, and how many found the
    /// partition already in sync.
    aae_exchanges => "driftkv_aae_exchanges_total",
        "Anti-entropy exchanges this node started and finished.";
    aae_in_sync => "driftkv_aae_exchanges_in_sync_total",
        "Exchanges that found the partition already in sync.";
    /// Keys whose hashes an exchange compared (either side).
    aae_keys_compared => "driftkv_aae_keys_compared_total",
        "Keys whose hashes anti-entropy compared.";
    /// Keys an exchange changed on this node.
    aae_keys_repaired => "driftkv_aae_keys_repaired_total",
        "Keys anti-entropy changed on this node.";
    /// Bytes of objects this node sent in exchanges.
    aae_bytes_sent => "driftkv_aae_bytes_sent_total",
        "Bytes of objects this node sent in exchanges.";
    aae_tree_builds => "driftkv_aae_tree_builds_total", "Hash trees built from storage.";
    /// Trees found out of step with storage by the periodic check, and rebuilt.
    aae_tree_mismatches => "driftkv_aae_tree_mismatches_total",
        "Trees found out of step with storage and rebuilt.";
    /// Tombstones this node deleted after every primary held them past the grace period.
    tombstones_collected => "driftkv_tombstones_collected_total",
        "Tombstones deleted after every primary held them past the grace.";
    /// Keys handed to their new owners (after a join or a leave) and deleted here.
    keys_transferred => "driftkv_keys_transferred_total",
        "Keys handed to new owners after a join or leave.";
    reads => "driftkv_coordinated_reads_total", "Reads this node coordinated.";
    writes => "driftkv_coordinated_writes_total", "Writes this node coordinated.";
    forwarded => "driftkv_forwarded_writes_total", "Writes handed to a replica to coordinate.";
    /// Of `writes`, those of buckets with `write_path = direct` (stamped here and sent to
    /// every replica, unless refused first).
    direct_writes => "driftkv_direct_writes_total",
        "Writes of direct-path buckets this node coordinated (stamped here, sent to every replica).";
    unavailable => "driftkv_unavailable_total",
        "Requests answered unavailable: too few replicas in time.";
    /// Replicas a read found behind the merged answer.
    stale_replicas_found => "driftkv_stale_replicas_found_total",
        "Replicas a read found behind the merged answer.";
    read_repairs_sent => "driftkv_read_repairs_sent_total",
        "Read-repair messages sent to stale replicas.";
    /// Merges that met writes neither side had seen.
    conflicts => "driftkv_conflicts_total", "Merges that met concurrent writes.";
    /// Values discarded by the last-write-wins rule.
    lww_discarded => "driftkv_lww_discarded_total",
        "Values of concurrent writes discarded by last-write-wins (in direct-path buckets: writes that arrived after a later one).";
    /// Reads answered with more than one sibling.
    sibling_reads => "driftkv_sibling_reads_total", "Reads answered with more than one sibling.";
    /// Pages of key listings this node coordinated.
    listings => "driftkv_listings_total", "Pages of key listings coordinated.";
    hints_stored => "driftkv_hints_stored_total", "Hints stored for unreachable replicas.";
    hints_delivered => "driftkv_hints_delivered_total",
        "Hints handed off to their replica and deleted.";
    hints_expired => "driftkv_hints_expired_total", "Hints dropped for age.";
    hints_refused => "driftkv_hints_refused_total",
        "Hints not stored because the hint store was full.";
    storage_errors => "driftkv_storage_errors_total", "Storage operations that failed.";
    bad_messages => "driftkv_bad_messages_total", "Node-to-node messages refused as malformed.";
    /// Client contexts this node bounded before writing with them (forged or foreign claims
    /// dropped: see `Node::bound_context`).
    contexts_trimmed => "driftkv_contexts_trimmed_total",
        "Client causal contexts bounded before use (claims no node could have issued).";
    /// Writes refused because the key would pass `siblings_max` or `object_bytes_max`.
    writes_refused_limits => "driftkv_writes_refused_limits_total",
        "Writes refused because the key would pass siblings_max or object_bytes_max.";
    /// Repairs (read repair, a repair message) this node could not merge into its own copy;
    /// the storage error behind each is counted too.
    repairs_failed => "driftkv_repairs_failed_total",
        "Repairs this node could not merge into its own copy (a storage error, counted too).";
    /// Syncs of the store that failed (each refused the confirmations of its batch).
    syncs_failed => "driftkv_syncs_failed_total",
        "Store syncs that failed; each refused the confirmations of its batch.";
    /// Confirmations of durability (write answers, acknowledgements, transfer receipts)
    /// refused because the sync meant to back them failed.
    confirmations_refused => "driftkv_confirmations_refused_total",
        "Write answers, acknowledgements and transfer receipts refused because their sync failed.";
    /// Messages to peers dropped because the sync of their batch failed.
    messages_dropped => "driftkv_messages_dropped_total",
        "Messages to peers dropped because the sync of their batch failed.";
    /// Times this node took a new incarnation after handing over copies of its own writes.
    actor_renewals => "driftkv_actor_renewals_total",
        "New incarnations this node took after handing over copies of its own writes.";
    /// Forwarded requests delivered again and ignored (applied once).
    duplicate_forwards => "driftkv_duplicate_forwards_total",
        "Forwarded requests delivered again and ignored (applied once).";
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

    #[test]
    fn the_registry_lists_every_counter_once_with_a_series_of_its_own() {
        let mut names: Vec<&str> = COUNTERS.iter().map(|c| c.name).collect();
        let mut metrics: Vec<&str> = COUNTERS.iter().map(|c| c.metric).collect();
        names.sort_unstable();
        names.dedup();
        metrics.sort_unstable();
        metrics.dedup();
        assert_eq!(names.len(), COUNTERS.len());
        assert_eq!(metrics.len(), COUNTERS.len());
        assert!(COUNTERS.iter().all(|c| c.metric.starts_with("driftkv_")
            && c.metric.ends_with("_total")
            && !c.help.is_empty()));
    }

    #[test]
    fn adding_stats_adds_every_counter_and_histogram() {
        let mut a = Stats {
            reads: 2,
            ..Stats::default()
        };
        a.replication_lag_ms.record(3);
        let mut b = a.clone();
        b.writes_refused_limits = 5;
        b.add(&a);
        assert_eq!((b.reads, b.writes_refused_limits), (4, 5));
        assert_eq!(b.replication_lag_ms.count, 2);
        let total: u64 = COUNTERS.iter().map(|c| (c.get)(&b)).sum();
        assert_eq!(total, 9);
    }
}
