//! Actors (server node identities in version vectors) and dots (one event of one actor).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A server node as it appears in version vectors: its name plus an incarnation.
///
/// The incarnation changes when a node comes back without its data (a wiped or replaced disk).
/// A node that lost its data no longer knows which dots it has issued; under a new incarnation
/// it is a new actor, so it can never issue a dot that other replicas have already seen and
/// shadow a new write with an old one (the failure Riak tracked as "kv679").
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Actor {
    pub node: Arc<str>,
    pub incarnation: u32,
}

impl Actor {
    pub fn new(node: impl Into<Arc<str>>, incarnation: u32) -> Self {
        Actor {
            node: node.into(),
            incarnation,
        }
    }
}

impl From<&str> for Actor {
    fn from(node: &str) -> Self {
        Actor::new(node, 0)
    }
}

impl fmt::Display for Actor {
    /// `n1` for the first incarnation, `n1#3` for later ones: readable where learners look.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.incarnation == 0 {
            write!(f, "{}", self.node)
        } else {
            write!(f, "{}#{}", self.node, self.incarnation)
        }
    }
}

impl fmt::Debug for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One event: the `counter`-th write that `actor` coordinated on some key. Counters start at 1.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    pub actor: Actor,
    pub counter: u64,
}

impl Dot {
    pub fn new(actor: Actor, counter: u64) -> Self {
        debug_assert!(counter >= 1, "dot counters start at 1");
        Dot { actor, counter }
    }
}

impl fmt::Debug for Dot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({},{})", self.actor, self.counter)
    }
}
