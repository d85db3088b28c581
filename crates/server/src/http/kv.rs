//! Registers: `/kv/{key}` and `/buckets/{bucket}/kv/{key}` (GET, PUT, DELETE) with causal
//! contexts and siblings, and `/kv/{key}/replicas`, each owner's own copy.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use driftkv_core::node::merge_all;
use driftkv_wire::{Key, Object, ReplicaView, Reply, Request};
use serde_json::{Value, json};

use crate::http::context::{SESSION_HEADER, read_context, read_token, token, with_context};
use crate::http::error::ApiError;
use crate::http::input::{params, params_with, read_body};
use crate::http::json::{fields_json, json_value, vv_json};
use crate::http::state::AppState;

type Answer = Result<Response, ApiError>;

/// `GET /kv/{key}`.
pub async fn get_default(
    State(s): State<AppState>,
    Path(key): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Answer {
    get(&s, s.key(None, key)?, q, &headers).await
}

/// `PUT /kv/{key}`.
pub async fn put_default(
    State(s): State<AppState>,
    Path(key): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    put(&s, s.key(None, key)?, q, headers, Some(body)).await
}

/// `DELETE /kv/{key}`.
pub async fn delete_default(
    State(s): State<AppState>,
    Path(key): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Answer {
    put(&s, s.key(None, key)?, q, headers, None).await
}

/// `GET /kv/{key}/replicas`.
pub async fn replicas_default(State(s): State<AppState>, Path(key): Path<String>) -> Answer {
    replicas(&s, s.key(None, key)?).await
}

/// `GET /buckets/{bucket}/kv/{key}`.
pub async fn get_bucket(
    State(s): State<AppState>,
    Path((bucket, key)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Answer {
    get(&s, s.key(Some(bucket), key)?, q, &headers).await
}

/// `PUT /buckets/{bucket}/kv/{key}`.
pub async fn put_bucket(
    State(s): State<AppState>,
    Path((bucket, key)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    put(&s, s.key(Some(bucket), key)?, q, headers, Some(body)).await
}

/// `DELETE /buckets/{bucket}/kv/{key}`.
pub async fn delete_bucket(
    State(s): State<AppState>,
    Path((bucket, key)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Answer {
    put(&s, s.key(Some(bucket), key)?, q, headers, None).await
}

/// `GET /buckets/{bucket}/kv/{key}/replicas`.
pub async fn replicas_bucket(
    State(s): State<AppState>,
    Path((bucket, key)): Path<(String, String)>,
) -> Answer {
    replicas(&s, s.key(Some(bucket), key)?).await
}

/// A read: one value raw (200), siblings as JSON (300), or 404; each with the context.
async fn get(state: &AppState, key: Key, raw: Option<String>, headers: &HeaderMap) -> Answer {
    let p = params(raw)?;
    let reply = read(state, &key, p.r, headers).await?;
    render_read(reply, &key)
}

/// The register read a GET makes (a session read with `X-Session-Token`).
pub async fn read(
    state: &AppState,
    key: &Key,
    r: driftkv_wire::Quorum,
    headers: &HeaderMap,
) -> Result<Reply, ApiError> {
    // A session read: never older than the context the client last got for this key.
    let request = match read_token(headers, SESSION_HEADER, "X-Session-Token", key)? {
        None => Request::Get {
            key: key.clone(),
            r,
        },
        Some(seen) => Request::SessionGet {
            key: key.clone(),
            r,
            seen,
        },
    };
    Ok(state.node.call(request).await?)
}

/// A read's answer as the API gives it.
pub fn render_read(reply: Reply, key: &Key) -> Answer {
    let key = key.clone();
    let response = match reply {
        Reply::Values { values, context } if values.len() == 1 => {
            let value = values.into_iter().next().unwrap_or_default();
            let mut response = (StatusCode::OK, value).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            with_context(response, &context, &key)
        }
        Reply::Values { values, context } => {
            let body = json!({
                "siblings": values.iter().map(|v| json_value(v)).collect::<Vec<_>>(),
                "context": token(&context, &key),
            });
            let response = (StatusCode::MULTIPLE_CHOICES, axum::Json(body)).into_response();
            with_context(response, &context, &key)
        }
        Reply::NotFound { context } => {
            let response = ApiError::NotFound("not found".into()).into_response();
            with_context(response, &context, &key)
        }
        other => return Err(ApiError::from_reply(other)),
    };
    Ok(response)
}

/// A write (`value` some) or a delete (`value` none): 204 with the new context.
async fn put(
    state: &AppState,
    key: Key,
    raw: Option<String>,
    headers: HeaderMap,
    value: Option<Body>,
) -> Answer {
    let p = if value.is_some() {
        params_with(raw, &["ttl_ms"])?
    } else {
        params(raw)?
    };
    let mut context = read_context(&headers, &key)?;
    let value = match value {
        None => None,
        Some(body) => Some(read_body(body, state.node.config().value_bytes_max).await?),
    };
    let expires_ms = p.ttl_ms.map(|ttl| crate::wall_ms().saturating_add(ttl));
    // `If-None-Match: *`: write only if the key reads as missing at R. Decided on what the
    // coordinator sees then: two such writes at once through different nodes can both
    // succeed, and their values become siblings (this is not a lock).
    if let Some(v) = headers.get(header::IF_NONE_MATCH) {
        if v.as_bytes() != b"*" {
            return Err(ApiError::BadRequest(
                "If-None-Match takes only \"*\" (write only if the key does not exist)".into(),
            ));
        }
        if value.is_none() {
            return Err(ApiError::BadRequest(
                "If-None-Match: * is for writes, not deletes".into(),
            ));
        }
        let read = state.node.call(Request::Get {
            key: key.clone(),
            r: p.r,
        });
        match read.await? {
            Reply::NotFound { context: seen } => context = context.merged(&seen),
            Reply::Values { .. } => {
                return Err(ApiError::PreconditionFailed(
                    "the key exists (If-None-Match: *)".into(),
                ));
            }
            other => return Err(ApiError::from_reply(other)),
        }
    }
    // A delete without a context removes what its coordinator holds (a blind tombstone would
    // only sit beside the values as a sibling); with a context, exactly what was read.
    let request = if value.is_none() && context.is_empty() {
        Request::Overwrite {
            key: key.clone(),
            value: None,
            expires_ms,
            w: p.w,
        }
    } else {
        Request::Put {
            key: key.clone(),
            value,
            context,
            expires_ms,
            w: p.w,
        }
    };
    match state.node.call(request).await? {
        Reply::Written { context } => Ok(with_context(
            StatusCode::NO_CONTENT.into_response(),
            &context,
            &key,
        )),
        other => Err(ApiError::from_reply(other)),
    }
}

/// The per-replica view: each owner's own copy, and whether it lags the others.
async fn replicas(state: &AppState, key: Key) -> Answer {
    let reply = state
        .node
        .call(Request::Inspect { key: key.clone() })
        .await?;
    let Reply::Replicas { replicas, .. } = reply else {
        return Err(ApiError::from_reply(reply));
    };
    let mode = state.node.config().bucket(key.bucket()).mode;
    let (merged, _, _) = merge_all(mode, replicas.iter().filter_map(|r| r.object.as_ref()));
    let views: Vec<Value> = replicas
        .iter()
        .map(|r| replica_view(r, merged.as_ref()))
        .collect();
    Ok(axum::Json(json!({
        "key": String::from_utf8_lossy(key.key()),
        "bucket": String::from_utf8_lossy(key.bucket()),
        "replicas": views,
    }))
    .into_response())
}

/// One replica's copy as JSON; stale when it is reachable and differs from `merged`.
fn replica_view(r: &ReplicaView, merged: Option<&Object>) -> Value {
    let mut view = json!({
        "node": r.node.as_str(),
        "reachable": r.reachable,
        "values": [],
        "version_vector": {},
        "stale": r.reachable && merged.is_some() && r.object.as_ref() != merged,
    });
    let now = crate::wall_ms();
    if let Some(object) = &r.object {
        view["type"] = json!(object.kind().name());
    }
    match &r.object {
        None => {}
        Some(Object::Register(reg)) => {
            view["values"] = reg.values_at(now).map(|v| json_value(v)).collect();
            view["tombstone"] = json!(reg.is_deleted_at(now));
            view["siblings"] = json!(reg.values_at(now).count());
            view["version_vector"] = vv_json(reg.context());
            // The expiry of each value that has one (wall-clock ms), expired ones included.
            let expiries: Vec<u64> = reg
                .dvv()
                .values()
                .filter(|s| s.value.is_some())
                .filter_map(|s| s.expires_ms)
                .collect();
            if !expiries.is_empty() {
                view["expires_ms"] = json!(expiries);
                view["expired"] = json!(reg.values().count() > reg.values_at(now).count());
            }
        }
        Some(Object::Map(m)) => {
            let fields = fields_json(m.fields());
            view["values"] = fields
                .iter()
                .map(|(n, v)| match v {
                    Value::String(s) => json!(format!("{n}={s}")),
                    other => json!(format!("{n}={other}")),
                })
                .collect();
            view["fields"] = Value::Object(fields);
            view["version_vector"] = vv_json(m.context());
        }
        Some(Object::Counter(c)) => {
            view["values"] = json!([c.value().to_string()]);
            view["counter"] = json!(c.value());
        }
        Some(Object::Set(s)) => {
            let members: Vec<Value> = s.members().map(|m| json_value(m)).collect();
            view["values"] = Value::Array(members.clone());
            view["members"] = Value::Array(members);
        }
    }
    view
}
