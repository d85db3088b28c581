//! The sans-io driftkv node: protocol logic as a deterministic state machine.
pub mod store;
