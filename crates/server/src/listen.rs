//! Accepting connections within bounds: at most `connections_max` open per listener (the next
//! waits in the kernel's backlog until one closes), and a failing `accept` (out of file
//! descriptors, say) backs off instead of spinning.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::future::Future;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A stream whose writes fail once they have made no progress for `stall`: a client that
/// stops reading cannot hold its connection (and the buffers behind it) for ever.
pub struct WriteDeadline<S> {
    inner: S,
    stall: Duration,
    armed: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<S> WriteDeadline<S> {
    pub fn new(inner: S, stall: Duration) -> Self {
        WriteDeadline {
            inner,
            stall,
            armed: None,
        }
    }

    /// The outcome of a write or flush, as this stream gives it: a pending one arms the stall
    /// deadline (at the first), and fails once that has passed; a finished one disarms it.
    fn judge<T>(
        &mut self,
        cx: &mut std::task::Context<'_>,
        polled: std::task::Poll<std::io::Result<T>>,
    ) -> std::task::Poll<std::io::Result<T>> {
        use std::task::Poll;
        if polled.is_ready() {
            self.armed = None;
            return polled;
        }
        let stall = self.stall;
        let sleep = self
            .armed
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(stalled_error())),
            Poll::Pending => Poll::Pending,
        }
    }
}

fn stalled_error() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "the peer read nothing for too long",
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_write(cx, buf);
        self.judge(cx, polled)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_flush(cx);
        self.judge(cx, polled)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A byte stream to a client or peer: plain TCP, or TLS over it.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
pub type Stream = Box<dyn Io>;

/// The accepted `stream` as served: through a TLS handshake (within `within`) when the
/// listener has an acceptor, as it is otherwise; either way its writes give up after
/// [`CLIENT_WRITE_STALL`] without progress.
pub async fn secure(
    stream: TcpStream,
    acceptor: Option<&tokio_rustls::TlsAcceptor>,
    within: Duration,
) -> std::io::Result<Stream> {
    let _ = stream.set_nodelay(true);
    // Below TLS, so a stalled handshake or a client that stops reading replies both count.
    let stream = WriteDeadline::new(stream, CLIENT_WRITE_STALL);
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

/// How long a client's connection may go without reading what the node writes to it.
pub const CLIENT_WRITE_STALL: Duration = Duration::from_secs(30);

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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_write_the_peer_never_reads_fails_after_the_stall_and_one_it_reads_does_not() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut timed = WriteDeadline::new(near, Duration::from_millis(200));
        let err = timed.write_all(&[7u8; 4096]).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        // A reader that keeps up: every write makes progress, however long it all takes.
        let (near, mut far2) = tokio::io::duplex(64);
        let mut timed = WriteDeadline::new(near, Duration::from_millis(200));
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut chunk = [0u8; 16];
            while got.len() < 4096 {
                tokio::time::sleep(Duration::from_millis(1)).await;
                let n = far2.read(&mut chunk).await.unwrap();
                got.extend_from_slice(&chunk[..n]);
            }
            got.len()
        });
        timed.write_all(&[7u8; 4096]).await.unwrap();
        assert_eq!(reader.await.unwrap(), 4096);
        let _ = far.read(&mut [0u8; 1]).await;
    }
}
