//! The report as text for people: a section per part of the report, in a fixed order.

use std::fmt::Write;

use super::Report;

/// Width of the check-name column.
const CHECK_COLUMN: usize = 38;
/// Width of the operation-name column.
const OP_COLUMN: usize = 12;
/// Width of the message-kind column.
const MESSAGE_COLUMN: usize = 20;
/// Width of the timeline's time column.
const TIMELINE_T_COLUMN: usize = 10;

fn on_off(b: bool) -> &'static str {
    if b { "on" } else { "off" }
}

// Writing to a `String` cannot fail: the `fmt::Result`s below are discarded.
impl Report {
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        self.write_heading(&mut s);
        self.write_cluster(&mut s);
        self.write_checks(&mut s);
        self.write_visibility(&mut s);
        self.write_reads(&mut s);
        self.write_operations(&mut s);
        self.write_conflicts_and_repair(&mut s);
        self.write_data_types(&mut s);
        self.write_messages(&mut s);
        self.write_convergence(&mut s);
        self.write_timeline(&mut s);
        let _ = writeln!(s, "\n{} events simulated", self.events);
        s
    }

    fn write_heading(&self, s: &mut String) {
        let name = if self.scenario.is_empty() {
            "scenario"
        } else {
            &self.scenario
        };
        let _ = writeln!(s, "driftkv consistency lab: {name} (seed {})", self.seed);
        if !self.description.is_empty() {
            let _ = writeln!(s, "{}", self.description);
        }
    }

    /// The cluster's settings, its membership changes and its disk faults, if any.
    fn write_cluster(&self, s: &mut String) {
        let c = &self.cluster;
        let _ = writeln!(
            s,
            "\ncluster: {} nodes, N={} R={} W={}, durability {}, read repair {}, hinted handoff {}, anti-entropy {}, membership {}, coordinator {}, lww writes {}",
            c.nodes,
            c.n,
            c.r,
            c.w,
            c.durability,
            on_off(c.read_repair),
            on_off(c.hinted_handoff),
            on_off(c.anti_entropy),
            c.membership,
            c.coordinator,
            match c.write_path.as_str() {
                "direct" => "direct (the coordinator sends each to all N)",
                _ => "through a replica (forwarded to one, which coordinates)",
            }
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
    }

    fn write_checks(&self, s: &mut String) {
        let _ = writeln!(s, "\nchecks:");
        for (name, result) in &self.checks {
            let _ = writeln!(s, "  {name:<w$} {result}", w = CHECK_COLUMN);
        }
    }

    /// t-visibility per grid point, and the inconsistency window.
    fn write_visibility(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "\nt-visibility (P[a read issued t ms after a write's acknowledgement returns it]):"
        );
        for p in &self.t_visibility {
            let published: Vec<String> = self
                .published
                .iter()
                .filter(|q| q.t_ms == p.t_ms)
                .map(|q| format!("   published {:.4} ({})", q.p, q.source))
                .collect();
            let _ = writeln!(
                s,
                "  t = {:>8} ms   {}   ({} trials){}",
                p.t_ms,
                p.probability
                    .map_or("   n/a".to_string(), |v| format!("{v:.4}")),
                p.trials,
                published.concat()
            );
        }
        if let Some(k) = &self.k_staleness {
            let _ = writeln!(
                s,
                "\nk-staleness (P[a read issued t ms after the last of {} versions returns one of the last k]):",
                k.versions
            );
            let mut header = format!("  {:>10}", "t (ms)");
            for i in 1..=k.versions {
                header += &format!("{:>8}", format!("k={i}"));
            }
            let _ = writeln!(s, "{header}");
            for p in &k.points {
                let mut line = format!("  {:>10}", p.t_ms);
                for v in &p.within_k {
                    line += &format!("{v:>8.4}");
                }
                let _ = writeln!(s, "{line}   ({} reads)", p.reads);
            }
            let mut line = format!("  {:>10}", "no spread");
            for v in &k.closed_form_without_spread {
                line += &format!("{v:>8.4}");
            }
            let _ = writeln!(
                s,
                "{line}   (closed form if writes reached only W replicas)"
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
    }

    /// Stale reads, sessions, latencies and write availability.
    fn write_reads(&self, s: &mut String) {
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
    }

    fn write_operations(&self, s: &mut String) {
        let _ = writeln!(s, "\noperations (issued / ok / failed / timed out):");
        for (name, o) in &self.ops {
            let _ = writeln!(
                s,
                "  {name:<w$} {:>8} {:>8} {:>8} {:>8}",
                o.issued,
                o.ok,
                o.failed,
                o.timed_out,
                w = OP_COLUMN
            );
        }
    }

    fn write_conflicts_and_repair(&self, s: &mut String) {
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
    }

    /// What the data-type checks judged and measured, when the workload has them.
    fn write_data_types(&self, s: &mut String) {
        let Some(d) = &self.data_types else { return };
        let _ = writeln!(
            s,
            "expiry: {} acknowledged writes with a TTL; {} reads returned a value with an expiry, {} of them at or after it by virtual time (within the clock skew; latest {} ms after; bound {} ms at the end of traffic)",
            d.ttl_writes_acknowledged,
            d.reads_of_expiring_values,
            d.reads_past_expiry_within_skew,
            d.past_expiry_max_ms,
            d.clock_lag_bound_ms
        );
        let _ = writeln!(
            s,
            "maps and deletes: {} map fields with a value the history fixes, {} it bounds, {} counting increments a remove took away; {} deletes that saw everything of their key; {} counters with deletes judged",
            d.map_fields_valued,
            d.map_fields_bounded,
            d.map_fields_counting_removed_increments,
            d.complete_deletes,
            d.counters_with_deletes_judged
        );
        let _ = writeln!(
            s,
            "set if not exists (read at R, then write with its context): {} races of two clients, {} answered, both told they set the key in {} ({:.4})",
            d.nx_races, d.nx_races_answered, d.nx_double_success, d.nx_double_success_rate
        );
    }

    /// Message counts per kind, then their total.
    fn write_messages(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "\nmessages (sent / delivered / lost / cut / to down node / duplicated):"
        );
        let total = "total".to_string();
        let rows = self
            .messages
            .iter()
            .chain(std::iter::once((&total, &self.messages_total)));
        for (name, m) in rows {
            let _ = writeln!(
                s,
                "  {name:<w$} {:>9} {:>9} {:>7} {:>7} {:>7} {:>7}",
                m.sent,
                m.delivered,
                m.lost,
                m.cut,
                m.to_down_node,
                m.duplicated,
                w = MESSAGE_COLUMN
            );
        }
    }

    fn write_convergence(&self, s: &mut String) {
        let v = &self.convergence;
        let verdict = match v.converged_after_ms {
            Some(t) => format!(
                "every key's replicas agreed at the check {t} ms after traffic stopped (checks every {} ms)",
                v.poll_ms
            ),
            None => format!("{} keys still differ", v.divergent_keys),
        };
        let _ = writeln!(
            s,
            "\nconvergence: {verdict} ({} keys; run ended {} ms after traffic stopped; bound {} ms)",
            v.keys, v.settle_ms, v.bound_ms
        );
    }

    fn write_timeline(&self, s: &mut String) {
        if self.timeline.is_empty() {
            return;
        }
        let _ = writeln!(s, "\ntimeline (ms from the start of traffic):");
        for e in &self.timeline {
            let _ = writeln!(s, "  {:>w$}  {}", e.t_ms, e.what, w = TIMELINE_T_COLUMN);
        }
    }
}
