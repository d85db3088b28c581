//! Every route of the API, its handler, and the layers every request goes through: the guard
//! first, and errors the framework answers itself re-wrapped as JSON.

use axum::Router;
use axum::middleware::{from_fn_with_state, map_response};
use axum::routing::{get, post};

use crate::http::error::{ApiError, json_errors};
use crate::http::guard::guard;
use crate::http::state::AppState;
use crate::http::{admin, backup, cluster, crdt, keys, kv, tutorial, watch};

/// The API of DESIGN.md over `state`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(cluster::index))
        .route("/health", get(cluster::health))
        .route("/cluster", get(cluster::cluster))
        .route("/metrics", get(cluster::metrics))
        .route("/events", get(cluster::events))
        .route("/ring", get(cluster::ring))
        .route("/admin/isolate", post(admin::isolate))
        .route("/admin/leave", post(admin::leave))
        .route("/admin/heal", post(admin::heal))
        .route("/admin/remove/{id}", post(admin::remove))
        .route("/admin/dump", get(backup::dump))
        .route("/admin/restore", post(backup::restore))
        .route(
            "/kv/{key}",
            get(kv::get_default)
                .put(kv::put_default)
                .delete(kv::delete_default),
        )
        .route("/kv/{key}/replicas", get(kv::replicas_default))
        .route("/kv/{key}/watch", get(watch::watch_default))
        .route("/keys", get(keys::keys_default))
        .route("/buckets/{bucket}/keys", get(keys::keys_bucket))
        .route("/buckets/{bucket}/kv/{key}/watch", get(watch::watch_bucket))
        .route(
            "/buckets/{bucket}/kv/{key}",
            get(kv::get_bucket)
                .put(kv::put_bucket)
                .delete(kv::delete_bucket),
        )
        .route(
            "/buckets/{bucket}/kv/{key}/replicas",
            get(kv::replicas_bucket),
        )
        .route(
            "/counters/{key}",
            get(crdt::counter_get)
                .post(crdt::counter_post)
                .delete(crdt::counter_delete),
        )
        .route(
            "/sets/{key}",
            get(crdt::set_get)
                .post(crdt::set_post)
                .delete(crdt::set_delete),
        )
        .route(
            "/maps/{key}",
            get(crdt::map_get)
                .post(crdt::map_post)
                .delete(crdt::map_delete),
        )
        .route(
            "/buckets/{bucket}/counters/{key}",
            get(crdt::counter_get_bucket)
                .post(crdt::counter_post_bucket)
                .delete(crdt::counter_delete_bucket),
        )
        .route(
            "/buckets/{bucket}/sets/{key}",
            get(crdt::set_get_bucket)
                .post(crdt::set_post_bucket)
                .delete(crdt::set_delete_bucket),
        )
        .route(
            "/buckets/{bucket}/maps/{key}",
            get(crdt::map_get_bucket)
                .post(crdt::map_post_bucket)
                .delete(crdt::map_delete_bucket),
        )
        .route("/write", post(tutorial::write))
        .route("/read/{key}", get(tutorial::read))
        .fallback(not_found)
        .layer(from_fn_with_state(state.clone(), guard))
        .layer(map_response(json_errors))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route (see DESIGN.md for the API)".into())
}

#[cfg(test)]
mod tests {
    //! Requests through the whole router (guard, handlers, error layer) to a stand-in node.

    use std::sync::Arc;

    use axum::body::{Body, to_bytes};
    use axum::http::{Request, StatusCode};
    use axum::response::Response;
    use driftkv_core::NodeConfig;
    use driftkv_wire::{Hello, Reply};
    use tokio::sync::mpsc;

    use super::*;
    use crate::handle::NodeHandle;
    use crate::runtime::Event;
    use crate::transport::Transport;

    /// A router over a node that answers every read "not found", or over none at all.
    fn app(node_runs: bool) -> Router {
        let (tx, mut events) = mpsc::channel::<Event>(16);
        if node_runs {
            tokio::spawn(async move {
                while let Some(event) = events.recv().await {
                    if let Event::Client { reply, .. } = event {
                        let _ = reply.send(
                            Reply::NotFound {
                                context: Default::default(),
                            }
                            .into(),
                        );
                    }
                }
            });
        }
        let hello = Hello::new("test", "n1", 3, 64);
        let transport = Transport::new(hello, None, tokio::runtime::Handle::current());
        router(AppState {
            node: NodeHandle::new(tx, NodeConfig::new("n1"), Arc::default()),
            users: None,
            open_loopback: true,
            metrics: Arc::default(),
            transport,
            lab: false,
            watchers: Arc::default(),
        })
    }

    async fn send(app: Router, method: &str, path: &str) -> (StatusCode, String) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1:8080")
            .body(Body::empty())
            .unwrap();
        let mut app = app;
        let response: Response = tower::Service::call(&mut app, request).await.unwrap();
        let status = response.status();
        let body = to_bytes(response.into_body(), 1 << 16).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn a_missing_key_is_a_404_with_a_json_error() {
        let (status, body) = send(app(true), "GET", "/kv/a").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body, r#"{"error":"not found"}"#);
    }

    #[tokio::test]
    async fn a_stopped_node_is_a_503_saying_so() {
        let (status, body) = send(app(false), "GET", "/kv/a").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, r#"{"error":"the node is shutting down"}"#);
    }

    #[tokio::test]
    async fn bad_input_is_refused_before_the_node_is_asked() {
        // No node runs: each answer comes from the checks alone.
        let (status, body) = send(app(false), "GET", "/kv/a?zz=1").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("unknown query parameter"), "{body}");
        let (status, _) = send(app(false), "GET", &format!("/kv/{}", "k".repeat(2000))).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn framework_errors_and_unknown_routes_answer_json() {
        let (status, body) = send(app(true), "PATCH", "/kv/a").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(body, r#"{"error":"method not allowed"}"#);
        let (status, body) = send(app(true), "GET", "/nowhere").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(body.starts_with(r#"{"error":"no such route"#), "{body}");
    }

    #[tokio::test]
    async fn lab_controls_are_refused_on_a_node_without_lab() {
        let request = Request::builder()
            .method("POST")
            .uri("/admin/isolate")
            .header("host", "127.0.0.1:8080")
            // Past the guard, which asks an /admin change to say JSON when lab is off.
            .header("content-type", "application/json")
            .body(Body::empty())
            .unwrap();
        let mut app = app(true);
        let response: Response = tower::Service::call(&mut app, request).await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            response.headers()["access-control-allow-origin"],
            "*",
            "the refusal reaches a dashboard served by another node"
        );
    }
}
