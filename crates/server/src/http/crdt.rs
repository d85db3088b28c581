//! CRDT keys: `/counters/{key}` (`{"delta": n}` in, `{"value": n}` out) and `/sets/{key}`
//! (`{"add": [...], "remove": [...]}` in, `{"members": [...]}` out).

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use driftkv_wire::{Reply, Request};
use serde_json::{Value, json};

use crate::http::error::ApiError;
use crate::http::input::read_json;
use crate::http::json::{counter_json, json_value, value_from_json};
use crate::http::state::AppState;

/// A counter update's body at most: `{"delta": n}` is a few bytes.
const COUNTER_BODY_BYTES_MAX: usize = 64 * 1024;

type Answer = Result<Response, ApiError>;

/// `GET /counters/{key}`.
pub async fn counter_get(
    State(s): State<AppState>,
    Path(key): Path<String>,
    RawQuery(q): RawQuery,
) -> Answer {
    let (key, p) = s.key_params(key, q)?;
    match s.node.call(Request::CounterGet { key, r: p.r }).await? {
        Reply::Counter { value } => Ok(counter_json(value)),
        other => Err(ApiError::from_reply(other)),
    }
}

/// `POST /counters/{key}` with `{"delta": n}`: the new value.
pub async fn counter_post(
    State(s): State<AppState>,
    Path(key): Path<String>,
    RawQuery(q): RawQuery,
    body: Body,
) -> Answer {
    let (key, p) = s.key_params(key, q)?;
    let body = read_json(body, COUNTER_BODY_BYTES_MAX).await?;
    let Some(delta) = body.get("delta").and_then(Value::as_i64) else {
        return Err(ApiError::BadRequest(
            "the body must be {\"delta\": n} with n an integer within 64 bits".into(),
        ));
    };
    match s
        .node
        .call(Request::CounterAdd { key, delta, w: p.w })
        .await?
    {
        Reply::Counter { value } => Ok(counter_json(value)),
        Reply::Written { .. } => Ok(StatusCode::NO_CONTENT.into_response()),
        other => Err(ApiError::from_reply(other)),
    }
}

/// `GET /sets/{key}`.
pub async fn set_get(
    State(s): State<AppState>,
    Path(key): Path<String>,
    RawQuery(q): RawQuery,
) -> Answer {
    let (key, p) = s.key_params(key, q)?;
    match s.node.call(Request::SetGet { key, r: p.r }).await? {
        Reply::Set { members } => Ok(axum::Json(json!({
            "members": members.iter().map(|m| json_value(m)).collect::<Vec<_>>()
        }))
        .into_response()),
        other => Err(ApiError::from_reply(other)),
    }
}

/// `POST /sets/{key}` with `{"add": [...], "remove": [...]}` (either may be left out).
pub async fn set_post(
    State(s): State<AppState>,
    Path(key): Path<String>,
    RawQuery(q): RawQuery,
    body: Body,
) -> Answer {
    let (key, p) = s.key_params(key, q)?;
    let body = read_json(body, s.node.config().value_bytes_max).await?;
    if !body.is_object() {
        return Err(ApiError::BadRequest(
            "the body must be {\"add\": [...], \"remove\": [...]}".into(),
        ));
    }
    let add = members_of(&body, "add")?;
    let remove = members_of(&body, "remove")?;
    let request = Request::SetUpdate {
        key,
        add,
        remove,
        w: p.w,
    };
    match s.node.call(request).await? {
        Reply::Written { .. } => Ok(StatusCode::NO_CONTENT.into_response()),
        other => Err(ApiError::from_reply(other)),
    }
}

/// The members listed in `field` of a set update (none when absent).
fn members_of(body: &Value, field: &str) -> Result<Vec<Bytes>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                value_from_json(v, &format!("each of \"{field}\"")).map_err(ApiError::BadRequest)
            })
            .collect(),
        Some(_) => Err(ApiError::BadRequest(format!("\"{field}\" must be a list"))),
    }
}
