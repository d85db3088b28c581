//! What a run tells: the live progress line on stderr, and at the end the summary (text for
//! people, or the one JSON object of DESIGN.md with `--json`).

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::args::Plan;
use crate::schedule::Amount;
use crate::stats::{Shared, ns_to_ms};

/// How often the progress line is written.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// Latency percentiles of the answered requests, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

/// A finished run's figures.
#[derive(Clone, Debug)]
pub struct Report {
    /// Requests that ended, answered or not; `errors` of them failed.
    pub ops: u64,
    pub errors: u64,
    pub reads: u64,
    pub writes: u64,
    pub duration_s: f64,
    pub ops_per_s: f64,
    pub latency_ms: Latency,
    pub first_error: Option<String>,
    pub clients_gave_up: u64,
    plan: PlanEcho,
}

/// The flags a report repeats, so a JSON line says what was measured.
#[derive(Clone, Debug)]
struct PlanEcho {
    protocol: &'static str,
    nodes: usize,
    workload: &'static str,
    clients: usize,
    pipeline: usize,
    amount: Amount,
    rate: Option<f64>,
    keys: u64,
    value_bytes: usize,
    zipf: Option<f64>,
    bucket: Option<String>,
}

impl Report {
    pub fn new(plan: &Plan, shared: &Shared, elapsed: Duration) -> Report {
        let ops = shared.ops.load(Ordering::Relaxed);
        let h = shared.latency_ns.lock().unwrap_or_else(|p| p.into_inner());
        let (p50, p90, p99, p999, max, mean) = if h.is_empty() {
            (0, 0, 0, 0, 0, 0.0)
        } else {
            (
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.9),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999),
                h.max(),
                h.mean(),
            )
        };
        let duration_s = elapsed.as_secs_f64();
        Report {
            ops,
            errors: shared.errors.load(Ordering::Relaxed),
            reads: shared.reads.load(Ordering::Relaxed),
            writes: shared.writes.load(Ordering::Relaxed),
            duration_s,
            ops_per_s: if duration_s > 0.0 {
                ops as f64 / duration_s
            } else {
                0.0
            },
            latency_ms: Latency {
                p50: ns_to_ms(p50),
                p90: ns_to_ms(p90),
                p99: ns_to_ms(p99),
                p999: ns_to_ms(p999),
                max: ns_to_ms(max),
                mean: (mean / 1_000.0).round() / 1_000.0,
            },
            first_error: shared
                .first_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            clients_gave_up: shared.clients_gave_up.load(Ordering::Relaxed),
            plan: PlanEcho {
                protocol: plan.protocol.name(),
                nodes: plan.nodes.len(),
                workload: plan.workload.name(),
                clients: plan.clients,
                pipeline: plan.pipeline,
                amount: plan.amount,
                rate: plan.rate,
                keys: plan.keys,
                value_bytes: plan.value_bytes,
                zipf: plan.zipf,
                bucket: plan.bucket.clone(),
            },
        }
    }

    /// The JSON object of DESIGN.md, with what was measured beside the figures.
    pub fn json(&self) -> Value {
        let l = &self.latency_ms;
        let p = &self.plan;
        let mut v = json!({
            "ops": self.ops,
            "ops_per_s": (self.ops_per_s * 10.0).round() / 10.0,
            "errors": self.errors,
            "latency_ms": {
                "p50": l.p50, "p90": l.p90, "p99": l.p99, "p999": l.p999, "max": l.max,
                "mean": l.mean,
            },
            "reads": self.reads,
            "writes": self.writes,
            "duration_s": (self.duration_s * 1000.0).round() / 1000.0,
            "protocol": p.protocol,
            "nodes": p.nodes,
            "workload": p.workload,
            "clients": p.clients,
            "pipeline": p.pipeline,
            "keys": p.keys,
            "value_bytes": p.value_bytes,
            "loop": if p.rate.is_some() { "open" } else { "closed" },
        });
        match p.amount {
            Amount::Requests(n) => v["requests"] = json!(n),
            Amount::Duration(d) => v["duration_s_asked"] = json!(d.as_secs_f64()),
        }
        if let Some(rate) = p.rate {
            v["rate"] = json!(rate);
        }
        if let Some(s) = p.zipf {
            v["zipf"] = json!(s);
        }
        if let Some(b) = &p.bucket {
            v["bucket"] = json!(b);
        }
        if let Some(e) = &self.first_error {
            v["first_error"] = json!(e);
        }
        if self.clients_gave_up > 0 {
            v["clients_gave_up"] = json!(self.clients_gave_up);
        }
        v
    }

    /// The summary for people.
    pub fn text(&self) -> String {
        let p = &self.plan;
        let keys = match p.zipf {
            Some(s) => format!("{} keys, zipfian {s}", p.keys),
            None => format!("{} keys, uniform", p.keys),
        };
        let pace = match p.rate {
            Some(r) => format!("open loop at {r} ops/s"),
            None => "closed loop".to_string(),
        };
        let mut out = format!(
            "workload {} over {} to {} node{}: {} clients x pipeline {}, {pace}; {keys}, {}-byte values\n",
            p.workload,
            p.protocol.to_uppercase(),
            p.nodes,
            if p.nodes == 1 { "" } else { "s" },
            p.clients,
            p.pipeline,
            p.value_bytes,
        );
        out.push_str(&format!(
            "{} ops in {:.2} s: {:.0} ops/s ({} reads, {} writes), {} errors\n",
            self.ops, self.duration_s, self.ops_per_s, self.reads, self.writes, self.errors
        ));
        let l = &self.latency_ms;
        out.push_str(&format!(
            "latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}{}\n",
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max,
            l.mean,
            if p.rate.is_some() {
                " (from each request's intended start)"
            } else {
                ""
            }
        ));
        if let Some(e) = &self.first_error {
            out.push_str(&format!("first error: {e}\n"));
        }
        if self.clients_gave_up > 0 {
            out.push_str(&format!(
                "{} clients stopped early: their node refused connections\n",
                self.clients_gave_up
            ));
        }
        out
    }
}

/// Writes the progress line once a second until aborted: rewritten in place (`\r`) on a
/// terminal, one line a second otherwise.
pub async fn progress(shared: Arc<Shared>, start: Instant) {
    let terminal = std::io::stderr().is_terminal();
    let mut every = tokio::time::interval_at(start + PROGRESS_INTERVAL, PROGRESS_INTERVAL);
    let mut ops_before = 0;
    let mut at_before = start;
    loop {
        let now = every.tick().await;
        let ops = shared.ops.load(Ordering::Relaxed);
        let errors = shared.errors.load(Ordering::Relaxed);
        let rate = (ops - ops_before) as f64 / now.duration_since(at_before).as_secs_f64();
        let line = format!(
            "{:6.1} s  {ops} ops  {rate:.0} ops/s  p99 {:.3} ms  {errors} errors",
            now.duration_since(start).as_secs_f64(),
            shared.p99_ms(),
        );
        let mut err = std::io::stderr().lock();
        let _ = if terminal {
            write!(err, "\r\x1b[K{line}")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
        (ops_before, at_before) = (ops, now);
    }
}

/// Clears the progress line on a terminal, after the run.
pub fn end_progress() {
    let mut err = std::io::stderr();
    if err.is_terminal() {
        let _ = write!(err, "\r\x1b[K");
        let _ = err.flush();
    }
}
