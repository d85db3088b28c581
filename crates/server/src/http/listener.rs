//! The HTTP listener: TLS when configured, a bounded number of connections, and a bounded
//! time and size for each request's head.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio_rustls::TlsAcceptor;

use crate::config::Limits;
use crate::listen::{ListenerStats, accept_loop, secure};

/// Bytes hyper buffers for one request's head at most.
pub const HTTP_HEADER_BYTES_MAX: usize = 64 * 1024;

/// Serves `app` on `listener`: TLS when configured, at most `limits.connections_max`
/// connections, and a connection that does not send a request's headers within
/// `limits.http_header_timeout_ms` (slowly, or not at all while idle) is closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<driftkv_tls::rustls::ServerConfig>>,
    limits: Limits,
    stats: Arc<ListenerStats>,
) {
    let header_timeout = Duration::from_millis(limits.http_header_timeout_ms);
    let acceptor = tls.map(TlsAcceptor::from);
    accept_loop(
        listener,
        limits.connections_max,
        "HTTP listener",
        stats,
        move |stream, peer, permit| {
            tokio::spawn(serve_client(
                stream,
                peer,
                permit,
                app.clone(),
                acceptor.clone(),
                header_timeout,
            ));
        },
    )
    .await;
}

/// One accepted client, from the TLS handshake (if any) to the end of its connection; its
/// listener place (`permit`) is given back at the end.
async fn serve_client(
    stream: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
    app: Router,
    acceptor: Option<TlsAcceptor>,
    header_timeout: Duration,
) {
    let stream = match secure(stream, acceptor.as_ref(), header_timeout).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(peer = %peer, "HTTPS handshake failed: {e}");
            return;
        }
    };
    let service =
        hyper::service::service_fn(move |request: axum::http::Request<hyper::body::Incoming>| {
            let mut app = app.clone();
            tower::Service::call(&mut app, request.map(Body::new))
        });
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
}
