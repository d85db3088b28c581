//! The API's errors: each is an HTTP status and a JSON body `{"error": "what went wrong"}`
//! (DESIGN.md), and handlers return them with `?` instead of building answers by hand.

use axum::body::to_bytes;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use driftkv_wire::{ErrorKind, Reply};
use serde_json::json;

use crate::handle::HandleError;

/// Bytes of an error body the framework wrote itself that are read to re-wrap it, at most.
const FRAMEWORK_ERROR_BYTES_MAX: usize = 64 * 1024;

/// Why a request was not served.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (a bad parameter, header, body or key): 400.
    #[error("{0}")]
    BadRequest(String),
    /// No credentials this node accepts: 401, with the challenge for HTTP Basic.
    #[error("authentication required (HTTP Basic: a user of this node's users file)")]
    Unauthorized,
    /// Refused whatever the credentials (a role too low, a web page's doing, lab off): 403.
    #[error("{0}")]
    Forbidden(String),
    /// Nothing there (no such route, key or value): 404.
    #[error("{0}")]
    NotFound(String),
    /// A condition of the request does not hold (`If-None-Match: *` on a key that exists):
    /// 412.
    #[error("{0}")]
    PreconditionFailed(String),
    /// The body did not arrive in time: 408.
    #[error("{0}")]
    BodyTimeout(String),
    /// A key or body over its limit: 413.
    #[error("{0}")]
    TooLarge(String),
    /// The node could not answer (stopped, overloaded, timed out): 503.
    #[error(transparent)]
    Node(#[from] HandleError),
    /// The core refused or failed the request; an `Unavailable` one says how many replicas
    /// answered and how many were needed.
    #[error("{message}")]
    Core {
        kind: ErrorKind,
        message: String,
        answered: u8,
        needed: u8,
    },
    /// The cluster's state refuses the change (removing a member that is up): 409.
    #[error("{0}")]
    Conflict(String),
    /// A failure on this node: 500.
    #[error("{0}")]
    Internal(String),
    /// An error the framework answered itself (a method a route does not take, ...), with
    /// its status.
    #[error("{1}")]
    Framework(StatusCode, String),
}

impl ApiError {
    /// A 503 for a bound this node reached (not a replica count).
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::Core {
            kind: ErrorKind::Unavailable,
            message: message.into(),
            answered: 0,
            needed: 0,
        }
    }

    /// The error for a core reply a handler did not expect: the core's own error, or an
    /// internal one.
    pub fn from_reply(reply: Reply) -> ApiError {
        match reply {
            Reply::Error {
                kind,
                message,
                answered,
                needed,
            } => ApiError::Core {
                kind,
                message,
                answered,
                needed,
            },
            other => ApiError::Internal(format!("unexpected answer from the node: {other:?}")),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Node(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Core { kind, .. } => match kind {
                ErrorKind::BadRequest => StatusCode::BAD_REQUEST,
                ErrorKind::WrongType => StatusCode::CONFLICT,
                ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Framework(status, _) => *status,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut body = json!({ "error": self.to_string() });
        if let ApiError::Core {
            kind: ErrorKind::Unavailable,
            answered,
            needed,
            ..
        } = &self
            && *needed > 0
        {
            body["answered"] = json!(answered);
            body["needed"] = json!(needed);
        }
        let mut response = (status, axum::Json(body)).into_response();
        if let ApiError::Unauthorized = self {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"driftkv\", charset=\"UTF-8\""),
            );
        }
        response
    }
}

/// Errors the framework produces itself (a path that is not valid UTF-8, a method a route does
/// not take) come as plain text: re-wrap them as `{"error": ...}` like every other error.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let body = to_bytes(response.into_body(), FRAMEWORK_ERROR_BYTES_MAX)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).trim().to_string();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text
    };
    ApiError::Framework(status, message).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(e: ApiError) -> (StatusCode, serde_json::Value, Response) {
        let response = e.into_response();
        let status = response.status();
        let (parts, body) = response.into_parts();
        let bytes = to_bytes(body, 1 << 16).await.unwrap();
        let value = serde_json::from_slice(&bytes).unwrap();
        (
            status,
            value,
            Response::from_parts(parts, axum::body::Body::empty()),
        )
    }

    #[tokio::test]
    async fn an_unavailable_core_reply_says_how_many_answered() {
        let (status, value, _) = body(ApiError::from_reply(Reply::Error {
            kind: ErrorKind::Unavailable,
            message: "too few replicas".into(),
            answered: 1,
            needed: 2,
        }))
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            value,
            json!({"error": "too few replicas", "answered": 1, "needed": 2})
        );
    }

    #[tokio::test]
    async fn a_node_error_is_a_503_naming_it() {
        let (status, value, _) = body(HandleError::Stopped.into()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(value, json!({"error": "the node is shutting down"}));
    }

    #[tokio::test]
    async fn unauthorized_carries_the_basic_challenge() {
        let (status, _, response) = body(ApiError::Unauthorized).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
    }
}
