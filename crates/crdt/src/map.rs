//! Observed-remove map of named fields: each field a register (last writer by hybrid clock) with
//! increments beside it, the shape Redis hashes take on an eventually consistent store.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use driftkv_causal::Timestamp;

use crate::{Actor, Crdt, Dot, VersionVector};
pub use driftkv_causal::dvv::Exhausted;

/// One field's entries, each under the dot of the operation that made it.
///
/// - `values`: written values (`HSET`) that no later write, increment or remove of the field
///   has seen: `dot → (timestamp, bytes)`. Concurrent writes leave several; a reader takes the
///   one with the highest (timestamp, dot), as under lww.
/// - `counts`: increments (`HINCRBY`), one entry per node: the dot of its latest increment and
///   its running total of every increment of the field it ever made. A node folds only its
///   own entry into a new one (it issues its dots on top of its own state), so totals are never
///   counted twice.
/// - `removed`: per node, the last of its count entries that a write, remove or delete of the
///   field took away: that entry's dot counter and running total. A count entry counts only
///   what its node added beyond it (reset-remove, as `PnCounter::reset`): increments a remove
///   saw never come back with a later increment of a node that had not seen the remove, whose
///   running total still holds them. Merged by the later dot, kept while the map lives.
///
/// The field reads as its newest value plus the counts beside it when that value is a number,
/// its newest value when it is not, and the counts' sum when it holds no value. A field with
/// neither values nor counts reads as absent (it may still remember what was removed).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    values: BTreeMap<Dot, (Timestamp, Bytes)>,
    counts: BTreeMap<Dot, i64>,
    removed: BTreeMap<Actor, (u64, i64)>,
}

/// What a field reads as.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FieldValue {
    Bytes(Bytes),
    Int(i128),
}

impl FieldValue {
    /// The value as Redis renders a hash field: bytes, or an integer in decimal.
    pub fn to_bytes(&self) -> Bytes {
        match self {
            FieldValue::Bytes(b) => b.clone(),
            FieldValue::Int(n) => Bytes::from(n.to_string()),
        }
    }
}

impl Field {
    /// Whether the field reads as present: it holds a value or a count.
    fn is_present(&self) -> bool {
        !self.values.is_empty() || !self.counts.is_empty()
    }

    /// Whether it holds nothing at all, not even what was removed: then it is dropped.
    fn is_vacant(&self) -> bool {
        !self.is_present() && self.removed.is_empty()
    }

    /// What removes took away of `actor`'s counts: its last removed running total.
    fn removed_total(&self, actor: &Actor) -> i64 {
        self.removed.get(actor).map_or(0, |(_, total)| *total)
    }

    /// `actor`'s running total here: its count entry's, else what was removed of it.
    fn own_total(&self, actor: &Actor) -> i64 {
        self.counts
            .iter()
            .filter(|(d, _)| d.actor == *actor)
            .max_by_key(|(d, _)| d.counter)
            .map_or_else(|| self.removed_total(actor), |(_, total)| *total)
    }

    /// Takes every count entry away (a write, remove or delete of the field saw them), each
    /// node's remembered in `removed`.
    fn take_counts(&mut self) {
        for (dot, total) in std::mem::take(&mut self.counts) {
            let slot = self.removed.entry(dot.actor).or_insert((0, 0));
            if dot.counter > slot.0 {
                *slot = (dot.counter, total);
            }
        }
    }

    fn newest(&self) -> Option<&Bytes> {
        self.values
            .iter()
            .max_by(|(da, (ta, _)), (db, (tb, _))| (ta, da).cmp(&(tb, db)))
            .map(|(_, (_, v))| v)
    }

    /// The counts, each beyond what removes took away of its node's.
    fn counted(&self) -> i128 {
        self.counts
            .iter()
            .map(|(d, n)| i128::from(*n) - i128::from(self.removed_total(&d.actor)))
            .sum()
    }

    pub fn value(&self) -> FieldValue {
        match self.newest() {
            None => FieldValue::Int(self.counted()),
            Some(v) if self.counts.is_empty() => FieldValue::Bytes(v.clone()),
            Some(v) => match parse_int(v) {
                Some(n) => FieldValue::Int(i128::from(n) + self.counted()),
                None => FieldValue::Bytes(v.clone()),
            },
        }
    }

    /// Bytes the field's entries hold (for the object size limit).
    pub fn bytes(&self) -> usize {
        self.values
            .values()
            .map(|(_, v)| v.len())
            .fold(0, usize::saturating_add)
    }

    fn entries(&self) -> usize {
        self.values.len() + self.counts.len() + self.removed.len()
    }

    fn dots(&self) -> impl Iterator<Item = &Dot> {
        self.values.keys().chain(self.counts.keys())
    }

    /// Keeps what the other side also holds or never saw; takes what this side never saw.
    /// A dot held on both sides with different entries (only a forged state has one) keeps
    /// the greater entry, so the join stays commutative.
    fn join(
        ours: Option<&Field>,
        theirs: Option<&Field>,
        our_ctx: &VersionVector,
        their_ctx: &VersionVector,
    ) -> Field {
        fn join_entries<V: Clone + Ord>(
            a: Option<&BTreeMap<Dot, V>>,
            b: Option<&BTreeMap<Dot, V>>,
            a_ctx: &VersionVector,
            b_ctx: &VersionVector,
        ) -> BTreeMap<Dot, V> {
            let empty = BTreeMap::new();
            let (a, b) = (a.unwrap_or(&empty), b.unwrap_or(&empty));
            let mut out = BTreeMap::new();
            for (dot, v) in a {
                match b.get(dot) {
                    Some(w) => {
                        out.insert(dot.clone(), v.max(w).clone());
                    }
                    None if !b_ctx.contains(dot) => {
                        out.insert(dot.clone(), v.clone());
                    }
                    None => {}
                }
            }
            for (dot, w) in b {
                if !a.contains_key(dot) && !a_ctx.contains(dot) {
                    out.insert(dot.clone(), w.clone());
                }
            }
            out
        }
        // What was removed, per node: the later entry (the greater total on a tie, which
        // only a forged state has, so the join stays commutative).
        let mut removed: BTreeMap<Actor, (u64, i64)> = BTreeMap::new();
        for (actor, entry) in ours
            .iter()
            .chain(theirs.iter())
            .flat_map(|f| f.removed.iter())
        {
            let slot = removed.entry(actor.clone()).or_insert(*entry);
            *slot = (*slot).max(*entry);
        }
        let mut counts = join_entries(
            ours.map(|f| &f.counts),
            theirs.map(|f| &f.counts),
            our_ctx,
            their_ctx,
        );
        // A count entry a remove took away is gone, whichever side still held it.
        counts.retain(|d, _| removed.get(&d.actor).is_none_or(|(c, _)| d.counter > *c));
        Field {
            values: join_entries(
                ours.map(|f| &f.values),
                theirs.map(|f| &f.values),
                our_ctx,
                their_ctx,
            ),
            counts,
            removed,
        }
    }
}

/// A decimal integer as Redis reads one (`HINCRBY` on a written field).
pub fn parse_int(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Why an increment was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncrementError {
    /// The field's value is not an integer.
    NotInteger,
    /// The node's total or the field's value would leave the 64-bit range.
    Overflow,
    Exhausted,
}

/// Named fields; `context` holds every operation this replica has seen, including those whose
/// entries were since replaced or removed.
///
/// A remove (`HDEL`, or a delete of the whole map) drops the entries it has seen; an operation
/// concurrent with it has a dot it never saw, so after merge that field is present with what
/// the remove did not see: add wins, and a removed field starts over (reset-remove). A node's
/// increments the remove did not see survive, and count only what they added beyond the
/// running total the remove took away (`Field::removed`).
///
/// Invariant: every dot under a field (entries, and what was removed) is in `context`; a
/// node's count entry is later than what was removed of its counts; no field is vacant.
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
pub struct OrMap {
    fields: BTreeMap<Bytes, Field>,
    context: VersionVector,
}

#[derive(Deserialize)]
#[serde(rename = "OrMap")]
struct OrMapOwned {
    fields: BTreeMap<Bytes, Field>,
    context: VersionVector,
}

impl<'de> Deserialize<'de> for OrMap {
    /// Decodes and checks the invariants: a map arrives from peers and from storage.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = OrMapOwned::deserialize(deserializer)?;
        let map = OrMap {
            fields: raw.fields,
            context: raw.context,
        };
        map.check_invariants()
            .map_err(<D::Error as serde::de::Error>::custom)?;
        Ok(map)
    }
}

impl OrMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes `name = value` on behalf of `actor` at `timestamp`: replaces every entry of the
    /// field this replica holds.
    pub fn set(
        &mut self,
        actor: &Actor,
        name: Bytes,
        value: Bytes,
        timestamp: Timestamp,
    ) -> Result<Dot, Exhausted> {
        let dot = self.context.next_dot(actor).ok_or(Exhausted)?;
        let field = self.fields.entry(name).or_default();
        field.take_counts();
        field.values.clear();
        field.values.insert(dot.clone(), (timestamp, value));
        Ok(dot)
    }

    /// Adds `delta` to field `name` on behalf of `actor`; answers the field's new value.
    /// Nothing changes when it is refused.
    pub fn increment(
        &mut self,
        actor: &Actor,
        name: Bytes,
        delta: i64,
    ) -> Result<i128, IncrementError> {
        let field = self.fields.get(&name);
        let before = field
            .filter(|f| f.is_present())
            .map(Field::value)
            .unwrap_or(FieldValue::Int(0));
        let before = match before {
            FieldValue::Int(n) => n,
            FieldValue::Bytes(b) => i128::from(parse_int(&b).ok_or(IncrementError::NotInteger)?),
        };
        let after = before + i128::from(delta);
        if i64::try_from(after).is_err() {
            return Err(IncrementError::Overflow);
        }
        let own = field.map_or(0, |f| f.own_total(actor));
        let total = own.checked_add(delta).ok_or(IncrementError::Overflow)?;
        let dot = self
            .context
            .next_dot(actor)
            .ok_or(IncrementError::Exhausted)?;
        let field = self.fields.entry(name).or_default();
        field.counts.retain(|d, _| d.actor != *actor);
        field.counts.insert(dot, total);
        Ok(after)
    }

    /// Removes field `name` as this replica sees it. Returns whether it was present.
    pub fn remove(&mut self, name: &[u8]) -> bool {
        let Some(field) = self.fields.get_mut(name) else {
            return false;
        };
        let had = field.is_present();
        field.values.clear();
        field.take_counts();
        if field.is_vacant() {
            self.fields.remove(name);
        }
        had
    }

    /// Removes every field as this replica sees it (a delete of the map). Returns whether any
    /// was present.
    pub fn clear(&mut self) -> bool {
        let had = !self.is_empty();
        for field in self.fields.values_mut() {
            field.values.clear();
            field.take_counts();
        }
        self.fields.retain(|_, f| !f.is_vacant());
        had
    }

    pub fn get(&self, name: &[u8]) -> Option<FieldValue> {
        self.fields
            .get(name)
            .filter(|f| f.is_present())
            .map(Field::value)
    }

    /// Present fields in byte order of their names: the same order on every replica.
    pub fn fields(&self) -> impl Iterator<Item = (&Bytes, FieldValue)> {
        self.fields
            .iter()
            .filter(|(_, f)| f.is_present())
            .map(|(name, f)| (name, f.value()))
    }

    /// Present fields.
    pub fn len(&self) -> usize {
        self.fields.values().filter(|f| f.is_present()).count()
    }

    /// Whether no field is present (what removes took away may still be remembered).
    pub fn is_empty(&self) -> bool {
        !self.fields.values().any(Field::is_present)
    }

    pub fn context(&self) -> &VersionVector {
        &self.context
    }

    /// Bytes of names and values, and the number of entries (each costs a dot), for the
    /// object size limit.
    pub fn size(&self) -> (usize, usize) {
        self.fields.iter().fold((0, 0), |(bytes, entries), (n, f)| {
            (
                bytes.saturating_add(n.len()).saturating_add(f.bytes()),
                entries.saturating_add(f.entries()),
            )
        })
    }

    pub fn check_invariants(&self) -> Result<(), String> {
        self.context.check()?;
        for (name, field) in &self.fields {
            if field.is_vacant() {
                return Err(format!("field {name:?} has no entries"));
            }
            // A decoded state's counters are checked before they become dots (a dot's counter
            // starts at 1: found by fuzzing decoded maps).
            if let Some(d) = field.dots().find(|d| d.counter == 0) {
                return Err(format!("dot {d:?} of field {name:?} has counter 0"));
            }
            if let Some((a, _)) = field.removed.iter().find(|(_, (counter, _))| *counter == 0) {
                return Err(format!(
                    "removed counts of {a} in field {name:?} have counter 0"
                ));
            }
            let removed = field
                .removed
                .iter()
                .map(|(a, (counter, _))| Dot::new(a.clone(), *counter));
            let dots: Vec<Dot> = field.dots().cloned().chain(removed).collect();
            if let Some(d) = dots.iter().find(|d| !self.context.contains(d)) {
                return Err(format!("dot {d:?} of field {name:?} is not in the context"));
            }
            let stale = field.counts.keys().find(|d| {
                field
                    .removed
                    .get(&d.actor)
                    .is_some_and(|(c, _)| d.counter <= *c)
            });
            if let Some(d) = stale {
                return Err(format!(
                    "count {d:?} of field {name:?} was removed but is still held"
                ));
            }
        }
        Ok(())
    }
}

impl Crdt for OrMap {
    fn merge(&mut self, other: &Self) -> bool {
        let mut fields = BTreeMap::new();
        let names: std::collections::BTreeSet<&Bytes> =
            self.fields.keys().chain(other.fields.keys()).collect();
        for name in names {
            let joined = Field::join(
                self.fields.get(name),
                other.fields.get(name),
                &self.context,
                &other.context,
            );
            if !joined.is_vacant() {
                fields.insert(name.clone(), joined);
            }
        }
        let mut context = self.context.clone();
        context.merge(&other.context);
        let changed = fields != self.fields || context != self.context;
        self.fields = fields;
        self.context = context;
        changed
    }
}

impl std::fmt::Debug for OrMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrMap")
            .field(
                "fields",
                &self
                    .fields()
                    .map(|(n, v)| (String::from_utf8_lossy(n), v))
                    .collect::<Vec<_>>(),
            )
            .field("context", &self.context)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Set { at: usize, field: u8, value: u8 },
        Incr { at: usize, field: u8, delta: i8 },
        Remove { at: usize, field: u8 },
        Clear { at: usize },
        Merge { from: usize, to: usize },
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0..3usize, 0..3u8, 0..4u8).prop_map(|(at, field, value)| Op::Set { at, field, value }),
            3 => (0..3usize, 0..3u8, any::<i8>()).prop_map(|(at, field, delta)| Op::Incr { at, field, delta }),
            2 => (0..3usize, 0..3u8).prop_map(|(at, field)| Op::Remove { at, field }),
            1 => (0..3usize).prop_map(|at| Op::Clear { at }),
            4 => (0..3usize, 0..3usize).prop_map(|(from, to)| Op::Merge { from, to }),
        ]
    }

    fn actor(i: usize) -> Actor {
        Actor::new(format!("n{i}"), 0)
    }

    fn name(i: u8) -> Bytes {
        Bytes::from(vec![b'f', b'0' + i])
    }

    /// Plays a history on three replicas; returns every state reached and the final replicas.
    fn play(ops: &[Op]) -> (Vec<OrMap>, Vec<OrMap>) {
        let mut replicas = vec![OrMap::new(); 3];
        let mut seen = Vec::new();
        for (time, op) in ops.iter().enumerate() {
            let at = match *op {
                Op::Set { at, field, value } => {
                    let v = if value == 3 {
                        Bytes::from_static(b"x")
                    } else {
                        Bytes::from(value.to_string())
                    };
                    replicas[at]
                        .set(&actor(at), name(field), v, Timestamp(time as u64))
                        .unwrap();
                    at
                }
                Op::Incr { at, field, delta } => {
                    let _ = replicas[at].increment(&actor(at), name(field), i64::from(delta));
                    at
                }
                Op::Remove { at, field } => {
                    replicas[at].remove(&name(field));
                    at
                }
                Op::Clear { at } => {
                    replicas[at].clear();
                    at
                }
                Op::Merge { from, to } => {
                    let other = replicas[from].clone();
                    replicas[to].merge(&other);
                    to
                }
            };
            replicas[at].check_invariants().unwrap();
            seen.push(replicas[at].clone());
        }
        (seen, replicas)
    }

    fn merged(a: &OrMap, b: &OrMap) -> OrMap {
        let mut m = a.clone();
        m.merge(b);
        m
    }

    #[test]
    fn concurrent_fields_both_survive_and_a_concurrent_set_beats_a_remove() {
        let (a1, a2) = (actor(1), actor(2));
        let (mut x, mut y) = (OrMap::new(), OrMap::new());
        x.set(&a1, name(0), Bytes::from_static(b"ann"), Timestamp(1))
            .unwrap();
        y.set(&a2, name(1), Bytes::from_static(b"oslo"), Timestamp(1))
            .unwrap();
        y.increment(&a2, name(2), 2).unwrap();
        x.increment(&a1, name(2), 3).unwrap();
        x.merge(&y);
        assert_eq!(
            x.get(&name(0)),
            Some(FieldValue::Bytes(Bytes::from_static(b"ann")))
        );
        assert_eq!(
            x.get(&name(1)),
            Some(FieldValue::Bytes(Bytes::from_static(b"oslo")))
        );
        assert_eq!(x.get(&name(2)), Some(FieldValue::Int(5)));
        // y removes f1 while x, not yet knowing, writes it again: the write survives.
        y.merge(&x);
        assert!(y.remove(&name(1)));
        x.set(&a1, name(1), Bytes::from_static(b"rome"), Timestamp(2))
            .unwrap();
        y.merge(&x);
        assert_eq!(
            y.get(&name(1)),
            Some(FieldValue::Bytes(Bytes::from_static(b"rome")))
        );
        // A remove that saw everything removes for good.
        assert!(y.remove(&name(1)));
        x.merge(&y);
        assert_eq!(x.get(&name(1)), None);
    }

    /// Found by the simulator (`scenarios/data_types.toml`, seed 2): a node that had not seen a
    /// delete of the map incremented a field again, and its running total brought back the
    /// count the delete had taken away (the field read 0 instead of 1).
    #[test]
    fn counts_a_remove_took_away_never_come_back_with_a_concurrent_increment() {
        let (a1, a2) = (actor(1), actor(2));
        let (mut x, mut y) = (OrMap::new(), OrMap::new());
        x.increment(&a1, name(0), -1).unwrap();
        y.merge(&x);
        // y deletes the map (it saw the -1) while x, not knowing, adds 1.
        assert!(y.clear());
        assert!(y.is_empty());
        assert_eq!(y.get(&name(0)), None);
        x.increment(&a1, name(0), 1).unwrap();
        for (mut a, b) in [(x.clone(), y.clone()), (y.clone(), x.clone())] {
            a.merge(&b);
            assert_eq!(a.get(&name(0)), Some(FieldValue::Int(1)), "{a:?}");
            a.check_invariants().unwrap();
        }
        // Once x has seen the delete, counting on starts from nothing.
        let mut z = y.clone();
        z.increment(&a1, name(0), 5).unwrap();
        assert_eq!(z.get(&name(0)), Some(FieldValue::Int(5)));
        // A write that saw the counts takes them away too: a concurrent increment adds to it.
        let (mut p, mut q) = (OrMap::new(), OrMap::new());
        p.increment(&a1, name(1), 3).unwrap();
        q.merge(&p);
        q.set(&a2, name(1), Bytes::from_static(b"10"), Timestamp(1))
            .unwrap();
        p.increment(&a1, name(1), 1).unwrap();
        q.merge(&p);
        assert_eq!(q.get(&name(1)), Some(FieldValue::Int(11)));
        // A remove of a field nobody holds any more is no remove.
        assert!(!y.remove(&name(0)));
    }

    #[test]
    fn a_state_with_a_removed_count_at_counter_0_is_refused_not_a_panic() {
        let mut map = OrMap::new();
        let field = Field {
            values: BTreeMap::new(),
            counts: BTreeMap::new(),
            removed: BTreeMap::from([(actor(0), (0, 5))]),
        };
        map.fields.insert(name(0), field);
        assert!(map.check_invariants().is_err());
    }

    #[test]
    fn an_increment_adds_to_a_written_number_and_refuses_a_word() {
        let a = actor(0);
        let mut m = OrMap::new();
        m.set(&a, name(0), Bytes::from_static(b"4"), Timestamp(1))
            .unwrap();
        assert_eq!(m.increment(&a, name(0), 3), Ok(7));
        m.set(&a, name(1), Bytes::from_static(b"word"), Timestamp(2))
            .unwrap();
        assert_eq!(m.increment(&a, name(1), 1), Err(IncrementError::NotInteger));
        assert_eq!(
            m.increment(&a, name(0), i64::MAX),
            Err(IncrementError::Overflow)
        );
        assert_eq!(m.get(&name(0)), Some(FieldValue::Int(7)));
    }

    proptest! {
        #[test]
        fn merge_is_commutative_associative_idempotent(
            ops in proptest::collection::vec(arb_op(), 1..40),
            picks in proptest::collection::vec(any::<proptest::sample::Index>(), 3),
        ) {
            let (seen, _) = play(&ops);
            let (a, b, c) = (picks[0].get(&seen), picks[1].get(&seen), picks[2].get(&seen));
            prop_assert_eq!(merged(a, b), merged(b, a));
            prop_assert_eq!(merged(&merged(a, b), c), merged(a, &merged(b, c)));
            prop_assert_eq!(&merged(a, a), a);
            let mut m = a.clone();
            prop_assert_eq!(m.merge(b), merged(a, b) != *a, "merge reports exactly when it changed");
        }

        #[test]
        fn replicas_that_exchanged_everything_agree_and_counts_are_never_doubled(
            ops in proptest::collection::vec(arb_op(), 0..60),
        ) {
            // Increments only, with no removes or writes: the sum of every delta applied.
            let incs: Vec<Op> = ops.iter().filter(|op| matches!(op, Op::Incr { .. } | Op::Merge { .. })).cloned().collect();
            let (_, mut replicas) = play(&incs);
            let (_, mut any) = play(&ops);
            for rs in [&mut replicas, &mut any] {
                for _ in 0..2 {
                    for to in 0..3 {
                        for from in 0..3 {
                            let other = rs[from].clone();
                            rs[to].merge(&other);
                        }
                    }
                }
                prop_assert_eq!(&rs[0], &rs[1]);
                prop_assert_eq!(&rs[1], &rs[2]);
            }
            for f in 0..3u8 {
                let sum: i128 = incs.iter().map(|op| match *op {
                    Op::Incr { field, delta, .. } if field == f => i128::from(delta),
                    _ => 0,
                }).sum();
                let got = replicas[0].get(&name(f));
                let had_any = incs.iter().any(|op| matches!(*op, Op::Incr { field, .. } if field == f));
                prop_assert_eq!(got, had_any.then_some(FieldValue::Int(sum)));
            }
        }

        /// Reset-remove: with increments, removes and deletes (no writes), once every replica
        /// has every state a field is worth exactly the increments no remove of it saw, and is
        /// present exactly when one of those exists.
        #[test]
        fn a_field_counts_exactly_the_increments_no_remove_saw(
            ops in proptest::collection::vec(arb_op(), 0..60),
        ) {
            let ops: Vec<Op> = ops.into_iter().filter(|op| !matches!(op, Op::Set { .. })).collect();
            let (_, mut replicas) = play(&ops);
            // The model: which increments (by index) each replica has seen, and which a remove saw.
            let mut known: Vec<std::collections::BTreeSet<usize>> = vec![Default::default(); 3];
            let mut removed = std::collections::BTreeSet::new();
            for (i, op) in ops.iter().enumerate() {
                match *op {
                    Op::Incr { at, .. } => { known[at].insert(i); }
                    Op::Merge { from, to } => {
                        let theirs = known[from].clone();
                        known[to].extend(theirs);
                    }
                    Op::Remove { at, field } => removed.extend(known[at].iter().copied().filter(|&j| {
                        matches!(ops[j], Op::Incr { field: g, .. } if g == field)
                    })),
                    Op::Clear { at } => removed.extend(known[at].iter().copied()),
                    Op::Set { .. } => unreachable!(),
                }
            }
            for _ in 0..2 {
                for to in 0..3 {
                    for from in 0..3 {
                        let other = replicas[from].clone();
                        replicas[to].merge(&other);
                    }
                }
            }
            for f in 0..3u8 {
                let left: Vec<i128> = ops.iter().enumerate().filter_map(|(i, op)| match *op {
                    Op::Incr { field, delta, .. } if field == f && !removed.contains(&i) => Some(i128::from(delta)),
                    _ => None,
                }).collect();
                let expected = (!left.is_empty()).then(|| FieldValue::Int(left.iter().sum()));
                for r in &replicas {
                    prop_assert_eq!(r.get(&name(f)), expected.clone(), "{:?}", r);
                }
            }
        }
    }
}
