//! The request shape of the common eventual-consistency tutorials (a Flask node with
//! `/write`), so a newcomer's first curl works: `POST /write` and `GET /read/{key}`.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use driftkv_causal::VersionVector;
use driftkv_wire::{Quorum, Reply, Request};
use serde_json::{Value, json};

use crate::http::context::token;
use crate::http::error::ApiError;
use crate::http::input::read_json;
use crate::http::json::{json_value, value_from_json};
use crate::http::state::AppState;

/// Room in a `/write` body beyond the value itself: the key, the field names, the quoting.
const WRITE_BODY_OVERHEAD_BYTES: usize = 64 * 1024;

type Answer = Result<Response, ApiError>;

/// `POST /write {"key", "value"}`: reads the current context first, so the write overwrites
/// what this node's read saw, as the tutorials' single-value store does.
pub async fn write(State(s): State<AppState>, body: Body) -> Answer {
    let limit = s.node.config().value_bytes_max + WRITE_BODY_OVERHEAD_BYTES;
    let body = read_json(body, limit).await?;
    let Some(key) = body.get("key").and_then(Value::as_str) else {
        return Err(ApiError::BadRequest(
            "the body must be {\"key\": \"...\", \"value\": \"...\"} and \"key\" a string".into(),
        ));
    };
    let value = match body.get("value") {
        Some(v) => value_from_json(v, "\"value\"").map_err(ApiError::BadRequest)?,
        None => return Err(ApiError::BadRequest("the body has no \"value\"".into())),
    };
    let key = s.key(None, key.to_string())?;
    let read = Request::Get {
        key: key.clone(),
        r: Quorum::Default,
    };
    let context = match s.node.call(read).await {
        Ok(Reply::Values { context, .. }) | Ok(Reply::NotFound { context }) => context,
        // Unreadable right now: write blind; concurrent values become siblings, none is lost.
        _ => VersionVector::new(),
    };
    let request = Request::Put {
        key: key.clone(),
        value: Some(value),
        context,
        expires_ms: None,
        w: Quorum::Default,
    };
    match s.node.call(request).await? {
        Reply::Written { context } => Ok(axum::Json(json!({
            "status": "success",
            "key": String::from_utf8_lossy(key.key()),
            "node": s.node.id(),
            "context": token(&context, &key),
        }))
        .into_response()),
        other => Err(ApiError::from_reply(other)),
    }
}

/// `GET /read/{key}`: `{"key", "value", "node"}`, and `"siblings"` when there are several.
pub async fn read(
    State(s): State<AppState>,
    Path(key): Path<String>,
    RawQuery(q): RawQuery,
) -> Answer {
    let (key, p) = s.key_params(key, q)?;
    let name = String::from_utf8_lossy(key.key()).into_owned();
    match s.node.call(Request::Get { key, r: p.r }).await? {
        Reply::Values { values, .. } => {
            let mut body =
                json!({ "key": name, "value": json_value(&values[0]), "node": s.node.id() });
            if values.len() > 1 {
                body["siblings"] = values.iter().map(|v| json_value(v)).collect();
            }
            Ok(axum::Json(body).into_response())
        }
        Reply::NotFound { .. } => Err(ApiError::NotFound(format!("key {name:?} not found"))),
        other => Err(ApiError::from_reply(other)),
    }
}
