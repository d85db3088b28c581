//! Version vectors: for each actor, the number of its events seen (all of 1..=n).

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::actor::{Actor, Dot};
use crate::sorted::SortedMap;

/// The most events one actor may issue for one key: 2^48, a write every microsecond for
/// eight years. Far below `u64::MAX`, so a counter at it can never be pushed to overflow, and
/// a context that claims more is refused as forged.
pub const COUNTER_MAX: u64 = 1 << 48;

/// For each actor, the highest counter `n` such that all of its dots `1..=n` have been seen.
///
/// Invariant: no entry is 0 (an absent actor means 0), so equal histories give equal vectors
/// and equal encodings.
#[derive(Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VersionVector {
    entries: SortedMap<Actor, u64>,
}

impl VersionVector {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, actor: &Actor) -> u64 {
        self.entries.get(actor).copied().unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&Actor, &u64)> + ExactSizeIterator {
        self.entries.iter()
    }

    /// Whether the event `dot` is part of this history.
    pub fn contains(&self, dot: &Dot) -> bool {
        dot.counter <= self.get(&dot.actor)
    }

    /// Records that every event of `actor` up to `counter` has been seen. Returns whether that
    /// was news.
    pub fn observe(&mut self, actor: &Actor, counter: u64) -> bool {
        if counter == 0 {
            return false;
        }
        match self.entries.get_mut(actor) {
            Some(n) if *n >= counter => false,
            Some(n) => {
                *n = counter;
                true
            }
            None => {
                self.entries.insert(actor.clone(), counter);
                true
            }
        }
    }

    pub fn observe_dot(&mut self, dot: &Dot) {
        let _ = self.observe(&dot.actor, dot.counter);
    }

    /// The next event of `actor`: one past everything seen of it. Records it as seen.
    /// `None` (and nothing recorded) when the actor's counter is at [`COUNTER_MAX`]: a state
    /// that claims that many events of one actor for one key came from a forged context or a
    /// corrupt peer, and issuing past it would wrap or repeat a dot.
    pub fn next_dot(&mut self, actor: &Actor) -> Option<Dot> {
        let counter = self
            .get(actor)
            .checked_add(1)
            .filter(|c| *c <= COUNTER_MAX)?;
        let _ = self.observe(actor, counter);
        Some(Dot::new(actor.clone(), counter))
    }

    /// Holds the type's invariant (no entry is 0), which decoding does not: a state from a
    /// peer or a record is checked with this before it is merged.
    pub fn check(&self) -> Result<(), String> {
        match self.entries.iter().find(|(_, n)| **n == 0) {
            Some((actor, _)) => Err(format!("version vector entry {actor} is 0")),
            None => Ok(()),
        }
    }

    /// Whether some entry claims more than [`COUNTER_MAX`] events.
    pub fn exceeds_counter_max(&self) -> bool {
        self.entries.values().any(|n| *n > COUNTER_MAX)
    }

    /// Keeps only the entries `keep` accepts, and lowers each kept one to at most what `cap`
    /// returns for its actor. Used to bound a client's context by what a replica knows.
    /// Returns whether anything changed; a vector that needs no change is left as it is, with
    /// nothing allocated (the common case of an honest client).
    pub fn restrict(
        &mut self,
        mut keep: impl FnMut(&Actor, u64) -> bool,
        mut cap: impl FnMut(&Actor) -> u64,
    ) -> bool {
        // Each closure is called once per entry (`keep` may count what it lets in).
        let mut verdict = |actor: &Actor, n: u64| keep(actor, n).then(|| n.min(cap(actor)));
        let mut kept_before = 0;
        let first_change = {
            let mut entries = self.entries.iter();
            loop {
                match entries.next() {
                    None => return false,
                    Some((actor, &n)) => match verdict(actor, n) {
                        Some(v) if v == n => kept_before += 1,
                        other => break other,
                    },
                }
            }
        };
        let mut kept = SortedMap::new();
        {
            let mut all = self.entries.iter();
            for (actor, &n) in all.by_ref().take(kept_before) {
                kept.insert(actor.clone(), n);
            }
            if let Some((actor, _)) = all.next()
                && let Some(v) = first_change.filter(|v| *v > 0)
            {
                kept.insert(actor.clone(), v);
            }
            for (actor, &n) in all {
                if let Some(v) = verdict(actor, n).filter(|v| *v > 0) {
                    kept.insert(actor.clone(), v);
                }
            }
        }
        self.entries = kept;
        true
    }

    /// Pointwise maximum: the union of two histories. Returns whether this one grew.
    pub fn merge(&mut self, other: &VersionVector) -> bool {
        let mut grew = false;
        for (actor, &n) in other.entries.iter() {
            grew |= self.observe(actor, n);
        }
        grew
    }

    pub fn merged(mut self, other: &VersionVector) -> VersionVector {
        let _ = self.merge(other);
        self
    }

    /// Whether every event in `other` is also in `self`.
    pub fn descends(&self, other: &VersionVector) -> bool {
        other.entries.iter().all(|(actor, &n)| self.get(actor) >= n)
    }

    /// Causal order: `Less` if `self` happened before `other`, `None` if concurrent.
    pub fn causal_cmp(&self, other: &VersionVector) -> Option<Ordering> {
        match (self.descends(other), other.descends(self)) {
            (true, true) => Some(Ordering::Equal),
            (true, false) => Some(Ordering::Greater),
            (false, true) => Some(Ordering::Less),
            (false, false) => None,
        }
    }

    pub fn concurrent(&self, other: &VersionVector) -> bool {
        self.causal_cmp(other).is_none()
    }
}

impl std::fmt::Debug for VersionVector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(a, n)| (a.to_string(), n)))
            .finish()
    }
}

impl FromIterator<(Actor, u64)> for VersionVector {
    fn from_iter<I: IntoIterator<Item = (Actor, u64)>>(iter: I) -> Self {
        let mut vv = VersionVector::new();
        for (actor, n) in iter {
            vv.observe(&actor, n);
        }
        vv
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn arb_vv() -> impl Strategy<Value = VersionVector> {
        proptest::collection::vec((0u8..4, 0u64..6), 0..5).prop_map(|pairs| {
            pairs
                .into_iter()
                .map(|(a, n)| (Actor::new(format!("n{a}"), 0), n))
                .collect()
        })
    }

    #[test]
    fn next_dot_counts_from_one_and_is_recorded() {
        let mut vv = VersionVector::new();
        let a = Actor::from("n1");
        assert_eq!(vv.next_dot(&a).unwrap().counter, 1);
        assert_eq!(vv.next_dot(&a).unwrap().counter, 2);
        assert!(vv.contains(&Dot::new(a.clone(), 2)));
        assert!(!vv.contains(&Dot::new(a, 3)));
    }

    #[test]
    fn a_counter_at_the_maximum_issues_nothing_and_never_panics() {
        let a = Actor::from("n1");
        for start in [COUNTER_MAX, COUNTER_MAX + 1, u64::MAX - 1, u64::MAX] {
            let mut vv: VersionVector = [(a.clone(), start)].into_iter().collect();
            assert_eq!(vv.next_dot(&a), None, "from {start}");
            assert_eq!(vv.get(&a), start, "nothing recorded");
            assert!(vv.exceeds_counter_max() == (start > COUNTER_MAX));
        }
        let mut vv: VersionVector = [(a.clone(), COUNTER_MAX - 1)].into_iter().collect();
        assert_eq!(vv.next_dot(&a).unwrap().counter, COUNTER_MAX);
    }

    #[test]
    fn restrict_keeps_and_caps_entries() {
        let (a, b, c) = (Actor::from("a"), Actor::from("b"), Actor::from("c"));
        let mut vv: VersionVector = [(a.clone(), 5), (b.clone(), 9), (c.clone(), 2)]
            .into_iter()
            .collect();
        vv.restrict(
            |actor, _| *actor != c,
            |actor| if *actor == a { 3 } else { u64::MAX },
        );
        let want: VersionVector = [(a, 3), (b, 9)].into_iter().collect();
        assert_eq!(vv, want);
    }

    #[test]
    fn zero_entries_are_never_stored() {
        let vv: VersionVector = [(Actor::from("n1"), 0)].into_iter().collect();
        assert_eq!(vv, VersionVector::new());
    }

    proptest! {
        #[test]
        fn merge_is_a_join(a in arb_vv(), b in arb_vv(), c in arb_vv()) {
            prop_assert_eq!(a.clone().merged(&b), b.clone().merged(&a));
            prop_assert_eq!(a.clone().merged(&b).merged(&c), a.clone().merged(&b.clone().merged(&c)));
            prop_assert_eq!(a.clone().merged(&a), a.clone());
            let m = a.clone().merged(&b);
            prop_assert!(m.descends(&a) && m.descends(&b));
        }

        #[test]
        fn restrict_is_a_filter_and_a_cap_and_says_whether_it_changed(
            v in arb_vv(),
            dropped in proptest::collection::vec(0u8..4, 0..3),
            caps in proptest::collection::vec(0u64..7, 4),
        ) {
            let name = |a: &Actor| a.node.as_bytes()[1] - b'0';
            let mut got = v.clone();
            let mut calls = 0;
            let changed = got.restrict(
                |a, _| { calls += 1; !dropped.contains(&name(a)) },
                |a| caps[name(a) as usize],
            );
            let want: VersionVector = v
                .iter()
                .filter(|(a, _)| !dropped.contains(&name(a)))
                .map(|(a, n)| (a.clone(), (*n).min(caps[name(a) as usize])))
                .collect();
            prop_assert_eq!(&got, &want);
            prop_assert_eq!(changed, got != v);
            prop_assert_eq!(calls, v.len(), "keep is asked once per entry");
        }

        #[test]
        fn causal_order_is_antisymmetric(a in arb_vv(), b in arb_vv()) {
            let ab = a.causal_cmp(&b);
            let ba = b.causal_cmp(&a);
            prop_assert_eq!(ab.map(Ordering::reverse), ba);
            prop_assert_eq!(ab == Some(Ordering::Equal), a == b);
        }
    }
}
