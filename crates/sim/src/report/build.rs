//! Building a report from a run's outcomes and the checks' findings: each part of the report
//! from what it measures.

use super::{
    Cluster, Conflicts, Convergence, KPoint, KStaleness, Membership, NodeAtEnd, Repair, Report,
    Samples, Sessions, TPoint, TimelineEntry,
};
use crate::check::Findings;
use crate::measure::{Percentiles, round_ratio, round_us};
use crate::scenario::Scenario;
use crate::world::{MessageCounts, NodeEnd, Outcomes};

/// The operations that write: their acknowledged share is the write availability.
const WRITE_OPS: [&str; 12] = [
    "put",
    "counter_add",
    "set_add",
    "set_remove",
    "put_ttl",
    "map_set",
    "map_increment",
    "map_remove",
    "delete_register",
    "delete_counter",
    "delete_set",
    "delete_map",
];

/// Microseconds of virtual time in a millisecond.
const US_PER_MS: f64 = 1000.0;

impl Report {
    pub fn build(sc: &Scenario, o: Outcomes, f: Findings) -> Report {
        let (windows, never) = inconsistency_windows(&o);
        let t = &o.node_totals;
        Report {
            scenario: sc.name.clone(),
            description: sc.description.trim().to_string(),
            seed: sc.seed,
            cluster: cluster(sc),
            membership: membership(sc, &o),
            t_visibility: t_visibility(sc, &o),
            published: sc.visibility.published.clone(),
            k_staleness: k_staleness(sc, &o),
            inconsistency_window_ms: Percentiles::of(&mut windows.clone()),
            versions_never_everywhere: never,
            stale_read_ratio: ratio(o.stale_reads, o.register_reads, 0.0),
            register_reads: o.register_reads,
            stale_reads: o.stale_reads,
            sessions: sessions(sc, &o),
            read_latency_ms: Percentiles::of(&mut o.read_latency_ms.clone()),
            write_latency_ms: Percentiles::of(&mut o.write_latency_ms.clone()),
            write_availability: write_availability(&o),
            ops: o
                .ops
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            conflicts: conflicts(&o, &f),
            repair: repair(&o),
            messages: o
                .messages
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            messages_total: messages_total(&o),
            node_totals: t.clone(),
            convergence: convergence(sc, &o),
            data_types: f.data_types.clone(),
            events: o.events,
            timeline: timeline(&o),
            checks: f.checks,
            samples: Samples {
                read_latency_ms: o.read_latency_ms,
                write_latency_ms: o.write_latency_ms,
                windows_ms: windows,
            },
        }
    }
}

/// `part / whole`, rounded for the report; `if_none` when `whole` is zero.
fn ratio(part: u64, whole: u64, if_none: f64) -> f64 {
    if whole == 0 {
        if_none
    } else {
        round_ratio(part as f64 / whole as f64)
    }
}

/// A quorum level as the report names it.
fn level_name(s: &str) -> String {
    s.to_ascii_lowercase()
}

fn cluster(sc: &Scenario) -> Cluster {
    Cluster {
        nodes: sc.nodes,
        n: sc.n,
        r: level_name(&sc.r),
        w: level_name(&sc.w),
        durability: sc.durability.clone(),
        read_repair: sc.read_repair,
        hinted_handoff: sc.hinted_handoff,
        membership: format!("{:?}", sc.membership).to_ascii_lowercase(),
        coordinator: format!("{:?}", sc.coordinator).to_ascii_lowercase(),
        anti_entropy: sc.anti_entropy,
        write_path: format!("{:?}", sc.write_path).to_ascii_lowercase(),
    }
}

/// Who was a member when and where the data ended up, for scenarios with joins or leaves.
fn membership(sc: &Scenario, o: &Outcomes) -> Option<Membership> {
    let names = |keep: fn(&NodeEnd) -> bool| -> Vec<String> {
        o.nodes_at_end
            .iter()
            .filter(|n| keep(n))
            .map(|n| n.name.clone())
            .collect()
    };
    sc.membership_changes().then(|| Membership {
        members_at_start: names(|n| n.initial),
        members_at_end: names(|n| n.state == "member"),
        nodes: o
            .nodes_at_end
            .iter()
            .map(|n| NodeAtEnd {
                name: n.name.clone(),
                state: n.state.to_string(),
                records: n.records,
            })
            .collect(),
        keys_transferred: o.node_totals.keys_transferred,
        keys_off_their_primaries: o
            .holders
            .iter()
            .zip(&o.hist.keys)
            .filter(|(h, k)| h.iter().any(|i| !k.primaries.contains(i)))
            .count(),
    })
}

/// Per grid point `t`, the share of completed reads that returned the last version written.
fn t_visibility(sc: &Scenario, o: &Outcomes) -> Vec<TPoint> {
    let v = &sc.visibility;
    let mut fresh = vec![0u64; v.t_ms.len()];
    let mut done = vec![0u64; v.t_ms.len()];
    for (t, returned) in answered_reads(o) {
        done[t] += 1;
        fresh[t] += (returned == v.versions) as u64;
    }
    v.t_ms
        .iter()
        .enumerate()
        .map(|(i, t)| TPoint {
            t_ms: *t,
            probability: (done[i] > 0).then(|| round_ratio(fresh[i] as f64 / done[i] as f64)),
            trials: done[i],
        })
        .collect()
}

/// Every trial read that answered: its grid point and the version it returned.
fn answered_reads(o: &Outcomes) -> impl Iterator<Item = (usize, u32)> + '_ {
    o.trials.iter().flat_map(|trial| {
        trial
            .reads
            .iter()
            .filter_map(|&(t, returned)| returned.map(|r| (t as usize, r)))
    })
}

/// Per grid point `t` and `k`, the share of reads that returned one of the last `k` versions;
/// `None` unless trials write several.
fn k_staleness(sc: &Scenario, o: &Outcomes) -> Option<KStaleness> {
    let v = &sc.visibility;
    let versions = v.versions;
    if versions <= 1 {
        return None;
    }
    let mut within = vec![vec![0u64; versions as usize]; v.t_ms.len()];
    let mut done = vec![0u64; v.t_ms.len()];
    for (t, returned) in answered_reads(o) {
        done[t] += 1;
        // Returning version `j` of `versions` is within the last `k` for `k > versions - j`.
        for k in 1..=versions {
            within[t][k as usize - 1] += (returned + k > versions) as u64;
        }
    }
    let points = v
        .t_ms
        .iter()
        .enumerate()
        .map(|(i, t)| KPoint {
            t_ms: *t,
            reads: done[i],
            within_k: within[i]
                .iter()
                .map(|n| round_ratio(*n as f64 / done[i].max(1) as f64))
                .collect(),
        })
        .collect();
    let n = sc.n.min(sc.nodes);
    let r = sc.quorum_r().resolve(n, sc.quorum_r()).unwrap_or(n);
    let w = sc.quorum_w().resolve(n, sc.quorum_w()).unwrap_or(n);
    // The chance that a read quorum misses every replica a write quorum reached.
    let miss = choose(n - w.min(n), r) / choose(n, r);
    Some(KStaleness {
        versions,
        points,
        closed_form_without_spread: (1..=versions)
            .map(|k| round_ratio(1.0 - miss.powi(k as i32)))
            .collect(),
    })
}

/// `C(n, k)`, as a float (n is a handful of replicas).
fn choose(n: usize, k: usize) -> f64 {
    if k > n {
        return 0.0;
    }
    (0..k).fold(1.0, |acc, i| acc * (n - i) as f64 / (i + 1) as f64)
}

/// The inconsistency window of every acknowledged version that reached every primary, in ms,
/// and how many never did.
fn inconsistency_windows(o: &Outcomes) -> (Vec<f64>, u64) {
    let mut windows = Vec::new();
    let mut never = 0;
    for v in o.hist.versions.iter().filter(|v| !v.void) {
        let Some(acked) = v.acked_us else { continue };
        match v.everywhere_us {
            Some(all) => windows.push(all.saturating_sub(acked) as f64 / US_PER_MS),
            None => never += 1,
        }
    }
    (windows, never)
}

fn sessions(sc: &Scenario, o: &Outcomes) -> Option<Sessions> {
    (sc.workload.sessions > 0).then(|| Sessions {
        sessions: sc.workload.sessions,
        tokens: sc.workload.session_tokens,
        reads: o.sessions.reads,
        went_back: o.sessions.went_back,
        went_back_ratio: ratio(o.sessions.went_back, o.sessions.reads, 0.0),
        refused: o.sessions.refused,
    })
}

/// Acknowledged writes over attempted writes (1 when none were attempted).
fn write_availability(o: &Outcomes) -> f64 {
    let (mut attempted, mut acked) = (0u64, 0u64);
    for (name, c) in &o.ops {
        if WRITE_OPS.contains(name) {
            attempted += c.issued;
            acked += c.ok;
        }
    }
    ratio(acked, attempted, 1.0)
}

fn conflicts(o: &Outcomes, f: &Findings) -> Conflicts {
    let t = &o.node_totals;
    Conflicts {
        concurrent_merges: t.conflicts,
        sibling_reads: o.sibling_reads,
        siblings_read_max: o.siblings_max,
        keys_with_siblings_at_end: f.keys_with_siblings_at_end,
        siblings_at_end_max: f.siblings_at_end_max,
        lww_discarded_values: t.lww_discarded,
        writes_lost_by_lww: f.writes_lost_by_lww,
        lww_acknowledged_writes: f.lww_acked_writes,
    }
}

fn repair(o: &Outcomes) -> Repair {
    let t = &o.node_totals;
    Repair {
        read_repair_messages: o.messages.get("repair").map_or(0, |m| m.sent),
        stale_replicas_found: t.stale_replicas_found,
        hints_stored: t.hints_stored,
        hints_delivered: t.hints_delivered,
        hints_expired: t.hints_expired,
        hints_pending_at_end: o.hints_pending_at_end,
    }
}

/// Every message kind's counts, summed.
fn messages_total(o: &Outcomes) -> MessageCounts {
    let mut total = MessageCounts::default();
    for m in o.messages.values() {
        total.sent += m.sent;
        total.delivered += m.delivered;
        total.lost += m.lost;
        total.cut += m.cut;
        total.to_down_node += m.to_down_node;
        total.duplicated += m.duplicated;
    }
    total
}

fn convergence(sc: &Scenario, o: &Outcomes) -> Convergence {
    Convergence {
        converged_after_ms: o.converged_after_ms.map(round_us),
        poll_ms: sc.settle.poll_ms,
        settle_ms: round_us(o.settle_ms),
        bound_ms: sc.settle.max_ms,
        divergent_keys: o.divergent_keys,
        keys: o.hist.keys.len(),
    }
}

fn timeline(o: &Outcomes) -> Vec<TimelineEntry> {
    o.log
        .iter()
        .map(|(t, what)| TimelineEntry {
            t_ms: round_us(*t),
            what: what.clone(),
        })
        .collect()
}
