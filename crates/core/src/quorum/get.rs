//! The get core: a read coordination's quorum decision and its read repair.
//!
//! The coordinator adds each target's copy (or "not found") as it comes. Rules:
//! - "Not found" does not count towards R while other targets may still answer with the key
//!   (Riak's `notfound_ok = false`): a replica that just took over a partition, or came back
//!   empty, must not hide data the others hold. Once every target answered, or at the deadline
//!   with R answers, not found is the answer.
//! - A session read also waits until the merge covers what the session has seen; if every
//!   target answered (or the deadline passed) and none covers it, the session is told it is
//!   ahead of the replicas.
//! - After the last answer (or the deadline), every target whose copy differs from the merge
//!   is stale: read repair sends it the merge.

use driftkv_causal::{ConflictMode, VersionVector};
use driftkv_ring::NodeId;
use driftkv_wire::Object;

use super::merge::Join;

/// A read coordination's state: the answers so far and their running merge.
#[derive(Debug)]
pub struct GetCore {
    mode: ConflictMode,
    needed: usize,
    targets: Vec<NodeId>,
    /// What the session has seen, for a session read: the answer must cover it.
    seen: Option<VersionVector>,
    replies: Vec<(NodeId, Option<Object>)>,
    /// The join of the replies so far, in arrival order (as `merge_all` of them all).
    join: Join,
    answered: bool,
}

/// What the coordinator answers.
#[derive(Debug, PartialEq)]
pub enum GetAnswer<'a> {
    /// The merge of the answers (`None`: not found anywhere that answered).
    Merged(Option<&'a Object>),
    /// R targets answered, and none holds everything the session has seen.
    SessionBehind { answered: usize, needed: usize },
    /// The deadline passed before R targets answered.
    TooFew {
        answered: usize,
        targets: usize,
        needed: usize,
    },
}

/// What is left to do once the read is over.
#[derive(Debug, Default, PartialEq)]
pub struct GetFinal {
    /// The merge of every answer (`None`: no target held the key).
    pub merged: Option<Object>,
    /// Targets whose copy differs from the merge, in the order they answered.
    pub stale: Vec<NodeId>,
    /// Pairwise merges that met concurrent writes, and values last-write-wins discarded.
    pub conflicts: u64,
    pub lww_discarded: u64,
}

impl GetCore {
    pub fn new(
        mode: ConflictMode,
        needed: usize,
        targets: Vec<NodeId>,
        seen: Option<VersionVector>,
    ) -> GetCore {
        GetCore {
            mode,
            needed,
            replies: Vec::with_capacity(targets.len()),
            targets,
            seen,
            join: Join::default(),
            answered: false,
        }
    }

    /// Takes a target's answer; false (and ignored) if `node` is not a target or answered
    /// already (a duplicate or a stray reply).
    pub fn add_result(&mut self, node: NodeId, object: Option<Object>) -> bool {
        if !self.targets.contains(&node) || self.replies.iter().any(|(n, _)| *n == node) {
            return false;
        }
        if let Some(o) = &object {
            self.join.add(self.mode, o);
        }
        self.replies.push((node, object));
        true
    }

    /// Whether every target answered.
    pub fn all_answered(&self) -> bool {
        self.replies.len() == self.targets.len()
    }

    /// Whether the answers so far (with the deadline passed, if `expired`) make a quorum.
    pub fn enough(&self, expired: bool) -> bool {
        let found = self.replies.iter().filter(|(_, o)| o.is_some()).count();
        let answered = self.replies.len();
        found >= self.needed || (answered >= self.needed && (self.all_answered() || expired))
    }

    /// Whether the merge so far holds everything the session (if any) has seen.
    fn covers_session(&self) -> bool {
        let Some(seen) = &self.seen else {
            return true;
        };
        match &self.join.merged {
            Some(Object::Register(reg)) => reg.context().descends(seen),
            Some(_) => true, // a wrong type: answered as such
            None => seen.is_empty(),
        }
    }

    /// The answer, once it is decided and only the first time.
    pub fn response(&mut self, expired: bool) -> Option<GetAnswer<'_>> {
        if self.answered {
            return None;
        }
        let (quorum, last) = (self.enough(expired), self.all_answered() || expired);
        let answered = self.replies.len();
        let answer = if quorum && self.covers_session() {
            GetAnswer::Merged(None)
        } else if quorum && last {
            GetAnswer::SessionBehind {
                answered,
                needed: self.needed,
            }
        } else if expired {
            GetAnswer::TooFew {
                answered,
                targets: self.targets.len(),
                needed: self.needed,
            }
        } else {
            return None;
        };
        self.answered = true;
        Some(match answer {
            GetAnswer::Merged(_) => GetAnswer::Merged(self.join.merged.as_ref()),
            other => other,
        })
    }

    /// Whether the read is over: every target answered, or the deadline passed.
    pub fn done(&self, expired: bool) -> bool {
        expired || self.all_answered()
    }

    /// The merge, the stale targets to repair and what the merges met.
    pub fn final_action(self) -> GetFinal {
        let merged = self.join.merged;
        let stale = match &merged {
            Some(m) => self
                .replies
                .into_iter()
                .filter(|(_, o)| o.as_ref() != Some(m))
                .map(|(n, _)| n)
                .collect(),
            None => Vec::new(),
        };
        GetFinal {
            merged,
            stale,
            conflicts: self.join.conflicts,
            lww_discarded: self.join.lww_discarded,
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use driftkv_causal::{Actor, Hlc, Register};

    use super::*;

    fn node(i: usize) -> NodeId {
        NodeId::from(format!("n{i}"))
    }

    fn targets(n: usize) -> Vec<NodeId> {
        (1..=n).map(node).collect()
    }

    /// A register written once by `writer` (`count` writes, each covering the last).
    fn written(writer: &str, count: u64) -> Object {
        let actor = Actor::new(writer, 0);
        let mut reg = Register::default();
        let mut hlc = Hlc::default();
        for i in 0..count {
            let context = reg.context().clone();
            reg.write(
                ConflictMode::Siblings,
                &actor,
                &context,
                Some(Bytes::from(format!("v{i}"))),
                hlc.now(i + 1),
            )
            .unwrap();
        }
        Object::Register(reg)
    }

    fn core(needed: usize, n: usize) -> GetCore {
        GetCore::new(ConflictMode::Siblings, needed, targets(n), None)
    }

    #[test]
    fn not_found_does_not_count_while_others_may_hold_the_key() {
        let mut c = core(1, 3);
        assert!(c.add_result(node(1), None));
        assert_eq!(
            c.response(false),
            None,
            "one not-found of three is not R = 1"
        );
        assert!(c.add_result(node(2), Some(written("a", 1))));
        assert!(matches!(
            c.response(false),
            Some(GetAnswer::Merged(Some(_)))
        ));
    }

    #[test]
    fn not_found_everywhere_is_the_answer_once_all_answered_or_at_the_deadline() {
        let mut c = core(2, 3);
        c.add_result(node(1), None);
        c.add_result(node(2), None);
        assert_eq!(c.response(false), None);
        assert_eq!(c.response(true), Some(GetAnswer::Merged(None)));
        let mut c = core(2, 2);
        c.add_result(node(1), None);
        c.add_result(node(2), None);
        assert_eq!(c.response(false), Some(GetAnswer::Merged(None)));
    }

    #[test]
    fn too_few_answers_at_the_deadline() {
        let mut c = core(2, 3);
        c.add_result(node(1), Some(written("a", 1)));
        assert_eq!(
            c.response(true),
            Some(GetAnswer::TooFew {
                answered: 1,
                targets: 3,
                needed: 2
            })
        );
        assert_eq!(c.response(true), None, "answered once");
    }

    #[test]
    fn strangers_and_duplicates_are_ignored() {
        let mut c = core(1, 2);
        assert!(!c.add_result(node(9), Some(written("a", 1))));
        assert!(c.add_result(node(1), None));
        assert!(!c.add_result(node(1), Some(written("a", 1))));
        assert!(!c.all_answered());
    }

    #[test]
    fn a_session_waits_for_a_copy_that_covers_what_it_has_seen() {
        let newer = written("a", 2);
        let Object::Register(reg) = &newer else {
            unreachable!()
        };
        let seen = reg.context().clone();
        let mut c = GetCore::new(ConflictMode::Siblings, 1, targets(3), Some(seen));
        c.add_result(node(1), Some(written("a", 1)));
        assert_eq!(
            c.response(false),
            None,
            "the only copy is behind the session"
        );
        c.add_result(node(2), Some(newer.clone()));
        assert_eq!(c.response(false), Some(GetAnswer::Merged(Some(&newer))));
    }

    #[test]
    fn a_session_ahead_of_every_replica_is_told_so() {
        let Object::Register(reg) = written("a", 3) else {
            unreachable!()
        };
        let seen = reg.context().clone();
        let mut c = GetCore::new(ConflictMode::Siblings, 1, targets(2), Some(seen));
        c.add_result(node(1), Some(written("a", 1)));
        c.add_result(node(2), None);
        assert_eq!(
            c.response(false),
            Some(GetAnswer::SessionBehind {
                answered: 2,
                needed: 1
            })
        );
    }

    #[test]
    fn the_final_action_repairs_every_copy_that_differs_from_the_merge() {
        let (old, new) = (written("a", 1), written("a", 2));
        let mut c = core(1, 3);
        c.add_result(node(1), Some(new.clone()));
        c.add_result(node(2), Some(old));
        c.add_result(node(3), None);
        assert!(c.done(false));
        let last = c.final_action();
        assert_eq!(last.merged, Some(new));
        assert_eq!(last.stale, vec![node(2), node(3)]);
        assert_eq!(last.conflicts, 0);
    }

    proptest::proptest! {
        /// Whatever the answers and their order: exactly one answer once every target
        /// answered; a merged answer only with R answers of which R found the key, or with
        /// every target (or the deadline) heard;
        /// the final merge is the join of every copy; the stale are exactly those differing.
        #[test]
        fn decides_as_the_rules_say(
            n in 1usize..5,
            needed_seed in 0usize..5,
            copies in proptest::collection::vec(0u64..3, 5),
            expire_at in 0usize..6,
        ) {
            let needed = 1 + needed_seed % n;
            let mut c = core(needed, n);
            let objects: Vec<Option<Object>> = copies
                .iter()
                .take(n)
                .map(|&k| (k > 0).then(|| written("a", k)))
                .collect();
            let mut answers = 0;
            for (i, object) in objects.iter().enumerate() {
                let expired = i >= expire_at;
                c.add_result(node(i + 1), object.clone());
                let found = objects[..=i].iter().filter(|o| o.is_some()).count();
                match c.response(expired) {
                    Some(GetAnswer::Merged(_)) => {
                        answers += 1;
                        proptest::prop_assert!(
                            found >= needed || (i + 1 >= needed && (i + 1 == n || expired))
                        );
                    }
                    Some(other) => {
                        answers += 1;
                        proptest::prop_assert!(expired, "{other:?} before the deadline");
                    }
                    None => {}
                }
            }
            // Every target answered and no session waits for more: exactly one answer came.
            proptest::prop_assert_eq!(answers, 1);
            proptest::prop_assert!(c.done(false));
            let (joined, _, _) = super::super::merge_all(
                ConflictMode::Siblings,
                objects.iter().flatten(),
            );
            let last = c.final_action();
            let stale: Vec<NodeId> = match &joined {
                Some(j) => objects
                    .iter()
                    .enumerate()
                    .filter(|(_, o)| o.as_ref() != Some(j))
                    .map(|(i, _)| node(i + 1))
                    .collect(),
                None => Vec::new(),
            };
            proptest::prop_assert_eq!(last.merged, joined);
            proptest::prop_assert_eq!(last.stale, stale);
        }
    }
}
