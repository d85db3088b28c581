//! Joining replica copies: what a read answers and read repair sends.

use driftkv_causal::ConflictMode;
use driftkv_wire::Object;

/// A join of replica copies built one copy at a time, with what its merges met.
#[derive(Debug, Default)]
pub struct Join {
    pub merged: Option<Object>,
    /// Pairwise merges that met concurrent writes.
    pub conflicts: u64,
    /// Values `lww` discarded on the way.
    pub lww_discarded: u64,
}

impl Join {
    pub fn add(&mut self, mode: ConflictMode, object: &Object) {
        match &mut self.merged {
            None => self.merged = Some(object.clone()),
            Some(m) => {
                let outcome = m.merge(mode, object);
                self.conflicts += outcome.concurrent as u64;
                self.lww_discarded += outcome.lww_discarded as u64;
            }
        }
    }
}

/// The join of every replica's copy: what a read answers and read repair sends.
/// Also returns how many pairwise merges met concurrent writes, and how many values `lww`
/// discarded on the way.
pub fn merge_all<'a>(
    mode: ConflictMode,
    objects: impl Iterator<Item = &'a Object>,
) -> (Option<Object>, u64, u64) {
    let mut join = Join::default();
    for object in objects {
        join.add(mode, object);
    }
    (join.merged, join.conflicts, join.lww_discarded)
}
