//! `sets_follow_add_wins` for set keys: a member is present if some landed add of it was seen
//! by no remove of it, and absent if every landed add of it was seen by an acknowledged remove
//! of it; and no member is present that no client added. A delete of the set removes each
//! member it saw, as a remove of it would. Also `acknowledged_writes_survive` for set adds:
//! each acknowledged add is in the final context.

use std::collections::BTreeSet;

use bytes::Bytes;
use driftkv_causal::{Dot, VersionVector};
use driftkv_wire::{Key, Object};

use super::{Collector, by_key, dots_of, text};
use crate::history::{History, KeyKind, Outcome, SetOpRec};
use crate::world::Outcomes;

/// One set key as the checks see it: its final members and context, and its operations.
struct SetKey<'a> {
    h: &'a History,
    key: &'a Key,
    members: BTreeSet<Bytes>,
    context: VersionVector,
    /// The key's operations, as indices into `h.set_ops`, in the order they were issued.
    ops: &'a [usize],
}

pub(super) fn check_sets(h: &History, o: &Outcomes, c: &mut Collector) {
    let by_key = by_key(&h.set_ops, |op| op.key);
    for (slot, ops) in &by_key {
        let key = &h.keys[*slot].key;
        debug_assert_eq!(h.keys[*slot].kind, KeyKind::Set);
        let (members, context) = match &o.final_objects[*slot] {
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
        let k = SetKey {
            h,
            key,
            members,
            context,
            ops,
        };
        let universe = k.check_acked_adds(c);
        for member in &universe {
            k.judge_member(member, c);
        }
        for member in k.members.difference(&universe) {
            c.fail(
                "sets_follow_add_wins",
                format!("{key:?} holds {:?}, which no client added", text(member)),
            );
        }
    }
}

impl SetKey<'_> {
    fn op(&self, s: usize) -> &SetOpRec {
        &self.h.set_ops[s]
    }

    /// Every acknowledged add is in the final context. Returns every member some operation
    /// of the key named.
    fn check_acked_adds(&self, c: &mut Collector) -> BTreeSet<Bytes> {
        let mut universe: BTreeSet<Bytes> = BTreeSet::new();
        for &s in self.ops {
            let op = self.op(s);
            if op.clear {
                continue;
            }
            universe.insert(op.member.clone());
            if op.add && op.outcome == Outcome::Acked {
                let dots = dots_of(&op.coordinations);
                if !dots.iter().any(|d| self.context.contains(d)) {
                    c.fail(
                        "acknowledged_writes_survive",
                        format!(
                            "the acknowledged add of {:?} to {:?} is gone: no replica has seen it",
                            text(&op.member),
                            self.key
                        ),
                    );
                }
            }
        }
        universe
    }

    /// Add-wins for one member: present if some landed add of it was seen by no remove,
    /// absent if an acknowledged remove saw every landed add.
    fn judge_member(&self, member: &Bytes, c: &mut Collector) {
        let adds: Vec<&Dot> = self
            .ops
            .iter()
            .map(|&s| self.op(s))
            .filter(|op| op.add && op.member == *member)
            .flat_map(|op| dots_of(&op.coordinations))
            .filter(|d| self.context.contains(d))
            .collect();
        let removes: Vec<&SetOpRec> = self
            .ops
            .iter()
            .map(|&s| self.op(s))
            .filter(|op| op.removes(member) && !op.coordinations.is_empty())
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
        let present = self.members.contains(member);
        let key = self.key;
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
}
