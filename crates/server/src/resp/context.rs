//! What every RESP command may use besides its connection's session: the node (through the
//! transport-neutral handle), the users, the front-end's counters; and the translation of the
//! node's answers and failures into RESP error lines.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use driftkv_wire::{ErrorKind, Key, Reply, Request};

use crate::auth::Users;
use crate::handle::{HandleError, NodeHandle};
use crate::metrics::RespStats;
use crate::resp::frame::Frame;

/// Shared by every connection of a RESP listener.
#[derive(Clone)]
pub struct Context {
    pub node: NodeHandle,
    /// Who may do what; `None`: no authentication.
    pub users: Option<Arc<Users>>,
    pub stats: Arc<RespStats>,
    /// Commands at the node beyond each connection's first, over all connections.
    pub pipelined: Arc<AtomicUsize>,
}

/// Commands of all connections at the node at once beyond each connection's first, at most.
/// A connection always has one command going (as without pipelining); more take a permit. So
/// the node's queue never holds more client requests than connections and permits together
/// (peer messages behind them stay timely), and the replies held for clients that do not read
/// stay within that many values.
pub const PIPELINED_MAX: usize = 1024;

/// A place among the [`PIPELINED_MAX`], given back when dropped.
pub struct Permit(Arc<AtomicUsize>);

impl Permit {
    /// A place, if one is free.
    pub fn try_take(pool: &Arc<AtomicUsize>) -> Option<Permit> {
        pool.fetch_update(Ordering::AcqRel, Ordering::Acquire, |taken| {
            (taken < PIPELINED_MAX).then_some(taken + 1)
        })
        .ok()
        .map(|_| Permit(Arc::clone(pool)))
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Context {
    /// Hands `request` to the node; a node that cannot answer is an error line saying why.
    pub async fn call(&self, request: Request) -> Result<Reply, Frame> {
        self.node.call(request).await.map_err(unavailable)
    }
}

/// The key a command names: RESP has one keyspace, the default bucket.
pub fn key(raw: &Bytes) -> Key {
    Key::default_bucket(raw.clone())
}

/// The RESP error for a node that could not answer.
pub fn unavailable(e: HandleError) -> Frame {
    Frame::Error(format!("UNAVAILABLE {e}"))
}

/// The RESP error for a core reply a command did not expect (a core error, usually).
pub fn failure(reply: Reply) -> Frame {
    match reply {
        Reply::Error {
            kind: ErrorKind::WrongType,
            ..
        } => {
            Frame::Error("WRONGTYPE Operation against a key holding the wrong kind of value".into())
        }
        Reply::Error {
            kind: ErrorKind::Unavailable,
            message,
            ..
        } => Frame::Error(format!("UNAVAILABLE {message}")),
        Reply::Error { message, .. } => Frame::err(message),
        other => Frame::err(format!("unexpected answer from the node: {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_way_a_node_fails_reads_as_its_own_error() {
        let line = |e| match unavailable(e) {
            Frame::Error(text) => text,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            line(HandleError::TimedOut),
            "UNAVAILABLE the node did not answer in time"
        );
        assert_eq!(
            line(HandleError::Stopped),
            "UNAVAILABLE the node is shutting down"
        );
        assert!(line(HandleError::Overloaded).starts_with("UNAVAILABLE the node is overloaded"));
    }
}
