//! The put core: a write coordination's quorum decision.
//!
//! The coordinator stores the write itself first (its own acknowledgement) and asks the other
//! targets; each answers with an acknowledgement or a refusal, or never (counted as a refusal
//! at the deadline). The write is answered once: written when W targets acknowledged it,
//! unavailable as soon as W can no longer be reached.

/// A write coordination's tally.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutCore {
    needed: usize,
    targets: usize,
    acks: usize,
    nacks: usize,
    answered: bool,
}

/// What the coordinator answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutAnswer {
    /// W targets hold the write.
    Written,
    /// W can no longer be reached.
    Unavailable {
        acks: usize,
        targets: usize,
        needed: usize,
    },
}

impl PutCore {
    /// A write to `targets` replicas (the coordinator among them, already holding it) that
    /// needs `needed` acknowledgements.
    pub fn new(needed: usize, targets: usize) -> PutCore {
        PutCore {
            needed,
            targets,
            acks: 1,
            nacks: 0,
            answered: false,
        }
    }

    /// A write to `targets` replicas by a coordinator that is not among them (a direct write
    /// coordinated elsewhere): every acknowledgement comes from a target.
    pub fn remote(needed: usize, targets: usize) -> PutCore {
        PutCore {
            acks: 0,
            ..PutCore::new(needed, targets)
        }
    }

    /// A target's result: it stored the write (`ok`) or refused or missed it.
    pub fn add_result(&mut self, ok: bool) {
        if ok {
            self.acks += 1;
        } else {
            self.nacks += 1;
        }
    }

    /// Whether the outcome is decided: W reached, or out of reach.
    pub fn enough(&self) -> bool {
        self.acks >= self.needed || self.targets.saturating_sub(self.nacks) < self.needed
    }

    /// The answer, once it is decided and only the first time.
    pub fn response(&mut self) -> Option<PutAnswer> {
        if self.answered || !self.enough() {
            return None;
        }
        self.answered = true;
        Some(if self.acks >= self.needed {
            PutAnswer::Written
        } else {
            PutAnswer::Unavailable {
                acks: self.acks,
                targets: self.targets,
                needed: self.needed,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn w_one_is_written_by_the_coordinator_alone() {
        let mut core = PutCore::new(1, 3);
        assert_eq!(core.response(), Some(PutAnswer::Written));
        assert_eq!(core.response(), None, "answered once");
    }

    #[test]
    fn a_quorum_waits_for_enough_acknowledgements() {
        let mut core = PutCore::new(2, 3);
        assert!(!core.enough());
        assert_eq!(core.response(), None);
        core.add_result(true);
        assert_eq!(core.response(), Some(PutAnswer::Written));
    }

    #[test]
    fn refusals_that_put_w_out_of_reach_answer_unavailable_at_once() {
        let mut core = PutCore::new(3, 3);
        core.add_result(true);
        assert_eq!(core.response(), None);
        core.add_result(false);
        assert_eq!(
            core.response(),
            Some(PutAnswer::Unavailable {
                acks: 2,
                targets: 3,
                needed: 3
            })
        );
    }

    proptest::proptest! {
        /// Whatever the order of results: the answer comes exactly once, it is "written"
        /// exactly when W acknowledgements arrived before W went out of reach, and nothing is
        /// decided while both are still possible.
        #[test]
        fn answers_once_and_as_the_tally_says(
            targets in 1usize..6,
            needed_seed in 0usize..6,
            results in proptest::collection::vec(proptest::bool::ANY, 0..6),
        ) {
            let needed = 1 + needed_seed % targets;
            let mut core = PutCore::new(needed, targets);
            let (mut acks, mut nacks) = (1, 0);
            // Each answer with the tally at the moment it was given.
            let mut answers = Vec::new();
            answers.extend(core.response().map(|a| (a, acks, nacks)));
            for ok in results.into_iter().take(targets - 1) {
                core.add_result(ok);
                if ok { acks += 1 } else { nacks += 1 }
                let decided = acks >= needed || targets - nacks < needed;
                proptest::prop_assert_eq!(core.enough(), decided);
                answers.extend(core.response().map(|a| (a, acks, nacks)));
            }
            proptest::prop_assert!(answers.len() <= 1);
            match answers.first() {
                Some((PutAnswer::Written, acks, _)) => proptest::prop_assert!(*acks >= needed),
                Some((PutAnswer::Unavailable { .. }, acks, nacks)) => {
                    proptest::prop_assert!(*acks < needed && targets - nacks < needed)
                }
                None => proptest::prop_assert!(acks < needed && targets - nacks >= needed),
            }
        }
    }
}
