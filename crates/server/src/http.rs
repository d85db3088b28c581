//! The HTTP API of DESIGN.md: keys with causal contexts and siblings, replica inspection,
//! counters, sets, the tutorial-style `/write` and `/read`, cluster and health.
//!
//! Handlers only translate: HTTP in, a core `Request` to the node loop, its `Reply` out. Every
//! bad request is answered with a 4xx and `{"error": ...}` naming the problem; none reaches the
//! core unchecked, none can stop the node.

// Helpers return `Result<_, Response>` so a handler can answer an error with `?`-like ease;
// the error path is the cold one, so the size of `Response` does not matter here.
#![allow(clippy::result_large_err)]

use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use bytes::Bytes;
use driftkv_causal::{ContextToken, VersionVector};
use driftkv_core::Node;
use driftkv_core::node::merge_all;
use driftkv_storage::FjallStore;
use driftkv_wire::{ErrorKind, Key, Object, Quorum, Reply, Request};
use serde_json::{Value, json};

use crate::auth::Role;
use crate::handle::{NodeError, NodeHandle};
use crate::metrics::{Metrics, Snapshot};

pub const CONTEXT_HEADER: &str = "x-causal-context";
/// A session token on a read: the `X-Causal-Context` the client last got for this key.
pub const SESSION_HEADER: &str = "x-session-token";

#[derive(Clone)]
pub struct AppState {
    /// The way to the node thread.
    pub node: NodeHandle,
    /// Who may do what; `None`: no authentication (a loopback or `--insecure` node).
    pub users: Option<std::sync::Arc<crate::auth::Users>>,
    /// Serves HTTP on loopback without users (a developer's or the demo's node): requests
    /// must then name it by address (see `cross_site`).
    pub open_loopback: bool,
    pub metrics: std::sync::Arc<Metrics>,
    pub transport: std::sync::Arc<crate::transport::Transport>,
    /// Lab controls enabled (`--lab`).
    pub lab: bool,
}

/// A JSON error answer.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

fn bad(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, message)
}

/// A value as JSON: a string when it is UTF-8, else `{"base64": ...}`.
pub fn json_value(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(s) => Value::String(s.to_string()),
        Err(_) => json!({ "base64": base64::engine::general_purpose::STANDARD.encode(bytes) }),
    }
}

/// The inverse of [`json_value`], for JSON request bodies.
fn value_from_json(v: &Value, what: &str) -> Result<Bytes, String> {
    match v {
        Value::String(s) => Ok(Bytes::from(s.clone().into_bytes())),
        Value::Object(o) if o.len() == 1 && o.get("base64").is_some_and(Value::is_string) => {
            base64::engine::general_purpose::STANDARD
                .decode(o["base64"].as_str().unwrap_or_default())
                .map(Bytes::from)
                .map_err(|e| format!("{what}: bad base64: {e}"))
        }
        Value::Number(_) | Value::Bool(_) => Ok(Bytes::from(v.to_string().into_bytes())),
        _ => Err(format!(
            "{what} must be a string (or {{\"base64\": \"...\"}})"
        )),
    }
}

fn token(context: &VersionVector, key: &Key) -> String {
    ContextToken::encode(context, key.bucket(), key.key())
}

fn context_header(context: &VersionVector, key: &Key) -> Option<HeaderValue> {
    if context.is_empty() {
        return None;
    }
    HeaderValue::from_str(&token(context, key)).ok()
}

/// `r`/`w` and friends from the query string; unknown parameters are refused.
struct Params {
    r: Quorum,
    w: Quorum,
}

fn params(raw: Option<String>) -> Result<Params, Response> {
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
        let level = || Quorum::parse(value).map_err(|e| bad(format!("{name}={value}: {e}")));
        match name {
            "r" => p.r = level()?,
            "w" => p.w = level()?,
            other => {
                return Err(bad(format!(
                    "unknown query parameter {other:?} (known: r, w)"
                )));
            }
        }
    }
    Ok(p)
}

fn read_context(headers: &HeaderMap, key: &Key) -> Result<VersionVector, Response> {
    read_token(headers, CONTEXT_HEADER, "X-Causal-Context", key).map(Option::unwrap_or_default)
}

/// A context token from header `name` (shown as `shown`), bound to `key`; `None` when absent
/// or empty.
fn read_token(
    headers: &HeaderMap,
    name: &str,
    shown: &str,
    key: &Key,
) -> Result<Option<VersionVector>, Response> {
    let Some(v) = headers.get(name) else {
        return Ok(None);
    };
    let text = v
        .to_str()
        .map_err(|_| bad(format!("{shown} is not ASCII")))?;
    if text.is_empty() {
        return Ok(None);
    }
    ContextToken::decode(text, key.bucket(), key.key())
        .map(Some)
        .map_err(|e| bad(format!("bad causal context in {shown}: {e}")))
}

/// How long a client may take to send a request's body.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);

async fn read_body(body: Body, limit: usize) -> Result<Bytes, Response> {
    match tokio::time::timeout(BODY_TIMEOUT, to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is over the limit of {limit} bytes"),
        )),
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            ),
        )),
    }
}

fn json_body(raw: &[u8]) -> Result<Value, Response> {
    serde_json::from_slice(raw).map_err(|e| bad(format!("request body is not valid JSON: {e}")))
}

impl AppState {
    /// Hands a request to the node loop and waits for its answer (bounded).
    pub(crate) async fn call(&self, request: Request) -> Result<Reply, Response> {
        self.node.call(request).await.map_err(unavailable)
    }

    /// Runs `f` on the node thread and returns what it computed.
    async fn query<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Node, &FjallStore) -> T + Send + 'static,
    ) -> Result<T, Response> {
        self.node.query(f).await.map_err(unavailable)
    }

    /// A key of the default bucket and the query's parameters.
    fn key_params(&self, key: String, query: Option<String>) -> Result<(Key, Params), Response> {
        Ok((self.key(None, key)?, params(query)?))
    }

    fn key(&self, bucket: Option<String>, key: String) -> Result<Key, Response> {
        let bucket = bucket.unwrap_or_else(|| "default".to_string());
        if key.is_empty() {
            return Err(bad("key is empty"));
        }
        if key.len() > self.node.config().key_bytes_max {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "key is {} bytes, the limit is {}",
                    key.len(),
                    self.node.config().key_bytes_max
                ),
            ));
        }
        if bucket.is_empty() || bucket.len() > self.node.config().bucket_bytes_max {
            return Err(bad(format!(
                "bucket name must be 1 to {} bytes",
                self.node.config().bucket_bytes_max
            )));
        }
        Ok(Key::new(
            Bytes::from(bucket.into_bytes()),
            Bytes::from(key.into_bytes()),
        ))
    }
}

/// The HTTP answer for a node that could not answer.
fn unavailable(e: NodeError) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

/// The HTTP answer for a core error reply.
fn error_reply(kind: ErrorKind, message: String, answered: u8, needed: u8) -> Response {
    let status = match kind {
        ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
        ErrorKind::WrongType => StatusCode::CONFLICT,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let mut body = json!({ "error": message });
    if kind == ErrorKind::Unavailable {
        body["answered"] = json!(answered);
        body["needed"] = json!(needed);
    }
    (status, axum::Json(body)).into_response()
}

fn unexpected(reply: Reply) -> Response {
    match reply {
        Reply::Error {
            kind,
            message,
            answered,
            needed,
        } => error_reply(kind, message, answered, needed),
        other => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("unexpected answer from the node: {other:?}"),
        ),
    }
}

fn with_context(mut response: Response, context: &VersionVector, key: &Key) -> Response {
    if let Some(v) = context_header(context, key) {
        response.headers_mut().insert(CONTEXT_HEADER, v);
    }
    response
}

// ---- /kv ----

async fn kv_get(state: &AppState, key: Key, raw: Option<String>, headers: &HeaderMap) -> Response {
    let p = match params(raw) {
        Ok(p) => p,
        Err(r) => return r,
    };
    // A session read: never older than the context the client last got for this key.
    let request = match read_token(headers, SESSION_HEADER, "X-Session-Token", &key) {
        Err(r) => return r,
        Ok(None) => Request::Get {
            key: key.clone(),
            r: p.r,
        },
        Ok(Some(seen)) => Request::SessionGet {
            key: key.clone(),
            r: p.r,
            seen,
        },
    };
    match state.call(request).await {
        Err(r) => r,
        Ok(Reply::Values { values, context }) if values.len() == 1 => {
            let mut resp = (
                StatusCode::OK,
                values.into_iter().next().unwrap_or_default(),
            )
                .into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            with_context(resp, &context, &key)
        }
        Ok(Reply::Values { values, context }) => {
            let body = json!({
                "siblings": values.iter().map(|v| json_value(v)).collect::<Vec<_>>(),
                "context": token(&context, &key),
            });
            with_context(
                (StatusCode::MULTIPLE_CHOICES, axum::Json(body)).into_response(),
                &context,
                &key,
            )
        }
        Ok(Reply::NotFound { context }) => {
            with_context(error(StatusCode::NOT_FOUND, "not found"), &context, &key)
        }
        Ok(other) => unexpected(other),
    }
}

async fn kv_put(
    state: &AppState,
    key: Key,
    raw: Option<String>,
    headers: HeaderMap,
    value: Option<Body>,
) -> Response {
    let p = match params(raw) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let context = match read_context(&headers, &key) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let value = match value {
        None => None,
        Some(body) => match read_body(body, state.node.config().value_bytes_max).await {
            Ok(v) => Some(v),
            Err(r) => return r,
        },
    };
    // A delete without a context removes what its coordinator holds (a blind tombstone would
    // only sit beside the values as a sibling); with a context, exactly what was read.
    let request = if value.is_none() && context.is_empty() {
        Request::Overwrite {
            key: key.clone(),
            value: None,
            w: p.w,
        }
    } else {
        Request::Put {
            key: key.clone(),
            value,
            context,
            w: p.w,
        }
    };
    match state.call(request).await {
        Err(r) => r,
        Ok(Reply::Written { context }) => {
            with_context(StatusCode::NO_CONTENT.into_response(), &context, &key)
        }
        Ok(other) => unexpected(other),
    }
}

/// The per-replica view: each owner's own copy, and whether it lags the others.
async fn kv_replicas(state: &AppState, key: Key) -> Response {
    let reply = match state.call(Request::Inspect { key: key.clone() }).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let Reply::Replicas { replicas, .. } = reply else {
        return unexpected(reply);
    };
    let mode = state.node.config().bucket(key.bucket()).mode;
    let (merged, _, _) = merge_all(mode, replicas.iter().filter_map(|r| r.object.as_ref()));
    let views: Vec<Value> = replicas
        .iter()
        .map(|r| {
            let mut view = json!({
                "node": r.node.as_str(),
                "reachable": r.reachable,
                "values": [],
                "version_vector": {},
                "stale": r.reachable && merged.is_some() && r.object != merged,
            });
            match &r.object {
                None => {}
                Some(Object::Register(reg)) => {
                    view["values"] = reg.values().map(|v| json_value(v)).collect();
                    view["tombstone"] = json!(reg.is_deleted());
                    view["siblings"] = json!(reg.values().count());
                    view["version_vector"] = vv_json(reg.context());
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
        })
        .collect();
    axum::Json(json!({
        "key": String::from_utf8_lossy(key.key()),
        "bucket": String::from_utf8_lossy(key.bucket()),
        "replicas": views,
    }))
    .into_response()
}

fn vv_json(vv: &VersionVector) -> Value {
    let mut map = serde_json::Map::new();
    for (actor, counter) in vv.iter() {
        map.insert(actor.to_string(), json!(counter));
    }
    Value::Object(map)
}

async fn get_default(
    State(s): State<AppState>,
    Path(key): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    match s.key(None, key) {
        Ok(k) => kv_get(&s, k, q, &headers).await,
        Err(r) => r,
    }
}

async fn put_default(
    State(s): State<AppState>,
    Path(key): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match s.key(None, key) {
        Ok(k) => kv_put(&s, k, q, headers, Some(body)).await,
        Err(r) => r,
    }
}

async fn delete_default(
    State(s): State<AppState>,
    Path(key): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    match s.key(None, key) {
        Ok(k) => kv_put(&s, k, q, headers, None).await,
        Err(r) => r,
    }
}

async fn replicas_default(State(s): State<AppState>, Path(key): Path<String>) -> Response {
    match s.key(None, key) {
        Ok(k) => kv_replicas(&s, k).await,
        Err(r) => r,
    }
}

async fn get_bucket(
    State(s): State<AppState>,
    Path((bucket, key)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    match s.key(Some(bucket), key) {
        Ok(k) => kv_get(&s, k, q, &headers).await,
        Err(r) => r,
    }
}

async fn put_bucket(
    State(s): State<AppState>,
    Path((bucket, key)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match s.key(Some(bucket), key) {
        Ok(k) => kv_put(&s, k, q, headers, Some(body)).await,
        Err(r) => r,
    }
}

async fn delete_bucket(
    State(s): State<AppState>,
    Path((bucket, key)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    match s.key(Some(bucket), key) {
        Ok(k) => kv_put(&s, k, q, headers, None).await,
        Err(r) => r,
    }
}

async fn replicas_bucket(
    State(s): State<AppState>,
    Path((bucket, key)): Path<(String, String)>,
) -> Response {
    match s.key(Some(bucket), key) {
        Ok(k) => kv_replicas(&s, k).await,
        Err(r) => r,
    }
}

// ---- counters and sets ----

async fn counter_get(
    State(s): State<AppState>,
    Path(key): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let (key, p) = match s.key_params(key, q) {
        Ok(x) => x,
        Err(r) => return r,
    };
    match s.call(Request::CounterGet { key, r: p.r }).await {
        Ok(Reply::Counter { value }) => counter_json(value),
        Ok(other) => unexpected(other),
        Err(r) => r,
    }
}

/// `{"value": n}` for any counter value: concurrent increments through several nodes can sum
/// past 64 bits, which JSON numbers carry fine but `serde_json::Value` cannot hold.
fn counter_json(value: i128) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!("{{\"value\":{value}}}"),
    )
        .into_response()
}

async fn counter_post(
    State(s): State<AppState>,
    Path(key): Path<String>,
    RawQuery(q): RawQuery,
    body: Body,
) -> Response {
    let (key, p) = match s.key_params(key, q) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let body = match read_body(body, 64 * 1024).await.and_then(|b| json_body(&b)) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(delta) = body.get("delta").and_then(Value::as_i64) else {
        return bad("the body must be {\"delta\": n} with n an integer within 64 bits");
    };
    match s.call(Request::CounterAdd { key, delta, w: p.w }).await {
        Ok(Reply::Counter { value }) => counter_json(value),
        Ok(Reply::Written { .. }) => StatusCode::NO_CONTENT.into_response(),
        Ok(other) => unexpected(other),
        Err(r) => r,
    }
}

async fn set_get(
    State(s): State<AppState>,
    Path(key): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let (key, p) = match s.key_params(key, q) {
        Ok(x) => x,
        Err(r) => return r,
    };
    match s.call(Request::SetGet { key, r: p.r }).await {
        Ok(Reply::Set { members }) => axum::Json(json!({
            "members": members.iter().map(|m| json_value(m)).collect::<Vec<_>>()
        }))
        .into_response(),
        Ok(other) => unexpected(other),
        Err(r) => r,
    }
}

fn members_of(body: &Value, field: &str) -> Result<Vec<Bytes>, Response> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| value_from_json(v, &format!("each of \"{field}\"")).map_err(bad))
            .collect(),
        Some(_) => Err(bad(format!("\"{field}\" must be a list"))),
    }
}

async fn set_post(
    State(s): State<AppState>,
    Path(key): Path<String>,
    RawQuery(q): RawQuery,
    body: Body,
) -> Response {
    let (key, p) = match s.key_params(key, q) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let body = match read_body(body, s.node.config().value_bytes_max)
        .await
        .and_then(|b| json_body(&b))
    {
        Ok(b) => b,
        Err(r) => return r,
    };
    if !body.is_object() {
        return bad("the body must be {\"add\": [...], \"remove\": [...]}");
    }
    let (add, remove) = match (members_of(&body, "add"), members_of(&body, "remove")) {
        (Ok(a), Ok(r)) => (a, r),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    match s
        .call(Request::SetUpdate {
            key,
            add,
            remove,
            w: p.w,
        })
        .await
    {
        Ok(Reply::Written { .. }) => StatusCode::NO_CONTENT.into_response(),
        Ok(other) => unexpected(other),
        Err(r) => r,
    }
}

// ---- the tutorial shape ----

/// `POST /write {"key", "value"}`: reads the current context first, so the write overwrites
/// what this node's read saw, as the tutorials' single-value store does.
async fn write(State(s): State<AppState>, body: Body) -> Response {
    let body = match read_body(body, s.node.config().value_bytes_max + 64 * 1024)
        .await
        .and_then(|b| json_body(&b))
    {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(key) = body.get("key").and_then(Value::as_str) else {
        return bad("the body must be {\"key\": \"...\", \"value\": \"...\"} and \"key\" a string");
    };
    let value = match body.get("value").map(|v| value_from_json(v, "\"value\"")) {
        Some(Ok(v)) => v,
        Some(Err(e)) => return bad(e),
        None => return bad("the body has no \"value\""),
    };
    let key = match s.key(None, key.to_string()) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let context = match s
        .call(Request::Get {
            key: key.clone(),
            r: Quorum::Default,
        })
        .await
    {
        Ok(Reply::Values { context, .. }) | Ok(Reply::NotFound { context }) => context,
        // Unreadable right now: write blind; concurrent values become siblings, none is lost.
        _ => VersionVector::new(),
    };
    let request = Request::Put {
        key: key.clone(),
        value: Some(value),
        context,
        w: Quorum::Default,
    };
    match s.call(request).await {
        Ok(Reply::Written { context }) => axum::Json(json!({
            "status": "success",
            "key": String::from_utf8_lossy(key.key()),
            "node": s.node.id(),
            "context": token(&context, &key),
        }))
        .into_response(),
        Ok(other) => unexpected(other),
        Err(r) => r,
    }
}

async fn read(
    State(s): State<AppState>,
    Path(key): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let (key, p) = match s.key_params(key, q) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let name = String::from_utf8_lossy(key.key()).into_owned();
    match s.call(Request::Get { key, r: p.r }).await {
        Ok(Reply::Values { values, .. }) => {
            let mut body =
                json!({ "key": name, "value": json_value(&values[0]), "node": s.node.id() });
            if values.len() > 1 {
                body["siblings"] = values.iter().map(|v| json_value(v)).collect();
            }
            axum::Json(body).into_response()
        }
        Ok(Reply::NotFound { .. }) => {
            error(StatusCode::NOT_FOUND, format!("key {name:?} not found"))
        }
        Ok(other) => unexpected(other),
        Err(r) => r,
    }
}

// ---- cluster ----

async fn cluster(State(s): State<AppState>) -> Response {
    let view = s
        .query(|node: &Node, _: &FjallStore| {
            let ring = node.ring();
            let members: Vec<Value> = node
                .members()
                .into_iter()
                .map(|m| {
                    json!({
                        "id": m.id.as_str(),
                        "state": m.state.name(),
                        "listen": m.listen,
                        "http": m.http,
                        "partitions": ring.owned_by(&m.id).len(),
                    })
                })
                .collect();
            json!({
                "node": node.id().as_str(),
                "members": members,
                "n": node.config().ring.n,
                "partitions": node.config().ring.partitions,
                "hints_pending": node.hints_pending(),
                "leaving": node.is_leaving(),
                "handoff": {
                    "partitions_to_transfer": node.partitions_to_transfer(),
                    "keys_transferred": node.stats().keys_transferred,
                },
                "anti_entropy": {
                    "exchanges": node.stats().aae_exchanges,
                    "in_sync": node.stats().aae_in_sync,
                    "keys_repaired": node.stats().aae_keys_repaired,
                },
            })
        })
        .await;
    match view {
        Ok(v) => axum::Json(v).into_response(),
        Err(r) => r,
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    let snap = s.query(snapshot).await;
    match snap {
        Ok(snap) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            s.metrics.render(&snap),
        )
            .into_response(),
        Err(r) => r,
    }
}

async fn health(State(s): State<AppState>) -> Response {
    match s.query(|_, _| ()).await {
        Ok(()) => axum::Json(json!({ "status": "ok", "node": s.node.id() })).into_response(),
        Err(r) => r,
    }
}

async fn index() -> Html<&'static str> {
    Html(include_str!("dashboard.html"))
}

/// Lets a dashboard served by one node read another node's stream and controls.
fn cross_origin(mut r: Response) -> Response {
    r.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

fn snapshot(node: &Node, store: &FjallStore) -> Snapshot {
    Snapshot {
        node: node.id().to_string(),
        stats: node.stats().clone(),
        members: node.members(),
        partitions_owned: node.ring().owned_by(node.id()).len(),
        hints_pending: node.hints_pending(),
        requests_pending: node.requests_pending(),
        partitions_to_transfer: node.partitions_to_transfer(),
        storage_bytes: store.approximate_size_bytes().ok(),
    }
}

/// `GET /events`: a server-sent event each second with this node's counters, for the
/// dashboard's live charts (rates and percentiles are computed from successive events).
async fn events(State(s): State<AppState>) -> Response {
    use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
    let stream = futures_util::stream::unfold((s, true), |(s, first)| async move {
        if !first {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let snap = s.query(snapshot).await.ok()?;
        let mut body = s.metrics.summary(&snap);
        body["isolated"] = json!(
            s.transport
                .isolated
                .load(std::sync::atomic::Ordering::Relaxed)
        );
        body["lab"] = json!(s.lab);
        let event = SseEvent::default().event("stats").data(body.to_string());
        Some((Ok::<_, std::convert::Infallible>(event), (s, false)))
    });
    cross_origin(
        Sse::new(stream)
            .keep_alive(KeepAlive::default())
            .into_response(),
    )
}

/// `GET /ring`: every partition's owners in preference order.
async fn ring(State(s): State<AppState>) -> Response {
    let view = s
        .query(|node: &Node, _: &FjallStore| {
            let ring = node.ring();
            let partitions: Vec<Value> = (0..node.config().ring.partitions)
                .map(|p| {
                    let owners: Vec<&str> = ring
                        .owners(driftkv_ring::PartitionId(p))
                        .iter()
                        .map(|o| o.as_str())
                        .collect();
                    json!({ "partition": p, "owners": owners })
                })
                .collect();
            json!({ "n": node.config().ring.n, "partitions": partitions })
        })
        .await;
    match view {
        Ok(v) => cross_origin(axum::Json(v).into_response()),
        Err(r) => r,
    }
}

/// `POST /admin/leave`: this node leaves the cluster. It hands every partition to the new
/// owners, then its process exits.
async fn leave(State(s): State<AppState>) -> Response {
    match s.node.control(|node, store| node.leave(store)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            // Leaving goes on (the ring already excludes this node); only the record of it
            // may not survive a restart.
            tracing::error!("leaving, but the decision could not be stored: {e}");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("leaving, but the decision could not be stored: {e}"),
            );
        }
        Err(e) => return unavailable(e),
    }
    tracing::warn!("leaving the cluster: handing partitions off, then exiting");
    axum::Json(json!({ "node": s.node.id(), "leaving": true })).into_response()
}

async fn isolate(State(s): State<AppState>) -> Response {
    set_isolated(&s, true)
}

async fn heal(State(s): State<AppState>) -> Response {
    set_isolated(&s, false)
}

fn set_isolated(s: &AppState, cut: bool) -> Response {
    if !s.lab {
        return cross_origin(error(
            StatusCode::FORBIDDEN,
            "lab controls are off on this node (start it with --lab, as `driftkv demo` does)",
        ));
    }
    s.transport
        .isolated
        .store(cut, std::sync::atomic::Ordering::Relaxed);
    tracing::warn!(
        "lab control: node {} {}",
        s.node.id(),
        if cut {
            "cut off from every peer"
        } else {
            "healed"
        }
    );
    cross_origin(axum::Json(json!({ "node": s.node.id(), "isolated": cut })).into_response())
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such route (see DESIGN.md for the API)",
    )
}

/// Errors the framework produces itself (a path that is not valid UTF-8, a method a route does
/// not take) come as plain text: re-wrap them as `{"error": ...}` like every other error.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let body = to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_string();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text
    };
    error(status, message)
}

/// The role a request needs: reads and watching need `read`, changes `write`, `/admin/*`
/// `admin`. `GET /health` needs nothing (load balancers probe it).
fn role_needed(method: &axum::http::Method, path: &str) -> Option<Role> {
    use axum::http::Method;
    if path.starts_with("/admin/") {
        return Some(Role::Admin);
    }
    if *method == Method::GET || *method == Method::HEAD {
        return (path != "/health").then_some(Role::Read);
    }
    Some(Role::Write)
}

/// Whether an `/admin/*` request could have come from a web page the operator visited rather
/// than from a tool: a browser sends a cross-origin form or `fetch` without asking first only
/// with a "simple" content type, so admin changes must say `application/json`. (A change
/// naming another origin is refused for every route by [`cross_site`].)
fn forgeable_by_a_page(request: &axum::extract::Request) -> Option<&'static str> {
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    (!json).then_some("an /admin request must have Content-Type: application/json")
}

/// The host part of a `Host` header (no port, no brackets).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// Whether a request could be a web page's doing rather than a client's:
/// - a change (not GET or HEAD) that names an origin other than this node's own: a browser
///   sends a cross-origin form or `fetch` with its `Origin`;
/// - on a loopback node without users (a developer's, the demo's), a `Host` that is a DNS name
///   other than `localhost`: a page on a domain that re-points its name to 127.0.0.1 (DNS
///   rebinding) would otherwise be same-origin with it. Such a node is reached by address. (A
///   node serving other hosts has users, or was started `--insecure`.)
fn cross_site(request: &axum::extract::Request, open_loopback: bool) -> Option<String> {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let changes = !matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    if changes && let Some(origin) = headers.get(header::ORIGIN) {
        let origin_host = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://").map(|(_, rest)| rest));
        if origin_host != Some(host) {
            return Some("a change from another origin is refused".into());
        }
    }
    let name = host_name(host);
    if open_loopback
        && !host.is_empty()
        && name != "localhost"
        && name.parse::<std::net::IpAddr>().is_err()
    {
        return Some(format!(
            "this loopback node has no users, so it answers requests addressed to an IP address or localhost only \
             (Host: {name:?}): a web page's DNS name pointed at 127.0.0.1 must not reach it"
        ));
    }
    None
}

/// Authentication and authorization of every request, before any handler runs.
async fn guard(
    State(s): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    let needed = role_needed(request.method(), path);
    // The lab's cut and heal buttons (on `--lab` nodes only) are pressed from a dashboard that
    // another node may serve.
    let lab_control = s.lab && (path == "/admin/isolate" || path == "/admin/heal");
    if !lab_control && let Some(why) = cross_site(&request, s.open_loopback) {
        return error(StatusCode::FORBIDDEN, why);
    }
    if path.starts_with("/admin/")
        && !lab_control
        && let Some(why) = forgeable_by_a_page(&request)
    {
        return error(StatusCode::FORBIDDEN, why);
    }
    if let (Some(users), Some(needed)) = (&s.users, needed) {
        let role = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| users.check_basic(v.as_bytes()));
        match role {
            None => {
                let mut r = error(
                    StatusCode::UNAUTHORIZED,
                    "authentication required (HTTP Basic: a user of this node's users file)",
                );
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"driftkv\", charset=\"UTF-8\""),
                );
                return r;
            }
            Some(role) if role < needed => {
                return error(
                    StatusCode::FORBIDDEN,
                    format!(
                        "this needs the {} role; the user has {}",
                        needed.name(),
                        role.name()
                    ),
                );
            }
            Some(_) => {}
        }
    }
    next.run(request).await
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/health", get(health))
        .route("/cluster", get(cluster))
        .route("/metrics", get(metrics))
        .route("/events", get(events))
        .route("/ring", get(ring))
        .route("/admin/isolate", axum::routing::post(isolate))
        .route("/admin/leave", axum::routing::post(leave))
        .route("/admin/heal", axum::routing::post(heal))
        .route(
            "/kv/{key}",
            get(get_default).put(put_default).delete(delete_default),
        )
        .route("/kv/{key}/replicas", get(replicas_default))
        .route(
            "/buckets/{bucket}/kv/{key}",
            get(get_bucket).put(put_bucket).delete(delete_bucket),
        )
        .route("/buckets/{bucket}/kv/{key}/replicas", get(replicas_bucket))
        .route("/counters/{key}", get(counter_get).post(counter_post))
        .route("/sets/{key}", get(set_get).post(set_post))
        .route("/write", axum::routing::post(write))
        .route("/read/{key}", get(read))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .layer(axum::middleware::map_response(json_errors))
        .with_state(state)
}

/// Serves `app` on `listener`: TLS when configured, at most `limits.connections_max`
/// connections, and a connection that does not send a request's headers within
/// `limits.http_header_timeout_ms` (slowly, or not at all while idle) is closed.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<std::sync::Arc<driftkv_tls::rustls::ServerConfig>>,
    limits: crate::config::Limits,
    stats: std::sync::Arc<crate::listen::ListenerStats>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let header_timeout = Duration::from_millis(limits.http_header_timeout_ms);
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    crate::listen::accept_loop(
        listener,
        limits.connections_max,
        "HTTP listener",
        stats,
        move |stream, peer, permit| {
            let app = app.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let stream =
                    match crate::listen::secure(stream, acceptor.as_ref(), header_timeout).await {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::debug!(peer = %peer, "HTTPS handshake failed: {e}");
                            return;
                        }
                    };
                let service = hyper::service::service_fn(
                    move |request: axum::http::Request<hyper::body::Incoming>| {
                        let mut app = app.clone();
                        tower::Service::call(&mut app, request.map(Body::new))
                    },
                );
                let served = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(header_timeout)
                    .max_buf_size(HTTP_HEADER_BYTES_MAX)
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
                if let Err(e) = served {
                    tracing::debug!(peer = %peer, "HTTP connection ended: {e}");
                }
                drop(permit);
            });
        },
    )
    .await;
}

/// Bytes hyper buffers for one request's head at most.
const HTTP_HEADER_BYTES_MAX: usize = 64 * 1024;
