//! The node and its cluster as observers see them: `/cluster`, `/ring`, `/health`,
//! `/metrics` (Prometheus text), `/events` (the dashboard's live stream) and `/` (the
//! dashboard).

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use driftkv_core::Node;
use driftkv_ring::PartitionId;
use driftkv_storage::FjallStore;
use serde_json::{Value, json};

use crate::http::error::ApiError;
use crate::http::guard::cross_origin;
use crate::http::state::AppState;
use crate::metrics::Snapshot;

/// How often `/events` sends the node's counters.
const EVENTS_INTERVAL: Duration = Duration::from_secs(1);
/// The content type of Prometheus's text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

type Answer = Result<Response, ApiError>;

/// `GET /`: the dashboard.
pub async fn index() -> Html<&'static str> {
    Html(include_str!("../dashboard.html"))
}

/// `GET /health`: the node thread answers.
pub async fn health(State(s): State<AppState>) -> Answer {
    s.node.query(|_, _| ()).await?;
    Ok(axum::Json(json!({ "status": "ok", "node": s.node.id() })).into_response())
}

/// `GET /cluster`: members, their state and ring ownership, and this node's background work.
pub async fn cluster(State(s): State<AppState>) -> Answer {
    let mut view = s.node.query(cluster_view).await?;
    // The protocol version agreed with each peer at its last handshake (rolling upgrades).
    if let Some(members) = view["members"].as_array_mut() {
        for m in members {
            let id = m["id"].as_str().map(driftkv_ring::NodeId::from);
            if let Some(version) = id.and_then(|id| s.transport.version_with(&id)) {
                m["protocol"] = json!(version);
            }
        }
    }
    Ok(axum::Json(view).into_response())
}

fn cluster_view(node: &Node, _: &FjallStore) -> Value {
    let ring = node.ring();
    let members: Vec<Value> = node
        .members()
        .into_iter()
        .filter(|m| !node.removed(&m.id))
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
    let stats = node.stats();
    json!({
        "node": node.id().as_str(),
        "members": members,
        "n": node.config().ring.n,
        "partitions": node.config().ring.partitions,
        "hints_pending": node.hints_pending(),
        "leaving": node.is_leaving(),
        "handoff": {
            "partitions_to_transfer": node.partitions_to_transfer(),
            "keys_transferred": stats.keys_transferred,
        },
        "anti_entropy": {
            "exchanges": stats.aae_exchanges,
            "in_sync": stats.aae_in_sync,
            "keys_repaired": stats.aae_keys_repaired,
        },
    })
}

/// `GET /ring`: every partition's owners in preference order.
pub async fn ring(State(s): State<AppState>) -> Answer {
    let view = s.node.query(ring_view).await?;
    Ok(cross_origin(axum::Json(view).into_response()))
}

fn ring_view(node: &Node, _: &FjallStore) -> Value {
    let ring = node.ring();
    let partitions: Vec<Value> = (0..node.config().ring.partitions)
        .map(|p| {
            let owners: Vec<&str> = ring
                .owners(PartitionId(p))
                .iter()
                .map(|o| o.as_str())
                .collect();
            json!({ "partition": p, "owners": owners })
        })
        .collect();
    json!({ "n": node.config().ring.n, "partitions": partitions })
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(State(s): State<AppState>) -> Answer {
    let snap = s.node.query(snapshot).await?;
    let text = s.metrics.render(&snap);
    Ok(([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], text).into_response())
}

/// The node thread's state for the metrics and the dashboard.
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
/// dashboard's live charts (rates and percentiles are computed from successive events). The
/// stream ends when the node no longer answers.
pub async fn events(State(s): State<AppState>) -> Response {
    let stream = futures_util::stream::unfold((s, true), |(s, first)| async move {
        if !first {
            tokio::time::sleep(EVENTS_INTERVAL).await;
        }
        let snap = s.node.query(snapshot).await.ok()?;
        let mut body = s.metrics.summary(&snap);
        body["isolated"] = json!(s.transport.isolated.load(Ordering::Relaxed));
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
