//! Causality for driftkv: who wrote what, what each write had seen, and which values survive.
//!
//! This crate is pure: no I/O, no clock, no randomness. Time enters as numbers passed in by the
//! caller (see [`hlc`]), so the same code runs in the tokio node and in the simulator.
//!
//! The pieces, bottom up:
//! - [`Actor`] and [`Dot`]: a server node's identity (name + incarnation) and one event of it.
//! - [`VersionVector`]: for each actor, how many of its events have been seen.
//! - [`Dvv`]: the siblings of one key, each tagged with the dot that created it, plus the
//!   version vector of every event this replica has seen for the key (a dotted version vector
//!   set in the sense of Almeida et al.). Its `sync` is a join: commutative, associative,
//!   idempotent.
//! - [`Register`]: a key's stored state in one of two conflict modes, `siblings` or `lww`.
//! - [`hlc`]: a hybrid logical clock for last-write-wins ordering.
//! - [`token`]: the opaque causal-context token handed to clients.

#![forbid(unsafe_code)]

pub mod actor;
pub mod dvv;
pub mod fasthash;
pub mod hlc;
pub mod register;
pub mod sorted;
pub mod token;
pub mod vv;

pub use actor::{Actor, Dot};
pub use dvv::{Dvv, Exhausted};
pub use hlc::{Hlc, Timestamp};
pub use register::{ConflictMode, Register, Sibling, WriteOutcome};
pub use token::{ContextToken, TokenError};
pub use vv::VersionVector;
