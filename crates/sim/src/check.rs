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
//! With data-type operations in the workload (each only when its weights are not zero, so
//! other scenarios' reports do not change):
//!
//! - `map_fields_match_history` (maps): every primary holds the same map, and each field is
//!   present, absent or worth what the history says (observed-remove, add wins; a node's
//!   increment carries its running total, see `maps`).
//! - `expired_values_stay_gone` (`put_ttl`): no read answered by a node whose clock had passed
//!   a value's expiry returned it, nor any read answered later than the expiry plus the
//!   scenario's clock skew bound; an expired key never comes back.
//! - `deletes_remove_what_they_saw` (deletes): a delete that saw every write of its key, with
//!   none after or concurrent, leaves it missing, zero or empty on every primary; a counter
//!   counts exactly the deltas no delete saw (reset-remove), and a set member added unseen by
//!   any remove or delete survives them.
//!
//! The checks by data type live in submodules: `dots` (dots issued once), `registers`
//! (surviving writes, siblings, written values), `counters`, `sets`, `maps`, `expiry` and
//! `deletes`; this module holds the run-wide checks, the collector every check reports to
//! and the data-type measurements (NX races).

use std::collections::BTreeMap;

use bytes::Bytes;
use driftkv_causal::Dot;
use serde::Serialize;

use crate::history::{Coordination, Outcome};
use crate::measure::round_ratio;
use crate::scenario::Scenario;
use crate::world::Outcomes;

mod counters;
mod deletes;
mod dots;
mod expiry;
mod maps;
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

/// The data-type checks, each run only when the workload has its operations.
pub const MAPS_CHECK: &str = "map_fields_match_history";
pub const EXPIRY_CHECK: &str = "expired_values_stay_gone";
pub const DELETES_CHECK: &str = "deletes_remove_what_they_saw";

/// The checks a scenario's runs make: every run's, then the data-type checks its mix calls
/// for.
pub fn check_names(sc: &Scenario) -> Vec<&'static str> {
    let mix = &sc.workload.mix;
    let mut names = CHECK_NAMES.to_vec();
    for (on, name) in [
        (mix.has_maps(), MAPS_CHECK),
        (mix.has_expiry(), EXPIRY_CHECK),
        (mix.has_deletes(), DELETES_CHECK),
    ] {
        if on {
            names.push(name);
        }
    }
    names
}

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
    /// With data-type operations in the workload: what their checks judged and measured.
    pub data_types: Option<DataTypeFindings>,
}

/// What the data-type checks judged (how many of their assertions the history allowed) and
/// what was measured rather than checked.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DataTypeFindings {
    /// Acknowledged writes with a TTL.
    pub ttl_writes_acknowledged: u64,
    /// Register reads that returned a value written with an expiry ...
    pub reads_of_expiring_values: u64,
    /// ... of which answered at or after the expiry in virtual time, by a node whose clock
    /// (behind by its skew) had not reached it yet ...
    pub reads_past_expiry_within_skew: u64,
    /// ... and how long after the expiry the latest of them was answered, in ms.
    pub past_expiry_max_ms: u64,
    /// How far behind a node's clock may be at the end of traffic (the scenario's bound).
    pub clock_lag_bound_ms: f64,
    /// Map fields whose exact value the history fixes (and which were checked) ...
    pub map_fields_valued: u64,
    /// ... and whose value it bounds (running totals of increments concurrent with removes).
    pub map_fields_bounded: u64,
    /// Map fields reading other than a remove that took away for good every count it saw
    /// would leave (reset-remove, as counters have): a node that had not seen a remove made
    /// an increment whose running total still held what the remove took.
    pub map_fields_counting_removed_increments: u64,
    /// Deletes that saw every write of their key with none after or concurrent: their keys
    /// were checked missing, zero or empty on every primary.
    pub complete_deletes: u64,
    /// Counter keys with deletes whose value was checked against the increments no delete
    /// saw.
    pub counters_with_deletes_judged: u64,
    /// NX races (two clients setting a fresh key if it does not exist) ...
    pub nx_races: u64,
    /// ... in which both clients got an answer (their write acknowledged, or a value found)
    /// ...
    pub nx_races_answered: u64,
    /// ... in which both were told they set the key ...
    pub nx_double_success: u64,
    /// ... as a share of the answered ones.
    pub nx_double_success_rate: f64,
}

/// Where the checks report their failures, per check, in the order they were found.
struct Collector {
    seed: u64,
    /// Virtual time at which traffic started: failure texts give times relative to it.
    t0_us: u64,
    /// The checks this run makes.
    names: Vec<&'static str>,
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
        self.names
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

/// The indices of `ops` grouped by the key slot each names (`key`), each group in issue order.
fn by_key<T>(ops: &[T], key: impl Fn(&T) -> usize) -> BTreeMap<usize, Vec<usize>> {
    let mut by: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        by.entry(key(op)).or_default().push(i);
    }
    by
}

fn text(b: &Bytes) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn run_checks(sc: &Scenario, o: &Outcomes) -> Findings {
    let mut c = Collector {
        seed: sc.seed,
        t0_us: sc.warmup_ms * US_PER_MS,
        names: check_names(sc),
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
    if sc.workload.mix.has_data_types() {
        let mut d = DataTypeFindings::default();
        let mix = &sc.workload.mix;
        if mix.has_maps() {
            maps::check_maps(h, o, &mut c, &mut d);
        }
        if mix.has_expiry() {
            expiry::check_expiry(sc, h, o, &mut c, &mut d);
        }
        if mix.has_deletes() {
            deletes::check_deletes(h, o, &mut c, &mut d);
        }
        measure_nx_races(o, &mut d);
        findings.data_types = Some(d);
    }
    check_nodes_healthy(sc, o, &mut c);

    findings.checks = c.into_checks();
    findings
}

/// What the simulator flagged while the run went on, each under the check it names.
fn report_anomalies(o: &Outcomes, c: &mut Collector) {
    for a in &o.hist.anomalies {
        let check = c
            .names
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

/// NX races: how often both clients were told they set a key that did not exist.
fn measure_nx_races(o: &Outcomes, d: &mut DataTypeFindings) {
    d.nx_races = o.nx_races.len() as u64;
    let answered = o.nx_races.iter().filter(|r| r.failed == 0);
    d.nx_races_answered = answered.clone().count() as u64;
    d.nx_double_success = answered.filter(|r| r.won >= 2).count() as u64;
    d.nx_double_success_rate = if d.nx_races_answered == 0 {
        0.0
    } else {
        round_ratio(d.nx_double_success as f64 / d.nx_races_answered as f64)
    };
}

/// Whether a record's outcome is an acknowledgement.
fn acked(outcome: &Outcome) -> bool {
    *outcome == Outcome::Acked
}

/// A copy as a failure text shows it, with the node holding it.
fn held_by(node: usize, copy: Option<&driftkv_wire::Object>) -> String {
    format!("n{} holds {}", node + 1, crate::world::describe(copy))
}
