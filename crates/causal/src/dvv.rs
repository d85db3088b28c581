//! Dotted version vector sets: the siblings of one key on one replica, with their causality.

use serde::{Deserialize, Serialize};

use crate::actor::{Actor, Dot};
use crate::sorted::SortedMap;
use crate::vv::VersionVector;

/// The concurrent values (siblings) of one key, each tagged with the dot of the write that
/// created it, and the version vector of every write to the key this replica has seen.
///
/// A sibling whose dot is in another replica's `context` but not among its siblings has been
/// overwritten there; that is how `sync` learns what was replaced without keeping history.
///
/// Invariants (checked by `check_invariants`, kept by every operation):
/// - every sibling's dot is in `context`;
/// - `context` is downward closed per actor (all of `1..=n` seen): it holds because an actor
///   only issues dots on top of its own stored state, so it has seen all of its earlier ones.
///
/// Laws (proved by property tests below): `sync` is commutative, associative and idempotent;
/// replicas that receive the same states in any order, with duplicates, end equal.
/// An actor's event counter for a key is at [`crate::vv::COUNTER_MAX`]: no further dot can be
/// issued under it. Only a forged or corrupt state gets there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the key's event counter for this node is exhausted (a forged or corrupt version vector)")]
pub struct Exhausted;

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dvv<V> {
    siblings: SortedMap<Dot, V>,
    context: VersionVector,
}

impl<V> Default for Dvv<V> {
    fn default() -> Self {
        Dvv {
            siblings: SortedMap::new(),
            context: VersionVector::new(),
        }
    }
}

impl<V: Clone + Ord> Dvv<V> {
    pub fn new() -> Self {
        Self::default()
    }

    /// The same siblings and context with each value changed by `f` (a record of an earlier
    /// format read into today's value type). The caller checks the result's invariants.
    pub fn map_values<W>(self, mut f: impl FnMut(V) -> W) -> Dvv<W>
    where
        W: Clone + Ord,
    {
        Dvv {
            siblings: self
                .siblings
                .iter()
                .map(|(dot, v)| (dot.clone(), f(v.clone())))
                .collect(),
            context: self.context,
        }
    }

    /// Every write seen for this key; a client that writes with this context replaces every
    /// sibling it read.
    pub fn context(&self) -> &VersionVector {
        &self.context
    }

    pub fn siblings(&self) -> impl Iterator<Item = (&Dot, &V)> {
        self.siblings.iter()
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.siblings.values()
    }

    pub fn len(&self) -> usize {
        self.siblings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.siblings.is_empty()
    }

    /// Whether nothing at all is known of the key (no sibling, no history).
    pub fn is_unknown(&self) -> bool {
        self.siblings.is_empty() && self.context.is_empty()
    }

    /// The siblings a client context covers, i.e. those a write with that context replaces.
    pub fn covered_by<'a>(
        &'a self,
        client_context: &'a VersionVector,
    ) -> impl Iterator<Item = &'a Dot> {
        self.siblings
            .keys()
            .filter(move |dot| client_context.contains(dot))
    }

    /// A new write coordinated by `actor`: drops the siblings `client_context` covers, adds
    /// `value` under a fresh dot, and records the client's context as seen. Returns the dot,
    /// or `Exhausted` (nothing changed) when the actor's counter is at its maximum.
    pub fn event(
        &mut self,
        client_context: &VersionVector,
        actor: &Actor,
        value: V,
    ) -> Result<Dot, Exhausted> {
        let last = self.context.get(actor).max(client_context.get(actor));
        if last >= crate::vv::COUNTER_MAX {
            return Err(Exhausted);
        }
        self.siblings.retain(|dot, _| !client_context.contains(dot));
        self.context.merge(client_context);
        let dot = self.context.next_dot(actor).ok_or(Exhausted)?;
        let previous = self.siblings.insert(dot.clone(), value);
        debug_assert!(previous.is_none(), "a fresh dot is never already a sibling");
        Ok(dot)
    }

    /// A state holding one write, `value` under `dot`, that saw nothing but its own actor's
    /// earlier events: a write made without reading the key (its context is the dot's actor up
    /// to the dot). Merging it into a replica's copy is how such a write is applied.
    pub fn single(dot: Dot, value: V) -> Result<Dvv<V>, Exhausted> {
        if dot.counter == 0 || dot.counter > crate::vv::COUNTER_MAX {
            return Err(Exhausted);
        }
        let mut context = VersionVector::new();
        context.observe(&dot.actor, dot.counter);
        let mut siblings = SortedMap::new();
        siblings.insert(dot, value);
        Ok(Dvv { siblings, context })
    }

    /// Keeps only the sibling `keep` (if present), as a write that saw everything would.
    pub fn retain_only(&mut self, keep: &Dot) {
        self.siblings.retain(|dot, _| dot == keep);
    }

    /// Whether joining `other` into this state gives exactly `other`, so a caller holding both
    /// can take `other` as the result instead of computing the join. That is the usual case of
    /// a replica write: the incoming state is the coordinator's, which had seen everything this
    /// replica holds. Exactly when (the join's definition, read off [`Dvv::sync`]):
    /// - `other`'s context holds this one's (the joined context is `other`'s);
    /// - each sibling here is either dropped (absent there: then its dot is in `other`'s
    ///   context, by the first condition) or held there with the same value;
    /// - each sibling there survives: this state never saw its dot, or holds it too.
    ///
    /// A few lookups in small maps, no allocation. `sync` stays the definition; a property test
    /// holds the two together.
    pub fn joins_to(&self, other: &Dvv<V>) -> bool {
        other.context.descends(&self.context)
            && self
                .siblings
                .iter()
                .all(|(dot, v)| other.siblings.get(dot).is_none_or(|w| w == v))
            && other
                .siblings
                .keys()
                .all(|dot| !self.context.contains(dot) || self.siblings.contains_key(dot))
    }

    /// Joins another replica's state into this one. Returns how many siblings each side had
    /// that the other had never seen: both non-zero means the two held concurrent writes.
    pub fn sync(&mut self, other: &Dvv<V>) -> SyncReport {
        let mut report = SyncReport::default();
        // Ours survive unless the other side saw them and dropped them.
        let ours_before = self.siblings.len();
        self.siblings
            .retain(|dot, _| other.siblings.contains_key(dot) || !other.context.contains(dot));
        report.changed = self.siblings.len() != ours_before;
        for (dot, value) in other.siblings.iter() {
            if let Some(ours) = self.siblings.get_mut(dot) {
                // One dot names one write. Two values under one dot mean an actor issued a dot
                // twice (it lost its state and came back under its old identity): keep the
                // greater value on every replica, so merge stays a join, and report it.
                if ours != value {
                    report.dot_clashes += 1;
                    if *value > *ours {
                        *ours = value.clone();
                        report.changed = true;
                    }
                }
                continue;
            }
            if !self.context.contains(dot) {
                self.siblings.insert(dot.clone(), value.clone());
                report.new_from_other += 1;
                report.changed = true;
            }
        }
        report.new_to_other = self
            .siblings
            .keys()
            .filter(|dot| !other.context.contains(dot))
            .count() as u32;
        report.changed |= self.context.merge(&other.context);
        report
    }

    pub fn check_invariants(&self) -> Result<(), String> {
        self.context.check()?;
        for dot in self.siblings.keys() {
            if dot.counter == 0 {
                return Err(format!("sibling {dot:?} has counter 0, which no event has"));
            }
            if !self.context.contains(dot) {
                return Err(format!(
                    "sibling {dot:?} is not in the context {:?}",
                    self.context
                ));
            }
        }
        Ok(())
    }
}

/// What a `sync` changed: siblings learned from the other side, and siblings of ours the other
/// side had not seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub new_from_other: u32,
    pub new_to_other: u32,
    /// Dots both sides held with different values: a reused identity (see `Actor`).
    pub dot_clashes: u32,
    /// This side's state changed (siblings dropped, learned or replaced, or context grown).
    pub changed: bool,
}

impl SyncReport {
    /// Both sides held a write the other had not seen: they were concurrent.
    pub fn concurrent(&self) -> bool {
        self.new_from_other > 0 && self.new_to_other > 0
    }
}

impl<V: std::fmt::Debug> std::fmt::Debug for Dvv<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dvv")
            .field("siblings", &self.siblings)
            .field("context", &self.context)
            .finish()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_dot_issued_twice_with_two_values_merges_to_the_greater_on_every_side() {
        let actor = Actor::new("n3", 7);
        let mut a: Dvv<u8> = Dvv::new();
        let mut b: Dvv<u8> = Dvv::new();
        // Both lives of n3#7 issue dot (n3#7, 1), with different values.
        a.event(&VersionVector::new(), &actor, 1).unwrap();
        b.event(&VersionVector::new(), &actor, 2).unwrap();
        let (mut ab, mut ba) = (a.clone(), b.clone());
        let report = ab.sync(&b);
        ba.sync(&a);
        assert_eq!(report.dot_clashes, 1);
        assert_eq!(ab, ba, "both sides settle on the same value");
        assert_eq!(ab.values().copied().collect::<Vec<_>>(), [2]);
        // The join is neither side: each holds the dot with another value.
        assert!(!a.joins_to(&b) && !b.joins_to(&a));
        assert!(!ab.joins_to(&a) && ab.joins_to(&ab.clone()));
    }

    #[test]
    fn a_sibling_this_side_saw_superseded_keeps_the_join_from_being_the_other_side() {
        // n1 writes a over n2's b (its client had read b). n2 then writes c with a context
        // naming n1's write but not b (a crafted context: real ones name what they descend
        // from), so n2 keeps b beside c although it has seen a.
        let (n1, n2) = (actor(0), actor(1));
        let (a, b, c) = (1u32, 2u32, 3u32);
        let mut r2 = Dvv::new();
        r2.event(&VersionVector::new(), &n2, b).unwrap();
        let mut r1 = Dvv::new();
        r1.event(&r2.context().clone(), &n1, a).unwrap();
        let mut crafted = VersionVector::new();
        crafted.observe(&n1, 1);
        r2.event(&crafted, &n2, c).unwrap();
        assert!(r2.context().descends(r1.context()));
        // Joined into r1, b stays superseded (r1 saw it replaced): the join is not r2.
        let joined = synced(&r1, &r2);
        assert_eq!(joined.values().copied().collect::<Vec<_>>(), [c]);
        assert!(joined != r2);
        assert!(!r1.joins_to(&r2));
    }

    /// One step of a history played on a few replicas of one key.
    #[derive(Clone, Debug)]
    pub enum Op {
        /// Replica `at` coordinates a write; the client read its context from replica `read_from`
        /// (or wrote blind).
        Write {
            at: usize,
            read_from: Option<usize>,
            value: u32,
        },
        /// Replica `to` merges the state of replica `from`.
        Sync { from: usize, to: usize },
    }

    pub const REPLICAS: usize = 3;

    pub fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..REPLICAS, proptest::option::of(0..REPLICAS), 0u32..1000).prop_map(
                |(at, read_from, value)| Op::Write {
                    at,
                    read_from,
                    value
                }
            ),
            (0..REPLICAS, 0..REPLICAS).prop_map(|(from, to)| Op::Sync { from, to }),
        ]
    }

    pub fn actor(i: usize) -> Actor {
        Actor::new(format!("n{}", i + 1), 0)
    }

    /// Plays a history; returns every state each replica passed through, and the final ones.
    pub fn play(ops: &[Op]) -> (Vec<Dvv<u32>>, Vec<Dvv<u32>>) {
        let mut replicas = vec![Dvv::<u32>::new(); REPLICAS];
        let mut seen = Vec::new();
        for op in ops {
            match *op {
                Op::Write {
                    at,
                    read_from,
                    value,
                } => {
                    let ctx = read_from
                        .map(|r| replicas[r].context().clone())
                        .unwrap_or_default();
                    replicas[at].event(&ctx, &actor(at), value).unwrap();
                    seen.push(replicas[at].clone());
                }
                Op::Sync { from, to } => {
                    let other = replicas[from].clone();
                    replicas[to].sync(&other);
                    seen.push(replicas[to].clone());
                }
            }
        }
        (seen, replicas)
    }

    fn synced(a: &Dvv<u32>, b: &Dvv<u32>) -> Dvv<u32> {
        let mut m = a.clone();
        m.sync(b);
        m
    }

    #[test]
    fn blind_concurrent_writes_become_siblings_and_a_context_write_resolves_them() {
        let (n1, n2) = (actor(0), actor(1));
        let mut r1 = Dvv::new();
        let mut r2 = Dvv::new();
        r1.event(&VersionVector::new(), &n1, "a").unwrap();
        r2.event(&VersionVector::new(), &n2, "b").unwrap();
        let report = r1.sync(&r2);
        assert!(report.concurrent());
        let mut values: Vec<_> = r1.values().copied().collect();
        values.sort();
        assert_eq!(values, ["a", "b"]);
        let ctx = r1.context().clone();
        r2.event(&ctx, &n2, "c").unwrap();
        r1.sync(&r2);
        assert_eq!(r1.values().copied().collect::<Vec<_>>(), ["c"]);
        assert_eq!(r1, r2);
    }

    #[test]
    fn a_stale_replica_learns_the_overwrite_and_drops_the_old_value() {
        let n1 = actor(0);
        let mut r1 = Dvv::new();
        r1.event(&VersionVector::new(), &n1, 1).unwrap();
        let mut stale = r1.clone();
        let ctx = r1.context().clone();
        r1.event(&ctx, &n1, 2).unwrap();
        let report = stale.sync(&r1);
        assert!(!report.concurrent());
        assert_eq!(stale.values().copied().collect::<Vec<_>>(), [2]);
    }

    proptest! {
        #[test]
        fn joins_to_says_exactly_when_the_join_is_the_other_state(
            ops in proptest::collection::vec(arb_op(), 1..40),
            picks in proptest::collection::vec(any::<proptest::sample::Index>(), 2),
        ) {
            let (seen, _) = play(&ops);
            let a = picks[0].get(&seen);
            let b = picks[1].get(&seen);
            prop_assert_eq!(a.joins_to(b), synced(a, b) == *b);
        }

        #[test]
        fn sync_is_commutative_associative_idempotent(ops in proptest::collection::vec(arb_op(), 1..40),
                                                      picks in proptest::collection::vec(any::<proptest::sample::Index>(), 3)) {
            let (seen, _) = play(&ops);
            let a = picks[0].get(&seen);
            let b = picks[1].get(&seen);
            let c = picks[2].get(&seen);
            prop_assert_eq!(synced(a, b), synced(b, a));
            prop_assert_eq!(synced(&synced(a, b), c), synced(a, &synced(b, c)));
            prop_assert_eq!(&synced(a, a), a);
            prop_assert!(synced(a, b).check_invariants().is_ok());
        }

        #[test]
        fn replicas_receiving_the_same_states_in_any_order_end_equal(
            ops in proptest::collection::vec(arb_op(), 1..40),
            order in Just(()).prop_perturb(|_, mut rng| rng.random::<u64>()),
        ) {
            let (seen, _) = play(&ops);
            // Deliver every state twice, in two different orders.
            let mut forward = Dvv::new();
            for s in seen.iter().chain(seen.iter()) {
                forward.sync(s);
            }
            let mut shuffled: Vec<&Dvv<u32>> = seen.iter().chain(seen.iter()).collect();
            let mut x = order | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let mut other = Dvv::new();
            for s in shuffled {
                other.sync(s);
            }
            prop_assert_eq!(forward, other);
        }

        #[test]
        fn a_write_with_a_context_supersedes_exactly_the_covered_siblings(
            ops in proptest::collection::vec(arb_op(), 0..40),
            at in 0..REPLICAS, read_from in 0..REPLICAS,
        ) {
            let (_, replicas) = play(&ops);
            let ctx = replicas[read_from].context().clone();
            let before = replicas[at].clone();
            let mut after = before.clone();
            let dot = after.event(&ctx, &actor(at), 7).unwrap();
            let expected: Vec<Dot> = before.siblings().map(|(d, _)| d.clone())
                .filter(|d| !ctx.contains(d)).chain([dot.clone()]).collect();
            let mut got: Vec<Dot> = after.siblings().map(|(d, _)| d.clone()).collect();
            let mut expected = expected; expected.sort(); got.sort();
            prop_assert_eq!(got, expected);
            prop_assert!(!before.context().contains(&dot), "a fresh dot was never seen before");
            prop_assert!(after.check_invariants().is_ok());
        }

        #[test]
        fn survivors_are_exactly_the_writes_no_seen_write_overwrote(ops in proptest::collection::vec(arb_op(), 0..40)) {
            // The causal past of each write is the context its client sent.
            let mut replicas = vec![Dvv::<u32>::new(); REPLICAS];
            let mut past: BTreeMap<Dot, VersionVector> = BTreeMap::new();
            for op in &ops {
                match *op {
                    Op::Write { at, read_from, value } => {
                        let ctx = read_from.map(|r| replicas[r].context().clone()).unwrap_or_default();
                        let dot = replicas[at].event(&ctx, &actor(at), value).unwrap();
                        past.insert(dot, ctx);
                    }
                    Op::Sync { from, to } => {
                        let other = replicas[from].clone();
                        replicas[to].sync(&other);
                    }
                }
            }
            for r in &replicas {
                let survivors: Vec<&Dot> = r.siblings().map(|(d, _)| d).collect();
                // Siblings only for truly concurrent writes: no survivor saw another.
                for s in &survivors {
                    for t in &survivors {
                        prop_assert!(s == t || !past[*t].contains(s), "{:?} saw {:?} yet both survive", t, s);
                    }
                }
                // No write lost unless a write this replica knows of had seen it.
                for (w, _) in past.iter().filter(|(w, _)| r.context().contains(w)) {
                    let survives = survivors.contains(&w);
                    let overwritten = past.iter().any(|(u, p)| r.context().contains(u) && p.contains(w));
                    prop_assert!(survives || overwritten, "{:?} vanished without being overwritten", w);
                }
            }
        }
    }
}
