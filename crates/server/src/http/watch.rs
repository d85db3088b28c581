//! `GET /kv/{key}/watch`: a read that waits until the key's state moves past the context the
//! client holds (a write through any node), or answers 304 at its timeout.
//!
//! The watch polls: it reads the key at the request's R, and again after a pause that grows
//! from [`POLL_FIRST_MS`] to [`POLL_MAX_MS`] while nothing changes, until the state is no
//! longer covered by the client's context. A read at R sees a write made through any node
//! once it reached R replicas, so no node needs to know who watches what. Watchers are
//! bounded per node and per key; one past either bound is refused with 503 naming it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use driftkv_wire::{Key, Reply};

use crate::http::context::{read_context, with_context};
use crate::http::error::ApiError;
use crate::http::input::params_with;
use crate::http::kv::{read, render_read};
use crate::http::state::AppState;

/// The longest a watch may wait (`timeout_ms`).
pub const WATCH_TIMEOUT_MS_MAX: u64 = 300_000;
/// How long a watch waits when the request names no `timeout_ms`.
pub const WATCH_TIMEOUT_MS_DEFAULT: u64 = 30_000;
/// Watches open on one node at once, at most.
pub const WATCHERS_MAX: usize = 1024;
/// Watches of one key open on one node at once, at most.
pub const WATCHERS_PER_KEY_MAX: usize = 64;
/// The first pause between two reads of a watch, and the longest (it doubles while nothing
/// changes).
pub const POLL_FIRST_MS: u64 = 50;
pub const POLL_MAX_MS: u64 = 800;

/// The watches open on this node, by key.
#[derive(Default)]
pub struct Watchers {
    open: Mutex<(usize, HashMap<Key, usize>)>,
}

/// One open watch; closing it (dropping) frees its place.
pub struct WatchPlace {
    watchers: Arc<Watchers>,
    key: Key,
}

impl Watchers {
    /// A place for a watch of `key`, or the bound that refuses it.
    pub fn enter(self: &Arc<Self>, key: &Key) -> Result<WatchPlace, ApiError> {
        let mut open = self.open.lock().expect("watchers lock");
        if open.0 >= WATCHERS_MAX {
            return Err(ApiError::unavailable(format!(
                "this node already holds {WATCHERS_MAX} watches (WATCHERS_MAX); try another node or later"
            )));
        }
        let on_key = open.1.get(key).copied().unwrap_or(0);
        if on_key >= WATCHERS_PER_KEY_MAX {
            return Err(ApiError::unavailable(format!(
                "this node already holds {WATCHERS_PER_KEY_MAX} watches of this key (WATCHERS_PER_KEY_MAX)"
            )));
        }
        open.0 += 1;
        open.1.insert(key.clone(), on_key + 1);
        Ok(WatchPlace {
            watchers: Arc::clone(self),
            key: key.clone(),
        })
    }

    /// Watches open now.
    pub fn count(&self) -> usize {
        self.open.lock().expect("watchers lock").0
    }
}

impl Drop for WatchPlace {
    fn drop(&mut self) {
        let mut open = self.watchers.open.lock().expect("watchers lock");
        open.0 = open.0.saturating_sub(1);
        if let Some(n) = open.1.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&self.key);
            }
        }
    }
}

/// One watch counted in `driftkv_http_watches_open` while it waits.
struct Open(Arc<crate::metrics::Metrics>);

impl Open {
    fn count(metrics: &Arc<crate::metrics::Metrics>) -> Open {
        metrics
            .watches_open
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Open(Arc::clone(metrics))
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0
            .watches_open
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// `GET /kv/{key}/watch`.
pub async fn watch_default(
    State(s): State<AppState>,
    Path(key): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    watch(&s, s.key(None, key)?, q, &headers).await
}

/// `GET /buckets/{bucket}/kv/{key}/watch`.
pub async fn watch_bucket(
    State(s): State<AppState>,
    Path((bucket, key)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    watch(&s, s.key(Some(bucket), key)?, q, &headers).await
}

async fn watch(
    state: &AppState,
    key: Key,
    raw: Option<String>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let p = params_with(raw, &["timeout_ms"])?;
    let seen = read_context(headers, &key)?;
    let timeout = Duration::from_millis(p.timeout_ms.unwrap_or(WATCH_TIMEOUT_MS_DEFAULT));
    let _place = state.watchers.enter(&key)?;
    let _open = Open::count(&state.metrics);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = POLL_FIRST_MS;
    loop {
        // A plain read (no session token: the watch's own context says what it has seen).
        let reply = read(state, &key, p.r, &HeaderMap::new()).await?;
        let now_ctx = match &reply {
            Reply::Values { context, .. } | Reply::NotFound { context } => context.clone(),
            _ => return render_read(reply, &key),
        };
        if !seen.descends(&now_ctx) {
            return render_read(reply, &key);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            let response = StatusCode::NOT_MODIFIED.into_response();
            return Ok(with_context(response, &now_ctx, &key));
        }
        let wait = Duration::from_millis(pause).min(deadline - now);
        tokio::time::sleep(wait).await;
        pause = (pause * 2).min(POLL_MAX_MS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_are_bounded_per_key_and_freed_when_closed() {
        let watchers = Arc::new(Watchers::default());
        let key = Key::default_bucket("k");
        let places: Vec<_> = (0..WATCHERS_PER_KEY_MAX)
            .map(|_| watchers.enter(&key).expect("within the bound"))
            .collect();
        let refused = watchers.enter(&key).err().expect("past the bound");
        assert!(
            refused.to_string().contains("WATCHERS_PER_KEY_MAX"),
            "{refused}"
        );
        assert!(watchers.enter(&Key::default_bucket("other")).is_ok());
        drop(places);
        assert_eq!(watchers.count(), 0);
        assert!(watchers.enter(&key).is_ok());
    }
}
