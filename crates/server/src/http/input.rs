//! What a request brings besides its path: query parameters and a body, each checked and
//! bounded before any of it reaches the node.

use std::time::Duration;

use axum::body::{Body, to_bytes};
use bytes::Bytes;
use driftkv_wire::Quorum;
use serde_json::Value;

use crate::http::error::ApiError;

/// How long a client may take to send a request's body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// `r` and `w` from the query string; unknown parameters are refused.
pub struct Params {
    pub r: Quorum,
    pub w: Quorum,
}

/// Parses the raw query string.
pub fn params(raw: Option<String>) -> Result<Params, ApiError> {
    let mut p = Params {
        r: Quorum::Default,
        w: Quorum::Default,
    };
    for pair in raw
        .as_deref()
        .unwrap_or("")
        .split('&')
        .filter(|s| !s.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let level = || {
            Quorum::parse(value).map_err(|e| ApiError::BadRequest(format!("{name}={value}: {e}")))
        };
        match name {
            "r" => p.r = level()?,
            "w" => p.w = level()?,
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown query parameter {other:?} (known: r, w)"
                )));
            }
        }
    }
    Ok(p)
}

/// The whole body, at most `limit` bytes, within [`BODY_TIMEOUT`].
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    match tokio::time::timeout(BODY_TIMEOUT, to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(ApiError::TooLarge(format!(
            "request body is over the limit of {limit} bytes"
        ))),
        Err(_) => Err(ApiError::BodyTimeout(format!(
            "the request body did not arrive within {} s",
            BODY_TIMEOUT.as_secs()
        ))),
    }
}

/// A JSON body of at most `limit` bytes.
pub async fn read_json(body: Body, limit: usize) -> Result<Value, ApiError> {
    let raw = read_body(body, limit).await?;
    serde_json::from_slice(&raw)
        .map_err(|e| ApiError::BadRequest(format!("request body is not valid JSON: {e}")))
}
