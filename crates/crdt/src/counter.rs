//! PN-counter: increments and decrements that all count, whatever node took them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Actor, Crdt};

/// Per node, the total of increments and of decrements it coordinated. Merge takes the
/// per-node maximum; the value is the sum of increments minus the sum of decrements, less what
/// deletes took away.
///
/// Why two totals per node: a merge can only take maxima of numbers that only grow, and a
/// signed total per node would shrink on a decrement.
///
/// A delete ([`PnCounter::reset`]) records the totals it saw in `removed` (Riak's reset-remove):
/// the value counts only what no delete saw. `removed` also merges by per-node maximum, so
/// two concurrent deletes take away what they saw once, not twice, and an increment
/// concurrent with a delete survives it: the delete never saw it.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PnCounter {
    entries: BTreeMap<Actor, Totals>,
    removed: BTreeMap<Actor, Totals>,
}

#[derive(Clone, Copy, Default, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Totals {
    increments: u64,
    decrements: u64,
}

/// A counter as records of format 1 held it (before deletes): read into today's shape.
#[derive(Deserialize)]
#[serde(rename = "PnCounter")]
pub struct PnCounterV1 {
    entries: BTreeMap<Actor, Totals>,
}

impl From<PnCounterV1> for PnCounter {
    fn from(old: PnCounterV1) -> PnCounter {
        PnCounter {
            entries: old.entries,
            removed: BTreeMap::new(),
        }
    }
}

/// A delta would overflow a node's running total (2^64 - 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterOverflow;

impl PnCounter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `delta` (negative to decrement) on behalf of `actor`, the coordinating node.
    pub fn apply(&mut self, actor: &Actor, delta: i64) -> Result<(), CounterOverflow> {
        let totals = self.entries.entry(actor.clone()).or_default();
        let slot = if delta >= 0 {
            &mut totals.increments
        } else {
            &mut totals.decrements
        };
        *slot = slot
            .checked_add(delta.unsigned_abs())
            .ok_or(CounterOverflow)?;
        Ok(())
    }

    /// The counter's value. `i128`: the sum of per-node `u64` totals cannot overflow it.
    pub fn value(&self) -> i128 {
        let net = |t: &Totals| t.increments as i128 - t.decrements as i128;
        let counted: i128 = self.entries.values().map(net).sum();
        let removed: i128 = self.removed.values().map(net).sum();
        counted - removed
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Deletes the counter as this replica sees it: its value becomes 0, and increments no
    /// delete saw (concurrent ones) count again after merges. Returns whether anything was
    /// taken away (a counter never incremented, or already reset, has nothing to delete).
    pub fn reset(&mut self) -> bool {
        let mut changed = false;
        for (actor, totals) in &self.entries {
            let slot = self.removed.entry(actor.clone()).or_default();
            if slot != totals {
                changed = true;
                *slot = *totals;
            }
        }
        changed
    }

    /// Whether some increment or decrement counts: deleted and never-written counters have
    /// none (a counter whose increments and decrements cancel still has them).
    pub fn has_counts(&self) -> bool {
        self.entries
            .iter()
            .any(|(actor, t)| self.removed.get(actor) != Some(t))
    }

    /// Per node, its net contribution: what the key inspector shows.
    pub fn contributions(&self) -> impl Iterator<Item = (&Actor, i128)> {
        self.entries
            .iter()
            .map(|(a, t)| (a, t.increments as i128 - t.decrements as i128))
    }
}

impl Crdt for PnCounter {
    fn merge(&mut self, other: &Self) -> bool {
        let mut changed = false;
        for (actor, theirs) in &other.entries {
            let ours = self.entries.entry(actor.clone()).or_default();
            let merged = Totals {
                increments: ours.increments.max(theirs.increments),
                decrements: ours.decrements.max(theirs.decrements),
            };
            changed |= merged != *ours;
            *ours = merged;
        }
        for (actor, theirs) in &other.removed {
            let ours = self.removed.entry(actor.clone()).or_default();
            let merged = Totals {
                increments: ours.increments.max(theirs.increments),
                decrements: ours.decrements.max(theirs.decrements),
            };
            changed |= merged != *ours;
            *ours = merged;
        }
        changed
    }
}

impl std::fmt::Debug for PnCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(
                self.entries
                    .iter()
                    .map(|(a, t)| (a.to_string(), (t.increments, t.decrements))),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Add { at: usize, delta: i64 },
        Merge { from: usize, to: usize },
        Reset { at: usize },
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..3usize, -1000i64..1000).prop_map(|(at, delta)| Op::Add { at, delta }),
            4 => (0..3usize, 0..3usize).prop_map(|(from, to)| Op::Merge { from, to }),
            1 => (0..3usize).prop_map(|at| Op::Reset { at }),
        ]
    }

    fn actor(i: usize) -> Actor {
        Actor::new(format!("n{i}"), 0)
    }

    /// Plays a history; returns every state reached, the final replicas and the sum of deltas.
    fn play(ops: &[Op]) -> (Vec<PnCounter>, Vec<PnCounter>, i128) {
        let mut replicas = vec![PnCounter::new(); 3];
        let (mut seen, mut sum) = (Vec::new(), 0i128);
        for op in ops {
            match *op {
                Op::Add { at, delta } => {
                    replicas[at].apply(&actor(at), delta).unwrap();
                    sum += delta as i128;
                    seen.push(replicas[at].clone());
                }
                Op::Merge { from, to } => {
                    let other = replicas[from].clone();
                    replicas[to].merge(&other);
                    seen.push(replicas[to].clone());
                }
                Op::Reset { at } => {
                    replicas[at].reset();
                    seen.push(replicas[at].clone());
                }
            }
        }
        (seen, replicas, sum)
    }

    fn merged(a: &PnCounter, b: &PnCounter) -> PnCounter {
        let mut m = a.clone();
        m.merge(b);
        m
    }

    #[test]
    fn a_reset_takes_away_what_it_saw_and_an_unseen_increment_survives() {
        let (mut a, mut b) = (PnCounter::new(), PnCounter::new());
        a.apply(&actor(0), 5).unwrap();
        b.merge(&a);
        // b deletes what it saw (5) while a, not knowing, adds 2.
        assert!(b.reset());
        assert_eq!(b.value(), 0);
        assert!(!b.has_counts());
        a.apply(&actor(0), 2).unwrap();
        let mut c = b.clone();
        c.merge(&a);
        assert_eq!(c.value(), 2, "the increment the delete never saw survives");
        // A second, concurrent delete of the same 5 does not take it away twice.
        let mut twice = b.clone();
        twice.reset();
        c.merge(&twice);
        assert_eq!(c.value(), 2);
        // Counting on from a reset starts from 0.
        b.apply(&actor(1), 1).unwrap();
        assert_eq!(b.value(), 1);
    }

    #[test]
    fn overflow_is_refused_not_wrapped() {
        let mut c = PnCounter::new();
        c.apply(&actor(0), i64::MAX).unwrap();
        c.apply(&actor(0), i64::MAX).unwrap();
        assert_eq!(c.apply(&actor(0), i64::MAX), Err(CounterOverflow));
        assert_eq!(c.value(), 2 * i64::MAX as i128);
    }

    proptest! {
        #[test]
        fn merge_is_commutative_associative_idempotent(ops in proptest::collection::vec(arb_op(), 1..40),
                                                        picks in proptest::collection::vec(any::<proptest::sample::Index>(), 3)) {
            let (seen, _, _) = play(&ops);
            let (a, b, c) = (picks[0].get(&seen), picks[1].get(&seen), picks[2].get(&seen));
            prop_assert_eq!(merged(a, b), merged(b, a));
            prop_assert_eq!(merged(&merged(a, b), c), merged(a, &merged(b, c)));
            prop_assert_eq!(&merged(a, a), a);
        }

        #[test]
        fn after_full_exchange_every_replica_holds_the_sum_of_all_deltas(ops in proptest::collection::vec(arb_op(), 0..60)) {
            let ops: Vec<Op> = ops.into_iter().filter(|op| !matches!(op, Op::Reset { .. })).collect();
            let (_, mut replicas, sum) = play(&ops);
            for to in 0..3 {
                for from in 0..3 {
                    let other = replicas[from].clone();
                    replicas[to].merge(&other);
                }
            }
            for from in 0..3 {
                let other = replicas[from].clone();
                replicas[0].merge(&other);
            }
            for r in &replicas {
                let mut r = r.clone();
                r.merge(&replicas[0]);
                prop_assert_eq!(r.value(), sum);
            }
        }
    }
}
