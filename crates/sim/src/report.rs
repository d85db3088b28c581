//! The report of one run: measurements, checks, a timeline; as JSON (stable, byte-identical for
//! the same scenario and seed), as text for people, and as SVG plots.
//!
//! This module holds the report's shape (what the JSON serializes, field by field); building
//! it from a run is in `build`, the text in `text`, the plots in `plots`, and the R/W sweep's
//! table in `sweep`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::check::{DataTypeFindings, PASS};
use crate::measure::Percentiles;
use crate::world::{MessageCounts, NodeTotals, OpCounts};

mod build;
mod compare;
mod plots;
mod sweep;
mod text;

pub use compare::{CompareRow, compare_json, compare_plot, compare_table, compare_variants};
pub use plots::{PALETTE, sweep_plot};
pub use sweep::{SWEEP_T_MS, SweepRow, sweep_table};

#[derive(Clone, Debug, Serialize)]
pub struct TPoint {
    pub t_ms: f64,
    /// Fraction of trials whose read returned the write; `null` when no trial completed.
    pub probability: Option<f64>,
    pub trials: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Cluster {
    pub nodes: usize,
    pub n: usize,
    pub r: String,
    pub w: String,
    pub durability: String,
    pub read_repair: bool,
    pub hinted_handoff: bool,
    pub membership: String,
    pub coordinator: String,
    pub anti_entropy: bool,
    /// How lww register writes (and, when `direct`, the visibility probes) reached the
    /// replicas: `replica` (forwarded to a replica, which coordinates) or `direct`.
    pub write_path: String,
}

/// k-staleness, the PBS paper's version-based measure: per grid point `t`, the chance that a
/// read returns one of the last `k` versions, for `k` from 1 to `versions`.
#[derive(Clone, Debug, Serialize)]
pub struct KStaleness {
    pub versions: u32,
    pub points: Vec<KPoint>,
    /// The paper's closed form for the same N, R and W, `1 - (C(N-W, R) / C(N, R))^k` per
    /// `k`: what a read would see if a write reached only its W replicas and never the rest
    /// (no anti-entropy of any kind), against which the measured figures show how far writes
    /// spread by themselves.
    pub closed_form_without_spread: Vec<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct KPoint {
    pub t_ms: f64,
    pub reads: u64,
    /// `within_k[k - 1]`: the share of reads that returned one of the last `k` versions.
    pub within_k: Vec<f64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Conflicts {
    /// Replica merges (on write, repair or read) that met writes neither side had seen.
    pub concurrent_merges: u64,
    /// Reads answered with more than one sibling (node count) ...
    pub sibling_reads: u64,
    /// ... and the most siblings a client read saw.
    pub siblings_read_max: usize,
    pub keys_with_siblings_at_end: u64,
    pub siblings_at_end_max: usize,
    /// Values nodes discarded by the last-write-wins rule (every replica counts its own).
    pub lww_discarded_values: u64,
    /// Acknowledged lww writes that lost to a concurrent write with a later timestamp.
    pub writes_lost_by_lww: u64,
    pub lww_acknowledged_writes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Repair {
    /// `Repair` messages sent by read coordinators.
    pub read_repair_messages: u64,
    pub stale_replicas_found: u64,
    pub hints_stored: u64,
    pub hints_delivered: u64,
    pub hints_expired: u64,
    pub hints_pending_at_end: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Convergence {
    /// The first check after traffic stopped (they run every `poll_ms`) from which every
    /// key's replicas agreed; `null` if they never did within the bound.
    pub converged_after_ms: Option<f64>,
    pub poll_ms: u64,
    /// How long the run went on after traffic stopped.
    pub settle_ms: f64,
    pub bound_ms: u64,
    pub divergent_keys: usize,
    pub keys: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct TimelineEntry {
    pub t_ms: f64,
    pub what: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Sessions {
    pub sessions: u32,
    pub tokens: bool,
    pub reads: u64,
    /// Reads that returned less than the session had seen of the key.
    pub went_back: u64,
    pub went_back_ratio: f64,
    /// Session reads refused because no replica that answered had caught up.
    pub refused: u64,
}

/// Joins and leaves: who was a member when, and where the data ended up.
#[derive(Clone, Debug, Serialize)]
pub struct Membership {
    pub members_at_start: Vec<String>,
    pub members_at_end: Vec<String>,
    /// Every node at the end: `member`, `leaving`, `left` or `never joined`, and the data
    /// records its store holds.
    pub nodes: Vec<NodeAtEnd>,
    /// Records handed to new owners (`Transfer`) and deleted by the sender.
    pub keys_transferred: u64,
    /// Keys some node other than their final primaries still holds a record of.
    pub keys_off_their_primaries: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct NodeAtEnd {
    pub name: String,
    pub state: String,
    pub records: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub description: String,
    pub seed: u64,
    pub cluster: Cluster,
    /// With joins or leaves in the scenario.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub membership: Option<Membership>,
    pub t_visibility: Vec<TPoint>,
    /// Figures published elsewhere for the same configuration (the scenario's), to compare.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub published: Vec<crate::scenario::Published>,
    /// With `visibility.versions` above 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub k_staleness: Option<KStaleness>,
    /// Per acknowledged write (register writes and set adds): from its acknowledgement until
    /// every primary holds it (0 when all had it before the client heard back).
    pub inconsistency_window_ms: Percentiles,
    /// Acknowledged versions some primary still lacked at the end.
    pub versions_never_everywhere: u64,
    /// Register reads that missed a write acknowledged before the read was sent.
    pub stale_read_ratio: f64,
    pub register_reads: u64,
    pub stale_reads: u64,
    /// With client sessions: their register reads, how many returned less than the session
    /// had seen, and how many session reads were refused for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sessions: Option<Sessions>,
    pub read_latency_ms: Percentiles,
    pub write_latency_ms: Percentiles,
    /// Acknowledged writes over attempted writes.
    pub write_availability: f64,
    pub ops: BTreeMap<String, OpCounts>,
    pub conflicts: Conflicts,
    pub repair: Repair,
    pub messages: BTreeMap<String, MessageCounts>,
    pub messages_total: MessageCounts,
    pub node_totals: NodeTotals,
    pub convergence: Convergence,
    /// With data-type operations in the workload (TTLs, maps, deletes, NX races): what their
    /// checks judged and what was measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_types: Option<DataTypeFindings>,
    pub events: u64,
    pub timeline: Vec<TimelineEntry>,
    pub checks: BTreeMap<String, String>,
    /// Measured samples, kept for plots; not in the JSON.
    #[serde(skip)]
    pub samples: Samples,
}

#[derive(Clone, Debug, Default)]
pub struct Samples {
    pub read_latency_ms: Vec<f64>,
    pub write_latency_ms: Vec<f64>,
    pub windows_ms: Vec<f64>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.checks.values().all(|v| v == PASS)
    }

    /// `(check, failure)` for every check that failed.
    pub fn failures(&self) -> Vec<(&str, &str)> {
        self.checks
            .iter()
            .filter(|(_, v)| *v != PASS)
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a report always serializes");
        s.push('\n');
        s
    }
}
