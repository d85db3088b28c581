//! The sans-io driftkv node: protocol logic as a deterministic state machine.
//!
//! No sockets, threads, clocks or randomness: time and storage are passed in, effects come out
//! as [`node::Output`] values. The tokio node and the simulator drive the very same code.

#![forbid(unsafe_code)]

pub mod aae;
pub mod config;
pub mod driver;
pub mod keys;
pub mod local;
pub mod membership;
pub mod node;
pub mod objects;
pub mod quorum;
pub mod stats;
pub mod store;

pub use config::{BucketProps, NodeConfig, WritePath};
/// The fixed fast hasher lives with the causality types, the crate everything builds on.
pub use driftkv_causal::fasthash;
pub use driver::{Driver, DriverCounts};
pub use membership::GossipConfig;
pub use node::{ClientId, Input, Node, NodeError, Output};
pub use stats::{Histogram, Stats};
pub use store::{Durability, Entries, MemStore, Store, StoreError, StoreFaults};
