//! The node state machine: coordinates reads and writes, serves replica requests, repairs
//! stale replicas, and hands hints off. Inputs are client requests, peer messages and timer
//! ticks with the current time; outputs are messages and replies. Nothing else leaves.
//!
//! Shaped after Riak's get and put cores: a coordinator collects replica answers one by one,
//! answers once it has enough, and decides what to do after (read repair).
//!
//! The caller's loop (tokio node, simulator, test cluster) is [`crate::driver::Driver`]: feed
//! inputs, then `Store::sync` per the durability policy, then deliver the outputs. So a replica
//! never acknowledges a write and a coordinator never answers before the write is durable.
//!
//! The node is one state composed of parts, each in its own module: [`placement`] (which nodes
//! hold a partition), [`replica`] (this node's copies, the object cache, the hash trees kept in
//! step) and [`trees`] (building them), [`requests`] (client requests routed), [`put`] and
//! [`get`] (coordinations, deciding through [`crate::quorum`]), [`handoff`] (hints),
//! [`collect`] (tombstones), [`transfer`] (partitions handed over, leaving), [`exchange`]
//! (anti-entropy) and [`dispatch`] (every message and tick routed to its part). What is in
//! flight lives in [`pending`], kept in the request [`window`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use driftkv_causal::vv::COUNTER_MAX;
use driftkv_causal::{Actor, ConflictMode, Hlc, Register, VersionVector};
use driftkv_ring::{NodeId, PartitionId, Ring, Role};
use driftkv_wire::{
    ErrorKind, Hash64, Key, MemberDigest, MemberInfo, MemberState, Message, Object, ObjectKind,
    Quorum, ReplicaView, Reply, ReqId, Request,
};

use crate::aae;
use crate::config::NodeConfig;
use crate::keys;
use crate::membership::{Change, Membership, Remembered};
use crate::objects::{Cached, ObjectCache};
pub use crate::quorum::merge_all;
use crate::quorum::{GetAnswer, GetCore, PutAnswer, PutCore};
use crate::stats::Stats;
use crate::store::{Store, StoreError};

mod collect;
mod direct;
mod dispatch;
mod dump;
mod exchange;
mod get;
mod handoff;
mod listing;
mod pending;
mod placement;
mod put;
mod replica;
mod requests;
#[cfg(test)]
mod tests;
mod transfer;
mod trees;
mod window;

use self::collect::*;
use self::direct::*;
pub use self::dump::{DUMP_BYTES_MAX, DUMP_RECORDS_MAX, Dumped};
use self::exchange::*;
use self::handoff::*;
use self::listing::*;
pub use self::listing::{LIST_LIMIT_MAX, LIST_ROUNDS_PER_PAGE_MAX, LIST_SCAN_RECORDS_MAX};
use self::pending::*;
use self::placement::*;
pub use self::put::{
    CONTEXT_ACTORS_MAX, CONTEXT_AHEAD_MAX, RESTORE_CLOCK_LEAD_MAX_MS, RESTORE_CONTEXT_ACTORS_MAX,
    is_node_name,
};
pub use self::requests::EXPIRY_CLOCK_LEAD_MAX_MS;
pub use self::requests::register_values;
use self::requests::*;
use self::trees::*;
use self::window::*;

/// What one step of the node works with: its store, the time, and where its outputs go.
pub(super) struct Step<'a> {
    pub(super) store: &'a mut dyn Store,
    pub(super) now_ms: u64,
    pub(super) out: &'a mut Vec<Output>,
}

/// Where a coordinated request goes: its key's partition, the replicas it has (N), the
/// answers it needs (R or W) and the bucket's conflict mode.
#[derive(Clone, Copy, Debug)]
pub(super) struct Route {
    pub(super) partition: PartitionId,
    pub(super) n: usize,
    pub(super) needed: usize,
    pub(super) mode: ConflictMode,
    /// The bucket takes direct writes (`write_path = direct`, lww): see `direct`.
    pub(super) direct: bool,
}

/// A client connection's handle, chosen by the shell; replies name it.
pub type ClientId = u64;

/// Something that happened to the node.
#[derive(Clone, Debug)]
pub enum Input {
    Request {
        client: ClientId,
        request: Request,
    },
    Message {
        from: NodeId,
        message: Message,
    },
    /// Time passed: expire requests, hand hints off.
    Tick,
}

/// Something the node wants done.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    Send {
        to: NodeId,
        message: Message,
    },
    /// A message for an address whose node is not known yet (a `--join` seed).
    Dial {
        addr: String,
        message: Message,
    },
    Reply {
        client: ClientId,
        reply: Reply,
    },
    /// An output that confirms this node's writes are durable (a write's answer, a replica's
    /// acknowledgement, a transfer's receipt): released only after a sync that succeeded, in
    /// its refusing form after one that failed (see [`crate::driver`]).
    Durable(Box<Output>),
}

impl Output {
    /// This output, marked as a confirmation of durability.
    #[inline]
    pub fn durable(self) -> Output {
        match self {
            Output::Durable(_) => self,
            other => Output::Durable(Box::new(other)),
        }
    }

    /// The output itself, seen through a durability mark.
    pub fn plain(&self) -> &Output {
        match self {
            Output::Durable(inner) => inner.plain(),
            other => other,
        }
    }

    /// The output itself, without its durability mark.
    pub fn into_plain(self) -> Output {
        match self {
            Output::Durable(inner) => inner.into_plain(),
            other => other,
        }
    }
}

/// Who is waiting for a coordinated request's answer.
#[derive(Clone, Debug)]
enum Waiter {
    Local(ClientId),
    /// Another node forwarded the request; answer with `ForwardReply`.
    Remote {
        node: NodeId,
        req: ReqId,
    },
}

/// Request ids carry the node's generation (bumped and persisted by every `Node::open`) in
/// their high bits, so they never repeat across restarts: a late reply or acknowledgement
/// meant for an earlier life of this node is never taken for a request of this one (which
/// once let a stale `ReplicaReadReply` of one key be merged into a read of another, and read
/// repair spread it). 2^40 ids per life.
const REQ_ID_GENERATION_SHIFT: u32 = 40;

/// The metadata record of the members this node knows (with whether each is leaving).
const MEMBERS_RECORD: &str = "members.v2";
/// The metadata record of the members removed by an operator (`driftkv remove`), kept beside
/// the members record (whose format it leaves as it was).
const REMOVED_RECORD: &str = "members.removed";

/// Records read per scan of a whole prefix (hints at start, a segment's records): a bound on
/// what one read holds in memory, not on what the walk reads in all.
const SCAN_BATCH: usize = 1_024;

/// How long a forward is remembered, in request timeouts: twice as long as its sender waits
/// for it (`SLOW_DEADLINE_TIMEOUTS`), so a late duplicate is still known.
const FORWARD_MEMORY_TIMEOUTS: u64 = 2 * SLOW_DEADLINE_TIMEOUTS;

/// Deadlines of work that waits on another node's own coordination (a forwarded write, a
/// transfer's receipts), in request timeouts: long enough for that node to time out first.
const SLOW_DEADLINE_TIMEOUTS: u64 = 2;

/// Forwarded requests remembered, so that one delivered twice (a retrying transport, a
/// duplicating network) is applied once: a counter increment or a write is not idempotent.
pub const FORWARDS_SEEN_MAX: usize = 16_384;

/// One driftkv node's protocol state. See the module docs for the caller's loop.
pub struct Node {
    cfg: NodeConfig,
    actor: Actor,
    hlc: Hlc,
    /// Issues the dots of direct writes (see `direct`).
    direct: DirectWriter,
    membership: Membership,
    /// The ring of the current owners, built when first asked for after they change (see
    /// [`Node::ring`]); never empty before the first change.
    ring: std::cell::OnceCell<Ring>,
    /// Decoded objects of the records read or written lately (see `objects`).
    objects: ObjectCache,
    /// Anti-entropy trees of the partitions built so far (see `aae`).
    trees: crate::fasthash::FastMap<PartitionId, aae::Tree>,
    /// The tree being built from storage, a batch of records per tick (one at a time).
    building: Option<TreeBuild>,
    aae: AaeState,
    sweep: Sweep,
    next_req: ReqId,
    pending: PendingMap,
    /// Forwards taken recently, by sender and request id (unique across the sender's lives),
    /// oldest first with when to forget them; at most `FORWARDS_SEEN_MAX`.
    forwards_seen: BTreeSet<(NodeId, ReqId)>,
    forwards_seen_order: VecDeque<(NodeId, ReqId, u64)>,
    /// Hint records on disk, per primary they wait for.
    hints: BTreeMap<NodeId, Waiting>,
    /// The member table changed since it was last written (see [`Node::save_membership`]).
    membership_unsaved: bool,
    /// The record of removed members holds some: it is written again when that changes.
    removed_recorded: bool,
    stats: Stats,
}

/// The node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("bad configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Node {
    /// Opens a node over its store: counts the hints waiting on disk, recalls the members it
    /// knew, and starts a new generation (so gossip tells its peers it restarted).
    pub fn open(cfg: NodeConfig, store: &mut dyn Store) -> Result<Node, NodeError> {
        let generation_key = keys::meta_key("generation");
        let generation = match store.get(&generation_key)? {
            Some(raw) => {
                let bytes: [u8; 8] = raw.as_slice().try_into().map_err(|_| {
                    StoreError::Corrupt("the generation record is not 8 bytes".into())
                })?;
                u64::from_be_bytes(bytes) + 1
            }
            None => 1,
        };
        store.put(&generation_key, &generation.to_be_bytes())?;
        let remembered: Vec<Remembered> = match store.get(&keys::meta_key(MEMBERS_RECORD))? {
            Some(raw) => driftkv_wire::decode(1, &raw).map_err(|e| {
                StoreError::Corrupt(format!("the membership record is unreadable: {e}"))
            })?,
            None => Vec::new(),
        };
        let mut membership = Membership::new(
            cfg.id.clone(),
            cfg.listen.clone(),
            cfg.http.clone(),
            generation,
            cfg.gossip.clone(),
            cfg.seeds.clone(),
            remembered,
        );
        let mut removed_recorded = false;
        if let Some(raw) = store.get(&keys::meta_key(REMOVED_RECORD))? {
            let removed: Vec<NodeId> = driftkv_wire::decode(1, &raw).map_err(|e| {
                StoreError::Corrupt(format!("the record of removed members is unreadable: {e}"))
            })?;
            membership.mark_removed(&removed);
            removed_recorded = !removed.is_empty();
        }
        // As `apply_membership` builds it: a node restarted while leaving owns nothing from
        // the start (and goes on handing its data off), without waiting for a member change.
        let ring = Ring::new(cfg.ring.clone(), ring_owners(&membership, &cfg.id))
            .map_err(|e| NodeError::Config(e.to_string()))?;
        let mut hints: BTreeMap<NodeId, Waiting> = BTreeMap::new();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let batch = store.scan(&[keys::HINT], after.as_deref(), SCAN_BATCH)?;
            let Some((last, _)) = batch.last() else { break };
            after = Some(last.clone());
            for (raw, _) in &batch {
                if let Some((node, _)) = keys::parse_hint_key(raw) {
                    hints.entry(node).or_default().count += 1;
                }
            }
        }
        let actor = Actor::new(cfg.id.as_str(), cfg.incarnation);
        let direct = DirectWriter::open(&actor, store)?;
        Ok(Node {
            actor,
            hlc: Hlc::new(),
            direct,
            membership,
            ring: std::cell::OnceCell::from(ring),
            objects: ObjectCache::new(cfg.object_cache_bytes_max),
            trees: Default::default(),
            building: None,
            // Nodes walk their partitions from different places, so two replicas rarely
            // start the same exchange against each other at once (and pay it twice).
            aae: AaeState {
                cursor: xxhash_rust::xxh3::xxh3_64(cfg.id.as_str().as_bytes()) as u32 as usize,
                catch_up: (generation > 1).then_some(usize::MAX),
                ..AaeState::default()
            },
            sweep: Sweep::default(),
            next_req: (generation << REQ_ID_GENERATION_SHIFT) + 1,
            pending: PendingMap::default(),
            forwards_seen: BTreeSet::new(),
            forwards_seen_order: VecDeque::new(),
            hints,
            membership_unsaved: false,
            removed_recorded,
            stats: Stats::default(),
            cfg,
        })
    }

    pub fn id(&self) -> &NodeId {
        &self.cfg.id
    }

    pub fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    /// Takes the loop's sync figures into the node's counters.
    pub fn note_driver(&mut self, counts: crate::driver::DriverCounts) {
        self.stats.syncs_failed = counts.syncs_failed;
        self.stats.confirmations_refused = counts.confirmations_refused;
        self.stats.messages_dropped = counts.messages_dropped;
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The ring of the current owners. Built when first asked for after the owners changed: a
    /// node learning a large cluster by gossip changes its owners many times between two uses
    /// (a thousand-node bootstrap built 13,000 rings and used 800 of them). A ring is a pure
    /// function of the owners, so building it later changes nothing but when it is built.
    pub fn ring(&self) -> &Ring {
        self.ring.get_or_init(|| {
            Ring::new(
                self.cfg.ring.clone(),
                ring_owners(&self.membership, &self.cfg.id),
            )
            .expect("the config was validated when the node opened and members are never empty")
        })
    }

    /// Every member with its state, in id order.
    pub fn members(&self) -> Vec<MemberInfo> {
        self.membership.view()
    }

    pub fn hints_pending(&self) -> usize {
        self.hints.values().map(|w| w.count).sum()
    }

    /// Hints whose primary is up: what a node stopping gracefully hands over before it goes.
    pub fn hints_deliverable(&self) -> usize {
        self.hints
            .iter()
            .filter(|(primary, _)| self.membership.state(primary) == Some(MemberState::Up))
            .map(|(_, w)| w.count)
            .sum()
    }

    pub fn requests_pending(&self) -> usize {
        self.pending.len()
    }

    /// Sets the member view by hand (tests, fixed clusters); gossip no longer changes it.
    pub fn set_members(&mut self, members: impl IntoIterator<Item = MemberInfo>) {
        let members: Vec<MemberInfo> = members.into_iter().collect();
        self.membership.pin(&members);
        self.apply_membership(Change {
            members: true,
            states: true,
            persist: false,
        });
    }

    /// The listen address of a member, for the shell to send to.
    pub fn address_of(&self, id: &NodeId) -> Option<&str> {
        self.membership.address(id)
    }

    /// Refreshes the view (and the ring, when the member set changed) after gossip.
    fn apply_membership(&mut self, change: Change) {
        // Leaving members own nothing; everyone else does, up or down (so a change of states
        // alone leaves the ring as it is). Compared in place: gossip may report a change that
        // leaves the owners as they were. A ring not built since the last change is already
        // out of date (and the trees already incomplete): it is built when next asked for.
        if change.members
            && let Some(ring) = self.ring.get()
        {
            let same = if self.membership.owners().next().is_none() {
                ring.members() == std::slice::from_ref(&self.cfg.id)
            } else {
                self.membership.owners().eq(ring.members().iter())
            };
            if !same {
                self.aae.trees_complete = false;
                self.ring = std::cell::OnceCell::new();
            }
        }
    }

    /// A member's gossip: its view merged into ours, and ours sent back if it lacks some.
    fn on_gossip(&mut self, cx: &mut Step<'_>, from: NodeId, members: &[MemberDigest]) {
        let (change, answer) = self.membership.on_gossip(&from, members, cx.now_ms);
        self.apply_membership(change);
        self.note_membership(change);
        if let Some(message) = answer {
            cx.out.push(Output::Send { to: from, message });
        }
    }

    /// Notes a membership change worth keeping; it is written by the next tick (see
    /// [`Node::save_membership`]).
    fn note_membership(&mut self, change: Change) {
        self.membership_unsaved |= change.members || change.persist;
    }

    /// Writes the member table if a change since the last write is worth keeping. Ticks do,
    /// so gossip that changes the table many times between two ticks (a thousand members
    /// learning of each other) writes it once; what a crash in between loses, the restarted
    /// node learns again from its first gossip. A leave writes at once (it must survive).
    fn save_membership(&mut self, store: &mut dyn Store, change: Change) {
        self.note_membership(change);
        if !std::mem::take(&mut self.membership_unsaved) {
            return;
        }
        let record = driftkv_wire::encode(1, &self.membership.remembered_refs());
        let _ = store.delete(&keys::meta_key("members"));
        if store.put(&keys::meta_key(MEMBERS_RECORD), &record).is_err() {
            self.stats.storage_errors += 1;
        }
        // Written once some member was removed, and again (maybe empty) while one was: a
        // member that came back and later left by itself is not marked removed after a restart.
        let removed = self.membership.removed_ids();
        if !removed.is_empty() || self.removed_recorded {
            let record = driftkv_wire::encode(1, &removed);
            if store.put(&keys::meta_key(REMOVED_RECORD), &record).is_err() {
                self.stats.storage_errors += 1;
            }
            self.removed_recorded = !removed.is_empty();
        }
    }

    fn is_up(&self, node: &NodeId) -> bool {
        self.membership.state(node) == Some(MemberState::Up)
    }

    /// Whether this forward is new (and remembers it). A copy is forgotten well after the
    /// sender gave up on it (it waits twice the request timeout; this keeps it four times),
    /// or once `FORWARDS_SEEN_MAX` newer ones came.
    fn first_delivery_of_forward(&mut self, from: &NodeId, req: ReqId, now_ms: u64) -> bool {
        while let Some((node, id, forget_ms)) = self.forwards_seen_order.front() {
            if *forget_ms > now_ms && self.forwards_seen_order.len() < FORWARDS_SEEN_MAX {
                break;
            }
            self.forwards_seen.remove(&(node.clone(), *id));
            self.forwards_seen_order.pop_front();
        }
        if !self.forwards_seen.insert((from.clone(), req)) {
            return false;
        }
        let kept_ms = self
            .cfg
            .request_timeout_ms
            .saturating_mul(FORWARD_MEMORY_TIMEOUTS);
        let forget_ms = now_ms.saturating_add(kept_ms);
        self.forwards_seen_order
            .push_back((from.clone(), req, forget_ms));
        true
    }

    fn new_req(&mut self) -> ReqId {
        let id = self.next_req;
        self.next_req += 1;
        id
    }

    /// Takes one input at wall-clock time `now_ms`; appends what it wants done to `out`.
    pub fn handle(
        &mut self,
        store: &mut dyn Store,
        now_ms: u64,
        input: Input,
        out: &mut Vec<Output>,
    ) {
        match input {
            Input::Request { client, request } => {
                self.aae.requests += 1;
                self.on_request(store, now_ms, Waiter::Local(client), request, false, out)
            }
            Input::Message { from, message } => {
                let change = self.membership.heard_from(&from, now_ms);
                self.apply_membership(change);
                self.on_message(store, now_ms, from, message, out)
            }
            Input::Tick => self.on_tick(store, now_ms, out),
        }
    }

    /// Answers a write that is now stored here and on enough replicas: a confirmation of
    /// durability, released by the driver only after this node's sync succeeds.
    fn confirm(&mut self, waiter: Waiter, reply: Reply, out: &mut Vec<Output>) {
        out.push(Output::durable(self.answer_for(waiter, reply)));
    }

    fn answer(&mut self, waiter: Waiter, reply: Reply, out: &mut Vec<Output>) {
        out.push(self.answer_for(waiter, reply));
    }

    /// The output answering `waiter`: a reply to a local client, or to the node that forwarded
    /// the request.
    fn answer_for(&mut self, waiter: Waiter, reply: Reply) -> Output {
        if matches!(
            reply,
            Reply::Error {
                kind: ErrorKind::Unavailable,
                ..
            }
        ) {
            self.stats.unavailable += 1;
        }
        match waiter {
            Waiter::Local(client) => Output::Reply { client, reply },
            Waiter::Remote { node, req } => Output::Send {
                to: node,
                message: Message::ForwardReply { req, reply },
            },
        }
    }
}
