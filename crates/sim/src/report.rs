//! The report of one run: measurements, checks, a timeline; as JSON (stable, byte-identical for
//! the same scenario and seed), as text for people, and as SVG plots.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::check::Findings;
use crate::measure::{Percentiles, round_ratio, round_us};
use crate::scenario::Scenario;
use crate::svg::{Chart, Series, cdf, render};
use crate::world::{MessageCounts, NodeTotals, OpCounts, Outcomes};

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

fn level_name(s: &str) -> String {
    s.to_ascii_lowercase()
}

impl Report {
    pub fn build(sc: &Scenario, o: Outcomes, f: Findings) -> Report {
        let t_len = sc.visibility.t_ms.len();
        let mut fresh = vec![0u64; t_len];
        let mut done = vec![0u64; t_len];
        for trial in &o.trials {
            if let Some(x) = trial.fresh {
                done[trial.t_index] += 1;
                fresh[trial.t_index] += x as u64;
            }
        }
        let t_visibility = sc
            .visibility
            .t_ms
            .iter()
            .enumerate()
            .map(|(i, t)| TPoint {
                t_ms: *t,
                probability: (done[i] > 0).then(|| round_ratio(fresh[i] as f64 / done[i] as f64)),
                trials: done[i],
            })
            .collect();
        let mut windows = Vec::new();
        let mut never = 0;
        for v in o.hist.versions.iter().filter(|v| !v.void) {
            let Some(acked) = v.acked_us else { continue };
            match v.everywhere_us {
                Some(all) => windows.push(all.saturating_sub(acked) as f64 / 1000.0),
                None => never += 1,
            }
        }
        let mut read = o.read_latency_ms.clone();
        let mut write = o.write_latency_ms.clone();
        let mut win = windows.clone();
        let (mut attempted, mut acked) = (0u64, 0u64);
        for (name, c) in &o.ops {
            if ["put", "counter_add", "set_add", "set_remove"].contains(name) {
                attempted += c.issued;
                acked += c.ok;
            }
        }
        let mut total = MessageCounts::default();
        for m in o.messages.values() {
            total.sent += m.sent;
            total.delivered += m.delivered;
            total.lost += m.lost;
            total.cut += m.cut;
            total.to_down_node += m.to_down_node;
            total.duplicated += m.duplicated;
        }
        let t = &o.node_totals;
        Report {
            scenario: sc.name.clone(),
            description: sc.description.trim().to_string(),
            seed: sc.seed,
            cluster: Cluster {
                nodes: sc.nodes,
                n: sc.n,
                r: level_name(&sc.r),
                w: level_name(&sc.w),
                durability: sc.durability.clone(),
                read_repair: sc.read_repair,
                hinted_handoff: sc.hinted_handoff,
                membership: format!("{:?}", sc.membership).to_ascii_lowercase(),
                coordinator: format!("{:?}", sc.coordinator).to_ascii_lowercase(),
            },
            membership: sc.membership_changes().then(|| Membership {
                members_at_start: o
                    .nodes_at_end
                    .iter()
                    .filter(|n| n.initial)
                    .map(|n| n.name.clone())
                    .collect(),
                members_at_end: o
                    .nodes_at_end
                    .iter()
                    .filter(|n| n.state == "member")
                    .map(|n| n.name.clone())
                    .collect(),
                nodes: o
                    .nodes_at_end
                    .iter()
                    .map(|n| NodeAtEnd {
                        name: n.name.clone(),
                        state: n.state.to_string(),
                        records: n.records,
                    })
                    .collect(),
                keys_transferred: t.keys_transferred,
                keys_off_their_primaries: o
                    .holders
                    .iter()
                    .zip(&o.hist.keys)
                    .filter(|(h, k)| h.iter().any(|i| !k.primaries.contains(i)))
                    .count(),
            }),
            t_visibility,
            inconsistency_window_ms: Percentiles::of(&mut win),
            versions_never_everywhere: never,
            stale_read_ratio: if o.register_reads == 0 {
                0.0
            } else {
                round_ratio(o.stale_reads as f64 / o.register_reads as f64)
            },
            register_reads: o.register_reads,
            stale_reads: o.stale_reads,
            sessions: (sc.workload.sessions > 0).then(|| Sessions {
                sessions: sc.workload.sessions,
                tokens: sc.workload.session_tokens,
                reads: o.sessions.reads,
                went_back: o.sessions.went_back,
                went_back_ratio: if o.sessions.reads == 0 {
                    0.0
                } else {
                    round_ratio(o.sessions.went_back as f64 / o.sessions.reads as f64)
                },
                refused: o.sessions.refused,
            }),
            read_latency_ms: Percentiles::of(&mut read),
            write_latency_ms: Percentiles::of(&mut write),
            write_availability: if attempted == 0 {
                1.0
            } else {
                round_ratio(acked as f64 / attempted as f64)
            },
            ops: o
                .ops
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            conflicts: Conflicts {
                concurrent_merges: t.conflicts,
                sibling_reads: o.sibling_reads,
                siblings_read_max: o.siblings_max,
                keys_with_siblings_at_end: f.keys_with_siblings_at_end,
                siblings_at_end_max: f.siblings_at_end_max,
                lww_discarded_values: t.lww_discarded,
                writes_lost_by_lww: f.writes_lost_by_lww,
                lww_acknowledged_writes: f.lww_acked_writes,
            },
            repair: Repair {
                read_repair_messages: o.messages.get("repair").map_or(0, |m| m.sent),
                stale_replicas_found: t.stale_replicas_found,
                hints_stored: t.hints_stored,
                hints_delivered: t.hints_delivered,
                hints_expired: t.hints_expired,
                hints_pending_at_end: o.hints_pending_at_end,
            },
            messages: o
                .messages
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            messages_total: total,
            node_totals: t.clone(),
            convergence: Convergence {
                converged_after_ms: o.converged_after_ms.map(round_us),
                poll_ms: sc.settle.poll_ms,
                settle_ms: round_us(o.settle_ms),
                bound_ms: sc.settle.max_ms,
                divergent_keys: o.divergent_keys,
                keys: o.hist.keys.len(),
            },
            events: o.events,
            timeline: o
                .log
                .iter()
                .map(|(t, what)| TimelineEntry {
                    t_ms: round_us(*t),
                    what: what.clone(),
                })
                .collect(),
            checks: f.checks,
            samples: Samples {
                read_latency_ms: o.read_latency_ms,
                write_latency_ms: o.write_latency_ms,
                windows_ms: windows,
            },
        }
    }

    pub fn passed(&self) -> bool {
        self.checks.values().all(|v| v == "pass")
    }

    /// `(check, failure)` for every check that failed.
    pub fn failures(&self) -> Vec<(&str, &str)> {
        self.checks
            .iter()
            .filter(|(_, v)| *v != "pass")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a report always serializes");
        s.push('\n');
        s
    }

    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let c = &self.cluster;
        let _ = writeln!(
            s,
            "driftkv consistency lab: {} (seed {})",
            if self.scenario.is_empty() {
                "scenario"
            } else {
                &self.scenario
            },
            self.seed
        );
        if !self.description.is_empty() {
            let _ = writeln!(s, "{}", self.description);
        }
        let _ = writeln!(
            s,
            "\ncluster: {} nodes, N={} R={} W={}, durability {}, read repair {}, hinted handoff {}, membership {}, coordinator {}",
            c.nodes,
            c.n,
            c.r,
            c.w,
            c.durability,
            on_off(c.read_repair),
            on_off(c.hinted_handoff),
            c.membership,
            c.coordinator
        );
        if let Some(m) = &self.membership {
            let nodes: Vec<String> = m
                .nodes
                .iter()
                .map(|n| format!("{} {} ({} records)", n.name, n.state, n.records))
                .collect();
            let _ = writeln!(
                s,
                "membership: {} at the start, {} at the end; {} keys transferred; {} keys held off their primaries at the end\n  {}",
                m.members_at_start.join(","),
                m.members_at_end.join(","),
                m.keys_transferred,
                m.keys_off_their_primaries,
                nodes.join(", ")
            );
        }
        let t = &self.node_totals;
        if t.syncs_failed > 0 || t.confirmations_refused > 0 {
            let _ = writeln!(
                s,
                "disk faults: {} syncs failed, {} confirmations refused and {} messages dropped for them, {} storage errors",
                t.syncs_failed, t.confirmations_refused, t.messages_dropped, t.storage_errors
            );
        }
        let _ = writeln!(s, "\nchecks:");
        for (name, result) in &self.checks {
            let _ = writeln!(s, "  {name:<38} {result}");
        }
        let _ = writeln!(
            s,
            "\nt-visibility (P[a read issued t ms after a write's acknowledgement returns it]):"
        );
        for p in &self.t_visibility {
            let _ = writeln!(
                s,
                "  t = {:>8} ms   {}   ({} trials)",
                p.t_ms,
                p.probability
                    .map_or("   n/a".to_string(), |v| format!("{v:.4}")),
                p.trials
            );
        }
        let _ = writeln!(
            s,
            "\ninconsistency window (ack -> every replica has it): {}",
            self.inconsistency_window_ms.line()
        );
        if self.versions_never_everywhere > 0 {
            let _ = writeln!(
                s,
                "  {} acknowledged versions never reached every replica",
                self.versions_never_everywhere
            );
        }
        let _ = writeln!(
            s,
            "stale reads: {} of {} register reads ({:.4})",
            self.stale_reads, self.register_reads, self.stale_read_ratio
        );
        if let Some(x) = &self.sessions {
            let _ = writeln!(
                s,
                "sessions: {} ({}); {} of their {} register reads returned less than the session \
                 had seen ({:.4}); {} session reads refused",
                x.sessions,
                if x.tokens {
                    "with session tokens"
                } else {
                    "watched, no tokens"
                },
                x.went_back,
                x.reads,
                x.went_back_ratio,
                x.refused
            );
        }
        let _ = writeln!(s, "read latency:  {}", self.read_latency_ms.line());
        let _ = writeln!(s, "write latency: {}", self.write_latency_ms.line());
        let _ = writeln!(s, "write availability: {:.4}", self.write_availability);
        let _ = writeln!(s, "\noperations (issued / ok / failed / timed out):");
        for (name, o) in &self.ops {
            let _ = writeln!(
                s,
                "  {name:<12} {:>8} {:>8} {:>8} {:>8}",
                o.issued, o.ok, o.failed, o.timed_out
            );
        }
        let k = &self.conflicts;
        let _ = writeln!(
            s,
            "\nconflicts: {} concurrent merges, {} sibling reads (max {} siblings), {} keys with siblings at the end (max {}), lww discarded {} values, {} of {} acknowledged lww writes lost to a concurrent later timestamp",
            k.concurrent_merges,
            k.sibling_reads,
            k.siblings_read_max,
            k.keys_with_siblings_at_end,
            k.siblings_at_end_max,
            k.lww_discarded_values,
            k.writes_lost_by_lww,
            k.lww_acknowledged_writes
        );
        let r = &self.repair;
        let _ = writeln!(
            s,
            "repair: {} read-repair messages ({} stale replicas found), hints stored {} / delivered {} / expired {} / pending at end {}",
            r.read_repair_messages,
            r.stale_replicas_found,
            r.hints_stored,
            r.hints_delivered,
            r.hints_expired,
            r.hints_pending_at_end
        );
        let _ = writeln!(
            s,
            "\nmessages (sent / delivered / lost / cut / to down node / duplicated):"
        );
        for (name, m) in self.messages.iter().chain(std::iter::once((
            &"total".to_string(),
            &self.messages_total,
        ))) {
            let _ = writeln!(
                s,
                "  {name:<20} {:>9} {:>9} {:>7} {:>7} {:>7} {:>7}",
                m.sent, m.delivered, m.lost, m.cut, m.to_down_node, m.duplicated
            );
        }
        let v = &self.convergence;
        let _ = writeln!(
            s,
            "\nconvergence: {} ({} keys; run ended {} ms after traffic stopped; bound {} ms)",
            match v.converged_after_ms {
                Some(t) => format!(
                    "every key's replicas agreed at the check {t} ms after traffic stopped (checks every {} ms)",
                    v.poll_ms
                ),
                None => format!("{} keys still differ", v.divergent_keys),
            },
            v.keys,
            v.settle_ms,
            v.bound_ms
        );
        if !self.timeline.is_empty() {
            let _ = writeln!(s, "\ntimeline (ms from the start of traffic):");
            for e in &self.timeline {
                let _ = writeln!(s, "  {:>10}  {}", e.t_ms, e.what);
            }
        }
        let _ = writeln!(s, "\n{} events simulated", self.events);
        s
    }

    /// `(file name, SVG)` for each plot.
    pub fn plots(&self) -> Vec<(String, String)> {
        let mut plots = Vec::new();
        let points: Vec<(f64, f64)> = self
            .t_visibility
            .iter()
            .filter_map(|p| p.probability.map(|v| (p.t_ms, v)))
            .collect();
        plots.push((
            "t_visibility.svg".to_string(),
            render(&Chart {
                title: format!(
                    "t-visibility: N={} R={} W={}",
                    self.cluster.n, self.cluster.r, self.cluster.w
                ),
                x_label: "t: ms after the write was acknowledged (log scale)".into(),
                y_label: "P(read returns the write)".into(),
                y_max: 1.0,
                series: vec![Series {
                    name: format!("R={} W={}", self.cluster.r, self.cluster.w),
                    color: "#1f77b4",
                    points,
                }],
            }),
        ));
        plots.push((
            "latency_cdf.svg".to_string(),
            render(&Chart {
                title: "client latency".into(),
                x_label: "ms (log scale)".into(),
                y_label: "fraction of operations".into(),
                y_max: 1.0,
                series: vec![
                    Series {
                        name: "reads".into(),
                        color: "#1f77b4",
                        points: cdf(&self.samples.read_latency_ms),
                    },
                    Series {
                        name: "writes".into(),
                        color: "#d62728",
                        points: cdf(&self.samples.write_latency_ms),
                    },
                ],
            }),
        ));
        plots.push((
            "inconsistency_window_cdf.svg".to_string(),
            render(&Chart {
                title: "inconsistency window per acknowledged write".into(),
                x_label: "ms from acknowledgement until every replica holds it (log scale)".into(),
                y_label: "fraction of writes".into(),
                y_max: 1.0,
                series: vec![Series {
                    name: "writes".into(),
                    color: "#2ca02c",
                    points: cdf(&self.samples.windows_ms),
                }],
            }),
        ));
        plots
    }
}

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

/// One row of an R/W sweep.
pub struct SweepRow {
    pub r: String,
    pub w: String,
    pub report: Report,
}

/// The t-visibility points a sweep table shows (the closest grid points to these).
pub const SWEEP_T_MS: [f64; 4] = [0.0, 5.0, 20.0, 100.0];

/// A comparison table of an R/W sweep, as text.
pub fn sweep_table(n: usize, rows: &[SweepRow]) -> String {
    let mut s = String::new();
    let Some(first) = rows.first() else {
        return s;
    };
    let shown: Vec<usize> = SWEEP_T_MS
        .iter()
        .filter_map(|want| {
            first
                .report
                .t_visibility
                .iter()
                .enumerate()
                .min_by(|a, b| (a.1.t_ms - want).abs().total_cmp(&(b.1.t_ms - want).abs()))
                .map(|(i, _)| i)
        })
        .collect::<std::collections::BTreeSet<usize>>()
        .into_iter()
        .collect();
    let mut header = format!("{:>3} {:>3} {:>6} ", "R", "W", "R+W>N");
    for &i in &shown {
        header += &format!(
            "{:>9}",
            format!("P@{}ms", first.report.t_visibility[i].t_ms)
        );
    }
    header += &format!(
        " {:>8} {:>10} {:>10} {:>10} {:>8} {:>7}",
        "stale", "read p99", "write p99", "window p99", "avail", "checks"
    );
    let _ = writeln!(s, "N = {n}");
    let _ = writeln!(s, "{header}");
    for row in rows {
        let rep = &row.report;
        let r_k = level_count(&row.r, n);
        let w_k = level_count(&row.w, n);
        let mut line = format!(
            "{:>3} {:>3} {:>6} ",
            row.r,
            row.w,
            if r_k + w_k > n { "yes" } else { "no" }
        );
        for &i in &shown {
            let p = rep.t_visibility.get(i).and_then(|p| p.probability);
            line += &format!("{:>9}", p.map_or("n/a".into(), |v| format!("{v:.4}")));
        }
        line += &format!(
            " {:>8.4} {:>10} {:>10} {:>10} {:>8.4} {:>7}",
            rep.stale_read_ratio,
            rep.read_latency_ms.p99,
            rep.write_latency_ms.p99,
            rep.inconsistency_window_ms.p99,
            rep.write_availability,
            if rep.passed() { "pass" } else { "FAIL" }
        );
        let _ = writeln!(s, "{line}");
    }
    s
}

/// Colours for series, in order (the matplotlib "tab10" palette).
pub const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// One t-visibility curve per R/W pair of a sweep.
pub fn sweep_plot(rows: &[SweepRow]) -> String {
    let series = rows
        .iter()
        .enumerate()
        .map(|(i, row)| Series {
            name: format!("R={} W={}", row.r, row.w),
            color: PALETTE[i % PALETTE.len()],
            points: row
                .report
                .t_visibility
                .iter()
                .filter_map(|p| p.probability.map(|v| (p.t_ms, v)))
                .collect(),
        })
        .collect();
    render(&Chart {
        title: format!(
            "t-visibility by R and W (N={})",
            rows.first().map_or(0, |r| r.report.cluster.n)
        ),
        x_label: "t: ms after the write was acknowledged (log scale)".into(),
        y_label: "P(read returns the write)".into(),
        y_max: 1.0,
        series,
    })
}

fn level_count(level: &str, n: usize) -> usize {
    driftkv_wire::Quorum::parse(level)
        .ok()
        .and_then(|q| q.resolve(n, driftkv_wire::Quorum::Quorum).ok())
        .unwrap_or(0)
}
