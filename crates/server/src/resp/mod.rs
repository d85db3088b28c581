//! The Redis protocol (RESP2) front-end, so redis-cli, redis-benchmark and Redis client
//! libraries talk to driftkv.
//!
//! Layers, bottom up: `frame` (a reply and its bytes), `parse` (a command from the front of
//! a buffer, within limits), `session` (what a connection carries between commands),
//! `context` (the node and users every command may use), `cmd` (one module per command
//! family, and who may run what), `connection` (the loop over one socket). Each command becomes
//! one or more core requests at the connection's consistency levels
//! (`DRIFTKV CONSISTENCY r w`).
//!
//! Mapping: string keys are registers, `INCR`-family keys are PN-counters, `S*` keys are
//! add-wins sets. Bad input answers a Redis-style error line and the connection stays open;
//! only a broken frame closes it, as in Redis. A node that cannot answer is an `-UNAVAILABLE`
//! line naming why (stopped, overloaded, timed out).

mod cmd;
mod connection;
mod context;
mod frame;
mod parse;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;

pub use cmd::COMMANDS;
pub use frame::Frame;
pub use parse::{Parsed, parse};

use crate::auth::Users;
use crate::handle::NodeHandle;
use crate::listen::{accept_loop, secure};
use crate::metrics::RespStats;
use context::Context;

/// How long a client has for the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a RESP listener serves.
#[derive(Clone)]
pub struct Settings {
    pub tls: Option<Arc<driftkv_tls::rustls::ServerConfig>>,
    /// Who may do what; `None`: no authentication (a loopback or `--insecure` node).
    pub users: Option<Arc<Users>>,
    pub connections_max: usize,
    /// Bytes of one command at most, all arguments together: a client declaring a million
    /// arguments of 4 MiB is cut off at this, not at what it declared.
    pub command_bytes_max: usize,
}

/// Serves the Redis protocol on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    node: NodeHandle,
    stats: Arc<RespStats>,
    settings: Settings,
) {
    let acceptor = settings.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let listener_stats = Arc::clone(&stats.listener);
    let ctx = Context {
        node,
        users: settings.users.clone(),
        stats,
        pipelined: Arc::default(),
    };
    accept_loop(
        listener,
        settings.connections_max,
        "RESP listener",
        listener_stats,
        move |stream, peer, permit| {
            tokio::spawn(serve_client(
                stream,
                peer,
                permit,
                ctx.clone(),
                acceptor.clone(),
                settings.command_bytes_max,
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
    ctx: Context,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    command_bytes_max: usize,
) {
    let stats = &ctx.stats;
    stats.connections.fetch_add(1, Ordering::Relaxed);
    let id = stats.connections_total.fetch_add(1, Ordering::Relaxed) + 1;
    let ended = match secure(stream, acceptor.as_ref(), TLS_HANDSHAKE_TIMEOUT).await {
        Ok(stream) => connection::serve(stream, &ctx, id, command_bytes_max).await,
        Err(e) => Err(e),
    };
    if let Err(e) = ended {
        tracing::debug!(peer = %peer, "RESP connection ended: {e}");
    }
    stats.connections.fetch_sub(1, Ordering::Relaxed);
    drop(permit);
}
