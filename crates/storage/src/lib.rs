//! Durable storage for driftkv: the fjall-backed [`FjallStore`] and the [`conformance`] suite
//! that every [`Store`] backend (this one, core's `MemStore`, any later one) must pass.
//!
//! The storage boundary itself (the [`Store`] trait, [`StoreError`], [`Durability`]) lives in
//! `driftkv-core` so the sans-io core does not depend on an engine; it is re-exported here so a
//! caller that opens a store needs only this crate.

#![forbid(unsafe_code)]

pub mod conformance;
mod fjall_store;

pub use driftkv_core::store::{Durability, Entries, MemStore, Store, StoreError};
pub use fjall_store::{FORMAT_VERSION, FjallStore, MAX_KEY_LEN, Syncer};
