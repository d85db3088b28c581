//! Convergent replicated data types (state-based CRDTs) for driftkv keys.
//!
//! Every type here implements [`Crdt`], whose `merge` must obey the laws of a join
//! semilattice; the property tests in each module prove them on states reached by random
//! histories of operations, not on hand-picked examples:
//! - commutative: `a ⊔ b = b ⊔ a`
//! - associative: `(a ⊔ b) ⊔ c = a ⊔ (b ⊔ c)`
//! - idempotent: `a ⊔ a = a`
//!
//! Together they make replicas that receive the same states in any order, any number of times,
//! end equal: the convergence anti-entropy and read repair rely on.
//!
//! Operations are coordinated by a server node (an [`Actor`]) on top of its own stored state,
//! as with registers, so per-node entries stay few and dots stay unique.

#![forbid(unsafe_code)]

pub mod counter;
pub mod map;
pub mod set;

pub use counter::PnCounter;
pub use map::{FieldValue, OrMap};
pub use set::AwSet;

pub use driftkv_causal::{Actor, Dot, VersionVector};

/// A state-based CRDT. `merge` is a join: commutative, associative and idempotent.
pub trait Crdt: Clone + PartialEq {
    /// Joins `other` into `self`; returns whether `self` changed.
    fn merge(&mut self, other: &Self) -> bool;
}
