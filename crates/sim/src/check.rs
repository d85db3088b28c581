//! The checkers: judge the final state and what reads returned against the history. Each
//! yields `"pass"` or a failure text that starts with the seed, so the run can be replayed.
//!
//! - `convergence`: every key's primaries hold equal copies once traffic stopped and faults
//!   healed, within `settle.max_ms`.
//! - `acknowledged_writes_survive`: every acknowledged write is in the final state, or was
//!   replaced by a write that had seen it (siblings mode: its client's context held the dot;
//!   lww mode: its coordinator's state did). In lww mode a write can also lose a race to a
//!   concurrent one (neither coordinator had seen the other) with a later (timestamp, dot):
//!   that is the rule, counted as "lost by lww", not a failure; but its dot must still be in
//!   the final context (it was seen, not vanished). Acknowledged set adds must be seen too.
//! - `siblings_only_for_concurrent_writes`: no two values coexist (in a read or at the end) if
//!   one's write had read the other; lww keys never show two values.
//! - `reads_return_written_values`: no read returns a value no client wrote.
//! - `counters_match_increments`: final value = acknowledged deltas + some of the unacknowledged
//!   ones (those may or may not have landed): `acked + unknown_negative <= value <= acked +
//!   unknown_positive`.
//! - `sets_follow_add_wins`: a member is present if some landed add of it was seen by no remove
//!   of it, and absent if every landed add of it was seen by an acknowledged remove.
//! - `dots_issued_once`: no two writes (register writes, set adds) of one key got the same dot.
//!   A reissued dot makes the second write invisible wherever the first was seen (Riak's
//!   kv679); the other checks reason by dots, so this one guards them.
//! - `nodes_healthy`: no storage errors, no undecodable messages, the run went quiet, and the
//!   simulator's own bookkeeping saw nothing impossible.
//!
//! The checks by data type live in submodules: `dots` (dots issued once), `registers`
//! (surviving writes, siblings, written values), `counters` and `sets`; this module holds the
//! run-wide checks and the collector every check reports to.

use std::collections::BTreeMap;

use bytes::Bytes;
use driftkv_causal::Dot;

use crate::history::Coordination;
use crate::scenario::Scenario;
use crate::world::Outcomes;

mod counters;
mod dots;
mod registers;
mod sets;

/// Failure lines listed per check at most; the count says how many there were in all.
pub const FAILURES_LISTED_MAX: usize = 5;

pub const CHECK_NAMES: [&str; 9] = [
    "convergence",
    "dots_issued_once",
    "acknowledged_writes_survive",
    "siblings_only_for_concurrent_writes",
    "reads_return_written_values",
    "counters_match_increments",
    "sets_follow_add_wins",
    "sessions_never_go_back",
    "nodes_healthy",
];

/// A check's verdict when it held.
pub const PASS: &str = "pass";

/// The check a finding of the simulator's own bookkeeping ("oracle") reports under.
const BOOKKEEPING_CHECK: &str = "nodes_healthy";

/// Microseconds of virtual time in a millisecond.
const US_PER_MS: u64 = 1000;

/// Findings that are measurements rather than pass/fail.
#[derive(Clone, Debug, Default)]
pub struct Findings {
    pub checks: BTreeMap<String, String>,
    /// Acknowledged lww writes discarded by the timestamp rule (not causally replaced).
    pub writes_lost_by_lww: u64,
    pub lww_acked_writes: u64,
    pub keys_with_siblings_at_end: u64,
    pub siblings_at_end_max: usize,
}

/// Where the checks report their failures, per check, in the order they were found.
struct Collector {
    seed: u64,
    /// Virtual time at which traffic started: failure texts give times relative to it.
    t0_us: u64,
    failures: BTreeMap<&'static str, Vec<String>>,
}

impl Collector {
    /// A virtual time as the report's timeline shows it: ms from the start of traffic.
    fn at(&self, at_us: u64) -> String {
        format!(
            "{:.3} ms",
            (at_us as f64 - self.t0_us as f64) / US_PER_MS as f64
        )
    }

    fn fail(&mut self, check: &'static str, what: String) {
        self.failures.entry(check).or_default().push(what);
    }

    /// Every check's verdict: `"pass"`, or the first failures and how many more there were.
    fn into_checks(self) -> BTreeMap<String, String> {
        CHECK_NAMES
            .iter()
            .map(|&name| {
                let text = match self.failures.get(name) {
                    None => PASS.to_string(),
                    Some(list) => self.verdict(list),
                };
                (name.to_string(), text)
            })
            .collect()
    }

    /// A failed check's text: the seed, the first failures, and a count of the rest.
    fn verdict(&self, list: &[String]) -> String {
        let shown: Vec<&str> = list
            .iter()
            .take(FAILURES_LISTED_MAX)
            .map(|s| s.as_str())
            .collect();
        let more = if list.len() > FAILURES_LISTED_MAX {
            format!(" (and {} more)", list.len() - FAILURES_LISTED_MAX)
        } else {
            String::new()
        };
        format!("FAIL (seed {}): {}{more}", self.seed, shown.join(" | "))
    }
}

/// The dots of a record's coordinations that were not lost in a crash.
fn dots_of(coords: &[Coordination]) -> Vec<&Dot> {
    coords
        .iter()
        .filter(|c| !c.void)
        .filter_map(|c| c.dot.as_ref())
        .collect()
}

fn text(b: &Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn run_checks(sc: &Scenario, o: &Outcomes) -> Findings {
    let mut c = Collector {
        seed: sc.seed,
        t0_us: sc.warmup_ms * US_PER_MS,
        failures: BTreeMap::new(),
    };
    let mut findings = Findings::default();
    let h = &o.hist;

    report_anomalies(o, &mut c);
    check_sessions(sc, o, &mut c);
    check_convergence(sc, o, &mut c);
    dots::check_dots_issued_once(h, &mut c);
    registers::check_registers(h, o, &mut c, &mut findings);
    counters::check_counters(h, o, &mut c);
    sets::check_sets(h, o, &mut c);
    check_nodes_healthy(sc, o, &mut c);

    findings.checks = c.into_checks();
    findings
}

/// What the simulator flagged while the run went on, each under the check it names.
fn report_anomalies(o: &Outcomes, c: &mut Collector) {
    for a in &o.hist.anomalies {
        let check = CHECK_NAMES
            .iter()
            .copied()
            .find(|n| *n == a.check)
            .unwrap_or(BOOKKEEPING_CHECK);
        let what = format!("at {}: {}", c.at(a.at_us), a.what);
        c.fail(check, what);
    }
}

/// `sessions_never_go_back`: with session tokens, no session read returned less than the
/// session had already seen of the key.
fn check_sessions(sc: &Scenario, o: &Outcomes, c: &mut Collector) {
    if sc.workload.sessions > 0 && sc.workload.session_tokens && o.sessions.went_back > 0 {
        c.fail(
            "sessions_never_go_back",
            format!(
                "{} of {} session reads returned less than the session had seen of the key",
                o.sessions.went_back, o.sessions.reads
            ),
        );
    }
}

/// `convergence`: every key's replicas agree within the settle bound.
fn check_convergence(sc: &Scenario, o: &Outcomes, c: &mut Collector) {
    let settle_max_ms = sc.settle.max_ms;
    if o.divergent_keys > 0 {
        c.fail(
            "convergence",
            format!(
                "{} keys still differ between replicas {} ms after traffic stopped (bound {settle_max_ms} ms): {}",
                o.divergent_keys,
                o.settle_ms,
                o.divergent.join("; ")
            ),
        );
    }
}

/// `nodes_healthy`: no storage errors (unless the scenario injects failing writes), no
/// undecodable messages, and the run went quiet.
fn check_nodes_healthy(sc: &Scenario, o: &Outcomes, c: &mut Collector) {
    let t = &o.node_totals;
    let injected = sc
        .faults
        .iter()
        .any(|f| f.write_fail.is_some_and(|p| p > 0.0));
    if (t.storage_errors > 0 && !injected) || t.bad_messages > 0 {
        c.fail(
            "nodes_healthy",
            format!(
                "{} storage errors, {} undecodable messages",
                t.storage_errors, t.bad_messages
            ),
        );
    }
    if o.events_overflow {
        c.fail(
            "nodes_healthy",
            format!(
                "the run never went quiet: stopped after {} events",
                o.events
            ),
        );
    }
}
