//! Add-wins observed-remove set: a remove takes away only the adds it has seen.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{Actor, Crdt, Dot, VersionVector};
pub use driftkv_causal::dvv::Exhausted;

/// Each present member carries the dots of the adds that put it there; `context` holds every
/// add this replica has seen, including those since removed.
///
/// A remove drops the member's dots it has seen; an add concurrent with it has a dot the remove
/// never saw, so after merge the member is present: add wins. A member is present on a merged
/// replica exactly when some add of it was seen by no remove of it.
///
/// Invariant: every dot under a member is in `context`.
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
pub struct AwSet {
    members: BTreeMap<Bytes, BTreeSet<Dot>>,
    context: VersionVector,
}

/// The encoded shape, decoded before its invariants are checked.
#[derive(Deserialize)]
#[serde(rename = "AwSet")]
struct AwSetOwned {
    members: BTreeMap<Bytes, BTreeSet<Dot>>,
    context: VersionVector,
}

impl<'de> Deserialize<'de> for AwSet {
    /// Decodes and checks the invariants: a set arrives from peers and from storage, and one
    /// that breaks them (a member without dots, a dot its context does not hold) would make
    /// merges misreport what they changed (found by fuzzing merges of decoded objects).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = AwSetOwned::deserialize(deserializer)?;
        let set = AwSet {
            members: raw.members,
            context: raw.context,
        };
        set.check_invariants()
            .map_err(<D::Error as serde::de::Error>::custom)?;
        Ok(set)
    }
}

impl AwSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `member` on behalf of `actor`. The new dot replaces the member's older dots: they
    /// are all in the context, so merges treat them as seen and superseded.
    /// `Exhausted` (nothing changed) when the actor's counter is at its maximum.
    pub fn add(&mut self, actor: &Actor, member: Bytes) -> Result<Dot, Exhausted> {
        let dot = self.context.next_dot(actor).ok_or(Exhausted)?;
        self.members.insert(member, BTreeSet::from([dot.clone()]));
        Ok(dot)
    }

    /// Removes `member` as this replica sees it. Returns whether it was present.
    pub fn remove(&mut self, member: &[u8]) -> bool {
        self.members.remove(member).is_some()
    }

    /// Removes every member as this replica sees it (a delete of the set). Returns whether any
    /// was present.
    pub fn clear(&mut self) -> bool {
        let had = !self.members.is_empty();
        self.members.clear();
        had
    }

    pub fn contains(&self, member: &[u8]) -> bool {
        self.members.contains_key(member)
    }

    /// Members in byte order: the same order on every replica.
    pub fn members(&self) -> impl Iterator<Item = &Bytes> {
        self.members.keys()
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn context(&self) -> &VersionVector {
        &self.context
    }

    pub fn check_invariants(&self) -> Result<(), String> {
        self.context.check()?;
        for (member, dots) in &self.members {
            if dots.is_empty() {
                return Err(format!("member {member:?} has no dots"));
            }
            if let Some(d) = dots.iter().find(|d| d.counter == 0) {
                return Err(format!("dot {d:?} of {member:?} has counter 0"));
            }
            if let Some(d) = dots.iter().find(|d| !self.context.contains(d)) {
                return Err(format!("dot {d:?} of {member:?} is not in the context"));
            }
        }
        Ok(())
    }
}

impl Crdt for AwSet {
    fn merge(&mut self, other: &Self) -> bool {
        let before = self.clone();
        // Ours: keep a dot the other side also has or never saw.
        self.members.retain(|member, dots| {
            let theirs = other.members.get(member);
            dots.retain(|d| theirs.is_some_and(|t| t.contains(d)) || !other.context.contains(d));
            !dots.is_empty()
        });
        // Theirs: take a dot we never saw.
        for (member, dots) in &other.members {
            for d in dots {
                if !self.context.contains(d) {
                    self.members
                        .entry(member.clone())
                        .or_default()
                        .insert(d.clone());
                }
            }
        }
        self.context.merge(&other.context);
        *self != before
    }
}

impl std::fmt::Debug for AwSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwSet")
            .field(
                "members",
                &self
                    .members
                    .iter()
                    .map(|(m, d)| (String::from_utf8_lossy(m), d))
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
        Add { at: usize, member: u8 },
        Remove { at: usize, member: u8 },
        Merge { from: usize, to: usize },
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..3usize, 0u8..5).prop_map(|(at, member)| Op::Add { at, member }),
            (0..3usize, 0u8..5).prop_map(|(at, member)| Op::Remove { at, member }),
            (0..3usize, 0..3usize).prop_map(|(from, to)| Op::Merge { from, to }),
        ]
    }

    fn actor(i: usize) -> Actor {
        Actor::new(format!("n{i}"), 0)
    }

    fn m(x: u8) -> Bytes {
        Bytes::from(vec![x])
    }

    /// Plays a history; returns the states reached, the final replicas, and for each add its
    /// member and dot plus, for each remove, the dots of that member it observed.
    #[allow(clippy::type_complexity)]
    fn play(
        ops: &[Op],
    ) -> (
        Vec<AwSet>,
        Vec<AwSet>,
        Vec<(u8, Dot)>,
        Vec<(u8, BTreeSet<Dot>)>,
    ) {
        let mut replicas = vec![AwSet::new(); 3];
        let (mut seen, mut adds, mut removes) = (Vec::new(), Vec::new(), Vec::new());
        for op in ops {
            match *op {
                Op::Add { at, member } => {
                    let dot = replicas[at].add(&actor(at), m(member)).unwrap();
                    adds.push((member, dot));
                    seen.push(replicas[at].clone());
                }
                Op::Remove { at, member } => {
                    // What a remove observes: every add of the member this replica has seen.
                    let observed = adds
                        .iter()
                        .filter(|(mm, d)| *mm == member && replicas[at].context().contains(d))
                        .map(|(_, d)| d.clone())
                        .collect();
                    removes.push((member, observed));
                    replicas[at].remove(&[member]);
                    seen.push(replicas[at].clone());
                }
                Op::Merge { from, to } => {
                    let other = replicas[from].clone();
                    replicas[to].merge(&other);
                    seen.push(replicas[to].clone());
                }
            }
        }
        (seen, replicas, adds, removes)
    }

    fn merged(a: &AwSet, b: &AwSet) -> AwSet {
        let mut x = a.clone();
        x.merge(b);
        x
    }

    #[test]
    fn a_re_add_concurrent_with_a_remove_wins() {
        let (mut r1, mut r2) = (AwSet::new(), AwSet::new());
        r1.add(&actor(1), m(7)).unwrap();
        r2.merge(&r1);
        r1.remove(&[7]);
        r2.add(&actor(2), m(7)).unwrap();
        r1.merge(&r2);
        assert!(r1.contains(&[7]));
    }

    #[test]
    fn a_remove_that_saw_every_add_removes_everywhere() {
        let (mut r1, mut r2) = (AwSet::new(), AwSet::new());
        r1.add(&actor(1), m(7)).unwrap();
        r2.add(&actor(2), m(7)).unwrap();
        r1.merge(&r2);
        r1.remove(&[7]);
        r2.merge(&r1);
        assert!(!r2.contains(&[7]));
    }

    proptest! {
        #[test]
        fn merge_is_commutative_associative_idempotent(ops in proptest::collection::vec(arb_op(), 1..50),
                                                        picks in proptest::collection::vec(any::<proptest::sample::Index>(), 3)) {
            let (seen, _, _, _) = play(&ops);
            let (a, b, c) = (picks[0].get(&seen), picks[1].get(&seen), picks[2].get(&seen));
            prop_assert_eq!(merged(a, b), merged(b, a));
            prop_assert_eq!(merged(&merged(a, b), c), merged(a, &merged(b, c)));
            prop_assert_eq!(&merged(a, a), a);
            prop_assert!(merged(a, b).check_invariants().is_ok());
        }

        #[test]
        fn converged_members_are_exactly_the_adds_no_remove_observed(ops in proptest::collection::vec(arb_op(), 0..60)) {
            let (_, replicas, adds, removes) = play(&ops);
            let mut all = AwSet::new();
            for r in &replicas {
                all.merge(r);
            }
            // The add-wins specification, computed from the operations alone.
            let expected: BTreeSet<u8> = adds
                .iter()
                .filter(|(member, dot)| !removes.iter().any(|(rm, observed)| rm == member && observed.contains(dot)))
                .map(|(member, _)| *member)
                .collect();
            let got: BTreeSet<u8> = all.members().map(|b| b[0]).collect();
            prop_assert_eq!(got, expected);
        }
    }
}
