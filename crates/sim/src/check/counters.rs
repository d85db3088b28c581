//! `counters_match_increments`: a counter's final value is its acknowledged deltas plus some of
//! the unacknowledged ones (those may or may not have landed): `acked + unknown_negative <=
//! value <= acked + unknown_positive`. A value outside says, per actor, where it went wrong.
//! Counters a delete reset are judged by `deletes_remove_what_they_saw` instead.

use std::collections::{BTreeMap, BTreeSet};

use driftkv_causal::Actor;
use driftkv_wire::Object;

use super::Collector;
use crate::history::{CounterOpRec, History, Outcome};
use crate::world::Outcomes;

/// What a set of operations allows a total to be: acknowledged deltas plus any subset of the
/// unacknowledged ones.
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

/// The counter operations summed up: per key, per key and actor, and duplicates per key.
#[derive(Default)]
struct Tally {
    by_key: BTreeMap<usize, Bounds>,
    /// Per key and actor (the node and incarnation that applied it): the PN-counter keeps one
    /// entry per actor, so a loss shows where it happened.
    by_actor: BTreeMap<(usize, String), Bounds>,
    /// Per key, how many deltas a coordinator applied more than once.
    applied_twice: BTreeMap<usize, u64>,
}

impl Tally {
    fn of(ops: &[CounterOpRec]) -> Tally {
        let mut t = Tally::default();
        for op in ops {
            let acked = op.outcome == Outcome::Acked;
            t.by_key.entry(op.key).or_default().add(op.delta, acked);
            for a in op.applied_by.iter().filter(|a| !a.void) {
                let actor = Actor::new(format!("n{}", a.node + 1), a.incarnation);
                t.by_actor
                    .entry((op.key, actor.to_string()))
                    .or_default()
                    .add(op.delta, acked);
            }
            if op.applied() > 1 {
                *t.applied_twice.entry(op.key).or_default() += 1;
            }
        }
        t
    }

    /// Why a key's counter is off: the actors whose entries (`held`, by actor) are out of
    /// their bounds, and the deltas applied twice.
    fn explain(&self, slot: usize, held: &BTreeMap<String, i128>) -> Vec<String> {
        let mut detail = Vec::new();
        for ((s, actor), ab) in self.by_actor.range((slot, String::new())..) {
            if *s != slot {
                break;
            }
            let (lo, hi) = ab.range();
            let got = held.get(actor).copied().unwrap_or(0);
            if got < lo || got > hi {
                detail.push(format!("{actor} holds {got}, expected [{lo}, {hi}]"));
            }
        }
        if let Some(n) = self.applied_twice.get(&slot) {
            detail.push(format!(
                "{n} deltas were applied by a coordinator more than once (a duplicated request)"
            ));
        }
        detail
    }
}

pub(super) fn check_counters(h: &History, o: &Outcomes, c: &mut Collector) {
    let tally = Tally::of(&h.counter_ops);
    let reset: BTreeSet<usize> = h
        .counter_deletes
        .iter()
        .filter(|d| d.coordinations.iter().any(|r| !r.void))
        .map(|d| d.key)
        .collect();
    for (slot, b) in &tally.by_key {
        let slot = *slot;
        if reset.contains(&slot) {
            continue;
        }
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
        let held: BTreeMap<String, i128> = counter
            .map(|k| k.contributions().map(|(a, v)| (a.to_string(), v)).collect())
            .unwrap_or_default();
        let detail = tally.explain(slot, &held);
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
