//! Who may do what, checked before any handler runs: credentials and roles (with users), and
//! refusals of what a web page could have sent in the operator's name (another origin, a
//! rebound DNS name, a form posted to `/admin/*`).

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::Role;
use crate::http::error::ApiError;
use crate::http::state::AppState;

/// Authentication and authorization of every request, before any handler runs.
pub async fn guard(State(s): State<AppState>, request: Request, next: Next) -> Response {
    match check(&s, &request) {
        Ok(()) => next.run(request).await,
        Err(refused) => refused.into_response(),
    }
}

/// Whether `request` may go on to its handler.
fn check(s: &AppState, request: &Request) -> Result<(), ApiError> {
    let path = request.uri().path();
    // The lab's cut and heal buttons (on `--lab` nodes only) are pressed from a dashboard that
    // another node may serve.
    let lab_control = s.lab && (path == "/admin/isolate" || path == "/admin/heal");
    if !lab_control {
        if let Some(why) = cross_site(request, s.open_loopback) {
            return Err(ApiError::Forbidden(why));
        }
        if path.starts_with("/admin/")
            && let Some(why) = forgeable_by_a_page(request)
        {
            return Err(ApiError::Forbidden(why.into()));
        }
    }
    let (Some(users), Some(needed)) = (&s.users, role_needed(request.method(), path)) else {
        return Ok(());
    };
    let role = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| users.check_basic(v.as_bytes()));
    match role {
        None => Err(ApiError::Unauthorized),
        Some(role) if role < needed => Err(ApiError::Forbidden(format!(
            "this needs the {} role; the user has {}",
            needed.name(),
            role.name()
        ))),
        Some(_) => Ok(()),
    }
}

/// The role a request needs: reads and watching need `read`, changes `write`, `/admin/*`
/// `admin`. `GET /health` needs nothing (load balancers probe it).
fn role_needed(method: &Method, path: &str) -> Option<Role> {
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
/// with a "simple" content type, so admin requests must say `application/json` (or
/// `application/octet-stream`, as a restore's batch does: not a simple type either). (A
/// change naming another origin is refused for every route by [`cross_site`].)
fn forgeable_by_a_page(request: &Request) -> Option<&'static str> {
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let v = v.trim_start();
            v.starts_with("application/json") || v.starts_with("application/octet-stream")
        });
    (!json).then_some(
        "an /admin request must have Content-Type: application/json (or application/octet-stream)",
    )
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
fn cross_site(request: &Request, open_loopback: bool) -> Option<String> {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let changes = !matches!(*request.method(), Method::GET | Method::HEAD);
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

/// Lets a dashboard served by one node read another node's stream and controls.
pub fn cross_origin(mut r: Response) -> Response {
    r.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, path: &str, headers: &[(&str, &str)]) -> Request {
        let mut builder = axum::http::Request::builder().method(method).uri(path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn roles_follow_the_method_and_the_path() {
        assert_eq!(role_needed(&Method::GET, "/health"), None);
        assert_eq!(role_needed(&Method::GET, "/kv/a"), Some(Role::Read));
        assert_eq!(role_needed(&Method::PUT, "/kv/a"), Some(Role::Write));
        assert_eq!(role_needed(&Method::GET, "/admin/x"), Some(Role::Admin));
    }

    #[test]
    fn a_page_on_another_origin_or_a_rebound_name_is_refused() {
        let host = ("host", "127.0.0.1:8080");
        let other = request(
            Method::PUT,
            "/kv/a",
            &[host, ("origin", "http://evil.example")],
        );
        assert!(cross_site(&other, false).is_some());
        let own = request(
            Method::PUT,
            "/kv/a",
            &[host, ("origin", "http://127.0.0.1:8080")],
        );
        assert!(cross_site(&own, false).is_none());
        let rebound = request(Method::GET, "/kv/a", &[("host", "evil.example:8080")]);
        assert!(cross_site(&rebound, true).is_some());
        assert!(cross_site(&rebound, false).is_none());
        for fine in ["localhost:1", "[::1]:1", "127.0.0.1"] {
            assert!(cross_site(&request(Method::GET, "/", &[("host", fine)]), true).is_none());
        }
    }

    #[test]
    fn an_admin_change_must_say_json() {
        let form = request(Method::POST, "/admin/leave", &[]);
        assert!(forgeable_by_a_page(&form).is_some());
        let json = request(
            Method::POST,
            "/admin/leave",
            &[("content-type", "application/json")],
        );
        assert!(forgeable_by_a_page(&json).is_none());
    }
}
