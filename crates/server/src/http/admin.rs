//! `/admin/*`: this node leaves the cluster; on `--lab` nodes, it is cut off from its peers
//! and healed again (the dashboard's buttons).

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use driftkv_core::membership::RemoveError;

use crate::http::error::ApiError;
use crate::http::guard::cross_origin;
use crate::http::state::AppState;

/// `POST /admin/leave`: this node leaves the cluster. It hands every partition to the new
/// owners, then its process exits.
pub async fn leave(State(s): State<AppState>) -> Result<Response, ApiError> {
    if let Err(e) = s.node.control(|node, store| node.leave(store)).await? {
        // Leaving goes on (the ring already excludes this node); only the record of it may
        // not survive a restart.
        tracing::error!("leaving, but the decision could not be stored: {e}");
        return Err(ApiError::Internal(format!(
            "leaving, but the decision could not be stored: {e}"
        )));
    }
    tracing::warn!("leaving the cluster: handing partitions off, then exiting");
    Ok(axum::Json(json!({ "node": s.node.id(), "leaving": true })).into_response())
}

/// `POST /admin/remove/{id}`: takes the down member `id` out of the ring for good (Riak's
/// `cluster force-remove`, Cassandra's `removenode`). Refused (409) while it is up or
/// suspect, and for this node itself; 404 for a stranger.
pub async fn remove(
    State(s): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    if !driftkv_core::node::is_node_name(&id) {
        return Err(ApiError::BadRequest(format!(
            "{:?} is not a node id",
            &id[..id.len().min(64)]
        )));
    }
    let member = driftkv_ring::NodeId::from(id.as_str());
    let removed = s
        .node
        .control(move |node, store| node.remove_member(store, &member))
        .await?;
    match removed {
        Ok(()) => {
            tracing::warn!(
                "member {id} removed from the cluster for good; its partitions go to the others"
            );
            Ok(axum::Json(json!({ "removed": id })).into_response())
        }
        Err(RemoveError::Unknown(why)) => Err(ApiError::NotFound(why)),
        Err(RemoveError::Refused(why)) => Err(ApiError::Conflict(why)),
        Err(RemoveError::Storage(why)) => Err(ApiError::Internal(why)),
    }
}

/// `POST /admin/isolate` (lab): cuts this node off from every peer.
pub async fn isolate(State(s): State<AppState>) -> Response {
    cross_origin(set_isolated(&s, true).into_response())
}

/// `POST /admin/heal` (lab): connects this node to its peers again.
pub async fn heal(State(s): State<AppState>) -> Response {
    cross_origin(set_isolated(&s, false).into_response())
}

fn set_isolated(s: &AppState, cut: bool) -> Result<Response, ApiError> {
    if !s.lab {
        return Err(ApiError::Forbidden(
            "lab controls are off on this node (start it with --lab, as `driftkv demo` does)"
                .into(),
        ));
    }
    s.transport.isolated.store(cut, Ordering::Relaxed);
    let what = if cut {
        "cut off from every peer"
    } else {
        "healed"
    };
    tracing::warn!("lab control: node {} {what}", s.node.id());
    Ok(axum::Json(json!({ "node": s.node.id(), "isolated": cut })).into_response())
}
