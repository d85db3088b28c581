//! What a finished run hands to the checks and the report: the history, the final copies,
//! convergence, the clients' measurements, message and node counts, and every node's end.

use std::collections::BTreeMap;

use driftkv_core::Stats;
use driftkv_core::fasthash::FastMap;
use driftkv_core::stats::COUNTERS;
use driftkv_wire::Object;

use super::Sim;
use super::clients::{NxRace, OpCounts, SessionCounts};
use super::faults::PlannedFault;
use super::network::MessageCounts;
use super::nodes::Life;
use super::time::ms;
use super::visibility::Trial;
use crate::history::History;

/// How many divergent keys the outcomes describe (all are counted).
const DIVERGENT_KEYS_DESCRIBED: usize = 5;

/// Everything a finished run hands to the report.
pub struct Outcomes {
    pub hist: History,
    pub trials: Vec<Trial>,
    pub final_objects: Vec<Option<Object>>,
    pub divergent: Vec<String>,
    pub divergent_keys: usize,
    pub converged_after_ms: Option<f64>,
    pub settle_ms: f64,
    pub read_latency_ms: Vec<f64>,
    pub write_latency_ms: Vec<f64>,
    pub register_reads: u64,
    pub stale_reads: u64,
    pub sibling_reads: u64,
    pub siblings_max: usize,
    pub sessions: SessionCounts,
    pub ops: BTreeMap<&'static str, OpCounts>,
    pub messages: BTreeMap<&'static str, MessageCounts>,
    pub node_totals: NodeTotals,
    pub hints_pending_at_end: usize,
    pub events: u64,
    pub events_overflow: bool,
    pub log: Vec<(f64, String)>,
    pub faults: Vec<PlannedFault>,
    /// Every node at the end, in index order.
    pub nodes_at_end: Vec<NodeEnd>,
    /// Per key slot: the nodes whose store holds a record of the key at the end (the final
    /// primaries are `hist.keys[slot].primaries`).
    pub holders: Vec<Vec<usize>>,
    /// With data-type operations in the workload, per key slot: each final primary and its
    /// copy at the end (empty otherwise). The data-type checks judge every primary's copy.
    pub end_copies: Vec<Vec<(usize, Option<Object>)>>,
    /// Every node's clock at the end, in its milliseconds (what "now" is to it).
    pub end_node_ms: Vec<u64>,
    /// The NX races, in the order they started.
    pub nx_races: Vec<NxRace>,
}

/// Node counters summed over every node and every life of it (a restart resets a node's own):
/// the core's [`Stats`], summed with [`Stats::add`]. The report shows the counters named in
/// [`REPORTED`], by their registry names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeTotals(pub Stats);

impl std::ops::Deref for NodeTotals {
    type Target = Stats;

    fn deref(&self) -> &Stats {
        &self.0
    }
}

/// The counters of the core's registry a report shows, in this order.
pub const REPORTED: [&str; 19] = [
    "reads",
    "writes",
    "forwarded",
    "unavailable",
    "stale_replicas_found",
    "read_repairs_sent",
    "conflicts",
    "lww_discarded",
    "sibling_reads",
    "hints_stored",
    "hints_delivered",
    "hints_expired",
    "hints_refused",
    "aae_exchanges",
    "aae_keys_repaired",
    "aae_bytes_sent",
    "keys_transferred",
    "storage_errors",
    "bad_messages",
];

/// Counters a report shows only when they are not zero (only injected disk faults make them).
pub const REPORTED_WHEN_NOT_ZERO: [&str; 3] =
    ["syncs_failed", "confirmations_refused", "messages_dropped"];

impl NodeTotals {
    /// A counter of the registry, by name.
    pub fn get(&self, name: &str) -> Option<u64> {
        COUNTERS
            .iter()
            .find(|c| c.name == name)
            .map(|c| (c.get)(&self.0))
    }
}

impl serde::Serialize for NodeTotals {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        for name in REPORTED {
            map.serialize_entry(name, &self.get(name).unwrap_or_default())?;
        }
        for name in REPORTED_WHEN_NOT_ZERO {
            match self.get(name) {
                Some(value) if value > 0 => map.serialize_entry(name, &value)?,
                _ => {}
            }
        }
        map.end()
    }
}

/// One node at the end of a run: where it is in its membership and what its store holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeEnd {
    pub name: String,
    /// A member from the start (not named by a `join` fault).
    pub initial: bool,
    /// `"member"`, `"leaving"` (told to leave, not drained yet), `"left"` (drained and gone)
    /// or `"never joined"`.
    pub state: &'static str,
    /// Data records in its store (committed or not).
    pub records: usize,
}

impl Sim<'_> {
    /// The run is over: everything it found, gathered.
    pub(super) fn finish(mut self) -> Outcomes {
        let (divergent, divergent_keys) = if self.convergence.ended_converged {
            (Vec::new(), 0)
        } else {
            self.divergence(DIVERGENT_KEYS_DESCRIBED)
        };
        if divergent_keys > 0 {
            self.convergence.converged_since_us = None;
        }
        let final_objects = self.final_objects();
        let end_copies = self.end_copies();
        let end_node_ms = (0..self.nodes.len()).map(|i| self.local_ms(i)).collect();
        let (node_totals, hints_pending_at_end) = self.node_totals();
        let (holders, records) = self.holders();
        let nodes_at_end = self.nodes_at_end(records);
        let traffic_end = self.time.traffic_end_us;
        let messages = self.net.counts_by_name();
        let stats = self.clients.stats;
        Outcomes {
            converged_after_ms: self
                .convergence
                .converged_since_us
                .map(|t| ms(t.saturating_sub(traffic_end))),
            settle_ms: ms(self.time.now_us.saturating_sub(traffic_end)),
            hist: self.oracle.hist,
            trials: self.clients.trials,
            final_objects,
            divergent,
            divergent_keys,
            read_latency_ms: stats.read_latency_ms,
            write_latency_ms: stats.write_latency_ms,
            register_reads: stats.register_reads,
            stale_reads: stats.stale_reads,
            sibling_reads: stats.sibling_reads,
            siblings_max: stats.siblings_max,
            sessions: stats.sessions,
            ops: stats.ops,
            messages,
            node_totals,
            hints_pending_at_end,
            events: self.agenda.processed,
            events_overflow: self.agenda.overflow,
            log: self.log,
            faults: self.faults.planned,
            nodes_at_end,
            holders,
            end_copies,
            end_node_ms,
            nx_races: stats.nx_races,
        }
    }

    /// Each primary's copy of each key at the end, when the workload has data-type
    /// operations (their checks judge every primary, not the join of them).
    fn end_copies(&mut self) -> Vec<Vec<(usize, Option<Object>)>> {
        if !self.sc.workload.mix.has_data_types() {
            return Vec::new();
        }
        (0..self.oracle.hist.keys.len())
            .map(|slot| {
                let rec = &self.oracle.hist.keys[slot];
                let (key, primaries) = (rec.key.clone(), rec.primaries.clone());
                primaries
                    .into_iter()
                    .map(|p| (p, self.copy(p, &key)))
                    .collect()
            })
            .collect()
    }

    /// Per key slot: the join of its primaries' copies at the end.
    fn final_objects(&mut self) -> Vec<Option<Object>> {
        let keys = self.oracle.hist.keys.len();
        let mut final_objects = Vec::with_capacity(keys);
        for slot in 0..keys {
            let rec = &self.oracle.hist.keys[slot];
            let (key, mode, primaries) = (rec.key.clone(), rec.kind.mode(), rec.primaries.clone());
            // Replicas holding the very same record (or equal copies: the run ended with every
            // key converged): their join is that copy.
            if self.convergence.ended_converged || self.same_records(slot) {
                final_objects.push(primaries.first().and_then(|&p| self.copy(p, &key)));
                continue;
            }
            let copies: Vec<Object> = primaries
                .iter()
                .filter_map(|&p| self.copy(p, &key))
                .collect();
            let (merged, _, _) = driftkv_core::node::merge_all(mode, copies.iter());
            final_objects.push(merged);
        }
        final_objects
    }

    /// Node counters summed over every node and life, and the hints still pending.
    fn node_totals(&self) -> (NodeTotals, usize) {
        let mut totals = self.retired.clone();
        let mut hints_pending = 0;
        for sn in &self.nodes {
            if let Some(node) = &sn.node {
                totals.add(node.stats());
                hints_pending += node.hints_pending();
            }
            // A node's driver lives through its crashes: its counts are of every life.
            let driven = sn.driver.counts();
            totals.syncs_failed += driven.syncs_failed;
            totals.confirmations_refused += driven.confirmations_refused;
            totals.messages_dropped += driven.messages_dropped;
        }
        (NodeTotals(totals), hints_pending)
    }

    /// Which nodes hold a record of each key, and how many data records each node holds:
    /// each store's records walked once (not every node asked for every key: a thousand nodes
    /// and their keys would be a square).
    fn holders(&self) -> (Vec<Vec<usize>>, Vec<usize>) {
        let keys = &self.oracle.hist.keys;
        let mut holders: Vec<Vec<usize>> = vec![Vec::new(); keys.len()];
        let slot_of: FastMap<&[u8], usize> = keys
            .iter()
            .enumerate()
            .map(|(slot, rec)| (rec.record_key.as_slice(), slot))
            .collect();
        let mut records = vec![0; self.nodes.len()];
        for (i, sn) in self.nodes.iter().enumerate() {
            for record in sn.store.keys_with_prefix(&[driftkv_core::keys::DATA]) {
                records[i] += 1;
                if let Some(&slot) = slot_of.get(record) {
                    holders[slot].push(i);
                }
            }
        }
        (holders, records)
    }

    fn nodes_at_end(&self, records: Vec<usize>) -> Vec<NodeEnd> {
        self.nodes
            .iter()
            .zip(records)
            .map(|(sn, records)| NodeEnd {
                name: sn.name.to_string(),
                initial: self.sc.initial_member(sn.name.as_str()),
                state: match sn.life {
                    Life::Waiting => "never joined",
                    Life::Member => "member",
                    Life::Leaving => "leaving",
                    Life::Gone => "left",
                },
                records,
            })
            .collect()
    }
}

/// A copy as a person reads it: values (registers), value (counters), members (sets).
pub fn describe(object: Option<&Object>) -> String {
    match object {
        None => "nothing".into(),
        Some(Object::Register(r)) => {
            let values: Vec<String> = r
                .values()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect();
            format!("[{}] {:?}", values.join(", "), r.context())
        }
        Some(Object::Counter(c)) => format!("counter {}", c.value()),
        Some(Object::Set(s)) => {
            let members: Vec<String> = s
                .members()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect();
            format!("set {{{}}} {:?}", members.join(", "), s.context())
        }
        Some(Object::Map(m)) => {
            let fields: Vec<String> = m
                .fields()
                .map(|(n, v)| {
                    format!(
                        "{}={}",
                        String::from_utf8_lossy(n),
                        String::from_utf8_lossy(&v.to_bytes())
                    )
                })
                .collect();
            format!("map {{{}}} {:?}", fields.join(", "), m.context())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reported_counter_is_in_the_registry() {
        let totals = NodeTotals::default();
        for name in REPORTED.iter().chain(&REPORTED_WHEN_NOT_ZERO) {
            assert_eq!(
                totals.get(name),
                Some(0),
                "{name} is not a registered counter"
            );
        }
    }

    #[test]
    fn totals_serialize_the_reported_counters_in_order_and_the_rest_when_not_zero() {
        let mut stats = Stats {
            reads: 3,
            ..Stats::default()
        };
        let json = serde_json::to_string(&NodeTotals(stats.clone())).unwrap();
        assert!(json.starts_with(r#"{"reads":3,"writes":0,"#), "{json}");
        assert!(!json.contains("syncs_failed"), "{json}");
        stats.syncs_failed = 2;
        let json = serde_json::to_string(&NodeTotals(stats)).unwrap();
        assert!(
            json.ends_with(r#""bad_messages":0,"syncs_failed":2}"#),
            "{json}"
        );
    }
}
