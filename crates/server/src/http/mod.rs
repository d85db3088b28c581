//! The HTTP API of DESIGN.md: keys with causal contexts, siblings and expiry, replica
//! inspection, watches, key listing, counters, sets and maps in any bucket, the tutorial-style
//! `/write` and `/read`, cluster and health.
//!
//! Handlers only translate: HTTP in, a core `Request` to the node (through the
//! transport-neutral [`crate::handle::NodeHandle`]), its `Reply` out. Each returns
//! `Result<Response, ApiError>`: every bad request is answered with a 4xx and
//! `{"error": ...}` naming the problem; none reaches the core unchecked, none can stop the node.
//!
//! Modules: `routes` (every route and the layers), `guard` (who may do what), `error` (the
//! API's errors), `input` and `context` (what a request brings), `json` (values as JSON), one
//! module per family of handlers (`kv`, `watch`, `keys`, `crdt`, `tutorial`, `cluster`,
//! `admin`), and `listener` (the bounded serving loop).

mod admin;
mod backup;
mod cluster;
mod context;
mod crdt;
mod error;
mod guard;
mod input;
mod json;
mod keys;
mod kv;
mod listener;
mod routes;
mod state;
mod tutorial;
mod watch;

pub use context::{CONTEXT_HEADER, SESSION_HEADER};
pub use error::ApiError;
pub use json::json_value;
pub use listener::{HTTP_HEADER_BYTES_MAX, serve};
pub use routes::router;
pub use state::AppState;
pub use watch::{WATCHERS_MAX, WATCHERS_PER_KEY_MAX, Watchers};
