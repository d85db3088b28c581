//! `deletes_remove_what_they_saw`: deletes of every type (`Request::Delete`).
//!
//! The semantics (`driftkv_core::node::put`, `driftkv_crdt`): a delete covers what its
//! coordinator holds, not what the client read, and a coordinator holding nothing of the key
//! writes nothing. A register gets a tombstone over every sibling its coordinator holds; a
//! counter records the totals its coordinator holds as taken away (`PnCounter::reset`, merged
//! by per-node maximum: reset-remove); a set loses the members, a map the fields, its
//! coordinator holds (observed-remove). What a delete did not see, a write through another
//! node concurrent with it, survives it.
//!
//! A delete "saw" a dot when its coordinator's context held it right after the delete; a
//! write "landed" when a coordination of it was not lost in a crash and its dot is in the
//! final context. Checked, on every primary's copy after settling:
//!
//! - a delete that was acknowledged and saw every landed write of its key (so none came after
//!   it or concurrently) leaves the key missing (a register with only tombstones), empty (a set
//!   or map) or zero (a counter);
//! - a counter reads the sum of the deltas no delete saw. Per node (actor), its deltas form
//!   one sequence, of which each delete saw a prefix (found from the net the delete's
//!   coordinator held for that node); the deltas after the longest prefix a landed delete
//!   saw count. Acknowledged deltas and deletes count for sure, others may or may not have
//!   landed, so the value must lie in the range they allow (as `counters_match_increments`,
//!   which leaves keys with deletes to this check);
//! - a set member some landed add of which no remove of it and no delete saw is present
//!   (concurrent adds survive); maps' fields are judged so by `map_fields_match_history`.

use std::collections::BTreeMap;

use driftkv_causal::{Dot, VersionVector};
use driftkv_wire::Object;

use super::{Collector, DELETES_CHECK, DataTypeFindings, acked, by_key, held_by, text};
use crate::history::{Coordination, CounterReset, History, MapOp, Outcome};
use crate::world::Outcomes;

pub(super) fn check_deletes(
    h: &History,
    o: &Outcomes,
    c: &mut Collector,
    d: &mut DataTypeFindings,
) {
    check_registers(h, o, c, d);
    check_counters(h, o, c, d);
    check_sets(h, o, c, d);
    check_maps(h, o, c, d);
}

/// The final context of the key in `slot` (empty if no replica holds it).
fn final_context(o: &Outcomes, slot: usize) -> VersionVector {
    o.final_objects[slot]
        .as_ref()
        .and_then(Object::version_vector)
        .cloned()
        .unwrap_or_default()
}

/// The dots of `coordinations` not lost in a crash that are in `context`.
fn landed<'a>(coordinations: &'a [Coordination], context: &VersionVector) -> Vec<&'a Dot> {
    coordinations
        .iter()
        .filter(|cd| !cd.void)
        .filter_map(|cd| cd.dot.as_ref())
        .filter(|d| context.contains(d))
        .collect()
}

/// The first coordination of an acknowledged delete (`outcome`, `coordinations`) that saw
/// every dot of `dots`.
fn complete<'a>(
    outcome: &Outcome,
    coordinations: &'a [Coordination],
    dots: &[&Dot],
) -> Option<&'a Coordination> {
    if !acked(outcome) {
        return None;
    }
    coordinations
        .iter()
        .find(|cd| !cd.void && dots.iter().all(|d| cd.context_after.contains(d)))
}

/// Reports each primary's copy of `slot` that `holds_something`.
fn every_primary_empty(
    o: &Outcomes,
    slot: usize,
    c: &mut Collector,
    why: &str,
    holds_something: impl Fn(&Object) -> bool,
) {
    let copies = o.end_copies.get(slot).map_or(&[][..], |v| v.as_slice());
    for (node, copy) in copies {
        if copy.as_ref().is_some_and(&holds_something) {
            c.fail(
                DELETES_CHECK,
                format!("{why}, but {}", held_by(*node, copy.as_ref())),
            );
        }
    }
}

fn check_registers(h: &History, o: &Outcomes, c: &mut Collector, d: &mut DataTypeFindings) {
    for (slot, writes) in by_key(&h.writes, |rec| rec.key) {
        if !writes.iter().any(|&w| h.writes[w].delete) {
            continue;
        }
        let context = final_context(o, slot);
        let values: Vec<&Dot> = writes
            .iter()
            .filter(|&&w| !h.writes[w].delete)
            .flat_map(|&w| landed(&h.writes[w].coordinations, &context))
            .collect();
        let found = writes.iter().map(|&w| &h.writes[w]).find_map(|rec| {
            complete(&rec.outcome, &rec.coordinations, &values).filter(|_| rec.delete)
        });
        let Some(cd) = found else { continue };
        d.complete_deletes += 1;
        let why = format!(
            "the acknowledged delete of {:?} by n{} at {} saw every value written to it, none after or concurrent",
            h.keys[slot].key,
            cd.node + 1,
            c.at(cd.at_us)
        );
        every_primary_empty(o, slot, c, &why, |object| match object {
            Object::Register(reg) => reg.values().next().is_some(),
            _ => true,
        });
    }
}

fn check_sets(h: &History, o: &Outcomes, c: &mut Collector, d: &mut DataTypeFindings) {
    for (slot, ops) in by_key(&h.set_ops, |op| op.key) {
        let clears = || ops.iter().map(|&s| &h.set_ops[s]).filter(|op| op.clear);
        if clears().next().is_none() {
            continue;
        }
        let context = final_context(o, slot);
        let adds: Vec<(&[u8], &Dot)> = ops
            .iter()
            .map(|&s| &h.set_ops[s])
            .filter(|op| op.add)
            .flat_map(|op| {
                landed(&op.coordinations, &context)
                    .into_iter()
                    .map(move |d| (&op.member[..], d))
            })
            .collect();
        let dots: Vec<&Dot> = adds.iter().map(|(_, d)| *d).collect();
        let key = &h.keys[slot].key;
        if let Some(cd) = clears().find_map(|op| complete(&op.outcome, &op.coordinations, &dots)) {
            d.complete_deletes += 1;
            let why = format!(
                "the acknowledged delete of set {key:?} by n{} at {} saw every add of it, none after or concurrent",
                cd.node + 1,
                c.at(cd.at_us)
            );
            every_primary_empty(o, slot, c, &why, |object| match object {
                Object::Set(set) => !set.is_empty(),
                _ => true,
            });
        }
        // Reset-remove: an add no remove of its member and no delete saw survives.
        for (member, dot) in adds {
            let seen = ops
                .iter()
                .map(|&s| &h.set_ops[s])
                .filter(|op| op.removes(member))
                .any(|op| {
                    op.coordinations
                        .iter()
                        .any(|cd| cd.context_after.contains(dot))
                });
            if seen {
                continue;
            }
            let why = format!(
                "an add of {:?} to {key:?} (dot {dot:?}) was seen by no remove or delete",
                text(&bytes::Bytes::copy_from_slice(member))
            );
            every_primary_empty(o, slot, c, &why, |object| match object {
                Object::Set(set) => !set.contains(member),
                _ => true,
            });
        }
    }
}

fn check_maps(h: &History, o: &Outcomes, c: &mut Collector, d: &mut DataTypeFindings) {
    for (slot, ops) in by_key(&h.map_ops, |op| op.key) {
        let ops: Vec<_> = ops.iter().map(|&m| &h.map_ops[m]).collect();
        if !ops.iter().any(|op| op.op == MapOp::Delete) {
            continue;
        }
        let context = final_context(o, slot);
        let dots: Vec<&Dot> = ops
            .iter()
            .filter(|op| matches!(op.op, MapOp::Set(..) | MapOp::Increment(..)))
            .flat_map(|op| landed(&op.coordinations, &context))
            .collect();
        let found = ops
            .iter()
            .filter(|op| op.op == MapOp::Delete)
            .find_map(|op| complete(&op.outcome, &op.coordinations, &dots));
        let Some(cd) = found else { continue };
        d.complete_deletes += 1;
        let why = format!(
            "the acknowledged delete of map {:?} by n{} at {} saw every write and increment of it, none after or concurrent",
            h.keys[slot].key,
            cd.node + 1,
            c.at(cd.at_us)
        );
        every_primary_empty(o, slot, c, &why, |object| match object {
            Object::Map(map) => !map.is_empty(),
            _ => true,
        });
    }
}

/// One node's (actor's) applied deltas to one counter, in the order it applied them.
#[derive(Default)]
struct ActorDeltas {
    /// `(delta, acknowledged, when)`.
    deltas: Vec<(i64, bool, u64)>,
}

impl ActorDeltas {
    /// The prefixes (by length) whose deltas sum to `net` and were all applied by `at_us`.
    fn prefixes_summing_to(&self, net: i128, at_us: u64) -> Vec<usize> {
        let mut out = Vec::new();
        let mut sum = 0i128;
        if net == 0 {
            out.push(0);
        }
        for (k, &(delta, _, when)) in self.deltas.iter().enumerate() {
            if when > at_us {
                break;
            }
            sum += i128::from(delta);
            if sum == net {
                out.push(k + 1);
            }
        }
        out
    }

    /// What the deltas after the first `m` may add up to: acknowledged ones for sure, others
    /// or not.
    fn range_after(&self, m: usize) -> (i128, i128) {
        let (mut lo, mut hi) = (0i128, 0i128);
        for &(delta, acked, _) in &self.deltas[m..] {
            let delta = i128::from(delta);
            match (acked, delta >= 0) {
                (true, _) => {
                    lo += delta;
                    hi += delta;
                }
                (false, true) => hi += delta,
                (false, false) => lo += delta,
            }
        }
        (lo, hi)
    }
}

fn check_counters(h: &History, o: &Outcomes, c: &mut Collector, d: &mut DataTypeFindings) {
    // Per key, its resets, each with whether it is sure to have landed (its delete acked).
    let mut resets: BTreeMap<usize, Vec<(&CounterReset, bool)>> = BTreeMap::new();
    for del in &h.counter_deletes {
        for r in del.coordinations.iter().filter(|r| !r.void) {
            resets
                .entry(del.key)
                .or_default()
                .push((r, acked(&del.outcome)));
        }
    }
    if resets.is_empty() {
        return;
    }
    // Per key and actor, its deltas in the order they were applied.
    let mut applied: Vec<(u64, usize, String, i64, bool, u64)> = Vec::new();
    for op in h
        .counter_ops
        .iter()
        .filter(|op| resets.contains_key(&op.key))
    {
        for a in op.applied_by.iter().filter(|a| !a.void) {
            let actor = driftkv_causal::Actor::new(format!("n{}", a.node + 1), a.incarnation);
            let ack = acked(&op.outcome);
            applied.push((a.seq, op.key, actor.to_string(), op.delta, ack, a.at_us));
        }
    }
    applied.sort_by_key(|a| a.0);
    let mut by_actor: BTreeMap<usize, BTreeMap<String, ActorDeltas>> = BTreeMap::new();
    for (_, slot, actor, delta, ack, at_us) in applied {
        let deltas = &mut by_actor.entry(slot).or_default().entry(actor).or_default();
        deltas.deltas.push((delta, ack, at_us));
    }
    let none = BTreeMap::new();
    for (slot, resets) in &resets {
        let actors = by_actor.get(slot).unwrap_or(&none);
        let Some((low, high)) = counter_range(h, *slot, actors, resets, c) else {
            continue;
        };
        d.counters_with_deletes_judged += 1;
        let key = &h.keys[*slot].key;
        let copies = o.end_copies.get(*slot).map_or(&[][..], |v| v.as_slice());
        for (node, copy) in copies {
            let value = match copy {
                None => 0,
                Some(Object::Counter(counter)) => counter.value(),
                Some(other) => {
                    c.fail(
                        DELETES_CHECK,
                        format!("{key:?} ends as a {} on n{}", other.kind().name(), node + 1),
                    );
                    continue;
                }
            };
            if (low..=high).contains(&value) {
                continue;
            }
            let what = if (low, high) == (0, 0) {
                format!(
                    "counter {key:?} reads {value} on n{} after settling, though an acknowledged delete saw every delta applied to it",
                    node + 1
                )
            } else {
                format!(
                    "counter {key:?} reads {value} on n{} after settling, outside [{low}, {high}], what the deltas no delete saw allow",
                    node + 1
                )
            };
            c.fail(DELETES_CHECK, what);
        }
    }
}

/// The range a counter with deletes may read: per actor, the deltas after the longest prefix
/// a landed delete saw. `None` (after reporting it) when a delete saw something no prefix of
/// an actor's deltas sums to.
fn counter_range(
    h: &History,
    slot: usize,
    actors: &BTreeMap<String, ActorDeltas>,
    resets: &[(&CounterReset, bool)],
    c: &mut Collector,
) -> Option<(i128, i128)> {
    let key = &h.keys[slot].key;
    for (r, _) in resets {
        for (actor, net) in &r.seen {
            if *net != 0 && !actors.contains_key(actor) {
                c.fail(
                    DELETES_CHECK,
                    format!(
                        "the delete of {key:?} by n{} saw {actor} at {net}, an actor that applied no delta to it",
                        r.node + 1
                    ),
                );
                return None;
            }
        }
    }
    let (mut low, mut high) = (0i128, 0i128);
    for (actor, deltas) in actors {
        // Per reset, the prefixes of this actor's deltas it may have seen.
        let mut sure = 0usize;
        let mut possible = Vec::new();
        for (r, landed) in resets {
            let net = r
                .seen
                .iter()
                .find(|(a, _)| a == actor)
                .map_or(0, |(_, n)| *n);
            let prefixes = deltas.prefixes_summing_to(net, r.at_us);
            let Some(&shortest) = prefixes.first() else {
                c.fail(
                    DELETES_CHECK,
                    format!(
                        "the delete of {key:?} by n{} at {} saw {actor} at {net}, which no prefix of its deltas sums to",
                        r.node + 1,
                        c.at(r.at_us)
                    ),
                );
                return None;
            };
            if *landed {
                sure = sure.max(shortest);
            }
            possible.extend(prefixes);
        }
        possible.push(sure);
        let ranges = possible
            .iter()
            .filter(|&&m| m >= sure)
            .map(|&m| deltas.range_after(m));
        let (lo, hi) = ranges.fold((i128::MAX, i128::MIN), |(lo, hi), (l, h)| {
            (lo.min(l), hi.max(h))
        });
        low += lo;
        high += hi;
    }
    Some((low, high))
}
