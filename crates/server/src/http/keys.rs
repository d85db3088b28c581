//! Key listing: `GET /keys` and `GET /buckets/{bucket}/keys?prefix=P&after=CURSOR&limit=N`
//! answer `{"keys": [...], "next": CURSOR | null}`, one page of the bucket's live keys across
//! the cluster; following `next` until it is null lists every live key once while the cluster
//! is stable.

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use driftkv_wire::{Key, ListCursor, Reply, Request};
use serde_json::{Value, json};

use crate::http::error::ApiError;
use crate::http::input::params_with;
use crate::http::json::json_value;
use crate::http::state::{AppState, DEFAULT_BUCKET};

/// Keys per page when the request names no `limit`.
pub const LIST_LIMIT_DEFAULT: u32 = 1000;

/// `GET /keys`.
pub async fn keys_default(
    State(s): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    list(&s, DEFAULT_BUCKET.to_string(), q).await
}

/// `GET /buckets/{bucket}/keys`.
pub async fn keys_bucket(
    State(s): State<AppState>,
    Path(bucket): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    list(&s, bucket, q).await
}

async fn list(state: &AppState, bucket: String, raw: Option<String>) -> Result<Response, ApiError> {
    let p = params_with(raw, &["prefix", "after", "limit"])?;
    let config = state.node.config();
    if bucket.is_empty() || bucket.len() > config.bucket_bytes_max {
        return Err(ApiError::BadRequest(format!(
            "bucket name must be 1 to {} bytes",
            config.bucket_bytes_max
        )));
    }
    let prefix = p.prefix.unwrap_or_default();
    if prefix.len() > config.key_bytes_max {
        return Err(ApiError::TooLarge(format!(
            "prefix is {} bytes, the limit is {}",
            prefix.len(),
            config.key_bytes_max
        )));
    }
    let after = match p.after.as_deref() {
        None | Some("") => None,
        Some(cursor) => Some(ListCursor::parse(cursor).map_err(ApiError::BadRequest)?),
    };
    let request = Request::ListKeys {
        key: Key::new(Bytes::from(bucket.into_bytes()), prefix),
        after,
        limit: p.limit.unwrap_or(LIST_LIMIT_DEFAULT),
        whole_segments: false,
    };
    match state.node.call(request).await? {
        Reply::Keys { keys, next } => {
            let keys: Vec<Value> = keys.iter().map(|(k, _)| json_value(k)).collect();
            let next = next.map(|c| c.render());
            Ok(axum::Json(json!({ "keys": keys, "next": next })).into_response())
        }
        other => Err(ApiError::from_reply(other)),
    }
}
