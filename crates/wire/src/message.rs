//! Requests, replies and the messages nodes exchange.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use driftkv_causal::VersionVector;
use driftkv_ring::NodeId;

use driftkv_crdt::FieldValue;

use crate::object::{Key, Object, ObjectKind};

/// Identifies one request a node coordinates; unique per node for its lifetime.
pub type ReqId = u64;

/// A 64-bit tree or entry hash, encoded as 8 fixed bytes: hashes are uniformly random, so the
/// variable-length integer encoding used elsewhere would spend 10 bytes on most of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash64(pub u64);

impl Serialize for Hash64 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.to_le_bytes().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Hash64 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <[u8; 8]>::deserialize(d).map(|b| Hash64(u64::from_le_bytes(b)))
    }
}

/// How many replicas must answer: a consistency level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Quorum {
    /// The node's configured default.
    #[default]
    Default,
    One,
    /// A majority of N: `N / 2 + 1`.
    Quorum,
    All,
    Count(u8),
}

impl Quorum {
    /// Parses `one`, `quorum`, `all`, `default` or a number.
    pub fn parse(s: &str) -> Result<Quorum, String> {
        match s.to_ascii_lowercase().as_str() {
            "default" | "" => Ok(Quorum::Default),
            "one" => Ok(Quorum::One),
            "quorum" => Ok(Quorum::Quorum),
            "all" => Ok(Quorum::All),
            n => match n.parse::<u8>() {
                Ok(k) if k >= 1 => Ok(Quorum::Count(k)),
                _ => Err(format!(
                    "unknown consistency level {s:?}: use one, quorum, all or a number from 1 to N"
                )),
            },
        }
    }

    /// How many replies out of `n` this level needs, or an error naming the problem.
    pub fn resolve(self, n: usize, default: Quorum) -> Result<usize, String> {
        let level = if self == Quorum::Default {
            default
        } else {
            self
        };
        let k = match level {
            Quorum::Default | Quorum::Quorum => n / 2 + 1,
            Quorum::One => 1,
            Quorum::All => n,
            Quorum::Count(k) => k as usize,
        };
        if k == 0 || k > n {
            return Err(format!(
                "consistency level {k} is outside 1..={n} (N = {n})"
            ));
        }
        Ok(k)
    }
}

/// A client operation, as the HTTP and RESP front-ends hand it to the core (and as a node
/// forwards it to a replica that can coordinate it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    Get {
        key: Key,
        r: Quorum,
    },
    /// A register read within a client session: it answers at least everything `seen` covers
    /// (the context the client got from its last read or write of this key), so the session
    /// reads its own writes and never reads backwards. The coordinator waits past R for more
    /// replies until their merge covers `seen`; when every replica that answers is behind,
    /// the read fails as unavailable instead of answering older state.
    SessionGet {
        key: Key,
        r: Quorum,
        seen: VersionVector,
    },
    /// A write, or with `value: None` a delete. `context` is what the client read (empty for
    /// a blind write). `expires_ms`: the wall-clock millisecond from which the value reads as
    /// deleted on every replica (a TTL).
    Put {
        key: Key,
        value: Option<Bytes>,
        context: VersionVector,
        expires_ms: Option<u64>,
        w: Quorum,
    },
    /// A write (or with `value: None` a delete) whose context is the coordinator's own copy:
    /// it replaces every value the coordinator has seen, as a Redis `SET` does. Writes made
    /// concurrently through other coordinators still become siblings.
    Overwrite {
        key: Key,
        value: Option<Bytes>,
        expires_ms: Option<u64>,
        w: Quorum,
    },
    CounterAdd {
        key: Key,
        delta: i64,
        w: Quorum,
    },
    CounterGet {
        key: Key,
        r: Quorum,
    },
    SetUpdate {
        key: Key,
        add: Vec<Bytes>,
        remove: Vec<Bytes>,
        w: Quorum,
    },
    SetGet {
        key: Key,
        r: Quorum,
    },
    /// Each primary's own copy, untouched: inspection never repairs.
    Inspect {
        key: Key,
    },
    /// Deletes the key whatever it holds, as the coordinator sees it: a register gets a
    /// tombstone, a counter is reset, a set's members and a map's fields are removed. What
    /// the delete did not see (a concurrent write through another node) survives it. With
    /// `kind`, a key holding another kind is refused as the wrong type.
    Delete {
        key: Key,
        kind: Option<ObjectKind>,
        w: Quorum,
    },
    /// Map fields written, incremented and removed, in that order of the lists (removes
    /// first, then writes, then increments).
    MapUpdate {
        key: Key,
        set: Vec<(Bytes, Bytes)>,
        increment: Vec<(Bytes, i64)>,
        remove: Vec<Bytes>,
        w: Quorum,
    },
    MapGet {
        key: Key,
        r: Quorum,
    },
    /// A read of whatever the key holds: the merged object (`TYPE`, `TTL`, the shell's
    /// renderings of any kind).
    Read {
        key: Key,
        r: Quorum,
    },
    /// One page of the live keys of `key`'s bucket that start with `key`'s key (the prefix,
    /// which may be empty), from `after` (a cursor of an earlier page), at most `limit`.
    /// `whole_segments`: a page ends only where an anti-entropy segment of a partition ends
    /// (it may then hold more than `limit` keys), so its cursor is a small number (RESP
    /// `SCAN`'s).
    ListKeys {
        key: Key,
        after: Option<ListCursor>,
        limit: u32,
        whole_segments: bool,
    },
    /// A key's state from a backup, merged into every replica's copy (a join: state newer
    /// than the backup's survives it, and restoring twice changes nothing). No dot is issued.
    Restore {
        key: Key,
        object: Object,
        w: Quorum,
    },
}

/// Where a key listing goes on: the partition it is in, and the last record it passed there
/// (`None`: the partition's start). Partitions are listed in order, and within one the
/// records in their stored order, the same on every replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListCursor {
    pub partition: u32,
    pub after: Option<Bytes>,
}

/// The longest record position a cursor may carry (a record key: partition, segment, a
/// bucket and a key, each within their limits).
pub const CURSOR_POSITION_BYTES_MAX: usize = 2048;

impl ListCursor {
    /// The cursor as a client holds it: `P` or `P-HEX`.
    pub fn render(&self) -> String {
        match &self.after {
            None => self.partition.to_string(),
            Some(pos) => format!("{}-{}", self.partition, crate::hex(pos)),
        }
    }

    /// Reads what [`ListCursor::render`] wrote; anything else is refused with a reason.
    pub fn parse(s: &str) -> Result<ListCursor, String> {
        let bad = || {
            let shown: String = s.chars().take(40).collect();
            format!("not a key listing cursor: {shown:?}")
        };
        if s.len() > 12 + 2 * CURSOR_POSITION_BYTES_MAX {
            return Err(bad());
        }
        let (p, hex) = match s.split_once('-') {
            Some((p, hex)) => (p, Some(hex)),
            None => (s, None),
        };
        let partition: u32 = p.parse().map_err(|_| bad())?;
        let after = match hex {
            None => None,
            Some("") => return Err(bad()),
            Some(hex) => Some(Bytes::from(crate::unhex(hex).ok_or_else(bad)?)),
        };
        Ok(ListCursor { partition, after })
    }
}

impl Request {
    pub fn key(&self) -> &Key {
        match self {
            Request::Get { key, .. }
            | Request::SessionGet { key, .. }
            | Request::Put { key, .. }
            | Request::Overwrite { key, .. }
            | Request::CounterAdd { key, .. }
            | Request::CounterGet { key, .. }
            | Request::SetUpdate { key, .. }
            | Request::SetGet { key, .. }
            | Request::Inspect { key }
            | Request::Delete { key, .. }
            | Request::MapUpdate { key, .. }
            | Request::MapGet { key, .. }
            | Request::Read { key, .. }
            | Request::ListKeys { key, .. }
            | Request::Restore { key, .. } => key,
        }
    }

    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Request::Put { .. }
                | Request::Overwrite { .. }
                | Request::CounterAdd { .. }
                | Request::SetUpdate { .. }
                | Request::Delete { .. }
                | Request::MapUpdate { .. }
                | Request::Restore { .. }
        )
    }
}

/// What went wrong, so each front-end picks its status code or error line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The request itself is wrong (bad level, oversized key, ...): HTTP 400.
    BadRequest,
    /// The key holds another kind of object: HTTP 409, RESP WRONGTYPE.
    WrongType,
    /// Too few replicas answered in time: HTTP 503.
    Unavailable,
    /// A local failure (storage): HTTP 500.
    Internal,
}

/// The answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// One or more live values (more than one: concurrent siblings) and a context covering all.
    Values {
        values: Vec<Bytes>,
        context: VersionVector,
    },
    /// Missing or deleted; the context covers the tombstone, if any.
    NotFound {
        context: VersionVector,
    },
    Written {
        context: VersionVector,
    },
    Counter {
        value: i128,
    },
    Set {
        members: Vec<Bytes>,
    },
    Replicas {
        key: Key,
        replicas: Vec<ReplicaView>,
    },
    Error {
        kind: ErrorKind,
        message: String,
        answered: u8,
        needed: u8,
    },
    /// A delete's answer: whether the coordinator held anything live to delete.
    Deleted {
        existed: bool,
    },
    /// A map's fields (after an update: with how many fields it added and removed).
    Map {
        fields: Vec<(Bytes, FieldValue)>,
        added: u32,
        removed: u32,
    },
    /// Whatever the key holds, merged (`None`: nothing anywhere that answered), and the time
    /// the coordinator judged expiry by: what reads as live at it is what its reads answer.
    Object {
        object: Option<Object>,
        now_ms: u64,
    },
    /// A page of a key listing: the keys (with what they hold) and where the next page
    /// starts (`None`: the listing is complete).
    Keys {
        keys: Vec<(Bytes, ObjectKind)>,
        next: Option<ListCursor>,
    },
}

impl Reply {
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Reply {
        Reply::Error {
            kind,
            message: message.into(),
            answered: 0,
            needed: 0,
        }
    }

    /// A request that could not gather the replicas it needed: how many answered, of how many.
    pub fn unavailable(message: impl Into<String>, answered: usize, needed: usize) -> Reply {
        Reply::Error {
            kind: ErrorKind::Unavailable,
            message: message.into(),
            answered: answered as u8,
            needed: needed as u8,
        }
    }
}

/// One replica's copy of a key as `Inspect` found it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaView {
    pub node: NodeId,
    pub reachable: bool,
    pub object: Option<Object>,
}

/// One key a replica found for a listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listed {
    pub key: Bytes,
    pub kind: ObjectKind,
    pub live: bool,
    pub context: Option<VersionVector>,
}

/// A node's state as the membership layer sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MemberState {
    Up,
    Suspect,
    Down,
    Leaving,
}

impl MemberState {
    pub fn name(self) -> &'static str {
        match self {
            MemberState::Up => "up",
            MemberState::Suspect => "suspect",
            MemberState::Down => "down",
            MemberState::Leaving => "leaving",
        }
    }
}

/// A cluster member: its name, addresses, and whether it is reachable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub id: NodeId,
    pub listen: Arc<str>,
    pub http: Arc<str>,
    pub state: MemberState,
}

/// The first frame on every node-to-node connection (from protocol version 4 on, this layout
/// is the handshake of every version: a node of the next version still sends it, so any two
/// nodes can agree on a version before either needs the other's messages).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub cluster: String,
    /// The oldest protocol version the sender speaks.
    pub protocol_version: u16,
    pub node: NodeId,
    pub listen: String,
    pub http: String,
    /// The newest protocol version the sender speaks: the two agree on the newest both speak.
    pub protocol_newest: u16,
    /// Replicas per key and partitions of the ring the sender was configured with: a node
    /// whose differ would compute another ring, and is refused.
    pub n: u32,
    pub partitions: u32,
}

/// The handshake of protocol version 3, which knew one version and no ring settings: what a
/// node of that version sends and expects back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloV3 {
    pub cluster: String,
    pub protocol_version: u16,
    pub node: NodeId,
    pub listen: String,
    pub http: String,
}

impl Hello {
    /// The handshake of a node speaking this version and the one before.
    pub fn new(cluster: &str, node: &str, n: u32, partitions: u32) -> Hello {
        Hello {
            cluster: cluster.into(),
            protocol_version: crate::PROTOCOL_VERSION_OLDEST,
            node: NodeId::from(node),
            listen: String::new(),
            http: String::new(),
            protocol_newest: crate::PROTOCOL_VERSION,
            n,
            partitions,
        }
    }

    /// This handshake as a node of protocol version 3 reads it.
    pub fn to_v3(&self) -> HelloV3 {
        HelloV3 {
            cluster: self.cluster.clone(),
            protocol_version: 3,
            node: self.node.clone(),
            listen: self.listen.clone(),
            http: self.http.clone(),
        }
    }

    /// A version 3 handshake, as this version reads it: one version, ring settings unknown (0).
    pub fn from_v3(h: HelloV3) -> Hello {
        Hello {
            cluster: h.cluster,
            protocol_version: h.protocol_version,
            node: h.node,
            listen: h.listen,
            http: h.http,
            protocol_newest: h.protocol_version,
            n: 0,
            partitions: 0,
        }
    }
}

/// Node-to-node messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// A node that cannot coordinate a write hands it to one that can.
    Forward {
        req: ReqId,
        /// Boxed: a request is far larger than most messages, which are moved in line.
        request: Box<Request>,
    },
    ForwardReply {
        req: ReqId,
        reply: Reply,
    },
    /// The coordinator's new state of a key, for a replica to merge and store. `hint` names
    /// the primary this copy stands in for when the receiver is a fallback.
    ReplicaWrite {
        req: ReqId,
        key: Key,
        object: Object,
        hint: Option<NodeId>,
    },
    ReplicaWriteAck {
        req: ReqId,
        ok: bool,
    },
    ReplicaRead {
        req: ReqId,
        key: Key,
        kind: ObjectKind,
    },
    ReplicaReadReply {
        req: ReqId,
        object: Option<Object>,
    },
    /// Read repair: merge this state; no answer expected.
    Repair {
        key: Key,
        object: Object,
    },
    /// Membership gossip: the sender's view of every member it knows, itself included. Shared:
    /// one round sends the same view to several peers.
    Gossip {
        members: Arc<[MemberDigest]>,
    },
    /// Anti-entropy, step 0 (initiator → peer): the partition's root hash. Equal roots end the
    /// exchange with an empty `AaeLeaves`; different ones get `AaeRootDiffers`.
    AaeRoot {
        xid: u64,
        partition: u32,
        root: Hash64,
    },
    /// Step 0 answer (peer → initiator): the roots differ; send the middle hashes.
    AaeRootDiffers {
        xid: u64,
        partition: u32,
    },
    /// Step 0 answer (peer → initiator): the exchange ends here. `building`: the peer's tree
    /// of this partition is still being built from storage (try again later); else the peer is
    /// running this same exchange against the initiator and goes on with its own (go on with
    /// another partition).
    AaeNotReady {
        xid: u64,
        partition: u32,
        building: bool,
    },
    /// Anti-entropy, step 1 (initiator → peer): the partition's middle-level tree hashes.
    AaeMids {
        xid: u64,
        partition: u32,
        mids: Vec<Hash64>,
    },
    /// Step 2 (peer → initiator): for every middle hash that differed, its index and the
    /// peer's leaf hashes under it, in order (none: the partition is in sync).
    AaeLeaves {
        xid: u64,
        partition: u32,
        groups: Vec<(u16, Vec<Hash64>)>,
    },
    /// Step 3 (initiator → peer): the initiator's key hashes in the segments that differ.
    AaeKeys {
        xid: u64,
        partition: u32,
        segments: Vec<u16>,
        entries: Vec<(Key, Hash64)>,
    },
    /// Step 4 (peer → initiator): the peer's copies of the keys whose hashes differ, and the
    /// keys the initiator holds that the peer lacks. The initiator merges the copies and sends
    /// back its own state of a key only where the peer's copy did not already cover it.
    AaeSync {
        xid: u64,
        partition: u32,
        objects: Vec<(Key, Object)>,
        want: Vec<Key>,
    },
    /// Step 5 (initiator → peer): the copies the peer asked for. Nothing answers it.
    AaeObjects {
        partition: u32,
        objects: Vec<(Key, Object)>,
    },
    /// Tombstone collection: every primary holds this tombstone and its grace has passed;
    /// delete the key if your copy is still exactly this.
    Purge {
        key: Key,
        object: Object,
    },
    /// Partition transfer to a new owner (after a join or a leave): merge these and confirm.
    Transfer {
        xid: u64,
        partition: u32,
        objects: Vec<(Key, Object)>,
    },
    TransferAck {
        xid: u64,
        ok: bool,
    },
    /// Key listing: the live and dead keys of one partition this replica holds in `prefix`'s
    /// bucket starting with `prefix`'s key, in stored order after the record `after`, at most
    /// `limit` keys (and a bounded number of records looked at).
    ListRead {
        req: ReqId,
        partition: u32,
        prefix: Key,
        after: Option<Bytes>,
        limit: u32,
    },
    /// The keys found, each with what it holds, whether it is live here and its context (to
    /// settle a replica behind); `last`, the last record looked at; `more`, whether the
    /// partition goes on past it.
    ListReadReply {
        req: ReqId,
        keys: Vec<Listed>,
        last: Option<Bytes>,
        more: bool,
    },
}

/// One member as gossip carries it. `(generation, heartbeat)` only grows while the member is
/// alive: `generation` on every restart, `heartbeat` on every gossip round.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberDigest {
    pub id: NodeId,
    /// Shared, not copied: every member's view and every gossip round carries every address.
    pub listen: Arc<str>,
    pub http: Arc<str>,
    pub generation: u64,
    pub heartbeat: u64,
    /// The member announced it is leaving the cluster.
    pub leaving: bool,
}

/// A message with its sender, as framed on a connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Envelope {
    Hello(Hello),
    Message {
        from: NodeId,
        message: Message,
    },
    /// The answer to a handshake of this cluster that is refused for a reason the peer must
    /// know to be fixed (its ring settings differ). Peers of another cluster get no answer.
    Refused(String),
}

/// The frames of protocol version 3: its handshake, and messages laid out as today's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnvelopeV3 {
    Hello(HelloV3),
    Message { from: NodeId, message: Message },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{WireError, decode_envelope, encode_envelope};
    use proptest::prelude::*;

    #[test]
    fn listing_cursors_round_trip_and_anything_else_is_refused_without_a_panic() {
        for c in [
            ListCursor {
                partition: 0,
                after: None,
            },
            ListCursor {
                partition: 63,
                after: Some(Bytes::from_static(b"d\x00\x00\x00\x3f\x01\x02")),
            },
        ] {
            assert_eq!(ListCursor::parse(&c.render()), Ok(c));
        }
        let multibyte_at_40 = format!("{}é", "x".repeat(39));
        for bad in [
            "",
            "-",
            "x",
            "1-",
            "1-0",
            "1-zz",
            "99999999999",
            "1-é0",
            multibyte_at_40.as_str(),
        ] {
            assert!(ListCursor::parse(bad).is_err(), "{bad:?}");
        }
        assert!(ListCursor::parse(&"1-00".repeat(3000)).is_err(), "too long");
    }

    #[test]
    fn quorum_levels_resolve_against_n() {
        assert_eq!(Quorum::Quorum.resolve(3, Quorum::Quorum), Ok(2));
        assert_eq!(Quorum::One.resolve(3, Quorum::Quorum), Ok(1));
        assert_eq!(Quorum::All.resolve(5, Quorum::Quorum), Ok(5));
        assert_eq!(Quorum::Default.resolve(3, Quorum::All), Ok(3));
        assert!(Quorum::Count(4).resolve(3, Quorum::Quorum).is_err());
        assert!(Quorum::parse("most").is_err());
        assert!(Quorum::parse("0").is_err());
        assert_eq!(Quorum::parse("QUORUM"), Ok(Quorum::Quorum));
    }

    fn arb_request() -> impl Strategy<Value = Request> {
        let key = (
            proptest::collection::vec(any::<u8>(), 0..8),
            proptest::collection::vec(any::<u8>(), 0..16),
        )
            .prop_map(|(b, k)| Key::new(b, k));
        prop_oneof![
            (
                key.clone(),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..32))
            )
                .prop_map(|(key, v)| Request::Put {
                    key,
                    value: v.map(Bytes::from),
                    context: VersionVector::new(),
                    expires_ms: Some(1_700_000_000_000),
                    w: Quorum::All
                }),
            (key.clone(), any::<i64>()).prop_map(|(key, delta)| Request::MapUpdate {
                key,
                set: vec![(Bytes::from_static(b"f"), Bytes::from_static(b"v"))],
                increment: vec![(Bytes::from_static(b"n"), delta)],
                remove: vec![Bytes::from_static(b"gone")],
                w: Quorum::One
            }),
            key.clone().prop_map(|key| Request::Delete {
                key,
                kind: Some(ObjectKind::Map),
                w: Quorum::Quorum
            }),
            key.clone().prop_map(|key| Request::ListKeys {
                key,
                after: Some(ListCursor {
                    partition: 3,
                    after: Some(Bytes::from_static(b"d\0\0\0\x03")),
                }),
                limit: 70,
                whole_segments: true,
            }),
            (key.clone(), any::<i64>()).prop_map(|(key, delta)| Request::CounterAdd {
                key,
                delta,
                w: Quorum::One
            }),
            key.clone().prop_map(|key| Request::Get {
                key,
                r: Quorum::Count(2)
            }),
            (key, any::<u64>()).prop_map(|(key, n)| Request::SessionGet {
                key,
                r: Quorum::One,
                seen: {
                    let mut seen = VersionVector::new();
                    seen.observe(&driftkv_causal::Actor::new("n1", 7), n);
                    seen
                },
            }),
        ]
    }

    proptest! {
        #[test]
        fn envelopes_round_trip(req in arb_request(), id in any::<u64>()) {
            let env = Envelope::Message { from: NodeId::from("n1"), message: Message::Forward { req: id, request: Box::new(req) } };
            prop_assert_eq!(decode_envelope(&encode_envelope(&env)), Ok(env));
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_envelope(&bytes);
        }
    }

    #[test]
    fn a_frame_of_another_version_is_refused() {
        let mut bytes = encode_envelope(&Envelope::Hello(Hello {
            cluster: "c".into(),
            protocol_version: 1,
            node: NodeId::from("n1"),
            listen: String::new(),
            http: String::new(),
            protocol_newest: 1,
            n: 3,
            partitions: 64,
        }));
        bytes[0] = 99;
        assert!(matches!(
            decode_envelope(&bytes),
            Err(WireError::Version { found: 99, .. })
        ));
    }

    proptest! {
        #[test]
        fn hashes_take_eight_bytes_and_round_trip(hashes in proptest::collection::vec(any::<u64>(), 0..40)) {
            let mids: Vec<Hash64> = hashes.iter().copied().map(Hash64).collect();
            let message = Message::AaeMids { xid: 1, partition: 2, mids: mids.clone() };
            let env = Envelope::Message { from: NodeId::from("n1"), message };
            let bytes = encode_envelope(&env);
            let empty = encode_envelope(&Envelope::Message {
                from: NodeId::from("n1"),
                message: Message::AaeMids { xid: 1, partition: 2, mids: Vec::new() },
            });
            // The list's length prefix grows by one byte past 127 entries only.
            prop_assert_eq!(bytes.len(), empty.len() + 8 * mids.len());
            prop_assert_eq!(decode_envelope(&bytes), Ok(env));
        }
    }
}
