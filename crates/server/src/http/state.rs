//! What every handler shares: the node, the users, the metrics and the lab switch; and the
//! check of a key named in a path.

use std::sync::Arc;

use bytes::Bytes;
use driftkv_wire::Key;

use crate::auth::Users;
use crate::handle::NodeHandle;
use crate::http::error::ApiError;
use crate::http::input::{Params, params};
use crate::metrics::Metrics;
use crate::transport::Transport;

/// The bucket of `/kv/{key}`, `/counters/{key}`, ...
pub const DEFAULT_BUCKET: &str = "default";

#[derive(Clone)]
pub struct AppState {
    /// The way to the node thread.
    pub node: NodeHandle,
    /// Who may do what; `None`: no authentication (a loopback or `--insecure` node).
    pub users: Option<Arc<Users>>,
    /// Serves HTTP on loopback without users (a developer's or the demo's node): requests
    /// must then name it by address (see the guard's `cross_site`).
    pub open_loopback: bool,
    pub metrics: Arc<Metrics>,
    pub transport: Arc<Transport>,
    /// Lab controls enabled (`--lab`).
    pub lab: bool,
    /// The watches open on this node (bounded).
    pub watchers: Arc<crate::http::watch::Watchers>,
}

impl AppState {
    /// A key of the default bucket and the query's parameters.
    pub fn key_params(
        &self,
        key: String,
        query: Option<String>,
    ) -> Result<(Key, Params), ApiError> {
        Ok((self.key(None, key)?, params(query)?))
    }

    /// The key `key` of `bucket` (the default bucket when `None`), within the node's limits.
    pub fn key(&self, bucket: Option<String>, key: String) -> Result<Key, ApiError> {
        let config = self.node.config();
        let bucket = bucket.unwrap_or_else(|| DEFAULT_BUCKET.to_string());
        if key.is_empty() {
            return Err(ApiError::BadRequest("key is empty".into()));
        }
        if key.len() > config.key_bytes_max {
            return Err(ApiError::TooLarge(format!(
                "key is {} bytes, the limit is {}",
                key.len(),
                config.key_bytes_max
            )));
        }
        if bucket.is_empty() || bucket.len() > config.bucket_bytes_max {
            return Err(ApiError::BadRequest(format!(
                "bucket name must be 1 to {} bytes",
                config.bucket_bytes_max
            )));
        }
        Ok(Key::new(
            Bytes::from(bucket.into_bytes()),
            Bytes::from(key.into_bytes()),
        ))
    }
}
