//! Accepting connections within bounds: at most `connections_max` open per listener (the next
//! waits in the kernel's backlog until one closes), and a failing `accept` (out of file
//! descriptors, say) backs off instead of spinning.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A byte stream to a client or peer: plain TCP, or TLS over it.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
pub type Stream = Box<dyn Io>;

/// The accepted `stream` as served: through a TLS handshake (within `within`) when the
/// listener has an acceptor, as it is otherwise.
pub async fn secure(
    stream: TcpStream,
    acceptor: Option<&tokio_rustls::TlsAcceptor>,
    within: Duration,
) -> std::io::Result<Stream> {
    let _ = stream.set_nodelay(true);
    let Some(acceptor) = acceptor else {
        return Ok(Box::new(stream));
    };
    match tokio::time::timeout(within, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Ok(Box::new(tls)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no TLS handshake in time",
        )),
    }
}

const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// How a listener is doing, for the metrics.
#[derive(Default, Debug)]
pub struct ListenerStats {
    /// Times the listener was full and stopped accepting until a connection closed.
    pub full: AtomicU64,
    /// `accept` calls that failed (EMFILE and the like).
    pub accept_errors: AtomicU64,
}

/// Accepts connections on `listener` forever, calling `serve` for each with the permit that
/// holds its place (drop it when the connection ends). `what` names the listener in logs.
pub async fn accept_loop<F>(
    listener: TcpListener,
    connections_max: usize,
    what: &'static str,
    stats: Arc<ListenerStats>,
    mut serve: F,
) where
    F: FnMut(TcpStream, SocketAddr, OwnedSemaphorePermit),
{
    let places = Arc::new(Semaphore::new(connections_max.max(1)));
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut failing = false;
    loop {
        let permit = match Arc::clone(&places).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                stats.full.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "{what}: {connections_max} connections open (connections_max); new ones wait"
                );
                match Arc::clone(&places).acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => return,
                }
            }
        };
        match listener.accept().await {
            Ok((stream, peer)) => {
                if failing {
                    tracing::info!("{what}: accepting again");
                    failing = false;
                }
                backoff = ACCEPT_BACKOFF_MIN;
                serve(stream, peer, permit);
            }
            Err(e) => {
                stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                if !failing {
                    tracing::warn!("{what}: accept failed: {e}; backing off");
                    failing = true;
                }
                drop(permit);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
}
