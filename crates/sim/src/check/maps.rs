//! `map_fields_match_history`: maps, once the cluster settled, judged field by field against
//! what clients did.
//!
//! The semantics (`driftkv_crdt::map`): a map is an observed-remove map of fields. A write of
//! a field (`set`) replaces every entry of the field its coordinator holds with its own, under
//! a new dot; an increment replaces its coordinator's own count entry of the field with a new
//! one, under a new dot, holding the node's running total (its previous entry's, or 0 when it
//! holds none) plus the delta; a remove of the field, or a delete of the map, drops the entries
//! its coordinator holds and makes no dot. A merge keeps an entry unless the other side has
//! seen its dot without holding it. A field reads as its newest write (by hybrid clock, then
//! dot) plus its count entries, and is absent with no entry.
//!
//! Here an operation "saw" a dot when its coordinator's map context held it right after the
//! operation; a coordination "landed" when it was not lost in a crash and its dot is in the
//! final map's context. What follows from the semantics, and is checked:
//!
//! - every primary holds the same map, and no field is present that no client wrote;
//! - every acknowledged write or increment landed, and no increment landed twice;
//! - a field is absent when every landed write and increment of it was seen by an
//!   acknowledged remove of it or delete of the map (observed-remove);
//! - a field is present when some landed write or increment of it was seen by no remove or
//!   delete, landed or not (add wins: whatever replaced that entry saw it, so no remove saw
//!   the replacement either);
//! - its value, when the history fixes or bounds it:
//!   - a field no landed write made: per node, its last landed increment survives unless a
//!     remove saw it, holding the node's running total since its replica last dropped the
//!     node's entry, which it does only on making or merging a remove that saw that entry.
//!     So each node adds the sum of its increments after some prefix a remove saw (or of all
//!     of them), and nothing when an acknowledged remove saw its last. With no remove having
//!     seen any increment, that is exactly the sum of the landed increments;
//!   - a field whose latest landed write `X` saw every landed write and increment made before
//!     it, whose later landed operations are increments that saw `X`, and whose removes and
//!     deletes were all coordinated before `X`, is `X`'s number plus those increments.
//!
//! And a remove takes away for good the counts it saw, as a counter's delete does
//! (reset-remove): a field remembers, per node, the running total a remove took away, and an
//! entry counts only what its node added beyond it, so a node that had not seen the remove
//! does not carry the removed counts on in its running total. A field that reads other than
//! reset-remove gives fails (`map_fields_counting_removed_increments` counts them; without
//! the record of what was removed, about one seed in twenty of `data_types.toml` did).
//! Removes make no dot, so whether a later write's coordinator had seen one is not in the
//! history: a field with a write and a later or concurrent remove is judged only present or
//! absent.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use driftkv_causal::Dot;
use driftkv_causal::VersionVector;
use driftkv_wire::{FieldValue, Key, Object};

use super::{Collector, DataTypeFindings, MAPS_CHECK, acked, by_key, held_by, text};
use crate::history::{Coordination, History, MapOp, MapOpRec};
use crate::world::Outcomes;

/// A landed coordination of a write or increment: the operation (index into
/// `History::map_ops`), the coordination and its dot.
type Landed<'a> = (usize, &'a Coordination, &'a Dot);

/// A map's fields (as they read) and its context.
type FinalMap = (BTreeMap<Bytes, FieldValue>, VersionVector);

pub(super) fn check_maps(h: &History, o: &Outcomes, c: &mut Collector, f: &mut DataTypeFindings) {
    let by_key = by_key(&h.map_ops, |op| op.key);
    for (slot, ops) in &by_key {
        let key = &h.keys[*slot].key;
        let Some((fields, context)) = final_map(o, *slot, key, c) else {
            continue;
        };
        let k = MapKey {
            h,
            key,
            ops,
            fields: &fields,
            context: &context,
        };
        k.check_acknowledged(c);
        let universe: BTreeSet<&Bytes> = ops
            .iter()
            .filter_map(|&m| match &h.map_ops[m].op {
                MapOp::Set(field, _) | MapOp::Increment(field, _) => Some(field),
                _ => None,
            })
            .collect();
        for name in fields.keys() {
            if !universe.contains(name) {
                c.fail(
                    MAPS_CHECK,
                    format!(
                        "{key:?} holds field {:?}, which no client wrote",
                        text(name)
                    ),
                );
            }
        }
        for field in universe {
            k.judge_field(field, c, f);
        }
    }
}

/// The map every primary holds at the end (empty if none holds the key); a failure if the
/// primaries differ (then their join is judged) or the key holds another kind.
fn final_map(o: &Outcomes, slot: usize, key: &Key, c: &mut Collector) -> Option<FinalMap> {
    let copies = o.end_copies.get(slot).map_or(&[][..], |v| v.as_slice());
    if copies.windows(2).any(|w| w[0].1 != w[1].1) {
        let held: Vec<String> = copies
            .iter()
            .map(|(node, copy)| held_by(*node, copy.as_ref()))
            .collect();
        c.fail(
            MAPS_CHECK,
            format!(
                "the primaries of {key:?} hold different maps after settling: {}",
                held.join("; ")
            ),
        );
    }
    match &o.final_objects[slot] {
        None => Some(Default::default()),
        Some(Object::Map(map)) => Some((
            map.fields().map(|(n, v)| (n.clone(), v)).collect(),
            map.context().clone(),
        )),
        Some(other) => {
            c.fail(
                MAPS_CHECK,
                format!("{key:?} ends as a {} instead of a map", other.kind().name()),
            );
            None
        }
    }
}

/// One map key as the checks see it: its final map and its operations.
struct MapKey<'a> {
    h: &'a History,
    key: &'a Key,
    /// The key's operations (indices into `h.map_ops`), in the order they were issued.
    ops: &'a [usize],
    /// The final map's fields and context.
    fields: &'a BTreeMap<Bytes, FieldValue>,
    context: &'a VersionVector,
}

impl<'a> MapKey<'a> {
    fn op(&self, m: usize) -> &'a MapOpRec {
        &self.h.map_ops[m]
    }

    /// Every acknowledged write and increment landed, and no increment landed twice.
    fn check_acknowledged(&self, c: &mut Collector) {
        for &m in self.ops {
            let op = self.op(m);
            let landed_times = op
                .coordinations
                .iter()
                .filter(|cd| !cd.void)
                .filter_map(|cd| cd.dot.as_ref())
                .filter(|d| self.context.contains(d))
                .count();
            if matches!(op.op, MapOp::Increment(..)) && landed_times > 1 {
                c.fail(
                    MAPS_CHECK,
                    format!(
                        "the {} of {:?} was applied {landed_times} times (a duplicated request)",
                        describe_op(&op.op),
                        self.key
                    ),
                );
            }
            if !acked(&op.outcome) || op.op.field().is_none() || matches!(op.op, MapOp::Remove(_)) {
                continue;
            }
            let landed = op
                .coordinations
                .iter()
                .filter(|cd| !cd.void)
                .filter_map(|cd| cd.dot.as_ref())
                .any(|d| self.context.contains(d));
            if !landed {
                c.fail(
                    MAPS_CHECK,
                    format!(
                        "the acknowledged {} of {:?} is gone: no replica has seen it",
                        describe_op(&op.op),
                        self.key
                    ),
                );
            }
        }
    }

    /// The landed coordinations of writes and increments of `field`.
    fn landed_adds(&self, field: &[u8]) -> Vec<Landed<'a>> {
        let context = self.context;
        self.ops
            .iter()
            .filter(|&&m| self.op(m).op.adds(field))
            .flat_map(|&m| {
                self.op(m)
                    .coordinations
                    .iter()
                    .filter(|cd| !cd.void)
                    .filter_map(move |cd| cd.dot.as_ref().map(|d| (m, cd, d)))
            })
            .filter(|(_, _, d)| context.contains(d))
            .collect()
    }

    /// The coordinations of removes of `field` and deletes of the map (`void` ones too: the
    /// caller picks), with their operations.
    fn removers(&self, field: &[u8]) -> Vec<(&'a MapOpRec, &'a Coordination)> {
        self.ops
            .iter()
            .map(|&m| self.op(m))
            .filter(|op| op.op.removes(field))
            .flat_map(|op| op.coordinations.iter().map(move |cd| (op, cd)))
            .collect()
    }

    fn judge_field(&self, field: &Bytes, c: &mut Collector, f: &mut DataTypeFindings) {
        let adds = self.landed_adds(field);
        let removers = self.removers(field);
        let seen_by_acked_remover = |d: &Dot| {
            removers
                .iter()
                .any(|(op, cd)| acked(&op.outcome) && !cd.void && cd.context_after.contains(d))
        };
        let seen_by_any_remover =
            |d: &Dot| removers.iter().any(|(_, cd)| cd.context_after.contains(d));
        let value = self.fields.get(field).cloned();
        let key = self.key;
        let name = text(field);
        if adds.iter().all(|(_, _, d)| seen_by_acked_remover(d)) && value.is_some() {
            c.fail(
                MAPS_CHECK,
                format!(
                    "field {name:?} of {key:?} is present though every landed write and increment of it was seen by an acknowledged remove or delete"
                ),
            );
        }
        if adds.iter().any(|(_, _, d)| !seen_by_any_remover(d)) && value.is_none() {
            c.fail(
                MAPS_CHECK,
                format!(
                    "field {name:?} of {key:?} is missing though a landed write or increment of it was seen by no remove or delete"
                ),
            );
        }
        let Some(expected) = self.expected(&adds, &removers) else {
            return;
        };
        let got = match &value {
            None => return, // presence is judged above
            Some(FieldValue::Int(n)) => *n,
            // A written number with no increments beside it reads as the bytes written.
            Some(FieldValue::Bytes(b)) if number(b).is_some() => number(b).unwrap_or_default(),
            Some(FieldValue::Bytes(b)) => {
                c.fail(
                    MAPS_CHECK,
                    format!(
                        "field {name:?} of {key:?} reads {:?}, not a number, though only numbers were written",
                        text(b)
                    ),
                );
                return;
            }
        };
        if expected.low == expected.high {
            f.map_fields_valued += 1;
        } else {
            f.map_fields_bounded += 1;
        }
        if let Some(want) = expected.reset_remove.filter(|v| *v != got) {
            f.map_fields_counting_removed_increments += 1;
            c.fail(
                MAPS_CHECK,
                format!(
                    "field {name:?} of {key:?} reads {got}, but the counts its removes saw are gone for good (reset-remove): expected {want}"
                ),
            );
        }
        if !(expected.low..=expected.high).contains(&got) {
            let want = if expected.low == expected.high {
                expected.low.to_string()
            } else {
                format!("in [{}, {}]", expected.low, expected.high)
            };
            c.fail(
                MAPS_CHECK,
                format!(
                    "field {name:?} of {key:?} reads {got}, expected {want} ({}); final fields {:?}",
                    expected.basis,
                    self.fields
                        .iter()
                        .map(|(n, v)| (text(n), text(&v.to_bytes())))
                        .collect::<Vec<_>>()
                ),
            );
        }
    }

    /// What the field may read when it is present: a range (a point when the history fixes
    /// it), on what grounds, and the value reset-remove would give (see `Expected`); `None`
    /// when the history does not bound it.
    fn expected(
        &self,
        adds: &[Landed<'a>],
        removers: &[(&'a MapOpRec, &'a Coordination)],
    ) -> Option<Expected> {
        let removers: Vec<&(&MapOpRec, &Coordination)> =
            removers.iter().filter(|(_, cd)| !cd.void).collect();
        let sets: Vec<&Landed> = adds
            .iter()
            .filter(|(m, _, _)| matches!(self.op(*m).op, MapOp::Set(..)))
            .collect();
        if sets.is_empty() {
            return Some(increments_only(self, adds, &removers));
        }
        // The latest landed write, which every other landed operation must be ordered with.
        let &&(xm, xcd, xdot) = sets.iter().max_by_key(|(_, cd, _)| cd.at_us)?;
        let MapOp::Set(_, base) = self.op(xm).op else {
            return None;
        };
        let (mut before, mut after) = (BTreeSet::new(), BTreeSet::new());
        for &(m, cd, d) in adds {
            if std::ptr::eq(cd, xcd) {
                continue;
            }
            let increment = matches!(self.op(m).op, MapOp::Increment(..));
            match (
                xcd.context_after.contains(d),
                cd.context_after.contains(xdot),
            ) {
                (true, false) => before.insert(m),
                (false, true) if increment => after.insert(m),
                _ => return None,
            };
        }
        let late_remove = removers.iter().any(|(_, cd)| cd.at_us >= xcd.at_us);
        if late_remove || !before.is_disjoint(&after) {
            return None;
        }
        let sum = i128::from(base)
            + after
                .iter()
                .map(|&m| i128::from(delta(&self.op(m).op)))
                .sum::<i128>();
        Some(Expected {
            low: sum,
            high: sum,
            reset_remove: Some(sum),
            basis: "its latest write plus the increments after it, with no remove after it",
        })
    }
}

/// What a present field may read.
struct Expected {
    low: i128,
    high: i128,
    /// What it would read if a remove took away for good every count it saw (reset-remove,
    /// as counters do), when the history says.
    reset_remove: Option<i128>,
    basis: &'static str,
}

/// A field no landed write made: per node, its surviving count entry (its last landed
/// increment, unless a remove saw it) holds the node's running total since its replica last
/// dropped its entry, which happens only on merging (or making) a remove that saw that entry.
/// So each node adds the sum of its increments after a prefix that some remove saw (or all of
/// them), and nothing if an acknowledged remove saw its last.
fn increments_only(
    k: &MapKey,
    adds: &[Landed],
    removers: &[&(&MapOpRec, &Coordination)],
) -> Expected {
    let mut by_actor: BTreeMap<&driftkv_causal::Actor, Vec<(&Dot, i64)>> = BTreeMap::new();
    for &(m, _, d) in adds {
        by_actor
            .entry(&d.actor)
            .or_default()
            .push((d, delta(&k.op(m).op)));
    }
    let (mut low, mut high, mut reset_remove) = (0i128, 0i128, 0i128);
    for entries in by_actor.values_mut() {
        entries.sort_by_key(|(d, _)| d.counter);
        let Some(&(last, _)) = entries.last() else {
            continue;
        };
        let seen_by = |d: &Dot, acked_only: bool| {
            removers
                .iter()
                .any(|(op, cd)| (!acked_only || acked(&op.outcome)) && cd.context_after.contains(d))
        };
        if seen_by(last, true) {
            continue; // its entry is gone, and with it the node's count
        }
        let sum_after = |start: usize| -> i128 {
            entries[start..]
                .iter()
                .map(|(_, delta)| i128::from(*delta))
                .sum()
        };
        let mut starts = vec![0usize];
        starts.extend(removers.iter().map(|(_, cd)| {
            entries
                .iter()
                .filter(|(d, _)| cd.context_after.contains(d))
                .count()
        }));
        let mut values: Vec<i128> = starts.iter().map(|&s| sum_after(s)).collect();
        if seen_by(last, false) {
            values.push(0); // a remove that may not have landed saw its last
        }
        low += values.iter().copied().min().unwrap_or(0);
        high += values.iter().copied().max().unwrap_or(0);
        reset_remove += sum_after(starts.iter().copied().max().unwrap_or(0));
    }
    let basis = if low == high {
        "the sum of its landed increments"
    } else {
        "each node's running total since its replica last saw a remove of the field"
    };
    Expected {
        low,
        high,
        reset_remove: Some(reset_remove),
        basis,
    }
}

/// An increment's delta (0 for anything else).
fn delta(op: &MapOp) -> i64 {
    match op {
        MapOp::Increment(_, d) => *d,
        _ => 0,
    }
}

/// The integer a field's bytes spell, if they do.
fn number(b: &[u8]) -> Option<i128> {
    std::str::from_utf8(b).ok()?.parse().ok()
}

fn describe_op(op: &MapOp) -> String {
    match op {
        MapOp::Set(field, n) => format!("write of {} = {n}", text(field)),
        MapOp::Increment(field, d) => format!("increment of {} by {d}", text(field)),
        MapOp::Remove(field) => format!("remove of {}", text(field)),
        MapOp::Delete => "delete".into(),
    }
}
