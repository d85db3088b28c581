//! Causal contexts over HTTP: the opaque token a client gets in `X-Causal-Context` and sends
//! back with a write (or in `X-Session-Token` with a session read), bound to its key.

use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use driftkv_causal::{ContextToken, VersionVector};
use driftkv_wire::Key;

use crate::http::error::ApiError;

pub const CONTEXT_HEADER: &str = "x-causal-context";
/// A session token on a read: the `X-Causal-Context` the client last got for this key.
pub const SESSION_HEADER: &str = "x-session-token";

/// The token of `context` for `key`.
pub fn token(context: &VersionVector, key: &Key) -> String {
    ContextToken::encode(context, key.bucket(), key.key())
}

/// The context a write names in `X-Causal-Context` (empty when none).
pub fn read_context(headers: &HeaderMap, key: &Key) -> Result<VersionVector, ApiError> {
    read_token(headers, CONTEXT_HEADER, "X-Causal-Context", key).map(Option::unwrap_or_default)
}

/// A context token from header `name` (shown as `shown`), bound to `key`; `None` when absent
/// or empty.
pub fn read_token(
    headers: &HeaderMap,
    name: &str,
    shown: &str,
    key: &Key,
) -> Result<Option<VersionVector>, ApiError> {
    let Some(v) = headers.get(name) else {
        return Ok(None);
    };
    let text = v
        .to_str()
        .map_err(|_| ApiError::BadRequest(format!("{shown} is not ASCII")))?;
    if text.is_empty() {
        return Ok(None);
    }
    ContextToken::decode(text, key.bucket(), key.key())
        .map(Some)
        .map_err(|e| ApiError::BadRequest(format!("bad causal context in {shown}: {e}")))
}

/// `response` with `X-Causal-Context` set to `context` (unless it is empty).
pub fn with_context(mut response: Response, context: &VersionVector, key: &Key) -> Response {
    if context.is_empty() {
        return response;
    }
    if let Ok(v) = HeaderValue::from_str(&token(context, key)) {
        response.headers_mut().insert(CONTEXT_HEADER, v);
    }
    response
}
