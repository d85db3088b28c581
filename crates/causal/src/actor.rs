//! Actors (server node identities in version vectors) and dots (one event of one actor).

use std::borrow::Cow;
use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

use crate::fasthash::FastHasher;

use serde::{Deserialize, Deserializer, Serialize};

/// The incarnation bit that tells a node's direct writer from its replica actor.
pub const DIRECT_WRITER_BIT: u32 = 1 << 31;

/// A server node as it appears in version vectors: its name plus an incarnation.
///
/// The incarnation changes when a node comes back without its data (a wiped or replaced disk).
/// A node that lost its data no longer knows which dots it has issued; under a new incarnation
/// it is a new actor, so it can never issue a dot that other replicas have already seen and
/// shadow a new write with an old one (the failure Riak tracked as "kv679").
///
/// Decoding interns the name (see [`intern`]): every version vector of every stored object
/// names the same few nodes, so decoded actors share one allocation per name, and comparing two
/// of them is mostly a pointer comparison.
#[derive(Clone, Serialize)]
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

    /// The actor under which this node's direct writes (lww writes any node coordinates, see
    /// the core's `node::direct`) issue their dots: its incarnation with the top bit flipped,
    /// so it never names one of the node's own replica actors (incarnations of new data
    /// directories are chosen below that bit, see [`Actor::incarnation_from`]; an older one
    /// above it maps below, where its renewals, taken below the bit too, would need 2^31 steps
    /// to meet it).
    pub fn direct_writer(&self) -> Actor {
        Actor {
            node: Arc::clone(&self.node),
            incarnation: self.incarnation ^ DIRECT_WRITER_BIT,
        }
    }

    /// An incarnation made of `raw` (random bits, or the one after the last): below
    /// [`DIRECT_WRITER_BIT`] and never 0.
    pub fn incarnation_from(raw: u32) -> u32 {
        (raw & !DIRECT_WRITER_BIT).max(1)
    }

    fn same_node(&self, other: &Actor) -> bool {
        Arc::ptr_eq(&self.node, &other.node) || name_cmp(&self.node, &other.node).is_eq()
    }
}

impl PartialEq for Actor {
    fn eq(&self, other: &Actor) -> bool {
        self.incarnation == other.incarnation && self.same_node(other)
    }
}

impl Eq for Actor {}

impl Hash for Actor {
    /// As equality sees it: the name's text and the incarnation.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.node.hash(state);
        self.incarnation.hash(state);
    }
}

impl Ord for Actor {
    /// By name, then incarnation (as the fields are declared).
    fn cmp(&self, other: &Actor) -> Ordering {
        if Arc::ptr_eq(&self.node, &other.node) {
            return self.incarnation.cmp(&other.incarnation);
        }
        name_cmp(&self.node, &other.node).then(self.incarnation.cmp(&other.incarnation))
    }
}

impl PartialOrd for Actor {
    fn partial_cmp(&self, other: &Actor) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<'de> Deserialize<'de> for Actor {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// The encoded shape: the derived `Serialize`'s fields, the name borrowed when it can be.
        #[derive(Deserialize)]
        #[serde(rename = "Actor")]
        struct Encoded<'a> {
            #[serde(borrow)]
            node: Cow<'a, str>,
            incarnation: u32,
        }
        let Encoded { node, incarnation } = Encoded::deserialize(deserializer)?;
        Ok(Actor {
            node: intern(&node),
            incarnation,
        })
    }
}

/// The most names one thread keeps interned; past it, names are allocated as they come (input
/// could name any number of actors, and the table must stay bounded).
const INTERNED_MAX: usize = 4096;

thread_local! {
    static NAMES: RefCell<HashSet<Arc<str>, BuildHasherDefault<FastHasher>>> =
        RefCell::new(HashSet::default());
}

/// Two names in `str` order, compared in line: names are a few bytes, and version vectors,
/// member tables and rings compare them all the time, where a call out to `memcmp` costs more
/// than the comparison.
#[inline]
pub fn name_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

/// The shared allocation of a node name: one per distinct name per thread. Interning is a cache,
/// never a meaning: an actor compares by its name's text either way.
pub fn intern(name: &str) -> Arc<str> {
    NAMES.with(|names| {
        let mut names = names.borrow_mut();
        if let Some(known) = names.get(name) {
            return known.clone();
        }
        let fresh: Arc<str> = Arc::from(name);
        if names.len() < INTERNED_MAX {
            names.insert(fresh.clone());
        }
        fresh
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoded_actors_share_their_name_and_keep_the_encoding() {
        let actor = Actor::new("n1", 2);
        let bytes = postcard::to_allocvec(&actor).unwrap();
        assert_eq!(bytes, postcard::to_allocvec(&("n1", 2u32)).unwrap());
        let a: Actor = postcard::from_bytes(&bytes).unwrap();
        let b: Actor = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(a, actor);
        assert!(Arc::ptr_eq(&a.node, &b.node), "one allocation per name");
        let json: Actor = serde_json::from_str(r#"{"node":"n\u0031","incarnation":2}"#).unwrap();
        assert_eq!(json, actor);
        assert_eq!(
            serde_json::to_string(&actor).unwrap(),
            r#"{"node":"n1","incarnation":2}"#
        );
    }

    #[test]
    fn order_is_by_name_then_incarnation_whether_or_not_names_are_shared() {
        let shared = intern("n2");
        let names = [
            Actor::new("n1", 5),
            Actor::new(shared.clone(), 0),
            Actor::new(shared, 1),
            Actor::new("n2", 3),
            Actor::new("n10", 0),
        ];
        let mut sorted = names.to_vec();
        sorted.sort();
        let shown: Vec<String> = sorted.iter().map(|a| a.to_string()).collect();
        assert_eq!(shown, ["n1#5", "n10", "n2", "n2#1", "n2#3"]);
        assert_eq!(Actor::new("n2", 1), names[2]);
        assert_ne!(Actor::new("n2", 0), names[2]);
    }

    proptest::proptest! {
        #[test]
        fn name_cmp_is_str_order(a in "\\PC{0,6}", b in "\\PC{0,6}", shared in "[ab]{0,3}") {
            let (a, b) = (format!("{shared}{a}"), format!("{shared}{b}"));
            proptest::prop_assert_eq!(name_cmp(&a, &b), a.as_str().cmp(b.as_str()));
            proptest::prop_assert_eq!(name_cmp(&a, &a), std::cmp::Ordering::Equal);
        }
    }
}
