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

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use driftkv_causal::{ConflictMode, Dot, VersionVector};
use driftkv_wire::Object;

use crate::history::{History, KeyKind, Outcome};
use crate::scenario::Scenario;
use crate::world::Outcomes;

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

struct Collector {
    seed: u64,
    /// Virtual time at which traffic started: failure texts give times relative to it.
    t0_us: u64,
    failures: BTreeMap<&'static str, Vec<String>>,
}

impl Collector {
    /// A virtual time as the report's timeline shows it: ms from the start of traffic.
    fn at(&self, at_us: u64) -> String {
        format!("{:.3} ms", (at_us as f64 - self.t0_us as f64) / 1000.0)
    }

    fn fail(&mut self, check: &'static str, what: String) {
        self.failures.entry(check).or_default().push(what);
    }

    fn into_checks(self) -> BTreeMap<String, String> {
        let mut checks = BTreeMap::new();
        for name in CHECK_NAMES {
            let text = match self.failures.get(name) {
                None => "pass".to_string(),
                Some(list) => {
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
            };
            checks.insert(name.to_string(), text);
        }
        checks
    }
}

/// The dots of a record's coordinations that were not lost in a crash.
fn dots_of(coords: &[crate::history::Coordination]) -> Vec<&Dot> {
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
    let settle_max_ms = sc.settle.max_ms;
    let t0_us = sc.warmup_ms * 1000;
    let mut c = Collector {
        seed: sc.seed,
        t0_us,
        failures: BTreeMap::new(),
    };
    let mut findings = Findings::default();
    let h = &o.hist;

    for a in &h.anomalies {
        // The simulator's own bookkeeping ("oracle") reports under nodes_healthy.
        let check = CHECK_NAMES
            .iter()
            .copied()
            .find(|n| *n == a.check)
            .unwrap_or("nodes_healthy");
        let at_ms = (a.at_us as f64 - t0_us as f64) / 1000.0;
        c.fail(check, format!("at {at_ms:.3} ms: {}", a.what));
    }

    if sc.workload.sessions > 0 && sc.workload.session_tokens && o.sessions.went_back > 0 {
        c.fail(
            "sessions_never_go_back",
            format!(
                "{} of {} session reads returned less than the session had seen of the key",
                o.sessions.went_back, o.sessions.reads
            ),
        );
    }
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

    check_dots_issued_once(h, &mut c);
    check_registers(h, o, &mut c, &mut findings);
    check_counters(h, o, &mut c);
    check_sets(h, o, &mut c);

    let t = &o.node_totals;
    // Storage errors are a finding unless the scenario injects failing writes.
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
    findings.checks = c.into_checks();
    findings
}

fn check_dots_issued_once(h: &History, c: &mut Collector) {
    // What issued a dot: a write or a set add, by index (named only if a check fails).
    #[derive(Clone, Copy)]
    enum Source {
        Write(usize),
        Add(usize),
    }
    let name = |source: Source| match source {
        Source::Write(w) => text(&h.writes[w].value),
        Source::Add(s) => format!("add {}", text(&h.set_ops[s].member)),
    };
    // About a dot per write and add: sized once rather than grown through every doubling.
    let mut issued: driftkv_core::fasthash::FastMap<(usize, &Dot), (Source, u64)> =
        driftkv_core::fasthash::FastMap::with_capacity_and_hasher(
            h.writes.len() + h.set_ops.len(),
            Default::default(),
        );
    let writes = h
        .writes
        .iter()
        .enumerate()
        .map(|(i, w)| (w.key, Source::Write(i), &w.coordinations));
    let adds = h
        .set_ops
        .iter()
        .enumerate()
        .filter(|(_, op)| op.add)
        .map(|(i, op)| (op.key, Source::Add(i), &op.coordinations));
    for (key, source, coordinations) in writes.chain(adds) {
        for cd in coordinations.iter().filter(|cd| !cd.void) {
            let Some(dot) = cd.dot.as_ref() else { continue };
            if let Some(&(first, at_us)) = issued.get(&(key, dot)) {
                c.fail(
                    "dots_issued_once",
                    format!(
                        "dot {dot:?} of {:?} was issued for {:?} at {} and again for {:?} by n{} at {}: the second write is invisible wherever the first was seen",
                        h.keys[key].key,
                        name(first),
                        c.at(at_us),
                        name(source),
                        cd.node + 1,
                        c.at(cd.at_us)
                    ),
                );
            } else {
                issued.insert((key, dot), (source, cd.at_us));
            }
        }
    }
}

fn check_registers(h: &History, o: &Outcomes, c: &mut Collector, f: &mut Findings) {
    // For each key (by slot, in slot order), the writes to it in order: one list of every
    // write, grouped by key (a counting sort), not a vector per key.
    let mut starts = vec![0usize; h.keys.len() + 1];
    for rec in &h.writes {
        starts[rec.key + 1] += 1;
    }
    for slot in 0..h.keys.len() {
        starts[slot + 1] += starts[slot];
    }
    let mut grouped = vec![0usize; h.writes.len()];
    let mut next = starts.clone();
    for (w, rec) in h.writes.iter().enumerate() {
        grouped[next[rec.key]] = w;
        next[rec.key] += 1;
    }
    let by_key = starts.windows(2).map(|span| &grouped[span[0]..span[1]]);
    // Per-key working lists, reused from key to key (most keys have a write or two).
    let mut landed: Vec<(usize, &crate::history::Coordination, &Dot)> = Vec::new();
    let mut reach: Vec<(&driftkv_causal::Actor, (u64, usize, u64))> = Vec::new();
    let empty_context = VersionVector::new();
    for (slot, writes) in by_key.enumerate() {
        if writes.is_empty() {
            continue;
        }
        let kind = h.keys[slot].kind;
        let key = &h.keys[slot].key;
        let mode = kind.mode();
        let (siblings, context): (Vec<(&Dot, Option<&Bytes>)>, &VersionVector) =
            match &o.final_objects[slot] {
                Some(Object::Register(r)) => (
                    r.dvv()
                        .siblings()
                        .map(|(d, s)| (d, s.value.as_ref()))
                        .collect(),
                    r.context(),
                ),
                Some(other) => {
                    c.fail(
                        "acknowledged_writes_survive",
                        format!(
                            "{key:?} ends as a {} instead of a register",
                            other.kind().name()
                        ),
                    );
                    continue;
                }
                None => (Vec::new(), &empty_context),
            };
        if siblings.len() > 1 {
            f.keys_with_siblings_at_end += 1;
        }
        f.siblings_at_end_max = f.siblings_at_end_max.max(siblings.len());
        if mode == ConflictMode::Lww && siblings.len() > 1 {
            c.fail(
                "siblings_only_for_concurrent_writes",
                format!("lww key {key:?} ends with {} values", siblings.len()),
            );
        }
        // Whether a write "saw" a dot: siblings mode, its client's context held it; lww mode,
        // one of its coordinators' states did.
        let saw = |x: usize, d: &Dot| match mode {
            ConflictMode::Siblings => h.writes[x].context_in.contains(d),
            ConflictMode::Lww => h.writes[x]
                .coordinations
                .iter()
                .any(|cd| !cd.void && cd.context_after.contains(d)),
        };
        // The coordinations whose dots landed (are in the final history), with the write.
        landed.clear();
        landed.extend(
            writes
                .iter()
                .flat_map(|&x| {
                    h.writes[x]
                        .coordinations
                        .iter()
                        .filter(|cd| !cd.void)
                        .filter_map(move |cd| cd.dot.as_ref().map(|d| (x, cd, d)))
                })
                .filter(|(_, _, d)| context.contains(d)),
        );
        // How far the writes with a landed dot saw, per actor: the highest counter and which
        // write saw it, and the highest counter any other write saw. A write `w` was seen by
        // some other landed write exactly when that other write's counter reaches its dot.
        // (A few actors: a list looked through, not a tree.)
        reach.clear();
        {
            let mut bump = |actor, counter: u64, x: usize| {
                let at = match reach.iter().position(|(a, _)| *a == actor) {
                    Some(at) => at,
                    None => {
                        reach.push((actor, (0, usize::MAX, 0)));
                        reach.len() - 1
                    }
                };
                let e = &mut reach[at].1;
                if counter > e.0 {
                    if e.1 != x {
                        e.2 = e.0;
                    }
                    *e = (counter, x, e.2);
                } else if counter > e.2 && e.1 != x {
                    e.2 = counter;
                }
            };
            let mut last = None;
            for &(x, _, _) in &landed {
                if last == Some(x) {
                    continue;
                }
                last = Some(x);
                match mode {
                    ConflictMode::Siblings => {
                        for (actor, &counter) in h.writes[x].context_in.iter() {
                            bump(actor, counter, x);
                        }
                    }
                    ConflictMode::Lww => {
                        for cd in h.writes[x].coordinations.iter().filter(|cd| !cd.void) {
                            for (actor, &counter) in cd.context_after.iter() {
                                bump(actor, counter, x);
                            }
                        }
                    }
                }
            }
        }
        let seen_by_another = |w: usize, d: &Dot| {
            let found = reach.iter().find(|(a, _)| **a == d.actor).map(|(_, r)| r);
            found.is_some_and(|&(best, by, other)| {
                let counter = if by == w { other } else { best };
                d.counter <= counter
            })
        };
        let is_sibling = |d: &Dot| siblings.iter().any(|(s, _)| *s == d);
        for &w in writes {
            let rec = &h.writes[w];
            if rec.outcome != Outcome::Acked {
                continue;
            }
            if mode == ConflictMode::Lww {
                f.lww_acked_writes += 1;
            }
            let dots = dots_of(&rec.coordinations);
            if dots.is_empty() {
                c.fail(
                    "acknowledged_writes_survive",
                    format!(
                        "the write of {:?} to {key:?} was acknowledged but no coordinator applied it",
                        text(&rec.value)
                    ),
                );
                continue;
            }
            let seen: Vec<&Dot> = dots
                .iter()
                .copied()
                .filter(|d| context.contains(d))
                .collect();
            if seen.is_empty() {
                c.fail(
                    "acknowledged_writes_survive",
                    format!(
                        "the acknowledged write of {:?} to {key:?} (dot {:?}) is gone: no replica has seen it; final copy {}",
                        text(&rec.value),
                        dots[0],
                        crate::world::describe(o.final_objects[slot].as_ref())
                    ),
                );
                continue;
            }
            if seen.iter().any(|d| is_sibling(d)) {
                continue;
            }
            // Not among the final values: replaced. By a write that had seen it?
            let replaced_causally = seen.iter().any(|d| seen_by_another(w, d));
            match mode {
                ConflictMode::Siblings if !replaced_causally => c.fail(
                    "acknowledged_writes_survive",
                    format!(
                        "the acknowledged write of {:?} to {key:?} was replaced by no write that had seen it; final copy {}",
                        text(&rec.value),
                        crate::world::describe(o.final_objects[slot].as_ref())
                    ),
                ),
                ConflictMode::Siblings => {}
                ConflictMode::Lww => {
                    // Lost a race: a concurrent write (neither coordinator had seen the other)
                    // won by its later (timestamp, dot). That is the lww rule at work.
                    let mine: Vec<(Option<driftkv_causal::Timestamp>, &Dot)> = rec
                        .coordinations
                        .iter()
                        .filter(|cd| !cd.void)
                        .filter_map(|cd| cd.dot.as_ref().map(|d| (cd.timestamp, d)))
                        .collect();
                    let lost_race = landed.iter().any(|&(x, cx, dx)| {
                        x != w
                            && mine.iter().all(|(tw, dw)| {
                                !cx.context_after.contains(dw)
                                    && !saw(w, dx)
                                    && (cx.timestamp, dx) > (*tw, *dw)
                            })
                    });
                    if lost_race {
                        f.writes_lost_by_lww += 1;
                    } else if !replaced_causally {
                        c.fail(
                            "acknowledged_writes_survive",
                            format!(
                                "the acknowledged lww write of {:?} to {key:?} was replaced by no write that had seen it and lost no race to a concurrent one; final copy {}",
                                text(&rec.value),
                                crate::world::describe(o.final_objects[slot].as_ref())
                            ),
                        );
                    }
                }
            }
        }
        // Final siblings: known values, pairwise concurrent.
        let mut sibling_writes = Vec::new();
        for (dot, value) in &siblings {
            let Some(value) = value else { continue };
            // The write whose coordination made the dot, found among the few that landed
            // (values name their writes: the table by value is the fallback).
            let by_dot = landed
                .iter()
                .find(|(x, _, d)| *d == *dot && h.writes[*x].value == **value)
                .map(|(x, _, _)| x);
            match by_dot.or_else(|| h.write_by_value.get(*value)) {
                Some(&w) => sibling_writes.push((dot, w)),
                None => c.fail(
                    "reads_return_written_values",
                    format!(
                        "{key:?} ends holding {:?}, which no client wrote",
                        text(value)
                    ),
                ),
            }
        }
        for (i, (da, a)) in sibling_writes.iter().enumerate() {
            for (db, b) in &sibling_writes[i + 1..] {
                let a_saw_b = h.writes[*a].context_in.contains(db);
                let b_saw_a = h.writes[*b].context_in.contains(da);
                if a_saw_b || b_saw_a {
                    c.fail(
                        "siblings_only_for_concurrent_writes",
                        format!(
                            "{key:?} ends with siblings {:?} and {:?}, but one's write had read the other",
                            text(&h.writes[*a].value),
                            text(&h.writes[*b].value)
                        ),
                    );
                }
            }
        }
    }
}

fn check_counters(h: &History, o: &Outcomes, c: &mut Collector) {
    /// What a set of operations allows a total to be: acknowledged deltas plus any subset of
    /// the unacknowledged ones.
    #[derive(Default)]
    struct Bounds {
        acked: i128,
        unknown_pos: i128,
        unknown_neg: i128,
    }
    impl Bounds {
        fn add(&mut self, delta: i64, acked: bool) {
            match (acked, delta >= 0) {
                (true, _) => self.acked += delta as i128,
                (false, true) => self.unknown_pos += delta as i128,
                (false, false) => self.unknown_neg += delta as i128,
            }
        }
        fn range(&self) -> (i128, i128) {
            (self.acked + self.unknown_neg, self.acked + self.unknown_pos)
        }
    }
    let mut by_key: BTreeMap<usize, Bounds> = BTreeMap::new();
    // Per key and actor (the node and incarnation that applied it): the PN-counter keeps one
    // entry per actor, so a loss shows where it happened.
    let mut by_actor: BTreeMap<(usize, String), Bounds> = BTreeMap::new();
    let mut applied_twice: BTreeMap<usize, u64> = BTreeMap::new();
    for op in &h.counter_ops {
        let acked = op.outcome == Outcome::Acked;
        by_key.entry(op.key).or_default().add(op.delta, acked);
        for a in op.applied_by.iter().filter(|a| !a.void) {
            let actor = driftkv_causal::Actor::new(format!("n{}", a.node + 1), a.incarnation);
            by_actor
                .entry((op.key, actor.to_string()))
                .or_default()
                .add(op.delta, acked);
        }
        if op.applied() > 1 {
            *applied_twice.entry(op.key).or_default() += 1;
        }
    }
    for (slot, b) in by_key {
        let key = &h.keys[slot].key;
        let counter = match &o.final_objects[slot] {
            Some(Object::Counter(counter)) => Some(counter),
            None => None,
            Some(other) => {
                c.fail(
                    "counters_match_increments",
                    format!("{key:?} ends as a {}", other.kind().name()),
                );
                continue;
            }
        };
        let value = counter.map_or(0, |k| k.value());
        let (low, high) = b.range();
        if value >= low && value <= high {
            continue;
        }
        let mut detail = Vec::new();
        let held: BTreeMap<String, i128> = counter
            .map(|k| k.contributions().map(|(a, v)| (a.to_string(), v)).collect())
            .unwrap_or_default();
        for ((s, actor), ab) in by_actor.range((slot, String::new())..) {
            if *s != slot {
                break;
            }
            let (lo, hi) = ab.range();
            let got = held.get(actor).copied().unwrap_or(0);
            if got < lo || got > hi {
                detail.push(format!("{actor} holds {got}, expected [{lo}, {hi}]"));
            }
        }
        if let Some(n) = applied_twice.get(&slot) {
            detail.push(format!(
                "{n} deltas were applied by a coordinator more than once (a duplicated request)"
            ));
        }
        c.fail(
            "counters_match_increments",
            format!(
                "{key:?} ends at {value}, outside [{low}, {high}] (acknowledged deltas sum to {}): {}",
                b.acked,
                detail.join(", ")
            ),
        );
    }
}

fn check_sets(h: &History, o: &Outcomes, c: &mut Collector) {
    let mut by_key: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (s, op) in h.set_ops.iter().enumerate() {
        by_key.entry(op.key).or_default().push(s);
    }
    for (slot, ops) in by_key {
        let key = &h.keys[slot].key;
        debug_assert_eq!(h.keys[slot].kind, KeyKind::Set);
        let (members, context): (BTreeSet<Bytes>, VersionVector) = match &o.final_objects[slot] {
            Some(Object::Set(set)) => (set.members().cloned().collect(), set.context().clone()),
            None => (BTreeSet::new(), VersionVector::new()),
            Some(other) => {
                c.fail(
                    "sets_follow_add_wins",
                    format!("{key:?} ends as a {}", other.kind().name()),
                );
                continue;
            }
        };
        let mut universe: BTreeSet<Bytes> = BTreeSet::new();
        for &s in &ops {
            let op = &h.set_ops[s];
            universe.insert(op.member.clone());
            if op.add && op.outcome == Outcome::Acked {
                let dots = dots_of(&op.coordinations);
                if !dots.iter().any(|d| context.contains(d)) {
                    c.fail(
                        "acknowledged_writes_survive",
                        format!(
                            "the acknowledged add of {:?} to {key:?} is gone: no replica has seen it",
                            text(&op.member)
                        ),
                    );
                }
            }
        }
        for member in &universe {
            let adds: Vec<&Dot> = ops
                .iter()
                .map(|&s| &h.set_ops[s])
                .filter(|op| op.add && op.member == *member)
                .flat_map(|op| dots_of(&op.coordinations))
                .filter(|d| context.contains(d))
                .collect();
            let removes: Vec<_> = ops
                .iter()
                .map(|&s| &h.set_ops[s])
                .filter(|op| !op.add && op.member == *member && !op.coordinations.is_empty())
                .collect();
            let seen_by = |d: &Dot, acked_only: bool| {
                removes.iter().any(|r| {
                    (!acked_only || r.outcome == Outcome::Acked)
                        && r.coordinations
                            .iter()
                            .any(|cd| cd.context_after.contains(d))
                })
            };
            let must_be_present = adds.iter().any(|d| !seen_by(d, false));
            let must_be_absent = adds.iter().all(|d| seen_by(d, true));
            let present = members.contains(member);
            if must_be_present && !present {
                c.fail(
                    "sets_follow_add_wins",
                    format!(
                        "{:?} is missing from {key:?} though an add of it was seen by no remove",
                        text(member)
                    ),
                );
            }
            if must_be_absent && present {
                c.fail(
                    "sets_follow_add_wins",
                    format!(
                        "{:?} is in {key:?} though every add of it was removed by an acknowledged remove that had seen it",
                        text(member)
                    ),
                );
            }
        }
        for member in members.difference(&universe) {
            c.fail(
                "sets_follow_add_wins",
                format!("{key:?} holds {:?}, which no client added", text(member)),
            );
        }
    }
}
