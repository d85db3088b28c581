//! What a finished run hands to the checks and the report: the history, the final copies,
//! convergence, the clients' measurements, message and node counts, and every node's end.

use std::collections::BTreeMap;

use driftkv_core::Stats;
use driftkv_core::fasthash::FastMap;
use driftkv_wire::Object;

use super::Sim;
use super::clients::{OpCounts, SessionCounts};
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
}

/// Node counters summed over every node and every life of it (a restart resets a node's own).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct NodeTotals {
    pub reads: u64,
    pub writes: u64,
    pub forwarded: u64,
    pub unavailable: u64,
    pub stale_replicas_found: u64,
    pub read_repairs_sent: u64,
    pub conflicts: u64,
    pub lww_discarded: u64,
    pub sibling_reads: u64,
    pub hints_stored: u64,
    pub hints_delivered: u64,
    pub hints_expired: u64,
    pub hints_refused: u64,
    pub aae_exchanges: u64,
    pub aae_keys_repaired: u64,
    pub aae_bytes_sent: u64,
    pub keys_transferred: u64,
    pub storage_errors: u64,
    pub bad_messages: u64,
    /// Syncs that failed (only under injected disk faults) and the confirmations they refused.
    #[serde(skip_serializing_if = "is_zero")]
    pub syncs_failed: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub confirmations_refused: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl NodeTotals {
    pub(super) fn add(&mut self, s: &Stats) {
        self.reads += s.reads;
        self.writes += s.writes;
        self.forwarded += s.forwarded;
        self.unavailable += s.unavailable;
        self.stale_replicas_found += s.stale_replicas_found;
        self.read_repairs_sent += s.read_repairs_sent;
        self.conflicts += s.conflicts;
        self.lww_discarded += s.lww_discarded;
        self.sibling_reads += s.sibling_reads;
        self.hints_stored += s.hints_stored;
        self.hints_delivered += s.hints_delivered;
        self.hints_expired += s.hints_expired;
        self.hints_refused += s.hints_refused;
        self.aae_exchanges += s.aae_exchanges;
        self.aae_keys_repaired += s.aae_keys_repaired;
        self.aae_bytes_sent += s.aae_bytes_sent;
        self.keys_transferred += s.keys_transferred;
        self.storage_errors += s.storage_errors;
        self.bad_messages += s.bad_messages;
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
        }
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
        }
        (totals, hints_pending)
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
    }
}
