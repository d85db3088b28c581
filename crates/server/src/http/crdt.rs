//! CRDT keys, in the default bucket or any (`/buckets/{bucket}/...`):
//! - `/counters/{key}`: `{"delta": n}` in, `{"value": n}` out;
//! - `/sets/{key}`: `{"add": [...], "remove": [...]}` in, `{"members": [...]}` out;
//! - `/maps/{key}`: `{"set": {NAME: value}, "increment": {NAME: n}, "remove": [NAME]}` in,
//!   `{"fields": {NAME: value}}` out (a counted field as a number, a written one as a value);
//! - `DELETE` on each: the key deleted as its coordinator sees it (a counter reset, a set's
//!   members and a map's fields removed); what the delete did not see survives it.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use driftkv_wire::{FieldValue, Key, ObjectKind, Reply, Request};
use serde_json::{Value, json};

use crate::http::error::ApiError;
use crate::http::input::{Params, params, read_json};
use crate::http::json::{counter_json, fields_json, json_value, value_from_json};
use crate::http::state::AppState;

/// A counter update's body at most: `{"delta": n}` is a few bytes.
const COUNTER_BODY_BYTES_MAX: usize = 64 * 1024;

type Answer = Result<Response, ApiError>;

/// The key a route names (`bucket` none: the default bucket) and the query's parameters.
fn key_params(
    s: &AppState,
    bucket: Option<String>,
    key: String,
    q: Option<String>,
) -> Result<(Key, Params), ApiError> {
    Ok((s.key(bucket, key)?, params(q)?))
}

/// Handlers for the default bucket (`/T/{key}`) and any bucket (`/buckets/{b}/T/{key}`),
/// both calling one function of `(state, key, params, body)`.
macro_rules! routes {
    ($default:ident, $bucket:ident, $inner:ident) => {
        pub async fn $default(
            State(s): State<AppState>,
            Path(key): Path<String>,
            RawQuery(q): RawQuery,
            body: Body,
        ) -> Answer {
            let (key, p) = key_params(&s, None, key, q)?;
            $inner(&s, key, p, body).await
        }

        pub async fn $bucket(
            State(s): State<AppState>,
            Path((bucket, key)): Path<(String, String)>,
            RawQuery(q): RawQuery,
            body: Body,
        ) -> Answer {
            let (key, p) = key_params(&s, Some(bucket), key, q)?;
            $inner(&s, key, p, body).await
        }
    };
}

routes!(counter_get, counter_get_bucket, counter_get_in);
routes!(counter_post, counter_post_bucket, counter_post_in);
routes!(counter_delete, counter_delete_bucket, counter_delete_in);
routes!(set_get, set_get_bucket, set_get_in);
routes!(set_post, set_post_bucket, set_post_in);
routes!(set_delete, set_delete_bucket, set_delete_in);
routes!(map_get, map_get_bucket, map_get_in);
routes!(map_post, map_post_bucket, map_post_in);
routes!(map_delete, map_delete_bucket, map_delete_in);

async fn counter_get_in(s: &AppState, key: Key, p: Params, _: Body) -> Answer {
    match s.node.call(Request::CounterGet { key, r: p.r }).await? {
        Reply::Counter { value } => Ok(counter_json(value)),
        other => Err(ApiError::from_reply(other)),
    }
}

/// `POST` with `{"delta": n}`: the new value.
async fn counter_post_in(s: &AppState, key: Key, p: Params, body: Body) -> Answer {
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

async fn counter_delete_in(s: &AppState, key: Key, p: Params, _: Body) -> Answer {
    delete(s, key, ObjectKind::Counter, p).await
}

async fn set_get_in(s: &AppState, key: Key, p: Params, _: Body) -> Answer {
    match s.node.call(Request::SetGet { key, r: p.r }).await? {
        Reply::Set { members } => Ok(axum::Json(json!({
            "members": members.iter().map(|m| json_value(m)).collect::<Vec<_>>()
        }))
        .into_response()),
        other => Err(ApiError::from_reply(other)),
    }
}

/// `POST` with `{"add": [...], "remove": [...]}` (either may be left out).
async fn set_post_in(s: &AppState, key: Key, p: Params, body: Body) -> Answer {
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

async fn set_delete_in(s: &AppState, key: Key, p: Params, _: Body) -> Answer {
    delete(s, key, ObjectKind::Set, p).await
}

async fn map_get_in(s: &AppState, key: Key, p: Params, _: Body) -> Answer {
    match s.node.call(Request::MapGet { key, r: p.r }).await? {
        Reply::Map { fields, .. } => Ok(fields_response(&fields)),
        other => Err(ApiError::from_reply(other)),
    }
}

/// `POST` with `{"set": {...}, "increment": {...}, "remove": [...]}` (any may be left out):
/// the map's fields after the update, as this coordinator holds them.
async fn map_post_in(s: &AppState, key: Key, p: Params, body: Body) -> Answer {
    let body = read_json(body, s.node.config().value_bytes_max).await?;
    let Some(fields) = body.as_object() else {
        return Err(ApiError::BadRequest(
            "the body must be {\"set\": {...}, \"increment\": {...}, \"remove\": [...]}".into(),
        ));
    };
    if let Some(other) = fields
        .keys()
        .find(|k| !["set", "increment", "remove"].contains(&k.as_str()))
    {
        return Err(ApiError::BadRequest(format!(
            "unknown map operation {other:?} (known: set, increment, remove)"
        )));
    }
    let set = match body.get("set") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(o)) => o
            .iter()
            .map(|(name, v)| {
                value_from_json(v, &format!("the value of field {name:?}"))
                    .map(|v| (Bytes::from(name.clone().into_bytes()), v))
                    .map_err(ApiError::BadRequest)
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(ApiError::BadRequest("\"set\" must be an object".into())),
    };
    let increment = match body.get("increment") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(o)) => o
            .iter()
            .map(|(name, v)| match v.as_i64() {
                Some(n) => Ok((Bytes::from(name.clone().into_bytes()), n)),
                None => Err(ApiError::BadRequest(format!(
                    "the increment of field {name:?} must be an integer within 64 bits"
                ))),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ApiError::BadRequest(
                "\"increment\" must be an object".into(),
            ));
        }
    };
    let remove = members_of(&body, "remove")?;
    let request = Request::MapUpdate {
        key,
        set,
        increment,
        remove,
        w: p.w,
    };
    match s.node.call(request).await? {
        Reply::Map { fields, .. } => Ok(fields_response(&fields)),
        other => Err(ApiError::from_reply(other)),
    }
}

async fn map_delete_in(s: &AppState, key: Key, p: Params, _: Body) -> Answer {
    delete(s, key, ObjectKind::Map, p).await
}

/// A delete of a key of `kind`: 204 (whether or not there was anything to delete).
async fn delete(s: &AppState, key: Key, kind: ObjectKind, p: Params) -> Answer {
    let request = Request::Delete {
        key,
        kind: Some(kind),
        w: p.w,
    };
    match s.node.call(request).await? {
        Reply::Deleted { .. } => Ok(StatusCode::NO_CONTENT.into_response()),
        other => Err(ApiError::from_reply(other)),
    }
}

fn fields_response(fields: &[(Bytes, FieldValue)]) -> Response {
    let map = fields_json(fields.iter().map(|(n, v)| (n, v.clone())));
    axum::Json(json!({ "fields": map })).into_response()
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
